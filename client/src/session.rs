//! The session runtime: one task owns the relay link and a stage-2 engine
//! (`conclave_protocol::stage2`), feeds it frames, commands and time, sends
//! what it queues, and turns its events into [`Event`]s for the app.
//!
//! - **Start.** A master measures every relay in its baked list and opens
//!   the best ([`crate::connect::measure`]), then draws a session ID whose
//!   relay order starts there ([`crate::relays`]). A participant tries the
//!   relays in the order its session ID gives.
//! - **Liveness of the relay.** The runtime pings the relay every
//!   [`PING_INTERVAL`]; any frame counts as life, and so does the relay
//!   taking frames this side had to wait to send (on a slow uplink the
//!   pings queue behind screen frames, and their answers come late; see
//!   [`conclave_transport::conn::Drained`]). Silence for [`RELAY_SILENCE`]
//!   by both measures, or the connection closing, means the relay is lost.
//!   A TCP relay that dies is noticed at once; a QUIC one after the silence.
//!   A false alarm costs a reconnect and a new epoch, never the session.
//! - **Failover** (R18). When the relay is lost, master and members move to
//!   the next relay in the session's order (trying the transport that worked
//!   first), the master reopens the session there and members rejoin under
//!   their IDs (`MasterSession::resume`, `ParticipantSession::resume`); a
//!   fresh epoch follows. [`Event::Resumed`] reports the gap. A participant
//!   not yet admitted cannot resume and is told to join again.
//! - **Tampering.** A frame that fails end-to-end authentication, a replay,
//!   a bad signature or a broken roster chain means someone between the
//!   parties altered traffic. Nothing of it was accepted (the engines drop
//!   it); the runtime warns and ends the session rather than carry on over a
//!   relay that is attacking it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use conclave_protocol::artefact::RelayEntry;
use conclave_protocol::frame::{FrameClass, PeerId, SessionId};
use conclave_protocol::sframe::SframeError;
use conclave_protocol::shared::{SharedReply, SharedRequest};
use conclave_protocol::sign::SigningIdentity;
use conclave_protocol::stage1::{LeaveReason, Refusal, SessionKind, ToRelay};
use conclave_protocol::stage2::{
    Engine, MasterConfig, MasterEvent, MasterSession, ParticipantEvent, ParticipantSession, Rights,
    Stage2Error,
};
use conclave_protocol::time::{Millis, UnixTime};
use conclave_protocol::trailer::VerifiedBuild;
use rand_core::OsRng;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::collab::{Collab, MediaOptions, Out};
use crate::connect::{bounded, measure, open, relay_frame, Attempts, ConnectError, RelayLink, Who};
use crate::events::{rights_names, Command, Event, MemberInfo};
use crate::relays::{draw_session_id, relay_order};

/// How often the runtime pings its relay.
pub const PING_INTERVAL: Duration = Duration::from_millis(300);
/// Silence from the relay after which it counts as lost.
pub const RELAY_SILENCE: Duration = Duration::from_millis(1_200);
/// How long the runtime keeps trying relays after losing one.
pub const FAILOVER_BUDGET: Duration = Duration::from_secs(20);
/// Frames waiting to be written beyond which no new screen frame is taken.
pub const SCREEN_BACKLOG: usize = 4;
/// How soon the runtime looks again for room for a screen frame.
const SCREEN_RECHECK: Duration = Duration::from_millis(4);
/// Events buffered for the app before the runtime waits for it.
const EVENT_QUEUE: usize = 1_024;

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The build lists no relay.
    #[error("this build lists no relay; ask your administrator for a build with one")]
    NoRelays,
    /// Every relay failed.
    #[error("no relay could be used: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | "))]
    NoRelayReachable(Vec<ConnectError>),
    /// A master build without a license.
    #[error("this build carries no license: only a licensed master build can open sessions")]
    NotLicensed,
    /// The session's options break the build's policy.
    #[error("{0}")]
    Policy(String),
}

/// What a master needs to open a session.
#[derive(Debug)]
pub struct MasterOptions {
    /// Support (1:1) or meeting.
    pub kind: SessionKind,
    /// The moderator's name, shown to participants.
    pub moderator: String,
    /// The session password, if any (checked against the policy's rules).
    pub password: Option<Zeroizing<String>>,
    /// Who runs the app, for the relay's audit log.
    pub who: Who,
    /// Connection attempt limits.
    pub attempts: Attempts,
    /// What it shares and where it shows screens.
    pub media: MediaOptions,
}

/// What a participant needs to join.
#[derive(Debug)]
pub struct JoinOptions {
    /// The session ID it was given.
    pub session: SessionId,
    /// The password it was given, if any.
    pub password: Option<Zeroizing<String>>,
    /// Its name, shown to the master.
    pub name: String,
    /// Who runs the app, for the relay's audit log; its host is shown to the master.
    pub who: Who,
    /// Connection attempt limits.
    pub attempts: Attempts,
    /// What it shares and where it shows screens.
    pub media: MediaOptions,
}

/// The app's handle on a running session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// The session's ID.
    pub session: SessionId,
    commands: mpsc::Sender<Command>,
}

impl SessionHandle {
    /// Asks the session to do something; `false` once it is over.
    pub async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }
}

/// A running session: the handle for commands and the stream of events,
/// which ends with [`Event::Ended`].
#[derive(Debug)]
pub struct Running {
    /// Commands.
    pub handle: SessionHandle,
    /// Events.
    pub events: mpsc::Receiver<Event>,
}

fn kind_name(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Support => "support",
        SessionKind::Meeting => "meeting",
    }
}

fn reason_name(reason: LeaveReason) -> &'static str {
    match reason {
        LeaveReason::Left => "left",
        LeaveReason::Removed => "removed",
        LeaveReason::ConnectionLost => "connection_lost",
        LeaveReason::SessionEnded => "session_ended",
    }
}

fn refused(r: &Refusal) -> Event {
    Event::Refused {
        code: format!("{:?}", r.code),
        message: r.message.to_string(),
        retry_after_ms: r.retry_after_ms,
    }
}

/// Whether an engine error means the traffic was altered, replayed or
/// forged on the way (as opposed to late or unexpected frames).
fn is_tampering(e: &Stage2Error) -> bool {
    matches!(
        e,
        Stage2Error::Sframe(SframeError::Authentication | SframeError::Replay(_))
            | Stage2Error::Signature(_)
            | Stage2Error::BrokenChain
            | Stage2Error::WrapInvalid
            | Stage2Error::StaleEpoch { .. }
            | Stage2Error::GroupKeyForControl(_)
            | Stage2Error::BadGrant(_)
    )
}

/// What the engine hands on to [`Collab`].
enum Inbound {
    /// An opened frame: sender, class, plaintext.
    Frame(PeerId, FrameClass, Vec<u8>),
    /// The relay's answer about a shared file (R24).
    Shared(SharedReply),
}

/// The engine-specific half of the runtime.
trait Driver: Send + 'static {
    fn session(&self) -> SessionId;
    fn peer(&self) -> PeerId;
    /// The engine underneath, for frames and timers.
    fn engine(&mut self) -> &mut dyn Engine;
    /// The engine underneath, to read its deadline.
    fn engine_ref(&self) -> &dyn Engine;
    fn command(&mut self, now: Millis, command: Command, out: &mut Vec<Event>);
    /// Translates the engine's events; sets the end when one ends the
    /// session. Opened frames of media and app classes go to `inbound`.
    fn events(&mut self, out: &mut Vec<Event>, inbound: &mut Vec<Inbound>);
    /// Seals `data` under the group key for everyone.
    fn send_group(&mut self, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error>;
    /// Seals `data` under the pairwise key with `peer`.
    fn send_to(&mut self, peer: PeerId, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error>;
    /// Asks the relay about a shared file (R24).
    fn shared(&mut self, request: SharedRequest) -> Result<(), Stage2Error>;
    /// Whether the session can move to a new relay; `Err` with the reason.
    fn can_resume(&self) -> Result<(), String>;
    /// Moves to a new relay (after [`Driver::can_resume`]).
    fn resume(&mut self, now: Millis);
    /// Whether `event` marks the session's return after a failover.
    fn is_return(&self, event: &Event) -> bool;
    /// Stops at once (tampering): tell the others if possible.
    fn abort(&mut self);
    /// Why the session is over, once it is.
    fn over(&self) -> Option<&str>;
}

struct MasterDriver {
    engine: MasterSession<OsRng>,
    kind: SessionKind,
    moderator: String,
    names: BTreeMap<PeerId, String>,
    rights: BTreeMap<PeerId, Rights>,
    opened: bool,
    over: Option<String>,
}

impl MasterDriver {
    fn name(&self, peer: PeerId) -> String {
        self.names
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| peer.to_string())
    }

    fn members(&self) -> Vec<MemberInfo> {
        let mut list = vec![MemberInfo {
            peer: PeerId::MASTER.0,
            name: self.moderator.clone(),
            rights: rights_names(Rights::ALL),
        }];
        list.extend(self.engine.participants().map(|p| MemberInfo {
            peer: p.0,
            name: self.name(p),
            rights: rights_names(self.rights.get(&p).copied().unwrap_or(Rights::NONE)),
        }));
        list
    }
}

impl Driver for MasterDriver {
    fn session(&self) -> SessionId {
        self.engine.session()
    }
    fn peer(&self) -> PeerId {
        PeerId::MASTER
    }
    fn engine(&mut self) -> &mut dyn Engine {
        &mut self.engine
    }
    fn engine_ref(&self) -> &dyn Engine {
        &self.engine
    }

    fn command(&mut self, now: Millis, command: Command, out: &mut Vec<Event>) {
        let result = match command {
            Command::Admit(peer) => self.engine.admit(peer, now),
            Command::Deny(peer) => {
                self.engine.deny(peer);
                self.names.remove(&peer);
                Ok(())
            }
            Command::Remove(peer) => self.engine.remove(peer, now),
            Command::Grant(peer, rights) => self.engine.set_rights(peer, rights).map(|()| {
                self.rights.insert(peer, rights);
                out.push(Event::Rights {
                    peer: peer.0,
                    rights: rights_names(rights),
                });
            }),
            Command::Lock(locked) => {
                self.engine.set_locked(locked);
                out.push(Event::Locked { locked });
                Ok(())
            }
            Command::Chat(text) => self.engine.send_chat(&text).map(|()| {
                out.push(Event::Chat {
                    from: PeerId::MASTER.0,
                    name: self.moderator.clone(),
                    text,
                });
            }),
            Command::Leave => {
                self.engine.end();
                self.over = Some("you ended the session".into());
                Ok(())
            }
            other => Err(Stage2Error::Command(format!(
                "{other:?} is not a moderator's command"
            ))),
        };
        if let Err(e) = result {
            out.push(Event::Error {
                message: e.to_string(),
            });
        }
    }

    fn send_group(&mut self, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error> {
        self.engine.send_group(class, data)
    }
    fn send_to(&mut self, peer: PeerId, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error> {
        self.engine.send_to(peer, class, data)
    }
    fn shared(&mut self, request: SharedRequest) -> Result<(), Stage2Error> {
        self.engine.shared(request);
        Ok(())
    }

    fn events(&mut self, out: &mut Vec<Event>, inbound: &mut Vec<Inbound>) {
        while let Some(e) = self.engine.poll_event() {
            match e {
                MasterEvent::SessionCreated => {
                    self.opened = true;
                    out.push(Event::SessionOpened {
                        session: self.engine.session().to_string(),
                        kind: kind_name(self.kind),
                    });
                }
                MasterEvent::Refused(r) => {
                    out.push(refused(&r));
                    if !self.opened {
                        self.over =
                            Some(format!("the relay did not open the session: {}", r.message));
                    }
                }
                MasterEvent::PolicyDropped { class, message } => out.push(Event::PolicyDropped {
                    class: format!("{class:?}"),
                    message,
                }),
                MasterEvent::AdmissionRequested {
                    peer,
                    name,
                    host,
                    safety_code,
                } => {
                    self.names.insert(peer, name.clone());
                    out.push(Event::AdmissionRequested {
                        peer: peer.0,
                        name,
                        host,
                        safety_code: safety_code.to_string(),
                    });
                }
                MasterEvent::Admitted {
                    peer,
                    name,
                    host,
                    password_verified,
                } => {
                    self.names.insert(peer, name.clone());
                    out.push(Event::Admitted {
                        peer: peer.0,
                        name,
                        host,
                        password_verified,
                    });
                }
                MasterEvent::JoinFailed { peer, error } => {
                    self.names.remove(&peer);
                    out.push(Event::JoinFailed {
                        peer: Some(peer.0),
                        reason: error.to_string(),
                    });
                }
                MasterEvent::ParticipantLeft { peer, reason } => {
                    let name = self.name(peer);
                    self.names.remove(&peer);
                    self.rights.remove(&peer);
                    out.push(Event::Left {
                        peer: peer.0,
                        name,
                        reason: reason_name(reason),
                    });
                }
                // The master alone in its first epoch is nothing to show.
                MasterEvent::EpochChanged { .. } if !self.opened => {}
                MasterEvent::EpochChanged {
                    epoch,
                    session_code,
                    ..
                } => out.push(Event::Epoch {
                    epoch,
                    session_code: session_code.to_string(),
                    locked: self.engine.is_locked(),
                    members: self.members(),
                }),
                MasterEvent::Chat { from, text } => out.push(Event::Chat {
                    from: from.0,
                    name: self.name(from),
                    text,
                }),
                MasterEvent::Received { from, class, data } => {
                    inbound.push(Inbound::Frame(from, class, data))
                }
                MasterEvent::Shared(reply) => inbound.push(Inbound::Shared(reply)),
            }
        }
    }

    fn can_resume(&self) -> Result<(), String> {
        Ok(())
    }
    fn resume(&mut self, now: Millis) {
        self.engine.resume(now);
    }
    fn is_return(&self, event: &Event) -> bool {
        matches!(event, Event::SessionOpened { .. })
    }
    fn abort(&mut self) {
        self.engine.end();
    }
    fn over(&self) -> Option<&str> {
        self.over.as_deref()
    }
}

struct ParticipantDriver {
    engine: ParticipantSession,
    session: SessionId,
    name: String,
    password: bool,
    names: BTreeMap<PeerId, String>,
    over: Option<String>,
}

impl Driver for ParticipantDriver {
    fn session(&self) -> SessionId {
        self.session
    }
    fn peer(&self) -> PeerId {
        self.engine.peer()
    }
    fn engine(&mut self) -> &mut dyn Engine {
        &mut self.engine
    }
    fn engine_ref(&self) -> &dyn Engine {
        &self.engine
    }

    fn command(&mut self, _now: Millis, command: Command, out: &mut Vec<Event>) {
        let result = match command {
            Command::Chat(text) => self.engine.send_chat(&text).map(|()| {
                out.push(Event::Chat {
                    from: self.engine.peer().0,
                    name: self.name.clone(),
                    text,
                });
            }),
            Command::Leave => {
                self.engine.leave();
                self.over = Some("you left the session".into());
                Ok(())
            }
            _ => Err(Stage2Error::Command(
                "only the moderator can admit, remove, grant rights or lock".into(),
            )),
        };
        if let Err(e) = result {
            out.push(Event::Error {
                message: e.to_string(),
            });
        }
    }

    fn send_group(&mut self, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error> {
        self.engine.send_group(class, data)
    }
    fn send_to(&mut self, peer: PeerId, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error> {
        if peer != PeerId::MASTER {
            return Err(Stage2Error::Command(
                "a participant sends pairwise only to the moderator".into(),
            ));
        }
        self.engine.send_to_master(class, data)
    }
    fn shared(&mut self, request: SharedRequest) -> Result<(), Stage2Error> {
        self.engine.shared(request)
    }

    fn events(&mut self, out: &mut Vec<Event>, inbound: &mut Vec<Inbound>) {
        while let Some(e) = self.engine.poll_event() {
            match e {
                ParticipantEvent::Refused(r) => {
                    out.push(refused(&r));
                    if !self.engine.is_member() {
                        self.over = Some(format!("the relay refused: {}", r.message));
                    }
                }
                ParticipantEvent::PolicyDropped { class, message } => {
                    out.push(Event::PolicyDropped {
                        class: format!("{class:?}"),
                        message,
                    })
                }
                ParticipantEvent::Announced {
                    licensee,
                    moderator,
                    kind,
                } => {
                    self.names.insert(PeerId::MASTER, moderator.clone());
                    out.push(Event::Announced {
                        licensee,
                        moderator,
                        kind: kind_name(kind),
                    });
                }
                ParticipantEvent::SafetyCode(code) => out.push(Event::JoinCode {
                    safety_code: code.to_string(),
                }),
                ParticipantEvent::Admitted { .. } => out.push(Event::Admitted {
                    peer: self.engine.peer().0,
                    name: self.name.clone(),
                    host: String::new(),
                    password_verified: self.password,
                }),
                ParticipantEvent::EpochChanged {
                    epoch,
                    session_code,
                    members,
                    locked,
                } => {
                    self.names = members.iter().map(|(p, n, _)| (*p, n.clone())).collect();
                    out.push(Event::Epoch {
                        epoch,
                        session_code: session_code.to_string(),
                        locked,
                        members: members
                            .into_iter()
                            .map(|(p, name, rights)| MemberInfo {
                                peer: p.0,
                                name,
                                rights: rights_names(rights),
                            })
                            .collect(),
                    });
                }
                ParticipantEvent::RightsChanged(rights) => out.push(Event::Rights {
                    peer: self.engine.peer().0,
                    rights: rights_names(rights),
                }),
                ParticipantEvent::Chat { from, text } => out.push(Event::Chat {
                    from: from.0,
                    name: self
                        .names
                        .get(&from)
                        .cloned()
                        .unwrap_or_else(|| from.to_string()),
                    text,
                }),
                ParticipantEvent::Received { from, class, data } => {
                    inbound.push(Inbound::Frame(from, class, data))
                }
                ParticipantEvent::Shared(reply) => inbound.push(Inbound::Shared(reply)),
                ParticipantEvent::JoinFailed(reason) => {
                    let reason = format!("the join failed: {reason:?}");
                    out.push(Event::JoinFailed {
                        peer: None,
                        reason: reason.clone(),
                    });
                    self.over = Some(reason);
                }
                ParticipantEvent::Removed => {
                    self.over = Some("the moderator removed you from the session".into())
                }
                ParticipantEvent::Ended => {
                    self.over
                        .get_or_insert_with(|| "the moderator ended the session".into());
                }
                ParticipantEvent::MasterLost => {
                    self.over = Some("the moderator is no longer reachable".into())
                }
            }
        }
    }

    fn can_resume(&self) -> Result<(), String> {
        if self.engine.is_member() {
            Ok(())
        } else {
            Err("the relay was lost before you were admitted: join the session again".into())
        }
    }
    fn resume(&mut self, now: Millis) {
        // Only a member gets here (can_resume).
        let _ = self.engine.resume(now);
    }
    fn is_return(&self, event: &Event) -> bool {
        matches!(event, Event::Epoch { .. })
    }
    fn abort(&mut self) {
        self.engine.leave();
    }
    fn over(&self) -> Option<&str> {
        self.over.as_deref()
    }
}

/// What stage 1 at any relay needs.
struct Credentials {
    build: VerifiedBuild,
    who: Who,
    attempts: Attempts,
}

/// The relay-facing half of the runtime, shared by both apps.
struct Runtime<D> {
    driver: D,
    /// Presenting, viewing, remote control.
    collab: Collab,
    credentials: Credentials,
    /// The session's relays in failover order, and the one in use.
    order: Vec<RelayEntry>,
    at: usize,
    link: RelayLink,
    events: mpsc::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    origin: Instant,
    last_heard: Instant,
    /// Since when the session is away, during a failover.
    away_since: Option<Instant>,
    nonce: u64,
}

/// How the runtime loop ended a turn.
enum Turn {
    Go,
    Lost(String),
    Over(String),
}

impl<D: Driver> Runtime<D> {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    async fn emit(&mut self, event: Event) {
        let _ = self.events.send(event).await;
    }

    /// Sends what the engine queued; `false` if the link is gone.
    async fn flush(&mut self) -> bool {
        while let Some(f) = self.driver.engine().poll_transmit() {
            if self.link.conn.outgoing.send(Bytes::from(f)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Carries out what [`Collab`] asks; events go to `events`.
    fn apply(&mut self, outs: Vec<Out>, events: &mut Vec<Event>) {
        let now = self.now();
        for o in outs {
            match o {
                Out::Group(class, data) => {
                    if let Err(e) = self.driver.send_group(class, &data) {
                        // Frames before the first epoch's key have nowhere to go.
                        tracing::debug!("{class:?} frame not sent: {e}");
                    }
                }
                Out::To(peer, class, data) => {
                    if let Err(e) = self.driver.send_to(peer, class, &data) {
                        events.push(Event::Error {
                            message: format!("cannot send to {peer}: {e}"),
                        });
                    }
                }
                Out::Command(c) => self.driver.command(now, c, events),
                Out::Emit(e) => events.push(e),
                Out::Relay(request) => {
                    if let Err(e) = self.driver.shared(request) {
                        events.push(Event::Error {
                            message: format!("cannot reach the relay's shared files: {e}"),
                        });
                    }
                }
            }
        }
    }

    /// Passes the engine's events on (through [`Collab`], which may act on
    /// them); the return after a failover is reported.
    async fn pass_events(&mut self, mut pending: Vec<Event>) {
        let (session, me) = (self.driver.session(), self.driver.peer());
        self.collab.set_context(session, me);
        let mut all = Vec::new();
        // Collab's answers can cause events of their own (a grant's Rights);
        // a few rounds settle them.
        for _ in 0..4 {
            let mut inbound = Vec::new();
            self.driver.events(&mut pending, &mut inbound);
            let mut outs = Vec::new();
            for i in inbound {
                match i {
                    Inbound::Frame(from, class, data) => {
                        self.collab.inbound(from, class, data, &mut outs)
                    }
                    Inbound::Shared(reply) => self.collab.shared_reply(reply, &mut outs),
                }
            }
            for e in &pending {
                self.collab.observe(e, &mut outs);
            }
            all.append(&mut pending);
            if outs.is_empty() {
                break;
            }
            self.apply(outs, &mut pending);
        }
        all.append(&mut pending);
        let _ = self.flush().await;
        for e in all {
            if let Some(since) = self.away_since.filter(|_| self.driver.is_return(&e)) {
                self.away_since = None;
                let gap = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.emit(Event::Resumed {
                    relay: self.link.relay.name.to_string(),
                    transport: self.link.conn.transport.to_string(),
                    gap_ms: gap,
                })
                .await;
                if matches!(e, Event::SessionOpened { .. }) {
                    continue;
                }
            }
            self.emit(e).await;
        }
    }

    async fn turn(&mut self, ping: &mut tokio::time::Interval) -> Turn {
        let engine_deadline = self
            .driver
            .engine_ref()
            .poll_timeout()
            .map(|t| self.origin + Duration::from_millis(t.0));
        // A new screen frame is taken only while few frames wait to be
        // written: the frame rate follows what the link drains, and a slow
        // link gets fewer, fresher frames instead of a backlog.
        let out = &self.link.conn.outgoing;
        let frames_room = out.max_capacity() - out.capacity() <= SCREEN_BACKLOG;
        let deadline = match (engine_deadline, self.collab.deadline()) {
            // File chunks wait: come back at once (flushing paces them).
            _ if self.collab.has_file_work() => Some(Instant::now()),
            // Look again shortly for room for the next frame.
            (a, _) if !frames_room && self.collab.is_presenting() => {
                let soon = Instant::now() + SCREEN_RECHECK;
                Some(a.map_or(soon, |a| a.min(soon)))
            }
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut extra = Vec::new();
        tokio::select! {
            frame = self.link.conn.incoming.recv() => match frame {
                Some(Ok(f)) => {
                    self.last_heard = Instant::now();
                    let mut f = f.to_vec();
                    let now = self.now();
                    if let Err(e) = self.driver.engine().handle_frame(now, &mut f) {
                        if is_tampering(&e) {
                            self.emit(Event::Warning {
                                message: format!(
                                    "traffic was altered, replayed or forged between you and the other side ({e}); nothing of it was accepted and the session is aborted"
                                ),
                            })
                            .await;
                            self.driver.abort();
                            let _ = self.flush().await;
                            return Turn::Over(
                                "aborted: someone between the parties tampered with the session".into(),
                            );
                        }
                        tracing::debug!("frame dropped: {e}");
                    }
                }
                Some(Err(e)) => return Turn::Lost(e.to_string()),
                None => return Turn::Lost("the connection closed".into()),
            },
            command = self.commands.recv() => {
                let now = self.now();
                let mut outs = Vec::new();
                if let Some(c) = self.collab.command(command.unwrap_or(Command::Leave), &mut outs) {
                    self.driver.command(now, c, &mut extra);
                }
                self.apply(outs, &mut extra);
            }
            wake = self.collab.wake(frames_room) => {
                let mut outs = Vec::new();
                self.collab.woke(wake, &mut outs);
                self.apply(outs, &mut extra);
            }
            () = sleep => {
                let now = self.now();
                self.driver.engine().handle_timeout(now);
                let mut outs = Vec::new();
                self.collab.timeout(Instant::now(), &mut outs);
                if self.collab.has_file_work() {
                    self.collab.pump(&mut outs);
                }
                self.apply(outs, &mut extra);
            }
            _ = ping.tick() => {
                let heard = match self.link.conn.drained.last() {
                    Some(d) => d.max(self.last_heard),
                    None => self.last_heard,
                };
                if heard.elapsed() >= RELAY_SILENCE {
                    return Turn::Lost(format!(
                        "no answer for {} ms",
                        heard.elapsed().as_millis()
                    ));
                }
                self.nonce = self.nonce.wrapping_add(1);
                let f = relay_frame(
                    self.driver.session(),
                    self.driver.peer(),
                    &ToRelay::Ping { nonce: self.nonce },
                );
                if self.link.conn.outgoing.send(f).await.is_err() {
                    return Turn::Lost("the connection closed".into());
                }
            }
        }
        let sent = self.flush().await;
        self.pass_events(extra).await;
        if let Some(reason) = self.driver.over() {
            return Turn::Over(reason.to_string());
        }
        if sent {
            Turn::Go
        } else {
            Turn::Lost("the connection closed".into())
        }
    }

    /// Moves to the next relay that answers; `Err` with the reason to end
    /// when none does.
    async fn fail_over(&mut self, reason: String) -> Result<(), String> {
        let away = self.last_heard;
        self.emit(Event::RelayLost {
            relay: self.link.relay.name.to_string(),
            reason,
        })
        .await;
        self.link.conn.close();
        self.driver.can_resume()?;
        let prefer = Some(self.link.conn.transport);
        // The reopening (CreateSession or Rejoin) goes right behind the Hello.
        let now = self.now();
        self.driver.resume(now);
        let early: Vec<Bytes> = std::iter::from_fn(|| self.driver.engine().poll_transmit())
            .map(Bytes::from)
            .collect();
        let give_up = Instant::now() + FAILOVER_BUDGET;
        let n = self.order.len();
        let mut failures = Vec::new();
        while Instant::now() < give_up {
            for step in 1..=n {
                let i = (self.at + step) % n;
                let Some(relay) = self.order.get(i) else {
                    continue;
                };
                let c = &self.credentials;
                match open(relay, &c.build, &c.who, &c.attempts, prefer, &early).await {
                    Ok(link) => {
                        self.link = link;
                        self.at = i;
                        self.last_heard = Instant::now();
                        self.away_since = Some(away);
                        self.emit(Event::Connected {
                            relay: self.link.relay.name.to_string(),
                            transport: self.link.conn.transport.to_string(),
                        })
                        .await;
                        return if self.flush().await {
                            Ok(())
                        } else {
                            Err("the new relay closed the connection".into())
                        };
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!(
            "every relay is unreachable: {}",
            failures.join(" | ")
        ))
    }

    async fn run(mut self) {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut end = if self.flush().await {
            None
        } else {
            Some("the relay closed the connection".to_string())
        };
        while end.is_none() {
            match self.turn(&mut ping).await {
                Turn::Go => {}
                Turn::Over(reason) => end = Some(reason),
                Turn::Lost(reason) => end = self.fail_over(reason).await.err(),
            }
        }
        // Dropping the sender lets the writer send the last frames (Leave,
        // End) and finish the stream; the relay then closes its side. Wait
        // for that, briefly, before closing: closing a QUIC connection at
        // once would throw away what is still unsent.
        let conn = &mut self.link.conn;
        drop(std::mem::replace(&mut conn.outgoing, mpsc::channel(1).0));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while conn.incoming.recv().await.is_some() {}
        })
        .await;
        conn.close();
        // Last: the app may exit as soon as it sees this.
        self.emit(Event::Ended {
            reason: end.unwrap_or_default(),
        })
        .await;
    }
}

fn spawn<D: Driver>(
    driver: D,
    credentials: Credentials,
    order: Vec<RelayEntry>,
    at: usize,
    link: RelayLink,
    session: SessionId,
    collab: impl FnOnce(mpsc::Sender<Command>) -> Collab,
) -> Running {
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let (commands_tx, commands) = mpsc::channel(64);
    let collab = collab(commands_tx.clone());
    let connected = Event::Connected {
        relay: link.relay.name.to_string(),
        transport: link.conn.transport.to_string(),
    };
    let _ = events_tx.try_send(connected);
    let runtime = Runtime {
        driver,
        collab,
        credentials,
        order,
        at,
        link,
        events: events_tx,
        commands,
        origin: Instant::now(),
        last_heard: Instant::now(),
        away_since: None,
        nonce: 0,
    };
    tokio::spawn(runtime.run());
    Running {
        handle: SessionHandle {
            session,
            commands: commands_tx,
        },
        events,
    }
}

/// Opens a session as master: measures the relays, picks the best, draws an
/// ID for it, and starts the runtime.
pub async fn start_master(
    build: VerifiedBuild,
    options: MasterOptions,
) -> Result<Running, StartError> {
    let (license, identity) = match (&build.config.license, &build.master) {
        (Some(signed), Some((_, identity))) => (
            signed.clone(),
            SigningIdentity::from_seed(&identity.to_seed()),
        ),
        _ => return Err(StartError::NotLicensed),
    };
    // The master signs its recordings with its licence key.
    let recording_key = SigningIdentity::from_seed(&identity.to_seed());
    let profile = &build.config.profile;
    match &options.password {
        Some(p) => profile.password_rules.check(p).map_err(|e| {
            StartError::Policy(format!("the password does not meet the policy: {e}"))
        })?,
        None if profile.password_required => {
            return Err(StartError::Policy(
                "the policy requires a session password".into(),
            ))
        }
        None => {}
    }
    let relays: Vec<RelayEntry> = build.config.relays.iter().cloned().collect();
    if relays.is_empty() {
        return Err(StartError::NoRelays);
    }
    let (best, failures) = measure(&relays, &build, &options.who, &options.attempts).await;
    let Some((index, link, _)) = best else {
        return Err(StartError::NoRelayReachable(failures));
    };
    let session = draw_session_id(profile.session_id_digits, &relays, index, &mut OsRng)
        .ok_or_else(|| StartError::Policy("no session ID could be drawn".into()))?;
    let order: Vec<RelayEntry> = relay_order(session, &relays)
        .into_iter()
        .filter_map(|i| relays.get(i).cloned())
        .collect();
    let config = MasterConfig {
        session,
        kind: options.kind,
        moderator: bounded(&options.moderator),
        license,
        identity,
        password: options.password,
        autolock: profile.autolock,
        created_at: UnixTime::from_system(SystemTime::now()),
    };
    let engine = MasterSession::new(config, OsRng, Millis(0));
    let (kind, media, policy) = (options.kind, options.media, build.config.profile.clone());
    if policy.recording == conclave_protocol::artefact::RecordingPolicy::Forced
        && media.record.is_none()
    {
        return Err(StartError::Policy(
            "this policy records every session: give a file to record into (--record FILE)".into(),
        ));
    }
    let recorder = (options.moderator.clone(), recording_key);
    let driver = MasterDriver {
        engine,
        kind: options.kind,
        moderator: options.moderator,
        names: BTreeMap::new(),
        rights: BTreeMap::new(),
        opened: false,
        over: None,
    };
    Ok(spawn(
        driver,
        Credentials {
            build,
            who: options.who,
            attempts: options.attempts,
        },
        order,
        0,
        link,
        session,
        |commands| Collab::master(kind, policy, media, recorder, commands),
    ))
}

/// Joins a session as participant: tries the relays in the session's order.
pub async fn join(build: VerifiedBuild, options: JoinOptions) -> Result<Running, StartError> {
    let relays: Vec<RelayEntry> = build.config.relays.iter().cloned().collect();
    if relays.is_empty() {
        return Err(StartError::NoRelays);
    }
    let order: Vec<RelayEntry> = relay_order(options.session, &relays)
        .into_iter()
        .filter_map(|i| relays.get(i).cloned())
        .collect();
    let mut engine = ParticipantSession::join(
        options.session,
        options.password.as_ref().map(|p| p.as_str()),
        bounded(&options.name),
        options.who.host.clone(),
        vec![build.config.portal_key],
        &mut OsRng,
        Millis(0),
        UnixTime::from_system(SystemTime::now()),
    );
    // The Join goes right behind the Hello, to whichever relay answers.
    let early: Vec<Bytes> = std::iter::from_fn(|| engine.poll_transmit())
        .map(Bytes::from)
        .collect();
    let mut failures = Vec::new();
    let mut found = None;
    for (i, relay) in order.iter().enumerate() {
        match open(relay, &build, &options.who, &options.attempts, None, &early).await {
            Ok(link) => {
                found = Some((i, link));
                break;
            }
            Err(e) => failures.push(e),
        }
    }
    let Some((at, link)) = found else {
        return Err(StartError::NoRelayReachable(failures));
    };
    let (media, policy) = (options.media, build.config.profile.clone());
    // A participant signs its recordings with a key drawn for them.
    let recorder = (options.name.clone(), SigningIdentity::generate(&mut OsRng));
    let driver = ParticipantDriver {
        engine,
        session: options.session,
        name: options.name,
        password: options.password.is_some(),
        names: BTreeMap::new(),
        over: None,
    };
    Ok(spawn(
        driver,
        Credentials {
            build,
            who: options.who,
            attempts: options.attempts,
        },
        order,
        at,
        link,
        options.session,
        |commands| Collab::participant(policy, media, recorder, commands),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_is_told_apart_from_late_frames() {
        assert!(is_tampering(&Stage2Error::Sframe(
            SframeError::Authentication
        )));
        assert!(is_tampering(&Stage2Error::Sframe(SframeError::Replay(3))));
        assert!(is_tampering(&Stage2Error::BrokenChain));
        assert!(!is_tampering(&Stage2Error::Sframe(SframeError::WrongKey(
            3
        ))));
        assert!(!is_tampering(&Stage2Error::UnknownPeer(PeerId(9))));
    }
}
