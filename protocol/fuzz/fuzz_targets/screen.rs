//! The screen decoder (conclave-media): a sequence of update messages, or
//! of session packets for the viewer's decoder.
//!
//! The first byte, modulo 4, picks how the rest is read:
//!
//! - 0: arbitrary messages, each a big-endian `u16` length and that many
//!   bytes (the last one takes what is left), applied in turn;
//! - 1: a real stream: bytes 1–5 pick a synthetic workload, a screen of up
//!   to 160×120, how many frames and which are keyframes; the encoder's
//!   messages are then edited by the rest of the input, 4 bytes an edit
//!   (flip a byte, cut a message short, drop it, send it twice), and applied;
//! - 2: arbitrary session packets into the viewer's decoder;
//! - 3: a real stream with video items: a 192×160 video encoded once per
//!   process with video regions on (H.264 pictures, IDR and P, a keyframe
//!   request and a bitrate change among them), edited like a real stream
//!   (byte 1 says how many of its first messages to leave out), so that
//!   damaged H.264 reaches OpenH264's decoder.
//!
//! Checked for all: nothing panics; an error or a skipped message leaves the
//! decoder waiting for a keyframe with its canvas and last frame as they were;
//! a partial frame shows nothing new; a completed frame is shown at the
//! message's screen size. For a real stream, every message before the first
//! edit applies, and each completed frame is pixel for pixel the frame that
//! was encoded (with video: the frame an unedited decode showed).
//!
//! Messages for screens larger than 512×512 are only parsed, not applied:
//! the decoder's buffers grow with the size named (up to 2 × 256 MiB, which
//! the unit tests cover), which would only slow the fuzzer down.
#![no_main]

use std::sync::OnceLock;

use conclave_media::codec::{Applied, ScreenDecoder, ScreenEncoder, TileData, UpdateMessage};
use conclave_media::stream::{Shown as Packet, StreamDecoder};
use conclave_media::video::DEFAULT_BITRATE;
use conclave_media::{Frame, ScreenSize, SyntheticScreen, Workload};
use libfuzzer_sys::fuzz_target;

/// Most messages applied from one input.
const MAX_MESSAGES: usize = 256;
/// Largest screen side applied.
const MAX_SIDE: u32 = 512;

/// What the decoder shows, to compare before and after a message.
#[derive(Debug, PartialEq)]
struct Shown {
    size: Option<ScreenSize>,
    last: Option<u64>,
    checksum: u64,
}

fn shown(d: &ScreenDecoder) -> Shown {
    let checksum = d.canvas().map_or(0, |c| {
        c.as_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    });
    Shown {
        size: d.canvas().map(Frame::size),
        last: d.last_complete_frame(),
        checksum,
    }
}

/// Applies one message and checks the decoder's promises. Returns the
/// outcome, or `None` if the message was not applied (too large a screen).
fn apply(d: &mut ScreenDecoder, message: &[u8]) -> Option<Result<Applied, ()>> {
    let parsed = UpdateMessage::parse(message);
    if let Ok(p) = &parsed {
        if p.screen.width() > MAX_SIDE || p.screen.height() > MAX_SIDE {
            return None;
        }
    }
    let before = shown(d);
    let result = d.apply(message);
    match result {
        Ok(Applied::FrameComplete { frame, .. }) => {
            let p = parsed.as_ref().expect("a message that applied parses");
            assert!(p.last_part && p.frame == frame);
            assert_eq!(d.canvas().map(Frame::size), Some(p.screen));
            assert_eq!(d.last_complete_frame(), Some(frame));
        }
        Ok(Applied::Partial { frame }) => {
            let p = parsed.as_ref().expect("a message that applied parses");
            assert!(!p.last_part && p.frame == frame);
            assert_eq!(shown(d), before, "a partial frame changed the canvas");
        }
        Ok(Applied::Skipped { .. }) => {
            assert!(d.needs_keyframe());
            assert_eq!(shown(d), before, "a skipped message changed the canvas");
        }
        Err(_) => {
            assert!(d.needs_keyframe(), "an error did not ask for a keyframe");
            assert_eq!(shown(d), before, "a refused message changed the canvas");
        }
    }
    Some(result.map_err(|_| ()))
}

/// Up to [`MAX_MESSAGES`] messages, each a big-endian `u16` length and that
/// many bytes (the last one takes what is left).
fn messages(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = match rest {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => rest.len(),
        };
        let body = rest.get(2..).unwrap_or(&[]);
        let (message, tail) = body.split_at(len.min(body.len()));
        rest = tail;
        Some(message)
    })
    .take(MAX_MESSAGES)
}

fn arbitrary(data: &[u8]) {
    let mut d = ScreenDecoder::new();
    for message in messages(data) {
        apply(&mut d, message);
    }
}

fn stream(data: &[u8]) {
    let Some((head, edits)) = data.split_first_chunk::<5>() else {
        return;
    };
    let workload = Workload::ALL[usize::from(head[0]) % Workload::ALL.len()];
    let size = ScreenSize::new(1 + u32::from(head[1]) % 160, 1 + u32::from(head[2]) % 120)
        .expect("within bounds");
    let frames = 2 + usize::from(head[3] % 5);
    let keyframes = head[4];
    let mut source = SyntheticScreen::new(workload, size);
    let mut encoder = ScreenEncoder::new().expect("an encoder");
    // Each message with the frame it completes, if it is a frame's last.
    let mut encoded_frames: Vec<(Vec<Vec<u8>>, Frame)> = Vec::new();
    for n in 0..frames {
        if n > 0 && keyframes >> n & 1 == 1 {
            encoder.request_keyframe();
        }
        let frame = source.next_frame().clone();
        let encoded = encoder.encode(&frame).expect("encoding");
        encoded_frames.push((encoded.messages, frame));
    }
    let mut messages: Vec<(Vec<u8>, Option<&Frame>)> = Vec::new();
    for (list, frame) in &encoded_frames {
        let count = list.len();
        for (i, m) in list.iter().enumerate() {
            messages.push((m.clone(), (i + 1 == count).then_some(frame)));
        }
    }
    check_edited(messages, edits);
}

/// Edits `messages` (each with the frame it completes, if it is a frame's
/// last) by `edits`, 4 bytes an edit, applies them to a fresh decoder and
/// checks that everything before the first edit decodes as it should.
fn check_edited(mut messages: Vec<(Vec<u8>, Option<&Frame>)>, edits: &[u8]) {
    let mut first_edit = messages.len();
    for edit in edits.chunks_exact(4).take(16) {
        if messages.is_empty() {
            break;
        }
        let at = usize::from(edit[0]) % messages.len();
        let offset = usize::from(u16::from_be_bytes([edit[1], edit[2]]));
        first_edit = first_edit.min(at);
        let (m, _) = &mut messages[at];
        match edit[3] % 4 {
            0 => {
                let i = offset % m.len().max(1);
                if let Some(b) = m.get_mut(i) {
                    *b ^= edit[3] | 1;
                }
            }
            1 => m.truncate(offset % m.len().max(1)),
            2 => {
                messages.remove(at);
            }
            _ => {
                let copy = messages[at].clone();
                messages.insert(at, copy);
            }
        }
    }
    let mut d = ScreenDecoder::new();
    for (i, (m, completes)) in messages.iter().enumerate() {
        // An edit may name a larger screen, which is not applied.
        let outcome = apply(&mut d, m);
        if i < first_edit {
            assert!(
                matches!(outcome, Some(Ok(_))),
                "message {i} of an unedited stream was refused"
            );
            if let Some(frame) = completes {
                assert!(d.canvas() == Some(*frame), "frame decoded wrong");
            }
        }
    }
}

/// The video stream of mode 3: each message with the canvas an unedited
/// decode shows once it is applied, if it completes a frame. A 192×160
/// screen whose video covers it (one region of 3 × 3 tiles), from the
/// keyframe that follows the region's start: 14 frames, with another
/// keyframe and a new stream at a lower bitrate among them.
fn video_stream() -> &'static [(Vec<u8>, Option<Frame>)] {
    static STREAM: OnceLock<Vec<(Vec<u8>, Option<Frame>)>> = OnceLock::new();
    STREAM.get_or_init(|| {
        let size = ScreenSize::new(192, 160).expect("within bounds");
        let mut source = SyntheticScreen::new(Workload::Video, size);
        let mut encoder = ScreenEncoder::with_video(DEFAULT_BITRATE).expect("an encoder");
        for _ in 0..20 {
            encoder.encode(source.next_frame()).expect("encoding");
        }
        assert!(encoder.video_region().is_some(), "no video region");
        encoder.request_keyframe();
        let mut decoder = ScreenDecoder::new();
        let mut out = Vec::new();
        let mut pictures = 0;
        for n in 0..14 {
            if n == 6 {
                encoder.request_keyframe();
            }
            if n == 10 {
                encoder.set_video_bitrate(Some(DEFAULT_BITRATE / 4));
            }
            let encoded = encoder.encode(source.next_frame()).expect("encoding");
            let count = encoded.messages.len();
            for (i, m) in encoded.messages.into_iter().enumerate() {
                let parsed = UpdateMessage::parse(&m).expect("the encoder's message parses");
                pictures += parsed
                    .tiles
                    .iter()
                    .filter(|t| matches!(t.data, TileData::Video { .. }))
                    .count();
                decoder.apply(&m).expect("an unedited message applies");
                let shown = (i + 1 == count).then(|| decoder.canvas().expect("a canvas").clone());
                out.push((m, shown));
            }
        }
        assert!(pictures >= 12, "the stream holds {pictures} video pictures");
        out
    })
}

fn video(data: &[u8]) {
    let Some((&skip, edits)) = data.split_first() else {
        return;
    };
    let skip = usize::from(skip % 8);
    let messages: Vec<(Vec<u8>, Option<&Frame>)> = video_stream()
        .iter()
        .skip(skip)
        .map(|(m, shown)| (m.clone(), shown.as_ref()))
        .collect();
    if skip != 0 {
        // A late start: deltas are skipped until the next keyframe, so
        // only the promises for any message are checked.
        let mut d = ScreenDecoder::new();
        for (m, _) in &messages {
            apply(&mut d, m);
        }
        return;
    }
    check_edited(messages, edits);
}

/// Arbitrary session packets (`conclave_media::stream`: either codec, with
/// the capture time) into the viewer's decoder, capped at 512×512: nothing
/// panics, an error leaves the last whole frame shown.
fn packets(data: &[u8]) {
    let mut d = StreamDecoder::new(512 * 512);
    for packet in messages(data) {
        let before = d.canvas().cloned();
        match d.apply(packet) {
            Ok(Packet::Frame { .. }) => {
                let c = d.canvas().expect("a shown frame is on the canvas");
                assert!(u64::from(c.width()) * u64::from(c.height()) <= 512 * 512);
            }
            Ok(Packet::Nothing) => {}
            Err(_) => assert!(
                d.canvas() == before.as_ref(),
                "an error changed the picture"
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) => match mode % 4 {
            0 => arbitrary(rest),
            1 => stream(rest),
            2 => packets(rest),
            _ => video(rest),
        },
        None => {}
    }
});
