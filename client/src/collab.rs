//! Presenting, viewing and remote control on top of a session (R21, R22):
//! the rules of [`conclave_protocol::app`], kept by each app for itself.
//!
//! The runtime feeds `Collab` the session's events, the frames of media
//! classes it opened, the app's commands and the time; `Collab` answers with
//! `Out`s: frames to seal and send, commands for the engine (the master's
//! rights grants) and events for the app.
//!
//! - **Who presents.** In a support session the master makes the customer
//!   the presenter as soon as it is admitted (that is what joining a support
//!   session is for; the customer's banner says so and shows who watches).
//!   In a meeting the master presents on `present me`, hands the role to a
//!   participant with `present N` (granting it the presenter right) and takes
//!   it back the same way; the role moves only by the master's word, sent
//!   pairwise ([`AppMessage::Presenter`]). Screen frames from anyone else are
//!   dropped unseen.
//! - **Remote control.** See the protocol module. The participant's side
//!   applies input only in the `Active` state, which it enters only by its
//!   user's consent or by the countdown's default from its own build's
//!   policy, and leaves at once on Stop, the stop hotkey, a release, or
//!   rights that no longer include control. Input arrives in frames of class
//!   `Input`, which the engines open only under pairwise keys. While its
//!   user keeps *view only* on, requests are refused without asking.
//! - **Files** (R23). Each side offers files to the other (the master to a
//!   participant, a participant with the files right to the master); the
//!   receiver's user accepts or declines each offer, and nothing is written
//!   before that. Chunks travel in frames of class `File`, pairwise, which
//!   the relay drops when policy forbids transfers. Every step is an event
//!   on both sides. Chunks are sent a few per turn, so a large file never
//!   holds back the session's other frames.
//! - **Recording** (R25). A recording holds what this app views (screen
//!   packets as they arrived), the chat, and a note for each session event,
//!   signed with the master's key (a participant signs with a key drawn for
//!   the recording, whose fingerprint the verifier shows). Starting and
//!   stopping is announced to everyone through the master. A policy that
//!   forces recording starts it with the session (the master refuses to
//!   open one without `--record FILE`); one that forbids it refuses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_protocol::app::{AppMessage, ControlEnd};
use conclave_protocol::artefact::{CountdownDefault, PolicyProfile};
use conclave_protocol::bounded::BoundedBytes;
use conclave_protocol::codec::Message;
use conclave_protocol::frame::{FrameClass, PeerId};
use conclave_protocol::input::InputEvent;
use conclave_protocol::stage1::SessionKind;
use conclave_protocol::stage2::{Control, Rights};
use tokio::sync::mpsc;

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use conclave_protocol::artefact::RecordingPolicy;
use conclave_protocol::files::FileMessage;
use conclave_protocol::frame::SessionId;
use conclave_protocol::recording::RecordingWriter;
use conclave_protocol::sign::SigningIdentity;
use conclave_protocol::time::UnixTime;

use conclave_protocol::shared::SharedRequest;

use crate::events::{parse_rights, Command, Event};
use crate::files::{Direction, TransferEvent, Transfers};
use crate::screen::{FrameSink, Presenter, ShareOptions, Viewer, ViewerReport};

mod shared;

/// What the runtime does for [`Collab`].
#[derive(Debug)]
pub(crate) enum Out {
    /// Seal under the group key and send to everyone.
    Group(FrameClass, Vec<u8>),
    /// Seal under the pairwise key with `peer` and send.
    To(PeerId, FrameClass, Vec<u8>),
    /// A command for the engine's side of the app (a rights grant).
    Command(Command),
    /// An event for the app.
    Emit(Event),
    /// A shared-file request for the relay (R24).
    Relay(SharedRequest),
}

/// The media an app brings to a session.
#[derive(Default)]
pub struct MediaOptions {
    /// What this side shares when it presents (`None`: it cannot present).
    pub share: Option<ShareOptions>,
    /// Where decoded frames go (a window; `None`: only the figures).
    pub sink: Option<Box<dyn FrameSink>>,
    /// Where accepted files are saved (`None`: the working directory).
    pub downloads: Option<std::path::PathBuf>,
    /// Where a recording goes when one starts (R25); a policy that forces
    /// recording starts it with the session.
    pub record: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for MediaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaOptions")
            .field("share", &self.share)
            .field("sink", &self.sink.is_some())
            .field("downloads", &self.downloads)
            .field("record", &self.record)
            .finish()
    }
}

/// What wakes the runtime on [`Collab`]'s behalf.
pub(crate) enum Wake {
    /// The presenter's next frame, or its failure; `None`: it stopped.
    Packets(Option<Result<Vec<Vec<u8>>, String>>),
    /// The viewer's report.
    Report(Option<ViewerReport>),
}

/// The master's view of one participant's remote control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granted {
    Asked,
    Active,
}

/// The participant's remote-control state.
#[derive(Debug)]
enum Controlled {
    Off,
    Asking {
        deadline: Instant,
    },
    Active {
        input: std::sync::mpsc::Sender<InputEvent>,
    },
}

/// Role-specific state.
enum Side {
    Master {
        kind: SessionKind,
        /// Admitted participants, by the names they were admitted under.
        members: BTreeMap<PeerId, String>,
        rights: BTreeMap<PeerId, Rights>,
        control: BTreeMap<PeerId, Granted>,
    },
    Participant {
        me: PeerId,
        rights: Rights,
        control: Controlled,
        view_only: bool,
        moderator: String,
        /// Keeps the stop hotkey grabbed while control is active.
        hotkey: Option<conclave_desktop::hotkey::StopHotkey>,
    },
}

/// Presenting, viewing and control for one app; see the module docs.
pub(crate) struct Collab {
    side: Side,
    policy: PolicyProfile,
    share: Option<ShareOptions>,
    sink: Option<Box<dyn FrameSink>>,
    presenter: Option<PeerId>,
    presenting: Option<Presenter>,
    viewer: Option<Viewer>,
    /// Where the app's own commands come in (the hotkey sends there). Weak,
    /// so that the session still ends when the app drops its handle.
    commands: mpsc::WeakSender<Command>,
    /// File transfers, one table per peer.
    transfers: BTreeMap<PeerId, Transfers>,
    /// When each transfer last reported progress.
    progress_shown: BTreeMap<(PeerId, bool, u32), Instant>,
    /// Whether chunks are waiting to be sent.
    file_work: bool,
    /// Shared files (R24).
    shared: shared::SharedFiles,
    downloads: PathBuf,
    record_path: Option<PathBuf>,
    recorder: Option<Recorder>,
    identity: SigningIdentity,
    session: SessionId,
    /// This side's name, for recording notices.
    name: String,
}

/// File chunks sent per turn of the runtime.
const CHUNKS_PER_TURN: usize = 8;
/// Progress events at most this often per transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A recording being written; finished (final checkpoint) when dropped.
struct Recorder {
    writer: Option<RecordingWriter<BufWriter<File>>>,
    started: Instant,
}

impl Recorder {
    fn at_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn write(
        &mut self,
        f: impl FnOnce(&mut RecordingWriter<BufWriter<File>>, u64) -> std::io::Result<()>,
    ) -> Result<(), String> {
        let at = self.at_ms();
        match self.writer.as_mut() {
            Some(w) => f(w, at).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        match self.writer.take() {
            Some(w) => w
                .finish()
                .and_then(|mut b| std::io::Write::flush(&mut b))
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!("the recording could not be finished: {e}");
        }
    }
}

fn app(to: PeerId, msg: &AppMessage) -> Out {
    let control = Control::App(BoundedBytes::new(msg.encode()).unwrap_or_default());
    Out::To(to, FrameClass::Control, control.encode())
}

fn error(message: impl Into<String>) -> Out {
    Out::Emit(Event::Error {
        message: message.into(),
    })
}

fn control_event(peer: PeerId, state: &'static str, reason: impl Into<String>) -> Out {
    Out::Emit(Event::Control {
        peer: peer.0,
        state,
        reason: reason.into(),
    })
}

impl Collab {
    /// The master's side.
    pub(crate) fn master(
        kind: SessionKind,
        policy: PolicyProfile,
        media: MediaOptions,
        who: (String, SigningIdentity),
        commands: mpsc::Sender<Command>,
    ) -> Self {
        Self::new(
            Side::Master {
                kind,
                members: BTreeMap::new(),
                rights: BTreeMap::new(),
                control: BTreeMap::new(),
            },
            policy,
            media,
            who,
            commands,
        )
    }

    /// A participant's side (its ID comes with [`Collab::set_me`]).
    pub(crate) fn participant(
        policy: PolicyProfile,
        media: MediaOptions,
        who: (String, SigningIdentity),
        commands: mpsc::Sender<Command>,
    ) -> Self {
        Self::new(
            Side::Participant {
                me: PeerId::RELAY,
                rights: Rights::NONE,
                control: Controlled::Off,
                view_only: false,
                moderator: "the moderator".into(),
                hotkey: None,
            },
            policy,
            media,
            who,
            commands,
        )
    }

    fn new(
        side: Side,
        policy: PolicyProfile,
        media: MediaOptions,
        (name, identity): (String, SigningIdentity),
        commands: mpsc::Sender<Command>,
    ) -> Self {
        Self {
            side,
            policy,
            share: media.share,
            sink: media.sink,
            presenter: None,
            presenting: None,
            viewer: None,
            commands: commands.downgrade(),
            transfers: BTreeMap::new(),
            progress_shown: BTreeMap::new(),
            file_work: false,
            shared: shared::SharedFiles::default(),
            downloads: media.downloads.unwrap_or_else(|| PathBuf::from(".")),
            record_path: media.record,
            recorder: None,
            identity,
            session: SessionId(0),
            name,
        }
    }

    /// The session, and the participant's ID once the relay has given it.
    pub(crate) fn set_context(&mut self, session: SessionId, id: PeerId) {
        self.session = session;
        if let Side::Participant { me, .. } = &mut self.side {
            *me = id;
        }
    }

    /// Whether file chunks wait to be sent: the runtime then comes back at
    /// once ([`Collab::pump`]).
    pub(crate) fn has_file_work(&self) -> bool {
        self.file_work || self.shared.has_work()
    }

    /// Sends a few chunks of each transfer, and reports what the transfers
    /// did.
    pub(crate) fn pump(&mut self, out: &mut Vec<Out>) {
        self.file_work = false;
        let mut events = Vec::new();
        for (peer, t) in &mut self.transfers {
            for n in 0..=CHUNKS_PER_TURN {
                if n == CHUNKS_PER_TURN {
                    self.file_work = true;
                    break;
                }
                match t.poll_transmit() {
                    Some(msg) => out.push(Out::To(*peer, FrameClass::File, msg.encode())),
                    None => break,
                }
            }
            while let Some(e) = t.poll_event() {
                events.push((*peer, e));
            }
        }
        for (peer, e) in events {
            self.file_event(peer, e, out);
        }
        self.pump_shared(out);
    }

    fn file_event(&mut self, peer: PeerId, e: TransferEvent, out: &mut Vec<Out>) {
        let file = |id: u32,
                    direction: Direction,
                    state: &'static str,
                    done: u64,
                    size: u64,
                    detail: String| {
            Out::Emit(Event::File {
                peer: peer.0,
                id,
                direction: match direction {
                    Direction::Outgoing => "send",
                    Direction::Incoming => "receive",
                },
                state,
                done,
                size,
                detail,
            })
        };
        let size_of = |t: Option<&Transfers>, id: u32, d: Direction| -> u64 {
            t.and_then(|t| match d {
                Direction::Outgoing => t.outgoing(id).map(|o| o.offer().size),
                Direction::Incoming => t.incoming(id).map(|i| i.size()),
            })
            .unwrap_or(0)
        };
        // A transfer that ended shows no more progress: forget its timestamp.
        let ended = match &e {
            TransferEvent::Declined { id } => Some((*id, Direction::Outgoing)),
            TransferEvent::Complete { id, direction, .. }
            | TransferEvent::Cancelled { id, direction, .. }
            | TransferEvent::Failed { id, direction, .. } => Some((*id, *direction)),
            _ => None,
        };
        if let Some((id, direction)) = ended {
            self.progress_shown
                .remove(&(peer, direction == Direction::Outgoing, id));
        }
        let table = self.transfers.get(&peer);
        let ev = match e {
            TransferEvent::Offered { id, name, size } => Out::Emit(Event::FileOffered {
                peer: peer.0,
                id,
                name,
                size,
            }),
            TransferEvent::Accepted { id, from_offset } => {
                let size = size_of(table, id, Direction::Outgoing);
                file(
                    id,
                    Direction::Outgoing,
                    "accepted",
                    from_offset,
                    size,
                    String::new(),
                )
            }
            TransferEvent::Declined { id } => {
                let size = size_of(table, id, Direction::Outgoing);
                file(id, Direction::Outgoing, "declined", 0, size, String::new())
            }
            TransferEvent::Progress {
                id,
                direction,
                progress,
            } => {
                let key = (peer, direction == Direction::Outgoing, id);
                let due = progress.done >= progress.size
                    || self
                        .progress_shown
                        .get(&key)
                        .is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                if !due {
                    return;
                }
                self.progress_shown.insert(key, Instant::now());
                file(
                    id,
                    direction,
                    "progress",
                    progress.done,
                    progress.size,
                    String::new(),
                )
            }
            TransferEvent::Complete {
                id,
                direction,
                path,
            } => {
                let size = size_of(table, id, direction);
                file(
                    id,
                    direction,
                    "complete",
                    size,
                    size,
                    path.display().to_string(),
                )
            }
            TransferEvent::Cancelled {
                id,
                direction,
                reason,
            } => file(
                id,
                direction,
                "cancelled",
                0,
                size_of(table, id, direction),
                format!("{reason:?}"),
            ),
            TransferEvent::Failed {
                id,
                direction,
                error,
            } => file(
                id,
                direction,
                "failed",
                0,
                size_of(table, id, direction),
                error.to_string(),
            ),
        };
        out.push(ev);
    }

    /// The peer a file command is about: the moderator for a participant;
    /// for the master the one named, or the only participant.
    fn file_peer(&self, named: Option<PeerId>) -> Result<PeerId, String> {
        match &self.side {
            Side::Participant { .. } => Ok(PeerId::MASTER),
            Side::Master { members, .. } => match named {
                Some(p) if members.contains_key(&p) => Ok(p),
                Some(p) => Err(format!("{p} is not in the session")),
                None if members.len() == 1 => members
                    .keys()
                    .next()
                    .copied()
                    .ok_or_else(|| "nobody is in the session".to_string()),
                None => Err("name the participant: send N FILE, accept N ID".into()),
            },
        }
    }

    fn file_command(&mut self, command: Command, out: &mut Vec<Out>) {
        if !self.policy.file_transfer {
            out.push(error("file transfer is disabled by this session's policy"));
            return;
        }
        let result = match command {
            Command::SendFile(who, path) => self.file_peer(who).and_then(|peer| {
                if let Side::Participant { rights, .. } = &self.side {
                    if !rights.contains(Rights::FILE_TRANSFER) {
                        return Err("the moderator has not given you the files right".into());
                    }
                }
                let t = self.transfers.entry(peer).or_default();
                // Hashing the file reads all of it: off the async workers.
                tokio::task::block_in_place(|| t.offer(&path))
                    .map(|id| {
                        let size = t.outgoing(id).map_or(0, |o| o.offer().size);
                        out.push(Out::Emit(Event::File {
                            peer: peer.0,
                            id,
                            direction: "send",
                            state: "offered",
                            done: 0,
                            size,
                            detail: path.display().to_string(),
                        }));
                    })
                    .map_err(|e| e.to_string())
            }),
            Command::AcceptFile(who, id) => self.file_peer(who).and_then(|peer| {
                let dir = self.downloads.clone();
                let t = self.transfers.entry(peer).or_default();
                tokio::task::block_in_place(|| t.accept(id, &dir)).map_err(|e| e.to_string())
            }),
            Command::DeclineFile(who, id) => self.file_peer(who).and_then(|peer| {
                self.transfers
                    .entry(peer)
                    .or_default()
                    .decline(id)
                    .map_err(|e| e.to_string())
            }),
            _ => Ok(()),
        };
        if let Err(e) = result {
            out.push(error(e));
        }
        self.pump(out);
    }

    fn record_command(&mut self, start: bool, out: &mut Vec<Out>) {
        if !start && self.policy.recording == RecordingPolicy::Forced {
            out.push(error(
                "this session's policy records it from start to end: it cannot be stopped",
            ));
            return;
        }
        if !start {
            match self.recorder.take() {
                Some(mut r) => {
                    if let Err(e) = r.finish() {
                        out.push(error(format!("the recording could not be finished: {e}")));
                    }
                    self.announce_recording(false, out);
                }
                None => out.push(error("nothing is being recorded")),
            }
            return;
        }
        if self.policy.recording == RecordingPolicy::Forbidden {
            out.push(error("recording is forbidden by this session's policy"));
            return;
        }
        if let Side::Participant { rights, .. } = &self.side {
            if !rights.contains(Rights::RECORDING) {
                out.push(error("the moderator has not given you the recording right"));
                return;
            }
        }
        if self.recorder.is_some() {
            out.push(error("a recording is already running"));
            return;
        }
        let Some(path) = self.record_path.clone() else {
            out.push(error(
                "no file to record into: start the app with --record FILE",
            ));
            return;
        };
        let opened = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))
            .and_then(|f| {
                RecordingWriter::new(
                    BufWriter::new(f),
                    &self.identity,
                    self.session,
                    &self.name,
                    UnixTime::from_system(std::time::SystemTime::now()),
                )
                .map_err(|e| e.to_string())
            });
        match opened {
            Ok(w) => {
                self.recorder = Some(Recorder {
                    writer: Some(w),
                    started: Instant::now(),
                });
                // The recording starts with a whole picture.
                self.ask_keyframe(out);
                self.announce_recording(true, out);
            }
            Err(e) => out.push(error(e)),
        }
    }

    /// Master: `peer`'s hand is up or down; everyone is told.
    fn hand(&mut self, peer: PeerId, raised: bool, out: &mut Vec<Out>) {
        let Side::Master { members, .. } = &self.side else {
            return;
        };
        if !members.contains_key(&peer) {
            return;
        }
        for p in members.keys() {
            out.push(app(*p, &AppMessage::Hand { peer, raised }));
        }
        out.push(Out::Emit(Event::Hand {
            peer: peer.0,
            raised,
        }));
    }

    /// Tells everyone that this side records (or stopped).
    fn announce_recording(&mut self, active: bool, out: &mut Vec<Out>) {
        let by = crate::connect::bounded(&self.name);
        let msg = AppMessage::Recording { active, by };
        match &self.side {
            Side::Master { members, .. } => {
                for p in members.keys() {
                    out.push(app(*p, &msg));
                }
            }
            Side::Participant { .. } => out.push(app(PeerId::MASTER, &msg)),
        }
        out.push(Out::Emit(Event::Recording {
            active,
            by: self.name.clone(),
        }));
    }

    /// Writes a session event into the recording, if one runs.
    fn record_event(&mut self, event: &Event, out: &mut Vec<Out>) {
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        let written = match event {
            Event::Chat { from, name, text } => {
                r.write(|w, at| w.chat(at, PeerId(*from), name, text))
            }
            Event::ScreenStats { .. } | Event::Ended { .. } => Ok(()),
            other => {
                let line = crate::cli::describe(other);
                let line = conclave_protocol::bounded::prefix(
                    &line,
                    conclave_protocol::recording::MAX_NOTE,
                );
                r.write(|w, at| w.note(at, line))
            }
        };
        if let Err(e) = written {
            self.recorder = None;
            out.push(error(format!("recording stopped: {e}")));
        }
    }

    fn me(&self) -> PeerId {
        match &self.side {
            Side::Master { .. } => PeerId::MASTER,
            Side::Participant { me, .. } => *me,
        }
    }

    /// Whether this app shares its screen now.
    pub(crate) fn is_presenting(&self) -> bool {
        self.presenting.is_some()
    }

    /// Waits for the presenter's next frame (only when `take_frames`) or the
    /// viewer's next report.
    pub(crate) async fn wake(&mut self, take_frames: bool) -> Wake {
        let (presenting, viewer) = (&mut self.presenting, &mut self.viewer);
        tokio::select! {
            p = async {
                match presenting {
                    Some(p) if take_frames => p.packets.recv().await,
                    _ => std::future::pending().await,
                }
            } => Wake::Packets(p),
            r = async {
                match viewer {
                    Some(v) => v.reports.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::Report(r),
        }
    }

    /// The next moment [`Collab::timeout`] has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.side {
            Side::Participant {
                control: Controlled::Asking { deadline },
                ..
            } => Some(*deadline),
            _ => None,
        }
    }

    /// Acts on what woke the runtime.
    pub(crate) fn woke(&mut self, wake: Wake, out: &mut Vec<Out>) {
        match wake {
            Wake::Packets(Some(Ok(packets))) => {
                out.extend(
                    packets
                        .into_iter()
                        .map(|p| Out::Group(FrameClass::Screen, p)),
                );
            }
            Wake::Packets(Some(Err(e))) => {
                self.stop_presenting(out);
                out.push(error(format!("sharing the screen stopped: {e}")));
            }
            Wake::Packets(None) => self.stop_presenting(out),
            Wake::Report(Some(ViewerReport::NeedKeyframe(why))) => {
                tracing::debug!("asking for a keyframe: {why}");
                self.ask_keyframe(out);
            }
            Wake::Report(Some(ViewerReport::Stats(s))) => out.push(Out::Emit(Event::ScreenStats {
                from: self.presenter.map_or(0, |p| p.0),
                fps: s.fps.round() as u32,
                bytes_per_s: s.bytes_per_s.round() as u64,
                latency_ms: s.latency_ms.round() as u64,
                latency_max_ms: s.latency_max_ms.round() as u64,
                width: s.width,
                height: s.height,
            })),
            Wake::Report(None) => self.viewer = None,
        }
    }

    /// Handles the app's command if it is one of sharing or control;
    /// returns it otherwise.
    pub(crate) fn command(&mut self, command: Command, out: &mut Vec<Out>) -> Option<Command> {
        match (&mut self.side, command) {
            (Side::Master { .. }, Command::Present(who)) => self.hand_presenter(who, out),
            (Side::Master { .. }, Command::RequestControl(peer)) => self.request_control(peer, out),
            (Side::Master { control, .. }, Command::ReleaseControl) => {
                for (peer, _) in std::mem::take(control) {
                    out.push(app(peer, &AppMessage::ReleaseControl));
                    out.push(control_event(
                        peer,
                        "ended",
                        ControlEnd::Released.describe(),
                    ));
                }
            }
            (Side::Master { control, .. }, Command::Input(events)) => {
                let active: Vec<PeerId> = control
                    .iter()
                    .filter(|(_, g)| **g == Granted::Active)
                    .map(|(p, _)| *p)
                    .collect();
                if active.is_empty() {
                    out.push(error("no participant has granted remote control"));
                }
                for peer in active {
                    for e in &events {
                        out.push(Out::To(peer, FrameClass::Input, e.encode()));
                    }
                }
            }
            (Side::Participant { .. }, Command::AllowControl) => self.answer(true, false, out),
            (Side::Participant { .. }, Command::DenyControl) => self.answer(false, false, out),
            (Side::Participant { .. }, Command::StopControl(why)) => self.end_control(why, out),
            (Side::Participant { view_only, .. }, Command::ViewOnly(on)) => {
                *view_only = on;
                if on {
                    self.end_control(ControlEnd::StopButton, out);
                }
            }
            (
                Side::Participant { .. },
                Command::Present(_)
                | Command::RequestControl(_)
                | Command::ReleaseControl
                | Command::Input(_),
            ) => out.push(error(
                "only the moderator presents others, asks for control or sends input",
            )),
            (
                Side::Master { .. },
                Command::AllowControl
                | Command::DenyControl
                | Command::StopControl(_)
                | Command::ViewOnly(_),
            ) => out.push(error(
                "only the participant whose computer is controlled answers or stops control",
            )),
            (
                _,
                c @ (Command::SendFile(..) | Command::AcceptFile(..) | Command::DeclineFile(..)),
            ) => self.file_command(c, out),
            (_, c @ (Command::Share(_) | Command::Unshare(_) | Command::Fetch(_))) => {
                self.shared_command(c, out)
            }
            (_, Command::Record(start)) => self.record_command(start, out),
            (Side::Participant { me, .. }, Command::Hand(None, raised)) => {
                let me = *me;
                // The master's answer to everyone, this side included, shows it.
                out.push(app(PeerId::MASTER, &AppMessage::Hand { peer: me, raised }));
            }
            (Side::Master { .. }, Command::Hand(Some(peer), false)) => self.hand(peer, false, out),
            (_, Command::Hand(..)) => out.push(error(
                "a participant raises or lowers its own hand; the moderator lowers others' (lower N)",
            )),
            (_, other) => return Some(other),
        }
        None
    }

    /// Follows the session: who is in, with which rights, and new epochs.
    pub(crate) fn observe(&mut self, event: &Event, out: &mut Vec<Out>) {
        self.record_event(event, out);
        self.admitted(event, out);
        if matches!(event, Event::SessionOpened { .. })
            && self.policy.recording == RecordingPolicy::Forced
            && self.recorder.is_none()
        {
            self.record_command(true, out);
        }
        let me = self.me();
        match (&mut self.side, event) {
            (
                Side::Master {
                    kind,
                    members,
                    rights,
                    ..
                },
                Event::Admitted { peer, name, .. },
            ) => {
                let peer = PeerId(*peer);
                members.insert(peer, name.clone());
                if *kind == SessionKind::Support && self.policy.screen_sharing {
                    // The customer shows its screen: that is the session.
                    let r = rights.get(&peer).copied().unwrap_or(Rights::NONE);
                    self.presenter = Some(peer);
                    out.push(Out::Command(Command::Grant(
                        peer,
                        r.with(Rights::PRESENTER),
                    )));
                    out.push(app(peer, &AppMessage::Presenter(Some(peer))));
                    self.ensure_viewer(out);
                }
            }
            (
                Side::Master {
                    members,
                    rights,
                    control,
                    ..
                },
                Event::Left { peer, .. },
            ) => {
                let peer = PeerId(*peer);
                members.remove(&peer);
                rights.remove(&peer);
                control.remove(&peer);
                // Its transfers end with it: nothing more is read or sent.
                self.transfers.remove(&peer);
                self.progress_shown.retain(|(p, _, _), _| *p != peer);
                if self.presenter == Some(peer) {
                    self.presenter = None;
                    self.broadcast_presenter(out);
                }
            }
            (
                Side::Master { rights, .. },
                Event::Rights {
                    peer,
                    rights: names,
                },
            ) => {
                if let Ok(r) = parse_rights(&names.join(",")) {
                    rights.insert(PeerId(*peer), r);
                }
            }
            (
                Side::Participant {
                    rights, control, ..
                },
                Event::Rights {
                    peer,
                    rights: names,
                },
            ) if PeerId(*peer) == me => {
                *rights = parse_rights(&names.join(",")).unwrap_or(Rights::NONE);
                let lost_control =
                    !rights.contains(Rights::REMOTE_CONTROL) && !matches!(control, Controlled::Off);
                let lost_presenter = !rights.contains(Rights::PRESENTER);
                if lost_control {
                    self.end_control(ControlEnd::RightWithdrawn, out);
                }
                if lost_presenter && self.presenting.is_some() {
                    self.stop_presenting(out);
                }
            }
            (Side::Participant { moderator, .. }, Event::Announced { moderator: m, .. }) => {
                moderator.clone_from(m);
            }
            (_, Event::Epoch { .. }) => {
                // Someone may be new: show them the whole picture.
                if let Some(p) = &self.presenting {
                    p.request_keyframe();
                }
            }
            _ => {}
        }
    }

    /// (Master) what a newly admitted participant must learn at once.
    fn admitted(&mut self, event: &Event, out: &mut Vec<Out>) {
        if let (Side::Master { .. }, Event::Admitted { peer, .. }) = (&self.side, event) {
            self.shared_admitted(PeerId(*peer), out);
        }
    }

    /// A frame of class Screen, Input or Control (app) from `from`.
    pub(crate) fn inbound(
        &mut self,
        from: PeerId,
        class: FrameClass,
        data: Vec<u8>,
        out: &mut Vec<Out>,
    ) {
        match class {
            FrameClass::Screen => {
                if self.presenter != Some(from) || from == self.me() {
                    tracing::debug!("screen frame from {from}, who does not present: dropped");
                    return;
                }
                if let Some(r) = self.recorder.as_mut() {
                    if let Err(e) = r.write(|w, at| w.screen(at, &data)) {
                        self.recorder = None;
                        out.push(error(format!("recording stopped: {e}")));
                    }
                }
                if let Some(v) = &self.viewer {
                    v.offer(Bytes::from(data));
                }
            }
            FrameClass::Input => self.input(from, &data, out),
            FrameClass::File => match FileMessage::decode(&data) {
                Ok(msg) if !self.may_take(from, &msg) => {
                    tracing::debug!("file message from {from}, who may not send it: dropped");
                }
                Ok(msg) => {
                    self.transfers.entry(from).or_default().handle(msg);
                    self.pump(out);
                }
                Err(e) => tracing::debug!("file message from {from} refused: {e}"),
            },
            FrameClass::Control => match AppMessage::decode(&data) {
                Ok(msg) => self.app_message(from, msg, out),
                Err(e) => tracing::debug!("app message from {from} refused: {e}"),
            },
            _ => {}
        }
    }

    /// Whether a file-transfer message from `from` is taken: only when the
    /// policy allows transfers, and an offer to the master only from a
    /// participant holding the files right (answers about the master's own
    /// offers come from anyone it offered to; a participant hears only from
    /// the master, who may always offer).
    fn may_take(&self, from: PeerId, msg: &FileMessage) -> bool {
        self.policy.file_transfer
            && match &self.side {
                Side::Master { rights, .. } => {
                    !matches!(msg, FileMessage::Offer(_))
                        || rights
                            .get(&from)
                            .is_some_and(|r| r.contains(Rights::FILE_TRANSFER))
                }
                Side::Participant { .. } => from == PeerId::MASTER,
            }
    }

    /// Runs the countdown.
    pub(crate) fn timeout(&mut self, now: Instant, out: &mut Vec<Out>) {
        if self.deadline().is_some_and(|d| d <= now) {
            let accept = self.policy.countdown_default == CountdownDefault::Accept;
            self.answer(accept, true, out);
        }
    }

    fn app_message(&mut self, from: PeerId, msg: AppMessage, out: &mut Vec<Out>) {
        let me = self.me();
        match (&mut self.side, msg) {
            (_, AppMessage::SharedFile(info)) => self.shared_announced(from, info, out),
            (_, AppMessage::SharedFileRemoved(blob)) => self.shared_removed(from, blob, out),
            (_, AppMessage::KeyframeRequest) => {
                if let Some(p) = &self.presenting {
                    p.request_keyframe();
                } else if let (Side::Master { .. }, Some(p)) = (&self.side, self.presenter) {
                    if p != from {
                        out.push(app(p, &AppMessage::KeyframeRequest));
                    }
                }
            }
            (Side::Participant { .. }, AppMessage::Presenter(who)) if from == PeerId::MASTER => {
                self.presenter = who;
                out.push(Out::Emit(Event::Presenter {
                    peer: who.map(|p| p.0),
                }));
                if who == Some(me) {
                    self.start_presenting(out);
                } else {
                    self.stop_presenting(out);
                    if who.is_some() {
                        self.ensure_viewer(out);
                    }
                }
            }
            (Side::Participant { .. }, AppMessage::ControlRequest) if from == PeerId::MASTER => {
                self.control_requested(out);
            }
            (Side::Participant { .. }, AppMessage::ReleaseControl) if from == PeerId::MASTER => {
                self.end_control(ControlEnd::Released, out);
            }
            (
                Side::Master { control, .. },
                AppMessage::ControlAnswer {
                    granted,
                    by_default,
                },
            ) => {
                if control.get(&from) != Some(&Granted::Asked) {
                    return;
                }
                let how = if by_default {
                    "by the countdown's default"
                } else {
                    "by the participant"
                };
                if granted {
                    control.insert(from, Granted::Active);
                    out.push(control_event(from, "active", format!("granted {how}")));
                } else {
                    control.remove(&from);
                    out.push(control_event(from, "denied", format!("denied {how}")));
                }
            }
            (Side::Master { control, .. }, AppMessage::ControlEnded(why)) => {
                if control.remove(&from).is_some() {
                    out.push(control_event(from, "ended", why.describe()));
                }
            }
            (Side::Master { .. }, AppMessage::Hand { raised, .. }) => self.hand(from, raised, out),
            (Side::Participant { .. }, AppMessage::Hand { peer, raised })
                if from == PeerId::MASTER =>
            {
                out.push(Out::Emit(Event::Hand {
                    peer: peer.0,
                    raised,
                }));
            }
            (Side::Master { members, .. }, AppMessage::Recording { active, .. }) => {
                // Who records is the name the master admitted, not the claim.
                let Some(name) = members.get(&from).cloned() else {
                    return;
                };
                let by = crate::connect::bounded::<64>(&name);
                for p in members.keys().filter(|p| **p != from) {
                    out.push(app(
                        *p,
                        &AppMessage::Recording {
                            active,
                            by: by.clone(),
                        },
                    ));
                }
                out.push(Out::Emit(Event::Recording { active, by: name }));
            }
            (Side::Participant { .. }, AppMessage::Recording { active, by }) => {
                out.push(Out::Emit(Event::Recording {
                    active,
                    by: by.as_str().to_string(),
                }));
            }
            (_, other) => tracing::debug!("app message {other:?} from {from} ignored"),
        }
    }

    fn input(&mut self, from: PeerId, data: &[u8], out: &mut Vec<Out>) {
        let Side::Participant { control, .. } = &mut self.side else {
            return;
        };
        if from != PeerId::MASTER {
            return;
        }
        let Controlled::Active { input } = control else {
            tracing::debug!("input while control is not granted: dropped");
            return;
        };
        match InputEvent::decode(data) {
            Ok(event) => {
                if input.send(event).is_err() {
                    out.push(error("remote input can no longer be applied"));
                    self.end_control(ControlEnd::StopButton, out);
                }
            }
            Err(e) => tracing::debug!("input event refused: {e}"),
        }
    }

    fn ensure_viewer(&mut self, out: &mut Vec<Out>) {
        if self.viewer.is_none() {
            match Viewer::start(self.sink.take()) {
                Ok(v) => self.viewer = Some(v),
                Err(e) => out.push(error(format!("cannot show screens: {e}"))),
            }
        }
    }

    fn ask_keyframe(&mut self, out: &mut Vec<Out>) {
        match (&self.side, self.presenter) {
            (Side::Participant { .. }, Some(_)) => {
                out.push(app(PeerId::MASTER, &AppMessage::KeyframeRequest));
            }
            (Side::Master { .. }, Some(p)) if p != PeerId::MASTER => {
                out.push(app(p, &AppMessage::KeyframeRequest));
            }
            _ => {}
        }
    }

    fn start_presenting(&mut self, out: &mut Vec<Out>) {
        if self.presenting.is_some() {
            return;
        }
        let Some(share) = &self.share else {
            out.push(error(
                "asked to present, but this app has no screen to share: run it on a display or with --screen",
            ));
            return;
        };
        match Presenter::start(share) {
            Ok(p) => {
                self.presenting = Some(p);
                out.push(Out::Emit(Event::Sharing {
                    active: true,
                    source: share.source.describe(),
                }));
            }
            Err(e) => out.push(error(format!(
                "cannot share {}: {e}",
                share.source.describe()
            ))),
        }
    }

    fn stop_presenting(&mut self, out: &mut Vec<Out>) {
        if self.presenting.take().is_some() {
            out.push(Out::Emit(Event::Sharing {
                active: false,
                source: self
                    .share
                    .as_ref()
                    .map(|s| s.source.describe())
                    .unwrap_or_default(),
            }));
        }
    }

    fn broadcast_presenter(&mut self, out: &mut Vec<Out>) {
        let Side::Master { members, .. } = &self.side else {
            return;
        };
        for peer in members.keys() {
            out.push(app(*peer, &AppMessage::Presenter(self.presenter)));
        }
        out.push(Out::Emit(Event::Presenter {
            peer: self.presenter.map(|p| p.0),
        }));
    }

    /// Master: `who` presents from now on (`None`: nobody).
    fn hand_presenter(&mut self, who: Option<PeerId>, out: &mut Vec<Out>) {
        let Side::Master {
            members, rights, ..
        } = &self.side
        else {
            return;
        };
        if !self.policy.screen_sharing {
            out.push(error("screen sharing is disabled by this session's policy"));
            return;
        }
        if let Some(p) = who.filter(|p| *p != PeerId::MASTER) {
            if !members.contains_key(&p) {
                out.push(error(format!("{p} is not in the session")));
                return;
            }
            if !self.policy.presenter_handover {
                out.push(error(
                    "handing the presenter role on is disabled by this session's policy",
                ));
                return;
            }
        }
        // The one who presented loses the right; the new one gets it.
        if let Some(old) = self
            .presenter
            .filter(|p| *p != PeerId::MASTER && Some(*p) != who)
        {
            let r = rights.get(&old).copied().unwrap_or(Rights::NONE);
            out.push(Out::Command(Command::Grant(
                old,
                Rights(r.0 & !Rights::PRESENTER.0),
            )));
        }
        if let Some(p) = who.filter(|p| *p != PeerId::MASTER) {
            let r = rights.get(&p).copied().unwrap_or(Rights::NONE);
            out.push(Out::Command(Command::Grant(p, r.with(Rights::PRESENTER))));
        }
        self.presenter = who;
        if who == Some(PeerId::MASTER) {
            self.start_presenting(out);
        } else {
            self.stop_presenting(out);
            if who.is_some() {
                self.ensure_viewer(out);
            }
        }
        self.broadcast_presenter(out);
    }

    /// Master: asks `peer` for control (granting the right first).
    fn request_control(&mut self, peer: PeerId, out: &mut Vec<Out>) {
        let Side::Master {
            members,
            rights,
            control,
            ..
        } = &mut self.side
        else {
            return;
        };
        if !self.policy.remote_control {
            out.push(error("remote control is disabled by this session's policy"));
            return;
        }
        if !members.contains_key(&peer) {
            out.push(error(format!("{peer} is not in the session")));
            return;
        }
        let r = rights.get(&peer).copied().unwrap_or(Rights::NONE);
        if !r.contains(Rights::REMOTE_CONTROL) {
            out.push(Out::Command(Command::Grant(
                peer,
                r.with(Rights::REMOTE_CONTROL),
            )));
        }
        control.insert(peer, Granted::Asked);
        out.push(app(peer, &AppMessage::ControlRequest));
        out.push(control_event(
            peer,
            "asked",
            "waiting for the participant's answer",
        ));
    }

    /// Participant: the master asks for control.
    fn control_requested(&mut self, out: &mut Vec<Out>) {
        let seconds = u32::from(self.policy.control_countdown_secs);
        let default = match self.policy.countdown_default {
            CountdownDefault::Accept => "allow",
            CountdownDefault::Deny => "deny",
        };
        let can_inject = self
            .share
            .as_ref()
            .and_then(|s| s.source.display())
            .is_some();
        let Side::Participant {
            me,
            rights,
            control,
            view_only,
            moderator,
            ..
        } = &mut self.side
        else {
            return;
        };
        let me = *me;
        let refuse = if !rights.contains(Rights::REMOTE_CONTROL) {
            Some("the request came without the remote-control right")
        } else if !self.policy.remote_control {
            Some("remote control is disabled by this build's policy")
        } else if *view_only {
            Some("view only is on")
        } else if !can_inject {
            Some("this app shares no display that input could reach")
        } else {
            None
        };
        if let Some(why) = refuse {
            out.push(app(
                PeerId::MASTER,
                &AppMessage::ControlAnswer {
                    granted: false,
                    by_default: false,
                },
            ));
            out.push(control_event(me, "denied", why));
            return;
        }
        if !matches!(control, Controlled::Off) {
            return;
        }
        *control = Controlled::Asking {
            deadline: Instant::now() + Duration::from_secs(u64::from(seconds)),
        };
        out.push(Out::Emit(Event::ControlRequested {
            by: moderator.clone(),
            seconds,
            default,
        }));
    }

    /// Participant: the answer to a pending request.
    fn answer(&mut self, granted: bool, by_default: bool, out: &mut Vec<Out>) {
        let display = self
            .share
            .as_ref()
            .and_then(|s| s.source.display())
            .map(|d| d.map(str::to_string));
        let origin = self.presenting.as_ref().map_or((0, 0), |p| p.origin);
        let commands = self.commands.clone();
        let Side::Participant {
            me,
            control,
            hotkey,
            ..
        } = &mut self.side
        else {
            return;
        };
        let me = *me;
        if !matches!(control, Controlled::Asking { .. }) {
            out.push(error("nobody is asking for control"));
            return;
        }
        let how = if by_default {
            "by the countdown's default"
        } else {
            "by you"
        };
        let started = granted
            .then(|| display.ok_or_else(|| "no display".to_string()))
            .transpose()
            .and_then(|d| d.map(|d| start_injector(d, origin)).transpose());
        match started {
            Ok(Some(input)) => {
                *control = Controlled::Active { input };
                *hotkey = grab_hotkey(&self.share, commands, out);
                out.push(app(
                    PeerId::MASTER,
                    &AppMessage::ControlAnswer {
                        granted: true,
                        by_default,
                    },
                ));
                out.push(control_event(
                    me,
                    "active",
                    format!("granted {how}; press F11 or Stop to end it"),
                ));
            }
            Ok(None) | Err(_) => {
                if let Err(e) = started {
                    out.push(error(format!("remote control cannot start: {e}")));
                }
                *control = Controlled::Off;
                out.push(app(
                    PeerId::MASTER,
                    &AppMessage::ControlAnswer {
                        granted: false,
                        by_default,
                    },
                ));
                out.push(control_event(me, "denied", format!("denied {how}")));
            }
        }
    }

    /// Participant: control is over, at once.
    fn end_control(&mut self, why: ControlEnd, out: &mut Vec<Out>) {
        let Side::Participant {
            me,
            control,
            hotkey,
            ..
        } = &mut self.side
        else {
            return;
        };
        // Dropping the sender ends the injector thread, which releases any
        // key or button still held.
        let was = std::mem::replace(control, Controlled::Off);
        *hotkey = None;
        if matches!(was, Controlled::Off) {
            return;
        }
        if why != ControlEnd::Released {
            out.push(app(PeerId::MASTER, &AppMessage::ControlEnded(why)));
        }
        out.push(control_event(*me, "ended", why.describe()));
    }
}

/// Starts the thread that applies input to `display`.
fn start_injector(
    display: Option<String>,
    origin: (i16, i16),
) -> Result<std::sync::mpsc::Sender<InputEvent>, String> {
    let mut injector = conclave_desktop::input::Injector::connect(display.as_deref(), origin)
        .map_err(|e| e.to_string())?;
    let (tx, rx) = std::sync::mpsc::channel::<InputEvent>();
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || {
            for event in rx {
                if let Err(e) = injector.apply(&event) {
                    tracing::warn!("remote input not applied: {e}");
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(tx)
}

/// Grabs the stop hotkey on the shared display; its presses come back as
/// commands.
fn grab_hotkey(
    share: &Option<ShareOptions>,
    commands: mpsc::WeakSender<Command>,
    out: &mut Vec<Out>,
) -> Option<conclave_desktop::hotkey::StopHotkey> {
    let display = share.as_ref()?.source.display()?;
    match conclave_desktop::hotkey::StopHotkey::grab(
        display,
        conclave_desktop::hotkey::STOP_KEYSYM,
        move || {
            if let Some(c) = commands.upgrade() {
                let _ = c.try_send(Command::StopControl(ControlEnd::Hotkey));
            }
        },
    ) {
        Ok(h) => Some(h),
        Err(e) => {
            out.push(Out::Emit(Event::Warning {
                message: format!("the stop hotkey is not available ({e}); use Stop"),
            }));
            None
        }
    }
}
