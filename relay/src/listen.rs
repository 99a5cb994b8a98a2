//! Listeners: QUIC, TLS over TCP and WebSocket over TLS, each on its own
//! port, each handing connections to [`crate::peer::serve`].

use std::net::SocketAddr;
use std::sync::Arc;

use conclave_transport::conn::{spawn_stream, spawn_websocket, websocket_config, Transport};
use conclave_transport::tls::channel_binding;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::outbox::outbox;
use crate::peer::serve;

/// What every accept loop needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub hub: Arc<Hub>,
    /// Stops accepting.
    pub accept: CancellationToken,
    /// Stops every connection (end of the drain).
    pub connections: CancellationToken,
    pub tracker: TaskTracker,
}

fn too_many(ctx: &Ctx) -> bool {
    let peers = ctx
        .hub
        .metrics
        .peers
        .load(std::sync::atomic::Ordering::Relaxed);
    peers >= ctx.hub.limits.max_peers as u64
}

/// Accepts TLS (and, with `websocket`, WebSocket-over-TLS) connections.
pub(crate) async fn tcp(
    ctx: Ctx,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    websocket: bool,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let transport = if websocket {
        Transport::WebSocket
    } else {
        Transport::Tls
    };
    loop {
        let (tcp, addr) = tokio::select! {
            () = ctx.accept.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        if too_many(&ctx) {
            tracing::warn!(%addr, "at capacity: connection dropped");
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let ctx2 = ctx.clone();
        let acceptor = acceptor.clone();
        ctx.tracker.spawn(async move {
            let limit = ctx2.hub.limits.handshake_timeout;
            let Ok(Ok(stream)) = tokio::time::timeout(limit, acceptor.accept(tcp)).await else {
                tracing::debug!(%addr, "TLS handshake failed or timed out");
                return;
            };
            let Ok(binding) = channel_binding(stream.get_ref().1) else {
                return;
            };
            let max = ctx2.hub.limits.max_payload;
            let (tx, rx) = outbox();
            let incoming = if websocket {
                // Boxed: the upgrade's state is large, and TLS connections
                // (the same task type) should not carry it while idle.
                let upgrade = Box::pin(tokio_tungstenite::accept_async_with_config(
                    stream,
                    Some(websocket_config()),
                ));
                let Ok(Ok(ws)) = tokio::time::timeout(limit, upgrade).await else {
                    tracing::debug!(%addr, "WebSocket upgrade failed");
                    return;
                };
                spawn_websocket(ws, rx, max)
            } else {
                let (r, w) = tokio::io::split(stream);
                spawn_stream(r, w, rx, max)
            };
            serve(
                ctx2.hub,
                incoming,
                tx,
                binding,
                addr,
                transport,
                ctx2.connections,
            )
            .await;
        });
    }
}

/// How long a finished QUIC connection waits for its last bytes to leave.
const QUIC_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Accepts QUIC connections; each carries one bidirectional stream of frames.
pub(crate) async fn quic(ctx: Ctx, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            () = ctx.accept.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        if too_many(&ctx) {
            incoming.refuse();
            continue;
        }
        let ctx2 = ctx.clone();
        let fut = async move {
            let addr: SocketAddr = incoming.remote_address();
            let limit = ctx2.hub.limits.handshake_timeout;
            let Ok(Ok(conn)) = tokio::time::timeout(limit, async { incoming.await }).await else {
                tracing::debug!(%addr, "QUIC handshake failed or timed out");
                return;
            };
            let mut binding = [0u8; 32];
            if conn
                .export_keying_material(
                    &mut binding,
                    conclave_protocol::stage1::CHANNEL_BINDING_LABEL,
                    b"",
                )
                .is_err()
            {
                return;
            }
            let Ok(Ok((send, recv))) = tokio::time::timeout(limit, conn.accept_bi()).await else {
                return;
            };
            let (tx, rx) = outbox();
            let incoming = spawn_stream(recv, send, rx, ctx2.hub.limits.max_payload);
            let fut = serve(
                ctx2.hub,
                incoming,
                tx,
                binding,
                addr,
                Transport::Quic,
                ctx2.connections,
            );
            eprintln!("SCRATCH serve future {}", std::mem::size_of_val(&fut));
            fut.await;
            // Closing a QUIC connection discards what is still unsent: give the
            // writer a moment to finish the stream, and the peer to close first.
            let _ = tokio::time::timeout(QUIC_LINGER, conn.closed()).await;
            conn.close(0u32.into(), b"bye");
        };
        eprintln!("SCRATCH quic conn future {}", std::mem::size_of_val(&fut));
        ctx.tracker.spawn(fut);
    }
    endpoint.close(0u32.into(), b"shutting down");
}
