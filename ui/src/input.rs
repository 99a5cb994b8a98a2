//! The viewer's input for the remote desktop (R22): egui's pointer, wheel,
//! text and key events over the shown screen, turned into
//! [`InputEvent`]s in the remote screen's pixels.
//!
//! - The pointer counts only over the picture: a position is mapped back
//!   through the picture's rectangle (whatever its scale) to a remote pixel.
//!   A button pressed over the picture is released there too, even if the
//!   pointer left it meanwhile (the position is then clamped to the edge),
//!   so that a drag never leaves a button held down remotely.
//! - Wheel turns, over the picture, are summed and sent in whole notches.
//! - Typed text is sent as text (the remote desktop types it whatever its
//!   keyboard layout); keys that are not text ([`NamedKey`]) are sent as a
//!   press and a release, wrapped in the Shift, Control and Alt held at the
//!   time, so that no modifier stays down remotely. Control with a letter
//!   or digit (Ctrl+C…) is sent the same way, the letter as text. Alt with a
//!   letter alone reaches the remote desktop as the letter only.

use conclave_protocol::bounded::{prefix, BoundedString};
use conclave_protocol::input::{InputEvent, MouseButton, NamedKey, MAX_TEXT};
use eframe::egui::{self, Key, Modifiers, MouseWheelUnit, Pos2, Rect, Vec2};

/// Points of a smooth (touchpad) scroll that make one wheel notch.
const POINTS_PER_NOTCH: f32 = 50.0;
/// Notches in one page of scrolling.
const NOTCHES_PER_PAGE: f32 = 10.0;

/// Where the remote screen is drawn: `rect` in the window's points shows
/// `width × height` remote pixels, of which the part inside `visible` can
/// be seen (the rest is scrolled away).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Mapping {
    pub(crate) rect: Rect,
    pub(crate) visible: Rect,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

impl Mapping {
    /// The remote pixel under `pos`, if `pos` is over the visible picture.
    pub(crate) fn remote_pixel(&self, pos: Pos2) -> Option<(u16, u16)> {
        if self.rect.intersect(self.visible).contains(pos) {
            Some(self.clamped(pos))
        } else {
            None
        }
    }

    /// The remote pixel under `pos`, or the nearest one on the visible
    /// picture's edge.
    pub(crate) fn clamped(&self, pos: Pos2) -> (u16, u16) {
        let seen = self.rect.intersect(self.visible);
        let pos = if seen.is_positive() {
            seen.clamp(pos)
        } else {
            pos
        };
        fn axis(at: f32, start: f32, length: f32, pixels: u32) -> u16 {
            let last = pixels.saturating_sub(1);
            let fraction = if length > 0.0 {
                (at - start) / length
            } else {
                0.0
            };
            // `as` saturates (and maps NaN to 0): any position lands on the
            // picture.
            let pixel = ((fraction * pixels as f32).floor() as u32).min(last);
            u16::try_from(pixel).unwrap_or(u16::MAX)
        }
        (
            axis(pos.x, self.rect.min.x, self.rect.width(), self.width),
            axis(pos.y, self.rect.min.y, self.rect.height(), self.height),
        )
    }
}

/// Turns one frame's egui events into remote input; keeps what must last
/// between frames (buttons held, the pointer's last position, wheel
/// fractions).
#[derive(Debug, Default)]
pub(crate) struct Translator {
    last_move: Option<(u16, u16)>,
    held: Vec<MouseButton>,
    hovering: bool,
    wheel: Vec2,
}

impl Translator {
    /// Forgets held buttons and partial wheel turns (control ended).
    pub(crate) fn reset(&mut self) {
        *self = Translator::default();
    }

    /// Appends to `out` the remote input that `events` mean over `map`.
    pub(crate) fn translate(
        &mut self,
        events: &[egui::Event],
        map: &Mapping,
        out: &mut Vec<InputEvent>,
    ) {
        for event in events {
            match event {
                egui::Event::PointerMoved(pos) => {
                    let over = map.remote_pixel(*pos);
                    self.hovering = over.is_some();
                    let to = if self.held.is_empty() {
                        over
                    } else {
                        Some(map.clamped(*pos))
                    };
                    if let Some(to) = to {
                        self.move_to(to, out);
                    }
                }
                egui::Event::PointerGone => self.hovering = false,
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } => {
                    let Some(button) = mouse_button(*button) else {
                        continue;
                    };
                    if *pressed {
                        if let Some(at) = map.remote_pixel(*pos) {
                            self.move_to(at, out);
                            if !self.held.contains(&button) {
                                self.held.push(button);
                            }
                            out.push(InputEvent::Button {
                                button,
                                pressed: true,
                            });
                        }
                    } else if let Some(i) = self.held.iter().position(|b| *b == button) {
                        self.held.remove(i);
                        self.move_to(map.clamped(*pos), out);
                        out.push(InputEvent::Button {
                            button,
                            pressed: false,
                        });
                    }
                }
                egui::Event::MouseWheel { unit, delta, .. } if self.hovering => {
                    self.wheel += match unit {
                        MouseWheelUnit::Line => *delta,
                        MouseWheelUnit::Point => *delta / POINTS_PER_NOTCH,
                        MouseWheelUnit::Page => *delta * NOTCHES_PER_PAGE,
                    };
                    let whole = Vec2::new(
                        self.wheel.x.trunc().clamp(-127.0, 127.0),
                        self.wheel.y.trunc().clamp(-127.0, 127.0),
                    );
                    if whole != Vec2::ZERO {
                        self.wheel -= whole;
                        // egui's delta moves the content (positive: down);
                        // a positive notch scrolls the view down, which
                        // moves the content up.
                        out.push(InputEvent::Wheel {
                            dx: -(whole.x as i8),
                            dy: -(whole.y as i8),
                        });
                    }
                }
                egui::Event::Text(text) => push_text(text, out),
                egui::Event::Key {
                    key,
                    pressed: true,
                    modifiers,
                    ..
                } => {
                    if let Some(named) = named_key(*key) {
                        chord(*modifiers, out, |out| {
                            out.push(InputEvent::Key {
                                key: named,
                                pressed: true,
                            });
                            out.push(InputEvent::Key {
                                key: named,
                                pressed: false,
                            });
                        });
                    } else if modifiers.ctrl {
                        if let Some(text) = shortcut_text(*key) {
                            chord(*modifiers, out, |out| push_text(&text, out));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn move_to(&mut self, (x, y): (u16, u16), out: &mut Vec<InputEvent>) {
        if self.last_move != Some((x, y)) {
            self.last_move = Some((x, y));
            out.push(InputEvent::MoveTo { x, y });
        }
    }
}

fn mouse_button(button: egui::PointerButton) -> Option<MouseButton> {
    match button {
        egui::PointerButton::Primary => Some(MouseButton::Left),
        egui::PointerButton::Secondary => Some(MouseButton::Right),
        egui::PointerButton::Middle => Some(MouseButton::Middle),
        egui::PointerButton::Extra1 | egui::PointerButton::Extra2 => None,
    }
}

/// The remote key for a key that types no text.
fn named_key(key: Key) -> Option<NamedKey> {
    Some(match key {
        Key::Enter => NamedKey::Return,
        Key::Tab => NamedKey::Tab,
        Key::Backspace => NamedKey::Backspace,
        Key::Delete => NamedKey::Delete,
        Key::Escape => NamedKey::Escape,
        Key::ArrowLeft => NamedKey::Left,
        Key::ArrowRight => NamedKey::Right,
        Key::ArrowUp => NamedKey::Up,
        Key::ArrowDown => NamedKey::Down,
        Key::Home => NamedKey::Home,
        Key::End => NamedKey::End,
        Key::PageUp => NamedKey::PageUp,
        Key::PageDown => NamedKey::PageDown,
        _ => return None,
    })
}

/// The character a letter or digit key types, for Ctrl+key shortcuts
/// (egui sends no text while Control is held).
fn shortcut_text(key: Key) -> Option<String> {
    let name = key.name();
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase().to_string()),
        _ => None,
    }
}

/// Wraps what `inner` pushes in presses and releases of the modifiers held.
fn chord(
    modifiers: Modifiers,
    out: &mut Vec<InputEvent>,
    inner: impl FnOnce(&mut Vec<InputEvent>),
) {
    let held: Vec<NamedKey> = [
        (modifiers.ctrl, NamedKey::Control),
        (modifiers.alt, NamedKey::Alt),
        (modifiers.shift, NamedKey::Shift),
    ]
    .into_iter()
    .filter_map(|(down, key)| down.then_some(key))
    .collect();
    for key in &held {
        out.push(InputEvent::Key {
            key: *key,
            pressed: true,
        });
    }
    inner(out);
    for key in held.iter().rev() {
        out.push(InputEvent::Key {
            key: *key,
            pressed: false,
        });
    }
}

/// Pushes `text` as text events of at most [`MAX_TEXT`] bytes each, cut
/// between characters.
fn push_text(text: &str, out: &mut Vec<InputEvent>) {
    let mut rest = text;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(prefix(rest, MAX_TEXT).len());
        if let Ok(piece) = BoundedString::new(piece) {
            out.push(InputEvent::Text(piece));
        }
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1000×500 remote screen drawn at half size at (100, 50).
    fn half() -> Mapping {
        Mapping {
            rect: Rect::from_min_size(Pos2::new(100.0, 50.0), Vec2::new(500.0, 250.0)),
            visible: Rect::EVERYTHING,
            width: 1000,
            height: 500,
        }
    }

    fn run(events: &[egui::Event]) -> Vec<InputEvent> {
        let mut out = Vec::new();
        Translator::default().translate(events, &half(), &mut out);
        out
    }

    fn press(pos: Pos2, pressed: bool) -> egui::Event {
        egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        }
    }

    #[test]
    fn positions_map_back_through_the_scale() {
        let m = half();
        assert_eq!(m.remote_pixel(Pos2::new(100.0, 50.0)), Some((0, 0)));
        assert_eq!(m.remote_pixel(Pos2::new(350.0, 175.0)), Some((500, 250)));
        assert_eq!(m.remote_pixel(Pos2::new(600.0, 300.0)), Some((999, 499)));
        assert_eq!(m.remote_pixel(Pos2::new(99.0, 60.0)), None);
        assert_eq!(m.clamped(Pos2::new(-5.0, 900.0)), (0, 499));
        let one_to_one = Mapping {
            rect: Rect::from_min_size(Pos2::new(10.0, 20.0), Vec2::new(64.0, 48.0)),
            visible: Rect::from_min_max(Pos2::new(0.0, 0.0), Pos2::new(50.0, 60.0)),
            width: 64,
            height: 48,
        };
        assert_eq!(
            one_to_one.remote_pixel(Pos2::new(30.5, 40.2)),
            Some((20, 20))
        );
        // Scrolled out of sight: not over the picture.
        assert_eq!(one_to_one.remote_pixel(Pos2::new(60.0, 40.0)), None);
        assert_eq!(one_to_one.clamped(Pos2::new(60.0, 40.0)), (40, 20));
    }

    #[test]
    fn a_click_over_the_picture_moves_then_presses_and_releases() {
        let at = Pos2::new(350.0, 175.0);
        let got = run(&[
            egui::Event::PointerMoved(at),
            press(at, true),
            press(at, false),
        ]);
        assert_eq!(
            got,
            [
                InputEvent::MoveTo { x: 500, y: 250 },
                InputEvent::Button {
                    button: MouseButton::Left,
                    pressed: true
                },
                InputEvent::Button {
                    button: MouseButton::Left,
                    pressed: false
                },
            ]
        );
    }

    #[test]
    fn the_pointer_outside_the_picture_sends_nothing_but_a_drag_ends_inside() {
        let outside = Pos2::new(20.0, 20.0);
        assert_eq!(
            run(&[
                egui::Event::PointerMoved(outside),
                press(outside, true),
                press(outside, false)
            ]),
            []
        );
        // Pressed inside, released outside: released at the nearest edge.
        let got = run(&[press(Pos2::new(100.0, 50.0), true), press(outside, false)]);
        assert_eq!(
            got.last(),
            Some(&InputEvent::Button {
                button: MouseButton::Left,
                pressed: false
            })
        );
        assert!(got.contains(&InputEvent::MoveTo { x: 0, y: 0 }));
    }

    #[test]
    fn wheel_notches_are_summed_and_signed_for_the_remote_side() {
        let over = egui::Event::PointerMoved(Pos2::new(200.0, 100.0));
        let wheel = |y: f32| egui::Event::MouseWheel {
            unit: MouseWheelUnit::Point,
            delta: Vec2::new(0.0, y),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: Modifiers::NONE,
        };
        // Content moved up by 75 + 25 points: scrolled down two notches.
        let got = run(&[over, wheel(-75.0), wheel(-25.0)]);
        assert_eq!(
            got.iter()
                .filter(|e| matches!(e, InputEvent::Wheel { .. }))
                .collect::<Vec<_>>(),
            [
                &InputEvent::Wheel { dx: 0, dy: 1 },
                &InputEvent::Wheel { dx: 0, dy: 1 }
            ]
        );
        // Not over the picture: nothing.
        assert_eq!(run(&[wheel(-100.0)]), []);
    }

    #[test]
    fn text_and_named_keys_with_modifiers() {
        let key = |key, modifiers| egui::Event::Key {
            key,
            physical_key: None,
            pressed: true,
            repeat: false,
            modifiers,
        };
        let got = run(&[
            egui::Event::Text("hé".into()),
            key(Key::Enter, Modifiers::NONE),
            key(Key::Tab, Modifiers::SHIFT),
            key(Key::C, Modifiers::CTRL),
            key(Key::C, Modifiers::NONE),
        ]);
        let k = |key, pressed| InputEvent::Key { key, pressed };
        let text = |t: &str| InputEvent::Text(BoundedString::new(t).unwrap());
        assert_eq!(
            got,
            [
                text("hé"),
                k(NamedKey::Return, true),
                k(NamedKey::Return, false),
                k(NamedKey::Shift, true),
                k(NamedKey::Tab, true),
                k(NamedKey::Tab, false),
                k(NamedKey::Shift, false),
                k(NamedKey::Control, true),
                text("c"),
                k(NamedKey::Control, false),
            ]
        );
    }

    #[test]
    fn long_text_is_cut_between_characters() {
        let long = "é".repeat(MAX_TEXT);
        let got = run(&[egui::Event::Text(long.clone())]);
        assert_eq!(got.len(), 2);
        let joined: String = got
            .iter()
            .map(|e| match e {
                InputEvent::Text(t) => t.as_str().to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(joined, long);
    }
}
