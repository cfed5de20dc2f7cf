//! `dead_letters`: every event a service gave up on reached the dead-letter topic, and the
//! orders parked there stay within the scenario's bound (`checks.dead_letters`, `<= 0%` by
//! default). Runs when some service has `max_deliveries`, the only way events get parked.
//!
//! Dead-lettered orders are judged here and left out of `completion_rate`, so one poison
//! order is one finding, not two.

use std::sync::atomic::Ordering::Relaxed;

use super::{Check, CheckInput, CheckResult, Examples, Verdict, ratio_result};
use crate::config::units::ShareThreshold;
use crate::observe::Checkout;
use crate::scenario::model::Scenario;
use crate::sync::lock;

pub struct DeadLetterCheck {
    pub threshold: ShareThreshold,
}

/// Whether the run parks events (some enabled service has `max_deliveries`) and the check
/// judges them.
pub fn active(scenario: &Scenario) -> Option<ShareThreshold> {
    scenario
        .checks
        .dead_letters
        .filter(|_| scenario.services.park_dead_letters())
}

impl Check for DeadLetterCheck {
    fn name(&self) -> String {
        "dead_letters".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let book = lock(&input.observer.dead_letters);
        let orders = book.orders();
        let accepted = (0..input.attempted)
            .filter(|&o| input.observer.ledger.checkout(o) == Checkout::Accepted)
            .count() as u64;
        let mut evidence = Examples::default();
        let missing = book.missing();
        for (service, event, order) in &missing {
            evidence.push(|| {
                format!(
                    "order {order}: event {event} dead-lettered by {service} never arrived on \
                     order.dead_letter"
                )
            });
        }
        for (service, count) in book.per_service() {
            evidence.push(|| format!("{service}: {count} events dead-lettered"));
        }
        for order in &orders {
            evidence.push(|| format!("order {order}: dead-lettered"));
        }
        let mut result = ratio_result(
            &self.name(),
            self.threshold,
            orders.len() as u64,
            accepted,
            evidence,
        );
        let arrived = input.observer.counters.dead_letters_arrived.load(Relaxed);
        result.observed = format!(
            "{}; {} of {} dead letters arrived on the topic",
            result.observed,
            arrived,
            book.sent_count()
        );
        if !missing.is_empty() {
            result.verdict = Verdict::Fail;
        }
        result
    }
}
