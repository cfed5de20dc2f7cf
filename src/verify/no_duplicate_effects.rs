//! `no_duplicate_effects`: no side effect applied twice for one order: a second capture at
//! the payment provider (from the provider's own records), a second confirmation email, stock
//! decremented twice, a second shipment, revenue booked twice. Duplicate *deliveries* are
//! expected under at-least-once and are not judged here.

use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::observe::Effect;

pub struct NoDuplicateEffects;

impl Check for NoDuplicateEffects {
    fn name(&self) -> String {
        "no_duplicate_effects".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let mut examples = Examples::default();
        let double_charged = input.captures_per_order.doubled();
        for (order, n) in &double_charged {
            examples.push(|| format!("order {order}: payment: charged {n} times"));
        }
        let mut counts = [0u64; Effect::ALL.len()];
        let mut applied = input.captures_per_order.len() as u64;
        let ledger = &input.observer.ledger;
        for order in 0..input.attempted {
            for effect in Effect::ALL.into_iter().filter(|e| e.harms_when_repeated()) {
                let n = ledger.effects(order, effect);
                applied += u64::from(n > 0);
                if n > 1 {
                    counts[effect as usize] += 1;
                    examples.push(|| {
                        format!(
                            "order {order}: {}: {} {n} times",
                            effect.service(),
                            effect.name()
                        )
                    });
                }
            }
        }
        let total = double_charged.len() as u64 + counts.iter().sum::<u64>();
        let mut observed = format!("{} orders charged more than once", double_charged.len());
        let repeated: Vec<String> = Effect::ALL
            .iter()
            .filter(|e| counts[**e as usize] > 0)
            .map(|e| {
                format!(
                    "{} orders with {} more than once ({})",
                    counts[*e as usize],
                    e.name(),
                    e.service()
                )
            })
            .collect();
        if repeated.is_empty() {
            observed.push_str("; no other effect repeated");
        } else {
            observed.push_str("; ");
            observed.push_str(&repeated.join("; "));
        }
        let threshold = "0 orders with a repeated effect";
        if applied == 0 {
            return CheckResult::new(
                &self.name(),
                Verdict::Unknown,
                "no effect was applied: nothing to judge",
                threshold,
            );
        }
        CheckResult::new(
            &self.name(),
            Verdict::holds(total == 0),
            observed,
            threshold,
        )
        .with_examples(examples)
    }
}
