//! Configuration: a TOML file, every setting of which can also be given (and
//! overridden) by a command-line flag of the same name.
//!
//! ```toml
//! name = "eu-1"
//! key_file = "/etc/conclave/relay.key"     # from `conclave-relay keygen`
//! quic = "0.0.0.0:5000"                    # UDP
//! tls = "0.0.0.0:5443"                     # TCP; 443 in production
//! websocket = "0.0.0.0:5444"               # TCP; 443 on another address, or 80 behind a proxy
//! admin = "127.0.0.1:9090"                 # /healthz, /metrics, /availability
//! portal_keys = ["<hex public key>"]
//! min_version = "1.0.0"
//! revocations = "https://portal.example.org/revocations"   # or a file path
//! revocation_refresh_secs = 300
//! audit_log = "/var/log/conclave/audit.jsonl"
//! drain_secs = 30
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use conclave_protocol::artefact::Version;
use conclave_protocol::sign::{PublicKey, SigningIdentity};
use serde::Deserialize;

use crate::hub::Limits;

/// Why the configuration is unusable; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path} is not a valid relay configuration: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A setting has a bad value.
    #[error("setting {name}: {message}")]
    Value {
        /// The setting.
        name: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// Every setting, all optional; used both as the TOML file's shape and as flags.
#[derive(Debug, Clone, Default, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The relay's name, shown to clients.
    #[arg(long)]
    pub name: Option<String>,
    /// File holding the relay key (from `conclave-relay keygen`).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// QUIC (UDP) listen address; "off" to disable.
    #[arg(long)]
    pub quic: Option<String>,
    /// TLS-over-TCP listen address; "off" to disable.
    #[arg(long)]
    pub tls: Option<String>,
    /// WebSocket-over-TLS listen address; "off" to disable.
    #[arg(long)]
    pub websocket: Option<String>,
    /// Admin (health, metrics, availability) listen address; "off" to disable.
    #[arg(long)]
    pub admin: Option<String>,
    /// Trusted portal public key, hex; repeat for several.
    #[arg(long = "portal-key")]
    pub portal_keys: Option<Vec<String>>,
    /// Oldest client version accepted, e.g. 1.4.0 (default: none beyond the profiles').
    #[arg(long)]
    pub min_version: Option<String>,
    /// Revocation list source: a file path or an http(s) URL.
    #[arg(long)]
    pub revocations: Option<String>,
    /// Seconds between revocation list refreshes.
    #[arg(long)]
    pub revocation_refresh_secs: Option<u64>,
    /// Audit log file (append-only, hash-chained JSON lines).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Seconds sessions may drain after a shutdown signal.
    #[arg(long)]
    pub drain_secs: Option<u64>,
    /// Most sessions at once.
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Most connected peers at once (capacity for the load figure).
    #[arg(long)]
    pub max_peers: Option<usize>,
    /// Most participants per session.
    #[arg(long)]
    pub max_participants: Option<u16>,
    /// Largest frame payload in bytes.
    #[arg(long)]
    pub max_payload: Option<usize>,
    /// Seconds allowed from connection to a completed Hello and create/join.
    #[arg(long)]
    pub handshake_timeout_secs: Option<u64>,
    /// Seconds of silence after which a peer is disconnected.
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Sustained frames per second per peer.
    #[arg(long)]
    pub frames_per_sec: Option<u32>,
    /// Sustained bytes per second per peer.
    #[arg(long)]
    pub bytes_per_sec: Option<u64>,
    /// Milliseconds of the first failed join's wait (doubling after).
    #[arg(long)]
    pub join_delay_base_ms: Option<u64>,
    /// Longest join wait in seconds.
    #[arg(long)]
    pub join_delay_max_secs: Option<u64>,
    /// Shared files (R24): MiB one session may keep.
    #[arg(long)]
    pub shared_session_mib: Option<u64>,
    /// Shared files one session may keep.
    #[arg(long)]
    pub shared_files: Option<usize>,
    /// Shared files: MiB all sessions together may keep in memory.
    #[arg(long)]
    pub shared_total_mib: Option<u64>,
}

macro_rules! overlay {
    ($base:ident, $over:ident; $($f:ident),*) => {
        Settings { $($f: $over.$f.or($base.$f),)* }
    };
}

impl Settings {
    /// Reads a TOML file (at most 1 MiB).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > 1 << 20 {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                message: "larger than 1 MiB".into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// `over`'s settings where given, else these.
    pub fn overlay(self, over: Settings) -> Settings {
        let base = self;
        overlay!(base, over; name, key_file, quic, tls, websocket, admin, portal_keys, min_version,
            revocations, revocation_refresh_secs, audit_log, drain_secs, max_sessions, max_peers,
            max_participants, max_payload, handshake_timeout_secs, idle_timeout_secs, frames_per_sec,
            bytes_per_sec, join_delay_base_ms, join_delay_max_secs, shared_session_mib, shared_files,
            shared_total_mib)
    }

    /// Resolves into what the relay runs with. In `dev` mode, a missing key is
    /// generated in memory and addresses default to loopback.
    pub fn resolve(self, dev: bool) -> Result<RelayConfig, ConfigError> {
        let host = if dev { "127.0.0.1" } else { "0.0.0.0" };
        let addr = |name: &'static str,
                    v: &Option<String>,
                    default: String|
         -> Result<Option<SocketAddr>, ConfigError> {
            let text = v.clone().unwrap_or(default);
            if text == "off" {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|_| ConfigError::Value {
                name,
                message: format!("{text:?} is not an address like 0.0.0.0:5443 (or \"off\")"),
            })
        };
        let key = match (&self.key_file, dev) {
            (Some(path), _) => read_key(path)?,
            (None, true) => SigningIdentity::generate(&mut rand_core::OsRng),
            (None, false) => {
                return Err(ConfigError::Value {
                    name: "key_file",
                    message: "no relay key: run `conclave-relay keygen --out relay.key` and pass --key-file relay.key (or use --dev)".into(),
                })
            }
        };
        let portal_keys = self
            .portal_keys
            .unwrap_or_default()
            .iter()
            .map(|k| {
                parse_public_key(k).ok_or_else(|| ConfigError::Value {
                    name: "portal_keys",
                    message: format!("{k:?} is not a 64-digit hex public key"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let min_version: Version = self
            .min_version
            .as_deref()
            // No minimum unless configured: policy profiles carry their own (R9).
            .unwrap_or("0.0.0")
            .parse()
            .map_err(
                |e: conclave_protocol::artefact::BadVersion| ConfigError::Value {
                    name: "min_version",
                    message: e.to_string(),
                },
            )?;
        let d = Limits::default();
        let secs = Duration::from_secs;
        let limits = Limits {
            max_sessions: self.max_sessions.unwrap_or(d.max_sessions),
            max_peers: self.max_peers.unwrap_or(d.max_peers),
            max_participants: self.max_participants.unwrap_or(d.max_participants),
            max_payload: self
                .max_payload
                .unwrap_or(d.max_payload)
                .min(conclave_protocol::frame::MAX_PAYLOAD),
            handshake_timeout: self
                .handshake_timeout_secs
                .map_or(d.handshake_timeout, secs),
            idle_timeout: self.idle_timeout_secs.map_or(d.idle_timeout, secs),
            frames_per_sec: self.frames_per_sec.unwrap_or(d.frames_per_sec),
            bytes_per_sec: self.bytes_per_sec.unwrap_or(d.bytes_per_sec),
            join_delay_base: self
                .join_delay_base_ms
                .map_or(d.join_delay_base, Duration::from_millis),
            join_delay_max: self.join_delay_max_secs.map_or(d.join_delay_max, secs),
            shared_per_session: self
                .shared_session_mib
                .map_or(d.shared_per_session, |m| m.saturating_mul(1 << 20)),
            shared_files_per_session: self.shared_files.unwrap_or(d.shared_files_per_session),
            shared_total: self
                .shared_total_mib
                .map_or(d.shared_total, |m| m.saturating_mul(1 << 20)),
        };
        Ok(RelayConfig {
            name: self.name.clone().unwrap_or_else(|| "relay".into()),
            quic: addr("quic", &self.quic, format!("{host}:5000"))?,
            tls: addr("tls", &self.tls, format!("{host}:5443"))?,
            websocket: addr("websocket", &self.websocket, format!("{host}:5444"))?,
            admin: addr("admin", &self.admin, "127.0.0.1:9090".into())?,
            key,
            portal_keys,
            min_version,
            revocations: self.revocations.clone(),
            revocation_refresh: secs(self.revocation_refresh_secs.unwrap_or(300).max(1)),
            audit_log: self.audit_log.clone(),
            drain: secs(self.drain_secs.unwrap_or(30)),
            limits,
        })
    }
}

/// The resolved configuration a relay runs with.
#[derive(Debug)]
pub struct RelayConfig {
    /// Name shown to clients.
    pub name: String,
    /// The relay key.
    pub key: SigningIdentity,
    /// QUIC address.
    pub quic: Option<SocketAddr>,
    /// TLS address.
    pub tls: Option<SocketAddr>,
    /// WebSocket address.
    pub websocket: Option<SocketAddr>,
    /// Admin address.
    pub admin: Option<SocketAddr>,
    /// Trusted portal keys.
    pub portal_keys: Vec<PublicKey>,
    /// Oldest client version.
    pub min_version: Version,
    /// Revocation list source.
    pub revocations: Option<String>,
    /// Refresh interval.
    pub revocation_refresh: Duration,
    /// Audit log path.
    pub audit_log: Option<PathBuf>,
    /// Drain time on shutdown.
    pub drain: Duration,
    /// Limits.
    pub limits: Limits,
}

/// Parses a 64-digit hex public key.
pub fn parse_public_key(text: &str) -> Option<PublicKey> {
    let bytes = hex::decode(text.trim()).ok()?;
    Some(PublicKey(bytes.try_into().ok()?))
}

/// Reads a relay key file: 64 hex digits of secret seed.
pub fn read_key(path: &Path) -> Result<SigningIdentity, ConfigError> {
    let bad = |message: String| ConfigError::Value {
        name: "key_file",
        message,
    };
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.len() > 1024 {
        return Err(bad(format!(
            "{} is not a relay key file (too large)",
            path.display()
        )));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        ConfigError::Read {
            path: path.to_owned(),
            source,
        }
    })?);
    let seed = zeroize::Zeroizing::new(
        hex::decode(text.trim())
            .map_err(|_| bad(format!("{} does not hold a hex key", path.display())))?,
    );
    let seed: &[u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("{} does not hold a 32-byte key", path.display())))?;
    Ok(SigningIdentity::from_seed(seed))
}

/// Writes a new relay key to `path` (readable by the owner only) and returns it.
pub fn write_new_key(path: &Path) -> Result<SigningIdentity, ConfigError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let key = SigningIdentity::generate(&mut rand_core::OsRng);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let io = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = opts.open(path).map_err(io)?;
    let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(key.to_seed().as_ref())));
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(key)
}
