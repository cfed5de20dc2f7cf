//! Checks: each one a small unit that reads the observations and returns a verdict with
//! evidence. Pass / Fail / Unknown, as Jepsen's checkers do: a check that cannot decide (no
//! data, or it crashed) is Unknown, never Pass, and an Unknown fails the run's gate.
//!
//! Checks read; they never change what they judge. Ground truth comes from the order factory
//! (which orders were planned to decline) and from the payment provider's own records.

pub mod checkout_success_rate;
pub mod completion_rate;
pub mod dead_letters;
pub mod expected;
pub mod latency_slo;
pub mod money_matches_state;
pub mod no_duplicate_effects;
pub mod no_loss;
pub mod outputs;
pub mod per_key_order;
pub mod recovery;
pub mod replay;

use std::panic::AssertUnwindSafe;

use crate::config::units::{Comparison, ShareThreshold};
use crate::observe::{Observer, Settlement};
use crate::orders::OrderFactory;
use crate::scenario::model::{Scenario, Target};
use crate::services::provider::ChargesPerOrder;
use crate::topology::ServiceKind;
use crate::topology::Stage;

/// Evidence lists are cut to this many examples (the terminal shows fewer).
pub const EXAMPLES_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Unknown,
}

impl Verdict {
    /// Pass when the property holds, Fail when it does not.
    pub fn holds(pass: bool) -> Verdict {
        if pass { Verdict::Pass } else { Verdict::Fail }
    }
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    pub observed: String,
    pub threshold: String,
    /// Up to [`EXAMPLES_MAX`] lines: what went wrong, per service first, then examples.
    pub evidence: Vec<String>,
    /// How many evidence lines there were in all; `evidence` holds the first of them. 0 in
    /// summaries written before this field (then `evidence` is all there was).
    #[serde(default)]
    pub evidence_total: u64,
}

impl CheckResult {
    pub fn new(
        name: &str,
        verdict: Verdict,
        observed: impl Into<String>,
        threshold: impl Into<String>,
    ) -> CheckResult {
        CheckResult {
            name: name.to_owned(),
            verdict,
            observed: observed.into(),
            threshold: threshold.into(),
            evidence: Vec::new(),
            evidence_total: 0,
        }
    }

    pub fn with_examples(mut self, examples: Examples) -> CheckResult {
        self.evidence_total = examples.total;
        self.evidence = examples.items;
        self
    }

    /// Evidence lines in all, held or not.
    pub fn evidence_count(&self) -> u64 {
        self.evidence_total.max(self.evidence.len() as u64)
    }

    /// Evidence lines beyond the first `shown`: the true remainder.
    pub fn evidence_beyond(&self, shown: usize) -> u64 {
        self.evidence_count()
            .saturating_sub(shown.min(self.evidence.len()) as u64)
    }

    /// `... and N more (summary.json keeps H of T)` after the first `shown` lines, with the
    /// true remainder; `None` when nothing is beyond them.
    pub fn remainder_note(&self, shown: usize) -> Option<String> {
        let beyond = self.evidence_beyond(shown);
        (beyond > 0).then(|| {
            format!(
                "... and {beyond} more (summary.json keeps {} of {})",
                self.evidence.len(),
                self.evidence_count()
            )
        })
    }
}

/// Everything a check may read.
pub struct CheckInput<'a> {
    pub scenario: &'a Scenario,
    pub observer: &'a Observer,
    pub factory: &'a OrderFactory,
    /// Orders actually attempted: ids `0..attempted` (fewer than planned if interrupted).
    pub attempted: u64,
    /// Captures per order from the payment provider's own records.
    pub captures_per_order: &'a ChargesPerOrder,
    pub enabled: &'a [ServiceKind],
    /// The analytics service's state at the end, when it ran.
    pub analytics: Option<&'a crate::services::analytics::AnalyticsState>,
    /// What was still queued or being handled when the drain ended.
    pub settlement: &'a Settlement,
    /// Processes whose observations these are (1 unless merged from shards).
    pub shards: u32,
}

pub trait Check {
    fn name(&self) -> String;
    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult;
}

/// What a check has to see to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sees {
    /// Only the checkout: what a shopper experiences.
    Checkout,
    /// The pipeline behind the checkout: deliveries, effects, the provider's records.
    Pipeline,
    /// The user's own shop's outputs, as the taps saw them (observe mode).
    Outputs,
}

/// A check a scenario asks for, and what it has to see.
pub struct Planned {
    pub check: Box<dyn Check>,
    pub sees: Sees,
}

impl Planned {
    fn new(check: impl Check + 'static, sees: Sees) -> Planned {
        Planned {
            check: Box::new(check),
            sees,
        }
    }
}

/// The one registry of checks, in report order: each entry returns the checks of its kind
/// the scenario asks for. `checks_for` and `left_out` both read it, so a new check is one
/// line here and one file.
const REGISTRY: &[fn(&Scenario) -> Vec<Planned>] = &[
    |s| {
        s.checks
            .checkout_success_rate
            .map(|threshold| {
                Planned::new(
                    checkout_success_rate::CheckoutSuccessRate { threshold },
                    Sees::Checkout,
                )
            })
            .into_iter()
            .collect()
    },
    |s| {
        s.checks
            .completion_rate
            .map(|threshold| {
                Planned::new(
                    completion_rate::CompletionRate {
                        threshold,
                        settle_within: s.checks.settle_within,
                    },
                    Sees::Pipeline,
                )
            })
            .into_iter()
            .collect()
    },
    |s| {
        s.checks
            .latency
            .iter()
            .map(|slo| {
                let sees = if slo.stage == Stage::Checkout {
                    Sees::Checkout
                } else {
                    Sees::Pipeline
                };
                Planned::new(latency_slo::LatencySloCheck { slo: *slo }, sees)
            })
            .collect()
    },
    |s| match s.observe {
        Some(_) => tapped(s.checks.no_loss, outputs::NoLostOutputs),
        None => when(s.checks.no_loss, || no_loss::NoLoss),
    },
    |s| {
        when(s.checks.money_matches_state, || {
            money_matches_state::MoneyMatchesState
        })
    },
    |s| match s.observe {
        Some(_) => tapped(s.checks.no_duplicate_effects, outputs::NoDuplicateOutputs),
        None => when(s.checks.no_duplicate_effects, || {
            no_duplicate_effects::NoDuplicateEffects
        }),
    },
    |s| tapped(s.observe.is_some(), outputs::NoUnknownOutputs),
    |s| when(s.checks.per_key_order, || per_key_order::PerKeyOrder),
    |s| {
        let replays = s
            .faults
            .iter()
            .any(|f| matches!(f.kind, crate::chaos::model::FaultKind::Replay { .. }));
        when(replays, || replay::ReplayCheck)
    },
    |s| {
        s.checks
            .recovery
            .map(|drain_within| {
                Planned::new(recovery::RecoveryCheck { drain_within }, Sees::Pipeline)
            })
            .into_iter()
            .collect()
    },
    |s| {
        dead_letters::active(s)
            .map(|threshold| {
                Planned::new(dead_letters::DeadLetterCheck { threshold }, Sees::Pipeline)
            })
            .into_iter()
            .collect()
    },
];

/// A pipeline check, when the scenario asks for it.
fn when<C: Check + 'static>(asked: bool, check: impl FnOnce() -> C) -> Vec<Planned> {
    if asked {
        vec![Planned::new(check(), Sees::Pipeline)]
    } else {
        Vec::new()
    }
}

/// A check of the user's shop's outputs (observe mode), when the scenario asks for it.
fn tapped(asked: bool, check: impl Check + 'static) -> Vec<Planned> {
    let mut planned = when(asked, || check);
    planned.iter_mut().for_each(|p| p.sees = Sees::Outputs);
    planned
}

/// Every check the scenario asks for, in report order, whether or not the target can show it.
pub fn planned(scenario: &Scenario) -> Vec<Planned> {
    REGISTRY.iter().flat_map(|entry| entry(scenario)).collect()
}

/// Against an HTTP checkout endpoint only what a shopper sees can be observed; the pipeline
/// behind it is the shop's. In observe mode the shop is the user's: its outputs are seen,
/// doorbuster's simulated pipeline does not run.
fn visible(scenario: &Scenario, sees: Sees) -> bool {
    match sees {
        Sees::Checkout => true,
        Sees::Outputs => scenario.observe.is_some(),
        Sees::Pipeline => scenario.observe.is_none() && !matches!(scenario.target, Target::Http(_)),
    }
}

/// The checks a scenario asks for that the target can show, in report order. Those it
/// cannot show are left out (and [`left_out`] names them) rather than run on no data.
pub fn checks_for(scenario: &Scenario) -> Vec<Box<dyn Check>> {
    planned(scenario)
        .into_iter()
        .filter(|p| visible(scenario, p.sees))
        .map(|p| p.check)
        .collect()
}

/// The checks a scenario asks for that [`checks_for`] leaves out because the target cannot
/// show them (the pipeline behind an HTTP checkout endpoint), by name.
pub fn left_out(scenario: &Scenario) -> Vec<String> {
    planned(scenario)
        .into_iter()
        .filter(|p| !visible(scenario, p.sees))
        .map(|p| p.check.name())
        .collect()
}

/// Orders parked on the dead-letter topic, when the run parks events: `dead_letters` judges
/// them, so the checks of what orders should have become leave them out.
pub fn parked_orders(input: &CheckInput<'_>) -> std::collections::BTreeSet<u64> {
    if dead_letters::active(input.scenario).is_some() {
        crate::sync::lock(&input.observer.dead_letters).orders()
    } else {
        Default::default()
    }
}

/// Runs every check; one that panics is reported Unknown with the panic message.
pub fn evaluate_all(checks: &[Box<dyn Check>], input: &CheckInput<'_>) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|check| {
            std::panic::catch_unwind(AssertUnwindSafe(|| check.evaluate(input))).unwrap_or_else(
                |panic| {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    CheckResult::new(
                        &check.name(),
                        Verdict::Unknown,
                        format!("the check crashed: {why}"),
                        "",
                    )
                },
            )
        })
        .collect()
}

pub fn comparison_symbol(c: Comparison) -> &'static str {
    match c {
        Comparison::AtLeast => ">=",
        Comparison::AtMost => "<=",
        Comparison::LessThan => "<",
        Comparison::GreaterThan => ">",
    }
}

pub fn compare(c: Comparison, observed: f64, bound: f64) -> bool {
    match c {
        Comparison::AtLeast => observed >= bound,
        Comparison::AtMost => observed <= bound,
        Comparison::LessThan => observed < bound,
        Comparison::GreaterThan => observed > bound,
    }
}

/// A ratio check shared by the rate checks: `part / whole` against a share threshold.
pub fn ratio_result(
    name: &str,
    threshold: ShareThreshold,
    part: u64,
    whole: u64,
    evidence: Examples,
) -> CheckResult {
    let threshold_text = format!(
        "{} {}",
        comparison_symbol(threshold.comparison),
        percent(threshold.share.fraction())
    );
    if whole == 0 {
        return CheckResult::new(name, Verdict::Unknown, "no orders to judge", threshold_text)
            .with_examples(evidence);
    }
    let share = part as f64 / whole as f64;
    let pass = compare(threshold.comparison, share, threshold.share.fraction());
    CheckResult::new(
        name,
        Verdict::holds(pass),
        format!("{} ({part} of {whole})", percent(share)),
        threshold_text,
    )
    .with_examples(evidence)
}

/// `0.99873` -> `"99.87%"`; never rounds a miss up to 100 %.
pub fn percent(fraction: f64) -> String {
    let p = (fraction * 10_000.0).floor() / 100.0;
    format!("{p:.2}%")
}

/// Collects up to [`EXAMPLES_MAX`] examples and counts all of them.
#[derive(Default)]
pub struct Examples {
    pub items: Vec<String>,
    /// Every example pushed, kept or not.
    pub total: u64,
}

impl Examples {
    /// Counts an example; `f` builds it only while there is room.
    pub fn push(&mut self, f: impl FnOnce() -> String) {
        self.total += 1;
        if self.items.len() < EXAMPLES_MAX {
            self.items.push(f());
        }
    }

    /// Puts summary lines before the examples (they always fit: the examples give way).
    pub fn prepend(&mut self, lines: Vec<String>) {
        self.total += lines.len() as u64;
        let mut items = lines;
        items.append(&mut self.items);
        items.truncate(EXAMPLES_MAX);
        self.items = items;
    }
}

/// Hand-built observations for the checks' unit tests: a ledger written by hand, so each
/// check's pathological histories and clean twins are exact.
#[cfg(test)]
pub(crate) mod testkit {
    use super::{CheckInput, CheckResult};
    use crate::events::{EventMeta, Topic};
    use crate::observe::{Checkout, Effect, Observer, Settlement, Terminal};
    use crate::orders::OrderFactory;
    use crate::scenario::model::Scenario;
    use crate::services::provider::ChargesPerOrder;
    use crate::topology::{SUBSCRIPTIONS, ServiceKind};

    pub struct World {
        pub scenario: Scenario,
        pub factory: OrderFactory,
        pub observer: Observer,
        pub captures: ChargesPerOrder,
        pub settlement: Settlement,
        pub orders: u64,
    }

    fn meta(order: u64) -> EventMeta {
        EventMeta {
            order_id: order,
            ..Default::default()
        }
    }

    impl World {
        /// `orders` orders of a default scenario, none of them attempted yet; every
        /// service's group drained.
        pub fn new(orders: u64) -> World {
            let scenario = crate::scenario::parse(
                "unit.yaml",
                "name: unit\nload:\n  phases:\n    - { hold: 1s, rate: 10/s }\n",
            )
            .expect("the unit scenario parses");
            World {
                factory: OrderFactory::new(scenario.seed, &scenario.orders),
                scenario,
                observer: Observer::new(crate::clock::Clock::start(), orders as usize),
                captures: ChargesPerOrder::default(),
                settlement: Settlement {
                    lags: ServiceKind::ALL.iter().map(|s| (*s, Some(0))).collect(),
                    handling: [0; ServiceKind::ALL.len()],
                },
                orders,
            }
        }

        /// The first order id whose card is planned to approve (`true`) or decline.
        pub fn order_that_pays(&self, pays: bool) -> u64 {
            (0..self.orders)
                .find(|&o| self.factory.plan(o).declines != pays)
                .expect("both kinds among the orders")
        }

        pub fn accept(&self, order: u64) {
            let l = &self.observer.ledger;
            l.set_checkout(order, Checkout::Accepted);
            l.acked(Topic::OrderCreated, &meta(order));
        }

        /// Publishes `topic` for `order` and delivers it to, and has it consumed by, every
        /// service that reads it.
        pub fn flow(&self, order: u64, topic: Topic) {
            let l = &self.observer.ledger;
            l.acked(topic, &meta(order));
            for (sub, s) in SUBSCRIPTIONS.iter().enumerate() {
                if s.topic == topic {
                    l.delivered(sub, &meta(order));
                    l.consumed(sub, &meta(order));
                }
            }
        }

        /// Everything an order is owed, done once, as a correct pipeline does it.
        pub fn complete(&mut self, order: u64) {
            self.accept(order);
            self.flow(order, Topic::OrderCreated);
            let l = &self.observer.ledger;
            l.effect(order, Effect::StockReserved);
            l.effect(order, Effect::OrderCounted);
            if self.factory.plan(order).declines {
                self.flow(order, Topic::PaymentFailed);
                l.effect(order, Effect::FailureCounted);
                l.set_terminal(order, Terminal::Declined, 10);
            } else {
                self.captures.add(order);
                self.flow(order, Topic::PaymentSucceeded);
                l.effect(order, Effect::EmailSent);
                l.effect(order, Effect::Shipped);
                l.effect(order, Effect::RevenueBooked);
                self.flow(order, Topic::Fulfilled);
                l.effect(order, Effect::FulfilmentCounted);
                l.set_terminal(order, Terminal::Fulfilled, 10);
            }
        }

        pub fn judge(&self, check: &dyn super::Check) -> CheckResult {
            check.evaluate(&CheckInput {
                scenario: &self.scenario,
                observer: &self.observer,
                factory: &self.factory,
                attempted: self.orders,
                captures_per_order: &self.captures,
                enabled: &ServiceKind::ALL,
                analytics: None,
                settlement: &self.settlement,
                shards: 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_registry_decides_what_runs_and_what_is_left_out() {
        let mut s = crate::scenario::parse(
            "r.yaml",
            "name: r\nload:\n  phases:\n    - { hold: 1s, rate: 10/s }\nchecks:\n  \
             latency:\n    order.created: { p99: \"< 1s\" }\n    order.created -> \
             order.fulfilled: { p99: \"< 3s\" }\n",
        )
        .expect("parses");
        let names = |checks: Vec<Box<dyn Check>>| -> Vec<String> {
            checks.iter().map(|c| c.name()).collect()
        };
        let all = names(checks_for(&s));
        assert_eq!(
            all,
            [
                "checkout_success_rate",
                "completion_rate",
                "latency order.created p99",
                "latency order.created -> order.fulfilled p99",
                "no_loss",
                "money_matches_state",
                "no_duplicate_effects",
                "per_key_order",
            ]
        );
        assert!(left_out(&s).is_empty());
        // Against a checkout endpoint the same list splits in two, nothing lost or doubled.
        s.target = crate::scenario::target::target_of_url("http://127.0.0.1:9/checkout")
            .expect("a checkout URL");
        let run = names(checks_for(&s));
        let out = left_out(&s);
        assert_eq!(run, ["checkout_success_rate", "latency order.created p99"]);
        let mut both: Vec<String> = run.into_iter().chain(out).collect();
        both.sort();
        let mut expected = all;
        expected.sort();
        assert_eq!(both, expected);
    }

    #[test]
    fn examples_count_what_they_cannot_keep() {
        let mut e = Examples::default();
        for i in 0..(EXAMPLES_MAX + 23) {
            e.push(|| format!("order {i}"));
        }
        e.prepend(vec!["summary".into()]);
        let r = CheckResult::new("x", Verdict::Fail, "", "").with_examples(e);
        assert_eq!(r.evidence.len(), EXAMPLES_MAX);
        assert_eq!(r.evidence[0], "summary");
        assert_eq!(r.evidence_count(), EXAMPLES_MAX as u64 + 24);
        assert_eq!(
            r.remainder_note(10).as_deref(),
            Some("... and 114 more (summary.json keeps 100 of 124)")
        );
        assert_eq!(
            r.remainder_note(200).as_deref(),
            Some("... and 24 more (summary.json keeps 100 of 124)")
        );
    }

    #[test]
    fn percent_never_rounds_a_miss_up() {
        assert_eq!(percent(0.99999), "99.99%");
        assert_eq!(percent(1.0), "100.00%");
        assert_eq!(percent(0.995), "99.50%");
    }
}
