//! Replaying a recording (R25): its entries in order, verified as they are
//! read, the screen decoded onto a canvas, chat and notes as a timeline.
//!
//! [`Player`] reads a recording through
//! [`RecordingReader`], which
//! yields an entry only once the signed checkpoint covering it has
//! verified, except for the entries after the last checkpoint of a
//! recording that was cut short: those come marked unverified, and the
//! timeline says so loudly before the first of them. Screen entries are
//! packets of the screen stream (`conclave_media::stream`) and go through a
//! [`StreamDecoder`]. [`play`] paces the entries at their recorded times (or
//! a multiple of them) and hands each to the caller, who prints it or shows
//! it in a viewer window.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conclave_media::frame::Frame;
use conclave_media::stream::{Shown, StreamDecoder};
use conclave_protocol::recording::{
    EntryContent, RecordingError, RecordingHeader, RecordingReader, VerifyReport,
};

/// The warning shown before the first unverified entry.
pub const UNVERIFIED_WARNING: &str = "WARNING: the recording was cut short: what follows is NOT \
     verified (no signed checkpoint covers it) and may have been altered";

/// How often [`play`] looks at its stop flag while it waits.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What one entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Played {
    /// A new whole picture is on the canvas ([`Player::canvas`]);
    /// `new_size` when its size differs from the last one (the first
    /// picture included).
    Frame {
        /// The picture's width and height, when new.
        new_size: Option<(u32, u32)>,
    },
    /// A screen update that completed no picture (yet).
    Partial,
    /// A screen update the decoder refused; the canvas keeps the last
    /// picture until the next keyframe.
    Undecodable(String),
    /// A chat message.
    Chat {
        /// The sender's peer number.
        from: u32,
        /// The sender's name at the time.
        name: String,
        /// The message.
        text: String,
    },
    /// A session event in words.
    Note(String),
}

/// One entry as played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its place in the recording, from 0.
    pub index: u64,
    /// Milliseconds since the recording started.
    pub at_ms: u64,
    /// Whether a signed checkpoint covers it.
    pub verified: bool,
    /// Whether it is the first unverified entry: show
    /// [`UNVERIFIED_WARNING`] before it.
    pub first_unverified: bool,
    /// What it did.
    pub played: Played,
}

impl Step {
    /// The step as a line of the timeline, e.g. `[00:01.500] <Ann (2)> hi`;
    /// `None` for screen updates that change nothing worth a line.
    pub fn line(&self) -> Option<String> {
        let what = match &self.played {
            Played::Frame {
                new_size: Some((w, h)),
            } => format!("screen {w}x{h}"),
            Played::Frame { new_size: None } | Played::Partial => return None,
            Played::Undecodable(why) => format!("screen update not shown: {why}"),
            Played::Chat { from, name, text } => format!("<{name} ({from})> {text}"),
            Played::Note(text) => format!("* {text}"),
        };
        let mark = if self.verified { "" } else { " (unverified)" };
        Some(format!("[{}] {what}{mark}", clock(self.at_ms)))
    }
}

/// `at_ms` as `MM:SS.mmm`, or `H:MM:SS.mmm` from an hour on.
pub fn clock(at_ms: u64) -> String {
    let (ms, s) = (at_ms % 1000, at_ms / 1000);
    let (sec, min, hours) = (s % 60, (s / 60) % 60, s / 3600);
    if hours > 0 {
        format!("{hours}:{min:02}:{sec:02}.{ms:03}")
    } else {
        format!("{min:02}:{sec:02}.{ms:03}")
    }
}

/// Reads a recording entry by entry, decoding its screen (see the module
/// docs).
#[derive(Debug)]
pub struct Player<R: Read> {
    reader: RecordingReader<R>,
    decoder: StreamDecoder,
    size: Option<(u32, u32)>,
    /// Whether an unverified entry was played.
    unverified: bool,
}

impl<R: Read> Player<R> {
    /// Reads the recording's header and first checkpoint from `input`; the
    /// screen may have at most `max_pixels` pixels.
    pub fn open(input: R, max_pixels: u64) -> Result<Self, RecordingError> {
        Ok(Player {
            reader: RecordingReader::new(input)?,
            decoder: StreamDecoder::new(max_pixels),
            size: None,
            unverified: false,
        })
    }

    /// The recording's header (signed by its first checkpoint).
    pub fn header(&self) -> &RecordingHeader {
        self.reader.header()
    }

    /// Plays the next entry: `None` at the end, or why the rest of the
    /// recording is refused.
    pub fn next_step(&mut self) -> Result<Option<Step>, RecordingError> {
        let Some(entry) = self.reader.next_entry()? else {
            return Ok(None);
        };
        let first_unverified = !entry.verified && !self.unverified;
        self.unverified |= !entry.verified;
        let played = match entry.content {
            EntryContent::ScreenUpdate(packet) => match self.decoder.apply(&packet) {
                Ok(Shown::Frame { .. }) => {
                    let size = self.decoder.canvas().map(|f| (f.width(), f.height()));
                    let new_size = (size != self.size).then_some(size).flatten();
                    self.size = size;
                    Played::Frame { new_size }
                }
                Ok(Shown::Nothing) => Played::Partial,
                Err(e) => Played::Undecodable(e.to_string()),
            },
            EntryContent::Chat { from, name, text } => Played::Chat {
                from: from.0,
                name: name.as_str().to_string(),
                text: text.as_str().to_string(),
            },
            EntryContent::Note(text) => Played::Note(text.as_str().to_string()),
        };
        Ok(Some(Step {
            index: entry.index,
            at_ms: entry.at_ms,
            verified: entry.verified,
            first_unverified,
            played,
        }))
    }

    /// The last whole picture, if any.
    pub fn canvas(&self) -> Option<&Frame> {
        self.decoder.canvas()
    }

    /// What has been verified so far; the whole story at the end.
    pub fn report(&self) -> VerifyReport {
        self.reader.report()
    }

    /// Whether an unverified entry has been played.
    pub fn played_unverified(&self) -> bool {
        self.unverified
    }
}

/// How [`play`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every entry was played.
    End,
    /// The stop flag was raised first.
    Stopped,
}

/// Plays `player` to its end, handing each step to `on_step` with the
/// player (for its canvas). With `speed`, each entry waits for its recorded
/// time divided by `speed` since the start (1.0: as recorded); without, no
/// entry waits. Raising `stop` ends it within a few tens of milliseconds.
pub fn play<R: Read>(
    player: &mut Player<R>,
    speed: Option<f64>,
    stop: &AtomicBool,
    mut on_step: impl FnMut(&Step, &Player<R>),
) -> Result<Ending, RecordingError> {
    let start = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Ending::Stopped);
        }
        let Some(step) = player.next_step()? else {
            return Ok(Ending::End);
        };
        if let Some(speed) = speed {
            // A time the file names past what a clock can hold waits for
            // ever (until stopped), rather than overflowing.
            let due = Duration::try_from_secs_f64(step.at_ms as f64 / 1000.0 / speed)
                .ok()
                .and_then(|d| start.checked_add(d))
                .unwrap_or(start + Duration::from_secs(100 * 365 * 86_400));
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Ending::Stopped);
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(STOP_POLL));
            }
        }
        on_step(&step, player);
    }
}

/// The slowest replay speed accepted.
pub const MIN_SPEED: f64 = 0.01;
/// The fastest replay speed accepted.
pub const MAX_SPEED: f64 = 1000.0;

/// Checks a `--speed` value: from [`MIN_SPEED`] to [`MAX_SPEED`].
pub fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (MIN_SPEED..=MAX_SPEED).contains(&x) => Ok(x),
        _ => Err(format!(
            "{text:?} is not a speed: give a number from {MIN_SPEED} to {MAX_SPEED} (1 = as recorded, 2 = twice as fast)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_media::frame::{Bgra, Rect, ScreenSize};
    use conclave_media::stream::{Codec, StreamEncoder};
    use conclave_protocol::frame::{PeerId, SessionId};
    use conclave_protocol::recording::RecordingWriter;
    use conclave_protocol::sign::SigningIdentity;
    use conclave_protocol::time::UnixTime;

    fn frame(colour: u8) -> Frame {
        let mut f = Frame::filled(ScreenSize::new(64, 32).unwrap(), Bgra::rgb(0, 0, colour));
        f.fill_rect(Rect::new(8, 8, 4, 4), Bgra::rgb(colour, 1, 2));
        f
    }

    /// A recording of two pictures, a chat message and a note; `finish`
    /// or cut after the last checkpoint, with one more chat unverified.
    fn recording(finish: bool) -> Vec<u8> {
        let identity = SigningIdentity::from_seed(&[7; 32]);
        let mut out = Vec::new();
        let mut w = RecordingWriter::new(&mut out, &identity, SessionId(42), "Mo", UnixTime(1_000))
            .unwrap();
        let mut encoder = StreamEncoder::new(Codec::Tiles).unwrap();
        for (at, colour) in [(0, 10), (40, 200)] {
            for packet in encoder.encode(&frame(colour), 0).unwrap().packets {
                w.screen(at, &packet).unwrap();
            }
        }
        w.chat(1_500, PeerId(2), "Ann", "hi").unwrap();
        w.note(61_000, "Ann left").unwrap();
        if finish {
            w.finish().unwrap();
        } else {
            w.checkpoint().unwrap();
            w.chat(62_000, PeerId(2), "Ann", "after").unwrap();
            drop(w);
        }
        out
    }

    #[test]
    fn a_recording_plays_its_pictures_and_timeline() {
        let bytes = recording(true);
        let mut player = Player::open(&bytes[..], 1 << 20).unwrap();
        assert_eq!(player.header().session, SessionId(42));
        let mut lines = Vec::new();
        let mut frames = 0;
        let ending = play(&mut player, None, &AtomicBool::new(false), |step, _| {
            frames += usize::from(matches!(step.played, Played::Frame { .. }));
            lines.extend(step.line());
        })
        .unwrap();
        assert_eq!(ending, Ending::End);
        assert_eq!(frames, 2);
        assert_eq!(
            lines,
            vec![
                "[00:00.000] screen 64x32".to_string(),
                "[00:01.500] <Ann (2)> hi".into(),
                "[01:01.000] * Ann left".into(),
            ]
        );
        assert_eq!(player.canvas(), Some(&frame(200)));
        assert!(player.report().finished);
        assert!(!player.played_unverified());
    }

    #[test]
    fn entries_after_the_last_checkpoint_are_marked() {
        let bytes = recording(false);
        let mut player = Player::open(&bytes[..], 1 << 20).unwrap();
        let mut lines = Vec::new();
        play(&mut player, None, &AtomicBool::new(false), |step, _| {
            if step.first_unverified {
                lines.push(UNVERIFIED_WARNING.to_string());
            }
            lines.extend(step.line());
        })
        .unwrap();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[3], UNVERIFIED_WARNING);
        assert_eq!(lines[4], "[01:02.000] <Ann (2)> after (unverified)");
        assert!(!player.report().finished);
        assert!(player.played_unverified());
    }

    #[test]
    fn a_raised_stop_flag_ends_a_paced_replay() {
        let bytes = recording(true);
        let mut player = Player::open(&bytes[..], 1 << 20).unwrap();
        let stop = AtomicBool::new(false);
        let mut seen = Vec::new();
        // At the recorded pace the note would come after a minute.
        let ending = play(&mut player, Some(1.0), &stop, |step, _| {
            seen.push(step.at_ms);
            if step.at_ms == 1_500 {
                stop.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
        assert_eq!(ending, Ending::Stopped);
        assert_eq!(seen.last(), Some(&1_500));
    }

    #[test]
    fn clocks_and_speeds() {
        assert_eq!(clock(0), "00:00.000");
        assert_eq!(clock(61_005), "01:01.005");
        assert_eq!(clock(3_723_004), "1:02:03.004");
        assert_eq!(parse_speed("2"), Ok(2.0));
        assert!(parse_speed("0").is_err());
        assert!(parse_speed("-1").is_err());
        assert!(parse_speed("inf").is_err());
        assert!(parse_speed("1e-300").is_err());
        assert!(parse_speed("NaN").is_err());
        assert!(parse_speed("fast").unwrap_err().contains("not a speed"));
    }
}
