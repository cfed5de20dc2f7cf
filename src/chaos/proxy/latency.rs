//! The latency toxic: each chunk arrives `latency` (give or take a uniform `jitter`) after
//! the proxy read it.
//!
//! The delay counts from the read time, not from when the previous chunk left, so chunks
//! in flight overlap the way packets on a long link do: latency alone does not cut
//! throughput. Chunks still leave in order, because one pump writes them one after another.

use std::time::Duration;

use rand::RngExt;

use crate::clock::{RunTime, duration_ns};
use crate::rng::Rng;

use super::toxic::{Chunk, Toxic, ToxicAction};

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    latency_ns: u64,
    jitter_ns: u64,
}

impl Latency {
    pub fn new(latency: Duration, jitter: Duration) -> Latency {
        Latency {
            latency_ns: duration_ns(latency),
            jitter_ns: duration_ns(jitter),
        }
    }

    fn delay_ns(&self, rng: &mut Rng) -> u64 {
        if self.jitter_ns == 0 {
            return self.latency_ns;
        }
        // Uniform over latency ± jitter, floored at zero: a link cannot deliver early.
        let offset = rng.random_range(0..=self.jitter_ns.saturating_mul(2));
        (self.latency_ns.saturating_add(offset)).saturating_sub(self.jitter_ns)
    }
}

impl Toxic for Latency {
    fn apply(&mut self, _chunk: Chunk, not_before: RunTime, rng: &mut Rng) -> ToxicAction {
        ToxicAction::Deliver(not_before.saturating_add(self.delay_ns(rng)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn delays_by_latency_within_jitter() {
        // Every delay must fall within latency ± jitter, and jitter must actually vary it.
        let mut toxic = Latency::new(Duration::from_millis(100), Duration::from_millis(20));
        let mut rng = crate::rng::for_item(7, "proxy.upstream", 0);
        let chunk = Chunk {
            len: 10,
            read_at: 5 * MS,
        };
        let delays: Vec<u64> = (0..200)
            .map(|_| match toxic.apply(chunk, chunk.read_at, &mut rng) {
                ToxicAction::Deliver(at) => at - chunk.read_at,
                other => panic!("latency must deliver, got {other:?}"),
            })
            .collect();
        assert!(delays.iter().all(|d| (80 * MS..=120 * MS).contains(d)));
        assert!(delays.iter().any(|d| *d != delays[0]));
    }

    #[test]
    fn jitter_larger_than_latency_never_delivers_early() {
        let mut toxic = Latency::new(Duration::from_millis(1), Duration::from_millis(50));
        let mut rng = crate::rng::for_item(7, "proxy.upstream", 1);
        let chunk = Chunk { len: 1, read_at: 0 };
        for _ in 0..100 {
            assert!(
                matches!(toxic.apply(chunk, 10, &mut rng), ToxicAction::Deliver(at) if at >= 10)
            );
        }
    }
}
