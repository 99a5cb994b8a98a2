//! The master's window (R21, R22): the remote screen, who waits to join
//! (with the safety code to compare, and Admit and Deny), who is connected,
//! the figures of the stream, and the remote-control buttons.
//!
//! ```text
//! ┌──────────────────────────────────────────────────────────────┐
//! │ title · 30 fps · 120 KB/s · 12 ms   [Request control] [Fit|1:1] │
//! ├───────────────────────────────────────────────┬──────────────┤
//! │                                               │ Waiting…     │
//! │                                               │ Connected    │
//! │          the remote screen                    │  Ada: view…  │
//! │   (scaled to fit, or 1:1 with scroll bars)    │ Notices      │
//! │                                               │  …            │
//! └───────────────────────────────────────────────┴──────────────┘
//! ```
//!
//! The picture is one texture, uploaded again only when the
//! [`LatestFrame`] holds a newer frame than the one shown. While control
//! is [`Active`](ControlView::Active), pointer, wheel, text and keys over
//! the picture are sent as [`UiAction::Input`] in remote pixels (see
//! `input.rs` for the rules); in every other state nothing is sent.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use conclave_media::frame::Frame;
use conclave_protocol::input::InputEvent;
use eframe::egui::{
    self, emath::GuiRounding as _, Color32, ColorImage, Pos2, Rect, RichText, Sense, TextureFilter,
    TextureHandle, TextureOptions, TextureWrapMode, Vec2,
};

use crate::input::{Mapping, Translator};
use crate::latest::LatestFrame;
use crate::model::{ControlView, Model, SharedModel};
use crate::window::{self, Closing, Scale, UiAction, UiError, WindowOptions};

/// Nearest-pixel when the picture is enlarged or shown 1:1 (sharp, exact),
/// smoothed when it is shrunk to fit.
const TEXTURE: TextureOptions = TextureOptions {
    magnification: TextureFilter::Nearest,
    minification: TextureFilter::Linear,
    wrap_mode: TextureWrapMode::ClampToEdge,
    mipmap_mode: None,
};

/// Shows the master's viewer until it is closed or the session ends, on
/// the calling thread; then sends [`UiAction::Leave`].
///
/// `screen` is where the decoder publishes the remote screen; `model` is
/// kept up to date by the app; the user's actions arrive on `actions`.
/// Every window of a process must run on the same thread (see the crate
/// documentation).
pub fn run_viewer(
    options: WindowOptions,
    model: SharedModel,
    screen: LatestFrame,
    actions: Sender<UiAction>,
) -> Result<(), UiError> {
    let viewport = egui::ViewportBuilder::default().with_min_inner_size([480.0, 320.0]);
    let result = window::run(&options, viewport, &actions, |ctx| {
        model.set_repaint(Some(ctx.clone()));
        screen.set_repaint(Some(ctx.clone()));
        Viewer {
            model: model.clone(),
            screen: screen.clone(),
            actions: actions.clone(),
            scale: options.scale,
            seen: 0,
            image: Arc::new(ColorImage::filled([1, 1], Color32::BLACK)),
            texture: None,
            translator: Translator::default(),
            was_active: false,
            closing: Closing::new(&options),
        }
    });
    model.set_repaint(None);
    screen.set_repaint(None);
    result
}

struct Viewer {
    model: SharedModel,
    screen: LatestFrame,
    actions: Sender<UiAction>,
    scale: Scale,
    /// The generation of the frame in the texture.
    seen: u64,
    /// The picture last uploaded; its pixel buffer is reused once the
    /// renderer has let go of it.
    image: Arc<ColorImage>,
    texture: Option<TextureHandle>,
    translator: Translator,
    /// Whether control was active at the last frame.
    was_active: bool,
    closing: Closing,
}

impl eframe::App for Viewer {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Here rather than in `ui`, which is not called while minimised.
        let ended = self.model.snapshot().ended.is_some();
        self.closing.tick(ctx, ended);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let model = self.model.snapshot();
        self.refresh_texture(&ctx);

        egui::Panel::top("viewer-bar").show(ui, |ui| self.top_bar(ui, &model));
        egui::Panel::right("viewer-people")
            .default_size(220.0)
            .show(ui, |ui| {
                for action in people(ui, &model) {
                    self.send(action);
                }
            });
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE.fill(Color32::from_gray(20)))
            .show(ui, |ui| self.screen_area(ui, &model));
    }
}

impl Viewer {
    fn send(&self, action: UiAction) {
        // The app gone means the window closes soon; nothing to tell.
        let _ = self.actions.send(action);
    }

    /// Uploads the newest frame if one arrived since the last upload.
    fn refresh_texture(&mut self, ctx: &egui::Context) {
        let Some((generation, frame)) = self.screen.take_newer(self.seen) else {
            return;
        };
        self.seen = generation;
        bgra_into(Arc::make_mut(&mut self.image), &frame);
        self.screen.recycle(frame);
        let image = egui::ImageData::Color(Arc::clone(&self.image));
        match &mut self.texture {
            Some(texture) => texture.set(image, TEXTURE),
            None => self.texture = Some(ctx.load_texture("remote screen", image, TEXTURE)),
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui, model: &Model) {
        ui.horizontal_wrapped(|ui| {
            ui.strong(&model.title);
            if !model.status_line.is_empty() {
                ui.separator();
                ui.monospace(&model.status_line);
            }
            ui.separator();
            match model.control {
                _ if model.replay => {}
                ControlView::Off => {
                    if ui.button("Request control").clicked() {
                        self.send(UiAction::RequestControl);
                    }
                }
                ControlView::Asked { seconds_left } => {
                    ui.label(format!(
                        "Control asked for: waiting for consent ({seconds_left} s)"
                    ));
                    if ui.button("Cancel").clicked() {
                        self.send(UiAction::ReleaseControl);
                    }
                }
                ControlView::Active | ControlView::ViewOnly => {
                    if model.control == ControlView::Active {
                        ui.label(RichText::new("You control this screen").color(Color32::ORANGE));
                    }
                    if ui.button("Release control").clicked() {
                        self.send(UiAction::ReleaseControl);
                    }
                    if ui
                        .selectable_label(model.control == ControlView::ViewOnly, "View only")
                        .clicked()
                    {
                        self.send(UiAction::ToggleViewOnly);
                    }
                }
            }
            ui.separator();
            ui.selectable_value(&mut self.scale, Scale::Fit, "Fit");
            ui.selectable_value(&mut self.scale, Scale::OneToOne, "1:1");
        });
    }

    fn screen_area(&mut self, ui: &mut egui::Ui, model: &Model) {
        if let Some(reason) = &model.ended {
            ui.centered_and_justified(|ui| {
                ui.label(RichText::new(format!("The session ended: {reason}")).size(20.0));
            });
            return;
        }
        let Some(texture) = &self.texture else {
            ui.centered_and_justified(|ui| {
                ui.label("Waiting for the shared screen…");
            });
            return;
        };
        let [width, height] = texture.size();
        let texture = texture.id();
        let pixels_per_point = ui.ctx().pixels_per_point();
        // The picture's size when each remote pixel is one screen pixel.
        let one_to_one = Vec2::new(width as f32, height as f32) / pixels_per_point;
        let active = model.control == ControlView::Active;

        let drawn = match self.scale {
            Scale::Fit => {
                let area = ui.available_rect_before_wrap();
                let factor = (area.width() / one_to_one.x).min(area.height() / one_to_one.y);
                let rect = Rect::from_center_size(area.center(), one_to_one * factor.max(0.0));
                let response = ui.allocate_rect(area, Sense::click());
                Some(self.draw(ui, texture, rect, area, response, active))
            }
            Scale::OneToOne => {
                egui::ScrollArea::both()
                    .auto_shrink(false)
                    .scroll_source(egui::containers::scroll_area::ScrollSource {
                        // While controlling, the wheel is for the remote side.
                        mouse_wheel: !active,
                        ..egui::containers::scroll_area::ScrollSource::SCROLL_BAR
                    })
                    .show(ui, |ui| {
                        let (rect, response) = ui.allocate_exact_size(one_to_one, Sense::click());
                        // Whole screen pixels, so that each remote pixel
                        // lands on exactly one.
                        let rect = Rect::from_min_size(
                            rect.min.round_to_pixels(pixels_per_point),
                            one_to_one,
                        );
                        let visible = ui.clip_rect();
                        self.draw(ui, texture, rect, visible, response, active)
                    })
                    .inner
                    .into()
            }
        };

        if let Some(map) = drawn {
            self.forward_input(ui, &map, active);
        }
    }

    /// Paints the picture at `rect`, seen through `visible`, and returns
    /// where it is.
    fn draw(
        &self,
        ui: &egui::Ui,
        texture: egui::TextureId,
        rect: Rect,
        visible: Rect,
        response: egui::Response,
        active: bool,
    ) -> Mapping {
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        ui.painter().image(texture, rect, uv, Color32::WHITE);
        if active {
            // Keys go to the picture rather than to the buttons around it,
            // Tab, arrows and Escape included.
            response.request_focus();
            ui.memory_mut(|m| {
                m.set_focus_lock_filter(
                    response.id,
                    egui::EventFilter {
                        tab: true,
                        horizontal_arrows: true,
                        vertical_arrows: true,
                        escape: true,
                    },
                );
            });
            ui.painter().rect_stroke(
                rect,
                0.0,
                egui::Stroke::new(1.0, Color32::ORANGE),
                egui::StrokeKind::Outside,
            );
        }
        let (width, height) = self.image_size();
        Mapping {
            rect,
            visible,
            width,
            height,
        }
    }

    fn image_size(&self) -> (u32, u32) {
        let [w, h] = self.image.size;
        (
            u32::try_from(w).unwrap_or(u32::MAX),
            u32::try_from(h).unwrap_or(u32::MAX),
        )
    }

    fn forward_input(&mut self, ui: &egui::Ui, map: &Mapping, active: bool) {
        if !active {
            if self.was_active {
                self.translator.reset();
            }
            self.was_active = false;
            return;
        }
        self.was_active = true;
        let events = ui.input(|i| i.events.clone());
        let mut out: Vec<InputEvent> = Vec::new();
        self.translator.translate(&events, map, &mut out);
        for event in out {
            self.send(UiAction::Input(event));
        }
    }
}

/// Who waits to join, who is connected with which rights, and the last
/// notices; returns the admissions the user answered.
fn people(ui: &mut egui::Ui, model: &Model) -> Vec<UiAction> {
    let mut answered = Vec::new();
    if !model.admissions.is_empty() {
        ui.heading("Waiting to join");
        for waiting in &model.admissions {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_min_width(ui.available_width());
                ui.strong(format!("{} on {}", waiting.name, waiting.host));
                ui.label(format!("safety code {}", waiting.safety_code));
                ui.weak("Admit only if the participant reads you the same code.");
                ui.horizontal(|ui| {
                    if ui.button("Admit").clicked() {
                        answered.push(UiAction::Admit(waiting.peer));
                    }
                    if ui.button("Deny").clicked() {
                        answered.push(UiAction::DenyAdmission(waiting.peer));
                    }
                });
            });
        }
        ui.separator();
    }
    ui.heading("Connected");
    if model.members.is_empty() {
        ui.weak("No one else");
    }
    for member in &model.members {
        ui.horizontal_wrapped(|ui| {
            ui.strong(&member.name);
            let rights = if member.rights.is_empty() {
                "no rights".to_string()
            } else {
                member.rights.join(", ")
            };
            ui.weak(rights);
        });
    }
    if !model.transfers.is_empty() {
        ui.separator();
        ui.heading("Files");
        window::progress_bars(ui, &model.transfers);
    }
    if !model.notices.is_empty() {
        ui.separator();
        ui.heading("Notices");
        for line in &model.notices {
            ui.label(line);
        }
    }
    answered
}

/// Converts a BGRA frame into `image` (RGBA, opaque), reusing its pixels
/// when the size is unchanged.
pub(crate) fn bgra_into(image: &mut ColorImage, frame: &Frame) {
    let size = [frame.width() as usize, frame.height() as usize];
    if image.size != size {
        *image = ColorImage::filled(size, Color32::BLACK);
    }
    let (pixels, _) = frame.as_bytes().as_chunks::<4>();
    for (to, &[b, g, r, _]) in image.pixels.iter_mut().zip(pixels) {
        // The captured alpha means nothing: a screen is opaque.
        *to = Color32::from_rgb(r, g, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_media::frame::{Bgra, Rect as PixelRect, ScreenSize};

    #[test]
    fn bgra_frames_become_opaque_rgba_images() {
        let mut frame = Frame::filled(ScreenSize::new(3, 2).unwrap(), Bgra::rgb(10, 20, 30));
        frame.fill_rect(PixelRect::new(2, 1, 1, 1), Bgra([1, 2, 3, 0]));
        let mut image = ColorImage::filled([1, 1], Color32::BLACK);
        bgra_into(&mut image, &frame);
        assert_eq!(image.size, [3, 2]);
        assert_eq!(image.pixels[0], Color32::from_rgb(10, 20, 30));
        assert_eq!(image.pixels[5], Color32::from_rgb(3, 2, 1));
        // Same size again: converted in place.
        let before = image.pixels.as_ptr();
        bgra_into(&mut image, &frame);
        assert_eq!(image.pixels.as_ptr(), before);
    }
}
