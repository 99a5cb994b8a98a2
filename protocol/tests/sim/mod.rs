//! A deterministic in-memory simulator: one master, N participants and a relay
//! that routes frames like the real one, with virtual time. The relay can be
//! made hostile through a hook that sees (and may change, drop, duplicate,
//! reorder or replace) every frame it delivers, and everything it ever saw is
//! kept so tests can check that no plaintext or password passed through it.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use conclave_protocol::codec::Message;
use conclave_protocol::fixtures;
use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
use conclave_protocol::stage1::{
    FromRelay, LeaveReason, Refusal, RefusalCode, SessionKind, ToRelay,
};
use conclave_protocol::stage2::{
    MasterEvent, MasterSession, ParticipantEvent, ParticipantSession, Stage2Error,
};
use conclave_protocol::time::Millis;
use rand_chacha::ChaCha20Rng;

/// Virtual time per step (one-way latency).
pub const TICK_MS: u64 = 10;

/// A connection: 0 is the master, i + 1 participant i.
pub type Conn = usize;

/// A frame the relay is about to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Receiving connection.
    pub to: Conn,
    /// The bytes.
    pub frame: Vec<u8>,
}

/// The relay's hook: given a delivery, returns what to deliver instead.
pub type Hook = Box<dyn FnMut(&mut HookCtx, Delivery) -> Vec<Delivery>>;

/// What a hostile relay knows: every frame it saw so far, and the time.
pub struct HookCtx {
    pub now: Millis,
    pub history: Vec<Delivery>,
}

pub struct Participant {
    pub engine: ParticipantSession,
    pub events: Vec<ParticipantEvent>,
    pub errors: Vec<Stage2Error>,
    pub connected: bool,
}

struct RelaySession {
    id: SessionId,
    announce: conclave_protocol::sign::Signed<conclave_protocol::stage2::Announce>,
    locked: bool,
    peers: BTreeMap<PeerId, Conn>,
    next_peer: u32,
}

pub struct Sim {
    pub now: Millis,
    pub master: MasterSession<ChaCha20Rng>,
    pub master_events: Vec<MasterEvent>,
    pub master_errors: Vec<Stage2Error>,
    pub participants: Vec<Participant>,
    session: Option<RelaySession>,
    conn_peer: BTreeMap<Conn, PeerId>,
    /// Failed joins the master reported, per connection (R12).
    pub join_failures: BTreeMap<Conn, u32>,
    /// Every frame the relay received from a client.
    pub relay_saw: Vec<Vec<u8>>,
    pub hook: Option<Hook>,
    ctx: HookCtx,
    /// Frames the relay delays to the next step (reordering).
    held: Vec<Delivery>,
    pub portal: conclave_protocol::sign::SigningIdentity,
}

pub const SESSION: SessionId = SessionId(482_913);

impl Sim {
    /// A master on an honest relay.
    pub fn new(kind: SessionKind, password: Option<&str>) -> Self {
        let portal = fixtures::identity(1);
        let cfg = fixtures::master_config(&portal, 2, SESSION, kind, password);
        let master = MasterSession::new(cfg, fixtures::rng(3), Millis(0));
        let mut sim = Sim {
            now: Millis(0),
            master,
            master_events: Vec::new(),
            master_errors: Vec::new(),
            participants: Vec::new(),
            session: None,
            conn_peer: BTreeMap::new(),
            join_failures: BTreeMap::new(),
            relay_saw: Vec::new(),
            hook: None,
            ctx: HookCtx {
                now: Millis(0),
                history: Vec::new(),
            },
            held: Vec::new(),
            portal,
        };
        sim.conn_peer.insert(0, PeerId::MASTER);
        sim.run(5);
        sim
    }

    /// Adds a participant that starts joining; returns its index.
    pub fn join(&mut self, name: &str, password: Option<&str>) -> usize {
        let i = self.participants.len();
        let engine = ParticipantSession::join(
            SESSION,
            password,
            fixtures::s(name),
            fixtures::s(&format!("{name}-pc")),
            vec![self.portal.public_key()],
            &mut fixtures::rng(100 + i as u64),
            self.now,
            fixtures::NOW,
        );
        self.participants.push(Participant {
            engine,
            events: Vec::new(),
            errors: Vec::new(),
            connected: true,
        });
        i
    }

    pub fn p(&mut self, i: usize) -> &mut Participant {
        &mut self.participants[i]
    }

    pub fn peer_of(&self, i: usize) -> PeerId {
        self.conn_peer[&(i + 1)]
    }

    /// Runs `steps` steps.
    pub fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    /// Runs until `done` holds, at most `max` steps; panics if it never does.
    pub fn run_until(&mut self, max: usize, mut done: impl FnMut(&Sim) -> bool) {
        for _ in 0..max {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(done(self), "condition not reached in {max} steps");
    }

    /// Advances virtual time by `ms` in steps.
    pub fn advance(&mut self, ms: u64) {
        self.run((ms / TICK_MS) as usize);
    }

    fn step(&mut self) {
        // 1. Collect what every client sends.
        let mut sent: Vec<(Conn, Vec<u8>)> = Vec::new();
        while let Some(f) = self.master.poll_transmit() {
            sent.push((0, f));
        }
        for (i, p) in self.participants.iter_mut().enumerate() {
            while let Some(f) = p.engine.poll_transmit() {
                if p.connected {
                    sent.push((i + 1, f));
                }
            }
        }
        // 2. The relay routes.
        let mut out: Vec<Delivery> = std::mem::take(&mut self.held);
        for (from, frame) in sent {
            self.relay_saw.push(frame.clone());
            out.extend(self.route(from, frame));
        }
        // 3. The hook (hostile relay) sees each delivery.
        self.ctx.now = self.now;
        let mut deliveries = Vec::new();
        for d in out {
            self.ctx.history.push(d.clone());
            match self.hook.as_mut() {
                Some(h) => deliveries.extend(h(&mut self.ctx, d)),
                None => deliveries.push(d),
            }
        }
        // 4. Deliver, one tick later.
        self.now = self.now.plus(TICK_MS);
        for d in deliveries {
            self.deliver(d);
        }
        // 5. Timers.
        if self.master.poll_timeout().is_some_and(|t| t <= self.now) {
            self.master.handle_timeout(self.now);
        }
        for p in &mut self.participants {
            if p.engine.poll_timeout().is_some_and(|t| t <= self.now) {
                p.engine.handle_timeout(self.now);
            }
        }
        self.drain_events();
    }

    /// Holds a delivery back until the next step (for reordering hooks).
    pub fn hold(&mut self, d: Delivery) {
        self.held.push(d);
    }

    pub fn deliver(&mut self, d: Delivery) {
        let mut frame = d.frame;
        if d.to == 0 {
            if let Err(e) = self.master.handle_frame(self.now, &mut frame) {
                self.master_errors.push(e);
            }
        } else if let Some(p) = self.participants.get_mut(d.to - 1) {
            if let Err(e) = p.engine.handle_frame(self.now, &mut frame) {
                p.errors.push(e);
            }
        }
        self.drain_events();
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.master.poll_event() {
            self.master_events.push(e);
        }
        for p in &mut self.participants {
            while let Some(e) = p.engine.poll_event() {
                p.events.push(e);
            }
        }
    }

    fn relay_frame(&self, to_peer: PeerId, msg: &FromRelay) -> Vec<u8> {
        plain_frame(
            FrameClass::Relay,
            SESSION,
            PeerId::RELAY,
            to_peer,
            &msg.encode(),
        )
        .unwrap()
    }

    fn conn_of(&self, peer: PeerId) -> Option<Conn> {
        self.session
            .as_ref()
            .and_then(|s| s.peers.get(&peer).copied())
    }

    fn route(&mut self, from: Conn, frame: Vec<u8>) -> Vec<Delivery> {
        let Ok(f) = FrameRef::parse(&frame) else {
            return vec![];
        };
        let header = f.header;
        if header.class == FrameClass::Relay {
            let Ok(msg) = ToRelay::decode(f.payload) else {
                return vec![];
            };
            return self.relay_control(from, msg);
        }
        // The relay checks that the sender is who the connection is.
        if self.conn_peer.get(&from) != Some(&header.sender) {
            return vec![];
        }
        let Some(s) = &self.session else {
            return vec![];
        };
        if header.destination == PeerId::BROADCAST {
            s.peers
                .iter()
                .filter(|(p, _)| **p != header.sender)
                .map(|(_, c)| Delivery {
                    to: *c,
                    frame: frame.clone(),
                })
                .collect()
        } else {
            s.peers
                .get(&header.destination)
                .map(|c| vec![Delivery { to: *c, frame }])
                .unwrap_or_default()
        }
    }

    fn relay_control(&mut self, from: Conn, msg: ToRelay) -> Vec<Delivery> {
        match msg {
            ToRelay::CreateSession {
                session, announce, ..
            } if from == 0 => {
                let mut peers = BTreeMap::new();
                peers.insert(PeerId::MASTER, 0);
                self.session = Some(RelaySession {
                    id: session,
                    announce,
                    locked: false,
                    peers,
                    next_peer: 2,
                });
                vec![Delivery {
                    to: 0,
                    frame: self.relay_frame(PeerId::MASTER, &FromRelay::SessionCreated { session }),
                }]
            }
            ToRelay::Join { session } => {
                let Some(s) = self.session.as_mut() else {
                    return vec![];
                };
                if s.id != session || s.locked {
                    let r = FromRelay::Refused(Refusal::new(
                        RefusalCode::SessionLocked,
                        "the session is locked",
                    ));
                    return vec![Delivery {
                        to: from,
                        frame: self.relay_frame(PeerId::RELAY, &r),
                    }];
                }
                let peer = PeerId(s.next_peer);
                self.enter(from, peer, FromRelay::PeerJoined { peer })
            }
            ToRelay::Rejoin { session, peer } => {
                let Some(s) = self.session.as_mut() else {
                    return vec![];
                };
                if s.id != session || s.peers.contains_key(&peer) {
                    return vec![];
                }
                self.enter(from, peer, FromRelay::PeerRejoined { peer })
            }
            ToRelay::JoinFailed { peer } if from == 0 => {
                if let Some(c) = self.conn_of(peer) {
                    *self.join_failures.entry(c).or_default() += 1;
                }
                vec![]
            }
            ToRelay::Remove { peer } if from == 0 => self.disconnect(peer, LeaveReason::Removed),
            ToRelay::SetLock { locked } if from == 0 => {
                if let Some(s) = self.session.as_mut() {
                    s.locked = locked;
                }
                vec![]
            }
            ToRelay::Leave => {
                let peer = self.conn_peer[&from];
                if peer == PeerId::MASTER {
                    let peers: Vec<PeerId> = self
                        .session
                        .as_ref()
                        .map(|s| s.peers.keys().copied().collect())
                        .unwrap_or_default();
                    let mut out = Vec::new();
                    for p in peers.into_iter().filter(|p| *p != PeerId::MASTER) {
                        if let Some(c) = self.conn_of(p) {
                            out.push(Delivery {
                                to: c,
                                frame: self.relay_frame(
                                    p,
                                    &FromRelay::PeerLeft {
                                        peer: PeerId::MASTER,
                                        reason: LeaveReason::SessionEnded,
                                    },
                                ),
                            });
                        }
                    }
                    self.session = None;
                    out
                } else {
                    self.disconnect(peer, LeaveReason::Left)
                }
            }
            _ => vec![],
        }
    }

    /// Puts connection `from` into the session as `peer`: Joined to it,
    /// `notice` (PeerJoined or PeerRejoined) to the master.
    fn enter(&mut self, from: Conn, peer: PeerId, notice: FromRelay) -> Vec<Delivery> {
        let Some(s) = self.session.as_mut() else {
            return vec![];
        };
        s.peers.insert(peer, from);
        s.next_peer = s.next_peer.max(peer.0 + 1);
        let (session, announce) = (s.id, s.announce.clone());
        self.conn_peer.insert(from, peer);
        let joined = FromRelay::Joined {
            session,
            peer,
            announce,
        };
        vec![
            Delivery {
                to: from,
                frame: self.relay_frame(peer, &joined),
            },
            Delivery {
                to: 0,
                frame: self.relay_frame(PeerId::MASTER, &notice),
            },
        ]
    }

    fn disconnect(&mut self, peer: PeerId, reason: LeaveReason) -> Vec<Delivery> {
        let Some(c) = self.conn_of(peer) else {
            return vec![];
        };
        if let Some(s) = self.session.as_mut() {
            s.peers.remove(&peer);
        }
        let mut out = vec![Delivery {
            to: 0,
            frame: self.relay_frame(PeerId::MASTER, &FromRelay::PeerLeft { peer, reason }),
        }];
        out.push(Delivery {
            to: c,
            frame: self.relay_frame(peer, &FromRelay::PeerLeft { peer, reason }),
        });
        out
    }

    /// The relay dies and a fresh one takes over: everything the relay held
    /// is gone, and every client resumes through the new one (R18).
    pub fn fail_over(&mut self) {
        self.session = None;
        self.held.clear();
        self.conn_peer.retain(|c, _| *c == 0);
        self.master.resume(self.now);
        for p in &mut self.participants {
            let _ = p.engine.resume(self.now);
        }
    }

    /// Cuts a participant off without telling anyone (its frames vanish).
    pub fn cut(&mut self, i: usize) {
        self.participants[i].connected = false;
    }

    /// Whether participant `i` is an admitted member with keys.
    pub fn is_member(&self, i: usize) -> bool {
        self.participants[i].engine.is_member()
    }

    /// Chats received by participant `i`.
    pub fn chats(&self, i: usize) -> Vec<String> {
        self.participants[i]
            .events
            .iter()
            .filter_map(|e| match e {
                ParticipantEvent::Chat { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Chats received by the master.
    pub fn master_chats(&self) -> Vec<String> {
        self.master_events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::Chat { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether `needle` occurs in any frame the relay received.
    pub fn relay_saw_bytes(&self, needle: &[u8]) -> bool {
        self.relay_saw
            .iter()
            .chain(self.ctx.history.iter().map(|d| &d.frame))
            .any(|f| f.windows(needle.len()).any(|w| w == needle))
    }

    /// Admits every participant waiting for admission.
    pub fn admit_all(&mut self) {
        let waiting: Vec<PeerId> = self
            .master_events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::AdmissionRequested { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect();
        for p in waiting {
            let _ = self.master.admit(p, self.now);
        }
    }
}

/// The class of a frame (for hooks).
pub fn class_of(frame: &[u8]) -> Option<FrameClass> {
    FrameRef::parse(frame).ok().map(|f| f.header.class)
}

/// The sender of a frame (for hooks).
pub fn sender_of(frame: &[u8]) -> Option<PeerId> {
    FrameRef::parse(frame).ok().map(|f| f.header.sender)
}
