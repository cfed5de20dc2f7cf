//! `summary.json`: the stable, versioned record of a run that CI scripts rely on
//! (DESIGN.md §8), and the model every other format renders.

use std::sync::atomic::Ordering::Relaxed;

use crate::load::{PlannedPhase, Schedule};
pub use crate::observe::FaultWindow;
use crate::observe::{Checkout, Finding, Observer, Percentiles, Sample, SeriesPoint, Terminal};
use crate::orders::OrderFactory;
use crate::scenario::model::{CheckoutMode, Scenario, Stage};
use crate::services::analytics::AnalyticsState;
use crate::services::provider::ProviderStats;
use crate::topology::SUBSCRIPTIONS;
use crate::transport::TransportInfo;
use crate::verify::CheckResult;

pub const SCHEMA_VERSION: u32 = 1;

pub use crate::exit::{RunVerdict, StopSignal};

/// What a rebuilt (incomplete) summary is made of, and what it cannot know.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Incomplete {
    /// Why the summary is partial, in one sentence.
    pub reason: String,
    /// The files it was rebuilt from.
    pub rebuilt_from: Vec<String>,
    /// Seconds of run time the interval logs cover (the last one ends here).
    pub logged_seconds: u32,
    /// What the summary's numbers do not include, because only memory held it.
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OrderCounts {
    pub planned: u64,
    pub attempted: u64,
    pub accepted: u64,
    pub failed: u64,
    /// Reached the terminal state their ground truth calls for (fulfilled or declined).
    pub completed: u64,
    pub fulfilled: u64,
    /// Declined cards: business outcomes.
    pub declined: u64,
    /// Payment failed after the provider's last retry.
    pub payment_failed: u64,
    /// Shoppers who clicked "buy" again (same order, same idempotency key).
    pub resubmits: u64,
    /// Orders the inventory service could not reserve in full (an item out of stock in the
    /// finite catalog): recorded as a backorder, stock untouched; payment and fulfilment go
    /// on. A large share means `orders.catalog.stock` is small for the load, not a failure.
    pub backordered: u64,
    /// Checkouts whose `order.created` publish the broker refused.
    #[serde(default)]
    pub publish_refused: u64,
    /// Checkouts whose `order.created` was sent but never answered (connection lost, no ack
    /// within `checkout_timeout`): not known to be lost, not known to be stored.
    #[serde(default)]
    pub publish_unknown: u64,
    /// Checkouts never sent: no in-flight slot (`load.max_in_flight`) before
    /// `checkout_timeout`. failed = publish_refused + publish_unknown + not_sent, plus the
    /// inline card payments that failed with `checkout: sync`.
    #[serde(default)]
    pub not_sent: u64,
    /// The failed checkouts by reason (an HTTP status, a broker's refusal, no answer in
    /// time), the most frequent first, each with its first orders.
    #[serde(default)]
    pub failed_by_reason: Vec<crate::observe::failures::FailedCheckouts>,
}

impl OrderCounts {
    /// The orders line every format shows; against a checkout endpoint only the checkout
    /// counts, since nothing downstream of it is observed.
    pub fn line(&self, checkout_only: bool) -> String {
        if checkout_only {
            format!(
                "{} planned, {} attempted, {} accepted, {} failed checkouts ({} refused, {} \
                 unknown: sent, no answer, {} not sent: no slot in time), {} resubmits",
                self.planned,
                self.attempted,
                self.accepted,
                self.failed,
                self.publish_refused,
                self.publish_unknown,
                self.not_sent,
                self.resubmits
            )
        } else {
            self.describe()
        }
    }

    /// `N planned, N attempted, ... N resubmits`: the whole pipeline's orders line.
    pub fn describe(&self) -> String {
        format!(
            "{} planned, {} attempted, {} accepted, {} failed checkouts, {} completed \
             ({} fulfilled, {} declined), {} payment failures, {} resubmits",
            self.planned,
            self.attempted,
            self.accepted,
            self.failed,
            self.completed,
            self.fulfilled,
            self.declined,
            self.payment_failed,
            self.resubmits
        ) + &if self.backordered > 0 {
            format!(
                "; {} backordered (out of stock: recorded, payment and fulfilment go on)",
                self.backordered
            )
        } else {
            String::new()
        } + &if self.publish_refused + self.publish_unknown + self.not_sent > 0 {
            format!(
                "; publishes: {} refused, {} unknown (sent, no answer), {} not sent (no slot in \
                 time)",
                self.publish_refused, self.publish_unknown, self.not_sent
            )
        } else {
            String::new()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StageLatency {
    pub stage: String,
    #[serde(flatten)]
    pub percentiles: Percentiles,
    /// The whole run's percentile distribution (HdrHistogram's percentile plot points).
    pub distribution: Vec<PercentilePoint>,
    pub series: Vec<SeriesPoint>,
}

/// One point of a percentile distribution: `percentile` % of samples were at most `value_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub value_us: u64,
}

/// HdrHistogram's percentile distribution, 5 ticks per half distance to 100 %.
pub fn distribution(h: &hdrhistogram::Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| PercentilePoint {
            percentile: v.quantile_iterated_to() * 100.0,
            value_us: v.value_iterated_to(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SubscriptionStats {
    pub subscription: String,
    pub deliveries: u64,
    pub duplicate_deliveries: u64,
    /// Publish -> first delivery.
    pub latency: Percentiles,
    /// The same, per second of the run.
    pub series: Vec<SeriesPoint>,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Deliveries {
    pub total: u64,
    /// Deliveries beyond the first of an event to a service: expected under at-least-once.
    pub duplicates: u64,
    pub redelivered_flags: u64,
    pub publish_errors: u64,
    /// Events services moved to `order.dead_letter` after `max_deliveries`.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Dead letters read back from the topic by the audit consumer.
    #[serde(default)]
    pub dead_letters_arrived: u64,
    /// Deliveries that failed because their event was poison.
    #[serde(default)]
    pub poison_failures: u64,
    pub per_subscription: Vec<SubscriptionStats>,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Rates {
    /// Arrivals planned per second of run time.
    pub planned_per_second: Vec<u64>,
    /// Checkouts acked per second.
    pub achieved_per_second: Vec<u64>,
    pub phases: Vec<PlannedPhase>,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Summary {
    pub schema_version: u32,
    pub doorbuster_version: String,
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub reproduce: String,
    pub verdict: RunVerdict,
    /// The process exit code: the verdict's, or for an interrupted run its signal's.
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// The signal that stopped an interrupted run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<StopSignal>,
    /// Present only on a summary rebuilt from a killed run's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<Incomplete>,
    pub started_unix_ms: u64,
    /// Present only when the run was told when to start (`--start-at`): how it kept that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<crate::clock::StartSync>,
    pub duration_s: f64,
    pub target: TransportInfo,
    /// `async` (the checkout ends at the `order.created` ack) or `sync` (it also waits for
    /// one inline provider call): what `orders.accepted` and the checkout success rate mean.
    #[serde(default)]
    pub checkout_mode: CheckoutMode,
    pub orders: OrderCounts,
    pub checks: Vec<CheckResult>,
    pub rates: Rates,
    pub latency: Vec<StageLatency>,
    /// Stages with latency samples and no SLO in `checks.latency`: measured, not judged.
    #[serde(default)]
    pub latency_not_judged: Vec<String>,
    /// How late the generator dispatched arrivals: the run's own validity.
    pub send_lag: Percentiles,
    pub deliveries: Deliveries,
    pub provider: ProviderStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics: Option<AnalyticsState>,
    pub samples: Vec<Sample>,
    /// What `doorbuster compare` tolerates when this run is the candidate.
    #[serde(default)]
    pub tolerances: crate::scenario::model::CompareTolerances,
    /// Fault windows, shaded on every time chart.
    #[serde(default)]
    pub faults: Vec<FaultWindow>,
    /// Observe mode: what the taps saw of each of the user's outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<crate::observe::outputs::OutputSummary>,
    pub findings: Vec<Finding>,
    pub ledger_bytes_per_order: usize,
}

pub struct SummaryInput<'a> {
    pub scenario: &'a Scenario,
    pub seed: u64,
    pub run_arg: &'a str,
    pub schedule: &'a Schedule,
    pub observer: &'a Observer,
    pub transport: TransportInfo,
    pub provider: ProviderStats,
    pub factory: &'a OrderFactory,
    pub attempted: u64,
    pub checks: Vec<CheckResult>,
    pub verdict: RunVerdict,
    pub invalid_reason: Option<String>,
    /// The signal that stopped the run early, if one did.
    pub interrupted_by: Option<StopSignal>,
    pub start: Option<crate::clock::StartSync>,
    pub analytics: Option<AnalyticsState>,
    /// The fault windows, each with its recovery measured (by the run's judge step: the
    /// report renders what was measured and measures nothing itself).
    pub faults: Vec<FaultWindow>,
}

pub fn reproduce_command(run_arg: &str, seed: u64) -> String {
    format!("doorbuster run {run_arg} --seed {seed}")
}

impl Summary {
    /// The run POSTed orders to a checkout endpoint: only the checkout was observed.
    pub fn checkout_only(&self) -> bool {
        self.target.kind == "http"
    }

    pub fn build(i: SummaryInput<'_>) -> Summary {
        let o = i.observer;
        let orders = order_counts(&i, o);

        let samples = o.samples();
        let achieved = achieved_per_second(&samples);
        Summary {
            schema_version: SCHEMA_VERSION,
            doorbuster_version: env!("CARGO_PKG_VERSION").into(),
            scenario: i.scenario.name.clone(),
            description: i.scenario.description.clone(),
            seed: i.seed,
            reproduce: reproduce_command(i.run_arg, i.seed),
            verdict: i.verdict,
            exit_code: crate::exit::Exit::of_run(i.verdict, i.interrupted_by)
                .code()
                .into(),
            invalid_reason: i.invalid_reason,
            interrupted_by: i
                .interrupted_by
                .filter(|_| i.verdict == RunVerdict::Interrupted),
            incomplete: None,
            started_unix_ms: o.clock.wall_start_unix_ns() / 1_000_000,
            start: i.start,
            duration_s: o.now() as f64 / 1e9,
            target: i.transport,
            checkout_mode: i.scenario.load.checkout_mode,
            orders,
            checks: i.checks,
            rates: Rates {
                planned_per_second: i.schedule.planned_per_second(),
                achieved_per_second: achieved,
                phases: i.schedule.phases.clone(),
            },
            latency: Stage::ALL
                .iter()
                .map(|&stage| {
                    let total = o.stage(stage).total();
                    StageLatency {
                        stage: stage.label().to_owned(),
                        percentiles: Percentiles::of(&total),
                        distribution: distribution(&total),
                        series: o.stage(stage).series(),
                    }
                })
                .collect(),
            latency_not_judged: Stage::ALL
                .iter()
                .filter(|&&stage| {
                    !o.stage(stage).total().is_empty()
                        && !i
                            .scenario
                            .checks
                            .latency
                            .iter()
                            .any(|slo| slo.stage == stage)
                })
                .map(|stage| stage.label().to_owned())
                .collect(),
            send_lag: Percentiles::of(&o.send_lag.total()),
            deliveries: deliveries(o, i.attempted),
            provider: i.provider,
            analytics: i.analytics,
            samples,
            tolerances: i.scenario.checks.compare,
            faults: i.faults,
            outputs: (i.observer.outputs.as_ref())
                .map(crate::observe::outputs::Outputs::summaries)
                .unwrap_or_default(),
            findings: o.findings(),
            ledger_bytes_per_order: crate::observe::Ledger::BYTES_PER_ORDER,
        }
    }

    /// One sentence on a run that did not reach its end: what stopped it and what the
    /// report is then worth. `None` for a run that finished.
    pub fn ended_early(&self) -> Option<String> {
        if let Some(incomplete) = &self.incomplete {
            return Some(incomplete.reason.clone());
        }
        (self.verdict == RunVerdict::Interrupted).then(|| {
            format!(
                "{} interrupted the run: the load stopped early, the pipeline drained briefly \
                 and the checks judged only the orders attempted by then",
                self.interrupted_by.map_or("a signal", StopSignal::name),
            )
        })
    }

    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Orders accepted in each second, from the running totals of the samples. A long run's
/// samples stand for spans of seconds (`observe::series`): each span's orders are spread
/// evenly over its seconds.
fn achieved_per_second(samples: &[crate::observe::Sample]) -> Vec<u64> {
    let mut achieved = Vec::with_capacity(samples.last().map_or(0, |s| s.second as usize + 1));
    let (mut previous, mut next_second) = (0, 0);
    for s in samples {
        let seconds = u64::from((s.second + 1).saturating_sub(next_second).max(1));
        let orders = s.accepted.saturating_sub(previous);
        for k in 0..seconds {
            // The remainder goes to the span's first seconds.
            achieved.push(orders / seconds + u64::from(k < orders % seconds));
        }
        previous = s.accepted;
        next_second = s.second + 1;
    }
    achieved
}

fn order_counts(i: &SummaryInput<'_>, o: &Observer) -> OrderCounts {
    let mut c = OrderCounts {
        planned: i.schedule.orders() as u64,
        // The orders this process dispatched: all of `0..attempted`, unless it was a shard.
        attempted: o.counters.attempted.load(Relaxed),
        accepted: 0,
        failed: 0,
        completed: 0,
        fulfilled: 0,
        declined: 0,
        payment_failed: 0,
        resubmits: o.counters.resubmits.load(Relaxed),
        backordered: o.counters.backorders.load(Relaxed),
        publish_refused: o.counters.checkout_refused.load(Relaxed),
        publish_unknown: o.counters.checkout_unknown.load(Relaxed),
        not_sent: o.counters.checkout_not_sent.load(Relaxed),
        failed_by_reason: o.checkout_failures(),
    };
    for order in 0..i.attempted {
        match o.ledger.checkout(order) {
            Checkout::Accepted => c.accepted += 1,
            Checkout::Failed => c.failed += 1,
            Checkout::Pending => {}
        }
        let declines = i.factory.plan(order).declines;
        match o.ledger.terminal(order).0 {
            Terminal::Fulfilled => {
                c.fulfilled += 1;
                c.completed += u64::from(!declines);
            }
            Terminal::Declined => {
                c.declined += 1;
                c.completed += u64::from(declines);
            }
            Terminal::Failed => c.payment_failed += 1,
            Terminal::None => {}
        }
    }
    c
}

impl Deliveries {
    /// One line for every format: totals, duplicates, and dead letters when there are any.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "{} ({} duplicates, expected under at-least-once",
            self.total, self.duplicates
        );
        if self.dead_lettered > 0 || self.poison_failures > 0 {
            line.push_str(&format!(
                "; {} poison failures, {} dead-lettered, {} read back from order.dead_letter",
                self.poison_failures, self.dead_lettered, self.dead_letters_arrived
            ));
        }
        line.push(')');
        line
    }
}

fn deliveries(o: &Observer, attempted: u64) -> Deliveries {
    let per_subscription = SUBSCRIPTIONS
        .iter()
        .enumerate()
        .map(|(sub, s)| {
            let total = o.ledger.delivery_total(sub);
            let firsts: u64 = (0..attempted)
                .map(|order| u64::from(o.ledger.delivered_mask(order, sub).count_ones()))
                .sum();
            SubscriptionStats {
                subscription: s.label(),
                deliveries: total,
                duplicate_deliveries: total - firsts.min(total),
                latency: Percentiles::of(&o.subscriptions[sub].total()),
                series: o.subscriptions[sub].series(),
            }
        })
        .collect();
    let c = &o.counters;
    Deliveries {
        total: c.deliveries.load(Relaxed),
        duplicates: c.duplicate_deliveries.load(Relaxed),
        redelivered_flags: c.redelivered_flags.load(Relaxed),
        publish_errors: c.publish_errors.load(Relaxed),
        dead_lettered: c.dead_lettered.load(Relaxed),
        dead_letters_arrived: c.dead_letters_arrived.load(Relaxed),
        poison_failures: c.poison_failures.load(Relaxed),
        per_subscription,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Sample;

    fn sample(second: u32, accepted: u64) -> Sample {
        Sample {
            attempted: accepted,
            accepted,
            ..Sample::empty(second)
        }
    }

    #[test]
    fn achieved_is_per_second_and_spreads_a_span_over_its_seconds() {
        let each = [sample(0, 5), sample(1, 12), sample(2, 12)];
        assert_eq!(achieved_per_second(&each), [5, 7, 0]);
        // Samples standing for spans of 2 s end at seconds 1 and 3.
        let spans = [sample(1, 10), sample(3, 17)];
        assert_eq!(achieved_per_second(&spans), [5, 5, 4, 3]);
    }

    /// A run longer than a series holds: its samples stay bounded, and the achieved rate
    /// still has every second and every order.
    #[test]
    fn a_long_runs_samples_stay_bounded_and_account_for_every_order() {
        let o = Observer::new(crate::clock::Clock::start(), 0);
        let seconds = crate::observe::series::POINTS_MAX as u32 * 3 + 17;
        for second in 0..seconds {
            o.record_sample(sample(second, u64::from(second + 1) * 10));
        }
        let samples = o.samples();
        assert!(samples.len() <= crate::observe::series::POINTS_MAX);
        assert_eq!(samples.last().map(|s| s.second), Some(seconds - 1));
        let achieved = achieved_per_second(&samples);
        assert_eq!(achieved.len(), seconds as usize);
        assert!(achieved.iter().all(|&a| a == 10), "an even rate stays even");
        assert_eq!(o.last_samples(2).len(), 2);
    }
}
