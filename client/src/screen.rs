//! The screen pipeline around a session: a presenter thread that captures
//! and encodes, and a viewer thread that decodes.
//!
//! - **Latest frame wins.** The presenter captures a new frame only when the
//!   session has taken the previous one's packets (a channel of one frame),
//!   and the session takes them only while at most
//!   [`SCREEN_BACKLOG`](crate::session::SCREEN_BACKLOG) frames wait to be
//!   written to the relay, i.e. as fast as its relay link drains. So
//!   the frame rate follows the link: on a slow link fewer, fresher frames
//!   are sent, and nothing queues up without bound. [`ShareOptions::max_fps`]
//!   caps the rate when the link is fast (and keeps an idle screen from
//!   costing a core).
//! - **A video's bitrate follows the link too.** A region that changes every
//!   frame is sent as H.264 (`conclave_media::video`) at a target bitrate
//!   the presenter adapts with a [`RateAdapter`]: when waiting for room in
//!   the channel took longer than a frame period (frames were skipped
//!   because the session's send backlog was full), the target is halved,
//!   at most once a second and not below 500 kbit/s; while frames go out
//!   without waiting that long, it rises by 10 % a second up to 16 Mbit/s.
//!   It starts at 4 Mbit/s.
//! - **A new viewer sees the whole picture at once.** The session asks the
//!   presenter for a keyframe when the roster changes and when a viewer
//!   reports a gap.
//! - **Viewer.** Packets go to the decoding thread through a short queue; if
//!   it is full the packet is dropped, the decoder notices the gap and asks
//!   for a keyframe. A viewer accepts screens of at most
//!   [`MAX_VIEWER_PIXELS`]: a presenter cannot make it allocate more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use conclave_media::stream::{
    Codec, RateAdapter, ScreenSource, Shown, StreamDecoder, StreamEncoder, DEFAULT_BITRATE,
};
use conclave_media::{Frame, ScreenSize, SyntheticScreen, Workload};
use tokio::sync::mpsc;

/// The largest screen a viewer accepts: 7680×4320 (8K), 132 MB a canvas.
pub const MAX_VIEWER_PIXELS: u64 = 7680 * 4320;
/// Packets waiting for the decoding thread.
const VIEWER_QUEUE: usize = 32;
/// How often a viewer reports its figures.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Where a presenter's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// An X11 display (`None`: `DISPLAY`) and monitor (`None`: the primary).
    X11 {
        /// The display.
        display: Option<String>,
        /// The monitor's index.
        monitor: Option<usize>,
    },
    /// One window of an X11 display, alone (presenting, R21): nothing that
    /// covers it or lies beside it is shared, and it offers no remote
    /// control (input would land elsewhere when the window moves).
    X11Window {
        /// The display.
        display: Option<String>,
        /// The window's ID (as `xwininfo` shows it).
        window: u32,
    },
    /// A synthetic screen (tests, benchmarks, demonstrations).
    Synthetic {
        /// What it animates.
        workload: Workload,
        /// Its size.
        size: ScreenSize,
    },
}

impl SourceSpec {
    /// Parses `x11`, `x11:DISPLAY`, `x11:DISPLAY:MONITOR`,
    /// `x11:DISPLAY:window=ID` (ID in hex with `0x`, or decimal) or
    /// `synthetic:WORKLOAD[:WIDTHxHEIGHT]` (workloads: typing, scrolling,
    /// dragging, video; default size 1920x1080).
    pub fn parse(text: &str) -> Result<SourceSpec, String> {
        let mut parts = text.split(':');
        match parts.next().unwrap_or_default() {
            "x11" => {
                let rest: Vec<&str> = parts.collect();
                // A display name has a colon of its own (":1"): x11::1:0.
                let (display, monitor) = match rest.as_slice() {
                    [] => (None, None),
                    ["", d] => (Some(format!(":{d}")), None),
                    ["", d, m] => (Some(format!(":{d}")), Some(*m)),
                    [d] => (Some((*d).to_string()), None),
                    [d, m] => (Some((*d).to_string()), Some(*m)),
                    _ => return Err(format!("cannot read the screen {text:?}")),
                };
                if let Some(id) = monitor.and_then(|m| m.strip_prefix("window=")) {
                    let window = match id.strip_prefix("0x") {
                        Some(hex) => u32::from_str_radix(hex, 16),
                        None => id.parse(),
                    }
                    .map_err(|_| format!("{id:?} is not a window ID (like 0x400001)"))?;
                    return Ok(SourceSpec::X11Window { display, window });
                }
                let monitor = monitor
                    .map(|m| {
                        m.parse::<usize>()
                            .map_err(|_| format!("{m:?} is not a monitor number"))
                    })
                    .transpose()?;
                Ok(SourceSpec::X11 { display, monitor })
            }
            "synthetic" => {
                let name = parts.next().unwrap_or("typing");
                let workload = Workload::ALL
                    .into_iter()
                    .find(|w| w.name() == name)
                    .ok_or_else(|| {
                        format!("unknown workload {name:?}: typing, scrolling, dragging or video")
                    })?;
                let size = match parts.next() {
                    None => ScreenSize::new(1920, 1080),
                    Some(s) => {
                        let (w, h) = s
                            .split_once('x')
                            .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
                        let w = w.parse().map_err(|_| format!("bad width {w:?}"))?;
                        let h = h.parse().map_err(|_| format!("bad height {h:?}"))?;
                        ScreenSize::new(w, h)
                    }
                }
                .map_err(|e| e.to_string())?;
                Ok(SourceSpec::Synthetic { workload, size })
            }
            other => Err(format!(
                "unknown screen {other:?}: use x11[:DISPLAY[:MONITOR]], x11:DISPLAY:window=ID or synthetic:WORKLOAD[:WxH]"
            )),
        }
    }

    /// A short description for events.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::X11 { display, monitor } => format!(
                "X11 display {}{}",
                display.as_deref().unwrap_or("$DISPLAY"),
                monitor.map(|m| format!(" monitor {m}")).unwrap_or_default()
            ),
            SourceSpec::X11Window { display, window } => format!(
                "window {window:#x} of X11 display {}",
                display.as_deref().unwrap_or("$DISPLAY")
            ),
            SourceSpec::Synthetic { workload, size } => {
                format!("synthetic {} screen {size}", workload.name())
            }
        }
    }

    /// The X display input goes to, when this is a display.
    pub fn display(&self) -> Option<Option<&str>> {
        match self {
            SourceSpec::X11 { display, .. } => Some(display.as_deref()),
            SourceSpec::X11Window { .. } | SourceSpec::Synthetic { .. } => None,
        }
    }

    /// Opens the source; returns it with the top-left corner of the
    /// captured monitor on its display (where input is aimed).
    fn open(&self) -> Result<Opened, String> {
        match self {
            SourceSpec::X11 { display, monitor } => {
                let source =
                    conclave_desktop::source::X11Source::open(display.as_deref(), *monitor)
                        .map_err(|e| e.to_string())?;
                let origin = source.monitor().map_or((0, 0), |m| (m.x, m.y));
                Ok((Box::new(source), origin))
            }
            SourceSpec::X11Window { display, window } => {
                let source =
                    conclave_desktop::source::X11Source::open_window(display.as_deref(), *window)
                        .map_err(|e| e.to_string())?;
                Ok((Box::new(source), (0, 0)))
            }
            SourceSpec::Synthetic { workload, size } => {
                Ok((Box::new(SyntheticScreen::new(*workload, *size)), (0, 0)))
            }
        }
    }
}

/// An open source, and the top-left corner of its monitor on the display.
type Opened = (Box<dyn ScreenSource>, (i16, i16));

/// What a presenter shares, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOptions {
    /// The screen.
    pub source: SourceSpec,
    /// The codec (the whole-frame baseline only for measurements).
    pub codec: Codec,
    /// The most frames a second.
    pub max_fps: u32,
    /// Whether the tile codec sends a region that changes every frame as
    /// H.264 (lossy there, at an adapted bitrate); otherwise lossless
    /// everywhere.
    pub video: bool,
}

impl ShareOptions {
    /// The tile codec with video regions, at up to 60 frames a second.
    pub fn new(source: SourceSpec) -> Self {
        Self {
            source,
            codec: Codec::Tiles,
            max_fps: 60,
            video: true,
        }
    }
}

/// Microseconds since the Unix epoch.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A running presenter thread; stops when dropped.
#[derive(Debug)]
pub(crate) struct Presenter {
    /// One frame's packets at a time.
    pub(crate) packets: mpsc::Receiver<Result<Vec<Vec<u8>>, String>>,
    keyframe: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Where input is aimed on the display.
    pub(crate) origin: (i16, i16),
}

impl Presenter {
    /// Opens the source and starts capturing.
    pub(crate) fn start(options: &ShareOptions) -> Result<Presenter, String> {
        let (mut source, origin) = options.source.open()?;
        let mut encoder = StreamEncoder::new(options.codec).map_err(|e| e.to_string())?;
        let mut rate = options.video.then(|| RateAdapter::new(DEFAULT_BITRATE));
        encoder.set_video_bitrate(rate.as_ref().map(RateAdapter::bitrate));
        let (tx, packets) = mpsc::channel(1);
        let keyframe = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (want_key, stopping) = (Arc::clone(&keyframe), Arc::clone(&stop));
        let period = Duration::from_secs(1) / options.max_fps.max(1);
        let handle = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("presenter".into())
            .spawn(move || {
                let started = Instant::now();
                let mut next = started;
                while !stopping.load(Ordering::Relaxed) {
                    // Wait for room first, so the frame captured is the newest.
                    let waiting = Instant::now();
                    let Ok(permit) = handle.block_on(tx.reserve()) else {
                        return;
                    };
                    // No room for a whole frame period: frames were skipped
                    // because the session's send backlog was full.
                    let skipped = waiting.elapsed() > period;
                    if let Some(rate) = &mut rate {
                        let at = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        encoder.set_video_bitrate(Some(rate.update(at, skipped)));
                    }
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next = Instant::now() + period;
                    if want_key.swap(false, Ordering::Relaxed) {
                        encoder.request_keyframe();
                    }
                    let encoded =
                        source
                            .next_frame()
                            .map_err(|e| e.to_string())
                            .and_then(|frame| {
                                encoder
                                    .encode(frame, unix_micros())
                                    .map_err(|e| e.to_string())
                            });
                    match encoded {
                        Ok(e) if e.packets.is_empty() => drop(permit),
                        Ok(e) => permit.send(Ok(e.packets)),
                        Err(e) => {
                            permit.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Presenter {
            packets,
            keyframe,
            stop,
            origin,
        })
    }

    /// Makes the next frame a keyframe.
    pub(crate) fn request_keyframe(&self) {
        self.keyframe.store(true, Ordering::Relaxed);
    }
}

impl Drop for Presenter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the channel wakes a thread waiting for room.
        self.packets.close();
    }
}

/// Where a viewer's decoded frames go (a window, a benchmark's probe).
pub trait FrameSink: Send + 'static {
    /// A new whole frame, captured at `captured_us` (presenter's clock).
    fn show(&mut self, frame: &Frame, captured_us: u64);
}

/// What the viewer thread reports to the session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ViewerReport {
    /// The decoder lost track: ask the presenter for a keyframe.
    NeedKeyframe(String),
    /// Figures for the last interval.
    Stats(ViewerStats),
}

/// A viewer's figures over one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewerStats {
    /// Whole frames shown per second.
    pub fps: f64,
    /// Screen bytes received per second.
    pub bytes_per_s: f64,
    /// Mean capture-to-display latency, by the two clocks (meaningful when
    /// they are synchronised, e.g. on one host).
    pub latency_ms: f64,
    /// Its largest value in the interval.
    pub latency_max_ms: f64,
    /// The screen's size.
    pub width: u32,
    /// The screen's height.
    pub height: u32,
}

/// The decoding thread's handle; the thread ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Viewer {
    packets: std::sync::mpsc::SyncSender<Bytes>,
    pub(crate) reports: mpsc::Receiver<ViewerReport>,
}

impl Viewer {
    pub(crate) fn start(mut sink: Option<Box<dyn FrameSink>>) -> Result<Viewer, String> {
        let (packets, rx) = std::sync::mpsc::sync_channel::<Bytes>(VIEWER_QUEUE);
        let (report_tx, reports) = mpsc::channel(16);
        std::thread::Builder::new()
            .name("viewer".into())
            .spawn(move || {
                let mut decoder = StreamDecoder::new(MAX_VIEWER_PIXELS);
                let mut window = Window::new();
                loop {
                    let packet = match rx.recv_timeout(STATS_INTERVAL) {
                        Ok(p) => Some(p),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    if let Some(p) = packet {
                        window.bytes += p.len() as u64;
                        let refused = match decoder.apply(&p) {
                            Ok(Shown::Frame { captured_us }) => {
                                if let Some(frame) = decoder.canvas() {
                                    window.frame(frame, captured_us);
                                    if let Some(s) = sink.as_mut() {
                                        s.show(frame, captured_us);
                                    }
                                }
                                None
                            }
                            Ok(Shown::Nothing) => None,
                            Err(e) => Some(e.to_string()),
                        };
                        // Asked at most every 250 ms, however many packets a
                        // presenter gets wrong.
                        if (refused.is_some() || decoder.needs_keyframe()) && window.may_ask() {
                            let why = refused.unwrap_or_else(|| "waiting for a keyframe".into());
                            let _ = report_tx.try_send(ViewerReport::NeedKeyframe(why));
                        }
                    }
                    if let Some(stats) = window.take_if_due() {
                        let _ = report_tx.try_send(ViewerReport::Stats(stats));
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Viewer { packets, reports })
    }

    /// Hands a packet to the decoder; drops it when the decoder is behind
    /// (the decoder then asks for a keyframe).
    pub(crate) fn offer(&self, packet: Bytes) {
        let _ = self.packets.try_send(packet);
    }
}

/// Counters for one reporting interval.
struct Window {
    since: Instant,
    frames: u64,
    bytes: u64,
    latency_sum_ms: f64,
    latency_max_ms: f64,
    size: (u32, u32),
    last_ask: Option<Instant>,
}

impl Window {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            frames: 0,
            bytes: 0,
            latency_sum_ms: 0.0,
            latency_max_ms: 0.0,
            size: (0, 0),
            last_ask: None,
        }
    }

    fn frame(&mut self, frame: &Frame, captured_us: u64) {
        self.frames += 1;
        self.size = (frame.width(), frame.height());
        let latency = unix_micros().saturating_sub(captured_us) as f64 / 1_000.0;
        self.latency_sum_ms += latency;
        self.latency_max_ms = self.latency_max_ms.max(latency);
    }

    /// Keyframe requests at most every 250 ms.
    fn may_ask(&mut self) -> bool {
        let due = self
            .last_ask
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(250));
        if due {
            self.last_ask = Some(Instant::now());
        }
        due
    }

    fn take_if_due(&mut self) -> Option<ViewerStats> {
        let elapsed = self.since.elapsed();
        if elapsed < STATS_INTERVAL {
            return None;
        }
        let secs = elapsed.as_secs_f64();
        let stats = (self.frames > 0 || self.bytes > 0).then(|| ViewerStats {
            fps: self.frames as f64 / secs,
            bytes_per_s: self.bytes as f64 / secs,
            latency_ms: if self.frames > 0 {
                self.latency_sum_ms / self.frames as f64
            } else {
                0.0
            },
            latency_max_ms: self.latency_max_ms,
            width: self.size.0,
            height: self.size.1,
        });
        let last_ask = self.last_ask;
        let size = self.size;
        *self = Window::new();
        self.last_ask = last_ask;
        self.size = size;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screens_are_named_the_way_the_help_says() {
        assert_eq!(
            SourceSpec::parse("x11"),
            Ok(SourceSpec::X11 {
                display: None,
                monitor: None
            })
        );
        assert_eq!(
            SourceSpec::parse("x11::5:1"),
            Ok(SourceSpec::X11 {
                display: Some(":5".into()),
                monitor: Some(1)
            })
        );
        assert_eq!(
            SourceSpec::parse("x11::5:window=0x400001"),
            Ok(SourceSpec::X11Window {
                display: Some(":5".into()),
                window: 0x40_0001
            })
        );
        assert_eq!(
            SourceSpec::parse("x11::5:window=77"),
            Ok(SourceSpec::X11Window {
                display: Some(":5".into()),
                window: 77
            })
        );
        assert!(SourceSpec::parse("x11::5:window=0xzz")
            .unwrap_err()
            .contains("not a window ID"));
        // A shared window is for presenting: it offers no display to control.
        let window = SourceSpec::parse("x11::5:window=77").unwrap();
        assert_eq!(window.display(), None);
        assert_eq!(
            SourceSpec::parse("synthetic:scrolling:800x600"),
            Ok(SourceSpec::Synthetic {
                workload: Workload::Scrolling,
                size: ScreenSize::new(800, 600).unwrap()
            })
        );
        assert!(SourceSpec::parse("synthetic:juggling")
            .unwrap_err()
            .contains("unknown workload"));
        assert!(SourceSpec::parse("vnc")
            .unwrap_err()
            .contains("unknown screen"));
        assert!(SourceSpec::parse("synthetic:video:0x5").is_err());
    }
}
