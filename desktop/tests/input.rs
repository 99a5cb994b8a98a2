//! Input injection under a real X server (Xvfb, started here): the pointer
//! goes where the event says, buttons and keys reach the window under it,
//! text is typed. Requirement R22.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use conclave_desktop::input::Injector;
use conclave_desktop::xvfb::Xvfb;
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::input::{InputEvent, MouseButton, NamedKey};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateWindowAux, EventMask, InputFocus, WindowClass,
};
use x11rb::protocol::Event;

/// Every event the window got within a short while.
fn events(conn: &impl Connection) -> Vec<Event> {
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        match conn.poll_for_event().unwrap() {
            Some(e) => out.push(e),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    out
}

#[test]
fn r22_pointer_buttons_keys_and_text_reach_the_desktop() {
    let x = Xvfb::start(640, 480).unwrap();
    let (conn, screen) = x11rb::connect(Some(&x.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    // A window over the whole screen that listens, with the keyboard focus.
    let win = conn.generate_id().unwrap();
    let mask = EventMask::KEY_PRESS | EventMask::BUTTON_PRESS | EventMask::BUTTON_RELEASE;
    conn.create_window(
        0,
        win,
        root,
        0,
        0,
        640,
        480,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new().event_mask(mask),
    )
    .unwrap();
    conn.map_window(win).unwrap();
    conn.set_input_focus(InputFocus::POINTER_ROOT, win, x11rb::CURRENT_TIME)
        .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();

    let mut inj = Injector::connect(Some(&x.display), (0, 0)).unwrap();
    inj.apply(&InputEvent::MoveTo { x: 123, y: 234 }).unwrap();
    let p = conn.query_pointer(root).unwrap().reply().unwrap();
    assert_eq!((p.root_x, p.root_y), (123, 234));

    inj.apply(&InputEvent::Button {
        button: MouseButton::Left,
        pressed: true,
    })
    .unwrap();
    inj.apply(&InputEvent::Button {
        button: MouseButton::Left,
        pressed: false,
    })
    .unwrap();
    inj.apply(&InputEvent::Key {
        key: NamedKey::Return,
        pressed: true,
    })
    .unwrap();
    inj.apply(&InputEvent::Key {
        key: NamedKey::Return,
        pressed: false,
    })
    .unwrap();
    inj.apply(&InputEvent::Text(BoundedString::new("hi").unwrap()))
        .unwrap();

    let got = events(&conn);
    let press = got
        .iter()
        .find_map(|e| match e {
            Event::ButtonPress(b) => Some(b),
            _ => None,
        })
        .expect("a button press");
    assert_eq!((press.detail, press.event_x, press.event_y), (1, 123, 234));
    assert!(got.iter().any(|e| matches!(e, Event::ButtonRelease(_))));
    let keys: Vec<u8> = got
        .iter()
        .filter_map(|e| match e {
            Event::KeyPress(k) => Some(k.detail),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 3, "Return, h, i: {keys:?}");
    // The first key is the one the keyboard map has for Return.
    let setup = conn.setup();
    let map = conn
        .get_keyboard_mapping(setup.min_keycode, setup.max_keycode - setup.min_keycode + 1)
        .unwrap()
        .reply()
        .unwrap();
    let per = usize::from(map.keysyms_per_keycode);
    let return_sym = 0xff0d;
    let code = keys[0];
    let syms = &map.keysyms[usize::from(code - setup.min_keycode) * per..][..per];
    assert!(syms.contains(&return_sym), "keycode {code} is not Return");
}

#[test]
fn a_missing_display_is_a_clear_error() {
    let err = Injector::connect(Some(":4998"), (0, 0)).unwrap_err();
    assert!(err.to_string().contains("X display"), "{err}");
}
