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
//! latency from capture to display; nothing depends on it being right.
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
    /// An encoder for `codec`.
    pub fn new(codec: Codec) -> Result<Self, EncodeError> {
        Ok(match codec {
            Codec::Tiles => StreamEncoder::Tiles(ScreenEncoder::new()?),
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

    /// Makes the next frame stand alone (a viewer joined or lost packets).
    pub fn request_keyframe(&mut self) {
        if let StreamEncoder::Tiles(e) = self {
            e.request_keyframe();
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
                let encoded = e.encode(frame)?;
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
