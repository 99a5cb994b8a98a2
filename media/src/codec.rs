//! The lossless screen codec: changed tiles as zstd-compressed XOR deltas.
//!
//! The [`ScreenEncoder`] keeps the last frame it sent (the *reference*). For
//! each new [`Frame`] it compares the two in tiles of [`TILE_SIZE`]² pixels
//! (smaller at the right and bottom edges) and sends only the tiles that
//! differ, each as one of:
//!
//! - **copy**: the tile equals a same-sized rectangle of the reference
//!   elsewhere (text that scrolled); no pixel data at all;
//! - **xor**: zstd of the tile's bytes XOR a same-sized rectangle of the
//!   reference — the same place, or where the content came from when it
//!   moved. Unchanged pixels XOR to zero runs, which zstd squeezes to almost
//!   nothing;
//! - **raw**: zstd of the tile's bytes: every tile of a keyframe, which
//!   refers to nothing, and a changed tile that shares no pixels with the
//!   reference when that compresses smaller than its XOR (new content; for
//!   video, whose pixels drift, the XOR is usually smaller).
//!
//! A keyframe sends every tile raw: the first frame, after a screen size
//! change, and after [`ScreenEncoder::request_keyframe`] (a viewer joined, or
//! one reported [`UpdateError::NeedKeyframe`]).
//!
//! With video on ([`ScreenEncoder::with_video`]), a region of the screen
//! that changes in every frame (a playing video) is sent as one
//! rectangle of H.264 instead, a *video item*, and no tiles are sent for
//! the tiles wholly inside it: everything outside stays pixel-exact, and
//! the region too once it stops changing. The encoder decodes its own
//! H.264 and keeps the decoded pixels as its reference, exactly what a
//! viewer shows; see [`crate::video`] for how the region is found and
//! why the two agree.
//!
//! The reference lives in two buffers that take turns: a new frame's
//! changed tiles are copied into the spare one while they are read anyway
//! (to hash them, below), and it becomes the reference once the frame is
//! sent, after catching up on the tiles the frame before changed. Memory
//! is walked row by row across tiles where it can be, for the hardware
//! prefetcher: at 1920×1080 every pass over a frame is 8 MiB.
//!
//! ## Finding moved content
//!
//! Scrolled text XORed with the text that was there before is two layers of
//! text: it compresses worse than the new text alone. So the encoder looks
//! for moves, two ways:
//!
//! - **vertical** (scrolling): it keeps a 64-bit hash of each tile-wide row
//!   segment of the reference (updated only where tiles change), hashes the
//!   changed tiles' rows, and every changed row whose hash occurs at most 4
//!   times in the reference's tile column votes for the offsets it may have
//!   come from (rows of text repeat within a line; blank rows everywhere,
//!   and cast no vote). Up to 3 offsets with the most votes are kept.
//! - **any direction, nearby** (a dragged window): up to 24 changed tiles
//!   each give a 16-pixel row segment with some texture, looked for in the
//!   reference within 32 pixels each way (unless it is where a vertical
//!   offset above says it came from); the offsets where they occur vote,
//!   and up to 2 are kept.
//!
//! For each changed tile, the offset (or none) under which most of its rows
//! match wins, and the tile is split into runs of rows: runs that match are
//! sent as copies (after a byte-for-byte check) or not at all (offset zero),
//! the others as an XOR against whichever candidate rectangle shares the
//! most 4-pixel chunks with them, or raw (above) when none shares any. Hash
//! collisions can only cost compression, never correctness: a copy is sent
//! only for bytes that compared equal, and an XOR is exact whatever it
//! refers to.
//!
//! ## Compression level
//!
//! [`DEFAULT_LEVEL`] is zstd level 1, chosen by measurement at 1920×1080 on
//! the four [synthetic workloads](crate::synthetic), 300 frames each after
//! the keyframe (`MEDIA_BENCH_LEVELS=-3,1,3,6 MEDIA_BENCH_TABLE_ONLY=1 cargo
//! bench -p conclave-media --bench codec`; release build, one core of the
//! 2-core development machine with another build running on the other; the
//! best of four runs). Mean bytes and encode milliseconds per frame:
//!
//! | level | typing | scrolling | dragging | video |
//! |---|---|---|---|---|
//! | -3 | 363 B, 0.8 ms | 15.0 KB, 3.5 ms | 2.6 KB, 1.8 ms | 669 KB, 4.3 ms |
//! | **1** | 300 B, 0.8 ms | 11.7 KB, 3.2 ms | 2.4 KB, 1.8 ms | 386 KB, 7.7 ms |
//! | 3 | 314 B, 0.8 ms | 11.4 KB, 3.6 ms | 2.4 KB, 1.8 ms | 396 KB, 10.1 ms |
//! | 6 | 247 B, 1.0 ms | 9.3 KB, 4.7 ms | 2.2 KB, 2.3 ms | 390 KB, 27.2 ms |
//!
//! Level 3 (zstd's default) gives the same bytes as level 1 at up to 1.3×
//! the time (video; on text the codec's own work outweighs zstd's); level 6
//! saves about a fifth on text but takes 27 ms for a video frame, almost
//! the whole budget at 30 frames/s; the fast negative levels send 1.7× the
//! bytes for video. For comparison, the whole frame compressed at
//! level 1 is 68 KB (typing), 253 KB (scrolling), 35 KB (dragging) and
//! 614 KB (video) per frame.
//!
//! ## Messages
//!
//! A frame's tiles are packed, in order, into *update messages* of at most
//! [`MAX_UPDATE`] bytes each, so that every message fits one transport frame;
//! a frame may take several (its *parts*). Byte layout, integers
//! little-endian:
//!
//! ```text
//! offset size  field
//!  0      1    version      FORMAT_VERSION (1); anything else is refused
//!  1      1    flags        bit 0: keyframe; bit 1: last part of the frame;
//!                           other bits must be zero
//!  2      8    sequence     message number, +1 per message, across frames
//! 10      8    frame        frame number, increasing from frame to frame
//! 18      2    part         part number within the frame, from 0
//! 20      2    width        screen width, 1..=8192
//! 22      2    height       screen height, 1..=8192
//! 24      2    tile count   tiles that follow
//! 26           tiles        each:
//!         1      kind       0 raw, 1 xor, 2 copy, 3 video
//!         2      x          tile's left edge
//!         2      y          tile's top edge
//!         1      w          tile's width, 1..=64
//!         1      h          tile's height, 1..=64
//!         2      source x   (xor, copy) left edge of the reference rectangle
//!         2      source y   (xor, copy) top edge of the reference rectangle
//!         4      length     (raw, xor) bytes of zstd data that follow
//!         length data       (raw, xor) one or more zstd frames that
//!                           decompress to exactly w*h*4 bytes: the tile's
//!                           BGRA rows (raw) or those XOR the reference's (xor)
//!
//!                           a video item instead:
//!         1      kind       3
//!         2      x          rectangle's left edge
//!         2      y          rectangle's top edge
//!         2      w          rectangle's width, even, 16..=3840
//!         2      h          rectangle's height, even, 16..=3840; w*h at
//!                           most 3840*2160
//!         1      flags      bit 0: IDR, the data starts a new stream (a
//!                           fresh H.264 decoder) for this rectangle;
//!                           bit 1: continued, the picture's data goes on
//!                           in the next item (see below); other bits zero
//!         4      length     bytes of data that follow
//!         length data       H.264 Annex-B data: (a piece of) one picture
//!                           of exactly w×h pixels, 4:2:0
//! ```
//!
//! Every rectangle, tile, source and video, lies wholly on the screen; a
//! keyframe holds raw tiles and IDR video items only. Nothing follows the
//! last item.
//!
//! A frame holds at most one video picture. Its data may be cut into
//! pieces, one video item each, all but the last flagged *continued*, with
//! the same rectangle and IDR bit, one right after the other (the next
//! piece is the next item, in the same message or first in the frame's
//! next part); the decoder joins them, at most
//! [`video::max_picture_bytes`] in all, and decodes the picture when the
//! last piece arrives. A non-IDR picture continues the stream its
//! rectangle's last IDR picture started, with the same rectangle. The
//! encoder puts the video item first in a frame, so that the tiles after
//! it (none of them wholly inside the rectangle) may overwrite its edges.
//!
//! ## Decoding
//!
//! The [`ScreenDecoder`] owns the canvas. It applies messages in order and
//! answers each with an [`Applied`] or a typed [`UpdateError`]; it never
//! panics and, for tiles, never allocates or decompresses more than the
//! message and the screen size it names allow (a video item's decoder,
//! OpenH264, sizes its own buffers from the stream's parameters, within
//! its limits; the picture's size is checked against the item's rectangle
//! after decoding): each tile is decompressed by zstd's one-shot
//! API into a buffer of exactly `w*h*4` bytes, which it cannot write past
//! (more data is an error, not a bigger buffer), and the canvas and the work
//! buffer take `width*height*4` bytes each — 2 × 256 MiB for the largest
//! screen, 2 × 8 MiB at 1920×1080. The canvas it shows ([`ScreenDecoder::canvas`]) is
//! always a whole frame: tiles are applied to a work buffer, which becomes
//! the canvas when the frame's last part has been applied
//! ([`Applied::FrameComplete`]); xor and copy tiles refer to the canvas, the
//! previous whole frame. The two buffers swap roles, and the new work
//! buffer is brought up to date only where the frame before wrote and this
//! one did not, so a frame costs what its tiles cover, not the screen
//! (tiles that do not line up with the tile grid, which the encoder never
//! sends, are copied to the canvas instead).
//!
//! A video item is decoded by the stream's OpenH264 decoder (one per
//! stream: each IDR item makes a fresh one) into the work buffer, like a
//! tile. Refused with a typed error, like any other malformed input: a
//! non-IDR item with no stream, or for another rectangle than the stream's;
//! a picture cut short or a second picture in a frame; data OpenH264
//! refuses or that gives no picture; a picture of another size than the
//! rectangle. OpenH264 itself is C++: see SECURITY.md for what it means
//! that presenter-controlled bytes reach it.
//!
//! The relay may drop screen messages for a slow viewer (the latest wins), and
//! a delta after a gap refers to a frame the viewer never saw. So the
//! decoder checks that sequence numbers follow each other; after a gap it
//! answers [`UpdateError::NeedKeyframe`] and then skips deltas
//! ([`Applied::Skipped`]) until the first part of a keyframe arrives, which
//! always starts afresh (whatever its sequence number, so an encoder that
//! restarts is followed). Any other error does the same: the viewer should ask
//! the master for a keyframe. The canvas keeps the last whole frame meanwhile.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode;

use crate::frame::{Frame, Rect, ScreenSize, BYTES_PER_PIXEL, MAX_HEIGHT, MAX_WIDTH};
use crate::video::{self, PictureError, RegionTracker, TileCost, VideoEncoder};

/// The one message-format version this crate speaks.
pub const FORMAT_VERSION: u8 = 1;
/// The largest update message, header included: 256 KiB.
pub const MAX_UPDATE: usize = 256 * 1024;
/// Side of the square tiles the encoder compares and sends, in pixels.
pub const TILE_SIZE: u32 = 64;
/// The zstd level [`ScreenEncoder::new`] uses; see the module docs.
pub const DEFAULT_LEVEL: i32 = 1;
/// The most copy tiles the decoder applies together.
const MAX_COPY_BATCH: usize = 64;

/// Bytes before the first tile.
pub const HEADER_LEN: usize = 26;
/// Flag bit: the message belongs to a keyframe.
const FLAG_KEYFRAME: u8 = 1;
/// Flag bit: the message is the last part of its frame.
const FLAG_LAST_PART: u8 = 2;
/// Where the flags and the tile count sit in the header.
const FLAGS_AT: usize = 1;
const TILE_COUNT_AT: usize = 24;
/// The bytes of a tile entry before its data, by kind.
const RAW_ENTRY: usize = 11;
const XOR_ENTRY: usize = 15;
const COPY_ENTRY: usize = 11;
/// The bytes of a video item before its data.
const VIDEO_ENTRY: usize = 14;
/// The smallest tile entry.
const MIN_ENTRY: usize = 11;
/// Tile kinds.
const KIND_RAW: u8 = 0;
const KIND_XOR: u8 = 1;
const KIND_COPY: u8 = 2;
const KIND_VIDEO: u8 = 3;
/// Video flag bit: the data starts a new stream (IDR).
const VIDEO_IDR: u8 = 1;
/// Video flag bit: the picture's data goes on in the next item.
const VIDEO_CONTINUED: u8 = 2;
/// The smallest piece of a picture the encoder starts in a message that
/// already holds something; less room than this, and it starts a new part.
const MIN_VIDEO_PIECE: usize = 4096;
/// Frames without video after a region's stream failed.
const VIDEO_COOLDOWN: u32 = 600;
/// The largest tile, in bytes.
const MAX_TILE_BYTES: usize = (TILE_SIZE * TILE_SIZE) as usize * BYTES_PER_PIXEL;

/// How a tile's pixels are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileData<'a> {
    /// zstd of the tile's bytes.
    Raw(&'a [u8]),
    /// zstd of the tile's bytes XOR the reference's at `(x, y)`.
    Xor {
        /// Left edge of the reference rectangle.
        x: u32,
        /// Top edge of the reference rectangle.
        y: u32,
        /// The zstd data.
        data: &'a [u8],
    },
    /// The reference's pixels at `(x, y)`, unchanged.
    Copy {
        /// Left edge of the reference rectangle.
        x: u32,
        /// Top edge of the reference rectangle.
        y: u32,
    },
    /// H.264 data of the tile's rectangle (a video item; the rectangle may
    /// be larger than a tile).
    Video {
        /// The data starts a new stream (an IDR picture).
        idr: bool,
        /// The picture's data goes on in the next item.
        continued: bool,
        /// The H.264 Annex-B data.
        data: &'a [u8],
    },
}

/// One tile of an update message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile<'a> {
    /// Where it goes on the screen.
    pub rect: Rect,
    /// Its pixels.
    pub data: TileData<'a>,
}

/// A parsed update message; see the module docs for the byte layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMessage<'a> {
    /// Message number, +1 per message.
    pub sequence: u64,
    /// The frame it belongs to.
    pub frame: u64,
    /// Its part number within the frame.
    pub part: u16,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
    /// Whether it is the frame's last part.
    pub last_part: bool,
    /// The screen's size.
    pub screen: ScreenSize,
    /// Its tiles, each wholly on the screen.
    pub tiles: Vec<Tile<'a>>,
}

/// Why an update message was refused. The sender's fault unless said
/// otherwise; after any of them the decoder waits for a keyframe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The message is longer than [`MAX_UPDATE`].
    #[error("the screen update is {len} bytes, more than the {MAX_UPDATE} allowed")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The message ends inside a field.
    #[error("the screen update ends after {len} bytes, inside a field that needs {needed}")]
    Truncated {
        /// Its length.
        len: usize,
        /// The length the field needs.
        needed: usize,
    },
    /// The version byte is not [`FORMAT_VERSION`].
    #[error("the screen update has format version {got}; this build speaks version {FORMAT_VERSION}: update the older side")]
    UnsupportedVersion {
        /// The version received.
        got: u8,
    },
    /// Flag bits this version does not define are set.
    #[error("the screen update has unknown flags {flags:#04x}")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
    },
    /// The screen size is zero or too large.
    #[error("the screen update is for a {width}×{height} screen, which is not supported")]
    ScreenSize {
        /// The width given.
        width: u32,
        /// The height given.
        height: u32,
    },
    /// A tile kind this version does not define.
    #[error("the screen update has a tile of unknown kind {kind}")]
    UnknownTileKind {
        /// The kind byte.
        kind: u8,
    },
    /// A tile is empty or larger than [`TILE_SIZE`] on a side.
    #[error("a tile of {width}×{height} pixels: each side must be 1 to {TILE_SIZE}")]
    TileSize {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// A tile does not lie wholly on the screen.
    #[error("a tile at {rect:?} reaches off the {screen} screen")]
    TileOutsideScreen {
        /// The tile.
        rect: Rect,
        /// The screen.
        screen: ScreenSize,
    },
    /// A tile's reference rectangle does not lie wholly on the screen.
    #[error("a tile refers to {rect:?}, off the {screen} screen")]
    SourceOutsideScreen {
        /// The reference rectangle.
        rect: Rect,
        /// The screen.
        screen: ScreenSize,
    },
    /// A keyframe holds a tile that refers to the previous frame.
    #[error("a keyframe holds a tile that refers to the previous frame")]
    ReferenceInKeyframe,
    /// Bytes follow the last tile.
    #[error("the screen update has {extra} bytes after its last tile")]
    Trailing {
        /// How many.
        extra: usize,
    },
    /// zstd refused a tile's data.
    #[error("the tile at {rect:?} does not decompress: {reason}")]
    Corrupt {
        /// The tile.
        rect: Rect,
        /// What zstd said.
        reason: String,
    },
    /// A tile's data decompresses to another size than `w*h*4` bytes.
    #[error("the tile at {rect:?} decompresses to {} bytes instead of {expected}", got.map_or_else(|| "more".to_owned(), |n| n.to_string()))]
    DecompressedSize {
        /// The tile.
        rect: Rect,
        /// `w*h*4`.
        expected: usize,
        /// What it gave; `None` when more than `expected` (decompression
        /// stopped there).
        got: Option<usize>,
    },
    /// A video item's rectangle has an odd side, or one outside
    /// 16..=3840, or more than 3840×2160 pixels.
    #[error("a video rectangle of {}×{} pixels: each side must be even and 16 to 3840, at most 3840×2160 in all", rect.width, rect.height)]
    VideoSize {
        /// The rectangle.
        rect: Rect,
    },
    /// Video flag bits this version does not define are set.
    #[error("a video item has unknown flags {flags:#04x}")]
    UnknownVideoFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A picture's data is larger than [`video::max_picture_bytes`].
    #[error("a video picture of {} bytes for a {}×{} rectangle, more than the {max} allowed", len, rect.width, rect.height)]
    VideoTooLarge {
        /// The rectangle.
        rect: Rect,
        /// The picture's bytes (so far).
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A non-IDR video item, and no stream started (no IDR item since the
    /// last keyframe or error).
    #[error("a video item at {rect:?} continues a stream that never started")]
    VideoWithoutStream {
        /// Its rectangle.
        rect: Rect,
    },
    /// A non-IDR video item for another rectangle than its stream's.
    #[error("the video rectangle changed from {from:?} to {to:?} without an IDR picture")]
    VideoRectChanged {
        /// The stream's rectangle.
        from: Rect,
        /// The item's.
        to: Rect,
    },
    /// A picture said to continue did not: the frame ended, or the next
    /// item is not a video item with the same rectangle and IDR bit.
    #[error("a video picture cut into pieces was not continued")]
    VideoUnfinished,
    /// A second video picture in one frame.
    #[error("a frame holds more than one video picture")]
    ExtraVideoPicture,
    /// The H.264 decoder refused the data, or it held no whole picture.
    #[error("the video at {rect:?} does not decode: {reason}")]
    VideoCorrupt {
        /// The rectangle.
        rect: Rect,
        /// What went wrong.
        reason: String,
    },
    /// The decoded picture is not the rectangle's size.
    #[error("the video at {rect:?} decodes to a {width}×{height} picture")]
    VideoPictureSize {
        /// The rectangle.
        rect: Rect,
        /// The picture's width.
        width: u32,
        /// The picture's height.
        height: u32,
    },
    /// A delta frame for a screen of another size than the canvas.
    #[error("the screen changed from {from} to {to} without a keyframe")]
    SizeChangeWithoutKeyframe {
        /// The canvas's size.
        from: ScreenSize,
        /// The size in the message.
        to: ScreenSize,
    },
    /// Messages were lost (the relay drops screen updates for a slow
    /// viewer): deltas cannot be applied until a keyframe. Nobody's fault;
    /// ask the master for a keyframe.
    #[error("screen updates {expected} to {} were lost: waiting for a keyframe", got.saturating_sub(1))]
    NeedKeyframe {
        /// The sequence number expected.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// A sequence number lower than expected (a repeated or reordered
    /// message).
    #[error("screen update {got} arrived when {expected} was expected")]
    SequenceWentBack {
        /// The sequence number expected.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// The message is not the part that comes next.
    #[error("screen update is part {part} of frame {frame}; part {expected_part} of frame {expected_frame} was expected")]
    UnexpectedPart {
        /// Its frame.
        frame: u64,
        /// Its part.
        part: u16,
        /// The frame expected.
        expected_frame: u64,
        /// The part expected.
        expected_part: u16,
    },
    /// A later part of a frame disagrees with its first part on the screen
    /// size or the keyframe flag.
    #[error("part {part} of frame {frame} disagrees with the frame's first part on screen size or keyframe")]
    InconsistentPart {
        /// The frame.
        frame: u64,
        /// The part.
        part: u16,
    },
    /// A delta frame whose number is not above the last complete frame's.
    #[error("frame {got} arrived after frame {last}")]
    FrameWentBack {
        /// The last complete frame.
        last: u64,
        /// The frame received.
        got: u64,
    },
}

impl<'a> UpdateMessage<'a> {
    /// Parses and checks a message (everything but the tiles' zstd data and
    /// the decoder's state); see the module docs for the layout.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, UpdateError> {
        if bytes.len() > MAX_UPDATE {
            return Err(UpdateError::TooLarge { len: bytes.len() });
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(UpdateError::UnsupportedVersion { got: version });
        }
        let flags = r.u8()?;
        if flags & !(FLAG_KEYFRAME | FLAG_LAST_PART) != 0 {
            return Err(UpdateError::UnknownFlags { flags });
        }
        let keyframe = flags & FLAG_KEYFRAME != 0;
        let sequence = r.u64()?;
        let frame = r.u64()?;
        let part = r.u16()?;
        let width = u32::from(r.u16()?);
        let height = u32::from(r.u16()?);
        let screen = ScreenSize::new(width, height)
            .map_err(|_| UpdateError::ScreenSize { width, height })?;
        let count = usize::from(r.u16()?);
        // Every entry takes at least MIN_ENTRY bytes: a count the rest cannot
        // hold is refused before anything is allocated for it.
        if count.saturating_mul(MIN_ENTRY) > r.remaining() {
            return Err(UpdateError::Truncated {
                len: bytes.len(),
                needed: r.at.saturating_add(count.saturating_mul(MIN_ENTRY)),
            });
        }
        let mut tiles = Vec::with_capacity(count);
        for _ in 0..count {
            tiles.push(r.tile(screen, keyframe)?);
        }
        if r.remaining() != 0 {
            return Err(UpdateError::Trailing {
                extra: r.remaining(),
            });
        }
        Ok(Self {
            sequence,
            frame,
            part,
            keyframe,
            last_part: flags & FLAG_LAST_PART != 0,
            screen,
            tiles,
        })
    }
}

/// Reads little-endian fields, refusing to run past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], UpdateError> {
        let end = self.at.saturating_add(n);
        let out = self.bytes.get(self.at..end).ok_or(UpdateError::Truncated {
            len: self.bytes.len(),
            needed: end,
        })?;
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UpdateError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, UpdateError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, UpdateError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, UpdateError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, UpdateError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn tile(&mut self, screen: ScreenSize, keyframe: bool) -> Result<Tile<'a>, UpdateError> {
        let kind = self.u8()?;
        if kind == KIND_VIDEO {
            return self.video(screen, keyframe);
        }
        if kind > KIND_COPY {
            return Err(UpdateError::UnknownTileKind { kind });
        }
        let x = u32::from(self.u16()?);
        let y = u32::from(self.u16()?);
        let width = u32::from(self.u8()?);
        let height = u32::from(self.u8()?);
        if !(1..=TILE_SIZE).contains(&width) || !(1..=TILE_SIZE).contains(&height) {
            return Err(UpdateError::TileSize { width, height });
        }
        let rect = Rect::new(x, y, width, height);
        if !screen.contains(rect) {
            return Err(UpdateError::TileOutsideScreen { rect, screen });
        }
        if kind == 0 {
            let len = self.u32()? as usize;
            return Ok(Tile {
                rect,
                data: TileData::Raw(self.take(len)?),
            });
        }
        if keyframe {
            return Err(UpdateError::ReferenceInKeyframe);
        }
        let sx = u32::from(self.u16()?);
        let sy = u32::from(self.u16()?);
        let source = Rect::new(sx, sy, width, height);
        if !screen.contains(source) {
            return Err(UpdateError::SourceOutsideScreen {
                rect: source,
                screen,
            });
        }
        let data = if kind == KIND_XOR {
            let len = self.u32()? as usize;
            TileData::Xor {
                x: sx,
                y: sy,
                data: self.take(len)?,
            }
        } else {
            TileData::Copy { x: sx, y: sy }
        };
        Ok(Tile { rect, data })
    }

    /// A video item, after its kind byte.
    fn video(&mut self, screen: ScreenSize, keyframe: bool) -> Result<Tile<'a>, UpdateError> {
        let x = u32::from(self.u16()?);
        let y = u32::from(self.u16()?);
        let width = u32::from(self.u16()?);
        let height = u32::from(self.u16()?);
        let rect = Rect::new(x, y, width, height);
        if !video::valid_video_size(rect) {
            return Err(UpdateError::VideoSize { rect });
        }
        if !screen.contains(rect) {
            return Err(UpdateError::TileOutsideScreen { rect, screen });
        }
        let flags = self.u8()?;
        if flags & !(VIDEO_IDR | VIDEO_CONTINUED) != 0 {
            return Err(UpdateError::UnknownVideoFlags { flags });
        }
        let idr = flags & VIDEO_IDR != 0;
        if keyframe && !idr {
            return Err(UpdateError::ReferenceInKeyframe);
        }
        let len = self.u32()? as usize;
        let max = video::max_picture_bytes(rect);
        if len > max {
            return Err(UpdateError::VideoTooLarge { rect, len, max });
        }
        Ok(Tile {
            rect,
            data: TileData::Video {
                idr,
                continued: flags & VIDEO_CONTINUED != 0,
                data: self.take(len)?,
            },
        })
    }
}

/// What applying a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Its tiles were applied; more parts of `frame` are to come, and the
    /// canvas still shows the previous frame.
    Partial {
        /// The frame.
        frame: u64,
    },
    /// It was the last part of `frame`: the canvas now shows that frame,
    /// whole.
    FrameComplete {
        /// The frame.
        frame: u64,
        /// Whether it was a keyframe.
        keyframe: bool,
    },
    /// A delta ignored because the decoder waits for a keyframe (the gap or
    /// error that caused it was reported before, or no keyframe came yet).
    Skipped {
        /// The frame it belonged to.
        frame: u64,
    },
}

/// The frame being assembled from its parts.
#[derive(Debug, Clone, Copy)]
struct InProgress {
    frame: u64,
    keyframe: bool,
    next_part: u16,
    screen: ScreenSize,
}

/// Applies update messages to a canvas; see the module docs.
pub struct ScreenDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    /// The last complete frame.
    canvas: Option<Frame>,
    /// The frame being assembled; equal to `canvas` between delta frames.
    work: Option<Frame>,
    /// Rectangles of `work` written during the current delta frame.
    touched: Vec<Rect>,
    /// Between delta frames, the row segments (a tile column wide, one
    /// pixel high, numbered `y * columns + column`) where `work` may still
    /// hold an older frame than the canvas: those the previous frame wrote,
    /// before the buffers swapped.
    stale: Vec<usize>,
    /// While a frame finishes: how its touched rectangles cover each row
    /// segment; all [`Cover::None`] between frames.
    cover: Vec<Cover>,
    /// The segments `cover` marks, to clear them afterwards.
    covered: Vec<usize>,
    in_progress: Option<InProgress>,
    next_sequence: u64,
    last_complete: Option<u64>,
    awaiting_keyframe: bool,
    /// The most pixels a screen may have; larger ones are refused.
    max_pixels: u64,
    /// Decompressed tile bytes.
    scratch: Vec<u8>,
    /// The video stream: its rectangle and H.264 decoder.
    video: Option<(Rect, openh264::decoder::Decoder)>,
    /// A video picture whose pieces are still coming.
    video_pending: Option<PendingPicture>,
    /// Whether the frame being assembled had its video picture.
    video_in_frame: bool,
}

/// The pieces of a video picture so far.
#[derive(Debug)]
struct PendingPicture {
    rect: Rect,
    idr: bool,
    data: Vec<u8>,
}

impl std::fmt::Debug for ScreenDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenDecoder")
            .field("canvas", &self.canvas.as_ref().map(Frame::size))
            .field("last_complete", &self.last_complete)
            .field("awaiting_keyframe", &self.awaiting_keyframe)
            .finish_non_exhaustive()
    }
}

impl Default for ScreenDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ScreenDecoder {
    /// A decoder with no canvas, waiting for a keyframe.
    pub fn new() -> Self {
        Self {
            decompressor: zstd::bulk::Decompressor::default(),
            canvas: None,
            work: None,
            touched: Vec::new(),
            stale: Vec::new(),
            cover: Vec::new(),
            covered: Vec::new(),
            in_progress: None,
            next_sequence: 0,
            last_complete: None,
            awaiting_keyframe: true,
            max_pixels: u64::from(MAX_WIDTH) * u64::from(MAX_HEIGHT),
            scratch: vec![0; MAX_TILE_BYTES],
            video: None,
            video_pending: None,
            video_in_frame: false,
        }
    }

    /// A decoder that refuses screens of more than `max_pixels` pixels, so
    /// that a hostile 26-byte keyframe cannot make it allocate two canvases
    /// of the largest size (2 × 256 MiB): a viewer caps what it accepts at
    /// what it is prepared to show.
    pub fn with_max_pixels(max_pixels: u64) -> Self {
        Self {
            max_pixels,
            ..Self::new()
        }
    }

    /// The last complete frame (`None` before the first keyframe completes).
    pub fn canvas(&self) -> Option<&Frame> {
        self.canvas.as_ref()
    }

    /// The number of the frame the canvas shows.
    pub fn last_complete_frame(&self) -> Option<u64> {
        self.last_complete
    }

    /// Whether deltas are being skipped until a keyframe arrives.
    pub fn needs_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    /// Applies one message; see the module docs for what is refused. After an
    /// error, deltas are skipped until a keyframe; the canvas keeps the last
    /// complete frame.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<Applied, UpdateError> {
        let result = self.try_apply(bytes);
        if result.is_err() {
            self.awaiting_keyframe = true;
            self.in_progress = None;
            self.touched.clear();
            // The next keyframe starts every stream afresh.
            self.video = None;
            self.video_pending = None;
            self.video_in_frame = false;
        }
        result
    }

    fn try_apply(&mut self, bytes: &[u8]) -> Result<Applied, UpdateError> {
        let msg = UpdateMessage::parse(bytes)?;
        let (width, height) = (msg.screen.width(), msg.screen.height());
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(UpdateError::ScreenSize { width, height });
        }
        if msg.keyframe && msg.part == 0 {
            // A keyframe starts afresh, on a cleared work buffer; its later
            // parts must follow without a gap.
            self.awaiting_keyframe = false;
            self.in_progress = None;
            self.touched.clear();
            self.video = None;
            self.video_pending = None;
            self.video_in_frame = false;
            match &mut self.work {
                Some(work) if work.size() == msg.screen => work.as_bytes_mut().fill(0),
                _ => self.work = Some(Frame::filled(msg.screen, Default::default())),
            }
        } else if self.awaiting_keyframe {
            return Ok(Applied::Skipped { frame: msg.frame });
        } else {
            self.check_order(&msg)?;
        }
        if self.work.is_none() {
            // Cannot happen: deltas are skipped until a keyframe starts.
            return Err(UpdateError::NeedKeyframe {
                expected: self.next_sequence,
                got: msg.sequence,
            });
        }
        self.next_sequence = msg.sequence.wrapping_add(1);
        let progress = InProgress {
            frame: msg.frame,
            keyframe: msg.keyframe,
            next_part: msg.part.wrapping_add(1),
            screen: msg.screen,
        };
        // Copy tiles in a row with no overlap between them are applied
        // together, row by row across all of them: they read the canvas
        // only, so their order does not matter, and memory is then walked
        // in order (twice as fast as tile by tile for a scrolled screen).
        let mut copies: Vec<(Rect, (u32, u32))> = Vec::new();
        for tile in &msg.tiles {
            if self.video_pending.is_some() && !matches!(tile.data, TileData::Video { .. }) {
                return Err(UpdateError::VideoUnfinished);
            }
            if let TileData::Copy { x, y } = tile.data {
                let overlaps = copies
                    .iter()
                    .any(|(r, _)| !r.intersect(tile.rect).is_empty());
                if overlaps || copies.len() == MAX_COPY_BATCH {
                    self.apply_copies(&copies)?;
                    copies.clear();
                }
                copies.push((tile.rect, (x, y)));
            } else {
                self.apply_copies(&copies)?;
                copies.clear();
                self.apply_tile(tile)?;
            }
        }
        self.apply_copies(&copies)?;
        if !msg.last_part {
            self.in_progress = Some(progress);
            return Ok(Applied::Partial { frame: msg.frame });
        }
        if self.video_pending.is_some() {
            return Err(UpdateError::VideoUnfinished);
        }
        self.video_in_frame = false;
        self.finish_frame(msg.keyframe);
        self.in_progress = None;
        self.last_complete = Some(msg.frame);
        Ok(Applied::FrameComplete {
            frame: msg.frame,
            keyframe: msg.keyframe,
        })
    }

    /// Checks that a message (not a keyframe's first part) comes next.
    fn check_order(&self, msg: &UpdateMessage<'_>) -> Result<(), UpdateError> {
        let expected = self.next_sequence;
        if msg.sequence > expected {
            return Err(UpdateError::NeedKeyframe {
                expected,
                got: msg.sequence,
            });
        }
        if msg.sequence < expected {
            return Err(UpdateError::SequenceWentBack {
                expected,
                got: msg.sequence,
            });
        }
        match self.in_progress {
            Some(p) => {
                if msg.frame != p.frame || msg.part != p.next_part {
                    return Err(UpdateError::UnexpectedPart {
                        frame: msg.frame,
                        part: msg.part,
                        expected_frame: p.frame,
                        expected_part: p.next_part,
                    });
                }
                if msg.keyframe != p.keyframe || msg.screen != p.screen {
                    return Err(UpdateError::InconsistentPart {
                        frame: msg.frame,
                        part: msg.part,
                    });
                }
            }
            None => {
                if msg.part != 0 {
                    return Err(UpdateError::UnexpectedPart {
                        frame: msg.frame,
                        part: msg.part,
                        expected_frame: msg.frame,
                        expected_part: 0,
                    });
                }
                if let Some(last) = self.last_complete {
                    if msg.frame <= last {
                        return Err(UpdateError::FrameWentBack {
                            last,
                            got: msg.frame,
                        });
                    }
                }
                if let Some(canvas) = &self.canvas {
                    if canvas.size() != msg.screen {
                        return Err(UpdateError::SizeChangeWithoutKeyframe {
                            from: canvas.size(),
                            to: msg.screen,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes copy tiles, none overlapping another, into the work buffer:
    /// each rectangle from the canvas at its source corner.
    fn apply_copies(&mut self, copies: &[(Rect, (u32, u32))]) -> Result<(), UpdateError> {
        let (Some(top), Some(bottom)) = (
            copies.iter().map(|(r, _)| r.y).min(),
            copies.iter().map(|(r, _)| r.bottom()).max(),
        ) else {
            return Ok(());
        };
        // `try_apply` made sure of a work buffer and, for a delta, a canvas
        // of its size; parsing that every rectangle is on that screen.
        let work = self.work.as_mut().ok_or(UpdateError::ReferenceInKeyframe)?;
        let canvas = self
            .canvas
            .as_ref()
            .ok_or(UpdateError::ReferenceInKeyframe)?;
        let screen = work.size();
        for y in top..bottom {
            for &(rect, (sx, sy)) in copies {
                if !(rect.y..rect.bottom()).contains(&y) {
                    continue;
                }
                let outside = || UpdateError::TileOutsideScreen { rect, screen };
                let from = canvas
                    .row_span(sx, sy + (y - rect.y), rect.width)
                    .ok_or_else(outside)?;
                work.row_span_mut(rect.x, y, rect.width)
                    .ok_or_else(outside)?
                    .copy_from_slice(from);
            }
        }
        self.touched.extend(copies.iter().map(|&(r, _)| r));
        Ok(())
    }

    /// Takes one piece of a video picture; decodes the picture into the
    /// work buffer when it is whole.
    fn apply_video(
        &mut self,
        rect: Rect,
        idr: bool,
        continued: bool,
        data: &[u8],
    ) -> Result<(), UpdateError> {
        let max = video::max_picture_bytes(rect);
        let joined = match self.video_pending.take() {
            Some(p) if p.rect != rect || p.idr != idr => return Err(UpdateError::VideoUnfinished),
            Some(mut p) => {
                let len = p.data.len().saturating_add(data.len());
                if len > max {
                    return Err(UpdateError::VideoTooLarge { rect, len, max });
                }
                p.data.extend_from_slice(data);
                Some(p)
            }
            None if continued => Some(PendingPicture {
                rect,
                idr,
                data: data.to_vec(),
            }),
            None => None,
        };
        if continued {
            self.video_pending = joined;
            return Ok(());
        }
        let data = joined.as_ref().map_or(data, |p| p.data.as_slice());
        if self.video_in_frame {
            return Err(UpdateError::ExtraVideoPicture);
        }
        if idr {
            let decoder = video::new_decoder().map_err(|e| picture_error(rect, e))?;
            self.video = Some((rect, decoder));
        }
        let (stream_rect, decoder) = self
            .video
            .as_mut()
            .ok_or(UpdateError::VideoWithoutStream { rect })?;
        if *stream_rect != rect {
            return Err(UpdateError::VideoRectChanged {
                from: *stream_rect,
                to: rect,
            });
        }
        // `try_apply` made sure of a work buffer of the message's size,
        // which the rectangle lies on.
        let work = self.work.as_mut().ok_or(UpdateError::ReferenceInKeyframe)?;
        video::decode_picture(decoder, data, rect, work).map_err(|e| picture_error(rect, e))?;
        self.video_in_frame = true;
        self.touched.push(rect);
        Ok(())
    }

    /// Decompresses (raw, xor) and writes one tile into the work buffer.
    fn apply_tile(&mut self, tile: &Tile<'_>) -> Result<(), UpdateError> {
        let rect = tile.rect;
        if let TileData::Video {
            idr,
            continued,
            data,
        } = tile.data
        {
            return self.apply_video(rect, idr, continued, data);
        }
        let outside = |screen| UpdateError::TileOutsideScreen { rect, screen };
        // `try_apply` made sure there is a work buffer, of the message's size
        // (every tile of which is on that screen), and, for a delta, a canvas
        // of the same size: these fallbacks cannot be taken.
        let work = self.work.as_mut().ok_or(UpdateError::ReferenceInKeyframe)?;
        let screen = work.size();
        let row_len = rect.width as usize * BYTES_PER_PIXEL;
        let (source, data) = match tile.data {
            TileData::Raw(data) => (None, Some(data)),
            TileData::Xor { x, y, data } => (Some((x, y)), Some(data)),
            TileData::Copy { x, y } => (Some((x, y)), None),
            TileData::Video { .. } => return Ok(()),
        };
        let reference = match source {
            Some(at) => Some((
                self.canvas
                    .as_ref()
                    .ok_or(UpdateError::ReferenceInKeyframe)?,
                at,
            )),
            None => None,
        };
        let pixels = match data {
            Some(data) => {
                let expected = row_len * rect.height as usize;
                let out = self
                    .scratch
                    .get_mut(..expected)
                    .ok_or(UpdateError::TileSize {
                        width: rect.width,
                        height: rect.height,
                    })?;
                let got = self
                    .decompressor
                    .decompress_to_buffer(data, out)
                    .map_err(|e| decompress_error(rect, expected, &e))?;
                if got != expected {
                    return Err(UpdateError::DecompressedSize {
                        rect,
                        expected,
                        got: Some(got),
                    });
                }
                self.scratch.get(..expected)
            }
            None => None,
        };
        for row in 0..rect.height {
            let to = work
                .row_span_mut(rect.x, rect.y + row, rect.width)
                .ok_or_else(|| outside(screen))?;
            let delta = match pixels {
                Some(p) => Some(
                    p.get(row as usize * row_len..(row as usize + 1) * row_len)
                        .ok_or_else(|| outside(screen))?,
                ),
                None => None,
            };
            match reference {
                Some((canvas, (sx, sy))) => {
                    let from = canvas
                        .row_span(sx, sy + row, rect.width)
                        .ok_or_else(|| outside(screen))?;
                    match delta {
                        Some(d) => {
                            for ((t, f), d) in to.iter_mut().zip(from).zip(d) {
                                *t = f ^ d;
                            }
                        }
                        None => to.copy_from_slice(from),
                    }
                }
                None => {
                    if let Some(d) = delta {
                        to.copy_from_slice(d);
                    }
                }
            }
        }
        self.touched.push(rect);
        Ok(())
    }

    /// Shows the assembled frame on the canvas.
    ///
    /// After a delta frame whose tiles line up with the tile grid (the
    /// encoder's always do), the work buffer becomes the canvas and the
    /// canvas the work buffer, which is first brought up to date where it
    /// is stale and this frame wrote nothing: on a screen that changes all
    /// over (scrolling), almost nothing is copied. Otherwise the touched
    /// rectangles are copied to the canvas. Either way the cost follows
    /// what the frames touched, not the screen.
    fn finish_frame(&mut self, keyframe: bool) {
        let Self {
            work: Some(work),
            canvas,
            touched,
            stale,
            cover,
            covered,
            ..
        } = self
        else {
            return;
        };
        let screen = work.size();
        let columns = screen.width().div_ceil(TILE_SIZE) as usize;
        let segments = columns * screen.height() as usize;
        let state = |cover: &[Cover], i: usize| cover.get(i).copied().unwrap_or(Cover::Part);
        match canvas {
            Some(canvas) if !keyframe && cover.len() == segments => {
                for &rect in touched.iter() {
                    mark_cover(cover, covered, columns, screen.width(), rect);
                }
                let swap = !stale.iter().any(|&i| state(cover, i) == Cover::Part);
                if swap {
                    // Segments this frame wrote wholly hold the new frame in
                    // `work`; the other stale ones are behind the canvas.
                    stale.retain(|&i| state(cover, i) != Cover::Whole);
                    stale.sort_unstable();
                    stale.dedup();
                    copy_segments(work, canvas, columns, stale);
                    std::mem::swap(canvas, work);
                    // Now `work` is behind wherever this frame wrote.
                    std::mem::swap(stale, covered);
                } else {
                    for &rect in touched.iter() {
                        canvas.copy_rect_from(work, rect);
                    }
                    stale.retain(|&i| state(cover, i) != Cover::Whole);
                }
                for &i in stale.iter().chain(covered.iter()) {
                    if let Some(c) = cover.get_mut(i) {
                        *c = Cover::None;
                    }
                }
                covered.clear();
            }
            Some(canvas) if canvas.size() == screen => {
                canvas.as_bytes_mut().copy_from_slice(work.as_bytes());
                reset_cover(stale, cover, covered, segments);
            }
            _ => {
                *canvas = Some(work.clone());
                reset_cover(stale, cover, covered, segments);
            }
        }
        touched.clear();
    }
}

/// How a frame's tiles cover a row segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cover {
    /// Not at all.
    None,
    /// Some pixels, maybe all of them (by several tiles).
    Part,
    /// Every pixel, by one tile.
    Whole,
}

/// After a keyframe: nothing stale, nothing covered, for `segments` row
/// segments.
fn reset_cover(
    stale: &mut Vec<usize>,
    cover: &mut Vec<Cover>,
    covered: &mut Vec<usize>,
    segments: usize,
) {
    stale.clear();
    covered.clear();
    cover.clear();
    cover.resize(segments, Cover::None);
}

/// Marks the row segments `rect` covers; lists those it is the first to.
fn mark_cover(
    cover: &mut [Cover],
    covered: &mut Vec<usize>,
    columns: usize,
    width: u32,
    rect: Rect,
) {
    if rect.is_empty() {
        return;
    }
    for column in rect.x / TILE_SIZE..=(rect.right() - 1) / TILE_SIZE {
        let start = column * TILE_SIZE;
        let whole = rect.x <= start && rect.right() >= (start + TILE_SIZE).min(width);
        for y in rect.y..rect.bottom() {
            let i = y as usize * columns + column as usize;
            if let Some(c) = cover.get_mut(i) {
                if *c == Cover::None {
                    covered.push(i);
                }
                if whole {
                    *c = Cover::Whole;
                } else if *c == Cover::None {
                    *c = Cover::Part;
                }
            }
        }
    }
}

/// Copies row segments (`y * columns + column`, sorted) from `from` to
/// `to`, runs of neighbours in a row at once.
fn copy_segments(to: &mut Frame, from: &Frame, columns: usize, which: &[usize]) {
    let width = to.width();
    let mut copy = |first: usize, end: usize| {
        let (y, column) = ((first / columns) as u32, (first % columns) as u32);
        let x = column * TILE_SIZE;
        let right = ((column + (end - first) as u32) * TILE_SIZE).min(width);
        to.copy_rect_from(from, Rect::new(x, y, right - x, 1));
    };
    let mut run: Option<(usize, usize)> = None;
    for &i in which {
        run = match run {
            // The next segment in the same row.
            Some((first, end)) if i == end && i % columns != 0 => Some((first, end + 1)),
            Some((first, end)) => {
                copy(first, end);
                Some((i, i + 1))
            }
            None => Some((i, i + 1)),
        };
    }
    if let Some((first, end)) = run {
        copy(first, end);
    }
}

fn picture_error(rect: Rect, e: PictureError) -> UpdateError {
    match e {
        PictureError::Corrupt(reason) => UpdateError::VideoCorrupt { rect, reason },
        PictureError::Size { width, height } => UpdateError::VideoPictureSize {
            rect,
            width,
            height,
        },
    }
}

fn decompress_error(rect: Rect, expected: usize, e: &std::io::Error) -> UpdateError {
    let zstd_error = e.get_ref().and_then(|e| e.downcast_ref::<zstd::Error>());
    if zstd_error.is_some_and(|z| z.is(ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall)) {
        UpdateError::DecompressedSize {
            rect,
            expected,
            got: None,
        }
    } else {
        UpdateError::Corrupt {
            rect,
            reason: e.to_string(),
        }
    }
}

/// Why a frame could not be encoded: a fault of this side (zstd could not
/// allocate, or a level out of range), never the frame's.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The compression level is not one zstd offers.
    #[error("zstd level {level} is outside {min}..={max}")]
    Level {
        /// The level asked for.
        level: i32,
        /// zstd's lowest level.
        min: i32,
        /// zstd's highest level.
        max: i32,
    },
    /// zstd failed (out of memory).
    #[error("zstd failed: {0}")]
    Zstd(#[from] std::io::Error),
    /// The frame needs more parts than the 16-bit part number counts; cannot
    /// happen within the screen size bounds.
    #[error("a frame needs more than 65536 update messages")]
    TooManyParts,
}

/// The update messages of one frame, in the order to send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The frame's number.
    pub frame: u64,
    /// Whether it is a keyframe.
    pub keyframe: bool,
    /// Its messages, each at most [`MAX_UPDATE`] bytes; none when nothing
    /// changed.
    pub messages: Vec<Vec<u8>>,
}

impl EncodedFrame {
    /// The bytes of all its messages.
    pub fn total_bytes(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }
}

/// What to send for one rectangle.
#[derive(Debug, Clone, Copy)]
enum Op {
    Raw(Rect),
    /// Nothing in the reference shares a pixel chunk with it: XOR in place
    /// or raw, whichever compresses smaller (XOR wins for video, whose
    /// pixels drift; raw for new content).
    Fresh(Rect),
    Xor {
        rect: Rect,
        sx: u32,
        sy: u32,
    },
    Copy {
        rect: Rect,
        sx: u32,
        sy: u32,
    },
}

/// The last frame sent, and the hashes of its tile-wide row segments.
struct Reference {
    frame: Frame,
    /// `hashes[column * height + y]`: row `y` of tile column `column`.
    hashes: Vec<u64>,
    /// The buffer that becomes the next reference. While a delta frame is
    /// planned, its changed tiles are copied here as they are hashed (while
    /// they are in the cache); elsewhere it holds an older frame.
    next: Frame,
    /// `behind[tile]`, tiles in [`grid`] order: where `next` is older
    /// than `frame`.
    behind: Vec<bool>,
}

/// At most this many vertical offsets are tried per tile.
const MAX_CANDIDATES: usize = 3;
/// An offset needs this many row votes to be tried.
const MIN_VOTES: u32 = 4;
/// A tile is split into at most this many runs of rows.
const MAX_RUNS: usize = 4;

/// Encodes frames into update messages; see the module docs.
pub struct ScreenEncoder {
    compressor: zstd::bulk::Compressor<'static>,
    reference: Option<Box<Reference>>,
    next_sequence: u64,
    next_frame: u64,
    keyframe_requested: bool,
    /// The new frame's row-segment hashes, while encoding.
    next_hashes: Vec<u64>,
    /// A tile's bytes, or their XOR with the reference.
    tile: Vec<u8>,
    /// A tile's zstd data.
    compressed: Vec<u8>,
    /// Another, to compare two ways of sending a tile.
    spare: Vec<u8>,
    /// Boxed: a stream's state is large and most encoders have none.
    video: Box<VideoState>,
}

/// The encoder's video regions; see [`crate::video`].
#[derive(Debug, Default)]
struct VideoState {
    /// The target bitrate; `None`: video regions are off.
    bitrate: Option<u32>,
    tracker: Option<RegionTracker>,
    /// The region's H.264 stream (boxed: OpenH264's output descriptor
    /// alone takes 8 KB, moved on every new stream otherwise).
    stream: Option<Box<VideoEncoder>>,
    /// The captured frame with the region's decoded picture in it.
    composite: Option<Frame>,
    /// What each tile's data cost in the frame being sent.
    costs: Vec<TileCost>,
    /// Frames left without video after a stream failed.
    cooldown: u32,
    /// The last capture time given and the rate-control time made of it.
    clock: Option<(u64, u64)>,
}

impl VideoState {
    /// The rate control's time for a frame captured at `captured_us`: that
    /// time's steps, each taken as 1 µs to 1 s, so that a clock set back or
    /// forward (a wall clock) cannot spread one picture's bits over hours
    /// or less than nothing.
    fn rate_time(&mut self, captured_us: u64) -> u64 {
        let time = match self.clock {
            None => captured_us,
            Some((last, time)) => {
                time.saturating_add(captured_us.saturating_sub(last).clamp(1, 1_000_000))
            }
        };
        self.clock = Some((captured_us, time));
        time
    }
}

/// What a frame sends for the video region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoPlan {
    /// No region: tiles everywhere.
    None,
    /// A picture of the region (in the stream's data); the composite holds
    /// it.
    Picture { rect: Rect, idr: bool },
    /// The rate control skipped the frame: nothing for the region, whose
    /// pixels stay as they are (the composite holds the reference's).
    Skipped { rect: Rect },
}

impl VideoPlan {
    fn rect(self) -> Option<Rect> {
        match self {
            VideoPlan::None => None,
            VideoPlan::Picture { rect, .. } | VideoPlan::Skipped { rect } => Some(rect),
        }
    }
}

/// Whether `tile` lies wholly inside `region`.
fn inside(region: Option<Rect>, tile: Rect) -> bool {
    region.is_some_and(|r| r.intersect(tile) == tile)
}

impl std::fmt::Debug for ScreenEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenEncoder")
            .field("next_sequence", &self.next_sequence)
            .field("next_frame", &self.next_frame)
            .field("keyframe_requested", &self.keyframe_requested)
            .field("video_bitrate", &self.video.bitrate)
            .field("video_region", &self.video_region())
            .finish_non_exhaustive()
    }
}

impl ScreenEncoder {
    /// A lossless encoder at [`DEFAULT_LEVEL`], video regions off; its first
    /// frame is a keyframe.
    pub fn new() -> Result<Self, EncodeError> {
        Self::with_level(DEFAULT_LEVEL)
    }

    /// An encoder at [`DEFAULT_LEVEL`] that sends a region changing every
    /// frame as H.264 at `bitrate` bits a second (clamped to
    /// [`video::MIN_BITRATE`]`..=`[`video::MAX_BITRATE`]); see
    /// [`crate::video`].
    pub fn with_video(bitrate: u32) -> Result<Self, EncodeError> {
        let mut encoder = Self::new()?;
        encoder.set_video_bitrate(Some(bitrate));
        Ok(encoder)
    }

    /// Sets the video regions' target bitrate in bits a second (clamped to
    /// [`video::MIN_BITRATE`]`..=`[`video::MAX_BITRATE`]), or turns video
    /// regions off (`None`): the next frame then puts the region right with
    /// tiles. A stream in progress takes a lower bitrate at once and a
    /// higher one once it is 1.5 times its own, each with a new IDR picture
    /// (see [`crate::video`]).
    pub fn set_video_bitrate(&mut self, bitrate: Option<u32>) {
        self.video.bitrate = bitrate.map(video::clamp_bitrate);
    }

    /// The video regions' target bitrate; `None` when they are off.
    pub fn video_bitrate(&self) -> Option<u32> {
        self.video.bitrate
    }

    /// The video region in force (as of the last frame encoded), if any.
    pub fn video_region(&self) -> Option<Rect> {
        self.video.tracker.as_ref().and_then(RegionTracker::region)
    }

    /// An encoder at zstd level `level` (for measurements; the decoder reads
    /// every level).
    pub fn with_level(level: i32) -> Result<Self, EncodeError> {
        let range = zstd::compression_level_range();
        if !range.contains(&level) {
            return Err(EncodeError::Level {
                level,
                min: *range.start(),
                max: *range.end(),
            });
        }
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        // The decoder knows each tile's size: the frame header need not say.
        compressor.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))?;
        Ok(Self {
            compressor,
            reference: None,
            next_sequence: 0,
            next_frame: 0,
            keyframe_requested: true,
            next_hashes: Vec::new(),
            tile: Vec::with_capacity(MAX_TILE_BYTES),
            compressed: Vec::with_capacity(zstd::compress_bound(MAX_TILE_BYTES)),
            spare: Vec::with_capacity(zstd::compress_bound(MAX_TILE_BYTES)),
            video: Box::default(),
        })
    }

    /// Makes the next frame a keyframe (a viewer joined, or one lost
    /// messages).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Encodes `frame` against the last frame sent. Returns no messages when
    /// nothing changed (the frame number is used all the same). On error the
    /// next frame is a keyframe. For the video's rate control, frame `n` is
    /// taken as captured at `n / 60` seconds; [`encode_at`](Self::encode_at)
    /// takes the real time.
    pub fn encode(&mut self, frame: &Frame) -> Result<EncodedFrame, EncodeError> {
        let time_us = self.next_frame.saturating_mul(1_000_000) / 60;
        self.encode_at(frame, time_us)
    }

    /// Like [`encode`](Self::encode), for a frame captured at `captured_us`
    /// microseconds, which tells the video's rate control how much time the
    /// frame's bits are spread over. Any clock will do: a step back or
    /// forward counts as 1 µs to 1 s.
    pub fn encode_at(
        &mut self,
        frame: &Frame,
        captured_us: u64,
    ) -> Result<EncodedFrame, EncodeError> {
        let number = self.next_frame;
        self.next_frame = self.next_frame.wrapping_add(1);
        let keyframe = self.keyframe_requested
            || self
                .reference
                .as_ref()
                .is_none_or(|r| r.frame.size() != frame.size());
        let time_us = self.video.rate_time(captured_us);
        let video = self.prepare_video(frame, time_us, keyframe);
        // With a region, the frame sent is the composite: the captured
        // frame with the region's decoded picture.
        let composite = self.video.composite.take();
        let source = match (video, &composite) {
            (VideoPlan::None, _) | (_, None) => frame,
            (_, Some(c)) => c,
        };
        let result = self.encode_source(source, number, keyframe, video);
        self.video.composite = composite;
        if result.is_ok() {
            let costs = std::mem::take(&mut self.video.costs);
            if let Some(tracker) = &mut self.video.tracker {
                tracker.observe(frame, &costs, keyframe);
            }
            self.video.costs = costs;
        }
        result
    }

    fn encode_source(
        &mut self,
        frame: &Frame,
        number: u64,
        keyframe: bool,
        video: VideoPlan,
    ) -> Result<EncodedFrame, EncodeError> {
        let region = video.rect();
        self.video.costs.clear();
        let (ops, changed) = if keyframe {
            let tiles = grid(frame.size());
            let ops = tiles
                .iter()
                .filter(|&&r| !inside(region, r))
                .map(|&r| Op::Raw(r))
                .collect();
            (ops, tiles)
        } else {
            self.plan(frame, region)
        };
        let picture = match video {
            VideoPlan::Picture { rect, idr } => Some((rect, idr)),
            VideoPlan::None | VideoPlan::Skipped { .. } => None,
        };
        if ops.is_empty() && picture.is_none() {
            return Ok(EncodedFrame {
                frame: number,
                keyframe,
                messages: Vec::new(),
            });
        }
        let first_sequence = self.next_sequence;
        let messages = match self.pack(frame, number, keyframe, picture, &ops) {
            Ok(messages) => messages,
            Err(e) => {
                self.next_sequence = first_sequence;
                self.keyframe_requested = true;
                return Err(e);
            }
        };
        self.keyframe_requested = false;
        self.remember(frame, keyframe, &changed);
        Ok(EncodedFrame {
            frame: number,
            keyframe,
            messages,
        })
    }

    /// Decides the video region for `frame` and, if there is one, encodes
    /// it and builds the composite. Any failure of the H.264 stream turns
    /// video off for a while and sends the frame as tiles.
    fn prepare_video(&mut self, frame: &Frame, captured_us: u64, keyframe: bool) -> VideoPlan {
        let screen = frame.size();
        let state = &mut self.video;
        let Some(bitrate) = state.bitrate else {
            state.tracker = None;
            state.stream = None;
            state.composite = None;
            return VideoPlan::None;
        };
        let tracker = match &mut state.tracker {
            Some(t) if t.screen() == screen => t,
            other => other.insert(RegionTracker::new(screen)),
        };
        if state.cooldown > 0 {
            state.cooldown -= 1;
            tracker.end();
            state.stream = None;
            return VideoPlan::None;
        }
        let Some(rect) = tracker.decide() else {
            state.stream = None;
            return VideoPlan::None;
        };
        let rebuild = state.stream.as_ref().is_none_or(|s| {
            let (target, now) = (u64::from(bitrate), u64::from(s.bitrate()));
            s.rect() != rect || target * 5 < now * 4 || target * 2 >= now * 3
        });
        let fail = |state: &mut VideoState| {
            state.stream = None;
            state.cooldown = VIDEO_COOLDOWN;
            if let Some(t) = &mut state.tracker {
                t.end();
            }
            VideoPlan::None
        };
        if rebuild {
            match VideoEncoder::new(rect, bitrate) {
                Ok(s) => state.stream = Some(Box::new(s)),
                Err(_) => return fail(state),
            }
        }
        let composite = match &mut state.composite {
            Some(c) if c.size() == screen => {
                c.as_bytes_mut().copy_from_slice(frame.as_bytes());
                c
            }
            other => other.insert(frame.clone()),
        };
        let Some(stream) = &mut state.stream else {
            return fail(state);
        };
        match stream.encode(frame, captured_us / 1000, keyframe, composite) {
            Ok(Some(picture)) => VideoPlan::Picture {
                rect,
                idr: picture.idr,
            },
            Ok(None) => {
                // Skipped: the region keeps the pixels the viewer has.
                match &self.reference {
                    Some(r) if r.frame.size() == screen => {
                        composite.copy_rect_from(&r.frame, rect);
                        VideoPlan::Skipped { rect }
                    }
                    _ => fail(state),
                }
            }
            Err(_) => fail(state),
        }
    }

    /// Finds the changed tiles of a delta frame and decides what to send for
    /// each, none for the tiles wholly inside `region` (sent as video).
    /// Returns the ops and every changed tile. Leaves the new frame's
    /// hashes in `next_hashes`.
    fn plan(&mut self, frame: &Frame, region: Option<Rect>) -> (Vec<Op>, Vec<Rect>) {
        let Some(Reference {
            frame: previous,
            hashes,
            next,
            ..
        }) = self.reference.as_deref_mut()
        else {
            return (Vec::new(), Vec::new());
        };
        let previous = &*previous;
        let hashes = &*hashes;
        let changed = changed_tiles(frame, previous);
        if changed.is_empty() {
            return (Vec::new(), changed);
        }
        let height = frame.height() as usize;
        self.next_hashes.clear();
        self.next_hashes.extend_from_slice(hashes);
        // Row by row across each band of tiles, for the hardware prefetcher.
        for band in changed.chunk_by(|a, b| a.y == b.y) {
            let Some(first) = band.first() else { continue };
            for y in first.y..first.bottom() {
                for rect in band {
                    let Some(row) = frame.row_span(rect.x, y, rect.width) else {
                        continue;
                    };
                    let column = (rect.x / TILE_SIZE) as usize;
                    if let Some(slot) = self.next_hashes.get_mut(column * height + y as usize) {
                        *slot = segment_hash(row);
                    }
                    if let Some(to) = next.row_span_mut(rect.x, y, rect.width) {
                        to.copy_from_slice(row);
                    }
                }
            }
        }
        let sent: Vec<Rect> = changed
            .iter()
            .copied()
            .filter(|&r| !inside(region, r))
            .collect();
        let vertical = vertical_moves(&sent, hashes, &self.next_hashes, height);
        let mut candidates: Vec<Offset> = vertical.iter().map(|&dy| (0, dy)).collect();
        for offset in moves(frame, previous, &sent, &vertical) {
            if !candidates.contains(&offset) {
                candidates.push(offset);
            }
        }
        let mut ops = Vec::with_capacity(sent.len());
        for &rect in &sent {
            let column = (rect.x / TILE_SIZE) as usize;
            let span = column * height..(column + 1) * height;
            let (Some(old), Some(new)) = (hashes.get(span.clone()), self.next_hashes.get(span))
            else {
                ops.push(Op::Xor {
                    rect,
                    sx: rect.x,
                    sy: rect.y,
                });
                continue;
            };
            let tile = TilePlan {
                frame,
                previous,
                rect,
                old,
                new,
            };
            tile.plan(&candidates, &mut ops);
        }
        (ops, changed)
    }

    /// Compresses the tiles and packs them into messages.
    fn pack(
        &mut self,
        frame: &Frame,
        number: u64,
        keyframe: bool,
        picture: Option<(Rect, bool)>,
        ops: &[Op],
    ) -> Result<Vec<Vec<u8>>, EncodeError> {
        let screen = frame.size();
        let mut messages = Vec::new();
        let mut part: u16 = 0;
        let mut current = self.start_message(number, keyframe, part, screen);
        let mut count: u16 = 0;
        // The video picture first, in as many pieces as it takes.
        let stream = self.video.stream.take();
        if let (Some((rect, idr)), Some(stream)) = (picture, &stream) {
            let mut rest = stream.data();
            loop {
                let mut room = MAX_UPDATE.saturating_sub(current.len() + VIDEO_ENTRY);
                if (room < MIN_VIDEO_PIECE.min(rest.len()) && count > 0) || count == u16::MAX {
                    set_tile_count(&mut current, count);
                    messages.push(current);
                    part = part.checked_add(1).ok_or(EncodeError::TooManyParts)?;
                    current = self.start_message(number, keyframe, part, screen);
                    count = 0;
                    room = MAX_UPDATE - HEADER_LEN - VIDEO_ENTRY;
                }
                let (piece, after) = rest.split_at(room.min(rest.len()));
                let mut flags = if idr { VIDEO_IDR } else { 0 };
                if !after.is_empty() {
                    flags |= VIDEO_CONTINUED;
                }
                current.push(KIND_VIDEO);
                for v in [rect.x, rect.y, rect.width, rect.height] {
                    current.extend_from_slice(&(v as u16).to_le_bytes());
                }
                current.push(flags);
                current.extend_from_slice(&(piece.len() as u32).to_le_bytes());
                current.extend_from_slice(piece);
                count += 1;
                rest = after;
                if rest.is_empty() {
                    break;
                }
            }
        }
        self.video.stream = stream;
        let costs = !keyframe && self.video.bitrate.is_some();
        if costs {
            self.video
                .costs
                .resize(grid_len(screen), TileCost::default());
        }
        let columns = screen.width().div_ceil(TILE_SIZE) as usize;
        for op in ops {
            let (kind, rect, source, entry) = match *op {
                Op::Raw(rect) => {
                    self.compress(frame, None, rect)?;
                    (KIND_RAW, rect, None, RAW_ENTRY + self.compressed.len())
                }
                Op::Xor { rect, sx, sy } => {
                    self.compress(frame, Some((sx, sy)), rect)?;
                    (
                        KIND_XOR,
                        rect,
                        Some((sx, sy)),
                        XOR_ENTRY + self.compressed.len(),
                    )
                }
                Op::Fresh(rect) => {
                    self.compress(frame, Some((rect.x, rect.y)), rect)?;
                    std::mem::swap(&mut self.compressed, &mut self.spare);
                    self.compress(frame, None, rect)?;
                    if self.spare.len() <= self.compressed.len() {
                        std::mem::swap(&mut self.compressed, &mut self.spare);
                        (
                            KIND_XOR,
                            rect,
                            Some((rect.x, rect.y)),
                            XOR_ENTRY + self.compressed.len(),
                        )
                    } else {
                        (KIND_RAW, rect, None, RAW_ENTRY + self.compressed.len())
                    }
                }
                Op::Copy { rect, sx, sy } => (KIND_COPY, rect, Some((sx, sy)), COPY_ENTRY),
            };
            if costs && kind != KIND_COPY {
                let tile = (rect.y / TILE_SIZE) as usize * columns + (rect.x / TILE_SIZE) as usize;
                if let Some(c) = self.video.costs.get_mut(tile) {
                    c.pixels += rect.width * rect.height;
                    c.bytes = c.bytes.saturating_add(entry as u32);
                }
            }
            if current.len() + entry > MAX_UPDATE || count == u16::MAX {
                set_tile_count(&mut current, count);
                messages.push(current);
                part = part.checked_add(1).ok_or(EncodeError::TooManyParts)?;
                current = self.start_message(number, keyframe, part, screen);
                count = 0;
            }
            current.push(kind);
            current.extend_from_slice(&(rect.x as u16).to_le_bytes());
            current.extend_from_slice(&(rect.y as u16).to_le_bytes());
            current.push(rect.width as u8);
            current.push(rect.height as u8);
            if let Some((sx, sy)) = source {
                current.extend_from_slice(&(sx as u16).to_le_bytes());
                current.extend_from_slice(&(sy as u16).to_le_bytes());
            }
            if kind != KIND_COPY {
                current.extend_from_slice(&(self.compressed.len() as u32).to_le_bytes());
                current.extend_from_slice(&self.compressed);
            }
            count += 1;
        }
        set_tile_count(&mut current, count);
        if let Some(flags) = current.get_mut(FLAGS_AT) {
            *flags |= FLAG_LAST_PART;
        }
        messages.push(current);
        Ok(messages)
    }

    /// A message header with the next sequence number and no tiles yet.
    fn start_message(
        &mut self,
        frame: u64,
        keyframe: bool,
        part: u16,
        screen: ScreenSize,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_UPDATE.min(64 * 1024));
        out.push(FORMAT_VERSION);
        out.push(if keyframe { FLAG_KEYFRAME } else { 0 });
        out.extend_from_slice(&self.next_sequence.to_le_bytes());
        out.extend_from_slice(&frame.to_le_bytes());
        out.extend_from_slice(&part.to_le_bytes());
        out.extend_from_slice(&(screen.width() as u16).to_le_bytes());
        out.extend_from_slice(&(screen.height() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        self.next_sequence = self.next_sequence.wrapping_add(1);
        out
    }

    /// Puts zstd of the tile's bytes (XOR the reference at `source`, if
    /// given) into `compressed`.
    fn compress(
        &mut self,
        frame: &Frame,
        source: Option<(u32, u32)>,
        rect: Rect,
    ) -> Result<(), EncodeError> {
        self.tile.clear();
        let reference = self.reference.as_ref().map(|r| &r.frame);
        for row in 0..rect.height {
            let Some(new) = frame.row_span(rect.x, rect.y + row, rect.width) else {
                continue;
            };
            match (source, reference) {
                (Some((sx, sy)), Some(reference)) => {
                    if let Some(old) = reference.row_span(sx, sy + row, rect.width) {
                        self.tile.extend(new.iter().zip(old).map(|(n, o)| n ^ o));
                    }
                }
                _ => self.tile.extend_from_slice(new),
            }
        }
        self.compressed.clear();
        self.compressor
            .compress_to_buffer(&self.tile, &mut self.compressed)?;
        Ok(())
    }

    /// Makes `frame` the reference. After a delta frame, whose changed
    /// tiles `plan` copied into the next reference, that is brought up to
    /// date in the tiles where it is behind and this frame did not change,
    /// and swaps with the reference; the hashes computed for the changed
    /// tiles are kept.
    fn remember(&mut self, frame: &Frame, keyframe: bool, changed: &[Rect]) {
        let screen = frame.size();
        let columns = screen.width().div_ceil(TILE_SIZE) as usize;
        let tile_index =
            |r: &Rect| (r.y / TILE_SIZE) as usize * columns + (r.x / TILE_SIZE) as usize;
        match &mut self.reference {
            Some(reference) if !keyframe => {
                let mut was_changed = vec![false; reference.behind.len()];
                for rect in changed {
                    if let Some(c) = was_changed.get_mut(tile_index(rect)) {
                        *c = true;
                    }
                }
                for (rect, (&behind, &now)) in grid(screen)
                    .iter()
                    .zip(reference.behind.iter().zip(&was_changed))
                {
                    if behind && !now {
                        reference.next.copy_rect_from(&reference.frame, *rect);
                    }
                }
                std::mem::swap(&mut reference.frame, &mut reference.next);
                reference.behind = was_changed;
                std::mem::swap(&mut reference.hashes, &mut self.next_hashes);
            }
            _ => {
                let tiles = grid(screen).len();
                // The old buffers are reused: no page faults for fresh ones.
                let (current, next, behind) = match self.reference.take() {
                    Some(old) if old.frame.size() == screen => {
                        let Reference {
                            frame: older,
                            mut next,
                            ..
                        } = *old;
                        next.as_bytes_mut().copy_from_slice(frame.as_bytes());
                        (next, older, true)
                    }
                    _ => (frame.clone(), frame.clone(), false),
                };
                self.reference = Some(Box::new(Reference {
                    frame: current,
                    hashes: all_hashes(frame),
                    next,
                    behind: vec![behind; tiles],
                }));
            }
        }
    }
}

/// The tiles of a screen, row by row: [`TILE_SIZE`] squares, smaller at the
/// right and bottom edges.
fn grid(screen: ScreenSize) -> Vec<Rect> {
    let (w, h) = (screen.width(), screen.height());
    let mut out = Vec::with_capacity((w.div_ceil(TILE_SIZE) * h.div_ceil(TILE_SIZE)) as usize);
    for y in (0..h).step_by(TILE_SIZE as usize) {
        for x in (0..w).step_by(TILE_SIZE as usize) {
            out.push(Rect::new(x, y, TILE_SIZE.min(w - x), TILE_SIZE.min(h - y)));
        }
    }
    out
}

/// How many tiles [`grid`] makes.
fn grid_len(screen: ScreenSize) -> usize {
    (screen.width().div_ceil(TILE_SIZE) * screen.height().div_ceil(TILE_SIZE)) as usize
}

fn set_tile_count(message: &mut [u8], count: u16) {
    if let Some(slot) = message.get_mut(TILE_COUNT_AT..TILE_COUNT_AT + 2) {
        slot.copy_from_slice(&count.to_le_bytes());
    }
}

/// The tiles of [`grid`] where `frame` differs from `previous` (of the
/// same size), in the same order. Whole rows are compared first; a row that
/// differs is compared tile by tile, skipping the tiles known to differ.
fn changed_tiles(frame: &Frame, previous: &Frame) -> Vec<Rect> {
    let (w, h) = (frame.width(), frame.height());
    let segment = TILE_SIZE as usize * BYTES_PER_PIXEL;
    let mut differs = vec![false; w.div_ceil(TILE_SIZE) as usize];
    let mut out = Vec::new();
    for top in (0..h).step_by(TILE_SIZE as usize) {
        let bottom = (top + TILE_SIZE).min(h);
        differs.fill(false);
        let mut undecided = differs.len();
        for y in top..bottom {
            if undecided == 0 {
                break;
            }
            let (Some(a), Some(b)) = (frame.row_span(0, y, w), previous.row_span(0, y, w)) else {
                continue;
            };
            if a == b {
                continue;
            }
            for ((d, a), b) in differs
                .iter_mut()
                .zip(a.chunks(segment))
                .zip(b.chunks(segment))
            {
                if !*d && a != b {
                    *d = true;
                    undecided -= 1;
                }
            }
        }
        for (x, &d) in (0..w).step_by(TILE_SIZE as usize).zip(&differs) {
            if d {
                out.push(Rect::new(x, top, TILE_SIZE.min(w - x), bottom - top));
            }
        }
    }
    out
}

/// A fast 64-bit hash of a row segment (not cryptographic: a collision only
/// costs compression). Four independent lanes of 8-byte words, so that the
/// multiplications overlap.
fn segment_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let len = bytes.len() as u64;
    let mut lanes = [
        0x243f_6a88_85a3_08d3 ^ len,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = mix(*lane, word(w));
        }
    }
    let mut h = lanes.into_iter().fold(0, mix);
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        h = mix(h, word(w));
    }
    for &b in words.remainder() {
        h = mix(h, u64::from(b));
    }
    h ^ (h >> 29)
}

/// The row-segment hashes of a whole frame.
fn all_hashes(frame: &Frame) -> Vec<u64> {
    let (w, h) = (frame.width(), frame.height());
    let mut out = Vec::with_capacity((w.div_ceil(TILE_SIZE) * h) as usize);
    for x in (0..w).step_by(TILE_SIZE as usize) {
        let width = TILE_SIZE.min(w - x);
        for y in 0..h {
            out.push(frame.row_span(x, y, width).map_or(0, segment_hash));
        }
    }
    out
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A row hash's positions in a tile column, while it has at most [`SAME`].
#[derive(Default)]
struct Seen {
    count: usize,
    at: [usize; SAME],
}

/// A row hash that occurs more often in a column casts no votes.
const SAME: usize = 4;

impl Seen {
    fn add(&mut self, y: usize) {
        if let Some(slot) = self.at.get_mut(self.count) {
            *slot = y;
        }
        self.count = self.count.saturating_add(1);
    }

    fn positions(&self) -> &[usize] {
        if self.count > SAME {
            &[]
        } else {
            self.at.get(..self.count).unwrap_or(&[])
        }
    }
}

/// The vertical offsets (source row minus row) that changed rows most often
/// came from, most votes first; see the module docs.
fn vertical_moves(changed: &[Rect], old: &[u64], new: &[u64], height: usize) -> Vec<i64> {
    let mut columns: Vec<u32> = changed.iter().map(|r| r.x / TILE_SIZE).collect();
    columns.sort_unstable();
    columns.dedup();
    // votes[dy + height]: the votes for offset dy.
    let mut votes = vec![0u32; 2 * height + 1];
    let mut index: HashMap<u64, Seen, BuildHasherDefault<PassThrough>> = HashMap::default();
    for column in columns {
        let span = column as usize * height..(column as usize + 1) * height;
        let (Some(old), Some(new)) = (old.get(span.clone()), new.get(span)) else {
            continue;
        };
        // Where each row hash occurs in the reference, if at most SAME times
        // (rows of text repeat within a line; blank rows repeat everywhere).
        index.clear();
        for (y, &h) in old.iter().enumerate() {
            index.entry(h).or_default().add(y);
        }
        for rect in changed.iter().filter(|r| r.x / TILE_SIZE == column) {
            for y in rect.y as usize..rect.bottom() as usize {
                let (Some(n), Some(o)) = (new.get(y), old.get(y)) else {
                    continue;
                };
                if n == o {
                    continue;
                }
                for &from in index.get(n).map_or(&[][..], Seen::positions) {
                    if let Some(v) = votes.get_mut(from + height - y) {
                        *v += 1;
                    }
                }
            }
        }
    }
    let mut ranked: Vec<(i64, u32)> = (-(height as i64)..)
        .zip(votes)
        .filter(|&(_, v)| v >= MIN_VOTES)
        .collect();
    ranked.sort_unstable_by_key(|&(dy, v)| (std::cmp::Reverse(v), dy.unsigned_abs(), dy));
    ranked
        .into_iter()
        .take(MAX_CANDIDATES)
        .map(|(dy, _)| dy)
        .collect()
}

/// Where a rectangle's content came from, relative to it: `(dx, dy)`.
type Offset = (i64, i64);

/// At most this many offsets found by probing.
const MAX_PROBED: usize = 2;
/// Probes per frame, at most.
const PROBES: usize = 24;
/// A probe's width in pixels.
const PROBE_WIDTH: u32 = 16;
/// How far (in each direction, in pixels) a probe is looked for.
const SEARCH: i64 = 32;

/// Offsets in any direction (a dragged window), found by looking for short
/// row segments of changed tiles in the reference nearby: a few segments
/// with some texture each, each looked for within [`SEARCH`] pixels, voting
/// for the offsets where they occur (at most [`SAME`] times). A segment
/// found at one of the `vertical` offsets already is not looked for.
fn moves(frame: &Frame, previous: &Frame, changed: &[Rect], vertical: &[i64]) -> Vec<Offset> {
    let (width, height) = (i64::from(frame.width()), i64::from(frame.height()));
    let probe_bytes = PROBE_WIDTH as usize * BYTES_PER_PIXEL;
    let step = changed.len().div_ceil(PROBES).max(1);
    let mut votes: HashMap<Offset, u32> = HashMap::new();
    for rect in changed.iter().step_by(step) {
        let Some((px, py, probe)) = pick_probe(frame, previous, *rect) else {
            continue;
        };
        let explained = vertical.iter().any(|&dy| {
            u32::try_from(i64::from(py) + dy)
                .ok()
                .and_then(|sy| previous.row_span(px, sy, PROBE_WIDTH))
                == Some(probe)
        });
        if explained {
            continue;
        }
        // Two of the probe's pixels that differ (it has texture) are
        // compared first: most places fail there.
        let first = pixel_at(probe, 0);
        let textured = (1..PROBE_WIDTH as usize)
            .find(|&i| pixel_at(probe, i) != first)
            .unwrap_or(0);
        let second = pixel_at(probe, textured);
        let mut found: Vec<Offset> = Vec::new();
        'search: for dy in -SEARCH..=SEARCH {
            let sy = i64::from(py) + dy;
            if !(0..height).contains(&sy) {
                continue;
            }
            let Some(row) = previous.row_span(0, sy as u32, frame.width()) else {
                continue;
            };
            for dx in -SEARCH..=SEARCH {
                let sx = i64::from(px) + dx;
                if sx < 0 || sx + i64::from(PROBE_WIDTH) > width || (dx, dy) == (0, 0) {
                    continue;
                }
                let at = sx as usize * BYTES_PER_PIXEL;
                let Some(there) = row.get(at..at + probe_bytes) else {
                    continue;
                };
                if pixel_at(there, 0) == first
                    && pixel_at(there, textured) == second
                    && there == probe
                {
                    found.push((dx, dy));
                    if found.len() > SAME {
                        break 'search;
                    }
                }
            }
        }
        if found.len() <= SAME {
            for offset in found {
                *votes.entry(offset).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(Offset, u32)> = votes.into_iter().filter(|&(_, v)| v >= 2).collect();
    ranked.sort_unstable_by_key(|&(o, v)| {
        (
            std::cmp::Reverse(v),
            o.0.unsigned_abs() + o.1.unsigned_abs(),
            o,
        )
    });
    ranked
        .into_iter()
        .take(MAX_PROBED)
        .map(|(o, _)| o)
        .collect()
}

/// Pixel `i` of a row's bytes, if there.
fn pixel_at(bytes: &[u8], i: usize) -> Option<[u8; BYTES_PER_PIXEL]> {
    let at = i * BYTES_PER_PIXEL;
    bytes.get(at..at + BYTES_PER_PIXEL)?.try_into().ok()
}

/// A changed segment of `rect` with some texture (not one colour), if any:
/// its position and bytes.
fn pick_probe<'f>(frame: &'f Frame, previous: &Frame, rect: Rect) -> Option<(u32, u32, &'f [u8])> {
    if rect.width < PROBE_WIDTH {
        return None;
    }
    for y in [rect.height / 2, rect.height / 4, rect.height * 3 / 4] {
        let y = rect.y + y;
        for x in (rect.x..=rect.right() - PROBE_WIDTH).step_by(PROBE_WIDTH as usize) {
            let Some(probe) = frame.row_span(x, y, PROBE_WIDTH) else {
                continue;
            };
            let first = probe.get(..BYTES_PER_PIXEL);
            let textured = probe
                .chunks_exact(BYTES_PER_PIXEL)
                .any(|px| Some(px) != first);
            if textured && previous.row_span(x, y, PROBE_WIDTH) != Some(probe) {
                return Some((x, y, probe));
            }
        }
    }
    None
}

/// How many 4-pixel chunks of two rows of the same length are equal.
fn equal_chunks(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 4 * BYTES_PER_PIXEL;
    let word = |c: &[u8]| <[u8; CHUNK]>::try_from(c).ok().map(u128::from_ne_bytes);
    let (mut x, mut y) = (a.chunks_exact(CHUNK), b.chunks_exact(CHUNK));
    let whole = (&mut x)
        .zip(&mut y)
        .filter(|&(p, q)| word(p) == word(q))
        .count();
    let (p, q) = (x.remainder(), y.remainder());
    whole + usize::from(!p.is_empty() && p == q)
}

/// Planning one changed tile; see [`TilePlan::plan`].
struct TilePlan<'a> {
    frame: &'a Frame,
    previous: &'a Frame,
    rect: Rect,
    /// The reference's row hashes of the tile's column.
    old: &'a [u64],
    /// The new frame's.
    new: &'a [u64],
}

impl TilePlan<'_> {
    /// The reference rectangle `offset` away from `rect`, if on screen.
    fn source(&self, rect: Rect, (dx, dy): Offset) -> Option<(u32, u32)> {
        let sx = i64::from(rect.x) + dx;
        let sy = i64::from(rect.y) + dy;
        let screen = self.previous.size();
        let fits = sx >= 0
            && sy >= 0
            && sx + i64::from(rect.width) <= i64::from(screen.width())
            && sy + i64::from(rect.height) <= i64::from(screen.height());
        fits.then_some((sx as u32, sy as u32))
    }

    /// Whether row `row` of the tile matches the reference `offset` away:
    /// by hash when the offset is vertical (checked byte for byte before a
    /// copy is sent), by bytes otherwise.
    fn row_matches(&self, row: u32, offset: Offset) -> bool {
        let line = Rect::new(self.rect.x, self.rect.y + row, self.rect.width, 1);
        let Some((sx, sy)) = self.source(line, offset) else {
            return false;
        };
        if offset.0 == 0 {
            let new = self.new.get(line.y as usize);
            new.is_some() && new == self.old.get(sy as usize)
        } else {
            self.frame.row_span(line.x, line.y, line.width)
                == self.previous.row_span(sx, sy, line.width)
        }
    }

    /// How many 4-pixel chunks of `rect` equal the reference at `(sx, sy)`.
    fn equal_chunks(&self, rect: Rect, (sx, sy): (u32, u32)) -> usize {
        (0..rect.height)
            .map(|row| {
                match (
                    self.frame.row_span(rect.x, rect.y + row, rect.width),
                    self.previous.row_span(sx, sy + row, rect.width),
                ) {
                    (Some(a), Some(b)) => equal_chunks(a, b),
                    _ => 0,
                }
            })
            .sum()
    }

    /// Whether `rect` equals the reference at `(sx, sy)`, byte for byte.
    fn equal(&self, rect: Rect, (sx, sy): (u32, u32)) -> bool {
        (0..rect.height).all(|row| {
            let a = self.frame.row_span(rect.x, rect.y + row, rect.width);
            a.is_some() && a == self.previous.row_span(sx, sy + row, rect.width)
        })
    }

    /// Decides what to send for the tile: the offset under which most of its
    /// rows match wins; runs of matching rows become copies (or nothing, at
    /// offset zero), the other runs an XOR against whichever candidate
    /// rectangle shares the most pixels with them — raw when none shares any.
    fn plan(&self, candidates: &[Offset], ops: &mut Vec<Op>) {
        let rows = |offset: Offset| {
            (0..self.rect.height)
                .filter(|&r| self.row_matches(r, offset))
                .count()
        };
        let mut best = ((0, 0), rows((0, 0)));
        for &offset in candidates {
            let n = rows(offset);
            if n > best.1 {
                best = (offset, n);
            }
        }
        let best = best.0;
        let mut runs: Vec<(u32, u32, bool)> = Vec::new();
        for row in 0..self.rect.height {
            let m = self.row_matches(row, best);
            match runs.last_mut() {
                Some((_, end, matched)) if *matched == m => *end = row + 1,
                _ => runs.push((row, row + 1, m)),
            }
        }
        if runs.len() > MAX_RUNS {
            runs = vec![(0, self.rect.height, false)];
        }
        for (start, end, matched) in runs {
            let sub = Rect::new(
                self.rect.x,
                self.rect.y + start,
                self.rect.width,
                end - start,
            );
            // Rows whose hashes differ differ.
            let hashes_equal =
                (sub.y..sub.bottom()).all(|y| self.new.get(y as usize) == self.old.get(y as usize));
            if hashes_equal && self.equal(sub, (sub.x, sub.y)) {
                continue;
            }
            if matched {
                if let Some(source) = self.source(sub, best) {
                    // A sideways match compared the bytes already; a
                    // vertical one only the hashes.
                    if best.0 != 0 || self.equal(sub, source) {
                        ops.push(Op::Copy {
                            rect: sub,
                            sx: source.0,
                            sy: source.1,
                        });
                        continue;
                    }
                }
            }
            let mut choice: Option<((u32, u32), usize)> = None;
            for offset in std::iter::once((0, 0)).chain(candidates.iter().copied()) {
                let Some(source) = self.source(sub, offset) else {
                    continue;
                };
                let score = self.equal_chunks(sub, source);
                if score > choice.map_or(0, |c| c.1) {
                    choice = Some((source, score));
                }
            }
            ops.push(match choice {
                Some(((sx, sy), _)) => Op::Xor { rect: sub, sx, sy },
                None => Op::Fresh(sub),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_control_time_takes_clock_steps_as_small_ones() {
        let mut v = VideoState::default();
        assert_eq!(v.rate_time(1_000), 1_000);
        assert_eq!(v.rate_time(17_666), 17_666);
        // Set back: a microsecond later.
        assert_eq!(v.rate_time(5), 17_667);
        // Set forward by hours: a second later.
        assert_eq!(v.rate_time(10_000_000_000), 1_017_667);
        assert_eq!(v.rate_time(10_000_016_666), 1_034_333);
    }
    use crate::frame::Bgra;
    use crate::synthetic::{read_marker, SyntheticScreen, Workload};
    use proptest::prelude::*;

    fn size(w: u32, h: u32) -> ScreenSize {
        ScreenSize::new(w, h).unwrap()
    }

    /// Applies all messages of an encoded frame; returns the last outcome.
    fn apply_all(decoder: &mut ScreenDecoder, encoded: &EncodedFrame) -> Option<Applied> {
        let mut last = None;
        for (i, m) in encoded.messages.iter().enumerate() {
            let applied = decoder.apply(m).unwrap();
            if i + 1 < encoded.messages.len() {
                assert_eq!(
                    applied,
                    Applied::Partial {
                        frame: encoded.frame
                    }
                );
            }
            last = Some(applied);
        }
        last
    }

    /// Encodes and decodes `frames` frames of a workload, checking each.
    fn round_trip(workload: Workload, screen: ScreenSize, frames: usize) -> Vec<EncodedFrame> {
        let mut source = SyntheticScreen::new(workload, screen);
        let mut encoder = ScreenEncoder::new().unwrap();
        let mut decoder = ScreenDecoder::new();
        let mut out = Vec::new();
        for n in 0..frames {
            let frame = source.next_frame();
            let encoded = encoder.encode(frame).unwrap();
            assert_eq!(encoded.frame, n as u64);
            assert_eq!(encoded.keyframe, n == 0);
            for m in &encoded.messages {
                assert!(m.len() <= MAX_UPDATE);
            }
            if encoded.messages.is_empty() {
                assert_ne!(n, 0);
            } else {
                assert_eq!(
                    apply_all(&mut decoder, &encoded),
                    Some(Applied::FrameComplete {
                        frame: n as u64,
                        keyframe: n == 0
                    })
                );
            }
            let canvas = decoder.canvas().unwrap();
            assert!(canvas == frame, "{workload:?} {screen}: frame {n} differs");
            if screen.contains(crate::synthetic::MARKER_RECT) {
                assert_eq!(read_marker(canvas), Some(n as u32));
            }
            out.push(encoded);
        }
        out
    }

    #[test]
    fn every_workload_round_trips_pixel_exact() {
        for workload in Workload::ALL {
            for screen in [size(640, 400), size(333, 217)] {
                round_trip(workload, screen, 120);
            }
        }
    }

    #[test]
    fn a_viewer_refuses_screens_larger_than_its_limit_before_allocating() {
        let mut encoder = ScreenEncoder::new().unwrap();
        let big = encoder
            .encode(&Frame::filled(size(200, 100), Bgra::rgb(1, 2, 3)))
            .unwrap();
        let mut decoder = ScreenDecoder::with_max_pixels(100 * 100);
        assert_eq!(
            decoder.apply(&big.messages[0]),
            Err(UpdateError::ScreenSize {
                width: 200,
                height: 100
            })
        );
        assert!(decoder.canvas().is_none());
        let mut roomy = ScreenDecoder::with_max_pixels(200 * 100);
        assert!(apply_all(&mut roomy, &big).is_some());
    }

    #[test]
    fn tiny_and_odd_screens_round_trip() {
        for (w, h) in [(1, 1), (63, 65), (64, 64), (65, 1), (1, 129)] {
            for workload in Workload::ALL {
                round_trip(workload, size(w, h), 8);
            }
        }
    }

    #[test]
    fn a_large_video_frame_spans_several_messages() {
        let encoded = round_trip(Workload::Video, size(1280, 720), 3);
        for e in &encoded {
            assert!(e.messages.len() >= 2, "{} messages", e.messages.len());
        }
    }

    #[test]
    fn scrolled_text_is_sent_as_copies() {
        let encoded = round_trip(Workload::Scrolling, size(640, 400), 20);
        let keyframe = encoded[0].total_bytes();
        for e in &encoded[2..] {
            // A page scrolled by a line costs a small part of the page.
            assert!(
                e.total_bytes() * 8 < keyframe,
                "{} vs keyframe {keyframe}",
                e.total_bytes()
            );
            let copies = e
                .messages
                .iter()
                .flat_map(|m| UpdateMessage::parse(m).unwrap().tiles)
                .filter(|t| matches!(t.data, TileData::Copy { .. }))
                .count();
            assert!(copies > 20, "{copies} copies");
        }
    }

    #[test]
    fn moved_content_is_sent_as_copies_from_where_it_was() {
        let screen = size(400, 300);
        let mut frame = Frame::filled(screen, Bgra::rgb(0x30, 0x30, 0x30));
        noise(&mut frame, Rect::new(40, 40, 200, 150), 7);
        for (dx, dy) in [(0i32, -37i32), (0, 90), (5, 3), (-12, 20), (0, 0)] {
            let mut encoder = ScreenEncoder::new().unwrap();
            let mut decoder = ScreenDecoder::new();
            apply_all(&mut decoder, &encoder.encode(&frame).unwrap());
            // The noise block moves by (dx, dy); the area it leaves is cleared.
            let mut moved = Frame::filled(screen, Bgra::rgb(0x30, 0x30, 0x30));
            for y in 40..190u32 {
                let row = frame.row_span(40, y, 200).unwrap().to_vec();
                let to = moved
                    .row_span_mut((40 + dx) as u32, (y as i32 + dy) as u32, 200)
                    .unwrap();
                to.copy_from_slice(&row);
            }
            let encoded = encoder.encode(&moved).unwrap();
            apply_all(&mut decoder, &encoded);
            assert!(decoder.canvas().unwrap() == &moved);
            let tiles: Vec<Tile<'_>> = encoded
                .messages
                .iter()
                .flat_map(|m| UpdateMessage::parse(m).unwrap().tiles)
                .collect();
            let copied: u32 = tiles
                .iter()
                .filter_map(|t| match t.data {
                    TileData::Copy { x, y } => {
                        assert_eq!(
                            (
                                i64::from(t.rect.x) - i64::from(x),
                                i64::from(t.rect.y) - i64::from(y)
                            ),
                            (i64::from(dx), i64::from(dy))
                        );
                        Some(t.rect.width * t.rect.height)
                    }
                    _ => None,
                })
                .sum();
            if (dx, dy) == (0, 0) {
                assert!(tiles.is_empty());
            } else {
                // Most of the 200×150 block arrives as copies.
                assert!(
                    copied > 200 * 150 / 2,
                    "({dx}, {dy}): {copied} pixels copied"
                );
                assert!(encoded.total_bytes() < 40_000, "{}", encoded.total_bytes());
            }
        }
    }

    #[test]
    fn a_typed_character_costs_a_few_hundred_bytes() {
        let encoded = round_trip(Workload::Typing, size(1280, 720), 30);
        let typical: Vec<usize> = encoded[1..].iter().map(EncodedFrame::total_bytes).collect();
        let mut sorted = typical.clone();
        sorted.sort_unstable();
        assert!(sorted[sorted.len() / 2] < 400, "{typical:?}");
    }

    #[test]
    fn an_unchanged_frame_sends_nothing() {
        let screen = size(100, 80);
        let frame = Frame::filled(screen, Bgra::rgb(1, 2, 3));
        let mut encoder = ScreenEncoder::new().unwrap();
        let first = encoder.encode(&frame).unwrap();
        assert!(first.keyframe && !first.messages.is_empty());
        let second = encoder.encode(&frame).unwrap();
        assert_eq!(second.frame, 1);
        assert!(second.messages.is_empty());
        // The sequence numbers go on without a gap.
        let mut decoder = ScreenDecoder::new();
        apply_all(&mut decoder, &first);
        let mut changed = frame.clone();
        changed.fill_rect(Rect::new(10, 10, 5, 5), Bgra::rgb(9, 9, 9));
        let third = encoder.encode(&changed).unwrap();
        assert_eq!(
            apply_all(&mut decoder, &third),
            Some(Applied::FrameComplete {
                frame: 2,
                keyframe: false
            })
        );
        assert!(decoder.canvas().unwrap() == &changed);
    }

    #[test]
    fn messages_never_exceed_max_update() {
        // Noise does not compress: a 1024×768 keyframe is 3 MiB of tiles.
        let screen = size(1024, 768);
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut noise = || {
            let bytes: Vec<u8> = (0..screen.byte_len())
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            Frame::from_bgra(screen, bytes).unwrap()
        };
        let mut encoder = ScreenEncoder::new().unwrap();
        let mut decoder = ScreenDecoder::new();
        for _ in 0..2 {
            let frame = noise();
            let encoded = encoder.encode(&frame).unwrap();
            assert!(encoded.messages.len() >= 12);
            for (i, m) in encoded.messages.iter().enumerate() {
                assert!(m.len() <= MAX_UPDATE, "message {i} is {} bytes", m.len());
                let parsed = UpdateMessage::parse(m).unwrap();
                assert_eq!(usize::from(parsed.part), i);
                assert_eq!(parsed.last_part, i + 1 == encoded.messages.len());
                if i + 1 < encoded.messages.len() {
                    // Packed full: no room left for another incompressible tile.
                    assert!(
                        m.len() + XOR_ENTRY + zstd::compress_bound(MAX_TILE_BYTES) > MAX_UPDATE
                    );
                }
            }
            apply_all(&mut decoder, &encoded);
            assert!(decoder.canvas().unwrap() == &frame);
        }
    }

    #[test]
    fn a_lost_message_is_reported_and_a_keyframe_recovers() {
        let screen = size(640, 400);
        let mut source = SyntheticScreen::new(Workload::Video, screen);
        let mut encoder = ScreenEncoder::new().unwrap();
        let mut decoder = ScreenDecoder::new();
        let first = encoder.encode(source.next_frame()).unwrap();
        apply_all(&mut decoder, &first);
        let shown = decoder.canvas().unwrap().clone();
        // Frame 1 loses its first message; the rest are skipped.
        let lost = encoder.encode(source.next_frame()).unwrap();
        assert!(lost.messages.len() >= 2);
        let expected = UpdateMessage::parse(&lost.messages[0]).unwrap().sequence;
        assert_eq!(
            decoder.apply(&lost.messages[1]),
            Err(UpdateError::NeedKeyframe {
                expected,
                got: expected + 1
            })
        );
        assert!(decoder.needs_keyframe());
        for m in &lost.messages[2..] {
            assert_eq!(decoder.apply(m), Ok(Applied::Skipped { frame: 1 }));
        }
        // Later deltas are skipped too; the canvas keeps the last whole frame.
        let later = encoder.encode(source.next_frame()).unwrap();
        for m in &later.messages {
            assert_eq!(decoder.apply(m), Ok(Applied::Skipped { frame: 2 }));
        }
        assert!(decoder.canvas().unwrap() == &shown);
        assert_eq!(decoder.last_complete_frame(), Some(0));
        // The viewer asks for a keyframe; it puts the picture right.
        encoder.request_keyframe();
        let frame = source.next_frame();
        let key = encoder.encode(frame).unwrap();
        assert!(key.keyframe);
        assert_eq!(
            apply_all(&mut decoder, &key),
            Some(Applied::FrameComplete {
                frame: 3,
                keyframe: true
            })
        );
        assert!(!decoder.needs_keyframe());
        assert!(decoder.canvas().unwrap() == frame);
        // And deltas apply again.
        let frame = source.next_frame();
        let next = encoder.encode(frame).unwrap();
        assert!(!next.keyframe);
        apply_all(&mut decoder, &next);
        assert!(decoder.canvas().unwrap() == frame);
    }

    #[test]
    fn a_keyframe_missing_its_first_part_is_not_shown() {
        let screen = size(640, 400);
        let mut source = SyntheticScreen::new(Workload::Video, screen);
        let mut encoder = ScreenEncoder::new().unwrap();
        let mut decoder = ScreenDecoder::new();
        let key = encoder.encode(source.next_frame()).unwrap();
        assert!(key.messages.len() >= 2);
        for m in &key.messages[1..] {
            assert_eq!(decoder.apply(m), Ok(Applied::Skipped { frame: 0 }));
        }
        assert!(decoder.canvas().is_none());
        encoder.request_keyframe();
        let frame = source.next_frame().clone();
        let key = encoder.encode(&frame).unwrap();
        // Its middle part is lost this time.
        assert_eq!(
            decoder.apply(&key.messages[0]),
            Ok(Applied::Partial { frame: 1 })
        );
        let r = decoder.apply(&key.messages[2]);
        assert!(
            matches!(r, Err(UpdateError::NeedKeyframe { .. })),
            "{r:?} {}",
            key.messages.len()
        );
        assert!(decoder.canvas().is_none());
        encoder.request_keyframe();
        let frame = source.next_frame().clone();
        apply_all(&mut decoder, &encoder.encode(&frame).unwrap());
        assert!(decoder.canvas().unwrap() == &frame);
    }

    #[test]
    fn a_viewer_joining_late_waits_for_its_keyframe() {
        let screen = size(320, 200);
        let mut source = SyntheticScreen::new(Workload::Typing, screen);
        let mut encoder = ScreenEncoder::new().unwrap();
        let mut early = ScreenDecoder::new();
        for _ in 0..5 {
            apply_all(&mut early, &encoder.encode(source.next_frame()).unwrap());
        }
        let mut late = ScreenDecoder::new();
        let delta = encoder.encode(source.next_frame()).unwrap();
        apply_all(&mut early, &delta);
        assert_eq!(
            late.apply(&delta.messages[0]),
            Ok(Applied::Skipped { frame: 5 })
        );
        encoder.request_keyframe();
        let frame = source.next_frame().clone();
        let key = encoder.encode(&frame).unwrap();
        // The viewer that was there all along takes the keyframe too.
        apply_all(&mut early, &key);
        apply_all(&mut late, &key);
        assert!(late.canvas().unwrap() == &frame);
        assert!(early.canvas().unwrap() == &frame);
    }

    #[test]
    fn a_restarted_encoder_is_followed() {
        let screen = size(200, 100);
        let mut source = SyntheticScreen::new(Workload::DraggingWindow, screen);
        let mut decoder = ScreenDecoder::new();
        let mut encoder = ScreenEncoder::new().unwrap();
        for _ in 0..5 {
            apply_all(&mut decoder, &encoder.encode(source.next_frame()).unwrap());
        }
        let mut encoder = ScreenEncoder::new().unwrap();
        let frame = source.next_frame().clone();
        let key = encoder.encode(&frame).unwrap();
        assert_eq!(key.frame, 0);
        apply_all(&mut decoder, &key);
        assert!(decoder.canvas().unwrap() == &frame);
    }

    #[test]
    fn a_new_screen_size_comes_with_a_keyframe() {
        let mut encoder = ScreenEncoder::new().unwrap();
        let mut decoder = ScreenDecoder::new();
        for (w, h) in [(100, 50), (100, 50), (130, 40), (20, 300)] {
            let mut source = SyntheticScreen::new(Workload::Scrolling, size(w, h));
            let frame = source.next_frame();
            let encoded = encoder.encode(frame).unwrap();
            apply_all(&mut decoder, &encoded);
            assert!(decoder.canvas().unwrap() == frame);
        }
        // Deltas follow at the new size, and after going back to an old one.
        for (w, h) in [(130, 70), (100, 50), (130, 70)] {
            let mut source = SyntheticScreen::new(Workload::DraggingWindow, size(w, h));
            for n in 0..6 {
                let frame = source.next_frame();
                let encoded = encoder.encode(frame).unwrap();
                assert_eq!(encoded.keyframe, n == 0);
                apply_all(&mut decoder, &encoded);
                assert!(decoder.canvas().unwrap() == frame, "{w}×{h} frame {n}");
            }
        }
    }

    #[test]
    fn levels_outside_zstds_range_are_refused() {
        assert!(matches!(
            ScreenEncoder::with_level(1000),
            Err(EncodeError::Level { level: 1000, .. })
        ));
        assert!(ScreenEncoder::with_level(-1).is_ok());
    }

    // ---- Hand-made messages, for the refusals. ----

    fn header(
        flags: u8,
        sequence: u64,
        frame: u64,
        part: u16,
        w: u16,
        h: u16,
        count: u16,
    ) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION, flags];
        out.extend_from_slice(&sequence.to_le_bytes());
        out.extend_from_slice(&frame.to_le_bytes());
        out.extend_from_slice(&part.to_le_bytes());
        out.extend_from_slice(&w.to_le_bytes());
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        assert_eq!(out.len(), HEADER_LEN);
        out
    }

    fn entry(
        kind: u8,
        rect: (u16, u16, u8, u8),
        source: Option<(u16, u16)>,
        data: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&rect.0.to_le_bytes());
        out.extend_from_slice(&rect.1.to_le_bytes());
        out.push(rect.2);
        out.push(rect.3);
        if let Some((x, y)) = source {
            out.extend_from_slice(&x.to_le_bytes());
            out.extend_from_slice(&y.to_le_bytes());
        }
        if let Some(d) = data {
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            out.extend_from_slice(d);
        }
        out
    }

    fn zstd_of(bytes: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(bytes, 1).unwrap()
    }

    const KEY_LAST: u8 = FLAG_KEYFRAME | FLAG_LAST_PART;

    /// A one-part keyframe of a 16×8 screen in two 8×8 tiles.
    fn keyframe(sequence: u64, frame: u64) -> Vec<u8> {
        let mut m = header(KEY_LAST, sequence, frame, 0, 16, 8, 2);
        let left = zstd_of(&[0x11; 8 * 8 * 4]);
        let right = zstd_of(&[0x22; 8 * 8 * 4]);
        m.extend(entry(0, (0, 0, 8, 8), None, Some(&left)));
        m.extend(entry(0, (8, 0, 8, 8), None, Some(&right)));
        m
    }

    /// A decoder showing [`keyframe`]`(0, 0)`.
    fn decoder() -> ScreenDecoder {
        let mut d = ScreenDecoder::new();
        assert_eq!(
            d.apply(&keyframe(0, 0)),
            Ok(Applied::FrameComplete {
                frame: 0,
                keyframe: true
            })
        );
        d
    }

    /// A delta of one copy tile: the right half takes the left half.
    fn copy_delta(sequence: u64, frame: u64, part: u16, flags: u8) -> Vec<u8> {
        let mut m = header(flags, sequence, frame, part, 16, 8, 1);
        m.extend(entry(2, (8, 0, 8, 8), Some((0, 0)), None));
        m
    }

    /// Applies `message` to a fresh [`decoder`] and checks that it is refused
    /// with `expected` and leaves the canvas alone.
    fn refused(message: &[u8], expected: UpdateError) {
        let mut d = decoder();
        let before = d.canvas().unwrap().clone();
        assert_eq!(d.apply(message), Err(expected.clone()));
        assert!(d.needs_keyframe(), "{expected:?}");
        assert!(
            d.canvas().unwrap() == &before,
            "{expected:?} changed the canvas"
        );
        // A keyframe puts it right.
        assert!(matches!(
            d.apply(&keyframe(50, 50)),
            Ok(Applied::FrameComplete { .. })
        ));
        assert!(!d.needs_keyframe());
        // Every refusal tells a person what happened.
        assert!(!expected.to_string().is_empty());
    }

    #[test]
    fn hand_made_messages_apply() {
        let mut d = decoder();
        let canvas = d.canvas().unwrap();
        assert_eq!(canvas.pixel(0, 0), Some(Bgra([0x11; 4])));
        assert_eq!(canvas.pixel(15, 7), Some(Bgra([0x22; 4])));
        assert_eq!(
            d.apply(&copy_delta(1, 1, 0, FLAG_LAST_PART)),
            Ok(Applied::FrameComplete {
                frame: 1,
                keyframe: false
            })
        );
        assert_eq!(d.canvas().unwrap().pixel(15, 7), Some(Bgra([0x11; 4])));
        // An XOR tile: 0x11 ^ 0x33 = 0x22, referring to the left half.
        let mut m = header(FLAG_LAST_PART, 2, 2, 0, 16, 8, 1);
        m.extend(entry(
            1,
            (8, 4, 8, 4),
            Some((0, 0)),
            Some(&zstd_of(&[0x33; 8 * 4 * 4])),
        ));
        assert!(d.apply(&m).is_ok());
        assert_eq!(d.canvas().unwrap().pixel(15, 7), Some(Bgra([0x22; 4])));
        assert_eq!(d.canvas().unwrap().pixel(15, 3), Some(Bgra([0x11; 4])));
        // Two zstd frames back to back are one tile's data.
        let mut two = zstd_of(&[0x44; 8 * 2 * 4]);
        two.extend(zstd_of(&[0x55; 8 * 2 * 4]));
        let mut m = header(FLAG_LAST_PART, 3, 3, 0, 16, 8, 1);
        m.extend(entry(0, (0, 0, 8, 4), None, Some(&two)));
        assert!(d.apply(&m).is_ok());
        assert_eq!(d.canvas().unwrap().pixel(0, 0), Some(Bgra([0x44; 4])));
        assert_eq!(d.canvas().unwrap().pixel(0, 3), Some(Bgra([0x55; 4])));
    }

    #[test]
    fn a_frame_shows_only_when_its_last_part_arrives() {
        let mut d = decoder();
        assert_eq!(
            d.apply(&copy_delta(1, 1, 0, 0)),
            Ok(Applied::Partial { frame: 1 })
        );
        // Still the keyframe's picture.
        assert_eq!(d.canvas().unwrap().pixel(15, 7), Some(Bgra([0x22; 4])));
        assert_eq!(d.last_complete_frame(), Some(0));
        let mut m = header(FLAG_LAST_PART, 2, 1, 1, 16, 8, 0);
        m.truncate(HEADER_LEN);
        assert_eq!(
            d.apply(&m),
            Ok(Applied::FrameComplete {
                frame: 1,
                keyframe: false
            })
        );
        assert_eq!(d.canvas().unwrap().pixel(15, 7), Some(Bgra([0x11; 4])));
    }

    #[test]
    fn tiles_of_one_frame_refer_to_the_previous_frame() {
        // Tile 1 overwrites the left half; tile 2 copies the left half to the
        // right: it must get the previous frame's left half.
        let mut d = decoder();
        let mut m = header(FLAG_LAST_PART, 1, 1, 0, 16, 8, 2);
        m.extend(entry(
            0,
            (0, 0, 8, 8),
            None,
            Some(&zstd_of(&[0x77; 8 * 8 * 4])),
        ));
        m.extend(entry(2, (8, 0, 8, 8), Some((0, 0)), None));
        assert!(d.apply(&m).is_ok());
        assert_eq!(d.canvas().unwrap().pixel(0, 0), Some(Bgra([0x77; 4])));
        assert_eq!(d.canvas().unwrap().pixel(8, 0), Some(Bgra([0x11; 4])));
    }

    #[test]
    fn malformed_headers_are_refused() {
        refused(
            &vec![FORMAT_VERSION; MAX_UPDATE + 1],
            UpdateError::TooLarge {
                len: MAX_UPDATE + 1,
            },
        );
        refused(&[], UpdateError::Truncated { len: 0, needed: 1 });
        let mut m = copy_delta(1, 1, 0, FLAG_LAST_PART);
        m[0] = 2;
        refused(&m, UpdateError::UnsupportedVersion { got: 2 });
        m[0] = 0;
        refused(&m, UpdateError::UnsupportedVersion { got: 0 });
        let mut m = copy_delta(1, 1, 0, FLAG_LAST_PART | 4);
        refused(&m, UpdateError::UnknownFlags { flags: 6 });
        m = header(FLAG_LAST_PART, 1, 1, 0, 0, 8, 0);
        refused(
            &m,
            UpdateError::ScreenSize {
                width: 0,
                height: 8,
            },
        );
        m = header(FLAG_LAST_PART, 1, 1, 0, 16, 8193, 0);
        refused(
            &m,
            UpdateError::ScreenSize {
                width: 16,
                height: 8193,
            },
        );
        let mut m = copy_delta(1, 1, 0, FLAG_LAST_PART);
        m.push(0);
        refused(&m, UpdateError::Trailing { extra: 1 });
        // A tile count the message cannot hold.
        let mut m = copy_delta(1, 1, 0, FLAG_LAST_PART);
        m[TILE_COUNT_AT] = 2;
        refused(
            &m,
            UpdateError::Truncated {
                len: m.len(),
                needed: HEADER_LEN + 2 * MIN_ENTRY,
            },
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let mut full = header(FLAG_LAST_PART, 1, 1, 0, 16, 8, 2);
        full.extend(entry(
            1,
            (0, 0, 8, 8),
            Some((8, 0)),
            Some(&zstd_of(&[1; 256])),
        ));
        full.extend(entry(2, (8, 0, 8, 8), Some((0, 0)), None));
        assert!(decoder().apply(&full).is_ok());
        for len in 0..full.len() {
            let mut d = decoder();
            assert!(
                matches!(d.apply(&full[..len]), Err(UpdateError::Truncated { .. })),
                "{len}: {:?}",
                d.apply(&full[..len])
            );
        }
    }

    #[test]
    fn malformed_tiles_are_refused() {
        let tile = |kind: u8, rect, source, data: Option<&[u8]>| {
            let mut m = header(FLAG_LAST_PART, 1, 1, 0, 16, 8, 1);
            m.extend(entry(kind, rect, source, data));
            m
        };
        let data = zstd_of(&[0; 8 * 8 * 4]);
        refused(
            &tile(4, (0, 0, 8, 8), Some((0, 0)), Some(&data)),
            UpdateError::UnknownTileKind { kind: 4 },
        );
        refused(
            &tile(0, (0, 0, 0, 8), None, Some(&data)),
            UpdateError::TileSize {
                width: 0,
                height: 8,
            },
        );
        refused(
            &tile(0, (0, 0, 8, 0), None, Some(&data)),
            UpdateError::TileSize {
                width: 8,
                height: 0,
            },
        );
        refused(
            &tile(0, (0, 0, 65, 1), None, Some(&data)),
            UpdateError::TileSize {
                width: 65,
                height: 1,
            },
        );
        let screen = size(16, 8);
        refused(
            &tile(0, (9, 0, 8, 8), None, Some(&data)),
            UpdateError::TileOutsideScreen {
                rect: Rect::new(9, 0, 8, 8),
                screen,
            },
        );
        refused(
            &tile(0, (0, 1, 8, 8), None, Some(&data)),
            UpdateError::TileOutsideScreen {
                rect: Rect::new(0, 1, 8, 8),
                screen,
            },
        );
        refused(
            &tile(0, (65535, 0, 8, 8), None, Some(&data)),
            UpdateError::TileOutsideScreen {
                rect: Rect::new(65535, 0, 8, 8),
                screen,
            },
        );
        refused(
            &tile(2, (0, 0, 8, 8), Some((9, 0)), None),
            UpdateError::SourceOutsideScreen {
                rect: Rect::new(9, 0, 8, 8),
                screen,
            },
        );
        refused(
            &tile(1, (0, 0, 8, 8), Some((0, 1)), Some(&data)),
            UpdateError::SourceOutsideScreen {
                rect: Rect::new(0, 1, 8, 8),
                screen,
            },
        );
        // A keyframe refers to nothing.
        let mut m = header(KEY_LAST, 1, 1, 0, 16, 8, 1);
        m.extend(entry(2, (0, 0, 8, 8), Some((8, 0)), None));
        refused(&m, UpdateError::ReferenceInKeyframe);
        let mut m = header(KEY_LAST, 1, 1, 0, 16, 8, 1);
        m.extend(entry(1, (0, 0, 8, 8), Some((8, 0)), Some(&data)));
        refused(&m, UpdateError::ReferenceInKeyframe);
        // A length that runs past the end.
        let mut m = tile(0, (0, 0, 8, 8), None, Some(&data));
        let len_at = HEADER_LEN + 7;
        m[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        refused(
            &m,
            UpdateError::Truncated {
                len: m.len(),
                needed: len_at + 4 + u32::MAX as usize,
            },
        );
    }

    #[test]
    fn tile_data_must_decompress_to_exactly_the_tile() {
        let rect = Rect::new(0, 0, 8, 8);
        let with = |data: &[u8]| {
            let mut m = header(FLAG_LAST_PART, 1, 1, 0, 16, 8, 1);
            m.extend(entry(0, (0, 0, 8, 8), None, Some(data)));
            m
        };
        refused(
            &with(&zstd_of(&[0; 8 * 8 * 4 - 1])),
            UpdateError::DecompressedSize {
                rect,
                expected: 256,
                got: Some(255),
            },
        );
        refused(
            &with(&zstd_of(&[0; 8 * 8 * 4 + 1])),
            UpdateError::DecompressedSize {
                rect,
                expected: 256,
                got: None,
            },
        );
        // A small payload that would expand to 64 MiB stops at the tile's size.
        let bomb = zstd_of(&vec![0; 64 << 20]);
        assert!(bomb.len() < 4096);
        refused(
            &with(&bomb),
            UpdateError::DecompressedSize {
                rect,
                expected: 256,
                got: None,
            },
        );
        refused(
            &with(&[]),
            UpdateError::DecompressedSize {
                rect,
                expected: 256,
                got: Some(0),
            },
        );
        for garbage in [&[0u8; 16][..], &zstd_of(&[0; 256])[..10]] {
            let mut d = decoder();
            assert!(
                matches!(d.apply(&with(garbage)), Err(UpdateError::Corrupt { rect: r, .. }) if r == rect)
            );
        }
        // A frame with a checksum that does not match.
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        let mut sum = c.compress(&[7; 256]).unwrap();
        let last = sum.len() - 1;
        sum[last] ^= 1;
        assert!(matches!(
            decoder().apply(&with(&sum)),
            Err(UpdateError::Corrupt { .. })
        ));
    }

    #[test]
    fn out_of_order_messages_are_refused() {
        let size16 = size(16, 8);
        // A gap.
        refused(
            &copy_delta(3, 1, 0, FLAG_LAST_PART),
            UpdateError::NeedKeyframe {
                expected: 1,
                got: 3,
            },
        );
        // A repeat.
        refused(
            &copy_delta(0, 1, 0, FLAG_LAST_PART),
            UpdateError::SequenceWentBack {
                expected: 1,
                got: 0,
            },
        );
        // A frame number that does not go up.
        refused(
            &copy_delta(1, 0, 0, FLAG_LAST_PART),
            UpdateError::FrameWentBack { last: 0, got: 0 },
        );
        // A frame that starts with part 1.
        refused(
            &copy_delta(1, 1, 1, FLAG_LAST_PART),
            UpdateError::UnexpectedPart {
                frame: 1,
                part: 1,
                expected_frame: 1,
                expected_part: 0,
            },
        );
        // A delta for another screen size.
        let mut m = header(FLAG_LAST_PART, 1, 1, 0, 16, 9, 0);
        m.truncate(HEADER_LEN);
        refused(
            &m,
            UpdateError::SizeChangeWithoutKeyframe {
                from: size16,
                to: size(16, 9),
            },
        );
        // Mid-frame: another frame, a skipped part, a changed size or flag.
        let mid = |second: &[u8], expected: UpdateError| {
            let mut d = decoder();
            assert_eq!(
                d.apply(&copy_delta(1, 1, 0, 0)),
                Ok(Applied::Partial { frame: 1 })
            );
            assert_eq!(d.apply(second), Err(expected));
            assert!(d.needs_keyframe());
            assert_eq!(d.canvas().unwrap().pixel(15, 7), Some(Bgra([0x22; 4])));
        };
        mid(
            &copy_delta(2, 2, 0, FLAG_LAST_PART),
            UpdateError::UnexpectedPart {
                frame: 2,
                part: 0,
                expected_frame: 1,
                expected_part: 1,
            },
        );
        mid(
            &copy_delta(2, 1, 2, FLAG_LAST_PART),
            UpdateError::UnexpectedPart {
                frame: 1,
                part: 2,
                expected_frame: 1,
                expected_part: 1,
            },
        );
        let mut m = header(FLAG_LAST_PART, 2, 1, 1, 17, 8, 0);
        m.truncate(HEADER_LEN);
        mid(&m, UpdateError::InconsistentPart { frame: 1, part: 1 });
        let mut m = header(KEY_LAST, 2, 1, 1, 16, 8, 0);
        m.truncate(HEADER_LEN);
        mid(&m, UpdateError::InconsistentPart { frame: 1, part: 1 });
    }

    #[test]
    fn a_keyframe_that_does_not_cover_the_screen_leaves_black() {
        let mut d = decoder();
        let mut m = header(KEY_LAST, 1, 1, 0, 16, 8, 1);
        m.extend(entry(0, (0, 0, 8, 8), None, Some(&zstd_of(&[0x66; 256]))));
        assert!(d.apply(&m).is_ok());
        assert_eq!(d.canvas().unwrap().pixel(0, 0), Some(Bgra([0x66; 4])));
        assert_eq!(d.canvas().unwrap().pixel(15, 0), Some(Bgra([0; 4])));
    }

    // ---- Property tests. ----

    /// A change to the screen between two frames.
    #[derive(Debug, Clone)]
    enum Change {
        Fill(Rect, [u8; 4]),
        Noise(Rect, u64),
        /// Moves the rows of a band up or down.
        Shift {
            x: u32,
            width: u32,
            y: u32,
            height: u32,
            dy: i32,
        },
    }

    fn rect_in(w: u32, h: u32) -> impl Strategy<Value = Rect> {
        (0..w, 0..h, 1..=w, 1..=h)
            .prop_map(move |(x, y, rw, rh)| Rect::new(x, y, rw.min(w - x), rh.min(h - y)))
    }

    fn change(w: u32, h: u32) -> impl Strategy<Value = Change> {
        prop_oneof![
            (rect_in(w, h), any::<[u8; 4]>()).prop_map(|(r, c)| Change::Fill(r, c)),
            (rect_in(w, h), any::<u64>()).prop_map(|(r, s)| Change::Noise(r, s)),
            (rect_in(w, h), -40i32..40).prop_map(|(r, dy)| Change::Shift {
                x: r.x,
                width: r.width,
                y: r.y,
                height: r.height,
                dy
            }),
        ]
    }

    fn noise(frame: &mut Frame, rect: Rect, mut seed: u64) {
        for y in rect.y..rect.bottom() {
            if let Some(span) = frame.row_span_mut(rect.x, y, rect.width) {
                for b in span {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    *b = (seed >> 56) as u8;
                }
            }
        }
    }

    fn apply_change(frame: &mut Frame, change: &Change) {
        match *change {
            Change::Fill(r, c) => frame.fill_rect(r, Bgra(c)),
            Change::Noise(r, s) => noise(frame, r, s),
            Change::Shift {
                x,
                width,
                y,
                height,
                dy,
            } => {
                let before = frame.clone();
                for row in y..y + height {
                    let from = i64::from(row) - i64::from(dy);
                    if from < 0 || from >= i64::from(frame.height()) {
                        continue;
                    }
                    let src = before.row_span(x, from as u32, width).unwrap().to_vec();
                    frame
                        .row_span_mut(x, row, width)
                        .unwrap()
                        .copy_from_slice(&src);
                }
            }
        }
    }

    fn scenario() -> impl Strategy<Value = (u32, u32, u64, Vec<(Vec<Change>, bool)>)> {
        (1u32..=150, 1u32..=150).prop_flat_map(|(w, h)| {
            (
                Just(w),
                Just(h),
                any::<u64>(),
                prop::collection::vec(
                    (
                        prop::collection::vec(change(w, h), 0..4),
                        prop::bool::weighted(0.1),
                    ),
                    1..8,
                ),
            )
        })
    }

    /// A tile of a hand-made delta: where, which kind, the source corner
    /// (clamped onto the screen), a noise seed for its data.
    type AnyTile = (Rect, u8, (u32, u32), u64);

    /// A tile rectangle: mostly a run of rows of a grid tile (what the
    /// encoder sends), sometimes anywhere.
    fn tile_rect(w: u32, h: u32) -> impl Strategy<Value = Rect> {
        prop_oneof![
            3 => (0..w.div_ceil(TILE_SIZE), 0..h, 1..=TILE_SIZE).prop_map(move |(c, y, rh)| {
                let x = c * TILE_SIZE;
                let tile_bottom = ((y / TILE_SIZE + 1) * TILE_SIZE).min(h);
                Rect::new(x, y, TILE_SIZE.min(w - x), rh.min(tile_bottom - y))
            }),
            1 => (0..w, 0..h, 1..=TILE_SIZE, 1..=TILE_SIZE)
                .prop_map(move |(x, y, rw, rh)| Rect::new(x, y, rw.min(w - x), rh.min(h - y))),
        ]
    }

    /// Frames of hand-made tiles on a 150×70 screen (three tile columns, the
    /// last narrow), each frame in one or two parts.
    fn hand_made_frames() -> impl Strategy<Value = Vec<(Vec<AnyTile>, bool)>> {
        let tile = (
            tile_rect(150, 70),
            0u8..3,
            (0u32..150, 0u32..70),
            any::<u64>(),
        );
        prop::collection::vec((prop::collection::vec(tile, 0..8), any::<bool>()), 1..10)
    }

    /// Noise bytes for a tile of `rect`.
    fn noise_bytes(rect: Rect, mut seed: u64) -> Vec<u8> {
        (0..rect.width * rect.height * 4)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn any_tiles_decode_like_a_fresh_copy_of_the_canvas(frames in hand_made_frames()) {
            // A model decoder: each frame applied to a copy of the last.
            let screen = size(150, 70);
            let mut model = Frame::filled(screen, Bgra::default());
            noise(&mut model, screen.rect(), 1);
            let mut key = header(KEY_LAST, 0, 0, 0, 150, 70, 0);
            let tiles = grid(screen);
            set_tile_count(&mut key, tiles.len() as u16);
            for r in tiles {
                let data = zstd_of(&model.read_rect(r).unwrap());
                let rect = (r.x as u16, r.y as u16, r.width as u8, r.height as u8);
                key.extend(entry(0, rect, None, Some(&data)));
            }
            let mut decoder = ScreenDecoder::new();
            prop_assert!(decoder.apply(&key).is_ok());
            prop_assert!(decoder.canvas().unwrap() == &model);
            let mut sequence = 1;
            for (number, (tiles, two_parts)) in (1u64..).zip(frames) {
                let previous = model.clone();
                let split = if two_parts { tiles.len() / 2 } else { tiles.len() };
                let mut parts = vec![tiles.get(..split).unwrap(), tiles.get(split..).unwrap()];
                if !two_parts {
                    parts.pop();
                }
                let last = parts.len() - 1;
                for (part, list) in parts.into_iter().enumerate() {
                    let flags = if part == last { FLAG_LAST_PART } else { 0 };
                    let mut m = header(flags, sequence, number, part as u16, 150, 70, list.len() as u16);
                    sequence += 1;
                    for &(rect, kind, (sx, sy), seed) in list {
                        let (sx, sy) = (sx.min(150 - rect.width), sy.min(70 - rect.height));
                        let data = noise_bytes(rect, seed);
                        let source = previous.read_rect(Rect::new(sx, sy, rect.width, rect.height)).unwrap();
                        let (pixels, from, zstd) = match kind {
                            0 => (data.clone(), None, Some(zstd_of(&data))),
                            1 => (
                                source.iter().zip(&data).map(|(s, d)| s ^ d).collect(),
                                Some((sx as u16, sy as u16)),
                                Some(zstd_of(&data)),
                            ),
                            _ => (source, Some((sx as u16, sy as u16)), None),
                        };
                        for (row, bytes) in (rect.y..).zip(pixels.chunks(rect.width as usize * 4)) {
                            model.row_span_mut(rect.x, row, rect.width).unwrap().copy_from_slice(bytes);
                        }
                        let at = (rect.x as u16, rect.y as u16, rect.width as u8, rect.height as u8);
                        m.extend(entry(kind, at, from, zstd.as_deref()));
                    }
                    prop_assert!(decoder.apply(&m).is_ok());
                }
                prop_assert!(decoder.canvas().unwrap() == &model, "frame {}", number);
            }
        }


        #[test]
        fn random_changes_round_trip((w, h, seed, steps) in scenario()) {
            let screen = size(w, h);
            let mut frame = Frame::filled(screen, Bgra::rgb(0x20, 0x40, 0x60));
            noise(&mut frame, Rect::new(0, 0, w, h / 2), seed);
            let mut encoder = ScreenEncoder::new().unwrap();
            let mut decoder = ScreenDecoder::new();
            apply_all(&mut decoder, &encoder.encode(&frame).unwrap());
            prop_assert!(decoder.canvas().unwrap() == &frame);
            for (changes, keyframe) in steps {
                for c in &changes {
                    apply_change(&mut frame, c);
                }
                if keyframe {
                    encoder.request_keyframe();
                }
                let encoded = encoder.encode(&frame).unwrap();
                prop_assert_eq!(encoded.keyframe, keyframe);
                for m in &encoded.messages {
                    prop_assert!(m.len() <= MAX_UPDATE);
                }
                apply_all(&mut decoder, &encoded);
                prop_assert!(decoder.canvas().unwrap() == &frame);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut d = decoder();
            let _ = d.apply(&bytes);
            prop_assert_eq!(d.canvas().unwrap().size(), size(16, 8));
        }

        #[test]
        fn mutated_messages_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
        ) {
            let mut m = header(FLAG_LAST_PART, 1, 1, 0, 16, 8, 2);
            m.extend(entry(1, (0, 0, 8, 8), Some((8, 0)), Some(&zstd_of(&[3; 256]))));
            m.extend(entry(2, (8, 0, 8, 8), Some((0, 0)), None));
            for (at, value) in flips {
                let i = at.index(m.len());
                m[i] = value;
            }
            let mut d = decoder();
            if d.apply(&m).is_err() {
                prop_assert!(d.needs_keyframe());
                prop_assert_eq!(d.canvas().unwrap().pixel(15, 7), Some(Bgra([0x22; 4])));
            }
        }
    }
}

#[cfg(test)]
mod video_tests {
    use super::*;
    use crate::frame::Bgra;
    use crate::synthetic::{SyntheticScreen, Workload};
    use crate::video::{luma_psnr, psnr, DEFAULT_BITRATE, END_AFTER};
    use proptest::prelude::*;

    fn size(w: u32, h: u32) -> ScreenSize {
        ScreenSize::new(w, h).unwrap()
    }

    /// The video items of an encoded frame: rectangle, IDR, continued, bytes.
    fn videos(encoded: &EncodedFrame) -> Vec<(Rect, bool, bool, usize)> {
        encoded
            .messages
            .iter()
            .flat_map(|m| UpdateMessage::parse(m).unwrap().tiles)
            .filter_map(|t| match t.data {
                TileData::Video {
                    idr,
                    continued,
                    data,
                } => Some((t.rect, idr, continued, data.len())),
                _ => None,
            })
            .collect()
    }

    fn apply_all(decoder: &mut ScreenDecoder, encoded: &EncodedFrame) {
        for m in &encoded.messages {
            decoder.apply(m).unwrap();
        }
    }

    /// Whether `a` and `b` are equal outside `region`.
    fn equal_outside(a: &Frame, b: &Frame, region: Rect) -> bool {
        (0..a.height()).all(|y| {
            if (region.y..region.bottom()).contains(&y) {
                let right = a.width() - region.right();
                a.row_span(0, y, region.x) == b.row_span(0, y, region.x)
                    && a.row_span(region.right(), y, right) == b.row_span(region.right(), y, right)
            } else {
                a.row_span(0, y, a.width()) == b.row_span(0, y, b.width())
            }
        })
    }

    #[test]
    fn a_playing_video_is_sent_as_h264_at_a_fraction_of_the_lossless_bytes() {
        let screen = size(1280, 720);
        let mut source = SyntheticScreen::new(Workload::Video, screen);
        let mut lossless = ScreenEncoder::new().unwrap();
        let mut encoder = ScreenEncoder::with_video(DEFAULT_BITRATE).unwrap();
        let mut decoder = ScreenDecoder::new();
        let (mut ours, mut theirs, mut measured) = (0usize, 0usize, 0usize);
        let mut start = None;
        for n in 0..90u64 {
            let frame = source.next_frame().clone();
            let encoded = encoder.encode(&frame).unwrap();
            let exact = lossless.encode(&frame).unwrap();
            apply_all(&mut decoder, &encoded);
            let canvas = decoder.canvas().unwrap();
            let Some(region) = encoder.video_region() else {
                assert!(videos(&encoded).is_empty());
                assert!(canvas == &frame, "frame {n} without a region is not exact");
                continue;
            };
            let start = *start.get_or_insert(n);
            // The video (640×360 at (320, 192)) on whole tiles.
            assert_eq!(region, Rect::new(320, 192, 640, 384));
            assert!(equal_outside(canvas, &frame, region), "frame {n}");
            let items = videos(&encoded);
            assert_eq!(items.len(), 1, "frame {n}");
            assert_eq!(items[0].1, n == start, "IDR only first, frame {n}");
            // No tile inside the region.
            for m in &encoded.messages {
                for t in UpdateMessage::parse(m).unwrap().tiles {
                    if !matches!(t.data, TileData::Video { .. }) {
                        assert!(t.rect.intersect(region).is_empty(), "{t:?}");
                    }
                }
            }
            if n >= start + 10 {
                // Measured at 4 Mbit/s: luma 34 to 40 dB, RGB 22 to 26 dB.
                // RGB stays near 25 dB even with no compression at all: the
                // synthetic red and blue wrap from 255 to 0 along moving
                // lines, which 4:2:0 chroma (2×2 pixels share a colour)
                // smears; luma keeps full resolution.
                let luma = luma_psnr(&frame, canvas, region).unwrap();
                let rgb = psnr(&frame, canvas, region).unwrap();
                assert!(luma > 30.0, "frame {n}: luma {luma:.1} dB, RGB {rgb:.1} dB");
                assert!(rgb > 20.0, "frame {n}: luma {luma:.1} dB, RGB {rgb:.1} dB");
                ours += encoded.total_bytes();
                theirs += exact.total_bytes();
                measured += 1;
            }
        }
        assert!(start.is_some_and(|s| s <= 20), "{start:?}");
        assert!(measured > 50);
        // Lossless is about 250 KB a frame here; H.264 at 4 Mbit/s and 60
        // frames a second about 8 KB.
        assert!(ours * 15 < theirs, "{ours} vs {theirs} lossless");
    }

    #[test]
    fn the_canvas_becomes_exact_again_after_the_video_stops() {
        let screen = size(640, 400);
        let mut source = SyntheticScreen::new(Workload::Video, screen);
        let mut encoder = ScreenEncoder::with_video(DEFAULT_BITRATE).unwrap();
        let mut decoder = ScreenDecoder::new();
        for _ in 0..40 {
            apply_all(&mut decoder, &encoder.encode(source.next_frame()).unwrap());
        }
        let region = encoder.video_region().expect("a region");
        let still = source.frame().clone();
        assert!(decoder.canvas().unwrap() != &still, "lossy while it plays");
        // Paused: the same picture, frame after frame.
        let mut ended = None;
        for n in 0..END_AFTER + 5 {
            let encoded = encoder.encode(&still).unwrap();
            apply_all(&mut decoder, &encoded);
            if encoder.video_region().is_none() && ended.is_none() {
                ended = Some(n);
                assert!(videos(&encoded).is_empty());
            }
            let canvas = decoder.canvas().unwrap();
            assert!(equal_outside(canvas, &still, region));
        }
        assert!(ended.is_some_and(|n| n <= END_AFTER + 1), "{ended:?}");
        assert!(
            decoder.canvas().unwrap() == &still,
            "not exact after the video stopped"
        );
    }

    #[test]
    fn a_keyframe_request_starts_the_video_afresh_with_an_idr_picture() {
        let screen = size(640, 400);
        let mut source = SyntheticScreen::new(Workload::Video, screen);
        let mut encoder = ScreenEncoder::with_video(DEFAULT_BITRATE).unwrap();
        let mut early = ScreenDecoder::new();
        for _ in 0..30 {
            apply_all(&mut early, &encoder.encode(source.next_frame()).unwrap());
        }
        assert!(encoder.video_region().is_some());
        encoder.request_keyframe();
        let key = encoder.encode(source.next_frame()).unwrap();
        assert!(key.keyframe);
        let items = videos(&key);
        assert_eq!(items.len(), 1);
        assert!(items[0].1, "a keyframe's picture is IDR");
        // A viewer that joins now sees what the one there all along sees.
        let mut late = ScreenDecoder::new();
        apply_all(&mut early, &key);
        apply_all(&mut late, &key);
        assert!(late.canvas().unwrap() == early.canvas().unwrap());
        for _ in 0..5 {
            let delta = encoder.encode(source.next_frame()).unwrap();
            assert!(videos(&delta).iter().all(|v| !v.1));
            apply_all(&mut early, &delta);
            apply_all(&mut late, &delta);
            assert!(late.canvas().unwrap() == early.canvas().unwrap());
        }
        // A much lower bitrate starts a new stream too.
        encoder.set_video_bitrate(Some(DEFAULT_BITRATE / 4));
        let delta = encoder.encode(source.next_frame()).unwrap();
        assert!(!delta.keyframe);
        let items = videos(&delta);
        assert!(!items.is_empty() && items.iter().all(|v| v.1), "{items:?}");
        apply_all(&mut late, &delta);
        // Video off: the region is put right with tiles at once.
        encoder.set_video_bitrate(None);
        let frame = source.next_frame().clone();
        let delta = encoder.encode(&frame).unwrap();
        assert!(videos(&delta).is_empty());
        apply_all(&mut late, &delta);
        assert!(late.canvas().unwrap() == &frame);
    }

    #[test]
    fn a_picture_larger_than_a_message_is_sent_in_pieces() {
        // Noise over the whole screen at the highest bitrate: the IDR
        // picture is larger than one message.
        let screen = size(1280, 720);
        let mut encoder = ScreenEncoder::with_video(video::MAX_BITRATE).unwrap();
        let (mut early, mut late) = (ScreenDecoder::new(), ScreenDecoder::new());
        let mut pieces = 0;
        for n in 0..24u64 {
            let mut frame = Frame::filled(screen, Bgra::default());
            let mut seed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for b in frame.as_bytes_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            if n == 20 {
                encoder.request_keyframe();
            }
            let encoded = encoder.encode(&frame).unwrap();
            for m in &encoded.messages {
                assert!(m.len() <= MAX_UPDATE);
            }
            let items = videos(&encoded);
            if items.len() > 1 {
                pieces += 1;
                let (last, rest) = items.split_last().unwrap();
                assert!(rest.iter().all(|v| v.2 && v.0 == last.0 && v.1 == last.1));
                assert!(!last.2);
                assert!(encoded.messages.len() >= 2);
            }
            apply_all(&mut early, &encoded);
            if n >= 20 {
                apply_all(&mut late, &encoded);
                assert!(late.canvas().unwrap() == early.canvas().unwrap());
            }
            if encoder.video_region().is_none() {
                assert!(early.canvas().unwrap() == &frame);
            }
        }
        assert!(encoder.video_region() == Some(screen.rect()));
        assert!(pieces >= 2, "{pieces} pictures in pieces");
    }

    #[test]
    fn typing_scrolling_and_dragging_never_make_a_video_region() {
        for screen in [size(1920, 1080), size(640, 400)] {
            for workload in [
                Workload::Typing,
                Workload::Scrolling,
                Workload::DraggingWindow,
            ] {
                let mut source = SyntheticScreen::new(workload, screen);
                let mut encoder = ScreenEncoder::with_video(DEFAULT_BITRATE).unwrap();
                let mut decoder = ScreenDecoder::new();
                for n in 0..300 {
                    let frame = source.next_frame();
                    let encoded = encoder.encode(frame).unwrap();
                    assert!(
                        videos(&encoded).is_empty() && encoder.video_region().is_none(),
                        "{workload:?} {screen} frame {n}"
                    );
                    apply_all(&mut decoder, &encoded);
                    assert!(decoder.canvas().unwrap() == frame);
                }
            }
        }
    }

    // ---- Hand-made video items, for the refusals. ----

    /// A 128×64 screen: two 64×64 tiles.
    const W: u16 = 128;
    const H: u16 = 64;

    fn header(flags: u8, sequence: u64, frame: u64, part: u16, count: u16) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION, flags];
        out.extend_from_slice(&sequence.to_le_bytes());
        out.extend_from_slice(&frame.to_le_bytes());
        out.extend_from_slice(&part.to_le_bytes());
        out.extend_from_slice(&W.to_le_bytes());
        out.extend_from_slice(&H.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out
    }

    fn item(rect: (u16, u16, u16, u16), flags: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![KIND_VIDEO];
        for v in [rect.0, rect.1, rect.2, rect.3] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(flags);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn raw_tile(x: u16, value: u8) -> Vec<u8> {
        let data = zstd::bulk::compress(&[value; 64 * 64 * 4], 1).unwrap();
        let mut out = vec![KIND_RAW];
        out.extend_from_slice(&x.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.push(64);
        out.push(64);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn message(flags: u8, sequence: u64, frame: u64, part: u16, items: &[Vec<u8>]) -> Vec<u8> {
        let mut m = header(flags, sequence, frame, part, items.len() as u16);
        for i in items {
            m.extend_from_slice(i);
        }
        m
    }

    const KEY_LAST: u8 = FLAG_KEYFRAME | FLAG_LAST_PART;
    const LEFT: (u16, u16, u16, u16) = (0, 0, 64, 64);
    const RIGHT: (u16, u16, u16, u16) = (64, 0, 64, 64);

    /// H.264 of three pictures of the left tile (an IDR and two P), and
    /// what the encoder decoded them to.
    fn pictures() -> Vec<(Vec<u8>, bool, Frame)> {
        let screen = size(u32::from(W), u32::from(H));
        let rect = Rect::new(0, 0, 64, 64);
        let mut encoder = VideoEncoder::new(rect, 2_000_000).unwrap();
        let mut out = Vec::new();
        for n in 0..3u64 {
            let mut frame = Frame::filled(screen, Bgra::rgb(10, 20, 30));
            for y in 0..64 {
                for (x, px) in frame
                    .row_span_mut(0, y, 64)
                    .unwrap()
                    .chunks_exact_mut(4)
                    .enumerate()
                {
                    px.copy_from_slice(&[(x as u64 * 3 + n * 7) as u8, y as u8 * 2, 90, 255]);
                }
            }
            let mut decoded = Frame::filled(screen, Bgra::default());
            let picture = encoder
                .encode(&frame, n * 16, false, &mut decoded)
                .unwrap()
                .unwrap();
            out.push((encoder.data().to_vec(), picture.idr, decoded));
        }
        out
    }

    /// A decoder showing a keyframe of two grey tiles.
    fn decoder() -> ScreenDecoder {
        let mut d = ScreenDecoder::new();
        d.apply(&message(
            KEY_LAST,
            0,
            0,
            0,
            &[raw_tile(0, 0x40), raw_tile(64, 0x80)],
        ))
        .unwrap();
        d
    }

    /// Applies `messages` to a fresh [`decoder`]; the last must be refused
    /// with `expected`, leaving the canvas alone and waiting for a keyframe.
    fn refused(messages: &[Vec<u8>], expected: UpdateError) {
        let mut d = decoder();
        let (last, before) = messages.split_last().unwrap();
        for m in before {
            d.apply(m).unwrap();
        }
        let canvas = d.canvas().unwrap().clone();
        assert_eq!(d.apply(last), Err(expected.clone()));
        assert!(d.needs_keyframe(), "{expected:?}");
        assert!(
            d.canvas().unwrap() == &canvas,
            "{expected:?} changed the canvas"
        );
        assert!(!expected.to_string().is_empty());
        // A keyframe puts it right, and a video stream starts afresh.
        let (idr, ..) = &pictures()[0];
        let key = message(
            KEY_LAST,
            90,
            90,
            0,
            &[item(LEFT, VIDEO_IDR, idr), raw_tile(64, 1)],
        );
        assert!(matches!(d.apply(&key), Ok(Applied::FrameComplete { .. })));
    }

    fn is_corrupt(r: Result<Applied, UpdateError>) -> bool {
        matches!(r, Err(UpdateError::VideoCorrupt { .. }))
    }

    #[test]
    fn hand_made_video_items_apply_like_the_encoder_decoded_them() {
        let pictures = pictures();
        assert!(pictures[0].1 && !pictures[1].1 && !pictures[2].1);
        let mut d = decoder();
        for (n, (data, idr, decoded)) in (1u64..).zip(&pictures) {
            let flags = if *idr { VIDEO_IDR } else { 0 };
            let m = message(FLAG_LAST_PART, n, n, 0, &[item(LEFT, flags, data)]);
            assert!(d.apply(&m).is_ok());
            let canvas = d.canvas().unwrap();
            assert_eq!(
                canvas.read_rect(Rect::new(0, 0, 64, 64)),
                decoded.read_rect(Rect::new(0, 0, 64, 64))
            );
            assert_eq!(canvas.pixel(100, 10), Some(Bgra([0x80; 4])));
        }
        // The same pictures cut into pieces, across two parts.
        let mut d = decoder();
        let (idr, _, decoded) = &pictures[0];
        let third = idr.len() / 3;
        let (a, rest) = idr.split_at(third);
        let (b, c) = rest.split_at(third);
        let both = VIDEO_IDR | VIDEO_CONTINUED;
        assert!(d
            .apply(&message(
                0,
                1,
                1,
                0,
                &[item(LEFT, both, a), item(LEFT, both, b)]
            ))
            .is_ok());
        assert!(d
            .apply(&message(
                FLAG_LAST_PART,
                2,
                1,
                1,
                &[item(LEFT, VIDEO_IDR, c), raw_tile(64, 7)]
            ))
            .is_ok());
        assert_eq!(
            d.canvas().unwrap().read_rect(Rect::new(0, 0, 64, 64)),
            decoded.read_rect(Rect::new(0, 0, 64, 64))
        );
        assert_eq!(d.canvas().unwrap().pixel(100, 10), Some(Bgra([7; 4])));
    }

    #[test]
    fn hostile_video_items_are_refused_with_typed_errors() {
        let pictures = pictures();
        let (idr, p) = (&pictures[0].0, &pictures[1].0);
        let delta = |n: u64, items: &[Vec<u8>]| message(FLAG_LAST_PART, n, n, 0, items);
        let left = Rect::new(0, 0, 64, 64);
        // A non-IDR picture with no stream.
        refused(
            &[delta(1, &[item(LEFT, 0, p)])],
            UpdateError::VideoWithoutStream { rect: left },
        );
        // In a keyframe, video must be IDR.
        refused(
            &[message(KEY_LAST, 1, 1, 0, &[item(LEFT, 0, p)])],
            UpdateError::ReferenceInKeyframe,
        );
        // Another rectangle without an IDR picture.
        refused(
            &[
                delta(1, &[item(LEFT, VIDEO_IDR, idr)]),
                delta(2, &[item(RIGHT, 0, p)]),
            ],
            UpdateError::VideoRectChanged {
                from: left,
                to: Rect::new(64, 0, 64, 64),
            },
        );
        // Sizes: odd, too small, off the screen.
        refused(
            &[delta(1, &[item((0, 0, 63, 64), VIDEO_IDR, idr)])],
            UpdateError::VideoSize {
                rect: Rect::new(0, 0, 63, 64),
            },
        );
        refused(
            &[delta(1, &[item((0, 0, 8, 64), VIDEO_IDR, idr)])],
            UpdateError::VideoSize {
                rect: Rect::new(0, 0, 8, 64),
            },
        );
        refused(
            &[delta(1, &[item((96, 0, 64, 64), VIDEO_IDR, idr)])],
            UpdateError::TileOutsideScreen {
                rect: Rect::new(96, 0, 64, 64),
                screen: size(128, 64),
            },
        );
        // A picture that is not the rectangle's size.
        refused(
            &[delta(1, &[item((0, 0, 64, 32), VIDEO_IDR, idr)])],
            UpdateError::VideoPictureSize {
                rect: Rect::new(0, 0, 64, 32),
                width: 64,
                height: 64,
            },
        );
        // Unknown flags; data longer than a picture may be.
        refused(
            &[delta(1, &[item(LEFT, 4 | VIDEO_IDR, idr)])],
            UpdateError::UnknownVideoFlags { flags: 5 },
        );
        let huge = vec![0u8; video::max_picture_bytes(Rect::new(0, 0, 16, 16)) + 1];
        refused(
            &[delta(1, &[item((0, 0, 16, 16), VIDEO_IDR, &huge)])],
            UpdateError::VideoTooLarge {
                rect: Rect::new(0, 0, 16, 16),
                len: huge.len(),
                max: huge.len() - 1,
            },
        );
        // Cut short: the length runs past the message.
        let mut cut = delta(1, &[item(LEFT, VIDEO_IDR, idr)]);
        cut.truncate(cut.len() - 10);
        let len = cut.len();
        refused(
            &[cut],
            UpdateError::Truncated {
                len,
                needed: len + 10,
            },
        );
        // A continued picture that is not continued.
        let more = VIDEO_IDR | VIDEO_CONTINUED;
        refused(
            &[delta(1, &[item(LEFT, more, idr)])],
            UpdateError::VideoUnfinished,
        );
        refused(
            &[delta(1, &[item(LEFT, more, idr), raw_tile(64, 3)])],
            UpdateError::VideoUnfinished,
        );
        refused(
            &[delta(1, &[item(LEFT, more, idr), item(LEFT, 0, p)])],
            UpdateError::VideoUnfinished,
        );
        // Two pictures in a frame.
        refused(
            &[delta(1, &[item(LEFT, VIDEO_IDR, idr), item(LEFT, 0, p)])],
            UpdateError::ExtraVideoPicture,
        );
        // Garbage, truncated and flipped H.264 data.
        for data in [
            vec![0u8; 100],
            vec![0, 0, 0, 1, 0x67, 0xff, 0xff, 0xff, 0xff],
            idr[..idr.len() / 2].to_vec(),
            b"not h264 at all".to_vec(),
            Vec::new(),
        ] {
            let mut d = decoder();
            let r = d.apply(&delta(1, &[item(LEFT, VIDEO_IDR, &data)]));
            assert!(is_corrupt(r.clone()), "{r:?}");
            assert!(d.needs_keyframe());
        }
        // After a refused picture, the stream is gone until a keyframe.
        let mut d = decoder();
        assert!(d.apply(&delta(1, &[item(LEFT, VIDEO_IDR, idr)])).is_ok());
        assert!(is_corrupt(
            d.apply(&delta(2, &[item(LEFT, 0, &[0, 0, 1, 0x41, 0x9a])]))
        ));
        assert_eq!(
            d.apply(&delta(3, &[item(LEFT, 0, p)])),
            Ok(Applied::Skipped { frame: 3 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn mutated_video_messages_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            second in any::<bool>(),
        ) {
            let pictures = pictures();
            let mut d = decoder();
            let mut m = message(FLAG_LAST_PART, 1, 1, 0, &[item(LEFT, VIDEO_IDR, &pictures[0].0)]);
            if second {
                prop_assert!(d.apply(&m).is_ok());
                m = message(FLAG_LAST_PART, 2, 2, 0, &[item(LEFT, 0, &pictures[1].0)]);
            }
            for (at, value) in flips {
                let i = at.index(m.len());
                m[i] = value;
            }
            let before = d.canvas().unwrap().clone();
            if d.apply(&m).is_err() {
                prop_assert!(d.needs_keyframe());
                prop_assert!(d.canvas().unwrap() == &before);
            }
        }
    }
}
