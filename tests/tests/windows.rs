//! A remote-support session with the real, branded apps and their windows,
//! each on a display of its own (Xvfb): the agent's viewer shows what is on
//! the customer's display; the customer's banner shows that control is on;
//! the agent's input moves the customer's pointer only while control is
//! granted; F11 on the customer's display ends it (R21, R22).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use conclave_desktop::capture::X11Capture;
use conclave_desktop::xvfb::Xvfb;
use conclave_tests::{text, Lab, LabOptions, Sandbox};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ChangeGCAux, ConnectionExt as _, CreateGCAux, Rectangle};
use x11rb::rust_connection::RustConnection;

/// A colour nothing else on either display uses.
const MAGENTA: [u8; 4] = [0xe0, 0x10, 0xd0, 0xff]; // BGRA
/// The banner's Stop button (conclave-ui's `STOP_RED`, rgb 200, 24, 24).
const STOP_RED: [u8; 4] = [24, 24, 200, 0xff];

fn fill(conn: &RustConnection, root: u32, colour: u32, r: Rectangle) {
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, root, &CreateGCAux::new()).unwrap();
    conn.change_gc(gc, &ChangeGCAux::new().foreground(colour))
        .unwrap();
    conn.poly_fill_rectangle(root, gc, &[r]).unwrap();
    conn.free_gc(gc).unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
}

/// Pixels of `colour` on `display` now.
fn count(display: &str, colour: [u8; 4]) -> usize {
    let mut capture = X11Capture::connect(Some(display)).unwrap();
    let mut pixels = Vec::new();
    capture.capture(&mut pixels).unwrap();
    pixels.chunks_exact(4).filter(|p| *p == colour).count()
}

/// Waits until `display` shows at least `n` pixels of `colour`.
fn until_shown(display: &str, colour: [u8; 4], n: usize, what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let got = count(display, colour);
        if got >= n {
            return;
        }
        assert!(Instant::now() < until, "{what}: {got} pixels, wanted {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pointer(display: &str) -> (i16, i16) {
    let (conn, screen) = x11rb::connect(Some(display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let r = conn.query_pointer(root).unwrap().reply().unwrap();
    (r.root_x, r.root_y)
}

#[test]
fn r21_r22_support_session_with_windows_on_two_displays() {
    let lab = Lab::new(LabOptions {
        relays: 1,
        profile: &["password_required=true", "remote_control=true"],
        ..LabOptions::default()
    });
    let customer_display = Xvfb::start(1024, 700).unwrap();
    let agent_display = Xvfb::start(1400, 900).unwrap();
    let (conn, screen) = x11rb::connect(Some(&customer_display.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    // A magenta block on the customer's desktop, away from where the
    // banner opens.
    fill(
        &conn,
        root,
        0x00d0_10e0,
        Rectangle {
            x: 500,
            y: 300,
            width: 300,
            height: 200,
        },
    );
    assert_eq!(count(&agent_display.display, MAGENTA), 0);

    let (ms, ps) = (Sandbox::new(), Sandbox::new());
    let mut m = lab.master(
        &ms,
        &["--support", "--name", "Agent"],
        &[("DISPLAY", agent_display.display.as_str())],
    );
    let password = text(&m.expect("password"), "password");
    let session = text(&m.expect("session_opened"), "session");
    let mut p = conclave_tests::App::start(
        "Customer",
        &lab.participant,
        &[
            "join",
            &session,
            "--name",
            "Customer",
            "--password",
            &password,
        ],
        &[("DISPLAY", customer_display.display.as_str())],
        &ps,
    );
    let peer = m.expect("admitted")["peer"].as_u64().unwrap();
    p.expect_where("sharing", |e| e["active"] == true);
    m.expect("screen_stats");
    // The agent's window shows the customer's screen: the block appears on
    // the agent's display (scaled to fit, so at least a good part of it).
    until_shown(
        &agent_display.display,
        MAGENTA,
        20_000,
        "the customer's screen in the agent's window",
    );

    // Before control: input is refused, the pointer stays.
    let start = pointer(&customer_display.display);
    m.send("move 700 400");
    m.expect_where("error", |e| text(e, "message").contains("granted"));
    assert_eq!(pointer(&customer_display.display), start);

    // Asked and allowed: the banner turns to "control active" with its Stop
    // button, and the agent's input moves the customer's pointer.
    m.send(&format!("control {peer}"));
    p.expect("control_requested");
    p.send("allow");
    m.expect_where("control", |e| e["state"] == "active");
    until_shown(
        &customer_display.display,
        STOP_RED,
        500,
        "the banner's Stop button",
    );
    m.send("move 700 400");
    let until = Instant::now() + Duration::from_secs(10);
    while pointer(&customer_display.display) != (700, 400) {
        assert!(Instant::now() < until, "the pointer did not move");
        std::thread::sleep(Duration::from_millis(50));
    }

    // F11 on the customer's display ends control at once.
    let mut keys = enigo::Enigo::new(&enigo::Settings {
        x11_display: Some(customer_display.display.clone()),
        linux_delay: 0,
        ..enigo::Settings::default()
    })
    .unwrap();
    enigo::Keyboard::key(&mut keys, enigo::Key::F11, enigo::Direction::Click).unwrap();
    let ended = m.expect_where("control", |e| e["state"] == "ended");
    assert!(text(&ended, "reason").contains("hotkey"));
    m.send("move 100 100");
    m.expect_where("error", |e| text(e, "message").contains("granted"));
    assert_eq!(pointer(&customer_display.display), (700, 400));

    p.send("leave");
    assert!(p.wait().success());
    m.send("end");
    assert!(m.wait().success());
    assert_eq!(ms.residue(), Vec::<std::path::PathBuf>::new());
    assert_eq!(ps.residue(), Vec::<std::path::PathBuf>::new());
}
