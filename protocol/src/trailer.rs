//! The build trailer: how a branded executable carries its signed build
//! configuration (R4, R10).
//!
//! ```text
//! +----------------------+--------------------------------+--------------------------------+
//! | generic executable   | trailer body                   | footer (32 bytes)              |
//! | (hashed: binary_sha256) | version byte + postcard of  | body length (u32 BE)           |
//! |                      | BuildTrailer                   | 4 zero bytes                   |
//! |                      |                                | "CONCLAVE/BUILD-TRAILER/1"     |
//! +----------------------+--------------------------------+--------------------------------+
//! ```
//!
//! The portal appends it; the apps read their own file at start and refuse to
//! run unless the configuration's signature verifies under the portal key it
//! names, the executable's SHA-256 matches `binary_sha256`, the role is
//! theirs, and (for a master) the identity key in the trailer is the one its
//! license names. A relay checks the same signature against the portal keys it
//! trusts, so a copy re-signed by anyone else cannot connect (stage 1).
//!
//! What this does not do: prove to the app itself *which* portal signed it —
//! the key it checks against comes from the same file. That is the relay's
//! job, and the operating system's code signing, where used.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artefact::{BuildConfig, License, Role};
use crate::codec::{DecodeError, Message};
use crate::sign::{SignatureError, Signed, SigningIdentity};
use crate::time::UnixTime;

/// The footer's magic.
pub const MAGIC: &[u8; 24] = b"CONCLAVE/BUILD-TRAILER/1";
/// Length of the footer.
pub const FOOTER_LEN: usize = 32;
/// The largest trailer body.
pub const MAX_BODY: usize = 96 * 1024;

/// What the trailer body holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildTrailer {
    /// The signed build configuration.
    pub config: Signed<BuildConfig>,
    /// For a master: the secret seed of its identity key (IK_M). A master
    /// build is a license: whoever holds the file holds the key.
    pub master_seed: Option<[u8; 32]>,
}

impl Message for BuildTrailer {
    const NAME: &'static str = "build trailer";
    const MAX_SIZE: usize = MAX_BODY;
}

/// Why a build was refused; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No trailer at the end of the file.
    #[error("this executable carries no build configuration: it is a generic build; get a branded one from your organisation's portal")]
    NoTrailer,
    /// The trailer is malformed.
    #[error("the build configuration is damaged ({0}): download the app again")]
    Malformed(String),
    /// The configuration's signature does not verify.
    #[error("the build configuration fails its signature check ({0}): the file was altered; download the app again")]
    Signature(#[from] SignatureError),
    /// The executable's hash does not match.
    #[error("the executable does not match its build configuration: the file was altered; download the app again")]
    BinaryMismatch,
    /// The build is for the other app.
    #[error("this is a {found} build, not a {expected} build")]
    WrongRole {
        /// The role the app is.
        expected: Role,
        /// The role in the configuration.
        found: Role,
    },
    /// A master build without a license or identity key, or with a key its license does not name.
    #[error("this master build's license or identity key is missing or does not match: ask your administrator for a new build")]
    BadMasterKey,
    /// The input already carries a trailer.
    #[error("this executable is already branded; brand the generic build instead")]
    AlreadyBranded,
}

impl From<DecodeError> for BuildError {
    fn from(e: DecodeError) -> Self {
        BuildError::Malformed(e.to_string())
    }
}

/// SHA-256 of an executable.
pub fn binary_hash(executable: &[u8]) -> [u8; 32] {
    Sha256::digest(executable).into()
}

/// Whether `file` ends in a trailer footer.
pub fn has_trailer(file: &[u8]) -> bool {
    file.len() >= FOOTER_LEN && file.get(file.len() - MAGIC.len()..) == Some(&MAGIC[..])
}

/// Appends a trailer to a generic executable.
pub fn brand(executable: &[u8], trailer: &BuildTrailer) -> Result<Vec<u8>, BuildError> {
    if has_trailer(executable) {
        return Err(BuildError::AlreadyBranded);
    }
    let body = trailer.encode();
    let len =
        u32::try_from(body.len()).map_err(|_| BuildError::Malformed("trailer too large".into()))?;
    if body.len() > MAX_BODY {
        return Err(BuildError::Malformed("trailer too large".into()));
    }
    let mut out = Vec::with_capacity(executable.len() + body.len() + FOOTER_LEN);
    out.extend_from_slice(executable);
    out.extend_from_slice(&body);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(MAGIC);
    Ok(out)
}

/// A verified build.
#[derive(Debug)]
pub struct VerifiedBuild {
    /// The configuration.
    pub config: BuildConfig,
    /// The signed form, as sent in Hello.
    pub signed: Signed<BuildConfig>,
    /// For a master: its license and identity key.
    pub master: Option<(License, SigningIdentity)>,
}

/// Splits a branded file into executable and trailer, without verifying.
pub fn split(file: &[u8]) -> Result<(&[u8], BuildTrailer), BuildError> {
    if !has_trailer(file) {
        return Err(BuildError::NoTrailer);
    }
    let footer_at = file.len() - FOOTER_LEN;
    let footer = file.get(footer_at..).ok_or(BuildError::NoTrailer)?;
    let len = footer
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or(BuildError::NoTrailer)? as usize;
    if footer.get(4..8) != Some(&[0u8; 4][..]) || len > MAX_BODY || len > footer_at {
        return Err(BuildError::Malformed("bad trailer length".into()));
    }
    let body_at = footer_at - len;
    let body = file.get(body_at..footer_at).ok_or(BuildError::NoTrailer)?;
    let exe = file.get(..body_at).ok_or(BuildError::NoTrailer)?;
    Ok((exe, BuildTrailer::decode(body)?))
}

/// Verifies a branded file for an app of `role` (see the module docs).
/// `now` is used for nothing but is taken so that callers think about it:
/// an expired license still lets the app start and show its configuration;
/// the relay refuses it.
pub fn verify(file: &[u8], role: Role, _now: UnixTime) -> Result<VerifiedBuild, BuildError> {
    let (exe, trailer) = split(file)?;
    let unverified = BuildConfig::decode(trailer.config.body())?;
    let config = trailer.config.verify_with(&unverified.portal_key)?;
    if binary_hash(exe) != config.binary_sha256 {
        return Err(BuildError::BinaryMismatch);
    }
    if config.role != role {
        return Err(BuildError::WrongRole {
            expected: role,
            found: config.role,
        });
    }
    let master = match role {
        Role::Participant => None,
        Role::Master => {
            let license = config
                .license
                .as_ref()
                .ok_or(BuildError::BadMasterKey)?
                .verify_with(&config.portal_key)
                .map_err(|_| BuildError::BadMasterKey)?;
            let seed = trailer.master_seed.ok_or(BuildError::BadMasterKey)?;
            let identity = SigningIdentity::from_seed(&seed);
            if identity.public_key() != license.master_key {
                return Err(BuildError::BadMasterKey);
            }
            Some((license, identity))
        }
    };
    Ok(VerifiedBuild {
        config,
        signed: trailer.config,
        master,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn branded(role: Role) -> (Vec<u8>, Vec<u8>) {
        let portal = fixtures::identity(1);
        let exe = b"\x7fELF pretend executable".repeat(8);
        let master = fixtures::identity(2);
        let license = (role == Role::Master)
            .then(|| fixtures::license(&portal, master.public_key(), 1_234_567_890));
        let mut cfg = fixtures::build(&portal, role, fixtures::VERSION, license)
            .verify(&[portal.public_key()])
            .unwrap();
        cfg.binary_sha256 = binary_hash(&exe);
        let trailer = BuildTrailer {
            config: portal.sign(&cfg),
            master_seed: (role == Role::Master).then(|| *master.to_seed()),
        };
        (exe.clone(), brand(&exe, &trailer).unwrap())
    }

    /// R10: a branded build verifies; every flipped byte, of the executable
    /// or of the trailer, makes it refuse.
    #[test]
    fn r10_any_flipped_byte_is_refused() {
        for role in [Role::Participant, Role::Master] {
            let (exe, file) = branded(role);
            let ok = verify(&file, role, fixtures::NOW).unwrap();
            assert_eq!(ok.config.role, role);
            assert_eq!(ok.master.is_some(), role == Role::Master);
            for i in 0..file.len() {
                let mut f = file.clone();
                f[i] ^= 0x01;
                assert!(
                    verify(&f, role, fixtures::NOW).is_err(),
                    "{role:?}: byte {i} of {} (exe {})",
                    file.len(),
                    exe.len()
                );
            }
        }
    }

    #[test]
    fn wrong_role_generic_and_double_branding_are_refused() {
        let (exe, file) = branded(Role::Participant);
        assert!(matches!(
            verify(&file, Role::Master, fixtures::NOW),
            Err(BuildError::WrongRole { .. })
        ));
        assert!(matches!(
            verify(&exe, Role::Participant, fixtures::NOW),
            Err(BuildError::NoTrailer)
        ));
        let (_, trailer) = split(&file).unwrap();
        assert!(matches!(
            brand(&file, &trailer),
            Err(BuildError::AlreadyBranded)
        ));
        // A trailer moved onto another executable.
        let mut other = b"another program".to_vec();
        other.extend_from_slice(&file[exe.len()..]);
        assert!(matches!(
            verify(&other, Role::Participant, fixtures::NOW),
            Err(BuildError::BinaryMismatch)
        ));
    }

    #[test]
    fn a_master_build_with_someone_elses_key_is_refused() {
        let (exe, file) = branded(Role::Master);
        let (_, mut trailer) = split(&file).unwrap();
        trailer.master_seed = Some(*fixtures::identity(3).to_seed());
        let f = brand(&exe, &trailer).unwrap();
        assert!(matches!(
            verify(&f, Role::Master, fixtures::NOW),
            Err(BuildError::BadMasterKey)
        ));
    }
}
