//! Serves the published revocation list over HTTP for relays to poll (R8).
//!
//! `GET /revocations` answers the bytes of the last file written by
//! `conclave-portal revocations publish`, read afresh on each request, so a
//! new publication is served at once; relays verify its signature, so plain
//! HTTP is enough for integrity.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The largest list served.
const MAX_LIST: u64 = 2 << 20;

/// The routes serving the list at `file`.
pub fn router(file: PathBuf) -> Router {
    Router::new()
        .route("/revocations", get(list))
        .with_state(Arc::new(file))
}

async fn list(State(file): State<Arc<PathBuf>>) -> impl IntoResponse {
    let read = async {
        let meta = tokio::fs::metadata(file.as_ref()).await?;
        if meta.len() > MAX_LIST {
            return Err(std::io::Error::other("list too large"));
        }
        tokio::fs::read(file.as_ref()).await
    };
    match read.await {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read the published revocation list");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "no revocation list published yet\n",
            )
                .into_response()
        }
    }
}

/// Serves until `stop` is cancelled; returns the bound address through `bound`.
pub async fn serve(
    listen: SocketAddr,
    file: PathBuf,
    stop: tokio_util::sync::CancellationToken,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(file))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
