//! `recovery`: after each fault window, how high the backlog rose and how long the
//! pipeline took to come back: consumer lag back to its pre-fault level, latency back under
//! its SLOs. Gated by `checks.recovery.drain_within` on the lag.
//!
//! Everything is read from the per-second samples, so a figure is good to the second (to
//! a span's width in a run longer than `observe::series::POINTS_MAX` seconds).
//! "Back to its pre-fault level" allows 10 % or 10 events above it, whichever is more: lag
//! at steady state is the work in flight, which never sits still.

use std::time::Duration;

use super::{Check, CheckInput, CheckResult, Verdict};
use crate::checks::model::LatencySlo;
use crate::observe::{FaultWindow, Recovery, Sample, SeriesPoint};
use crate::topology::Stage;

fn total_lag(sample: &Sample) -> u64 {
    sample.lag.iter().filter_map(|(_, lag)| *lag).sum()
}

/// The series value an SLO's percentile is judged by: the nearest recorded one at or above.
fn at_percentile(point: &SeriesPoint, percentile: f64) -> u64 {
    let p = &point.percentiles;
    match percentile {
        x if x <= 50.0 => p.p50_us,
        x if x <= 90.0 => p.p90_us,
        x if x <= 99.0 => p.p99_us,
        x if x <= 99.9 => p.p999_us,
        _ => p.max_us,
    }
}

/// Measures one window. `series` gives each SLO's stage series.
pub fn measure(
    window: &FaultWindow,
    samples: &[Sample],
    slos: &[LatencySlo],
    series: impl Fn(Stage) -> Vec<SeriesPoint>,
) -> Recovery {
    let start_s = (window.start_ms / 1_000) as u32;
    let lag_before = samples
        .iter()
        .rfind(|s| s.second < start_s)
        .map_or(0, total_lag);
    let settled = |lag: u64| lag <= lag_before + (lag_before / 10).max(10);
    let Some(end_ms) = window.end_ms else {
        let backlog_peak = samples
            .iter()
            .filter(|s| s.second >= start_s)
            .map(total_lag)
            .max();
        return Recovery {
            lag_before,
            backlog_peak: backlog_peak.unwrap_or(0),
            lag_recovered_after_ms: None,
            latency_recovered_after_ms: None,
        };
    };
    let end_s = end_ms.div_ceil(1_000) as u32;
    // Seconds are closed at their end: a sample for second s is the lag at (s + 1) s.
    let since_end = |second: u32| ((u64::from(second) + 1) * 1_000).saturating_sub(end_ms);
    let recovered = samples
        .iter()
        .find(|s| s.second + 1 >= end_s && settled(total_lag(s)));
    let peak_until = recovered.map_or(u32::MAX, |s| s.second);
    let backlog_peak = samples
        .iter()
        .filter(|s| s.second >= start_s && s.second <= peak_until)
        .map(total_lag)
        .max()
        .unwrap_or(0);
    let latency_recovered_after_ms = (!slos.is_empty())
        .then(|| {
            slos.iter()
                .map(|slo| {
                    let bound = slo.bound.as_micros() as u64;
                    series(slo.stage)
                        .iter()
                        .find(|p| {
                            p.second + 1 >= end_s && at_percentile(p, slo.percentile) <= bound
                        })
                        .map(|p| since_end(p.second))
                })
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max())
        })
        .flatten();
    Recovery {
        lag_before,
        backlog_peak,
        lag_recovered_after_ms: recovered.map(|s| since_end(s.second)),
        latency_recovered_after_ms,
    }
}

pub struct RecoveryCheck {
    pub drain_within: Duration,
}

impl Check for RecoveryCheck {
    fn name(&self) -> String {
        "recovery".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let o = input.observer;
        let samples = o.samples();
        let windows = o.fault_windows();
        let threshold = format!(
            "lag back to its pre-fault level within {}",
            humantime::format_duration(self.drain_within)
        );
        if windows.is_empty() {
            return CheckResult::new(
                &self.name(),
                Verdict::Unknown,
                "no fault window to recover from",
                threshold,
            );
        }
        let limit_ms = self.drain_within.as_millis() as u64;
        let slos = &input.scenario.checks.latency;
        let mut evidence = super::Examples::default();
        let mut worst: Option<u64> = Some(0);
        for w in &windows {
            let r = measure(w, &samples, slos, |stage| o.stage(stage).series());
            let after = r.lag_recovered_after_ms.map_or("never".to_owned(), seconds);
            evidence.push(|| {
                format!(
                    "{} on {} at {}: lag {} before, peak {}, back after {after}",
                    w.kind,
                    w.target,
                    seconds(w.start_ms),
                    r.lag_before,
                    r.backlog_peak
                )
            });
            worst = match (worst, r.lag_recovered_after_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        let pass = worst.is_some_and(|ms| ms <= limit_ms);
        CheckResult::new(
            &self.name(),
            Verdict::holds(pass),
            worst.map_or("lag never recovered".to_owned(), |ms| {
                format!(
                    "slowest recovery {} over {} windows",
                    seconds(ms),
                    windows.len()
                )
            }),
            threshold,
        )
        .with_examples(evidence)
    }
}
/// `25.0 s`: run times in evidence as people read them.
fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}
