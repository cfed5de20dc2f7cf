//! The checks of observe mode, over what the taps saw of the user's own shop
//! (`observe::outputs`): an expected output that never appeared is lost (DESIGN.md §5), an
//! output seen more often than expected is a duplicate effect, and an output naming no order
//! of the run is reported apart. Each names the orders.

use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::observe::Checkout;
use crate::observe::outputs::{Outputs, Tally};

/// What one of these checks found: how many failures, what to show, which examples.
struct Found {
    failures: u64,
    observed: String,
    examples: Examples,
}

/// A check over the taps' tally. The common verdict: Unknown without a tally, or when
/// nothing failed but the check had nothing to judge; otherwise Pass when nothing failed.
trait OutputCheck {
    const NAME: &'static str;
    const THRESHOLD: &'static str;

    fn find(&self, input: &CheckInput<'_>, outputs: &Outputs) -> Found;

    /// Why a clean result proves nothing (a broken tap, no accepted order), if it does not.
    fn cannot_judge(&self, input: &CheckInput<'_>, outputs: &Outputs) -> Option<String> {
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
}

impl<C: OutputCheck> Check for C {
    fn name(&self) -> String {
        C::NAME.into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let Some(outputs) = input.observer.outputs.as_ref() else {
            return CheckResult::new(C::NAME, Verdict::Unknown, "nothing tapped", C::THRESHOLD);
        };
        let found = self.find(input, outputs);
        if found.failures == 0
            && let Some(why) = self.cannot_judge(input, outputs)
        {
            return CheckResult::new(C::NAME, Verdict::Unknown, why, C::THRESHOLD);
        }
        CheckResult::new(
            C::NAME,
            Verdict::holds(found.failures == 0),
            found.observed,
            C::THRESHOLD,
        )
        .with_examples(found.examples)
    }
}

/// Every accepted order with, per output, how often it was expected and seen.
fn per_accepted_order<'a>(
    input: &'a CheckInput<'_>,
    outputs: &'a Outputs,
    mut each: impl FnMut(u64, &mut dyn Iterator<Item = (usize, &'a Tally, u32, u32)>),
) {
    for order in 0..input.attempted {
        if input.observer.ledger.checkout(order) != Checkout::Accepted {
            continue;
        }
        let declines = input.factory.plan(order).declines;
        let mut counts = outputs.outputs.iter().enumerate().map(|(i, tally)| {
            (
                i,
                tally,
                tally.spec.expect.of(declines),
                outputs.seen(i, order),
            )
        });
        each(order, &mut counts);
    }
}

/// `order 17 (uid 1a2b3c4d0000000000000011)`: both forms a user's shop may carry.
fn order_name(input: &CheckInput<'_>, order: u64) -> String {
    let tag = crate::orders::template::uid_tag(&input.factory.idempotency_key(order));
    format!("order {order} (uid {tag:08x}{order:016x})")
}

/// `no_loss` in observe mode: every accepted order made every output it should have.
pub struct NoLostOutputs;

impl OutputCheck for NoLostOutputs {
    const NAME: &'static str = "no_loss";
    const THRESHOLD: &'static str = "0 expected outputs missing";

    fn find(&self, input: &CheckInput<'_>, outputs: &Outputs) -> Found {
        let mut examples = Examples::default();
        let mut missing = vec![0u64; outputs.outputs.len()];
        let mut orders_missing = 0u64;
        per_accepted_order(input, outputs, |order, counts| {
            let mut last_seen: Option<&str> = None;
            let mut lacks = Vec::new();
            for (i, tally, want, seen) in counts {
                if seen < want {
                    missing[i] += u64::from(want - seen);
                    lacks.push(tally.spec.name.as_str());
                } else if want > 0 && lacks.is_empty() {
                    last_seen = Some(&tally.spec.name);
                }
            }
            if lacks.is_empty() {
                return;
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
        });
        let per_output: Vec<String> = outputs
            .outputs
            .iter()
            .zip(&missing)
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("{n} `{}` missing", t.spec.name))
            .collect();
        let failures: u64 = missing.iter().sum();
        Found {
            failures,
            observed: if failures == 0 {
                "every expected output seen".to_owned()
            } else {
                format!(
                    "{orders_missing} orders lost outputs: {}",
                    per_output.join(", ")
                )
            },
            examples,
        }
    }
}

/// `no_duplicate_effects` in observe mode: no order made an output more often than
/// expected, no event was published twice, and (when the user's payment service calls
/// doorbuster's provider) no order was charged twice, from the provider's own books.
pub struct NoDuplicateOutputs;

impl OutputCheck for NoDuplicateOutputs {
    const NAME: &'static str = "no_duplicate_effects";
    const THRESHOLD: &'static str = "0 outputs beyond those expected; 0 orders charged twice";

    fn find(&self, input: &CheckInput<'_>, outputs: &Outputs) -> Found {
        let mut examples = Examples::default();
        let double_charged = input.captures_per_order.doubled();
        for (order, n) in &double_charged {
            examples.push(|| format!("{}: charged {n} times", order_name(input, *order)));
        }
        let mut extra = vec![0u64; outputs.outputs.len()];
        per_accepted_order(input, outputs, |order, counts| {
            for (i, tally, want, seen) in counts.filter(|(.., want, seen)| seen > want) {
                extra[i] += 1;
                examples.push(|| {
                    format!(
                        "{}: `{}` seen {seen} times, expected {want}",
                        order_name(input, order),
                        tally.spec.name
                    )
                });
            }
        });
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
        Found {
            failures: double_charged.len() as u64
                + extra.iter().sum::<u64>()
                + summaries.iter().map(|s| s.repeated_events).sum::<u64>(),
            observed: parts.join("; "),
            examples,
        }
    }
}

/// `no_unknown_outputs`: every tapped output names an order of this run. An output for an
/// order doorbuster never made is another run's, another shop's, or a bug that invents
/// orders; an output naming none cannot be judged at all.
pub struct NoUnknownOutputs;

impl OutputCheck for NoUnknownOutputs {
    const NAME: &'static str = "no_unknown_outputs";
    const THRESHOLD: &'static str = "0 outputs for orders the run did not make";

    fn find(&self, _: &CheckInput<'_>, outputs: &Outputs) -> Found {
        let mut examples = Examples::default();
        let summaries = outputs.summaries();
        for (i, s) in summaries.iter().enumerate() {
            for line in outputs.surprises(i).1 {
                examples.push(|| format!("`{}`: {line}", s.name));
            }
        }
        let unknown: u64 = summaries.iter().map(|s| s.unknown).sum();
        let matched: u64 = summaries.iter().map(|s| s.matched).sum();
        Found {
            failures: unknown,
            observed: format!("{unknown} outputs for unknown orders, {matched} for the run's"),
            examples,
        }
    }

    /// Nothing tapped at all leaves nothing to judge.
    fn cannot_judge(&self, _: &CheckInput<'_>, outputs: &Outputs) -> Option<String> {
        let matched: u64 = outputs.summaries().iter().map(|s| s.matched).sum();
        (matched == 0).then(|| "no output was tapped: nothing to judge".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::observe::Observer;
    use crate::observe::config::{Expect, Locator, Observe, Output};
    use crate::transport::Tapped;
    use crate::verify::testkit::World;

    /// Ten orders and one output, `paid`, expected once per approved order.
    fn world() -> World {
        let mut w = World::new(10);
        let observe = Observe {
            orders_to: Some("shop.orders".into()),
            broker: None,
            settle_within: std::time::Duration::from_secs(1),
            outputs: vec![Output {
                name: "paid".into(),
                from: "shop.payments".into(),
                webhook: None,
                order: Locator::Json("/order".into()),
                event_id: Some(Locator::Json("/event".into())),
                filter: None,
                expect: Expect {
                    approved: 1,
                    declined: 0,
                },
            }],
            links: Vec::new(),
        };
        let orders = Arc::new(crate::load::PlannedOrders::new(
            &crate::load::Schedule::plan(&w.scenario.load, 1),
            Arc::new(w.factory.clone()),
        ));
        let outputs = Outputs::new(&observe, orders, Vec::new());
        w.observer = Observer::new(crate::clock::Clock::start(), 10).with_outputs(outputs);
        w
    }

    fn tap(w: &World, order: &str, event: &str) {
        let body = format!(r#"{{"order":{order},"event":"{event}"}}"#);
        let tapped = Tapped {
            key: None,
            headers: Vec::new(),
            body: Bytes::from(body),
            at: 1_000_000,
        };
        w.observer.outputs.as_ref().unwrap().tapped(0, &tapped);
    }

    /// Every order accepted; each approved one paid once, except those in `skip`, and those
    /// in `twice` paid again under the same event id.
    fn shop(w: &World, skip: &[u64], twice: &[u64]) {
        for order in 0..10 {
            w.observer.ledger.set_checkout(order, Checkout::Accepted);
            if w.factory.plan(order).declines || skip.contains(&order) {
                continue;
            }
            tap(w, &order.to_string(), &format!("e{order}"));
            if twice.contains(&order) {
                tap(w, &order.to_string(), &format!("e{order}"));
            }
        }
    }

    #[test]
    fn a_clean_shop_passes_every_output_check() {
        let w = world();
        shop(&w, &[], &[]);
        for check in [
            &NoLostOutputs as &dyn Check,
            &NoDuplicateOutputs,
            &NoUnknownOutputs,
        ] {
            let r = w.judge(check);
            assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        }
    }

    #[test]
    fn a_missing_a_repeated_and_a_foreign_output_fail_and_are_named() {
        let w = world();
        let paying = w.order_that_pays(true);
        let other = (paying + 1..10)
            .find(|o| !w.factory.plan(*o).declines)
            .unwrap();
        shop(&w, &[paying], &[other]);
        tap(&w, "\"ffffffff00000000000f4240\"", "x");
        let loss = w.judge(&NoLostOutputs);
        assert_eq!(loss.verdict, Verdict::Fail);
        assert_eq!(loss.evidence.len(), 1);
        assert!(loss.evidence[0].starts_with(&format!("order {paying} (uid ")));
        let dups = w.judge(&NoDuplicateOutputs);
        assert_eq!(dups.verdict, Verdict::Fail);
        assert!(
            dups.evidence[0].contains(&format!("order {other} "))
                && dups.observed.contains("1 `paid` events published again"),
            "{dups:?}"
        );
        let unknown = w.judge(&NoUnknownOutputs);
        assert_eq!(unknown.verdict, Verdict::Fail);
        assert!(unknown.evidence[0].contains("ffffffff00000000000f4240"));
    }

    #[test]
    fn an_order_is_found_by_its_uid_only_with_this_runs_tag() {
        let w = world();
        let outputs = w.observer.outputs.as_ref().unwrap();
        let tag = crate::orders::template::uid_tag(&w.factory.idempotency_key(3));
        assert_eq!(outputs.order_of(&format!("{tag:08x}{:016x}", 3)), Some(3));
        assert_eq!(outputs.order_of(&format!("{tag:08X}{:016X}", 3)), Some(3));
        assert_eq!(outputs.order_of("3"), Some(3));
        // Another run's uid for the same id (another tag), and ids the run never made.
        let other = tag.wrapping_add(1);
        assert_eq!(outputs.order_of(&format!("{other:08x}{:016x}", 3)), None);
        assert_eq!(outputs.order_of("1000000"), None);
        assert_eq!(outputs.order_of("ord_3"), None);
    }

    #[test]
    fn nothing_to_judge_or_a_broken_tap_is_unknown_never_a_pass() {
        // No order accepted: nothing owed, nothing to judge.
        let w = world();
        assert_eq!(w.judge(&NoLostOutputs).verdict, Verdict::Unknown);
        assert_eq!(w.judge(&NoUnknownOutputs).verdict, Verdict::Unknown);
        // A tap that stopped cannot vouch for what it did not see...
        let w = world();
        shop(&w, &[], &[]);
        w.observer
            .outputs
            .as_ref()
            .unwrap()
            .broken(0, "connection reset".into());
        let r = w.judge(&NoDuplicateOutputs);
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert!(r.observed.contains("connection reset"));
        // ...but what it did see still fails.
        let w = world();
        shop(&w, &[w.order_that_pays(true)], &[]);
        w.observer
            .outputs
            .as_ref()
            .unwrap()
            .broken(0, "reset".into());
        assert_eq!(w.judge(&NoLostOutputs).verdict, Verdict::Fail);
        // Without a tally at all (not observe mode): Unknown.
        let w = World::new(10);
        assert_eq!(w.judge(&NoLostOutputs).verdict, Verdict::Unknown);
    }
}
