//! What an [`Observer`] saw, as data: a shard writes it to its run folder, and
//! `doorbuster merge` adds the shards' parts into one observer, as if one process had seen
//! them all. Counts add, ledger bits are or-ed, histograms add exactly; the stages' latency
//! comes from the shards' interval logs (one histogram per second), not from here.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};

use super::dead_letters::DeadLetterParts;
use super::failures::FailedCheckouts;
use super::recorder::{Percentiles, SeriesPoint};
use super::{Counters, FaultWindow, Finding, Observer, Recorder, Sample};
use crate::sync::lock;

/// One part of a run's observations.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ObserverState {
    pub wall_start_unix_ns: u64,
    /// Run time at the end (nanoseconds).
    pub duration_ns: u64,
    /// [`crate::observe::Ledger::export`] of the orders `0..attempted`, base64.
    pub ledger: String,
    pub delivery_totals: Vec<u64>,
    /// [`Counters`], as numbers.
    pub counters: serde_json::Value,
    pub subscriptions: Vec<RecorderState>,
    pub send_lag: RecorderState,
    pub samples: Vec<Sample>,
    pub findings: Vec<Finding>,
    pub failures: Vec<FailedCheckouts>,
    pub out_of_order: Vec<(usize, u64)>,
    pub faults: Vec<Option<FaultWindow>>,
    pub dead_letters: DeadLetterParts,
}

/// A recorder's whole-run histogram (V2, base64) and its per-second points.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecorderState {
    pub total: String,
    pub series: Vec<SeriesPoint>,
}

fn encode(h: &Histogram<u64>) -> String {
    let mut raw = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = V2Serializer::new().serialize(h, &mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(raw))
        .map_err(|e| format!("{e:?}"))
}

impl RecorderState {
    fn of(r: &Recorder) -> RecorderState {
        RecorderState {
            total: encode(&r.total()),
            series: r.series(),
        }
    }
}

impl Observer {
    /// What this observer saw of orders `0..attempted`.
    pub fn state(&self, attempted: u64) -> ObserverState {
        ObserverState {
            wall_start_unix_ns: self.clock.wall_start_unix_ns(),
            duration_ns: self.now(),
            ledger: base64::engine::general_purpose::STANDARD.encode(self.ledger.export(attempted)),
            delivery_totals: self.ledger.delivery_totals(),
            // Atomics as plain numbers: cannot fail.
            counters: serde_json::to_value(&self.counters).unwrap_or_default(),
            subscriptions: self.subscriptions.iter().map(RecorderState::of).collect(),
            send_lag: RecorderState::of(&self.send_lag),
            samples: self.samples(),
            findings: self.findings(),
            failures: self.checkout_failures(),
            out_of_order: lock(&self.out_of_order_examples).clone(),
            faults: lock(&self.faults).clone(),
            dead_letters: lock(&self.dead_letters).parts(),
        }
    }

    /// Adds the parts (`(name, state)`, in shard order) and the stages' per-second
    /// histograms (already added over the parts) into this fresh observer: its fault plan
    /// set, nothing recorded yet. The fault windows are the first part's: every shard ran
    /// the same timeline.
    pub fn absorb(
        &mut self,
        parts: &[(String, ObserverState)],
        stage_seconds: &BTreeMap<u32, Vec<Histogram<u64>>>,
    ) -> Result<(), String> {
        let engine = base64::engine::general_purpose::STANDARD;
        // Counters add through their JSON form (each part's gauges are its own too).
        let json = |c: &Counters| serde_json::to_value(c).map_err(|e| e.to_string());
        let mut counters = json(&Counters::default())?;
        for (_, part) in parts {
            add_json(&mut counters, &part.counters);
        }
        self.counters = serde_json::from_value(counters).map_err(|e| e.to_string())?;
        for (name, part) in parts {
            let bytes = engine
                .decode(&part.ledger)
                .map_err(|e| format!("{name}: the ledger does not decode: {e}"))?;
            self.ledger.absorb(&bytes, &part.delivery_totals);
            for (mine, theirs) in self.subscriptions.iter().zip(&part.subscriptions) {
                mine.absorb(&decode(&theirs.total).map_err(|e| format!("{name}: {e}"))?);
            }
            self.send_lag
                .absorb(&decode(&part.send_lag.total).map_err(|e| format!("{name}: {e}"))?);
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
        if let Some((_, first)) = parts.first() {
            self.restore_faults(&first.faults);
        }
        // The stages, second by second, through the same close as a live run's (fault
        // splits, interval logs); then the other recorders' per-second points.
        for (&second, intervals) in stage_seconds {
            for (recorder, h) in self.stages.iter().zip(intervals) {
                recorder.add_interval(h);
            }
            let _ = self.close_second(second);
        }
        for (i, recorder) in self.subscriptions.iter().enumerate() {
            recorder.set_series(merge_series(
                parts.iter().filter_map(|(_, p)| p.subscriptions.get(i)),
            ));
        }
        self.send_lag
            .set_series(merge_series(parts.iter().map(|(_, p)| &p.send_lag)));
        let samples: Vec<&[Sample]> = parts.iter().map(|(_, p)| p.samples.as_slice()).collect();
        for sample in merge_samples(&samples) {
            self.record_sample(sample);
        }
        Ok(())
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
                        .max(split.start_s + 1)
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

/// Per-second points of one recorder over the parts: counts add; each percentile is the
/// highest of the parts' (an upper bound: these points are charted, not judged).
fn merge_series<'a>(parts: impl Iterator<Item = &'a RecorderState>) -> Vec<SeriesPoint> {
    let mut by: BTreeMap<u32, Percentiles> = BTreeMap::new();
    for p in parts.flat_map(|p| &p.series) {
        let q = &p.percentiles;
        by.entry(p.second)
            .and_modify(|m| {
                m.count += q.count;
                m.p50_us = m.p50_us.max(q.p50_us);
                m.p90_us = m.p90_us.max(q.p90_us);
                m.p99_us = m.p99_us.max(q.p99_us);
                m.p999_us = m.p999_us.max(q.p999_us);
                m.max_us = m.max_us.max(q.max_us);
            })
            .or_insert(*q);
    }
    by.into_iter()
        .map(|(second, percentiles)| SeriesPoint {
            second,
            percentiles,
        })
        .collect()
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
            let mut m = Sample {
                second,
                attempted: 0,
                accepted: 0,
                failed: 0,
                deliveries: 0,
                duplicate_deliveries: 0,
                dead_lettered: 0,
                in_flight: 0,
                lag: Vec::new(),
            };
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
            second,
            attempted: accepted,
            accepted,
            failed: 0,
            deliveries: 0,
            duplicate_deliveries: 0,
            dead_lettered: 0,
            in_flight: 1,
            lag: Vec::new(),
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
