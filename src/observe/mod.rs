//! Observation: everything the checks and reports know comes from here.
//!
//! The driver and the services call the [`Observer`] around every publish, delivery and
//! effect; transports never do. A ticker closes each second (latency intervals, counters,
//! lag samples), so time series survive an interrupted run. Nothing here decides a verdict.

pub mod config;
pub mod dead_letters;
pub mod failures;
pub mod hlog;
pub mod ledger;
pub mod outputs;
pub mod recorder;
pub mod series;
pub mod state;
pub mod webhook;

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::clock::{Clock, RunTime};
use crate::sync::lock;
use crate::topology::Stage;
use crate::topology::{SUBSCRIPTIONS, ServiceKind};
pub use ledger::{Checkout, DeliveryNote, Effect, Ledger, Tally, Terminal};
pub use recorder::{Percentiles, Recorder, SeriesPoint};

/// Running totals; a per-second view is their difference between two ticks.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
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
    /// The same, per service (indexed by `ServiceKind as usize`).
    pub processing_by_service: [AtomicI64; ServiceKind::ALL.len()],
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
    /// Checkout publishes (`order.created`, first submissions) by outcome: the broker acked,
    /// refused, or gave no answer (an indeterminate error, or no ack within
    /// `checkout_timeout`). They add up to the checkouts that reached the broker.
    pub checkout_acked: AtomicU64,
    pub checkout_refused: AtomicU64,
    pub checkout_unknown: AtomicU64,
    /// Checkouts that never reached the broker: no in-flight slot before `checkout_timeout`.
    pub checkout_not_sent: AtomicU64,
    /// Orders the payload template could not render (`orders.payload`): never sent, and the
    /// run cannot say what the shop would have done with them.
    pub not_rendered: AtomicU64,
    /// Deliveries that failed because the event was poison.
    pub poison_failures: AtomicU64,
    /// Events services moved to the dead-letter topic (publish acked).
    pub dead_lettered: AtomicU64,
    /// Dead letters the audit consumer read back from the topic.
    pub dead_letters_arrived: AtomicU64,
}

/// Counter totals and lags at the end of one second.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Sample {
    pub second: u32,
    pub attempted: u64,
    pub accepted: u64,
    pub failed: u64,
    pub deliveries: u64,
    pub duplicate_deliveries: u64,
    /// Events moved to the dead-letter topic so far (absent in summaries before 0.1 poison).
    #[serde(default)]
    pub dead_lettered: u64,
    /// Checkouts waiting for their answer at the end of the second (absent before 0.1's
    /// live views).
    #[serde(default)]
    pub in_flight: i64,
    /// Consumer lag per service at the end of the second (`None` if the broker did not say).
    pub lag: Vec<(ServiceKind, Option<u64>)>,
}

/// A fault's window on the run's clock, as it actually happened (start and stop are
/// recorded when the timeline applied them, not copied from the plan).
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FaultWindow {
    pub kind: String,
    pub target: String,
    pub start_ms: u64,
    /// `None` while the fault lasts (or for one that never ends, like a crash without restart).
    /// An `exec` fault ends when its command exits.
    pub end_ms: Option<u64>,
    /// What applying it did or found (e.g. events to re-read after a replay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Latency per stage before, during and after the window (whole seconds of run time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<StageSplit>,
    /// Backlog and recovery after the window (filled in when the run is summarised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// What an `exec` fault's command did, once it has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecOutcome>,
}

/// How an `exec` fault's command ended (the window's notes say it in words).
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ExecOutcome {
    /// Its exit code; `None` when it did not exit by itself (it could not start, was killed
    /// at the timeout or by an interrupt, or ended by a signal).
    pub exit_code: Option<i32>,
    /// The last lines of its standard output and error, interleaved as written (at most 10
    /// lines and 2 KiB; the whole output is in `exec-<index>.log` in the run folder).
    #[serde(default)]
    pub output_tail: Vec<String>,
}

impl ExecOutcome {
    /// Exit code 0: anything else is a finding.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// How the pipeline came back from one fault window.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Recovery {
    /// Total consumer lag (all groups) in the last second before the fault.
    pub lag_before: u64,
    /// The highest total lag from the fault's start until it recovered.
    pub backlog_peak: u64,
    /// From the window's end until lag was back to its pre-fault level; `None`: never.
    pub lag_recovered_after_ms: Option<u64>,
    /// From the window's end until every latency SLO held again per second; `None`: never
    /// (or no SLO to judge by).
    pub latency_recovered_after_ms: Option<u64>,
}

/// One stage's latency around a fault window.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StageSplit {
    pub stage: Stage,
    pub before: Percentiles,
    pub during: Percentiles,
    pub after: Percentiles,
}

/// Accumulates each stage's per-second histograms into before / during / after one fault
/// window, as the seconds close: exact percentiles, bounded memory. The bounds come from
/// the plan and are moved to the window's real start and end when the timeline records
/// them (an `exec` window has no planned end: it ends when its command exits); seconds
/// already closed stay where they were put.
struct Split {
    start_s: u32,
    /// `None`: the window never closes (a crash without restart).
    end_s: Option<u32>,
    /// `[stage][before, during, after]`
    parts: Vec<[hdrhistogram::Histogram<u64>; 3]>,
}

/// The pipeline as the drain left it: what was still queued or being handled when the run
/// stopped waiting. An effect whose event is still queued is *not settled*: not lost, not
/// done, and never a silent pass.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settlement {
    /// Consumer lag per service group when the drain ended (`None`: the broker did not say).
    pub lags: Vec<(ServiceKind, Option<u64>)>,
    /// Handlers still running, per service (indexed by `ServiceKind as usize`).
    pub handling: [i64; ServiceKind::ALL.len()],
}

impl Settlement {
    /// Reads the handlers still running; `lags` are the broker's answers.
    pub fn now(counters: &Counters, lags: Vec<(ServiceKind, Option<u64>)>) -> Settlement {
        Settlement {
            lags,
            handling: std::array::from_fn(|i| counters.processing_by_service[i].load(Relaxed)),
        }
    }

    /// Nothing of this service's is queued or being handled (a lag the broker would not tell
    /// counts as queued). A service that did not run has nothing pending.
    pub fn settled(&self, service: ServiceKind) -> bool {
        let lag = self
            .lags
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, l)| *l);
        self.handling[service as usize] <= 0 && lag.is_none_or(|l| l == Some(0))
    }

    /// Events still queued at the end, per service that had any, and the total.
    pub fn queued(&self) -> (Vec<(ServiceKind, Option<u64>)>, u64) {
        let pending: Vec<_> = self
            .lags
            .iter()
            .filter(|(s, l)| *l != Some(0) || self.handling[*s as usize] > 0)
            .copied()
            .collect();
        let total = pending.iter().filter_map(|(_, l)| *l).sum();
        (pending, total)
    }
}

/// A misbehaviour worth reporting that is not a check result (a broker error, a stalled
/// publish): findings go to the report; they never panic the run.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Finding {
    pub at_ms: u64,
    pub what: String,
}

const EXAMPLES_MAX: usize = 20;

/// Samples the live views may ask for ([`Observer::last_samples`]).
pub const RECENT_SAMPLES: usize = 16;

impl Sample {
    /// Second `second` with nothing counted yet.
    pub fn empty(second: u32) -> Sample {
        Sample {
            second,
            attempted: 0,
            accepted: 0,
            failed: 0,
            deliveries: 0,
            duplicate_deliveries: 0,
            dead_lettered: 0,
            in_flight: 0,
            lag: Vec::new(),
        }
    }
}

impl series::Point for Sample {
    fn second(&self) -> u32 {
        self.second
    }

    /// The later sample stands for the span: its totals include the earlier one's.
    fn absorb(&mut self, later: Sample) {
        *self = later;
    }
}

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
    /// One per second, one per span of seconds past `series::POINTS_MAX` (each the last of
    /// its span: the totals are running ones).
    samples: Mutex<series::Bounded<Sample>>,
    /// The last [`RECENT_SAMPLES`] seconds' samples, for the live views.
    recent_samples: Mutex<std::collections::VecDeque<Sample>>,
    findings: Mutex<Vec<Finding>>,
    /// Example order ids of out-of-order deliveries, per subscription.
    out_of_order_examples: Mutex<Vec<(usize, u64)>>,
    next_event_id: AtomicU64,
    /// Per-stage interval logs, written every second when the run writes files. Set once
    /// the load starts: their headers carry the wall-clock time of t=0.
    logs: std::sync::OnceLock<hlog::IntervalLogs>,
    /// Fault windows, indexed like the scenario's `faults`.
    faults: Mutex<Vec<Option<FaultWindow>>>,
    /// Latency splits, indexed like the scenario's `faults`.
    splits: Mutex<Vec<Split>>,
    pub dead_letters: Mutex<dead_letters::DeadLetters>,
    /// What the taps saw of the user's shop (observe mode).
    pub outputs: Option<outputs::Outputs>,
    /// Failed checkouts by reason.
    failures: Mutex<failures::Failures>,
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
            samples: Mutex::new(series::Bounded::default()),
            recent_samples: Mutex::new(std::collections::VecDeque::new()),
            findings: Mutex::new(Vec::new()),
            out_of_order_examples: Mutex::new(Vec::new()),
            next_event_id: AtomicU64::new(0),
            logs: std::sync::OnceLock::new(),
            faults: Mutex::new(Vec::new()),
            splits: Mutex::new(Vec::new()),
            dead_letters: Mutex::new(dead_letters::DeadLetters::default()),
            outputs: None,
            failures: Mutex::default(),
        }
    }

    /// Records why checkout `order` failed.
    pub fn checkout_failed(&self, order: u64, outcome: failures::CheckoutFailure, reason: String) {
        lock(&self.failures).add(outcome, reason, order);
    }

    /// The failed checkouts by reason, the most frequent first.
    pub fn checkout_failures(&self) -> Vec<failures::FailedCheckouts> {
        lock(&self.failures).list()
    }

    /// Observe mode: the tallies the taps record into.
    pub fn with_outputs(mut self, outputs: outputs::Outputs) -> Observer {
        self.outputs = Some(outputs);
        self
    }

    /// Plans the latency splits: one per fault, `(start, end)` in run time.
    pub fn with_fault_plan(
        self,
        windows: impl IntoIterator<Item = (std::time::Duration, Option<std::time::Duration>)>,
    ) -> Observer {
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        *lock(&self.splits) = windows
            .into_iter()
            .map(|(start, end)| Split {
                start_s: secs(start),
                end_s: end.map(|e| secs(e).max(secs(start) + 1)),
                parts: Stage::ALL
                    .iter()
                    .map(|_| std::array::from_fn(|_| recorder::new_histogram()))
                    .collect(),
            })
            .collect();
        self
    }

    /// The run second `now` falls in.
    fn second_now(&self) -> u32 {
        u32::try_from(self.now() / 1_000_000_000).unwrap_or(u32::MAX)
    }

    /// Records that fault `index` started now.
    pub fn fault_started(&self, index: usize, kind: &str, target: &str) {
        let start_ms = self.now() / 1_000_000;
        if let Some(split) = lock(&self.splits).get_mut(index) {
            split.start_s = self.second_now();
            split.end_s = split.end_s.map(|end| end.max(split.start_s + 1));
        }
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
            latency: Vec::new(),
            recovery: None,
            exec: None,
        });
    }

    /// Records that fault `index` stopped now: its latency split's `during` ends with the
    /// current second (at least one second after its start), whatever the plan said.
    pub fn fault_stopped(&self, index: usize) {
        let end_ms = self.now() / 1_000_000;
        if let Some(split) = lock(&self.splits).get_mut(index) {
            split.end_s = Some(self.second_now().max(split.start_s + 1));
        }
        if let Some(Some(w)) = lock(&self.faults).get_mut(index) {
            w.end_ms = Some(end_ms);
        }
    }

    /// Records how fault `index`'s command ended.
    pub fn exec_finished(&self, index: usize, outcome: ExecOutcome) {
        if let Some(Some(w)) = lock(&self.faults).get_mut(index) {
            w.exec = Some(outcome);
        }
    }

    pub fn fault_note(&self, index: usize, note: String) {
        if let Some(Some(w)) = lock(&self.faults).get_mut(index) {
            w.notes.push(note);
        }
    }

    /// The faults on now, as "kind target" (a live view's marker).
    pub fn active_faults(&self) -> Vec<String> {
        lock(&self.faults)
            .iter()
            .flatten()
            .filter(|w| w.end_ms.is_none())
            .map(|w| format!("{} {}", w.kind, w.target))
            .collect()
    }

    /// The windows as they happened, each with its latency split.
    pub fn fault_windows(&self) -> Vec<FaultWindow> {
        let splits = lock(&self.splits);
        lock(&self.faults)
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let mut w = w.clone()?;
                if let Some(split) = splits.get(i) {
                    w.latency = Stage::ALL
                        .iter()
                        .zip(&split.parts)
                        .filter(|(_, [b, d, a])| !(b.is_empty() && d.is_empty() && a.is_empty()))
                        .map(|(stage, [b, d, a])| StageSplit {
                            stage: *stage,
                            before: Percentiles::of(b),
                            during: Percentiles::of(d),
                            after: Percentiles::of(a),
                        })
                        .collect();
                }
                Some(w)
            })
            .collect()
    }

    /// Writes each stage's per-second histograms to these logs from now on; the first logs
    /// given stay.
    pub fn write_interval_logs(&self, logs: hlog::IntervalLogs) {
        let _ = self.logs.set(logs);
    }

    pub fn now(&self) -> RunTime {
        self.clock.now()
    }

    /// Event ids from `first` on: a shard's own range, so that the shards of one run never
    /// give two events one id.
    pub fn with_event_ids_from(self, first: u64) -> Observer {
        self.next_event_id.store(first, Relaxed);
        self
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

    /// Closes `second` at its end: latency intervals become points, and the counters are
    /// read into a sample that `record_sample` stores once its lags are known. Lags take
    /// broker round trips (slow through a link fault), so they come after the close: a
    /// second closed late would take the next second's latencies into its fault split.
    pub fn close_second(&self, second: u32) -> Sample {
        let mut splits = lock(&self.splits);
        for (i, (stage, recorder)) in Stage::ALL.iter().zip(&self.stages).enumerate() {
            let interval = recorder.tick(second);
            for split in splits.iter_mut() {
                let part = if second < split.start_s {
                    0
                } else if split.end_s.is_none_or(|end| second < end) {
                    1
                } else {
                    2
                };
                // Same bounds everywhere, so `add` cannot fail.
                let _ = split.parts[i][part].add(&interval);
            }
            if let Some(logs) = self.logs.get()
                && let Err(e) = logs.write(*stage, second, &interval)
            {
                self.finding(format!(
                    "cannot write the {} interval log: {e}",
                    stage.label()
                ));
            }
        }
        drop(splits);
        let others = (self.subscriptions.iter().enumerate())
            .map(|(i, r)| (hlog::Logged::Subscription(i), r))
            .chain(std::iter::once((hlog::Logged::SendLag, &self.send_lag)));
        for (logged, r) in others {
            let interval = r.tick(second);
            if let Some(logs) = self.logs.get()
                && let Err(e) = logs.write(logged, second, &interval)
            {
                self.finding(format!("cannot write {}: {e}", hlog::file_name(logged)));
            }
        }
        let c = &self.counters;
        Sample {
            second,
            attempted: c.attempted.load(Relaxed),
            accepted: c.accepted.load(Relaxed),
            failed: c.failed.load(Relaxed),
            deliveries: c.deliveries.load(Relaxed),
            duplicate_deliveries: c.duplicate_deliveries.load(Relaxed),
            dead_lettered: c.dead_lettered.load(Relaxed),
            in_flight: c.open_checkouts.load(Relaxed),
            lag: Vec::new(),
        }
    }

    pub fn record_sample(&self, sample: Sample) {
        let mut recent = lock(&self.recent_samples);
        if recent.len() >= RECENT_SAMPLES {
            recent.pop_front();
        }
        recent.push_back(sample.clone());
        drop(recent);
        lock(&self.samples).push(sample);
    }

    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).points().to_vec()
    }

    /// The last `n` samples (fewer early in the run), for the live views that ask every
    /// second: copying all of them each time would cost a long run time in its length.
    pub fn last_samples(&self, n: usize) -> Vec<Sample> {
        let recent = lock(&self.recent_samples);
        recent
            .iter()
            .skip(recent.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_samples_are_the_newest_few() {
        let o = Observer::new(crate::clock::Clock::start(), 0);
        assert!(o.last_samples(2).is_empty());
        for second in 0..5 {
            o.record_sample(o.close_second(second));
        }
        let seconds = |v: Vec<Sample>| v.iter().map(|s| s.second).collect::<Vec<_>>();
        assert_eq!(seconds(o.last_samples(2)), [3, 4]);
        assert_eq!(seconds(o.last_samples(9)), [0, 1, 2, 3, 4]);
        assert_eq!(seconds(o.samples()), [0, 1, 2, 3, 4]);
    }
}
