//! The signed announce and the pairwise join handshake, as state structs that
//! are consumed by each step (so a step cannot be taken twice or out of order).
//!
//! Transcript hash (SHA-256):
//!
//! ```text
//! th = H("conclave/v1/join-transcript" ‖ 0x00 ‖ session(8, BE) ‖ announce digest(32)
//!        ‖ len(request)(4, BE) ‖ request ‖ len(pake_M)(4, BE) ‖ pake_M)
//! ```
//!
//! where `request` is the canonical encoding of the participant's
//! [`JoinRequest`] (its X25519 key, name, host and SPAKE2 message) and
//! `pake_M` the master's SPAKE2 message (empty without a password). Keys:
//! `prk = HKDF-SHA256-Extract(salt = th, X25519(E_M, E_P) ‖ spake2_key)`, then
//! `HKDF-Expand(prk, label, 32)` for the labels `conclave/v1/pairwise/m2p`,
//! `…/p2m`, `…/wrap`, `…/confirm-master` and `…/confirm-participant`. The
//! master signs `th` with `IK_M` (label `conclave/v1/join-response`) and sends
//! `HMAC-SHA256(confirm-master, th)`; the participant answers with
//! `HMAC-SHA256(confirm-participant, th)`. MACs are compared in constant time.

use core::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use super::Stage2Error;
use crate::artefact::License;
use crate::bounded::{BoundedBytes, BoundedString};
use crate::codec::Message;
use crate::frame::SessionId;
use crate::sign::{verify_raw, Artefact, PublicKey, Signature, Signed, SigningIdentity};
use crate::stage1::SessionKind;
use crate::time::UnixTime;

/// Length of a SPAKE2 message on the Ed25519 group.
pub const PAKE_MESSAGE_MAX: usize = 64;

/// The master's signed opening of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The session ID.
    pub session: SessionId,
    /// A fresh random value naming this session instance.
    pub uuid: [u8; 32],
    /// The master's ephemeral X25519 key for this session (E_M).
    pub master_ephemeral: [u8; 32],
    /// The master's license, signed by the portal; names IK_M.
    pub license: Signed<License>,
    /// The moderator's display name.
    pub moderator: BoundedString<64>,
    /// Support or meeting.
    pub kind: SessionKind,
    /// Whether joining needs the session password.
    pub password: bool,
    /// When the session was created.
    pub created_at: UnixTime,
}

impl Message for Announce {
    const NAME: &'static str = "announce";
    const MAX_SIZE: usize = 2048;
}
impl Artefact for Announce {
    const DOMAIN: &'static str = "announce";
}

/// Participant → master: the opening of a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The participant's ephemeral X25519 key (E_P).
    pub participant_ephemeral: [u8; 32],
    /// Display name.
    pub name: BoundedString<64>,
    /// Host name.
    pub host: BoundedString<64>,
    /// SPAKE2 message when the participant has a password.
    pub pake: Option<BoundedBytes<PAKE_MESSAGE_MAX>>,
}

/// Master → participant: the answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The master's SPAKE2 message when the session has a password.
    pub pake: Option<BoundedBytes<PAKE_MESSAGE_MAX>>,
    /// IK_M's signature over the transcript.
    pub signature: Signature,
    /// The master's key confirmation.
    pub confirm: [u8; 32],
}

/// Participant → master: key confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinConfirm {
    /// The participant's key confirmation.
    pub confirm: [u8; 32],
}

/// Why a join was broken off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    /// The password exchange or key confirmation failed.
    ConfirmationFailed,
    /// The session needs a password.
    PasswordRequired,
    /// The master refused admission.
    Denied,
    /// The join was malformed or out of order.
    Protocol,
    /// The join took too long.
    Timeout,
}

/// Messages of frame class Handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Participant → master.
    Request(JoinRequest),
    /// Master → participant.
    Response(JoinResponse),
    /// Participant → master.
    Confirm(JoinConfirm),
    /// Either way: the join is over.
    Abort(AbortReason),
}

impl Message for Handshake {
    const NAME: &'static str = "handshake message";
    const MAX_SIZE: usize = 512;
}

/// Eight digits both sides of a join (or all members of a session) show, to
/// be compared by voice.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SafetyCode(u32);

impl SafetyCode {
    fn from_hash(label: &[u8], input: &[u8]) -> Self {
        let d = Sha256::new()
            .chain_update(label)
            .chain_update(input)
            .finalize();
        let mut n = [0u8; 8];
        n.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
        SafetyCode((u64::from_be_bytes(n) % 100_000_000) as u32)
    }

    /// The session code for a roster digest.
    pub(crate) fn for_roster(digest: &[u8; 32]) -> Self {
        Self::from_hash(b"conclave/v1/session-code\0", digest)
    }
}

impl fmt::Display for SafetyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04} {:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

impl fmt::Debug for SafetyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyCode({self})")
    }
}

/// The keys one join agrees, zeroized on drop.
pub struct PairwiseKeys {
    /// Base key master → participant.
    pub m2p: Zeroizing<[u8; 32]>,
    /// Base key participant → master.
    pub p2m: Zeroizing<[u8; 32]>,
    /// Key that wraps epoch secrets for this participant.
    pub wrap: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for PairwiseKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairwiseKeys(..)")
    }
}

struct Schedule {
    keys: PairwiseKeys,
    confirm_master: Zeroizing<[u8; 32]>,
    confirm_participant: Zeroizing<[u8; 32]>,
}

fn schedule(th: &[u8; 32], dh: &[u8; 32], pake_key: Option<&[u8]>) -> Schedule {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(dh);
    ikm.extend_from_slice(pake_key.unwrap_or_default());
    let hk = hkdf::Hkdf::<Sha256>::new(Some(th), &ikm);
    let expand = |label: &str| {
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 8160.
        let _ = hk.expand(label.as_bytes(), out.as_mut());
        out
    };
    Schedule {
        keys: PairwiseKeys {
            m2p: expand("conclave/v1/pairwise/m2p"),
            p2m: expand("conclave/v1/pairwise/p2m"),
            wrap: expand("conclave/v1/pairwise/wrap"),
        },
        confirm_master: expand("conclave/v1/pairwise/confirm-master"),
        confirm_participant: expand("conclave/v1/pairwise/confirm-participant"),
    }
}

fn mac(key: &[u8; 32], th: &[u8; 32]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    m.update(th);
    m.finalize().into_bytes().into()
}

fn transcript(
    session: SessionId,
    announce_digest: &[u8; 32],
    request: &JoinRequest,
    pake_m: &[u8],
) -> [u8; 32] {
    let req = request.encode_body();
    let mut h = Sha256::new();
    h.update(b"conclave/v1/join-transcript\0");
    h.update(session.0.to_be_bytes());
    h.update(announce_digest);
    h.update((req.len() as u32).to_be_bytes());
    h.update(&req);
    h.update((pake_m.len() as u32).to_be_bytes());
    h.update(pake_m);
    h.finalize().into()
}

impl JoinRequest {
    fn encode_body(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }
}

fn pake_identities(session: SessionId) -> (Identity, Identity) {
    (
        Identity::new(format!("conclave/v1/participant/{}", session.0).as_bytes()),
        Identity::new(format!("conclave/v1/master/{}", session.0).as_bytes()),
    )
}

fn safety_code(th: &[u8; 32]) -> SafetyCode {
    SafetyCode::from_hash(b"conclave/v1/join-code\0", th)
}

/// What a completed join gives either side.
#[derive(Debug)]
pub struct JoinOutcome {
    /// The pairwise keys.
    pub keys: PairwiseKeys,
    /// The join's safety code.
    pub safety_code: SafetyCode,
    /// Whether the password was verified (PAKE used).
    pub password_verified: bool,
}

// ---------------------------------------------------------------- participant

/// Participant: request sent, waiting for the announce (from the relay).
pub struct AwaitingAnnounce {
    session: SessionId,
    secret: StaticSecret,
    request: JoinRequest,
    pake: Option<Spake2<Ed25519Group>>,
}

impl fmt::Debug for AwaitingAnnounce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitingAnnounce")
            .field("session", &self.session)
            .finish()
    }
}

/// Participant: announce verified, waiting for the master's response.
pub struct AwaitingResponse {
    inner: AwaitingAnnounce,
    announce: Announce,
    announce_digest: [u8; 32],
    master_key: PublicKey,
}

impl fmt::Debug for AwaitingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitingResponse")
            .field("session", &self.inner.session)
            .finish()
    }
}

impl AwaitingAnnounce {
    /// Starts a join of `session`: the state and the request to send.
    pub fn start(
        session: SessionId,
        password: Option<&[u8]>,
        name: BoundedString<64>,
        host: BoundedString<64>,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> (Self, JoinRequest) {
        let secret = StaticSecret::random_from_rng(&mut *rng);
        let (pake, pake_msg) = match password {
            Some(pw) => {
                let (id_p, id_m) = pake_identities(session);
                let (state, msg) = Spake2::<Ed25519Group>::start_a_with_rng(
                    &Password::new(pw),
                    &id_p,
                    &id_m,
                    &mut *rng,
                );
                (Some(state), BoundedBytes::new(msg).ok())
            }
            None => (None, None),
        };
        let request = JoinRequest {
            participant_ephemeral: XPublic::from(&secret).to_bytes(),
            name,
            host,
            pake: pake_msg,
        };
        (
            AwaitingAnnounce {
                session,
                secret,
                request: request.clone(),
                pake,
            },
            request,
        )
    }

    /// This participant's ephemeral public key.
    pub fn own_key(&self) -> [u8; 32] {
        self.request.participant_ephemeral
    }

    /// Verifies the announce: license against the portal keys and `now`, the
    /// announce against the license's key, the session ID, the password need.
    pub fn receive_announce(
        self,
        signed: &Signed<Announce>,
        portal_keys: &[PublicKey],
        now: UnixTime,
    ) -> Result<AwaitingResponse, Stage2Error> {
        let announce = verify_announce(signed, portal_keys, now)?;
        if announce.session != self.session {
            return Err(Stage2Error::WrongSession {
                expected: self.session.0,
                got: announce.session.0,
            });
        }
        if announce.password && self.pake.is_none() {
            return Err(Stage2Error::PasswordRequired);
        }
        let master_key = announce_license(&announce)?.master_key;
        Ok(AwaitingResponse {
            announce_digest: signed.digest(),
            announce,
            master_key,
            inner: self,
        })
    }
}

/// Verifies a signed announce against the portal keys at `now`.
pub fn verify_announce(
    signed: &Signed<Announce>,
    portal_keys: &[PublicKey],
    now: UnixTime,
) -> Result<Announce, Stage2Error> {
    // The announce names its license; verify the license first, then the
    // announce with the key the license binds.
    let unverified = Announce::decode(signed.body())?;
    let license = unverified.license.verify(portal_keys)?;
    if !license.is_current(now) {
        return Err(Stage2Error::LicenseExpired);
    }
    Ok(signed.verify_with(&license.master_key)?)
}

fn announce_license(a: &Announce) -> Result<License, Stage2Error> {
    Ok(License::decode(a.license.body())?)
}

impl AwaitingResponse {
    /// The verified announce.
    pub fn announce(&self) -> &Announce {
        &self.announce
    }

    /// Checks the master's response; returns the join outcome and the
    /// confirmation to send.
    pub fn receive_response(
        self,
        response: &JoinResponse,
    ) -> Result<(JoinOutcome, JoinConfirm), Stage2Error> {
        let AwaitingResponse {
            inner,
            announce,
            announce_digest,
            master_key,
        } = self;
        let pake_m: &[u8] = match (&announce.password, &response.pake) {
            (true, Some(m)) => m,
            (false, None) => &[],
            _ => return Err(Stage2Error::Confirmation),
        };
        let th = transcript(inner.session, &announce_digest, &inner.request, pake_m);
        verify_raw(&master_key, "join-response", &th, &response.signature)
            .map_err(|_| Stage2Error::Confirmation)?;
        let dh = inner
            .secret
            .diffie_hellman(&XPublic::from(announce.master_ephemeral));
        if !dh.was_contributory() {
            return Err(Stage2Error::Confirmation);
        }
        let pake_key = match (announce.password, inner.pake) {
            (true, Some(state)) => Some(Zeroizing::new(
                state
                    .finish(pake_m)
                    .map_err(|e| Stage2Error::Pake(format!("{e:?}")))?,
            )),
            _ => None,
        };
        let s = schedule(
            &th,
            dh.as_bytes(),
            pake_key.as_deref().map(|v| v.as_slice()),
        );
        let expected = mac(&s.confirm_master, &th);
        if !bool::from(expected.ct_eq(&response.confirm)) {
            return Err(Stage2Error::Confirmation);
        }
        let confirm = JoinConfirm {
            confirm: mac(&s.confirm_participant, &th),
        };
        Ok((
            JoinOutcome {
                keys: s.keys,
                safety_code: safety_code(&th),
                password_verified: announce.password,
            },
            confirm,
        ))
    }
}

// --------------------------------------------------------------------- master

/// What the master holds for the whole session to answer joins.
pub struct MasterSecrets {
    /// The session ID.
    pub session: SessionId,
    /// Digest of the signed announce.
    pub announce_digest: [u8; 32],
    /// E_M's secret half.
    pub ephemeral: StaticSecret,
    /// IK_M.
    pub identity: SigningIdentity,
    /// The session password, if any.
    pub password: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for MasterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterSecrets")
            .field("session", &self.session)
            .finish()
    }
}

/// Master: response sent, waiting for the participant's confirmation.
pub struct AwaitingConfirm {
    th: [u8; 32],
    schedule: Schedule,
    password_verified: bool,
    request: JoinRequest,
}

impl fmt::Debug for AwaitingConfirm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwaitingConfirm")
    }
}

impl AwaitingConfirm {
    /// Answers a join request.
    pub fn respond(
        secrets: &MasterSecrets,
        request: &JoinRequest,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(Self, JoinResponse), Stage2Error> {
        let (pake_key, pake_msg) = match (&secrets.password, &request.pake) {
            (Some(pw), Some(their)) => {
                let (id_p, id_m) = pake_identities(secrets.session);
                let (state, msg) = Spake2::<Ed25519Group>::start_b_with_rng(
                    &Password::new(pw),
                    &id_p,
                    &id_m,
                    &mut *rng,
                );
                let key = state
                    .finish(their)
                    .map_err(|e| Stage2Error::Pake(format!("{e:?}")))?;
                (Some(Zeroizing::new(key)), Some(msg))
            }
            (Some(_), None) => return Err(Stage2Error::PasswordRequired),
            (None, _) => (None, None),
        };
        let pake_m = pake_msg.clone().unwrap_or_default();
        let th = transcript(secrets.session, &secrets.announce_digest, request, &pake_m);
        let dh = secrets
            .ephemeral
            .diffie_hellman(&XPublic::from(request.participant_ephemeral));
        if !dh.was_contributory() {
            return Err(Stage2Error::Confirmation);
        }
        let schedule = schedule(
            &th,
            dh.as_bytes(),
            pake_key.as_deref().map(|v| v.as_slice()),
        );
        let response = JoinResponse {
            pake: match pake_msg {
                Some(m) => {
                    Some(BoundedBytes::new(m).map_err(|e| Stage2Error::Pake(e.to_string()))?)
                }
                None => None,
            },
            signature: secrets.identity.sign_raw("join-response", &th),
            confirm: mac(&schedule.confirm_master, &th),
        };
        Ok((
            AwaitingConfirm {
                th,
                schedule,
                password_verified: secrets.password.is_some(),
                request: request.clone(),
            },
            response,
        ))
    }

    /// The request this join answers.
    pub fn request(&self) -> &JoinRequest {
        &self.request
    }

    /// Checks the participant's confirmation.
    pub fn receive_confirm(self, confirm: &JoinConfirm) -> Result<JoinOutcome, Stage2Error> {
        let expected = mac(&self.schedule.confirm_participant, &self.th);
        if !bool::from(expected.ct_eq(&confirm.confirm)) {
            return Err(Stage2Error::Confirmation);
        }
        Ok(JoinOutcome {
            keys: self.schedule.keys,
            safety_code: safety_code(&self.th),
            password_verified: self.password_verified,
        })
    }
}
