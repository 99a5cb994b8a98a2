//! Writes the seed inputs of every fuzz target into `corpus/<target>/seed-*`
//! (or under the directory given as the first argument).
//!
//! The engine seeds come from a simulated session: a relay routes frames
//! between a real master and two real participants, and the records each
//! fuzzed engine received are written down in the targets' record format, so
//! that the fuzzer starts from genuine handshakes, rekeys and sealed frames.
//! Everything is deterministic: running this twice writes the same bytes.
//!
//! Run by `run.sh` with plain cargo: `cargo run --features seeds --bin seeds`
//! (set `SEEDS_VERBOSE=1` to see the simulated session's events).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use conclave_protocol::app::AppMessage;
use conclave_protocol::artefact::{LicenseNumber, RevocationList, Role, Version};
use conclave_protocol::bounded::{BoundedBytes, BoundedVec};
use conclave_protocol::codec::Message;
use conclave_protocol::fixtures;
use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, RoutingHeader};
use conclave_protocol::recording::{self, RecordingWriter};
use conclave_protocol::sframe::{
    FrameSealer, KeyId, KeyScope, SealBuf, SframeHeader, SframeKey, MAX_SFRAME_HEADER_LEN, TAG_LEN,
};
use conclave_protocol::shared::{BlobId, FileKey, SharedFileInfo, SharedReply, SharedRequest};
use conclave_protocol::sign::Signed;
use conclave_protocol::stage1::{FromRelay, LeaveReason, Refusal, RefusalCode, ToRelay, Welcome};
use conclave_protocol::stage2::handshake::AbortReason;
use conclave_protocol::stage2::{
    Announce, Control, Handshake, Rekey, Rights, RightsGrant, Roster, RosterMember,
};
use conclave_protocol::time::{Millis, UnixTime};
use conclave_protocol_fuzz::frame_fixture::{BASE_KEY, EPOCH, SENDER};
use conclave_protocol_fuzz::{
    op, records, MasterDriver, ParticipantDriver, Record, CHANNEL_BINDING, PARTICIPANT, SESSION,
    TICK_MS,
};

/// Where a frame goes next.
#[derive(Debug, Clone, Copy)]
enum Dest {
    Master,
    Participant(u32),
}

struct Part {
    driver: ParticipantDriver,
    last: u64,
    records: Vec<u8>,
}

/// A relay with one master and its participants, in ticks of `TICK_MS`.
struct Sim {
    t: u64,
    master: MasterDriver,
    master_last: u64,
    master_records: Vec<u8>,
    parts: BTreeMap<u32, Part>,
    queue: VecDeque<(Dest, Vec<u8>)>,
    /// Every frame that crossed the relay, for the frame and message seeds.
    frames: Vec<Vec<u8>>,
}

/// Prints the simulation's events when `SEEDS_VERBOSE` is set.
fn log(line: core::fmt::Arguments<'_>) {
    if std::env::var_os("SEEDS_VERBOSE").is_some() {
        eprintln!("  {line}");
    }
}

fn dt(t: u64, last: u64) -> u8 {
    u8::try_from(t - last).expect("the simulation steps at most 255 ticks at once")
}

impl Sim {
    fn new() -> Self {
        let mut s = Sim {
            t: 0,
            master: MasterDriver::new(),
            master_last: 0,
            master_records: Vec::new(),
            parts: BTreeMap::new(),
            queue: VecDeque::new(),
            frames: Vec::new(),
        };
        let (frames, _) = s.master.drain();
        for f in frames {
            s.route(PeerId::MASTER, f);
        }
        s.run();
        s
    }

    fn announce(&self) -> Signed<Announce> {
        self.master.session.announce().clone()
    }

    /// A participant (relay ID `id`) joins now.
    fn join(&mut self, id: u32, rng_seed: u64, name: &str, host: &str) {
        let mut driver = ParticipantDriver::with(rng_seed, name, host, Millis(self.t * TICK_MS));
        let (frames, _) = driver.drain();
        self.parts.insert(
            id,
            Part {
                driver,
                last: self.t,
                records: Vec::new(),
            },
        );
        for f in frames {
            self.route(PeerId(id), f);
        }
        self.run();
    }

    fn master_do(&mut self, op: u8, data: &[u8]) {
        let r = Record {
            op,
            dt: dt(self.t, self.master_last),
            data,
        };
        r.encode_into(&mut self.master_records);
        self.master_last = self.t;
        let (frames, events) = self.master.step(r);
        for e in events {
            log(format_args!("[{:>5} ms] master: {e:?}", self.t * TICK_MS));
        }
        for f in frames {
            self.route(PeerId::MASTER, f);
        }
    }

    fn part_do(&mut self, id: u32, op: u8, data: &[u8]) {
        let t = self.t;
        let Some(p) = self.parts.get_mut(&id) else {
            return;
        };
        let r = Record {
            op,
            dt: dt(t, p.last),
            data,
        };
        r.encode_into(&mut p.records);
        p.last = t;
        let (frames, events) = p.driver.step(r);
        for e in events {
            log(format_args!(
                "[{:>5} ms] participant {id}: {e:?}",
                t * TICK_MS
            ));
        }
        for f in frames {
            self.route(PeerId(id), f);
        }
    }

    /// Routes a frame sent by `from` (the relay sees the real sender).
    fn route(&mut self, from: PeerId, frame: Vec<u8>) {
        let f = FrameRef::parse(&frame).expect("engines send valid frames");
        let dest = f.header.destination;
        self.frames.push(frame.clone());
        if dest == PeerId::RELAY {
            let msg = ToRelay::decode(f.payload).expect("engines send valid relay messages");
            self.relay(from, msg);
        } else if dest == PeerId::BROADCAST {
            if from != PeerId::MASTER {
                self.queue.push_back((Dest::Master, frame.clone()));
            }
            let ids: Vec<u32> = self
                .parts
                .keys()
                .copied()
                .filter(|&i| PeerId(i) != from)
                .collect();
            for i in ids {
                self.queue.push_back((Dest::Participant(i), frame.clone()));
            }
        } else if dest == PeerId::MASTER {
            self.queue.push_back((Dest::Master, frame));
        } else {
            self.queue.push_back((Dest::Participant(dest.0), frame));
        }
    }

    fn relay_says(&mut self, to: Dest, msg: &FromRelay) {
        let dest = match to {
            Dest::Master => PeerId::MASTER,
            Dest::Participant(i) => PeerId(i),
        };
        let frame = plain_frame(
            FrameClass::Relay,
            SESSION,
            PeerId::RELAY,
            dest,
            &msg.encode(),
        )
        .expect("relay messages fit a frame");
        self.frames.push(frame.clone());
        self.queue.push_back((to, frame));
    }

    fn relay(&mut self, from: PeerId, msg: ToRelay) {
        match msg {
            ToRelay::CreateSession { session, .. } => {
                self.relay_says(Dest::Master, &FromRelay::SessionCreated { session });
            }
            ToRelay::Join { session } => {
                // The sender is not numbered yet: the relay knows it by connection.
                let id = self
                    .parts
                    .iter()
                    .find(|(_, p)| p.driver.session.peer() == PeerId::RELAY)
                    .map(|(&i, _)| i)
                    .expect("a joining participant");
                self.relay_says(Dest::Master, &FromRelay::PeerJoined { peer: PeerId(id) });
                let announce = self.announce();
                self.relay_says(
                    Dest::Participant(id),
                    &FromRelay::Joined {
                        session,
                        peer: PeerId(id),
                        announce,
                    },
                );
            }
            ToRelay::Remove { peer } => {
                let left = FromRelay::PeerLeft {
                    peer,
                    reason: LeaveReason::Removed,
                };
                self.relay_says(Dest::Master, &left);
                self.relay_says(Dest::Participant(peer.0), &left);
            }
            ToRelay::Leave if from == PeerId::MASTER => {
                let ids: Vec<u32> = self.parts.keys().copied().collect();
                for i in ids {
                    self.relay_says(
                        Dest::Participant(i),
                        &FromRelay::PeerLeft {
                            peer: PeerId::MASTER,
                            reason: LeaveReason::SessionEnded,
                        },
                    );
                }
            }
            ToRelay::Leave => {
                self.relay_says(
                    Dest::Master,
                    &FromRelay::PeerLeft {
                        peer: from,
                        reason: LeaveReason::Left,
                    },
                );
            }
            _ => {}
        }
    }

    /// Delivers queued frames until nothing moves.
    fn run(&mut self) {
        while let Some((to, frame)) = self.queue.pop_front() {
            match to {
                Dest::Master => self.master_do(op::FRAME, &frame),
                Dest::Participant(i) => self.part_do(i, op::FRAME, &frame),
            }
        }
    }

    /// Moves the clock on by `ticks` and runs everyone's timers.
    fn advance(&mut self, ticks: u64) {
        self.t += ticks;
        self.master_do(op::TICK, &[]);
        let ids: Vec<u32> = self.parts.keys().copied().collect();
        for i in ids {
            self.part_do(i, op::TICK, &[]);
        }
        self.run();
    }

    fn participant_records(&self) -> Vec<u8> {
        self.parts
            .get(&PARTICIPANT.0)
            .map(|p| p.records.clone())
            .unwrap_or_default()
    }
}

/// Replays recorded inputs the way the fuzz targets do, and checks that they
/// reach the state the simulation reached.
fn check_replay(sim: &Sim) {
    let mut m = MasterDriver::new();
    m.drain();
    for r in records(&sim.master_records) {
        m.step(r);
    }
    assert_eq!(
        m.session.epoch(),
        sim.master.session.epoch(),
        "master replay epoch"
    );
    assert_eq!(
        m.session.participants().collect::<Vec<_>>(),
        sim.master.session.participants().collect::<Vec<_>>(),
        "master replay members"
    );
    let recorded = &sim.parts[&PARTICIPANT.0];
    let mut p = ParticipantDriver::new();
    p.drain();
    for r in records(&recorded.records) {
        p.step(r);
    }
    let (a, b) = (&p.session, &recorded.driver.session);
    assert_eq!(
        (a.epoch(), a.is_member(), a.session_code(), a.rights()),
        (b.epoch(), b.is_member(), b.session_code(), b.rights()),
        "participant replay state"
    );
}

struct Seeds {
    root: PathBuf,
    written: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
        self.written += 1;
    }
}

fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(bytes);
    v
}

/// A frame sealed by hand under `BASE_KEY` with any generation and counter.
fn sealed_by_hand(generation: u8, ctr: u64, plaintext: &[u8]) -> Vec<u8> {
    let kid = KeyId {
        scope: KeyScope::Group { epoch: EPOCH },
        sender: SENDER,
        generation,
    }
    .to_kid();
    let key = SframeKey::derive(kid, &BASE_KEY);
    let sh = SframeHeader { kid, ctr };
    let mut shb = [0u8; MAX_SFRAME_HEADER_LEN];
    let slen = sh.encode(&mut shb);
    let header = RoutingHeader {
        class: FrameClass::Chat,
        session: SESSION,
        sender: SENDER,
        destination: PeerId::BROADCAST,
        payload_len: (slen + plaintext.len() + TAG_LEN) as u32,
    };
    let rh = header.encode();
    let mut body = plaintext.to_vec();
    let tag = key.seal_in_place(ctr, &rh, &mut body);
    let mut out = rh.to_vec();
    out.extend_from_slice(&shb[..slen]);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut seeds = Seeds { root, written: 0 };

    // ------------------------------------------------ the simulated session
    let mut sim = Sim::new();
    sim.join(
        PARTICIPANT.0,
        conclave_protocol_fuzz::PARTICIPANT_RNG,
        "Bob",
        "laptop",
    );
    assert!(
        !sim.master_records.is_empty() && !sim.participant_records().is_empty(),
        "the handshake produced records"
    );
    seeds.write("master", "handshake", &sim.master_records);
    seeds.write("participant", "handshake", &sim.participant_records());

    // The batched rekey after the join admits participant 2 (epoch 2).
    sim.advance(4);
    assert!(
        sim.parts[&PARTICIPANT.0].driver.session.is_member(),
        "participant 2 is admitted"
    );
    seeds.write("master", "admitted", &sim.master_records);
    seeds.write("participant", "admitted", &sim.participant_records());

    let p = PARTICIPANT.0;
    sim.part_do(p, op::CHAT, b"hello from Bob");
    sim.part_do(p, op::SEND_TO, &[FrameClass::File as u8, 1, 2, 3, 4]);
    sim.part_do(p, op::GROUP, &[FrameClass::Screen as u8, 9, 9, 9]);
    sim.run();
    sim.master_do(
        op::RIGHTS,
        &[p as u8, (Rights::PRESENTER.0 | Rights::FILE_TRANSFER.0)],
    );
    sim.master_do(op::CHAT, b"welcome, Bob");
    sim.master_do(op::SEND_TO, &[p as u8, FrameClass::Input as u8, 0x10, 0x20]);
    sim.master_do(op::SEND_TO, &[p as u8, FrameClass::Control as u8, 0x01]);
    sim.master_do(op::GROUP, &[FrameClass::Audio as u8, 7, 7, 7, 7]);
    sim.run();

    // A second participant: an immediate rekey to epoch 3 for both.
    sim.advance(4);
    sim.join(3, 5, "Carol", "desktop");
    assert!(
        sim.parts[&3].driver.session.is_member(),
        "participant 3 is admitted"
    );
    // Heartbeats at 5 s, answered.
    sim.advance(16);
    sim.part_do(p, op::CHAT, b"epoch 3");
    sim.master_do(op::GROUP, &[FrameClass::Video as u8, 1, 1]);
    sim.run();
    check_replay(&sim);
    seeds.write("master", "two-participants", &sim.master_records);
    seeds.write("participant", "epoch-3", &sim.participant_records());

    // Removal of participant 3: epoch 4 for participant 2 alone.
    sim.master_do(op::REMOVE, &[3]);
    sim.run();
    sim.master_do(op::LOCK, &[1]);
    sim.run();
    sim.advance(8);
    sim.master_do(op::REKEY, &[]);
    sim.run();
    sim.part_do(p, op::CHAT, b"still here");
    sim.run();
    seeds.write("master", "rekeyed", &sim.master_records);
    seeds.write("participant", "rekeyed", &sim.participant_records());
    assert!(
        sim.parts[&p].driver.session.epoch() >= Some(4),
        "participant 2 follows the rekeys"
    );

    // Participant 2 leaves; the master ends the session.
    sim.part_do(p, op::END, &[]);
    sim.run();
    sim.master_do(op::END, &[]);
    sim.run();
    check_replay(&sim);
    seeds.write("master", "full", &sim.master_records);
    seeds.write("participant", "full", &sim.participant_records());

    // A master-side session end seen by the participant, on a fresh transcript.
    let mut ended = Sim::new();
    ended.join(p, conclave_protocol_fuzz::PARTICIPANT_RNG, "Bob", "laptop");
    ended.advance(4);
    ended.master_do(op::END, &[]);
    ended.run();
    seeds.write("participant", "ended", &ended.participant_records());

    // ------------------------------------------------ frames and messages
    let mut n = 0;
    for f in &sim.frames {
        let Ok(frame) = FrameRef::parse(f) else {
            continue;
        };
        if f.len() <= 4096 {
            n += 1;
            seeds.write("frame", &format!("session-{n:03}"), f);
        }
        let selector = match (frame.header.class, frame.header.destination) {
            (FrameClass::Relay, PeerId::RELAY) => 0,
            (FrameClass::Relay, _) => 1,
            (FrameClass::Handshake, _) => 2,
            (FrameClass::Roster, _) => 4,
            _ => continue,
        };
        if frame.payload.len() < 4096 {
            seeds.write(
                "messages",
                &format!("session-{n:03}"),
                &with_selector(selector, frame.payload),
            );
        }
    }
    let mut sealer = FrameSealer::new(&BASE_KEY, KeyScope::Group { epoch: EPOCH }, SENDER);
    for (i, text) in [&b"first"[..], b"second", b""].into_iter().enumerate() {
        let mut buf = SealBuf::from_plaintext(text);
        sealer
            .seal(FrameClass::Chat, SESSION, PeerId::BROADCAST, &mut buf)
            .expect("seal");
        seeds.write("frame", &format!("sealed-{i}"), buf.frame());
    }
    seeds.write(
        "frame",
        "sealed-gen1",
        &sealed_by_hand(1, 0, b"next generation"),
    );
    seeds.write(
        "frame",
        "sealed-ctr1000",
        &sealed_by_hand(0, 1000, b"far counter"),
    );
    seeds.write(
        "frame",
        "sealed-gen3-ctr300",
        &sealed_by_hand(3, 300, b"both long"),
    );

    let master_identity = fixtures::identity(2);
    let grant = RightsGrant {
        session: SESSION,
        uuid: [0x11; 32],
        peer: PARTICIPANT,
        rights: Rights::ALL,
        sequence: 3,
    };
    let controls = [
        Control::Rights(master_identity.sign(&grant)),
        Control::Heartbeat { sequence: 7 },
        Control::HeartbeatAck { sequence: 7 },
        Control::Removed,
        Control::Denied(AbortReason::Denied),
        Control::Leave,
        Control::End,
        Control::App(BoundedBytes::new(b"remote-control consent".to_vec()).unwrap()),
    ];
    for (i, c) in controls.iter().enumerate() {
        seeds.write(
            "messages",
            &format!("control-{i}"),
            &with_selector(3, &c.encode()),
        );
    }
    let roster = Roster {
        session: SESSION,
        uuid: [0x11; 32],
        epoch: 2,
        previous: [0x22; 32],
        locked: true,
        members: BoundedVec::new(vec![
            RosterMember {
                peer: PeerId::MASTER,
                name: fixtures::s("Alice Agent"),
                host: fixtures::s(""),
                key: [0x33; 32],
                rights: Rights::ALL,
            },
            RosterMember {
                peer: PARTICIPANT,
                name: fixtures::s("Bob"),
                host: fixtures::s("laptop"),
                key: [0x44; 32],
                rights: Rights::PRESENTER,
            },
        ])
        .unwrap(),
    };
    seeds.write("messages", "roster", &with_selector(5, &roster.encode()));
    seeds.write(
        "messages",
        "rights-grant",
        &with_selector(6, &grant.encode()),
    );
    seeds.write(
        "messages",
        "announce",
        &with_selector(7, sim.announce().body()),
    );
    seeds.write(
        "messages",
        "rekey-empty",
        &with_selector(
            4,
            &Rekey {
                epoch: 9,
                wraps: BoundedVec::default(),
                roster: BoundedBytes::default(),
            }
            .encode(),
        ),
    );
    for (i, h) in [
        Handshake::Abort(AbortReason::Timeout),
        Handshake::Abort(AbortReason::PasswordRequired),
    ]
    .iter()
    .enumerate()
    {
        seeds.write(
            "messages",
            &format!("abort-{i}"),
            &with_selector(2, &h.encode()),
        );
    }

    // ------------------------------------------------ stage 1
    let portal = fixtures::identity(1);
    let master_hello = ToRelay::Hello(fixtures::master_hello(
        &portal,
        &master_identity,
        &CHANNEL_BINDING,
    ));
    let participant_hello = ToRelay::Hello(fixtures::participant_hello(&portal));
    let welcome = FromRelay::Welcome(Welcome {
        relay_version: Version::new(1, 4, 0),
        relay_name: fixtures::s("relay-1"),
    });
    let refused = FromRelay::Refused(Refusal::new(RefusalCode::VersionTooOld, "update Conclave"));
    for (name, bytes) in [
        ("master-hello", master_hello.encode()),
        ("participant-hello", participant_hello.encode()),
        ("welcome", welcome.encode()),
        ("refused", refused.encode()),
    ] {
        seeds.write("stage1", name, &bytes);
    }
    seeds.write(
        "messages",
        "master-hello",
        &with_selector(0, &master_hello.encode()),
    );
    seeds.write("messages", "welcome", &with_selector(1, &welcome.encode()));
    seeds.write("messages", "refused", &with_selector(1, &refused.encode()));
    // Shared files (R24): a request, a reply and an announcement.
    let part = BoundedBytes::new(vec![0x5a; 64]).unwrap();
    let put = ToRelay::Shared(SharedRequest::Put {
        blob: BlobId(7),
        index: 0,
        last: true,
        data: part.clone(),
    });
    let got = FromRelay::Shared(SharedReply::Part {
        blob: BlobId(7),
        index: 3,
        last: false,
        data: part,
    });
    let announced = AppMessage::SharedFile(SharedFileInfo {
        blob: BlobId(7),
        name: fixtures::s("slides.pdf"),
        size: 300_000,
        sha256: [0x33; 32],
        key: FileKey::generate(&mut fixtures::rng(7)),
        from: fixtures::s("Host"),
    });
    seeds.write("messages", "shared-put", &with_selector(0, &put.encode()));
    seeds.write("messages", "shared-part", &with_selector(1, &got.encode()));
    seeds.write(
        "messages",
        "shared-announced",
        &with_selector(8, &announced.encode()),
    );

    // ------------------------------------------------ artefacts
    let license = fixtures::license(&portal, master_identity.public_key(), 1_234_567_890);
    let build = fixtures::build(
        &portal,
        Role::Master,
        fixtures::VERSION,
        Some(license.clone()),
    );
    let revocations = RevocationList {
        serial: 3,
        issued_at: UnixTime(fixtures::NOW.0 - 60),
        revoked: BoundedVec::new(vec![
            LicenseNumber::new(1_234_567_891).unwrap(),
            LicenseNumber::new(2_000_000_000).unwrap(),
        ])
        .unwrap(),
    };
    let signed_revocations = portal.sign(&revocations);
    seeds.write("artefacts", "license", &with_selector(0, license.body()));
    seeds.write("artefacts", "build", &with_selector(1, build.body()));
    seeds.write(
        "artefacts",
        "revocations",
        &with_selector(2, &revocations.encode()),
    );
    seeds.write(
        "artefacts",
        "signed-license",
        &with_selector(3, &postcard::to_allocvec(&license).unwrap()),
    );
    seeds.write(
        "artefacts",
        "signed-build",
        &with_selector(4, &postcard::to_allocvec(&build).unwrap()),
    );
    seeds.write(
        "artefacts",
        "signed-revocations",
        &with_selector(5, &postcard::to_allocvec(&signed_revocations).unwrap()),
    );

    // Branded builds, both roles, around a small stand-in executable.
    let exe = b"\x7fELF stand-in executable".repeat(4);
    for role in [Role::Participant, Role::Master] {
        let is_master = role == Role::Master;
        let mut cfg = fixtures::build(
            &portal,
            role,
            fixtures::VERSION,
            is_master.then(|| license.clone()),
        )
        .verify(&[portal.public_key()])
        .unwrap();
        cfg.binary_sha256 = conclave_protocol::trailer::binary_hash(&exe);
        let t = conclave_protocol::trailer::BuildTrailer {
            config: portal.sign(&cfg),
            master_seed: is_master.then(|| *master_identity.to_seed()),
        };
        let file = conclave_protocol::trailer::brand(&exe, &t).unwrap();
        assert!(conclave_protocol::trailer::verify(&file, role, fixtures::NOW).is_ok());
        seeds.write(
            "trailer",
            if is_master { "master" } else { "participant" },
            &file,
        );
    }

    // ------------------------------------------------ recordings (R25)
    let recorder = || {
        RecordingWriter::new(
            Vec::new(),
            &master_identity,
            SESSION,
            "Alice Agent",
            fixtures::NOW,
        )
        .unwrap()
    };
    let mut w = recorder();
    w.note(0, "recording started").unwrap();
    w.screen(40, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9]).unwrap();
    w.chat(120, PARTICIPANT, "Bob", "hello from Bob").unwrap();
    w.checkpoint().unwrap();
    w.note(2_500, "Carol joined").unwrap();
    w.chat(2_600, PeerId::MASTER, "Alice Agent", "welcome")
        .unwrap();
    let crashed = w.get_ref().clone();
    let finished = w.finish().unwrap();
    assert!(recording::verify(&finished[..]).unwrap().finished);
    seeds.write("recording", "finished", &finished);
    seeds.write("recording", "crashed", &crashed);
    let mut w = recorder();
    for i in 0..70u64 {
        w.note(i * 10, "tick").unwrap();
    }
    seeds.write("recording", "auto-checkpoints", &w.finish().unwrap());
    seeds.write("recording", "empty", &recorder().finish().unwrap());

    // ------------------------------------------------ file transfer (R23)
    {
        use conclave_protocol::bounded::BoundedString;
        use conclave_protocol::files::{CancelReason, FileMessage, Offer, CHUNK};
        let chunk = |offset: u64, len: usize| FileMessage::Chunk {
            id: 3,
            offset,
            data: BoundedBytes::new(vec![0x5a; len]).unwrap(),
        };
        let files = [
            (
                "offer",
                FileMessage::Offer(Offer {
                    id: 3,
                    name: BoundedString::new("crash report (2).tar.gz").unwrap(),
                    size: 150_000,
                    sha256: [0x42; 32],
                }),
            ),
            (
                "accept-resume",
                FileMessage::Accept {
                    id: 3,
                    from_offset: 65_536,
                },
            ),
            ("decline", FileMessage::Decline { id: 3 }),
            ("chunk-small", chunk(131_072, 100)),
            ("chunk-empty", chunk(150_000, 0)),
            ("chunk-full", chunk(0, CHUNK)),
            ("received", FileMessage::Received { id: 3 }),
            (
                "cancel",
                FileMessage::Cancel {
                    id: 3,
                    reason: CancelReason::SourceUnreadable,
                },
            ),
            (
                "stop",
                FileMessage::Stop {
                    id: u32::MAX,
                    reason: CancelReason::Integrity,
                },
            ),
        ];
        for (name, msg) in files {
            seeds.write("files", name, &msg.encode());
        }
    }

    // ------------------------------------------------ the relay's audit log (R17)
    {
        use conclave_relay::audit::{AuditEvent, AuditLog, AuditRecord};
        let path = std::env::temp_dir().join(format!("conclave-audit-seed-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = AuditLog::open(&path).expect("audit log");
        for (i, event) in [
            AuditEvent::SessionCreated,
            AuditEvent::Joined,
            AuditEvent::Refused,
        ]
        .into_iter()
        .enumerate()
        {
            log.append(&AuditRecord {
                time: 1_800_000_000 + i as u64,
                event,
                login: "Acme Ltd".into(),
                license: "1234567890".into(),
                session: Some(123_456),
                participants: i as u32,
                client_version: "1.0.0".into(),
                os_user: "ann".into(),
                host: "laptop".into(),
                ip: "192.0.2.7".into(),
                text: if i == 2 {
                    "wrong password".into()
                } else {
                    String::new()
                },
            })
            .expect("audit record");
        }
        drop(log);
        let bytes = std::fs::read(&path).expect("audit log bytes");
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            AuditLog::verify(&bytes[..])
                .expect("seed log verifies")
                .records,
            3
        );
        seeds.write("audit", "three-records", &bytes);
    }

    eprintln!(
        "wrote {} seed files under {}",
        seeds.written,
        seeds.root.display()
    );
}
