//! Listeners: QUIC, TLS over TCP and WebSocket over TLS, each on its own
//! port, each handing connections to [`crate::peer::serve`].

use std::net::SocketAddr;
use std::sync::Arc;

use conclave_transport::conn::{
    stream_frames, websocket_config, websocket_frames, Drained, FrameStream, Transport,
};
use conclave_transport::tls::channel_binding;
use tokio::net::{TcpListener, TcpStream};
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
    /// Stops every connection (end of the drain): each peer's outbox token
    /// is its child.
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
        let (hub, acceptor) = (ctx.hub.clone(), acceptor.clone());
        let closed = ctx.connections.child_token();
        ctx.tracker
            .spawn(tcp_connection(hub, acceptor, tcp, addr, websocket, closed));
    }
}

/// Serves one TLS or WebSocket connection; `closed` closes its peer.
async fn tcp_connection(
    hub: Arc<Hub>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    websocket: bool,
    closed: CancellationToken,
) {
    let limit = hub.limits.handshake_timeout;
    // In a block: the stream is large, and once split or upgraded the task
    // must not keep room for it.
    let (stream, binding) = {
        let Ok(Ok(stream)) = tokio::time::timeout(limit, acceptor.accept(tcp)).await else {
            tracing::debug!(%addr, "TLS handshake failed or timed out");
            return;
        };
        let Ok(binding) = channel_binding(stream.get_ref().1) else {
            return;
        };
        (stream, binding)
    };
    let max = hub.limits.max_payload;
    let (tx, rx) = outbox(closed);
    if websocket {
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
        let mut frames = websocket_frames(ws, rx, max, Drained::default());
        let transport = Transport::WebSocket;
        serve(hub, &mut frames, tx, &binding, &addr, transport).await;
        linger(frames);
    } else {
        let (r, w) = tokio::io::split(stream);
        let mut frames = stream_frames(r, w, rx, max, Drained::default());
        serve(hub, &mut frames, tx, &binding, &addr, Transport::Tls).await;
        linger(frames);
    }
}

/// How long a finished connection waits for its last bytes to leave and for
/// the peer to close first.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what the peer still sends until it closes, for at most
/// [`LINGER`]: a TCP socket closed with unread data resets the connection,
/// and the peer could lose the last frames (a refusal, say). A task of its
/// own, as the reader task was, so that the relay's shutdown does not wait
/// for it.
fn linger(mut frames: impl FrameStream) {
    tokio::spawn(async move {
        let drain = async { while let Some(Ok(_)) = frames.next_frame().await {} };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

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
        // Accepted here: the task then holds the small `Connecting`, not the
        // large `Incoming`, for as long as it runs.
        let addr = incoming.remote_address();
        let Ok(connecting) = incoming.accept() else {
            tracing::debug!(%addr, "QUIC handshake failed");
            continue;
        };
        let closed = ctx.connections.child_token();
        ctx.tracker
            .spawn(quic_connection(ctx.hub.clone(), connecting, closed));
    }
    endpoint.close(0u32.into(), b"shutting down");
}

/// Serves one QUIC connection; `closed` closes its peer.
///
/// Arguments are few and small: an async function keeps room for each as
/// long as it runs.
async fn quic_connection(hub: Arc<Hub>, connecting: quinn::Connecting, closed: CancellationToken) {
    let addr = connecting.remote_address();
    let Ok(Ok(conn)) = tokio::time::timeout(hub.limits.handshake_timeout, connecting).await else {
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
    let limit = hub.limits.handshake_timeout;
    let Ok(Ok((send, recv))) = tokio::time::timeout(limit, conn.accept_bi()).await else {
        return;
    };
    let (tx, rx) = outbox(closed);
    let mut frames = stream_frames(recv, send, rx, hub.limits.max_payload, Drained::default());
    serve(hub, &mut frames, tx, &binding, &addr, Transport::Quic).await;
    // Closing a QUIC connection discards what is still unsent: give the
    // writer a moment to finish the stream, and the peer to close first.
    let _ = tokio::time::timeout(LINGER, conn.closed()).await;
    conn.close(0u32.into(), b"bye");
}
