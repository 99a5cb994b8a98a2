//! The app side of the windows: what turns a session's [`Event`]s into the
//! [`Model`](crate::Model) a window draws, and a window's [`UiAction`]s into the
//! session's [`Command`]s. No networking and no clock of its own: the app
//! feeds events and the time in, and sends the commands out.
//!
//! | piece | what it does |
//! |---|---|
//! | [`ScreenSink`] | the session's viewer thread publishes each decoded frame straight into a [`LatestFrame`] |
//! | [`Bridge::apply`] | one event → the model: title, status line, members, control, consent, notices, why it ended |
//! | [`Bridge::tick`] | counts the consent countdown down, once the app calls it (about once a second) |
//! | [`Bridge::command`] | one window action → the command for the session, if any |
//! | [`forward_actions`] | the loop an app runs on a thread of its own: actions in, commands out, ticks between |
//!
//! The master's *view only* is the viewer's own: control stays granted and
//! the viewer sends no input. The participant's is the session's (requests
//! are refused without asking), so it becomes [`Command::ViewOnly`].

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use conclave_client::cli::{describe, drive_with, CommandSender, Output};
use conclave_client::events::{Command, Event};
use conclave_client::screen::FrameSink;
use conclave_client::session::Running;
use conclave_media::frame::Frame;
use conclave_protocol::app::ControlEnd;
use conclave_protocol::frame::PeerId;

use crate::latest::LatestFrame;
use crate::model::{Admission, ConsentPrompt, ControlView, MemberView, SharedModel, TransferView};
use crate::window::UiAction;

/// How often [`forward_actions`] counts the countdown down while no action
/// arrives.
pub const TICK: Duration = Duration::from_millis(250);

/// A [`FrameSink`] that publishes every decoded frame into a
/// [`LatestFrame`], for the viewer window to show: give it to the session
/// as `MediaOptions::sink`.
#[derive(Debug, Clone, Default)]
pub struct ScreenSink(LatestFrame);

impl ScreenSink {
    /// Publishes into `screen` (a clone of the window's slot).
    pub fn new(screen: LatestFrame) -> ScreenSink {
        ScreenSink(screen)
    }
}

impl FrameSink for ScreenSink {
    fn show(&mut self, frame: &Frame, _captured_us: u64) {
        self.0.publish(frame);
    }
}

/// Which app the bridge serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The master's viewer; `countdown` is how long a participant has to
    /// answer a control request (the build's policy).
    Master { countdown: Duration },
    /// The participant's banner.
    Participant,
}

/// One app's state between its session and its window (see the module
/// docs). Share it as a [`SharedBridge`] between the task that reads the
/// session's events and the thread that runs [`forward_actions`].
#[derive(Debug)]
pub struct Bridge {
    model: SharedModel,
    side: Side,
    /// This app's peer number, once known (the master is 1).
    me: Option<u32>,
    /// Master: whom "Request control" asks — the presenting participant,
    /// else the last admitted.
    target: Option<u32>,
    /// Who presents, if anyone.
    presenter: Option<u32>,
    /// The title before the session code: the session, or whose it is.
    title: String,
    /// The session code of the current epoch.
    session_code: Option<String>,
    /// Master: the session's password, shown after the title.
    password: Option<String>,
    /// When the countdown shown ends (a request the master made, or the
    /// consent the participant is asked for).
    deadline: Option<Instant>,
    /// The seconds last shown of that countdown.
    shown_left: Option<u32>,
    /// Participant: whether requests are refused without asking.
    view_only: bool,
}

impl Bridge {
    /// The master's bridge; `countdown` is how long a participant has to
    /// answer a control request (the policy's `control_countdown_secs`),
    /// shown while the master waits.
    pub fn master(model: SharedModel, countdown: Duration) -> Bridge {
        Bridge::new(model, Side::Master { countdown }, Some(PeerId::MASTER.0))
    }

    /// The participant's bridge.
    pub fn participant(model: SharedModel) -> Bridge {
        Bridge::new(model, Side::Participant, None)
    }

    fn new(model: SharedModel, side: Side, me: Option<u32>) -> Bridge {
        Bridge {
            model,
            side,
            me,
            target: None,
            presenter: None,
            title: String::new(),
            session_code: None,
            password: None,
            deadline: None,
            shown_left: None,
            view_only: false,
        }
    }

    /// The model this bridge keeps up to date.
    pub fn model(&self) -> &SharedModel {
        &self.model
    }

    /// Whom "Request control" asks (master), if anyone.
    pub fn control_target(&self) -> Option<PeerId> {
        self.target.map(PeerId)
    }

    /// Shows the session's password in the title (master), for the user to
    /// give to participants.
    pub fn show_password(&mut self, password: &str) {
        self.password = Some(password.to_string());
        self.refresh_title();
    }

    /// Adds a line of the app's own to the notices.
    pub fn notice(&self, line: impl Into<String>) {
        let line = line.into();
        self.model.update(|m| m.push_notice(line));
    }

    /// Ends the window's session with `reason` shown, e.g. when the
    /// session could not start; the window closes after
    /// [`ENDED_LINGER`](crate::ENDED_LINGER).
    pub fn end(&mut self, reason: impl Into<String>) {
        let reason = reason.into();
        self.deadline = None;
        self.model.update(|m| {
            m.consent = None;
            m.control = ControlView::Off;
            m.ended = Some(reason);
        });
    }

    /// Updates the model from one of the session's events, received at
    /// `now`.
    pub fn apply(&mut self, event: &Event, now: Instant) {
        match event {
            Event::SessionOpened { session, kind } => {
                self.title = format!("{} session {session}", capitalised(kind));
                self.refresh_title();
                self.notice(describe(event));
            }
            Event::Announced {
                licensee,
                moderator,
                kind,
            } => {
                self.title = format!("{} session of {moderator} ({licensee})", capitalised(kind));
                self.refresh_title();
                self.notice(describe(event));
            }
            Event::AdmissionRequested {
                peer,
                name,
                host,
                safety_code,
            } => {
                let waiting = Admission {
                    peer: *peer,
                    name: name.clone(),
                    host: host.clone(),
                    safety_code: safety_code.clone(),
                };
                self.model.update(|m| {
                    m.admissions.retain(|a| a.peer != waiting.peer);
                    m.admissions.push(waiting);
                });
                self.notice(describe(event));
            }
            Event::Admitted { peer, .. } => {
                self.answered_admission(*peer);
                match self.side {
                    // The participant's first admission is its own.
                    Side::Participant => {
                        self.me.get_or_insert(*peer);
                    }
                    Side::Master { .. } => {
                        if self.presenter.is_none_or(|p| p == PeerId::MASTER.0) {
                            self.target = Some(*peer);
                        }
                    }
                }
                self.notice(describe(event));
            }
            Event::Left { peer, .. } => {
                self.answered_admission(*peer);
                if self.presenter == Some(*peer) {
                    self.presenter = None;
                    self.model.update(|m| m.status_line.clear());
                }
                let me = self.me;
                let others = self.model.update(|m| {
                    m.members.retain(|v| v.peer != *peer);
                    m.members
                        .iter()
                        .map(|v| v.peer)
                        .filter(|p| Some(*p) != me)
                        .collect::<Vec<_>>()
                });
                if self.target == Some(*peer) {
                    self.target = others.last().copied();
                }
                self.notice(describe(event));
            }
            Event::Epoch {
                session_code,
                members,
                ..
            } => {
                self.session_code = Some(session_code.clone());
                self.refresh_title();
                let me = self.me;
                let shown: Vec<MemberView> = members
                    .iter()
                    .filter(|m| Some(m.peer) != me)
                    .map(|m| MemberView {
                        peer: m.peer,
                        name: m.name.clone(),
                        rights: m.rights.iter().map(|r| (*r).to_string()).collect(),
                    })
                    .collect();
                if matches!(self.side, Side::Master { .. }) && self.target.is_none() {
                    self.target = shown.last().map(|m| m.peer);
                }
                self.model.update(|m| m.members = shown);
            }
            Event::Rights { peer, rights } => {
                self.model.update(|m| {
                    if let Some(member) = m.members.iter_mut().find(|v| v.peer == *peer) {
                        member.rights = rights.iter().map(|r| (*r).to_string()).collect();
                    }
                });
            }
            Event::Chat { name, text, .. } => self.notice(format!("{name}: {text}")),
            Event::Presenter { peer } => {
                self.presenter = *peer;
                match peer {
                    Some(p) if *p != PeerId::MASTER.0 && self.side != Side::Participant => {
                        self.target = Some(*p);
                    }
                    None => self.model.update(|m| m.status_line.clear()),
                    Some(_) => {}
                }
                self.notice(describe(event));
            }
            Event::ScreenStats {
                fps,
                bytes_per_s,
                latency_ms,
                ..
            } => {
                let line = status_line(*fps, *bytes_per_s, *latency_ms);
                self.model.update(|m| m.status_line = line);
            }
            Event::ControlRequested {
                by,
                seconds,
                default,
            } => {
                let seconds_left =
                    self.start_countdown(now + Duration::from_secs(u64::from(*seconds)), now);
                let prompt = ConsentPrompt {
                    who: by.clone(),
                    seconds_left,
                    default_accept: *default == "allow",
                };
                self.model.update(|m| m.consent = Some(prompt));
            }
            Event::Control { peer, state, .. } => {
                self.control_changed(*peer, state, now);
                self.notice(describe(event));
            }
            Event::JoinFailed { peer, .. } => {
                if let Some(peer) = peer {
                    self.answered_admission(*peer);
                }
                self.notice(describe(event));
            }
            Event::File {
                peer,
                id,
                direction,
                state,
                done,
                size,
                ..
            } => {
                let label = match *direction {
                    "send" => format!("Sending file {id} to {}", self.name_of(*peer)),
                    _ => format!("Receiving file {id} from {}", self.name_of(*peer)),
                };
                self.transfer(
                    format!("file {peer} {direction} {id}"),
                    label,
                    state,
                    *done,
                    *size,
                );
                // The bar shows progress; the notices the other steps.
                if *state != "progress" {
                    self.notice(describe(event));
                }
            }
            Event::Shared {
                id,
                name,
                state,
                done,
                size,
                ..
            } => {
                let label = match *state {
                    "uploading" | "uploaded" | "available" => format!("Shared {name}"),
                    _ => format!("Fetching {name}"),
                };
                // "available" for everyone else is news, not a transfer.
                let moving = !matches!(*state, "available" | "removed");
                if moving || self.transfers_known(id) {
                    self.transfer(format!("shared {id}"), label, state, *done, *size);
                }
                if *state != "progress" {
                    self.notice(describe(event));
                }
            }
            Event::Ended { reason } => self.end(reason.clone()),
            Event::Connected { .. }
            | Event::JoinCode { .. }
            | Event::Locked { .. }
            | Event::PolicyDropped { .. }
            | Event::Refused { .. }
            | Event::RelayLost { .. }
            | Event::Resumed { .. }
            | Event::Warning { .. }
            | Event::Error { .. }
            | Event::Sharing { .. }
            | Event::Recording { .. }
            | Event::Hand { .. }
            | Event::FileOffered { .. } => self.notice(describe(event)),
        }
    }

    /// Updates the progress bar of transfer `key`.
    fn transfer(&mut self, key: String, label: String, state: &str, done: u64, size: u64) {
        let view = TransferView {
            key,
            label,
            done,
            size,
            state: state.to_string(),
        };
        self.model.update(|m| m.transfer(view));
    }

    /// Whether shared file `id` has a progress bar (this side moved it).
    fn transfers_known(&self, id: &str) -> bool {
        let key = format!("shared {id}");
        self.model
            .read(|m| m.transfers.iter().any(|t| t.key == key))
    }

    /// A member's name as the roster shows it, or its number.
    fn name_of(&self, peer: u32) -> String {
        if peer == PeerId::MASTER.0 && self.side == Side::Participant {
            return "the moderator".into();
        }
        self.model
            .read(|m| {
                m.members
                    .iter()
                    .find(|v| v.peer == peer)
                    .map(|v| v.name.clone())
            })
            .unwrap_or_else(|| format!("participant {peer}"))
    }

    /// Remote control of `peer` is now in `state` ("asked", "active",
    /// "denied" or "ended").
    fn control_changed(&mut self, peer: u32, state: &str, now: Instant) {
        if self.side == Side::Participant && self.me.is_some_and(|me| me != peer) {
            return;
        }
        let control = match (self.side, state) {
            (Side::Master { countdown }, "asked") => ControlView::Asked {
                seconds_left: self.start_countdown(now + countdown, now),
            },
            (_, "active") => {
                self.deadline = None;
                ControlView::Active
            }
            _ => {
                self.deadline = None;
                ControlView::Off
            }
        };
        let answered = state != "asked";
        self.model.update(|m| {
            m.control = control;
            if answered {
                m.consent = None;
            }
        });
    }

    /// Shows a countdown to `deadline`; returns its seconds as of `now`.
    fn start_countdown(&mut self, deadline: Instant, now: Instant) -> u32 {
        let left = seconds_until(deadline, now);
        self.deadline = Some(deadline);
        self.shown_left = Some(left);
        left
    }

    /// Counts the countdown on show down to `now`; the model changes (and
    /// the window repaints) only when a whole second has passed.
    pub fn tick(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        let left = seconds_until(deadline, now);
        if self.shown_left != Some(left) {
            self.shown_left = Some(left);
            self.model.update(|m| {
                if let ControlView::Asked { seconds_left } = &mut m.control {
                    *seconds_left = left;
                }
                if let Some(prompt) = &mut m.consent {
                    prompt.seconds_left = left;
                }
            });
        }
        if left == 0 {
            // The session's answer follows as an event.
            self.deadline = None;
        }
    }

    /// The command that carries out `action`, if any: an action that makes
    /// no sense for this app, or that the window handles by itself, gives
    /// none.
    pub fn command(&mut self, action: UiAction) -> Option<Command> {
        match (self.side, action) {
            (_, UiAction::Leave) => Some(Command::Leave),
            (Side::Master { .. }, UiAction::Input(event)) => {
                let active = self.model.read(|m| m.control == ControlView::Active);
                active.then(|| Command::Input(vec![event]))
            }
            (Side::Master { .. }, UiAction::RequestControl) => match self.target {
                Some(peer) => Some(Command::RequestControl(PeerId(peer))),
                None => {
                    self.notice("nobody to control yet: wait until a participant is admitted");
                    None
                }
            },
            (Side::Master { .. }, UiAction::ReleaseControl) => Some(Command::ReleaseControl),
            (Side::Master { .. }, UiAction::Admit(peer)) => {
                self.answered_admission(peer);
                Some(Command::Admit(PeerId(peer)))
            }
            (Side::Master { .. }, UiAction::DenyAdmission(peer)) => {
                self.answered_admission(peer);
                Some(Command::Deny(PeerId(peer)))
            }
            (Side::Master { .. }, UiAction::ToggleViewOnly) => {
                self.model.update(|m| {
                    m.control = match m.control {
                        ControlView::Active => ControlView::ViewOnly,
                        ControlView::ViewOnly => ControlView::Active,
                        other => other,
                    };
                });
                None
            }
            (Side::Participant, UiAction::Accept) => {
                self.answered();
                Some(Command::AllowControl)
            }
            (Side::Participant, UiAction::Deny) => {
                self.answered();
                Some(Command::DenyControl)
            }
            (Side::Participant, UiAction::Stop) => {
                Some(Command::StopControl(ControlEnd::StopButton))
            }
            (Side::Participant, UiAction::ToggleViewOnly) => {
                self.view_only = !self.view_only;
                Some(Command::ViewOnly(self.view_only))
            }
            (Side::Master { .. }, UiAction::Accept | UiAction::Deny | UiAction::Stop)
            | (
                Side::Participant,
                UiAction::Input(_)
                | UiAction::RequestControl
                | UiAction::ReleaseControl
                | UiAction::Admit(_)
                | UiAction::DenyAdmission(_),
            ) => None,
        }
    }

    /// `peer` waits no more: admitted, denied, or gone.
    fn answered_admission(&self, peer: u32) {
        self.model
            .update(|m| m.admissions.retain(|a| a.peer != peer));
    }

    /// The consent prompt was answered: it goes at once.
    fn answered(&mut self) {
        self.deadline = None;
        self.model.update(|m| m.consent = None);
    }

    fn refresh_title(&self) {
        let parts: Vec<String> = [
            (!self.title.is_empty()).then(|| self.title.clone()),
            self.session_code
                .as_ref()
                .map(|code| format!("session code {code}")),
            self.password.as_ref().map(|p| format!("password {p}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let title = parts.join(" · ");
        self.model.update(|m| m.title = title);
    }
}

/// A [`Bridge`] shared between the task that reads the session's events
/// and the thread that runs [`forward_actions`]. Cheap to clone; every
/// clone is the same bridge.
#[derive(Debug, Clone)]
pub struct SharedBridge(Arc<Mutex<Bridge>>);

impl SharedBridge {
    /// Shares `bridge`.
    pub fn new(bridge: Bridge) -> SharedBridge {
        SharedBridge(Arc::new(Mutex::new(bridge)))
    }

    /// Runs `f` on the bridge, holding its lock meanwhile: keep `f` short,
    /// and never wait for anything in it.
    pub fn with<R>(&self, f: impl FnOnce(&mut Bridge) -> R) -> R {
        // A poisoned lock means a panic while updating; what it left is
        // still a state a window can draw.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Carries a window's actions to the session until the window is gone or
/// the session is over (`send` returns `false`), counting the countdown
/// down every [`TICK`] meanwhile. Run it on a thread of its own; `send`
/// may block until the session takes the command.
pub fn forward_actions(
    bridge: &SharedBridge,
    actions: &Receiver<UiAction>,
    mut send: impl FnMut(Command) -> bool,
) {
    loop {
        match actions.recv_timeout(TICK) {
            Ok(action) => {
                if let Some(command) = bridge.with(|b| b.command(action)) {
                    if !send(command) {
                        return;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => bridge.with(|b| b.tick(Instant::now())),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Runs a session whose app shows a window: the window's actions go to the
/// session from a thread of its own (named `thread`), and every event the
/// command line prints also updates the window. Returns the session's exit
/// code, as [`drive_with`] does.
pub async fn drive_with_window(
    running: Running,
    output: Output,
    bridge: SharedBridge,
    from_window: Receiver<UiAction>,
    thread: &str,
) -> u8 {
    let sender = CommandSender::new(&running.handle);
    let forwarding = bridge.clone();
    let spawned = std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || forward_actions(&forwarding, &from_window, |c| sender.send(c)));
    if let Err(e) = spawned {
        eprintln!("the window's buttons will not work: {e}");
    }
    drive_with(running, output, |event| {
        bridge.with(|b| b.apply(event, Instant::now()));
    })
    .await
}

/// "30 fps · 120 KB/s · 12 ms".
fn status_line(fps: u32, bytes_per_s: u64, latency_ms: u64) -> String {
    format!(
        "{fps} fps · {} KB/s · {latency_ms} ms",
        bytes_per_s.saturating_add(500) / 1000
    )
}

/// Whole seconds from `now` to `deadline`, rounded up.
fn seconds_until(deadline: Instant, now: Instant) -> u32 {
    let millis = deadline.saturating_duration_since(now).as_millis();
    u32::try_from(millis.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// "support" → "Support".
fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_client::events::MemberInfo;
    use conclave_media::frame::{Bgra, ScreenSize};
    use conclave_protocol::input::InputEvent;
    use std::sync::mpsc;

    fn member(peer: u32, name: &str, rights: &[&'static str]) -> MemberInfo {
        MemberInfo {
            peer,
            name: name.into(),
            rights: rights.to_vec(),
        }
    }

    fn epoch(members: Vec<MemberInfo>) -> Event {
        Event::Epoch {
            epoch: 2,
            session_code: "1234 5678".into(),
            locked: false,
            members,
        }
    }

    fn control(peer: u32, state: &'static str) -> Event {
        Event::Control {
            peer,
            state,
            reason: "why".into(),
        }
    }

    fn master() -> Bridge {
        Bridge::master(SharedModel::default(), Duration::from_secs(10))
    }

    #[test]
    fn the_sink_publishes_into_the_windows_slot() {
        let screen = LatestFrame::new();
        let mut sink = ScreenSink::new(screen.clone());
        let frame = Frame::filled(ScreenSize::new(4, 2).unwrap(), Bgra::rgb(1, 2, 3));
        sink.show(&frame, 17);
        assert_eq!(screen.take_newer(0), Some((1, frame)));
    }

    #[test]
    fn the_master_sees_the_session_its_members_and_figures() {
        let mut b = master();
        let now = Instant::now();
        b.apply(
            &Event::SessionOpened {
                session: "123456789".into(),
                kind: "support",
            },
            now,
        );
        b.apply(
            &epoch(vec![
                member(1, "Moderator", &[]),
                member(2, "Ada", &["presenter"]),
            ]),
            now,
        );
        b.apply(
            &Event::ScreenStats {
                from: 2,
                fps: 30,
                bytes_per_s: 120_400,
                latency_ms: 12,
                latency_max_ms: 40,
                width: 1280,
                height: 800,
            },
            now,
        );
        let m = b.model().snapshot();
        assert_eq!(
            m.title,
            "Support session 123456789 · session code 1234 5678"
        );
        assert_eq!(m.status_line, "30 fps · 120 KB/s · 12 ms");
        // The master itself is not listed: the others are.
        assert_eq!(
            m.members,
            vec![MemberView {
                peer: 2,
                name: "Ada".into(),
                rights: vec!["presenter".into()],
            }]
        );
        b.apply(
            &Event::Rights {
                peer: 2,
                rights: vec!["presenter", "control"],
            },
            now,
        );
        assert_eq!(
            b.model().snapshot().members[0].rights,
            vec!["presenter".to_string(), "control".into()]
        );
        b.apply(&Event::Presenter { peer: None }, now);
        assert_eq!(b.model().snapshot().status_line, "");
    }

    /// R23, R24: files on their way have progress bars, updated in place;
    /// a file shared by someone else gets one only once it is fetched.
    #[test]
    fn transfers_show_as_progress_bars() {
        let mut b = master();
        let now = Instant::now();
        b.apply(
            &epoch(vec![member(1, "Moderator", &[]), member(2, "Ada", &[])]),
            now,
        );
        let file = |state, done| Event::File {
            peer: 2,
            id: 1,
            direction: "send",
            state,
            done,
            size: 1000,
            detail: String::new(),
        };
        let shared = |state, done| Event::Shared {
            id: "00000000000000ff".into(),
            name: "slides.pdf".into(),
            size: 4000,
            from: "Ada".into(),
            state,
            done,
            detail: String::new(),
        };
        b.apply(&file("accepted", 0), now);
        b.apply(&file("progress", 500), now);
        b.apply(&shared("available", 4000), now);
        let m = b.model().snapshot();
        assert_eq!(m.transfers.len(), 1, "{:?}", m.transfers);
        let bar = &m.transfers[0];
        assert_eq!(bar.label, "Sending file 1 to Ada");
        assert_eq!((bar.done, bar.size, bar.fraction()), (500, 1000, 0.5));
        // Progress updates the bar, not the notices.
        assert!(!m.notices.iter().any(|n| n.contains("progress")));
        b.apply(&shared("fetching", 0), now);
        b.apply(&shared("progress", 1000), now);
        b.apply(&file("complete", 1000), now);
        let m = b.model().snapshot();
        let labels: Vec<(&str, f32)> = m
            .transfers
            .iter()
            .map(|t| (t.label.as_str(), t.fraction()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("Sending file 1 to Ada", 1.0),
                ("Fetching slides.pdf", 0.25)
            ]
        );
    }

    #[test]
    fn waiting_participants_are_admitted_or_denied_from_the_window() {
        let mut b = master();
        let now = Instant::now();
        b.show_password("k3y");
        for (peer, name) in [(2, "Ada"), (3, "Bob")] {
            b.apply(
                &Event::AdmissionRequested {
                    peer,
                    name: name.into(),
                    host: "pc".into(),
                    safety_code: "1111 2222".into(),
                },
                now,
            );
        }
        let m = b.model().snapshot();
        assert_eq!(m.title, "password k3y");
        assert_eq!(
            m.admissions.iter().map(|a| a.peer).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(m.admissions[0].safety_code, "1111 2222");
        assert_eq!(
            b.command(UiAction::Admit(2)),
            Some(Command::Admit(PeerId(2)))
        );
        assert_eq!(
            b.command(UiAction::DenyAdmission(3)),
            Some(Command::Deny(PeerId(3)))
        );
        assert!(b.model().snapshot().admissions.is_empty());
        // One who gives up waiting leaves the list too.
        b.apply(
            &Event::AdmissionRequested {
                peer: 4,
                name: "Cy".into(),
                host: "pc".into(),
                safety_code: "3333 4444".into(),
            },
            now,
        );
        b.apply(
            &Event::JoinFailed {
                peer: Some(4),
                reason: "gone".into(),
            },
            now,
        );
        assert!(b.model().snapshot().admissions.is_empty());
    }

    #[test]
    fn request_control_asks_the_presenting_or_last_admitted_participant() {
        let mut b = master();
        let now = Instant::now();
        // Nobody yet: no command, and the window says why.
        assert_eq!(b.command(UiAction::RequestControl), None);
        assert!(b.model().snapshot().notices[0].contains("nobody to control"));
        b.apply(
            &Event::Admitted {
                peer: 3,
                name: "Ada".into(),
                host: "pc".into(),
                password_verified: true,
            },
            now,
        );
        assert_eq!(
            b.command(UiAction::RequestControl),
            Some(Command::RequestControl(PeerId(3)))
        );
        b.apply(
            &epoch(vec![
                member(1, "Mo", &[]),
                member(3, "Ada", &[]),
                member(4, "Cy", &[]),
            ]),
            now,
        );
        b.apply(&Event::Presenter { peer: Some(4) }, now);
        b.apply(
            &Event::Admitted {
                peer: 5,
                name: "Bob".into(),
                host: "pc".into(),
                password_verified: true,
            },
            now,
        );
        // The presenter wins over a later admission.
        assert_eq!(b.control_target(), Some(PeerId(4)));
        b.apply(
            &Event::Left {
                peer: 4,
                name: "Cy".into(),
                reason: "left",
            },
            now,
        );
        // Gone: the last participant still listed is asked instead.
        assert_eq!(b.control_target(), Some(PeerId(3)));
    }

    #[test]
    fn the_masters_control_buttons_become_commands() {
        let mut b = master();
        let now = Instant::now();
        let click = InputEvent::MoveTo { x: 3, y: 4 };
        // Input is sent only while control is active, not while watching only.
        assert_eq!(b.command(UiAction::Input(click.clone())), None);
        b.apply(&control(2, "asked"), now);
        assert_eq!(
            b.model().snapshot().control,
            ControlView::Asked { seconds_left: 10 }
        );
        b.tick(now + Duration::from_millis(3_500));
        assert_eq!(
            b.model().snapshot().control,
            ControlView::Asked { seconds_left: 7 }
        );
        b.apply(&control(2, "active"), now);
        assert_eq!(b.model().snapshot().control, ControlView::Active);
        assert_eq!(
            b.command(UiAction::Input(click.clone())),
            Some(Command::Input(vec![click.clone()]))
        );
        assert_eq!(b.command(UiAction::ToggleViewOnly), None);
        assert_eq!(b.model().snapshot().control, ControlView::ViewOnly);
        assert_eq!(b.command(UiAction::Input(click.clone())), None);
        assert_eq!(b.command(UiAction::ToggleViewOnly), None);
        assert_eq!(b.model().snapshot().control, ControlView::Active);
        assert_eq!(
            b.command(UiAction::ReleaseControl),
            Some(Command::ReleaseControl)
        );
        b.apply(&control(2, "ended"), now);
        assert_eq!(b.model().snapshot().control, ControlView::Off);
        assert_eq!(b.command(UiAction::Leave), Some(Command::Leave));
        // The banner's buttons mean nothing to the master.
        assert_eq!(b.command(UiAction::Stop), None);
        assert_eq!(b.command(UiAction::Accept), None);
    }

    #[test]
    fn the_participant_is_asked_counts_down_and_answers() {
        let mut b = Bridge::participant(SharedModel::default());
        let now = Instant::now();
        b.apply(
            &Event::Admitted {
                peer: 2,
                name: "Ada".into(),
                host: String::new(),
                password_verified: false,
            },
            now,
        );
        b.apply(
            &epoch(vec![member(1, "Mo", &[]), member(2, "Ada", &["control"])]),
            now,
        );
        // The banner lists the others, not the participant itself.
        let m = b.model().snapshot();
        assert_eq!(m.members.len(), 1);
        assert_eq!(m.members[0].name, "Mo");
        b.apply(
            &Event::ControlRequested {
                by: "Mo".into(),
                seconds: 15,
                default: "deny",
            },
            now,
        );
        assert_eq!(
            b.model().snapshot().consent,
            Some(ConsentPrompt {
                who: "Mo".into(),
                seconds_left: 15,
                default_accept: false,
            })
        );
        b.tick(now + Duration::from_secs(6));
        assert_eq!(b.model().snapshot().consent.unwrap().seconds_left, 9);
        assert_eq!(b.command(UiAction::Accept), Some(Command::AllowControl));
        assert_eq!(b.model().snapshot().consent, None);
        b.apply(&control(2, "active"), now);
        assert_eq!(b.model().snapshot().control, ControlView::Active);
        assert_eq!(
            b.command(UiAction::Stop),
            Some(Command::StopControl(ControlEnd::StopButton))
        );
        b.apply(&control(2, "ended"), now);
        assert_eq!(b.model().snapshot().control, ControlView::Off);
        assert_eq!(b.command(UiAction::Deny), Some(Command::DenyControl));
        assert_eq!(
            b.command(UiAction::ToggleViewOnly),
            Some(Command::ViewOnly(true))
        );
        assert_eq!(
            b.command(UiAction::ToggleViewOnly),
            Some(Command::ViewOnly(false))
        );
        // The viewer's buttons mean nothing to the participant.
        assert_eq!(b.command(UiAction::RequestControl), None);
        assert_eq!(
            b.command(UiAction::Input(InputEvent::MoveTo { x: 0, y: 0 })),
            None
        );
    }

    #[test]
    fn notices_and_the_end_reach_the_model() {
        let mut b = Bridge::participant(SharedModel::default());
        let now = Instant::now();
        b.apply(
            &Event::Chat {
                from: 1,
                name: "Mo".into(),
                text: "hello".into(),
            },
            now,
        );
        b.apply(
            &Event::Recording {
                active: true,
                by: "Mo".into(),
            },
            now,
        );
        b.apply(
            &Event::File {
                peer: 1,
                id: 1,
                direction: "receive",
                state: "progress",
                done: 5,
                size: 10,
                detail: String::new(),
            },
            now,
        );
        b.apply(
            &Event::Warning {
                message: "frames altered".into(),
            },
            now,
        );
        b.apply(
            &Event::Ended {
                reason: "the moderator ended the session".into(),
            },
            now,
        );
        let m = b.model().snapshot();
        assert_eq!(
            m.notices,
            vec![
                "Mo: hello".to_string(),
                "Mo is recording this session".into(),
                "WARNING: frames altered".into(),
            ]
        );
        assert_eq!(m.ended.as_deref(), Some("the moderator ended the session"));
    }

    #[test]
    fn actions_are_forwarded_until_the_window_is_gone() {
        let bridge = SharedBridge::new(Bridge::participant(SharedModel::default()));
        let (tx, rx) = mpsc::channel();
        tx.send(UiAction::Stop).unwrap();
        tx.send(UiAction::RequestControl).unwrap();
        tx.send(UiAction::Leave).unwrap();
        drop(tx);
        let mut sent = Vec::new();
        forward_actions(&bridge, &rx, |c| {
            sent.push(c);
            true
        });
        assert_eq!(
            sent,
            vec![Command::StopControl(ControlEnd::StopButton), Command::Leave]
        );
    }

    #[test]
    fn forwarding_stops_when_the_session_is_over() {
        let bridge = SharedBridge::new(Bridge::participant(SharedModel::default()));
        let (tx, rx) = mpsc::channel();
        tx.send(UiAction::Deny).unwrap();
        tx.send(UiAction::Leave).unwrap();
        let mut sent = 0;
        // The sender stays alive: only `false` from `send` ends the loop.
        forward_actions(&bridge, &rx, |_| {
            sent += 1;
            false
        });
        assert_eq!(sent, 1);
        drop(tx);
    }
}
