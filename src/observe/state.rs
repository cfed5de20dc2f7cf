//! What an [`Observer`] saw, as data: a shard writes it to its run folder, and
//! `doorbuster merge` adds the shards' parts into one observer, as if one process had seen
//! them all. Counts add, ledger bits are or-ed, histograms add exactly: every latency comes
//! from the shards' interval logs (one histogram per second), not from here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hdrhistogram::Histogram;

use super::dead_letters::DeadLetterParts;
use super::failures::FailedCheckouts;
use super::hlog::Logged;
use super::{Counters, FaultWindow, Finding, Observer, Recorder, Sample};
use crate::sync::lock;

/// One part of a run's observations.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ObserverState {
    pub wall_start_unix_ns: u64,
    /// Run time at the end (nanoseconds).
    pub duration_ns: u64,
    /// Orders `0..orders` are in the part's ledger, which travels beside this state (a
    /// file of its own: [`crate::observe::Ledger::export_to`]).
    pub orders: u64,
    /// Samples recorded per latency, as `Logged::every(true)` lists them: what the
    /// interval logs must hold.
    pub logged_counts: Vec<u64>,
    pub delivery_totals: Vec<u64>,
    /// [`Counters`], as numbers.
    pub counters: serde_json::Value,
    pub samples: Vec<Sample>,
    pub findings: Vec<Finding>,
    pub failures: Vec<FailedCheckouts>,
    pub out_of_order: Vec<(usize, u64)>,
    pub faults: Vec<Option<FaultWindow>>,
    pub dead_letters: DeadLetterParts,
}

impl Observer {
    /// What this observer saw of orders `0..attempted`.
    pub fn state(&self, attempted: u64) -> ObserverState {
        ObserverState {
            wall_start_unix_ns: self.clock.wall_start_unix_ns(),
            duration_ns: self.now(),
            orders: attempted,
            logged_counts: (Logged::every(true).into_iter())
                .map(|l| self.recorder(l).total().len())
                .collect(),
            delivery_totals: self.ledger.delivery_totals(),
            // Atomics as plain numbers: cannot fail.
            counters: serde_json::to_value(&self.counters).unwrap_or_default(),
            samples: self.samples(),
            findings: self.findings(),
            failures: self.checkout_failures(),
            out_of_order: lock(&self.out_of_order_examples).clone(),
            faults: lock(&self.faults).clone(),
            dead_letters: lock(&self.dead_letters).parts(),
        }
    }

    /// Adds the parts (`(name, state, ledger file)`, in shard order) and every latency's
    /// per-second histograms (`Logged::every(true)`'s, already added over the parts) into
    /// this fresh observer: its fault plan set, nothing recorded yet. The fault windows are
    /// the first part's: every shard ran the same timeline.
    pub fn absorb(
        &mut self,
        parts: &[(String, ObserverState, PathBuf)],
        seconds: &BTreeMap<u32, Vec<Histogram<u64>>>,
    ) -> Result<(), String> {
        // Counters add through their JSON form (each part's gauges are its own too).
        let json = |c: &Counters| serde_json::to_value(c).map_err(|e| e.to_string());
        let mut counters = json(&Counters::default())?;
        for (_, part, _) in parts {
            add_json(&mut counters, &part.counters);
        }
        self.counters = serde_json::from_value(counters).map_err(|e| e.to_string())?;
        for (name, part, ledger) in parts {
            let file = std::fs::File::open(ledger)
                .map_err(|e| format!("{name}: {}: {e}", ledger.display()))?;
            let held = file.metadata().map(|m| m.len()).unwrap_or(0);
            let expected = part.orders * crate::observe::Ledger::BYTES_PER_ORDER as u64;
            if held != expected {
                return Err(format!(
                    "{name}: {} holds {held} bytes where {} orders take {expected}: not whole",
                    ledger.display(),
                    part.orders
                ));
            }
            let mut read = std::io::BufReader::new(file);
            (self.ledger)
                .absorb_from(&mut read, part.orders, &part.delivery_totals)
                .map_err(|e| format!("{name}: {}: {e}", ledger.display()))?;
            let mut failures = lock(&self.failures);
            for f in &part.failures {
                failures.absorb(f);
            }
            drop(failures);
            lock(&self.out_of_order_examples).extend(part.out_of_order.iter().copied());
            lock(&self.dead_letters).absorb(&part.dead_letters);
            let mut findings = lock(&self.findings);
            findings.extend(part.findings.iter().map(|f| Finding {
                at_ms: f.at_ms,
                what: format!("{name}: {}", f.what),
            }));
        }
        if let Some((_, first, _)) = parts.first() {
            self.restore_faults(&first.faults);
        }
        // Every latency, second by second, through the same close as a live run's (its
        // fault splits, its interval logs).
        let logged = Logged::every(true);
        for (&second, intervals) in seconds {
            for (l, h) in logged.iter().zip(intervals) {
                self.recorder(*l).add_interval(h);
            }
            let _ = self.close_second(second);
        }
        let samples: Vec<&[Sample]> = parts.iter().map(|(_, p, _)| p.samples.as_slice()).collect();
        for sample in merge_samples(&samples) {
            self.record_sample(sample);
        }
        Ok(())
    }

    fn recorder(&self, logged: Logged) -> &Recorder {
        match logged {
            Logged::Stage(stage) => self.stage(stage),
            Logged::Subscription(i) => &self.subscriptions[i.min(self.subscriptions.len() - 1)],
            Logged::SendLag => &self.send_lag,
        }
    }

    /// The fault windows as they happened, with the latency splits bounded by them.
    fn restore_faults(&self, windows: &[Option<FaultWindow>]) {
        let mut splits = lock(&self.splits);
        for (split, window) in splits.iter_mut().zip(windows) {
            if let Some(w) = window {
                split.start_s = u32::try_from(w.start_ms / 1000).unwrap_or(u32::MAX);
                split.end_s = w.end_ms.map(|end| {
                    u32::try_from(end / 1000)
                        .unwrap_or(u32::MAX)
                        .max(split.start_s.saturating_add(1))
                });
            }
        }
        *lock(&self.faults) = windows.to_vec();
    }
}

/// Adds every number in `more` to the one at the same place in `to` (arrays by index,
/// objects by key); what is not a number stays `to`'s.
pub(crate) fn add_json(to: &mut serde_json::Value, more: &serde_json::Value) {
    use serde_json::Value;
    match (to, more) {
        (Value::Number(a), Value::Number(b)) => {
            if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                *a = (x.saturating_add(y)).into();
            } else if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                *a = (x.saturating_add(y)).into();
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                add_json(x, y);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, y) in b {
                if let Some(x) = a.get_mut(k) {
                    add_json(x, y);
                }
            }
        }
        _ => {}
    }
}

/// The parts' samples second by second: totals add, each part's carried from its latest
/// sample up to that second (a part that ended earlier keeps its totals); in flight adds
/// over the parts that sampled the second; a group's lag is the largest a part saw (the
/// shards of one run share their groups, and each asked the broker for the same).
fn merge_samples(parts: &[&[Sample]]) -> Vec<Sample> {
    let seconds: std::collections::BTreeSet<u32> = parts
        .iter()
        .flat_map(|p| p.iter().map(|s| s.second))
        .collect();
    seconds
        .into_iter()
        .map(|second| {
            let mut m = Sample::empty(second);
            for part in parts {
                let upto = part.partition_point(|s| s.second <= second);
                let Some(s) = upto.checked_sub(1).map(|i| &part[i]) else {
                    continue;
                };
                m.attempted += s.attempted;
                m.accepted += s.accepted;
                m.failed += s.failed;
                m.deliveries += s.deliveries;
                m.duplicate_deliveries += s.duplicate_deliveries;
                m.dead_lettered += s.dead_lettered;
                if s.second != second {
                    continue;
                }
                m.in_flight += s.in_flight;
                for (service, lag) in &s.lag {
                    match m.lag.iter_mut().find(|(k, _)| k == service) {
                        Some((_, mine)) => *mine = (*mine).max(*lag),
                        None => m.lag.push((*service, *lag)),
                    }
                }
            }
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(second: u32, accepted: u64) -> Sample {
        Sample {
            attempted: accepted,
            accepted,
            in_flight: 1,
            ..Sample::empty(second)
        }
    }

    /// A part that ended a second earlier keeps its totals in the later seconds.
    #[test]
    fn merged_samples_carry_a_finished_parts_totals() {
        let a = [sample(0, 10), sample(1, 20), sample(2, 25)];
        let b = [sample(0, 5), sample(1, 12)];
        let merged = merge_samples(&[&a, &b]);
        let accepted: Vec<u64> = merged.iter().map(|s| s.accepted).collect();
        assert_eq!(accepted, [15, 32, 37]);
        assert_eq!(merged[2].in_flight, 1);
    }

    #[test]
    fn json_sums_add_numbers_in_arrays_and_objects() {
        let mut a = serde_json::json!({"n": 2, "v": [1, -2], "s": "x"});
        add_json(&mut a, &serde_json::json!({"n": 3, "v": [10, 5], "s": "y"}));
        assert_eq!(a, serde_json::json!({"n": 5, "v": [11, 3], "s": "x"}));
    }
}
