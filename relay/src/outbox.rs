//! Each peer's bounded outgoing queues.
//!
//! Reliable classes (relay messages, handshake, control, rekey, chat, input,
//! files, clipboard) go to a bounded queue: a unicast sender waits for room
//! for at most [`SEND_TIMEOUT`] (backpressure on that sender alone), and a
//! receiver that stays full is disconnected as too slow, so it never holds the
//! others back. Lossy classes (screen, audio, video) go to a short queue that
//! drops its oldest frame when full: a slow viewer skips frames and gets the
//! newest ones, and nobody else waits. The writer task sends reliable frames
//! first. Frames are `Bytes`, so a broadcast shares one buffer among all
//! receivers.
//!
//! Both queues live in one allocation with what wakes their users, and hold
//! no room while empty: an idle peer costs a few hundred bytes here, where a
//! channel would keep a block of slots.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conclave_protocol::frame::FrameClass;
use conclave_transport::conn::FrameSource;
use tokio::sync::{Notify, Semaphore, TryAcquireError};
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
struct Queues {
    reliable: VecDeque<Bytes>,
    lossy: VecDeque<Bytes>,
}

/// What the senders and the writer share.
#[derive(Debug)]
struct Shared {
    queues: Mutex<Queues>,
    /// A permit per free place in the reliable queue; closed when the
    /// writer is gone.
    room: Semaphore,
    /// Wakes the writer: a frame was queued, or the peer closed.
    ready: Notify,
    closed: CancellationToken,
    /// Live [`Outbox`] handles: the last one dropped closes the peer.
    senders: AtomicUsize,
}

/// The sending side of a peer's queues; cheap to clone.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
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
    shared: Arc<Shared>,
}

/// A peer's queues: the sending side for the hub, the receiving side for its
/// writer. `closed` closes the peer when cancelled: a child of the relay's
/// token closes it when the relay stops.
pub fn outbox(closed: CancellationToken) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queues: Mutex::default(),
        room: Semaphore::new(RELIABLE_DEPTH),
        ready: Notify::new(),
        closed,
        senders: AtomicUsize::new(1),
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        OutboxReceiver { shared },
    )
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }
}

impl Outbox {
    /// Queues without waiting: lossy frames replace the oldest; a full
    /// reliable queue closes the peer as too slow.
    pub fn offer(&self, class: FrameClass, frame: Bytes) -> Offer {
        if self.shared.closed.is_cancelled() {
            return Offer::Gone;
        }
        if is_lossy(class) {
            let replaced = match self.shared.queues.lock() {
                Ok(mut q) => {
                    let full = q.lossy.len() >= LOSSY_DEPTH;
                    if full {
                        q.lossy.pop_front();
                    }
                    q.lossy.push_back(frame);
                    full
                }
                Err(_) => return Offer::Gone,
            };
            self.shared.ready.notify_one();
            return if replaced {
                Offer::ReplacedOldest
            } else {
                Offer::Queued
            };
        }
        match self.shared.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.push(frame)
            }
            Err(TryAcquireError::NoPermits) => {
                self.close();
                Offer::TooSlow
            }
            Err(TryAcquireError::Closed) => Offer::Gone,
        }
    }

    /// Queues a reliable frame, waiting up to [`SEND_TIMEOUT`] for room
    /// (backpressure on the one sender); closes the peer if it stays full.
    pub async fn send(&self, class: FrameClass, frame: Bytes) -> Offer {
        if is_lossy(class) {
            return self.offer(class, frame);
        }
        let permit = match self.shared.room.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Offer::Gone,
            Err(TryAcquireError::NoPermits) => {
                // Boxed: waiting is rare, and every caller's future (each
                // peer's task) would otherwise be as large as this wait.
                let room = self.shared.room.acquire();
                match Box::pin(tokio::time::timeout(SEND_TIMEOUT, room)).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Offer::Gone,
                    Err(_) => {
                        self.close();
                        return Offer::TooSlow;
                    }
                }
            }
        };
        permit.forget();
        self.push(frame)
    }

    /// Queues a reliable frame a place was taken for.
    fn push(&self, frame: Bytes) -> Offer {
        match self.shared.queues.lock() {
            Ok(mut q) => q.reliable.push_back(frame),
            Err(_) => return Offer::Gone,
        }
        self.shared.ready.notify_one();
        Offer::Queued
    }

    /// Closes the peer: its writer stops after what is queued.
    pub fn close(&self) {
        self.shared.closed.cancel();
        self.shared.ready.notify_one();
    }

    /// A token cancelled when the peer is closed.
    pub fn closed(&self) -> &CancellationToken {
        &self.shared.closed
    }
}

impl OutboxReceiver {
    /// The next queued frame, reliable ones first.
    fn pop(&self) -> Option<Bytes> {
        let mut q = self.shared.queues.lock().ok()?;
        let Some(frame) = q.reliable.pop_front() else {
            return q.lossy.pop_front();
        };
        if q.reliable.is_empty() {
            // An idle peer holds no room.
            q.reliable.shrink_to_fit();
        }
        drop(q);
        self.shared.room.add_permits(1);
        Some(frame)
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        // Senders waiting for room, and any after them, find the peer gone.
        self.shared.room.close();
    }
}

impl FrameSource for OutboxReceiver {
    // Not an async fn, which would keep a second copy of `self` in its state:
    // this future is in every idle peer's writer task.
    #[allow(clippy::manual_async_fn)]
    fn next_frame(&mut self) -> impl core::future::Future<Output = Option<Bytes>> + Send {
        async move {
            loop {
                if let Some(f) = self.pop() {
                    return Some(f);
                }
                if self.shared.closed.is_cancelled() {
                    return None;
                }
                // Queueing and closing wake the writer (a frame queued or a
                // close since `pop` left a permit in `ready`). A token
                // cancelled from its parent, at the end of the relay's drain,
                // reaches it through the peer's task, which then closes the
                // peer.
                self.shared.ready.notified().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lossy_frames_keep_the_newest() {
        let (tx, mut rx) = outbox(CancellationToken::new());
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
        let (tx, mut rx) = outbox(CancellationToken::new());
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

    #[tokio::test]
    async fn the_last_sender_gone_closes_the_peer_after_what_is_queued() {
        let (tx, mut rx) = outbox(CancellationToken::new());
        let tx2 = tx.clone();
        tx.offer(FrameClass::Chat, Bytes::from_static(b"a"));
        drop(tx);
        assert!(!tx2.closed().is_cancelled());
        drop(tx2);
        assert_eq!(&rx.next_frame().await.unwrap()[..], b"a");
        assert!(rx.next_frame().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_and_a_gone_writer_is_reported() {
        let (tx, mut rx) = outbox(CancellationToken::new());
        for _ in 0..RELIABLE_DEPTH {
            tx.offer(FrameClass::Chat, Bytes::from_static(b"x"));
        }
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(FrameClass::Chat, Bytes::from_static(b"y")).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(&rx.next_frame().await.unwrap()[..], b"x");
        assert_eq!(waiting.await.unwrap(), Offer::Queued);
        drop(rx);
        let y = Bytes::from_static(b"y");
        assert_eq!(tx.send(FrameClass::Chat, y.clone()).await, Offer::Gone);
        assert_eq!(tx.offer(FrameClass::Chat, y), Offer::Gone);
    }

    #[tokio::test]
    async fn stopping_the_relay_closes_the_peer() {
        let relay = CancellationToken::new();
        let (tx, mut rx) = outbox(relay.child_token());
        relay.cancel();
        assert!(tx.closed().is_cancelled());
        assert_eq!(
            tx.offer(FrameClass::Chat, Bytes::from_static(b"x")),
            Offer::Gone
        );
        assert!(rx.next_frame().await.is_none());
    }
}
