//! What the apps tell each other about sharing, control and recording:
//! [`AppMessage`]s, carried in [`Control::App`](crate::stage2::Control::App)
//! under the pairwise key of master and participant (the group key never
//! carries them, and the relay cannot read or forge them).
//!
//! ## Who presents (R21)
//! The master decides who presents and says so to every participant with
//! [`AppMessage::Presenter`]; a viewer shows screen frames only from that
//! member (or from the master), whatever else arrives under the group key.
//! In a support session the customer presents; in a meeting the master does
//! until it hands the role on (and takes it back).
//!
//! ## Remote control (R22)
//! 1. The master holds the participant's remote-control right (a signed
//!    rights grant) and sends [`AppMessage::ControlRequest`].
//! 2. The participant's app asks its user, with a countdown whose length and
//!    default outcome come from the policy baked into *its own* build (the
//!    master cannot shorten it), and answers [`AppMessage::ControlAnswer`].
//! 3. Input frames (class `Input`, pairwise) are applied only while control
//!    is granted. The participant ends it at once with its Stop button or
//!    stop hotkey and says [`AppMessage::ControlEnded`]; the master ends it
//!    with [`AppMessage::ReleaseControl`] or by narrowing the rights.
//!
//! ## Raised hands (R27)
//! A participant tells the master, and the master tells everyone, with
//! [`AppMessage::Hand`]; the master can lower anyone's hand.
//!
//! ## Recording (R25)
//! Whoever records tells the master, and the master tells everyone, with
//! [`AppMessage::Recording`].
//!
//! ## Shared files (R24)
//! A file stored on the relay is announced with its key in
//! [`AppMessage::SharedFile`]; see [`crate::shared`].

use serde::{Deserialize, Serialize};

use crate::bounded::BoundedString;
use crate::codec::Message;
use crate::frame::PeerId;
use crate::shared::{BlobId, SharedFileInfo};

/// Why remote control ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlEnd {
    /// The participant pressed Stop.
    StopButton,
    /// The participant pressed the stop hotkey.
    Hotkey,
    /// The master released control.
    Released,
    /// The master withdrew the right.
    RightWithdrawn,
}

impl ControlEnd {
    /// What to show.
    pub fn describe(self) -> &'static str {
        match self {
            ControlEnd::StopButton => "stopped with the Stop button",
            ControlEnd::Hotkey => "stopped with the stop hotkey",
            ControlEnd::Released => "released by the moderator",
            ControlEnd::RightWithdrawn => "the remote-control right was withdrawn",
        }
    }
}

/// One message between the apps; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppMessage {
    /// Viewer → presenter (through the master): send a keyframe.
    KeyframeRequest,
    /// Master → participants: who presents now (`None`: nobody).
    Presenter(Option<PeerId>),
    /// Master → participant: asks for remote control.
    ControlRequest,
    /// Participant → master: the user's (or the countdown's) answer.
    ControlAnswer {
        /// Control is granted.
        granted: bool,
        /// The countdown ran out and the policy's default decided.
        by_default: bool,
    },
    /// Either way: control is over.
    ControlEnded(ControlEnd),
    /// Master → participant: ends control.
    ReleaseControl,
    /// A raised or lowered hand (R27): participant → master about itself
    /// (`peer` is ignored, the sender counts), master → participants about
    /// anyone.
    Hand {
        /// Whose hand.
        peer: PeerId,
        /// Raised (true) or lowered.
        raised: bool,
    },
    /// A recording started or stopped.
    Recording {
        /// Whether it runs now.
        active: bool,
        /// Who records.
        by: BoundedString<64>,
    },
    /// A file shared in the session is stored on the relay (R24): a
    /// participant → the master, which checks its right; the master → every
    /// participant. Carries the file's key: pairwise keys only.
    SharedFile(SharedFileInfo),
    /// A shared file was deleted (the master → every participant).
    SharedFileRemoved(BlobId),
}

impl Message for AppMessage {
    const NAME: &'static str = "app message";
    const MAX_SIZE: usize = 512;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_within_its_bound() {
        let all = [
            AppMessage::KeyframeRequest,
            AppMessage::Presenter(Some(PeerId(7))),
            AppMessage::Presenter(None),
            AppMessage::ControlRequest,
            AppMessage::ControlAnswer {
                granted: true,
                by_default: false,
            },
            AppMessage::ControlEnded(ControlEnd::Hotkey),
            AppMessage::ReleaseControl,
            AppMessage::Hand {
                peer: PeerId(3),
                raised: true,
            },
            AppMessage::Recording {
                active: true,
                by: BoundedString::new("x".repeat(64)).unwrap(),
            },
            AppMessage::SharedFile(SharedFileInfo {
                blob: BlobId(u64::MAX),
                name: BoundedString::new("é".repeat(127)).unwrap(),
                size: u64::MAX,
                sha256: [0xff; 32],
                key: crate::shared::FileKey::generate(&mut rand_core::OsRng),
                from: BoundedString::new("x".repeat(64)).unwrap(),
            }),
            AppMessage::SharedFileRemoved(BlobId(u64::MAX)),
        ];
        for m in all {
            let bytes = m.encode();
            assert!(bytes.len() <= AppMessage::MAX_SIZE);
            assert_eq!(AppMessage::decode(&bytes), Ok(m));
        }
        assert!(AppMessage::decode(&[1, 200]).is_err());
    }
}
