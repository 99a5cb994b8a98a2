//! File transfer (R23) on one side of a pair: the sender's [`Outgoing`],
//! the receiver's [`Incoming`], and the [`Transfers`] table a session keeps
//! of both, over the messages of [`conclave_protocol::files`] (see there for
//! the flow). No networking: the session runtime seals what
//! [`Transfers::poll_transmit`] hands out in `File` frames to the peer and
//! feeds the peer's decoded messages to [`Transfers::handle`]. Whether a
//! transfer may happen at all (the right to transfer files, the customer's
//! consent, the session's policy) is the runtime's decision before it calls
//! these; the per-file consent is [`Incoming::accept`] or
//! [`Incoming::decline`].
//!
//! Every method here does blocking file I/O ([`Outgoing::open`] reads the
//! whole file once to hash it, [`Incoming::accept`] reads a kept partial
//! file once); an async caller runs them on a blocking thread.
//!
//! ## Threat model
//!
//! The peer is authenticated (pairwise keys) but may be malicious or buggy.
//! Whatever it sends, the receiver:
//! - writes nothing before a person accepted the offer, and nothing at all
//!   after a decline;
//! - writes only inside the folder given to [`Incoming::accept`], under a
//!   name that passed [`validate_name`];
//! - never writes beyond the size announced in the offer (itself at most
//!   [`MAX_FILE_SIZE`]), and only chunks that follow each other;
//! - saves a file under its final name only after its SHA-256 matched the
//!   offer, and never over an existing file (it picks `name (1).ext`, …);
//! - never panics.
//!
//! Local attackers who can create links inside the receiving folder are out
//! of scope; the partial file is nonetheless refused when it is not a
//! regular file (a symbolic link, say).
//!
//! ## Partial files and resume
//!
//! An accepted file is written into `dir/<name>.<16 hex digits>.conclave-part`,
//! the digits being the start of the offered SHA-256 (the name part is
//! shortened when needed to stay within 255 bytes). The distinctive suffix
//! means the receiver never mistakes a file of the person's for one of its
//! own, and the hash means only an offer of the same content picks it up
//! again. Cancelling (by either side), a broken rule, a failed write or a
//! dropped connection keep the partial file: a later offer of the same file
//! and name accepted into the same folder resumes from its length. Only an
//! integrity failure deletes it (its content is known to be wrong), and a
//! successful save moves it to the final name.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use conclave_protocol::bounded::{prefix, BoundedBytes, BoundedString};
use conclave_protocol::files::{
    CancelReason, FileMessage, Offer, TransferId, CHUNK, MAX_FILE_SIZE, MAX_NAME,
};
use sha2::{Digest, Sha256};

/// The suffix of partial files, after the name and 16 hex digits of the
/// offered SHA-256.
pub const PART_SUFFIX: &str = ".conclave-part";

/// Incoming transfers one peer may have open (offered or under way); more
/// offers are refused.
pub const MAX_OPEN_INCOMING: usize = 32;

/// How many numbered names (`name (1).ext` …) are tried before a save gives up.
pub const MAX_NAME_ATTEMPTS: u32 = 10_000;

/// Why a file operation failed. Variants say whose fault it was: this side's
/// file system or person, or the peer; see [`FileError::is_peer_fault`].
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file to send could not be read (this side).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The path to send is a directory, a device or another special file
    /// (this side).
    #[error("{} is not a regular file: choose a file to send", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file to send is larger than [`MAX_FILE_SIZE`] (this side).
    #[error("{} is {size} bytes; at most {MAX_FILE_SIZE} bytes can be sent: compress or split it", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or as far as it was read.
        size: u64,
    },
    /// The file's name cannot be offered: the receiver would refuse it
    /// (this side).
    #[error("the name of {} cannot be sent ({why}): rename the file", path.display())]
    UnsendableName {
        /// The file.
        path: PathBuf,
        /// What is wrong with the name.
        why: &'static str,
    },
    /// The file being sent became shorter than when it was offered (this side).
    #[error("{} became shorter since it was offered: offer it again", path.display())]
    SourceChanged {
        /// The file.
        path: PathBuf,
    },
    /// Writing a received file failed (this side).
    #[error("cannot write {}: {source}; free some space or choose another folder", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Every candidate name for a received file is taken (this side).
    #[error("{} already holds {name} and {MAX_NAME_ATTEMPTS} numbered copies of it: choose another folder", dir.display())]
    NoFreeName {
        /// The folder.
        dir: PathBuf,
        /// The file's name.
        name: String,
    },
    /// The same content under the same name is already being received, into
    /// the same partial file (this side).
    #[error("{name} is already being received: wait for that transfer or cancel it")]
    SameFileInProgress {
        /// The file's name.
        name: String,
    },
    /// The offered name is refused by [`validate_name`] (the peer).
    #[error("the peer offered the file name {name:?}, which is refused ({why}): ask them to rename the file")]
    BadName {
        /// The name as offered.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The offered size is above [`MAX_FILE_SIZE`] (the peer).
    #[error("the peer offered {size} bytes; at most {MAX_FILE_SIZE} bytes can be received")]
    OfferTooLarge {
        /// The size offered.
        size: u64,
    },
    /// File data arrived before the offer was accepted (the peer).
    #[error("the peer sent data for transfer {id} before it was accepted")]
    NotAccepted {
        /// The transfer.
        id: TransferId,
    },
    /// A chunk does not start where the previous one ended (the peer).
    #[error("the peer sent a chunk at byte {got} of {name}, expected byte {expected}")]
    OutOfOrder {
        /// The file's name.
        name: String,
        /// Where the chunk should start.
        expected: u64,
        /// Where it starts.
        got: u64,
    },
    /// A chunk reaches past the size announced in the offer (the peer).
    #[error("the peer sent bytes {offset}..{end} of {name}, announced with {size} bytes")]
    PastEnd {
        /// The file's name.
        name: String,
        /// Where the chunk starts.
        offset: u64,
        /// Where it ends.
        end: u64,
        /// The announced size.
        size: u64,
    },
    /// An empty chunk arrived before the end of the file (the peer).
    #[error("the peer sent an empty chunk at byte {offset} of {name}, before its end")]
    EmptyChunk {
        /// The file's name.
        name: String,
        /// Where.
        offset: u64,
    },
    /// An acceptance asks to resume beyond the end of the file (the peer).
    #[error("the peer asked to resume {} at byte {from_offset}, past its end at {size}", path.display())]
    ResumePastEnd {
        /// The file.
        path: PathBuf,
        /// Where it asked to start.
        from_offset: u64,
        /// The file's size.
        size: u64,
    },
    /// The received bytes do not match the offered SHA-256; the partial
    /// file was deleted (the peer, or the file changed while being sent).
    #[error("{name} arrived damaged (its SHA-256 does not match the offer) and was deleted: ask for it again")]
    Integrity {
        /// The file's name.
        name: String,
    },
    /// A message that the transfer's state does not allow (the peer).
    #[error("transfer {id}: the peer sent {what}, which is not expected now")]
    Unexpected {
        /// The transfer.
        id: TransferId,
        /// The message.
        what: &'static str,
    },
    /// An offer reuses the id of a transfer still in progress (the peer).
    #[error("the peer offered transfer {id} again while it is still open")]
    DuplicateId {
        /// The transfer.
        id: TransferId,
    },
    /// A chunk was handed to the wrong transfer (the caller).
    #[error("a chunk of transfer {got} was handed to transfer {expected}")]
    WrongId {
        /// The transfer it was handed to.
        expected: TransferId,
        /// The transfer it belongs to.
        got: TransferId,
    },
    /// No such transfer in the table: it ended or never existed (the caller).
    #[error("there is no transfer {id}: it has ended or never existed")]
    UnknownTransfer {
        /// The transfer.
        id: TransferId,
    },
    /// The offer was already accepted or declined (the caller).
    #[error("transfer {id} was already answered")]
    AlreadyAnswered {
        /// The transfer.
        id: TransferId,
    },
    /// The transfer has ended; the message crossed its end and changes
    /// nothing (nobody's fault).
    #[error("transfer {id} has already ended")]
    Finished {
        /// The transfer.
        id: TransferId,
    },
}

impl FileError {
    /// Whether the peer caused the error (as opposed to this side's file
    /// system, person or caller).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            FileError::BadName { .. }
                | FileError::OfferTooLarge { .. }
                | FileError::NotAccepted { .. }
                | FileError::OutOfOrder { .. }
                | FileError::PastEnd { .. }
                | FileError::EmptyChunk { .. }
                | FileError::ResumePastEnd { .. }
                | FileError::Integrity { .. }
                | FileError::Unexpected { .. }
                | FileError::DuplicateId { .. }
        )
    }

    /// The reason to tell the peer (in a [`FileMessage::Cancel`] or
    /// [`FileMessage::Stop`]) when this error ends a transfer.
    pub fn cancel_reason(&self) -> CancelReason {
        match self {
            FileError::Read { .. }
            | FileError::NotAFile { .. }
            | FileError::TooLarge { .. }
            | FileError::UnsendableName { .. }
            | FileError::SourceChanged { .. } => CancelReason::SourceUnreadable,
            FileError::Write { .. }
            | FileError::NoFreeName { .. }
            | FileError::SameFileInProgress { .. } => CancelReason::Storage,
            FileError::Integrity { .. } => CancelReason::Integrity,
            FileError::BadName { .. }
            | FileError::OfferTooLarge { .. }
            | FileError::NotAccepted { .. }
            | FileError::OutOfOrder { .. }
            | FileError::PastEnd { .. }
            | FileError::EmptyChunk { .. }
            | FileError::ResumePastEnd { .. }
            | FileError::Unexpected { .. }
            | FileError::DuplicateId { .. }
            | FileError::WrongId { .. }
            | FileError::UnknownTransfer { .. }
            | FileError::AlreadyAnswered { .. }
            | FileError::Finished { .. } => CancelReason::Protocol,
        }
    }
}

/// How far a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes the receiver holds (sent, or received), counting those kept
    /// from an earlier attempt.
    pub done: u64,
    /// The file's size.
    pub size: u64,
}

impl Progress {
    /// Whole percent done, 0 to 100 (100 for an empty file).
    pub fn percent(&self) -> u8 {
        if self.size == 0 {
            return 100;
        }
        let p = u128::from(self.done.min(self.size)) * 100 / u128::from(self.size);
        u8::try_from(p).unwrap_or(100)
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Offered; waiting for the receiver's answer.
    Offered,
    /// Accepted; bytes are moving (or, on the sender's side, all are sent
    /// and the receipt is awaited).
    Transferring,
    /// The receiver verified and saved the file.
    Complete,
    /// The receiver declined the offer.
    Declined,
    /// Ended before completion.
    Ended {
        /// Why.
        reason: CancelReason,
        /// Whether the peer ended it (with a message) rather than this side
        /// (a person, or an error detected here).
        by_peer: bool,
    },
}

impl Phase {
    /// Whether nothing more can happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Complete | Phase::Declined | Phase::Ended { .. }
        )
    }
}

/// Checks a file name offered by a peer and returns the name to save under.
///
/// The rule, the same on every platform:
/// 1. directory parts are stripped: only what follows the last `/` or `\`
///    is kept (`../../etc/passwd` becomes `passwd`, `/abs` becomes `abs`);
/// 2. what is left is refused when it is empty, `.` or `..`, contains a
///    control character (U+0000–U+001F, U+007F–U+009F, NUL included), is
///    longer than [`MAX_NAME`] bytes, or is not exactly one ordinary path
///    component on this platform (on Windows this refuses `C:name`).
///
/// The result is therefore always a single file name inside the receiving
/// folder.
pub fn validate_name(offered: &str) -> Result<&str, &'static str> {
    let name = offered.rsplit(['/', '\\']).next().unwrap_or(offered);
    if name.is_empty() {
        return Err("it is empty or ends with a separator");
    }
    if name == "." || name == ".." {
        return Err("it names a directory");
    }
    if name.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if name.len() > MAX_NAME {
        return Err("it is too long");
    }
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(name),
        _ => Err("it is not a plain file name"),
    }
}

/// The partial file's name for `name` offered with `sha256`.
fn part_name(name: &str, sha256: &[u8; 32]) -> String {
    tagged_part_name(name, &hex::encode(sha256.get(..8).unwrap_or_default()))
}

/// A partial file's name: `name`, shortened to leave room, `.digits` and
/// [`PART_SUFFIX`].
pub(crate) fn tagged_part_name(name: &str, digits: &str) -> String {
    let room = MAX_NAME - 1 - digits.len() - PART_SUFFIX.len();
    format!("{}.{digits}{PART_SUFFIX}", prefix(name, room))
}

/// The `n`th name tried for a received file: `name`, then `stem (n).ext`,
/// shortened to [`MAX_NAME`] bytes.
fn numbered_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    // `.bashrc` has no extension; `archive.tar.gz` is `archive.tar` + `.gz`.
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let tag = format!(" ({n})");
    let room = MAX_NAME.saturating_sub(tag.len() + ext.len());
    let ext = prefix(ext, MAX_NAME - tag.len());
    format!("{}{tag}{ext}", prefix(stem, room))
}

/// Reads into `buf` until it is full or the file ends; returns how much was read.
pub(crate) fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match file.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Feeds up to `limit` bytes of `file`, from where it stands, to `hasher`;
/// returns how many there were.
fn hash_into(file: &mut File, hasher: &mut Sha256, limit: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let want = usize::try_from((limit - total).min(CHUNK as u64)).unwrap_or(CHUNK);
        let Some(b) = buf.get_mut(..want) else {
            break;
        };
        let n = read_full(file, b)?;
        hasher.update(b.get(..n).unwrap_or_default());
        total += n as u64;
        if n < want || total == limit {
            break;
        }
    }
    Ok(total)
}

/// The sending side of one transfer. It reads the file lazily, one chunk at
/// a time, from a handle opened at [`Outgoing::open`].
#[derive(Debug)]
pub struct Outgoing {
    offer: Offer,
    path: PathBuf,
    file: File,
    phase: Phase,
    /// The next byte to send.
    offset: u64,
    /// The chunk that ends the file has gone out.
    last_sent: bool,
}

impl Outgoing {
    /// Opens the file at `path`, hashes it (SHA-256, streaming) and returns
    /// the transfer with its offer, which names the file by its base name.
    /// Files larger than [`MAX_FILE_SIZE`] are refused.
    pub fn open(id: TransferId, path: &Path) -> Result<(Self, FileMessage), FileError> {
        let read = |source| FileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match validate_name(&base) {
            Ok(n) if n == base => n.to_owned(),
            Ok(_) => {
                return Err(FileError::UnsendableName {
                    path: path.to_path_buf(),
                    why: "it contains a backslash",
                })
            }
            Err(why) => {
                return Err(FileError::UnsendableName {
                    path: path.to_path_buf(),
                    why,
                })
            }
        };
        // Checked before opening: opening a FIFO would block.
        let meta = fs::metadata(path).map_err(read)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mut file = File::open(path).map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(FileError::TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
            });
        }
        let mut hasher = Sha256::new();
        // One byte more than allowed, to notice a file that grew past it.
        let size = hash_into(&mut file, &mut hasher, MAX_FILE_SIZE + 1).map_err(read)?;
        if size > MAX_FILE_SIZE {
            return Err(FileError::TooLarge {
                path: path.to_path_buf(),
                size,
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(read)?;
        let offer = Offer {
            id,
            name: BoundedString::new(name).map_err(|_| FileError::UnsendableName {
                path: path.to_path_buf(),
                why: "it is too long",
            })?,
            size,
            sha256: hasher.finalize().into(),
        };
        let msg = FileMessage::Offer(offer.clone());
        Ok((
            Outgoing {
                offer,
                path: path.to_path_buf(),
                file,
                phase: Phase::Offered,
                offset: 0,
                last_sent: false,
            },
            msg,
        ))
    }

    /// The transfer's id.
    pub fn id(&self) -> TransferId {
        self.offer.id
    }

    /// What was offered.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// The file being sent.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the transfer stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes the receiver holds or has been sent, of the file's size.
    pub fn progress(&self) -> Progress {
        let done = match self.phase {
            Phase::Complete => self.offer.size,
            Phase::Transferring | Phase::Ended { .. } => self.offset,
            Phase::Offered | Phase::Declined => 0,
        };
        Progress {
            done,
            size: self.offer.size,
        }
    }

    /// Whether [`Outgoing::next_chunk`] has something to send.
    pub fn wants_to_send(&self) -> bool {
        self.phase == Phase::Transferring && !self.last_sent
    }

    fn fail(&mut self, e: FileError) -> FileError {
        self.phase = Phase::Ended {
            reason: e.cancel_reason(),
            by_peer: false,
        };
        e
    }

    /// The receiver accepted, wanting the bytes from `from_offset` on. An
    /// error ends the transfer; tell the peer with a
    /// [`FileMessage::Cancel`] of the error's [`FileError::cancel_reason`].
    pub fn on_accept(&mut self, from_offset: u64) -> Result<(), FileError> {
        match self.phase {
            Phase::Offered => {}
            p if p.is_final() => return Err(FileError::Finished { id: self.id() }),
            _ => {
                let e = FileError::Unexpected {
                    id: self.id(),
                    what: "a second acceptance",
                };
                return Err(self.fail(e));
            }
        }
        if from_offset > self.offer.size {
            let e = FileError::ResumePastEnd {
                path: self.path.clone(),
                from_offset,
                size: self.offer.size,
            };
            return Err(self.fail(e));
        }
        if let Err(source) = self.file.seek(SeekFrom::Start(from_offset)) {
            let e = FileError::Read {
                path: self.path.clone(),
                source,
            };
            return Err(self.fail(e));
        }
        self.phase = Phase::Transferring;
        self.offset = from_offset;
        self.last_sent = false;
        Ok(())
    }

    /// The next chunk to send, read from the file now, or `None` when
    /// nothing is to be sent (not accepted yet, all sent, or ended). An
    /// error ends the transfer; tell the peer with a [`FileMessage::Cancel`]
    /// of the error's [`FileError::cancel_reason`].
    pub fn next_chunk(&mut self) -> Result<Option<FileMessage>, FileError> {
        if !self.wants_to_send() {
            return Ok(None);
        }
        let left = self.offer.size - self.offset;
        let len = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut data = vec![0u8; len];
        match read_full(&mut self.file, &mut data) {
            Ok(n) if n == len => {}
            Ok(_) => {
                let e = FileError::SourceChanged {
                    path: self.path.clone(),
                };
                return Err(self.fail(e));
            }
            Err(source) => {
                let e = FileError::Read {
                    path: self.path.clone(),
                    source,
                };
                return Err(self.fail(e));
            }
        }
        let offset = self.offset;
        self.offset += len as u64;
        self.last_sent = self.offset == self.offer.size;
        let data = match BoundedBytes::new(data) {
            Ok(d) => d,
            // `len` is at most CHUNK.
            Err(_) => return Ok(None),
        };
        Ok(Some(FileMessage::Chunk {
            id: self.id(),
            offset,
            data,
        }))
    }

    /// The receiver declined the offer.
    pub fn on_declined(&mut self) -> Result<(), FileError> {
        match self.phase {
            Phase::Offered => {
                self.phase = Phase::Declined;
                Ok(())
            }
            p if p.is_final() => Err(FileError::Finished { id: self.id() }),
            _ => {
                let e = FileError::Unexpected {
                    id: self.id(),
                    what: "a decline after acceptance",
                };
                Err(self.fail(e))
            }
        }
    }

    /// The receiver confirmed that the file arrived whole and was saved.
    pub fn on_received(&mut self) -> Result<(), FileError> {
        match self.phase {
            Phase::Transferring if self.last_sent => {
                self.phase = Phase::Complete;
                Ok(())
            }
            p if p.is_final() => Err(FileError::Finished { id: self.id() }),
            _ => {
                let e = FileError::Unexpected {
                    id: self.id(),
                    what: "a receipt before the last chunk",
                };
                Err(self.fail(e))
            }
        }
    }

    /// The receiver stopped the transfer ([`FileMessage::Stop`]).
    pub fn on_stopped(&mut self, reason: CancelReason) {
        if !self.phase.is_final() {
            self.phase = Phase::Ended {
                reason,
                by_peer: true,
            };
        }
    }

    /// A person cancels: returns the [`FileMessage::Cancel`] to send, or
    /// `None` when the transfer has already ended.
    pub fn cancel(&mut self) -> Option<FileMessage> {
        if self.phase.is_final() {
            return None;
        }
        self.phase = Phase::Ended {
            reason: CancelReason::User,
            by_peer: false,
        };
        Some(FileMessage::Cancel {
            id: self.id(),
            reason: CancelReason::User,
        })
    }
}

/// What a chunk did to an [`Incoming`] transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Written; more to come.
    Progress(Progress),
    /// The file is complete, verified and saved at `path`; send `reply`
    /// (a [`FileMessage::Received`]).
    Complete {
        /// Where the file was saved.
        path: PathBuf,
        /// The receipt for the sender.
        reply: FileMessage,
    },
}

/// The open partial file of an accepted transfer.
#[derive(Debug)]
struct Receiving {
    dir: PathBuf,
    part: PathBuf,
    file: File,
    received: u64,
    hasher: Sha256,
}

/// The receiving side of one transfer, from the peer's offer on. Nothing
/// touches the disk before [`Incoming::accept`].
#[derive(Debug)]
pub struct Incoming {
    offer: Offer,
    /// The name the file is saved under ([`validate_name`]).
    name: String,
    phase: Phase,
    receiving: Option<Receiving>,
    /// The partial file, once accepted (kept after the transfer ends).
    part: Option<PathBuf>,
    /// Bytes held, kept after the transfer ends for [`Incoming::progress`].
    received: u64,
    saved: Option<PathBuf>,
}

impl Incoming {
    /// Takes the peer's offer after checking its name ([`validate_name`])
    /// and size ([`MAX_FILE_SIZE`]). A refused offer is answered with a
    /// [`FileMessage::Stop`] of the error's [`FileError::cancel_reason`].
    pub fn new(offer: Offer) -> Result<Self, FileError> {
        let name = validate_name(&offer.name)
            .map_err(|why| FileError::BadName {
                name: offer.name.to_string(),
                why,
            })?
            .to_owned();
        if offer.size > MAX_FILE_SIZE {
            return Err(FileError::OfferTooLarge { size: offer.size });
        }
        Ok(Incoming {
            offer,
            name,
            phase: Phase::Offered,
            receiving: None,
            part: None,
            received: 0,
            saved: None,
        })
    }

    /// The transfer's id.
    pub fn id(&self) -> TransferId {
        self.offer.id
    }

    /// The name the file will be saved under (directory parts stripped),
    /// to show the person who decides.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The announced size.
    pub fn size(&self) -> u64 {
        self.offer.size
    }

    /// The announced SHA-256.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.offer.sha256
    }

    /// Where the transfer stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes held, of the announced size.
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.received,
            size: self.offer.size,
        }
    }

    /// The partial file, once accepted. It stays after a cancellation for a
    /// later resume; it is gone after a save or an integrity failure.
    pub fn part_path(&self) -> Option<&Path> {
        self.part.as_deref()
    }

    /// Where the file was saved, once complete.
    pub fn saved_path(&self) -> Option<&Path> {
        self.saved.as_deref()
    }

    /// A person accepted: opens the partial file in `dir` (resuming a kept
    /// one of the same name and content) and returns the
    /// [`FileMessage::Accept`] to send, whose `from_offset` is what the
    /// partial file already holds. On an error nothing changes: the person
    /// may choose another folder, or decline.
    pub fn accept(&mut self, dir: &Path) -> Result<FileMessage, FileError> {
        if self.phase != Phase::Offered {
            return Err(FileError::AlreadyAnswered { id: self.id() });
        }
        let part = dir.join(part_name(&self.name, &self.offer.sha256));
        let write = |source| FileError::Write {
            path: part.clone(),
            source,
        };
        let mut hasher = Sha256::new();
        let (file, received) = match fs::symlink_metadata(&part) {
            Ok(meta) if meta.file_type().is_file() => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&part)
                    .map_err(write)?;
                let mut held = file.metadata().map_err(write)?.len();
                if held > self.offer.size {
                    // Not this offer's: start over.
                    file.set_len(0).map_err(write)?;
                    held = 0;
                }
                let hashed = hash_into(&mut file, &mut hasher, held).map_err(write)?;
                file.seek(SeekFrom::Start(hashed)).map_err(write)?;
                (file, hashed)
            }
            Ok(_) => {
                return Err(write(io::Error::new(
                    ErrorKind::InvalidInput,
                    "it exists and is not a regular file",
                )))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&part)
                    .map_err(write)?;
                (file, 0)
            }
            Err(e) => return Err(write(e)),
        };
        self.receiving = Some(Receiving {
            dir: dir.to_path_buf(),
            part: part.clone(),
            file,
            received,
            hasher,
        });
        self.part = Some(part);
        self.received = received;
        self.phase = Phase::Transferring;
        Ok(FileMessage::Accept {
            id: self.id(),
            from_offset: received,
        })
    }

    /// A person declined: returns the [`FileMessage::Decline`] to send.
    /// Nothing was, or will be, written.
    pub fn decline(&mut self) -> Result<FileMessage, FileError> {
        if self.phase != Phase::Offered {
            return Err(FileError::AlreadyAnswered { id: self.id() });
        }
        self.phase = Phase::Declined;
        Ok(FileMessage::Decline { id: self.id() })
    }

    /// A person cancels: before acceptance this declines (returns a
    /// [`FileMessage::Decline`]), after it stops (a [`FileMessage::Stop`]),
    /// keeping the partial file for a later resume. `None` when the
    /// transfer has already ended.
    pub fn cancel(&mut self) -> Option<FileMessage> {
        match self.phase {
            Phase::Offered => self.decline().ok(),
            Phase::Transferring => {
                self.end(CancelReason::User, false);
                Some(FileMessage::Stop {
                    id: self.id(),
                    reason: CancelReason::User,
                })
            }
            _ => None,
        }
    }

    /// The sender cancelled ([`FileMessage::Cancel`]); the partial file, if
    /// any, is kept for a later resume.
    pub fn on_cancelled(&mut self, reason: CancelReason) {
        if !self.phase.is_final() {
            self.end(reason, true);
        }
    }

    /// Ends the transfer, closing (and keeping) the partial file.
    fn end(&mut self, reason: CancelReason, by_peer: bool) {
        self.phase = Phase::Ended { reason, by_peer };
        self.receiving = None;
    }

    fn fail(&mut self, e: FileError) -> FileError {
        self.end(e.cancel_reason(), false);
        e
    }

    /// Writes the chunk `data` at `offset` of transfer `id`. It must start
    /// where the previous one ended and stay within the announced size; the
    /// last one makes the transfer verify the SHA-256 and save the file
    /// under its name, or a free numbered variant of it.
    ///
    /// Every error but [`FileError::WrongId`] and [`FileError::Finished`]
    /// ends the transfer: tell the peer with a [`FileMessage::Stop`] of the
    /// error's [`FileError::cancel_reason`]. The partial file is kept
    /// (nothing refused was written), except after an integrity failure,
    /// which deletes it.
    pub fn on_chunk(
        &mut self,
        id: TransferId,
        offset: u64,
        data: &[u8],
    ) -> Result<ChunkOutcome, FileError> {
        if id != self.id() {
            return Err(FileError::WrongId {
                expected: self.id(),
                got: id,
            });
        }
        let size = self.offer.size;
        let r = match (self.phase, self.receiving.as_mut()) {
            (Phase::Transferring, Some(r)) => r,
            (Phase::Offered, _) => {
                let e = FileError::NotAccepted { id };
                return Err(self.fail(e));
            }
            _ => return Err(FileError::Finished { id }),
        };
        if offset != r.received {
            let e = FileError::OutOfOrder {
                name: self.name.clone(),
                expected: r.received,
                got: offset,
            };
            return Err(self.fail(e));
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > size {
            let e = FileError::PastEnd {
                name: self.name.clone(),
                offset,
                end,
                size,
            };
            return Err(self.fail(e));
        }
        if data.is_empty() && end != size {
            let e = FileError::EmptyChunk {
                name: self.name.clone(),
                offset,
            };
            return Err(self.fail(e));
        }
        if let Err(source) = r.file.write_all(data) {
            let e = FileError::Write {
                path: r.part.clone(),
                source,
            };
            return Err(self.fail(e));
        }
        r.hasher.update(data);
        r.received = end;
        self.received = end;
        if end < size {
            return Ok(ChunkOutcome::Progress(self.progress()));
        }
        self.finish()
    }

    /// All bytes are in: verify, then save or delete.
    fn finish(&mut self) -> Result<ChunkOutcome, FileError> {
        let Some(r) = self.receiving.take() else {
            return Err(FileError::Finished { id: self.id() });
        };
        let Receiving {
            dir,
            part,
            file,
            hasher,
            ..
        } = r;
        if let Err(source) = file.sync_all() {
            let e = FileError::Write { path: part, source };
            return Err(self.fail(e));
        }
        drop(file);
        let digest: [u8; 32] = hasher.finalize().into();
        if digest != self.offer.sha256 {
            // Known to be wrong: resuming it could never succeed. A removal
            // that fails leaves a file that the next accept re-checks.
            let _ = fs::remove_file(&part);
            self.part = None;
            let e = FileError::Integrity {
                name: self.name.clone(),
            };
            return Err(self.fail(e));
        }
        match save(&part, &dir, &self.name) {
            Ok(path) => {
                self.part = None;
                self.saved = Some(path.clone());
                self.phase = Phase::Complete;
                Ok(ChunkOutcome::Complete {
                    path,
                    reply: FileMessage::Received { id: self.id() },
                })
            }
            // The verified partial file stays: a resume finishes it.
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// Moves the verified partial file `part` to `name` in `dir`, or to the
/// first free numbered variant of it, never replacing an existing file.
pub(crate) fn save(part: &Path, dir: &Path, name: &str) -> Result<PathBuf, FileError> {
    for n in 0..MAX_NAME_ATTEMPTS {
        let target = dir.join(numbered_name(name, n));
        // A hard link fails when the target exists, atomically.
        match fs::hard_link(part, &target) {
            Ok(()) => {
                // Both names hold the file; if the partial one cannot be
                // removed, the file is saved all the same.
                let _ = fs::remove_file(part);
                return Ok(target);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            // A file system without hard links: check, then rename.
            Err(_) => match fs::symlink_metadata(&target) {
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    fs::rename(part, &target).map_err(|source| FileError::Write {
                        path: target.clone(),
                        source,
                    })?;
                    return Ok(target);
                }
                Err(source) => {
                    return Err(FileError::Write {
                        path: target,
                        source,
                    })
                }
            },
        }
    }
    Err(FileError::NoFreeName {
        dir: dir.to_path_buf(),
        name: name.to_owned(),
    })
}

/// Which way a transfer goes, seen from this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// This side sends.
    Outgoing,
    /// This side receives.
    Incoming,
}

/// What happened to a transfer, for the app to show and log (R23: every
/// action visible to the customer, progress shown).
#[derive(Debug)]
pub enum TransferEvent {
    /// The peer offers a file: ask the person, then call
    /// [`Transfers::accept`] or [`Transfers::decline`].
    Offered {
        /// The transfer.
        id: TransferId,
        /// The name it would be saved under.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The peer accepted this side's offer.
    Accepted {
        /// The transfer.
        id: TransferId,
        /// Where sending starts (above 0: the peer resumes).
        from_offset: u64,
    },
    /// The peer declined this side's offer.
    Declined {
        /// The transfer.
        id: TransferId,
    },
    /// Bytes moved.
    Progress {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// How far.
        progress: Progress,
    },
    /// Done: the peer confirmed receipt (outgoing), or the file was verified
    /// and saved (incoming).
    Complete {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// The file sent, or where the received file was saved.
        path: PathBuf,
    },
    /// The peer cancelled or stopped the transfer.
    Cancelled {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// The peer's reason.
        reason: CancelReason,
    },
    /// The transfer failed here; the peer was told (or, for a repeated id,
    /// the offer was ignored).
    Failed {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// What went wrong.
        error: FileError,
    },
}

/// The transfers between this side and one peer, both ways, in the manner of
/// a sans-IO protocol state: commands and [`Transfers::handle`] for the
/// peer's messages go in, [`Transfers::poll_transmit`] gives the messages to
/// send and [`Transfers::poll_event`] what to show. Ended transfers leave the
/// table; late messages for them are ignored.
///
/// Ids are per direction: this side numbers its outgoing transfers, the peer
/// its own; [`FileMessage::from_sender`] tells which table a message goes to.
#[derive(Debug, Default)]
pub struct Transfers {
    next_id: TransferId,
    outgoing: BTreeMap<TransferId, Outgoing>,
    incoming: BTreeMap<TransferId, Incoming>,
    /// Answers and control messages, sent before any chunk.
    replies: VecDeque<FileMessage>,
    events: VecDeque<TransferEvent>,
    /// Where the round robin over sending transfers resumes.
    cursor: TransferId,
}

impl Transfers {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers the file at `path` to the peer; returns the new transfer's id.
    pub fn offer(&mut self, path: &Path) -> Result<TransferId, FileError> {
        let mut id = self.next_id;
        while self.outgoing.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        let (t, msg) = Outgoing::open(id, path)?;
        self.next_id = id.wrapping_add(1);
        self.outgoing.insert(id, t);
        self.replies.push_back(msg);
        Ok(id)
    }

    /// Accepts the peer's offer `id` into the folder `dir`. On an error
    /// nothing changes.
    pub fn accept(&mut self, id: TransferId, dir: &Path) -> Result<(), FileError> {
        let t = self
            .incoming
            .get(&id)
            .ok_or(FileError::UnknownTransfer { id })?;
        let same = self.incoming.values().any(|o| {
            o.id() != id
                && o.phase() == Phase::Transferring
                && o.name() == t.name()
                && o.sha256() == t.sha256()
        });
        if same {
            return Err(FileError::SameFileInProgress {
                name: t.name().to_owned(),
            });
        }
        let t = self
            .incoming
            .get_mut(&id)
            .ok_or(FileError::UnknownTransfer { id })?;
        let msg = t.accept(dir)?;
        self.replies.push_back(msg);
        Ok(())
    }

    /// Declines the peer's offer `id`; nothing is written.
    pub fn decline(&mut self, id: TransferId) -> Result<(), FileError> {
        let t = self
            .incoming
            .get_mut(&id)
            .ok_or(FileError::UnknownTransfer { id })?;
        let msg = t.decline()?;
        self.incoming.remove(&id);
        self.replies.push_back(msg);
        Ok(())
    }

    /// A person cancels transfer `id` going `direction`; a partial file is
    /// kept for a later resume.
    pub fn cancel(&mut self, direction: Direction, id: TransferId) -> Result<(), FileError> {
        let msg = match direction {
            Direction::Outgoing => self.outgoing.remove(&id).and_then(|mut t| t.cancel()),
            Direction::Incoming => self.incoming.remove(&id).and_then(|mut t| t.cancel()),
        };
        let msg = msg.ok_or(FileError::UnknownTransfer { id })?;
        self.replies.push_back(msg);
        Ok(())
    }

    /// This side's transfer `id` to the peer.
    pub fn outgoing(&self, id: TransferId) -> Option<&Outgoing> {
        self.outgoing.get(&id)
    }

    /// The peer's transfer `id` to this side.
    pub fn incoming(&self, id: TransferId) -> Option<&Incoming> {
        self.incoming.get(&id)
    }

    /// Whether no transfer is open and nothing waits to be sent.
    pub fn is_idle(&self) -> bool {
        self.outgoing.is_empty() && self.incoming.is_empty() && self.replies.is_empty()
    }

    /// Takes one message from the peer. Its effects come out of
    /// [`Transfers::poll_event`] and [`Transfers::poll_transmit`].
    pub fn handle(&mut self, msg: FileMessage) {
        let id = msg.id();
        match msg {
            FileMessage::Offer(offer) => {
                if self.incoming.contains_key(&id) {
                    // Answering would end the open transfer of that id.
                    self.failed(Direction::Incoming, id, FileError::DuplicateId { id });
                    return;
                }
                if self.incoming.len() >= MAX_OPEN_INCOMING {
                    // A peer cannot make this side keep offers without end.
                    self.replies.push_back(FileMessage::Stop {
                        id,
                        reason: CancelReason::Protocol,
                    });
                    let e = FileError::Unexpected {
                        id,
                        what: "an offer while 32 others are open",
                    };
                    self.failed(Direction::Incoming, id, e);
                    return;
                }
                match Incoming::new(offer) {
                    Ok(t) => {
                        self.events.push_back(TransferEvent::Offered {
                            id,
                            name: t.name().to_owned(),
                            size: t.size(),
                        });
                        self.incoming.insert(id, t);
                    }
                    Err(e) => {
                        self.replies.push_back(FileMessage::Stop {
                            id,
                            reason: e.cancel_reason(),
                        });
                        self.failed(Direction::Incoming, id, e);
                    }
                }
            }
            FileMessage::Chunk { offset, data, .. } => {
                let Some(t) = self.incoming.get_mut(&id) else {
                    return;
                };
                match t.on_chunk(id, offset, &data) {
                    Ok(ChunkOutcome::Progress(progress)) => {
                        self.events.push_back(TransferEvent::Progress {
                            id,
                            direction: Direction::Incoming,
                            progress,
                        });
                    }
                    Ok(ChunkOutcome::Complete { path, reply }) => {
                        self.incoming.remove(&id);
                        self.replies.push_back(reply);
                        self.events.push_back(TransferEvent::Complete {
                            id,
                            direction: Direction::Incoming,
                            path,
                        });
                    }
                    Err(e) => {
                        self.incoming.remove(&id);
                        self.replies.push_back(FileMessage::Stop {
                            id,
                            reason: e.cancel_reason(),
                        });
                        self.failed(Direction::Incoming, id, e);
                    }
                }
            }
            FileMessage::Cancel { reason, .. } => {
                if let Some(mut t) = self.incoming.remove(&id) {
                    t.on_cancelled(reason);
                    self.events.push_back(TransferEvent::Cancelled {
                        id,
                        direction: Direction::Incoming,
                        reason,
                    });
                }
            }
            FileMessage::Accept { from_offset, .. } => {
                let Some(t) = self.outgoing.get_mut(&id) else {
                    return;
                };
                match t.on_accept(from_offset) {
                    Ok(()) => self
                        .events
                        .push_back(TransferEvent::Accepted { id, from_offset }),
                    Err(e) => self.outgoing_failed(id, e),
                }
            }
            FileMessage::Decline { .. } => {
                let Some(t) = self.outgoing.get_mut(&id) else {
                    return;
                };
                match t.on_declined() {
                    Ok(()) => {
                        self.outgoing.remove(&id);
                        self.events.push_back(TransferEvent::Declined { id });
                    }
                    Err(e) => self.outgoing_failed(id, e),
                }
            }
            FileMessage::Received { .. } => {
                let Some(t) = self.outgoing.get_mut(&id) else {
                    return;
                };
                match t.on_received() {
                    Ok(()) => {
                        let path = t.path().to_path_buf();
                        self.outgoing.remove(&id);
                        self.events.push_back(TransferEvent::Complete {
                            id,
                            direction: Direction::Outgoing,
                            path,
                        });
                    }
                    Err(e) => self.outgoing_failed(id, e),
                }
            }
            FileMessage::Stop { reason, .. } => {
                if let Some(mut t) = self.outgoing.remove(&id) {
                    t.on_stopped(reason);
                    self.events.push_back(TransferEvent::Cancelled {
                        id,
                        direction: Direction::Outgoing,
                        reason,
                    });
                }
            }
        }
    }

    fn failed(&mut self, direction: Direction, id: TransferId, error: FileError) {
        self.events.push_back(TransferEvent::Failed {
            id,
            direction,
            error,
        });
    }

    /// Ends outgoing transfer `id` on `e`, telling the peer.
    fn outgoing_failed(&mut self, id: TransferId, e: FileError) {
        self.outgoing.remove(&id);
        self.replies.push_back(FileMessage::Cancel {
            id,
            reason: e.cancel_reason(),
        });
        self.failed(Direction::Outgoing, id, e);
    }

    /// The next message to send the peer: answers and control messages
    /// first, then one chunk of the sending transfers in turn (read from
    /// disk now). `None` when nothing is to be sent; call again after the
    /// next command or [`Transfers::handle`]. The caller paces the chunks
    /// by calling this only while its send queue has room.
    pub fn poll_transmit(&mut self) -> Option<FileMessage> {
        if let Some(m) = self.replies.pop_front() {
            return Some(m);
        }
        let next = self
            .outgoing
            .range(self.cursor..)
            .chain(self.outgoing.range(..self.cursor))
            .find(|(_, t)| t.wants_to_send())
            .map(|(&id, _)| id)?;
        self.cursor = next.wrapping_add(1);
        let t = self.outgoing.get_mut(&next)?;
        match t.next_chunk() {
            Ok(Some(chunk)) => {
                let progress = t.progress();
                self.events.push_back(TransferEvent::Progress {
                    id: next,
                    direction: Direction::Outgoing,
                    progress,
                });
                Some(chunk)
            }
            Ok(None) => None,
            Err(e) => {
                self.outgoing_failed(next, e);
                self.replies.pop_front()
            }
        }
    }

    /// The next thing that happened, in order.
    pub fn poll_event(&mut self) -> Option<TransferEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_protocol::codec::Message;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// Through the wire: encoded by one side, decoded by the other.
    fn wire(m: FileMessage) -> FileMessage {
        FileMessage::decode(&m.encode()).unwrap()
    }

    fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
        let mut bytes = vec![0u8; len];
        rand_chacha::ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        let path = dir.join(name);
        fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    /// The names in `dir`, sorted.
    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn offer_of(m: FileMessage) -> Offer {
        match wire(m) {
            FileMessage::Offer(o) => o,
            other => panic!("not an offer: {other:?}"),
        }
    }

    fn accepted_offset(m: FileMessage) -> u64 {
        match wire(m) {
            FileMessage::Accept { from_offset, .. } => from_offset,
            other => panic!("not an acceptance: {other:?}"),
        }
    }

    /// Sends up to `max_chunks` chunks from `tx` to `rx`; returns the
    /// outcome of the last one.
    fn pump(
        tx: &mut Outgoing,
        rx: &mut Incoming,
        max_chunks: usize,
    ) -> Option<Result<ChunkOutcome, FileError>> {
        let mut last = None;
        for _ in 0..max_chunks {
            let Some(chunk) = tx.next_chunk().unwrap() else {
                break;
            };
            let FileMessage::Chunk { id, offset, data } = wire(chunk) else {
                panic!("not a chunk");
            };
            let outcome = rx.on_chunk(id, offset, &data);
            let stop = outcome.is_err();
            last = Some(outcome);
            if stop {
                break;
            }
        }
        last
    }

    fn complete(outcome: Option<Result<ChunkOutcome, FileError>>) -> (PathBuf, FileMessage) {
        match outcome {
            Some(Ok(ChunkOutcome::Complete { path, reply })) => (path, reply),
            other => panic!("not complete: {other:?}"),
        }
    }

    /// A full transfer of `src` into `inbox` through the messages; returns
    /// the saved path.
    fn transfer(src: &Path, inbox: &Path) -> PathBuf {
        let (mut tx, offer) = Outgoing::open(9, src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        tx.on_accept(accepted_offset(rx.accept(inbox).unwrap()))
            .unwrap();
        let (path, reply) = complete(pump(&mut tx, &mut rx, usize::MAX));
        assert_eq!(wire(reply), FileMessage::Received { id: 9 });
        tx.on_received().unwrap();
        path
    }

    #[test]
    fn r23_transfer_arrives_byte_identical() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, bytes) = random_file(out.path(), "report.bin", 300 * 1024 + 123, 1);

        let (mut tx, offer) = Outgoing::open(7, &src).unwrap();
        let offer = offer_of(offer);
        assert_eq!(
            (offer.name.as_str(), offer.size),
            ("report.bin", bytes.len() as u64)
        );
        assert_eq!(offer.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert!(
            tx.next_chunk().unwrap().is_none(),
            "nothing before acceptance"
        );
        let mut rx = Incoming::new(offer).unwrap();
        assert!(
            entries(inbox.path()).is_empty(),
            "nothing on disk before acceptance"
        );

        assert_eq!(accepted_offset(rx.accept(inbox.path()).unwrap()), 0);
        tx.on_accept(0).unwrap();
        let mut chunks = 0;
        let mut saved = None;
        while let Some(chunk) = tx.next_chunk().unwrap() {
            chunks += 1;
            let FileMessage::Chunk { id, offset, data } = wire(chunk) else {
                panic!("not a chunk");
            };
            assert!(data.len() <= CHUNK && !data.is_empty());
            match rx.on_chunk(id, offset, &data).unwrap() {
                ChunkOutcome::Progress(p) => {
                    assert_eq!(p, tx.progress());
                    assert!(p.percent() < 100);
                }
                ChunkOutcome::Complete { path, reply } => {
                    assert_eq!(wire(reply), FileMessage::Received { id: 7 });
                    saved = Some(path);
                }
            }
        }
        assert_eq!(chunks, 5, "four full chunks and the rest");
        tx.on_received().unwrap();
        assert_eq!((tx.phase(), rx.phase()), (Phase::Complete, Phase::Complete));
        assert_eq!(tx.progress().percent(), 100);
        let saved = saved.unwrap();
        assert_eq!(saved, inbox.path().join("report.bin"));
        assert_eq!(fs::read(&saved).unwrap(), bytes);
        assert_eq!(
            entries(inbox.path()),
            ["report.bin"],
            "no partial file left"
        );
    }

    #[test]
    fn r23_empty_file_and_exact_chunks_arrive() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (empty, _) = random_file(out.path(), "empty.txt", 0, 2);
        let saved = transfer(&empty, inbox.path());
        assert_eq!(fs::read(saved).unwrap(), b"");
        let (exact, bytes) = random_file(out.path(), "exact", 2 * CHUNK, 3);
        let saved = transfer(&exact, inbox.path());
        assert_eq!(fs::read(saved).unwrap(), bytes);
        assert_eq!(entries(inbox.path()), ["empty.txt", "exact"]);
    }

    #[test]
    fn r23_declined_writes_nothing() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, _) = random_file(out.path(), "secret.pdf", 100_000, 4);
        let (mut tx, offer) = Outgoing::open(1, &src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        assert_eq!(wire(rx.decline().unwrap()), FileMessage::Decline { id: 1 });
        tx.on_declined().unwrap();
        assert_eq!((tx.phase(), rx.phase()), (Phase::Declined, Phase::Declined));
        assert!(tx.next_chunk().unwrap().is_none());
        // Chunks sent anyway are refused and written nowhere.
        assert!(matches!(
            rx.on_chunk(1, 0, b"pushed"),
            Err(FileError::Finished { id: 1 })
        ));
        assert!(matches!(
            rx.accept(inbox.path()),
            Err(FileError::AlreadyAnswered { .. })
        ));
        assert!(entries(inbox.path()).is_empty());
    }

    #[test]
    fn r23_chunk_before_acceptance_is_refused() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, _) = random_file(out.path(), "a", 10, 5);
        let (_, offer) = Outgoing::open(1, &src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        let e = rx.on_chunk(1, 0, b"0123456789").unwrap_err();
        assert!(matches!(e, FileError::NotAccepted { id: 1 }) && e.is_peer_fault());
        assert!(rx.phase().is_final());
        assert!(entries(inbox.path()).is_empty());
    }

    #[test]
    fn r23_interrupted_transfer_resumes() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, bytes) = random_file(out.path(), "disk.img", 400 * 1024, 6);

        let (mut tx, offer) = Outgoing::open(1, &src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        tx.on_accept(accepted_offset(rx.accept(inbox.path()).unwrap()))
            .unwrap();
        assert!(matches!(
            pump(&mut tx, &mut rx, 3),
            Some(Ok(ChunkOutcome::Progress(_)))
        ));
        // The receiver's person cancels halfway; the partial file stays.
        let stop = wire(rx.cancel().unwrap());
        assert_eq!(
            stop,
            FileMessage::Stop {
                id: 1,
                reason: CancelReason::User
            }
        );
        tx.on_stopped(CancelReason::User);
        let part = rx.part_path().unwrap().to_path_buf();
        assert_eq!(fs::metadata(&part).unwrap().len(), 3 * CHUNK as u64);
        assert_eq!(rx.progress().done, 3 * CHUNK as u64);
        drop((tx, rx));

        // Later, the same file is offered again (a new transfer).
        let (mut tx, offer) = Outgoing::open(2, &src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        let from = accepted_offset(rx.accept(inbox.path()).unwrap());
        assert_eq!(from, 3 * CHUNK as u64);
        tx.on_accept(from).unwrap();
        assert_eq!(tx.progress().done, from);
        let (saved, _) = complete(pump(&mut tx, &mut rx, usize::MAX));
        assert_eq!(fs::read(saved).unwrap(), bytes);
        assert!(!part.exists());
        assert_eq!(entries(inbox.path()), ["disk.img"]);
    }

    #[test]
    fn r23_resume_of_a_complete_part_finishes() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, bytes) = random_file(out.path(), "done.bin", 1000, 7);
        let (_, offer) = Outgoing::open(1, &src).unwrap();
        let offer = offer_of(offer);
        // A partial file that holds everything (say, a crash before the save).
        fs::write(
            inbox.path().join(part_name("done.bin", &offer.sha256)),
            &bytes,
        )
        .unwrap();
        let (mut tx, offer) = Outgoing::open(2, &src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        let from = accepted_offset(rx.accept(inbox.path()).unwrap());
        assert_eq!(from, 1000);
        tx.on_accept(from).unwrap();
        let Some(FileMessage::Chunk { offset, data, .. }) = tx.next_chunk().unwrap() else {
            panic!("one empty chunk ends the transfer");
        };
        assert_eq!((offset, data.len()), (1000, 0));
        assert!(tx.next_chunk().unwrap().is_none());
        let (saved, _) = complete(Some(rx.on_chunk(2, offset, &data)));
        assert_eq!(fs::read(saved).unwrap(), bytes);
    }

    #[test]
    fn r23_corrupted_chunk_fails_integrity() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, _) = random_file(out.path(), "setup.exe", 200 * 1024, 8);
        let (mut tx, offer) = Outgoing::open(1, &src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        tx.on_accept(accepted_offset(rx.accept(inbox.path()).unwrap()))
            .unwrap();
        let mut failure = None;
        let mut n = 0;
        while let Some(FileMessage::Chunk { id, offset, data }) = tx.next_chunk().unwrap() {
            let mut data = data.to_vec();
            n += 1;
            if n == 2 {
                if let Some(b) = data.get_mut(100) {
                    *b ^= 1;
                }
            }
            if let Err(e) = rx.on_chunk(id, offset, &data) {
                failure = Some(e);
                break;
            }
        }
        let e = failure.unwrap();
        assert!(matches!(e, FileError::Integrity { .. }), "{e}");
        assert_eq!(e.cancel_reason(), CancelReason::Integrity);
        assert!(rx.part_path().is_none() && rx.saved_path().is_none());
        assert_eq!(
            rx.phase(),
            Phase::Ended {
                reason: CancelReason::Integrity,
                by_peer: false
            }
        );
        assert!(
            entries(inbox.path()).is_empty(),
            "no final file, no partial file"
        );
    }

    #[test]
    fn r23_hostile_names_never_escape_the_folder() {
        let (out, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let inbox = root.path().join("inbox");
        fs::create_dir(&inbox).unwrap();
        let (src, bytes) = random_file(out.path(), "payload", 5000, 9);
        let (_, offer) = Outgoing::open(1, &src).unwrap();
        let honest = offer_of(offer);

        let cases: &[(&str, Option<&str>)] = &[
            ("../../etc/passwd", Some("passwd")),
            ("/abs", Some("abs")),
            ("..\\..\\windows\\system.ini", Some("system.ini")),
            ("C:\\evil.bat", Some("evil.bat")),
            ("a\0b", None),
            ("..", None),
            (".", None),
            ("", None),
            ("dir/", None),
            ("x/../..", None),
            ("line\nbreak", None),
            ("bell\u{7}", None),
            ("csi\u{9b}", None),
            ("ok name (v2).tar.gz", Some("ok name (v2).tar.gz")),
        ];
        for (i, &(hostile, expect)) in cases.iter().enumerate() {
            let offer = Offer {
                id: i as u32,
                name: BoundedString::new(hostile).unwrap(),
                ..honest.clone()
            };
            let offer = offer_of(FileMessage::Offer(offer));
            match (Incoming::new(offer), expect) {
                (Ok(mut rx), Some(name)) => {
                    assert_eq!(rx.name(), name);
                    rx.accept(&inbox).unwrap();
                    let outcome = rx.on_chunk(i as u32, 0, &bytes);
                    let (saved, _) = complete(Some(outcome));
                    assert_eq!(saved.parent(), Some(inbox.as_path()), "{hostile:?}");
                    assert_eq!(fs::read(&saved).unwrap(), bytes);
                }
                (Err(e), None) => {
                    assert!(matches!(e, FileError::BadName { .. }), "{hostile:?}: {e}");
                    assert_eq!(e.cancel_reason(), CancelReason::Protocol);
                }
                (r, _) => panic!(
                    "{hostile:?}: unexpected {:?}",
                    r.map(|t| t.name().to_owned())
                ),
            }
        }
        assert_eq!(
            entries(root.path()),
            ["inbox"],
            "nothing outside the folder"
        );
        assert_eq!(
            entries(&inbox),
            [
                "abs",
                "evil.bat",
                "ok name (v2).tar.gz",
                "passwd",
                "system.ini"
            ]
        );
    }

    #[test]
    fn r23_chunks_past_the_size_or_out_of_order_are_refused() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, bytes) = random_file(out.path(), "small", 10, 10);
        let (_, offer) = Outgoing::open(1, &src).unwrap();
        let offer = offer_of(offer);

        // Past the size, in one chunk.
        let mut rx = Incoming::new(offer.clone()).unwrap();
        rx.accept(inbox.path()).unwrap();
        let part = rx.part_path().unwrap().to_path_buf();
        let e = rx.on_chunk(1, 0, &[0u8; 11]).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::PastEnd {
                    end: 11,
                    size: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.is_peer_fault());
        assert_eq!(fs::metadata(&part).unwrap().len(), 0, "nothing written");
        assert!(matches!(
            rx.on_chunk(1, 0, bytes.get(..5).unwrap()),
            Err(FileError::Finished { .. })
        ));

        // Past the size after a valid chunk; then gaps, overlaps, empties.
        let mut rx = Incoming::new(offer.clone()).unwrap();
        rx.accept(inbox.path()).unwrap();
        assert!(rx.on_chunk(1, 0, bytes.get(..6).unwrap()).is_ok());
        assert!(matches!(
            rx.on_chunk(1, 6, &[0u8; 5]),
            Err(FileError::PastEnd { .. })
        ));
        assert_eq!(fs::metadata(&part).unwrap().len(), 6);
        for (offset, data, check) in [
            (
                7u64,
                &b"xyz"[..],
                (|e: &FileError| {
                    matches!(
                        e,
                        FileError::OutOfOrder {
                            expected: 6,
                            got: 7,
                            ..
                        }
                    )
                }) as fn(&FileError) -> bool,
            ),
            (0, b"0123", |e| matches!(e, FileError::OutOfOrder { .. })),
            (6, b"", |e| matches!(e, FileError::EmptyChunk { .. })),
            (u64::MAX, b"x", |e| {
                matches!(e, FileError::OutOfOrder { .. })
            }),
        ] {
            let mut rx = Incoming::new(offer.clone()).unwrap();
            assert_eq!(accepted_offset(rx.accept(inbox.path()).unwrap()), 6);
            let e = rx.on_chunk(1, offset, data).unwrap_err();
            assert!(check(&e), "{e}");
            assert_eq!(fs::metadata(&part).unwrap().len(), 6);
        }
        // Another transfer's chunk is not this one's.
        let mut rx = Incoming::new(offer).unwrap();
        rx.accept(inbox.path()).unwrap();
        assert!(matches!(
            rx.on_chunk(2, 6, b"zz"),
            Err(FileError::WrongId {
                expected: 1,
                got: 2
            })
        ));
        assert_eq!(rx.phase(), Phase::Transferring);
        let (saved, _) = complete(Some(rx.on_chunk(1, 6, bytes.get(6..).unwrap())));
        assert_eq!(fs::read(saved).unwrap(), bytes);
    }

    #[test]
    fn r23_existing_files_are_not_overwritten() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(inbox.path().join("notes.txt"), b"mine").unwrap();
        fs::write(inbox.path().join("notes (1).txt"), b"mine too").unwrap();
        let (src, bytes) = random_file(out.path(), "notes.txt", 3000, 11);
        let saved = transfer(&src, inbox.path());
        assert_eq!(saved, inbox.path().join("notes (2).txt"));
        assert_eq!(fs::read(&saved).unwrap(), bytes);
        assert_eq!(fs::read(inbox.path().join("notes.txt")).unwrap(), b"mine");
        assert_eq!(
            fs::read(inbox.path().join("notes (1).txt")).unwrap(),
            b"mine too"
        );
    }

    #[test]
    fn r23_numbered_and_partial_names_stay_short() {
        assert_eq!(numbered_name("a.tar.gz", 3), "a.tar (3).gz");
        assert_eq!(numbered_name(".bashrc", 1), ".bashrc (1)");
        let long = format!("{}.txt", "é".repeat(125));
        assert_eq!(long.len(), 254);
        let n = numbered_name(&long, 12);
        assert!(n.len() <= MAX_NAME && n.ends_with(" (12).txt"), "{n}");
        let p = part_name(&long, &[0xab; 32]);
        assert!(p.len() <= MAX_NAME && p.ends_with(".abababababababab.conclave-part"));
        assert!(validate_name(&n).is_ok() && validate_name(&p).is_ok());
    }

    #[test]
    fn r23_oversized_files_are_refused() {
        let (out, _) = (tempfile::tempdir().unwrap(), ());
        let path = out.path().join("huge.iso");
        // Sparse: no disk space used.
        File::create(&path)
            .unwrap()
            .set_len(MAX_FILE_SIZE + 1)
            .unwrap();
        assert!(matches!(
            Outgoing::open(1, &path),
            Err(FileError::TooLarge { .. })
        ));
        let e = Incoming::new(Offer {
            id: 1,
            name: BoundedString::new("huge.iso").unwrap(),
            size: MAX_FILE_SIZE + 1,
            sha256: [0; 32],
        })
        .unwrap_err();
        assert!(matches!(e, FileError::OfferTooLarge { .. }));
        assert!(matches!(
            Outgoing::open(1, out.path()),
            Err(FileError::NotAFile { .. })
        ));
    }

    #[test]
    fn r23_a_file_that_shrinks_while_sent_is_reported() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, _) = random_file(out.path(), "log.txt", 3 * CHUNK, 12);
        let (mut tx, offer) = Outgoing::open(1, &src).unwrap();
        let mut rx = Incoming::new(offer_of(offer)).unwrap();
        tx.on_accept(accepted_offset(rx.accept(inbox.path()).unwrap()))
            .unwrap();
        File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_len(CHUNK as u64 + 10)
            .unwrap();
        assert!(tx.next_chunk().unwrap().is_some());
        let e = tx.next_chunk().unwrap_err();
        assert!(matches!(e, FileError::SourceChanged { .. }), "{e}");
        assert_eq!(e.cancel_reason(), CancelReason::SourceUnreadable);
        assert!(tx.next_chunk().unwrap().is_none());
    }

    #[test]
    fn r23_acceptance_past_the_end_is_refused() {
        let out = tempfile::tempdir().unwrap();
        let (src, _) = random_file(out.path(), "f", 100, 13);
        let (mut tx, _) = Outgoing::open(1, &src).unwrap();
        assert!(matches!(
            tx.on_accept(101),
            Err(FileError::ResumePastEnd { .. })
        ));
        assert!(tx.phase().is_final());
        assert!(tx.next_chunk().unwrap().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn r23_a_linked_partial_file_is_refused() {
        let (out, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, _) = random_file(out.path(), "f", 100, 14);
        let (_, offer) = Outgoing::open(1, &src).unwrap();
        let offer = offer_of(offer);
        let victim = out.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, inbox.path().join(part_name("f", &offer.sha256)))
            .unwrap();
        let mut rx = Incoming::new(offer).unwrap();
        assert!(matches!(
            rx.accept(inbox.path()),
            Err(FileError::Write { .. })
        ));
        assert_eq!(rx.phase(), Phase::Offered);
        assert_eq!(fs::read(victim).unwrap(), b"keep");
    }

    /// Moves every message between two tables until both are quiet;
    /// returns the events of each.
    fn exchange(a: &mut Transfers, b: &mut Transfers) -> (Vec<TransferEvent>, Vec<TransferEvent>) {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        loop {
            let mut moved = false;
            while let Some(m) = a.poll_transmit() {
                b.handle(wire(m));
                moved = true;
            }
            while let Some(m) = b.poll_transmit() {
                a.handle(wire(m));
                moved = true;
            }
            ea.extend(std::iter::from_fn(|| a.poll_event()));
            eb.extend(std::iter::from_fn(|| b.poll_event()));
            if !moved {
                return (ea, eb);
            }
        }
    }

    #[test]
    fn r23_transfers_table_both_ways() {
        let (agent_dir, customer_dir) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (tool, tool_bytes) = random_file(agent_dir.path(), "tool.sh", 150_000, 15);
        let (log, log_bytes) = random_file(customer_dir.path(), "crash.log", 70_000, 16);
        let (agent_inbox, customer_inbox) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut agent, mut customer) = (Transfers::new(), Transfers::new());

        // Both offer at once: the same id (0), one per direction.
        let a_id = agent.offer(&tool).unwrap();
        let c_id = customer.offer(&log).unwrap();
        assert_eq!(a_id, c_id);
        let (ea, ec) = exchange(&mut agent, &mut customer);
        assert!(
            matches!(ea.as_slice(), [TransferEvent::Offered { name, size: 70_000, .. }] if name == "crash.log")
        );
        assert!(
            matches!(ec.as_slice(), [TransferEvent::Offered { name, size: 150_000, .. }] if name == "tool.sh")
        );

        customer.accept(a_id, customer_inbox.path()).unwrap();
        agent.accept(c_id, agent_inbox.path()).unwrap();
        let (ea, ec) = exchange(&mut agent, &mut customer);
        for events in [&ea, &ec] {
            let complete: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    TransferEvent::Complete {
                        direction, path, ..
                    } => Some((*direction, path.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(complete.len(), 2, "{events:?}");
            assert!(events
                .iter()
                .any(|e| matches!(e, TransferEvent::Progress { .. })));
        }
        assert_eq!(
            fs::read(customer_inbox.path().join("tool.sh")).unwrap(),
            tool_bytes
        );
        assert_eq!(
            fs::read(agent_inbox.path().join("crash.log")).unwrap(),
            log_bytes
        );
        assert!(agent.is_idle() && customer.is_idle());

        // A declined offer leaves the folder empty; a refused name is answered.
        let inbox = tempfile::tempdir().unwrap();
        let id = agent.offer(&tool).unwrap();
        exchange(&mut agent, &mut customer);
        customer.decline(id).unwrap();
        let (ea, _) = exchange(&mut agent, &mut customer);
        assert!(matches!(ea.as_slice(), [TransferEvent::Declined { .. }]));
        assert_eq!(entries(customer_inbox.path()), ["tool.sh"]);

        customer.handle(FileMessage::Offer(Offer {
            id: 77,
            name: BoundedString::new("..").unwrap(),
            size: 1,
            sha256: [0; 32],
        }));
        assert!(matches!(
            customer.poll_event(),
            Some(TransferEvent::Failed {
                error: FileError::BadName { .. },
                ..
            })
        ));
        assert_eq!(
            customer.poll_transmit(),
            Some(FileMessage::Stop {
                id: 77,
                reason: CancelReason::Protocol
            })
        );

        // Cancelling mid-way reaches the other side.
        let id = agent.offer(&tool).unwrap();
        exchange(&mut agent, &mut customer);
        customer.accept(id, inbox.path()).unwrap();
        agent.handle(wire(customer.poll_transmit().unwrap()));
        assert!(matches!(
            agent.poll_event(),
            Some(TransferEvent::Accepted { from_offset: 0, .. })
        ));
        customer.handle(wire(agent.poll_transmit().unwrap()));
        agent.cancel(Direction::Outgoing, id).unwrap();
        let (_, ec) = exchange(&mut agent, &mut customer);
        assert!(matches!(
            ec.as_slice(),
            [
                TransferEvent::Progress { .. },
                TransferEvent::Cancelled {
                    direction: Direction::Incoming,
                    reason: CancelReason::User,
                    ..
                }
            ]
        ));
        let kept = entries(inbox.path());
        assert!(
            kept.len() == 1 && kept.iter().all(|n| n.ends_with(PART_SUFFIX)),
            "{kept:?}"
        );
        assert!(agent.is_idle() && customer.is_idle());
        assert!(matches!(
            agent.cancel(Direction::Outgoing, id),
            Err(FileError::UnknownTransfer { .. })
        ));
    }
}
