//! Judge: after the drain, the checks read the observations; the verdict, why a run is
//! invalid and each fault window's recovery are decided here, and nowhere else. The report
//! is built from what was decided and written to the run folder.

use std::sync::atomic::Ordering::Relaxed;

use super::drain::Drained;
use super::setup::target_info;
use super::shard::{ShardState, Sharding};
use super::{Run, RunError, RunResult};
use crate::exit::{RunVerdict, StopSignal};
use crate::load::Schedule;
use crate::observe::{FaultWindow, Observer, Settlement};
use crate::orders::OrderFactory;
use crate::report::summary::{Summary, SummaryInput};
use crate::scenario::model::Scenario;
use crate::services::analytics::AnalyticsState;
use crate::services::provider::{ChargesPerOrder, ProviderStats};
use crate::topology::ServiceKind;
use crate::transport::TransportInfo;
use crate::verify::{CheckInput, CheckResult, Verdict, checks_for, evaluate_all};

/// Everything the checks and the summary read: what was observed, and the ground truth. A
/// run gathers it from its parts; `doorbuster merge` from its shards' states.
pub struct Evidence<'a> {
    pub scenario: &'a Scenario,
    pub seed: u64,
    pub run_arg: &'a str,
    pub schedule: &'a Schedule,
    pub observer: &'a Observer,
    pub factory: &'a OrderFactory,
    pub transport: TransportInfo,
    pub provider: ProviderStats,
    pub captures: &'a ChargesPerOrder,
    pub analytics: Option<AnalyticsState>,
    pub enabled: &'a [ServiceKind],
    pub settlement: &'a Settlement,
    /// Ids `0..attempted` were due (fewer than planned if interrupted).
    pub attempted: u64,
    pub interrupted: bool,
    pub interrupted_by: Option<StopSignal>,
    pub start: Option<crate::clock::StartSync>,
    /// Processes whose observations these are (1 unless merged from shards).
    pub shards: u32,
}

impl Evidence<'_> {
    /// Checks, verdict, recovery: the summary. A shard of a split run judges nothing (it
    /// saw part of the run): its checks say so, and the merge judges.
    pub fn judge(self, shard: Option<&Sharding>) -> Summary {
        let Evidence {
            scenario, observer, ..
        } = self;
        let checks = match shard.filter(|s| s.is_part()) {
            Some(s) => not_judged(scenario, s),
            None => evaluate_all(
                &checks_for(scenario),
                &CheckInput {
                    analytics: self.analytics.as_ref(),
                    scenario,
                    observer,
                    factory: self.factory,
                    attempted: self.attempted,
                    captures_per_order: self.captures,
                    enabled: self.enabled,
                    settlement: self.settlement,
                    shards: self.shards,
                },
            ),
        };
        observer.ledger.check_pages();
        let invalid = invalid_reason(scenario, observer, self.start.as_ref());
        let verdict = decide(self.interrupted, invalid.is_some(), &checks);
        Summary::build(SummaryInput {
            scenario,
            seed: self.seed,
            run_arg: self.run_arg,
            schedule: self.schedule,
            observer,
            transport: self.transport,
            provider: self.provider,
            factory: self.factory,
            attempted: self.attempted,
            checks,
            verdict,
            invalid_reason: invalid,
            interrupted_by: self.interrupted_by,
            start: self.start,
            analytics: self.analytics,
            // Recovery is measured on doorbuster's own consumer groups, which observe mode
            // does not run.
            faults: match scenario.observe {
                Some(_) => observer.fault_windows(),
                None => recoveries(scenario, observer),
            },
        })
    }
}

/// A shard's checks: each one named, none judged.
fn not_judged(scenario: &Scenario, s: &Sharding) -> Vec<CheckResult> {
    checks_for(scenario)
        .iter()
        .map(|planned| {
            CheckResult::new(
                &planned.name(),
                Verdict::Unknown,
                format!("not judged in shard {} (it saw part of the run)", s.shard),
                format!(
                    "judged by `doorbuster merge` over the {} shards of run {}",
                    s.shard.count, s.run_id
                ),
            )
        })
        .collect()
}

impl Run<'_> {
    /// Checks, verdict, recovery; the summary, written with every report format unless the
    /// run writes no files. A shard writes its state for the merge too.
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
            sharding,
            ..
        } = self;
        let captures = provider.captures_per_order();
        let attempted = drained.outcome.dispatched as u64;
        let evidence = Evidence {
            scenario,
            seed,
            run_arg: &run_arg,
            schedule: &schedule,
            observer: &observer,
            factory: &factory,
            transport: target_info(transport.as_ref(), scenario),
            provider: provider.stats(),
            captures: &captures,
            analytics: pipeline.analytics.as_ref().map(|a| a.state()),
            enabled: &pipeline.enabled,
            settlement: &drained.settlement,
            attempted,
            interrupted: drained.interrupted,
            interrupted_by: drained.interrupted_by,
            start: start.clone(),
            shards: 1,
        };
        let summary = evidence.judge(sharding.as_ref());
        if let Some(dir) = &dir {
            let report_error = |source| RunError::Report {
                path: dir.clone(),
                source,
            };
            if let Some(sharding) = &sharding {
                let state = ShardState {
                    version: super::shard::STATE_VERSION,
                    sharding: sharding.clone(),
                    seed,
                    run_arg: run_arg.clone(),
                    scenario: scenario.clone(),
                    attempted,
                    interrupted_by: drained
                        .interrupted
                        .then_some(drained.interrupted_by)
                        .flatten(),
                    interrupted: drained.interrupted,
                    start,
                    transport: summary.target.clone(),
                    enabled: pipeline.enabled.clone(),
                    provider: provider.stats(),
                    captures: captures.iter().collect(),
                    analytics: pipeline.analytics.as_ref().map(|a| a.state()),
                    settlement: drained.settlement.clone(),
                    observed: observer.state(attempted),
                };
                (state.write(dir, &observer.ledger)).map_err(report_error)?;
            }
            crate::report::write_all(dir, &summary).map_err(report_error)?;
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
    if let Some(lost) = observer.ledger.lost() {
        return Some(format!(
            "{lost}: what the checks would say about those orders is not what happened"
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
