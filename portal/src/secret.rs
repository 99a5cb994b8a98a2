//! Secrets sealed under the administrator's passphrase: the portal root key's
//! seed and the master identity seeds the portal keeps for the builds it makes.
//!
//! ## Construction
//!
//! ```text
//! salt  = 16 random bytes
//! KEK   = Argon2id(v0x13, m_cost_kib, t_cost, p_cost)(passphrase, salt) → 32 bytes
//! nonce = 12 random bytes
//! ciphertext = AES-256-GCM(KEK, nonce, aad = "conclave/v1/portal-secret", secret) → 32 + 16 bytes
//! ```
//!
//! The Argon2 parameters travel with the sealed secret (so that they can be
//! raised later without losing old secrets) and are bound to it through the
//! key they derive: any change to them, to the salt, the nonce or the
//! ciphertext makes opening fail. Because a database may have been tampered
//! with, [`open`] refuses parameters beyond [`MAX_M_COST_KIB`], [`MAX_T_COST`]
//! and [`MAX_P_COST`] before it runs Argon2, so a doctored row cannot make the
//! portal allocate gigabytes or spin for hours.
//!
//! AES-GCM cannot tell a wrong passphrase from an altered record: both are
//! reported as [`SecretError::WrongPassphrase`]. The key-encryption key and
//! every plaintext copy of the secret are zeroized.

use core::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The associated data of every sealed secret: a domain label, so that a
/// ciphertext made for anything else never opens as a portal secret.
pub const AAD: &[u8] = b"conclave/v1/portal-secret";

/// The fewest characters a passphrase may have.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// The largest Argon2 memory cost [`open`] accepts: 4 GiB, in KiB.
pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// The largest Argon2 time cost (passes) [`open`] accepts.
pub const MAX_T_COST: u32 = 100;
/// The largest Argon2 parallelism [`open`] accepts.
pub const MAX_P_COST: u32 = 64;

/// Length of a sealed secret's ciphertext: the 32-byte secret and the 16-byte tag.
pub const CIPHERTEXT_LEN: usize = 32 + 16;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

/// The parameters [`seal`] uses: 64 MiB, 3 passes, 1 lane (about a third of
/// a second on one core of the development machine).
pub const DEFAULT_PARAMS: KdfParams = KdfParams {
    m_cost_kib: 64 * 1024,
    t_cost: 3,
    p_cost: 1,
};

/// A 32-byte secret encrypted under a key derived from a passphrase. Stored
/// as JSON (byte fields as lowercase hex). Nothing in it is secret on its
/// own, but its `Debug` prints only the parameters anyway.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Argon2 salt.
    #[serde(with = "hex_array")]
    pub salt: [u8; 16],
    /// AES-GCM nonce.
    #[serde(with = "hex_array")]
    pub nonce: [u8; 12],
    /// The encrypted secret followed by the GCM tag ([`CIPHERTEXT_LEN`] bytes).
    #[serde(with = "hex_vec")]
    pub ciphertext: Vec<u8>,
    /// Argon2 memory cost in KiB.
    pub m_cost_kib: u32,
    /// Argon2 time cost.
    pub t_cost: u32,
    /// Argon2 parallelism.
    pub p_cost: u32,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("m_cost_kib", &self.m_cost_kib)
            .field("t_cost", &self.t_cost)
            .field("p_cost", &self.p_cost)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl SealedSecret {
    /// The Argon2 parameters this secret was sealed with.
    pub fn params(&self) -> KdfParams {
        KdfParams {
            m_cost_kib: self.m_cost_kib,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
        }
    }
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The passphrase does not open the secret (or the sealed record was
    /// altered: the two cannot be told apart).
    #[error("the passphrase is wrong (or the sealed secret was altered): enter it again")]
    WrongPassphrase,
    /// The passphrase is too short to protect the portal's keys.
    #[error("the passphrase must have at least {min} characters: choose a longer one")]
    WeakPassphrase {
        /// The fewest characters accepted.
        min: usize,
    },
    /// The stored Argon2 parameters are outside what this portal accepts; the
    /// database was probably tampered with.
    #[error(
        "the sealed secret asks for Argon2 parameters {reason}, which this portal refuses: \
         the database may have been tampered with; restore it from a backup"
    )]
    UnsafeParameters {
        /// Which parameter is out of range.
        reason: String,
    },
    /// The sealed record has the wrong shape (e.g. a ciphertext of the wrong length).
    #[error("the sealed secret is malformed ({reason}): restore the database from a backup")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// A cryptographic primitive failed where it should not (an internal error).
    #[error("internal error while {0}: please report this")]
    Internal(&'static str),
}

/// Checks the portal's passphrase policy: at least [`MIN_PASSPHRASE_CHARS`] characters.
pub fn check_passphrase(passphrase: &str) -> Result<(), SecretError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(SecretError::WeakPassphrase {
            min: MIN_PASSPHRASE_CHARS,
        });
    }
    Ok(())
}

/// Seals `secret` under `passphrase` with [`DEFAULT_PARAMS`]. Refuses a
/// passphrase that [`check_passphrase`] refuses.
pub fn seal(
    secret: &[u8; 32],
    passphrase: &str,
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<SealedSecret, SecretError> {
    seal_with_params(secret, passphrase, DEFAULT_PARAMS, rng)
}

/// Seals `secret` under `passphrase` with the given Argon2 parameters. Use
/// [`seal`] in production; cheaper parameters are for tests. Refuses
/// parameters that [`open`] would refuse, and a passphrase that
/// [`check_passphrase`] refuses.
pub fn seal_with_params(
    secret: &[u8; 32],
    passphrase: &str,
    params: KdfParams,
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<SealedSecret, SecretError> {
    check_passphrase(passphrase)?;
    let argon = argon2_for(params)?;
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);

    let key = aead_key(&argon, passphrase, &salt)?;
    let mut in_out = secret.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(AAD),
        &mut in_out,
    )
    .map_err(|_| SecretError::Internal("encrypting a secret"))?;

    Ok(SealedSecret {
        salt,
        nonce,
        ciphertext: in_out,
        m_cost_kib: params.m_cost_kib,
        t_cost: params.t_cost,
        p_cost: params.p_cost,
    })
}

/// Opens a sealed secret with `passphrase`. Checks the stored parameters
/// before running Argon2 (see the module docs).
pub fn open(sealed: &SealedSecret, passphrase: &str) -> Result<Zeroizing<[u8; 32]>, SecretError> {
    if sealed.ciphertext.len() != CIPHERTEXT_LEN {
        return Err(SecretError::Malformed {
            reason: format!(
                "the ciphertext has {} bytes instead of {CIPHERTEXT_LEN}",
                sealed.ciphertext.len()
            ),
        });
    }
    let argon = argon2_for(sealed.params())?;
    let key = aead_key(&argon, passphrase, &sealed.salt)?;

    let mut in_out = Zeroizing::new(sealed.ciphertext.clone());
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(AAD),
            &mut in_out,
        )
        .map_err(|_| SecretError::WrongPassphrase)?;
    let mut out = Zeroizing::new([0u8; 32]);
    if plain.len() != out.len() {
        return Err(SecretError::Malformed {
            reason: format!("the secret has {} bytes instead of 32", plain.len()),
        });
    }
    out.copy_from_slice(plain);
    Ok(out)
}

/// Argon2id v0x13 with `params`, after checking them against the limits.
fn argon2_for(params: KdfParams) -> Result<Argon2<'static>, SecretError> {
    let unsafe_params = |reason: String| Err(SecretError::UnsafeParameters { reason });
    let KdfParams {
        m_cost_kib,
        t_cost,
        p_cost,
    } = params;
    if m_cost_kib > MAX_M_COST_KIB {
        return unsafe_params(format!(
            "m_cost = {m_cost_kib} KiB (more than the limit of {MAX_M_COST_KIB} KiB)"
        ));
    }
    if t_cost == 0 || t_cost > MAX_T_COST {
        return unsafe_params(format!("t_cost = {t_cost} (not within 1..={MAX_T_COST})"));
    }
    if p_cost == 0 || p_cost > MAX_P_COST {
        return unsafe_params(format!("p_cost = {p_cost} (not within 1..={MAX_P_COST})"));
    }
    let params = Params::new(m_cost_kib, t_cost, p_cost, Some(32)).map_err(|e| {
        SecretError::UnsafeParameters {
            reason: format!(
                "m_cost = {m_cost_kib} KiB, t_cost = {t_cost}, p_cost = {p_cost} ({e})"
            ),
        }
    })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The AES-256-GCM key derived from `passphrase` and `salt`; the raw key is zeroized.
fn aead_key(
    argon: &Argon2<'_>,
    passphrase: &str,
    salt: &[u8; 16],
) -> Result<LessSafeKey, SecretError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, kek.as_mut_slice())
        .map_err(|_| SecretError::Internal("deriving the key from the passphrase"))?;
    let key = UnboundKey::new(&AES_256_GCM, kek.as_slice())
        .map_err(|_| SecretError::Internal("preparing the key-encryption key"))?;
    Ok(LessSafeKey::new(key))
}

/// Serde helpers: a fixed-size byte array as a hex string.
mod hex_array {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|e| D::Error::custom(format!("expected {N} bytes in hex: {e}")))?;
        Ok(out)
    }
}

/// Serde helpers: a byte vector as a hex string.
mod hex_vec {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Longest hex string accepted (a sealed secret's ciphertext is 96 hex digits).
    const MAX_HEX: usize = 1024;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() > MAX_HEX {
            return Err(D::Error::custom(format!(
                "hex string of {} characters, the limit is {MAX_HEX}",
                text.len()
            )));
        }
        hex::decode(&text).map_err(|e| D::Error::custom(format!("expected hex: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    /// Cheap parameters so that the tests run quickly; the construction is the same.
    const FAST: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    const PASS: &str = "correct horse battery staple";

    fn sealed() -> SealedSecret {
        seal_with_params(&[7; 32], PASS, FAST, &mut OsRng).unwrap()
    }

    #[test]
    fn round_trip() {
        let s = sealed();
        assert_eq!(s.ciphertext.len(), CIPHERTEXT_LEN);
        assert_eq!(*open(&s, PASS).unwrap(), [7; 32]);
        // The same secret sealed twice gives unrelated records.
        let t = sealed();
        assert_ne!(s.salt, t.salt);
        assert_ne!(s.nonce, t.nonce);
        assert_ne!(s.ciphertext, t.ciphertext);
    }

    #[test]
    fn round_trip_with_the_default_parameters() {
        let s = seal(&[9; 32], PASS, &mut OsRng).unwrap();
        assert_eq!(s.params(), DEFAULT_PARAMS);
        assert_eq!(
            (s.m_cost_kib, s.t_cost, s.p_cost),
            (64 * 1024, 3, 1),
            "Argon2id m = 64 MiB, t = 3, p = 1"
        );
        assert_eq!(*open(&s, PASS).unwrap(), [9; 32]);
    }

    #[test]
    fn round_trips_through_json_without_showing_the_secret() {
        let s = sealed();
        let json = serde_json::to_string(&s).unwrap();
        let back: SealedSecret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(*open(&back, PASS).unwrap(), [7; 32]);
        assert!(json.contains(&hex::encode(s.salt)));
        let debug = format!("{s:?}");
        assert!(!debug.contains(&hex::encode(s.salt)));
        assert!(!debug.contains("7, 7"));
    }

    #[test]
    fn a_wrong_passphrase_is_refused() {
        let s = sealed();
        let e = open(&s, "correct horse battery stapl").unwrap_err();
        assert_eq!(e, SecretError::WrongPassphrase);
        assert!(e.to_string().contains("the passphrase is wrong"));
    }

    #[test]
    fn tampered_records_are_refused() {
        let s = sealed();
        for i in 0..s.ciphertext.len() {
            let mut t = s.clone();
            t.ciphertext[i] ^= 1;
            assert_eq!(
                open(&t, PASS),
                Err(SecretError::WrongPassphrase),
                "ciphertext byte {i}"
            );
        }
        for i in 0..s.salt.len() {
            let mut t = s.clone();
            t.salt[i] ^= 1;
            assert_eq!(
                open(&t, PASS),
                Err(SecretError::WrongPassphrase),
                "salt byte {i}"
            );
        }
        for i in 0..s.nonce.len() {
            let mut t = s.clone();
            t.nonce[i] ^= 1;
            assert_eq!(
                open(&t, PASS),
                Err(SecretError::WrongPassphrase),
                "nonce byte {i}"
            );
        }
        // Changed parameters derive another key.
        let mut t = s.clone();
        t.t_cost = 2;
        assert_eq!(open(&t, PASS), Err(SecretError::WrongPassphrase));
        let mut t = s.clone();
        t.m_cost_kib = 128;
        assert_eq!(open(&t, PASS), Err(SecretError::WrongPassphrase));
        // A truncated or extended ciphertext.
        let mut t = s.clone();
        t.ciphertext.pop();
        assert!(matches!(open(&t, PASS), Err(SecretError::Malformed { .. })));
        let mut t = s;
        t.ciphertext.push(0);
        assert!(matches!(open(&t, PASS), Err(SecretError::Malformed { .. })));
    }

    #[test]
    fn absurd_parameters_are_refused_before_argon2_runs() {
        let s = sealed();
        let cases = [
            (u32::MAX, 1, 1, "m_cost"),
            (MAX_M_COST_KIB + 1, 1, 1, "m_cost"),
            (64, MAX_T_COST + 1, 1, "t_cost"),
            (64, u32::MAX, 1, "t_cost"),
            (64, 0, 1, "t_cost"),
            (64, 1, 0, "p_cost"),
            (64, 1, MAX_P_COST + 1, "p_cost"),
            (4, 1, 1, "m_cost"), // below Argon2's minimum of 8 KiB per lane
        ];
        for (m, t, p, which) in cases {
            let mut tampered = s.clone();
            tampered.m_cost_kib = m;
            tampered.t_cost = t;
            tampered.p_cost = p;
            let e = open(&tampered, PASS).unwrap_err();
            assert!(
                matches!(&e, SecretError::UnsafeParameters { reason } if reason.contains(which)),
                "{m} {t} {p}: {e}"
            );
            assert!(e.to_string().contains("tampered"), "{e}");
        }
        // Sealing refuses them as well.
        let huge = KdfParams {
            m_cost_kib: u32::MAX,
            ..FAST
        };
        assert!(matches!(
            seal_with_params(&[1; 32], PASS, huge, &mut OsRng),
            Err(SecretError::UnsafeParameters { .. })
        ));
    }

    #[test]
    fn short_passphrases_are_refused() {
        let e = check_passphrase("eleven char").unwrap_err();
        assert_eq!(e, SecretError::WeakPassphrase { min: 12 });
        assert!(e.to_string().contains("at least 12 characters"));
        assert!(check_passphrase("twelve chars").is_ok());
        // Characters, not bytes.
        assert!(check_passphrase("ééééééééééé").is_err());
        assert!(check_passphrase("éééééééééééé").is_ok());
        assert_eq!(
            seal_with_params(&[1; 32], "short", FAST, &mut OsRng).unwrap_err(),
            SecretError::WeakPassphrase { min: 12 }
        );
    }
}
