//! Instants and durations as whole milliseconds.
//!
//! The model never reads a clock: every function takes `now` as an argument.
//! Milliseconds are Graph's useful precision (it shows seven fractional digits
//! but nothing it does depends on less than a millisecond), and an `i64` keeps
//! each stored instant at eight bytes, which matters at a million users.

use serde::{Deserialize, Serialize};

/// An instant, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Instant(i64);

/// A length of time, in milliseconds. May be negative only as the result of a
/// subtraction; the model's stored durations are all positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(i64);

impl Instant {
    /// The Unix epoch.
    pub const EPOCH: Instant = Instant(0);

    pub const fn from_unix_millis(millis: i64) -> Instant {
        Instant(millis)
    }

    pub const fn as_unix_millis(self) -> i64 {
        self.0
    }

    /// The instant `duration` later, saturating instead of overflowing.
    pub const fn saturating_add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration.0))
    }

    /// The time elapsed from `earlier` to `self` (negative if `earlier` is later).
    pub const fn duration_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_millis(millis: i64) -> Duration {
        Duration(millis)
    }

    pub const fn from_secs(secs: i64) -> Duration {
        Duration(secs.saturating_mul(1_000))
    }

    pub const fn from_mins(mins: i64) -> Duration {
        Duration(mins.saturating_mul(60_000))
    }

    pub const fn from_hours(hours: i64) -> Duration {
        Duration(hours.saturating_mul(3_600_000))
    }

    pub const fn from_days(days: i64) -> Duration {
        Duration(days.saturating_mul(86_400_000))
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub const fn saturating_mul(self, factor: i64) -> Duration {
        Duration(self.0.saturating_mul(factor))
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }
}
