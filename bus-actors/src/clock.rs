//! Real (or, under tokio's paused time, virtual) time as `bus_core::Instant`, and the wall clock:
//! the one place the bus reads the system's time.

use bus_core::{Instant, WallClock};

/// Maps tokio's monotonic clock onto the core's microsecond instants, from an epoch taken when the
/// bus starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        let micros = self.epoch.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The wall clock now (under paused time, real time still: only the monotonic clock is
    /// virtual).
    pub(crate) fn wall(&self) -> WallClock {
        let since_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        WallClock::from_nanos(since_unix)
    }

    /// When `at` was (or will be) on the wall clock, as the wall clock reads now: for people
    /// to read, not to order events by (the wall clock may step).
    pub(crate) fn wall_time_of(&self, at: Instant) -> std::time::SystemTime {
        let now = self.now();
        let wall = std::time::SystemTime::now();
        let apart = |a: Instant, b: Instant| {
            std::time::Duration::from_micros(a.as_micros() - b.as_micros())
        };
        let when = if at <= now {
            wall.checked_sub(apart(now, at))
        } else {
            wall.checked_add(apart(at, now))
        };
        when.unwrap_or(wall)
    }

    /// How long from now until `at` (zero if it has passed).
    pub(crate) fn until(&self, at: Instant) -> std::time::Duration {
        at - self.now()
    }
}
