//! R25 (and R21's viewer): `conclave-master play-recording` with a display
//! shows the recording's screen in the viewer window. The test starts an
//! Xvfb, runs the app on it, and looks at the display through screen
//! capture until the recording's last picture is there, scaled to fit,
//! pixel colours exact.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conclave_desktop::capture::X11Capture;
use conclave_desktop::xvfb::Xvfb;
use conclave_media::frame::{Bgra, Frame, Rect, ScreenSize};
use conclave_media::stream::{Codec, StreamEncoder};
use conclave_protocol::frame::{PeerId, SessionId};
use conclave_protocol::recording::RecordingWriter;
use conclave_protocol::sign::SigningIdentity;
use conclave_protocol::time::UnixTime;

const MASTER: &str = env!("CARGO_BIN_EXE_conclave-master");
/// How long the window may take to appear (llvmpipe compiles its shaders).
const APPEAR: Duration = Duration::from_secs(60);
/// The last picture's bar, in a colour nothing else on screen has.
const BAR: (u8, u8, u8) = (220, 20, 30);
/// The first picture's background.
const BACKGROUND: (u8, u8, u8) = (0, 0, 90);

fn picture(with_bar: bool) -> Frame {
    let (r, g, b) = BACKGROUND;
    let mut f = Frame::filled(ScreenSize::new(64, 48).unwrap(), Bgra::rgb(r, g, b));
    if with_bar {
        let (r, g, b) = BAR;
        f.fill_rect(Rect::new(10, 30, 40, 6), Bgra::rgb(r, g, b));
    }
    f
}

/// How many pixels of the display are exactly `(r, g, b)`.
fn count(pixels: &[u8], (r, g, b): (u8, u8, u8)) -> usize {
    pixels
        .chunks_exact(4)
        .filter(|p| p[0] == b && p[1] == g && p[2] == r)
        .count()
}

#[test]
fn r25_play_recording_shows_the_recorded_screen_in_the_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let identity = SigningIdentity::generate(&mut rand_core::OsRng);
    let mut bytes = Vec::new();
    let mut w = RecordingWriter::new(
        &mut bytes,
        &identity,
        SessionId(7),
        "Moderator",
        UnixTime(1_700_000_000),
    )
    .unwrap();
    let mut encoder = StreamEncoder::new(Codec::Tiles).unwrap();
    for (at_ms, frame) in [(0, picture(false)), (500, picture(true))] {
        for packet in encoder.encode(&frame, 0).unwrap().packets {
            w.screen(at_ms, &packet).unwrap();
        }
    }
    w.chat(600, PeerId(2), "Ann", "hello").unwrap();
    w.finish().unwrap();
    std::fs::write(&file, &bytes).unwrap();

    let x = Xvfb::start(1600, 1000).unwrap();
    let mut app = Command::new(MASTER)
        .args(["play-recording", file.to_str().unwrap()])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut cap = X11Capture::connect(Some(&x.display)).unwrap();
    let mut pixels = Vec::new();
    let deadline = Instant::now() + APPEAR;
    let (mut bar, mut background) = (0, 0);
    while Instant::now() < deadline {
        if let Some(status) = app.try_wait().unwrap() {
            let out = app.wait_with_output().unwrap();
            panic!(
                "the app exited ({status}) before showing the recording:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cap.capture(&mut pixels).unwrap();
        bar = count(&pixels, BAR);
        background = count(&pixels, BACKGROUND);
        if bar > 0 && background > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The window keeps showing the last picture until it is closed.
    app.kill().unwrap();
    let out = app.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("on screen: {bar} px of the bar, {background} px of the background");
    // 40×6 remote pixels, enlarged to fit a window of about 1280×800: far
    // more screen pixels than the picture has, in its exact colour.
    assert!(
        bar > 240 * 4,
        "the last picture's bar is on screen ({bar} px)"
    );
    assert!(background > bar, "and its background ({background} px)");
    // The timeline went to standard output meanwhile.
    assert!(stdout.contains("[00:00.600] <Ann (2)> hello"));
}
