//! A captured screen: [`Frame`], its [`ScreenSize`], rectangles on it.
//!
//! A frame is what a capture adapter (or the [synthetic
//! screen](crate::synthetic)) hands to the encoder and what the decoder
//! shows: `width × height` pixels, each 4 bytes in the order blue, green, red,
//! alpha (BGRA, the layout X11 and most capture APIs produce), rows top to
//! bottom, tightly packed (the stride is exactly `width * 4`). Alpha is
//! carried as captured and never interpreted.
//!
//! Both dimensions are bounded, `1..=`[`MAX_WIDTH`] and `1..=`[`MAX_HEIGHT`],
//! so that a frame of the largest size (256 MiB) is still one allocation a
//! viewer can make, and so that every size fits the 16-bit fields of the
//! codec's wire format. Every constructor checks its inputs and returns a
//! [`FrameError`], never panics.

use core::fmt;

/// The widest screen accepted, in pixels.
pub const MAX_WIDTH: u32 = 8192;
/// The tallest screen accepted, in pixels.
pub const MAX_HEIGHT: u32 = 8192;
/// Bytes per pixel: blue, green, red, alpha.
pub const BYTES_PER_PIXEL: usize = 4;

/// Why a frame or a screen size could not be made. The caller's fault
/// (a capture adapter or a peer that sent the size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A dimension is zero or above its maximum.
    #[error("a screen of {width}×{height} pixels is not supported: each side must be 1 to {MAX_WIDTH} pixels")]
    Size {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
    /// The pixel buffer's length is not `width * height * 4`.
    #[error("a {width}×{height} BGRA frame takes {expected} bytes, but the buffer holds {got}")]
    BufferLength {
        /// The frame's width.
        width: u32,
        /// The frame's height.
        height: u32,
        /// `width * height * 4`.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
}

/// A screen's width and height in pixels, each within `1..=8192`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScreenSize {
    width: u32,
    height: u32,
}

impl ScreenSize {
    /// The size `width × height`, if both are within bounds.
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        if (1..=MAX_WIDTH).contains(&width) && (1..=MAX_HEIGHT).contains(&height) {
            Ok(Self { width, height })
        } else {
            Err(FrameError::Size { width, height })
        }
    }

    /// Width in pixels.
    pub fn width(self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(self) -> u32 {
        self.height
    }

    /// Bytes in one row: `width * 4`.
    pub fn stride(self) -> usize {
        self.width as usize * BYTES_PER_PIXEL
    }

    /// Bytes in a whole frame: `width * height * 4` (at most 256 MiB).
    pub fn byte_len(self) -> usize {
        self.stride() * self.height as usize
    }

    /// The whole screen as a rectangle.
    pub fn rect(self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    /// Whether `rect` is non-empty and lies wholly on the screen.
    pub fn contains(self, rect: Rect) -> bool {
        !rect.is_empty()
            && rect
                .x
                .checked_add(rect.width)
                .is_some_and(|r| r <= self.width)
            && rect
                .y
                .checked_add(rect.height)
                .is_some_and(|b| b <= self.height)
    }
}

impl fmt::Display for ScreenSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}", self.width, self.height)
    }
}

/// A rectangle of pixels: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    /// Left edge (the first column inside).
    pub x: u32,
    /// Top edge (the first row inside).
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Rect {
    /// The rectangle at `(x, y)` of `width × height` pixels.
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// Whether it holds no pixel.
    pub fn is_empty(self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// One past the right edge (saturating).
    pub fn right(self) -> u32 {
        self.x.saturating_add(self.width)
    }

    /// One past the bottom edge (saturating).
    pub fn bottom(self) -> u32 {
        self.y.saturating_add(self.height)
    }

    /// The pixels both rectangles hold (empty if none).
    pub fn intersect(self, other: Rect) -> Rect {
        let x = self.x.max(other.x);
        let y = self.y.max(other.y);
        let right = self.right().min(other.right());
        let bottom = self.bottom().min(other.bottom());
        if right <= x || bottom <= y {
            Rect::default()
        } else {
            Rect::new(x, y, right - x, bottom - y)
        }
    }

    /// The smallest rectangle holding both (an empty one counts for nothing).
    pub fn union(self, other: Rect) -> Rect {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        Rect::new(
            x,
            y,
            self.right().max(other.right()) - x,
            self.bottom().max(other.bottom()) - y,
        )
    }

    /// Whether the pixel `(x, y)` is inside.
    pub fn contains_point(self, x: u32, y: u32) -> bool {
        x >= self.x && x < self.right() && y >= self.y && y < self.bottom()
    }
}

/// One pixel: blue, green, red, alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Bgra(pub [u8; 4]);

impl Bgra {
    /// An opaque colour from red, green and blue.
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Self([b, g, r, 0xff])
    }
}

/// A captured screen: `width × height` BGRA pixels, tightly packed.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    size: ScreenSize,
    data: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({})", self.size)
    }
}

impl Frame {
    /// Wraps a captured buffer of `width * height * 4` bytes.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, FrameError> {
        Self::from_bgra(ScreenSize::new(width, height)?, data)
    }

    /// Wraps a buffer of `size.byte_len()` bytes.
    pub fn from_bgra(size: ScreenSize, data: Vec<u8>) -> Result<Self, FrameError> {
        if data.len() != size.byte_len() {
            return Err(FrameError::BufferLength {
                width: size.width,
                height: size.height,
                expected: size.byte_len(),
                got: data.len(),
            });
        }
        Ok(Self { size, data })
    }

    /// A frame of one colour.
    pub fn filled(size: ScreenSize, colour: Bgra) -> Self {
        let data = colour.0.repeat(size.width as usize * size.height as usize);
        Self { size, data }
    }

    /// Its size.
    pub fn size(&self) -> ScreenSize {
        self.size
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.size.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.size.height
    }

    /// Bytes per row (`width * 4`).
    pub fn stride(&self) -> usize {
        self.size.stride()
    }

    /// All pixels, row after row.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// All pixels, to write in place (the length cannot change).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Gives up the frame and returns its buffer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at `(x, y)`, if it is on the screen.
    pub fn pixel(&self, x: u32, y: u32) -> Option<Bgra> {
        let at = self.offset(x, y)?;
        let px = self.data.get(at..at + BYTES_PER_PIXEL)?;
        let mut out = [0u8; 4];
        out.copy_from_slice(px);
        Some(Bgra(out))
    }

    /// The bytes of row `y` from column `x` for `width` pixels, if all on screen.
    pub fn row_span(&self, x: u32, y: u32, width: u32) -> Option<&[u8]> {
        let range = self.span_range(x, y, width)?;
        self.data.get(range)
    }

    /// Like [`row_span`](Self::row_span), writable.
    pub fn row_span_mut(&mut self, x: u32, y: u32, width: u32) -> Option<&mut [u8]> {
        let range = self.span_range(x, y, width)?;
        self.data.get_mut(range)
    }

    /// Paints the part of `rect` that is on screen with `colour`.
    pub fn fill_rect(&mut self, rect: Rect, colour: Bgra) {
        let r = rect.intersect(self.size.rect());
        for y in r.y..r.bottom() {
            if let Some(span) = self.row_span_mut(r.x, y, r.width) {
                for px in span.chunks_exact_mut(BYTES_PER_PIXEL) {
                    px.copy_from_slice(&colour.0);
                }
            }
        }
    }

    /// Copies the part of `rect` that is on both screens from `source`, pixel
    /// for pixel at the same position.
    pub fn copy_rect_from(&mut self, source: &Frame, rect: Rect) {
        let r = rect
            .intersect(self.size.rect())
            .intersect(source.size.rect());
        for y in r.y..r.bottom() {
            if let (Some(from), Some(to)) = (
                source.row_span(r.x, y, r.width),
                self.row_span_mut(r.x, y, r.width),
            ) {
                to.copy_from_slice(from);
            }
        }
    }

    /// The rectangle's pixels, row after row (`width * height * 4` bytes),
    /// if it lies wholly on the screen.
    pub fn read_rect(&self, rect: Rect) -> Option<Vec<u8>> {
        if !self.size.contains(rect) {
            return None;
        }
        let mut out = Vec::with_capacity(rect.width as usize * rect.height as usize * 4);
        for y in rect.y..rect.bottom() {
            out.extend_from_slice(self.row_span(rect.x, y, rect.width)?);
        }
        Some(out)
    }

    fn offset(&self, x: u32, y: u32) -> Option<usize> {
        if x >= self.size.width || y >= self.size.height {
            return None;
        }
        Some(y as usize * self.stride() + x as usize * BYTES_PER_PIXEL)
    }

    fn span_range(&self, x: u32, y: u32, width: u32) -> Option<core::ops::Range<usize>> {
        if width == 0 || x.checked_add(width)? > self.size.width || y >= self.size.height {
            return None;
        }
        let start = self.offset(x, y)?;
        Some(start..start + width as usize * BYTES_PER_PIXEL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_outside_bounds_are_refused() {
        assert!(ScreenSize::new(1, 1).is_ok());
        assert!(ScreenSize::new(MAX_WIDTH, MAX_HEIGHT).is_ok());
        for (w, h) in [(0, 1), (1, 0), (MAX_WIDTH + 1, 1), (1, MAX_HEIGHT + 1)] {
            assert_eq!(
                ScreenSize::new(w, h),
                Err(FrameError::Size {
                    width: w,
                    height: h
                })
            );
        }
        assert!(matches!(
            Frame::new(0, 10, Vec::new()),
            Err(FrameError::Size { .. })
        ));
    }

    #[test]
    fn buffer_length_is_checked() {
        assert!(Frame::new(3, 2, vec![0; 24]).is_ok());
        assert_eq!(
            Frame::new(3, 2, vec![0; 23]),
            Err(FrameError::BufferLength {
                width: 3,
                height: 2,
                expected: 24,
                got: 23
            })
        );
        assert!(Frame::new(3, 2, vec![0; 25]).is_err());
    }

    #[test]
    fn pixels_and_rows_are_addressed_in_bgra_order() {
        let size = ScreenSize::new(4, 3).unwrap();
        let mut f = Frame::filled(size, Bgra::rgb(1, 2, 3));
        assert_eq!(f.pixel(3, 2), Some(Bgra([3, 2, 1, 255])));
        assert_eq!(f.pixel(4, 0), None);
        assert_eq!(f.pixel(0, 3), None);
        f.fill_rect(Rect::new(2, 1, 10, 10), Bgra::rgb(9, 9, 9));
        assert_eq!(f.pixel(1, 1), Some(Bgra::rgb(1, 2, 3)));
        assert_eq!(f.pixel(2, 1), Some(Bgra::rgb(9, 9, 9)));
        assert_eq!(f.pixel(3, 2), Some(Bgra::rgb(9, 9, 9)));
        assert_eq!(f.row_span(1, 0, 3).map(<[u8]>::len), Some(12));
        assert_eq!(f.row_span(2, 0, 3), None);
        assert_eq!(
            f.read_rect(Rect::new(2, 1, 2, 2)).unwrap(),
            [9, 9, 9, 255].repeat(4)
        );
        assert_eq!(f.read_rect(Rect::new(2, 1, 3, 2)), None);
    }

    #[test]
    fn rectangles_intersect_and_unite() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, 5, 10, 10);
        assert_eq!(a.intersect(b), Rect::new(5, 5, 5, 5));
        assert_eq!(a.union(b), Rect::new(0, 0, 15, 15));
        assert!(a.intersect(Rect::new(10, 0, 5, 5)).is_empty());
        assert_eq!(Rect::default().union(b), b);
        let screen = ScreenSize::new(10, 10).unwrap();
        assert!(screen.contains(a));
        assert!(!screen.contains(b));
        assert!(!screen.contains(Rect::new(3, 3, 0, 1)));
        assert!(!screen.contains(Rect::new(u32::MAX, 0, 2, 1)));
    }
}
