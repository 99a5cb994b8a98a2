//! Workloads shared by the criterion benches (`benches/*.rs`) and the README
//! table (`src/bin/protocol_table.rs`), so that both measure exactly the same
//! code:
//!
//! - [`RingSeal`] / [`AesGcmSeal`]: AES-256-GCM sealing in place with ring and
//!   with RustCrypto's `aes-gcm`;
//! - [`BareAead`] / [`FramePath`]: one frame sealed and opened again, with bare
//!   ring AES-256-GCM and with Conclave's SFrame path;
//! - [`new_master`], [`join`], [`master_with_members`]: stage-2 joins driven in
//!   memory, with this module standing in for the relay.
//!
//! A workload that fails is a bug in the benchmark, so they panic.
#![allow(clippy::expect_used)]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes256Gcm;
use conclave_protocol::codec::Message;
use conclave_protocol::fixtures;
use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
use conclave_protocol::sframe::{FrameOpener, FrameSealer, KeyScope, SealBuf, SealedFrame};
use conclave_protocol::sign::PublicKey;
use conclave_protocol::stage1::{FromRelay, SessionKind};
use conclave_protocol::stage2::{MasterEvent, MasterSession, ParticipantSession, JOIN_BATCH_MS};
use conclave_protocol::time::Millis;
use rand_chacha::ChaCha20Rng;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// 1 KiB.
pub const KIB: usize = 1024;
/// 1 MiB.
pub const MIB: usize = 1024 * 1024;

/// A 96-bit nonce holding `ctr` big-endian in its last eight bytes.
fn nonce_bytes(ctr: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    for (b, c) in n.iter_mut().skip(4).zip(ctr.to_be_bytes()) {
        *b = c;
    }
    n
}

fn ring_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x11; 32]).expect("32-byte key"))
}

/// ring AES-256-GCM sealing a buffer in place (no AAD), a fresh nonce per call.
pub struct RingSeal {
    key: LessSafeKey,
    buf: Vec<u8>,
    ctr: u64,
}

impl RingSeal {
    /// A sealer over a `len`-byte buffer.
    pub fn new(len: usize) -> Self {
        RingSeal {
            key: ring_key(),
            buf: vec![0xA5; len],
            ctr: 0,
        }
    }

    /// Seals the buffer in place, returning the tag.
    pub fn seal(&mut self) -> ring::aead::Tag {
        self.ctr += 1;
        self.key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_bytes(self.ctr)),
                Aad::empty(),
                &mut self.buf,
            )
            .expect("ring seal")
    }
}

/// RustCrypto `aes-gcm` (`Aes256Gcm::encrypt_in_place_detached`) sealing a
/// buffer in place (no AAD), a fresh nonce per call.
pub struct AesGcmSeal {
    cipher: Aes256Gcm,
    buf: Vec<u8>,
    ctr: u64,
}

impl AesGcmSeal {
    /// A sealer over a `len`-byte buffer.
    pub fn new(len: usize) -> Self {
        AesGcmSeal {
            cipher: Aes256Gcm::new(&[0x11; 32].into()),
            buf: vec![0xA5; len],
            ctr: 0,
        }
    }

    /// Seals the buffer in place, returning the tag.
    pub fn seal(&mut self) -> aes_gcm::Tag {
        self.ctr += 1;
        self.cipher
            .encrypt_in_place_detached(&nonce_bytes(self.ctr).into(), b"", &mut self.buf)
            .expect("aes-gcm seal")
    }
}

/// The baseline for [`FramePath`]: ring AES-256-GCM `seal_in_place_separate_tag`
/// then `open_in_place` on the same buffer (payload followed by room for the
/// tag), no AAD.
pub struct BareAead {
    key: LessSafeKey,
    buf: Vec<u8>,
    len: usize,
    ctr: u64,
}

impl BareAead {
    /// A `len`-byte payload.
    pub fn new(len: usize) -> Self {
        BareAead {
            key: ring_key(),
            buf: vec![0xA5; len + ring::aead::MAX_TAG_LEN],
            len,
            ctr: 0,
        }
    }

    /// Seals the payload and opens it again, returning the plaintext length.
    pub fn seal_open(&mut self) -> usize {
        self.ctr += 1;
        let n = nonce_bytes(self.ctr);
        let (data, tag_slot) = self.buf.split_at_mut(self.len);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::empty(), data)
            .expect("ring seal");
        tag_slot.copy_from_slice(tag.as_ref());
        self.key
            .open_in_place(Nonce::assume_unique_for_key(n), Aad::empty(), &mut self.buf)
            .expect("ring open")
            .len()
    }
}

/// Conclave's frame path: [`FrameSealer::seal`] into a reused [`SealBuf`], then
/// [`SealedFrame::parse`] and [`FrameOpener::open_in_place`] on the sealed
/// frame, which restores the plaintext in the buffer for the next round.
pub struct FramePath {
    sealer: FrameSealer,
    opener: FrameOpener,
    buf: SealBuf,
}

impl FramePath {
    /// A `len`-byte payload under a group key of epoch 1, sent by the master.
    pub fn new(len: usize) -> Self {
        let base = [0x22; 32];
        let scope = KeyScope::Group { epoch: 1 };
        FramePath {
            sealer: FrameSealer::new(&base, scope, PeerId::MASTER),
            opener: FrameOpener::new(&base, scope, PeerId::MASTER),
            buf: SealBuf::from_plaintext(&vec![0xA5; len]),
        }
    }

    /// Seals the payload into a frame and opens it again, returning the
    /// plaintext length.
    pub fn seal_open(&mut self) -> usize {
        self.sealer
            .seal(
                FrameClass::Screen,
                SESSION,
                PeerId::BROADCAST,
                &mut self.buf,
            )
            .expect("seal");
        let sealed = SealedFrame::parse(self.buf.frame()).expect("parse");
        let opened = self
            .opener
            .open_in_place(&sealed, self.buf.frame_mut())
            .expect("open");
        opened.plaintext.len()
    }

    /// The plaintext as the buffer holds it now.
    pub fn plaintext(&self) -> &[u8] {
        self.buf.plaintext()
    }
}

/// The session every benchmark uses.
pub const SESSION: SessionId = SessionId(424_242);
/// The password of password-protected benchmark sessions.
pub const PASSWORD: &str = "Correct-horse-42";
/// When benchmark masters open their session (their first epoch starts then).
pub const CREATED: Millis = Millis(0);
/// A time at which an admission starts a new epoch at once, rather than
/// waiting for the join batch ([`JOIN_BATCH_MS`]) to close.
pub const JOIN_AT: Millis = Millis(JOIN_BATCH_MS);

/// The master engine as the benchmarks drive it.
pub type Master = MasterSession<ChaCha20Rng>;

/// The portal keys a participant trusts (the fixtures' portal, `identity(1)`).
pub fn portal_keys() -> Vec<PublicKey> {
    vec![fixtures::identity(1).public_key()]
}

/// A master whose session is open, with its `CreateSession` and events
/// discarded.
pub fn new_master(password: Option<&str>, seed: u64) -> Master {
    let portal = fixtures::identity(1);
    let config = fixtures::master_config(&portal, 10, SESSION, SessionKind::Meeting, password);
    let mut m = MasterSession::new(config, fixtures::rng(seed), CREATED);
    while m.poll_transmit().is_some() {}
    while m.poll_event().is_some() {}
    m
}

fn relay_frame(destination: PeerId, msg: &FromRelay) -> Vec<u8> {
    plain_frame(
        FrameClass::Relay,
        SESSION,
        PeerId::RELAY,
        destination,
        &msg.encode(),
    )
    .expect("relay frame")
}

fn destination(frame: &[u8]) -> PeerId {
    FrameRef::parse(frame).expect("frame").header.destination
}

/// Joins a participant as `peer` at `now`, standing in for the relay: tells
/// the master `PeerJoined` and the participant `Joined`, then carries frames
/// between the two until neither has anything left to send (frames for the
/// relay are dropped). Without a password the master admits the participant
/// when asked. Returns the participant: a member if its admission started a
/// new epoch at once (a session's first admission does, and so does any at
/// [`JOIN_AT`]; later ones at [`CREATED`] wait for the join batch to close).
pub fn join(
    master: &mut Master,
    peer: PeerId,
    password: Option<&str>,
    portal_keys: Vec<PublicKey>,
    rng: &mut ChaCha20Rng,
    now: Millis,
) -> ParticipantSession {
    let mut p = ParticipantSession::join(
        SESSION,
        password,
        fixtures::s("Bob Customer"),
        fixtures::s("laptop"),
        portal_keys,
        rng,
        now,
        fixtures::NOW,
    );
    let mut f = relay_frame(PeerId::MASTER, &FromRelay::PeerJoined { peer });
    master.handle_frame(now, &mut f).expect("PeerJoined");
    let joined = FromRelay::Joined {
        session: SESSION,
        peer,
        announce: master.announce().clone(),
    };
    let mut f = relay_frame(peer, &joined);
    p.handle_frame(now, &mut f).expect("Joined");
    loop {
        let mut moved = false;
        while let Some(mut f) = p.poll_transmit() {
            moved = true;
            if destination(&f) != PeerId::RELAY {
                master
                    .handle_frame(now, &mut f)
                    .expect("master handles frame");
            }
        }
        while let Some(mut f) = master.poll_transmit() {
            moved = true;
            let to = destination(&f);
            if to == peer || to == PeerId::BROADCAST {
                p.handle_frame(now, &mut f)
                    .expect("participant handles frame");
            }
        }
        while let Some(event) = master.poll_event() {
            if let MasterEvent::AdmissionRequested { peer: q, .. } = event {
                master.admit(q, now).expect("admit");
                moved = true;
            }
        }
        if !moved {
            return p;
        }
    }
}

/// A master with `n` participants (peers 2, 3, …) that joined without a
/// password and were admitted. All joins happen at [`CREATED`], so after the
/// first (whose admission starts an epoch at once) they are batched into an
/// epoch that is not started yet: the next [`MasterSession::rekey`] is the
/// first to wrap the epoch secret to all `n`.
pub fn master_with_members(n: u32) -> Master {
    let mut master = new_master(None, 7);
    let keys = portal_keys();
    let mut rng = fixtures::rng(8);
    for i in 0..n {
        let _ = join(
            &mut master,
            PeerId(2 + i),
            None,
            keys.clone(),
            &mut rng,
            CREATED,
        );
    }
    assert_eq!(
        master.participants().count(),
        n as usize,
        "every join admitted"
    );
    master
}

/// One rekey of `master` at `now`, with the broadcast `Rekey` frame drained
/// (and its events); returns the number of bytes sent.
pub fn rekey(master: &mut Master, now: Millis) -> usize {
    master.rekey(now);
    let mut sent = 0;
    while let Some(f) = master.poll_transmit() {
        sent += f.len();
    }
    while master.poll_event().is_some() {}
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_path_restores_the_plaintext() {
        let mut path = FramePath::new(KIB);
        for _ in 0..300 {
            assert_eq!(path.seal_open(), KIB);
        }
        assert!(path.plaintext().iter().all(|&b| b == 0xA5));
        let mut bare = BareAead::new(KIB);
        assert_eq!(bare.seal_open(), KIB);
    }

    #[test]
    fn joins_complete_with_and_without_password() {
        for password in [None, Some(PASSWORD)] {
            let mut master = new_master(password, 3);
            let p = join(
                &mut master,
                PeerId(2),
                password,
                portal_keys(),
                &mut fixtures::rng(4),
                JOIN_AT,
            );
            assert!(p.is_member(), "password {password:?}");
        }
    }

    #[test]
    fn rekey_reaches_every_member() {
        let mut master = master_with_members(5);
        let epoch = master.epoch();
        assert!(rekey(&mut master, JOIN_AT) > 0);
        assert_eq!(master.epoch(), epoch + 1);
    }
}
