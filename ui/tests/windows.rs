//! The windows under a real X server (Xvfb, started here), seen through
//! screen capture and driven by injected input, as a user would see and
//! drive them.
//!
//! - R21: the master's viewer shows the shared screen, pixel for pixel at
//!   1:1, and shows a newer frame as soon as one is published.
//! - R22: the viewer turns clicks and typing over the picture into remote
//!   input only while control is active; the participant's banner shows
//!   that control is active, asks for consent, stops control with its red
//!   Stop button, and is on screen exactly while someone is connected.
//!
//! winit allows one event loop per process. So each test runs its window
//! in a child process: the test starts an Xvfb, runs this test binary
//! again, filtered to the same test, with `DISPLAY` set to it and
//! [`CHILD`] set; the child shows the window, checks, and the parent
//! asserts that it ran and passed. Screenshots are saved as PNG under
//! cargo's temporary directory for the tests (the path is printed).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use conclave_desktop::capture::X11Capture;
use conclave_desktop::input::Injector;
use conclave_desktop::xvfb::Xvfb;
use conclave_media::frame::{Bgra, Frame, Rect, ScreenSize};
use conclave_protocol::input::{InputEvent, MouseButton};
use conclave_ui::banner::{ACTIVE_RED, ALLOW_GREEN, STOP_RED};
use conclave_ui::{
    run_banner, run_viewer, ConsentPrompt, ControlView, LatestFrame, MemberView, Model, Scale,
    SharedModel, TransferView, UiAction, UiError, WindowOptions, ENDED_LINGER, TRANSFER_BLUE,
};

/// Set in the child process that shows the window.
const CHILD: &str = "CONCLAVE_UI_TEST_CHILD";
/// How long a window may take to appear (llvmpipe compiles its shaders).
const APPEAR: Duration = Duration::from_secs(60);
/// How long a change may take to show, or an action to arrive.
const REACT: Duration = Duration::from_secs(10);

/// Runs `body` in a child process with its own Xvfb (see the module docs).
fn in_child_with_xvfb(name: &str, body: impl FnOnce(&str)) {
    if std::env::var_os(CHILD).is_some() {
        let display = std::env::var("DISPLAY").expect("the parent sets DISPLAY");
        body(&display);
        return;
    }
    let x = Xvfb::start(1024, 768).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- child stdout ---\n{stdout}\n--- child stderr ---\n{stderr}");
    assert!(out.status.success(), "the window test failed in its child");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: the filter missed {name}"
    );
}

/// Captures the whole display.
fn capture(cap: &mut X11Capture) -> Shot {
    let mut pixels = Vec::new();
    let (width, height) = cap.capture(&mut pixels).unwrap();
    Shot {
        width: usize::from(width),
        height: usize::from(height),
        pixels,
    }
}

/// A capture: BGRA, rows packed.
struct Shot {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

/// Pixels found of one colour: their bounding box and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    left: usize,
    top: usize,
    right: usize,
    bottom: usize,
    count: usize,
}

impl Found {
    fn width(&self) -> usize {
        self.right - self.left + 1
    }
    fn height(&self) -> usize {
        self.bottom - self.top + 1
    }
    fn centre(&self) -> (u16, u16) {
        (
            u16::try_from((self.left + self.right) / 2).unwrap(),
            u16::try_from((self.top + self.bottom) / 2).unwrap(),
        )
    }
}

impl Shot {
    /// (r, g, b) at (x, y).
    fn rgb(&self, x: usize, y: usize) -> (u8, u8, u8) {
        let i = (y * self.width + x) * 4;
        (self.pixels[i + 2], self.pixels[i + 1], self.pixels[i])
    }

    /// Where pixels within 3 of `(r, g, b)` on each channel are.
    fn find(&self, (r, g, b): (u8, u8, u8)) -> Option<Found> {
        let mut found: Option<Found> = None;
        for y in 0..self.height {
            for x in 0..self.width {
                if close(self.rgb(x, y), (r, g, b)) {
                    let f = found.get_or_insert(Found {
                        left: x,
                        top: y,
                        right: x,
                        bottom: y,
                        count: 0,
                    });
                    f.left = f.left.min(x);
                    f.right = f.right.max(x);
                    f.top = f.top.min(y);
                    f.bottom = f.bottom.max(y);
                    f.count += 1;
                }
            }
        }
        found
    }

    /// Saves the shot as a PNG under cargo's temporary directory for tests.
    fn save(&self, name: &str) -> PathBuf {
        let mut rgba = self.pixels.clone();
        for px in rgba.chunks_exact_mut(4) {
            px.swap(0, 2);
            px[3] = 255;
        }
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
        image::save_buffer(
            &path,
            &rgba,
            u32::try_from(self.width).unwrap(),
            u32::try_from(self.height).unwrap(),
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

fn close(a: (u8, u8, u8), b: (u8, u8, u8)) -> bool {
    a.0.abs_diff(b.0) <= 3 && a.1.abs_diff(b.1) <= 3 && a.2.abs_diff(b.2) <= 3
}

fn rgb(c: eframe::egui::Color32) -> (u8, u8, u8) {
    (c.r(), c.g(), c.b())
}

/// Captures until `check` returns something, for at most `limit`.
fn wait_for<T>(
    cap: &mut X11Capture,
    limit: Duration,
    what: &str,
    mut check: impl FnMut(&Shot) -> Option<T>,
) -> (Shot, T) {
    let until = Instant::now() + limit;
    loop {
        let shot = capture(cap);
        if let Some(t) = check(&shot) {
            return (shot, t);
        }
        if Instant::now() > until {
            shot.save("timed-out");
            panic!("timed out waiting for {what}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The actions that arrive within `limit`, until `done` holds for them.
fn actions_until(
    rx: &Receiver<UiAction>,
    limit: Duration,
    done: impl Fn(&[UiAction]) -> bool,
) -> Vec<UiAction> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    while !done(&got) {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(a) => got.push(a),
            Err(_) => panic!("timed out; actions so far: {got:?}"),
        }
    }
    got
}

/// Everything that arrives within `wait`.
fn actions_within(rx: &Receiver<UiAction>, wait: Duration) -> Vec<UiAction> {
    thread::sleep(wait);
    rx.try_iter().collect()
}

fn click(inj: &mut Injector, (x, y): (u16, u16)) {
    inj.apply(&InputEvent::MoveTo { x, y }).unwrap();
    // Let the window see the pointer arrive before the press.
    thread::sleep(Duration::from_millis(150));
    for pressed in [true, false] {
        inj.apply(&InputEvent::Button {
            button: MouseButton::Left,
            pressed,
        })
        .unwrap();
        thread::sleep(Duration::from_millis(50));
    }
}

/// Gives the keyboard focus to the window under the pointer, as a window
/// manager would on a click (Xvfb runs none).
fn focus_window_under_pointer(display: &str) {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{ConnectionExt as _, InputFocus};
    let (conn, screen) = x11rb::connect(Some(display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let under = conn.query_pointer(root).unwrap().reply().unwrap().child;
    assert_ne!(under, x11rb::NONE, "no window under the pointer");
    conn.set_input_focus(InputFocus::PARENT, under, x11rb::CURRENT_TIME)
        .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
}

/// Waits for the window's thread to end (it closes by itself), and
/// returns what the window returned.
fn join_within(window: JoinHandle<Result<(), UiError>>, limit: Duration) -> Result<(), UiError> {
    let until = Instant::now() + limit;
    while !window.is_finished() {
        assert!(Instant::now() < until, "the window did not close");
        thread::sleep(Duration::from_millis(50));
    }
    window.join().unwrap()
}

fn member(peer: u32, name: &str, rights: &[&str]) -> MemberView {
    MemberView {
        peer,
        name: name.into(),
        rights: rights.iter().map(|r| r.to_string()).collect(),
    }
}

// --- R21 / R22: the master's viewer ---------------------------------------

const SCREEN_W: u32 = 320;
const SCREEN_H: u32 = 240;
/// A magenta square on the remote screen, where no window decoration is.
const SQUARE: Rect = Rect::new(200, 150, 40, 30);
const MAGENTA: (u8, u8, u8) = (255, 0, 255);
const CYAN: (u8, u8, u8) = (0, 255, 255);
const LIGHT: (u8, u8, u8) = (200, 200, 200);
const DARK: (u8, u8, u8) = (70, 70, 70);

/// A checkerboard of 8-pixel cells (light at the top-left) with the square.
fn remote_screen(square: (u8, u8, u8)) -> Frame {
    let size = ScreenSize::new(SCREEN_W, SCREEN_H).unwrap();
    let mut f = Frame::filled(size, Bgra::rgb(DARK.0, DARK.1, DARK.2));
    for cy in 0..SCREEN_H / 8 {
        for cx in 0..SCREEN_W / 8 {
            if (cx + cy) % 2 == 0 {
                f.fill_rect(
                    Rect::new(cx * 8, cy * 8, 8, 8),
                    Bgra::rgb(LIGHT.0, LIGHT.1, LIGHT.2),
                );
            }
        }
    }
    f.fill_rect(SQUARE, Bgra::rgb(square.0, square.1, square.2));
    f
}

#[test]
fn r21_r22_viewer_shows_the_remote_screen_1_to_1_and_sends_input_only_under_control() {
    in_child_with_xvfb(
        "r21_r22_viewer_shows_the_remote_screen_1_to_1_and_sends_input_only_under_control",
        viewer_scenario,
    );
}

fn viewer_scenario(display: &str) {
    let screen = LatestFrame::new();
    screen.publish(&remote_screen(MAGENTA));
    let model = SharedModel::new(Model {
        title: "Support session".into(),
        status_line: "30 fps · 120 KB/s · 12 ms".into(),
        members: vec![member(2, "Ada", &["view", "control"])],
        ..Model::default()
    });
    let (tx, rx) = mpsc::channel();
    let window = thread::spawn({
        let (model, screen) = (model.clone(), screen.clone());
        move || {
            let options = WindowOptions {
                size: (800.0, 600.0),
                position: Some((0.0, 0.0)),
                close_after: Some(Duration::from_secs(120)),
                scale: Scale::OneToOne,
                ..WindowOptions::viewer("Viewer test")
            };
            run_viewer(options, model, screen, tx)
        }
    });
    let mut cap = X11Capture::connect(Some(display)).unwrap();

    // R21: the square appears, exactly its size (1:1), and the board
    // around it is where it is on the remote screen.
    let (shot, square) = wait_for(&mut cap, APPEAR, "the remote screen", |s| s.find(MAGENTA));
    shot.save("r21-viewer");
    assert_eq!(
        (square.width(), square.height(), square.count),
        (40, 30, 40 * 30),
        "the square is not shown 1:1: {square:?}"
    );
    let origin = (square.left - 200, square.top - 150);
    for (x, y) in [
        (3, 3),
        (11, 3),
        (3, 11),
        (12, 12),
        (316, 236),
        (196, 146),
        (245, 185),
    ] {
        let want = if (x / 8 + y / 8) % 2 == 0 {
            LIGHT
        } else {
            DARK
        };
        let got = shot.rgb(origin.0 + x, origin.1 + y);
        assert!(
            close(got, want),
            "remote pixel ({x}, {y}) shows as {got:?}, expected {want:?}"
        );
    }

    // R21: a newer frame replaces the shown one, with no input to wake
    // the window: publishing asks for the repaint.
    screen.publish(&remote_screen(CYAN));
    let (_, cyan) = wait_for(&mut cap, REACT, "the newer frame", |s| s.find(CYAN));
    assert_eq!((cyan.left, cyan.top), (square.left, square.top));
    assert!(capture(&mut cap).find(MAGENTA).is_none());

    // R22: without control, a click on the picture sends nothing.
    let mut inj = Injector::connect(Some(display), (0, 0)).unwrap();
    let on_square = (
        u16::try_from(square.left + 5).unwrap(),
        u16::try_from(square.top + 7).unwrap(),
    );
    click(&mut inj, on_square);
    let idle = actions_within(&rx, Duration::from_millis(800));
    assert!(
        !idle.iter().any(|a| matches!(a, UiAction::Input(_))),
        "input sent without control: {idle:?}"
    );

    // R22: under control, the same click arrives in remote pixels.
    model.update(|m| m.control = ControlView::Active);
    thread::sleep(Duration::from_millis(300));
    click(&mut inj, on_square);
    let want_at = InputEvent::MoveTo { x: 205, y: 157 };
    let got = actions_until(&rx, REACT, |got| {
        got.contains(&UiAction::Input(InputEvent::Button {
            button: MouseButton::Left,
            pressed: false,
        }))
    });
    let inputs: Vec<&InputEvent> = got
        .iter()
        .filter_map(|a| match a {
            UiAction::Input(e) => Some(e),
            _ => None,
        })
        .collect();
    let at = inputs.iter().position(|e| **e == want_at);
    let press = inputs.iter().position(|e| {
        **e == InputEvent::Button {
            button: MouseButton::Left,
            pressed: true,
        }
    });
    assert!(
        matches!((at, press), (Some(a), Some(p)) if a < p),
        "expected a move to (205, 157) then a press: {inputs:?}"
    );

    // R22: typed text reaches the remote side as text.
    focus_window_under_pointer(display);
    inj.apply(&InputEvent::Text(
        conclave_protocol::bounded::BoundedString::new("ok").unwrap(),
    ))
    .unwrap();
    actions_until(&rx, REACT, |got| typed_text(got).contains("ok"));

    // The session ends: the window says so, closes, and sends Leave.
    model.update(|m| m.ended = Some("the participant left".into()));
    assert_eq!(join_within(window, ENDED_LINGER + REACT), Ok(()));
    assert!(rx.try_iter().any(|a| a == UiAction::Leave));
}

fn typed_text(actions: &[UiAction]) -> String {
    actions
        .iter()
        .filter_map(|a| match a {
            UiAction::Input(InputEvent::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

// --- R22: the participant's banner ----------------------------------------

#[test]
fn r22_banner_shows_control_asks_consent_stops_and_hides_when_no_one_is_connected() {
    in_child_with_xvfb(
        "r22_banner_shows_control_asks_consent_stops_and_hides_when_no_one_is_connected",
        banner_scenario,
    );
}

fn banner_scenario(display: &str) {
    let model = SharedModel::new(Model {
        title: "Conclave support".into(),
        members: vec![member(1, "Ada", &["view", "control"])],
        control: ControlView::Active,
        consent: Some(ConsentPrompt {
            who: "Bob".into(),
            seconds_left: 9,
            default_accept: false,
        }),
        ..Model::default()
    });
    let (tx, rx) = mpsc::channel();
    let window = thread::spawn({
        let model = model.clone();
        move || {
            let options = WindowOptions {
                position: Some((0.0, 0.0)),
                close_after: Some(Duration::from_secs(120)),
                ..WindowOptions::banner("Banner test")
            };
            run_banner(options, model, tx)
        }
    });
    let mut cap = X11Capture::connect(Some(display)).unwrap();

    // Control active, a consent question, the Stop button: all on screen.
    let (shot, (stop, active, allow)) = wait_for(&mut cap, APPEAR, "the banner", |s| {
        Some((
            s.find(rgb(STOP_RED))?,
            s.find(rgb(ACTIVE_RED))?,
            s.find(rgb(ALLOW_GREEN))?,
        ))
    });
    shot.save("r22-banner");
    assert!(
        stop.width() >= 200 && stop.height() >= 30,
        "the Stop button is not big: {stop:?}"
    );
    assert!(active.width() >= 200, "the alarm is not wide: {active:?}");

    let mut inj = Injector::connect(Some(display), (0, 0)).unwrap();
    // Allow answers the consent question.
    click(&mut inj, allow.centre());
    actions_until(&rx, REACT, |got| got.contains(&UiAction::Accept));
    // Stop ends control.
    click(&mut inj, stop.centre());
    actions_until(&rx, REACT, |got| got.contains(&UiAction::Stop));

    // Control over, question answered: the alarm and the question go, the
    // banner stays while Ada is connected.
    model.update(|m| {
        m.control = ControlView::Off;
        m.consent = None;
    });
    wait_for(&mut cap, REACT, "the alarm to go", |s| {
        (s.find(rgb(ACTIVE_RED)).is_none() && s.find(rgb(ALLOW_GREEN)).is_none()).then_some(())
    });
    assert!(capture(&mut cap).find(rgb(STOP_RED)).is_some());

    // R23: a file on its way shows a progress bar that follows it.
    let receiving = |done: u64| TransferView {
        key: "file 1 receive 1".into(),
        label: "Receiving file 1 from Ada".into(),
        done,
        size: 400_000,
        state: "progress".into(),
    };
    model.update(|m| m.transfer(receiving(100_000)));
    let (_, quarter) = wait_for(&mut cap, REACT, "a progress bar", |s| {
        s.find(rgb(TRANSFER_BLUE))
    });
    model.update(|m| m.transfer(receiving(300_000)));
    let (shot, three_quarters) = wait_for(&mut cap, REACT, "the bar to grow", |s| {
        s.find(rgb(TRANSFER_BLUE))
            .filter(|f| f.width() > 2 * quarter.width())
    });
    shot.save("r23-banner-progress");
    let ratio = three_quarters.width() as f64 / quarter.width() as f64;
    assert!(
        (2.5..3.5).contains(&ratio),
        "25 % and 75 % drew bars {} and {} pixels wide",
        quarter.width(),
        three_quarters.width()
    );
    assert_eq!(quarter.left, three_quarters.left);

    // No one connected: the banner hides; someone again: it shows.
    model.update(|m| m.members.clear());
    wait_for(&mut cap, REACT, "the banner to hide", |s| {
        s.find(rgb(STOP_RED)).is_none().then_some(())
    });
    model.update(|m| m.members.push(member(3, "Cy", &["view"])));
    wait_for(&mut cap, REACT, "the banner to show again", |s| {
        s.find(rgb(STOP_RED))
    });

    // The session ends: the banner closes and sends Leave.
    model.update(|m| m.ended = Some("the master ended the session".into()));
    assert_eq!(join_within(window, ENDED_LINGER + REACT), Ok(()));
    assert!(rx.try_iter().any(|a| a == UiAction::Leave));
}
