//! What the windows show: the [`Model`] the app keeps up to date, shared
//! with the window as a [`SharedModel`].
//!
//! The model holds only what a person is to see, in words ready to show
//! (a peer's name, its rights, a status line); the app turns its session
//! state into it and the windows draw it as it is. The one clock it carries,
//! a countdown, is counted by the app: the windows only display
//! `seconds_left`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How many notice lines [`Model::push_notice`] keeps.
pub const MAX_NOTICES: usize = 8;
/// How many progress bars [`Model::transfer`] keeps (the newest).
pub const MAX_TRANSFERS: usize = 4;

/// A file on its way to or from this side (R23: sent or received; R24:
/// shared or fetched), as its progress bar shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferView {
    /// Which transfer this is, to update it in place.
    pub key: String,
    /// What moves, in words ("Sending file 2 to 3", "Fetching slides.pdf").
    pub label: String,
    /// Bytes done.
    pub done: u64,
    /// Bytes in all.
    pub size: u64,
    /// Where it stands ("accepted", "progress", "complete", "failed"…).
    pub state: String,
}

impl TransferView {
    /// The share done, 0 to 1 (1 for an empty file).
    pub fn fraction(&self) -> f32 {
        if self.size == 0 {
            1.0
        } else {
            (self.done as f64 / self.size as f64).clamp(0.0, 1.0) as f32
        }
    }
}

/// One peer in the session, as the roster shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberView {
    /// The peer's number in the session's roster.
    pub peer: u32,
    /// Its display name.
    pub name: String,
    /// Its rights, in words (e.g. "view", "control", "files").
    pub rights: Vec<String>,
}

/// Where remote control stands (R22), as this window's user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlView {
    /// No one controls the shared screen.
    #[default]
    Off,
    /// Control was asked for; the participant's consent countdown runs.
    Asked {
        /// Seconds until the countdown ends.
        seconds_left: u32,
    },
    /// The master's input reaches the participant's desktop.
    Active,
    /// Control is granted but the master watches only: no input is sent.
    ViewOnly,
}

/// The participant's consent question while someone asks for control (R22).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsentPrompt {
    /// Who asks (a display name).
    pub who: String,
    /// Seconds until the countdown ends.
    pub seconds_left: u32,
    /// What happens when it ends without an answer: control starts (true)
    /// or is refused (false), per policy.
    pub default_accept: bool,
}

/// A participant waiting to be admitted (master only): the master compares
/// its safety code with the one the participant reads out, then admits or
/// denies it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission {
    /// Its number in the session.
    pub peer: u32,
    /// The name it gave.
    pub name: String,
    /// Its host, as it gave it.
    pub host: String,
    /// The safety code of its join.
    pub safety_code: String,
}

/// Everything a window shows besides the remote screen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    /// The session's name, shown at the top.
    pub title: String,
    /// One line of figures, e.g. "30 fps · 120 KB/s · 12 ms".
    pub status_line: String,
    /// Who is connected, with which rights.
    pub members: Vec<MemberView>,
    /// Where remote control stands.
    pub control: ControlView,
    /// The consent question, while one is open (participant only).
    pub consent: Option<ConsentPrompt>,
    /// Participants waiting to be admitted (master only), oldest first.
    pub admissions: Vec<Admission>,
    /// The last few lines of chat, joins, leaves, "recording started"…,
    /// oldest first.
    pub notices: Vec<String>,
    /// Files moving, oldest first, with their progress (R23, R24).
    pub transfers: Vec<TransferView>,
    /// Why the session ended, once it has: the window shows it and closes.
    pub ended: Option<String>,
    /// The viewer replays a recording rather than showing a live session:
    /// it offers no remote-control buttons.
    pub replay: bool,
}

impl Model {
    /// Appends a notice line, dropping the oldest beyond [`MAX_NOTICES`].
    pub fn push_notice(&mut self, line: impl Into<String>) {
        self.notices.push(line.into());
        let excess = self.notices.len().saturating_sub(MAX_NOTICES);
        self.notices.drain(..excess);
    }

    /// Updates the progress bar of `view.key`, or adds it (dropping the
    /// oldest beyond [`MAX_TRANSFERS`]).
    pub fn transfer(&mut self, view: TransferView) {
        match self.transfers.iter_mut().find(|t| t.key == view.key) {
            Some(t) => *t = view,
            None => {
                self.transfers.push(view);
                let excess = self.transfers.len().saturating_sub(MAX_TRANSFERS);
                self.transfers.drain(..excess);
            }
        }
    }
}

/// The [`Model`] shared between the app, which updates it, and a window,
/// which draws it. Cheap to clone; every clone is the same model.
#[derive(Debug, Clone, Default)]
pub struct SharedModel {
    inner: Arc<Mutex<Shared>>,
}

#[derive(Debug, Default)]
struct Shared {
    model: Model,
    /// The open window's context, to ask for a repaint.
    repaint: Option<eframe::egui::Context>,
}

impl SharedModel {
    /// Shares `model`.
    pub fn new(model: Model) -> SharedModel {
        SharedModel {
            inner: Arc::new(Mutex::new(Shared {
                model,
                repaint: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Poisoned only if an update closure panicked; what it left is
        // still a model a window can draw.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the model with `f` and asks the open window, if any, to
    /// repaint. Keep `f` short: the window waits for it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        let (result, repaint) = {
            let mut shared = self.lock();
            let result = f(&mut shared.model);
            (result, shared.repaint.clone())
        };
        if let Some(ctx) = repaint {
            ctx.request_repaint();
        }
        result
    }

    /// Reads the model with `f`, without asking for a repaint.
    pub fn read<R>(&self, f: impl FnOnce(&Model) -> R) -> R {
        f(&self.lock().model)
    }

    /// A copy of the model as it is now.
    pub fn snapshot(&self) -> Model {
        self.lock().model.clone()
    }

    /// Lets [`update`](Self::update) ask `ctx` to repaint (`None`: stop).
    pub(crate) fn set_repaint(&self, ctx: Option<eframe::egui::Context>) {
        self.lock().repaint = ctx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_keep_the_last_few() {
        let mut m = Model::default();
        for i in 0..MAX_NOTICES + 3 {
            m.push_notice(format!("line {i}"));
        }
        assert_eq!(m.notices.len(), MAX_NOTICES);
        assert_eq!(m.notices.first().map(String::as_str), Some("line 3"));
        assert_eq!(
            m.notices.last().map(String::as_str),
            Some(format!("line {}", MAX_NOTICES + 2).as_str())
        );
    }

    #[test]
    fn updates_are_seen_by_every_clone() {
        let app = SharedModel::new(Model::default());
        let window = app.clone();
        let got = app.update(|m| {
            m.control = ControlView::Active;
            m.members.push(MemberView {
                peer: 2,
                name: "Ada".into(),
                rights: vec!["control".into()],
            });
            7
        });
        assert_eq!(got, 7);
        let seen = window.snapshot();
        assert_eq!(seen.control, ControlView::Active);
        assert_eq!(seen.members.len(), 1);
    }
}
