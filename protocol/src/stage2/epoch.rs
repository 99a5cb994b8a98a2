//! The group keys both engines hold: the current epoch's sealer and openers,
//! and the previous epoch's openers for a short grace period.

use std::collections::BTreeMap;

use super::group::EpochSecret;
use super::{Stage2Error, EPOCH_GRACE_MS, MAX_CHAT};
use crate::frame::{FrameClass, PeerId, SessionId};
use crate::sframe::{FrameOpener, FrameSealer, KeyScope, Opened, SealBuf, SealedFrame};
use crate::time::Millis;

/// One epoch's frame keys as one member holds them.
pub(crate) struct Epoch {
    number: u32,
    started: Millis,
    sealer: FrameSealer,
    openers: BTreeMap<PeerId, FrameOpener>,
}

impl Epoch {
    /// The keys of epoch `number` for member `own`, opening frames from `others`.
    pub(crate) fn new(
        secret: &EpochSecret,
        number: u32,
        own: PeerId,
        others: impl Iterator<Item = PeerId>,
        now: Millis,
    ) -> Self {
        let scope = KeyScope::Group { epoch: number };
        Epoch {
            number,
            started: now,
            sealer: FrameSealer::new(&secret.sender_key(number, own), scope, own),
            openers: others
                .filter(|p| *p != own)
                .map(|p| (p, FrameOpener::new(&secret.sender_key(number, p), scope, p)))
                .collect(),
        }
    }
}

/// The current epoch and, for [`EPOCH_GRACE_MS`] after a change, the previous one.
#[derive(Default)]
pub(crate) struct Epochs {
    current: Option<Epoch>,
    previous: Option<(Epoch, Millis)>,
}

impl Epochs {
    /// The current epoch's number.
    pub(crate) fn number(&self) -> Option<u32> {
        self.current.as_ref().map(|e| e.number)
    }

    /// When the current epoch began.
    pub(crate) fn started(&self) -> Option<Millis> {
        self.current.as_ref().map(|e| e.started)
    }

    /// When the previous epoch's keys expire.
    pub(crate) fn grace_deadline(&self) -> Option<Millis> {
        self.previous.as_ref().map(|(_, until)| *until)
    }

    /// Makes `epoch` current. The old one stays for frames in flight, but only
    /// for senders that `still_member` accepts.
    pub(crate) fn install(
        &mut self,
        epoch: Epoch,
        now: Millis,
        still_member: impl Fn(PeerId) -> bool,
    ) {
        if let Some(mut old) = self.current.replace(epoch) {
            old.openers.retain(|p, _| still_member(*p));
            self.previous = Some((old, now.plus(EPOCH_GRACE_MS)));
        }
    }

    /// Refuses anything more from `peer` under the epochs held.
    pub(crate) fn forget(&mut self, peer: PeerId) {
        if let Some(e) = self.current.as_mut() {
            e.openers.remove(&peer);
        }
        if let Some((e, _)) = self.previous.as_mut() {
            e.openers.remove(&peer);
        }
    }

    /// Drops the previous epoch once its grace period is over.
    pub(crate) fn expire(&mut self, now: Millis) {
        if self.grace_deadline().is_some_and(|until| now >= until) {
            self.previous = None;
        }
    }

    /// Drops every key.
    pub(crate) fn clear(&mut self) {
        self.current = None;
        self.previous = None;
    }

    /// Opens a frame sealed under a group key.
    pub(crate) fn open(
        &mut self,
        sealed: &SealedFrame,
        frame: &mut [u8],
    ) -> Result<Opened, Stage2Error> {
        let class = sealed.header.class;
        let from = sealed.header.sender;
        let KeyScope::Group { epoch } = sealed.key_id.scope else {
            return Err(Stage2Error::Unexpected(
                "pairwise key where a group key belongs",
            ));
        };
        if class.requires_pairwise_key() {
            return Err(Stage2Error::GroupKeyForControl(class));
        }
        let opener = match (&mut self.current, &mut self.previous) {
            (Some(e), _) if e.number == epoch => e.openers.get_mut(&from),
            (_, Some((e, _))) if e.number == epoch => e.openers.get_mut(&from),
            _ => None,
        }
        .ok_or(Stage2Error::UnknownPeer(from))?;
        Ok(opener.open_in_place(sealed, frame)?)
    }

    /// Seals `data` under the current group key for everyone.
    pub(crate) fn seal(
        &mut self,
        class: FrameClass,
        session: SessionId,
        data: &[u8],
    ) -> Result<Vec<u8>, Stage2Error> {
        if class.requires_pairwise_key() || !class.carries_sframe() {
            return Err(Stage2Error::GroupKeyForControl(class));
        }
        let e = self.current.as_mut().ok_or(Stage2Error::Unexpected(
            "send before the group key is in place",
        ))?;
        let mut buf = SealBuf::from_plaintext(data);
        e.sealer.seal(class, session, PeerId::BROADCAST, &mut buf)?;
        Ok(buf.frame().to_vec())
    }
}

/// Checks a chat message before it is sent.
pub(crate) fn check_chat(text: &str) -> Result<(), Stage2Error> {
    if text.len() > MAX_CHAT {
        return Err(Stage2Error::Command(format!(
            "chat messages are limited to {MAX_CHAT} bytes"
        )));
    }
    Ok(())
}

/// Reads a received chat message.
pub(crate) fn chat_text(data: Vec<u8>) -> Result<String, Stage2Error> {
    if data.len() > MAX_CHAT {
        return Err(Stage2Error::Unexpected("chat message over the size limit"));
    }
    String::from_utf8(data).map_err(|_| Stage2Error::Unexpected("chat that is not UTF-8"))
}
