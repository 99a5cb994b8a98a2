//! The screen decoder (conclave-media): a sequence of update messages, or
//! (first byte ≡ 2 mod 3) of session packets for the viewer's decoder.
//!
//! The first byte picks how the rest is read:
//!
//! - even: arbitrary messages, each a big-endian `u16` length and that many
//!   bytes (the last one takes what is left), applied in turn;
//! - odd: a real stream: bytes 1–5 pick a synthetic workload, a screen of up
//!   to 160×120, how many frames and which are keyframes; the encoder's
//!   messages are then edited by the rest of the input, 4 bytes an edit
//!   (flip a byte, cut a message short, drop it, send it twice), and applied.
//!
//! Checked for both: nothing panics; an error or a skipped message leaves the
//! decoder waiting for a keyframe with its canvas and last frame as they were;
//! a partial frame shows nothing new; a completed frame is shown at the
//! message's screen size. For a real stream, every message before the first
//! edit applies, and each completed frame is pixel for pixel the frame that
//! was encoded.
//!
//! Messages for screens larger than 512×512 are only parsed, not applied:
//! the decoder's buffers grow with the size named (up to 2 × 256 MiB, which
//! the unit tests cover), which would only slow the fuzzer down.
#![no_main]

use conclave_media::codec::{Applied, ScreenDecoder, ScreenEncoder, UpdateMessage};
use conclave_media::stream::{Shown as Packet, StreamDecoder};
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
    let mut messages: Vec<(Vec<u8>, Option<Frame>)> = Vec::new();
    for n in 0..frames {
        if n > 0 && keyframes >> n & 1 == 1 {
            encoder.request_keyframe();
        }
        let frame = source.next_frame().clone();
        let encoded = encoder.encode(&frame).expect("encoding");
        let count = encoded.messages.len();
        for (i, m) in encoded.messages.into_iter().enumerate() {
            messages.push((m, (i + 1 == count).then(|| frame.clone())));
        }
    }
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
                assert!(d.canvas() == Some(frame), "frame decoded wrong");
            }
        }
    }
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
        Some((mode, rest)) if mode % 3 == 2 => packets(rest),
        Some((mode, rest)) if mode & 1 == 1 => stream(rest),
        Some((_, rest)) => arbitrary(rest),
        None => {}
    }
});
