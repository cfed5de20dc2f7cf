//! `replay`: after a rewind (a `replay` fault), every retained event was read again, the
//! replayed service's derived state equals the ground truth, and its effects were not
//! applied a second time (DESIGN.md §5). Switched on by any replay fault in the scenario.
//!
//! "Read again" is judged by the group's lag at the end of the run (zero: it re-read and
//! committed everything the rewind exposed). The state is compared exactly for analytics
//! (counts per fact and revenue, recomputed from the acked events and the order factory);
//! for the other services the effect counts per order must stay at one.

use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::chaos::model::FaultKind;
use crate::events::Topic;
use crate::observe::Effect;
use crate::services::analytics::AnalyticsState;
use crate::topology::ServiceKind;

pub struct ReplayCheck;

/// What analytics must hold once every acked fact was counted exactly once.
pub fn analytics_truth(input: &CheckInput<'_>) -> AnalyticsState {
    let ledger = &input.observer.ledger;
    let mut truth = AnalyticsState::default();
    for order in 0..input.attempted {
        let acked = |topic| ledger.acked_mask(order, topic) != 0;
        truth.orders_created += u64::from(acked(Topic::OrderCreated));
        truth.payments_failed += u64::from(acked(Topic::PaymentFailed));
        truth.fulfilled += u64::from(acked(Topic::Fulfilled));
        if acked(Topic::PaymentSucceeded) {
            truth.payments_succeeded += 1;
            truth.revenue_cents += input.factory.make(order, 0).totals.total_cents;
        }
    }
    truth
}

fn effect_of(service: ServiceKind) -> Option<Effect> {
    match service {
        ServiceKind::Email => Some(Effect::EmailSent),
        ServiceKind::Inventory => Some(Effect::StockReserved),
        ServiceKind::Warehouse => Some(Effect::Shipped),
        ServiceKind::Analytics => Some(Effect::RevenueBooked),
        // The payment provider's capture records judge payment (no_duplicate_effects).
        ServiceKind::Payment => None,
    }
}

impl Check for ReplayCheck {
    fn name(&self) -> String {
        "replay".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let replayed: Vec<ServiceKind> = input
            .scenario
            .faults
            .iter()
            .filter_map(|f| match f.kind {
                FaultKind::Replay { service, .. } => Some(service),
                _ => None,
            })
            .collect();
        let mut evidence = Examples::default();
        let mut problems = 0u64;
        let samples = input.observer.samples();
        let last = samples.last();
        for &service in &replayed {
            // The state first: it is what a replay exists to rebuild.
            if service == ServiceKind::Analytics {
                match input.analytics {
                    Some(state) => {
                        let truth = analytics_truth(input);
                        if *state != truth {
                            problems += 1;
                            evidence.push(|| {
                                format!("analytics after the replay: {}", state.differences(&truth))
                            });
                        }
                    }
                    None => {
                        problems += 1;
                        evidence.push(|| "analytics did not run".to_owned());
                    }
                }
            }
            let lag = last.and_then(|s| s.lag.iter().find(|(k, _)| *k == service)?.1);
            if lag != Some(0) {
                problems += 1;
                evidence.push(|| match lag {
                    Some(n) => format!("{service}: {n} events left unread at the end"),
                    None => format!("{service}: its lag at the end is not known (no answer)"),
                });
            }
            if let Some(effect) = effect_of(service) {
                let twice: Vec<u64> = (0..input.attempted)
                    .filter(|&order| input.observer.ledger.effects(order, effect) > 1)
                    .collect();
                if !twice.is_empty() {
                    problems += 1;
                    let examples: Vec<String> = twice.iter().take(10).map(u64::to_string).collect();
                    evidence.push(|| {
                        format!(
                            "{} orders with {} more than once, e.g. orders {}",
                            twice.len(),
                            effect.name(),
                            examples.join(", ")
                        )
                    });
                }
            }
        }
        CheckResult::new(
            &self.name(),
            Verdict::holds(problems == 0),
            format!(
                "{problems} problems after replaying {}",
                replayed
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "everything re-read, state equal to ground truth, no effect twice",
        )
        .with_examples(evidence)
    }
}
