//! Screen sharing and remote control end to end (R21, R22): a real relay on
//! loopback, master and participant runtimes, and the participant sharing a
//! real X display (Xvfb, started here). What is drawn on the participant's
//! display arrives at the master pixel for pixel; the master's input reaches
//! the participant's display only while control is granted; Stop and the
//! F11 hotkey end control at once; a denied or unanswered request applies
//! nothing.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_client::collab::MediaOptions;
use conclave_client::connect::{Attempts, Who};
use conclave_client::events::{Command, Event};
use conclave_client::screen::{FrameSink, ShareOptions, SourceSpec};
use conclave_client::session::{join, start_master, JoinOptions, MasterOptions, Running};
use conclave_desktop::capture::X11Capture;
use conclave_desktop::xvfb::Xvfb;
use conclave_media::Frame;
use conclave_protocol::app::ControlEnd;
use conclave_protocol::artefact::{CountdownDefault, PolicyProfile, RelayEntry, Role};
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::fixtures;
use conclave_protocol::frame::PeerId;
use conclave_protocol::input::{InputEvent, MouseButton};
use conclave_protocol::stage1::SessionKind;
use conclave_relay::config::Settings;
use conclave_relay::Relay;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ChangeGCAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, ImageFormat,
    InputFocus, Rectangle, WindowClass,
};
use x11rb::protocol::Event as XEvent;
use x11rb::rust_connection::RustConnection;
use zeroize::Zeroizing;

const PASSWORD: &str = "screen-horse-42";
const W: u16 = 640;
const H: u16 = 400;

async fn relay() -> Relay {
    let s = Settings {
        quic: Some("127.0.0.1:0".into()),
        tls: Some("127.0.0.1:0".into()),
        websocket: Some("off".into()),
        admin: Some("off".into()),
        portal_keys: Some(vec![hex::encode(fixtures::identity(1).public_key().0)]),
        ..Settings::default()
    };
    Relay::start(s.resolve(true).unwrap()).await.unwrap()
}

fn entry(relay: &Relay) -> RelayEntry {
    let mut e = fixtures::relay_entry(&fixtures::identity(0));
    e.public_key = relay.public_key;
    e.quic_port = relay.quic.unwrap().port();
    e.tls_port = relay.tls.unwrap().port();
    e.websocket_port = 0;
    e
}

fn who(user: &str) -> Who {
    Who {
        os_user: fixtures::s(user),
        host: fixtures::s("lab"),
    }
}

/// The last frame the master showed.
#[derive(Clone, Default)]
struct Shown(Arc<Mutex<Option<Frame>>>);

impl FrameSink for Shown {
    fn show(&mut self, frame: &Frame, _captured_us: u64) {
        *self.0.lock().unwrap() = Some(frame.clone());
    }
}

async fn next(r: &mut Running, pick: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = r.events.recv().await.expect("events ended");
            if pick(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such event in time"))
}

/// A support session: master and a participant sharing `display`, admitted.
async fn support(
    relay: &Relay,
    display: &str,
    policy: impl Fn(&mut PolicyProfile) + Copy,
) -> (Running, Running, Shown, PeerId) {
    let relays = vec![entry(relay)];
    let shown = Shown::default();
    let master_build = fixtures::verified_build(Role::Master, relays.clone(), policy);
    let mut m = start_master(
        master_build,
        MasterOptions {
            kind: SessionKind::Support,
            moderator: "Agent".into(),
            password: Some(Zeroizing::new(PASSWORD.into())),
            who: who("agent"),
            attempts: Attempts::default(),
            media: MediaOptions {
                share: None,
                sink: Some(Box::new(shown.clone())),
            },
        },
    )
    .await
    .unwrap();
    next(&mut m, |e| matches!(e, Event::SessionOpened { .. })).await;
    let share = ShareOptions::new(SourceSpec::X11 {
        display: Some(display.to_string()),
        monitor: None,
    });
    let mut p = join(
        fixtures::verified_build(Role::Participant, relays, policy),
        JoinOptions {
            session: m.handle.session,
            password: Some(Zeroizing::new(PASSWORD.into())),
            name: "Customer".into(),
            who: who("customer"),
            attempts: Attempts::default(),
            media: MediaOptions {
                share: Some(share),
                sink: None,
            },
        },
    )
    .await
    .unwrap();
    let peer = match next(&mut m, |e| matches!(e, Event::Admitted { .. })).await {
        Event::Admitted { peer, .. } => PeerId(peer),
        _ => unreachable!(),
    };
    next(&mut p, |e| matches!(e, Event::Sharing { active: true, .. })).await;
    (m, p, shown, peer)
}

/// Draws coloured rectangles and a noisy block (which text-like content
/// compression cannot fake) on the root window.
fn draw(conn: &RustConnection, root: u32, seed: u32) {
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, root, &CreateGCAux::new()).unwrap();
    for (i, colour) in [0x00c0_3030u32, 0x0030_c030, 0x0030_30c0]
        .iter()
        .enumerate()
    {
        conn.change_gc(gc, &ChangeGCAux::new().foreground(*colour ^ seed))
            .unwrap();
        let i = i as i16;
        conn.poly_fill_rectangle(
            root,
            gc,
            &[Rectangle {
                x: 20 + 90 * i,
                y: 30 + 40 * i,
                width: 150,
                height: 100,
            }],
        )
        .unwrap();
    }
    let (w, h) = (97u16, 61u16);
    let mut state = seed | 1;
    let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h) * 4)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    conn.put_image(
        ImageFormat::Z_PIXMAP,
        root,
        gc,
        w,
        h,
        400,
        250,
        0,
        24,
        &pixels,
    )
    .unwrap();
    conn.free_gc(gc).unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
}

/// Waits until the master shows exactly what the display shows now.
async fn master_shows_the_display(shown: &Shown, display: &str) {
    let mut capture = X11Capture::connect(Some(display)).unwrap();
    let mut want = Vec::new();
    capture.capture(&mut want).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let same = shown
            .0
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|f| f.as_bytes() == want.as_slice());
        if same {
            return;
        }
        assert!(
            Instant::now() < until,
            "the master never showed the display pixel for pixel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pointer(conn: &RustConnection, root: u32) -> (i16, i16) {
    let r = conn.query_pointer(root).unwrap().reply().unwrap();
    (r.root_x, r.root_y)
}

async fn control_state(r: &mut Running, state: &'static str) -> Event {
    next(
        r,
        |e| matches!(e, Event::Control { state: s, .. } if *s == state),
    )
    .await
}

fn move_to(x: u16, y: u16) -> Command {
    Command::Input(vec![InputEvent::MoveTo { x, y }])
}

/// Sends a move and a chat line behind it; once the chat line has arrived
/// the move has been handled (both travel in order on one connection).
async fn settle(m: &Running, p: &mut Running, word: &str) {
    m.handle.send(Command::Chat(word.into())).await;
    let w = word.to_string();
    next(
        p,
        move |e| matches!(e, Event::Chat { text, .. } if *text == w),
    )
    .await;
    // The input thread applies events right after the runtime hands them on.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r21_what_the_participant_shows_arrives_pixel_exact_at_the_master() {
    let x = Xvfb::start(W, H).unwrap();
    let (conn, screen) = x11rb::connect(Some(&x.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    draw(&conn, root, 0);
    let relay = relay().await;
    let (mut m, _p, shown, peer) = support(&relay, &x.display, |_| {}).await;
    // The customer presents without being asked: it is a support session.
    next(&mut m, |e| matches!(e, Event::Rights { peer: p, rights } if *p == peer.0 && rights.contains(&"presenter"))).await;
    master_shows_the_display(&shown, &x.display).await;
    // A change on the display follows.
    draw(&conn, root, 0x0055_aa55);
    master_shows_the_display(&shown, &x.display).await;
    let stats = next(&mut m, |e| matches!(e, Event::ScreenStats { .. })).await;
    match stats {
        Event::ScreenStats {
            width,
            height,
            from,
            ..
        } => {
            assert_eq!((width, height, from), (u32::from(W), u32::from(H), peer.0));
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r22_input_applies_only_while_control_is_granted_and_stop_ends_it_at_once() {
    let x = Xvfb::start(W, H).unwrap();
    let (conn, screen) = x11rb::connect(Some(&x.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    // A window under the pointer that reports clicks and keys.
    let win = conn.generate_id().unwrap();
    conn.create_window(
        0,
        win,
        root,
        0,
        0,
        W,
        H,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .event_mask(EventMask::BUTTON_PRESS | EventMask::KEY_PRESS)
            .background_pixel(0x0020_2020),
    )
    .unwrap();
    conn.map_window(win).unwrap();
    conn.set_input_focus(InputFocus::POINTER_ROOT, win, x11rb::CURRENT_TIME)
        .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    let relay = relay().await;
    let (mut m, mut p, _shown, peer) = support(&relay, &x.display, |_| {}).await;
    let start = pointer(&conn, root);

    // Before any request: input is refused by the master's app, and a
    // participant would drop it anyway.
    m.handle.send(move_to(111, 77)).await;
    next(
        &mut m,
        |e| matches!(e, Event::Error { message } if message.contains("granted")),
    )
    .await;

    // Asked and denied: nothing applies.
    m.handle.send(Command::RequestControl(peer)).await;
    next(&mut p, |e| matches!(e, Event::ControlRequested { .. })).await;
    p.handle.send(Command::DenyControl).await;
    control_state(&mut m, "denied").await;
    m.handle.send(move_to(111, 77)).await;
    settle(&m, &mut p, "after-deny").await;
    assert_eq!(pointer(&conn, root), start, "input applied after a denial");

    // Asked and allowed: the pointer moves, a click and typing arrive.
    m.handle.send(Command::RequestControl(peer)).await;
    let asked = next(&mut p, |e| matches!(e, Event::ControlRequested { .. })).await;
    assert!(
        matches!(asked, Event::ControlRequested { by, seconds: 10, default: "deny" } if by == "Agent")
    );
    p.handle.send(Command::AllowControl).await;
    control_state(&mut m, "active").await;
    m.handle
        .send(Command::Input(vec![
            InputEvent::MoveTo { x: 123, y: 45 },
            InputEvent::Button {
                button: MouseButton::Left,
                pressed: true,
            },
            InputEvent::Button {
                button: MouseButton::Left,
                pressed: false,
            },
            InputEvent::Text(BoundedString::new("ok").unwrap()),
        ]))
        .await;
    settle(&m, &mut p, "after-allow").await;
    assert_eq!(pointer(&conn, root), (123, 45));
    let mut clicks = 0;
    let mut keys = 0;
    while let Some(e) = conn.poll_for_event().unwrap() {
        match e {
            XEvent::ButtonPress(_) => clicks += 1,
            XEvent::KeyPress(_) => keys += 1,
            _ => {}
        }
    }
    assert_eq!(clicks, 1);
    assert!(keys >= 2, "{keys} key presses for \"ok\"");

    // Stop ends it at once: the next move does not apply.
    p.handle
        .send(Command::StopControl(ControlEnd::StopButton))
        .await;
    control_state(&mut m, "ended").await;
    m.handle.send(move_to(300, 300)).await;
    next(
        &mut m,
        |e| matches!(e, Event::Error { message } if message.contains("granted")),
    )
    .await;
    assert_eq!(pointer(&conn, root), (123, 45));

    // Again, and this time F11 on the participant's display ends it.
    m.handle.send(Command::RequestControl(peer)).await;
    next(&mut p, |e| matches!(e, Event::ControlRequested { .. })).await;
    p.handle.send(Command::AllowControl).await;
    control_state(&mut m, "active").await;
    let mut keyboard = enigo::Enigo::new(&enigo::Settings {
        x11_display: Some(x.display.clone()),
        linux_delay: 0,
        ..enigo::Settings::default()
    })
    .unwrap();
    enigo::Keyboard::key(&mut keyboard, enigo::Key::F11, enigo::Direction::Click).unwrap();
    let ended = control_state(&mut m, "ended").await;
    assert!(matches!(ended, Event::Control { reason, .. } if reason.contains("hotkey")));
    m.handle.send(move_to(200, 200)).await;
    next(
        &mut m,
        |e| matches!(e, Event::Error { message } if message.contains("granted")),
    )
    .await;
    assert_eq!(pointer(&conn, root), (123, 45));

    // Withdrawing the right while control is active ends it too.
    m.handle.send(Command::RequestControl(peer)).await;
    next(&mut p, |e| matches!(e, Event::ControlRequested { .. })).await;
    p.handle.send(Command::AllowControl).await;
    control_state(&mut m, "active").await;
    m.handle
        .send(Command::Grant(
            peer,
            conclave_protocol::stage2::Rights::PRESENTER,
        ))
        .await;
    let ended = control_state(&mut p, "ended").await;
    assert!(matches!(ended, Event::Control { reason, .. } if reason.contains("withdrawn")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r22_an_unanswered_request_follows_the_policy_default() {
    let x = Xvfb::start(W, H).unwrap();
    let (conn, screen) = x11rb::connect(Some(&x.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let relay = relay().await;
    // Deny by default after one second: nothing applies.
    let (mut m, mut p, _s, peer) = support(&relay, &x.display, |p| {
        p.control_countdown_secs = 1;
        p.countdown_default = CountdownDefault::Deny;
    })
    .await;
    let start = pointer(&conn, root);
    m.handle.send(Command::RequestControl(peer)).await;
    next(&mut p, |e| {
        matches!(e, Event::ControlRequested { seconds: 1, .. })
    })
    .await;
    let denied = control_state(&mut m, "denied").await;
    assert!(matches!(denied, Event::Control { reason, .. } if reason.contains("default")));
    m.handle.send(move_to(222, 111)).await;
    settle(&m, &mut p, "after-default-deny").await;
    assert_eq!(pointer(&conn, root), start);
    drop((m, p));

    // Accept by default: control starts without an answer.
    let (mut m, mut p, _s, peer) = support(&relay, &x.display, |p| {
        p.control_countdown_secs = 1;
        p.countdown_default = CountdownDefault::Accept;
    })
    .await;
    m.handle.send(Command::RequestControl(peer)).await;
    next(&mut p, |e| matches!(e, Event::ControlRequested { .. })).await;
    control_state(&mut m, "active").await;
    m.handle.send(move_to(222, 111)).await;
    settle(&m, &mut p, "after-default-accept").await;
    assert_eq!(pointer(&conn, root), (222, 111));
}
