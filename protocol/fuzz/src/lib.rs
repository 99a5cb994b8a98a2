//! Shared pieces of the `conclave-protocol` fuzz targets and of the seed
//! generator (`src/bin/seeds.rs`): the fixed session the engine targets drive,
//! the record format their inputs are cut into, and the drivers that apply
//! records to a [`MasterSession`] or a [`ParticipantSession`].
//!
//! The seed generator drives the same drivers while simulating a relay, and
//! writes down the records each side received; because every engine here is
//! deterministic (fixed keys, fixed RNG seeds, time from the records), a seed
//! replays exactly into the fuzz target and reaches the same deep states
//! (admitted member, later epochs, pairwise control).
//!
//! ## Record format (targets `master` and `participant`)
//!
//! ```text
//! +--------+--------+----------------+----------------------+
//! |   op   |   dt   | len (u16, BE)  |  data (len bytes)    |
//! +--------+--------+----------------+----------------------+
//! ```
//!
//! repeated. The clock moves on by `dt` × [`TICK_MS`] before each record and
//! the engine's timers run; then `op` (see [`op`]) says what to do with
//! `data`: hand it to the engine as a frame from the relay, or call one of the
//! engine's commands. A record cut short by the end of the input takes what is
//! left. At most [`MAX_RECORDS`] records are applied.

use std::sync::OnceLock;

use conclave_protocol::fixtures;
use conclave_protocol::frame::{FrameClass, FrameRef, PeerId, SessionId};
use conclave_protocol::sign::{PublicKey, SigningIdentity};
use conclave_protocol::stage1::SessionKind;
use conclave_protocol::stage2::{
    MasterConfig, MasterEvent, MasterSession, ParticipantEvent, ParticipantSession, Rights,
};
use conclave_protocol::time::Millis;

/// The RNG the master engine draws from.
pub type Rng = rand_chacha::ChaCha20Rng;

/// The session the engine targets run.
pub const SESSION: SessionId = SessionId(123_456);
/// Its password.
pub const PASSWORD: &str = "pw-123456";
/// The peer ID the relay gives the fuzzed participant.
pub const PARTICIPANT: PeerId = PeerId(2);
/// Seed of the fuzzed participant's RNG.
pub const PARTICIPANT_RNG: u64 = 4;
/// The TLS channel binding the `stage1` target checks masters' proofs against.
pub const CHANNEL_BINDING: [u8; 32] = [7; 32];

/// The key the `frame` target opens frames with.
pub mod frame_fixture {
    use conclave_protocol::frame::PeerId;

    /// The sender's base key.
    pub const BASE_KEY: [u8; 32] = *b"conclave fuzz frame base key 32B";
    /// The epoch of the group key.
    pub const EPOCH: u32 = 1;
    /// The sender.
    pub const SENDER: PeerId = PeerId(2);
}

/// Milliseconds per unit of a record's `dt`.
pub const TICK_MS: u64 = 250;
/// Most records applied from one input.
pub const MAX_RECORDS: usize = 256;
/// Bytes in a record's header.
pub const RECORD_HEADER: usize = 4;

/// What a record does (its `op` byte). Values not listed are frames.
pub mod op {
    /// Hand `data` to the engine as a frame.
    pub const FRAME: u8 = 0;
    /// Nothing but the clock and the timers.
    pub const TICK: u8 = 1;
    /// Master: `admit(data[0])`.
    pub const ADMIT: u8 = 2;
    /// Master: `deny(data[0])`.
    pub const DENY: u8 = 3;
    /// Master: `remove(data[0])`.
    pub const REMOVE: u8 = 4;
    /// Master: `set_rights(data[0], Rights(data[1]))`.
    pub const RIGHTS: u8 = 5;
    /// Either: `send_chat(data as UTF-8, lossy)`.
    pub const CHAT: u8 = 6;
    /// Either: `send_group(class data[0], data[1..])`.
    pub const GROUP: u8 = 7;
    /// Master: `send_to(data[0], class data[1], data[2..])`;
    /// participant: `send_to_master(class data[0], data[1..])`.
    pub const SEND_TO: u8 = 8;
    /// Master: `rekey()`.
    pub const REKEY: u8 = 9;
    /// Master: `set_locked(data[0] & 1)`.
    pub const LOCK: u8 = 10;
    /// Master: `end()`; participant: `leave()`.
    pub const END: u8 = 11;
}

/// One record of an engine target's input.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// What to do.
    pub op: u8,
    /// Clock step, in [`TICK_MS`].
    pub dt: u8,
    /// The frame or the command's arguments.
    pub data: &'a [u8],
}

impl Record<'_> {
    /// Appends the record's encoding to `out`. `data` longer than 65535
    /// bytes is cut.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let data = self.data.get(..usize::from(u16::MAX)).unwrap_or(self.data);
        out.push(self.op);
        out.push(self.dt);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
}

/// The records of `input`, at most [`MAX_RECORDS`].
pub fn records(input: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut rest = input;
    core::iter::from_fn(move || {
        let (head, body) = (rest.get(..RECORD_HEADER)?, rest.get(RECORD_HEADER..)?);
        let &[op, dt, l0, l1] = head else { return None };
        let len = usize::from(u16::from_be_bytes([l0, l1])).min(body.len());
        let (data, next) = body.split_at(len);
        rest = next;
        Some(Record { op, dt, data })
    })
    .take(MAX_RECORDS)
}

/// The portal keys every target trusts: the fixtures' portal, identity 1.
pub fn portal_keys() -> &'static [PublicKey] {
    static KEYS: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS.get_or_init(|| vec![fixtures::identity(1).public_key()])
}

/// A frame class from a byte.
pub fn class(b: u8) -> FrameClass {
    let all = FrameClass::ALL;
    all.get(usize::from(b) % all.len())
        .copied()
        .unwrap_or(FrameClass::Chat)
}

fn peer(data: &[u8]) -> PeerId {
    PeerId(u32::from(data.first().copied().unwrap_or(2)))
}

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

fn tail(data: &[u8], from: usize) -> &[u8] {
    data.get(from..).unwrap_or_default()
}

/// Checks what an engine sends: every frame must parse.
fn check_output(frame: &[u8]) {
    if let Err(e) = FrameRef::parse(frame) {
        panic!("engine sent a frame that does not parse ({e}): {frame:02x?}");
    }
}

/// `fixtures::master_config(&fixtures::identity(1), 2, SESSION, Meeting,
/// Some(PASSWORD))`, made once and copied: generating the keys and signing the
/// license on every run would take a good part of the master target's time.
pub fn master_config() -> MasterConfig {
    static TEMPLATE: OnceLock<MasterConfig> = OnceLock::new();
    let t = TEMPLATE.get_or_init(|| {
        fixtures::master_config(
            &fixtures::identity(1),
            2,
            SESSION,
            SessionKind::Meeting,
            Some(PASSWORD),
        )
    });
    MasterConfig {
        session: t.session,
        kind: t.kind,
        moderator: t.moderator.clone(),
        license: t.license.clone(),
        identity: SigningIdentity::from_seed(&t.identity.to_seed()),
        password: t.password.clone(),
        autolock: t.autolock,
        created_at: t.created_at,
    }
}

/// The fuzzed master: the session of [`SESSION`] with a password, created at 0 ms.
pub struct MasterDriver {
    /// The engine.
    pub session: MasterSession<Rng>,
    /// Its clock.
    pub now: Millis,
}

impl Default for MasterDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl MasterDriver {
    /// A fresh master at time 0, with nothing drained yet.
    pub fn new() -> Self {
        MasterDriver {
            session: MasterSession::new(master_config(), fixtures::rng(3), Millis(0)),
            now: Millis(0),
        }
    }

    /// Applies one record and returns what the engine then sent and showed.
    pub fn step(&mut self, r: Record<'_>) -> (Vec<Vec<u8>>, Vec<MasterEvent>) {
        self.now = self.now.plus(u64::from(r.dt) * TICK_MS);
        let now = self.now;
        let s = &mut self.session;
        s.handle_timeout(now);
        let d = r.data;
        match r.op {
            op::TICK => {}
            op::ADMIT => {
                let _ = s.admit(peer(d), now);
            }
            op::DENY => s.deny(peer(d)),
            op::REMOVE => {
                let _ = s.remove(peer(d), now);
            }
            op::RIGHTS => {
                let _ = s.set_rights(peer(d), Rights(byte(d, 1)));
            }
            op::CHAT => {
                let _ = s.send_chat(&String::from_utf8_lossy(d));
            }
            op::GROUP => {
                let _ = s.send_group(class(byte(d, 0)), tail(d, 1));
            }
            op::SEND_TO => {
                let _ = s.send_to(peer(d), class(byte(d, 1)), tail(d, 2));
            }
            op::REKEY => s.rekey(now),
            op::LOCK => s.set_locked(byte(d, 0) & 1 == 1),
            op::END => s.end(),
            _ => {
                let mut frame = d.to_vec();
                let _ = s.handle_frame(now, &mut frame);
            }
        }
        self.drain()
    }

    /// Takes everything the engine has to send and show.
    pub fn drain(&mut self) -> (Vec<Vec<u8>>, Vec<MasterEvent>) {
        let _ = self.session.poll_timeout();
        let frames: Vec<Vec<u8>> = core::iter::from_fn(|| self.session.poll_transmit()).collect();
        frames.iter().for_each(|f| check_output(f));
        let events = core::iter::from_fn(|| self.session.poll_event()).collect();
        (frames, events)
    }
}

/// A participant engine joining [`SESSION`] with [`PASSWORD`].
pub struct ParticipantDriver {
    /// The engine.
    pub session: ParticipantSession,
    /// Its clock.
    pub now: Millis,
}

impl Default for ParticipantDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl ParticipantDriver {
    /// The fuzzed participant: RNG seed [`PARTICIPANT_RNG`], created at 0 ms.
    pub fn new() -> Self {
        Self::with(PARTICIPANT_RNG, "Bob", "laptop", Millis(0))
    }

    /// A participant with RNG `seed`, `name` and `host`, created at `now`.
    pub fn with(seed: u64, name: &str, host: &str, now: Millis) -> Self {
        ParticipantDriver {
            session: ParticipantSession::join(
                SESSION,
                Some(PASSWORD),
                fixtures::s(name),
                fixtures::s(host),
                portal_keys().to_vec(),
                &mut fixtures::rng(seed),
                now,
                fixtures::NOW,
            ),
            now,
        }
    }

    /// Applies one record and returns what the engine then sent and showed.
    pub fn step(&mut self, r: Record<'_>) -> (Vec<Vec<u8>>, Vec<ParticipantEvent>) {
        self.now = self.now.plus(u64::from(r.dt) * TICK_MS);
        let now = self.now;
        let s = &mut self.session;
        s.handle_timeout(now);
        let d = r.data;
        match r.op {
            op::TICK => {}
            op::CHAT => {
                let _ = s.send_chat(&String::from_utf8_lossy(d));
            }
            op::GROUP => {
                let _ = s.send_group(class(byte(d, 0)), tail(d, 1));
            }
            op::SEND_TO => {
                let _ = s.send_to_master(class(byte(d, 0)), tail(d, 1));
            }
            op::END => s.leave(),
            _ => {
                let mut frame = d.to_vec();
                let _ = s.handle_frame(now, &mut frame);
            }
        }
        self.drain()
    }

    /// Takes everything the engine has to send and show.
    pub fn drain(&mut self) -> (Vec<Vec<u8>>, Vec<ParticipantEvent>) {
        let _ = self.session.poll_timeout();
        let _ = (
            self.session.peer(),
            self.session.epoch(),
            self.session.session_code(),
            self.session.is_member(),
        );
        let frames: Vec<Vec<u8>> = core::iter::from_fn(|| self.session.poll_transmit()).collect();
        frames.iter().for_each(|f| check_output(f));
        let events = core::iter::from_fn(|| self.session.poll_event()).collect();
        (frames, events)
    }
}
