//! What travels in a session's screen frames, and where frames come from.
//!
//! A presenter takes frames from a [`ScreenSource`], encodes them with a
//! [`StreamEncoder`] and sends each resulting *packet* as the plaintext of
//! one frame of class `Screen`; a viewer hands each packet to a
//! [`StreamDecoder`], which shows whole frames only.
//!
//! ## Packets
//!
//! ```text
//! offset size  field
//!  0      1    codec        1: the tile codec (crate::codec); 2: whole-frame zstd
//!  1      8    captured     when the frame was captured, microseconds since the
//!                           Unix epoch, little-endian (the presenter's clock)
//!  9           body         one message of that codec, at most MAX_UPDATE bytes
//! ```
//!
//! The capture time lets a viewer on a clock-synchronised host show the
//! latency from capture to display; nothing else depends on it being right
//! (the video's rate control takes it as the time the frame's bits are
//! spread over).
//!
//! ## Video and its bitrate
//!
//! A [`StreamEncoder`] for the tile codec sends a region of the screen that
//! changes every frame (a playing video) as H.264 ([`crate::video`]) at a
//! target bitrate, [`DEFAULT_BITRATE`] (4 Mbit/s) unless
//! [`StreamEncoder::set_video_bitrate`] says otherwise; `None` there makes
//! it lossless everywhere. The bitrate covers the video region only: the
//! rest of the screen costs what its changes cost. A presenter adapts it
//! to its link with a [`RateAdapter`]: halved (down to a floor) when frames
//! had to be skipped because the session's send backlog was full, raised by
//! 10 % a second (up to a ceiling) while they were not.
//!
//! ## The whole-frame codec
//!
//! [`Codec::WholeFrame`] is the naive baseline the benchmarks measure the
//! tile codec against: every frame is the whole screen compressed by zstd at
//! [`DEFAULT_LEVEL`](crate::codec::DEFAULT_LEVEL), cut into parts of at most
//! [`MAX_UPDATE`] bytes. Body layout, little-endian:
//!
//! ```text
//!  0      8    frame        frame number
//!  8      2    part         from 0
//! 10      2    parts        how many parts the frame has, 1..=MAX_WHOLE_PARTS
//! 12      2    width        1..=8192
//! 14      2    height       1..=8192
//! 16           data         this part's share of the zstd frame
//! ```
//!
//! The decoder collects a frame's parts in order (at most
//! [`MAX_WHOLE_PARTS`] × [`MAX_UPDATE`] bytes), then decompresses into a
//! buffer of exactly `width*height*4` bytes. It never sends a keyframe
//! request: every frame stands alone.

use crate::codec::{Applied, EncodeError, ScreenDecoder, ScreenEncoder, UpdateError, MAX_UPDATE};
use crate::frame::{Frame, ScreenSize, MAX_HEIGHT, MAX_WIDTH};
use crate::synthetic::SyntheticScreen;
pub use crate::video::DEFAULT_BITRATE;

/// Bytes before the body of a packet.
pub const PACKET_HEADER: usize = 9;
/// The largest packet: header and the largest codec message.
pub const MAX_PACKET: usize = PACKET_HEADER + MAX_UPDATE;
/// Bytes before the data of a whole-frame body.
const WHOLE_HEADER: usize = 16;
/// The most parts a whole frame may take (16 MiB of zstd data).
pub const MAX_WHOLE_PARTS: u16 = 64;

/// Where frames come from: a display, or a synthetic screen.
pub trait ScreenSource: Send {
    /// Captures the screen as it is now.
    fn next_frame(&mut self) -> Result<&Frame, SourceError>;
}

/// Why a source could not deliver a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("screen capture failed: {0}")]
pub struct SourceError(pub String);

impl ScreenSource for SyntheticScreen {
    fn next_frame(&mut self) -> Result<&Frame, SourceError> {
        Ok(SyntheticScreen::next_frame(self))
    }
}

/// The codec of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// The tile codec ([`crate::codec`]).
    Tiles,
    /// Whole frames compressed with zstd: the naive baseline.
    WholeFrame,
}

impl Codec {
    fn byte(self) -> u8 {
        match self {
            Codec::Tiles => 1,
            Codec::WholeFrame => 2,
        }
    }

    /// Its name in tables and messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Tiles => "tiles",
            Codec::WholeFrame => "whole-frame zstd",
        }
    }
}

/// Why a packet was refused. The sender's fault; after any of them the
/// viewer should ask for a keyframe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its header, or longer than [`MAX_PACKET`].
    #[error("a screen packet of {0} bytes is outside the allowed {PACKET_HEADER}..={MAX_PACKET}")]
    Length(usize),
    /// A codec this build does not know.
    #[error("the screen packet uses codec {0}, which this build does not know: update it")]
    UnknownCodec(u8),
    /// The tile codec refused its message.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A whole-frame body that breaks its rules.
    #[error("whole-frame screen data refused: {0}")]
    WholeFrame(&'static str),
}

/// A parsed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its codec.
    pub codec: Codec,
    /// Capture time, microseconds since the Unix epoch.
    pub captured_us: u64,
    /// The codec's message.
    pub body: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses a packet (bounded; never panics).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        if !(PACKET_HEADER..=MAX_PACKET).contains(&bytes.len()) {
            return Err(PacketError::Length(bytes.len()));
        }
        let (head, body) = bytes.split_at(PACKET_HEADER);
        let (&codec, time) = head.split_first().ok_or(PacketError::Length(0))?;
        let codec = match codec {
            1 => Codec::Tiles,
            2 => Codec::WholeFrame,
            other => return Err(PacketError::UnknownCodec(other)),
        };
        let mut t = [0u8; 8];
        t.copy_from_slice(time);
        Ok(Packet {
            codec,
            captured_us: u64::from_le_bytes(t),
            body,
        })
    }

    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKET_HEADER + self.body.len());
        out.push(self.codec.byte());
        out.extend_from_slice(&self.captured_us.to_le_bytes());
        out.extend_from_slice(self.body);
        out
    }
}

/// One encoded frame: its packets, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncodedPackets {
    /// The packets; none when nothing changed.
    pub packets: Vec<Vec<u8>>,
    /// Whether the frame is a keyframe (stands alone).
    pub keyframe: bool,
}

impl EncodedPackets {
    /// Bytes of all packets.
    pub fn total_bytes(&self) -> usize {
        self.packets.iter().map(Vec::len).sum()
    }
}

/// Encodes frames into packets with one codec.
#[derive(Debug)]
pub enum StreamEncoder {
    /// The tile codec.
    Tiles(ScreenEncoder),
    /// Whole frames (the baseline).
    WholeFrame {
        /// The compressor.
        compressor: WholeFrameCompressor,
        /// The next frame's number.
        next_frame: u64,
    },
}

/// zstd for whole frames.
pub struct WholeFrameCompressor(zstd::bulk::Compressor<'static>);

impl std::fmt::Debug for WholeFrameCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WholeFrameCompressor")
    }
}

impl StreamEncoder {
    /// An encoder for `codec`; the tile codec with video regions at
    /// [`DEFAULT_BITRATE`].
    pub fn new(codec: Codec) -> Result<Self, EncodeError> {
        Ok(match codec {
            Codec::Tiles => StreamEncoder::Tiles(ScreenEncoder::with_video(DEFAULT_BITRATE)?),
            Codec::WholeFrame => StreamEncoder::WholeFrame {
                compressor: WholeFrameCompressor(zstd::bulk::Compressor::new(
                    crate::codec::DEFAULT_LEVEL,
                )?),
                next_frame: 0,
            },
        })
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        match self {
            StreamEncoder::Tiles(_) => Codec::Tiles,
            StreamEncoder::WholeFrame { .. } => Codec::WholeFrame,
        }
    }

    /// Makes the next frame stand alone (a viewer joined or lost packets);
    /// a video region starts a new stream with an IDR picture.
    pub fn request_keyframe(&mut self) {
        if let StreamEncoder::Tiles(e) = self {
            e.request_keyframe();
        }
    }

    /// Sets the video region's target bitrate in bits a second, clamped to
    /// [`MIN_BITRATE`](crate::video::MIN_BITRATE)`..=`[`MAX_BITRATE`](crate::video::MAX_BITRATE);
    /// `None` turns video regions off (lossless everywhere). The tile codec
    /// only; see the module docs.
    pub fn set_video_bitrate(&mut self, bitrate: Option<u32>) {
        if let StreamEncoder::Tiles(e) = self {
            e.set_video_bitrate(bitrate);
        }
    }

    /// The video region's target bitrate; `None` when video is off (always
    /// for the whole-frame baseline).
    pub fn video_bitrate(&self) -> Option<u32> {
        match self {
            StreamEncoder::Tiles(e) => e.video_bitrate(),
            StreamEncoder::WholeFrame { .. } => None,
        }
    }

    /// Encodes `frame`, captured at `captured_us`.
    pub fn encode(
        &mut self,
        frame: &Frame,
        captured_us: u64,
    ) -> Result<EncodedPackets, EncodeError> {
        let codec = self.codec();
        let wrap = |body: &[u8]| {
            Packet {
                codec,
                captured_us,
                body,
            }
            .encode()
        };
        match self {
            StreamEncoder::Tiles(e) => {
                let encoded = e.encode_at(frame, captured_us)?;
                Ok(EncodedPackets {
                    packets: encoded.messages.iter().map(|m| wrap(m)).collect(),
                    keyframe: encoded.keyframe,
                })
            }
            StreamEncoder::WholeFrame {
                compressor,
                next_frame,
            } => {
                let data = compressor.0.compress(frame.as_bytes())?;
                let chunk = MAX_UPDATE - WHOLE_HEADER;
                let parts = data.len().div_ceil(chunk).max(1);
                let parts = u16::try_from(parts)
                    .ok()
                    .filter(|p| *p <= MAX_WHOLE_PARTS)
                    .ok_or(EncodeError::TooManyParts)?;
                let number = *next_frame;
                *next_frame = number.wrapping_add(1);
                let mut packets = Vec::with_capacity(usize::from(parts));
                for (part, piece) in (0u16..).zip(data.chunks(chunk).chain(
                    // An empty frame still has one part.
                    data.is_empty().then_some(&[][..]),
                )) {
                    let mut body = Vec::with_capacity(WHOLE_HEADER + piece.len());
                    body.extend_from_slice(&number.to_le_bytes());
                    body.extend_from_slice(&part.to_le_bytes());
                    body.extend_from_slice(&parts.to_le_bytes());
                    body.extend_from_slice(&(frame.width() as u16).to_le_bytes());
                    body.extend_from_slice(&(frame.height() as u16).to_le_bytes());
                    body.extend_from_slice(piece);
                    packets.push(wrap(&body));
                }
                Ok(EncodedPackets {
                    packets,
                    keyframe: true,
                })
            }
        }
    }
}

/// Adapts the video's target bitrate to a presenter's link; see the module
/// docs. Time comes in as an argument (microseconds on any clock that does
/// not go back).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateAdapter {
    bitrate: f64,
    floor: u32,
    ceiling: u32,
    last_us: Option<u64>,
    last_cut_us: Option<u64>,
}

impl RateAdapter {
    /// The lowest bitrate it cuts to by default: 500 kbit/s.
    pub const DEFAULT_FLOOR: u32 = 500_000;
    /// The highest bitrate it raises to by default: 16 Mbit/s.
    pub const DEFAULT_CEILING: u32 = 16_000_000;
    /// Raised by this fraction per second without skipped frames.
    pub const RAISE_PER_SECOND: f64 = 0.10;
    /// Cut at most once per this many microseconds: a cut needs that long
    /// to show in the backlog.
    pub const CUT_INTERVAL_US: u64 = 1_000_000;

    /// Starts at `start`, between [`DEFAULT_FLOOR`](Self::DEFAULT_FLOOR) and
    /// [`DEFAULT_CEILING`](Self::DEFAULT_CEILING).
    pub fn new(start: u32) -> Self {
        Self::with_bounds(start, Self::DEFAULT_FLOOR, Self::DEFAULT_CEILING)
    }

    /// Starts at `start`, kept within `floor..=ceiling`.
    pub fn with_bounds(start: u32, floor: u32, ceiling: u32) -> Self {
        let ceiling = ceiling.max(floor);
        Self {
            bitrate: f64::from(start.clamp(floor, ceiling)),
            floor,
            ceiling,
            last_us: None,
            last_cut_us: None,
        }
    }

    /// The bitrate now.
    pub fn bitrate(&self) -> u32 {
        self.bitrate as u32
    }

    /// Takes one frame's outcome at `now_us`: `skipped` when frames had to
    /// be skipped before it because the send backlog was full. Halves the
    /// bitrate then (at most once per [`CUT_INTERVAL_US`](Self::CUT_INTERVAL_US)),
    /// raises it by [`RAISE_PER_SECOND`](Self::RAISE_PER_SECOND) per second
    /// elapsed otherwise. Returns the bitrate.
    pub fn update(&mut self, now_us: u64, skipped: bool) -> u32 {
        let elapsed = self.last_us.map_or(0, |last| now_us.saturating_sub(last));
        self.last_us = Some(now_us);
        let (floor, ceiling) = (f64::from(self.floor), f64::from(self.ceiling));
        if skipped {
            let due = self
                .last_cut_us
                .is_none_or(|cut| now_us.saturating_sub(cut) >= Self::CUT_INTERVAL_US);
            if due {
                self.bitrate = (self.bitrate / 2.0).max(floor);
                self.last_cut_us = Some(now_us);
            }
        } else {
            let seconds = elapsed as f64 / 1e6;
            self.bitrate =
                (self.bitrate * (1.0 + Self::RAISE_PER_SECOND).powf(seconds)).min(ceiling);
        }
        self.bitrate()
    }
}

/// What a packet did to the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Nothing new to show yet (a part of a frame, or a skipped delta).
    Nothing,
    /// The canvas now shows a new whole frame.
    Frame {
        /// Capture time of the frame, microseconds since the Unix epoch.
        captured_us: u64,
    },
}

/// A whole frame being collected.
#[derive(Debug)]
struct Collecting {
    frame: u64,
    next_part: u16,
    parts: u16,
    screen: ScreenSize,
    data: Vec<u8>,
}

/// Decodes packets of either codec onto one canvas.
#[derive(Debug)]
pub struct StreamDecoder {
    tiles: ScreenDecoder,
    max_pixels: u64,
    whole: Option<Collecting>,
    whole_canvas: Option<Frame>,
    decompressor: WholeFrameDecompressor,
    /// The codec of the last frame shown.
    showing: Option<Codec>,
}

/// zstd for whole frames.
struct WholeFrameDecompressor(zstd::bulk::Decompressor<'static>);

impl std::fmt::Debug for WholeFrameDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WholeFrameDecompressor")
    }
}

impl StreamDecoder {
    /// A decoder that accepts screens of at most `max_pixels` pixels.
    pub fn new(max_pixels: u64) -> Self {
        Self {
            tiles: ScreenDecoder::with_max_pixels(max_pixels),
            max_pixels,
            whole: None,
            whole_canvas: None,
            decompressor: WholeFrameDecompressor(zstd::bulk::Decompressor::default()),
            showing: None,
        }
    }

    /// The last whole frame.
    pub fn canvas(&self) -> Option<&Frame> {
        match self.showing? {
            Codec::Tiles => self.tiles.canvas(),
            Codec::WholeFrame => self.whole_canvas.as_ref(),
        }
    }

    /// Whether the tile decoder waits for a keyframe (ask the presenter).
    pub fn needs_keyframe(&self) -> bool {
        self.showing != Some(Codec::WholeFrame) && self.tiles.needs_keyframe()
    }

    /// Applies one packet. After an error the canvas keeps the last frame.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<Shown, PacketError> {
        let packet = Packet::parse(bytes)?;
        let shown = match packet.codec {
            Codec::Tiles => match self.tiles.apply(packet.body)? {
                Applied::FrameComplete { .. } => true,
                Applied::Partial { .. } | Applied::Skipped { .. } => false,
            },
            Codec::WholeFrame => {
                let result = self.apply_whole(packet.body);
                if result.is_err() {
                    self.whole = None;
                }
                result?
            }
        };
        if !shown {
            return Ok(Shown::Nothing);
        }
        self.showing = Some(packet.codec);
        Ok(Shown::Frame {
            captured_us: packet.captured_us,
        })
    }

    fn apply_whole(&mut self, body: &[u8]) -> Result<bool, PacketError> {
        let (head, data) = body
            .split_at_checked(WHOLE_HEADER)
            .ok_or(PacketError::WholeFrame("shorter than its header"))?;
        let u16_at = |i: usize| {
            head.get(i..i + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map_or(0, u16::from_le_bytes)
        };
        let number = head
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes);
        let (part, parts) = (u16_at(8), u16_at(10));
        let (width, height) = (u32::from(u16_at(12)), u32::from(u16_at(14)));
        if parts == 0 || parts > MAX_WHOLE_PARTS || part >= parts {
            return Err(PacketError::WholeFrame("part numbers out of range"));
        }
        if width == 0 || height == 0 || width > MAX_WIDTH || height > MAX_HEIGHT {
            return Err(PacketError::Update(UpdateError::ScreenSize {
                width,
                height,
            }));
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(PacketError::Update(UpdateError::ScreenSize {
                width,
                height,
            }));
        }
        let screen = ScreenSize::new(width, height)
            .map_err(|_| PacketError::WholeFrame("bad screen size"))?;
        if part == 0 {
            self.whole = Some(Collecting {
                frame: number,
                next_part: 0,
                parts,
                screen,
                data: Vec::new(),
            });
        }
        let c = self
            .whole
            .as_mut()
            .ok_or(PacketError::WholeFrame("a later part without its first"))?;
        if c.frame != number || c.next_part != part || c.parts != parts || c.screen != screen {
            return Err(PacketError::WholeFrame("parts out of order"));
        }
        c.data.extend_from_slice(data);
        c.next_part = part.saturating_add(1);
        if c.next_part < c.parts {
            return Ok(false);
        }
        let Some(c) = self.whole.take() else {
            return Ok(false);
        };
        let len = c.screen.byte_len();
        let mut pixels = match self.whole_canvas.take() {
            Some(f) if f.size() == c.screen => f.into_bytes(),
            _ => Vec::with_capacity(len),
        };
        pixels.clear();
        let got = self
            .decompressor
            .0
            .decompress_to_buffer(&c.data, &mut pixels)
            .map_err(|_| PacketError::WholeFrame("corrupt zstd data"))?;
        if got != len || pixels.len() != len {
            return Err(PacketError::WholeFrame("decompressed to the wrong size"));
        }
        self.whole_canvas = Some(
            Frame::from_bgra(c.screen, pixels).map_err(|_| PacketError::WholeFrame("bad frame"))?,
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{read_marker, Workload};

    fn screen(w: u32, h: u32) -> ScreenSize {
        ScreenSize::new(w, h).unwrap()
    }

    fn round_trip(codec: Codec, workload: Workload) {
        let mut source = SyntheticScreen::new(workload, screen(640, 400));
        let mut encoder = StreamEncoder::new(codec).unwrap();
        // Lossless everywhere: the video region has its own tests.
        encoder.set_video_bitrate(None);
        let mut decoder = StreamDecoder::new(640 * 400);
        for n in 0..20u64 {
            let frame = ScreenSource::next_frame(&mut source).unwrap().clone();
            let encoded = encoder.encode(&frame, 1_000 + n).unwrap();
            let mut shown = Shown::Nothing;
            for p in &encoded.packets {
                assert!(p.len() <= MAX_PACKET);
                shown = decoder.apply(p).unwrap();
            }
            if !encoded.packets.is_empty() {
                assert_eq!(
                    shown,
                    Shown::Frame {
                        captured_us: 1_000 + n
                    }
                );
            }
            assert!(decoder.canvas().unwrap() == &frame, "{codec:?} frame {n}");
            assert_eq!(read_marker(decoder.canvas().unwrap()), Some(n as u32));
        }
    }

    #[test]
    fn both_codecs_show_every_frame_pixel_exact() {
        for workload in Workload::ALL {
            round_trip(Codec::Tiles, workload);
            round_trip(Codec::WholeFrame, workload);
        }
    }

    #[test]
    fn the_tile_codec_sends_video_as_h264_unless_turned_off() {
        let mut encoder = StreamEncoder::new(Codec::Tiles).unwrap();
        assert_eq!(encoder.video_bitrate(), Some(DEFAULT_BITRATE));
        let mut source = SyntheticScreen::new(Workload::Video, screen(640, 400));
        let mut decoder = StreamDecoder::new(640 * 400);
        let mut bytes = Vec::new();
        for n in 0..40u64 {
            let frame = ScreenSource::next_frame(&mut source).unwrap().clone();
            let encoded = encoder.encode(&frame, n * 16_667).unwrap();
            for p in &encoded.packets {
                decoder.apply(p).unwrap();
            }
            bytes.push(encoded.total_bytes());
        }
        // Lossless at first; a few KB a frame once the region is H.264.
        assert!(bytes[5] > 100_000, "{bytes:?}");
        assert!(bytes[39] < 20_000, "{bytes:?}");
        encoder.set_video_bitrate(None);
        assert_eq!(encoder.video_bitrate(), None);
        let frame = ScreenSource::next_frame(&mut source).unwrap().clone();
        for p in &encoder.encode(&frame, 41 * 16_667).unwrap().packets {
            decoder.apply(p).unwrap();
        }
        assert!(decoder.canvas().unwrap() == &frame);
        let baseline = StreamEncoder::new(Codec::WholeFrame).unwrap();
        assert_eq!(baseline.video_bitrate(), None);
    }

    #[test]
    fn the_rate_adapter_halves_on_skipped_frames_and_climbs_back_slowly() {
        let mut rate = RateAdapter::with_bounds(4_000_000, 500_000, 8_000_000);
        assert_eq!(rate.update(0, false), 4_000_000);
        // Skipped frames: halved, at most once a second.
        assert_eq!(rate.update(100_000, true), 2_000_000);
        assert_eq!(rate.update(200_000, true), 2_000_000);
        assert_eq!(rate.update(1_100_000, true), 1_000_000);
        for t in 2..6 {
            rate.update(t * 1_000_000 + 100_000, true);
        }
        assert_eq!(rate.bitrate(), 500_000, "the floor");
        // Then 10 % a second, frame by frame (60 a second).
        let start = 5_100_000;
        for f in 1..=60u64 {
            rate.update(start + f * 16_667, false);
        }
        let after_one_second = rate.bitrate();
        assert!(
            (549_900..=550_100).contains(&after_one_second),
            "{after_one_second}"
        );
        for f in 61..=60 * 60u64 {
            rate.update(start + f * 16_667, false);
        }
        assert_eq!(rate.bitrate(), 8_000_000, "the ceiling");
        assert_eq!(RateAdapter::new(1).bitrate(), RateAdapter::DEFAULT_FLOOR);
    }

    #[test]
    fn a_large_whole_frame_takes_several_parts() {
        let mut source = SyntheticScreen::new(Workload::Video, screen(1920, 1080));
        let frame = ScreenSource::next_frame(&mut source).unwrap().clone();
        let mut encoder = StreamEncoder::new(Codec::WholeFrame).unwrap();
        let encoded = encoder.encode(&frame, 0).unwrap();
        assert!(encoded.packets.len() >= 2, "{}", encoded.packets.len());
        let mut decoder = StreamDecoder::new(1920 * 1080);
        // A missing part: the frame is not shown, and the next one is.
        for p in encoded.packets.iter().skip(1) {
            assert!(decoder.apply(p).is_err());
        }
        assert!(decoder.canvas().is_none());
        for p in &encoded.packets {
            decoder.apply(p).unwrap();
        }
        assert!(decoder.canvas().unwrap() == &frame);
    }

    #[test]
    fn hostile_packets_are_refused_without_panicking() {
        let mut decoder = StreamDecoder::new(64 * 64);
        assert_eq!(decoder.apply(&[1; 3]), Err(PacketError::Length(3)));
        assert_eq!(
            decoder.apply(&[9; PACKET_HEADER + 1]),
            Err(PacketError::UnknownCodec(9))
        );
        // A whole frame naming a screen over the viewer's limit.
        let mut body = vec![0u8; WHOLE_HEADER];
        body[10] = 1; // one part
        body[12..14].copy_from_slice(&1000u16.to_le_bytes());
        body[14..16].copy_from_slice(&1000u16.to_le_bytes());
        let p = Packet {
            codec: Codec::WholeFrame,
            captured_us: 0,
            body: &body,
        }
        .encode();
        assert!(matches!(
            decoder.apply(&p),
            Err(PacketError::Update(UpdateError::ScreenSize { .. }))
        ));
        // Garbage zstd data for an allowed size.
        body[12..14].copy_from_slice(&8u16.to_le_bytes());
        body[14..16].copy_from_slice(&8u16.to_le_bytes());
        body.extend_from_slice(b"not zstd at all");
        let p = Packet {
            codec: Codec::WholeFrame,
            captured_us: 0,
            body: &body,
        }
        .encode();
        assert_eq!(
            decoder.apply(&p),
            Err(PacketError::WholeFrame("corrupt zstd data"))
        );
    }
}
