//! Checks: each one a small unit that reads the observations and returns a verdict with
//! evidence. Pass / Fail / Unknown, as Jepsen's checkers do: a check that cannot decide (no
//! data, or it crashed) is Unknown, never Pass, and an Unknown fails the run's gate.
//!
//! Checks read; they never change what they judge. Ground truth comes from the order factory
//! (which orders were planned to decline) and from the payment provider's own records.

pub mod checkout_success_rate;
pub mod completion_rate;
pub mod dead_letters;
pub mod latency_slo;
pub mod no_duplicate_effects;
pub mod no_loss;
pub mod per_key_order;
pub mod recovery;
pub mod replay;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use crate::observe::Observer;
use crate::orders::OrderFactory;
use crate::scenario::model::{Comparison, Scenario, ShareThreshold, Stage, Target};
use crate::topology::ServiceKind;

/// Evidence lists are cut to this many examples (the terminal shows fewer).
pub const EXAMPLES_MAX: usize = 100;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
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

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    pub observed: String,
    pub threshold: String,
    pub evidence: Vec<String>,
}

/// Everything a check may read.
pub struct CheckInput<'a> {
    pub scenario: &'a Scenario,
    pub observer: &'a Observer,
    pub factory: &'a OrderFactory,
    /// Orders actually attempted: ids `0..attempted` (fewer than planned if interrupted).
    pub attempted: u64,
    /// Captures per order from the payment provider's own records.
    pub captures_per_order: &'a HashMap<u64, u32>,
    pub enabled: &'a [ServiceKind],
    /// The analytics service's state at the end, when it ran.
    pub analytics: Option<&'a crate::services::analytics::AnalyticsState>,
}

pub trait Check {
    fn name(&self) -> String;
    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult;
}

/// The checks a scenario asks for, in report order.
///
/// Against an HTTP checkout endpoint only what a shopper sees can be judged: the checkout
/// success rate and the checkout latency. The pipeline behind the endpoint is the shop's
/// and unobserved, so the checks on it are left out (and [`left_out`] names them) rather
/// than run on no data.
pub fn checks_for(scenario: &Scenario) -> Vec<Box<dyn Check>> {
    let c = &scenario.checks;
    let mut checks: Vec<Box<dyn Check>> = Vec::new();
    if let Some(t) = c.checkout_success_rate {
        checks.push(Box::new(checkout_success_rate::CheckoutSuccessRate {
            threshold: t,
        }));
    }
    if checkout_only(scenario) {
        for slo in c.latency.iter().filter(|s| s.stage == Stage::Checkout) {
            checks.push(Box::new(latency_slo::LatencySloCheck { slo: *slo }));
        }
        return checks;
    }
    if let Some(t) = c.completion_rate {
        checks.push(Box::new(completion_rate::CompletionRate {
            threshold: t,
            settle_within: c.settle_within,
        }));
    }
    for slo in &c.latency {
        checks.push(Box::new(latency_slo::LatencySloCheck { slo: *slo }));
    }
    if c.no_loss {
        checks.push(Box::new(no_loss::NoLoss));
    }
    if c.no_duplicate_effects {
        checks.push(Box::new(no_duplicate_effects::NoDuplicateEffects));
    }
    if c.per_key_order {
        checks.push(Box::new(per_key_order::PerKeyOrder));
    }
    let replays = scenario
        .faults
        .iter()
        .any(|f| matches!(f.kind, crate::scenario::model::FaultKind::Replay { .. }));
    if replays {
        checks.push(Box::new(replay::ReplayCheck));
    }
    if let Some(drain_within) = c.recovery {
        checks.push(Box::new(recovery::RecoveryCheck { drain_within }));
    }
    if let Some(threshold) = dead_letters::active(scenario) {
        checks.push(Box::new(dead_letters::DeadLetterCheck { threshold }));
    }
    checks
}

fn checkout_only(scenario: &Scenario) -> bool {
    matches!(scenario.target, Target::Http(_))
}

/// The checks a scenario asks for that [`checks_for`] leaves out because the target cannot
/// show them (the pipeline behind an HTTP checkout endpoint), by name.
pub fn left_out(scenario: &Scenario) -> Vec<String> {
    if !checkout_only(scenario) {
        return Vec::new();
    }
    let c = &scenario.checks;
    let mut names = Vec::new();
    if c.completion_rate.is_some() {
        names.push("completion_rate".to_owned());
    }
    for slo in c.latency.iter().filter(|s| s.stage != Stage::Checkout) {
        names.push(latency_slo::LatencySloCheck { slo: *slo }.name());
    }
    for (asked, name) in [
        (c.no_loss, "no_loss"),
        (c.no_duplicate_effects, "no_duplicate_effects"),
        (c.per_key_order, "per_key_order"),
        (c.recovery.is_some(), "recovery"),
        (dead_letters::active(scenario).is_some(), "dead_letters"),
    ] {
        if asked {
            names.push(name.to_owned());
        }
    }
    names
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
                    CheckResult {
                        name: check.name(),
                        verdict: Verdict::Unknown,
                        observed: format!("the check crashed: {why}"),
                        threshold: String::new(),
                        evidence: Vec::new(),
                    }
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
    evidence: Vec<String>,
) -> CheckResult {
    let threshold_text = format!(
        "{} {}",
        comparison_symbol(threshold.comparison),
        percent(threshold.share.fraction())
    );
    if whole == 0 {
        return CheckResult {
            name: name.to_owned(),
            verdict: Verdict::Unknown,
            observed: "no orders to judge".to_owned(),
            threshold: threshold_text,
            evidence,
        };
    }
    let share = part as f64 / whole as f64;
    let pass = compare(threshold.comparison, share, threshold.share.fraction());
    CheckResult {
        name: name.to_owned(),
        verdict: Verdict::holds(pass),
        observed: format!("{} ({part} of {whole})", percent(share)),
        threshold: threshold_text,
        evidence,
    }
}

/// `0.99873` -> `"99.87%"`; never rounds a miss up to 100 %.
pub fn percent(fraction: f64) -> String {
    let p = (fraction * 10_000.0).floor() / 100.0;
    format!("{p:.2}%")
}

/// Collects up to [`EXAMPLES_MAX`] examples.
#[derive(Default)]
pub struct Examples {
    pub items: Vec<String>,
}

impl Examples {
    pub fn push(&mut self, f: impl FnOnce() -> String) {
        if self.items.len() < EXAMPLES_MAX {
            self.items.push(f());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_never_rounds_a_miss_up() {
        assert_eq!(percent(0.99999), "99.99%");
        assert_eq!(percent(1.0), "100.00%");
        assert_eq!(percent(0.995), "99.50%");
    }
}
