//! End-to-end frame encryption in the layout of SFrame (RFC 9605) with the
//! cipher suite `AES_256_GCM_SHA512_128` (0x0005).
//!
//! An end-to-end frame is a routing header ([`crate::frame`]) whose payload is
//!
//! ```text
//! +-+-----+-+-----+---------+---------+--------------------------+---------+
//! |X|  K  |Y|  C  | KID ... | CTR ... | AES-256-GCM ciphertext   | tag (16)|
//! +-+-----+-+-----+---------+---------+--------------------------+---------+
//! ```
//!
//! exactly as in RFC 9605 §4.3: the config byte holds in `K` the KID itself
//! when it is below 8 (`X` = 0), or else the KID's length in bytes minus one
//! (`X` = 1); likewise `C` and `Y` for the counter. KID and CTR are big-endian,
//! minimal-length on encoding; any length is accepted on decoding.
//!
//! Keys follow RFC 9605 §4.4.2 with SHA-512:
//! `secret = HKDF-Extract("", base_key)`,
//! `key = HKDF-Expand(secret, "SFrame 1.0 Secret key " ‖ KID(8) ‖ 0x0005, 32)`,
//! `salt = HKDF-Expand(secret, "SFrame 1.0 Secret salt " ‖ KID(8) ‖ 0x0005, 12)`,
//! and the nonce is the salt XOR the counter as a 12-byte big-endian integer.
//! The AAD is the SFrame header followed by the metadata, and Conclave's
//! metadata is the 24-byte routing header, so every routing field is
//! authenticated end to end.
//!
//! **KID convention.** Conclave's KIDs ([`KeyId`]) say which key opened a frame:
//! bit 63 is set for pairwise keys (master ↔ one participant) and clear for the
//! group key of an epoch; bits 62–40 hold the epoch (group keys), bits 39–8 the
//! sender's peer ID and bits 7–0 the key generation. A sender moves to the next
//! generation (a fresh key derived from the same base key, because the KID is in
//! the derivation label) before it has sealed [`KEY_USAGE_LIMIT`] frames, and a
//! receiver refuses counters at or beyond it; 256 generations give 2^31 frames
//! per base key, far more than an epoch (at most five minutes) needs.
//!
//! **Replay.** Each receiving key keeps a sliding window of [`REPLAY_WINDOW`]
//! counters: a counter seen before, or older than the window, is refused
//! before decryption, and the window moves only after a frame authenticates.
//!
//! The AEAD is ring's AES-256-GCM: measured on this project's machines at 4–7×
//! the throughput of RustCrypto's `aes-gcm` (see the README's benchmark table),
//! and already linked by the TLS and QUIC layers.

use core::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::frame::{
    checked_payload_len, FrameClass, FrameError, PeerId, RoutingHeader, SessionId, HEADER_LEN,
    MAX_PAYLOAD,
};

/// The RFC 9605 cipher suite: AES_256_GCM_SHA512_128.
pub const CIPHER_SUITE: u16 = 0x0005;
/// AES-256 key length.
pub const KEY_LEN: usize = 32;
/// GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// The longest SFrame header: config byte, 8-byte KID, 8-byte counter.
pub const MAX_SFRAME_HEADER_LEN: usize = 17;
/// Bytes a [`SealBuf`] keeps free in front of the plaintext for both headers.
pub const HEADROOM: usize = HEADER_LEN + MAX_SFRAME_HEADER_LEN;
/// The largest plaintext one frame can carry.
pub const MAX_PLAINTEXT: usize = MAX_PAYLOAD - MAX_SFRAME_HEADER_LEN - TAG_LEN;
/// Frames sealed with one key before the sender moves to the next generation.
pub const KEY_USAGE_LIMIT: u64 = 1 << 23;
/// Width of the replay window, in counters.
pub const REPLAY_WINDOW: u64 = 128;
/// The largest epoch number a KID can carry.
pub const MAX_EPOCH: u32 = (1 << 23) - 1;

/// Why a frame could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SframeError {
    /// The routing header is bad.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The SFrame header is cut short.
    #[error("SFrame header is truncated")]
    TruncatedHeader,
    /// The payload is shorter than a tag.
    #[error("SFrame payload is shorter than its authentication tag")]
    TruncatedCiphertext,
    /// Authentication failed: the frame was altered, or sealed with another key.
    #[error("frame failed authentication: it was altered in transit or sealed with another key")]
    Authentication,
    /// The counter was seen before or is older than the replay window.
    #[error("frame counter {0} was already used or is too old (replay)")]
    Replay(u64),
    /// The counter is at or beyond the key-usage limit.
    #[error("frame counter {0} is beyond the key-usage limit")]
    CounterTooLarge(u64),
    /// The KID names a key generation that is no longer (or not yet) held.
    #[error("frame uses key generation {got}, which is no longer accepted (current {current})")]
    StaleGeneration {
        /// The generation in the frame.
        got: u8,
        /// The receiver's current generation.
        current: u8,
    },
    /// The KID does not belong to this key.
    #[error("frame key ID {0:#x} does not match the expected key")]
    WrongKey(u64),
    /// The sender has used every generation of this base key.
    #[error("all key generations are used up; a new epoch is needed")]
    KeysExhausted,
    /// The plaintext is larger than a frame can carry.
    #[error("plaintext of {0} bytes exceeds the {MAX_PLAINTEXT}-byte frame limit")]
    PlaintextTooLarge(usize),
    /// The frame's class does not carry an SFrame ciphertext.
    #[error("frame class {0:?} does not carry an SFrame ciphertext")]
    NotSframe(FrameClass),
}

/// An SFrame header: key ID and counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SframeHeader {
    /// The key ID.
    pub kid: u64,
    /// The per-key counter.
    pub ctr: u64,
}

fn min_len(v: u64) -> usize {
    (8 - (v.leading_zeros() / 8) as usize).max(1)
}

impl SframeHeader {
    /// Encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let k = if self.kid < 8 { 0 } else { min_len(self.kid) };
        let c = if self.ctr < 8 { 0 } else { min_len(self.ctr) };
        1 + k + c
    }

    /// Encodes the header into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8; MAX_SFRAME_HEADER_LEN]) -> usize {
        let mut config = 0u8;
        let mut len = 1;
        let kid = self.kid.to_be_bytes();
        let ctr = self.ctr.to_be_bytes();
        let (kid_bytes, ctr_bytes): (&[u8], &[u8]);
        if self.kid < 8 {
            config |= (self.kid as u8) << 4;
            kid_bytes = &[];
        } else {
            let n = min_len(self.kid);
            config |= 0x80 | (((n - 1) as u8) << 4);
            kid_bytes = kid.get(8 - n..).unwrap_or_default();
        }
        if self.ctr < 8 {
            config |= self.ctr as u8;
            ctr_bytes = &[];
        } else {
            let n = min_len(self.ctr);
            config |= 0x08 | ((n - 1) as u8);
            ctr_bytes = ctr.get(8 - n..).unwrap_or_default();
        }
        out[0] = config;
        for b in kid_bytes.iter().chain(ctr_bytes) {
            // len < 17 by construction: at most 1 + 8 + 8 bytes.
            if let Some(slot) = out.get_mut(len) {
                *slot = *b;
            }
            len += 1;
        }
        len
    }

    /// Decodes a header from the start of `bytes`, returning it and its length.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), SframeError> {
        let (&config, rest) = bytes.split_first().ok_or(SframeError::TruncatedHeader)?;
        let k = (config >> 4) & 0x07;
        let c = config & 0x07;
        let kid_len = if config & 0x80 != 0 {
            k as usize + 1
        } else {
            0
        };
        let ctr_len = if config & 0x08 != 0 {
            c as usize + 1
        } else {
            0
        };
        let kid_bytes = rest.get(..kid_len).ok_or(SframeError::TruncatedHeader)?;
        let ctr_bytes = rest
            .get(kid_len..kid_len + ctr_len)
            .ok_or(SframeError::TruncatedHeader)?;
        let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        let kid = if kid_len == 0 {
            u64::from(k)
        } else {
            be(kid_bytes)
        };
        let ctr = if ctr_len == 0 {
            u64::from(c)
        } else {
            be(ctr_bytes)
        };
        Ok((SframeHeader { kid, ctr }, 1 + kid_len + ctr_len))
    }
}

/// What kind of key a KID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// The group key of an epoch, shared by every member.
    Group {
        /// The epoch number, at most [`MAX_EPOCH`].
        epoch: u32,
    },
    /// A key shared by the master and one participant only.
    Pairwise,
}

/// Conclave's structured KID (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId {
    /// Group or pairwise.
    pub scope: KeyScope,
    /// Who seals with it.
    pub sender: PeerId,
    /// The key generation.
    pub generation: u8,
}

impl KeyId {
    /// The 64-bit KID.
    pub fn to_kid(self) -> u64 {
        let scope = match self.scope {
            KeyScope::Pairwise => 1u64 << 63,
            KeyScope::Group { epoch } => u64::from(epoch & MAX_EPOCH) << 40,
        };
        scope | (u64::from(self.sender.0) << 8) | u64::from(self.generation)
    }

    /// Parses a 64-bit KID.
    pub fn from_kid(kid: u64) -> Self {
        let epoch = ((kid >> 40) as u32) & MAX_EPOCH;
        let scope = if kid >> 63 == 1 {
            KeyScope::Pairwise
        } else {
            KeyScope::Group { epoch }
        };
        KeyId {
            scope,
            sender: PeerId((kid >> 8) as u32),
            generation: kid as u8,
        }
    }
}

/// An AES-256-GCM key and salt derived for one KID (RFC 9605 §4.4.2).
pub struct SframeKey {
    kid: u64,
    aead: LessSafeKey,
    salt: [u8; NONCE_LEN],
}

impl core::fmt::Debug for SframeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SframeKey {{ kid: {:#x} }}", self.kid)
    }
}

impl SframeKey {
    /// Derives the key and salt for `kid` from `base_key`.
    // Fixed-size arrays indexed with constant ranges that fit them.
    #[allow(clippy::indexing_slicing)]
    pub fn derive(kid: u64, base_key: &[u8]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha512>::new(Some(&[]), base_key);
        let mut label = Zeroizing::new([0u8; 33]);
        let suffix = {
            let mut s = [0u8; 10];
            s[..8].copy_from_slice(&kid.to_be_bytes());
            s[8..].copy_from_slice(&CIPHER_SUITE.to_be_bytes());
            s
        };
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let mut salt = [0u8; NONCE_LEN];
        let key_label = b"SFrame 1.0 Secret key ";
        label[..22].copy_from_slice(key_label);
        label[22..32].copy_from_slice(&suffix);
        // Output lengths (32 and 12) are far below HKDF-SHA512's 255*64 limit.
        let _ = hk.expand(&label[..32], key.as_mut());
        let salt_label = b"SFrame 1.0 Secret salt ";
        label[..23].copy_from_slice(salt_label);
        label[23..33].copy_from_slice(&suffix);
        let _ = hk.expand(&label[..33], &mut salt);
        Self::from_parts(kid, &key, salt)
    }

    #[allow(clippy::expect_used)]
    fn from_parts(kid: u64, key: &[u8; KEY_LEN], salt: [u8; NONCE_LEN]) -> Self {
        // ring refuses only keys of the wrong length; ours is KEY_LEN by type.
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key");
        SframeKey {
            kid,
            aead: LessSafeKey::new(unbound),
            salt,
        }
    }

    /// The KID this key was derived for.
    pub fn kid(&self) -> u64 {
        self.kid
    }

    fn nonce(&self, ctr: u64) -> Nonce {
        let mut n = self.salt;
        for (b, c) in n[4..].iter_mut().zip(ctr.to_be_bytes()) {
            *b ^= c;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Seals `in_out` in place under `ctr` with the SFrame header and
    /// `metadata` as AAD, returning the tag. The caller guarantees that `ctr`
    /// is never reused with this key.
    pub fn seal_in_place(&self, ctr: u64, metadata: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let (aad, aad_len) = self.aad(ctr, metadata);
        match self.aead.seal_in_place_separate_tag(
            self.nonce(ctr),
            Aad::from(aad.get(..aad_len).unwrap_or_default()),
            in_out,
        ) {
            Ok(tag) => {
                let mut t = [0u8; TAG_LEN];
                t.copy_from_slice(tag.as_ref());
                t
            }
            // ring fails only for inputs over GCM's 64 GiB limit; frames are at most 1 MiB.
            Err(_) => [0u8; TAG_LEN],
        }
    }

    /// Opens `ciphertext‖tag` in place, returning the plaintext length.
    pub fn open_in_place(
        &self,
        ctr: u64,
        metadata: &[u8],
        in_out: &mut [u8],
    ) -> Result<usize, SframeError> {
        let (aad, aad_len) = self.aad(ctr, metadata);
        self.aead
            .open_in_place(
                self.nonce(ctr),
                Aad::from(aad.get(..aad_len).unwrap_or_default()),
                in_out,
            )
            .map(|p| p.len())
            .map_err(|_| SframeError::Authentication)
    }

    // `n` ≤ 17 and `m` ≤ 24 by construction; `aad` holds 41 bytes.
    #[allow(clippy::indexing_slicing)]
    fn aad(&self, ctr: u64, metadata: &[u8]) -> ([u8; MAX_SFRAME_HEADER_LEN + HEADER_LEN], usize) {
        let mut aad = [0u8; MAX_SFRAME_HEADER_LEN + HEADER_LEN];
        let mut h = [0u8; MAX_SFRAME_HEADER_LEN];
        let n = SframeHeader { kid: self.kid, ctr }.encode(&mut h);
        aad[..n].copy_from_slice(&h[..n]);
        let m = metadata.len().min(HEADER_LEN);
        aad[n..n + m].copy_from_slice(&metadata[..m]);
        (aad, n + m)
    }
}

/// A plaintext with room in front for the routing and SFrame headers, sealed
/// in place into a frame without copying the payload.
#[derive(Clone)]
pub struct SealBuf {
    bytes: Vec<u8>,
    payload_len: usize,
    frame_start: usize,
}

impl Default for SealBuf {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl core::fmt::Debug for SealBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SealBuf({} payload bytes)", self.payload_len)
    }
}

impl SealBuf {
    /// An empty buffer with room for `capacity` plaintext bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(HEADROOM + capacity + TAG_LEN);
        bytes.resize(HEADROOM, 0);
        SealBuf {
            bytes,
            payload_len: 0,
            frame_start: HEADROOM,
        }
    }

    /// A buffer holding a copy of `plaintext`.
    pub fn from_plaintext(plaintext: &[u8]) -> Self {
        let mut b = Self::with_capacity(plaintext.len());
        b.extend_from_slice(plaintext);
        b
    }

    /// Appends plaintext. A buffer that was sealed starts over from empty.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        if self.frame_start != HEADROOM {
            self.clear();
        }
        self.bytes.extend_from_slice(data);
        self.payload_len += data.len();
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.truncate(HEADROOM);
        self.payload_len = 0;
        self.frame_start = HEADROOM;
    }

    /// The plaintext (before sealing, or after the frame was opened in place).
    pub fn plaintext(&self) -> &[u8] {
        self.bytes
            .get(HEADROOM..HEADROOM + self.payload_len)
            .unwrap_or_default()
    }

    /// The sealed frame: routing header, SFrame header, ciphertext, tag.
    pub fn frame(&self) -> &[u8] {
        self.bytes.get(self.frame_start..).unwrap_or_default()
    }

    /// The sealed frame, mutable, so that a receiver can open it in place.
    /// Opening restores the plaintext where [`SealBuf::plaintext`] reads it.
    pub fn frame_mut(&mut self) -> &mut [u8] {
        self.bytes.get_mut(self.frame_start..).unwrap_or_default()
    }
}

/// The sending half of a base key: seals frames with a fresh counter each,
/// moving to the next key generation before the usage limit.
pub struct FrameSealer {
    base_key: Zeroizing<[u8; 32]>,
    scope: KeyScope,
    sender: PeerId,
    generation: u8,
    counter: u64,
    key: SframeKey,
}

impl core::fmt::Debug for FrameSealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameSealer")
            .field("scope", &self.scope)
            .field("sender", &self.sender)
            .field("generation", &self.generation)
            .field("counter", &self.counter)
            .finish()
    }
}

impl FrameSealer {
    /// A sealer for `sender` under `base_key` in `scope`, starting at generation 0.
    pub fn new(base_key: &[u8; 32], scope: KeyScope, sender: PeerId) -> Self {
        let kid = KeyId {
            scope,
            sender,
            generation: 0,
        };
        FrameSealer {
            base_key: Zeroizing::new(*base_key),
            scope,
            sender,
            generation: 0,
            counter: 0,
            key: SframeKey::derive(kid.to_kid(), base_key),
        }
    }

    /// The KID the next frame will carry.
    pub fn key_id(&self) -> KeyId {
        KeyId {
            scope: self.scope,
            sender: self.sender,
            generation: self.generation,
        }
    }

    /// Seals the plaintext in `buf` into a frame of `class` for `destination`.
    // `buf.bytes` always holds HEADROOM + payload_len bytes here, and
    // `start + HEADER_LEN + slen == HEADROOM`.
    #[allow(clippy::indexing_slicing)]
    pub fn seal(
        &mut self,
        class: FrameClass,
        session: SessionId,
        destination: PeerId,
        buf: &mut SealBuf,
    ) -> Result<(), SframeError> {
        if !class.carries_sframe() {
            return Err(SframeError::NotSframe(class));
        }
        if buf.payload_len > MAX_PLAINTEXT {
            return Err(SframeError::PlaintextTooLarge(buf.payload_len));
        }
        if self.counter >= KEY_USAGE_LIMIT {
            self.generation = self
                .generation
                .checked_add(1)
                .ok_or(SframeError::KeysExhausted)?;
            self.counter = 0;
            self.key = SframeKey::derive(self.key_id().to_kid(), self.base_key.as_ref());
        }
        let ctr = self.counter;
        self.counter += 1;

        let sh = SframeHeader {
            kid: self.key.kid,
            ctr,
        };
        let mut sbytes = [0u8; MAX_SFRAME_HEADER_LEN];
        let slen = sh.encode(&mut sbytes);
        let header = RoutingHeader {
            class,
            session,
            sender: self.sender,
            destination,
            payload_len: checked_payload_len(slen + buf.payload_len + TAG_LEN)?,
        };
        let rh = header.encode();
        buf.bytes.truncate(HEADROOM + buf.payload_len);
        let start = HEADROOM - slen - HEADER_LEN;
        buf.bytes[start..start + HEADER_LEN].copy_from_slice(&rh);
        buf.bytes[start + HEADER_LEN..HEADROOM].copy_from_slice(&sbytes[..slen]);
        let tag = self.key.seal_in_place(ctr, &rh, &mut buf.bytes[HEADROOM..]);
        buf.bytes.extend_from_slice(&tag);
        buf.frame_start = start;
        Ok(())
    }
}

/// A frame whose headers were parsed but whose payload is not yet opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFrame {
    /// The routing header.
    pub header: RoutingHeader,
    /// The SFrame header.
    pub sframe: SframeHeader,
    /// The KID, interpreted.
    pub key_id: KeyId,
    /// Where the ciphertext and tag sit in the frame.
    ciphertext: Range<usize>,
}

impl SealedFrame {
    /// Parses the routing and SFrame headers of an end-to-end frame.
    pub fn parse(frame: &[u8]) -> Result<Self, SframeError> {
        let f = crate::frame::FrameRef::parse(frame)?;
        if !f.header.class.carries_sframe() {
            return Err(SframeError::NotSframe(f.header.class));
        }
        let (sframe, slen) = SframeHeader::decode(f.payload)?;
        let start = HEADER_LEN + slen;
        if frame.len() < start + TAG_LEN {
            return Err(SframeError::TruncatedCiphertext);
        }
        Ok(SealedFrame {
            header: f.header,
            sframe,
            key_id: KeyId::from_kid(sframe.kid),
            ciphertext: start..frame.len(),
        })
    }
}

/// A frame opened in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The authenticated routing header.
    pub header: RoutingHeader,
    /// The key that opened it.
    pub key_id: KeyId,
    /// Its counter.
    pub counter: u64,
    /// Where the plaintext now sits in the frame buffer.
    pub plaintext: Range<usize>,
}

/// A sliding replay window over counters.
#[derive(Debug, Clone, Default)]
struct ReplayWindow {
    /// One more than the highest counter accepted (0: none yet).
    next: u64,
    /// Bit i set: counter `next - 1 - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    fn check(&self, ctr: u64) -> Result<(), SframeError> {
        if ctr >= self.next {
            return Ok(());
        }
        let age = self.next - 1 - ctr;
        if age >= REPLAY_WINDOW || self.seen & (1u128 << age) != 0 {
            return Err(SframeError::Replay(ctr));
        }
        Ok(())
    }

    fn accept(&mut self, ctr: u64) {
        if ctr >= self.next {
            let shift = ctr - self.next + 1;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.next = ctr + 1;
        } else {
            self.seen |= 1u128 << (self.next - 1 - ctr);
        }
    }
}

struct Generation {
    number: u8,
    key: SframeKey,
    window: ReplayWindow,
}

/// The receiving half of one sender's base key: opens its frames, refuses
/// replays, and follows it through key generations (keeping the previous
/// generation for frames still in flight).
pub struct FrameOpener {
    base_key: Zeroizing<[u8; 32]>,
    scope: KeyScope,
    sender: PeerId,
    current: Generation,
    previous: Option<Generation>,
}

impl core::fmt::Debug for FrameOpener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameOpener")
            .field("scope", &self.scope)
            .field("sender", &self.sender)
            .field("generation", &self.current.number)
            .finish()
    }
}

impl FrameOpener {
    /// An opener for frames that `sender` seals under `base_key` in `scope`.
    pub fn new(base_key: &[u8; 32], scope: KeyScope, sender: PeerId) -> Self {
        let kid = KeyId {
            scope,
            sender,
            generation: 0,
        };
        FrameOpener {
            base_key: Zeroizing::new(*base_key),
            scope,
            sender,
            current: Generation {
                number: 0,
                key: SframeKey::derive(kid.to_kid(), base_key),
                window: ReplayWindow::default(),
            },
            previous: None,
        }
    }

    /// Opens `frame` (parsed as `sealed`) in place. Checks, in order: that the
    /// KID is this sender's and scope's, that the routing header's sender
    /// matches it, the key-usage limit, the replay window, and authentication.
    pub fn open_in_place(
        &mut self,
        sealed: &SealedFrame,
        frame: &mut [u8],
    ) -> Result<Opened, SframeError> {
        let id = sealed.key_id;
        let ctr = sealed.sframe.ctr;
        if id.scope != self.scope || id.sender != self.sender || sealed.header.sender != id.sender {
            return Err(SframeError::WrongKey(sealed.sframe.kid));
        }
        if ctr >= KEY_USAGE_LIMIT {
            return Err(SframeError::CounterTooLarge(ctr));
        }
        let metadata: [u8; HEADER_LEN] = sealed.header.encode();
        let ct = frame
            .get_mut(sealed.ciphertext.clone())
            .ok_or(SframeError::TruncatedCiphertext)?;
        let plain_len;
        if id.generation == self.current.number {
            self.current.window.check(ctr)?;
            plain_len = self.current.key.open_in_place(ctr, &metadata, ct)?;
            self.current.window.accept(ctr);
        } else if Some(id.generation) == self.previous.as_ref().map(|g| g.number) {
            let Some(prev) = self.previous.as_mut() else {
                return Err(SframeError::WrongKey(sealed.sframe.kid));
            };
            prev.window.check(ctr)?;
            plain_len = prev.key.open_in_place(ctr, &metadata, ct)?;
            prev.window.accept(ctr);
        } else if id.generation > self.current.number {
            // A later generation: derive it, and keep it only if the frame
            // authenticates, so forged KIDs cannot move the receiver on.
            let key = SframeKey::derive(sealed.sframe.kid, self.base_key.as_ref());
            plain_len = key.open_in_place(ctr, &metadata, ct)?;
            let mut window = ReplayWindow::default();
            window.accept(ctr);
            let old = core::mem::replace(
                &mut self.current,
                Generation {
                    number: id.generation,
                    key,
                    window,
                },
            );
            self.previous = Some(old);
        } else {
            return Err(SframeError::StaleGeneration {
                got: id.generation,
                current: self.current.number,
            });
        }
        let start = sealed.ciphertext.start;
        Ok(Opened {
            header: sealed.header,
            key_id: id,
            counter: ctr,
            plaintext: start..start + plain_len,
        })
    }
}

#[cfg(test)]
mod tests;
