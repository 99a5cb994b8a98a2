//! Shared files in a meeting (R24), one app's side; the protocol and what
//! the relay sees are in [`conclave_protocol::shared`].
//!
//! - `share FILE` (the master, or a participant holding the files right
//!   when the policy allows shared files) uploads the file sealed under a
//!   fresh key, a few parts per turn of the runtime, hashing it as it
//!   reads: what is announced is exactly what was uploaded, even if the
//!   file changes on disk meanwhile. Once the relay has the last part, the
//!   master announces it (with its key) to every participant, pairwise, and
//!   to each one it admits later; a participant's file goes to the master
//!   first, which checks the sharer's right and announces it under the name
//!   it admitted the sharer with.
//! - `fetch ID` asks the relay for the parts, a few at a time, opens each
//!   under the file's key and writes it to a partial file in the downloads
//!   folder; the file gets its name (never replacing another, like a
//!   transferred file) only once its size and SHA-256 match the
//!   announcement. Anything else deletes the partial file and says why.
//! - `unshare ID` (the master) deletes a file on the relay and tells
//!   everyone.
//!
//! Every step is an [`Event::Shared`]. Reading and writing happen on the
//! runtime's thread in parts of 128 KiB, under `block_in_place`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use conclave_protocol::app::AppMessage;
use conclave_protocol::bounded::BoundedBytes;
use conclave_protocol::frame::PeerId;
use conclave_protocol::shared::{
    parts_for, BlobId, FileKey, PartContext, SharedFileInfo, SharedReply, SharedRequest,
    MAX_SHARED_FILE, PART,
};
use conclave_protocol::stage2::Rights;
use sha2::{Digest, Sha256};

use super::{app, error, Collab, Out, Side, PROGRESS_EVERY};
use crate::connect::bounded;
use crate::events::{Command, Event};
use crate::files::{read_full, save, tagged_part_name, validate_name};

/// Shared files a session's catalogue holds at most (the relay's default
/// bound is 64 a session).
const MAX_KNOWN: usize = 256;

/// Parts uploaded per turn of the runtime (each turn also flushes).
const PARTS_PER_TURN: usize = 2;
/// Parts asked for and not yet received, per fetch.
const FETCH_WINDOW: u32 = 4;

/// One app's shared files: the catalogue and what moves.
#[derive(Default)]
pub(super) struct SharedFiles {
    /// Files announced in this session.
    known: BTreeMap<BlobId, SharedFileInfo>,
    uploads: BTreeMap<BlobId, Upload>,
    fetches: BTreeMap<BlobId, Fetch>,
}

impl SharedFiles {
    /// Whether parts wait to be uploaded.
    pub(super) fn has_work(&self) -> bool {
        self.uploads.values().any(|u| !u.sent_last)
    }
}

struct Upload {
    name: String,
    file: File,
    key: FileKey,
    next: u32,
    read: u64,
    hasher: Sha256,
    /// The part after the one being sent, read ahead to know which is last.
    ahead: Option<Vec<u8>>,
    sent_last: bool,
}

struct Fetch {
    info: SharedFileInfo,
    part: PathBuf,
    file: File,
    parts: u32,
    asked: u32,
    got: u32,
    written: u64,
    hasher: Sha256,
    shown: Instant,
}

fn shared_event(
    info: (&BlobId, &str, u64, &str),
    state: &'static str,
    done: u64,
    detail: impl Into<String>,
) -> Out {
    let (blob, name, size, from) = info;
    Out::Emit(Event::Shared {
        id: blob.to_string(),
        name: name.to_string(),
        size,
        from: from.to_string(),
        state,
        done,
        detail: detail.into(),
    })
}

fn about(info: &SharedFileInfo) -> (&BlobId, &str, u64, &str) {
    (
        &info.blob,
        info.name.as_str(),
        info.size,
        info.from.as_str(),
    )
}

/// Reads the next part of an upload.
fn read_part(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; PART];
    let n = read_full(file, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

impl Collab {
    /// `share`, `unshare` and `fetch`.
    pub(super) fn shared_command(&mut self, command: Command, out: &mut Vec<Out>) {
        let result = match command {
            Command::Share(path) => self.share(path, out),
            Command::Unshare(blob) => match &self.side {
                Side::Master { .. } if self.shared.known.contains_key(&blob) => {
                    out.push(Out::Relay(SharedRequest::Delete { blob }));
                    Ok(())
                }
                Side::Master { .. } => Err(format!("no shared file {blob}")),
                Side::Participant { .. } => Err("only the moderator removes shared files".into()),
            },
            Command::Fetch(blob) => self.fetch(blob, out),
            _ => Ok(()),
        };
        if let Err(e) = result {
            out.push(error(e));
        }
    }

    fn share(&mut self, path: PathBuf, out: &mut Vec<Out>) -> Result<(), String> {
        if !self.policy.shared_files {
            return Err("shared files are disabled by this session's policy".into());
        }
        if let Side::Participant { rights, .. } = &self.side {
            if !rights.contains(Rights::FILE_TRANSFER) {
                return Err("the moderator has not given you the files right".into());
            }
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} has no file name to share it under", path.display()))?;
        let name = validate_name(name)
            .map_err(|why| format!("{name:?} cannot be shared: {why}"))?
            .to_owned();
        // Checked before opening: opening a pipe would wait for a writer.
        let meta =
            fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        if meta.len() > MAX_SHARED_FILE {
            return Err(format!(
                "{} is {} bytes; shared files may be at most 1 GiB",
                path.display(),
                meta.len()
            ));
        }
        let file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut rng = rand_core::OsRng;
        let blob = BlobId(rand_core::RngCore::next_u64(&mut rng));
        out.push(shared_event(
            (&blob, &name, meta.len(), &self.name),
            "uploading",
            0,
            path.display().to_string(),
        ));
        self.shared.uploads.insert(
            blob,
            Upload {
                name,
                file,
                key: FileKey::generate(&mut rng),
                next: 0,
                read: 0,
                hasher: Sha256::new(),
                ahead: None,
                sent_last: false,
            },
        );
        self.pump_shared(out);
        Ok(())
    }

    /// Sends a few parts of each upload.
    pub(super) fn pump_shared(&mut self, out: &mut Vec<Out>) {
        let session = self.session;
        let mut failed = Vec::new();
        for (blob, u) in &mut self.shared.uploads {
            for _ in 0..PARTS_PER_TURN {
                if u.sent_last {
                    break;
                }
                match tokio::task::block_in_place(|| next_part(session, *blob, u)) {
                    Ok(put) => out.push(Out::Relay(put)),
                    Err(e) => {
                        failed.push((*blob, u.name.clone(), e));
                        break;
                    }
                }
            }
        }
        for (blob, name, why) in failed {
            self.shared.uploads.remove(&blob);
            out.push(shared_event(
                (&blob, &name, 0, &self.name),
                "failed",
                0,
                why,
            ));
        }
    }

    fn fetch(&mut self, blob: BlobId, out: &mut Vec<Out>) -> Result<(), String> {
        if self.shared.fetches.contains_key(&blob) {
            return Err(format!("shared file {blob} is already being fetched"));
        }
        let info = self
            .shared
            .known
            .get(&blob)
            .cloned()
            .ok_or_else(|| format!("no shared file {blob} in this session"))?;
        let name = validate_name(info.name.as_str())
            .map_err(|why| format!("the shared file's name cannot be used: {why}"))?;
        // Named by the file's number, so that no transfer's partial file
        // is touched; made afresh, so that a link found there is replaced,
        // never followed.
        let part = self
            .downloads
            .join(tagged_part_name(name, &blob.to_string()));
        let _ = fs::remove_file(&part);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        out.push(shared_event(about(&info), "fetching", 0, ""));
        let mut f = Fetch {
            parts: parts_for(info.size),
            info,
            part,
            file,
            asked: 0,
            got: 0,
            written: 0,
            hasher: Sha256::new(),
            shown: Instant::now(),
        };
        ask(&mut f, out);
        self.shared.fetches.insert(blob, f);
        Ok(())
    }

    /// The relay's answer to a shared-file request.
    pub(crate) fn shared_reply(&mut self, reply: SharedReply, out: &mut Vec<Out>) {
        match reply {
            SharedReply::Stored { blob, .. } => self.stored(blob, out),
            SharedReply::Part {
                blob, index, data, ..
            } => {
                let session = self.session;
                let Some(f) = self.shared.fetches.get_mut(&blob) else {
                    return;
                };
                let step = tokio::task::block_in_place(|| take_part(session, f, index, &data));
                match step {
                    Err(why) => self.fetch_failed(blob, why, out),
                    Ok(false) => {
                        if f.shown.elapsed() >= PROGRESS_EVERY {
                            f.shown = Instant::now();
                            out.push(shared_event(about(&f.info), "progress", f.written, ""));
                        }
                        ask(f, out);
                    }
                    Ok(true) => {
                        let Some(f) = self.shared.fetches.remove(&blob) else {
                            return;
                        };
                        drop(f.file);
                        let saved = save(&f.part, &self.downloads, f.info.name.as_str());
                        match saved {
                            Ok(path) => out.push(shared_event(
                                about(&f.info),
                                "fetched",
                                f.written,
                                path.display().to_string(),
                            )),
                            Err(e) => {
                                let _ = fs::remove_file(&f.part);
                                out.push(shared_event(about(&f.info), "failed", 0, e.to_string()));
                            }
                        }
                    }
                }
            }
            SharedReply::Deleted { blob } => {
                if let Some(info) = self.shared.known.remove(&blob) {
                    out.push(shared_event(about(&info), "removed", 0, ""));
                    if let Side::Master { members, .. } = &self.side {
                        for peer in members.keys() {
                            out.push(app(*peer, &AppMessage::SharedFileRemoved(blob)));
                        }
                    }
                }
            }
            SharedReply::Refused { blob, message, .. } => {
                if let Some(u) = self.shared.uploads.remove(&blob) {
                    out.push(shared_event(
                        (&blob, &u.name, u.read, &self.name),
                        "failed",
                        0,
                        message.as_str(),
                    ));
                } else if self.shared.fetches.contains_key(&blob) {
                    self.fetch_failed(blob, message.to_string(), out);
                } else {
                    out.push(error(format!("shared file {blob}: {message}")));
                }
            }
        }
    }

    fn fetch_failed(&mut self, blob: BlobId, why: String, out: &mut Vec<Out>) {
        if let Some(f) = self.shared.fetches.remove(&blob) {
            drop(f.file);
            let _ = fs::remove_file(&f.part);
            out.push(shared_event(about(&f.info), "failed", f.written, why));
        }
    }

    /// The relay holds the whole upload: announce it.
    fn stored(&mut self, blob: BlobId, out: &mut Vec<Out>) {
        let Some(u) = self.shared.uploads.remove(&blob) else {
            return;
        };
        let info = SharedFileInfo {
            blob,
            name: bounded(&u.name),
            size: u.read,
            sha256: u.hasher.finalize().into(),
            key: u.key.clone(),
            from: bounded(&self.name),
        };
        match &self.side {
            Side::Master { .. } => self.publish(info, out),
            Side::Participant { .. } => {
                out.push(shared_event(
                    about(&info),
                    "uploaded",
                    info.size,
                    "the moderator shares it with everyone",
                ));
                out.push(app(PeerId::MASTER, &AppMessage::SharedFile(info)));
            }
        }
    }

    /// (Master) adds a stored file to the catalogue and tells every
    /// participant.
    fn publish(&mut self, info: SharedFileInfo, out: &mut Vec<Out>) {
        if let Side::Master { members, .. } = &self.side {
            for peer in members.keys() {
                out.push(app(*peer, &AppMessage::SharedFile(info.clone())));
            }
        }
        out.push(shared_event(about(&info), "available", info.size, ""));
        self.shared.known.insert(info.blob, info);
    }

    /// (Master) a newly admitted participant gets the files shared so far.
    pub(super) fn shared_admitted(&mut self, peer: PeerId, out: &mut Vec<Out>) {
        for info in self.shared.known.values() {
            out.push(app(peer, &AppMessage::SharedFile(info.clone())));
        }
    }

    /// An announcement: from a participant to the master (to be checked and
    /// published), or from the master.
    pub(super) fn shared_announced(
        &mut self,
        from: PeerId,
        mut info: SharedFileInfo,
        out: &mut Vec<Out>,
    ) {
        let name_ok = validate_name(info.name.as_str()).is_ok_and(|n| n == info.name.as_str());
        let sane = name_ok && info.size <= MAX_SHARED_FILE;
        match &self.side {
            Side::Master {
                members, rights, ..
            } => {
                let Some(admitted) = members.get(&from) else {
                    return;
                };
                let allowed = self.policy.shared_files
                    && rights
                        .get(&from)
                        .is_some_and(|r| r.contains(Rights::FILE_TRANSFER));
                let taken = self.shared.known.contains_key(&info.blob)
                    || self.shared.uploads.contains_key(&info.blob);
                let full = self.shared.known.len() >= MAX_KNOWN;
                if !allowed || !sane || taken || full {
                    let who = admitted.clone();
                    // Not published, and gone from the relay too, unless
                    // the number names a file already shared (whose
                    // deletion would be the sender's doing, not the master's).
                    if !taken {
                        out.push(Out::Relay(SharedRequest::Delete { blob: info.blob }));
                    }
                    out.push(error(format!(
                        "{who} shared a file it may not share, one with a bad name, size or number, or one too many: not published"
                    )));
                    return;
                }
                info.from = bounded(admitted);
                self.publish(info, out);
            }
            Side::Participant { .. } if from == PeerId::MASTER && sane => {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.shared.known.entry(info.blob)
                {
                    out.push(shared_event(about(&info), "available", info.size, ""));
                    slot.insert(info);
                }
            }
            Side::Participant { .. } => {
                tracing::debug!("shared-file notice from {from} refused");
            }
        }
    }

    /// (Participant) the master deleted a shared file.
    pub(super) fn shared_removed(&mut self, from: PeerId, blob: BlobId, out: &mut Vec<Out>) {
        if from != PeerId::MASTER || matches!(self.side, Side::Master { .. }) {
            return;
        }
        if let Some(info) = self.shared.known.remove(&blob) {
            out.push(shared_event(about(&info), "removed", 0, ""));
        }
        self.fetch_failed(blob, "the moderator removed the file".into(), out);
    }
}

/// Reads, hashes and seals an upload's next part.
fn next_part(
    session: conclave_protocol::frame::SessionId,
    blob: BlobId,
    u: &mut Upload,
) -> Result<SharedRequest, String> {
    let read = |file: &mut File| read_part(file).map_err(|e| format!("cannot read the file: {e}"));
    let current = match u.ahead.take() {
        Some(part) => part,
        None => read(&mut u.file)?,
    };
    let last = if current.len() < PART {
        true
    } else {
        let next = read(&mut u.file)?;
        let last = next.is_empty();
        u.ahead = (!last).then_some(next);
        last
    };
    u.read += current.len() as u64;
    if u.read > MAX_SHARED_FILE {
        return Err("the file grew past 1 GiB while it was read".into());
    }
    u.hasher.update(&current);
    let at = PartContext {
        session,
        blob,
        index: u.next,
        last,
    };
    let sealed = u
        .key
        .seal(at, &current)
        .map_err(|e| e.to_string())
        .and_then(|s| BoundedBytes::new(s).map_err(|e| e.to_string()))?;
    u.next += 1;
    u.sent_last = last;
    Ok(SharedRequest::Put {
        blob,
        index: at.index,
        last,
        data: sealed,
    })
}

/// Asks for parts up to the window.
fn ask(f: &mut Fetch, out: &mut Vec<Out>) {
    while f.asked < f.parts && f.asked < f.got + FETCH_WINDOW {
        out.push(Out::Relay(SharedRequest::Get {
            blob: f.info.blob,
            index: f.asked,
        }));
        f.asked += 1;
    }
}

/// Opens, checks and writes one fetched part; `Ok(true)` when the file is
/// complete and matches its announcement.
fn take_part(
    session: conclave_protocol::frame::SessionId,
    f: &mut Fetch,
    index: u32,
    sealed: &[u8],
) -> Result<bool, String> {
    if index != f.got {
        return Err(format!(
            "the relay sent part {index} where part {} was due",
            f.got
        ));
    }
    // Whether this part is the last follows from the announced size, not
    // from what the relay says: a file cut short does not open.
    let last = index + 1 == f.parts;
    let at = PartContext {
        session,
        blob: f.info.blob,
        index,
        last,
    };
    let plain = f.info.key.open(at, sealed).map_err(|e| e.to_string())?;
    let full = plain.len() == PART;
    let fits = f.written + plain.len() as u64 <= f.info.size;
    if !fits || (!last && !full) {
        return Err("a part of the shared file has the wrong size".into());
    }
    f.file
        .write_all(&plain)
        .map_err(|e| format!("cannot write {}: {e}", f.part.display()))?;
    f.hasher.update(&plain);
    f.written += plain.len() as u64;
    f.got += 1;
    if !last {
        return Ok(false);
    }
    let sha: [u8; 32] = std::mem::take(&mut f.hasher).finalize().into();
    if f.written != f.info.size || sha != f.info.sha256 {
        return Err("the shared file does not match what was announced (size or SHA-256)".into());
    }
    f.file
        .sync_all()
        .map_err(|e| format!("cannot write {}: {e}", f.part.display()))?;
    Ok(true)
}
