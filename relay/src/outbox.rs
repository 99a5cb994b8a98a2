//! Each peer's bounded outgoing queues.
//!
//! Reliable classes (relay messages, handshake, control, rekey, chat, input,
//! files, clipboard) go through a bounded channel: a unicast sender waits for
//! room for at most [`SEND_TIMEOUT`] (backpressure on that sender alone), and a
//! receiver that stays full is disconnected as too slow, so it never holds the
//! others back. Lossy classes (screen, audio, video) go to a short queue that
//! drops its oldest frame when full: a slow viewer skips frames and gets the
//! newest ones, and nobody else waits. The writer task sends reliable frames
//! first. Frames are `Bytes`, so a broadcast shares one buffer among all
//! receivers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conclave_protocol::frame::FrameClass;
use conclave_transport::conn::FrameSource;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Reliable frames queued per peer.
pub const RELIABLE_DEPTH: usize = 256;
/// Lossy frames queued per peer.
pub const LOSSY_DEPTH: usize = 8;
/// How long a unicast sender waits for room in a receiver's queue.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether frames of `class` may be dropped under load (latest wins).
pub fn is_lossy(class: FrameClass) -> bool {
    matches!(
        class,
        FrameClass::Screen | FrameClass::Audio | FrameClass::Video
    )
}

#[derive(Debug, Default)]
struct Lossy {
    queue: Mutex<VecDeque<Bytes>>,
    notify: Notify,
}

/// The sending side of a peer's queues; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    reliable: mpsc::Sender<Bytes>,
    lossy: Arc<Lossy>,
    closed: CancellationToken,
}

/// What became of a frame offered to an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// Queued, and the oldest lossy frame was dropped for it.
    ReplacedOldest,
    /// The peer could not keep up and was closed.
    TooSlow,
    /// The peer is gone.
    Gone,
}

/// The writer task's side of a peer's queues.
#[derive(Debug)]
pub struct OutboxReceiver {
    reliable: mpsc::Receiver<Bytes>,
    lossy: Arc<Lossy>,
    closed: CancellationToken,
}

/// A peer's queues: the sending side for the hub, the receiving side for its writer.
pub fn outbox() -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(RELIABLE_DEPTH);
    let lossy = Arc::new(Lossy::default());
    let closed = CancellationToken::new();
    (
        Outbox {
            reliable: tx,
            lossy: lossy.clone(),
            closed: closed.clone(),
        },
        OutboxReceiver {
            reliable: rx,
            lossy,
            closed,
        },
    )
}

impl Outbox {
    /// Queues without waiting: lossy frames replace the oldest; a full
    /// reliable queue closes the peer as too slow.
    pub fn offer(&self, class: FrameClass, frame: Bytes) -> Offer {
        if self.closed.is_cancelled() {
            return Offer::Gone;
        }
        if is_lossy(class) {
            let replaced = match self.lossy.queue.lock() {
                Ok(mut q) => {
                    let full = q.len() >= LOSSY_DEPTH;
                    if full {
                        q.pop_front();
                    }
                    q.push_back(frame);
                    full
                }
                Err(_) => return Offer::Gone,
            };
            self.lossy.notify.notify_one();
            return if replaced {
                Offer::ReplacedOldest
            } else {
                Offer::Queued
            };
        }
        match self.reliable.try_send(frame) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close();
                Offer::TooSlow
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }

    /// Queues a reliable frame, waiting up to [`SEND_TIMEOUT`] for room
    /// (backpressure on the one sender); closes the peer if it stays full.
    pub async fn send(&self, class: FrameClass, frame: Bytes) -> Offer {
        if is_lossy(class) {
            return self.offer(class, frame);
        }
        match tokio::time::timeout(SEND_TIMEOUT, self.reliable.send(frame)).await {
            Ok(Ok(())) => Offer::Queued,
            Ok(Err(_)) => Offer::Gone,
            Err(_) => {
                self.close();
                Offer::TooSlow
            }
        }
    }

    /// Closes the peer: its writer stops after what is queued.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// A token cancelled when the peer is closed.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }
}

impl OutboxReceiver {
    fn pop_lossy(&self) -> Option<Bytes> {
        self.lossy.queue.lock().ok().and_then(|mut q| q.pop_front())
    }
}

impl FrameSource for OutboxReceiver {
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Ok(f) = self.reliable.try_recv() {
                return Some(f);
            }
            if let Some(f) = self.pop_lossy() {
                return Some(f);
            }
            if self.closed.is_cancelled() {
                return None;
            }
            tokio::select! {
                biased;
                f = self.reliable.recv() => return f,
                () = self.lossy.notify.notified() => {}
                () = self.closed.cancelled() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lossy_frames_keep_the_newest() {
        let (tx, mut rx) = outbox();
        for i in 0..20u8 {
            tx.offer(FrameClass::Screen, Bytes::from(vec![i]));
        }
        let mut got = Vec::new();
        for _ in 0..LOSSY_DEPTH {
            got.push(rx.next_frame().await.unwrap()[0]);
        }
        assert_eq!(got, (12..20).collect::<Vec<u8>>());
    }

    #[tokio::test]
    async fn reliable_frames_go_first_and_a_full_queue_closes_the_peer() {
        let (tx, mut rx) = outbox();
        tx.offer(FrameClass::Screen, Bytes::from_static(b"s"));
        tx.offer(FrameClass::Chat, Bytes::from_static(b"c"));
        assert_eq!(&rx.next_frame().await.unwrap()[..], b"c");
        assert_eq!(&rx.next_frame().await.unwrap()[..], b"s");
        for _ in 0..RELIABLE_DEPTH {
            assert_eq!(
                tx.offer(FrameClass::Chat, Bytes::from_static(b"x")),
                Offer::Queued
            );
        }
        assert_eq!(
            tx.offer(FrameClass::Chat, Bytes::from_static(b"x")),
            Offer::TooSlow
        );
        assert!(tx.closed().is_cancelled());
        assert_eq!(
            tx.offer(FrameClass::Chat, Bytes::from_static(b"x")),
            Offer::Gone
        );
    }
}
