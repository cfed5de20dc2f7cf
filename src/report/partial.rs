//! A killed run's report. `run.json` is written into the run folder when the load starts;
//! when a run dies without writing `summary.json` (SIGKILL, out of memory, a power cut),
//! [`rebuild`] makes a partial [`Summary`] from it and the interval logs.
//!
//! Only what is on disk is used. The ledger, the counters and the provider's records lived
//! in the killed process's memory, so no check can be judged: every one is Unknown, the
//! verdict is `incomplete`, and the summary lists what it does not know.

use std::path::{Path, PathBuf};

use super::summary::{
    Deliveries, Incomplete, Rates, RunVerdict, StageLatency, Summary, distribution,
};
use crate::load::{PlannedPhase, Schedule};
use crate::observe::Finding;
use crate::observe::hlog;
use crate::observe::recorder::{Percentiles, SeriesPoint, new_histogram};
use crate::scenario::model::{CheckoutMode, CompareTolerances, Scenario, Stage};
use crate::services::provider::ProviderStats;
use crate::transport::TransportInfo;
use crate::verify::{CheckResult, Verdict};

/// The file name of the record, inside the run folder.
pub const RUN_RECORD: &str = "run.json";
const RECORD_VERSION: u32 = 1;

/// What is known of a run the moment its load starts: enough to name it, repeat it and lay
/// its interval logs out on the planned time axis.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub record_version: u32,
    pub doorbuster_version: String,
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub reproduce: String,
    /// The target as the report shows it (passwords masked).
    pub target: TransportInfo,
    pub checkout_mode: CheckoutMode,
    /// Wall-clock t=0 of the run (the end of setup), Unix milliseconds.
    pub started_unix_ms: u64,
    pub planned_orders: u64,
    /// The end of the last load phase.
    pub planned_load_s: f64,
    /// The longest the drain may take after it.
    pub drain_max_s: f64,
    pub planned_per_second: Vec<u64>,
    pub phases: Vec<PlannedPhase>,
    /// The checks the run would have judged, by name.
    pub checks: Vec<String>,
    pub tolerances: CompareTolerances,
}

impl RunRecord {
    pub fn of(
        scenario: &Scenario,
        seed: u64,
        run_arg: &str,
        schedule: &Schedule,
        target: TransportInfo,
        started_unix_ns: u64,
    ) -> RunRecord {
        RunRecord {
            record_version: RECORD_VERSION,
            doorbuster_version: env!("CARGO_PKG_VERSION").into(),
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed,
            reproduce: super::summary::reproduce_command(run_arg, seed),
            target,
            checkout_mode: scenario.load.checkout_mode,
            started_unix_ms: started_unix_ns / 1_000_000,
            planned_orders: schedule.orders() as u64,
            planned_load_s: schedule.end as f64 / 1e9,
            drain_max_s: scenario.load.drain.as_secs_f64(),
            planned_per_second: schedule.planned_per_second(),
            phases: schedule.phases.clone(),
            checks: crate::verify::checks_for(scenario)
                .iter()
                .map(|c| c.name())
                .collect(),
            tolerances: scenario.checks.compare,
        }
    }

    /// Writes `run.json` into `dir` whole or not at all (a temporary file renamed), so a
    /// kill while writing never leaves half a record.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        super::write_whole(&dir.join(RUN_RECORD), &json)
    }

    pub fn read(dir: &Path) -> Result<RunRecord, RebuildError> {
        let path = dir.join(RUN_RECORD);
        let bytes = std::fs::read(&path).map_err(|source| RebuildError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| RebuildError::Parse { path, source })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a doorbuster run record: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What a rebuilt summary cannot say, because only the killed process's memory held it.
const UNKNOWN: [&str; 6] = [
    "every check's verdict (the ledger of publishes, deliveries and effects was in memory)",
    "attempted and failed checkouts (attempted shows the accepted ones: a lower bound)",
    "declined, failed and completed orders, resubmits and backorders",
    "deliveries, duplicates, dead letters and consumer lag",
    "the payment provider's calls and captures, the analytics totals and the send lag",
    "the faults applied (the scenario lists the planned ones) and the findings",
];

/// Builds the partial summary of the run in `dir` from its `run.json` and interval logs.
/// Never a pass: the verdict is `incomplete` and every check Unknown.
pub fn rebuild(dir: &Path) -> Result<Summary, RebuildError> {
    let record = RunRecord::read(dir)?;
    let mut findings = Vec::new();
    let mut rebuilt_from = vec![RUN_RECORD.to_owned()];
    let mut stages = Vec::with_capacity(Stage::ALL.len());
    let mut logged_seconds = 0u32;
    for stage in Stage::ALL {
        let read = match hlog::read_back(dir, stage) {
            Ok(read) => {
                rebuilt_from.push(hlog::file_name(stage));
                read
            }
            Err(e) => {
                findings.push(format!(
                    "no latency for {}: cannot read {}: {e}",
                    stage.label(),
                    hlog::file_name(stage)
                ));
                hlog::ReadBack::default()
            }
        };
        findings.extend(read.damaged.clone());
        if let Some((last, _)) = read.intervals.last() {
            logged_seconds = logged_seconds.max(last.saturating_add(1));
        }
        stages.push((stage, read.intervals));
    }
    let count_of = |wanted: Stage| -> u64 {
        stages
            .iter()
            .filter(|(s, _)| *s == wanted)
            .flat_map(|(_, intervals)| intervals.iter().map(|(_, h)| h.len()))
            .sum()
    };
    let accepted = count_of(Stage::Checkout);
    let mut achieved_per_second = vec![0u64; logged_seconds as usize];
    for (stage, intervals) in &stages {
        if *stage == Stage::Checkout {
            for (second, h) in intervals {
                if let Some(slot) = achieved_per_second.get_mut(*second as usize) {
                    *slot += h.len();
                }
            }
        }
    }
    let latency = stages
        .iter()
        .map(|(stage, intervals)| stage_latency(*stage, intervals))
        .collect();
    let reason = format!(
        "the run ended without writing summary.json (killed: SIGKILL, out of memory, a power \
         cut) after at least {logged_seconds} s of run time, of {:.0} s of planned load; this \
         report is partial, rebuilt from run.json and the interval logs, and no check was \
         judged",
        record.planned_load_s
    );
    let checks = record
        .checks
        .iter()
        .map(|name| {
            // The reason is the observation; the same line under every check says nothing more.
            CheckResult::new(
                name,
                Verdict::Unknown,
                "not judged: the run was killed before its checks ran, and what they read was \
                 in its memory",
                "as the scenario sets it",
            )
        })
        .collect();
    let at_ms = u64::from(logged_seconds) * 1000;
    Ok(Summary {
        schema_version: super::summary::SCHEMA_VERSION,
        doorbuster_version: record.doorbuster_version,
        scenario: record.scenario,
        description: record.description,
        seed: record.seed,
        reproduce: record.reproduce,
        verdict: RunVerdict::Incomplete,
        exit_code: crate::exit::Exit::Incomplete.code().into(),
        invalid_reason: None,
        interrupted_by: None,
        incomplete: Some(Incomplete {
            reason,
            rebuilt_from,
            logged_seconds,
            unknown: UNKNOWN.iter().map(|&u| u.to_owned()).collect(),
        }),
        started_unix_ms: record.started_unix_ms,
        start: None,
        duration_s: f64::from(logged_seconds),
        target: record.target,
        checkout_mode: record.checkout_mode,
        orders: super::summary::OrderCounts {
            planned: record.planned_orders,
            attempted: accepted,
            accepted,
            fulfilled: count_of(Stage::Fulfilled),
            // Nothing else can be rebuilt from the interval log: listed as unknown.
            ..Default::default()
        },
        checks,
        rates: Rates {
            planned_per_second: record.planned_per_second,
            achieved_per_second,
            phases: record.phases,
        },
        latency,
        // The scenario's SLOs are not in the record: nothing is said about them.
        latency_not_judged: Vec::new(),
        send_lag: Percentiles::of(&new_histogram()),
        deliveries: Deliveries::default(),
        provider: ProviderStats::default(),
        analytics: None,
        samples: Vec::new(),
        tolerances: record.tolerances,
        faults: Vec::new(),
        outputs: Vec::new(),
        findings: findings
            .into_iter()
            .map(|what| Finding { at_ms, what })
            .collect(),
        ledger_bytes_per_order: crate::observe::Ledger::BYTES_PER_ORDER,
    })
}

/// A stage's latency over the whole logged run and per second, as a finished run reports it.
fn stage_latency(stage: Stage, intervals: &[(u32, hdrhistogram::Histogram<u64>)]) -> StageLatency {
    let mut total = new_histogram();
    let mut series = Vec::new();
    for (second, h) in intervals {
        if h.is_empty() {
            continue;
        }
        // Every log is written with the recorder's bounds, so `add` only fails on a log
        // from elsewhere; its values then count as far as they fit.
        if total.add(h).is_err() {
            for v in h.iter_recorded() {
                total.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        series.push(SeriesPoint {
            second: *second,
            percentiles: Percentiles::of(h),
        });
    }
    StageLatency {
        stage: stage.label().to_owned(),
        percentiles: Percentiles::of(&total),
        distribution: distribution(&total),
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::hlog::IntervalLogs;

    fn histogram(values: &[u64]) -> hdrhistogram::Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    /// A run folder as a kill leaves it: run.json and three seconds of interval logs.
    fn killed_run(dir: &Path) -> RunRecord {
        let (scenario, _) = crate::scenario::load("smoke").unwrap();
        let schedule = Schedule::plan(&scenario.load, 7);
        let target = TransportInfo {
            kind: "embedded".into(),
            settings: Vec::new(),
        };
        let record = RunRecord::of(
            &scenario,
            7,
            "smoke",
            &schedule,
            target,
            1_700_000_000e9 as u64,
        );
        let logs = IntervalLogs::create(dir, 1_700_000_000e9 as u64).unwrap();
        record.write(dir).unwrap();
        for second in 0..3 {
            logs.write(Stage::Checkout, second, &histogram(&[1_000, 2_000]))
                .unwrap();
            let fulfilled = if second == 0 { vec![] } else { vec![90_000] };
            logs.write(Stage::Fulfilled, second, &histogram(&fulfilled))
                .unwrap();
        }
        record
    }

    #[test]
    fn a_killed_runs_folder_rebuilds_to_an_incomplete_summary_that_judges_nothing() {
        // What is on disk comes back exactly; nothing else is claimed, and nothing passes.
        let dir = tempfile::tempdir().unwrap();
        let record = killed_run(dir.path());
        assert_eq!(RunRecord::read(dir.path()).unwrap(), record);
        let s = rebuild(dir.path()).unwrap();
        assert_eq!(s.verdict, RunVerdict::Incomplete);
        assert_eq!(s.exit_code, 4);
        assert_eq!(s.reproduce, "doorbuster run smoke --seed 7");
        assert_eq!(s.started_unix_ms, 1_700_000_000_000);
        assert_eq!(s.orders.planned, record.planned_orders);
        assert_eq!((s.orders.accepted, s.orders.fulfilled), (6, 2));
        assert_eq!(s.rates.achieved_per_second, [2, 2, 2]);
        assert_eq!(s.incomplete.as_ref().unwrap().logged_seconds, 3);
        let checkout = &s.latency[0];
        assert_eq!(checkout.stage, "order.created");
        assert_eq!(checkout.percentiles.count, 6);
        assert_eq!(checkout.series.len(), 3);
        // An empty second leaves no point, as in a finished run.
        let fulfilled = &s.latency[Stage::Fulfilled as usize];
        let seconds: Vec<u32> = fulfilled.series.iter().map(|p| p.second).collect();
        assert_eq!(seconds, [1, 2]);
        assert!(!s.checks.is_empty());
        assert_eq!(s.checks.len(), record.checks.len());
        assert!(s.checks.iter().all(|c| c.verdict == Verdict::Unknown));
        assert!(s.findings.is_empty(), "{:?}", s.findings);
        // Every format renders it, and the JSON keeps to the committed schema.
        crate::report::write_all(dir.path(), &s).unwrap();
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/summary.schema.json")).unwrap();
        let doc = serde_json::to_value(&s).unwrap();
        assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&doc));
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("id=\"partial\""));
    }

    #[test]
    fn a_missing_or_damaged_log_is_a_finding_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        killed_run(dir.path());
        std::fs::remove_file(dir.path().join(hlog::file_name(Stage::EmailSent))).unwrap();
        let log = dir.path().join(hlog::file_name(Stage::Checkout));
        let text = std::fs::read(&log).unwrap();
        std::fs::write(&log, &text[..text.len() - 10]).unwrap();
        let s = rebuild(dir.path()).unwrap();
        assert_eq!(s.orders.accepted, 4, "the two whole intervals count");
        assert_eq!(s.findings.len(), 2, "{:?}", s.findings);
        assert!(s.findings[0].what.contains("latency-order-created.hlog"));
        assert!(s.findings[1].what.contains("email.sent"));
        let from = &s.incomplete.unwrap().rebuilt_from;
        assert!(!from.iter().any(|f| f.contains("email-sent")), "{from:?}");
    }
}
