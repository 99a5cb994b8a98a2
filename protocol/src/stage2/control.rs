//! The control plane: messages sealed with the pairwise keys (frame class
//! Control), and rights grants signed by IK_M.

use serde::{Deserialize, Serialize};

use super::handshake::AbortReason;
use crate::bounded::BoundedBytes;
use crate::codec::Message;
use crate::frame::{PeerId, SessionId};
use crate::sign::{Artefact, Signed};

/// What a member may do, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rights(pub u8);

impl Rights {
    /// No rights.
    pub const NONE: Rights = Rights(0);
    /// May present (share a screen to everyone).
    pub const PRESENTER: Rights = Rights(1);
    /// The master may control this participant's machine.
    pub const REMOTE_CONTROL: Rights = Rights(2);
    /// Files may be exchanged with this participant.
    pub const FILE_TRANSFER: Rights = Rights(4);
    /// May record.
    pub const RECORDING: Rights = Rights(8);
    /// Every right.
    pub const ALL: Rights = Rights(15);

    /// Whether all of `other` is included.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union.
    pub fn with(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
}

/// A change of one participant's rights, signed by IK_M.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsGrant {
    /// The session.
    pub session: SessionId,
    /// The session instance.
    pub uuid: [u8; 32],
    /// Whose rights.
    pub peer: PeerId,
    /// The rights from now on.
    pub rights: Rights,
    /// Increases with every grant in the session; older ones are refused.
    pub sequence: u64,
}

impl Message for RightsGrant {
    const NAME: &'static str = "rights grant";
    const MAX_SIZE: usize = 128;
}
impl Artefact for RightsGrant {
    const DOMAIN: &'static str = "rights";
}

/// Messages of frame class Control, sealed pairwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Master → participant: new rights.
    Rights(Signed<RightsGrant>),
    /// Master → participant: liveness probe.
    Heartbeat {
        /// Echoed in the answer.
        sequence: u64,
    },
    /// Participant → master: liveness answer.
    HeartbeatAck {
        /// The probe's sequence.
        sequence: u64,
    },
    /// Master → participant: you are removed.
    Removed,
    /// Master → participant: admission refused.
    Denied(AbortReason),
    /// Participant → master: leaving.
    Leave,
    /// Master → participant: the session is over.
    End,
    /// Application control data (remote-control consent, file commands …),
    /// interpreted by the apps.
    App(BoundedBytes<65_536>),
}

impl Message for Control {
    const NAME: &'static str = "control message";
    const MAX_SIZE: usize = 66_000;
}
