//! Shared files in a meeting (R24): kept on the relay, sealed end to end,
//! gone when the session ends.
//!
//! ## Flow
//!
//! 1. The sharer (the master, or a participant holding the file-transfer
//!    right) draws a [`FileKey`] and a [`BlobId`], reads the file once and
//!    uploads it to the relay part by part ([`SharedRequest::Put`]), each
//!    part sealed with the file key ([`FileKey::seal`]); it hashes the
//!    plaintext as it goes. The relay answers [`SharedReply::Stored`] after
//!    the last part.
//! 2. The sharer then announces the file with [`SharedFileInfo`] (name,
//!    size, SHA-256 and the file key) in an
//!    [`AppMessage::SharedFile`](crate::app::AppMessage::SharedFile) under
//!    the pairwise keys: a participant to the master, which checks its right
//!    and names it by the name it admitted it under; the master to every
//!    participant, and to each one it admits later.
//! 3. Any member fetches the parts ([`SharedRequest::Get`]), opens each with
//!    the file key and checks the SHA-256 of the whole before saving it.
//!
//! ## What the relay sees and enforces
//!
//! Sealed parts, their sizes and count, who uploaded them and who fetches
//! them: never a name, a key or a byte of content. It keeps the parts in
//! memory only, accepts them in order from their uploader, and bounds them
//! per file ([`MAX_SHARED_FILE`]), per session and relay-wide (its
//! configuration). It drops a session's files when the session ends, a
//! participant's unfinished upload when it leaves, and a file when its
//! uploader or the master deletes it ([`SharedRequest::Delete`]). It stores
//! nothing when the session's policy does not allow shared files.
//!
//! ## Sealing
//!
//! AES-256-GCM under the file's own random key, so that the key's life is
//! the file's: a participant admitted later gets the keys of the files
//! shared before (the epoch keys it gets open nothing older), and one removed
//! gets no key of a file shared after. The nonce is the part's index (each
//! key seals one file, each index once); the associated data binds the
//! domain label, the session, the blob and the index, and whether the part
//! is the last: the relay cannot swap, reorder, replay across files or cut a
//! file short without the open failing.

use rand_core::CryptoRngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::bounded::{BoundedBytes, BoundedString};
use crate::files::MAX_NAME;
use crate::frame::SessionId;

/// Plaintext bytes per part (the last part of a file may hold fewer).
pub const PART: usize = 128 * 1024;
/// The AES-GCM tag each sealed part carries.
pub const TAG: usize = 16;
/// The largest sealed part.
pub const SEALED_PART: usize = PART + TAG;
/// The largest shared file: 1 GiB (8192 parts).
pub const MAX_SHARED_FILE: u64 = 1 << 30;
/// The most parts of one file.
pub const MAX_PARTS: u32 = (MAX_SHARED_FILE / PART as u64) as u32;
/// Domain label in every part's associated data.
pub const SHARED_DOMAIN: &[u8] = b"conclave/v1/shared-file";

/// A shared file's number on the relay, drawn at random by its uploader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobId(pub u64);

impl core::fmt::Display for BlobId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl core::str::FromStr for BlobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 {
            return Err(format!("{s:?} is not a shared file number (16 hex digits)"));
        }
        u64::from_str_radix(s, 16)
            .map(BlobId)
            .map_err(|_| format!("{s:?} is not a shared file number (16 hex digits)"))
    }
}

/// How many parts a file of `size` bytes takes: at least one, so that an
/// empty file is a single empty last part.
pub fn parts_for(size: u64) -> u32 {
    u32::try_from(size.div_ceil(PART as u64).max(1)).unwrap_or(u32::MAX)
}

/// A client's request to the relay about shared files, inside
/// [`ToRelay::Shared`](crate::stage1::ToRelay::Shared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharedRequest {
    /// Store the next part of a file this member uploads (parts in order
    /// from 0; the first one creates the file).
    Put {
        /// The file.
        blob: BlobId,
        /// The part's index.
        index: u32,
        /// Whether it is the file's last part.
        last: bool,
        /// The sealed part.
        data: BoundedBytes<SEALED_PART>,
    },
    /// Send one part of a stored file.
    Get {
        /// The file.
        blob: BlobId,
        /// The part's index.
        index: u32,
    },
    /// Delete a file (its uploader or the master).
    Delete {
        /// The file.
        blob: BlobId,
    },
}

/// Why the relay refused a shared-file request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SharedRefusalCode {
    /// The session's policy does not allow shared files.
    PolicyForbids,
    /// The session holds as many files or bytes as the relay allows it.
    SessionFull,
    /// The relay holds as many shared bytes as it allows in all.
    RelayFull,
    /// No such file, or not yet complete.
    Unknown,
    /// A part out of order, after the last, or of a file of another member.
    Refused,
}

/// The relay's answer to a [`SharedRequest`], inside
/// [`FromRelay::Shared`](crate::stage1::FromRelay::Shared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharedReply {
    /// The file's last part is stored: it may be announced.
    Stored {
        /// The file.
        blob: BlobId,
        /// Its parts.
        parts: u32,
        /// Its sealed bytes.
        bytes: u64,
    },
    /// A part, as asked for.
    Part {
        /// The file.
        blob: BlobId,
        /// The part's index.
        index: u32,
        /// Whether it is the last.
        last: bool,
        /// The sealed part.
        data: BoundedBytes<SEALED_PART>,
    },
    /// The file was deleted on request.
    Deleted {
        /// The file.
        blob: BlobId,
    },
    /// The request was refused; an upload refused is dropped whole.
    Refused {
        /// The file.
        blob: BlobId,
        /// For programs.
        code: SharedRefusalCode,
        /// For people: what to do.
        message: BoundedString<256>,
    },
}

impl SharedReply {
    /// The file it is about.
    pub fn blob(&self) -> BlobId {
        match self {
            SharedReply::Stored { blob, .. }
            | SharedReply::Part { blob, .. }
            | SharedReply::Deleted { blob }
            | SharedReply::Refused { blob, .. } => *blob,
        }
    }

    /// A refusal (the message cut to 256 bytes at a character boundary).
    pub fn refused(blob: BlobId, code: SharedRefusalCode, message: &str) -> Self {
        SharedReply::Refused {
            blob,
            code,
            message: BoundedString::new(crate::bounded::prefix(message, 256)).unwrap_or_default(),
        }
    }
}

/// The key of one shared file: 32 random bytes, wiped when dropped,
/// compared in constant time.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct FileKey([u8; 32]);

impl core::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl PartialEq for FileKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for FileKey {}

/// Where a part belongs: bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartContext {
    /// The session.
    pub session: SessionId,
    /// The file.
    pub blob: BlobId,
    /// The part's index.
    pub index: u32,
    /// Whether it is the file's last part.
    pub last: bool,
}

impl PartContext {
    fn aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(SHARED_DOMAIN.len() + 21);
        a.extend_from_slice(SHARED_DOMAIN);
        a.extend_from_slice(&self.session.0.to_be_bytes());
        a.extend_from_slice(&self.blob.0.to_be_bytes());
        a.extend_from_slice(&self.index.to_be_bytes());
        a.push(u8::from(self.last));
        a
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; 12];
        for (d, s) in n.iter_mut().skip(8).zip(self.index.to_be_bytes()) {
            *d = s;
        }
        Nonce::assume_unique_for_key(n)
    }
}

/// A part that does not open: altered, moved, or under another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a part of the shared file does not open: it was altered or does not belong there")]
pub struct PartError;

impl FileKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        FileKey(k)
    }

    fn aead(&self) -> Result<LessSafeKey, PartError> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| PartError)
    }

    /// Seals one part (at most [`PART`] bytes of plaintext).
    pub fn seal(&self, at: PartContext, plaintext: &[u8]) -> Result<Vec<u8>, PartError> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG);
        buf.extend_from_slice(plaintext);
        self.aead()?
            .seal_in_place_append_tag(at.nonce(), Aad::from(at.aad()), &mut buf)
            .map_err(|_| PartError)?;
        Ok(buf)
    }

    /// Opens one part sealed for `at`.
    pub fn open(&self, at: PartContext, sealed: &[u8]) -> Result<Vec<u8>, PartError> {
        let mut buf = sealed.to_vec();
        let len = self
            .aead()?
            .open_in_place(at.nonce(), Aad::from(at.aad()), &mut buf)
            .map_err(|_| PartError)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// What a sharer tells the others of a stored file, pairwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFileInfo {
    /// The file on the relay.
    pub blob: BlobId,
    /// Its name (checked like a transferred file's before saving).
    pub name: BoundedString<MAX_NAME>,
    /// Its size in bytes, at most [`MAX_SHARED_FILE`].
    pub size: u64,
    /// SHA-256 of its content.
    pub sha256: [u8; 32],
    /// The key its parts are sealed with.
    pub key: FileKey,
    /// Who shared it: the name the master admitted it under (the master
    /// rewrites what a participant says).
    pub from: BoundedString<64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Message;
    use crate::stage1::{FromRelay, ToRelay};
    use rand_core::OsRng;

    fn at(index: u32, last: bool) -> PartContext {
        PartContext {
            session: SessionId(123_456_789),
            blob: BlobId(42),
            index,
            last,
        }
    }

    #[test]
    fn r24_parts_open_only_where_they_were_sealed() {
        let key = FileKey::generate(&mut OsRng);
        let sealed = key.seal(at(3, false), b"meeting notes").unwrap();
        assert_eq!(sealed.len(), 13 + TAG);
        assert_eq!(key.open(at(3, false), &sealed).unwrap(), b"meeting notes");
        // Another index, the last flag (a file cut short), another blob or
        // session, another key, or a flipped bit: refused.
        assert_eq!(key.open(at(4, false), &sealed), Err(PartError));
        assert_eq!(key.open(at(3, true), &sealed), Err(PartError));
        let mut moved = at(3, false);
        moved.blob = BlobId(43);
        assert_eq!(key.open(moved, &sealed), Err(PartError));
        moved = at(3, false);
        moved.session = SessionId(1);
        assert_eq!(key.open(moved, &sealed), Err(PartError));
        let other = FileKey::generate(&mut OsRng);
        assert_eq!(other.open(at(3, false), &sealed), Err(PartError));
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert_eq!(key.open(at(3, false), &flipped), Err(PartError));
        assert_eq!(key.open(at(3, false), &sealed[..TAG - 1]), Err(PartError));
        assert_ne!(key, other);
        assert_eq!(key, key.clone());
        assert_eq!(format!("{key:?}"), "FileKey(..)");
    }

    #[test]
    fn r24_a_full_part_fits_the_relay_messages() {
        let key = FileKey::generate(&mut OsRng);
        let data = BoundedBytes::new(key.seal(at(0, true), &vec![7u8; PART]).unwrap()).unwrap();
        let put = ToRelay::Shared(SharedRequest::Put {
            blob: BlobId(u64::MAX),
            index: MAX_PARTS,
            last: true,
            data: data.clone(),
        });
        let bytes = put.encode();
        assert!(bytes.len() <= ToRelay::MAX_SIZE);
        assert_eq!(ToRelay::decode(&bytes), Ok(put));
        let part = FromRelay::Shared(SharedReply::Part {
            blob: BlobId(u64::MAX),
            index: MAX_PARTS,
            last: true,
            data,
        });
        let bytes = part.encode();
        assert!(bytes.len() <= FromRelay::MAX_SIZE);
        assert_eq!(FromRelay::decode(&bytes), Ok(part));
    }

    #[test]
    fn r24_part_counts_and_numbers() {
        assert_eq!(parts_for(0), 1);
        assert_eq!(parts_for(1), 1);
        assert_eq!(parts_for(PART as u64), 1);
        assert_eq!(parts_for(PART as u64 + 1), 2);
        assert_eq!(parts_for(MAX_SHARED_FILE), MAX_PARTS);
        assert_eq!("00000000000000ff".parse::<BlobId>(), Ok(BlobId(255)));
        assert_eq!(BlobId(255).to_string(), "00000000000000ff");
        assert!("".parse::<BlobId>().is_err());
        assert!("xyz".parse::<BlobId>().is_err());
        assert!("1".repeat(17).parse::<BlobId>().is_err());
        let refused = SharedReply::refused(BlobId(1), SharedRefusalCode::Unknown, &"é".repeat(200));
        let SharedReply::Refused { message, .. } = refused else {
            unreachable!()
        };
        assert!(message.as_str().len() <= 256);
    }
}
