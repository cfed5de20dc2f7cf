//! The only place that reads time.
//!
//! One monotonic clock per run. Everything the harness records is a `RunTime`: nanoseconds
//! since the run started, read from `tokio::time::Instant`, so tests under tokio's paused
//! clock control every figure. Wall-clock time is read once, at the start, for reports and
//! for events that cross process boundaries.

// This module is the one place allowed to read time (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Nanoseconds since the start of the run.
pub type RunTime = u64;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    wall_start_unix_ns: u64,
}

impl Clock {
    pub fn start() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            start: Instant::now(),
            wall_start_unix_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Now, as nanoseconds since the start.
    pub fn now(&self) -> RunTime {
        duration_ns(self.start.elapsed())
    }

    /// The instant `at` nanoseconds after the start (for `sleep_until`).
    pub fn instant_at(&self, at: RunTime) -> Instant {
        self.start + Duration::from_nanos(at)
    }

    /// Wall-clock Unix nanoseconds for a run time (what goes into events for other processes).
    pub fn wall_ns(&self, at: RunTime) -> u64 {
        self.wall_start_unix_ns.saturating_add(at)
    }

    pub fn wall_start_unix_ns(&self) -> u64 {
        self.wall_start_unix_ns
    }

    pub async fn sleep_until(&self, at: RunTime) {
        tokio::time::sleep_until(self.instant_at(at)).await;
    }
}

/// A duration as saturating nanoseconds.
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Wall-clock time of day, for naming run folders. Not used for any measurement.
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}
