//! Frames: the cleartext routing header the relay reads, and the payload it
//! forwards without reading.
//!
//! Every frame on every transport is
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +---------------+---------------+---------------+---------------+
//! |    version    |  frame class  |  flags (= 0)  | reserved (= 0)|
//! +---------------+---------------+---------------+---------------+
//! |                      session ID (u64)                         |
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                        sender (u32)                           |
//! +---------------------------------------------------------------+
//! |                      destination (u32)                        |
//! +---------------------------------------------------------------+
//! |                    payload length (u32)                       |
//! +---------------------------------------------------------------+
//! |                payload (payload length bytes)                 |
//! +---------------------------------------------------------------+
//! ```
//!
//! All integers are big-endian. `version` is [`FRAME_VERSION`]; a frame with
//! another version, unknown flags, a non-zero reserved byte, an unknown class
//! or a payload longer than [`MAX_PAYLOAD`] is refused with a [`FrameError`].
//! Peer IDs are assigned by the relay: [`PeerId::RELAY`] is the relay itself,
//! [`PeerId::MASTER`] the session's master, and participants count up from 2.
//! [`PeerId::BROADCAST`] as destination means every other member of the session.
//!
//! For the media, chat, file and control classes the payload is an SFrame ciphertext (see
//! [`crate::sframe`]) whose AAD covers this header, so a relay that changes any
//! header field makes the frame fail to open.

use serde::{Deserialize, Serialize};

/// The frame format version this crate speaks.
pub const FRAME_VERSION: u8 = 1;
/// Length of the routing header in bytes.
pub const HEADER_LEN: usize = 24;
/// The largest payload a frame may carry (1 MiB). Larger objects (files,
/// key frames) are split by the sender.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The largest frame: header plus the largest payload.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD;

/// The session number the relay routes by (the digits a participant types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl core::fmt::Display for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A peer within a session, as numbered by the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub u32);

impl PeerId {
    /// The relay itself, as sender or destination of relay-control frames.
    pub const RELAY: PeerId = PeerId(0);
    /// The session's master.
    pub const MASTER: PeerId = PeerId(1);
    /// Every member of the session other than the sender.
    pub const BROADCAST: PeerId = PeerId(u32::MAX);
    /// The first ID the relay gives a participant.
    pub const FIRST_PARTICIPANT: PeerId = PeerId(2);

    /// Whether this ID may name a single participant.
    pub fn is_participant(self) -> bool {
        self.0 >= Self::FIRST_PARTICIPANT.0 && self != Self::BROADCAST
    }
}

impl core::fmt::Display for PeerId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PeerId::RELAY => f.write_str("relay"),
            PeerId::MASTER => f.write_str("master"),
            PeerId::BROADCAST => f.write_str("everyone"),
            PeerId(n) => write!(f, "participant {n}"),
        }
    }
}

macro_rules! frame_classes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// What a frame carries, in the clear so the relay can enforce policy
        /// (R13) and queue by class.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum FrameClass {
            $($(#[$doc])* $name = $value,)*
        }

        impl FrameClass {
            /// Every class, in wire order.
            pub const ALL: &'static [FrameClass] = &[$(FrameClass::$name,)*];

            /// The class with wire value `v`.
            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($value => Some(FrameClass::$name),)*
                    _ => None,
                }
            }
        }
    };
}

frame_classes! {
    /// Stage-1 and session-control messages between a client and the relay.
    Relay = 0,
    /// Stage-2 handshake: announce, join request, response, confirmation.
    Handshake = 1,
    /// Control plane, sealed pairwise: admission, rights, removal, liveness.
    Control = 2,
    /// Rekey: key wraps and the signed roster of a new epoch.
    Roster = 3,
    /// Screen-sharing images, sealed with the group key.
    Screen = 4,
    /// Audio, sealed with the group key.
    Audio = 5,
    /// Webcam video, sealed with the group key.
    Video = 6,
    /// Remote input (pointer, keyboard), sealed pairwise.
    Input = 7,
    /// File transfer and shared files.
    File = 8,
    /// Chat messages, sealed with the group key.
    Chat = 9,
    /// Clipboard contents, sealed pairwise.
    Clipboard = 10,
}

impl FrameClass {
    /// Whether frames of this class may only be sealed with a pairwise key:
    /// the group key alone never authorises control (DESIGN, stage 2).
    pub fn requires_pairwise_key(self) -> bool {
        matches!(
            self,
            FrameClass::Control | FrameClass::Input | FrameClass::Clipboard
        )
    }

    /// Whether the payload is an SFrame ciphertext. Relay and handshake
    /// payloads are plain (handshake messages are signed and MACed), and a
    /// rekey protects its parts itself (wraps and sealed roster).
    pub fn carries_sframe(self) -> bool {
        !matches!(
            self,
            FrameClass::Relay | FrameClass::Handshake | FrameClass::Roster
        )
    }
}

/// The cleartext routing header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingHeader {
    /// What the frame carries.
    pub class: FrameClass,
    /// The session it belongs to.
    pub session: SessionId,
    /// Who sent it.
    pub sender: PeerId,
    /// Who it is for, or [`PeerId::BROADCAST`].
    pub destination: PeerId,
    /// Length of the payload that follows.
    pub payload_len: u32,
}

/// Why bytes are not a frame. Always the sender's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a header.
    #[error("frame is {0} bytes, shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
    /// Another frame format version.
    #[error("frame format version {0}; this build speaks version {FRAME_VERSION}: update the older side")]
    UnsupportedVersion(u8),
    /// A frame class this build does not know.
    #[error("unknown frame class {0}")]
    UnknownClass(u8),
    /// Flags or the reserved byte are not zero.
    #[error("frame has unknown flags {flags:#04x} or reserved byte {reserved:#04x}")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
        /// The reserved byte.
        reserved: u8,
    },
    /// The payload length exceeds [`MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLarge(u32),
    /// The payload length in the header differs from the bytes present.
    #[error("frame header announces {announced} payload bytes but {present} are present")]
    LengthMismatch {
        /// What the header says.
        announced: u32,
        /// What arrived.
        present: usize,
    },
}

impl RoutingHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (head, rest) = out.split_at_mut(4);
        head.copy_from_slice(&[FRAME_VERSION, self.class as u8, 0, 0]);
        let (session, rest) = rest.split_at_mut(8);
        session.copy_from_slice(&self.session.0.to_be_bytes());
        let (sender, rest) = rest.split_at_mut(4);
        sender.copy_from_slice(&self.sender.0.to_be_bytes());
        let (destination, len) = rest.split_at_mut(4);
        destination.copy_from_slice(&self.destination.0.to_be_bytes());
        len.copy_from_slice(&self.payload_len.to_be_bytes());
        out
    }

    /// Decodes a header from the first [`HEADER_LEN`] bytes of `bytes`,
    /// checking everything but the presence of the payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(FrameError::Truncated(bytes.len()))?;
        let [version, class, flags, reserved, s0, s1, s2, s3, s4, s5, s6, s7, f0, f1, f2, f3, d0, d1, d2, d3, l0, l1, l2, l3] =
            *h;
        if version != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let class = FrameClass::from_u8(class).ok_or(FrameError::UnknownClass(class))?;
        if flags != 0 || reserved != 0 {
            return Err(FrameError::UnknownFlags { flags, reserved });
        }
        let payload_len = u32::from_be_bytes([l0, l1, l2, l3]);
        if payload_len as usize > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLarge(payload_len));
        }
        Ok(RoutingHeader {
            class,
            session: SessionId(u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7])),
            sender: PeerId(u32::from_be_bytes([f0, f1, f2, f3])),
            destination: PeerId(u32::from_be_bytes([d0, d1, d2, d3])),
            payload_len,
        })
    }
}

/// A whole frame, parsed: header and a borrowed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The routing header.
    pub header: RoutingHeader,
    /// The payload, exactly `header.payload_len` bytes.
    pub payload: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// Parses exactly one frame from `bytes` (header and all of its payload, nothing more).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let header = RoutingHeader::decode(bytes)?;
        let payload = bytes.get(HEADER_LEN..).unwrap_or_default();
        if payload.len() != header.payload_len as usize {
            return Err(FrameError::LengthMismatch {
                announced: header.payload_len,
                present: payload.len(),
            });
        }
        Ok(FrameRef { header, payload })
    }
}

/// Builds a frame whose payload is not end-to-end encrypted (relay and
/// handshake classes).
pub fn plain_frame(
    class: FrameClass,
    session: SessionId,
    sender: PeerId,
    destination: PeerId,
    payload: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let payload_len = checked_payload_len(payload.len())?;
    let header = RoutingHeader {
        class,
        session,
        sender,
        destination,
        payload_len,
    };
    let mut out = Vec::with_capacity(HEADER_LEN.saturating_add(payload.len()));
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The payload length as it goes into a header, if it is within [`MAX_PAYLOAD`].
pub fn checked_payload_len(len: usize) -> Result<u32, FrameError> {
    match u32::try_from(len) {
        Ok(l) if len <= MAX_PAYLOAD => Ok(l),
        _ => Err(FrameError::PayloadTooLarge(
            u32::try_from(len).unwrap_or(u32::MAX),
        )),
    }
}

/// The length of the frame at the start of a stream buffer, once its header
/// is in: checked before any of the payload is buffered. `None` while fewer
/// than [`HEADER_LEN`] bytes are there.
pub fn frame_len(buffered: &[u8], max_payload: usize) -> Result<Option<usize>, FrameError> {
    if buffered.len() < HEADER_LEN {
        return Ok(None);
    }
    let header = RoutingHeader::decode(buffered)?;
    let len = header.payload_len as usize;
    if len > max_payload.min(MAX_PAYLOAD) {
        return Err(FrameError::PayloadTooLarge(header.payload_len));
    }
    Ok(Some(HEADER_LEN + len))
}

/// Splits a byte stream (TLS over TCP, a QUIC stream) into frames: feed it
/// what the transport read, take whole frames out. A header is checked as soon
/// as its 24 bytes are in, so a frame over `max_payload` is refused before its
/// payload is buffered; the buffer never holds more than one partial frame
/// beyond what was pushed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_payload: usize,
}

impl FrameDecoder {
    /// A decoder refusing payloads over `max_payload` (at most [`MAX_PAYLOAD`]).
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_payload: max_payload.min(MAX_PAYLOAD),
        }
    }

    /// Appends bytes read from the transport.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// The next whole frame, if one is buffered. An error means the stream
    /// is not a Conclave frame stream (or exceeds the limit) and must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let Some(total) = frame_len(rest, self.max_payload)? else {
            return Ok(None);
        };
        match rest.get(..total) {
            Some(frame) => {
                let frame = frame.to_vec();
                self.start += total;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_header() -> impl Strategy<Value = RoutingHeader> {
        (
            proptest::sample::select(FrameClass::ALL),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            0..=MAX_PAYLOAD as u32,
        )
            .prop_map(|(class, s, f, d, l)| RoutingHeader {
                class,
                session: SessionId(s),
                sender: PeerId(f),
                destination: PeerId(d),
                payload_len: l,
            })
    }

    proptest! {
        #[test]
        fn header_round_trips(h in any_header()) {
            prop_assert_eq!(RoutingHeader::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RoutingHeader::decode(&bytes);
            let _ = FrameRef::parse(&bytes);
        }

        #[test]
        fn frame_round_trips(class in proptest::sample::select(FrameClass::ALL),
                             payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let bytes = plain_frame(class, SessionId(12345), PeerId(2), PeerId::MASTER, &payload).unwrap();
            let f = FrameRef::parse(&bytes).unwrap();
            prop_assert_eq!(f.payload, &payload[..]);
            prop_assert_eq!(f.header.class, class);
        }
    }

    proptest! {
        #[test]
        fn decoder_yields_the_frames_whatever_the_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            chunk in 1usize..100,
        ) {
            let frames: Vec<Vec<u8>> = payloads
                .iter()
                .map(|p| plain_frame(FrameClass::Chat, SessionId(9), PeerId(2), PeerId(1), p).unwrap())
                .collect();
            let stream: Vec<u8> = frames.concat();
            let mut d = FrameDecoder::new(MAX_PAYLOAD);
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                d.push(c);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn decoder_refuses_an_oversized_frame_from_its_header() {
        let mut d = FrameDecoder::new(1000);
        let h = RoutingHeader {
            class: FrameClass::File,
            session: SessionId(1),
            sender: PeerId(2),
            destination: PeerId(1),
            payload_len: 1001,
        };
        d.push(&h.encode());
        assert_eq!(d.next_frame(), Err(FrameError::PayloadTooLarge(1001)));
        let mut d = FrameDecoder::new(1000);
        d.push(&[9; 24]);
        assert_eq!(d.next_frame(), Err(FrameError::UnsupportedVersion(9)));
    }

    #[test]
    fn layout_is_as_documented() {
        let h = RoutingHeader {
            class: FrameClass::Screen,
            session: SessionId(0x0102_0304_0506_0708),
            sender: PeerId(0x0a0b_0c0d),
            destination: PeerId::BROADCAST,
            payload_len: 0x100,
        };
        assert_eq!(
            h.encode(),
            [
                1, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0xff, 0xff, 0xff, 0xff,
                0, 0, 1, 0
            ]
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        let mut h = RoutingHeader {
            class: FrameClass::Chat,
            session: SessionId(1),
            sender: PeerId(2),
            destination: PeerId(1),
            payload_len: 0,
        }
        .encode();
        assert_eq!(
            RoutingHeader::decode(&h[..23]),
            Err(FrameError::Truncated(23))
        );
        h[0] = 2;
        assert_eq!(
            RoutingHeader::decode(&h),
            Err(FrameError::UnsupportedVersion(2))
        );
        h[0] = 1;
        h[1] = 200;
        assert_eq!(
            RoutingHeader::decode(&h),
            Err(FrameError::UnknownClass(200))
        );
        h[1] = 9;
        h[2] = 1;
        assert!(matches!(
            RoutingHeader::decode(&h),
            Err(FrameError::UnknownFlags { .. })
        ));
        h[2] = 0;
        h[20..24].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert!(matches!(
            RoutingHeader::decode(&h),
            Err(FrameError::PayloadTooLarge(_))
        ));
        h[20..24].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(
            FrameRef::parse(&h),
            Err(FrameError::LengthMismatch {
                announced: 5,
                present: 0
            })
        );
    }
}
