//! Judge: after the drain, the checks read the observations; the verdict, why a run is
//! invalid and each fault window's recovery are decided here, and nowhere else. The report
//! is built from what was decided and written to the run folder.

use std::sync::atomic::Ordering::Relaxed;

use super::drain::Drained;
use super::setup::target_info;
use super::{Run, RunError, RunResult};
use crate::exit::RunVerdict;
use crate::observe::{FaultWindow, Observer};
use crate::report::summary::{Summary, SummaryInput};
use crate::scenario::model::Scenario;
use crate::verify::{CheckInput, CheckResult, Verdict, checks_for, evaluate_all};

impl Run<'_> {
    /// Checks, verdict, recovery; the summary, written with every report format unless the
    /// run writes no files.
    pub fn judge(self, drained: Drained) -> Result<RunResult, RunError> {
        let Run {
            scenario,
            seed,
            run_arg,
            schedule,
            dir,
            observer,
            transport,
            factory,
            provider,
            pipeline,
            start,
            ..
        } = self;
        let captures = provider.captures_per_order();
        let analytics_state = pipeline.analytics.as_ref().map(|a| a.state());
        let attempted = drained.outcome.dispatched as u64;
        let input = CheckInput {
            analytics: analytics_state.as_ref(),
            scenario,
            observer: &observer,
            factory: &factory,
            attempted,
            captures_per_order: &captures,
            enabled: &pipeline.enabled,
            settlement: &drained.settlement,
        };
        let checks = evaluate_all(&checks_for(scenario), &input);
        let invalid = invalid_reason(scenario, &observer, start.as_ref());
        let verdict = decide(drained.interrupted, invalid.is_some(), &checks);
        let summary = Summary::build(SummaryInput {
            scenario,
            seed,
            run_arg: &run_arg,
            schedule: &schedule,
            observer: &observer,
            transport: target_info(transport.as_ref(), scenario),
            provider: &provider,
            factory: &factory,
            attempted,
            checks,
            verdict,
            invalid_reason: invalid,
            interrupted_by: drained.interrupted_by,
            start,
            analytics: pipeline.analytics.as_ref().map(|a| a.state()),
            // Recovery is measured on doorbuster's own consumer groups, which observe mode
            // does not run.
            faults: match scenario.observe {
                Some(_) => observer.fault_windows(),
                None => recoveries(scenario, &observer),
            },
        });
        if let Some(dir) = &dir {
            crate::report::write_all(dir, &summary).map_err(|source| RunError::Report {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(RunResult {
            summary,
            dir,
            observer,
            provider,
            analytics: pipeline.analytics.as_ref().map(|a| a.state()),
            stock: pipeline.inventory.as_ref().map(|i| i.stock()),
        })
    }
}

/// Why the run is not valid, if it is not: the generator fell behind its own schedule (or
/// started late against the instant it agreed with other machines), so its latencies do not
/// describe the system under test.
fn invalid_reason(
    scenario: &Scenario,
    observer: &Observer,
    start: Option<&crate::clock::StartSync>,
) -> Option<String> {
    let max_lag = scenario.load.max_send_lag;
    if let Some(start) = start.filter(|s| s.late() > max_lag) {
        return Some(format!(
            "the load started {:.1} ms after the agreed --start-at instant {}, more than \
             max_send_lag {}: its orders left later than the other machines' (clock {})",
            start.offset_ms,
            start.agreed,
            humantime::format_duration(max_lag),
            start.clock_source
        ));
    }
    let not_rendered = observer.counters.not_rendered.load(Relaxed);
    if not_rendered > 0 {
        return Some(format!(
            "{not_rendered} orders could not be rendered by the payload template and were not \
             sent (the findings name them)"
        ));
    }
    let send_lag_p99 = observer.send_lag.total().value_at_quantile(0.99);
    (send_lag_p99 > scenario.load.max_send_lag.as_micros() as u64).then(|| {
        format!(
            "the generator fell behind its schedule: send lag p99 {} exceeds max_send_lag {}",
            crate::verify::latency_slo::fmt_us(send_lag_p99),
            humantime::format_duration(scenario.load.max_send_lag)
        )
    })
}

/// The run's verdict: an interrupt outranks an invalid run, which outranks the checks; a
/// check that is not a pass (failed or unknown) fails the run.
fn decide(interrupted: bool, invalid: bool, checks: &[CheckResult]) -> RunVerdict {
    if interrupted {
        RunVerdict::Interrupted
    } else if invalid {
        RunVerdict::Invalid
    } else if checks.iter().all(|c| c.verdict == Verdict::Pass) {
        RunVerdict::Pass
    } else {
        RunVerdict::Fail
    }
}

/// Every fault window with its recovery measured from the per-second samples: how high the
/// backlog rose and how long lag and latency took to come back.
fn recoveries(scenario: &Scenario, observer: &Observer) -> Vec<FaultWindow> {
    let samples = observer.samples();
    observer
        .fault_windows()
        .into_iter()
        .map(|mut window| {
            window.recovery = Some(crate::verify::recovery::measure(
                &window,
                &samples,
                &scenario.checks.latency,
                |stage| observer.stage(stage).series(),
            ));
            window
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(verdict: Verdict) -> CheckResult {
        CheckResult {
            name: "no_loss".into(),
            verdict,
            observed: String::new(),
            threshold: String::new(),
            evidence: Vec::new(),
            evidence_total: 0,
        }
    }

    /// An interrupt outranks an invalid run, which outranks the checks; Unknown is no pass.
    #[test]
    fn the_verdict_ranks_interrupt_then_invalid_then_checks() {
        let pass = [check(Verdict::Pass)];
        let unknown = [check(Verdict::Pass), check(Verdict::Unknown)];
        assert_eq!(decide(true, true, &pass), RunVerdict::Interrupted);
        assert_eq!(decide(false, true, &pass), RunVerdict::Invalid);
        assert_eq!(decide(false, false, &pass), RunVerdict::Pass);
        assert_eq!(decide(false, false, &unknown), RunVerdict::Fail);
        assert_eq!(decide(false, false, &[]), RunVerdict::Pass);
    }
}
