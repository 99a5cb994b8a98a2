//! Time as the caller gives it: the protocol never reads a clock.

use serde::{Deserialize, Serialize};

/// Wall-clock time in seconds since the Unix epoch, for expiry of artefacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// Converts a wall-clock reading the caller took (this crate reads no
    /// clock); times before 1970 count as 0.
    pub fn from_system(t: std::time::SystemTime) -> UnixTime {
        UnixTime(
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }
}

/// Monotonic time in milliseconds from an arbitrary origin, for timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
