//! The live terminal view (indicatif): phase, planned vs achieved rate, in flight, p99 so far,
//! failures. Drawn on stderr, hidden when stderr is not a terminal or when asked to be quiet.

use std::sync::atomic::Ordering::Relaxed;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::load::Schedule;
use crate::observe::Observer;
use crate::scenario::model::{PhaseKind, Scenario, Stage};
use crate::verify::latency_slo::fmt_us;

#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(show: bool, scenario: &Scenario, schedule: &Schedule) -> Progress {
        if !show {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(
            Some(schedule.end.div_ceil(1_000_000_000)),
            ProgressDrawTarget::stderr(),
        );
        let style =
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len}s {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(scenario.name.clone());
        Progress { bar: Some(bar) }
    }

    pub fn update(&self, o: &Observer, schedule: &Schedule, second: u32) {
        let Some(bar) = &self.bar else { return };
        let t = u64::from(second) * 1_000_000_000;
        let (phase, planned) = match schedule.phase_at(t) {
            Some((i, p)) => (
                format!("{}/{} {}", i + 1, schedule.phases.len(), phase_name(p.kind)),
                p.rate_at(t),
            ),
            None => ("drain".to_owned(), 0.0),
        };
        let samples = o.samples();
        let achieved = match samples.as_slice() {
            [.., a, b] => b.accepted - a.accepted,
            [b] => b.accepted,
            [] => 0,
        };
        let c = &o.counters;
        let in_flight = c.open_checkouts.load(Relaxed);
        let p99 = o.stage(Stage::Checkout).total().value_at_quantile(0.99);
        let fulfilled_p99 = o.stage(Stage::Fulfilled).total().value_at_quantile(0.99);
        bar.set_position(u64::from(second) + 1);
        bar.set_message(format!(
            "{phase} | {planned:.0}/s planned, {achieved}/s acked | in flight {in_flight} | \
             p99 checkout {} fulfilled {} | failed {}",
            fmt_us(p99),
            fmt_us(fulfilled_p99),
            c.failed.load(Relaxed)
        ));
    }

    pub fn draining(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message("draining: waiting for the pipeline to settle");
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn phase_name(kind: PhaseKind) -> String {
    match kind {
        PhaseKind::Ramp { from, to } => format!("ramp {:.0}->{:.0}/s", from.0, to.0),
        PhaseKind::Hold { rate } => format!("hold {:.0}/s", rate.0),
        PhaseKind::Spike { rate } => format!("spike {:.0}/s", rate.0),
        PhaseKind::Pause => "pause".to_owned(),
    }
}
