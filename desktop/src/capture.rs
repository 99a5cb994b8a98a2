//! Screen capture from an X11 display.
//!
//! [`X11Capture`] connects to a display (`DISPLAY` or a name), lists its
//! monitors (RandR 1.5 `GetMonitors`; the whole root window when the server
//! has no RandR monitors), and captures the selected one as BGRA, four bytes
//! per pixel, rows packed, alpha 255.
//!
//! With MIT-SHM 1.2 the server creates a shared-memory segment and passes
//! its file descriptor; we map it once, and each capture is one `ShmGetImage`
//! request whose reply means the server has finished writing the pixels into
//! it; one pass copies them out and sets the alpha bytes. Without shared
//! memory (a remote display, an old server) capture falls back to plain
//! `GetImage`, which carries the pixels through the socket.
//!
//! One window can be captured instead of a monitor
//! ([`X11Capture::select_window`], for presenting a single window, R21):
//! the Composite extension redirects it off screen (automatically, so the
//! server still shows it), and each capture reads the window's own pixmap.
//! What covers the window on screen is never captured, and what lies
//! beside it is not either: a window share shows that window only. Its size
//! is read at every capture, so a resized window is followed; a window that
//! is closed or unmapped is a typed error.
//!
//! Only 24- and 32-bit TrueColor screens with 32 bits per pixel in LSB-first
//! byte order (every X server on x86 and ARM today) are supported; anything
//! else is a typed error, never a misread picture.

use std::fs::File;

use memmap2::{Mmap, MmapOptions};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::composite;
use x11rb::protocol::randr;
use x11rb::protocol::shm;
use x11rb::protocol::xproto::{self, ImageFormat, ImageOrder};
use x11rb::rust_connection::RustConnection;

/// Why capturing failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No display could be reached.
    #[error("cannot connect to the X display {display}: {reason}")]
    Connect {
        /// The display asked for.
        display: String,
        /// Why.
        reason: String,
    },
    /// The connection to the display failed or broke.
    #[error("the X display connection failed: {0}")]
    Connection(String),
    /// The display's pixel format is not one we read.
    #[error("unsupported screen format: {0}")]
    Unsupported(String),
    /// The window to capture is gone, not shown, or not one we can read.
    #[error("cannot capture window {window:#x}: {reason}")]
    Window {
        /// The window.
        window: u32,
        /// Why.
        reason: String,
    },
    /// A monitor index beyond the list.
    #[error("there is no monitor {index}; the display has {count}")]
    NoSuchMonitor {
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
    /// The server's reply does not match what was asked.
    #[error("the X server returned {got} bytes of pixels, expected {expected}")]
    ShortImage {
        /// Bytes expected.
        expected: usize,
        /// Bytes returned.
        got: usize,
    },
}

fn conn_err(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Connection(e.to_string())
}

/// A monitor: a rectangle of the root window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// Its name (the RandR output name, or "screen").
    pub name: String,
    /// Left edge on the root window.
    pub x: i16,
    /// Top edge on the root window.
    pub y: i16,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Whether it is the primary monitor.
    pub primary: bool,
}

/// The shared segment and its mapping.
struct Shared {
    seg: shm::Seg,
    map: Mmap,
}

/// The most pixels of a window captured alone, whatever the screen's
/// size: 3840 × 2160.
const MAX_WINDOW_PIXELS: usize = 3840 * 2160;

/// A window captured alone, and its pixmap while named.
#[derive(Debug)]
struct WindowTarget {
    id: xproto::Window,
    pixmap: xproto::Pixmap,
    /// The size the pixmap was named at (a resize needs a new name).
    named: Option<(u16, u16)>,
}

/// A capture source on one X display.
pub struct X11Capture {
    conn: RustConnection,
    root: xproto::Window,
    monitors: Vec<Monitor>,
    current: usize,
    window: Option<WindowTarget>,
    shared: Option<Shared>,
}

impl std::fmt::Debug for X11Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Capture")
            .field("monitors", &self.monitors)
            .field("current", &self.current)
            .field("window", &self.window)
            .field("shared_memory", &self.shared.is_some())
            .finish()
    }
}

impl X11Capture {
    /// Connects to `display` (`None`: the `DISPLAY` variable) and selects
    /// the primary monitor (else the first).
    pub fn connect(display: Option<&str>) -> Result<X11Capture, CaptureError> {
        X11Capture::open(display, true)
    }

    /// Like [`X11Capture::connect`], but always through plain `GetImage`
    /// (for a display where shared memory is unwanted, and as the baseline
    /// that MIT-SHM is measured against).
    pub fn connect_without_shared_memory(
        display: Option<&str>,
    ) -> Result<X11Capture, CaptureError> {
        X11Capture::open(display, false)
    }

    fn open(display: Option<&str>, shared_memory: bool) -> Result<X11Capture, CaptureError> {
        let (conn, screen_num) = x11rb::connect(display).map_err(|e| CaptureError::Connect {
            display: display
                .map(str::to_string)
                .or_else(|| std::env::var("DISPLAY").ok())
                .unwrap_or_else(|| "(DISPLAY not set)".into()),
            reason: e.to_string(),
        })?;
        let setup = conn.setup();
        let screen = setup
            .roots
            .get(screen_num)
            .ok_or_else(|| CaptureError::Unsupported("the display has no such screen".into()))?;
        if setup.image_byte_order != ImageOrder::LSB_FIRST {
            return Err(CaptureError::Unsupported(
                "the server sends pixels most significant byte first".into(),
            ));
        }
        let bpp = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == screen.root_depth)
            .map(|f| f.bits_per_pixel);
        if !matches!(screen.root_depth, 24 | 32) || bpp != Some(32) {
            return Err(CaptureError::Unsupported(format!(
                "depth {} with {bpp:?} bits per pixel (need depth 24 or 32 at 32 bits per pixel)",
                screen.root_depth
            )));
        }
        let root = screen.root;
        let whole = Monitor {
            name: "screen".into(),
            x: 0,
            y: 0,
            width: screen.width_in_pixels,
            height: screen.height_in_pixels,
            primary: true,
        };
        let mut monitors = list_monitors(&conn, root).unwrap_or_default();
        if monitors.is_empty() {
            monitors.push(whole.clone());
        }
        let current = monitors.iter().position(|m| m.primary).unwrap_or(0);
        let size = usize::from(whole.width) * usize::from(whole.height) * 4;
        let shared = if shared_memory {
            share(&conn, size).ok()
        } else {
            None
        };
        Ok(X11Capture {
            conn,
            root,
            monitors,
            current,
            window: None,
            shared,
        })
    }

    /// The display's monitors.
    pub fn monitors(&self) -> &[Monitor] {
        &self.monitors
    }

    /// The monitor being captured.
    pub fn monitor(&self) -> Option<&Monitor> {
        self.monitors.get(self.current)
    }

    /// Captures monitor `index` from now on.
    pub fn select(&mut self, index: usize) -> Result<(), CaptureError> {
        if index >= self.monitors.len() {
            return Err(CaptureError::NoSuchMonitor {
                index,
                count: self.monitors.len(),
            });
        }
        self.current = index;
        Ok(())
    }

    /// Captures window `window` alone from now on (see the module docs).
    pub fn select_window(&mut self, window: u32) -> Result<(), CaptureError> {
        let refused = |reason: String| CaptureError::Window { window, reason };
        composite::query_version(&self.conn, 0, 2)
            .map_err(conn_err)?
            .reply()
            .map_err(|_| {
                refused("the display has no Composite extension to read one window with".into())
            })?;
        let geometry = xproto::get_geometry(&self.conn, window)
            .map_err(conn_err)?
            .reply()
            .map_err(|_| refused("there is no such window".into()))?;
        if !matches!(geometry.depth, 24 | 32) {
            return Err(refused(format!(
                "it has depth {} (need 24 or 32)",
                geometry.depth
            )));
        }
        // The one captured before is let go first: redirects count, and
        // choosing the same window again must not leave it redirected twice.
        self.drop_window();
        composite::redirect_window(&self.conn, window, composite::Redirect::AUTOMATIC)
            .map_err(conn_err)?
            .check()
            .map_err(|e| refused(e.to_string()))?;
        let pixmap = self.conn.generate_id().map_err(conn_err)?;
        self.window = Some(WindowTarget {
            id: window,
            pixmap,
            named: None,
        });
        Ok(())
    }

    /// Stops capturing a window alone (back to the selected monitor).
    fn drop_window(&mut self) {
        if let Some(w) = self.window.take() {
            if w.named.is_some() {
                let _ = xproto::free_pixmap(&self.conn, w.pixmap);
            }
            let _ = composite::unredirect_window(&self.conn, w.id, composite::Redirect::AUTOMATIC);
            let _ = self.conn.flush();
        }
    }

    /// What to read: the drawable and its rectangle.
    fn area(&mut self) -> Result<(xproto::Drawable, Monitor), CaptureError> {
        let Some(w) = &mut self.window else {
            let m =
                self.monitors
                    .get(self.current)
                    .cloned()
                    .ok_or(CaptureError::NoSuchMonitor {
                        index: self.current,
                        count: self.monitors.len(),
                    })?;
            return Ok((self.root, m));
        };
        let gone = |reason: &str| CaptureError::Window {
            window: w.id,
            reason: reason.into(),
        };
        let g = xproto::get_geometry(&self.conn, w.id)
            .map_err(conn_err)?
            .reply()
            .map_err(|_| gone("it was closed"))?;
        // A window may be made larger than the screen (up to 32767 pixels
        // a side); the picture of one is bounded like the screen's.
        let screen = self.monitors.iter().fold(0usize, |a, m| {
            a.max(usize::from(m.width) * usize::from(m.height))
        });
        let pixels = usize::from(g.width) * usize::from(g.height);
        if pixels > screen.max(MAX_WINDOW_PIXELS) {
            return Err(gone("it is larger than the screen"));
        }
        if w.named != Some((g.width, g.height)) {
            if w.named.take().is_some() {
                xproto::free_pixmap(&self.conn, w.pixmap).map_err(conn_err)?;
            }
            composite::name_window_pixmap(&self.conn, w.id, w.pixmap)
                .map_err(conn_err)?
                .check()
                .map_err(|_| gone("it is not shown"))?;
            w.named = Some((g.width, g.height));
        }
        let area = Monitor {
            name: format!("window {:#x}", w.id),
            x: 0,
            y: 0,
            width: g.width,
            height: g.height,
            primary: false,
        };
        Ok((w.pixmap, area))
    }

    /// Whether captures go through shared memory.
    pub fn uses_shared_memory(&self) -> bool {
        self.shared.is_some()
    }

    /// Captures the selected monitor or window into `out` (resized to width × height × 4,
    /// BGRA); returns width and height.
    pub fn capture(&mut self, out: &mut Vec<u8>) -> Result<(u16, u16), CaptureError> {
        let (drawable, m) = self.area()?;
        let len = usize::from(m.width) * usize::from(m.height) * 4;
        let format = u8::from(ImageFormat::Z_PIXMAP);
        match &self.shared {
            Some(sh) if sh.map.len() >= len => {
                let reply = shm::get_image(
                    &self.conn, drawable, m.x, m.y, m.width, m.height, !0, format, sh.seg, 0,
                )
                .map_err(conn_err)?
                .reply()
                .map_err(conn_err)?;
                let got = usize::try_from(reply.size).unwrap_or(0);
                let pixels = sh
                    .map
                    .get(..len)
                    .filter(|_| got >= len)
                    .ok_or(CaptureError::ShortImage { expected: len, got })?;
                // One pass over the segment: copy and make opaque.
                out.resize(len, 0);
                copy_opaque(out, pixels);
            }
            _ => {
                let reply = xproto::get_image(
                    &self.conn,
                    ImageFormat::Z_PIXMAP,
                    drawable,
                    m.x,
                    m.y,
                    m.width,
                    m.height,
                    !0,
                )
                .map_err(conn_err)?
                .reply()
                .map_err(conn_err)?;
                if reply.data.len() < len {
                    return Err(CaptureError::ShortImage {
                        expected: len,
                        got: reply.data.len(),
                    });
                }
                *out = reply.data;
                out.truncate(len);
                for px in out.chunks_exact_mut(4) {
                    let word = opaque(px);
                    px.copy_from_slice(&word);
                }
            }
        }
        Ok((m.width, m.height))
    }
}

impl Drop for X11Capture {
    fn drop(&mut self) {
        self.drop_window();
    }
}

/// A pixel as captured, with its alpha byte set: X leaves the fourth byte
/// undefined at depth 24. Whole little-endian words, so that the loops
/// around it vectorise.
fn opaque(px: &[u8]) -> [u8; 4] {
    let mut word = [0u8; 4];
    word.copy_from_slice(px);
    (u32::from_le_bytes(word) | 0xff00_0000).to_le_bytes()
}

/// Copies `from` into `to` (as long, or the shorter's length), each pixel
/// made opaque.
fn copy_opaque(to: &mut [u8], from: &[u8]) {
    for (t, f) in to.chunks_exact_mut(4).zip(from.chunks_exact(4)) {
        t.copy_from_slice(&opaque(f));
    }
}

/// The RandR 1.5 monitors, if the server has the extension.
fn list_monitors(
    conn: &RustConnection,
    root: xproto::Window,
) -> Result<Vec<Monitor>, CaptureError> {
    if conn
        .extension_information(randr::X11_EXTENSION_NAME)
        .map_err(conn_err)?
        .is_none()
    {
        return Ok(Vec::new());
    }
    let reply = randr::get_monitors(conn, root, true)
        .map_err(conn_err)?
        .reply()
        .map_err(conn_err)?;
    let mut list = Vec::new();
    for m in reply.monitors {
        let name = xproto::get_atom_name(conn, m.name)
            .map_err(conn_err)?
            .reply()
            .map(|r| String::from_utf8_lossy(&r.name).into_owned())
            .unwrap_or_else(|_| "monitor".into());
        list.push(Monitor {
            name,
            x: m.x,
            y: m.y,
            width: m.width,
            height: m.height,
            primary: m.primary,
        });
    }
    Ok(list)
}

/// A shared-memory segment of `size` bytes made by the server (MIT-SHM 1.2).
fn share(conn: &RustConnection, size: usize) -> Result<Shared, CaptureError> {
    if conn
        .extension_information(shm::X11_EXTENSION_NAME)
        .map_err(conn_err)?
        .is_none()
    {
        return Err(CaptureError::Unsupported("no MIT-SHM".into()));
    }
    let version = shm::query_version(conn)
        .map_err(conn_err)?
        .reply()
        .map_err(conn_err)?;
    if (version.major_version, version.minor_version) < (1, 2) {
        return Err(CaptureError::Unsupported("MIT-SHM older than 1.2".into()));
    }
    let seg = conn.generate_id().map_err(conn_err)?;
    let bytes =
        u32::try_from(size).map_err(|_| CaptureError::Unsupported("screen too large".into()))?;
    let reply = shm::create_segment(conn, seg, bytes, false)
        .map_err(conn_err)?
        .reply()
        .map_err(conn_err)?;
    let file = File::from(reply.shm_fd);
    // SAFETY: the mapping is of a segment made for us alone by the X server,
    // `size` bytes long, and read-only on our side. The server writes into it
    // only while a ShmGetImage request of ours is in progress, and we read it
    // only after that request's reply has arrived, so no read overlaps a
    // write. Nothing else maps the descriptor, and the mapping lives as long
    // as `Shared`, which outlives every slice taken from it.
    #[allow(unsafe_code)]
    let map = unsafe { MmapOptions::new().len(size).map(&file) }
        .map_err(|e| CaptureError::Connection(format!("cannot map the shared segment: {e}")))?;
    Ok(Shared { seg, map })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_pixels_are_made_opaque_and_otherwise_kept() {
        let from: Vec<u8> = (0..=255).collect();
        let mut to = vec![0u8; from.len()];
        copy_opaque(&mut to, &from);
        for (i, (t, f)) in to.iter().zip(&from).enumerate() {
            assert_eq!(*t, if i % 4 == 3 { 0xff } else { *f }, "byte {i}");
        }
    }
}
