//! The only place that reads time.
//!
//! One monotonic clock per run. Everything the harness records is a `RunTime`: nanoseconds
//! since the run started, read from `tokio::time::Instant`, so tests under tokio's paused
//! clock control every figure. Wall-clock time is read once, when the clock is made, for
//! reports and for events that cross process boundaries.
//!
//! A run's t=0 is when its load starts, not when its clock was made: connecting and joining
//! the consumer groups (seconds on Kafka) come first, and a schedule that started ticking
//! during that setup would begin the load already behind. So the clock is shared by every
//! copy, and the run moves t=0 to the end of setup once, with [`Clock::begin`].

// This module is the one place allowed to read time (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Nanoseconds since the start of the run.
pub type RunTime = u64;

/// Cheap to clone: every clone reads the same t=0.
#[derive(Debug, Clone)]
pub struct Clock {
    epoch: Arc<Epoch>,
}

#[derive(Debug)]
struct Epoch {
    made: Instant,
    made_wall_unix_ns: u64,
    /// Nanoseconds from `made` to t=0; zero until [`Clock::begin`].
    zero_ns: AtomicU64,
}

impl Clock {
    /// A clock whose t=0 is now (until [`Clock::begin`] moves it).
    pub fn start() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            epoch: Arc::new(Epoch {
                made: Instant::now(),
                made_wall_unix_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
                zero_ns: AtomicU64::new(0),
            }),
        }
    }

    /// A clock of a run that is over (`doorbuster merge`): t=0 at `wall_start_unix_ns`,
    /// reading `at` now (and on from there).
    pub fn ended(wall_start_unix_ns: u64, at: RunTime) -> Self {
        let now = Instant::now();
        let made = now.checked_sub(Duration::from_nanos(at)).unwrap_or(now);
        Clock {
            epoch: Arc::new(Epoch {
                made,
                made_wall_unix_ns: wall_start_unix_ns,
                zero_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Moves t=0 to now, for every clone, and returns how long it was since the old t=0
    /// (the setup time). Called once, by the run, before anything is recorded on this clock:
    /// readings taken before it are on the old t=0.
    pub fn begin(&self) -> Duration {
        let zero = duration_ns(self.epoch.made.elapsed());
        let before = self.epoch.zero_ns.swap(zero, Ordering::AcqRel);
        Duration::from_nanos(zero.saturating_sub(before))
    }

    fn zero_ns(&self) -> u64 {
        self.epoch.zero_ns.load(Ordering::Acquire)
    }

    /// Now, as nanoseconds since the start.
    pub fn now(&self) -> RunTime {
        duration_ns(self.epoch.made.elapsed()).saturating_sub(self.zero_ns())
    }

    /// The instant `at` nanoseconds after the start (for `sleep_until`).
    pub fn instant_at(&self, at: RunTime) -> Instant {
        self.epoch.made + Duration::from_nanos(self.zero_ns().saturating_add(at))
    }

    /// Wall-clock Unix nanoseconds for a run time (what goes into events for other processes).
    pub fn wall_ns(&self, at: RunTime) -> u64 {
        self.wall_start_unix_ns().saturating_add(at)
    }

    pub fn wall_start_unix_ns(&self) -> u64 {
        self.epoch.made_wall_unix_ns.saturating_add(self.zero_ns())
    }

    /// Waits until the wall clock reads `agreed`, then moves t=0 there (to `agreed` itself,
    /// even when setup ended after it): how runs on several machines start together
    /// (`run --start-at`). Returns the setup
    /// time and how the start kept the appointment. A run whose setup ended after `agreed`
    /// starts at once, late by that much. Dropped while it waits, it has moved nothing.
    pub async fn begin_at(&self, agreed: SystemTime) -> (Duration, StartSync) {
        if let Ok(left) = agreed.duration_since(SystemTime::now()) {
            // tokio's timer wakes up to a millisecond late: sleep to just before, then yield.
            tokio::time::sleep(left.saturating_sub(Duration::from_millis(2))).await;
            while SystemTime::now() < agreed {
                tokio::task::yield_now().await;
            }
        }
        let setup = self.begin();
        let began = SystemTime::now();
        let offset_ns = match began.duration_since(agreed) {
            Ok(late) => i64::try_from(late.as_nanos()).unwrap_or(i64::MAX),
            Err(early) => -i64::try_from(early.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        // t=0 is the agreed instant itself, on every machine that agreed on it: a run that
        // began late finds its first orders already due and sends them at once (its send
        // lag says how late), and run times stay comparable across the machines.
        if let Ok(late) = u64::try_from(offset_ns) {
            let _ = self
                .epoch
                .zero_ns
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |zero| {
                    Some(zero.saturating_sub(late))
                });
        }
        let start = StartSync {
            agreed: humantime::format_rfc3339_micros(agreed).to_string(),
            offset_ms: offset_ns as f64 / 1e6,
            clock_source: clock_source(),
        };
        (setup, start)
    }

    pub async fn sleep_until(&self, at: RunTime) {
        tokio::time::sleep_until(self.instant_at(at)).await;
    }

    /// Blocks this thread until `at`, to within tens of microseconds, unless `stopped` turns
    /// true first (asked at least every 10 ms); returns false when stopped.
    ///
    /// For a thread of its own (the load driver's): tokio's timers tick in whole
    /// milliseconds, which makes every arrival up to a millisecond late and an endpoint
    /// answering in 150 µs unmeasurable. The thread sleeps (with its timer slack cut by
    /// [`precise_sleeps`], so the kernel does not defer the wake-up to batch it) to just
    /// before `at`, then yields until it. Under tokio's paused clock use
    /// [`Clock::sleep_until`]: this reads the real clock.
    pub fn block_until(&self, at: RunTime, stopped: impl Fn() -> bool) -> bool {
        let deadline = self.instant_at(at).into_std();
        loop {
            if stopped() {
                return false;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            if left > LAST_YIELDS {
                std::thread::sleep((left - LAST_YIELDS).min(STOP_POLL));
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// How a run's start kept an agreed wall-clock instant (`run --start-at`): what shards of one
/// run on several machines report, so that a merge can tell a late start from a slow target.
#[derive(
    Debug,
    Clone,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema
)]
pub struct StartSync {
    /// The agreed instant, RFC 3339 in UTC.
    pub agreed: String,
    /// Milliseconds from the agreed instant to the load's t=0 by this machine's wall clock
    /// (positive: late). Only as true as that clock's synchronisation (NTP, PTP).
    pub offset_ms: f64,
    /// Where this machine's wall clock comes from: the system clock (`CLOCK_REALTIME`) and,
    /// on Linux, the kernel's clock source.
    pub clock_source: String,
}

impl StartSync {
    /// How late the start was (zero when it was early or on time).
    pub fn late(&self) -> Duration {
        Duration::from_secs_f64(self.offset_ms.max(0.0) / 1e3)
    }
}

/// `CLOCK_REALTIME`, with the kernel's clock source when Linux says which (`tsc`,
/// `kvm-clock`).
fn clock_source() -> String {
    let kernel =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    match kernel {
        Ok(name) if !name.trim().is_empty() => {
            format!("CLOCK_REALTIME (kernel clock source {})", name.trim())
        }
        _ => "CLOCK_REALTIME".to_owned(),
    }
}

/// How long before a deadline [`Clock::block_until`] stops sleeping and yields instead: about
/// a wake-up's latency with the slack cut.
const LAST_YIELDS: Duration = Duration::from_micros(0);

/// How often [`Clock::block_until`] asks whether to stop during a long wait.
const STOP_POLL: Duration = Duration::from_millis(10);

/// Cuts this thread's timer slack to a microsecond (Linux defaults to 50 µs: a sleep may wake
/// that much late so the kernel can batch wake-ups). For the thread that paces arrivals; a
/// failure leaves the default, which costs precision, not correctness.
pub fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000)) {
        tracing::debug!(%error, "could not cut the driver thread's timer slack");
    }
}

/// A duration as saturating nanoseconds.
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Wall-clock time of day: for naming run folders and keeping `--start-at`'s appointment;
/// never for a latency.
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `begin` moves t=0 for every clone: readings, deadlines and wall times agree on it.
    #[tokio::test(start_paused = true)]
    async fn begin_moves_t0_for_every_clone() {
        let clock = Clock::start();
        let clone = clock.clone();
        let wall_made = clock.wall_start_unix_ns();
        tokio::time::sleep(Duration::from_secs(17)).await;
        assert_eq!(clone.now(), 17_000_000_000);

        assert_eq!(clock.begin(), Duration::from_secs(17));
        assert_eq!(clone.now(), 0);
        assert_eq!(clone.instant_at(0), Instant::now());
        assert_eq!(clone.wall_start_unix_ns(), wall_made + 17_000_000_000);
        assert_eq!(clone.wall_ns(5), wall_made + 17_000_000_005);

        clone.sleep_until(1_000_000_000).await;
        assert_eq!(clock.now(), 1_000_000_000);
    }

    /// A blocking wait never returns before its instant (a send lag is never negative), and
    /// a stop ends it early with `false`.
    #[test]
    fn block_until_is_never_early_and_stops_when_asked() {
        precise_sleeps();
        let clock = Clock::start();
        for step_us in [0, 30, 700, 3_000, 15_000] {
            let at = clock.now() + step_us * 1_000;
            assert!(clock.block_until(at, || false));
            assert!(clock.now() >= at, "woke before {at}");
        }
        let far = clock.now() + 60_000_000_000;
        assert!(!clock.block_until(far, || true));
        let asked = std::sync::atomic::AtomicU32::new(0);
        let stop_on_third = || asked.fetch_add(1, Ordering::Relaxed) >= 2;
        assert!(
            !clock.block_until(far, stop_on_third),
            "asked again within its poll"
        );
    }
}
