//! Stage 2: end-to-end keys between the master and each participant, agreed
//! *through* the relay, which can neither read nor forge them.
//!
//! ```text
//! participant                    relay                         master
//!   |-- Join{session} ------------>|                              |
//!   |-- Handshake::Request ------->|-------- PeerJoined, Request ->|  E_P, name, host, [SPAKE2 msg]
//!   |<-- Joined{peer, announce} ---|                              |  announce: E_M, uuid, license,
//!   |<-------------------------------------- Handshake::Response -|  signed by IK_M; response:
//!   |-- Handshake::Confirm ---------------------------------------->|  [SPAKE2 msg], IK_M signature
//!   |                              |                 (admission)  |  over the transcript, MAC
//!   |<------------------------------------------- Rekey (Roster) -|  epoch secret wrapped to each
//!   |                                                              |  member; signed roster
//! ```
//!
//! - **Announce** ([`Announce`]): the master's fresh `uuid` and ephemeral
//!   X25519 key `E_M`, its license, name and whether a password is set, signed
//!   by the master identity key `IK_M` that the portal-signed license names.
//! - **Pairwise keys** ([`handshake`]): `X25519(E_M, E_P)` and, when the
//!   session has a password, a SPAKE2 exchange (the `spake2` crate; identities
//!   bind the session ID), fed into HKDF with the transcript hash as salt. The
//!   transcript covers the session ID, the digest of the signed announce, the
//!   participant's request (its key, name, host and SPAKE2 message) and the
//!   master's SPAKE2 message. The master signs the transcript with `IK_M`, and
//!   each side proves its keys with a MAC, so a relay that substitutes `E_P`,
//!   `E_M` or a SPAKE2 message is detected by the participant at once. Keys are
//!   separate per direction. The password never leaves the two apps, and the
//!   session ID is never derived from it.
//! - **Safety codes**: each join shows the same eight digits on both sides
//!   (from the transcript); every member shows the session code (from the
//!   roster chain), so people can compare them by voice.
//! - **Group key** ([`group`]): the master draws a fresh 32-byte secret per
//!   epoch, wraps it to each member under that member's pairwise wrap key, and
//!   sends it with the roster (signed by `IK_M`, hash-chained to the previous
//!   one, encrypted under the new epoch) in one [`group::Rekey`]. New epochs on
//!   every leave or removal at once, on joins batched over
//!   [`JOIN_BATCH_MS`], and every [`EPOCH_MAX_AGE_MS`].
//! - **Frames** ([`crate::sframe`]): per-sender keys derived from the epoch
//!   secret; control, input and clipboard frames only under pairwise keys;
//!   rights changes also signed by `IK_M` ([`control::RightsGrant`]).
//! - **Liveness**: the master sends a heartbeat on each pairwise channel every
//!   [`HEARTBEAT_MS`]; a member silent for [`LIVENESS_TIMEOUT_MS`] is removed,
//!   and a participant that hears nothing from the master for as long reports
//!   the master lost.
//! - **Failover** (R18): when the relay is lost, [`MasterSession::resume`]
//!   opens the session again on the next relay with the same announce, and
//!   each member's [`ParticipantSession::resume`] rejoins under its ID with
//!   its pairwise keys; the master starts a fresh epoch for those who return
//!   and removes claims for IDs that are not its members.
//!
//! The engines [`MasterSession`] and [`ParticipantSession`] are sans-IO: feed
//! them frames, relay messages, commands and the time; take frames to send,
//! events to show and the next timer deadline.

pub mod control;
mod epoch;
pub mod group;
pub mod handshake;
mod master;
mod participant;

pub use control::{Control, Rights, RightsGrant};
pub use group::{Rekey, Roster, RosterMember};
pub use handshake::{Announce, Handshake, JoinConfirm, JoinRequest, JoinResponse, SafetyCode};
pub use master::{MasterConfig, MasterEvent, MasterSession};
pub use participant::{ParticipantEvent, ParticipantSession};

use crate::codec::DecodeError;
use crate::frame::{FrameError, PeerId};
use crate::sframe::SframeError;
use crate::sign::SignatureError;
use crate::time::Millis;

/// Interval between heartbeats on each pairwise channel.
pub const HEARTBEAT_MS: u64 = 5_000;
/// Silence after which a member (or the master) counts as gone.
pub const LIVENESS_TIMEOUT_MS: u64 = 15_000;
/// Joins within this interval of the last rekey share the next one.
pub const JOIN_BATCH_MS: u64 = 1_000;
/// The longest an epoch lasts.
pub const EPOCH_MAX_AGE_MS: u64 = 300_000;
/// How long frames under the previous epoch's keys are still accepted.
pub const EPOCH_GRACE_MS: u64 = 2_000;
/// How long a join may take from request to confirmation.
pub const JOIN_TIMEOUT_MS: u64 = 30_000;
/// Most members (master included) in one session.
pub const MAX_MEMBERS: usize = 2_048;
/// Longest chat message, in bytes.
pub const MAX_CHAT: usize = 4_096;

/// What both engines share, for a driver that runs either: frames and time
/// in, frames and the next deadline out (the quinn-proto shape). Each engine
/// has the same methods inherently; the trait lets one driver hold either.
pub trait Engine {
    /// The next frame to send to the relay.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// When [`Engine::handle_timeout`] must next be called.
    fn poll_timeout(&self) -> Option<Millis>;
    /// Runs the timers.
    fn handle_timeout(&mut self, now: Millis);
    /// Handles one frame from the relay; an error means it was dropped and
    /// nothing in it was accepted.
    fn handle_frame(&mut self, now: Millis, frame: &mut [u8]) -> Result<(), Stage2Error>;
}

impl<R: rand_core::CryptoRngCore> Engine for MasterSession<R> {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        MasterSession::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Millis> {
        MasterSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Millis) {
        MasterSession::handle_timeout(self, now);
    }
    fn handle_frame(&mut self, now: Millis, frame: &mut [u8]) -> Result<(), Stage2Error> {
        MasterSession::handle_frame(self, now, frame)
    }
}

impl Engine for ParticipantSession {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        ParticipantSession::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Millis> {
        ParticipantSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Millis) {
        ParticipantSession::handle_timeout(self, now);
    }
    fn handle_frame(&mut self, now: Millis, frame: &mut [u8]) -> Result<(), Stage2Error> {
        ParticipantSession::handle_frame(self, now, frame)
    }
}

/// Why a stage-2 step failed. `Peer` variants are the other side's (or the
/// relay's) fault; the session survives them, the offending frame is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stage2Error {
    /// A message does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A frame does not parse.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame fails to open: altered, replayed, or under a wrong key.
    #[error(transparent)]
    Sframe(#[from] SframeError),
    /// A signature does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The announce's license has expired or is not yet valid.
    #[error("the moderator's license is not valid at this time")]
    LicenseExpired,
    /// The announce is for another session than the one joined.
    #[error("the announce is for session {got}, not {expected}: the relay mixed up sessions")]
    WrongSession {
        /// The session joined.
        expected: u64,
        /// The session in the announce.
        got: u64,
    },
    /// The session has a password and none was given.
    #[error("this session needs a password")]
    PasswordRequired,
    /// The PAKE failed to finish (malformed message).
    #[error("the password exchange failed: {0}")]
    Pake(String),
    /// Key confirmation failed: wrong password, or someone in between.
    #[error("key confirmation failed: the password is wrong, or someone is between you and the other side")]
    Confirmation,
    /// A message arrived that the current state does not expect.
    #[error("unexpected {0} at this point of the session")]
    Unexpected(&'static str),
    /// A frame from a peer that is not a member.
    #[error("frame from {0}, which is not a member")]
    UnknownPeer(PeerId),
    /// A roster or key wrap that is older than the current epoch (replay).
    #[error(
        "roster or key for epoch {got} is not newer than the current epoch {current}: replayed"
    )]
    StaleEpoch {
        /// Epoch offered.
        got: u32,
        /// Epoch held.
        current: u32,
    },
    /// The roster does not chain to the previous one.
    #[error("the roster does not follow the previous one")]
    BrokenChain,
    /// A key wrap or roster fails to decrypt.
    #[error("a key wrap or roster fails to decrypt")]
    WrapInvalid,
    /// The roster does not list this participant with its key.
    #[error("the roster does not list this participant with its own key")]
    NotInRoster,
    /// A frame class that needs a pairwise key arrived under the group key.
    #[error("{0:?} frame under the group key: only pairwise keys may carry it")]
    GroupKeyForControl(crate::frame::FrameClass),
    /// A rights grant that is stale, for someone else, or for another session.
    #[error("rights grant refused: {0}")]
    BadGrant(&'static str),
    /// The session's epoch counter is exhausted.
    #[error("the session has used every epoch number; start a new session")]
    EpochsExhausted,
    /// A command that the current state does not allow.
    #[error("{0}")]
    Command(String),
}
