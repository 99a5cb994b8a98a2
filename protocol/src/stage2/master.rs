//! The master's session engine (sans-IO).

use std::collections::{BTreeMap, VecDeque};

use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use super::control::{Control, Rights, RightsGrant};
use super::epoch::{chat_text, check_chat, Epoch, Epochs};
use super::group::{EpochSecret, Rekey, Roster, RosterMember, SessionContext};
use super::handshake::{
    AbortReason, Announce, AwaitingConfirm, Handshake, JoinOutcome, MasterSecrets, SafetyCode,
};
use super::{
    Stage2Error, EPOCH_MAX_AGE_MS, HEARTBEAT_MS, JOIN_BATCH_MS, JOIN_TIMEOUT_MS,
    LIVENESS_TIMEOUT_MS, MAX_MEMBERS,
};
use crate::artefact::License;
use crate::bounded::{BoundedBytes, BoundedString, BoundedVec};
use crate::codec::Message;
use crate::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
use crate::sframe::{FrameOpener, FrameSealer, KeyScope, SealBuf, SealedFrame, MAX_EPOCH};
use crate::sign::{Signed, SigningIdentity};
use crate::stage1::{FromRelay, LeaveReason, Refusal, SessionKind, ToRelay};
use crate::time::{Millis, UnixTime};

/// What a master needs to open a session.
#[derive(Debug)]
pub struct MasterConfig {
    /// The session ID (drawn by the caller, with as many digits as policy says).
    pub session: SessionId,
    /// Support or meeting.
    pub kind: SessionKind,
    /// The moderator's display name.
    pub moderator: BoundedString<64>,
    /// The license, signed by the portal.
    pub license: Signed<License>,
    /// IK_M, the key the license names.
    pub identity: SigningIdentity,
    /// The session password, if any.
    pub password: Option<Zeroizing<String>>,
    /// Lock a support session once its participant is admitted (R26).
    pub autolock: bool,
    /// Wall-clock time, for the announce.
    pub created_at: UnixTime,
}

/// What the master's app shows or acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterEvent {
    /// The relay opened the session.
    SessionCreated,
    /// The relay refused a request.
    Refused(Refusal),
    /// The relay dropped frames of a class the session's policy forbids (R13).
    PolicyDropped {
        /// The class.
        class: FrameClass,
        /// The relay's explanation.
        message: String,
    },
    /// A participant passed key confirmation and waits to be admitted: show
    /// name, host and safety code.
    AdmissionRequested {
        /// Its ID.
        peer: PeerId,
        /// Its name.
        name: String,
        /// Its host.
        host: String,
        /// The join's safety code.
        safety_code: SafetyCode,
    },
    /// A participant is admitted (it gets keys with the next epoch).
    Admitted {
        /// Its ID.
        peer: PeerId,
        /// Its name.
        name: String,
        /// Its host.
        host: String,
        /// Whether it proved the password.
        password_verified: bool,
    },
    /// A join failed (reported to the relay, which doubles the wait).
    JoinFailed {
        /// Its ID.
        peer: PeerId,
        /// Why.
        error: Stage2Error,
    },
    /// A participant is gone.
    ParticipantLeft {
        /// Its ID.
        peer: PeerId,
        /// Why.
        reason: LeaveReason,
    },
    /// A new epoch is in force.
    EpochChanged {
        /// The epoch.
        epoch: u32,
        /// The session code all members now show.
        session_code: SafetyCode,
        /// Members, master included.
        members: usize,
    },
    /// The relay answered a shared-file request (R24).
    Shared(crate::shared::SharedReply),
    /// A chat message.
    Chat {
        /// Sender.
        from: PeerId,
        /// Text.
        text: String,
    },
    /// An end-to-end frame of another class, opened.
    Received {
        /// Sender.
        from: PeerId,
        /// Class.
        class: FrameClass,
        /// Plaintext.
        data: Vec<u8>,
    },
}

struct Member {
    name: BoundedString<64>,
    host: BoundedString<64>,
    key: [u8; 32],
    rights: Rights,
    sealer: FrameSealer,
    opener: FrameOpener,
    wrap: Zeroizing<[u8; 32]>,
    last_heard: Millis,
}

enum Pending {
    Request {
        since: Millis,
    },
    Confirm {
        state: Box<AwaitingConfirm>,
        since: Millis,
    },
    Admission {
        outcome: JoinOutcome,
        name: BoundedString<64>,
        host: BoundedString<64>,
        key: [u8; 32],
        since: Millis,
    },
}

impl Pending {
    fn since(&self) -> Millis {
        match self {
            Pending::Request { since }
            | Pending::Confirm { since, .. }
            | Pending::Admission { since, .. } => *since,
        }
    }
}

/// The master's side of a session: answers joins, admits, keeps the epochs,
/// signs rosters and rights, and seals and opens frames.
pub struct MasterSession<R> {
    rng: R,
    secrets: MasterSecrets,
    ctx: SessionContext,
    announce: Signed<Announce>,
    master_key: [u8; 32],
    moderator: BoundedString<64>,
    kind: SessionKind,
    autolock: bool,
    locked: bool,
    pending: BTreeMap<PeerId, Pending>,
    members: BTreeMap<PeerId, Member>,
    epochs: Epochs,
    epoch_counter: u32,
    roster_digest: [u8; 32],
    last_rekey: Option<Millis>,
    rekey_at: Option<Millis>,
    next_heartbeat: Millis,
    heartbeat_seq: u64,
    rights_seq: u64,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<MasterEvent>,
}

impl<R> core::fmt::Debug for MasterSession<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MasterSession")
            .field("session", &self.ctx.session)
            .field("members", &self.members.len())
            .field("epoch", &self.epochs.number())
            .finish()
    }
}

impl<R: rand_core::CryptoRngCore> MasterSession<R> {
    /// Opens a session: signs the announce and queues `CreateSession` for the relay.
    pub fn new(config: MasterConfig, mut rng: R, now: Millis) -> Self {
        let ephemeral = StaticSecret::random_from_rng(&mut rng);
        let master_key = XPublic::from(&ephemeral).to_bytes();
        let mut uuid = [0u8; 32];
        rng.fill_bytes(&mut uuid);
        let announce = Announce {
            session: config.session,
            uuid,
            master_ephemeral: master_key,
            license: config.license,
            moderator: config.moderator.clone(),
            kind: config.kind,
            password: config.password.is_some(),
            created_at: config.created_at,
        };
        let announce = config.identity.sign(&announce);
        let secrets = MasterSecrets {
            session: config.session,
            announce_digest: announce.digest(),
            ephemeral,
            identity: config.identity,
            password: config
                .password
                .map(|p| Zeroizing::new(p.as_bytes().to_vec())),
        };
        let mut s = MasterSession {
            rng,
            secrets,
            ctx: SessionContext {
                session: config.session,
                uuid,
            },
            announce: announce.clone(),
            master_key,
            moderator: config.moderator,
            kind: config.kind,
            autolock: config.autolock,
            locked: false,
            pending: BTreeMap::new(),
            members: BTreeMap::new(),
            epochs: Epochs::default(),
            epoch_counter: 0,
            roster_digest: [0; 32],
            last_rekey: None,
            rekey_at: None,
            next_heartbeat: now.plus(HEARTBEAT_MS),
            heartbeat_seq: 0,
            rights_seq: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.send_relay(&ToRelay::CreateSession {
            session: config.session,
            kind: config.kind,
            announce,
        });
        // The master alone forms epoch 1, so that it can send before anyone
        // joins; the first join does not wait for a batch after it.
        s.rekey(now);
        s.last_rekey = None;
        s
    }

    /// The signed announce.
    pub fn announce(&self) -> &Signed<Announce> {
        &self.announce
    }

    /// The session ID.
    pub fn session(&self) -> SessionId {
        self.ctx.session
    }

    /// The current epoch.
    pub fn epoch(&self) -> u32 {
        self.epochs.number().unwrap_or(0)
    }

    /// The session code every member shows in this epoch.
    pub fn session_code(&self) -> SafetyCode {
        SafetyCode::for_roster(&self.roster_digest)
    }

    /// Admitted participants.
    pub fn participants(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.members.keys().copied()
    }

    /// Whether the session is locked.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The next frame to send to the relay.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// The next event for the app.
    pub fn poll_event(&mut self) -> Option<MasterEvent> {
        self.events.pop_front()
    }

    /// When [`MasterSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut t = self.next_heartbeat;
        if let Some(r) = self.rekey_at {
            t = t.min(r);
        }
        if let Some(started) = self.epochs.started() {
            t = t.min(started.plus(EPOCH_MAX_AGE_MS));
        }
        if let Some(until) = self.epochs.grace_deadline() {
            t = t.min(until);
        }
        for p in self.pending.values() {
            t = t.min(p.since().plus(JOIN_TIMEOUT_MS));
        }
        for m in self.members.values() {
            t = t.min(m.last_heard.plus(LIVENESS_TIMEOUT_MS));
        }
        Some(t)
    }

    /// Runs the timers: heartbeats, liveness, join timeouts, rekeys.
    pub fn handle_timeout(&mut self, now: Millis) {
        let expired: Vec<PeerId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.since(p.since()) >= JOIN_TIMEOUT_MS)
            .map(|(k, _)| *k)
            .collect();
        for peer in expired {
            if let Some(Pending::Confirm { .. }) = self.pending.remove(&peer) {
                self.fail_join(peer, Stage2Error::Confirmation);
            } else {
                self.handshake_to(peer, &Handshake::Abort(AbortReason::Timeout));
            }
            self.send_relay(&ToRelay::Remove { peer });
        }
        let silent: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, m)| now.since(m.last_heard) >= LIVENESS_TIMEOUT_MS)
            .map(|(k, _)| *k)
            .collect();
        for peer in silent {
            self.drop_member(peer, LeaveReason::ConnectionLost, now);
            self.send_relay(&ToRelay::Remove { peer });
        }
        if now >= self.next_heartbeat {
            self.heartbeat_seq += 1;
            let seq = self.heartbeat_seq;
            let peers: Vec<PeerId> = self.members.keys().copied().collect();
            for peer in peers {
                self.control_to(peer, &Control::Heartbeat { sequence: seq });
            }
            self.next_heartbeat = now.plus(HEARTBEAT_MS);
        }
        self.epochs.expire(now);
        let aged = self
            .epochs
            .started()
            .is_some_and(|started| now.since(started) >= EPOCH_MAX_AGE_MS);
        if aged || self.rekey_at.is_some_and(|t| now >= t) {
            self.rekey(now);
        }
    }

    /// Handles one frame from the relay. Errors mean the frame was dropped;
    /// the session goes on.
    pub fn handle_frame(&mut self, now: Millis, frame: &mut [u8]) -> Result<(), Stage2Error> {
        let f = FrameRef::parse(frame)?;
        let (class, from) = (f.header.class, f.header.sender);
        if f.header.session != self.ctx.session {
            return Err(Stage2Error::WrongSession {
                expected: self.ctx.session.0,
                got: f.header.session.0,
            });
        }
        match class {
            FrameClass::Relay if from == PeerId::RELAY => {
                let msg = FromRelay::decode(f.payload)?;
                self.handle_relay(now, msg);
                Ok(())
            }
            FrameClass::Handshake if from.is_participant() => {
                let msg = Handshake::decode(f.payload)?;
                self.handle_handshake(now, from, msg)
            }
            FrameClass::Relay | FrameClass::Handshake | FrameClass::Roster => {
                Err(Stage2Error::Unexpected("frame class from this sender"))
            }
            _ => self.handle_sealed(now, frame),
        }
    }

    fn handle_relay(&mut self, now: Millis, msg: FromRelay) {
        match msg {
            FromRelay::SessionCreated { .. } => self.events.push_back(MasterEvent::SessionCreated),
            FromRelay::Refused(r) => self.events.push_back(MasterEvent::Refused(r)),
            FromRelay::Shared(reply) => self.events.push_back(MasterEvent::Shared(reply)),
            FromRelay::Dropped { class, message } => {
                self.events.push_back(MasterEvent::PolicyDropped {
                    class,
                    message: message.to_string(),
                })
            }
            FromRelay::PeerJoined { peer } if peer.is_participant() => {
                self.pending.insert(peer, Pending::Request { since: now });
            }
            FromRelay::PeerRejoined { peer } => {
                if let Some(m) = self.members.get_mut(&peer) {
                    m.last_heard = now;
                    // The member holds the current keys; a fresh epoch (batched
                    // with the others coming back) closes the failover.
                    self.schedule_rekey(now);
                } else {
                    // Not a member of ours: a stale or forged claim.
                    self.send_relay(&ToRelay::Remove { peer });
                }
            }
            FromRelay::PeerLeft { peer, reason } => {
                if let Some(Pending::Confirm { .. }) = self.pending.remove(&peer) {
                    self.fail_join(peer, Stage2Error::Confirmation);
                }
                self.drop_member(peer, reason, now);
            }
            _ => {}
        }
    }

    fn handle_handshake(
        &mut self,
        now: Millis,
        peer: PeerId,
        msg: Handshake,
    ) -> Result<(), Stage2Error> {
        let Some(pending) = self.pending.remove(&peer) else {
            return Err(Stage2Error::UnknownPeer(peer));
        };
        match (pending, msg) {
            (Pending::Request { since }, Handshake::Request(request)) => {
                match AwaitingConfirm::respond(&self.secrets, &request, &mut self.rng) {
                    Ok((state, response)) => {
                        self.handshake_to(peer, &Handshake::Response(response));
                        self.pending.insert(
                            peer,
                            Pending::Confirm {
                                state: Box::new(state),
                                since,
                            },
                        );
                        Ok(())
                    }
                    Err(e) => {
                        self.fail_join(peer, e.clone());
                        Err(e)
                    }
                }
            }
            (Pending::Confirm { state, since }, Handshake::Confirm(confirm)) => {
                let request = state.request().clone();
                match state.receive_confirm(&confirm) {
                    Ok(outcome) => {
                        let safety_code = outcome.safety_code;
                        let verified = outcome.password_verified;
                        self.pending.insert(
                            peer,
                            Pending::Admission {
                                outcome,
                                name: request.name.clone(),
                                host: request.host.clone(),
                                key: request.participant_ephemeral,
                                since,
                            },
                        );
                        if verified {
                            self.admit(peer, now)?;
                        } else {
                            self.events.push_back(MasterEvent::AdmissionRequested {
                                peer,
                                name: request.name.to_string(),
                                host: request.host.to_string(),
                                safety_code,
                            });
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.fail_join(peer, e.clone());
                        Err(e)
                    }
                }
            }
            // A participant that got our response but does not confirm had
            // its one password guess: it counts as a failed join (R12).
            (Pending::Confirm { .. }, Handshake::Abort(_)) => {
                self.fail_join(peer, Stage2Error::Confirmation);
                Ok(())
            }
            (_, Handshake::Abort(_)) => Ok(()),
            (p, _) => {
                self.pending.insert(peer, p);
                Err(Stage2Error::Unexpected("handshake message"))
            }
        }
    }

    fn fail_join(&mut self, peer: PeerId, error: Stage2Error) {
        let reason = match error {
            Stage2Error::PasswordRequired => AbortReason::PasswordRequired,
            _ => AbortReason::ConfirmationFailed,
        };
        self.handshake_to(peer, &Handshake::Abort(reason));
        self.send_relay(&ToRelay::JoinFailed { peer });
        self.events
            .push_back(MasterEvent::JoinFailed { peer, error });
    }

    fn handle_sealed(&mut self, now: Millis, frame: &mut [u8]) -> Result<(), Stage2Error> {
        let sealed = SealedFrame::parse(frame)?;
        let class = sealed.header.class;
        let from = sealed.header.sender;
        let opened = match sealed.key_id.scope {
            KeyScope::Pairwise => {
                let m = self
                    .members
                    .get_mut(&from)
                    .ok_or(Stage2Error::UnknownPeer(from))?;
                let o = m.opener.open_in_place(&sealed, frame)?;
                m.last_heard = now;
                o
            }
            KeyScope::Group { .. } => {
                let o = self.epochs.open(&sealed, frame)?;
                if let Some(m) = self.members.get_mut(&from) {
                    m.last_heard = now;
                }
                o
            }
        };
        let data = frame.get(opened.plaintext).unwrap_or_default().to_vec();
        match class {
            FrameClass::Control => match Control::decode(&data)? {
                Control::HeartbeatAck { .. } => {}
                Control::Leave => {
                    self.drop_member(from, LeaveReason::Left, now);
                    self.send_relay(&ToRelay::Remove { peer: from });
                }
                Control::App(bytes) => self.events.push_back(MasterEvent::Received {
                    from,
                    class,
                    data: bytes.to_vec(),
                }),
                _ => {
                    return Err(Stage2Error::Unexpected(
                        "control message from a participant",
                    ))
                }
            },
            FrameClass::Chat => {
                let text = chat_text(data)?;
                self.events.push_back(MasterEvent::Chat { from, text });
            }
            _ => self
                .events
                .push_back(MasterEvent::Received { from, class, data }),
        }
        Ok(())
    }

    /// Admits a participant that passed confirmation; it receives keys with the next epoch.
    pub fn admit(&mut self, peer: PeerId, now: Millis) -> Result<(), Stage2Error> {
        match self.pending.remove(&peer) {
            Some(Pending::Admission {
                outcome,
                name,
                host,
                key,
                ..
            }) => {
                if self.members.len() + 1 >= MAX_MEMBERS {
                    self.pending.remove(&peer);
                    self.control_deny(peer);
                    return Err(Stage2Error::Command(
                        "the session has its maximum of members".into(),
                    ));
                }
                let keys = outcome.keys;
                self.events.push_back(MasterEvent::Admitted {
                    peer,
                    name: name.to_string(),
                    host: host.to_string(),
                    password_verified: outcome.password_verified,
                });
                self.members.insert(
                    peer,
                    Member {
                        name,
                        host,
                        key,
                        rights: Rights::NONE,
                        sealer: FrameSealer::new(&keys.m2p, KeyScope::Pairwise, PeerId::MASTER),
                        opener: FrameOpener::new(&keys.p2m, KeyScope::Pairwise, peer),
                        wrap: keys.wrap,
                        last_heard: now,
                    },
                );
                if self.autolock && self.kind == SessionKind::Support && !self.locked {
                    self.set_locked(true);
                }
                self.schedule_rekey(now);
                Ok(())
            }
            Some(other) => {
                self.pending.insert(peer, other);
                Err(Stage2Error::Command(format!(
                    "{peer} has not completed its join yet"
                )))
            }
            None => Err(Stage2Error::Command(format!(
                "{peer} is not waiting for admission"
            ))),
        }
    }

    /// A new epoch now, or with the batch after the last one ([`JOIN_BATCH_MS`]).
    fn schedule_rekey(&mut self, now: Millis) {
        let due = self
            .last_rekey
            .map_or(now, |t| t.plus(JOIN_BATCH_MS))
            .max(now);
        self.rekey_at = Some(self.rekey_at.map_or(due, |t| t.min(due)));
        if due <= now {
            self.rekey(now);
        }
    }

    /// Moves the session to a new relay after the old one was lost (R18):
    /// queues `CreateSession` with the same signed announce and the lock
    /// state for the new relay. Members come back with
    /// [`ToRelay::Rejoin`]; each return starts a fresh epoch (batched), and a
    /// member that does not return is removed by the liveness timeout. Joins
    /// that were under way are dropped: those participants join again.
    pub fn resume(&mut self, now: Millis) {
        for m in self.members.values_mut() {
            m.last_heard = now;
        }
        self.pending.clear();
        self.outbox.clear();
        self.send_relay(&ToRelay::CreateSession {
            session: self.ctx.session,
            kind: self.kind,
            announce: self.announce.clone(),
        });
        if self.locked {
            self.send_relay(&ToRelay::SetLock { locked: true });
        }
    }

    /// Refuses a participant waiting for admission.
    pub fn deny(&mut self, peer: PeerId) {
        if self.pending.remove(&peer).is_some() {
            self.control_deny(peer);
        }
    }

    fn control_deny(&mut self, peer: PeerId) {
        self.handshake_to(peer, &Handshake::Abort(AbortReason::Denied));
        self.send_relay(&ToRelay::Remove { peer });
    }

    /// Removes a member: it is told, disconnected by the relay, and a new epoch
    /// starts at once so that it can read nothing sent afterwards.
    pub fn remove(&mut self, peer: PeerId, now: Millis) -> Result<(), Stage2Error> {
        if !self.members.contains_key(&peer) {
            return Err(Stage2Error::Command(format!("{peer} is not a member")));
        }
        self.control_to(peer, &Control::Removed);
        self.send_relay(&ToRelay::Remove { peer });
        self.drop_member(peer, LeaveReason::Removed, now);
        Ok(())
    }

    fn drop_member(&mut self, peer: PeerId, reason: LeaveReason, now: Millis) {
        if self.members.remove(&peer).is_some() {
            self.events
                .push_back(MasterEvent::ParticipantLeft { peer, reason });
            // Frames under the old epoch from the one who left are refused at once.
            self.epochs.forget(peer);
            self.rekey(now);
        }
    }

    /// Grants `rights` to a member (signed by IK_M, sent pairwise; in the
    /// roster from the next epoch).
    pub fn set_rights(&mut self, peer: PeerId, rights: Rights) -> Result<(), Stage2Error> {
        let m = self
            .members
            .get_mut(&peer)
            .ok_or_else(|| Stage2Error::Command(format!("{peer} is not a member")))?;
        m.rights = rights;
        self.rights_seq += 1;
        let grant = RightsGrant {
            session: self.ctx.session,
            uuid: self.ctx.uuid,
            peer,
            rights,
            sequence: self.rights_seq,
        };
        let signed = self.secrets.identity.sign(&grant);
        self.control_to(peer, &Control::Rights(signed));
        Ok(())
    }

    /// Locks or unlocks the session at the relay (R26).
    pub fn set_locked(&mut self, locked: bool) {
        self.locked = locked;
        self.send_relay(&ToRelay::SetLock { locked });
    }

    /// Sends a chat message to everyone.
    pub fn send_chat(&mut self, text: &str) -> Result<(), Stage2Error> {
        check_chat(text)?;
        self.send_group(FrameClass::Chat, text.as_bytes())
    }

    /// Seals `data` under the group key and sends it to everyone.
    pub fn send_group(&mut self, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error> {
        let frame = self.epochs.seal(class, self.ctx.session, data)?;
        self.outbox.push_back(frame);
        Ok(())
    }

    /// Seals `data` for one member under its pairwise key.
    pub fn send_to(
        &mut self,
        peer: PeerId,
        class: FrameClass,
        data: &[u8],
    ) -> Result<(), Stage2Error> {
        if !class.carries_sframe() {
            return Err(Stage2Error::Unexpected("plain class"));
        }
        let session = self.ctx.session;
        let m = self
            .members
            .get_mut(&peer)
            .ok_or_else(|| Stage2Error::Command(format!("{peer} is not a member")))?;
        let mut buf = SealBuf::from_plaintext(data);
        m.sealer.seal(class, session, peer, &mut buf)?;
        self.outbox.push_back(buf.frame().to_vec());
        Ok(())
    }

    /// Ends the session for everyone.
    pub fn end(&mut self) {
        let peers: Vec<PeerId> = self.members.keys().copied().collect();
        for peer in peers {
            self.control_to(peer, &Control::End);
        }
        self.send_relay(&ToRelay::Leave);
        self.members.clear();
        self.pending.clear();
        self.epochs.clear();
    }

    /// Starts a new epoch now: fresh secret, wraps, signed roster.
    pub fn rekey(&mut self, now: Millis) {
        let Some(number) = self
            .epoch_counter
            .checked_add(1)
            .filter(|&n| n <= MAX_EPOCH)
        else {
            // 8 million epochs at one per second at most is three months.
            self.end();
            return;
        };
        self.epoch_counter = number;
        let secret = EpochSecret::generate(&mut self.rng);
        let mut members = vec![RosterMember {
            peer: PeerId::MASTER,
            name: self.moderator.clone(),
            host: BoundedString::default(),
            key: self.master_key,
            rights: Rights::ALL,
        }];
        members.extend(self.members.iter().map(|(&peer, m)| RosterMember {
            peer,
            name: m.name.clone(),
            host: m.host.clone(),
            key: m.key,
            rights: m.rights,
        }));
        let roster = Roster {
            session: self.ctx.session,
            uuid: self.ctx.uuid,
            epoch: number,
            previous: self.roster_digest,
            locked: self.locked,
            members: BoundedVec::new(members).unwrap_or_default(),
        };
        let signed = self.secrets.identity.sign(&roster);
        self.roster_digest = signed.digest();
        let wraps: Vec<_> = self
            .members
            .iter()
            .map(|(&peer, m)| self.ctx.wrap(&m.wrap, number, peer, &secret))
            .collect();
        let sealed_roster = self.ctx.seal_roster(&secret, number, &signed);
        let rekey = Rekey {
            epoch: number,
            wraps: BoundedVec::new(wraps).unwrap_or_default(),
            roster: BoundedBytes::new(sealed_roster).unwrap_or_default(),
        };
        if !self.members.is_empty() {
            self.plain_to(FrameClass::Roster, PeerId::BROADCAST, &rekey.encode());
        }
        let epoch = Epoch::new(
            &secret,
            number,
            PeerId::MASTER,
            self.members.keys().copied(),
            now,
        );
        let members = &self.members;
        self.epochs
            .install(epoch, now, |p| members.contains_key(&p));
        self.last_rekey = Some(now);
        self.rekey_at = None;
        self.events.push_back(MasterEvent::EpochChanged {
            epoch: number,
            session_code: self.session_code(),
            members: self.members.len() + 1,
        });
    }

    fn control_to(&mut self, peer: PeerId, msg: &Control) {
        // Sealing fails only when a pairwise key is exhausted (2^31 frames);
        // the member then stops hearing from us and times out.
        let _ = self.send_to(peer, FrameClass::Control, &msg.encode());
    }

    fn handshake_to(&mut self, peer: PeerId, msg: &Handshake) {
        self.plain_to(FrameClass::Handshake, peer, &msg.encode());
    }

    /// Asks the relay to store, send or delete a shared file (R24); the
    /// answer comes as [`MasterEvent::Shared`].
    pub fn shared(&mut self, request: crate::shared::SharedRequest) {
        self.send_relay(&ToRelay::Shared(request));
    }

    fn send_relay(&mut self, msg: &ToRelay) {
        self.plain_to(FrameClass::Relay, PeerId::RELAY, &msg.encode());
    }

    fn plain_to(&mut self, class: FrameClass, destination: PeerId, payload: &[u8]) {
        // Our own messages are within MAX_PAYLOAD by their types' MAX_SIZE.
        if let Ok(f) = plain_frame(
            class,
            self.ctx.session,
            PeerId::MASTER,
            destination,
            payload,
        ) {
            self.outbox.push_back(f);
        }
    }
}
