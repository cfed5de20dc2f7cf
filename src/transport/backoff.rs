//! Reconnect delays of the networked transports: exponential, with jitter, through backon.
//!
//! Members that lose the broker together (a restart, a link fault) would otherwise come
//! back in lockstep and hit it at the same instant on every attempt. Only the networked
//! transports use this; the embedded broker never waits to reconnect.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays from `min` doubling up to `max`, forever. backon's jitter adds up to one step
/// again, so the step stops at half of `max`: no wait is longer than `max`.
pub(crate) fn policy(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay((max / 2).max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// A backoff that is reset after every success.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: ExponentialBuilder,
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let policy = policy(min, max);
        Backoff {
            policy,
            delays: policy.build(),
            max,
        }
    }

    /// Starts again from the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.delays = self.policy.build();
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// Sleeps for the next delay.
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_jittered_and_stay_within_bounds() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= min && *d <= max), "{delays:?}");
        assert!(delays[0] < min * 2, "{delays:?}");
        assert!(delays[19] >= max / 2, "{delays:?}");
        b.reset();
        assert!(b.next_delay() < min * 2);
    }
}
