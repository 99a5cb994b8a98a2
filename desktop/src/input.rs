//! Applying remote input to this desktop (R22), through the X server's XTEST
//! extension (the `enigo` crate with its x11rb backend: no C library, and it
//! works under Xvfb).
//!
//! [`Injector`] only applies events; whether an event may be applied at all
//! (control granted, not stopped by the hotkey or the Stop button, view-only
//! off) is decided before it gets here. Positions arrive relative to the
//! shared monitor and are moved to its place on the root window. Keys held
//! down are released when the injector is dropped, so that ending control
//! never leaves a modifier stuck.

use conclave_protocol::input::{InputEvent, MouseButton, NamedKey};
use enigo::{Axis, Button, Coordinate, Direction, Enigo, Key, Keyboard, Mouse, Settings};

/// Why input could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The display could not be opened for input.
    #[error("cannot inject input on the X display: {0}")]
    Connect(String),
    /// The server refused or failed an event.
    #[error("the X server did not take the input event: {0}")]
    Inject(String),
}

/// Injects input events into one X display.
pub struct Injector {
    enigo: Enigo,
    origin: (i32, i32),
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector")
            .field("origin", &self.origin)
            .finish()
    }
}

fn key(k: NamedKey) -> Key {
    match k {
        NamedKey::Return => Key::Return,
        NamedKey::Tab => Key::Tab,
        NamedKey::Backspace => Key::Backspace,
        NamedKey::Delete => Key::Delete,
        NamedKey::Escape => Key::Escape,
        NamedKey::Left => Key::LeftArrow,
        NamedKey::Right => Key::RightArrow,
        NamedKey::Up => Key::UpArrow,
        NamedKey::Down => Key::DownArrow,
        NamedKey::Home => Key::Home,
        NamedKey::End => Key::End,
        NamedKey::PageUp => Key::PageUp,
        NamedKey::PageDown => Key::PageDown,
        NamedKey::Shift => Key::Shift,
        NamedKey::Control => Key::Control,
        NamedKey::Alt => Key::Alt,
    }
}

fn direction(pressed: bool) -> Direction {
    if pressed {
        Direction::Press
    } else {
        Direction::Release
    }
}

impl Injector {
    /// Opens `display` (`None`: `DISPLAY`) for input on the monitor whose
    /// top-left corner is at `origin` on the root window.
    pub fn connect(display: Option<&str>, origin: (i16, i16)) -> Result<Injector, InputError> {
        let settings = Settings {
            x11_display: display.map(str::to_string),
            // Events arrive paced by the network; no extra delay.
            linux_delay: 0,
            release_keys_when_dropped: true,
            ..Settings::default()
        };
        let enigo = Enigo::new(&settings).map_err(|e| InputError::Connect(e.to_string()))?;
        Ok(Injector {
            enigo,
            origin: (i32::from(origin.0), i32::from(origin.1)),
        })
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &InputEvent) -> Result<(), InputError> {
        let e = &mut self.enigo;
        let done = match event {
            InputEvent::MoveTo { x, y } => e.move_mouse(
                self.origin.0 + i32::from(*x),
                self.origin.1 + i32::from(*y),
                Coordinate::Abs,
            ),
            InputEvent::Button { button, pressed } => {
                let b = match button {
                    MouseButton::Left => Button::Left,
                    MouseButton::Middle => Button::Middle,
                    MouseButton::Right => Button::Right,
                };
                e.button(b, direction(*pressed))
            }
            InputEvent::Wheel { dx, dy } => e
                .scroll(i32::from(*dy), Axis::Vertical)
                .and_then(|()| e.scroll(i32::from(*dx), Axis::Horizontal)),
            InputEvent::Key { key: k, pressed } => e.key(key(*k), direction(*pressed)),
            InputEvent::Text(text) => e.text(text.as_str()),
        };
        done.map_err(|err| InputError::Inject(err.to_string()))
    }
}
