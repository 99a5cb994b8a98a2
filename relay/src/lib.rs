//! # conclave-relay
//!
//! The only server in a session's data path (R1). It forwards end-to-end
//! encrypted frames it cannot read, and enforces what it can see: stage-1
//! admission (build signature, license, revocation, version; R8–R10), session
//! IDs, locks and sizes (R11, R26), the doubling join delay (R12), policy by
//! frame class (R13), rates and timeouts. Everything about a session lives in
//! memory and is gone when it ends; only the audit log (R17) touches disk.
//!
//! ## Wire
//!
//! Every transport (QUIC on UDP, TLS 1.3 on TCP, WebSocket on TLS; R19)
//! carries the same frames (`conclave_protocol::frame`): on QUIC and TLS a
//! byte stream of frames, on WebSocket one frame per binary message. A client
//! first sends `Hello`, then `CreateSession` (master) or `Join` (participant),
//! then frames addressed to the master, a participant or everyone.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | TOML file and flags, key files |
//! | [`hub`] | sessions, members, routing and enforcement rules |
//! | `peer` | the per-connection task: stage 1, create/join, forwarding |
//! | [`outbox`] | per-peer bounded queues: reliable with backpressure, lossy latest-wins |
//! | [`delay`] | the doubling join delay per source and per session |
//! | `listen` | QUIC, TLS and WebSocket accept loops |
//! | [`admin`] | `/healthz`, `/metrics`, `/availability` |
//! | [`metrics`] | counters |
//! | [`audit`] | the hash-chained audit log and its verification |
//! | [`revocation`] | fetching and keeping the portal's revocation list |
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod delay;
pub mod hub;
mod listen;
pub mod metrics;
pub mod outbox;
mod peer;
pub mod revocation;
pub mod shared;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conclave_protocol::artefact::Version;
use conclave_protocol::sign::PublicKey;
use conclave_protocol::stage1::AdmissionPolicy;
use conclave_transport::tls::RelayIdentity;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RelayConfig;
use crate::hub::Hub;
use crate::revocation::{RevocationSource, Revocations};

/// This relay's version (the workspace's).
pub fn version() -> Version {
    env!("CARGO_PKG_VERSION")
        .parse()
        .unwrap_or(Version::new(0, 0, 0))
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS or QUIC could not be set up.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The revocation source is unusable.
    #[error("revocation list source: {0}")]
    Revocations(String),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    /// The key clients pin.
    pub public_key: PublicKey,
    /// Where QUIC listens.
    pub quic: Option<SocketAddr>,
    /// Where TLS listens.
    pub tls: Option<SocketAddr>,
    /// Where WebSocket listens.
    pub websocket: Option<SocketAddr>,
    /// Where the admin listener listens.
    pub admin: Option<SocketAddr>,
    hub: Arc<Hub>,
    accept: CancellationToken,
    connections: CancellationToken,
    background: CancellationToken,
    tracker: TaskTracker,
}

impl Relay {
    /// Binds every listener and starts serving.
    pub async fn start(config: RelayConfig) -> Result<Relay, StartError> {
        let identity =
            RelayIdentity::new(&config.key).map_err(|e| StartError::Tls(e.to_string()))?;
        let revocations = Arc::new(Revocations::new(config.portal_keys.clone()));
        let audit = match &config.audit_log {
            Some(p) => Some(audit::AuditLog::open(p)?),
            None => None,
        };
        let admission = AdmissionPolicy {
            portal_keys: config.portal_keys.clone(),
            min_version: config.min_version,
        };
        let hub = Arc::new(Hub::new(
            config.name.clone(),
            config.limits.clone(),
            admission,
            revocations.clone(),
            audit,
        ));
        let accept = CancellationToken::new();
        let connections = CancellationToken::new();
        let background = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = listen::Ctx {
            hub: hub.clone(),
            accept: accept.clone(),
            connections: connections.clone(),
            tracker: tracker.clone(),
        };
        let tls = Arc::new(
            identity
                .server_config()
                .map_err(|e| StartError::Tls(e.to_string()))?,
        );

        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let mut relay = Relay {
            public_key: identity.public_key(),
            quic: None,
            tls: None,
            websocket: None,
            admin: None,
            hub: hub.clone(),
            accept,
            connections,
            background: background.clone(),
            tracker: tracker.clone(),
        };
        if let Some(addr) = config.tls {
            let l = bind(addr).await?;
            relay.tls = l.local_addr().ok();
            tracker.spawn(listen::tcp(ctx.clone(), l, tls.clone(), false));
        }
        if let Some(addr) = config.websocket {
            let l = bind(addr).await?;
            relay.websocket = l.local_addr().ok();
            tracker.spawn(listen::tcp(ctx.clone(), l, tls.clone(), true));
        }
        if let Some(addr) = config.quic {
            let qc = conclave_transport::quic::server_config(&identity)
                .map_err(|e| StartError::Tls(e.to_string()))?;
            let endpoint = quic_socket(addr)
                .and_then(|socket| {
                    quinn::Endpoint::new(
                        quinn::EndpointConfig::default(),
                        Some(qc),
                        socket,
                        Arc::new(quinn::TokioRuntime),
                    )
                })
                .map_err(|source| StartError::Bind { addr, source })?;
            relay.quic = endpoint.local_addr().ok();
            tracker.spawn(listen::quic(ctx.clone(), endpoint));
        }
        if let Some(addr) = config.admin {
            let l = bind(addr).await?;
            relay.admin = l.local_addr().ok();
            let app = admin::router(hub.clone());
            let stop = background.clone();
            tokio::spawn(async move {
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
        }
        if let Some(source) = config.revocations.as_deref() {
            let source: RevocationSource = source
                .parse()
                .map_err(|e: revocation::RevocationError| StartError::Revocations(e.to_string()))?;
            revocations.spawn_refresher(source, config.revocation_refresh, background.clone());
        }
        tracing::info!(
            name = %config.name,
            key = %hex::encode(relay.public_key.0),
            quic = ?relay.quic, tls = ?relay.tls, websocket = ?relay.websocket, admin = ?relay.admin,
            "relay running"
        );
        Ok(relay)
    }

    /// The relay's state, for inspection.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops accepting, lets sessions go on for up to `drain`, then closes
    /// every connection and returns once all tasks have ended.
    pub async fn shutdown(self, drain: Duration) {
        self.hub.stop_accepting();
        self.accept.cancel();
        self.tracker.close();
        let deadline = tokio::time::sleep(drain);
        tokio::pin!(deadline);
        tokio::select! {
            () = self.tracker.wait() => {}
            () = &mut deadline => {
                self.hub.close_all();
                self.connections.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
            }
        }
        self.background.cancel();
    }
}

/// The UDP receive buffer the relay asks for on its QUIC socket. Linux caps
/// the request at `net.core.rmem_max` (208 KiB by default), so raising that
/// sysctl is what lets a busy relay keep up; without the request, raising it
/// would change nothing, since sockets start at `rmem_default`.
pub const QUIC_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// The QUIC listener's UDP socket at `addr`, with a receive buffer as large
/// as the system allows up to [`QUIC_RECEIVE_BUFFER`]; dual-stack when `addr`
/// is IPv6, as quinn's own `Endpoint::server` makes it. Public so that the
/// benchmark's bare quinn forwarder gets the same socket as the relay.
pub fn quic_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Not fatal: some systems allow IPv6-only sockets alone.
        let _ = socket.set_only_v6(false);
    }
    // Not fatal either: the kernel caps the size rather than refusing it.
    let _ = socket.set_recv_buffer_size(QUIC_RECEIVE_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The QUIC socket gets the largest receive buffer the system allows up
    /// to the request (Linux reports twice what it grants, for bookkeeping).
    #[test]
    fn quic_socket_asks_for_a_large_receive_buffer() {
        let socket = quic_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let default: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let got = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        assert!(
            got >= QUIC_RECEIVE_BUFFER.min(cap),
            "receive buffer {got} bytes, system cap {cap}"
        );
        if cap > default {
            assert!(
                got > default,
                "receive buffer {got} bytes, default {default}"
            );
        }
    }
}
