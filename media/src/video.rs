//! Video regions: the part of a screen that changes in every frame, sent as
//! H.264 instead of lossless tiles.
//!
//! A playing video costs the lossless tile codec hundreds of kilobytes a
//! frame (its pixels drift everywhere, every frame). So the
//! [`ScreenEncoder`](crate::codec::ScreenEncoder), when video is on, looks
//! for such a region and sends it as one rectangle of H.264 (OpenH264,
//! through the `openh264` crate), while everything else stays pixel-exact.
//!
//! ## Finding the region
//!
//! The encoder keeps, per tile of the codec's grid, two bits for
//! each of the last 16 frames:
//!
//! - *busy*: more than half of the tile's pixels were sent as pixel data
//!   (raw or XOR, not copies: scrolled and dragged content arrives as
//!   copies) and that data took at least a sixteenth of a byte per pixel;
//! - *touched*: at least [`TOUCHED_BYTES`] of pixel data were sent for it.
//!
//! Inside an active region no tiles are sent, so there the tracker compares
//! the captured pixels with the previous capture instead: *busy* when more
//! than half of the tile's rows changed, *touched* when any did.
//!
//! A tile is *hot* when it was busy in at least [`HOT_FRAMES`] of the last
//! 16 frames. A region is the bounding rectangle of the largest
//! 4-connected group of hot tiles that has at least 4 tiles, spans at least
//! 2 × 2 tiles and fills at least three quarters of its bounding rectangle;
//! it grows by one tile on each side where at least half of the tiles along
//! that side were touched in as many frames (the partly covered tiles at
//! the video's edges). It lies on whole tiles, is even in both
//! dimensions (4:2:0 chroma), at least [`MIN_REGION_SIDE`] on each side and
//! at most [`MAX_VIDEO_SIDE`] on each side and [`MAX_VIDEO_PIXELS`] in
//! all; otherwise there is none. Typing, scrolling and dragging a window do
//! not make one: few of their tiles need pixel data in every frame.
//!
//! Hysteresis: a region starts as soon as there is one (its tiles were hot
//! for most of 16 frames already); it ends after [`END_AFTER`] frames in a
//! row in which fewer than half of its tiles changed (the video stopped);
//! it moves to another rectangle only once the tracker has found that same
//! other rectangle for [`SWITCH_AFTER`] frames in a row.
//!
//! ## Streams
//!
//! Each region is one H.264 stream: it starts with an IDR picture (the
//! parameter sets and an intra picture), and every picture of it covers
//! exactly the region's rectangle. A new stream starts when the region
//! starts or moves, when a keyframe is asked for, and when the target
//! bitrate changed by enough (see below). The encoder decodes its own
//! output with the same decoder a viewer uses and puts the decoded pixels
//! into its reference, so that the viewer's canvas and the encoder's
//! reference stay the same, pixel for pixel: H.264 decoding is exact, and
//! the conversion from decoded YUV to BGRA here is integer arithmetic,
//! the same on every machine. When the region ends, the ordinary tile
//! comparison sees that the (lossy) reference differs from the screen and
//! sends the tiles that put it right.
//!
//! ## Rate
//!
//! OpenH264's rate control is in timestamp mode: the frames' capture times
//! tell it how many bits each may take at the target bitrate
//! ([`DEFAULT_BITRATE`] unless set), and it skips a frame when it is over
//! budget (the region then keeps its last picture for that frame). The
//! encoder takes a new bitrate (between [`MIN_BITRATE`] and
//! [`MAX_BITRATE`]) at once if it is lower than four fifths of the one in
//! use, and a higher one once it is at least one and a half times the one
//! in use: each change starts a new stream with an IDR picture, which costs
//! a few P pictures' worth of bytes.
//!
//! ## Colour
//!
//! BGRA is converted to I420 (full-range BT.601, chroma averaged over 2×2
//! pixels) and back with integer arithmetic of our own. The `openh264`
//! crate's `formats` module offers both directions, but its converters
//! assert (panic) on odd sizes and buffer lengths, its YUV to RGB picks an
//! AVX2 or a portable path by CPU, which could make two machines' pixels
//! differ by rounding (and the encoder's reference must equal every
//! viewer's canvas), and it writes RGBA, not BGRA. Measured on a 640×448
//! region (release build): BGRA to I420 0.75 ms here, 2.2 ms with the
//! crate's `YUVBuffer::read_rgb`; I420 to BGRA 0.34 ms here, 0.08 ms with
//! the crate's AVX2 `write_rgba8`, a cost we accept for exactness.

use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};

use crate::codec::TILE_SIZE;
use crate::frame::{Frame, Rect, ScreenSize, BYTES_PER_PIXEL};

/// The target bitrate of a video region unless set: 4 Mbit/s, enough for a
/// 640×360 video at 60 frames a second or a full 1920×1080 one at 30 with
/// some softening.
pub const DEFAULT_BITRATE: u32 = 4_000_000;
/// The lowest target bitrate accepted: 100 kbit/s.
pub const MIN_BITRATE: u32 = 100_000;
/// The highest target bitrate accepted: 100 Mbit/s.
pub const MAX_BITRATE: u32 = 100_000_000;
/// The smallest side of a video rectangle a decoder accepts: one macroblock.
pub const MIN_VIDEO_SIDE: u32 = 16;
/// The largest side of a video rectangle (OpenH264's encoder stops there).
pub const MAX_VIDEO_SIDE: u32 = 3840;
/// The most pixels a video rectangle may have: 3840×2160.
pub const MAX_VIDEO_PIXELS: u64 = 3840 * 2160;
/// The smallest side of a region the encoder makes: 2 tiles.
pub const MIN_REGION_SIDE: u32 = 2 * TILE_SIZE;
/// A tile is hot when busy in at least this many of the last 16 frames.
pub const HOT_FRAMES: u32 = 14;
/// A region ends after this many frames in a row with less than half of
/// its tiles changed.
pub const END_AFTER: u32 = 30;
/// A region moves after the same other rectangle was found for this many
/// frames in a row.
pub const SWITCH_AFTER: u32 = 30;
/// Bytes of pixel data that make a tile *touched*.
pub const TOUCHED_BYTES: u32 = 64;
/// The frame rate OpenH264's rate control starts from.
const START_FRAME_RATE: f32 = 60.0;

/// The most bytes of H.264 one picture of `rect` may take: twice its
/// pixels (an intra picture of raw macroblocks takes 1.5 bytes a pixel)
/// and 64 KiB for headers. Larger is refused.
pub fn max_picture_bytes(rect: Rect) -> usize {
    (rect.width as usize)
        .saturating_mul(rect.height as usize)
        .saturating_mul(2)
        .saturating_add(64 * 1024)
}

/// Whether a decoder accepts `rect` as a video rectangle (its place on the
/// screen aside): both sides even, at least [`MIN_VIDEO_SIDE`] and at most
/// [`MAX_VIDEO_SIDE`], at most [`MAX_VIDEO_PIXELS`] in all.
pub fn valid_video_size(rect: Rect) -> bool {
    let side = |s: u32| s % 2 == 0 && (MIN_VIDEO_SIDE..=MAX_VIDEO_SIDE).contains(&s);
    side(rect.width)
        && side(rect.height)
        && u64::from(rect.width) * u64::from(rect.height) <= MAX_VIDEO_PIXELS
}

/// Clamps a bitrate into [`MIN_BITRATE`]`..=`[`MAX_BITRATE`].
pub fn clamp_bitrate(bps: u32) -> u32 {
    bps.clamp(MIN_BITRATE, MAX_BITRATE)
}

/// Why a picture could not be decoded; the codec turns these into
/// [`UpdateError`](crate::codec::UpdateError)s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PictureError {
    /// OpenH264 refused the data, or gave no picture for it.
    Corrupt(String),
    /// The picture is not the rectangle's size.
    Size {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
}

/// A picture in I420: full-size Y, quarter-size U and V, tightly packed.
struct I420 {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl I420 {
    fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        Self {
            width: w,
            height: h,
            y: vec![0; w * h],
            u: vec![0; (w / 2) * (h / 2)],
            v: vec![0; (w / 2) * (h / 2)],
        }
    }

    /// Converts `rect` of `frame` (even sides, on screen) into this picture.
    fn read(&mut self, frame: &Frame, rect: Rect) {
        let (w, cw) = (self.width, self.width / 2);
        let rows = self.y.chunks_exact_mut(2 * w);
        let chroma = self.u.chunks_exact_mut(cw).zip(self.v.chunks_exact_mut(cw));
        for (pair, (row, (u_row, v_row))) in (0..).zip(rows.zip(chroma)) {
            let y0 = rect.y + 2 * pair;
            let (Some(top), Some(bottom)) = (
                frame.row_span(rect.x, y0, rect.width),
                frame.row_span(rect.x, y0 + 1, rect.width),
            ) else {
                continue;
            };
            let (y_top, y_bottom) = row.split_at_mut(w);
            let pixels = top
                .chunks_exact(2 * BYTES_PER_PIXEL)
                .zip(bottom.chunks_exact(2 * BYTES_PER_PIXEL));
            let luma = y_top.chunks_exact_mut(2).zip(y_bottom.chunks_exact_mut(2));
            for (((t, b), (yt, yb)), (u, v)) in
                pixels.zip(luma).zip(u_row.iter_mut().zip(v_row.iter_mut()))
            {
                let (mut sb, mut sg, mut sr) = (0i32, 0i32, 0i32);
                let four = t
                    .chunks_exact(BYTES_PER_PIXEL)
                    .chain(b.chunks_exact(BYTES_PER_PIXEL));
                for (px, out) in four.zip(yt.iter_mut().chain(yb.iter_mut())) {
                    let &[bl, g, r, _] = px else { continue };
                    let (bl, g, r) = (i32::from(bl), i32::from(g), i32::from(r));
                    *out = ((77 * r + 150 * g + 29 * bl + 128) >> 8) as u8;
                    sb += bl;
                    sg += g;
                    sr += r;
                }
                let (bl, g, r) = ((sb + 2) >> 2, (sg + 2) >> 2, (sr + 2) >> 2);
                *u = (((-43 * r - 85 * g + 128 * bl + 128) >> 8) + 128).clamp(0, 255) as u8;
                *v = (((128 * r - 107 * g - 21 * bl + 128) >> 8) + 128).clamp(0, 255) as u8;
            }
        }
    }
}

impl YUVSource for I420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

/// Writes a decoded picture into `rect` of `to` as opaque BGRA, checking
/// that it is exactly the rectangle's size and that its planes hold what
/// their strides say. Integer arithmetic only: every machine gets the same
/// pixels.
pub(crate) fn write_picture(
    picture: &impl YUVSource,
    rect: Rect,
    to: &mut Frame,
) -> Result<(), PictureError> {
    let (width, height) = picture.dimensions();
    if width != rect.width as usize || height != rect.height as usize {
        return Err(PictureError::Size {
            width: u32::try_from(width).unwrap_or(u32::MAX),
            height: u32::try_from(height).unwrap_or(u32::MAX),
        });
    }
    let (ys, us, vs) = picture.strides();
    let short = || PictureError::Corrupt("the decoded picture is shorter than its size".into());
    if ys < width || us < width / 2 || vs < width / 2 {
        return Err(short());
    }
    let (yp, up, vp) = (picture.y(), picture.u(), picture.v());
    for row in 0..height {
        let y_row = yp.get(row * ys..row * ys + width).ok_or_else(short)?;
        let c = row / 2;
        let u_row = up.get(c * us..c * us + width / 2).ok_or_else(short)?;
        let v_row = vp.get(c * vs..c * vs + width / 2).ok_or_else(short)?;
        let out = to
            .row_span_mut(rect.x, rect.y + row as u32, rect.width)
            .ok_or_else(short)?;
        for ((px, luma), (&u, &v)) in out
            .chunks_exact_mut(2 * BYTES_PER_PIXEL)
            .zip(y_row.chunks_exact(2))
            .zip(u_row.iter().zip(v_row))
        {
            let d = i32::from(u) - 128;
            let e = i32::from(v) - 128;
            let red = (91_881 * e + 32_768) >> 16;
            let green = (22_554 * d + 46_802 * e + 32_768) >> 16;
            let blue = (116_130 * d + 32_768) >> 16;
            for (p, &l) in px.chunks_exact_mut(BYTES_PER_PIXEL).zip(luma) {
                let l = i32::from(l);
                p.copy_from_slice(&[
                    (l + blue).clamp(0, 255) as u8,
                    (l - green).clamp(0, 255) as u8,
                    (l + red).clamp(0, 255) as u8,
                    0xff,
                ]);
            }
        }
    }
    Ok(())
}

/// An OpenH264 decoder as both sides use it: no error concealment (a
/// damaged picture is an error, not a guess), no threads.
pub(crate) fn new_decoder() -> Result<Decoder, PictureError> {
    Decoder::with_api_config(
        OpenH264API::from_source(),
        DecoderConfig::new().flush_after_decode(Flush::Flush),
    )
    .map_err(|e| PictureError::Corrupt(e.to_string()))
}

/// Decodes one picture's data with `decoder` into `rect` of `to`.
pub(crate) fn decode_picture(
    decoder: &mut Decoder,
    data: &[u8],
    rect: Rect,
    to: &mut Frame,
) -> Result<(), PictureError> {
    match decoder.decode(data) {
        Ok(Some(picture)) => write_picture(&picture, rect, to),
        Ok(None) => Err(PictureError::Corrupt(
            "the data holds no whole picture".into(),
        )),
        Err(e) => Err(PictureError::Corrupt(e.to_string())),
    }
}

/// The H.264 stream of one region on the encoder's side: the encoder and
/// the decoder that mirrors a viewer's.
pub(crate) struct VideoEncoder {
    rect: Rect,
    bitrate: u32,
    encoder: Encoder,
    decoder: Decoder,
    picture: I420,
    /// Whether the stream's first (IDR) picture was made.
    started: bool,
    /// The last picture's data.
    data: Vec<u8>,
}

/// One encoded picture (its data in [`VideoEncoder::data`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Picture {
    /// Whether it starts a new stream (an IDR picture with parameter sets).
    pub(crate) idr: bool,
}

impl VideoEncoder {
    /// A new stream for `rect` (even sides) at `bitrate` bits a second.
    pub(crate) fn new(rect: Rect, bitrate: u32) -> Result<Self, String> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(clamp_bitrate(bitrate)))
            .max_frame_rate(FrameRate::from_hz(START_FRAME_RATE))
            .rate_control_mode(RateControlMode::Timestamp)
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(Complexity::Low)
            .skip_frames(true)
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            rect,
            bitrate: clamp_bitrate(bitrate),
            encoder,
            decoder: new_decoder().map_err(|e| format!("{e:?}"))?,
            picture: I420::new(rect.width, rect.height),
            started: false,
            data: Vec::new(),
        })
    }

    /// The rectangle.
    pub(crate) fn rect(&self) -> Rect {
        self.rect
    }

    /// The bitrate it was made for.
    pub(crate) fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// The last picture's H.264 data.
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }

    /// Encodes the rectangle of `frame`, captured at `time_ms`, decodes the
    /// result and writes the decoded pixels into the same rectangle of
    /// `decoded`. `None`: the rate control skipped the frame. With `idr`
    /// the picture is an IDR picture (or an error). An error leaves the
    /// stream unusable.
    pub(crate) fn encode(
        &mut self,
        frame: &Frame,
        time_ms: u64,
        idr: bool,
        decoded: &mut Frame,
    ) -> Result<Option<Picture>, String> {
        self.picture.read(frame, self.rect);
        let idr = idr || !self.started;
        if idr {
            self.encoder.force_intra_frame();
        }
        let stream = self
            .encoder
            .encode_at(&self.picture, Timestamp::from_millis(time_ms))
            .map_err(|e| e.to_string())?;
        let kind = stream.frame_type();
        self.data.clear();
        stream.write_vec(&mut self.data);
        if kind == FrameType::Skip || self.data.is_empty() {
            if idr {
                return Err("the encoder skipped an IDR picture".into());
            }
            return Ok(None);
        }
        let is_idr = kind == FrameType::IDR;
        if idr && !is_idr {
            return Err(format!(
                "asked for an IDR picture, the encoder made {kind:?}"
            ));
        }
        if self.data.len() > max_picture_bytes(self.rect) {
            return Err(format!(
                "a picture of {} bytes, more than a viewer accepts",
                self.data.len()
            ));
        }
        if is_idr {
            // A viewer starts a fresh decoder for every IDR picture.
            self.decoder = new_decoder().map_err(|e| format!("{e:?}"))?;
        }
        decode_picture(&mut self.decoder, &self.data, self.rect, decoded)
            .map_err(|e| format!("decoding its own picture: {e:?}"))?;
        self.started = true;
        Ok(Some(Picture { idr: is_idr }))
    }
}

impl std::fmt::Debug for VideoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEncoder")
            .field("rect", &self.rect)
            .field("bitrate", &self.bitrate)
            .finish_non_exhaustive()
    }
}

/// What one tile's data cost in a frame, for the [`RegionTracker`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TileCost {
    /// Pixels sent as pixel data (raw or XOR).
    pub(crate) pixels: u32,
    /// Bytes of that data, entries included.
    pub(crate) bytes: u32,
}

/// Finds the region that changes every frame; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct RegionTracker {
    screen: ScreenSize,
    columns: u32,
    rows: u32,
    /// Per tile, bit 0 the last frame: busy.
    busy: Vec<u16>,
    /// Per tile: touched.
    touched: Vec<u16>,
    region: Option<Rect>,
    /// Frames in a row with less than half of the region's tiles changed.
    idle: u32,
    /// Another rectangle found, and for how many frames in a row.
    pending: Option<(Rect, u32)>,
    /// The region's captured pixels in the last frame.
    previous: Option<(Rect, Vec<u8>)>,
}

impl RegionTracker {
    /// A tracker for `screen` with no history.
    pub(crate) fn new(screen: ScreenSize) -> Self {
        let columns = screen.width().div_ceil(TILE_SIZE);
        let rows = screen.height().div_ceil(TILE_SIZE);
        let tiles = (columns * rows) as usize;
        Self {
            screen,
            columns,
            rows,
            busy: vec![0; tiles],
            touched: vec![0; tiles],
            region: None,
            idle: 0,
            pending: None,
            previous: None,
        }
    }

    /// The screen it tracks.
    pub(crate) fn screen(&self) -> ScreenSize {
        self.screen
    }

    /// The region in force.
    pub(crate) fn region(&self) -> Option<Rect> {
        self.region
    }

    /// Ends the region now (video turned off, or its stream failed).
    pub(crate) fn end(&mut self) {
        self.region = None;
        self.idle = 0;
        self.pending = None;
        self.previous = None;
    }

    fn tile_rect(&self, column: u32, row: u32) -> Rect {
        let (x, y) = (column * TILE_SIZE, row * TILE_SIZE);
        Rect::new(
            x,
            y,
            TILE_SIZE.min(self.screen.width() - x),
            TILE_SIZE.min(self.screen.height() - y),
        )
    }

    fn index(&self, column: u32, row: u32) -> usize {
        (row * self.columns + column) as usize
    }

    /// Records what the frame just encoded did. `frame` is the captured
    /// screen, `costs` what each tile's data cost (in grid order; unused
    /// inside the region), `keyframe` whether every tile was sent anyway
    /// (then the last frame's bits are carried over outside the region).
    pub(crate) fn observe(&mut self, frame: &Frame, costs: &[TileCost], keyframe: bool) {
        if frame.size() != self.screen {
            *self = Self::new(frame.size());
            return;
        }
        let region = self.region;
        let previous = self.previous.take().filter(|(r, _)| Some(*r) == region);
        for row in 0..self.rows {
            for column in 0..self.columns {
                let tile = self.tile_rect(column, row);
                let i = self.index(column, row);
                let inside = region.is_some_and(|r| r.intersect(tile) == tile);
                let (busy, touched) = if inside {
                    match (&previous, region) {
                        (Some((_, pixels)), Some(r)) => changed_rows(frame, pixels, r, tile),
                        _ => (true, true),
                    }
                } else if keyframe {
                    let last = |h: &[u16]| h.get(i).is_some_and(|b| b & 1 == 1);
                    (last(&self.busy), last(&self.touched))
                } else {
                    let cost = costs.get(i).copied().unwrap_or_default();
                    let area = tile.width * tile.height;
                    (
                        cost.pixels * 2 > area && cost.bytes * 16 >= area,
                        cost.bytes >= TOUCHED_BYTES,
                    )
                };
                if let (Some(b), Some(t)) = (self.busy.get_mut(i), self.touched.get_mut(i)) {
                    *b = *b << 1 | u16::from(busy);
                    *t = *t << 1 | u16::from(touched);
                }
            }
        }
        self.previous = region.and_then(|r| {
            let mut pixels = previous.map(|(_, p)| p).unwrap_or_default();
            pixels.clear();
            for y in r.y..r.bottom() {
                pixels.extend_from_slice(frame.row_span(r.x, y, r.width)?);
            }
            Some((r, pixels))
        });
    }

    /// Decides the region for the next frame from the frames observed.
    pub(crate) fn decide(&mut self) -> Option<Rect> {
        let candidate = self.candidate();
        let Some(region) = self.region else {
            self.region = candidate;
            self.idle = 0;
            self.pending = None;
            return self.region;
        };
        // Did at least half of its tiles change in the last frame?
        let (mut tiles, mut changed) = (0u32, 0u32);
        for row in region.y / TILE_SIZE..region.bottom().div_ceil(TILE_SIZE) {
            for column in region.x / TILE_SIZE..region.right().div_ceil(TILE_SIZE) {
                tiles += 1;
                let i = self.index(column, row);
                changed += u32::from(self.touched.get(i).is_some_and(|t| t & 1 == 1));
            }
        }
        self.idle = if changed * 2 < tiles {
            self.idle + 1
        } else {
            0
        };
        if self.idle >= END_AFTER {
            self.end();
            return None;
        }
        self.pending = match (candidate, self.pending) {
            (Some(c), _) if c == region => None,
            (Some(c), Some((p, n))) if c == p => Some((c, n + 1)),
            (Some(c), _) => Some((c, 1)),
            (None, _) => None,
        };
        if let Some((c, n)) = self.pending {
            if n >= SWITCH_AFTER {
                self.region = Some(c);
                self.pending = None;
                self.idle = 0;
                self.previous = None;
            }
        }
        self.region
    }

    /// The rectangle the hot tiles make now, if any; see the module docs.
    fn candidate(&self) -> Option<Rect> {
        let hot = |h: u16| h.count_ones() >= HOT_FRAMES;
        let is_hot: Vec<bool> = self.busy.iter().map(|&h| hot(h)).collect();
        let mut seen = vec![false; is_hot.len()];
        let mut best: Option<(u32, (u32, u32, u32, u32))> = None;
        let mut stack = Vec::new();
        for start in 0..is_hot.len() {
            if !is_hot.get(start).copied().unwrap_or(false) || seen.get(start) != Some(&false) {
                continue;
            }
            // One group: its tile count and bounding tiles.
            let (c, r) = (start as u32 % self.columns, start as u32 / self.columns);
            let (mut count, mut bounds) = (0u32, (c, r, c, r));
            stack.clear();
            stack.push((c, r));
            if let Some(s) = seen.get_mut(start) {
                *s = true;
            }
            while let Some((c, r)) = stack.pop() {
                count += 1;
                bounds = (
                    bounds.0.min(c),
                    bounds.1.min(r),
                    bounds.2.max(c),
                    bounds.3.max(r),
                );
                let neighbours = [
                    (c.wrapping_sub(1), r),
                    (c + 1, r),
                    (c, r.wrapping_sub(1)),
                    (c, r + 1),
                ];
                for (nc, nr) in neighbours {
                    if nc >= self.columns || nr >= self.rows {
                        continue;
                    }
                    let i = self.index(nc, nr);
                    if is_hot.get(i) == Some(&true) && seen.get(i) == Some(&false) {
                        if let Some(s) = seen.get_mut(i) {
                            *s = true;
                        }
                        stack.push((nc, nr));
                    }
                }
            }
            let (w, h) = (bounds.2 - bounds.0 + 1, bounds.3 - bounds.1 + 1);
            let fits = count >= 4 && w >= 2 && h >= 2 && count * 4 >= w * h * 3;
            if fits && best.is_none_or(|(n, _)| count > n) {
                best = Some((count, bounds));
            }
        }
        let (_, (mut c0, mut r0, mut c1, mut r1)) = best?;
        // Grow by a tile where the tiles along a side were touched (the
        // video's partly covered edge tiles).
        let warm = |c: u32, r: u32| {
            self.touched
                .get(self.index(c, r))
                .is_some_and(|&t| t.count_ones() >= HOT_FRAMES)
        };
        let mostly = |tiles: &mut dyn Iterator<Item = (u32, u32)>| {
            let (mut n, mut w) = (0u32, 0u32);
            for (c, r) in tiles {
                n += 1;
                w += u32::from(warm(c, r));
            }
            n > 0 && w * 2 >= n
        };
        let (top, bottom, left, right) = (
            r0 > 0 && mostly(&mut (c0..=c1).map(|c| (c, r0 - 1))),
            r1 + 1 < self.rows && mostly(&mut (c0..=c1).map(|c| (c, r1 + 1))),
            c0 > 0 && mostly(&mut (r0..=r1).map(|r| (c0 - 1, r))),
            c1 + 1 < self.columns && mostly(&mut (r0..=r1).map(|r| (c1 + 1, r))),
        );
        r0 -= u32::from(top);
        r1 += u32::from(bottom);
        c0 -= u32::from(left);
        c1 += u32::from(right);
        let x = c0 * TILE_SIZE;
        let y = r0 * TILE_SIZE;
        let mut width = ((c1 + 1) * TILE_SIZE).min(self.screen.width()) - x;
        let mut height = ((r1 + 1) * TILE_SIZE).min(self.screen.height()) - y;
        // Even sides, for 4:2:0 chroma (only a screen of odd size needs it).
        width -= width % 2;
        height -= height % 2;
        let rect = Rect::new(x, y, width, height);
        (width >= MIN_REGION_SIDE && height >= MIN_REGION_SIDE && valid_video_size(rect))
            .then_some(rect)
    }
}

/// Whether more than half of the rows of `tile` (inside `region`) differ
/// between `frame` and `previous` (the region's pixels, row after row), and
/// whether any does.
fn changed_rows(frame: &Frame, previous: &[u8], region: Rect, tile: Rect) -> (bool, bool) {
    let stride = region.width as usize * BYTES_PER_PIXEL;
    let at = (tile.x - region.x) as usize * BYTES_PER_PIXEL;
    let len = tile.width as usize * BYTES_PER_PIXEL;
    let mut changed = 0u32;
    for y in tile.y..tile.bottom() {
        let start = (y - region.y) as usize * stride + at;
        let old = previous.get(start..start + len);
        if old.is_none() || frame.row_span(tile.x, y, tile.width) != old {
            changed += 1;
        }
    }
    (changed * 2 > tile.height, changed > 0)
}

/// The peak signal-to-noise ratio of the luma (BT.601) of `rect` of
/// `decoded` against `source`, in dB: what H.264 keeps at full resolution
/// (4:2:0 halves the chroma both ways, so colour edges smear whatever the
/// bitrate). Infinite when equal, `None` when `rect` is not on both.
pub fn luma_psnr(source: &Frame, decoded: &Frame, rect: Rect) -> Option<f64> {
    let luma = |p: &[u8]| match *p {
        [b, g, r, _] => (77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8,
        _ => 0,
    };
    let mut error = 0u64;
    let mut count = 0u64;
    for y in rect.y..rect.bottom() {
        let a = source.row_span(rect.x, y, rect.width)?;
        let b = decoded.row_span(rect.x, y, rect.width)?;
        for (p, q) in a
            .chunks_exact(BYTES_PER_PIXEL)
            .zip(b.chunks_exact(BYTES_PER_PIXEL))
        {
            let e = u64::from(luma(p).abs_diff(luma(q)));
            error += e * e;
            count += 1;
        }
    }
    db(error, count)
}

fn db(error: u64, count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    if error == 0 {
        return Some(f64::INFINITY);
    }
    let mse = error as f64 / count as f64;
    Some(10.0 * (255.0 * 255.0 / mse).log10())
}

/// The peak signal-to-noise ratio of `rect` of `decoded` against `source`,
/// in dB, over the blue, green and red bytes (alpha ignored); infinite when
/// they are equal, `None` when `rect` is not on both.
pub fn psnr(source: &Frame, decoded: &Frame, rect: Rect) -> Option<f64> {
    let mut error = 0u64;
    let mut count = 0u64;
    for y in rect.y..rect.bottom() {
        let a = source.row_span(rect.x, y, rect.width)?;
        let b = decoded.row_span(rect.x, y, rect.width)?;
        for (p, q) in a
            .chunks_exact(BYTES_PER_PIXEL)
            .zip(b.chunks_exact(BYTES_PER_PIXEL))
        {
            for (&s, &d) in p.iter().zip(q).take(3) {
                let e = u64::from(s.abs_diff(d));
                error += e * e;
                count += 1;
            }
        }
    }
    db(error, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Bgra;
    use crate::synthetic::{SyntheticScreen, Workload};

    #[test]
    fn colour_conversion_round_trips_closely() {
        let mut screen = SyntheticScreen::new(Workload::Video, ScreenSize::new(640, 400).unwrap());
        let frame = screen.next_frame().clone();
        let rect = Rect::new(0, 24, 640, 360);
        let mut yuv = I420::new(rect.width, rect.height);
        yuv.read(&frame, rect);
        let mut back = frame.clone();
        write_picture(&yuv, rect, &mut back).unwrap();
        let p = psnr(&frame, &back, rect).unwrap();
        eprintln!("colour round trip {p:.1} dB");
        // Flat colours survive almost exactly.
        let mut flat = Frame::filled(ScreenSize::new(64, 64).unwrap(), Bgra::rgb(200, 30, 90));
        let rect = Rect::new(0, 0, 64, 64);
        let mut yuv = I420::new(64, 64);
        yuv.read(&flat, rect);
        let before = flat.clone();
        write_picture(&yuv, rect, &mut flat).unwrap();
        let q = psnr(&before, &flat, rect).unwrap();
        eprintln!("flat {q:.1} dB {:?}", flat.pixel(0, 0));
        assert!(q > 40.0);
        assert!(p > 30.0);
    }
}
