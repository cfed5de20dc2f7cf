//! `per_key_order`: for each order, the events of a topic reach each consuming service in
//! the order they were published (first deliveries; redeliveries are duplicates, not
//! reorders). Violations are counted per subscription, by the process that saw both
//! deliveries: a run merged from shards on a broker that hands an order's events to any
//! member cannot see them, and says Unknown.

use std::sync::atomic::Ordering::Relaxed;

use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::topology::SUBSCRIPTIONS;

pub struct PerKeyOrder;

impl Check for PerKeyOrder {
    fn name(&self) -> String {
        "per_key_order".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        if input.shards > 1 && !crate::load::shard::one_process_per_key(&input.scenario.target) {
            return CheckResult::new(
                &self.name(),
                Verdict::Unknown,
                format!(
                    "not seen: {} shards' members shared the groups, and an order's events \
                     may have reached different shards, which cannot see each other's order",
                    input.shards
                ),
                "0",
            );
        }
        let o = input.observer;
        let mut total = 0;
        let mut lines = Vec::new();
        let mut examples = Examples::default();
        for (sub, s) in SUBSCRIPTIONS.iter().enumerate() {
            let n = o.counters.out_of_order[sub].load(Relaxed);
            if n > 0 {
                total += n;
                lines.push(format!("{}: {n} out of order", s.label()));
                // The observer keeps the first examples per subscription; the rest are
                // counted, so the remainder stays true.
                let named = o.out_of_order_examples(sub);
                for order in &named {
                    examples.push(|| {
                        format!(
                            "order {order}: {}: a later event of the order was delivered first",
                            s.label()
                        )
                    });
                }
                examples.total += n.saturating_sub(named.len() as u64);
            }
        }
        examples.prepend(lines);
        let evidence = examples;
        if o.counters.deliveries.load(Relaxed) == 0 {
            return CheckResult::new(
                &self.name(),
                Verdict::Unknown,
                "no deliveries: nothing to judge",
                "0",
            );
        }
        CheckResult::new(
            &self.name(),
            Verdict::holds(total == 0),
            format!("{total} out-of-order deliveries"),
            "0",
        )
        .with_examples(evidence)
    }
}
