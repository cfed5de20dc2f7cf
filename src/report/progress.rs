//! Live progress while a run goes: elapsed, phase, planned and achieved rate, in flight,
//! failures, the last 10 s's p99 per stage, consumer lag and the active fault.
//!
//! On a terminal it is one line redrawn each second (indicatif) that fits the width: the
//! fields are taken most useful first, and one that does not fit is left out. Elsewhere (every CI job) it is a plain
//! line on stderr every 10 s and at each change of phase or fault, so a log shows how a run
//! went while it goes. `--quiet` turns both off.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::load::Schedule;
use crate::observe::Observer;
use crate::observe::recorder::RECENT_S;
use crate::scenario::model::{PhaseKind, Scenario, Stage};
use crate::sync::lock;
use crate::verify::latency_slo::fmt_us;

/// Seconds between two plain lines when nothing changes.
const LINE_EVERY_S: u32 = 10;

#[derive(Clone)]
pub struct Progress {
    view: View,
}

#[derive(Clone)]
enum View {
    Off,
    Terminal(ProgressBar),
    /// What the last plain line showed: a new phase or fault prints at once.
    Lines {
        name: Arc<str>,
        last: Arc<Mutex<Option<Shown>>>,
    },
}

/// What a plain line showed: its phase and active faults.
type Shown = (String, Vec<String>);

/// One second's state, as both views show it.
struct Status {
    elapsed_s: u32,
    phase: String,
    planned: f64,
    achieved: u64,
    in_flight: i64,
    failed: u64,
    /// Stages with samples in the window, and their p99 there.
    p99: Vec<(Stage, u64)>,
    /// Events not yet committed, summed over the groups that answered.
    lag: Option<u64>,
    faults: Vec<String>,
}

impl Progress {
    pub fn new(show: bool, scenario: &Scenario, schedule: &Schedule) -> Progress {
        let view = if !show {
            View::Off
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(schedule.end.div_ceil(1_000_000_000)),
                ProgressDrawTarget::stderr(),
            );
            let style = ProgressStyle::with_template("{prefix:.bold} {pos}/{len}s {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(scenario.name.clone());
            View::Terminal(bar)
        } else {
            View::Lines {
                name: scenario.name.as_str().into(),
                last: Arc::default(),
            }
        };
        Progress { view }
    }

    /// Shows the state at the end of `second`.
    pub fn update(&self, o: &Observer, schedule: &Schedule, second: u32) {
        match &self.view {
            View::Off => {}
            View::Terminal(bar) => {
                let status = Status::now(o, schedule, second);
                bar.set_position(u64::from(second) + 1);
                // The prefix and the `pos/len` take the rest of the line.
                let width = terminal_size::terminal_size_of(std::io::stderr())
                    .map_or(80, |(w, _)| usize::from(w.0));
                let used = bar.prefix().len() + 12;
                bar.set_message(status.fitted(width.saturating_sub(used)));
            }
            View::Lines { name, last } => {
                let status = Status::now(o, schedule, second);
                let mut last = lock(last);
                let changed = last.as_ref().is_none_or(|(phase, faults)| {
                    *phase != status.phase || *faults != status.faults
                });
                if changed || (second + 1).is_multiple_of(LINE_EVERY_S) {
                    line(format_args!(
                        "{name} {}s {}",
                        status.elapsed_s,
                        status.fields().join(" | ")
                    ));
                    *last = Some((status.phase, status.faults));
                }
            }
        }
    }

    pub fn draining(&self) {
        match &self.view {
            View::Off => {}
            View::Terminal(bar) => bar.set_message("draining: waiting for the pipeline to settle"),
            View::Lines { name, .. } => {
                line(format_args!(
                    "{name} draining: waiting for the pipeline to settle"
                ));
            }
        }
    }

    pub fn finish(&self) {
        if let View::Terminal(bar) = &self.view {
            bar.finish_and_clear();
        }
    }
}

impl Status {
    fn now(o: &Observer, schedule: &Schedule, second: u32) -> Status {
        let t = u64::from(second) * 1_000_000_000;
        let (phase, planned) = match schedule.phase_at(t) {
            Some((i, p)) => (
                format!("{}/{} {}", i + 1, schedule.phases.len(), phase_name(p.kind)),
                p.rate_at(t),
            ),
            None => ("drain".to_owned(), 0.0),
        };
        let samples = o.last_samples(2);
        let achieved = match samples.as_slice() {
            [.., a, b] => b.accepted - a.accepted,
            [b] => b.accepted,
            [] => 0,
        };
        let lags: Vec<u64> = samples
            .last()
            .map(|s| s.lag.iter().filter_map(|(_, lag)| *lag).collect())
            .unwrap_or_default();
        let p99 = Stage::ALL
            .iter()
            .filter_map(|&stage| {
                let p = o.stage(stage).recent();
                (p.count > 0).then_some((stage, p.p99_us))
            })
            .collect();
        let c = &o.counters;
        Status {
            elapsed_s: second + 1,
            phase,
            planned,
            achieved,
            in_flight: c.open_checkouts.load(Relaxed),
            failed: c.failed.load(Relaxed),
            p99,
            lag: (!lags.is_empty()).then(|| lags.iter().sum()),
            faults: o.active_faults(),
        }
    }

    /// The fields, most useful first.
    fn fields(&self) -> Vec<String> {
        let mut fields = vec![
            self.phase.clone(),
            format!("{:.0}/s planned, {}/s acked", self.planned, self.achieved),
        ];
        if !self.faults.is_empty() {
            fields.push(format!("fault {}", self.faults.join(", ")));
        }
        fields.push(format!("failed {}", self.failed));
        if !self.p99.is_empty() {
            let stages: Vec<String> = self
                .p99
                .iter()
                .map(|(stage, us)| format!("{} {}", short(*stage), fmt_us(*us)))
                .collect();
            fields.push(format!("p99 {}s: {}", RECENT_S, stages.join(", ")));
        }
        if let Some(lag) = self.lag {
            fields.push(format!("lag {lag}"));
        }
        fields.push(format!("in flight {}", self.in_flight));
        fields
    }

    /// As many fields as fit in `width` columns, in order; the first always.
    fn fitted(&self, width: usize) -> String {
        let mut line = String::new();
        for field in self.fields() {
            let sep = if line.is_empty() { "" } else { " | " };
            if !line.is_empty() && line.chars().count() + sep.len() + field.chars().count() > width
            {
                continue;
            }
            line.push_str(sep);
            line.push_str(&field);
        }
        line
    }
}

/// One plain line on stderr; a closed stderr (`2>&-`) loses it instead of failing the run.
fn line(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// A stage's name in scenario files (`latency:` keys).
fn short(stage: Stage) -> &'static str {
    match stage {
        Stage::Checkout => "checkout",
        Stage::PaymentSucceeded => "payment",
        Stage::Fulfilled => "fulfilled",
        Stage::EmailSent => "email",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            elapsed_s: 40,
            phase: "2/3 hold 500/s".into(),
            planned: 500.0,
            achieved: 498,
            in_flight: 12,
            failed: 3,
            p99: vec![(Stage::Checkout, 4_100), (Stage::Fulfilled, 120_000)],
            lag: Some(35),
            faults: vec!["provider_outage payment".into()],
        }
    }

    #[test]
    fn a_line_has_every_field_the_ci_log_needs() {
        let line = status().fields().join(" | ");
        assert_eq!(
            line,
            "2/3 hold 500/s | 500/s planned, 498/s acked | fault provider_outage payment | \
             failed 3 | p99 10s: checkout 4.1ms, fulfilled 120.0ms | lag 35 | in flight 12"
        );
    }

    #[test]
    fn a_narrow_terminal_drops_the_later_fields_first() {
        let s = status();
        let wide = s.fitted(500);
        assert_eq!(wide, s.fields().join(" | "));
        // An 80-column terminal: the active fault stays, the later fields go.
        let narrow = s.fitted(80);
        assert!(narrow.chars().count() <= 80, "{narrow}");
        assert!(
            narrow.starts_with("2/3 hold 500/s | 500/s planned"),
            "{narrow}"
        );
        assert!(narrow.contains("fault provider_outage"), "{narrow}");
        assert!(!narrow.contains("in flight"), "{narrow}");
        // Whatever the width, the phase stays.
        assert_eq!(s.fitted(3), "2/3 hold 500/s");
    }
}
