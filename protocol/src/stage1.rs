//! Stage 1: a client and the relay, inside the pinned TLS 1.3 or QUIC channel.
//!
//! The transport (outside this crate) authenticates the relay: the client
//! accepts only a certificate carrying the relay key pinned in its baked relay
//! list, and the channel uses AES-256-GCM. Inside it:
//!
//! ```text
//! client                                   relay
//!   | -- ToRelay::Hello ---------------------> |  check_hello(): build signature, role,
//!   |                                          |  version, license, revocation, proof
//!   | <------------- FromRelay::Welcome ------ |  or FromRelay::Refused { code, message }
//!   | -- ToRelay::CreateSession / Join ------> |  (may be sent right after Hello:
//!   |                                          |   the relay handles messages in order)
//! ```
//!
//! A master proves that it holds the key its license names by signing the
//! channel binding (a TLS exporter value both ends compute) under the label
//! `conclave/v1/hello-proof`; a copied license is useless without that key.
//! A participant's build config is checked too, but since it is inside every
//! copy of the public participant binary it proves only which portal built it.
//!
//! All messages here travel in frames of class [`crate::frame::FrameClass::Relay`]
//! with the relay ([`crate::frame::PeerId::RELAY`]) as destination or sender.

use serde::{Deserialize, Serialize};

use crate::artefact::{BuildConfig, License, RevocationList, Role, Version};
use crate::bounded::BoundedString;
use crate::codec::{DecodeError, Message};
use crate::frame::{PeerId, SessionId};
use crate::shared::{SharedReply, SharedRequest};
use crate::sign::{verify_raw, PublicKey, Signature, SignatureError, Signed};
use crate::stage2::Announce;
use crate::time::UnixTime;

/// ALPN protocol name on QUIC and TLS.
pub const ALPN: &[u8] = b"conclave/1";
/// TLS exporter label of the channel binding (32 bytes, empty context) that a
/// master's proof of possession signs.
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-conclave/v1/channel-binding";

/// Domain label of a master's proof of possession.
pub const HELLO_PROOF_DOMAIN: &str = "hello-proof";

/// The client's opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Master or participant.
    pub role: Role,
    /// The signed config baked into the client's binary.
    pub build: Signed<BuildConfig>,
    /// For a master: a signature by its license's key over the channel binding.
    pub proof: Option<Signature>,
    /// The operating-system user, for the audit log (R17).
    pub os_user: BoundedString<64>,
    /// The host name, for the audit log (R17).
    pub host: BoundedString<64>,
}

/// What kind of session a master opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionKind {
    /// 1:1 remote support; autolocks when policy says so.
    Support,
    /// A meeting with many participants.
    Meeting,
}

/// Messages from a client to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToRelay {
    /// Stage-1 opening.
    Hello(Hello),
    /// (Master) open a session under this ID with this signed announce.
    CreateSession {
        /// The ID the master drew.
        session: SessionId,
        /// Support or meeting.
        kind: SessionKind,
        /// Handed to every joining participant.
        announce: Signed<Announce>,
    },
    /// (Participant) join a session by ID.
    Join {
        /// The ID the participant typed.
        session: SessionId,
    },
    /// (Participant) return to a session under the ID it had, after the
    /// relay that carried it was lost (R18). The relay cannot check the claim;
    /// the end-to-end keys do (see [`crate::stage2`], failover).
    Rejoin {
        /// The session.
        session: SessionId,
        /// The participant's ID in it.
        peer: PeerId,
    },
    /// (Master) a participant failed key confirmation: count it against its source (R12).
    JoinFailed {
        /// The participant.
        peer: PeerId,
    },
    /// (Master) disconnect a participant.
    Remove {
        /// The participant.
        peer: PeerId,
    },
    /// (Master) lock or unlock the session (R26).
    SetLock {
        /// Locked: no further joins.
        locked: bool,
    },
    /// Leave the session (a master's leaving ends it).
    Leave,
    /// Keeps the connection alive and measures the round trip.
    Ping {
        /// Echoed in the Pong.
        nonce: u64,
    },
    /// (A member) store, fetch or delete a shared file (R24).
    Shared(SharedRequest),
}

impl Message for ToRelay {
    const NAME: &'static str = "message to the relay";
    const MAX_SIZE: usize = 192 * 1024;
}

/// Why a peer is no longer in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaveReason {
    /// It left.
    Left,
    /// The master removed it.
    Removed,
    /// Its connection was lost or timed out.
    ConnectionLost,
    /// The session ended.
    SessionEnded,
}

/// Messages from the relay to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromRelay {
    /// Stage 1 succeeded.
    Welcome(Welcome),
    /// A request was refused.
    Refused(Refusal),
    /// (Master) the session is open; the master is [`PeerId::MASTER`].
    SessionCreated {
        /// The session.
        session: SessionId,
    },
    /// (Participant) joined at the relay; stage 2 with the master can begin.
    Joined {
        /// The session.
        session: SessionId,
        /// The ID the relay gave this participant.
        peer: PeerId,
        /// The master's signed announce.
        announce: Signed<Announce>,
    },
    /// (Master) a participant arrived and waits for stage 2.
    PeerJoined {
        /// Its ID.
        peer: PeerId,
    },
    /// (Master) a participant came back under its earlier ID (failover).
    PeerRejoined {
        /// Its ID.
        peer: PeerId,
    },
    /// A peer is gone.
    PeerLeft {
        /// Its ID.
        peer: PeerId,
        /// Why.
        reason: LeaveReason,
    },
    /// Answer to a Ping, with the relay's load for relay choice (R18).
    Pong {
        /// The Ping's nonce.
        nonce: u64,
        /// Connected peers as a share of the relay's capacity, in thousandths.
        load_permille: u16,
    },
    /// A frame was dropped because the session's policy forbids its class (R13).
    Dropped {
        /// The class dropped.
        class: crate::frame::FrameClass,
        /// For people: why.
        message: BoundedString<256>,
    },
    /// The answer to a [`ToRelay::Shared`] request (R24).
    Shared(SharedReply),
}

impl Message for FromRelay {
    const NAME: &'static str = "message from the relay";
    const MAX_SIZE: usize = 192 * 1024;
}

/// The relay's acceptance of a Hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The relay's version.
    pub relay_version: Version,
    /// The relay's name, for notices.
    pub relay_name: BoundedString<64>,
}

/// Why the relay refused, as a code for programs and a message for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefusalCode {
    /// The build config is signed by a key this relay does not trust.
    BuildNotTrusted,
    /// The build config's signature does not verify.
    BuildTampered,
    /// The Hello's role differs from the build's.
    WrongRole,
    /// The client is older than policy allows (R9).
    VersionTooOld,
    /// A master without a license.
    LicenseMissing,
    /// The license does not verify.
    LicenseInvalid,
    /// The license has expired or is not yet valid.
    LicenseExpired,
    /// The license has been revoked.
    LicenseRevoked,
    /// A master that cannot prove it holds its license's key.
    ProofInvalid,
    /// A request arrived before a successful Hello.
    HelloRequired,
    /// No session has this ID.
    SessionNotFound,
    /// The session is locked (R26).
    SessionLocked,
    /// The session has its maximum of participants.
    SessionFull,
    /// The ID is in use; draw another.
    SessionIdTaken,
    /// Too many failed attempts: wait before trying again (R12).
    RetryLater,
    /// Policy forbids this.
    PolicyForbids,
    /// The message could not be decoded.
    Malformed,
    /// The relay is shutting down.
    ShuttingDown,
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// For programs.
    pub code: RefusalCode,
    /// For people: says what to do.
    pub message: BoundedString<512>,
    /// When non-zero, how long to wait before trying again.
    pub retry_after_ms: u64,
}

impl Refusal {
    /// A refusal with `message` (cut to 512 bytes at a character boundary).
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        let mut m: String = message.into();
        let cut = crate::bounded::prefix(&m, 512).len();
        m.truncate(cut);
        Refusal {
            code,
            message: BoundedString::new(m).unwrap_or_default(),
            retry_after_ms: 0,
        }
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the relay enforces in stage 1, from its configuration.
#[derive(Debug, Clone)]
pub struct AdmissionPolicy {
    /// Portal keys whose builds and licenses are accepted.
    pub portal_keys: Vec<PublicKey>,
    /// The oldest client version accepted, whatever the build's profile says.
    pub min_version: Version,
}

/// A client the relay admitted, with what it learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Master or participant.
    pub role: Role,
    /// The verified build config.
    pub build: BuildConfig,
    /// For a master: its verified license.
    pub license: Option<License>,
}

/// The relay's stage-1 check of a Hello. `channel_binding` is the TLS
/// exporter value of this connection; `now` is wall-clock time.
pub fn check_hello(
    hello: &Hello,
    policy: &AdmissionPolicy,
    revocations: &RevocationList,
    channel_binding: &[u8; 32],
    now: UnixTime,
) -> Result<Admitted, Refusal> {
    use RefusalCode as C;
    let build = hello.build.verify(&policy.portal_keys).map_err(|e| match e {
        SignatureError::UnknownSigner(f) => Refusal::new(
            C::BuildNotTrusted,
            format!("this app was built by a portal (key {f}) that this relay does not trust: get the app from your organisation's portal"),
        ),
        _ => Refusal::new(
            C::BuildTampered,
            "this app's build configuration fails its signature check: the copy is damaged or was altered; download it again",
        ),
    })?;
    if build.role != hello.role {
        return Err(Refusal::new(
            C::WrongRole,
            format!(
                "this is a {} build but it connected as a {}",
                build.role, hello.role
            ),
        ));
    }
    let required = policy.min_version.max(build.profile.min_client_version);
    if build.version < required {
        return Err(Refusal::new(
            C::VersionTooOld,
            format!(
                "this app is version {}; the relay requires {required} or later: update Conclave",
                build.version
            ),
        ));
    }
    let license = match hello.role {
        Role::Participant => None,
        Role::Master => Some(check_license(
            hello,
            &build,
            policy,
            revocations,
            channel_binding,
            now,
        )?),
    };
    Ok(Admitted {
        role: hello.role,
        build,
        license,
    })
}

fn check_license(
    hello: &Hello,
    build: &BuildConfig,
    policy: &AdmissionPolicy,
    revocations: &RevocationList,
    channel_binding: &[u8; 32],
    now: UnixTime,
) -> Result<License, Refusal> {
    use RefusalCode as C;
    let signed = build.license.as_ref().ok_or_else(|| {
        Refusal::new(
            C::LicenseMissing,
            "this master app carries no license: ask your administrator for a licensed build",
        )
    })?;
    let license = signed.verify(&policy.portal_keys).map_err(|_| {
        Refusal::new(
            C::LicenseInvalid,
            "the license in this app does not verify against this relay's portal key: ask your administrator for a new build",
        )
    })?;
    if !license.is_current(now) {
        return Err(Refusal::new(
            C::LicenseExpired,
            format!(
                "license {} is not valid at this time (it expires at {} Unix time): ask your administrator to renew it",
                license.number, license.expires_at.0
            ),
        ));
    }
    if revocations.is_revoked(license.number) {
        return Err(Refusal::new(
            C::LicenseRevoked,
            format!(
                "license {} has been revoked: contact your administrator",
                license.number
            ),
        ));
    }
    let proof = hello.proof.as_ref().ok_or_else(|| {
        Refusal::new(
            C::ProofInvalid,
            "the master did not prove it holds its license key",
        )
    })?;
    verify_raw(&license.master_key, HELLO_PROOF_DOMAIN, channel_binding, proof).map_err(|_| {
        Refusal::new(
            C::ProofInvalid,
            "the master's proof of its license key does not verify: the license was copied from another installation",
        )
    })?;
    Ok(license)
}

/// Why stage 1 failed on the client's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stage1Error {
    /// The relay refused; the message says what to do.
    #[error("the relay refused: {0}")]
    Refused(Refusal),
    /// The relay's answer does not decode.
    #[error("the relay's answer is malformed: {0}")]
    Decode(#[from] DecodeError),
    /// The relay answered something other than Welcome or Refused.
    #[error("the relay answered out of turn")]
    Unexpected,
}

/// Client side, before Welcome: holds nothing but the wait.
#[derive(Debug)]
pub struct AwaitingWelcome(());

/// Client side, after Welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// What the relay said.
    pub welcome: Welcome,
}

impl AwaitingWelcome {
    /// Starts stage 1: returns the state and the encoded Hello to send.
    pub fn start(hello: Hello) -> (Self, Vec<u8>) {
        (AwaitingWelcome(()), ToRelay::Hello(hello).encode())
    }

    /// Handles the relay's first answer.
    pub fn receive(self, bytes: &[u8]) -> Result<Established, Stage1Error> {
        match FromRelay::decode(bytes)? {
            FromRelay::Welcome(welcome) => Ok(Established { welcome }),
            FromRelay::Refused(r) => Err(Stage1Error::Refused(r)),
            _ => Err(Stage1Error::Unexpected),
        }
    }
}
