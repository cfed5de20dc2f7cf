//! What the taps saw of the user's shop (observe mode): per output, how often each order
//! appeared, the events seen twice, the outputs for orders doorbuster never made, and the
//! latency from each order's intended time to the tap's receipt. Nothing here judges; the
//! checks in `verify::outputs` read it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

use super::config::{Locator, Observe, Output};
use super::recorder::{Percentiles, new_histogram};
use crate::clock::RunTime;
use crate::sync::lock;
use crate::transport::Tapped;

/// Examples kept per kind of surprise.
const EXAMPLES_MAX: usize = 20;

/// What the tally needs to know of the run's orders: the schedule and the order factory
/// answer it (the run wires them in), so observation depends on neither.
pub trait Orders: Send + Sync {
    /// How many orders the run plans: ids `0..count`.
    fn count(&self) -> u64;
    /// When order `id` was intended, on the run's clock.
    fn intended_at(&self, id: u64) -> RunTime;
    /// The first eight hex digits of the order's `uid`.
    fn uid_tag(&self, id: u64) -> u32;
    /// The order's card is planned to decline.
    fn declines(&self, id: u64) -> bool;
}

/// Every output's tally; one per run in observe mode.
pub struct Outputs {
    pub outputs: Vec<Tally>,
    orders: Arc<dyn Orders>,
    /// Fault windows `[start, end)` in run time, in the scenario's order; a latency is
    /// split by the window its order's intended time falls in.
    windows: Vec<(RunTime, RunTime)>,
    /// When the last output arrived (run time, ns), for the drain's quiet period.
    pub last_at: AtomicU64,
}

/// One output's tally.
pub struct Tally {
    pub spec: Output,
    /// Appearances per order id (saturating at 255).
    seen: Vec<AtomicU8>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Events the tap read (before the filter).
    tapped: u64,
    /// Events the filter let through that named one of doorbuster's orders.
    matched: u64,
    event_ids: HashSet<Vec<u8>>,
    repeated_events: u64,
    repeated_examples: Vec<String>,
    /// Events that named no order doorbuster made (or named none).
    unknown: u64,
    unknown_examples: Vec<String>,
    /// From the order's intended time to the receipt: all, and per fault window.
    latency: Option<Histogram<u64>>,
    during: Vec<Histogram<u64>>,
    /// The tap failed: what the checks cannot judge, and why.
    broken: Option<String>,
}

/// One output's figures for the summary.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OutputSummary {
    pub name: String,
    pub from: String,
    /// Events the tap read, before the filter.
    pub tapped: u64,
    /// Events that named one of the run's orders.
    pub matched: u64,
    /// The same event (by `event_id`) read more than once.
    pub repeated_events: u64,
    /// Events for orders the run never made, or naming no order.
    pub unknown: u64,
    /// From each order's intended time to the tap's receipt (first appearance only).
    pub latency: Percentiles,
    /// The same, for orders intended inside each fault window (in the scenario's order).
    pub during_faults: Vec<Percentiles>,
    /// Why the tap stopped before the end, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

impl Outputs {
    pub fn new(
        observe: &Observe,
        orders: Arc<dyn Orders>,
        windows: Vec<(RunTime, RunTime)>,
    ) -> Outputs {
        let count = orders.count();
        Outputs {
            outputs: observe
                .outputs
                .iter()
                .map(|spec| Tally {
                    spec: spec.clone(),
                    seen: (0..count).map(|_| AtomicU8::new(0)).collect(),
                    state: Mutex::new(State {
                        latency: Some(new_histogram()),
                        during: windows.iter().map(|_| new_histogram()).collect(),
                        ..State::default()
                    }),
                })
                .collect(),
            orders,
            windows,
            last_at: AtomicU64::new(0),
        }
    }

    /// Records one event tapped from output `index`.
    pub fn tapped(&self, index: usize, event: &Tapped) {
        let Some(tally) = self.outputs.get(index) else {
            return;
        };
        self.last_at.fetch_max(event.at, Relaxed);
        let spec = &tally.spec;
        let mut state = lock(&tally.state);
        state.tapped += 1;
        if let Some(filter) = &spec.filter
            && locate(event, &filter.at).as_deref() != Some(filter.equals.as_str())
        {
            return;
        }
        let named = locate(event, &spec.order);
        let order = named.as_deref().and_then(|v| self.order_of(v));
        let Some(order) = order else {
            state.unknown += 1;
            if state.unknown_examples.len() < EXAMPLES_MAX {
                state.unknown_examples.push(match named {
                    Some(v) => format!("{v:?} at {}", spec.order),
                    None => format!("nothing at {}", spec.order),
                });
            }
            return;
        };
        state.matched += 1;
        if let Some(id) = spec.event_id.as_ref().and_then(|l| locate(event, l))
            && !state.event_ids.insert(id.clone().into_bytes())
        {
            state.repeated_events += 1;
            if state.repeated_examples.len() < EXAMPLES_MAX {
                state
                    .repeated_examples
                    .push(format!("event {id:?} (order {order})"));
            }
        }
        let before = tally.seen[order as usize]
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
            .unwrap_or(0);
        if before == 0 {
            let intended = self.orders.intended_at(order);
            let us = event.at.saturating_sub(intended) / 1_000;
            let us = us.clamp(super::recorder::LOWEST_US, super::recorder::HIGHEST_US);
            if let Some(h) = state.latency.as_mut() {
                let _ = h.record(us);
            }
            for (i, (start, end)) in self.windows.iter().enumerate() {
                if (*start..*end).contains(&intended) {
                    let _ = state.during[i].record(us);
                }
            }
        }
    }

    /// The tap of output `index` stopped early: its checks cannot judge it.
    pub fn broken(&self, index: usize, why: String) {
        if let Some(tally) = self.outputs.get(index) {
            lock(&tally.state).broken.get_or_insert(why);
        }
    }

    /// The order an output names: its `order.uid` (24 hex digits whose first eight match
    /// the order's) or its `order.id`, for an order the run planned.
    pub fn order_of(&self, value: &str) -> Option<u64> {
        let value = value.trim();
        let id = if value.len() == 24 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            let id = u64::from_str_radix(&value[8..], 16).ok()?;
            (id < self.orders.count()).then_some(())?;
            let tag = self.orders.uid_tag(id);
            (value[..8].eq_ignore_ascii_case(&format!("{tag:08x}"))).then_some(id)?
        } else {
            value.parse::<u64>().ok()?
        };
        (id < self.orders.count()).then_some(id)
    }

    /// How often output `index` named `order`.
    pub fn seen(&self, index: usize, order: u64) -> u32 {
        self.outputs
            .get(index)
            .and_then(|t| t.seen.get(order as usize))
            .map_or(0, |n| u32::from(n.load(Relaxed)))
    }

    /// Outputs still missing: per accepted order, what each output expects beyond what it
    /// has seen, summed.
    pub fn missing(&self, accepted: impl Fn(u64) -> bool) -> u64 {
        let mut missing = 0u64;
        for order in 0..self.orders.count() {
            if !accepted(order) {
                continue;
            }
            let declines = self.orders.declines(order);
            for (i, tally) in self.outputs.iter().enumerate() {
                let want = tally.spec.expect.of(declines);
                missing += u64::from(want.saturating_sub(self.seen(i, order)));
            }
        }
        missing
    }

    pub fn summaries(&self) -> Vec<OutputSummary> {
        self.outputs
            .iter()
            .map(|tally| {
                let state = lock(&tally.state);
                OutputSummary {
                    name: tally.spec.name.clone(),
                    from: tally.spec.from.clone(),
                    tapped: state.tapped,
                    matched: state.matched,
                    repeated_events: state.repeated_events,
                    unknown: state.unknown,
                    latency: state
                        .latency
                        .as_ref()
                        .map_or_else(|| Percentiles::of(&new_histogram()), Percentiles::of),
                    during_faults: state.during.iter().map(Percentiles::of).collect(),
                    broken: state.broken.clone(),
                }
            })
            .collect()
    }

    /// Examples of events read twice, and of outputs naming no order of the run.
    pub fn surprises(&self, index: usize) -> (Vec<String>, Vec<String>) {
        self.outputs.get(index).map_or_else(Default::default, |t| {
            let state = lock(&t.state);
            (
                state.repeated_examples.clone(),
                state.unknown_examples.clone(),
            )
        })
    }
}

/// The text at `locator` in an event: a JSON pointer into the body (strings as they are,
/// numbers as written), a header, or the key.
pub fn locate(event: &Tapped, locator: &Locator) -> Option<String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match locator {
        Locator::Key => event.key.as_deref().map(text),
        Locator::Header(name) => event
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| text(v)),
        Locator::Json(pointer) => {
            let body: serde_json::Value = serde_json::from_slice(&event.body).ok()?;
            match body.pointer(pointer)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
    }
}
