//! Counters for the admin listener's Prometheus `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use conclave_protocol::stage1::RefusalCode;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A lossy queue was full: the oldest screen/audio/video frame went.
    LossyOverflow,
    /// The session's policy forbids the frame's class (R13).
    Policy,
    /// The peer exceeded its rate limit.
    Rate,
    /// The routing header named another session or sender than the connection's.
    Spoofed,
    /// The destination is not in the session, or may not be addressed.
    Unroutable,
}

const DROP_REASONS: [(DropReason, &str); 5] = [
    (DropReason::LossyOverflow, "lossy_overflow"),
    (DropReason::Policy, "policy"),
    (DropReason::Rate, "rate"),
    (DropReason::Spoofed, "spoofed"),
    (DropReason::Unroutable, "unroutable"),
];

const REFUSALS: [(RefusalCode, &str); 18] = [
    (RefusalCode::BuildNotTrusted, "build_not_trusted"),
    (RefusalCode::BuildTampered, "build_tampered"),
    (RefusalCode::WrongRole, "wrong_role"),
    (RefusalCode::VersionTooOld, "version_too_old"),
    (RefusalCode::LicenseMissing, "license_missing"),
    (RefusalCode::LicenseInvalid, "license_invalid"),
    (RefusalCode::LicenseExpired, "license_expired"),
    (RefusalCode::LicenseRevoked, "license_revoked"),
    (RefusalCode::ProofInvalid, "proof_invalid"),
    (RefusalCode::HelloRequired, "hello_required"),
    (RefusalCode::SessionNotFound, "session_not_found"),
    (RefusalCode::SessionLocked, "session_locked"),
    (RefusalCode::SessionFull, "session_full"),
    (RefusalCode::SessionIdTaken, "session_id_taken"),
    (RefusalCode::RetryLater, "retry_later"),
    (RefusalCode::PolicyForbids, "policy_forbids"),
    (RefusalCode::Malformed, "malformed"),
    (RefusalCode::ShuttingDown, "shutting_down"),
];

/// The relay's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open sessions.
    pub sessions: AtomicU64,
    /// Connected peers (after the transport handshake).
    pub peers: AtomicU64,
    /// Frames received from clients.
    pub frames_in: AtomicU64,
    /// Bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Frames queued to clients.
    pub frames_out: AtomicU64,
    /// Bytes queued to clients.
    pub bytes_out: AtomicU64,
    /// Peers disconnected because they could not keep up.
    pub slow_peers: AtomicU64,
    /// Sealed bytes of shared files kept, all sessions together (R24).
    pub shared_bytes: std::sync::Arc<AtomicU64>,
    drops: [AtomicU64; 5],
    refusals: [AtomicU64; 18],
}

impl Metrics {
    /// Counts a dropped frame.
    pub fn dropped(&self, reason: DropReason) {
        if let Some(i) = DROP_REASONS.iter().position(|(r, _)| *r == reason) {
            if let Some(c) = self.drops.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Dropped frames for `reason` so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        DROP_REASONS
            .iter()
            .position(|(r, _)| *r == reason)
            .and_then(|i| self.drops.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts a refusal.
    pub fn refused(&self, code: RefusalCode) {
        if let Some(i) = REFUSALS.iter().position(|(c, _)| *c == code) {
            if let Some(c) = self.refusals.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Refusals with `code` so far.
    pub fn refusals(&self, code: RefusalCode) -> u64 {
        REFUSALS
            .iter()
            .position(|(c, _)| *c == code)
            .and_then(|i| self.refusals.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, load_permille: u16) -> String {
        let mut out = String::new();
        let g = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(out, "# HELP conclave_relay_{name} {help}\n# TYPE conclave_relay_{name} {kind}\nconclave_relay_{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(
            &mut out,
            "sessions",
            "Open sessions.",
            "gauge",
            load(&self.sessions),
        );
        g(
            &mut out,
            "peers",
            "Connected peers.",
            "gauge",
            load(&self.peers),
        );
        g(
            &mut out,
            "load_permille",
            "Peers as thousandths of capacity.",
            "gauge",
            u64::from(load_permille),
        );
        g(
            &mut out,
            "shared_bytes",
            "Sealed bytes of shared files kept in memory.",
            "gauge",
            load(&self.shared_bytes),
        );
        g(
            &mut out,
            "frames_in_total",
            "Frames received.",
            "counter",
            load(&self.frames_in),
        );
        g(
            &mut out,
            "bytes_in_total",
            "Bytes received.",
            "counter",
            load(&self.bytes_in),
        );
        g(
            &mut out,
            "frames_out_total",
            "Frames queued to peers.",
            "counter",
            load(&self.frames_out),
        );
        g(
            &mut out,
            "bytes_out_total",
            "Bytes queued to peers.",
            "counter",
            load(&self.bytes_out),
        );
        g(
            &mut out,
            "slow_peers_total",
            "Peers disconnected for not keeping up.",
            "counter",
            load(&self.slow_peers),
        );
        let _ = writeln!(out, "# HELP conclave_relay_drops_total Frames dropped, by reason.\n# TYPE conclave_relay_drops_total counter");
        for ((_, name), c) in DROP_REASONS.iter().zip(&self.drops) {
            let _ = writeln!(
                out,
                "conclave_relay_drops_total{{reason=\"{name}\"}} {}",
                load(c)
            );
        }
        let _ = writeln!(out, "# HELP conclave_relay_refusals_total Requests refused, by reason.\n# TYPE conclave_relay_refusals_total counter");
        for ((_, name), c) in REFUSALS.iter().zip(&self.refusals) {
            let _ = writeln!(
                out,
                "conclave_relay_refusals_total{{reason=\"{name}\"}} {}",
                load(c)
            );
        }
        out
    }
}
