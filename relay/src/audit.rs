//! The relay's audit log (R17): one JSON line per session event, hash-chained
//! so that editing, removing, inserting or reordering records shows.
//!
//! # Format
//!
//! The log is a UTF-8 text file of lines, each ended by `\n` and at most
//! [`MAX_LINE_LEN`] bytes long without it. Each line is one compact JSON
//! object (no whitespace outside strings) with exactly these keys, in this
//! order:
//!
//! | key | JSON type | meaning |
//! |---|---|---|
//! | `time` | integer | Unix seconds when the event happened |
//! | `event` | string | `session-created`, `joined`, `left`, `refused`, `removed` or `session-ended` |
//! | `login` | string | for a master, its license's licensee; else empty |
//! | `license` | string | the license number (ten digits), or empty |
//! | `session` | integer or `null` | the session ID |
//! | `participants` | integer | how many are in the session after the event |
//! | `client_version` | string | the client's version, e.g. `1.4.0` |
//! | `os_user` | string | the client's operating-system user |
//! | `host` | string | the client's host name |
//! | `ip` | string | the client's IP address |
//! | `text` | string | free text, e.g. why the relay refused a client |
//! | `prev` | string | 64 lowercase hex digits: the previous line's `hash`, or 64 zeros on the first line |
//! | `hash` | string | 64 lowercase hex digits: this line's hash, below |
//!
//! Strings are escaped as `serde_json` escapes them: `"` and `\` with a
//! backslash, control characters as `\n`, `\t`, … or `\u00XX`, every other
//! character (non-ASCII included) as itself. So a record never spans lines.
//!
//! # Chain rule
//!
//! For line *n*, let `record` be the line without its `\n` and with the
//! 149-byte tail `,"prev":"<64 hex>","hash":"<64 hex>"}` replaced by `}`: the
//! JSON object of the first eleven keys. Let `prev` be the 32 bytes the line's
//! `prev` field spells in hex. Then
//!
//! ```text
//! hash = SHA-256( "conclave/v1/audit" ‖ 0x00 ‖ prev (32 bytes) ‖ record )
//! ```
//!
//! and the line is valid when
//!
//! 1. its `hash` field spells that hash (otherwise the record was edited);
//! 2. its `prev` is the previous line's `hash`, or 32 zero bytes for line 1
//!    (otherwise lines were removed, inserted or reordered; a first line whose
//!    `prev` is not zero means records were removed from the start);
//! 3. it is spelled exactly as the relay writes it: `record` is what
//!    `serde_json` prints for the parsed record, and both hashes are in
//!    lowercase hex (otherwise bytes were changed that parsing would hide,
//!    such as whitespace or escapes).
//!
//! [`AuditLog::verify`] checks every line in this order and reports the
//! first failure with its 1-based line number. Another tool can verify a log
//! with nothing but SHA-256 and the byte rule above.
//!
//! # What a chain cannot show
//!
//! - **Truncation.** Removing the last lines (or emptying the file) leaves a
//!   valid chain: nothing after them points back to them.
//! - **Rewriting.** The chain has no key. Someone who can write the file can
//!   change a record and recompute every later hash, and the result verifies.
//!
//! Both are caught only against a copy kept out of that person's reach. An
//! administrator should ship the log off the machine as it is written
//! (syslog, a log collector), or regularly note the latest hash
//! ([`AuditLog::last_hash`], [`VerifySummary::last_hash`]) somewhere else: a
//! later copy of the log must then still verify and contain a line with that
//! hash, which proves every record up to it unchanged.
//!
//! # Writing
//!
//! [`AuditLog::open`] creates the file (mode `0600` on Unix) or verifies the
//! existing one in full, and refuses to append to a log that does not verify.
//! [`AuditLog::append`] writes each line with a single `write_all`, then
//! flushes and `sync_data`s it, so a record is on disk when `append` returns.
//! These are blocking calls: from async code, call them on a blocking thread
//! (`tokio::task::spawn_blocking`) or a dedicated writer task. One relay
//! process owns a log file; two writers on one file break the chain.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The domain label hashed before each record: `conclave/v1/audit` and a zero byte.
pub const AUDIT_DOMAIN: &[u8] = b"conclave/v1/audit\0";

/// The longest line, in bytes without its `\n`, that the relay writes or
/// [`AuditLog::verify`] reads.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// The `prev` of the first line of a log: 32 zero bytes.
pub const CHAIN_START: [u8; 32] = [0; 32];

const PREV_KEY: &[u8] = b",\"prev\":\"";
const HASH_KEY: &[u8] = b"\",\"hash\":\"";
const LINE_END: &[u8] = b"\"}";
/// Length of `,"prev":"<64 hex>","hash":"<64 hex>"}`.
const TAIL_LEN: usize = PREV_KEY.len() + 64 + HASH_KEY.len() + 64 + LINE_END.len();

/// What happened, as the audit log's `event` field spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditEvent {
    /// A master created a session (`session-created`).
    SessionCreated,
    /// A client joined a session (`joined`).
    Joined,
    /// A client left a session (`left`).
    Left,
    /// The relay refused a client (`refused`); `text` says why.
    Refused,
    /// The master removed a participant (`removed`).
    Removed,
    /// A session ended (`session-ended`).
    SessionEnded,
}

impl AuditEvent {
    /// The event as the log spells it, e.g. `session-created`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::SessionCreated => "session-created",
            AuditEvent::Joined => "joined",
            AuditEvent::Left => "left",
            AuditEvent::Refused => "refused",
            AuditEvent::Removed => "removed",
            AuditEvent::SessionEnded => "session-ended",
        }
    }
}

impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record (R17): the fields of a line before `prev` and `hash`, in
/// the order they are written (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Unix seconds when the event happened.
    pub time: u64,
    /// What happened.
    pub event: AuditEvent,
    /// For a master, its license's licensee; else empty.
    pub login: String,
    /// The license number as ten digits, or empty.
    pub license: String,
    /// The session ID, if the event belongs to a session.
    pub session: Option<u64>,
    /// How many are in the session after the event.
    pub participants: u32,
    /// The client's version, e.g. `1.4.0`.
    pub client_version: String,
    /// The client's operating-system user.
    pub os_user: String,
    /// The client's host name.
    pub host: String,
    /// The client's IP address.
    pub ip: String,
    /// Free text, e.g. a refusal reason.
    pub text: String,
}

/// What [`AuditLog::verify`] found in a log that verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifySummary {
    /// How many records (lines) the log holds.
    pub records: u64,
    /// The last line's hash, or [`CHAIN_START`] for an empty log: the `prev`
    /// of the next record.
    pub last_hash: [u8; 32],
}

/// Why the audit log could not be opened, written or verified.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file could not be opened or created.
    #[error("cannot open the audit log {}: {source}; check that its directory exists and that the relay's user may read and write there", path.display())]
    Open {
        /// The log file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The existing log does not verify, so the relay will not append to it.
    #[error("the audit log {} does not verify: {source}. The relay will not append to it: move the file aside (keep it as evidence), then start the relay again to begin a new log", path.display())]
    Tampered {
        /// The log file.
        path: PathBuf,
        /// The first failure [`AuditLog::verify`] found.
        source: Box<AuditError>,
    },
    /// A line could not be read.
    #[error("cannot read line {line} of the audit log: {source}; check the disk and the file's permissions")]
    Read {
        /// The 1-based line number.
        line: u64,
        /// What the system said.
        source: io::Error,
    },
    /// A line is longer than any the relay writes.
    #[error("line {line} of the audit log is longer than {max} bytes, which the relay never writes: the file was altered or is not an audit log")]
    LineTooLong {
        /// The 1-based line number.
        line: u64,
        /// [`MAX_LINE_LEN`].
        max: usize,
    },
    /// The last line has no `\n`.
    #[error("line {line} of the audit log has no line end: the relay stopped while writing it, or the file was cut or altered")]
    Unterminated {
        /// The 1-based line number.
        line: u64,
    },
    /// A line is not an audit record.
    #[error("line {line} of the audit log is not an audit record ({reason}): the file was altered or is not an audit log")]
    Malformed {
        /// The 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A line's `hash` does not match its content.
    #[error("line {line} of the audit log does not match its hash: the record was edited after it was written")]
    HashMismatch {
        /// The 1-based line number.
        line: u64,
    },
    /// A line's `prev` is not the previous line's `hash`.
    #[error("line {line} of the audit log does not follow the line before it: records were removed, inserted or reordered there")]
    ChainBroken {
        /// The 1-based line number.
        line: u64,
    },
    /// Line 1's `prev` is not 64 zeros.
    #[error("line 1 of the audit log continues a chain instead of starting one: records were removed from the start of the log")]
    NotChainStart,
    /// A line parses and matches its hash but is not spelled as the relay writes it.
    #[error("line {line} of the audit log is not spelled the way the relay writes it (whitespace, escapes or hex case differ): it was edited")]
    NotCanonical {
        /// The 1-based line number.
        line: u64,
    },
    /// A record is too long to be written as one line.
    #[error("the audit record is {len} bytes as a line, more than the {max} allowed, and was not logged: shorten its free text or fields (a bug in the relay)")]
    RecordTooLong {
        /// The line's length without `\n`.
        len: usize,
        /// [`MAX_LINE_LEN`].
        max: usize,
    },
    /// A record could not be written.
    #[error("cannot write to the audit log {}: {source}; the record was not logged: check free disk space and the file system", path.display())]
    Write {
        /// The log file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A record was written but could not be flushed to disk.
    #[error("the audit record was written to {} but not flushed to disk: {source}; check the disk (the record is lost if the machine stops now)", path.display())]
    Sync {
        /// The log file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A failed write left part of a line that could not be removed.
    #[error("the audit log {} ends in a partly written record that could not be removed, so the relay stopped appending to it: move the file aside (keep it as evidence) and start the relay again", path.display())]
    Poisoned {
        /// The log file.
        path: PathBuf,
    },
    /// A record could not be encoded as JSON.
    #[error("internal error while encoding an audit record ({0}); please report this bug")]
    Encode(#[source] serde_json::Error),
}

impl AuditError {
    /// The 1-based line number a verification failure is about, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            AuditError::Read { line, .. }
            | AuditError::LineTooLong { line, .. }
            | AuditError::Unterminated { line }
            | AuditError::Malformed { line, .. }
            | AuditError::HashMismatch { line }
            | AuditError::ChainBroken { line }
            | AuditError::NotCanonical { line } => Some(*line),
            AuditError::NotChainStart => Some(1),
            AuditError::Tampered { source, .. } => source.line(),
            AuditError::Open { .. }
            | AuditError::RecordTooLong { .. }
            | AuditError::Write { .. }
            | AuditError::Sync { .. }
            | AuditError::Poisoned { .. }
            | AuditError::Encode(_) => None,
        }
    }
}

/// An open, verified audit log that records are appended to.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// The file's length after the last complete line.
    len: u64,
    records: u64,
    last_hash: [u8; 32],
    poisoned: bool,
}

impl AuditLog {
    /// Opens the log at `path` for appending, creating it (mode `0600` on
    /// Unix) if it is missing. An existing log is read and verified in full
    /// first; one that does not verify is refused with
    /// [`AuditError::Tampered`] and left untouched.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let open_error = |source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(open_error)?;
        let summary = Self::verify(BufReader::new(&file)).map_err(|e| AuditError::Tampered {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let metadata = file.metadata().map_err(open_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "the audit log is readable by other users; restrict it with chmod 600"
                );
            }
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            len: metadata.len(),
            records: summary.records,
            last_hash: summary.last_hash,
            poisoned: false,
        })
    }

    /// Appends `record` as one line chained to the previous one, and syncs it
    /// to disk. On [`AuditError::Write`] the record is not in the log (a
    /// partial line is cut off again); on [`AuditError::Sync`] it is written
    /// but may not be durable.
    pub fn append(&mut self, record: &AuditRecord) -> Result<(), AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
            });
        }
        let (line, hash) = encode_line(record, &self.last_hash)?;
        let len = line.len().saturating_sub(1);
        if len > MAX_LINE_LEN {
            return Err(AuditError::RecordTooLong {
                len,
                max: MAX_LINE_LEN,
            });
        }
        if let Err(source) = self.file.write_all(&line) {
            // Leave no partial line behind: it would break the chain for every later record.
            if self.file.set_len(self.len).is_err() {
                self.poisoned = true;
            }
            return Err(AuditError::Write {
                path: self.path.clone(),
                source,
            });
        }
        self.len = self.len.saturating_add(line.len() as u64);
        self.records = self.records.saturating_add(1);
        self.last_hash = hash;
        let sync_error = |source| AuditError::Sync {
            path: self.path.clone(),
            source,
        };
        self.file.flush().map_err(sync_error)?;
        self.file.sync_data().map_err(sync_error)
    }

    /// How many records the log holds.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The hash of the last record ([`CHAIN_START`] for an empty log). An
    /// administrator who notes it elsewhere can later prove that the records
    /// up to it were not changed or cut off (see the module docs).
    pub fn last_hash(&self) -> [u8; 32] {
        self.last_hash
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a whole log from `reader` and checks every line by the rules in
    /// the module docs, stopping at the first failure. Reads at most
    /// [`MAX_LINE_LEN`]` + 1` bytes of any line into memory.
    pub fn verify(mut reader: impl BufRead) -> Result<VerifySummary, AuditError> {
        let mut expected_prev = CHAIN_START;
        let mut records: u64 = 0;
        let mut buf = Vec::new();
        loop {
            let line = records.saturating_add(1);
            match read_bounded_line(&mut reader, &mut buf)
                .map_err(|source| AuditError::Read { line, source })?
            {
                LineRead::Eof => break,
                LineRead::TooLong => {
                    return Err(AuditError::LineTooLong {
                        line,
                        max: MAX_LINE_LEN,
                    })
                }
                LineRead::Unterminated => return Err(AuditError::Unterminated { line }),
                LineRead::Line => {}
            }
            let (record, prev, stated_hash) = parse_line(&buf, line)?;
            let (canonical, hash) = encode_line(&record, &prev)?;
            if hash != stated_hash {
                return Err(AuditError::HashMismatch { line });
            }
            if canonical.strip_suffix(b"\n") != Some(buf.as_slice()) {
                return Err(AuditError::NotCanonical { line });
            }
            if prev != expected_prev {
                return Err(if line == 1 {
                    AuditError::NotChainStart
                } else {
                    AuditError::ChainBroken { line }
                });
            }
            expected_prev = hash;
            records = line;
        }
        Ok(VerifySummary {
            records,
            last_hash: expected_prev,
        })
    }
}

/// The hash of `record_json` chained to `prev` (see the module docs).
fn chain_hash(prev: &[u8; 32], record_json: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(AUDIT_DOMAIN);
    h.update(prev);
    h.update(record_json);
    h.finalize().into()
}

/// The line for `record` after `prev`, `\n` included, and its hash.
fn encode_line(record: &AuditRecord, prev: &[u8; 32]) -> Result<(Vec<u8>, [u8; 32]), AuditError> {
    let json = serde_json::to_vec(record).map_err(AuditError::Encode)?;
    let hash = chain_hash(prev, &json);
    let open = json.strip_suffix(b"}").ok_or_else(|| {
        AuditError::Encode(<serde_json::Error as serde::ser::Error>::custom(
            "a record did not encode as a JSON object",
        ))
    })?;
    let mut line = Vec::with_capacity(open.len() + TAIL_LEN + 1);
    line.extend_from_slice(open);
    line.extend_from_slice(PREV_KEY);
    line.extend_from_slice(hex::encode(prev).as_bytes());
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(hex::encode(hash).as_bytes());
    line.extend_from_slice(LINE_END);
    line.push(b'\n');
    Ok((line, hash))
}

/// Splits a line (without `\n`) into its record, `prev` and `hash`.
fn parse_line(line: &[u8], number: u64) -> Result<(AuditRecord, [u8; 32], [u8; 32]), AuditError> {
    let malformed = |reason: &str| AuditError::Malformed {
        line: number,
        reason: reason.to_string(),
    };
    let tail_at = line
        .len()
        .checked_sub(TAIL_LEN)
        .ok_or_else(|| malformed("too short to hold prev and hash"))?;
    let (head, tail) = line
        .split_at_checked(tail_at)
        .ok_or_else(|| malformed("too short to hold prev and hash"))?;
    let bad_tail = || malformed("does not end with the prev and hash fields");
    let rest = tail.strip_prefix(PREV_KEY).ok_or_else(bad_tail)?;
    let (prev_hex, rest) = rest.split_at_checked(64).ok_or_else(bad_tail)?;
    let rest = rest.strip_prefix(HASH_KEY).ok_or_else(bad_tail)?;
    let (hash_hex, rest) = rest.split_at_checked(64).ok_or_else(bad_tail)?;
    if rest != LINE_END {
        return Err(bad_tail());
    }
    let decode = |hex_digits: &[u8], what: &str| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut out)
            .map(|()| out)
            .map_err(|_| malformed(&format!("{what} is not 64 hex digits")))
    };
    let prev = decode(prev_hex, "prev")?;
    let hash = decode(hash_hex, "hash")?;
    let mut json = Vec::with_capacity(head.len().saturating_add(1));
    json.extend_from_slice(head);
    json.push(b'}');
    let record: AuditRecord =
        serde_json::from_slice(&json).map_err(|e| malformed(&e.to_string()))?;
    Ok((record, prev, hash))
}

enum LineRead {
    /// `buf` holds a complete line without its `\n`.
    Line,
    /// No more input.
    Eof,
    /// More than [`MAX_LINE_LEN`] bytes without a `\n`.
    TooLong,
    /// The input ended inside a line.
    Unterminated,
}

/// Reads one line into `buf`, never more than [`MAX_LINE_LEN`]` + 1` bytes.
fn read_bounded_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    buf.clear();
    let limit = MAX_LINE_LEN as u64 + 1;
    let read = reader.take(limit).read_until(b'\n', buf)?;
    if read == 0 {
        return Ok(LineRead::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(LineRead::Line)
    } else if buf.len() as u64 >= limit {
        Ok(LineRead::TooLong)
    } else {
        Ok(LineRead::Unterminated)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn record(i: u32) -> AuditRecord {
        AuditRecord {
            time: 1_795_600_000 + u64::from(i),
            event: if i == 1 {
                AuditEvent::SessionCreated
            } else {
                AuditEvent::Joined
            },
            login: if i == 1 {
                "Acme Support Ltd".into()
            } else {
                String::new()
            },
            license: if i == 1 {
                "1234567890".into()
            } else {
                String::new()
            },
            session: Some(123_456),
            participants: i,
            client_version: "1.4.0".into(),
            os_user: format!("user{i}"),
            host: format!("host-{i}"),
            ip: format!("192.0.2.{i}"),
            text: String::new(),
        }
    }

    /// A log with records 1..=5 in a fresh directory.
    fn five() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        for i in 1..=5 {
            log.append(&record(i)).unwrap();
        }
        assert_eq!(log.records(), 5);
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn verify_lines(lines: &[String]) -> Result<VerifySummary, AuditError> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        AuditLog::verify(text.as_bytes())
    }

    #[test]
    fn five_records_verify() {
        let (_dir, path) = five();
        let summary = AuditLog::verify(BufReader::new(File::open(&path).unwrap())).unwrap();
        assert_eq!(summary.records, 5);
        let last = lines(&path).pop().unwrap();
        assert!(last.ends_with(&format!(
            "\"hash\":\"{}\"}}",
            hex::encode(summary.last_hash)
        )));
    }

    #[test]
    fn lines_follow_the_documented_format_and_hash_rule() {
        let (_dir, path) = five();
        let all = lines(&path);
        assert!(all[0].starts_with(
            "{\"time\":1795600001,\"event\":\"session-created\",\"login\":\"Acme Support Ltd\",\
             \"license\":\"1234567890\",\"session\":123456,\"participants\":1,\
             \"client_version\":\"1.4.0\",\"os_user\":\"user1\",\"host\":\"host-1\",\
             \"ip\":\"192.0.2.1\",\"text\":\"\",\"prev\":\""
        ));
        // Recompute every hash by the byte rule of the module docs, independently.
        let mut prev = "0".repeat(64);
        for line in &all {
            let tail_at = line.len() - TAIL_LEN;
            let record = format!("{}}}", &line[..tail_at]);
            let tail = &line[tail_at..];
            assert_eq!(&tail[9..73], prev, "prev");
            let mut h = Sha256::new();
            h.update(b"conclave/v1/audit\0");
            h.update(hex::decode(&prev).unwrap());
            h.update(record.as_bytes());
            let hash = hex::encode(h.finalize());
            assert_eq!(tail, format!(",\"prev\":\"{prev}\",\"hash\":\"{hash}\"}}"));
            prev = hash;
        }
    }

    #[test]
    fn a_session_less_record_writes_null_and_text_stays_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        let mut r = record(2);
        r.event = AuditEvent::Refused;
        r.session = None;
        r.text = "line one\nline \"two\"\\ \u{1} été".into();
        log.append(&r).unwrap();
        let all = lines(&path);
        assert_eq!(all.len(), 1);
        assert!(all[0].contains("\"event\":\"refused\""));
        assert!(all[0].contains("\"session\":null"));
        let (back, _, _) = parse_line(all[0].as_bytes(), 1).unwrap();
        assert_eq!(back, r);
        assert_eq!(verify_lines(&all).unwrap().records, 1);
    }

    #[test]
    fn an_edited_field_is_a_hash_mismatch() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        assert!(all[2].contains("\"participants\":3,"));
        all[2] = all[2].replace("\"participants\":3,", "\"participants\":9,");
        let err = verify_lines(&all).unwrap_err();
        assert!(matches!(err, AuditError::HashMismatch { line: 3 }), "{err}");
        assert_eq!(err.line(), Some(3));
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        let (mut r, prev, _) = parse_line(all[2].as_bytes(), 3).unwrap();
        r.ip = "203.0.113.9".into();
        let (line, _) = encode_line(&r, &prev).unwrap();
        all[2] = String::from_utf8(line).unwrap().trim_end().to_string();
        let err = verify_lines(&all).unwrap_err();
        assert!(matches!(err, AuditError::ChainBroken { line: 4 }), "{err}");
    }

    #[test]
    fn a_deleted_line_breaks_the_chain_where_it_was() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        all.remove(2);
        let err = verify_lines(&all).unwrap_err();
        assert!(matches!(err, AuditError::ChainBroken { line: 3 }), "{err}");
    }

    #[test]
    fn swapped_lines_break_the_chain() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        all.swap(1, 2);
        let err = verify_lines(&all).unwrap_err();
        assert!(matches!(err, AuditError::ChainBroken { line: 2 }), "{err}");
    }

    #[test]
    fn a_deleted_first_line_is_noticed() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        all.remove(0);
        let err = verify_lines(&all).unwrap_err();
        assert!(matches!(err, AuditError::NotChainStart), "{err}");
        assert_eq!(err.line(), Some(1));
    }

    #[test]
    fn appended_garbage_is_malformed_or_unterminated() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        all.push("this is not a record".into());
        let err = verify_lines(&all).unwrap_err();
        assert!(
            matches!(err, AuditError::Malformed { line: 6, .. }),
            "{err}"
        );

        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"{\"time\":1");
        let err = AuditLog::verify(text.as_slice()).unwrap_err();
        assert!(matches!(err, AuditError::Unterminated { line: 6 }), "{err}");
    }

    #[test]
    fn an_over_long_line_is_refused_without_reading_it_all() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        all.insert(2, "x".repeat(10 * MAX_LINE_LEN));
        let err = verify_lines(&all).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::LineTooLong {
                    line: 3,
                    max: MAX_LINE_LEN
                }
            ),
            "{err}"
        );
        // An endless line without `\n`: the reader stops at the limit.
        let endless = std::io::BufReader::new(std::io::repeat(b'{'));
        let err = AuditLog::verify(endless).unwrap_err();
        assert!(
            matches!(err, AuditError::LineTooLong { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn respelled_lines_and_unknown_fields_are_refused() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        all[1] = all[1].replacen("\"time\":", "\"time\": ", 1);
        let err = verify_lines(&all).unwrap_err();
        assert!(matches!(err, AuditError::NotCanonical { line: 2 }), "{err}");

        let mut all = lines(&path);
        let hash_at = all[1].len() - 66;
        let upper = all[1][hash_at..].to_uppercase();
        all[1].replace_range(hash_at.., &upper);
        let err = verify_lines(&all).unwrap_err();
        assert!(matches!(err, AuditError::NotCanonical { line: 2 }), "{err}");

        let mut all = lines(&path);
        all[1] = all[1].replacen("{", "{\"extra\":1,", 1);
        let err = verify_lines(&all).unwrap_err();
        assert!(
            matches!(err, AuditError::Malformed { line: 2, .. }),
            "{err}"
        );

        let mut all = lines(&path);
        all[3] = all[3].replacen("\"joined\"", "\"teleported\"", 1);
        let err = verify_lines(&all).unwrap_err();
        assert!(
            matches!(err, AuditError::Malformed { line: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn the_longest_line_is_accepted_and_a_longer_record_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        let mut r = record(1);
        let (line, _) = encode_line(&r, &CHAIN_START).unwrap();
        let short = line.len() - 1;
        r.text = "a".repeat(MAX_LINE_LEN - short + 1);
        let err = log.append(&r).unwrap_err();
        assert!(
            matches!(err, AuditError::RecordTooLong { len, max: MAX_LINE_LEN } if len == MAX_LINE_LEN + 1),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        r.text.pop();
        log.append(&r).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            MAX_LINE_LEN as u64 + 1
        );
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.records(), 1);
    }

    #[test]
    fn reopening_continues_the_chain() {
        let (_dir, path) = five();
        let before = AuditLog::verify(File::open(&path).map(BufReader::new).unwrap()).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.records(), 5);
        assert_eq!(log.last_hash(), before.last_hash);
        log.append(&record(6)).unwrap();
        log.append(&record(7)).unwrap();
        let after = AuditLog::verify(File::open(&path).map(BufReader::new).unwrap()).unwrap();
        assert_eq!(after.records, 7);
        assert_eq!(after.last_hash, log.last_hash());
        let all = lines(&path);
        assert!(all[5].contains(&format!("\"prev\":\"{}\"", hex::encode(before.last_hash))));
    }

    #[test]
    fn a_tampered_log_is_not_appended_to() {
        let (_dir, path) = five();
        let mut all = lines(&path);
        all.remove(3);
        let tampered: String = all.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, &tampered).unwrap();
        let err = AuditLog::open(&path).unwrap_err();
        assert!(
            matches!(&err, AuditError::Tampered { source, .. }
                if matches!(**source, AuditError::ChainBroken { line: 4 })),
            "{err}"
        );
        assert_eq!(err.line(), Some(4));
        assert!(err.to_string().contains("move the file aside"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), tampered);
    }

    #[test]
    fn an_empty_or_new_log_starts_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.log");
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.records(), 0);
        assert_eq!(log.last_hash(), CHAIN_START);
        assert_eq!(
            AuditLog::verify(&b""[..]).unwrap(),
            VerifySummary {
                records: 0,
                last_hash: CHAIN_START
            }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_missing_directory_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = AuditLog::open(&dir.path().join("no/such/dir/audit.log")).unwrap_err();
        assert!(matches!(err, AuditError::Open { .. }), "{err}");
    }

    #[test]
    fn events_are_spelled_in_kebab_case() {
        for (event, text) in [
            (AuditEvent::SessionCreated, "session-created"),
            (AuditEvent::Joined, "joined"),
            (AuditEvent::Left, "left"),
            (AuditEvent::Refused, "refused"),
            (AuditEvent::Removed, "removed"),
            (AuditEvent::SessionEnded, "session-ended"),
        ] {
            assert_eq!(
                serde_json::to_string(&event).unwrap(),
                format!("\"{text}\"")
            );
            assert_eq!(event.to_string(), text);
        }
    }
}
