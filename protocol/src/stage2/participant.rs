//! The participant's session engine (sans-IO).

use std::collections::VecDeque;

use zeroize::Zeroizing;

use super::control::{Control, Rights, RightsGrant};
use super::epoch::{chat_text, check_chat, Epoch, Epochs};
use super::group::{Rekey, Roster, SessionContext};
use super::handshake::{
    AbortReason, Announce, AwaitingAnnounce, AwaitingResponse, Handshake, JoinRequest, SafetyCode,
};
use super::{Stage2Error, JOIN_TIMEOUT_MS, LIVENESS_TIMEOUT_MS};
use crate::bounded::BoundedString;
use crate::codec::Message;
use crate::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
use crate::sframe::{FrameOpener, FrameSealer, KeyScope, SealBuf, SealedFrame};
use crate::sign::PublicKey;
use crate::stage1::{FromRelay, LeaveReason, Refusal, SessionKind, ToRelay};
use crate::time::{Millis, UnixTime};

/// What the participant's app shows or acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantEvent {
    /// The relay refused the join.
    Refused(Refusal),
    /// The relay dropped frames of a class the session's policy forbids (R13).
    PolicyDropped {
        /// The class.
        class: FrameClass,
        /// The relay's explanation.
        message: String,
    },
    /// The master's announce verified: show who runs the session.
    Announced {
        /// The licensee.
        licensee: String,
        /// The moderator.
        moderator: String,
        /// Support or meeting.
        kind: SessionKind,
    },
    /// Keys agreed with the master: show this code until admitted.
    SafetyCode(SafetyCode),
    /// Admitted: keys for the first epoch are in place.
    Admitted {
        /// The epoch.
        epoch: u32,
    },
    /// A new epoch is in force.
    EpochChanged {
        /// The epoch.
        epoch: u32,
        /// The code every member shows now.
        session_code: SafetyCode,
        /// Members as the signed roster lists them (ID, name, rights).
        members: Vec<(PeerId, String, Rights)>,
        /// Whether the session is locked.
        locked: bool,
    },
    /// The master changed this participant's rights.
    RightsChanged(Rights),
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
    /// The join failed or was refused by the master.
    JoinFailed(AbortReason),
    /// The master removed this participant.
    Removed,
    /// The session ended.
    Ended,
    /// Nothing heard from the master for [`LIVENESS_TIMEOUT_MS`].
    MasterLost,
}

enum State {
    Joining {
        portal_keys: Vec<PublicKey>,
        unix_now: UnixTime,
        start: Box<AwaitingAnnounce>,
    },
    AwaitingResponse(Box<AwaitingResponse>),
    AwaitingAdmission,
    Member,
    Over,
}

struct Pairwise {
    sealer: FrameSealer,
    opener: FrameOpener,
    wrap: Zeroizing<[u8; 32]>,
}

/// The participant's side of a session.
pub struct ParticipantSession {
    session: SessionId,
    state: State,
    /// The end of the session was reported.
    ended: bool,
    peer: PeerId,
    own_key: [u8; 32],
    pending_request: Option<JoinRequest>,
    announce: Option<Announce>,
    master_identity: Option<PublicKey>,
    ctx: Option<SessionContext>,
    pairwise: Option<Pairwise>,
    epochs: Epochs,
    roster: Option<Roster>,
    roster_digest: [u8; 32],
    rights: Rights,
    rights_seq: u64,
    started: Millis,
    last_from_master: Millis,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<ParticipantEvent>,
}

impl core::fmt::Debug for ParticipantSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParticipantSession")
            .field("session", &self.session)
            .field("peer", &self.peer)
            .finish()
    }
}

impl ParticipantSession {
    /// Starts joining `session`: queues `Join` for the relay. The license in
    /// the announce is checked against `unix_now`.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        session: SessionId,
        password: Option<&str>,
        name: BoundedString<64>,
        host: BoundedString<64>,
        portal_keys: Vec<PublicKey>,
        rng: &mut impl rand_core::CryptoRngCore,
        now: Millis,
        unix_now: UnixTime,
    ) -> Self {
        let (start, request) =
            AwaitingAnnounce::start(session, password.map(str::as_bytes), name, host, rng);
        let own_key = start.own_key();
        let mut s = ParticipantSession {
            session,
            ended: false,
            state: State::Joining {
                portal_keys,
                unix_now,
                start: Box::new(start),
            },
            peer: PeerId::RELAY,
            own_key,
            pending_request: None,
            announce: None,
            master_identity: None,
            ctx: None,
            pairwise: None,
            epochs: Epochs::default(),
            roster: None,
            roster_digest: [0; 32],
            rights: Rights::NONE,
            rights_seq: 0,
            started: now,
            last_from_master: now,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.pending_request = Some(request);
        s.plain_to(
            FrameClass::Relay,
            PeerId::RELAY,
            &ToRelay::Join { session }.encode(),
        );
        s
    }

    /// The ID the relay gave this participant (the relay's ID until joined).
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The verified announce, once received.
    pub fn announce(&self) -> Option<&Announce> {
        self.announce.as_ref()
    }

    /// The current epoch, once admitted.
    pub fn epoch(&self) -> Option<u32> {
        self.epochs.number()
    }

    /// The session code of the current roster.
    pub fn session_code(&self) -> Option<SafetyCode> {
        self.roster
            .as_ref()
            .map(|_| SafetyCode::for_roster(&self.roster_digest))
    }

    /// The rights the master granted.
    pub fn rights(&self) -> Rights {
        self.rights
    }

    /// Whether the participant is admitted and holds the group key.
    pub fn is_member(&self) -> bool {
        matches!(self.state, State::Member)
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// The next event for the app.
    pub fn poll_event(&mut self) -> Option<ParticipantEvent> {
        self.events.pop_front()
    }

    /// When [`ParticipantSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.state {
            State::Over => None,
            State::Member => {
                let mut t = self.last_from_master.plus(LIVENESS_TIMEOUT_MS);
                if let Some(until) = self.epochs.grace_deadline() {
                    t = t.min(until);
                }
                Some(t)
            }
            _ => Some(self.started.plus(JOIN_TIMEOUT_MS)),
        }
    }

    /// Runs the timers: join timeout, master liveness, epoch grace.
    pub fn handle_timeout(&mut self, now: Millis) {
        match self.state {
            State::Over => {}
            State::Member => {
                if now.since(self.last_from_master) >= LIVENESS_TIMEOUT_MS {
                    self.finish(ParticipantEvent::MasterLost);
                }
                self.epochs.expire(now);
            }
            _ => {
                if now.since(self.started) >= JOIN_TIMEOUT_MS {
                    self.finish(ParticipantEvent::JoinFailed(AbortReason::Timeout));
                }
            }
        }
    }

    fn finish(&mut self, event: ParticipantEvent) {
        // The end is reported once, whichever way it arrives first.
        self.state = State::Over;
        if self.ended {
            return;
        }
        self.ended = true;
        self.epochs.clear();
        self.pairwise = None;
        self.events.push_back(event);
    }

    /// Handles one frame from the relay. Errors mean the frame was dropped
    /// (and nothing in it was accepted); the session goes on.
    pub fn handle_frame(&mut self, now: Millis, frame: &mut [u8]) -> Result<(), Stage2Error> {
        let f = FrameRef::parse(frame)?;
        if f.header.session != self.session {
            return Err(Stage2Error::WrongSession {
                expected: self.session.0,
                got: f.header.session.0,
            });
        }
        let (class, from) = (f.header.class, f.header.sender);
        match class {
            FrameClass::Relay if from == PeerId::RELAY => {
                let msg = FromRelay::decode(f.payload)?;
                self.handle_relay(msg)
            }
            FrameClass::Handshake if from == PeerId::MASTER => {
                let msg = Handshake::decode(f.payload)?;
                self.handle_handshake(now, msg)
            }
            FrameClass::Roster if from == PeerId::MASTER => {
                let rekey = Rekey::decode(f.payload)?;
                self.handle_rekey(now, &rekey)
            }
            FrameClass::Relay | FrameClass::Handshake | FrameClass::Roster => {
                Err(Stage2Error::Unexpected("frame class from this sender"))
            }
            _ => self.handle_sealed(now, frame),
        }
    }

    fn handle_relay(&mut self, msg: FromRelay) -> Result<(), Stage2Error> {
        match msg {
            FromRelay::Joined { session, peer, .. } if matches!(self.state, State::Member) => {
                // Back at a new relay after failover, under the same ID.
                if session != self.session || peer != self.peer {
                    return Err(Stage2Error::Unexpected("Joined under another ID"));
                }
                Ok(())
            }
            FromRelay::Joined {
                session,
                peer,
                announce,
            } => {
                let State::Joining {
                    portal_keys,
                    unix_now,
                    start,
                } = core::mem::replace(&mut self.state, State::Over)
                else {
                    return Err(Stage2Error::Unexpected("Joined"));
                };
                if session != self.session || !peer.is_participant() {
                    return Err(Stage2Error::WrongSession {
                        expected: self.session.0,
                        got: session.0,
                    });
                }
                let next = match start.receive_announce(&announce, &portal_keys, unix_now) {
                    Ok(n) => n,
                    Err(e) => {
                        self.finish(ParticipantEvent::JoinFailed(AbortReason::Protocol));
                        return Err(e);
                    }
                };
                self.peer = peer;
                let a = next.announce().clone();
                let licensee = crate::artefact::License::decode(a.license.body())
                    .map(|l| l.licensee.to_string())
                    .unwrap_or_default();
                self.master_identity = crate::artefact::License::decode(a.license.body())
                    .ok()
                    .map(|l| l.master_key);
                self.ctx = Some(SessionContext {
                    session: a.session,
                    uuid: a.uuid,
                });
                self.events.push_back(ParticipantEvent::Announced {
                    licensee,
                    moderator: a.moderator.to_string(),
                    kind: a.kind,
                });
                self.announce = Some(a);
                self.state = State::AwaitingResponse(Box::new(next));
                if let Some(request) = self.pending_request.take() {
                    self.plain_to(
                        FrameClass::Handshake,
                        PeerId::MASTER,
                        &Handshake::Request(request).encode(),
                    );
                }
                Ok(())
            }
            FromRelay::Refused(r) => {
                if !matches!(self.state, State::Member) {
                    self.state = State::Over;
                }
                self.events.push_back(ParticipantEvent::Refused(r));
                Ok(())
            }
            FromRelay::Shared(reply)
                if matches!(self.state, State::AwaitingAdmission | State::Member) =>
            {
                self.events.push_back(ParticipantEvent::Shared(reply));
                Ok(())
            }
            FromRelay::Dropped { class, message } => {
                self.events.push_back(ParticipantEvent::PolicyDropped {
                    class,
                    message: message.to_string(),
                });
                Ok(())
            }
            FromRelay::PeerLeft {
                peer: PeerId::MASTER,
                ..
            } => {
                self.finish(ParticipantEvent::Ended);
                Ok(())
            }
            FromRelay::PeerLeft { peer, reason } if peer == self.peer => {
                self.finish(if reason == LeaveReason::Removed {
                    ParticipantEvent::Removed
                } else {
                    ParticipantEvent::Ended
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn handle_handshake(&mut self, now: Millis, msg: Handshake) -> Result<(), Stage2Error> {
        match msg {
            Handshake::Response(response) => {
                let State::AwaitingResponse(state) =
                    core::mem::replace(&mut self.state, State::Over)
                else {
                    self.state = State::Over;
                    return Err(Stage2Error::Unexpected("join response"));
                };
                match state.receive_response(&response) {
                    Ok((outcome, confirm)) => {
                        let keys = outcome.keys;
                        self.pairwise = Some(Pairwise {
                            sealer: FrameSealer::new(&keys.p2m, KeyScope::Pairwise, self.peer),
                            opener: FrameOpener::new(&keys.m2p, KeyScope::Pairwise, PeerId::MASTER),
                            wrap: keys.wrap,
                        });
                        self.last_from_master = now;
                        self.state = State::AwaitingAdmission;
                        self.events
                            .push_back(ParticipantEvent::SafetyCode(outcome.safety_code));
                        self.plain_to(
                            FrameClass::Handshake,
                            PeerId::MASTER,
                            &Handshake::Confirm(confirm).encode(),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        self.plain_to(
                            FrameClass::Handshake,
                            PeerId::MASTER,
                            &Handshake::Abort(AbortReason::ConfirmationFailed).encode(),
                        );
                        self.finish(ParticipantEvent::JoinFailed(
                            AbortReason::ConfirmationFailed,
                        ));
                        Err(e)
                    }
                }
            }
            Handshake::Abort(reason) if !matches!(self.state, State::Member | State::Over) => {
                self.finish(ParticipantEvent::JoinFailed(reason));
                Ok(())
            }
            _ => Err(Stage2Error::Unexpected("handshake message")),
        }
    }

    fn handle_rekey(&mut self, now: Millis, rekey: &Rekey) -> Result<(), Stage2Error> {
        if !matches!(self.state, State::AwaitingAdmission | State::Member) {
            return Err(Stage2Error::Unexpected("rekey"));
        }
        let (Some(ctx), Some(pw), Some(master)) =
            (self.ctx, self.pairwise.as_ref(), self.master_identity)
        else {
            return Err(Stage2Error::Unexpected("rekey"));
        };
        // A rekey without a wrap for us is for others (we are not admitted yet).
        let Some(wrap) = rekey.wraps.iter().find(|w| w.peer == self.peer) else {
            return Ok(());
        };
        let current = self.epochs.number().unwrap_or(0);
        if rekey.epoch <= current {
            return Err(Stage2Error::StaleEpoch {
                got: rekey.epoch,
                current,
            });
        }
        let secret = ctx.unwrap(&pw.wrap, rekey.epoch, wrap)?;
        let signed = ctx.open_roster(&secret, rekey.epoch, &rekey.roster)?;
        let roster: Roster = signed.verify_with(&master)?;
        if roster.session != ctx.session || roster.uuid != ctx.uuid || roster.epoch != rekey.epoch {
            return Err(Stage2Error::BrokenChain);
        }
        if self.roster.is_some() && roster.previous != self.roster_digest {
            return Err(Stage2Error::BrokenChain);
        }
        if !roster
            .members
            .iter()
            .any(|m| m.peer == self.peer && m.key == self.own_key)
        {
            return Err(Stage2Error::NotInRoster);
        }
        let number = rekey.epoch;
        let epoch = Epoch::new(
            &secret,
            number,
            self.peer,
            roster.members.iter().map(|m| m.peer),
            now,
        );
        // Whoever is not in the new roster left or was removed: nothing more
        // from them, not even under the old epoch's key.
        self.epochs
            .install(epoch, now, |p| roster.members.iter().any(|m| m.peer == p));
        self.roster_digest = signed.digest();
        self.last_from_master = now;
        if !matches!(self.state, State::Member) {
            self.state = State::Member;
            self.events
                .push_back(ParticipantEvent::Admitted { epoch: number });
        }
        self.events.push_back(ParticipantEvent::EpochChanged {
            epoch: number,
            session_code: SafetyCode::for_roster(&self.roster_digest),
            members: roster
                .members
                .iter()
                .map(|m| (m.peer, m.name.to_string(), m.rights))
                .collect(),
            locked: roster.locked,
        });
        self.roster = Some(roster);
        Ok(())
    }

    fn handle_sealed(&mut self, now: Millis, frame: &mut [u8]) -> Result<(), Stage2Error> {
        let sealed = SealedFrame::parse(frame)?;
        let class = sealed.header.class;
        let from = sealed.header.sender;
        let opened = match sealed.key_id.scope {
            KeyScope::Pairwise => {
                if from != PeerId::MASTER {
                    return Err(Stage2Error::UnknownPeer(from));
                }
                let pw = self
                    .pairwise
                    .as_mut()
                    .ok_or(Stage2Error::Unexpected("pairwise frame before keys"))?;
                pw.opener.open_in_place(&sealed, frame)?
            }
            KeyScope::Group { .. } => self.epochs.open(&sealed, frame)?,
        };
        if from == PeerId::MASTER {
            self.last_from_master = now;
        }
        let data = frame.get(opened.plaintext).unwrap_or_default().to_vec();
        match class {
            FrameClass::Control => self.handle_control(Control::decode(&data)?),
            FrameClass::Chat => {
                let text = chat_text(data)?;
                self.events.push_back(ParticipantEvent::Chat { from, text });
                Ok(())
            }
            _ => {
                self.events
                    .push_back(ParticipantEvent::Received { from, class, data });
                Ok(())
            }
        }
    }

    fn handle_control(&mut self, msg: Control) -> Result<(), Stage2Error> {
        match msg {
            Control::Heartbeat { sequence } => self.send_to_master(
                FrameClass::Control,
                &Control::HeartbeatAck { sequence }.encode(),
            ),
            Control::Rights(signed) => {
                let master = self
                    .master_identity
                    .ok_or(Stage2Error::Unexpected("rights"))?;
                let grant: RightsGrant = signed.verify_with(&master)?;
                let ctx = self.ctx.ok_or(Stage2Error::Unexpected("rights"))?;
                if grant.session != ctx.session || grant.uuid != ctx.uuid {
                    return Err(Stage2Error::BadGrant("it is for another session"));
                }
                if grant.peer != self.peer {
                    return Err(Stage2Error::BadGrant("it is for another participant"));
                }
                if grant.sequence <= self.rights_seq {
                    return Err(Stage2Error::BadGrant(
                        "it is older than the rights in force",
                    ));
                }
                self.rights_seq = grant.sequence;
                self.rights = grant.rights;
                self.events
                    .push_back(ParticipantEvent::RightsChanged(grant.rights));
                Ok(())
            }
            Control::Removed => {
                self.finish(ParticipantEvent::Removed);
                Ok(())
            }
            Control::Denied(reason) => {
                self.finish(ParticipantEvent::JoinFailed(reason));
                Ok(())
            }
            Control::End => {
                self.finish(ParticipantEvent::Ended);
                Ok(())
            }
            Control::App(bytes) => {
                self.events.push_back(ParticipantEvent::Received {
                    from: PeerId::MASTER,
                    class: FrameClass::Control,
                    data: bytes.to_vec(),
                });
                Ok(())
            }
            Control::HeartbeatAck { .. } | Control::Leave => {
                Err(Stage2Error::Unexpected("control message from the master"))
            }
        }
    }

    /// Sends a chat message to everyone.
    pub fn send_chat(&mut self, text: &str) -> Result<(), Stage2Error> {
        check_chat(text)?;
        self.send_group(FrameClass::Chat, text.as_bytes())
    }

    /// Seals `data` under the group key and sends it to everyone.
    pub fn send_group(&mut self, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error> {
        let frame = self.epochs.seal(class, self.session, data)?;
        self.outbox.push_back(frame);
        Ok(())
    }

    /// Seals `data` for the master under the pairwise key.
    pub fn send_to_master(&mut self, class: FrameClass, data: &[u8]) -> Result<(), Stage2Error> {
        if !class.carries_sframe() {
            return Err(Stage2Error::Unexpected("plain class"));
        }
        let session = self.session;
        let pw = self
            .pairwise
            .as_mut()
            .ok_or(Stage2Error::Unexpected("send before keys"))?;
        let mut buf = SealBuf::from_plaintext(data);
        pw.sealer.seal(class, session, PeerId::MASTER, &mut buf)?;
        self.outbox.push_back(buf.frame().to_vec());
        Ok(())
    }

    /// Returns to the session through a new relay after the old one was lost
    /// (R18): queues [`ToRelay::Rejoin`] under this participant's ID. Only a
    /// member can; one still joining must join again.
    pub fn resume(&mut self, now: Millis) -> Result<(), Stage2Error> {
        if !matches!(self.state, State::Member) {
            return Err(Stage2Error::Command(
                "only an admitted participant can resume; join again".into(),
            ));
        }
        self.outbox.clear();
        self.last_from_master = now;
        let rejoin = ToRelay::Rejoin {
            session: self.session,
            peer: self.peer,
        };
        self.plain_to(FrameClass::Relay, PeerId::RELAY, &rejoin.encode());
        Ok(())
    }

    /// Asks the relay to store, send or delete a shared file (R24); the
    /// answer comes as [`ParticipantEvent::Shared`]. Only once the master
    /// has admitted this participant (it may hand over a file's key before
    /// the first epoch's keys arrive).
    pub fn shared(&mut self, request: crate::shared::SharedRequest) -> Result<(), Stage2Error> {
        if !matches!(self.state, State::AwaitingAdmission | State::Member) {
            return Err(Stage2Error::Unexpected("shared file before admission"));
        }
        self.plain_to(
            FrameClass::Relay,
            PeerId::RELAY,
            &ToRelay::Shared(request).encode(),
        );
        Ok(())
    }

    /// Leaves the session.
    pub fn leave(&mut self) {
        if self.pairwise.is_some() {
            let _ = self.send_to_master(FrameClass::Control, &Control::Leave.encode());
        }
        self.plain_to(FrameClass::Relay, PeerId::RELAY, &ToRelay::Leave.encode());
        self.finish(ParticipantEvent::Ended);
    }

    fn plain_to(&mut self, class: FrameClass, destination: PeerId, payload: &[u8]) {
        if let Ok(f) = plain_frame(class, self.session, self.peer, destination, payload) {
            self.outbox.push_back(f);
        }
    }
}
