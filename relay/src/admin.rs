//! The admin listener: `/healthz`, Prometheus `/metrics`, and `/availability`
//! (the load figure masters use to pick a relay, R18). Bind it to an address
//! only operators reach.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::hub::Hub;

/// What `/availability` answers.
#[derive(Debug, Serialize)]
pub struct Availability {
    /// The relay's name.
    pub name: String,
    /// Whether it accepts new sessions.
    pub accepting: bool,
    /// Connected peers in thousandths of capacity.
    pub load_permille: u16,
    /// Open sessions.
    pub sessions: usize,
    /// Connected peers.
    pub peers: u64,
    /// Serial of the revocation list in force.
    pub revocation_serial: u64,
}

/// The admin routes.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/availability", get(availability))
        .with_state(hub)
}

async fn healthz(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    if hub.is_accepting() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    }
}

async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(hub.load_permille()),
    )
}

async fn availability(State(hub): State<Arc<Hub>>) -> Json<Availability> {
    Json(Availability {
        name: hub.name.clone(),
        accepting: hub.is_accepting(),
        load_permille: hub.load_permille(),
        sessions: hub.session_count(),
        peers: hub.metrics.peers.load(std::sync::atomic::Ordering::Relaxed),
        revocation_serial: hub.revocations().serial,
    })
}
