//! Shared files (R24) as the relay keeps them: sealed parts in memory,
//! bounded per file, per session and across the relay, and dropped with the
//! session. The relay cannot open them; see [`conclave_protocol::shared`].
//!
//! A file's parts arrive in order from the member that uploads it; the
//! file can be fetched once its last part is in. Bytes are counted against
//! the relay-wide bound as they arrive (a reservation on a shared
//! counter), so that many sessions uploading at once cannot together pass
//! it; a refused upload is dropped whole and gives its bytes back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use conclave_protocol::bounded::BoundedBytes;
use conclave_protocol::frame::PeerId;
use conclave_protocol::shared::{
    BlobId, SharedRefusalCode as Code, SharedReply, SharedRequest, MAX_PARTS, SEALED_PART, TAG,
};

/// The bounds on shared files, from the relay's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedLimits {
    /// Sealed bytes one session may keep.
    pub per_session: u64,
    /// Files one session may keep (finished or not).
    pub files_per_session: usize,
    /// Sealed bytes all sessions together may keep.
    pub total: u64,
}

/// Bytes counted against the relay-wide bound; given back when dropped.
#[derive(Debug)]
struct Reservation {
    counter: Arc<AtomicU64>,
    bytes: u64,
}

impl Reservation {
    /// Adds `more` bytes if the total stays within `limit`.
    fn grow(&mut self, more: u64, limit: u64) -> bool {
        let ok = self
            .counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(more).filter(|n| *n <= limit)
            })
            .is_ok();
        if ok {
            self.bytes += more;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Blob {
    owner: PeerId,
    parts: Vec<Bytes>,
    complete: bool,
    reserved: Reservation,
}

/// One session's shared files.
#[derive(Debug)]
pub struct SharedStore {
    blobs: BTreeMap<BlobId, Blob>,
    limits: SharedLimits,
    /// The relay-wide count of stored bytes.
    total: Arc<AtomicU64>,
}

/// What a request asks the relay to send: `None` when nothing is answered
/// (a part stored that is not the last).
pub type Answer = Option<SharedReply>;

impl SharedStore {
    /// An empty store counting into the relay-wide `total`.
    pub fn new(limits: SharedLimits, total: Arc<AtomicU64>) -> Self {
        SharedStore {
            blobs: BTreeMap::new(),
            limits,
            total,
        }
    }

    /// Sealed bytes this session keeps.
    pub fn bytes(&self) -> u64 {
        self.blobs.values().map(|b| b.reserved.bytes).sum()
    }

    /// Handles `peer`'s request. `allowed` is the session's policy on
    /// shared files.
    pub fn handle(&mut self, peer: PeerId, allowed: bool, request: SharedRequest) -> Answer {
        match request {
            SharedRequest::Put {
                blob,
                index,
                last,
                data,
            } => self.put(peer, allowed, blob, index, last, data),
            SharedRequest::Get { blob, index } => Some(self.get(blob, index)),
            SharedRequest::Delete { blob } => Some(self.delete(peer, blob)),
        }
    }

    fn put(
        &mut self,
        peer: PeerId,
        allowed: bool,
        blob: BlobId,
        index: u32,
        last: bool,
        data: BoundedBytes<SEALED_PART>,
    ) -> Answer {
        let refuse = |code, message: &str| Some(SharedReply::refused(blob, code, message));
        if !allowed {
            return refuse(
                Code::PolicyForbids,
                "shared files are disabled by this session's policy",
            );
        }
        if index == 0 && !self.blobs.contains_key(&blob) {
            if self.blobs.len() >= self.limits.files_per_session {
                return refuse(
                    Code::SessionFull,
                    &format!(
                        "this session already keeps {} shared files: delete one first",
                        self.limits.files_per_session
                    ),
                );
            }
            self.blobs.insert(
                blob,
                Blob {
                    owner: peer,
                    parts: Vec::new(),
                    complete: false,
                    reserved: Reservation {
                        counter: self.total.clone(),
                        bytes: 0,
                    },
                },
            );
        }
        let session_bytes = self.bytes();
        let Some(b) = self.blobs.get_mut(&blob) else {
            return refuse(Code::Refused, "a shared file must start with part 0");
        };
        if b.owner != peer || b.complete || usize::try_from(index).ok() != Some(b.parts.len()) {
            // Another member's file, a finished one, or a part out of
            // order: refused, and the uploader's own unfinished file with it.
            if b.owner == peer && !b.complete {
                self.blobs.remove(&blob);
            }
            return refuse(
                Code::Refused,
                "shared-file parts must come in order from their uploader, before the last",
            );
        }
        // A part holds at least its tag, and every part but the last is
        // full: a file cannot be spread over many tiny parts whose
        // bookkeeping the byte bounds would not count.
        let len = data.as_slice().len() as u64;
        let sized = if last {
            len >= TAG as u64
        } else {
            len == SEALED_PART as u64
        };
        if !sized {
            self.blobs.remove(&blob);
            return refuse(
                Code::Refused,
                "a shared-file part must be full, or hold at least its tag when it is the last",
            );
        }
        let within_session = session_bytes
            .checked_add(len)
            .is_some_and(|n| n <= self.limits.per_session);
        let (code, message) = if index >= MAX_PARTS {
            (Code::Refused, "the shared file is larger than 1 GiB")
        } else if !within_session {
            (
                Code::SessionFull,
                "this session's shared files have reached the relay's size limit: delete some first",
            )
        } else if !b.reserved.grow(len, self.limits.total) {
            (
                Code::RelayFull,
                "this relay holds as many shared files as it can: try again later",
            )
        } else {
            b.parts.push(Bytes::from(data.into_inner()));
            if !last {
                return None;
            }
            b.complete = true;
            return Some(SharedReply::Stored {
                blob,
                parts: index + 1,
                bytes: b.reserved.bytes,
            });
        };
        self.blobs.remove(&blob);
        refuse(code, message)
    }

    fn get(&self, blob: BlobId, index: u32) -> SharedReply {
        let Some(b) = self.blobs.get(&blob).filter(|b| b.complete) else {
            return SharedReply::refused(
                blob,
                Code::Unknown,
                "no such shared file in this session: it was deleted, or its upload has not finished",
            );
        };
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        match b.parts.get(i) {
            Some(part) => SharedReply::Part {
                blob,
                index,
                last: i + 1 == b.parts.len(),
                data: BoundedBytes::new(part.to_vec()).unwrap_or_default(),
            },
            None => SharedReply::refused(blob, Code::Unknown, "the shared file has no such part"),
        }
    }

    fn delete(&mut self, peer: PeerId, blob: BlobId) -> SharedReply {
        match self.blobs.get(&blob) {
            Some(b) if b.owner == peer || peer == PeerId::MASTER => {
                self.blobs.remove(&blob);
                SharedReply::Deleted { blob }
            }
            Some(_) => SharedReply::refused(
                blob,
                Code::Refused,
                "only its uploader or the moderator can delete a shared file",
            ),
            None => {
                SharedReply::refused(blob, Code::Unknown, "no such shared file in this session")
            }
        }
    }

    /// Drops the unfinished uploads of a member that left.
    pub fn left(&mut self, peer: PeerId) {
        self.blobs.retain(|_, b| b.complete || b.owner != peer);
    }

    /// Drops every file (the session ended).
    pub fn clear(&mut self) {
        self.blobs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: PeerId = PeerId(2);
    const BOB: PeerId = PeerId(3);
    const FULL: usize = SEALED_PART;

    fn store(per_session: u64, files: usize, total: &Arc<AtomicU64>, limit: u64) -> SharedStore {
        SharedStore::new(
            SharedLimits {
                per_session,
                files_per_session: files,
                total: limit,
            },
            total.clone(),
        )
    }

    /// Part `index` of `blob`: full unless it is the last, which holds `len`.
    fn put(blob: u64, index: u32, last: bool, len: usize) -> SharedRequest {
        let len = if last { len } else { FULL };
        SharedRequest::Put {
            blob: BlobId(blob),
            index,
            last,
            data: BoundedBytes::new(vec![index as u8; len]).unwrap(),
        }
    }

    fn code(a: Answer) -> Option<Code> {
        match a {
            Some(SharedReply::Refused { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn r24_stored_in_order_and_fetched_back() {
        let total = Arc::new(AtomicU64::new(0));
        let mut s = store(1 << 20, 4, &total, 1 << 20);
        assert_eq!(s.handle(ALICE, true, put(1, 0, false, 100)), None);
        // Not fetchable before the last part.
        assert_eq!(
            code(s.handle(
                BOB,
                true,
                SharedRequest::Get {
                    blob: BlobId(1),
                    index: 0
                }
            )),
            Some(Code::Unknown)
        );
        assert_eq!(
            s.handle(ALICE, true, put(1, 1, true, 50)),
            Some(SharedReply::Stored {
                blob: BlobId(1),
                parts: 2,
                bytes: FULL as u64 + 50
            })
        );
        assert_eq!(total.load(Ordering::Relaxed), FULL as u64 + 50);
        let Some(SharedReply::Part {
            index, last, data, ..
        }) = s.handle(
            BOB,
            true,
            SharedRequest::Get {
                blob: BlobId(1),
                index: 1,
            },
        )
        else {
            panic!("no part")
        };
        assert_eq!((index, last, data.as_slice()), (1, true, &[1u8; 50][..]));
        assert_eq!(
            code(s.handle(
                BOB,
                true,
                SharedRequest::Get {
                    blob: BlobId(1),
                    index: 2
                }
            )),
            Some(Code::Unknown)
        );
        // Another member cannot delete it; the master can.
        assert_eq!(
            code(s.handle(BOB, true, SharedRequest::Delete { blob: BlobId(1) })),
            Some(Code::Refused)
        );
        assert_eq!(
            s.handle(
                PeerId::MASTER,
                true,
                SharedRequest::Delete { blob: BlobId(1) }
            ),
            Some(SharedReply::Deleted { blob: BlobId(1) })
        );
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn r24_parts_out_of_order_or_from_another_member_are_refused() {
        let total = Arc::new(AtomicU64::new(0));
        let mut s = store(1 << 20, 4, &total, 1 << 20);
        assert_eq!(
            code(s.handle(ALICE, true, put(1, 1, false, 10))),
            Some(Code::Refused)
        );
        assert_eq!(s.handle(ALICE, true, put(1, 0, false, 10)), None);
        assert_eq!(
            code(s.handle(BOB, true, put(1, 1, true, 10))),
            Some(Code::Refused)
        );
        // Bob's attempt did not spoil Alice's upload…
        assert!(s
            .handle(ALICE, true, put(1, 1, true, 16))
            .is_some_and(|r| matches!(r, SharedReply::Stored { .. })));
        // …and nothing more goes into a finished file.
        assert_eq!(
            code(s.handle(ALICE, true, put(1, 2, true, 10))),
            Some(Code::Refused)
        );
        // A skipped part drops the uploader's unfinished file whole.
        assert_eq!(s.handle(ALICE, true, put(2, 0, false, 10)), None);
        assert_eq!(
            code(s.handle(ALICE, true, put(2, 2, true, 10))),
            Some(Code::Refused)
        );
        assert_eq!(total.load(Ordering::Relaxed), FULL as u64 + 16);
    }

    #[test]
    fn r24_parts_that_are_short_or_not_full_are_refused() {
        let total = Arc::new(AtomicU64::new(0));
        let mut s = store(1 << 20, 4, &total, 1 << 20);
        // A last part shorter than its tag, even empty.
        for len in [0, TAG - 1] {
            assert_eq!(
                code(s.handle(ALICE, true, put(1, 0, true, len))),
                Some(Code::Refused)
            );
        }
        // A part before the last that is not full drops the upload.
        assert_eq!(s.handle(ALICE, true, put(2, 0, false, 0)), None);
        let short = SharedRequest::Put {
            blob: BlobId(2),
            index: 1,
            last: false,
            data: BoundedBytes::new(vec![0; FULL - 1]).unwrap(),
        };
        assert_eq!(code(s.handle(ALICE, true, short)), Some(Code::Refused));
        assert_eq!(total.load(Ordering::Relaxed), 0);
        assert!(s.handle(ALICE, true, put(3, 0, true, TAG)).is_some());
    }

    #[test]
    fn r24_bounds_per_session_per_relay_and_by_policy() {
        let total = Arc::new(AtomicU64::new(0));
        let mut a = store(100, 2, &total, 150);
        let mut b = store(100, 2, &total, 150);
        assert_eq!(
            code(a.handle(ALICE, false, put(1, 0, true, 10))),
            Some(Code::PolicyForbids)
        );
        assert!(a.handle(ALICE, true, put(1, 0, true, 60)).is_some());
        // The session's 100 bytes: a second file of 60 does not fit.
        assert_eq!(
            code(a.handle(ALICE, true, put(2, 0, true, 60))),
            Some(Code::SessionFull)
        );
        assert!(a.handle(ALICE, true, put(2, 0, true, 40)).is_some());
        // Two files at most.
        assert_eq!(
            code(a.handle(ALICE, true, put(3, 0, true, TAG))),
            Some(Code::SessionFull)
        );
        // The relay's 150 bytes, across sessions.
        assert_eq!(
            code(b.handle(ALICE, true, put(1, 0, true, 60))),
            Some(Code::RelayFull)
        );
        assert!(b.handle(ALICE, true, put(1, 0, true, 50)).is_some());
        assert_eq!(total.load(Ordering::Relaxed), 150);
        // A session's end gives its bytes back.
        a.clear();
        assert_eq!(total.load(Ordering::Relaxed), 50);
        drop(b);
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn r24_a_member_leaving_drops_only_its_unfinished_uploads() {
        let total = Arc::new(AtomicU64::new(0));
        let mut s = store(1 << 20, 4, &total, 1 << 20);
        assert!(s.handle(ALICE, true, put(1, 0, true, 16)).is_some());
        assert_eq!(s.handle(ALICE, true, put(2, 0, false, 0)), None);
        assert_eq!(s.handle(BOB, true, put(3, 0, false, 0)), None);
        s.left(ALICE);
        assert_eq!(total.load(Ordering::Relaxed), 16 + FULL as u64);
        assert!(matches!(
            s.handle(
                BOB,
                true,
                SharedRequest::Get {
                    blob: BlobId(1),
                    index: 0
                }
            ),
            Some(SharedReply::Part { .. })
        ));
    }
}
