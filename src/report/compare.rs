//! `doorbuster compare BASELINE CANDIDATE`: what changed between two runs, and whether the
//! candidate regressed beyond the tolerances.
//!
//! Regressions: a check that passed in the baseline and does not in the candidate; a
//! checkout-success or completion rate that fell by more than `rate_drop_pp` percentage
//! points; a gated latency percentile that grew by more than `latency_increase` (relative)
//! and by more than `latency_floor` (absolute, so microsecond noise is not a regression).

use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use super::summary::Summary;
use crate::scenario::model::CompareTolerances;
use crate::verify::Verdict;
use crate::verify::latency_slo::fmt_us;

#[derive(Debug, Clone)]
pub struct Tolerances {
    /// Relative growth allowed for gated percentiles (0.10 = 10 %).
    pub latency_increase: f64,
    /// Growth below this is never a regression.
    pub latency_floor: Duration,
    /// Percentage points a rate may fall.
    pub rate_drop_pp: f64,
    /// Which percentiles gate: any of p50, p90, p99, p99.9, max.
    pub gated: Vec<String>,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances::from_scenario(&CompareTolerances::default())
    }
}

impl Tolerances {
    /// The tolerances a scenario set (`checks.compare`), gating p50, p90 and p99.
    pub fn from_scenario(t: &CompareTolerances) -> Tolerances {
        Tolerances {
            latency_increase: t.latency_increase.fraction(),
            latency_floor: t.latency_floor,
            rate_drop_pp: t.rate_drop.fraction() * 100.0,
            gated: vec!["p50".into(), "p90".into(), "p99".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Delta {
    pub what: String,
    pub baseline: String,
    pub candidate: String,
    pub change: String,
    pub regressed: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub deltas: Vec<Delta>,
}

impl Comparison {
    pub fn regressions(&self) -> impl Iterator<Item = &Delta> {
        self.deltas.iter().filter(|d| d.regressed)
    }
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn rate_delta(what: &str, base: Option<f64>, cand: Option<f64>, tol: &Tolerances) -> Delta {
    // The same rounding as the checks' own figures (down, so a miss never shows as 100 %).
    let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| crate::verify::percent(v / 100.0));
    let (change, regressed) = match (base, cand) {
        (Some(b), Some(c)) => (format!("{:+.2} pp", c - b), b - c > tol.rate_drop_pp),
        _ => ("-".to_owned(), false),
    };
    Delta {
        what: what.to_owned(),
        baseline: show(base),
        candidate: show(cand),
        change,
        regressed,
    }
}

pub fn compare(base: &Summary, cand: &Summary, tol: &Tolerances) -> Comparison {
    let mut deltas = Vec::new();
    for check in &base.checks {
        let other = cand.checks.iter().find(|c| c.name == check.name);
        let verdict = |v: Option<Verdict>| v.map_or("absent".to_owned(), |v| format!("{v:?}"));
        let cand_verdict = other.map(|c| c.verdict);
        deltas.push(Delta {
            what: format!("check {}", check.name),
            baseline: format!("{} ({})", verdict(Some(check.verdict)), check.observed),
            candidate: other.map_or("absent".to_owned(), |c| {
                format!("{} ({})", verdict(Some(c.verdict)), c.observed)
            }),
            change: if Some(check.verdict) == cand_verdict {
                "same".into()
            } else {
                "changed".into()
            },
            regressed: check.verdict == Verdict::Pass && cand_verdict != Some(Verdict::Pass),
        });
    }
    let (b, c) = (&base.orders, &cand.orders);
    deltas.push(rate_delta(
        "checkout success rate",
        rate(b.accepted, b.attempted),
        rate(c.accepted, c.attempted),
        tol,
    ));
    deltas.push(rate_delta(
        "completion rate",
        rate(b.completed, b.accepted),
        rate(c.completed, c.accepted),
        tol,
    ));
    let floor_us = tol.latency_floor.as_micros() as u64;
    for stage in &base.latency {
        let Some(other) = cand.latency.iter().find(|l| l.stage == stage.stage) else {
            continue;
        };
        if stage.percentiles.count == 0 || other.percentiles.count == 0 {
            continue;
        }
        let (p, q) = (&stage.percentiles, &other.percentiles);
        for (name, b_us, c_us) in [
            ("p50", p.p50_us, q.p50_us),
            ("p90", p.p90_us, q.p90_us),
            ("p99", p.p99_us, q.p99_us),
            ("p99.9", p.p999_us, q.p999_us),
            ("max", p.max_us, q.max_us),
        ] {
            let growth = c_us as f64 / b_us.max(1) as f64 - 1.0;
            let gated = tol.gated.iter().any(|g| g == name);
            deltas.push(Delta {
                what: format!("{} {name}", stage.stage),
                baseline: fmt_us(b_us),
                candidate: fmt_us(c_us),
                change: format!("{:+.1}%", growth * 100.0),
                regressed: gated
                    && growth > tol.latency_increase
                    && c_us.saturating_sub(b_us) > floor_us,
            });
        }
    }
    Comparison { deltas }
}

/// The comparison table, wrapped to the terminal's width (see [`super::table_width`]).
pub fn render(comparison: &Comparison) -> String {
    render_in(comparison, super::table_width())
}

/// The comparison table in at most `width` columns.
pub fn render_in(comparison: &Comparison, width: u16) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(vec!["", "baseline", "candidate", "change", "regressed"]);
    for d in &comparison.deltas {
        table.add_row(vec![
            d.what.as_str(),
            d.baseline.as_str(),
            d.candidate.as_str(),
            d.change.as_str(),
            if d.regressed { "REGRESSED" } else { "" },
        ]);
    }
    table.to_string()
}
