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

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{entry, next, relay, who};
use conclave_client::collab::MediaOptions;
use conclave_client::connect::Attempts;
use conclave_client::events::{Command, Event};
use conclave_client::screen::{FrameSink, ShareOptions, SourceSpec};
use conclave_client::session::{join, start_master, JoinOptions, MasterOptions, Running};
use conclave_desktop::capture::X11Capture;
use conclave_desktop::xvfb::Xvfb;
use conclave_media::Frame;
use conclave_protocol::app::ControlEnd;
use conclave_protocol::artefact::{CountdownDefault, PolicyProfile, Role};
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::fixtures;
use conclave_protocol::frame::PeerId;
use conclave_protocol::input::{InputEvent, MouseButton};
use conclave_protocol::stage1::SessionKind;
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

/// The last frame the master showed.
#[derive(Clone, Default)]
struct Shown(Arc<Mutex<Option<Frame>>>);

impl FrameSink for Shown {
    fn show(&mut self, frame: &Frame, _captured_us: u64) {
        *self.0.lock().unwrap() = Some(frame.clone());
    }
}

/// A support session: master and a participant sharing `display`, admitted.
async fn support(
    relay: &Relay,
    display: &str,
    policy: impl Fn(&mut PolicyProfile) + Copy,
) -> (Running, Running, Shown, PeerId) {
    let share = ShareOptions::new(SourceSpec::X11 {
        display: Some(display.to_string()),
        monitor: None,
    });
    let media = MediaOptions {
        share: Some(share),
        ..MediaOptions::default()
    };
    support_with(relay, media, policy, MediaOptions::default()).await
}

/// A support session with the participant's media options (it shares a
/// synthetic screen unless they say otherwise) and the master's (its sink is
/// replaced by the returned one).
async fn support_with(
    relay: &Relay,
    participant_media: MediaOptions,
    policy: impl Fn(&mut PolicyProfile) + Copy,
    master_media: MediaOptions,
) -> (Running, Running, Shown, PeerId) {
    let relays = vec![entry("r", relay, 0)];
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
                sink: Some(Box::new(shown.clone())),
                ..master_media
            },
        },
    )
    .await
    .unwrap();
    next(&mut m, |e| matches!(e, Event::SessionOpened { .. })).await;
    let mut p = join(
        fixtures::verified_build(Role::Participant, relays, policy),
        JoinOptions {
            session: m.handle.session,
            password: Some(Zeroizing::new(PASSWORD.into())),
            name: "Customer".into(),
            who: who("customer"),
            attempts: Attempts::default(),
            media: MediaOptions {
                share: participant_media.share.or_else(|| Some(synthetic())),
                ..participant_media
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

fn synthetic() -> ShareOptions {
    ShareOptions::new(SourceSpec::parse("synthetic:typing:320x200").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r23_files_arrive_only_after_consent_and_a_declined_one_writes_nothing() {
    let relay = relay().await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let file = dir.path().join("report.bin");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&file, &body).unwrap();

    let (mut m2, mut p2, _s, _peer) = support_with(
        &relay,
        MediaOptions {
            downloads: Some(inbox.clone()),
            ..MediaOptions::default()
        },
        |_| {},
        MediaOptions::default(),
    )
    .await;
    // Offered and declined: the customer saw the offer, nothing is written.
    m2.handle.send(Command::SendFile(None, file.clone())).await;
    let offered = next(&mut p2, |e| matches!(e, Event::FileOffered { .. })).await;
    let Event::FileOffered { id, name, size, .. } = offered else {
        unreachable!()
    };
    assert_eq!((name.as_str(), size), ("report.bin", body.len() as u64));
    p2.handle.send(Command::DeclineFile(None, id)).await;
    next(&mut m2, |e| {
        matches!(
            e,
            Event::File {
                state: "declined",
                ..
            }
        )
    })
    .await;
    assert_eq!(
        std::fs::read_dir(&inbox).unwrap().count(),
        0,
        "a declined file left something"
    );

    // Offered again and accepted: it arrives byte for byte, both sides see it done.
    m2.handle.send(Command::SendFile(None, file.clone())).await;
    let Event::FileOffered { id, .. } =
        next(&mut p2, |e| matches!(e, Event::FileOffered { .. })).await
    else {
        unreachable!()
    };
    p2.handle.send(Command::AcceptFile(None, id)).await;
    let done = next(&mut p2, |e| {
        matches!(
            e,
            Event::File {
                state: "complete",
                ..
            }
        )
    })
    .await;
    next(&mut m2, |e| {
        matches!(
            e,
            Event::File {
                state: "complete",
                ..
            }
        )
    })
    .await;
    let Event::File { detail, .. } = done else {
        unreachable!()
    };
    assert_eq!(std::fs::read(&detail).unwrap(), body);
    assert!(std::path::Path::new(&detail).starts_with(&inbox));

    // Without the files right the customer cannot push files to the agent.
    p2.handle.send(Command::SendFile(None, file.clone())).await;
    next(
        &mut p2,
        |e| matches!(e, Event::Error { message } if message.contains("files right")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r25_a_recording_is_announced_verifies_and_a_changed_byte_is_detected() {
    let relay = relay().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.crec");
    let (m, mut p, shown, _peer) = support_with(
        &relay,
        MediaOptions::default(),
        |_| {},
        MediaOptions {
            record: Some(path.clone()),
            ..MediaOptions::default()
        },
    )
    .await;
    // Frames flow before the recording starts.
    let until = Instant::now() + Duration::from_secs(20);
    while shown.0.lock().unwrap().is_none() {
        assert!(Instant::now() < until, "no frame");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.handle.send(Command::Record(true)).await;
    next(
        &mut p,
        |e| matches!(e, Event::Recording { active: true, by } if by == "Agent"),
    )
    .await;
    m.handle.send(Command::Chat("on the record".into())).await;
    next(&mut p, |e| matches!(e, Event::Chat { .. })).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.handle.send(Command::Record(false)).await;
    next(&mut p, |e| {
        matches!(e, Event::Recording { active: false, .. })
    })
    .await;

    let bytes = std::fs::read(&path).unwrap();
    let report = conclave_protocol::recording::verify(&bytes[..]).unwrap();
    assert!(report.finished);
    assert!(report.verified_entries >= 3, "{report}");
    let master_key = fixtures::verified_build(Role::Master, vec![], |_| {})
        .master
        .map(|(_, id)| id.public_key())
        .unwrap();
    assert!(report.is_signed_by(&master_key), "{report}");
    let mut reader = conclave_protocol::recording::RecordingReader::new(&bytes[..]).unwrap();
    let mut screens = 0;
    let mut chat = false;
    while let Some(e) = reader.next_entry().unwrap() {
        match e.content {
            conclave_protocol::recording::EntryContent::ScreenUpdate(_) => screens += 1,
            conclave_protocol::recording::EntryContent::Chat { text, .. } => {
                chat |= text.as_str() == "on the record";
            }
            _ => {}
        }
    }
    assert!(screens > 0 && chat, "{screens} screen entries, chat {chat}");
    // One changed byte anywhere past the header is detected.
    let mut changed = bytes.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x20;
    assert!(conclave_protocol::recording::verify(&changed[..]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r21_r27_the_master_hands_the_presenter_role_on_and_takes_it_back_and_hands_go_up() {
    let relay = relay().await;
    let relays = vec![entry("r", &relay, 0)];
    let meeting = |p: &mut PolicyProfile| {
        p.password_required = true;
        p.autolock = false;
    };
    let master_probe = Shown::default();
    let mut m = start_master(
        fixtures::verified_build(Role::Master, relays.clone(), meeting),
        MasterOptions {
            kind: SessionKind::Meeting,
            moderator: "Host".into(),
            password: Some(Zeroizing::new(PASSWORD.into())),
            who: who("host"),
            attempts: Attempts::default(),
            media: MediaOptions {
                share: Some(ShareOptions::new(
                    SourceSpec::parse("synthetic:scrolling:320x200").unwrap(),
                )),
                sink: Some(Box::new(master_probe.clone())),
                ..MediaOptions::default()
            },
        },
    )
    .await
    .unwrap();
    next(&mut m, |e| matches!(e, Event::SessionOpened { .. })).await;
    let mut people = Vec::new();
    for name in ["Ann", "Bob"] {
        let p = join(
            fixtures::verified_build(Role::Participant, relays.clone(), meeting),
            JoinOptions {
                session: m.handle.session,
                password: Some(Zeroizing::new(PASSWORD.into())),
                name: name.into(),
                who: who(name),
                attempts: Attempts::default(),
                media: MediaOptions {
                    share: Some(ShareOptions::new(
                        SourceSpec::parse("synthetic:video:160x100").unwrap(),
                    )),
                    ..MediaOptions::default()
                },
            },
        )
        .await
        .unwrap();
        let Event::Admitted { peer, .. } =
            next(&mut m, |e| matches!(e, Event::Admitted { .. })).await
        else {
            unreachable!()
        };
        people.push((PeerId(peer), p));
    }
    let stats_from = |from: u32, w: u32| move |e: &Event| matches!(e, Event::ScreenStats { from: f, width, .. } if *f == from && *width == w);

    // The host presents: both see its 320×200 screen.
    m.handle.send(Command::Present(Some(PeerId::MASTER))).await;
    for (_, p) in &mut people {
        next(p, |e| matches!(e, Event::Presenter { peer: Some(1) })).await;
        next(p, stats_from(1, 320)).await;
    }
    // Handed to Ann: the host and Bob see her 160×100 screen, she gets the right.
    let (ann, bob) = (people[0].0, people[1].0);
    m.handle.send(Command::Present(Some(ann))).await;
    next(&mut people[0].1, |e| {
        matches!(e, Event::Sharing { active: true, .. })
    })
    .await;
    next(&mut m, stats_from(ann.0, 160)).await;
    next(&mut people[1].1, stats_from(ann.0, 160)).await;
    // A participant cannot take the role itself.
    people[1].1.handle.send(Command::Present(Some(bob))).await;
    next(&mut people[1].1, |e| matches!(e, Event::Error { .. })).await;
    // R27: Bob raises a hand; the host and Ann see it; the host lowers it.
    people[1].1.handle.send(Command::Hand(None, true)).await;
    let raised = move |e: &Event| matches!(e, Event::Hand { peer, raised: true } if *peer == bob.0);
    next(&mut m, raised).await;
    next(&mut people[0].1, raised).await;
    next(&mut people[1].1, raised).await;
    m.handle.send(Command::Hand(Some(bob), false)).await;
    let lowered =
        move |e: &Event| matches!(e, Event::Hand { peer, raised: false } if *peer == bob.0);
    next(&mut people[1].1, lowered).await;
    next(&mut people[0].1, lowered).await;

    // Taken back: Ann stops and loses the right, Bob sees the host again.
    m.handle.send(Command::Present(Some(PeerId::MASTER))).await;
    next(
        &mut people[0].1,
        |e| matches!(e, Event::Rights { rights, .. } if !rights.contains(&"presenter")),
    )
    .await;
    next(&mut people[0].1, |e| {
        matches!(e, Event::Sharing { active: false, .. })
    })
    .await;
    next(&mut people[1].1, stats_from(1, 320)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_drops_its_session_leaves_it_and_stops_sharing() {
    let relay = relay().await;
    let (mut m, p, shown, peer) = support_with(
        &relay,
        MediaOptions::default(),
        |_| {},
        MediaOptions::default(),
    )
    .await;
    next(&mut m, |e| matches!(e, Event::ScreenStats { .. })).await;
    drop(p);
    next(
        &mut m,
        |e| matches!(e, Event::Left { peer: p, .. } if *p == peer.0),
    )
    .await;
    // No frame arrives any more.
    let before = shown.0.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(*shown.0.lock().unwrap() == before, "frames still arrive");
}
