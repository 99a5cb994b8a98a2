//! Message encoding: a version byte followed by the message in postcard.
//!
//! Every message that is not a frame (stage-1 messages, stage-2 handshake and
//! control messages, signed artefacts) is encoded as
//!
//! ```text
//! +---------+------------------------------+
//! | version | postcard encoding of the body |
//! |  1 byte |  at most Message::MAX_SIZE-1  |
//! +---------+------------------------------+
//! ```
//!
//! postcard's format is specified and stable: integers as LEB128 varints
//! (signed ones zig-zag), enums as a varint variant index, sequences and strings
//! as a varint length followed by the elements, fixed arrays element by element.
//! Decoding refuses, with a [`DecodeError`]:
//! - input longer than the message's `MAX_SIZE`, before anything is parsed;
//! - a version other than [`WIRE_VERSION`];
//! - trailing bytes after the body;
//! - a non-canonical encoding (one that does not re-encode to the same bytes),
//!   so that each message has exactly one encoding — which signed artefacts
//!   rely on.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The one message-format version this crate speaks.
pub const WIRE_VERSION: u8 = 1;

/// A message type with a name and a maximum encoded size.
pub trait Message: Serialize + DeserializeOwned {
    /// What the message is called in error messages.
    const NAME: &'static str;
    /// The largest encoding accepted, version byte included.
    const MAX_SIZE: usize;

    /// Encodes the message with its version byte.
    fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a message, enforcing every rule in the module docs.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }
}

/// Why a message could not be decoded. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message is longer than its type allows.
    #[error("{name} is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// The message type.
        name: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message is empty.
    #[error("{name} is empty")]
    Empty {
        /// The message type.
        name: &'static str,
    },
    /// The version byte is not one this build speaks.
    #[error("{name} has format version {got}; this build speaks version {WIRE_VERSION}: update the older side")]
    UnsupportedVersion {
        /// The message type.
        name: &'static str,
        /// The version received.
        got: u8,
    },
    /// The body does not parse.
    #[error("{name} is malformed: {reason}")]
    Malformed {
        /// The message type.
        name: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// Bytes follow the body.
    #[error("{name} has {extra} unexpected trailing bytes")]
    Trailing {
        /// The message type.
        name: &'static str,
        /// How many.
        extra: usize,
    },
    /// The body parses but is not in canonical form.
    #[error("{name} is not canonically encoded")]
    NonCanonical {
        /// The message type.
        name: &'static str,
    },
}

/// Encodes `msg` with the version byte.
#[allow(clippy::expect_used)]
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Vec<u8> {
    // postcard fails only on a writer that runs out of room or on shapes it
    // cannot express (sequences or maps of unknown length); a Vec never runs
    // out and no message type here has such a shape.
    postcard::to_extend(msg, vec![WIRE_VERSION]).expect("postcard into a Vec is infallible")
}

/// Decodes a `T` from `bytes`; see the module docs for what is refused.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T, DecodeError> {
    let name = T::NAME;
    if bytes.len() > T::MAX_SIZE {
        return Err(DecodeError::TooLarge {
            name,
            len: bytes.len(),
            max: T::MAX_SIZE,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty { name })?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion { name, got: version });
    }
    let (msg, rest) = postcard::take_from_bytes::<T>(body).map_err(|e| DecodeError::Malformed {
        name,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing {
            name,
            extra: rest.len(),
        });
    }
    if encode(&msg) != bytes {
        return Err(DecodeError::NonCanonical { name });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Probe {
        a: u32,
        b: bool,
    }
    impl Message for Probe {
        const NAME: &'static str = "probe";
        const MAX_SIZE: usize = 8;
    }

    #[test]
    fn round_trip() {
        let p = Probe { a: 300, b: true };
        let bytes = p.encode();
        assert_eq!(bytes, [1, 0xac, 0x02, 1]);
        assert_eq!(Probe::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn refusals_are_typed() {
        assert!(matches!(Probe::decode(&[]), Err(DecodeError::Empty { .. })));
        assert!(matches!(
            Probe::decode(&[2, 0, 0]),
            Err(DecodeError::UnsupportedVersion { got: 2, .. })
        ));
        assert!(matches!(
            Probe::decode(&[1, 0, 0, 0]),
            Err(DecodeError::Trailing { extra: 1, .. })
        ));
        assert!(matches!(
            Probe::decode(&[1; 9]),
            Err(DecodeError::TooLarge { len: 9, .. })
        ));
        assert!(matches!(
            Probe::decode(&[1, 0x80]),
            Err(DecodeError::Malformed { .. })
        ));
        // 0 encoded in two bytes is a valid varint but not the canonical one.
        assert!(matches!(
            Probe::decode(&[1, 0x80, 0x00, 1]),
            Err(DecodeError::NonCanonical { .. }) | Err(DecodeError::Malformed { .. })
        ));
        // A bool must be 0 or 1.
        assert!(matches!(
            Probe::decode(&[1, 0, 2]),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
