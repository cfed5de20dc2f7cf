//! Observation: everything the checks and reports know comes from here.
//!
//! The driver and the services call the [`Observer`] around every publish, delivery and
//! effect; transports never do. A ticker closes each second (latency intervals, counters,
//! lag samples), so time series survive an interrupted run. Nothing here decides a verdict.

pub mod hlog;
pub mod ledger;
pub mod recorder;

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::clock::{Clock, RunTime};
use crate::scenario::model::Stage;
use crate::sync::lock;
use crate::topology::{SUBSCRIPTIONS, ServiceKind};
pub use ledger::{Checkout, DeliveryNote, Effect, Ledger, Terminal};
pub use recorder::{Percentiles, Recorder, SeriesPoint};

/// Running totals; a per-second view is their difference between two ticks.
#[derive(Default)]
pub struct Counters {
    /// Checkouts the driver started (orders attempted).
    pub attempted: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    /// Second submissions of the same order (same idempotency key).
    pub resubmits: AtomicU64,
    pub deliveries: AtomicU64,
    /// Deliveries beyond the first of an event to a subscription.
    pub duplicate_deliveries: AtomicU64,
    /// Deliveries the broker flagged as redelivered.
    pub redelivered_flags: AtomicU64,
    /// Checkout tasks not finished yet (including a pending resubmit).
    pub open_checkouts: AtomicI64,
    /// Service handlers running right now.
    pub processing: AtomicI64,
    /// Publishes the services attempted that the transport refused.
    pub publish_errors: AtomicU64,
    /// Deliveries an `errors` fault failed on purpose.
    pub fault_errors: AtomicU64,
    /// Provider calls that ended in an error (retried or not).
    pub provider_errors: AtomicU64,
    /// Orders whose stock could not be reserved (backordered).
    pub backorders: AtomicU64,
    /// Out-of-order first deliveries, per subscription.
    pub out_of_order: [AtomicU64; SUBSCRIPTIONS.len()],
}

/// Counter totals and lags at the end of one second.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Sample {
    pub second: u32,
    pub attempted: u64,
    pub accepted: u64,
    pub failed: u64,
    pub deliveries: u64,
    pub duplicate_deliveries: u64,
    /// Consumer lag per service at the end of the second (`None` if the broker did not say).
    pub lag: Vec<(ServiceKind, Option<u64>)>,
}

/// A fault's window on the run's clock, as it actually happened (start and stop are
/// recorded when the timeline applied them, not copied from the plan).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FaultWindow {
    pub kind: String,
    pub target: String,
    pub start_ms: u64,
    /// `None` while the fault lasts (or for one that never ends, like a crash without restart).
    pub end_ms: Option<u64>,
    /// What applying it did or found (e.g. events to re-read after a replay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A misbehaviour worth reporting that is not a check result (a broker error, a stalled
/// publish): findings go to the report; they never panic the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Finding {
    pub at_ms: u64,
    pub what: String,
}

const EXAMPLES_MAX: usize = 20;

pub struct Observer {
    pub clock: Clock,
    pub ledger: Ledger,
    pub counters: Counters,
    /// Latency per stage, from each order's intended time.
    pub stages: [Recorder; Stage::ALL.len()],
    /// Publish -> delivery latency per subscription.
    pub subscriptions: [Recorder; SUBSCRIPTIONS.len()],
    /// How late the generator dispatched each arrival (its own health).
    pub send_lag: Recorder,
    samples: Mutex<Vec<Sample>>,
    findings: Mutex<Vec<Finding>>,
    /// Example order ids of out-of-order deliveries, per subscription.
    out_of_order_examples: Mutex<Vec<(usize, u64)>>,
    next_event_id: AtomicU64,
    /// Per-stage interval logs, written every second when the run writes files.
    logs: Option<hlog::IntervalLogs>,
    /// Fault windows, indexed like the scenario's `faults`.
    faults: Mutex<Vec<Option<FaultWindow>>>,
}

impl Observer {
    pub fn new(clock: Clock, orders: usize) -> Observer {
        Observer {
            clock,
            ledger: Ledger::new(orders),
            counters: Counters::default(),
            stages: Default::default(),
            subscriptions: Default::default(),
            send_lag: Recorder::default(),
            samples: Mutex::new(Vec::new()),
            findings: Mutex::new(Vec::new()),
            out_of_order_examples: Mutex::new(Vec::new()),
            next_event_id: AtomicU64::new(0),
            logs: None,
            faults: Mutex::new(Vec::new()),
        }
    }

    /// Records that fault `index` started now.
    pub fn fault_started(&self, index: usize, kind: &str, target: &str) {
        let start_ms = self.now() / 1_000_000;
        let mut faults = lock(&self.faults);
        if faults.len() <= index {
            faults.resize(index + 1, None);
        }
        faults[index] = Some(FaultWindow {
            kind: kind.to_owned(),
            target: target.to_owned(),
            start_ms,
            end_ms: None,
            notes: Vec::new(),
        });
    }

    /// Records that fault `index` stopped now.
    pub fn fault_stopped(&self, index: usize) {
        let end_ms = self.now() / 1_000_000;
        if let Some(Some(w)) = lock(&self.faults).get_mut(index) {
            w.end_ms = Some(end_ms);
        }
    }

    pub fn fault_note(&self, index: usize, note: String) {
        if let Some(Some(w)) = lock(&self.faults).get_mut(index) {
            w.notes.push(note);
        }
    }

    pub fn fault_windows(&self) -> Vec<FaultWindow> {
        lock(&self.faults).iter().flatten().cloned().collect()
    }

    /// Writes each stage's per-second histograms to these logs as the run goes.
    pub fn with_interval_logs(mut self, logs: hlog::IntervalLogs) -> Observer {
        self.logs = Some(logs);
        self
    }

    pub fn now(&self) -> RunTime {
        self.clock.now()
    }

    pub fn next_event_id(&self) -> u64 {
        self.next_event_id.fetch_add(1, Relaxed)
    }

    pub fn stage(&self, stage: Stage) -> &Recorder {
        &self.stages[stage as usize]
    }

    /// Records that `order` reached `stage` now, measured from its intended time.
    pub fn reached(&self, stage: Stage, intended_at: RunTime) {
        self.stage(stage)
            .record_ns(self.now().saturating_sub(intended_at));
    }

    pub fn out_of_order(&self, sub: usize, order: u64) {
        self.counters.out_of_order[sub].fetch_add(1, Relaxed);
        let mut examples = lock(&self.out_of_order_examples);
        if examples.iter().filter(|(s, _)| *s == sub).count() < EXAMPLES_MAX {
            examples.push((sub, order));
        }
    }

    pub fn out_of_order_examples(&self, sub: usize) -> Vec<u64> {
        lock(&self.out_of_order_examples)
            .iter()
            .filter(|(s, _)| *s == sub)
            .map(|(_, o)| *o)
            .collect()
    }

    pub fn finding(&self, what: impl Into<String>) {
        let at_ms = self.now() / 1_000_000;
        let mut findings = lock(&self.findings);
        // Bounded: a broker failing every publish must not grow memory without limit.
        if findings.len() < 1_000 {
            findings.push(Finding {
                at_ms,
                what: what.into(),
            });
        }
    }

    pub fn findings(&self) -> Vec<Finding> {
        lock(&self.findings).clone()
    }

    /// Closes `second`: latency intervals become points, counters and lags a sample.
    pub fn tick(&self, second: u32, lag: Vec<(ServiceKind, Option<u64>)>) {
        for (stage, recorder) in Stage::ALL.iter().zip(&self.stages) {
            let interval = recorder.tick(second);
            if let Some(logs) = &self.logs
                && let Err(e) = logs.write(*stage, second, &interval)
            {
                self.finding(format!(
                    "cannot write the {} interval log: {e}",
                    stage.label()
                ));
            }
        }
        for r in self
            .subscriptions
            .iter()
            .chain(std::iter::once(&self.send_lag))
        {
            r.tick(second);
        }
        let c = &self.counters;
        lock(&self.samples).push(Sample {
            second,
            attempted: c.attempted.load(Relaxed),
            accepted: c.accepted.load(Relaxed),
            failed: c.failed.load(Relaxed),
            deliveries: c.deliveries.load(Relaxed),
            duplicate_deliveries: c.duplicate_deliveries.load(Relaxed),
            lag,
        });
    }

    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).clone()
    }
}
