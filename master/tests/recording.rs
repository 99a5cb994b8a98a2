//! R25: `conclave-master verify-recording` and `play-recording`, run as a
//! user runs them, on recordings written with the protocol's
//! `RecordingWriter`: a signed recording verifies and names its signer, one
//! flipped byte is refused with where it broke, a cut-short recording is
//! reported so and its unsigned tail is marked, and a headless replay
//! prints the timeline and saves the last picture pixel for pixel. Neither
//! command needs a branded build; a session still does.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};

use conclave_media::frame::{Bgra, Frame, Rect, ScreenSize};
use conclave_media::stream::{Codec, StreamEncoder};
use conclave_protocol::frame::{PeerId, SessionId};
use conclave_protocol::recording::RecordingWriter;
use conclave_protocol::sign::SigningIdentity;
use conclave_protocol::time::UnixTime;

const MASTER: &str = env!("CARGO_BIN_EXE_conclave-master");
const CHAT: &str = "the printer is on fire";

/// The first picture: dark blue with a grey square.
fn first_picture() -> Frame {
    let mut f = Frame::filled(ScreenSize::new(64, 48).unwrap(), Bgra::rgb(0, 0, 90));
    f.fill_rect(Rect::new(4, 4, 8, 8), Bgra::rgb(128, 128, 128));
    f
}

/// The last picture: the first with a red bar and a green pixel.
fn last_picture() -> Frame {
    let mut f = first_picture();
    f.fill_rect(Rect::new(10, 30, 40, 6), Bgra::rgb(220, 20, 30));
    f.fill_rect(Rect::new(63, 47, 1, 1), Bgra::rgb(0, 255, 0));
    f
}

/// A recording by `identity`: two pictures, a chat message and a note;
/// finished, or cut short with one more chat message after its last
/// checkpoint.
fn write_recording(identity: &SigningIdentity, finished: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = RecordingWriter::new(
        &mut out,
        identity,
        SessionId(123_456_789),
        "Moderator",
        UnixTime(1_700_000_000),
    )
    .unwrap();
    let mut encoder = StreamEncoder::new(Codec::Tiles).unwrap();
    for (at_ms, picture) in [(0, first_picture()), (700, last_picture())] {
        for packet in encoder.encode(&picture, 0).unwrap().packets {
            w.screen(at_ms, &packet).unwrap();
        }
    }
    w.chat(1_500, PeerId(2), "Ann", CHAT).unwrap();
    w.note(2_250, "participant 2 \"Ann\" is gone (left)")
        .unwrap();
    if finished {
        w.finish().unwrap();
    } else {
        w.checkpoint().unwrap();
        w.chat(3_000, PeerId(2), "Ann", "written after the last checkpoint")
            .unwrap();
        drop(w);
    }
    out
}

fn run(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(MASTER)
        .args(args)
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("--- {args:?}\n{stdout}\n--- stderr\n{stderr}");
    (out, stdout, stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn r25_verify_recording_accepts_a_signed_recording_and_names_its_signer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let identity = SigningIdentity::generate(&mut rand_core::OsRng);
    std::fs::write(&file, write_recording(&identity, true)).unwrap();

    let (out, stdout, _) = run(&["verify-recording", path(&file)]);
    assert_eq!(out.status.code(), Some(0));
    let fingerprint = identity.public_key().fingerprint().to_string();
    assert!(stdout.contains(&fingerprint), "the signer is named");
    assert!(stdout.contains("session 123456789"));
    assert!(stdout.contains("finished properly"));
}

#[test]
fn r25_verify_recording_refuses_a_recording_with_one_byte_flipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let identity = SigningIdentity::generate(&mut rand_core::OsRng);
    let mut bytes = write_recording(&identity, true);
    // One letter of the chat message, inside the signed part.
    let at = bytes
        .windows(CHAT.len())
        .position(|w| w == CHAT.as_bytes())
        .unwrap();
    bytes[at + 4] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();

    let (out, stdout, stderr) = run(&["verify-recording", path(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty(), "no report for a refused recording");
    assert!(
        stderr.contains("was altered between byte"),
        "the message names the problem and where"
    );
    assert!(stderr.contains("do not trust this copy"));

    // Not a recording at all.
    std::fs::write(&file, b"hello").unwrap();
    let (out, _, stderr) = run(&["verify-recording", path(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("not a Conclave recording"));
}

#[test]
fn r25_verify_recording_reports_a_cut_short_recording() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let identity = SigningIdentity::generate(&mut rand_core::OsRng);
    std::fs::write(&file, write_recording(&identity, false)).unwrap();

    let (out, stdout, _) = run(&["verify-recording", path(&file)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("NOT finished"));
    assert!(stdout.contains("1 entries and"));
}

#[test]
fn r25_play_recording_prints_the_timeline_and_saves_the_last_picture() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let png = dir.path().join("last.png");
    let identity = SigningIdentity::generate(&mut rand_core::OsRng);
    std::fs::write(&file, write_recording(&identity, true)).unwrap();

    let (out, stdout, _) = run(&[
        "play-recording",
        path(&file),
        "--headless",
        "--last-frame",
        path(&png),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<&str> = stdout.lines().collect();
    let timeline: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with('['))
        .collect();
    assert_eq!(
        timeline,
        [
            "[00:00.000] screen 64x48",
            "[00:01.500] <Ann (2)> the printer is on fire",
            "[00:02.250] * participant 2 \"Ann\" is gone (left)",
        ]
    );
    assert!(stdout.contains(&identity.public_key().fingerprint().to_string()));
    assert!(!stdout.contains("unverified"));

    let saved = image::open(&png).unwrap().to_rgb8();
    let want = last_picture();
    assert_eq!(saved.dimensions(), (64, 48));
    for (x, y, pixel) in saved.enumerate_pixels() {
        let Bgra([b, g, r, _]) = want.pixel(x, y).unwrap();
        assert_eq!(pixel.0, [r, g, b], "pixel ({x}, {y})");
    }
    // The bar and the corner pixel of the last picture are there.
    assert_eq!(saved.get_pixel(20, 32).0, [220, 20, 30]);
    assert_eq!(saved.get_pixel(63, 47).0, [0, 255, 0]);
}

#[test]
fn r25_play_recording_marks_what_follows_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let identity = SigningIdentity::generate(&mut rand_core::OsRng);
    std::fs::write(&file, write_recording(&identity, false)).unwrap();

    let (out, stdout, _) = run(&["play-recording", path(&file), "--headless"]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<&str> = stdout.lines().collect();
    let warning = lines
        .iter()
        .position(|l| l.starts_with("WARNING: the recording was cut short"))
        .expect("a warning line");
    assert_eq!(
        lines[warning + 1],
        "[00:03.000] <Ann (2)> written after the last checkpoint (unverified)"
    );
    // Everything before the warning was verified.
    assert!(!lines[..warning].iter().any(|l| l.contains("unverified")));
}

#[test]
fn r25_play_recording_refuses_an_altered_recording() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let png = dir.path().join("last.png");
    let identity = SigningIdentity::generate(&mut rand_core::OsRng);
    let mut bytes = write_recording(&identity, true);
    let at = bytes
        .windows(CHAT.len())
        .position(|w| w == CHAT.as_bytes())
        .unwrap();
    bytes[at] ^= 1;
    std::fs::write(&file, &bytes).unwrap();

    let (out, stdout, stderr) = run(&[
        "play-recording",
        path(&file),
        "--headless",
        "--last-frame",
        path(&png),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("was altered"));
    // The altered message is never shown.
    assert!(!stdout.contains("printer"));
}

#[test]
fn r25_reading_a_recording_needs_no_branded_build_but_a_session_does() {
    // This test binary's conclave-master carries no branded trailer: the
    // commands above ran anyway, and a session is refused.
    let (out, _, stderr) = run(&["start", "--support", "--headless"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr.contains("refusing to run"));
}
