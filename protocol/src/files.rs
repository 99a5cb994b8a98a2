//! File transfer (R23): the messages a sender and a receiver exchange, in
//! frames of class [`crate::frame::FrameClass::File`] sealed under the
//! pairwise key of the two parties, so that the relay sees neither names nor
//! contents (it only drops the class when the session's policy forbids
//! transfer).
//!
//! ## Flow
//!
//! The side that has the file (the sender) picks the transfer's `id`, unique
//! among its own transfers to that peer; every message names it. Ids are per
//! direction: a receiver tells its peer's transfers from its own by the kind
//! of message (the table's second column).
//!
//! | message | sent by | meaning |
//! |---|---|---|
//! | [`FileMessage::Offer`] | sender | name, size and SHA-256 of one file; nothing moves before an answer |
//! | [`FileMessage::Accept`] | receiver | the person consented; send from `from_offset` (0, or what a kept partial file already holds) |
//! | [`FileMessage::Decline`] | receiver | the person refused; the transfer is over |
//! | [`FileMessage::Chunk`] | sender | `data` at `offset`; chunks follow each other back to back from `from_offset` |
//! | [`FileMessage::Received`] | receiver | all bytes arrived and their SHA-256 matched the offer; the file is saved |
//! | [`FileMessage::Cancel`] | sender | the sender stops (a person cancelled, the file became unreadable) |
//! | [`FileMessage::Stop`] | receiver | the receiver stops an accepted transfer (a person cancelled, disk full, integrity failure, rule broken) |
//!
//! ```text
//! sender                                 receiver
//!   Offer { id, name, size, sha256 } ──▶   (asks the person)
//!                                    ◀──   Accept { id, from_offset }   or Decline { id }
//!   Chunk { id, from_offset, … }     ──▶
//!   Chunk { id, …, ends at size }    ──▶   (verifies the SHA-256, saves the file)
//!                                    ◀──   Received { id }
//! ```
//!
//! Every chunk but the last holds exactly [`CHUNK`] bytes and none is empty,
//! except one: when there is nothing left to send at acceptance (an empty
//! file, or a resume whose partial file is already complete), the sender
//! sends a single empty chunk at `offset == size`, so that the receiver
//! always finishes on a chunk.
//!
//! **Resume.** A receiver that keeps the partial file of an interrupted
//! transfer answers a new offer of the same file (same name and SHA-256)
//! with `from_offset` equal to what it holds; the sender skips that much.
//! The final SHA-256 check covers the kept bytes too, so a partial file that
//! does not belong to the offered content fails the check instead of being
//! saved.
//!
//! **Bounds.** A name is at most [`MAX_NAME`] bytes, a chunk at most
//! [`CHUNK`] bytes, a file at most [`MAX_FILE_SIZE`] bytes (checked by the
//! apps on both sides, since the codec cannot), an encoded message at most
//! [`MAX_MESSAGE`] bytes. Every
//! field that comes from the peer is hostile until checked: the receiving
//! app validates the name before it touches the disk and refuses any chunk
//! that is out of order or past the announced size.

use serde::{Deserialize, Serialize};

use crate::bounded::{BoundedBytes, BoundedString};
use crate::codec::Message;

/// The most file data one [`FileMessage::Chunk`] carries: 64 KiB.
pub const CHUNK: usize = 64 * 1024;

/// The longest file name offered, in bytes of UTF-8 (the usual file-system
/// limit for one path component).
pub const MAX_NAME: usize = 255;

/// The largest file that may be offered: 4 GiB.
pub const MAX_FILE_SIZE: u64 = 4 << 30;

/// The longest encoded [`FileMessage`], version byte included: a full chunk
/// plus its variant, id, offset and length prefix (at most 1 + 5 + 10 + 3
/// bytes).
pub const MAX_MESSAGE: usize = CHUNK + 32;

// Every file message fits the plaintext of one sealed frame.
const _: () = assert!(MAX_MESSAGE <= crate::sframe::MAX_PLAINTEXT);

/// Identifies one transfer between two parties; chosen by its sender.
pub type TransferId = u32;

/// The offer of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The transfer.
    pub id: TransferId,
    /// The file's base name, as the sender has it (the receiver validates it).
    pub name: BoundedString<MAX_NAME>,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its whole content.
    pub sha256: [u8; 32],
}

/// Why a transfer ended before completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    /// A person cancelled.
    User,
    /// The sender can no longer read the file (moved, shortened, unreadable).
    SourceUnreadable,
    /// The receiver cannot write the file (disk full, permission denied).
    Storage,
    /// The bytes received do not match the offered SHA-256.
    Integrity,
    /// The other side broke the transfer rules (a refused name, a chunk out
    /// of order or past the end, an unexpected message).
    Protocol,
}

/// One file-transfer message; see the module docs for the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileMessage {
    /// Sender → receiver: a file is offered.
    Offer(Offer),
    /// Receiver → sender: the offer is accepted; send from `from_offset`.
    Accept {
        /// The transfer.
        id: TransferId,
        /// The first byte wanted: 0, or the length of a kept partial file.
        from_offset: u64,
    },
    /// Receiver → sender: the offer is declined.
    Decline {
        /// The transfer.
        id: TransferId,
    },
    /// Sender → receiver: file data.
    Chunk {
        /// The transfer.
        id: TransferId,
        /// Where `data` starts in the file.
        offset: u64,
        /// The bytes.
        data: BoundedBytes<CHUNK>,
    },
    /// Receiver → sender: the file arrived whole and matched its SHA-256.
    Received {
        /// The transfer.
        id: TransferId,
    },
    /// Sender → receiver: the sender gives up.
    Cancel {
        /// The transfer.
        id: TransferId,
        /// Why.
        reason: CancelReason,
    },
    /// Receiver → sender: the receiver gives up an accepted transfer, or
    /// refuses an offer it could not consider (e.g. a refused name).
    Stop {
        /// The transfer.
        id: TransferId,
        /// Why.
        reason: CancelReason,
    },
}

impl FileMessage {
    /// The transfer the message belongs to.
    pub fn id(&self) -> TransferId {
        match self {
            FileMessage::Offer(o) => o.id,
            FileMessage::Accept { id, .. }
            | FileMessage::Decline { id }
            | FileMessage::Chunk { id, .. }
            | FileMessage::Received { id }
            | FileMessage::Cancel { id, .. }
            | FileMessage::Stop { id, .. } => *id,
        }
    }

    /// Whether the file's sender sends this message (and so its id is one of
    /// the peer's transfers to us), as opposed to the receiver.
    pub fn from_sender(&self) -> bool {
        matches!(
            self,
            FileMessage::Offer(_) | FileMessage::Chunk { .. } | FileMessage::Cancel { .. }
        )
    }
}

impl Message for FileMessage {
    const NAME: &'static str = "file message";
    const MAX_SIZE: usize = MAX_MESSAGE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::DecodeError;
    use proptest::prelude::*;

    fn reason() -> impl Strategy<Value = CancelReason> {
        prop_oneof![
            Just(CancelReason::User),
            Just(CancelReason::SourceUnreadable),
            Just(CancelReason::Storage),
            Just(CancelReason::Integrity),
            Just(CancelReason::Protocol),
        ]
    }

    fn message() -> impl Strategy<Value = FileMessage> {
        prop_oneof![
            (
                any::<u32>(),
                "[a-zA-Z0-9 ._äöü€-]{0,80}",
                any::<u64>(),
                any::<[u8; 32]>()
            )
                .prop_map(|(id, name, size, sha256)| FileMessage::Offer(Offer {
                    id,
                    name: BoundedString::new(name).unwrap_or_default(),
                    size,
                    sha256,
                })),
            (any::<u32>(), any::<u64>())
                .prop_map(|(id, from_offset)| FileMessage::Accept { id, from_offset }),
            any::<u32>().prop_map(|id| FileMessage::Decline { id }),
            (
                any::<u32>(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..2048)
            )
                .prop_map(|(id, offset, data)| FileMessage::Chunk {
                    id,
                    offset,
                    data: BoundedBytes::new(data).unwrap_or_default(),
                }),
            any::<u32>().prop_map(|id| FileMessage::Received { id }),
            (any::<u32>(), reason()).prop_map(|(id, reason)| FileMessage::Cancel { id, reason }),
            (any::<u32>(), reason()).prop_map(|(id, reason)| FileMessage::Stop { id, reason }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(m in message()) {
            let bytes = m.encode();
            prop_assert!(bytes.len() <= FileMessage::MAX_SIZE);
            prop_assert_eq!(FileMessage::decode(&bytes), Ok(m));
        }
    }

    /// The largest possible chunk, with the longest id and offset, fits.
    #[test]
    fn full_chunk_fits() {
        let m = FileMessage::Chunk {
            id: u32::MAX,
            offset: u64::MAX,
            data: BoundedBytes::new(vec![0xa5; CHUNK]).unwrap(),
        };
        let bytes = m.encode();
        assert!(bytes.len() <= FileMessage::MAX_SIZE, "{}", bytes.len());
        assert_eq!(FileMessage::decode(&bytes), Ok(m));
    }

    /// A look-alike of [`FileMessage`] without the bounds, to forge over-long
    /// fields the real type cannot hold.
    #[derive(Serialize)]
    #[allow(dead_code)]
    enum Unbounded {
        Offer {
            id: u32,
            name: String,
            size: u64,
            sha256: [u8; 32],
        },
        Accept,
        Decline,
        Chunk {
            id: u32,
            offset: u64,
            data: Vec<u8>,
        },
    }

    #[test]
    fn over_long_fields_are_refused() {
        let chunk = crate::codec::encode(&Unbounded::Chunk {
            id: 1,
            offset: 0,
            data: vec![0; CHUNK + 1],
        });
        assert!(chunk.len() <= FileMessage::MAX_SIZE);
        assert!(matches!(
            FileMessage::decode(&chunk),
            Err(DecodeError::Malformed { .. })
        ));
        let offer = crate::codec::encode(&Unbounded::Offer {
            id: 1,
            name: "n".repeat(MAX_NAME + 1),
            size: 1,
            sha256: [0; 32],
        });
        assert!(matches!(
            FileMessage::decode(&offer),
            Err(DecodeError::Malformed { .. })
        ));
        // The same forgeries within the bounds decode.
        let ok = crate::codec::encode(&Unbounded::Offer {
            id: 1,
            name: "n".repeat(MAX_NAME),
            size: 1,
            sha256: [0; 32],
        });
        assert!(FileMessage::decode(&ok).is_ok());
        assert!(matches!(
            FileMessage::decode(&vec![1; FileMessage::MAX_SIZE + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn direction_and_id() {
        let m = FileMessage::Stop {
            id: 7,
            reason: CancelReason::Storage,
        };
        assert_eq!(m.id(), 7);
        assert!(!m.from_sender());
        assert!(FileMessage::Cancel {
            id: 7,
            reason: CancelReason::User
        }
        .from_sender());
    }
}
