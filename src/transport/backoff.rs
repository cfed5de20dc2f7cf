//! Reconnect delays of the networked transports: exponential, with jitter, through backon.
//!
//! Members that lose the broker together (a restart, a link fault) would otherwise come
//! back in lockstep and hit it at the same instant on every attempt. Only the networked
//! transports use this; the embedded broker never waits to reconnect.

use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use backon::ExponentialBuilder;

/// Delays from `min` doubling up to `max`, forever. backon's jitter adds up to one step
/// again, so the step stops at half of `max`: no wait is longer than `max`.
pub(crate) fn policy(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay((max / 2).max(min))
        .with_factor(2.0)
        .without_max_times()
}

/// Every backoff of the process draws its jitter from its own stream (the seed of the one
/// place that seeds jitter, `rng::backoff`): two members that lost the broker together wait
/// different times.
fn next_stream() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A backoff that is reset after every success.
pub(crate) struct Backoff {
    policy: ExponentialBuilder,
    stream: u64,
    delays: Box<dyn Iterator<Item = Duration> + Send + Sync>,
    max: Duration,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("policy", &self.policy)
            .field("stream", &self.stream)
            .field("max", &self.max)
            .finish()
    }
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let policy = policy(min, max);
        let stream = next_stream();
        Backoff {
            policy,
            stream,
            delays: delays(policy, stream),
            max,
        }
    }

    /// Starts again from the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.delays = delays(self.policy, self.stream);
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

fn delays(
    policy: ExponentialBuilder,
    stream: u64,
) -> Box<dyn Iterator<Item = Duration> + Send + Sync> {
    Box::new(crate::rng::backoff(
        policy,
        0,
        "transport.reconnect",
        stream,
    ))
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
