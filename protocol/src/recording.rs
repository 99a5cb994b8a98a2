//! Session recordings (R25): a signed, hash-chained file that a master, or a
//! participant with the recording right, writes locally, that
//! `conclave-master verify-recording` checks and a player replays.
//!
//! A recording is a header followed by records. Most records are *entries*
//! (a screen update, a chat message or a note about the session, each with
//! its time since the start); every so often the recorder adds a signed
//! *checkpoint*. A hash chain runs through the header and every record, and
//! each checkpoint signs the chain value so far with the recorder's Ed25519
//! key, so a checkpoint vouches for every byte before it: nothing before it
//! can be altered, removed, reordered or inserted without the verifier
//! noticing. The last record of a properly finished recording is a
//! checkpoint marked *final*.
//!
//! ## Byte layout
//!
//! All integers are big-endian.
//!
//! ```text
//! header
//! offset size  field
//!  0     12    magic         "CONCLAVE-REC"
//! 12      1    version       FORMAT_VERSION (1); anything else is refused
//! 13      8    session       the session ID
//! 21     32    recorder key  the recorder's Ed25519 public key
//! 53      8    started       Unix time of the start, in seconds
//! 61      1    name length   n, at most MAX_NAME (64)
//! 62      n    name          the recorder's name, UTF-8
//!
//! record (any number, one after another, after the header)
//!  0      1    type          1 entry, 2 checkpoint
//!  1      4    length        L, the body's length: at most MAX_ENTRY_LEN for
//!                            an entry, exactly CHECKPOINT_LEN (105) for a checkpoint
//!  5      L    body
//!
//! entry body
//!  0      8    at            milliseconds since the start; never decreasing
//!  8      1    kind          1 screen update, 2 chat, 3 note
//!  9           content       screen update: one update message of the screen
//!                              codec, the rest of the body (≤ MAX_SCREEN_UPDATE)
//!                            chat: sender's peer ID (4), name length m ≤ 64 (1),
//!                              name (m, UTF-8), text (the rest, UTF-8, ≤ MAX_CHAT)
//!                            note: text (the rest, UTF-8, ≤ MAX_NOTE)
//!
//! checkpoint body (CHECKPOINT_LEN = 105 bytes)
//!  0      1    flags         bit 0: final; the other bits must be zero
//!  1      8    entries       how many entries precede it in the file
//!  9     32    chain         the chain value after the record before it
//! 41     64    signature     Ed25519 by the recorder key over bytes 0..41,
//!                            under the label CHECKPOINT_DOMAIN
//! ```
//!
//! The chain starts from the header and takes in every record, whole (type,
//! length and body), checkpoints included:
//!
//! ```text
//! c0 = SHA-256("conclave/v1/recording-header" ‖ 0x00 ‖ header)
//! ci = SHA-256("conclave/v1/recording-chain" ‖ 0x00 ‖ c(i-1) ‖ record i)
//! ```
//!
//! The signature label is `"conclave/v1/recording-checkpoint" ‖ 0x00` (see
//! [`crate::sign`]), used for nothing else. Chaining the checkpoints too means
//! that removing or duplicating one breaks the chain at the next.
//!
//! ## Writing
//!
//! [`RecordingWriter`] writes the header and, at once, a first checkpoint
//! covering no entries, which signs the header: a file whose first
//! checkpoint is missing proves nothing and is refused. It then adds a
//! checkpoint after an entry when [`CHECKPOINT_EVERY_ENTRIES`] entries or
//! [`CHECKPOINT_EVERY_BYTES`] bytes are not yet covered, or
//! [`CHECKPOINT_EVERY_MS`] of recording time have passed since the last one;
//! whenever the caller asks ([`RecordingWriter::checkpoint`], which also
//! flushes the output); and a final one in [`RecordingWriter::finish`]. The
//! writer reads no clock: an app that wants an idle recording covered calls
//! `checkpoint` on its own timer. Times that go backwards are recorded as the
//! previous entry's time. The file holds the recorder's public key only,
//! never its private key.
//!
//! ## Reading and verifying
//!
//! [`RecordingReader`] checks the file as it goes and yields an entry only
//! once the checkpoint that covers it has verified, so a player never shows
//! altered content; it holds back at most [`CHECKPOINT_EVERY_ENTRIES`]
//! entries or [`MAX_UNSIGNED_BYTES`] bytes, and refuses a file that asks for
//! more. Lengths are checked before anything is allocated. When the file
//! ends without a final checkpoint (the recorder crashed, or the file was
//! cut), the reader yields the complete entries after the last checkpoint
//! with [`Entry::verified`] false, and a player must show them as
//! unverified (or not at all). [`verify`] reads a whole recording and says
//! who signed it, how many entries verified, whether it was finished
//! properly, and what follows the last checkpoint unverified; any mismatch
//! is a [`RecordingError`] that names the byte offsets where it breaks (a
//! hash chain can only tell *that* the bytes between two checkpoints
//! changed, not which of them).
//!
//! ## What a valid signature does and does not prove
//!
//! - It proves that every byte up to the last checkpoint is what the holder
//!   of the recorder key wrote, in that order. It does not prove *who* holds
//!   that key: anyone can write a recording, or re-sign a copy of one, with a
//!   key of their own. Compare the signer with the key you expect
//!   ([`VerifyReport::is_signed_by`], [`VerifyReport::fingerprint`]).
//! - A recording cut at a checkpoint verifies up to that checkpoint and is
//!   reported as not finished; that it *was* finished cannot be proven
//!   without the final checkpoint.
//! - Nothing after the last checkpoint is signed: bytes appended to a
//!   recording that was not finished are reported as unverified, not as an
//!   error. After a final checkpoint, any byte is an error.
//! - The start time, session ID and name are the recorder's claims.
//! - The file is not encrypted: it holds the session's screen and chat in
//!   the clear, and must be kept as carefully as the session itself.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::bounded::{BoundedBytes, BoundedString};
use crate::frame::{PeerId, SessionId};
use crate::sign::{verify_raw, Fingerprint, PublicKey, Signature, SignatureError, SigningIdentity};
use crate::stage2::MAX_CHAT;
use crate::time::UnixTime;

/// The first 12 bytes of every recording.
pub const MAGIC: &[u8; 12] = b"CONCLAVE-REC";
/// The one recording format version this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The longest recorder or chat sender name, in bytes.
pub const MAX_NAME: usize = 64;
/// The longest note, in bytes.
pub const MAX_NOTE: usize = 4_096;
/// The longest screen update: the screen codec's largest update message
/// (256 KiB) with room to spare.
pub const MAX_SCREEN_UPDATE: usize = 256 * 1024 + 4_096;
/// The longest entry body (300 KiB), checked before anything is allocated.
pub const MAX_ENTRY_LEN: usize = 300 * 1024;
/// The length of a checkpoint body.
pub const CHECKPOINT_LEN: usize = CHECKPOINT_SIGNED_LEN + 64;
/// The writer adds a checkpoint once this many entries are not yet covered.
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 64;
/// The writer adds a checkpoint after an entry this many milliseconds (of
/// recording time) or more after the last checkpoint.
pub const CHECKPOINT_EVERY_MS: u64 = 2_000;
/// The writer adds a checkpoint once this many bytes of entries are not yet
/// covered.
pub const CHECKPOINT_EVERY_BYTES: u64 = 4 << 20;
/// The most bytes of entries the reader holds back waiting for a checkpoint:
/// what the writer can leave uncovered, [`CHECKPOINT_EVERY_BYTES`] plus one
/// entry record.
pub const MAX_UNSIGNED_BYTES: u64 =
    CHECKPOINT_EVERY_BYTES + (RECORD_PREFIX_LEN + MAX_ENTRY_LEN) as u64;
/// The label checkpoint signatures are made under (after `conclave/v1/`).
pub const CHECKPOINT_DOMAIN: &str = "recording-checkpoint";
/// The label of the first chain value, over the header.
pub const HEADER_LABEL: &[u8] = b"conclave/v1/recording-header\0";
/// The label of every later chain value, over the previous one and a record.
pub const CHAIN_LABEL: &[u8] = b"conclave/v1/recording-chain\0";

/// Header length without the name.
const HEADER_FIXED_LEN: usize = 62;
/// Offset of the name length in the header.
const NAME_LEN_OFFSET: u64 = 61;
/// Type and length before a record's body.
const RECORD_PREFIX_LEN: usize = 5;
/// The signed part of a checkpoint body: flags, entries, chain.
const CHECKPOINT_SIGNED_LEN: usize = 41;
const RECORD_ENTRY: u8 = 1;
const RECORD_CHECKPOINT: u8 = 2;
const KIND_SCREEN: u8 = 1;
const KIND_CHAT: u8 = 2;
const KIND_NOTE: u8 = 3;
/// Entry body bytes before the content: time and kind.
const ENTRY_HEAD_LEN: usize = 9;
const FLAG_FINAL: u8 = 1;

/// What the header says about a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingHeader {
    /// The session that was recorded.
    pub session: SessionId,
    /// The key every checkpoint is signed with.
    pub recorder: PublicKey,
    /// When the recording started, by the recorder's clock.
    pub started: UnixTime,
    /// The recorder's name, as it gave it.
    pub name: BoundedString<MAX_NAME>,
}

impl RecordingHeader {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_FIXED_LEN + self.name.len());
        v.extend_from_slice(MAGIC);
        v.push(FORMAT_VERSION);
        v.extend_from_slice(&self.session.0.to_be_bytes());
        v.extend_from_slice(&self.recorder.0);
        v.extend_from_slice(&self.started.0.to_be_bytes());
        // The name is at most MAX_NAME (64) bytes.
        v.push(u8::try_from(self.name.len()).unwrap_or(u8::MAX));
        v.extend_from_slice(self.name.as_bytes());
        v
    }
}

/// What one entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryContent {
    /// One update message of the screen codec, as sent in the session.
    ScreenUpdate(BoundedBytes<MAX_SCREEN_UPDATE>),
    /// A chat message.
    Chat {
        /// Who sent it.
        from: PeerId,
        /// The sender's name at the time.
        name: BoundedString<MAX_NAME>,
        /// The message.
        text: BoundedString<MAX_CHAT>,
    },
    /// A session event in words, e.g. "recording started", "Ann joined".
    Note(BoundedString<MAX_NOTE>),
}

/// An entry as the reader yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the recording, from 0.
    pub index: u64,
    /// Milliseconds since the recording started.
    pub at_ms: u64,
    /// What it holds.
    pub content: EntryContent,
    /// Whether a signed checkpoint covers it. Only the entries after the
    /// last checkpoint of a recording that was not finished are unverified;
    /// a player must mark them so.
    pub verified: bool,
}

/// What [`verify`] found (or [`RecordingReader::report`] so far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The header, signed by the first checkpoint.
    pub header: RecordingHeader,
    /// Entries covered by a signed checkpoint.
    pub verified_entries: u64,
    /// Signed checkpoints, the first (which signs the header) included.
    pub checkpoints: u64,
    /// The time of the last verified entry, in milliseconds since the start.
    pub verified_ms: u64,
    /// Whether the recording ends with its final checkpoint. If not, it was
    /// cut short: the recorder crashed, or the file was truncated.
    pub finished: bool,
    /// Complete entries after the last checkpoint: not verified.
    pub unverified_entries: u64,
    /// Bytes after the last checkpoint (those entries and any incomplete
    /// record at the end): not verified.
    pub unverified_bytes: u64,
}

impl VerifyReport {
    /// The key the recording is signed with.
    pub fn signer(&self) -> PublicKey {
        self.header.recorder
    }

    /// The fingerprint of that key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.header.recorder.fingerprint()
    }

    /// Whether the recording is signed by `key` (the one the caller expects).
    pub fn is_signed_by(&self, key: &PublicKey) -> bool {
        self.header.recorder == *key
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "recording of session {} by {:?}, started at Unix time {}",
            self.header.session,
            self.header.name.as_str(),
            self.header.started.0
        )?;
        writeln!(f, "signed by key {}", self.fingerprint())?;
        write!(
            f,
            "{} entries verified ({} ms, {} signed checkpoints); ",
            self.verified_entries, self.verified_ms, self.checkpoints
        )?;
        if self.finished {
            write!(f, "finished properly")
        } else {
            write!(
                f,
                "NOT finished: the recording was cut short (the recorder stopped \
                 without finishing, or the file was truncated); {} entries and {} bytes \
                 after the last checkpoint are NOT verified",
                self.unverified_entries, self.unverified_bytes
            )
        }
    }
}

/// Why a recording was refused. Every variant but [`RecordingError::Io`]
/// is the file's fault: it was damaged or altered, or was never a Conclave
/// recording. Offsets are in bytes from the start of the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Reading the input failed.
    #[error("could not read the recording: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with [`MAGIC`].
    #[error("this is not a Conclave recording: it does not begin with \"CONCLAVE-REC\"")]
    NotARecording,
    /// The file is in another format version.
    #[error("this recording is in format version {0}, which this version of Conclave cannot read: update Conclave")]
    UnsupportedVersion(u8),
    /// The file ends before its first checkpoint, which signs the header.
    #[error("the recording ends at byte {offset}, before its first signed checkpoint: nothing in it can be verified")]
    Truncated {
        /// Where the file ends.
        offset: u64,
    },
    /// A field that cannot be what the writer wrote.
    #[error("the recording is damaged at byte {offset}: {what}; it was altered, or was not written by Conclave")]
    Malformed {
        /// The start of the header field or record at fault.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A record longer than any entry may be; refused before allocating.
    #[error("the record at byte {offset} claims {len} bytes, more than the {MAX_ENTRY_LEN} an entry may hold: the file is damaged")]
    RecordTooLarge {
        /// The start of the record.
        offset: u64,
        /// The length it claims.
        len: u64,
    },
    /// More entries without a checkpoint than the writer ever leaves.
    #[error("more than {CHECKPOINT_EVERY_ENTRIES} entries or {MAX_UNSIGNED_BYTES} bytes without a checkpoint, at byte {offset}: the file was not written by Conclave, or was altered")]
    TooManyUnsigned {
        /// The start of the entry that went over.
        offset: u64,
    },
    /// A checkpoint counts a different number of entries than precede it.
    #[error("the checkpoint at byte {offset} covers {claimed} entries, but {found} precede it: entries were removed or inserted; do not trust this copy")]
    CountMismatch {
        /// The start of the checkpoint.
        offset: u64,
        /// The count it carries.
        claimed: u64,
        /// The entries in the file before it.
        found: u64,
    },
    /// The bytes before a checkpoint are not the ones it was made over.
    #[error("the recording was altered between byte {from} and byte {offset}: the {entries} entries from entry {first_entry} on (or the header or checkpoint before them) are not what the recorder signed; do not trust this copy")]
    ChainMismatch {
        /// The start of the checkpoint that does not match.
        offset: u64,
        /// The end of the previous checkpoint (0 for the first one).
        from: u64,
        /// The index of the first entry it covers.
        first_entry: u64,
        /// How many entries it covers.
        entries: u64,
    },
    /// The recorder key in the header is not a valid Ed25519 key.
    #[error("the recorder key in the header is not a valid Ed25519 key: the header was altered")]
    InvalidRecorderKey,
    /// A checkpoint's signature does not verify under the recorder key.
    #[error("the checkpoint at byte {offset} is not signed by the recorder key {recorder}: the recording was altered; do not trust this copy")]
    BadSignature {
        /// The start of the checkpoint.
        offset: u64,
        /// The key the header names.
        recorder: Fingerprint,
    },
    /// Bytes follow the final checkpoint.
    #[error("data was appended at byte {offset}, after the recording's final checkpoint: the file was altered")]
    TrailingData {
        /// Where the appended data starts.
        offset: u64,
    },
    /// The reader was used again after it returned an error.
    #[error("reading this recording already failed; the error before this one says why")]
    AlreadyFailed,
}

// ---------------------------------------------------------------- chain

fn header_chain(header: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(HEADER_LABEL)
        .chain_update(header)
        .finalize()
        .into()
}

fn chain_step(previous: &[u8; 32], record: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHAIN_LABEL);
    h.update(previous);
    for part in record {
        h.update(part);
    }
    h.finalize().into()
}

fn checkpoint_message(flags: u8, entries: u64, chain: &[u8; 32]) -> [u8; CHECKPOINT_SIGNED_LEN] {
    let mut m = [0u8; CHECKPOINT_SIGNED_LEN];
    let (f, rest) = m.split_at_mut(1);
    let (n, c) = rest.split_at_mut(8);
    f.copy_from_slice(&[flags]);
    n.copy_from_slice(&entries.to_be_bytes());
    c.copy_from_slice(chain);
    m
}

// ---------------------------------------------------------------- writer

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn too_long(what: &str, len: usize, max: usize) -> io::Error {
    invalid_input(format!(
        "the {what} is {len} bytes long; a recording holds at most {max}"
    ))
}

/// Writes a recording to `W` (see the module docs). Dropping it without
/// [`RecordingWriter::finish`] leaves a recording that verifies up to its
/// last checkpoint and is reported as not finished.
pub struct RecordingWriter<W: Write> {
    out: W,
    identity: SigningIdentity,
    chain: [u8; 32],
    entries: u64,
    pending_entries: u64,
    pending_bytes: u64,
    last_at_ms: u64,
    checkpoint_at_ms: u64,
    broken: bool,
}

impl<W: Write> fmt::Debug for RecordingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("recorder", &self.identity.public_key().fingerprint())
            .field("entries", &self.entries)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<W: Write> RecordingWriter<W> {
    /// Starts a recording of `session` by `identity` (named `name`, at most
    /// [`MAX_NAME`] bytes), started at `started`: writes the header and the
    /// first checkpoint, and flushes `out`.
    pub fn new(
        out: W,
        identity: &SigningIdentity,
        session: SessionId,
        name: &str,
        started: UnixTime,
    ) -> io::Result<Self> {
        let name =
            BoundedString::new(name).map_err(|e| too_long("recorder's name", e.len, MAX_NAME))?;
        let header = RecordingHeader {
            session,
            recorder: identity.public_key(),
            started,
            name,
        };
        let bytes = header.encode();
        let mut w = RecordingWriter {
            out,
            identity: SigningIdentity::from_seed(&identity.to_seed()),
            chain: header_chain(&bytes),
            entries: 0,
            pending_entries: 0,
            pending_bytes: 0,
            last_at_ms: 0,
            checkpoint_at_ms: 0,
            broken: false,
        };
        if let Err(e) = w.out.write_all(&bytes) {
            w.broken = true;
            return Err(e);
        }
        w.write_checkpoint(0)?;
        Ok(w)
    }

    /// Records one update message of the screen codec, `at_ms` milliseconds
    /// after the start.
    pub fn screen(&mut self, at_ms: u64, update: &[u8]) -> io::Result<()> {
        if update.len() > MAX_SCREEN_UPDATE {
            return Err(too_long("screen update", update.len(), MAX_SCREEN_UPDATE));
        }
        self.entry(at_ms, KIND_SCREEN, &[], update)
    }

    /// Records a chat message from `from`, named `name`.
    pub fn chat(&mut self, at_ms: u64, from: PeerId, name: &str, text: &str) -> io::Result<()> {
        if name.len() > MAX_NAME {
            return Err(too_long("chat sender's name", name.len(), MAX_NAME));
        }
        if text.len() > MAX_CHAT {
            return Err(too_long("chat message", text.len(), MAX_CHAT));
        }
        let mut extra = Vec::with_capacity(5 + name.len());
        extra.extend_from_slice(&from.0.to_be_bytes());
        extra.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        extra.extend_from_slice(name.as_bytes());
        self.entry(at_ms, KIND_CHAT, &extra, text.as_bytes())
    }

    /// Records a session event in words ("recording started", "Ann joined").
    pub fn note(&mut self, at_ms: u64, text: &str) -> io::Result<()> {
        if text.len() > MAX_NOTE {
            return Err(too_long("note", text.len(), MAX_NOTE));
        }
        self.entry(at_ms, KIND_NOTE, &[], text.as_bytes())
    }

    /// Records `content` (e.g. an entry read from another recording).
    pub fn append(&mut self, at_ms: u64, content: &EntryContent) -> io::Result<()> {
        match content {
            EntryContent::ScreenUpdate(bytes) => self.screen(at_ms, bytes),
            EntryContent::Chat { from, name, text } => self.chat(at_ms, *from, name, text),
            EntryContent::Note(text) => self.note(at_ms, text),
        }
    }

    /// Signs the entries written since the last checkpoint (if any) and
    /// flushes `out`, so that they survive a crash.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        self.usable()?;
        if self.pending_entries > 0 {
            self.write_checkpoint(0)
        } else {
            self.flush_out()
        }
    }

    /// Writes the final checkpoint, flushes, and hands back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_checkpoint(FLAG_FINAL)?;
        Ok(self.out)
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn usable(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier write to this recording failed: it ends at its last checkpoint; start a new recording",
            ));
        }
        Ok(())
    }

    fn flush_out(&mut self) -> io::Result<()> {
        let r = self.out.flush();
        self.broken |= r.is_err();
        r
    }

    /// Writes one record whose body is `head ‖ tail`.
    fn record(&mut self, record_type: u8, head: &[u8], tail: &[u8]) -> io::Result<()> {
        self.usable()?;
        let len = u32::try_from(head.len() + tail.len())
            .map_err(|_| invalid_input("record too long".into()))?;
        let mut first = Vec::with_capacity(RECORD_PREFIX_LEN + head.len());
        first.push(record_type);
        first.extend_from_slice(&len.to_be_bytes());
        first.extend_from_slice(head);
        self.chain = chain_step(&self.chain, &[&first, tail]);
        let r = self
            .out
            .write_all(&first)
            .and_then(|()| self.out.write_all(tail));
        self.broken |= r.is_err();
        r
    }

    fn entry(&mut self, at_ms: u64, kind: u8, extra: &[u8], tail: &[u8]) -> io::Result<()> {
        let at = at_ms.max(self.last_at_ms);
        let mut head = Vec::with_capacity(ENTRY_HEAD_LEN + extra.len());
        head.extend_from_slice(&at.to_be_bytes());
        head.push(kind);
        head.extend_from_slice(extra);
        self.record(RECORD_ENTRY, &head, tail)?;
        self.entries += 1;
        self.pending_entries += 1;
        self.pending_bytes += (RECORD_PREFIX_LEN + head.len() + tail.len()) as u64;
        self.last_at_ms = at;
        if self.pending_entries >= CHECKPOINT_EVERY_ENTRIES
            || self.pending_bytes >= CHECKPOINT_EVERY_BYTES
            || at.saturating_sub(self.checkpoint_at_ms) >= CHECKPOINT_EVERY_MS
        {
            self.write_checkpoint(0)?;
        }
        Ok(())
    }

    fn write_checkpoint(&mut self, flags: u8) -> io::Result<()> {
        let message = checkpoint_message(flags, self.entries, &self.chain);
        let signature = self.identity.sign_raw(CHECKPOINT_DOMAIN, &message);
        self.record(RECORD_CHECKPOINT, &message, &signature.0)?;
        self.pending_entries = 0;
        self.pending_bytes = 0;
        self.checkpoint_at_ms = self.last_at_ms;
        self.flush_out()
    }
}

// ---------------------------------------------------------------- reader

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn fill<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match input.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A cursor over a record body that never reads past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
}

fn text<const N: usize>(
    bytes: &[u8],
    too_long: &'static str,
) -> Result<BoundedString<N>, &'static str> {
    if bytes.len() > N {
        return Err(too_long);
    }
    let s = std::str::from_utf8(bytes).map_err(|_| "text that is not UTF-8")?;
    BoundedString::new(s).map_err(|_| too_long)
}

/// Decodes an entry body into its time and content.
fn parse_entry(mut body: Vec<u8>) -> Result<(u64, EntryContent), &'static str> {
    let mut c = Cursor(&body);
    let at = c
        .u64()
        .ok_or("an entry too short to hold its time and kind")?;
    let kind = c
        .u8()
        .ok_or("an entry too short to hold its time and kind")?;
    let content = match kind {
        KIND_SCREEN => {
            if c.0.len() > MAX_SCREEN_UPDATE {
                return Err("a screen update longer than allowed");
            }
            body.drain(..ENTRY_HEAD_LEN);
            EntryContent::ScreenUpdate(
                BoundedBytes::new(body).map_err(|_| "a screen update longer than allowed")?,
            )
        }
        KIND_CHAT => {
            let from = PeerId(c.u32().ok_or("a chat entry cut short")?);
            let n = c.u8().ok_or("a chat entry cut short")?;
            let name = c.take(usize::from(n)).ok_or("a chat entry cut short")?;
            EntryContent::Chat {
                from,
                name: text(name, "a chat sender's name longer than allowed")?,
                text: text(c.0, "a chat message longer than allowed")?,
            }
        }
        KIND_NOTE => EntryContent::Note(text(c.0, "a note longer than allowed")?),
        _ => return Err("an unknown kind of entry"),
    };
    Ok((at, content))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Reading,
    Finished,
    CutShort,
    Failed,
}

/// Reads a recording, verifying it as it goes (see the module docs): each
/// entry is yielded once a signed checkpoint covers it, and at the end of a
/// recording that was not finished, the entries after the last checkpoint
/// are yielded marked unverified.
pub struct RecordingReader<R: Read> {
    input: R,
    /// Bytes consumed so far.
    offset: u64,
    header: RecordingHeader,
    chain: [u8; 32],
    /// Complete entries read.
    entries: u64,
    last_at_ms: u64,
    /// Entries read and not yet covered by a checkpoint.
    pending: VecDeque<Entry>,
    pending_bytes: u64,
    /// The end of the last checkpoint (0 before the first).
    segment_start: u64,
    /// Entries ready to be yielded.
    ready: VecDeque<Entry>,
    checkpoints: u64,
    verified: u64,
    verified_ms: u64,
    unverified_entries: u64,
    unverified_bytes: u64,
    state: ReadState,
}

impl<R: Read> fmt::Debug for RecordingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingReader")
            .field("header", &self.header)
            .field("offset", &self.offset)
            .field("verified", &self.verified)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<R: Read> RecordingReader<R> {
    /// Reads the header and the first checkpoint, which signs it.
    pub fn new(mut input: R) -> Result<Self, RecordingError> {
        let mut fixed = [0u8; HEADER_FIXED_LEN];
        let n = fill(&mut input, &mut fixed)?;
        let got = fixed.get(..n).unwrap_or_default();
        if !got.iter().zip(MAGIC).all(|(a, b)| a == b) {
            return Err(RecordingError::NotARecording);
        }
        if let Some(&v) = got.get(MAGIC.len()) {
            if v != FORMAT_VERSION {
                return Err(RecordingError::UnsupportedVersion(v));
            }
        }
        if n < HEADER_FIXED_LEN {
            return Err(RecordingError::Truncated { offset: n as u64 });
        }
        let mut c = Cursor(&fixed);
        let _ = c.take(MAGIC.len() + 1);
        let truncated = RecordingError::Truncated { offset: n as u64 };
        let (Some(session), Some(key), Some(started), Some(name_len)) =
            (c.u64(), c.array::<32>(), c.u64(), c.u8())
        else {
            return Err(truncated);
        };
        let name_len = usize::from(name_len);
        if name_len > MAX_NAME {
            return Err(RecordingError::Malformed {
                offset: NAME_LEN_OFFSET,
                what: "a recorder name longer than 64 bytes",
            });
        }
        let mut name = [0u8; MAX_NAME];
        let name = name.get_mut(..name_len).unwrap_or_default();
        let got = fill(&mut input, name)?;
        if got < name_len {
            return Err(RecordingError::Truncated {
                offset: (HEADER_FIXED_LEN + got) as u64,
            });
        }
        let name = text(name, "a recorder name longer than 64 bytes").map_err(|what| {
            RecordingError::Malformed {
                offset: NAME_LEN_OFFSET + 1,
                what,
            }
        })?;
        let header = RecordingHeader {
            session: SessionId(session),
            recorder: PublicKey(key),
            started: UnixTime(started),
            name,
        };
        let mut r = RecordingReader {
            input,
            offset: (HEADER_FIXED_LEN + name_len) as u64,
            chain: header_chain(&header.encode()),
            header,
            entries: 0,
            last_at_ms: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            segment_start: 0,
            ready: VecDeque::new(),
            checkpoints: 0,
            verified: 0,
            verified_ms: 0,
            unverified_entries: 0,
            unverified_bytes: 0,
            state: ReadState::Reading,
        };
        // The first record must be a checkpoint (step refuses anything else),
        // and the end of the input before it is an error.
        r.step()?;
        Ok(r)
    }

    /// The header, signed by the first checkpoint.
    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// The next entry, `None` at the end of the recording, or why the
    /// recording is refused. After an error it returns
    /// [`RecordingError::AlreadyFailed`].
    pub fn next_entry(&mut self) -> Result<Option<Entry>, RecordingError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            match self.state {
                ReadState::Reading => {}
                ReadState::Finished | ReadState::CutShort => return Ok(None),
                ReadState::Failed => return Err(RecordingError::AlreadyFailed),
            }
            if let Err(e) = self.step() {
                self.state = ReadState::Failed;
                self.pending.clear();
                self.ready.clear();
                return Err(e);
            }
        }
    }

    /// What has been verified so far; the whole story once
    /// [`RecordingReader::next_entry`] has returned `None`.
    pub fn report(&self) -> VerifyReport {
        VerifyReport {
            header: self.header.clone(),
            verified_entries: self.verified,
            checkpoints: self.checkpoints,
            verified_ms: self.verified_ms,
            finished: self.state == ReadState::Finished,
            unverified_entries: self.unverified_entries,
            unverified_bytes: self.unverified_bytes,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, RecordingError> {
        let n = fill(&mut self.input, buf)?;
        self.offset += n as u64;
        Ok(n)
    }

    /// The input ended, at a record boundary or inside a record.
    fn end_of_input(&mut self) -> Result<(), RecordingError> {
        if self.checkpoints == 0 {
            return Err(RecordingError::Truncated {
                offset: self.offset,
            });
        }
        self.state = ReadState::CutShort;
        self.unverified_entries = self.pending.len() as u64;
        self.unverified_bytes = self.offset - self.segment_start;
        self.ready.extend(self.pending.drain(..));
        Ok(())
    }

    /// Reads one record.
    fn step(&mut self) -> Result<(), RecordingError> {
        let start = self.offset;
        let mut prefix = [0u8; RECORD_PREFIX_LEN];
        let n = self.fill(&mut prefix)?;
        let [record_type, l0, l1, l2, l3] = prefix;
        if n == 0 {
            return self.end_of_input();
        }
        if record_type != RECORD_ENTRY && record_type != RECORD_CHECKPOINT {
            return Err(RecordingError::Malformed {
                offset: start,
                what: "an unknown type of record",
            });
        }
        if self.checkpoints == 0 && record_type != RECORD_CHECKPOINT {
            return Err(RecordingError::Malformed {
                offset: start,
                what: "no signed checkpoint after the header",
            });
        }
        if n < RECORD_PREFIX_LEN {
            return self.end_of_input();
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        if record_type == RECORD_ENTRY {
            self.entry(start, &prefix, len)
        } else {
            self.checkpoint(start, &prefix, len)
        }
    }

    fn entry(&mut self, start: u64, prefix: &[u8], len: u32) -> Result<(), RecordingError> {
        let len = len as usize;
        if len > MAX_ENTRY_LEN {
            return Err(RecordingError::RecordTooLarge {
                offset: start,
                len: len as u64,
            });
        }
        let mut body = vec![0u8; len];
        if self.fill(&mut body)? < len {
            return self.end_of_input();
        }
        let chain = chain_step(&self.chain, &[prefix, &body]);
        let (at_ms, content) = parse_entry(body).map_err(|what| RecordingError::Malformed {
            offset: start,
            what,
        })?;
        if at_ms < self.last_at_ms {
            return Err(RecordingError::Malformed {
                offset: start,
                what: "an entry earlier than the one before it",
            });
        }
        self.chain = chain;
        self.pending.push_back(Entry {
            index: self.entries,
            at_ms,
            content,
            verified: false,
        });
        self.entries += 1;
        self.last_at_ms = at_ms;
        self.pending_bytes += (RECORD_PREFIX_LEN + len) as u64;
        if self.pending.len() as u64 > CHECKPOINT_EVERY_ENTRIES
            || self.pending_bytes > MAX_UNSIGNED_BYTES
        {
            return Err(RecordingError::TooManyUnsigned { offset: start });
        }
        Ok(())
    }

    fn checkpoint(&mut self, start: u64, prefix: &[u8], len: u32) -> Result<(), RecordingError> {
        if len as usize != CHECKPOINT_LEN {
            return Err(RecordingError::Malformed {
                offset: start,
                what: "a checkpoint of the wrong length",
            });
        }
        let mut body = [0u8; CHECKPOINT_LEN];
        if self.fill(&mut body)? < CHECKPOINT_LEN {
            return self.end_of_input();
        }
        let mut c = Cursor(&body);
        let (Some(flags), Some(claimed), Some(chain), Some(signature)) =
            (c.u8(), c.u64(), c.array::<32>(), c.array::<64>())
        else {
            return self.end_of_input();
        };
        if flags & !FLAG_FINAL != 0 {
            return Err(RecordingError::Malformed {
                offset: start,
                what: "a checkpoint with unknown flags",
            });
        }
        if claimed != self.entries {
            return Err(RecordingError::CountMismatch {
                offset: start,
                claimed,
                found: self.entries,
            });
        }
        if chain != self.chain {
            return Err(RecordingError::ChainMismatch {
                offset: start,
                from: self.segment_start,
                first_entry: self.verified,
                entries: self.entries - self.verified,
            });
        }
        let message = checkpoint_message(flags, claimed, &chain);
        verify_raw(
            &self.header.recorder,
            CHECKPOINT_DOMAIN,
            &message,
            &Signature(signature),
        )
        .map_err(|e| match e {
            SignatureError::InvalidKey => RecordingError::InvalidRecorderKey,
            _ => RecordingError::BadSignature {
                offset: start,
                recorder: self.header.recorder.fingerprint(),
            },
        })?;
        self.chain = chain_step(&self.chain, &[prefix, &body]);
        self.checkpoints += 1;
        self.verified = self.entries;
        self.verified_ms = self.last_at_ms;
        self.segment_start = self.offset;
        self.pending_bytes = 0;
        self.ready.extend(self.pending.drain(..).map(|mut e| {
            e.verified = true;
            e
        }));
        if flags & FLAG_FINAL != 0 {
            let at = self.offset;
            if self.fill(&mut [0u8; 1])? > 0 {
                return Err(RecordingError::TrailingData { offset: at });
            }
            self.state = ReadState::Finished;
        }
        Ok(())
    }
}

/// Reads and verifies a whole recording.
pub fn verify<R: Read>(input: R) -> Result<VerifyReport, RecordingError> {
    let mut r = RecordingReader::new(input)?;
    while r.next_entry()?.is_some() {}
    Ok(r.report())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use proptest::prelude::*;

    const SESSION: SessionId = SessionId(123_456_789);

    fn writer(seed: u64) -> RecordingWriter<Vec<u8>> {
        RecordingWriter::new(
            Vec::new(),
            &fixtures::identity(seed),
            SESSION,
            "Alice Agent",
            fixtures::NOW,
        )
        .unwrap()
    }

    /// A small recording with explicit checkpoints, and where each record ends.
    struct Sample {
        bytes: Vec<u8>,
        /// (end offset, entries covered) of every checkpoint.
        checkpoints: Vec<(usize, u64)>,
        /// End offset of every entry.
        entry_ends: Vec<usize>,
        entries: Vec<(u64, EntryContent)>,
    }

    fn note(s: &str) -> EntryContent {
        EntryContent::Note(BoundedString::new(s).unwrap())
    }

    fn screen(b: &[u8]) -> EntryContent {
        EntryContent::ScreenUpdate(BoundedBytes::new(b.to_vec()).unwrap())
    }

    fn chat(from: u32, name: &str, text: &str) -> EntryContent {
        EntryContent::Chat {
            from: PeerId(from),
            name: BoundedString::new(name).unwrap(),
            text: BoundedString::new(text).unwrap(),
        }
    }

    /// `None` is an explicit checkpoint.
    fn build(seed: u64, script: &[Option<(u64, EntryContent)>]) -> Sample {
        let mut w = writer(seed);
        let mut s = Sample {
            bytes: Vec::new(),
            checkpoints: vec![(w.get_ref().len(), 0)],
            entry_ends: Vec::new(),
            entries: Vec::new(),
        };
        for step in script {
            match step {
                Some((at, content)) => {
                    w.append(*at, content).unwrap();
                    s.entry_ends.push(w.get_ref().len());
                    s.entries.push((*at, content.clone()));
                }
                None => {
                    w.checkpoint().unwrap();
                    s.checkpoints.push((w.get_ref().len(), w.entries()));
                }
            }
        }
        let n = w.entries();
        s.bytes = w.finish().unwrap();
        s.checkpoints.push((s.bytes.len(), n));
        s
    }

    fn sample() -> Sample {
        build(
            2,
            &[
                Some((0, note("recording started"))),
                Some((10, screen(&[1, 2, 3, 4, 5]))),
                Some((20, chat(2, "Bob", "hello"))),
                None,
                Some((30, note("Ann joined"))),
                Some((40, screen(&[6, 7, 8]))),
                None,
                Some((50, screen(&[9; 12]))),
                Some((60, chat(1, "Alice Agent", "bye"))),
            ],
        )
    }

    /// Every entry the reader yields, and how it ended.
    fn read_all(bytes: &[u8]) -> (Vec<Entry>, Result<VerifyReport, RecordingError>) {
        let mut r = match RecordingReader::new(bytes) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let mut out = Vec::new();
        loop {
            match r.next_entry() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return (out, Ok(r.report())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    #[test]
    fn r25_round_trip() {
        let s = sample();
        let (entries, report) = read_all(&s.bytes);
        let report = report.unwrap();
        assert!(report.finished);
        assert_eq!(report.verified_entries, 7);
        assert_eq!(report.checkpoints, 4);
        assert_eq!(report.verified_ms, 60);
        assert_eq!((report.unverified_entries, report.unverified_bytes), (0, 0));
        assert!(report.is_signed_by(&fixtures::identity(2).public_key()));
        assert_eq!(
            report.fingerprint(),
            fixtures::identity(2).public_key().fingerprint()
        );
        assert_eq!(report.header.session, SESSION);
        assert_eq!(report.header.started, fixtures::NOW);
        assert_eq!(report.header.name.as_str(), "Alice Agent");
        let got: Vec<_> = entries
            .iter()
            .map(|e| {
                assert!(e.verified);
                (e.at_ms, e.content.clone())
            })
            .collect();
        assert_eq!(got, s.entries);
        assert!(entries.iter().enumerate().all(|(i, e)| e.index == i as u64));
        assert_eq!(verify(&s.bytes[..]).unwrap(), report);
        assert!(report.to_string().contains("finished properly"));
    }

    #[test]
    fn r25_every_flipped_byte_is_detected() {
        let s = sample();
        for i in 0..s.bytes.len() {
            for mask in [0x01, 0x80] {
                let mut b = s.bytes.clone();
                b[i] ^= mask;
                let (entries, result) = read_all(&b);
                if let Ok(r) = &result {
                    assert!(!r.finished, "byte {i} ^ {mask:#x} went unnoticed");
                    assert!(r.verified_entries < 7, "byte {i} ^ {mask:#x}");
                }
                // Whatever was yielded as verified is exactly what was recorded.
                for e in entries.iter().filter(|e| e.verified) {
                    assert_eq!(
                        (e.at_ms, &e.content),
                        (
                            s.entries[e.index as usize].0,
                            &s.entries[e.index as usize].1
                        ),
                        "byte {i} ^ {mask:#x}: entry {} altered yet verified",
                        e.index
                    );
                }
            }
        }
    }

    #[test]
    fn r25_truncation_verifies_up_to_the_last_checkpoint() {
        let s = sample();
        let first = s.checkpoints[0].0;
        for cut in 0..=s.bytes.len() {
            let result = verify(&s.bytes[..cut]);
            if cut < first {
                assert!(
                    result.is_err(),
                    "cut at {cut}: verified without a checkpoint"
                );
                continue;
            }
            let r = result.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let &(cp_end, covered) = s.checkpoints.iter().rfind(|(end, _)| *end <= cut).unwrap();
            assert_eq!(r.verified_entries, covered, "cut at {cut}");
            assert_eq!(r.finished, cut == s.bytes.len(), "cut at {cut}");
            let tail = s
                .entry_ends
                .iter()
                .filter(|&&e| e > cp_end && e <= cut)
                .count();
            assert_eq!(r.unverified_entries, tail as u64, "cut at {cut}");
            assert_eq!(r.unverified_bytes, (cut - cp_end) as u64, "cut at {cut}");
        }
    }

    #[test]
    fn r25_a_crashed_recording_verifies_to_its_last_checkpoint() {
        let mut w = writer(2);
        w.note(0, "recording started").unwrap();
        w.screen(5, &[1, 2, 3]).unwrap();
        w.checkpoint().unwrap();
        w.note(10, "Ann joined").unwrap();
        w.chat(20, PeerId(3), "Ann", "hi").unwrap();
        let bytes = w.get_ref().clone();
        drop(w);
        let (entries, report) = read_all(&bytes);
        let report = report.unwrap();
        assert!(!report.finished);
        assert_eq!(report.verified_entries, 2);
        assert_eq!(report.unverified_entries, 2);
        assert_eq!(report.verified_ms, 5);
        assert!(report.to_string().contains("2 entries and"));
        let flags: Vec<_> = entries.iter().map(|e| e.verified).collect();
        assert_eq!(flags, [true, true, false, false]);
    }

    #[test]
    fn r25_checkpoints_come_every_64_entries_and_every_2_s() {
        let mut w = writer(2);
        for _ in 0..130 {
            w.note(0, "tick").unwrap();
        }
        let r = verify(&w.get_ref()[..]).unwrap();
        assert_eq!((r.verified_entries, r.unverified_entries), (128, 2));

        let mut w = writer(2);
        w.note(100, "a").unwrap();
        w.note(1_900, "b").unwrap();
        let r = verify(&w.get_ref()[..]).unwrap();
        assert_eq!((r.verified_entries, r.unverified_entries), (0, 2));
        w.note(2_000, "c").unwrap();
        let r = verify(&w.get_ref()[..]).unwrap();
        assert_eq!((r.verified_entries, r.unverified_entries), (3, 0));
    }

    /// The byte range of entry `i`'s record.
    fn entry_range(s: &Sample, i: usize) -> std::ops::Range<usize> {
        let end = s.entry_ends[i];
        // An entry starts where the record before it (entry or checkpoint) ends.
        let start = s
            .entry_ends
            .iter()
            .chain(s.checkpoints.iter().map(|(e, _)| e))
            .copied()
            .filter(|&e| e < end)
            .max()
            .unwrap();
        start..end
    }

    #[test]
    fn r25_reordered_entries_are_detected() {
        // Two notes of the same length at the same time, then the same
        // swapped across a checkpoint.
        let s = build(
            2,
            &[
                Some((5, note("note A"))),
                Some((5, note("note B"))),
                None,
                Some((5, note("note C"))),
            ],
        );
        let (a, b, c) = (entry_range(&s, 0), entry_range(&s, 1), entry_range(&s, 2));
        let mut swapped = s.bytes.clone();
        swapped[a.clone()].copy_from_slice(&s.bytes[b.clone()]);
        swapped[b.clone()].copy_from_slice(&s.bytes[a.clone()]);
        assert!(matches!(
            verify(&swapped[..]),
            Err(RecordingError::ChainMismatch {
                first_entry: 0,
                entries: 2,
                ..
            })
        ));
        let mut across = s.bytes.clone();
        across[a.clone()].copy_from_slice(&s.bytes[c.clone()]);
        across[c].copy_from_slice(&s.bytes[a]);
        assert!(matches!(
            verify(&across[..]),
            Err(RecordingError::ChainMismatch { .. })
        ));
    }

    #[test]
    fn r25_removed_inserted_and_appended_bytes_are_detected() {
        let s = sample();
        // An entry removed.
        let r = entry_range(&s, 1);
        let mut removed = s.bytes.clone();
        removed.drain(r.clone());
        assert!(matches!(
            verify(&removed[..]),
            Err(RecordingError::CountMismatch {
                claimed: 3,
                found: 2,
                ..
            })
        ));
        // An entry duplicated.
        let mut inserted = s.bytes.clone();
        let copy = s.bytes[r.clone()].to_vec();
        inserted.splice(r.end..r.end, copy);
        assert!(matches!(
            verify(&inserted[..]),
            Err(RecordingError::CountMismatch { .. })
        ));
        // A checkpoint in the middle removed: the next one's chain differs.
        let (cp_end, _) = s.checkpoints[1];
        let mut no_checkpoint = s.bytes.clone();
        no_checkpoint.drain(cp_end - RECORD_PREFIX_LEN - CHECKPOINT_LEN..cp_end);
        assert!(matches!(
            verify(&no_checkpoint[..]),
            Err(RecordingError::ChainMismatch { .. })
        ));
        // Bytes appended after the final checkpoint.
        let mut appended = s.bytes.clone();
        appended.push(0);
        assert!(matches!(
            verify(&appended[..]),
            Err(RecordingError::TrailingData { offset }) if offset == s.bytes.len() as u64
        ));
    }

    #[test]
    fn r25_a_recording_re_signed_by_another_key_shows_its_fingerprint() {
        let s = sample();
        let (entries, _) = read_all(&s.bytes);
        let thief = fixtures::identity(9);
        let mut w = RecordingWriter::new(Vec::new(), &thief, SESSION, "Alice Agent", fixtures::NOW)
            .unwrap();
        for e in &entries {
            w.append(e.at_ms, &e.content).unwrap();
        }
        let forged = w.finish().unwrap();
        let original = verify(&s.bytes[..]).unwrap();
        let report = verify(&forged[..]).unwrap();
        assert!(report.finished);
        assert_eq!(report.verified_entries, original.verified_entries);
        assert_ne!(report.fingerprint(), original.fingerprint());
        assert_eq!(report.fingerprint(), thief.public_key().fingerprint());
        assert!(!report.is_signed_by(&fixtures::identity(2).public_key()));
        // Swapping the thief's key into the original header is no shortcut.
        let mut swapped = s.bytes.clone();
        swapped[21..53].copy_from_slice(&thief.public_key().0);
        assert!(verify(&swapped[..]).is_err());
    }

    #[test]
    fn r25_oversized_and_foreign_input_is_refused_before_allocating() {
        let mut w = writer(2);
        w.note(0, "x").unwrap();
        let mut b = w.finish().unwrap();
        // A crashed recording followed by a record claiming 4 GiB.
        let cut = b.len() - RECORD_PREFIX_LEN - CHECKPOINT_LEN;
        b.truncate(cut);
        b.extend_from_slice(&[RECORD_ENTRY, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            verify(&b[..]),
            Err(RecordingError::RecordTooLarge {
                len: 0xffff_ffff,
                ..
            })
        ));
        assert!(matches!(
            verify(&b"GIF89a not a recording at all, not at all, no.............."[..]),
            Err(RecordingError::NotARecording)
        ));
        let mut v2 = writer(2).finish().unwrap();
        v2[12] = 2;
        assert!(matches!(
            verify(&v2[..]),
            Err(RecordingError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            verify(&b""[..]),
            Err(RecordingError::Truncated { offset: 0 })
        ));
    }

    #[test]
    fn r25_more_unsigned_entries_than_the_writer_leaves_are_refused() {
        let mut w = writer(2);
        w.note(0, "x").unwrap();
        w.checkpoint().unwrap();
        let before = w.get_ref().len();
        w.note(0, "y").unwrap();
        let mut b = w.get_ref().clone();
        let record = b[before..].to_vec();
        for _ in 0..CHECKPOINT_EVERY_ENTRIES {
            b.extend_from_slice(&record);
        }
        assert!(matches!(
            verify(&b[..]),
            Err(RecordingError::TooManyUnsigned { .. })
        ));
    }

    #[test]
    fn r25_the_writer_refuses_what_the_reader_would_refuse() {
        let id = fixtures::identity(2);
        let long = "x".repeat(MAX_NAME + 1);
        assert_eq!(
            RecordingWriter::new(Vec::new(), &id, SESSION, &long, fixtures::NOW)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let mut w = writer(2);
        assert!(w.note(0, &"x".repeat(MAX_NOTE + 1)).is_err());
        assert!(w.chat(0, PeerId(2), &long, "hi").is_err());
        assert!(w
            .chat(0, PeerId(2), "Bob", &"x".repeat(MAX_CHAT + 1))
            .is_err());
        assert!(w.screen(0, &vec![0; MAX_SCREEN_UPDATE + 1]).is_err());
        // Refused input writes nothing; the largest screen update fits.
        w.screen(7, &vec![0xab; MAX_SCREEN_UPDATE]).unwrap();
        // Time that goes backwards is recorded as the time before.
        w.note(3, "late").unwrap();
        let (entries, report) = read_all(&w.finish().unwrap());
        assert!(report.unwrap().finished);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].at_ms, 7);
    }

    #[test]
    fn r25_a_failed_write_stops_the_writer() {
        struct Fails(usize);
        impl Write for Fails {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 < b.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let id = fixtures::identity(2);
        let mut w = RecordingWriter::new(Fails(200), &id, SESSION, "A", fixtures::NOW).unwrap();
        assert!(w.screen(0, &[0; 100]).is_err());
        assert!(w.note(1, "x").is_err());
        assert!(w.finish().is_err());
    }

    fn content() -> impl Strategy<Value = EntryContent> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| screen(&b)),
            (any::<u32>(), "\\PC{0,16}", "\\PC{0,40}").prop_map(|(f, n, t)| chat(f, &n, &t)),
            "\\PC{0,40}".prop_map(|t| note(&t)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn r25_any_recording_round_trips(
            steps in proptest::collection::vec((0u64..1_500, content(), any::<bool>()), 0..150),
            name in "\\PC{0,16}",
            session in any::<u64>(),
        ) {
            let id = fixtures::identity(4);
            let mut w = RecordingWriter::new(Vec::new(), &id, SessionId(session), &name, UnixTime(7)).unwrap();
            let mut at = 0;
            let mut expected = Vec::new();
            for (dt, c, checkpoint) in &steps {
                at += dt;
                w.append(at, c).unwrap();
                expected.push((at, c.clone()));
                if *checkpoint && at % 7 == 0 {
                    w.checkpoint().unwrap();
                }
            }
            let bytes = w.finish().unwrap();
            let (entries, report) = read_all(&bytes);
            let report = report.unwrap();
            prop_assert!(report.finished);
            prop_assert_eq!(report.verified_entries, steps.len() as u64);
            prop_assert_eq!(report.header.name.as_str(), name.as_str());
            prop_assert_eq!(report.header.session, SessionId(session));
            prop_assert!(entries.iter().all(|e| e.verified));
            let got: Vec<_> = entries.into_iter().map(|e| (e.at_ms, e.content)).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
