//! `completion_rate`: accepted orders that reached the terminal state their ground truth
//! calls for (fulfilled, or declined when the card was planned to decline) within
//! `settle_within` of their intended time, over accepted orders. A declined card is an
//! outcome, not a failure; a provider failure after the last retry, a fulfilled order whose
//! card should have declined, or an order still in flight are not completions. Orders a
//! service dead-lettered are left to the `dead_letters` check when it runs.

use std::time::Duration;

use super::{Check, CheckInput, CheckResult, Examples, ratio_result};
use crate::config::units::ShareThreshold;
use crate::observe::{Checkout, Terminal};

pub struct CompletionRate {
    pub threshold: ShareThreshold,
    pub settle_within: Duration,
}

impl Check for CompletionRate {
    fn name(&self) -> String {
        "completion_rate".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let ledger = &input.observer.ledger;
        let limit_ms = u32::try_from(self.settle_within.as_millis()).unwrap_or(u32::MAX);
        let (mut accepted, mut completed) = (0, 0);
        let mut misses = Examples::default();
        // Parked orders are `dead_letters`' to judge.
        let parked = super::parked_orders(input);
        for order in 0..input.attempted {
            if ledger.checkout(order) != Checkout::Accepted || parked.contains(&order) {
                continue;
            }
            accepted += 1;
            let expected = if input.factory.plan(order).declines {
                Terminal::Declined
            } else {
                Terminal::Fulfilled
            };
            match ledger.terminal(order) {
                (t, Some(ms)) if t == expected && ms <= limit_ms => completed += 1,
                (t, Some(ms)) if t == expected => misses.push(|| {
                    format!(
                        "order {order}: {} only after {:.1} s, beyond settle_within",
                        t.words(),
                        f64::from(ms) / 1000.0
                    )
                }),
                (Terminal::None, _) => misses.push(|| format!("order {order}: never settled")),
                (t, _) => misses.push(|| {
                    format!(
                        "order {order}: {} where it should have been {}",
                        t.words(),
                        expected.words()
                    )
                }),
            }
        }
        ratio_result(&self.name(), self.threshold, completed, accepted, misses)
    }
}
