//! The checks of observe mode, over what the taps saw of the user's own shop
//! (`observe::outputs`): an expected output that never appeared is lost (DESIGN.md §5), an
//! output seen more often than expected is a duplicate effect, and an output naming no order
//! of the run is reported apart. Each names the orders.

use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::observe::Checkout;
use crate::observe::outputs::Outputs;

/// The taps' tally, or why there is none to judge.
fn outputs<'a>(input: &'a CheckInput<'_>) -> Option<&'a Outputs> {
    input.observer.outputs.as_ref()
}

/// Why a check cannot judge: no tally, a broken tap, or no accepted order.
fn cannot_judge(input: &CheckInput<'_>, outputs: &Outputs) -> Option<String> {
    if let Some((name, why)) = outputs
        .summaries()
        .into_iter()
        .find_map(|s| s.broken.map(|why| (s.name, why)))
    {
        return Some(format!("the tap of `{name}` stopped: {why}"));
    }
    let accepted = (0..input.attempted)
        .any(|order| input.observer.ledger.checkout(order) == Checkout::Accepted);
    (!accepted).then(|| "no order was accepted: nothing to judge".to_owned())
}

/// `order 17 (uid 1a2b3c4d0000000000000011)`: both forms a user's shop may carry.
fn order_name(input: &CheckInput<'_>, order: u64) -> String {
    let tag = crate::orders::template::uid_tag(&input.factory.idempotency_key(order));
    format!("order {order} (uid {tag:08x}{order:016x})")
}

/// `no_loss` in observe mode: every accepted order made every output it should have.
pub struct NoLostOutputs;

impl Check for NoLostOutputs {
    fn name(&self) -> String {
        "no_loss".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let threshold = "0 expected outputs missing";
        let Some(outputs) = outputs(input) else {
            return CheckResult::new(&self.name(), Verdict::Unknown, "nothing tapped", threshold);
        };
        let mut examples = Examples::default();
        let mut missing = vec![0u64; outputs.outputs.len()];
        let mut orders_missing = 0u64;
        for order in 0..input.attempted {
            if input.observer.ledger.checkout(order) != Checkout::Accepted {
                continue;
            }
            let declines = input.factory.plan(order).declines;
            let mut last_seen: Option<&str> = None;
            let mut lacks = Vec::new();
            for (i, tally) in outputs.outputs.iter().enumerate() {
                let want = tally.spec.expect.of(declines);
                let seen = outputs.seen(i, order);
                if seen < want {
                    missing[i] += u64::from(want - seen);
                    lacks.push(tally.spec.name.as_str());
                } else if want > 0 && lacks.is_empty() {
                    last_seen = Some(&tally.spec.name);
                }
            }
            if lacks.is_empty() {
                continue;
            }
            orders_missing += 1;
            examples.push(|| {
                let stuck = match last_seen {
                    Some(after) => format!(", stuck after `{after}`"),
                    None => String::new(),
                };
                format!(
                    "{}: no `{}`{stuck}",
                    order_name(input, order),
                    lacks.join("`, no `")
                )
            });
        }
        let per_output: Vec<String> = outputs
            .outputs
            .iter()
            .zip(&missing)
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("{n} `{}` missing", t.spec.name))
            .collect();
        let total: u64 = missing.iter().sum();
        let observed = if total == 0 {
            "every expected output seen".to_owned()
        } else {
            format!(
                "{orders_missing} orders lost outputs: {}",
                per_output.join(", ")
            )
        };
        if total == 0
            && let Some(why) = cannot_judge(input, outputs)
        {
            return CheckResult::new(&self.name(), Verdict::Unknown, why, threshold);
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

/// `no_duplicate_effects` in observe mode: no order made an output more often than
/// expected, no event was published twice, and (when the user's payment service calls
/// doorbuster's provider) no order was charged twice, from the provider's own books.
pub struct NoDuplicateOutputs;

impl Check for NoDuplicateOutputs {
    fn name(&self) -> String {
        "no_duplicate_effects".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let threshold = "0 outputs beyond those expected; 0 orders charged twice";
        let Some(outputs) = outputs(input) else {
            return CheckResult::new(&self.name(), Verdict::Unknown, "nothing tapped", threshold);
        };
        let mut examples = Examples::default();
        let mut double_charged: Vec<(u64, u32)> = input
            .captures_per_order
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(order, n)| (*order, *n))
            .collect();
        double_charged.sort_unstable();
        for (order, n) in &double_charged {
            examples.push(|| format!("{}: charged {n} times", order_name(input, *order)));
        }
        let mut extra = vec![0u64; outputs.outputs.len()];
        for order in 0..input.attempted {
            if input.observer.ledger.checkout(order) != Checkout::Accepted {
                continue;
            }
            let declines = input.factory.plan(order).declines;
            for (i, tally) in outputs.outputs.iter().enumerate() {
                let want = tally.spec.expect.of(declines);
                let seen = outputs.seen(i, order);
                if seen > want {
                    extra[i] += 1;
                    examples.push(|| {
                        format!(
                            "{}: `{}` seen {seen} times, expected {want}",
                            order_name(input, order),
                            tally.spec.name
                        )
                    });
                }
            }
        }
        let summaries = outputs.summaries();
        let mut parts = vec![format!(
            "{} orders charged more than once",
            double_charged.len()
        )];
        for (i, s) in summaries.iter().enumerate() {
            if extra[i] > 0 {
                parts.push(format!(
                    "{} orders with `{}` more often than expected",
                    extra[i], s.name
                ));
            }
            if s.repeated_events > 0 {
                parts.push(format!(
                    "{} `{}` events published again",
                    s.repeated_events, s.name
                ));
                for line in outputs.surprises(i).0 {
                    examples.push(|| format!("`{}`: {line} seen again", s.name));
                }
            }
        }
        let total = double_charged.len() as u64
            + extra.iter().sum::<u64>()
            + summaries.iter().map(|s| s.repeated_events).sum::<u64>();
        if total == 0
            && let Some(why) = cannot_judge(input, outputs)
        {
            return CheckResult::new(&self.name(), Verdict::Unknown, why, threshold);
        }
        CheckResult::new(
            &self.name(),
            Verdict::holds(total == 0),
            parts.join("; "),
            threshold,
        )
        .with_examples(examples)
    }
}

/// `no_unknown_outputs`: every tapped output names an order of this run. An output for an
/// order doorbuster never made is another run's, another shop's, or a bug that invents
/// orders; an output naming none cannot be judged at all.
pub struct NoUnknownOutputs;

impl Check for NoUnknownOutputs {
    fn name(&self) -> String {
        "no_unknown_outputs".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let threshold = "0 outputs for orders the run did not make";
        let Some(outputs) = outputs(input) else {
            return CheckResult::new(&self.name(), Verdict::Unknown, "nothing tapped", threshold);
        };
        let mut examples = Examples::default();
        let summaries = outputs.summaries();
        let mut total = 0;
        for (i, s) in summaries.iter().enumerate() {
            total += s.unknown;
            for line in outputs.surprises(i).1 {
                examples.push(|| format!("`{}`: {line}", s.name));
            }
        }
        let matched: u64 = summaries.iter().map(|s| s.matched).sum();
        if total == 0 && matched == 0 {
            return CheckResult::new(
                &self.name(),
                Verdict::Unknown,
                "no output was tapped: nothing to judge",
                threshold,
            );
        }
        CheckResult::new(
            &self.name(),
            Verdict::holds(total == 0),
            format!("{total} outputs for unknown orders, {matched} for the run's"),
            threshold,
        )
        .with_examples(examples)
    }
}
