//! The latest decoded screen, handed from a decoder thread to a window.
//!
//! [`LatestFrame`] is a slot, never a queue: the decoder
//! [publishes](LatestFrame::publish) each complete frame, replacing the one
//! before whether or not a window has shown it, and a window
//! [takes](LatestFrame::take_newer) a frame only when its generation is newer
//! than the last one it drew. A window that paints slower than the decoder
//! decodes therefore shows the newest picture and skips the ones between,
//! and a decoder never waits for a window.
//!
//! The pixel buffers go round instead of being allocated per frame: a window
//! gives each taken frame back with [`LatestFrame::recycle`], and the next
//! [`publish`](LatestFrame::publish) copies into it. With one decoder and
//! one window, two buffers of the screen's size exist at steady state.
//!
//! While a window is open, publishing asks it to repaint, so that a new
//! frame is drawn at once rather than at the window's next input event.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use conclave_media::frame::Frame;

/// A cheap-to-clone handle on the newest complete frame of a remote screen.
///
/// Every clone is the same slot: give one to the decoder thread and one to
/// the window.
#[derive(Debug, Clone, Default)]
pub struct LatestFrame {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    /// How many frames have been published; 0 before the first.
    generation: u64,
    /// The newest frame, until a window takes it.
    frame: Option<Frame>,
    /// A buffer the next publish may copy into.
    spare: Option<Vec<u8>>,
    /// The open window's context, to ask for a repaint.
    repaint: Option<eframe::egui::Context>,
}

impl LatestFrame {
    /// An empty slot (generation 0).
    pub fn new() -> LatestFrame {
        LatestFrame::default()
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic elsewhere while holding the lock leaves a slot that is
        // still consistent (every write is one assignment), so go on.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a copy of `frame` as the newest, replacing any frame not yet
    /// taken. The copy goes into a recycled buffer when one is free, and is
    /// made without holding the lock.
    pub fn publish(&self, frame: &Frame) {
        let mut buffer = {
            let mut slot = self.lock();
            slot.frame
                .take()
                .map(Frame::into_bytes)
                .or_else(|| slot.spare.take())
                .unwrap_or_default()
        };
        buffer.clear();
        buffer.extend_from_slice(frame.as_bytes());
        if let Ok(copy) = Frame::from_bgra(frame.size(), buffer) {
            self.publish_owned(copy);
        }
    }

    /// Publishes `frame` as the newest, without copying, replacing any frame
    /// not yet taken (its buffer is kept for reuse).
    pub fn publish_owned(&self, frame: Frame) {
        let repaint = {
            let mut slot = self.lock();
            if let Some(old) = slot.frame.replace(frame) {
                slot.spare = Some(old.into_bytes());
            }
            slot.generation += 1;
            slot.repaint.clone()
        };
        if let Some(ctx) = repaint {
            ctx.request_repaint();
        }
    }

    /// How many frames have been published so far.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Takes the newest frame if its generation is newer than `seen`, with
    /// that generation. `None` when nothing newer was published, or when the
    /// newest frame was already taken.
    pub fn take_newer(&self, seen: u64) -> Option<(u64, Frame)> {
        let mut slot = self.lock();
        if slot.generation <= seen {
            return None;
        }
        let generation = slot.generation;
        slot.frame.take().map(|frame| (generation, frame))
    }

    /// Gives a taken frame's buffer back for the next publish to copy into.
    pub fn recycle(&self, frame: Frame) {
        let mut slot = self.lock();
        if slot.spare.is_none() {
            slot.spare = Some(frame.into_bytes());
        }
    }

    /// Lets publishing ask `ctx` to repaint (`None`: stop asking).
    pub(crate) fn set_repaint(&self, ctx: Option<eframe::egui::Context>) {
        self.lock().repaint = ctx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_media::frame::{Bgra, ScreenSize};

    fn frame(colour: u8) -> Frame {
        Frame::filled(
            ScreenSize::new(4, 2).unwrap(),
            Bgra::rgb(colour, colour, colour),
        )
    }

    #[test]
    fn the_latest_frame_wins_and_is_taken_once() {
        let latest = LatestFrame::new();
        assert_eq!(latest.take_newer(0), None);
        latest.publish(&frame(1));
        latest.publish(&frame(2));
        latest.publish_owned(frame(3));
        assert_eq!(latest.generation(), 3);
        let (generation, got) = latest.take_newer(0).unwrap();
        assert_eq!((generation, got), (3, frame(3)));
        // Taken: nothing newer until the next publish.
        assert_eq!(latest.take_newer(0), None);
        assert_eq!(latest.take_newer(3), None);
        latest.publish(&frame(4));
        assert_eq!(latest.take_newer(2), Some((4, frame(4))));
    }

    #[test]
    fn an_older_generation_is_not_taken_again() {
        let latest = LatestFrame::new();
        latest.publish(&frame(7));
        assert_eq!(latest.take_newer(1), None);
        // Still there for a window that has not seen it.
        assert_eq!(latest.take_newer(0), Some((1, frame(7))));
    }

    #[test]
    fn buffers_are_reused() {
        let latest = LatestFrame::new();
        latest.publish(&frame(1));
        let (_, taken) = latest.take_newer(0).unwrap();
        let pointer = taken.as_bytes().as_ptr();
        latest.recycle(taken);
        latest.publish(&frame(2));
        let (_, again) = latest.take_newer(1).unwrap();
        assert_eq!(again.as_bytes().as_ptr(), pointer);
        assert_eq!(again, frame(2));
    }

    #[test]
    fn clones_share_the_slot() {
        let decoder = LatestFrame::new();
        let window = decoder.clone();
        std::thread::spawn(move || decoder.publish(&frame(9)))
            .join()
            .unwrap();
        assert_eq!(window.take_newer(0), Some((1, frame(9))));
    }
}
