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
/// The most a client keeps sent but not yet acknowledged by the relay.
///
/// quinn's default (10 MB) lets a client queue seconds of screen frames on
/// a slow uplink, where they wait in quinn's buffer behind the congestion
/// window: the session's own backlog check (which takes a new frame only
/// while few wait to be written) never sees them, so latency grows instead
/// of the frame rate and the video's bitrate falling. Bounded here, a write
/// waits once this much is unacknowledged and the backlog check works. It
/// caps one connection's rate at this over the round trip: 128 KiB is
/// 21 Mbit/s at 50 ms and 100 Mbit/s at 10 ms, more than a screen needs;
/// on a 5 Mbit/s uplink it is 0.2 s of queue (the README's slow-link table
/// measures it).
pub const CLIENT_SEND_WINDOW: u64 = 128 * 1024;

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

fn transport_settings() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_concurrent_bidi_streams(2u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t
}

fn transport() -> Arc<quinn::TransportConfig> {
    Arc::new(transport_settings())
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
    let mut t = transport_settings();
    t.send_window(CLIENT_SEND_WINDOW);
    config.transport_config(Arc::new(t));
    Ok(config)
}
