//! Sampling the latency distributions scenarios describe (`5ms..20ms`, `lognormal(120ms, 0.4)`).
//!
//! Pure functions of a distribution and a generator; callers own the generator (see `rng.rs`).
//! [`wait`] sleeps a sample.

use std::time::Duration;

use rand::RngExt;
use rand_distr::{Distribution, LogNormal, Normal};

use crate::config::units::LatencyDist;

/// Sleeps `d`; a zero `d` returns at once. tokio's timer rounds every deadline up to its
/// next millisecond tick, so `sleep(ZERO)` waits up to a millisecond, and parks and wakes the
/// worker for it: a simulated hop set to `0ms` would cost a wake-up and up to 1 ms.
pub async fn wait(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// One sample. Never negative; invalid parameters (caught by validation) yield the median.
pub fn sample(dist: &LatencyDist, rng: &mut impl rand::Rng) -> Duration {
    match *dist {
        LatencyDist::Fixed(d) => d,
        LatencyDist::Uniform { low, high } => {
            if high <= low {
                return low;
            }
            let ns = rng.random_range(low.as_nanos() as u64..=high.as_nanos() as u64);
            Duration::from_nanos(ns)
        }
        LatencyDist::Normal { mean, std_dev } => {
            match Normal::new(mean.as_secs_f64(), std_dev.as_secs_f64()) {
                Ok(n) => Duration::from_secs_f64(n.sample(rng).max(0.0)),
                Err(_) => mean,
            }
        }
        LatencyDist::LogNormal { median, sigma } => {
            let mu = median.as_secs_f64().max(1e-9).ln();
            match LogNormal::new(mu, sigma) {
                // Capped at an hour: the histograms' range, and far beyond any timeout.
                Ok(d) => Duration::from_secs_f64(d.sample(rng).min(3600.0)),
                Err(_) => median,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero wait takes no time; tokio's own zero sleep waits for a millisecond tick
    /// (the control: what `wait` saves a `0ms` hop), and a non-zero wait takes its length.
    #[tokio::test(start_paused = true)]
    async fn a_zero_wait_takes_no_time() {
        let clock = crate::clock::Clock::start();
        // Between two ticks, as a run almost always is.
        tokio::time::advance(Duration::from_micros(300)).await;
        wait(Duration::ZERO).await;
        assert_eq!(clock.now(), 300_000);
        tokio::time::sleep(Duration::ZERO).await;
        let tick = clock.now();
        assert!(
            tick > 300_000 && tick <= 1_300_000,
            "sleep(0) waits for a millisecond tick: {tick} ns"
        );
        wait(Duration::from_millis(5)).await;
        assert!(clock.now() >= tick + 5_000_000);
    }

    #[test]
    fn lognormal_median_is_the_median() {
        let mut rng = crate::rng::for_component(1, "t");
        let dist = LatencyDist::LogNormal {
            median: Duration::from_millis(120),
            sigma: 0.4,
        };
        let mut v: Vec<Duration> = (0..10_001).map(|_| sample(&dist, &mut rng)).collect();
        v.sort();
        let med = v[5_000].as_secs_f64();
        assert!((0.11..0.13).contains(&med), "{med}");
    }

    #[test]
    fn uniform_stays_in_bounds() {
        let mut rng = crate::rng::for_component(1, "t");
        let dist = LatencyDist::Uniform {
            low: Duration::from_millis(5),
            high: Duration::from_millis(20),
        };
        for _ in 0..1000 {
            let d = sample(&dist, &mut rng);
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(20));
        }
    }
}
