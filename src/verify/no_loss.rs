//! `no_loss`: every event the broker acked was delivered to every service that consumes its
//! topic by the end of the drain (DESIGN.md §5). Zero is the bar.

use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::topology::SUBSCRIPTIONS;

pub struct NoLoss;

impl Check for NoLoss {
    fn name(&self) -> String {
        "no_loss".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let ledger = &input.observer.ledger;
        let (mut expected, mut lost) = (0u64, 0u64);
        let mut examples = Examples::default();
        for order in 0..input.attempted {
            for (sub, s) in SUBSCRIPTIONS.iter().enumerate() {
                if !input.enabled.contains(&s.service) {
                    continue;
                }
                let acked = ledger.acked_mask(order, s.topic);
                let missing = acked & !ledger.delivered_mask(order, sub);
                expected += u64::from(acked.count_ones());
                if missing != 0 {
                    lost += u64::from(missing.count_ones());
                    examples.push(|| {
                        format!(
                            "order {order}: {} never delivered to {}",
                            s.topic, s.service
                        )
                    });
                }
            }
        }
        CheckResult {
            name: self.name(),
            verdict: Verdict::holds(lost == 0),
            observed: format!("{lost} of {expected} expected deliveries lost"),
            threshold: "0 lost".into(),
            evidence: examples.items,
        }
    }
}
