//! The server's notion of now: the system clock, or a manual clock that only
//! moves when a test tells it to.

use std::sync::Mutex;

use presence_core::{Duration, Instant};

/// Which clock the server runs on (`--clock`; the command line's own
/// spelling of it lives in `cli.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockKind {
    /// Wall-clock time.
    #[default]
    System,
    /// Starts at the wall-clock time and moves only through
    /// `POST /_presenced/clock/advance`.
    Manual,
}

#[derive(Debug)]
pub enum Clock {
    System,
    /// A std `Mutex`: it is held only to read or replace one integer.
    Manual(Mutex<Instant>),
}

/// The wall clock, in the model's milliseconds.
pub fn system_now() -> Instant {
    Instant::from_unix_millis(jiff::Timestamp::now().as_millisecond())
}

impl Clock {
    pub fn new(kind: ClockKind) -> Clock {
        match kind {
            ClockKind::System => Clock::System,
            ClockKind::Manual => Clock::Manual(Mutex::new(system_now())),
        }
    }

    pub fn now(&self) -> Instant {
        match self {
            Clock::System => system_now(),
            Clock::Manual(now) => *now.lock().unwrap_or_else(|poison| poison.into_inner()),
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }

    /// Moves a manual clock forward to `instant` (never backwards). Does
    /// nothing to the system clock.
    pub fn set_manual(&self, instant: Instant) {
        if let Clock::Manual(now) = self {
            let mut now = now.lock().unwrap_or_else(|poison| poison.into_inner());
            *now = (*now).max(instant);
        }
    }

    /// How long to sleep on the system clock until `instant`.
    pub fn until(&self, instant: Instant) -> std::time::Duration {
        let millis = instant.duration_since(self.now()).as_millis().max(0);
        std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0))
    }
}

/// A manual clock's step, refused when negative.
pub fn checked_advance(by: Duration) -> Option<Duration> {
    (by.as_millis() >= 0).then_some(by)
}
