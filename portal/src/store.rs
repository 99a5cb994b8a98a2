//! The portal's database: root keys, relays, policy profiles, brands,
//! licenses and the revocation-list serial, in SQLite (the default) or
//! PostgreSQL.
//!
//! ## Backends
//!
//! [`Store::open`] takes a `postgres://` or `postgresql://` URL, a `sqlite:`
//! URL, or a file path (an SQLite database, created when missing). Both
//! backends go through sqlx's `Any` driver with one set of migrations
//! (`portal/migrations/`, applied at open), so the SQL is kept to what both
//! understand:
//!
//! - only `BIGINT` and `TEXT` columns (the `Any` driver cannot read an SQLite
//!   `BOOLEAN` column, so flags are `BIGINT` 0/1 with a `CHECK`);
//! - `u64` license numbers as `BIGINT`, public keys as lowercase hex text,
//!   structured values ([`PolicyProfile`], [`Branding`], [`SealedSecret`]) as
//!   JSON text;
//! - `$1, $2, …` placeholders, `ON CONFLICT`, `RETURNING` (SQLite ≥ 3.35; sqlx
//!   bundles a newer one);
//! - lists are sorted in Rust after reading, so the order is the same byte
//!   order on both backends whatever the PostgreSQL collation.
//!
//! ## Invariants the database keeps
//!
//! - At most one root key is active (a partial unique index); switching is
//!   one transaction.
//! - The revocation-list serial is one row incremented by a single
//!   `UPDATE … RETURNING`, so concurrent callers never see the same value.
//!
//! Values are checked on the way in (a root key's ID is its fingerprint; a
//! relay's and a license's strings fit the protocol's bounds) and on the way
//! out: a row that does not decode is reported as [`StoreError::Corrupt`],
//! never skipped.

use conclave_protocol::artefact::{Branding, License, LicenseNumber, PolicyProfile, RelayEntry};
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::sign::PublicKey;
use conclave_protocol::time::UnixTime;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Row};

use crate::secret::SealedSecret;

/// The schema, embedded at build time from `portal/migrations/`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Why a database operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation (connection, SQL, migration).
    #[error(
        "database error: {0} (check that the database is reachable and that the portal may write to it)"
    )]
    Database(String),
    /// The named record does not exist.
    #[error("there is no {what} {name:?}: check the name against the list")]
    NotFound {
        /// The kind of record.
        what: &'static str,
        /// The name or number asked for.
        name: String,
    },
    /// A record with this name already exists.
    #[error("{what} {name:?} already exists: use another, or change or remove the existing one")]
    Duplicate {
        /// The kind of record.
        what: &'static str,
        /// The name or number that is taken.
        name: String,
    },
    /// A stored value does not decode (JSON, hex, or a number out of range).
    #[error(
        "the stored {what} cannot be read ({reason}): the database was changed outside the portal; \
         restore it from a backup"
    )]
    Corrupt {
        /// The kind of record.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A value offered for storage is not acceptable.
    #[error("cannot store this {what}: {reason}")]
    Invalid {
        /// The kind of record.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The location names a database this portal cannot use.
    #[error(
        "{0:?} is not a database the portal can use: give a postgres:// or sqlite:// URL, \
         or the path of an SQLite file"
    )]
    Unsupported(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Which database a [`Store`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (or in-memory database).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A portal root key: its public half, its seed sealed under the admin
/// passphrase, and whether it is the one that signs now. Older keys stay
/// for rotation (relays and builds may still trust them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyRecord {
    /// The key's fingerprint in hex ([`conclave_protocol::sign::Fingerprint`]'s `Display`).
    pub key_id: String,
    /// The public key.
    pub public_key: PublicKey,
    /// The 32-byte seed, sealed.
    pub sealed: SealedSecret,
    /// When it was made, Unix seconds.
    pub created_at: i64,
    /// Whether this is the key that signs now.
    pub active: bool,
}

impl RootKeyRecord {
    /// A record for `public_key`, with `key_id` set to its fingerprint.
    pub fn new(public_key: PublicKey, sealed: SealedSecret, created_at: i64, active: bool) -> Self {
        RootKeyRecord {
            key_id: public_key.fingerprint().to_string(),
            public_key,
            sealed,
            created_at,
            active,
        }
    }
}

/// A relay in the portal's relay list (R18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRecord {
    /// Unique name (at most 64 bytes).
    pub name: String,
    /// Host name or address (at most 253 bytes).
    pub host: String,
    /// QUIC (UDP) port, 0 if not offered.
    pub quic_port: u16,
    /// TLS-over-TCP port, 0 if not offered.
    pub tls_port: u16,
    /// WebSocket-over-TLS port, 0 if not offered.
    pub websocket_port: u16,
    /// The relay's Ed25519 key, which clients pin.
    pub public_key: PublicKey,
    /// Region label (at most 32 bytes).
    pub region: String,
    /// Lower is preferred.
    pub priority: u8,
}

impl RelayRecord {
    /// The entry baked into a build's relay list.
    pub fn to_entry(&self) -> Result<RelayEntry, StoreError> {
        Ok(RelayEntry {
            name: bounded("relay", "name", &self.name)?,
            host: bounded("relay", "host", &self.host)?,
            quic_port: self.quic_port,
            tls_port: self.tls_port,
            websocket_port: self.websocket_port,
            public_key: self.public_key,
            region: bounded("relay", "region", &self.region)?,
            priority: self.priority,
        })
    }
}

/// A license the portal issued (R8), with the master identity seed it made
/// for it, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseRecord {
    /// The license number.
    pub number: LicenseNumber,
    /// Who holds it (at most 128 bytes).
    pub licensee: String,
    /// The policy profile's name (at most 64 bytes).
    pub profile: String,
    /// The master identity key IK_M.
    pub master_public: PublicKey,
    /// IK_M's seed, sealed under the admin passphrase.
    pub master_seed: SealedSecret,
    /// When it was issued, Unix seconds.
    pub issued_at: i64,
    /// When it stops being valid, Unix seconds.
    pub expires_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// The `key_id` of the root key that signed it.
    pub signed_by: String,
}

impl LicenseRecord {
    /// The license as the protocol signs it.
    pub fn to_license(&self) -> Result<License, StoreError> {
        let time = |field: &str, t: i64| {
            u64::try_from(t)
                .map(UnixTime)
                .map_err(|_| StoreError::Invalid {
                    what: "license",
                    reason: format!("{field} is {t}, before 1970"),
                })
        };
        Ok(License {
            number: self.number,
            licensee: bounded("license", "licensee", &self.licensee)?,
            master_key: self.master_public,
            profile: bounded("license", "profile", &self.profile)?,
            issued_at: time("issued_at", self.issued_at)?,
            expires_at: time("expires_at", self.expires_at)?,
        })
    }
}

/// `text` as a bounded string, or why it does not fit.
fn bounded<const N: usize>(
    what: &'static str,
    field: &str,
    text: &str,
) -> Result<BoundedString<N>, StoreError> {
    BoundedString::new(text).map_err(|e| StoreError::Invalid {
        what,
        reason: format!(
            "the {field} is {} bytes long, the limit is {}",
            e.len, e.max
        ),
    })
}

/// The portal's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Where to connect, resolved from what the administrator gave.
struct Target {
    url: String,
    backend: Backend,
    in_memory: bool,
}

fn resolve(location: &str) -> Result<Target, StoreError> {
    let location = location.trim();
    if let Some((scheme, _)) = location.split_once("://") {
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Backend::Postgres,
            "sqlite" => Backend::Sqlite,
            _ => return Err(StoreError::Unsupported(redact(location))),
        };
        return Ok(Target {
            url: location.to_owned(),
            backend,
            in_memory: backend == Backend::Sqlite && is_memory(location),
        });
    }
    if location.to_ascii_lowercase().starts_with("sqlite:") {
        return Ok(Target {
            url: location.to_owned(),
            backend: Backend::Sqlite,
            in_memory: is_memory(location),
        });
    }
    if location.is_empty() {
        return Err(StoreError::Unsupported(String::new()));
    }
    let path = std::path::absolute(location).map_err(|e| {
        StoreError::Database(format!(
            "cannot resolve the database path {location:?}: {e}"
        ))
    })?;
    let path = path.to_str().ok_or_else(|| {
        StoreError::Database(format!("the database path {location:?} is not valid UTF-8"))
    })?;
    Ok(Target {
        url: format!("sqlite://{}?mode=rwc", percent_encode_path(path)),
        backend: Backend::Sqlite,
        in_memory: false,
    })
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Percent-encodes every byte of `path` outside `A-Z a-z 0-9 - . _ ~ /`, so
/// that `?`, `#`, `%`, `@`, `:` and spaces in a file name survive URL
/// parsing (sqlx decodes them again).
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `location` with any user name and password removed.
fn redact(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}{path}")
        }
        None => location.to_owned(),
    }
}

const ROOT_KEY: &str = "root key";
const RELAY: &str = "relay";
const PROFILE: &str = "policy profile";
const BRAND: &str = "brand";
const LICENSE: &str = "license";
const SERIAL: &str = "revocation list serial";

impl Store {
    /// Opens (and migrates) the database at `location`: a `postgres://` or
    /// `postgresql://` URL, a `sqlite:` URL, or a file path for SQLite
    /// (created when missing). An in-memory SQLite URL (`sqlite::memory:`)
    /// gets a single connection, so that every query sees the same database.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let target = resolve(location)?;
        let cannot_open = |e: sqlx::Error| {
            StoreError::Database(format!("cannot open {}: {e}", redact(location.trim())))
        };
        let mut options = AnyPoolOptions::new();
        if target.in_memory {
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            // One plain connection first: the pool retries a refused
            // connection until its 30-second timeout, a single attempt fails
            // at once with the reason.
            let probe = AnyConnection::connect(&target.url)
                .await
                .map_err(cannot_open)?;
            probe.close().await.map_err(cannot_open)?;
        }
        let pool = options.connect(&target.url).await.map_err(cannot_open)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("applying the schema migrations: {e}")))?;
        Ok(Store {
            pool,
            backend: target.backend,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; waits for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- root keys ------------------------------------------------------

    /// Adds a root key. When it is `active`, every other key stops being
    /// active in the same transaction. Refuses a `key_id` that is not the
    /// key's fingerprint, and one that exists ([`StoreError::Duplicate`]).
    pub async fn insert_root_key(&self, record: &RootKeyRecord) -> Result<(), StoreError> {
        let fingerprint = record.public_key.fingerprint().to_string();
        if record.key_id != fingerprint {
            return Err(StoreError::Invalid {
                what: ROOT_KEY,
                reason: format!(
                    "its key_id {:?} is not the key's fingerprint {fingerprint}",
                    record.key_id
                ),
            });
        }
        let sealed = to_json(ROOT_KEY, &record.sealed)?;
        let mut tx = self.pool.begin().await?;
        if record.active {
            sqlx::query("UPDATE root_keys SET active = 0 WHERE active = 1")
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO root_keys (key_id, public_key, sealed, created_at, active) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&record.key_id)
        .bind(hex::encode(record.public_key.0))
        .bind(sealed)
        .bind(record.created_at)
        .bind(i64::from(record.active))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Err(StoreError::Duplicate {
                what: ROOT_KEY,
                name: record.key_id.clone(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    /// The root key that signs now, if there is one.
    pub async fn active_root_key(&self) -> Result<Option<RootKeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, public_key, sealed, created_at, active FROM root_keys WHERE active = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(root_key_from_row).transpose()
    }

    /// Every root key, active or not, oldest first (then by key ID).
    pub async fn root_keys(&self) -> Result<Vec<RootKeyRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT key_id, public_key, sealed, created_at, active FROM root_keys")
                .fetch_all(&self.pool)
                .await?;
        let mut keys = rows
            .iter()
            .map(root_key_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }

    /// Makes `key_id` the one active root key, in one transaction
    /// ([`StoreError::NotFound`] if there is no such key; nothing changes then).
    pub async fn set_active_root_key(&self, key_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Write first: on SQLite a transaction that reads before it writes
        // can fail at once with "database is locked" under contention.
        sqlx::query("UPDATE root_keys SET active = 0 WHERE active = 1 AND key_id <> $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        let found = sqlx::query("UPDATE root_keys SET active = 1 WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if found == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound {
                what: ROOT_KEY,
                name: key_id.to_owned(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- relays (R18) ---------------------------------------------------

    /// Adds a relay ([`StoreError::Duplicate`] if one has the same name;
    /// [`StoreError::Invalid`] if a string is too long for a build's relay list).
    pub async fn add_relay(&self, relay: &RelayRecord) -> Result<(), StoreError> {
        relay.to_entry()?;
        let inserted = sqlx::query(
            "INSERT INTO relays \
             (name, host, quic_port, tls_port, websocket_port, public_key, region, priority) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&relay.name)
        .bind(&relay.host)
        .bind(i64::from(relay.quic_port))
        .bind(i64::from(relay.tls_port))
        .bind(i64::from(relay.websocket_port))
        .bind(hex::encode(relay.public_key.0))
        .bind(&relay.region)
        .bind(i64::from(relay.priority))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Duplicate {
                what: RELAY,
                name: relay.name.clone(),
            });
        }
        Ok(())
    }

    /// Every relay, by priority (lowest first), then by name.
    pub async fn relays(&self) -> Result<Vec<RelayRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, host, quic_port, tls_port, websocket_port, public_key, region, priority \
             FROM relays",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut relays = rows
            .iter()
            .map(relay_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        relays.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        Ok(relays)
    }

    /// Removes the relay `name`; whether there was one.
    pub async fn remove_relay(&self, name: &str) -> Result<bool, StoreError> {
        let removed = sqlx::query("DELETE FROM relays WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    // ---- policy profiles (R16) ------------------------------------------

    /// Stores `profile` under its name, replacing a profile of that name.
    pub async fn put_profile(&self, profile: &PolicyProfile) -> Result<(), StoreError> {
        let body = to_json(PROFILE, profile)?;
        sqlx::query(
            "INSERT INTO profiles (name, body) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET body = excluded.body",
        )
        .bind(profile.name.as_str())
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The profile `name` ([`StoreError::NotFound`] if there is none).
    pub async fn profile(&self, name: &str) -> Result<PolicyProfile, StoreError> {
        let row = sqlx::query("SELECT name, body FROM profiles WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: PROFILE,
                name: name.to_owned(),
            })?;
        profile_from_row(&row)
    }

    /// Every profile, by name.
    pub async fn profiles(&self) -> Result<Vec<PolicyProfile>, StoreError> {
        let rows = sqlx::query("SELECT name, body FROM profiles")
            .fetch_all(&self.pool)
            .await?;
        let mut profiles = rows
            .iter()
            .map(profile_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(profiles)
    }

    // ---- brands ---------------------------------------------------------

    /// Stores `branding` under `name`, replacing a brand of that name.
    pub async fn put_brand(&self, name: &str, branding: &Branding) -> Result<(), StoreError> {
        let body = to_json(BRAND, branding)?;
        sqlx::query(
            "INSERT INTO brands (name, body) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET body = excluded.body",
        )
        .bind(name)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The brand `name` ([`StoreError::NotFound`] if there is none).
    pub async fn brand(&self, name: &str) -> Result<Branding, StoreError> {
        let row = sqlx::query("SELECT name, body FROM brands WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: BRAND,
                name: name.to_owned(),
            })?;
        let body: String = column(&row, "body", BRAND)?;
        from_json(BRAND, &body)
    }

    /// Every brand with its name, by name.
    pub async fn brands(&self) -> Result<Vec<(String, Branding)>, StoreError> {
        let rows = sqlx::query("SELECT name, body FROM brands")
            .fetch_all(&self.pool)
            .await?;
        let mut brands = rows
            .iter()
            .map(|row| {
                let name: String = column(row, "name", BRAND)?;
                let body: String = column(row, "body", BRAND)?;
                Ok((name, from_json(BRAND, &body)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        brands.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(brands)
    }

    // ---- licenses (R8) --------------------------------------------------

    /// Adds a license ([`StoreError::Duplicate`] if the number is taken;
    /// [`StoreError::Invalid`] if a string is too long for a signed license).
    pub async fn insert_license(&self, license: &LicenseRecord) -> Result<(), StoreError> {
        bounded::<128>(LICENSE, "licensee", &license.licensee)?;
        bounded::<64>(LICENSE, "profile", &license.profile)?;
        let seed = to_json(LICENSE, &license.master_seed)?;
        let inserted = sqlx::query(
            "INSERT INTO licenses (number, licensee, profile, master_public, master_seed, \
             issued_at, expires_at, revoked_at, signed_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (number) DO NOTHING",
        )
        .bind(number_to_i64(license.number)?)
        .bind(&license.licensee)
        .bind(&license.profile)
        .bind(hex::encode(license.master_public.0))
        .bind(seed)
        .bind(license.issued_at)
        .bind(license.expires_at)
        .bind(license.revoked_at)
        .bind(&license.signed_by)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Duplicate {
                what: LICENSE,
                name: license.number.to_string(),
            });
        }
        Ok(())
    }

    /// The license `number` ([`StoreError::NotFound`] if there is none).
    pub async fn license(&self, number: LicenseNumber) -> Result<LicenseRecord, StoreError> {
        let row = sqlx::query(
            "SELECT number, licensee, profile, master_public, master_seed, issued_at, \
             expires_at, revoked_at, signed_by FROM licenses WHERE number = $1",
        )
        .bind(number_to_i64(number)?)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: LICENSE,
            name: number.to_string(),
        })?;
        license_from_row(&row)
    }

    /// Every license, by number.
    pub async fn licenses(&self) -> Result<Vec<LicenseRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, licensee, profile, master_public, master_seed, issued_at, \
             expires_at, revoked_at, signed_by FROM licenses ORDER BY number",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut licenses = rows
            .iter()
            .map(license_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        licenses.sort_by_key(|l| l.number);
        Ok(licenses)
    }

    /// Revokes the license `number` as of `at` (Unix seconds): `true` if it
    /// was revoked now, `false` if it already was (its revocation time stays);
    /// [`StoreError::NotFound`] if there is no such license.
    pub async fn revoke_license(&self, number: LicenseNumber, at: i64) -> Result<bool, StoreError> {
        let n = number_to_i64(number)?;
        let revoked = sqlx::query(
            "UPDATE licenses SET revoked_at = $1 WHERE number = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(n)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if revoked > 0 {
            return Ok(true);
        }
        // Licenses are never deleted, so "not revoked now" means "already
        // revoked" exactly when the row exists.
        let exists = sqlx::query("SELECT number FROM licenses WHERE number = $1")
            .bind(n)
            .fetch_optional(&self.pool)
            .await?;
        match exists {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound {
                what: LICENSE,
                name: number.to_string(),
            }),
        }
    }

    /// The numbers of every revoked license, ascending (for the revocation list).
    pub async fn revoked_numbers(&self) -> Result<Vec<LicenseNumber>, StoreError> {
        let rows =
            sqlx::query("SELECT number FROM licenses WHERE revoked_at IS NOT NULL ORDER BY number")
                .fetch_all(&self.pool)
                .await?;
        let mut numbers = rows
            .iter()
            .map(|row| number_from_i64(column(row, "number", LICENSE)?))
            .collect::<Result<Vec<_>, _>>()?;
        numbers.sort_unstable();
        Ok(numbers)
    }

    // ---- revocation list serial -----------------------------------------

    /// The next revocation-list serial: 1, 2, 3, … One atomic
    /// `UPDATE … RETURNING`, so no two callers (even concurrent ones, even
    /// on several portal processes sharing a PostgreSQL database) get the
    /// same value, and a value is never handed out twice.
    pub async fn next_revocation_serial(&self) -> Result<u64, StoreError> {
        let rows = sqlx::query(
            "UPDATE revocation_serial SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .fetch_all(&self.pool)
        .await?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt {
            what: SERIAL,
            reason: "its row is missing".into(),
        })?;
        let value: i64 = column(row, "value", SERIAL)?;
        u64::try_from(value).map_err(|_| StoreError::Corrupt {
            what: SERIAL,
            reason: format!("it is {value}"),
        })
    }
}

// ---- row decoding ---------------------------------------------------------

fn column<'r, T>(row: &'r AnyRow, name: &str, what: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(|e| StoreError::Corrupt {
        what,
        reason: format!("column {name}: {e}"),
    })
}

fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid {
        what,
        reason: format!("it does not serialize: {e}"),
    })
}

fn from_json<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        reason: format!("bad JSON: {e}"),
    })
}

fn key_from_hex(what: &'static str, text: &str) -> Result<PublicKey, StoreError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).map_err(|e| StoreError::Corrupt {
        what,
        reason: format!("public key {text:?} is not 32 bytes in hex: {e}"),
    })?;
    Ok(PublicKey(key))
}

fn small<T: TryFrom<i64>>(what: &'static str, field: &str, value: i64) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt {
        what,
        reason: format!("{field} is {value}, out of range"),
    })
}

fn flag(what: &'static str, value: i64) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(StoreError::Corrupt {
            what,
            reason: format!("a flag is {v}, neither 0 nor 1"),
        }),
    }
}

fn number_to_i64(number: LicenseNumber) -> Result<i64, StoreError> {
    i64::try_from(number.get()).map_err(|_| StoreError::Invalid {
        what: LICENSE,
        reason: format!("the number {number} does not fit the database"),
    })
}

fn number_from_i64(value: i64) -> Result<LicenseNumber, StoreError> {
    u64::try_from(value)
        .ok()
        .and_then(LicenseNumber::new)
        .ok_or_else(|| StoreError::Corrupt {
            what: LICENSE,
            reason: format!("the number {value} does not have ten digits"),
        })
}

fn root_key_from_row(row: &AnyRow) -> Result<RootKeyRecord, StoreError> {
    let key_id: String = column(row, "key_id", ROOT_KEY)?;
    let public_key = key_from_hex(ROOT_KEY, &column::<String>(row, "public_key", ROOT_KEY)?)?;
    if public_key.fingerprint().to_string() != key_id {
        return Err(StoreError::Corrupt {
            what: ROOT_KEY,
            reason: format!("key {key_id:?} is stored with another key's public half"),
        });
    }
    Ok(RootKeyRecord {
        key_id,
        public_key,
        sealed: from_json(ROOT_KEY, &column::<String>(row, "sealed", ROOT_KEY)?)?,
        created_at: column(row, "created_at", ROOT_KEY)?,
        active: flag(ROOT_KEY, column(row, "active", ROOT_KEY)?)?,
    })
}

fn relay_from_row(row: &AnyRow) -> Result<RelayRecord, StoreError> {
    let port = |field: &str| small::<u16>(RELAY, field, column(row, field, RELAY)?);
    Ok(RelayRecord {
        name: column(row, "name", RELAY)?,
        host: column(row, "host", RELAY)?,
        quic_port: port("quic_port")?,
        tls_port: port("tls_port")?,
        websocket_port: port("websocket_port")?,
        public_key: key_from_hex(RELAY, &column::<String>(row, "public_key", RELAY)?)?,
        region: column(row, "region", RELAY)?,
        priority: small(RELAY, "priority", column(row, "priority", RELAY)?)?,
    })
}

fn profile_from_row(row: &AnyRow) -> Result<PolicyProfile, StoreError> {
    let name: String = column(row, "name", PROFILE)?;
    let profile: PolicyProfile = from_json(PROFILE, &column::<String>(row, "body", PROFILE)?)?;
    if profile.name.as_str() != name {
        return Err(StoreError::Corrupt {
            what: PROFILE,
            reason: format!("stored as {name:?} but named {:?}", profile.name.as_str()),
        });
    }
    Ok(profile)
}

fn license_from_row(row: &AnyRow) -> Result<LicenseRecord, StoreError> {
    Ok(LicenseRecord {
        number: number_from_i64(column(row, "number", LICENSE)?)?,
        licensee: column(row, "licensee", LICENSE)?,
        profile: column(row, "profile", LICENSE)?,
        master_public: key_from_hex(LICENSE, &column::<String>(row, "master_public", LICENSE)?)?,
        master_seed: from_json(LICENSE, &column::<String>(row, "master_seed", LICENSE)?)?,
        issued_at: column(row, "issued_at", LICENSE)?,
        expires_at: column(row, "expires_at", LICENSE)?,
        revoked_at: column(row, "revoked_at", LICENSE)?,
        signed_by: column(row, "signed_by", LICENSE)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_pick_the_backend() {
        let t = resolve("postgres://u:secret@127.0.0.1:5432/portal").unwrap();
        assert_eq!(t.backend, Backend::Postgres);
        assert_eq!(
            resolve("postgresql://localhost/p").unwrap().backend,
            Backend::Postgres
        );
        let t = resolve("sqlite:///var/lib/portal.db").unwrap();
        assert_eq!((t.backend, t.in_memory), (Backend::Sqlite, false));
        assert!(resolve("sqlite::memory:").unwrap().in_memory);
        let t = resolve("/var/lib/conclave/portal.db").unwrap();
        assert_eq!(t.url, "sqlite:///var/lib/conclave/portal.db?mode=rwc");
        let t = resolve("/tmp/a dir/p?#%@:.db").unwrap();
        assert_eq!(t.url, "sqlite:///tmp/a%20dir/p%3F%23%25%40%3A.db?mode=rwc");
        assert!(resolve("relative.db")
            .unwrap()
            .url
            .starts_with("sqlite:///"));
    }

    #[test]
    fn unsupported_locations_are_refused_without_their_password() {
        let e = resolve("mysql://admin:hunter2@db/portal").err().unwrap();
        assert_eq!(
            e,
            StoreError::Unsupported("mysql://db/portal".into()),
            "the password must not be echoed"
        );
        assert!(e.to_string().contains("postgres://"));
        assert!(matches!(resolve(""), Err(StoreError::Unsupported(_))));
    }
}
