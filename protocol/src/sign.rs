//! Domain-separated Ed25519 signatures over canonical encodings.
//!
//! A signed artefact travels as [`Signed<T>`]: the signer's key fingerprint,
//! the exact bytes of `T` as [`crate::codec`] encodes them, and a signature
//! over
//!
//! ```text
//! "conclave/v1/" ‖ T::DOMAIN ‖ 0x00 ‖ body
//! ```
//!
//! The label makes a signature for one kind of artefact worthless as any
//! other kind (a license can never pass as a roster). Verification uses
//! `verify_strict` (no malleable or small-order keys or signatures), checks the
//! signature before decoding the body, and decodes canonically, so a signed
//! artefact has exactly one valid encoding. Fingerprints (the first 8 bytes of
//! SHA-256 of the public key) let a verifier hold several trusted keys, so the
//! portal's root key can be rotated.

use core::fmt;
use core::marker::PhantomData;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::bounded::BoundedBytes;
use crate::codec::{DecodeError, Message};

/// The largest signed body (1 MiB), whatever its kind.
pub const MAX_SIGNED_BODY: usize = 1 << 20;

/// A message kind that is signed, with its domain-separation label.
pub trait Artefact: Message {
    /// The label after `conclave/v1/`, e.g. `license`.
    const DOMAIN: &'static str;
}

/// An Ed25519 public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// The first 8 bytes of SHA-256 of the key.
    pub fn fingerprint(&self) -> Fingerprint {
        let d = Sha256::digest(self.0);
        let mut f = [0u8; 8];
        f.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
        Fingerprint(f)
    }

    fn verifying_key(&self) -> Result<VerifyingKey, SignatureError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::InvalidKey)
    }
}

/// A short identifier of a public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 8]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// An Ed25519 signing key; the secret half is zeroized on drop.
pub struct SigningIdentity(SigningKey);

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningIdentity({})", self.public_key().fingerprint())
    }
}

impl SigningIdentity {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        SigningIdentity(SigningKey::generate(rng))
    }

    /// The key from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningIdentity(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed, for storage by the caller (which must protect it).
    pub fn to_seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` under the domain label `domain`.
    pub fn sign_raw(&self, domain: &str, message: &[u8]) -> Signature {
        Signature(self.0.sign(&labelled(domain, message)).to_bytes())
    }

    /// Signs `artefact`.
    pub fn sign<T: Artefact>(&self, artefact: &T) -> Signed<T> {
        let body = artefact.encode();
        let signature = self.sign_raw(T::DOMAIN, &body);
        Signed {
            signer: self.public_key().fingerprint(),
            // Bodies of our artefacts are bounded by their MAX_SIZE, all below MAX_SIGNED_BODY.
            body: BoundedBytes::new(body).unwrap_or_default(),
            signature,
            kind: PhantomData,
        }
    }
}

fn labelled(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(13 + domain.len() + message.len());
    m.extend_from_slice(b"conclave/v1/");
    m.extend_from_slice(domain.as_bytes());
    m.push(0);
    m.extend_from_slice(message);
    m
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-byte signature")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Signature, E> {
                let a: [u8; 64] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Signature(a))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Why a signature or signed artefact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signer is not among the trusted keys.
    #[error("signed by key {0}, which is not trusted here (built by another portal?)")]
    UnknownSigner(Fingerprint),
    /// The public key is not a valid Ed25519 point.
    #[error("the signer's public key is invalid")]
    InvalidKey,
    /// The signature does not verify.
    #[error("signature does not verify: the data was altered or signed for another purpose")]
    BadSignature,
    /// The body verified but does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Verifies a raw domain-separated signature.
pub fn verify_raw(
    key: &PublicKey,
    domain: &str,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    let vk = key.verifying_key()?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    vk.verify_strict(&labelled(domain, message), &sig)
        .map_err(|_| SignatureError::BadSignature)
}

/// A signed artefact of kind `T` (see the module docs).
pub struct Signed<T> {
    signer: Fingerprint,
    body: BoundedBytes<MAX_SIGNED_BODY>,
    signature: Signature,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            signer: self.signer,
            body: self.body.clone(),
            signature: self.signature,
            kind: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.signer == other.signer && self.body == other.body && self.signature == other.signature
    }
}

impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signed<{}>({} bytes by {})",
            core::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or_default(),
            self.body.len(),
            self.signer
        )
    }
}

#[derive(Serialize, Deserialize)]
struct SignedWire {
    signer: Fingerprint,
    body: BoundedBytes<MAX_SIGNED_BODY>,
    signature: Signature,
}

impl<T> Serialize for Signed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SignedWire {
            signer: self.signer,
            body: self.body.clone(),
            signature: self.signature,
        }
        .serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Signed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = SignedWire::deserialize(d)?;
        Ok(Signed {
            signer: w.signer,
            body: w.body,
            signature: w.signature,
            kind: PhantomData,
        })
    }
}

impl<T: Artefact> Signed<T> {
    /// The fingerprint of the key that claims to have signed it.
    pub fn signer(&self) -> Fingerprint {
        self.signer
    }

    /// The signed bytes (the canonical encoding of `T`).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// SHA-256 over fingerprint, body and signature: names this exact artefact.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.signer.0);
        h.update(self.body.as_slice());
        h.update(self.signature.0);
        h.finalize().into()
    }

    /// Verifies the signature with `key` and decodes the body.
    pub fn verify_with(&self, key: &PublicKey) -> Result<T, SignatureError> {
        if key.fingerprint() != self.signer {
            return Err(SignatureError::UnknownSigner(self.signer));
        }
        verify_raw(key, T::DOMAIN, &self.body, &self.signature)?;
        Ok(T::decode(&self.body)?)
    }

    /// Verifies the signature with whichever of `keys` made it, and decodes the body.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<T, SignatureError> {
        let key = keys
            .iter()
            .find(|k| k.fingerprint() == self.signer)
            .ok_or(SignatureError::UnknownSigner(self.signer))?;
        self.verify_with(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::BoundedString;
    use rand_chacha::rand_core::SeedableRng;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note(BoundedString<32>);
    impl Message for Note {
        const NAME: &'static str = "note";
        const MAX_SIZE: usize = 64;
    }
    impl Artefact for Note {
        const DOMAIN: &'static str = "note";
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Other(BoundedString<32>);
    impl Message for Other {
        const NAME: &'static str = "other";
        const MAX_SIZE: usize = 64;
    }
    impl Artefact for Other {
        const DOMAIN: &'static str = "other";
    }

    fn key(seed: u64) -> SigningIdentity {
        SigningIdentity::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn sign_and_verify() {
        let k = key(1);
        let s = k.sign(&Note(BoundedString::new("hi").unwrap()));
        assert_eq!(
            s.verify(&[key(2).public_key(), k.public_key()])
                .unwrap()
                .0
                .as_str(),
            "hi"
        );
        assert!(matches!(
            s.verify(&[key(2).public_key()]),
            Err(SignatureError::UnknownSigner(_))
        ));
    }

    #[test]
    fn a_signature_is_bound_to_its_domain() {
        let k = key(1);
        let s = k.sign(&Note(BoundedString::new("hi").unwrap()));
        // Same bytes, presented as another kind of artefact.
        let wire = crate::codec::encode(&s);
        let as_other: Signed<Other> = postcard::from_bytes(&wire[1..]).unwrap();
        assert_eq!(
            as_other.verify(&[k.public_key()]),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let k = key(1);
        let s = k.sign(&Note(BoundedString::new("hello").unwrap()));
        let wire = crate::codec::encode(&s);
        for i in 1..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 0x01;
            if let Ok(t) = postcard::from_bytes::<Signed<Note>>(&w[1..]) {
                assert!(t.verify(&[k.public_key()]).is_err(), "byte {i}");
            }
        }
    }
}
