//! The stop hotkey under a real X server (Xvfb, started here): F11 pressed
//! anywhere reaches the grab, other keys do not, and the grab is released
//! when the hotkey is dropped. Requirement R22.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::time::Duration;

use conclave_desktop::hotkey::{StopHotkey, STOP_KEYSYM};
use conclave_desktop::xvfb::Xvfb;
use enigo::{Direction, Enigo, Key, Keyboard, Settings};

fn keyboard(display: &str) -> Enigo {
    Enigo::new(&Settings {
        x11_display: Some(display.to_string()),
        linux_delay: 0,
        ..Settings::default()
    })
    .unwrap()
}

#[test]
fn r22_f11_reaches_the_stop_hotkey_wherever_the_focus_is() {
    let x = Xvfb::start(320, 240).unwrap();
    let (tx, rx) = mpsc::channel();
    let hotkey = StopHotkey::grab(Some(&x.display), STOP_KEYSYM, move || {
        let _ = tx.send(());
    })
    .unwrap();
    let mut keys = keyboard(&x.display);
    keys.key(Key::Unicode('a'), Direction::Click).unwrap();
    keys.key(Key::F10, Direction::Click).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "other keys must not stop control"
    );
    keys.key(Key::F11, Direction::Click).unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("F11 was pressed but the hotkey did not fire");
    // A second grab of the same key by another client fails while held…
    assert!(StopHotkey::grab(Some(&x.display), STOP_KEYSYM, || {}).is_err());
    drop(hotkey);
    // …and succeeds once the first is dropped.
    StopHotkey::grab(Some(&x.display), STOP_KEYSYM, || {}).unwrap();
}
