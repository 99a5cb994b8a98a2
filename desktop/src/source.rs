//! The X11 capture as a [`ScreenSource`] for the screen pipeline.

use conclave_media::stream::{ScreenSource, SourceError};
use conclave_media::Frame;

use crate::capture::{CaptureError, Monitor, X11Capture};

/// Frames of one X11 monitor or window; the pixel buffer is reused from
/// frame to frame.
#[derive(Debug)]
pub struct X11Source {
    capture: X11Capture,
    frame: Option<Frame>,
}

impl X11Source {
    /// Captures monitor `monitor` (`None`: the primary) of `display`
    /// (`None`: the `DISPLAY` variable), through MIT-SHM when offered.
    pub fn open(display: Option<&str>, monitor: Option<usize>) -> Result<Self, CaptureError> {
        let mut capture = X11Capture::connect(display)?;
        if let Some(index) = monitor {
            capture.select(index)?;
        }
        Ok(Self {
            capture,
            frame: None,
        })
    }

    /// Captures window `window` alone of `display` (see
    /// [`X11Capture::select_window`]).
    pub fn open_window(display: Option<&str>, window: u32) -> Result<Self, CaptureError> {
        let mut capture = X11Capture::connect(display)?;
        capture.select_window(window)?;
        Ok(Self {
            capture,
            frame: None,
        })
    }

    /// The monitor captured.
    pub fn monitor(&self) -> Option<&Monitor> {
        self.capture.monitor()
    }
}

impl ScreenSource for X11Source {
    fn next_frame(&mut self) -> Result<&Frame, SourceError> {
        let mut buf = self.frame.take().map(Frame::into_bytes).unwrap_or_default();
        let (w, h) = self
            .capture
            .capture(&mut buf)
            .map_err(|e| SourceError(e.to_string()))?;
        let frame =
            Frame::new(u32::from(w), u32::from(h), buf).map_err(|e| SourceError(e.to_string()))?;
        Ok(self.frame.insert(frame))
    }
}
