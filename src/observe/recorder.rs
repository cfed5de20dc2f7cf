//! Latency recorders: one HdrHistogram per stage or subscription, overall and per second.
//!
//! Tasks record into the current interval's histogram; once a second the ticker folds the
//! interval into the total and keeps its percentiles as a time-series point (what wrk2 and
//! HdrHistogram's interval logs do). Values are microseconds, 1 µs .. 1 h, 3 significant
//! digits, as DESIGN.md §5 fixes.

use std::collections::VecDeque;
use std::sync::Mutex;

use hdrhistogram::Histogram;

use super::series::{Bounded, Point};
use crate::sync::lock;

pub const LOWEST_US: u64 = 1;
pub const HIGHEST_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants within hdrhistogram's limits, so this cannot fail.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, 3).expect("valid histogram bounds")
}

/// Percentiles of one second (or of a whole run), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SeriesPoint {
    /// The second (of run time) this point covers: `[second, second + 1)`.
    pub second: u32,
    #[serde(flatten)]
    pub percentiles: Percentiles,
}

impl Point for SeriesPoint {
    fn second(&self) -> u32 {
        self.second
    }

    /// Counts add; each percentile becomes the higher of the two (an upper bound for the
    /// span: the points of a long run are charted, not judged).
    fn absorb(&mut self, later: SeriesPoint) {
        let (p, q) = (&mut self.percentiles, later.percentiles);
        p.count += q.count;
        p.p50_us = p.p50_us.max(q.p50_us);
        p.p90_us = p.p90_us.max(q.p90_us);
        p.p99_us = p.p99_us.max(q.p99_us);
        p.p999_us = p.p999_us.max(q.p999_us);
        p.max_us = p.max_us.max(q.max_us);
    }
}

/// The seconds the live views' percentiles cover (the terminal line, CI progress lines).
pub const RECENT_S: usize = 10;

pub struct Recorder {
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
    /// One point per second, coarser past `series::POINTS_MAX` (bounded).
    series: Mutex<Bounded<SeriesPoint>>,
    /// The last [`RECENT_S`] closed seconds at 2 significant digits (a live view's 1 %
    /// needs no more, and each is an eighth of the size); `None` for a second with nothing.
    recent: Mutex<VecDeque<Option<Histogram<u64>>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            interval: Mutex::new(new_histogram()),
            total: Mutex::new(new_histogram()),
            series: Mutex::new(Bounded::default()),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_S + 1)),
        }
    }
}

fn coarse_histogram() -> Histogram<u64> {
    // Constant bounds within hdrhistogram's limits, so this cannot fail.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, 2).expect("valid histogram bounds")
}

impl Recorder {
    /// Records a latency given in nanoseconds (clamped into the histogram's range).
    pub fn record_ns(&self, ns: u64) {
        let us = (ns / 1_000).clamp(LOWEST_US, HIGHEST_US);
        // `saturating_record` cannot fail for a value inside the bounds.
        lock(&self.interval).saturating_record(us);
    }

    /// Closes the interval that ends at `second + 1` and returns it.
    pub fn tick(&self, second: u32) -> Histogram<u64> {
        let interval = std::mem::replace(&mut *lock(&self.interval), new_histogram());
        if !interval.is_empty() {
            // Same bounds on both sides, so `add` cannot fail.
            let _ = lock(&self.total).add(&interval);
            lock(&self.series).push(SeriesPoint {
                second,
                percentiles: Percentiles::of(&interval),
            });
        }
        let coarse = (!interval.is_empty()).then(|| {
            let mut h = coarse_histogram();
            for v in interval.iter_recorded() {
                h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
            h
        });
        let mut recent = lock(&self.recent);
        recent.push_back(coarse);
        if recent.len() > RECENT_S {
            recent.pop_front();
        }
        interval
    }

    /// Percentiles of the last [`RECENT_S`] closed seconds (to 2 significant digits).
    pub fn recent(&self) -> Percentiles {
        let mut sum = coarse_histogram();
        for h in lock(&self.recent).iter().flatten() {
            // Same bounds on both sides, so `add` cannot fail.
            let _ = sum.add(h);
        }
        Percentiles::of(&sum)
    }

    /// The whole run so far (call after the last tick).
    pub fn total(&self) -> Histogram<u64> {
        lock(&self.total).clone()
    }

    /// Adds a part's latencies to the current interval (`doorbuster merge`).
    pub fn add_interval(&self, h: &Histogram<u64>) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = lock(&self.interval).add(h);
    }

    /// Adds a part's whole-run histogram to the total, with no per-second point
    /// (`doorbuster merge`; [`Recorder::set_series`] gives the points).
    pub fn absorb(&self, h: &Histogram<u64>) {
        let _ = lock(&self.total).add(h);
    }

    /// The points: one per second, or per span of seconds in a long run (each starting its
    /// span, its percentiles the highest of its seconds').
    pub fn series(&self) -> Vec<SeriesPoint> {
        lock(&self.series).points().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two seconds joined into one span: counts add, every percentile is the higher one.
    #[test]
    fn a_joined_point_counts_both_and_bounds_their_percentiles() {
        let point = |second, count, p99_us| SeriesPoint {
            second,
            percentiles: Percentiles {
                count,
                p50_us: 10,
                p90_us: 20,
                p99_us,
                p999_us: p99_us,
                max_us: p99_us,
            },
        };
        let mut a = point(4, 3, 100);
        a.absorb(point(5, 2, 900));
        assert_eq!(a, point(4, 5, 900));
    }

    #[test]
    fn ticks_fold_intervals_into_the_total() {
        let r = Recorder::default();
        for ms in 1..=100 {
            r.record_ns(ms * 1_000_000);
        }
        r.tick(0);
        r.record_ns(500_000_000);
        r.tick(1);
        r.tick(2); // an empty second leaves no point
        let total = r.total();
        assert_eq!(total.len(), 101);
        let series = r.series();
        assert_eq!(series.len(), 2);
        // The recent window holds both seconds until they age out of it.
        assert_eq!(r.recent().count, 101);
        for second in 3..(3 + RECENT_S as u32 - 2) {
            r.tick(second);
        }
        assert_eq!(r.recent().count, 1, "only second 1 is left in the window");
        let p = r.recent();
        assert!(p.p99_us.abs_diff(500_000) <= 5_000, "{p:?}");
        r.tick(99);
        assert_eq!(r.recent().count, 0);
        assert_eq!(series[0].percentiles.count, 100);
        // 3 significant digits: p50 of 1..=100 ms is 50 ms within 0.1 %.
        assert!((49_950..=50_050).contains(&series[0].percentiles.p50_us));
        assert_eq!(series[1].second, 1);
    }
}
