//! The join delay that doubles with every failure (R12), per source address
//! and per session.
//!
//! A failure (an unknown session ID, or a join the master reports as failed
//! key confirmation) blocks further joins from that source, and to that
//! session, for `base × 2^(failures − 1)`, capped at `max`. The first failure
//! costs `base`; the twentieth costs more than a week at one second. An entry
//! is forgotten once it has been quiet for [`FORGET_AFTER`] past its block.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use conclave_protocol::frame::SessionId;
use tokio::time::Instant;

/// Quiet time after which a source or session starts from zero again.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
}

/// Failure counts and blocks.
#[derive(Debug)]
pub struct JoinDelays {
    base: Duration,
    max: Duration,
    by_source: HashMap<IpAddr, Entry>,
    by_session: HashMap<SessionId, Entry>,
}

impl JoinDelays {
    /// Delays starting at `base` and never longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        JoinDelays {
            base,
            max,
            by_source: HashMap::new(),
            by_session: HashMap::new(),
        }
    }

    /// How long a join from `source` to `session` must still wait, if at all.
    pub fn wait(&self, source: IpAddr, session: SessionId, now: Instant) -> Option<Duration> {
        let left = |e: Option<&Entry>| {
            e.and_then(|e| e.blocked_until.checked_duration_since(now))
                .filter(|d| !d.is_zero())
        };
        match (
            left(self.by_source.get(&source)),
            left(self.by_session.get(&session)),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records a failed join from `source`, and against `session` when it exists.
    /// Returns the wait now imposed on the source.
    pub fn fail(&mut self, source: IpAddr, session: Option<SessionId>, now: Instant) -> Duration {
        let (base, max) = (self.base, self.max);
        let bump = |e: &mut Entry| {
            e.failures = e.failures.saturating_add(1);
            let factor = 1u32
                .checked_shl(e.failures.saturating_sub(1).min(31))
                .unwrap_or(u32::MAX);
            let wait = base.saturating_mul(factor).min(max);
            e.blocked_until = now + wait;
            wait
        };
        let fresh = Entry {
            failures: 0,
            blocked_until: now,
        };
        let wait = bump(self.by_source.entry(source).or_insert(fresh));
        if let Some(s) = session {
            bump(self.by_session.entry(s).or_insert(fresh));
        }
        wait
    }

    /// Forgets entries quiet for [`FORGET_AFTER`] past their block; returns how many remain.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let keep = |e: &mut Entry| now < e.blocked_until + FORGET_AFTER;
        self.by_source.retain(|_, e| keep(e));
        self.by_session.retain(|_, e| keep(e));
        self.by_source.len() + self.by_session.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R12: every failure doubles the wait, per source and per session.
    #[test]
    fn r12_every_failure_doubles_the_wait() {
        let mut d = JoinDelays::new(Duration::from_secs(1), Duration::from_secs(3600));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let s = SessionId(12345);
        let t0 = Instant::now();
        assert_eq!(d.wait(ip, s, t0), None);
        let waits: Vec<u64> = (0..6).map(|_| d.fail(ip, Some(s), t0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32]);
        assert_eq!(d.wait(ip, s, t0), Some(Duration::from_secs(32)));
        // Another source is blocked for this session too, but not for others.
        assert_eq!(d.wait(other, s, t0), Some(Duration::from_secs(32)));
        assert_eq!(d.wait(other, SessionId(99999), t0), None);
        // After the wait, the next attempt may go ahead.
        assert_eq!(d.wait(ip, s, t0 + Duration::from_secs(32)), None);
        // The cap holds.
        for _ in 0..40 {
            d.fail(ip, None, t0);
        }
        assert_eq!(d.fail(ip, None, t0), Duration::from_secs(3600));
        assert_eq!(d.sweep(t0 + Duration::from_secs(3600) + FORGET_AFTER), 0);
    }
}
