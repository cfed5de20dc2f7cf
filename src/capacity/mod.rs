//! `doorbuster capacity`: the highest rate a scenario's own shape sustains, what fails first
//! above it, and the headroom against a forecast.
//!
//! A search over normal runs, the way a capacity planner would do it by hand with `run
//! --rate-scale`: scale every phase of the scenario by a factor (its ramps, holds and spikes
//! keep their shape), double the factor while the run passes, then bisect between the last
//! pass and the first failure. Each step is judged by every check the scenario has (latency
//! SLOs, checkout success, no loss, bounded lag, send lag), leaves a normal run folder, and is
//! followed by a settle time so the target's backlog from one step does not count against the
//! next. A step whose run is *invalid* (doorbuster could not send at the planned rate) ends the
//! search too: above it the answer would be the generator's limit, not the target's, and the
//! report says so.
//!
//! ```text
//! search(plan, make, step) -> Capacity     // make: scale -> Scenario; step: Scenario -> Summary
//! Capacity::exit() -> Exit                 // 0 when the headroom holds, 1 when it does not
//! ```
//!
//! `bench` is this search over a built-in hold on the embedded broker.

pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use crate::exit::{Exit, RunVerdict};
use crate::report::summary::Summary;
use crate::scenario::Scenario;
use crate::verify::Verdict;

/// How the search steps.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The first factor tried (1 = the scenario as written).
    pub start: f64,
    /// The largest factor tried while doubling.
    pub max: f64,
    /// Bisection steps after the first failure.
    pub refine: u32,
    /// The pause between steps, for the target to drain and settle.
    pub settle: Duration,
    pub forecast: Option<Forecast>,
}

/// The rate the system must hold, for the headroom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forecast {
    /// A multiple of the scenario's own peak rate (`3x`).
    Factor(f64),
    /// A peak rate in orders per second (`4500/s`).
    Rate(f64),
}

impl Forecast {
    /// `3x`, `2.5x`, `4500/s`.
    pub fn parse(text: &str) -> Result<Forecast, String> {
        let text = text.trim();
        let number = |n: &str| {
            n.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        if let Some(n) = text.strip_suffix('x').and_then(number) {
            return Ok(Forecast::Factor(n));
        }
        if let Some(n) = text.strip_suffix("/s").and_then(number) {
            return Ok(Forecast::Rate(n));
        }
        Err(format!(
            "{text:?} is not a forecast: write a multiple of the scenario's peak like 3x, \
             or a peak rate like 4500/s"
        ))
    }

    /// The peak rate this forecast asks for, given the scenario's own.
    pub fn rate(self, base_peak: f64) -> f64 {
        match self {
            Forecast::Factor(f) => base_peak * f,
            Forecast::Rate(r) => r,
        }
    }
}

/// One step of the search: a whole run at one scale.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub scale: f64,
    /// The highest planned rate of the scaled scenario (orders/s).
    pub planned_peak: f64,
    /// The mean acked rate over the seconds planned at (or within 1 % of) the peak.
    pub achieved_peak: f64,
    pub verdict: RunVerdict,
    pub orders: u64,
    pub accepted: u64,
    pub send_lag_p99_us: u64,
    /// p99 per latency stage, in the order the summary lists them.
    pub p99_us: Vec<(String, u64)>,
    /// The first failed check with what it observed, or why the run was invalid; empty on a
    /// pass.
    pub why: String,
    pub wall_s: f64,
    /// The step's run folder, when files were written.
    pub dir: Option<PathBuf>,
}

impl Step {
    pub fn of(scale: f64, planned_peak: f64, summary: &Summary, dir: Option<PathBuf>) -> Step {
        let why = summary.invalid_reason.clone().unwrap_or_else(|| {
            summary
                .checks
                .iter()
                .find(|c| c.verdict == Verdict::Fail)
                .map(|c| format!("{}: {}", c.name, c.observed))
                .unwrap_or_default()
        });
        Step {
            scale,
            planned_peak,
            achieved_peak: achieved_at_peak(summary),
            verdict: summary.verdict,
            orders: summary.orders.attempted,
            accepted: summary.orders.accepted,
            send_lag_p99_us: summary.send_lag.p99_us,
            p99_us: summary
                .latency
                .iter()
                .map(|l| (l.stage.clone(), l.percentiles.p99_us))
                .collect(),
            why,
            wall_s: summary.duration_s,
            dir,
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict == RunVerdict::Pass
    }
}

/// The mean acked orders per second over the seconds whose planned rate is within 1 % of
/// the run's highest: what the target took at the peak, not diluted by ramps and pauses.
fn achieved_at_peak(summary: &Summary) -> f64 {
    let planned = &summary.rates.planned_per_second;
    let achieved = &summary.rates.achieved_per_second;
    let Some(&top) = planned.iter().max() else {
        return 0.0;
    };
    let seconds: Vec<u64> = planned
        .iter()
        .zip(achieved)
        .filter(|(p, _)| top > 0 && **p as f64 >= top as f64 * 0.99)
        .map(|(_, a)| *a)
        .collect();
    if seconds.is_empty() {
        return 0.0;
    }
    seconds.iter().sum::<u64>() as f64 / seconds.len() as f64
}

/// The highest planned rate of a scenario's phases.
pub fn peak_rate(scenario: &Scenario) -> f64 {
    scenario
        .load
        .phases
        .iter()
        .map(|p| {
            let (from, to) = p.kind.rates();
            from.max(to)
        })
        .fold(0.0, f64::max)
}

/// Why the search ended without a failure above the sustained rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ceiling {
    /// Every factor up to the largest allowed passed: the capacity is at least this.
    MaxScale { scale: f64 },
    /// The scenario cannot be scaled further (a rate or order limit), with what it said.
    Limit { scale: f64, message: String },
    /// A signal stopped the search.
    Interrupted,
    /// A step could not be run at all (the target went away, say): what it said, and how
    /// `run` would have exited for it.
    Error {
        scale: f64,
        message: String,
        #[serde(skip)]
        exit: Exit,
    },
}

/// What the search found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Capacity {
    pub scenario: String,
    /// The scenario's own peak rate (scale 1).
    pub base_peak: f64,
    /// Every step in the order it ran.
    pub steps: Vec<Step>,
    /// The highest passing step (index into `steps`).
    pub sustained: Option<usize>,
    /// The lowest failing step above it: the knee, and what failed first.
    pub first_failure: Option<usize>,
    /// When the search ended without a failure to show the knee.
    pub ceiling: Option<Ceiling>,
    pub forecast: Option<Headroom>,
}

/// The sustained rate against the forecast.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Headroom {
    /// The forecast's peak rate (orders/s).
    pub rate: f64,
    /// The sustained peak rate divided by it: 1.2 means 20 % to spare.
    pub ratio: f64,
    pub holds: bool,
}

impl Capacity {
    pub fn sustained(&self) -> Option<&Step> {
        self.sustained.and_then(|i| self.steps.get(i))
    }

    pub fn first_failure(&self) -> Option<&Step> {
        self.first_failure.and_then(|i| self.steps.get(i))
    }

    /// 0 when the headroom holds (without a forecast: the scenario as written passes), 1
    /// when it does not; a search a signal stopped exits as that signal would, one a step
    /// could not run as `run` would have (3 unreachable, 2 a refused target).
    pub fn exit(&self, stopped: Option<crate::exit::StopSignal>) -> Exit {
        if let Some(signal) = stopped {
            return Exit::Stopped(signal);
        }
        if let Some(Ceiling::Error { exit, .. }) = self.ceiling {
            return exit;
        }
        let holds = match self.forecast {
            Some(h) => h.holds,
            None => self
                .sustained()
                .is_some_and(|s| s.planned_peak >= self.base_peak),
        };
        if holds { Exit::Success } else { Exit::Failed }
    }
}

/// Why a step could not be made or run.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The scaled scenario is refused (a rate or order limit): the search stops below it.
    #[error("{0}")]
    Limit(String),
    /// The run could not be carried out at all.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
}

impl StepError {
    /// How the process exits when the search could not go on.
    pub fn exit(&self) -> Exit {
        match self {
            StepError::Limit(_) => Exit::BadInput,
            StepError::Run(e) => Exit::from(e),
        }
    }
}

/// Runs the search. `make` builds the scenario at a scale; `step` runs it and returns its
/// summary and run folder (or `None` when a signal stopped it); `on_step` sees each step as it
/// ends.
pub async fn search<Make, RunStep, Fut>(
    plan: &Plan,
    mut make: Make,
    mut step: RunStep,
    mut on_step: impl FnMut(&Step),
) -> Result<Capacity, StepError>
where
    Make: FnMut(f64) -> Result<Scenario, StepError>,
    RunStep: FnMut(Scenario, f64) -> Fut,
    Fut: Future<Output = Result<Option<(Summary, Option<PathBuf>)>, StepError>>,
{
    let base = make(1.0)?;
    let mut found = Capacity {
        scenario: base.name.clone(),
        base_peak: peak_rate(&base),
        steps: Vec::new(),
        sustained: None,
        first_failure: None,
        ceiling: None,
        forecast: None,
    };
    // One step: whether it passed, or why the search must end here.
    let mut attempt = async |scale: f64, found: &mut Capacity| -> Result<Outcome, StepError> {
        let scenario = match make(scale) {
            Ok(s) => s,
            Err(StepError::Limit(message)) => {
                return Ok(Outcome::End(Ceiling::Limit { scale, message }));
            }
            Err(e) => return Err(e),
        };
        let peak = peak_rate(&scenario);
        let (summary, dir) = match step(scenario, scale).await {
            Ok(Some(ran)) => ran,
            Ok(None) => return Ok(Outcome::End(Ceiling::Interrupted)),
            // The steps so far still make a report; the search ends here.
            Err(e) => {
                let (message, exit) = (e.to_string(), e.exit());
                return Ok(Outcome::End(Ceiling::Error {
                    scale,
                    message,
                    exit,
                }));
            }
        };
        let s = Step::of(scale, peak, &summary, dir);
        on_step(&s);
        let passed = s.passed();
        found.steps.push(s);
        Ok(if passed { Outcome::Pass } else { Outcome::Fail })
    };

    // Double while it passes (an invalid run counts as a failure: above it, the answer
    // would be this machine's limit, and the report says so)...
    let mut scale = plan.start;
    let mut low: Option<f64> = None;
    let mut high: Option<f64> = None;
    loop {
        match attempt(scale, &mut found).await? {
            Outcome::Pass => low = Some(scale),
            Outcome::Fail => {
                high = Some(scale);
                break;
            }
            Outcome::End(ceiling) => {
                found.ceiling = Some(ceiling);
                break;
            }
        }
        if scale >= plan.max {
            found.ceiling = Some(Ceiling::MaxScale { scale });
            break;
        }
        scale = (scale * 2.0).min(plan.max);
        tokio::time::sleep(plan.settle).await;
    }
    // ...then bisect between the last pass and the first failure.
    if let (Some(mut lo), Some(mut hi)) = (low, high) {
        for _ in 0..plan.refine {
            tokio::time::sleep(plan.settle).await;
            let mid = (lo + hi) / 2.0;
            match attempt(mid, &mut found).await? {
                Outcome::Pass => lo = mid,
                Outcome::Fail => hi = mid,
                Outcome::End(ceiling) => {
                    found.ceiling = Some(ceiling);
                    break;
                }
            }
        }
    }
    // The sustained rate is the highest pass; the knee the lowest failure above it.
    found.sustained = found
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.passed())
        .max_by(|a, b| a.1.planned_peak.total_cmp(&b.1.planned_peak))
        .map(|(i, _)| i);
    let sustained_peak = found.sustained().map_or(0.0, |s| s.planned_peak);
    found.first_failure = found
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.passed() && s.planned_peak > sustained_peak)
        .min_by(|a, b| a.1.planned_peak.total_cmp(&b.1.planned_peak))
        .map(|(i, _)| i);
    found.forecast = plan.forecast.map(|f| {
        let rate = f.rate(found.base_peak);
        Headroom {
            rate,
            ratio: if rate > 0.0 {
                sustained_peak / rate
            } else {
                0.0
            },
            holds: sustained_peak >= rate,
        }
    });
    Ok(found)
}

enum Outcome {
    Pass,
    Fail,
    End(Ceiling),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecasts_are_a_multiple_or_a_rate() {
        assert_eq!(Forecast::parse("3x"), Ok(Forecast::Factor(3.0)));
        assert_eq!(Forecast::parse(" 4500/s"), Ok(Forecast::Rate(4500.0)));
        assert_eq!(Forecast::Factor(3.0).rate(500.0), 1500.0);
        assert_eq!(Forecast::Rate(4500.0).rate(500.0), 4500.0);
        for bad in ["3", "x", "-2x", "0/s", "fast", "NaNx"] {
            let error = Forecast::parse(bad).unwrap_err();
            assert!(error.contains("3x") && error.contains("4500/s"), "{error}");
        }
    }
}
