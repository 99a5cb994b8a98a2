//! QUIC endpoint configurations over the pinned TLS 1.3 configurations.
//!
//! QUIC protects its Initial packets with AES-128-GCM keys derived from the
//! public connection ID (RFC 9001, section 5.2); they hide nothing from an
//! observer by design and carry only the TLS handshake. Every packet after the
//! handshake is protected with the negotiated `TLS13_AES_256_GCM_SHA384` keys.

use std::sync::Arc;
use std::time::Duration;

use conclave_protocol::sign::PublicKey;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::tls::{client_config, RelayIdentity, TlsError};

/// Connections with no traffic for this long are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive interval, well inside the idle timeout.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Why a QUIC configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The TLS part failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused the TLS configuration.
    #[error("QUIC cannot use this TLS configuration: {0}")]
    Crypto(String),
}

fn initial_suite() -> Result<quinn::rustls::quic::Suite, QuicError> {
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|s| s.quic_suite())
        .ok_or_else(|| QuicError::Crypto("no QUIC initial suite".into()))
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_concurrent_bidi_streams(2u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}

/// The relay's QUIC server configuration.
pub fn server_config(identity: &RelayIdentity) -> Result<quinn::ServerConfig, QuicError> {
    let tls = Arc::new(identity.server_config()?);
    let crypto = QuicServerConfig::with_initial(tls, initial_suite()?)
        .map_err(|e| QuicError::Crypto(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// A client's QUIC configuration pinning `pinned`.
pub fn client_config_quic(pinned: PublicKey) -> Result<quinn::ClientConfig, QuicError> {
    let tls = Arc::new(client_config(pinned)?);
    let crypto = QuicClientConfig::with_initial(tls, initial_suite()?)
        .map_err(|e| QuicError::Crypto(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}
