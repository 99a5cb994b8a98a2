//! The participant's banner (R22): a small window, always on top, that
//! shows while anyone is connected who that is and with which rights,
//! says loudly when remote control is active, offers a Stop button that
//! ends it at once, and asks for consent when someone wants control.
//!
//! ```text
//! ┌ Conclave ─────────────────────────┐
//! │ Ada Lovelace: view, control        │
//! │ ▌Remote control active▐            │  (white on red)
//! │ Ada asks to control this computer  │  (while asked)
//! │ Control starts in 9 s unless you   │
//! │ deny.          [Allow] [Deny]      │
//! │ [             Stop              ]  │  (big, red)
//! │ [■■■■■■      ] Receiving file 1 …  │  (the newest file on its way)
//! │ notices…                           │
//! └────────────────────────────────────┘
//! ```
//!
//! The banner hides itself while no one is connected and no question is
//! open, and shows again as soon as someone is (the app only updates the
//! model). Its size is fixed: it is meant to stay small in a corner.

use std::sync::mpsc::Sender;

use eframe::egui::{self, Color32, RichText, Vec2};

use crate::model::{ControlView, Model, SharedModel};
use crate::window::{self, Closing, UiAction, UiError, WindowOptions};

/// The Stop button's red.
pub const STOP_RED: Color32 = Color32::from_rgb(200, 24, 24);
/// The background of "Remote control active".
pub const ACTIVE_RED: Color32 = Color32::from_rgb(160, 0, 40);
/// The Allow button's green.
pub const ALLOW_GREEN: Color32 = Color32::from_rgb(24, 130, 48);

/// Shows the participant's banner until it is closed or the session ends,
/// on the calling thread; then sends [`UiAction::Leave`].
///
/// `model` is kept up to date by the app; Stop, Allow and Deny arrive on
/// `actions`. Every window of a process must run on the same thread (see
/// the crate documentation).
pub fn run_banner(
    options: WindowOptions,
    model: SharedModel,
    actions: Sender<UiAction>,
) -> Result<(), UiError> {
    let viewport = egui::ViewportBuilder::default()
        .with_always_on_top()
        .with_resizable(false)
        .with_min_inner_size(options.size)
        .with_max_inner_size(options.size);
    let result = window::run(&options, viewport, &actions, |ctx| {
        model.set_repaint(Some(ctx.clone()));
        Banner {
            model: model.clone(),
            actions: actions.clone(),
            closing: Closing::new(&options),
            painted: false,
            shown: true,
        }
    });
    model.set_repaint(None);
    result
}

struct Banner {
    model: SharedModel,
    actions: Sender<UiAction>,
    closing: Closing,
    /// Whether a first frame was painted (eframe shows the window then).
    painted: bool,
    /// Whether the window was last asked to be shown.
    shown: bool,
}

/// Whether the banner has anything to show.
fn wanted(model: &Model) -> bool {
    !model.members.is_empty() || model.consent.is_some() || model.ended.is_some()
}

impl eframe::App for Banner {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let model = self.model.snapshot();
        self.closing.tick(ctx, model.ended.is_some());
        let want = wanted(&model);
        if self.painted && want != self.shown {
            ctx.send_viewport_cmd(egui::ViewportCommand::Visible(want));
            self.shown = want;
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.painted = true;
        let model = self.model.snapshot();
        egui::CentralPanel::default().show(ui, |ui| self.contents(ui, &model));
    }
}

impl Banner {
    fn send(&self, action: UiAction) {
        // The app gone means the window closes soon; nothing to tell.
        let _ = self.actions.send(action);
    }

    fn contents(&self, ui: &mut egui::Ui, model: &Model) {
        if let Some(reason) = &model.ended {
            ui.heading("The session ended");
            ui.label(reason);
            return;
        }
        if !model.title.is_empty() {
            ui.strong(&model.title);
        }
        if model.members.is_empty() {
            ui.weak("No one is connected.");
        }
        for member in &model.members {
            let rights = if member.rights.is_empty() {
                "no rights".to_string()
            } else {
                member.rights.join(", ")
            };
            ui.label(format!("{} is connected: {rights}", member.name));
        }

        match model.control {
            ControlView::Active => alarm(ui, "Remote control active"),
            ControlView::ViewOnly => {
                ui.label(RichText::new("Control granted, viewing only").strong());
            }
            ControlView::Asked { .. } | ControlView::Off => {}
        }

        if let Some(prompt) = &model.consent {
            ui.add_space(4.0);
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_min_width(ui.available_width());
                ui.label(
                    RichText::new(format!("{} asks to control this computer", prompt.who)).strong(),
                );
                ui.label(if prompt.default_accept {
                    format!(
                        "Control starts in {} s unless you deny.",
                        prompt.seconds_left
                    )
                } else {
                    format!("Refused in {} s unless you allow.", prompt.seconds_left)
                });
                ui.horizontal(|ui| {
                    let allow = egui::Button::new(RichText::new("Allow").color(Color32::WHITE))
                        .fill(ALLOW_GREEN)
                        .min_size(Vec2::new(90.0, 28.0));
                    if ui.add(allow).clicked() {
                        self.send(UiAction::Accept);
                    }
                    let deny = egui::Button::new("Deny").min_size(Vec2::new(90.0, 28.0));
                    if ui.add(deny).clicked() {
                        self.send(UiAction::Deny);
                    }
                });
            });
        }

        ui.add_space(6.0);
        let stop = egui::Button::new(
            RichText::new("Stop")
                .color(Color32::WHITE)
                .size(22.0)
                .strong(),
        )
        .fill(STOP_RED);
        if ui
            .add_sized(Vec2::new(ui.available_width(), 44.0), stop)
            .on_hover_text("End remote control now")
            .clicked()
        {
            self.send(UiAction::Stop);
        }

        // The newest file on its way: the banner stays small.
        if let Some(newest) = model.transfers.last() {
            ui.add_space(4.0);
            window::progress_bars(ui, std::slice::from_ref(newest));
        }
        if let Some(last) = model.notices.last() {
            ui.add_space(4.0);
            ui.weak(last);
        }
    }
}

/// A line in white on red, the width of the banner.
fn alarm(ui: &mut egui::Ui, text: &str) {
    egui::Frame::new()
        .fill(ACTIVE_RED)
        .inner_margin(6.0)
        .show(ui, |ui| {
            ui.set_min_width(ui.available_width());
            ui.label(
                RichText::new(text)
                    .color(Color32::WHITE)
                    .size(18.0)
                    .strong(),
            );
        });
}
