//! `checkout_success_rate`: orders whose `order.created` was acked within `checkout_timeout`,
//! over orders attempted (DESIGN.md §5). What a shopper experiences. In the sync checkout
//! baseline the driver marks an order accepted only once its inline provider call answered
//! too; this check reads the ledger either way and does not need to know the mode.

use super::{Check, CheckInput, CheckResult, Examples, ratio_result};
use crate::config::units::ShareThreshold;
use crate::observe::Checkout;

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
                outcome => failed.push(|| format!("order {order}: checkout {outcome:?}")),
            }
        }
        ratio_result(
            &self.name(),
            self.threshold,
            accepted,
            input.attempted,
            failed,
        )
    }
}
