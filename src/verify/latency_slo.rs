//! Latency SLOs: a percentile of a stage's latency, measured from each order's intended time
//! over the whole run, against a bound (`order.created -> order.fulfilled: { p99: "< 3s" }`).

use std::time::Duration;

use super::{Check, CheckInput, CheckResult, Verdict, compare, comparison_symbol};
use crate::checks::model::LatencySlo;

pub struct LatencySloCheck {
    pub slo: LatencySlo,
}

pub fn percentile_label(p: f64) -> String {
    if p >= 100.0 {
        "max".to_owned()
    } else {
        format!("p{p}")
    }
}

impl Check for LatencySloCheck {
    fn name(&self) -> String {
        format!(
            "latency {} {}",
            self.slo.stage.label(),
            percentile_label(self.slo.percentile)
        )
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let histogram = input.observer.stage(self.slo.stage).total();
        let threshold = format!(
            "{} {}",
            comparison_symbol(self.slo.comparison),
            humantime::format_duration(self.slo.bound)
        );
        if histogram.is_empty() {
            return CheckResult::new(&self.name(), Verdict::Unknown, "no samples", threshold);
        }
        let us = histogram.value_at_percentile(self.slo.percentile);
        let observed = Duration::from_micros(us);
        let pass = compare(
            self.slo.comparison,
            observed.as_secs_f64(),
            self.slo.bound.as_secs_f64(),
        );
        CheckResult::new(
            &self.name(),
            Verdict::holds(pass),
            format!("{} over {} samples", fmt_us(us), histogram.len()),
            threshold,
        )
    }
}

/// Microseconds as a short human duration: `850µs`, `12.3ms`, `2.41s`.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}
