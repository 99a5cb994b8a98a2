//! The portal's operations, over a [`Store`]: keys, licenses, revocation
//! lists and branded builds. The command line (and, later, the web UI) are
//! thin layers over this.

use conclave_protocol::artefact::{
    Branding, BuildConfig, License, LicenseNumber, PolicyProfile, RelayEntry, RevocationList, Role,
    Version, MAX_RELAYS, MAX_SESSION_ID_DIGITS, MIN_SESSION_ID_DIGITS,
};
use conclave_protocol::bounded::{BoundedString, BoundedVec};
use conclave_protocol::sign::{PublicKey, Signed, SigningIdentity};
use conclave_protocol::time::UnixTime;
use conclave_protocol::trailer::{self, BuildTrailer, VerifiedBuild};
use zeroize::Zeroizing;

use crate::secret::{self, SecretError};
use crate::store::{LicenseRecord, RootKeyRecord, Store, StoreError};

/// Why a portal operation failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed secret could not be opened or made.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// `init` was not run.
    #[error("the portal has no root key yet: run `conclave-portal init` first")]
    NotInitialised,
    /// `init` was run before.
    #[error("the portal already has a root key ({0}); it is never replaced by init")]
    AlreadyInitialised(String),
    /// A value is out of range or too long.
    #[error("{0}")]
    Invalid(String),
    /// A build could not be made or checked.
    #[error(transparent)]
    Build(#[from] trailer::BuildError),
    /// The build is valid but signed by a key this portal does not hold.
    #[error("the build is signed by portal key {0}, which is not one of this portal's keys")]
    ForeignBuild(String),
}

/// The portal's root key, opened with the admin passphrase for one operation.
pub struct Unlocked {
    root: SigningIdentity,
    key_id: String,
    passphrase: Zeroizing<String>,
}

impl core::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Unlocked({})", self.key_id)
    }
}

impl Unlocked {
    /// The root public key.
    pub fn public_key(&self) -> PublicKey {
        self.root.public_key()
    }
}

/// The portal.
#[derive(Debug)]
pub struct Portal {
    store: Store,
}

/// Wall-clock time now.
pub fn now() -> UnixTime {
    UnixTime::from_system(std::time::SystemTime::now())
}

fn bounded<const N: usize>(what: &str, s: &str) -> Result<BoundedString<N>, PortalError> {
    BoundedString::new(s)
        .map_err(|_| PortalError::Invalid(format!("{what} is longer than {N} bytes")))
}

/// The portal's version: the version of the apps it brands.
pub fn portal_version() -> Version {
    env!("CARGO_PKG_VERSION")
        .parse()
        .unwrap_or(Version::new(0, 0, 0))
}

/// The profile new sessions start from: conservative (no remote control, no
/// files, no recording), a password required, six-digit IDs.
pub fn default_profile(name: &str) -> Result<PolicyProfile, PortalError> {
    Ok(PolicyProfile {
        name: bounded("profile name", name)?,
        screen_sharing: true,
        presenter_handover: true,
        remote_control: false,
        control_countdown_secs: 10,
        countdown_default: conclave_protocol::artefact::CountdownDefault::Deny,
        file_transfer: false,
        shared_files: false,
        recording: conclave_protocol::artefact::RecordingPolicy::Allowed,
        autolock: true,
        max_participants: 100,
        session_id_digits: 6,
        password_required: true,
        password_rules: conclave_protocol::artefact::PasswordRules {
            min_length: 8,
            letter: true,
            digit: true,
            symbol: false,
        },
        min_client_version: portal_version(),
        port_mapper: false,
    })
}

/// Checks a profile's values.
pub fn check_profile(p: &PolicyProfile) -> Result<(), PortalError> {
    if !(MIN_SESSION_ID_DIGITS..=MAX_SESSION_ID_DIGITS).contains(&p.session_id_digits) {
        return Err(PortalError::Invalid(format!(
            "session_id_digits must be between {MIN_SESSION_ID_DIGITS} and {MAX_SESSION_ID_DIGITS}"
        )));
    }
    if p.max_participants == 0 {
        return Err(PortalError::Invalid(
            "max_participants must be at least 1".into(),
        ));
    }
    if p.password_rules.min_length == 0 && p.password_required {
        return Err(PortalError::Invalid(
            "a required password needs a minimum length of at least 1".into(),
        ));
    }
    Ok(())
}

impl Portal {
    /// Opens (and migrates) the database at `location`.
    pub async fn open(location: &str) -> Result<Portal, PortalError> {
        Ok(Portal {
            store: Store::open(location).await?,
        })
    }

    /// The store, for the simple record operations (relays, profiles, brands).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes the portal root key, sealed under `passphrase`; returns its public key.
    pub async fn init(
        &self,
        passphrase: &str,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<PublicKey, PortalError> {
        secret::check_passphrase(passphrase)?;
        if let Some(k) = self.store.active_root_key().await? {
            return Err(PortalError::AlreadyInitialised(k.key_id));
        }
        let root = SigningIdentity::generate(rng);
        let sealed = secret::seal(&root.to_seed(), passphrase, rng)?;
        let public_key = root.public_key();
        self.store
            .insert_root_key(&RootKeyRecord {
                key_id: public_key.fingerprint().to_string(),
                public_key,
                sealed,
                created_at: now().0 as i64,
                active: true,
            })
            .await?;
        Ok(public_key)
    }

    /// The active root public key.
    pub async fn public_key(&self) -> Result<PublicKey, PortalError> {
        Ok(self
            .store
            .active_root_key()
            .await?
            .ok_or(PortalError::NotInitialised)?
            .public_key)
    }

    /// Opens the active root key with the admin passphrase.
    pub async fn unlock(&self, passphrase: &str) -> Result<Unlocked, PortalError> {
        let k = self
            .store
            .active_root_key()
            .await?
            .ok_or(PortalError::NotInitialised)?;
        let seed = secret::open(&k.sealed, passphrase)?;
        Ok(Unlocked {
            root: SigningIdentity::from_seed(&seed),
            key_id: k.key_id,
            passphrase: Zeroizing::new(passphrase.to_string()),
        })
    }

    /// Issues a license: a fresh ten-digit number and master identity key.
    pub async fn issue_license(
        &self,
        unlocked: &Unlocked,
        licensee: &str,
        profile: &str,
        valid_days: u32,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<LicenseRecord, PortalError> {
        bounded::<128>("licensee", licensee)?;
        self.store.profile(profile).await?;
        let identity = SigningIdentity::generate(rng);
        let master_seed = secret::seal(&identity.to_seed(), &unlocked.passphrase, rng)?;
        let issued = now().0;
        for _ in 0..32 {
            let n =
                LicenseNumber::MIN + rng.next_u64() % (LicenseNumber::MAX - LicenseNumber::MIN + 1);
            let Some(number) = LicenseNumber::new(n) else {
                continue;
            };
            let record = LicenseRecord {
                number,
                licensee: licensee.to_string(),
                profile: profile.to_string(),
                master_public: identity.public_key(),
                master_seed: master_seed.clone(),
                issued_at: issued as i64,
                expires_at: issued.saturating_add(u64::from(valid_days) * 86_400) as i64,
                revoked_at: None,
                signed_by: unlocked.key_id.clone(),
            };
            match self.store.insert_license(&record).await {
                Ok(()) => return Ok(record),
                Err(StoreError::Duplicate { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PortalError::Invalid(
            "could not draw an unused license number".into(),
        ))
    }

    /// The signed license of a record.
    pub fn sign_license(
        &self,
        unlocked: &Unlocked,
        r: &LicenseRecord,
    ) -> Result<Signed<License>, PortalError> {
        Ok(unlocked.root.sign(&License {
            number: r.number,
            licensee: bounded("licensee", &r.licensee)?,
            master_key: r.master_public,
            profile: bounded("profile name", &r.profile)?,
            issued_at: UnixTime(u64::try_from(r.issued_at).unwrap_or(0)),
            expires_at: UnixTime(u64::try_from(r.expires_at).unwrap_or(0)),
        }))
    }

    /// A newly numbered, signed revocation list of every revoked license.
    pub async fn revocation_list(
        &self,
        unlocked: &Unlocked,
    ) -> Result<Signed<RevocationList>, PortalError> {
        let revoked = self.store.revoked_numbers().await?;
        let list = RevocationList {
            serial: self.store.next_revocation_serial().await?,
            issued_at: now(),
            revoked: BoundedVec::new(revoked)
                .map_err(|e| PortalError::Invalid(format!("too many revoked licenses: {e}")))?,
        };
        Ok(unlocked.root.sign(&list))
    }

    /// Brands a generic executable: the signed build config for `role` with
    /// every relay, the profile and the brand, and for a master its license
    /// and identity key.
    #[allow(clippy::too_many_arguments)]
    pub async fn build(
        &self,
        unlocked: &Unlocked,
        role: Role,
        executable: &[u8],
        profile: &str,
        brand: &str,
        license: Option<LicenseNumber>,
        version: Version,
    ) -> Result<Vec<u8>, PortalError> {
        let profile = self.store.profile(profile).await?;
        check_profile(&profile)?;
        let branding: Branding = self.store.brand(brand).await?;
        let relays: Vec<RelayEntry> = self
            .store
            .relays()
            .await?
            .into_iter()
            .map(|r| {
                Ok(RelayEntry {
                    name: bounded("relay name", &r.name)?,
                    host: bounded("relay host", &r.host)?,
                    quic_port: r.quic_port,
                    tls_port: r.tls_port,
                    websocket_port: r.websocket_port,
                    public_key: r.public_key,
                    region: bounded("relay region", &r.region)?,
                    priority: r.priority,
                })
            })
            .collect::<Result<_, PortalError>>()?;
        if relays.is_empty() {
            return Err(PortalError::Invalid(
                "the portal has no relays: add one with `conclave-portal relay add` first".into(),
            ));
        }
        let relays = BoundedVec::new(relays).map_err(|_| {
            PortalError::Invalid(format!("at most {MAX_RELAYS} relays fit in a build"))
        })?;
        let (signed_license, master_seed) = match (role, license) {
            (Role::Participant, None) => (None, None),
            (Role::Participant, Some(_)) => {
                return Err(PortalError::Invalid(
                    "a participant build carries no license".into(),
                ))
            }
            (Role::Master, None) => {
                return Err(PortalError::Invalid(
                    "a master build needs --license".into(),
                ))
            }
            (Role::Master, Some(n)) => {
                let r = self.store.license(n).await?;
                if r.revoked_at.is_some() {
                    return Err(PortalError::Invalid(format!("license {n} is revoked")));
                }
                let seed = secret::open(&r.master_seed, &unlocked.passphrase)?;
                (Some(self.sign_license(unlocked, &r)?), Some(*seed))
            }
        };
        let config = BuildConfig {
            role,
            version,
            binary_sha256: trailer::binary_hash(executable),
            relays,
            profile,
            branding,
            portal_key: unlocked.root.public_key(),
            license: signed_license,
            issued_at: now(),
        };
        let t = BuildTrailer {
            config: unlocked.root.sign(&config),
            master_seed,
        };
        Ok(trailer::brand(executable, &t)?)
    }

    /// Checks a branded file from outside: valid for its role, and signed by
    /// one of this portal's keys.
    pub async fn verify(&self, file: &[u8]) -> Result<VerifiedBuild, PortalError> {
        let (_, t) = trailer::split(file)?;
        let role = conclave_protocol::codec::Message::decode(t.config.body())
            .map(|c: BuildConfig| c.role)
            .map_err(trailer::BuildError::from)?;
        let verified = trailer::verify(file, role, now())?;
        let ours = self.store.root_keys().await?;
        if !ours
            .iter()
            .any(|k| k.public_key == verified.config.portal_key)
        {
            return Err(PortalError::ForeignBuild(
                verified.config.portal_key.fingerprint().to_string(),
            ));
        }
        Ok(verified)
    }
}
