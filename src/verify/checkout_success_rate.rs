//! `checkout_success_rate`: orders whose `order.created` was acked within `checkout_timeout`,
//! over orders attempted (DESIGN.md §5). What a shopper experiences. In the sync checkout
//! baseline the driver marks an order accepted only once its inline provider call answered
//! too; this check reads the ledger either way and does not need to know the mode.

use super::{Check, CheckInput, CheckResult, Examples, ratio_result};
use crate::config::units::ShareThreshold;
use crate::observe::Checkout;
use crate::observe::failures::FailedCheckouts;

pub struct CheckoutSuccessRate {
    pub threshold: ShareThreshold,
}

impl Check for CheckoutSuccessRate {
    fn name(&self) -> String {
        "checkout_success_rate".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let ledger = &input.observer.ledger;
        let mut accepted = 0;
        let mut failed = Examples::default();
        for order in 0..input.attempted {
            match ledger.checkout(order) {
                Checkout::Accepted => accepted += 1,
                Checkout::Failed => failed.push(|| format!("order {order}: checkout failed")),
                Checkout::Pending => failed.push(|| format!("order {order}: checkout never ended")),
            }
        }
        // Why they failed, in plain words, before the orders.
        let reasons = input.observer.checkout_failures();
        failed.prepend(reasons.iter().map(FailedCheckouts::describe).collect());
        ratio_result(
            &self.name(),
            self.threshold,
            accepted,
            input.attempted,
            failed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::{Comparison, Share};
    use crate::observe::failures::CheckoutFailure;
    use crate::verify::Verdict;
    use crate::verify::testkit::World;

    fn check() -> CheckoutSuccessRate {
        CheckoutSuccessRate {
            threshold: ShareThreshold {
                comparison: Comparison::AtLeast,
                share: Share(0.9),
            },
        }
    }

    #[test]
    fn failed_checkouts_are_named_with_their_reason() {
        let w = World::new(10);
        for order in 0..10 {
            if order % 5 == 0 {
                w.observer.ledger.set_checkout(order, Checkout::Failed);
                let reason = "HTTP 503 Service Unavailable".to_owned();
                w.observer
                    .checkout_failed(order, CheckoutFailure::Refused, reason);
            } else {
                w.accept(order);
            }
        }
        let r = w.judge(&check());
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert_eq!(
            r.evidence,
            [
                "2 refused: HTTP 503 Service Unavailable (orders 0, 5)",
                "order 0: checkout failed",
                "order 5: checkout failed",
            ]
        );
    }

    #[test]
    fn every_checkout_accepted_passes_with_nothing_to_explain() {
        let w = World::new(10);
        (0..10).for_each(|order| w.accept(order));
        let r = w.judge(&check());
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        assert!(r.evidence.is_empty(), "{r:?}");
    }
}
