//! Epochs: the group secret, its per-sender frame keys, the key wraps that
//! carry it to each member, and the signed, hash-chained roster.
//!
//! A [`Rekey`] (frame class Roster, sent by the master to everyone) holds
//!
//! - one [`KeyWrap`] per member: the epoch secret sealed with AES-256-GCM under
//!   the member's pairwise wrap key, nonce = epoch number (4 bytes BE, left
//!   padded with zeros), AAD = `"conclave/v1/wrap" ‖ session ‖ uuid ‖ epoch ‖ peer`;
//! - the roster, `Signed<Roster>` by IK_M, sealed with AES-256-GCM under
//!   `HKDF-SHA256(epoch secret, "conclave/v1/roster-key")`, nonce zero (one
//!   message per key), AAD = `"conclave/v1/roster" ‖ session ‖ uuid ‖ epoch`.
//!
//! A member accepts a rekey only for a newer epoch, only when the roster's
//! `previous` digest is that of the roster it holds, and only when the roster
//! lists it with its own key. Per-sender frame keys are
//! `HKDF-SHA256(epoch secret, "conclave/v1/sender-key" ‖ epoch ‖ sender)`.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::control::Rights;
use super::{Stage2Error, MAX_MEMBERS};
use crate::bounded::{BoundedBytes, BoundedString, BoundedVec};
use crate::codec::Message;
use crate::frame::{PeerId, SessionId};
use crate::sign::{Artefact, Signed};

/// A member as the roster lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterMember {
    /// Relay-assigned ID.
    pub peer: PeerId,
    /// Display name.
    pub name: BoundedString<64>,
    /// Host name.
    pub host: BoundedString<64>,
    /// The member's ephemeral key from its join (the master's: E_M).
    pub key: [u8; 32],
    /// What the member may do.
    pub rights: Rights,
}

/// Who is in the session in one epoch, signed by IK_M.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// The session.
    pub session: SessionId,
    /// The session instance.
    pub uuid: [u8; 32],
    /// The epoch this roster opens.
    pub epoch: u32,
    /// Digest of the previous signed roster (zeros for the first).
    pub previous: [u8; 32],
    /// Whether the session is locked.
    pub locked: bool,
    /// The members, master first.
    pub members: BoundedVec<RosterMember, MAX_MEMBERS>,
}

impl Message for Roster {
    const NAME: &'static str = "roster";
    const MAX_SIZE: usize = 400 * 1024;
}
impl Artefact for Roster {
    const DOMAIN: &'static str = "roster";
}

/// The epoch secret sealed for one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    /// The member.
    pub peer: PeerId,
    /// AES-256-GCM of the 32-byte secret, with tag.
    pub sealed: BoundedBytes<48>,
}

/// A new epoch: key wraps and the sealed roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekey {
    /// The new epoch.
    pub epoch: u32,
    /// One wrap per member other than the master.
    pub wraps: BoundedVec<KeyWrap, MAX_MEMBERS>,
    /// The sealed `Signed<Roster>`.
    pub roster: BoundedBytes<{ 400 * 1024 + 256 }>,
}

impl Message for Rekey {
    const NAME: &'static str = "rekey";
    const MAX_SIZE: usize = crate::frame::MAX_PAYLOAD;
}

/// An epoch's secret, zeroized on drop.
pub struct EpochSecret(Zeroizing<[u8; 32]>);

impl core::fmt::Debug for EpochSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EpochSecret(..)")
    }
}

impl EpochSecret {
    /// A fresh secret.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        let mut s = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(s.as_mut());
        EpochSecret(s)
    }

    fn expand(&self, info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let hk = hkdf::Hkdf::<Sha256>::new(None, self.0.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit.
        let _ = hk.expand_multi_info(info, out.as_mut());
        out
    }

    /// The frame base key of `sender` in `epoch`.
    pub fn sender_key(&self, epoch: u32, sender: PeerId) -> Zeroizing<[u8; 32]> {
        self.expand(&[
            b"conclave/v1/sender-key",
            &epoch.to_be_bytes(),
            &sender.0.to_be_bytes(),
        ])
    }

    fn roster_key(&self) -> Zeroizing<[u8; 32]> {
        self.expand(&[b"conclave/v1/roster-key"])
    }
}

#[allow(clippy::expect_used)]
fn aead(key: &[u8; 32]) -> LessSafeKey {
    // ring refuses only keys of the wrong length; these are 32 bytes by type.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

fn context(label: &[u8], session: SessionId, uuid: &[u8; 32], epoch: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + 48);
    aad.extend_from_slice(label);
    aad.extend_from_slice(&session.0.to_be_bytes());
    aad.extend_from_slice(uuid);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

fn epoch_nonce(epoch: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&epoch.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Identifies the session instance an epoch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionContext {
    /// The session ID.
    pub session: SessionId,
    /// The session uuid from the announce.
    pub uuid: [u8; 32],
}

impl SessionContext {
    /// Wraps `secret` for `peer` under its pairwise wrap key.
    pub fn wrap(
        &self,
        wrap_key: &[u8; 32],
        epoch: u32,
        peer: PeerId,
        secret: &EpochSecret,
    ) -> KeyWrap {
        let mut aad = context(b"conclave/v1/wrap", self.session, &self.uuid, epoch);
        aad.extend_from_slice(&peer.0.to_be_bytes());
        let mut buf = secret.0.to_vec();
        let sealed = match aead(wrap_key).seal_in_place_separate_tag(
            epoch_nonce(epoch),
            Aad::from(&aad),
            &mut buf,
        ) {
            Ok(tag) => {
                buf.extend_from_slice(tag.as_ref());
                buf
            }
            // Only inputs beyond GCM's size limit fail; this is 32 bytes.
            Err(_) => Vec::new(),
        };
        KeyWrap {
            peer,
            sealed: BoundedBytes::new(sealed).unwrap_or_default(),
        }
    }

    /// Opens a wrap addressed to `peer`.
    pub fn unwrap(
        &self,
        wrap_key: &[u8; 32],
        epoch: u32,
        wrap: &KeyWrap,
    ) -> Result<EpochSecret, Stage2Error> {
        let mut aad = context(b"conclave/v1/wrap", self.session, &self.uuid, epoch);
        aad.extend_from_slice(&wrap.peer.0.to_be_bytes());
        let mut buf = Zeroizing::new(wrap.sealed.to_vec());
        let plain = aead(wrap_key)
            .open_in_place(epoch_nonce(epoch), Aad::from(&aad), &mut buf)
            .map_err(|_| Stage2Error::WrapInvalid)?;
        let secret: [u8; 32] = (&*plain).try_into().map_err(|_| Stage2Error::WrapInvalid)?;
        Ok(EpochSecret(Zeroizing::new(secret)))
    }

    /// Seals a signed roster under the epoch's roster key.
    pub fn seal_roster(
        &self,
        secret: &EpochSecret,
        epoch: u32,
        roster: &Signed<Roster>,
    ) -> Vec<u8> {
        let aad = context(b"conclave/v1/roster", self.session, &self.uuid, epoch);
        let mut buf = crate::codec::encode(roster);
        match aead(&secret.roster_key()).seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(&aad),
            &mut buf,
        ) {
            Ok(tag) => {
                buf.extend_from_slice(tag.as_ref());
                buf
            }
            Err(_) => Vec::new(),
        }
    }

    /// Opens a sealed roster.
    pub fn open_roster(
        &self,
        secret: &EpochSecret,
        epoch: u32,
        sealed: &[u8],
    ) -> Result<Signed<Roster>, Stage2Error> {
        let aad = context(b"conclave/v1/roster", self.session, &self.uuid, epoch);
        let mut buf = sealed.to_vec();
        let plain = aead(&secret.roster_key())
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&aad),
                &mut buf,
            )
            .map_err(|_| Stage2Error::WrapInvalid)?;
        Ok(SignedRoster::decode(plain)?.0)
    }
}

/// `Signed<Roster>` as a standalone message, for decoding the sealed roster.
#[derive(Serialize, Deserialize)]
struct SignedRoster(Signed<Roster>);

impl Message for SignedRoster {
    const NAME: &'static str = "signed roster";
    const MAX_SIZE: usize = 400 * 1024 + 128;
}
