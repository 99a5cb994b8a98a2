//! Remote input (R22): what a master with the remote-control right sends to
//! a participant, in frames of class [`crate::frame::FrameClass::Input`],
//! which only pairwise keys may carry (the group key never authorises
//! control).
//!
//! Positions are absolute pixels on the participant's shared screen, as the
//! master's viewer saw it; keys are named, not raw scan codes, so that a
//! master on another keyboard layout types what it means. The participant's
//! app applies an event only while control is granted, and decides by
//! itself (the stop hotkey, its own Stop button) when it no longer is.

use serde::{Deserialize, Serialize};

use crate::bounded::BoundedString;
use crate::codec::Message;

/// The longest text typed in one event, in bytes.
pub const MAX_TEXT: usize = 256;

/// A mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MouseButton {
    /// The primary button.
    Left,
    /// The middle button (or wheel press).
    Middle,
    /// The secondary button.
    Right,
}

/// A key that is not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NamedKey {
    /// Return / Enter.
    Return,
    /// Tab.
    Tab,
    /// Backspace.
    Backspace,
    /// Delete.
    Delete,
    /// Escape.
    Escape,
    /// Arrow left.
    Left,
    /// Arrow right.
    Right,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Home.
    Home,
    /// End.
    End,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Shift (held with others).
    Shift,
    /// Control (held with others).
    Control,
    /// Alt (held with others).
    Alt,
}

/// One input event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    /// Move the pointer to (x, y) on the shared screen.
    MoveTo {
        /// Pixels from the left.
        x: u16,
        /// Pixels from the top.
        y: u16,
    },
    /// Press or release a mouse button.
    Button {
        /// Which.
        button: MouseButton,
        /// Pressed (true) or released.
        pressed: bool,
    },
    /// Turn the wheel: positive `dy` scrolls down, positive `dx` right, in notches.
    Wheel {
        /// Horizontal notches.
        dx: i8,
        /// Vertical notches.
        dy: i8,
    },
    /// Press or release a named key.
    Key {
        /// Which.
        key: NamedKey,
        /// Pressed (true) or released.
        pressed: bool,
    },
    /// Type text.
    Text(BoundedString<MAX_TEXT>),
}

impl Message for InputEvent {
    const NAME: &'static str = "input event";
    const MAX_SIZE: usize = MAX_TEXT + 16;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = InputEvent> {
        prop_oneof![
            (any::<u16>(), any::<u16>()).prop_map(|(x, y)| InputEvent::MoveTo { x, y }),
            (0..3u8, any::<bool>()).prop_map(|(b, pressed)| InputEvent::Button {
                button: [MouseButton::Left, MouseButton::Middle, MouseButton::Right]
                    [usize::from(b)],
                pressed
            }),
            (any::<i8>(), any::<i8>()).prop_map(|(dx, dy)| InputEvent::Wheel { dx, dy }),
            (any::<bool>()).prop_map(|pressed| InputEvent::Key {
                key: NamedKey::Return,
                pressed
            }),
            "[a-zA-Z0-9 äöü€]{0,60}"
                .prop_map(|t| InputEvent::Text(BoundedString::new(t).unwrap_or_default())),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(e in event()) {
            prop_assert_eq!(InputEvent::decode(&e.encode()), Ok(e));
        }
    }

    #[test]
    fn over_long_text_is_refused() {
        let long = "x".repeat(MAX_TEXT + 1);
        assert!(BoundedString::<MAX_TEXT>::new(long).is_err());
    }
}
