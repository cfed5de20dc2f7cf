//! `money_matches_state`: the money the payment provider took agrees with how each order
//! ended (DESIGN.md §5). An order captured at the provider must end fulfilled; a shipped
//! order must have been captured (shipped: the warehouse's effect or its `order.fulfilled`,
//! whatever the order's first reported end says).
//!
//! The provider's own capture records are the money side, never the payment service's word:
//! a call that timed out after the provider captured, followed by retries that all failed,
//! leaves an order the shop calls failed and the shopper paid for. Captures of one order
//! beyond the first are `no_duplicate_effects`' to judge; this check asks whether there was
//! one at all. An order still on its way when the drain ended is *not settled*: reported,
//! never called a disagreement, never passed. Orders parked on the dead-letter topic are
//! `dead_letters`' to judge, as everywhere.

use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::events::Topic;
use crate::observe::{Effect, Terminal};
use crate::topology::ServiceKind;

pub struct MoneyMatchesState;

impl Check for MoneyMatchesState {
    fn name(&self) -> String {
        "money_matches_state".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let ledger = &input.observer.ledger;
        // Without a warehouse nothing is fulfilled, so a capture has nothing to agree with.
        let fulfils = input.enabled.contains(&ServiceKind::Warehouse);
        let pending = !(input.settlement.settled(ServiceKind::Payment)
            && input.settlement.settled(ServiceKind::Warehouse));
        let (mut judged, mut charged_not_paid, mut charged_unfulfilled) = (0u64, 0u64, 0u64);
        let (mut shipped_unpaid, mut not_settled) = (0u64, 0u64);
        let mut examples = Examples::default();
        let parked = super::parked_orders(input);
        for order in (0..input.attempted).filter(|o| !parked.contains(o)) {
            let captures = input.captures_per_order.get(order);
            // Shipped is what the warehouse did, whatever the order's first-reported end says.
            let shipped = ledger.effects(order, Effect::Shipped) > 0
                || ledger.acked_mask(order, Topic::Fulfilled) != 0;
            if captures == 0 && !shipped {
                continue;
            }
            judged += 1;
            let terminal = ledger.terminal(order).0;
            match (captures > 0, terminal, shipped) {
                (true, Terminal::Failed | Terminal::Declined, _) => {
                    charged_not_paid += 1;
                    let state = if terminal == Terminal::Failed {
                        "payment failed"
                    } else {
                        "declined"
                    };
                    examples.push(|| {
                        format!("order {order}: charged {captures}x, but the order ended {state}")
                    });
                }
                (true, _, false) if fulfils && pending => not_settled += 1,
                (true, _, false) if fulfils => {
                    charged_unfulfilled += 1;
                    examples
                        .push(|| format!("order {order}: charged {captures}x, never fulfilled"));
                }
                (false, _, true) => {
                    shipped_unpaid += 1;
                    examples.push(|| format!("order {order}: fulfilled without a capture"));
                }
                _ => {}
            }
        }
        let disagreements = charged_not_paid + charged_unfulfilled + shipped_unpaid;
        let mut observed = format!(
            "{disagreements} of {judged} charged or fulfilled orders disagree ({charged_not_paid} \
             charged but failed or declined, {charged_unfulfilled} charged but never fulfilled, \
             {shipped_unpaid} fulfilled without a capture)"
        );
        if not_settled > 0 {
            observed.push_str(&format!(
                "; {not_settled} charged orders not settled (still on their way at the drain \
                 limit)"
            ));
        }
        let verdict = if disagreements > 0 {
            Verdict::Fail
        } else if not_settled > 0 {
            Verdict::Unknown
        } else if judged == 0 {
            observed = "no order was charged or fulfilled: nothing to judge".to_owned();
            Verdict::Unknown
        } else {
            Verdict::Pass
        };
        CheckResult::new(
            &self.name(),
            verdict,
            observed,
            "every capture ends fulfilled, every fulfilment was captured",
        )
        .with_examples(examples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testkit::World;

    #[test]
    fn agreeing_orders_pass_and_no_money_at_all_is_unknown() {
        let mut w = World::new(20);
        assert_eq!(w.judge(&MoneyMatchesState).verdict, Verdict::Unknown);
        for order in 0..20 {
            w.complete(order);
        }
        let r = w.judge(&MoneyMatchesState);
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    }

    #[test]
    fn every_kind_of_disagreement_fails_with_its_order_named() {
        let mut w = World::new(40);
        let paying: Vec<u64> = (0..40).filter(|&o| !w.factory.plan(o).declines).collect();
        let (failed, unfulfilled, unpaid) = (paying[0], paying[1], paying[2]);
        let declining = w.order_that_pays(false);
        let odd = [failed, unfulfilled, unpaid, declining];
        for order in (0..40).filter(|o| !odd.contains(o)) {
            w.complete(order);
        }
        for order in odd {
            w.accept(order);
        }
        let l = &w.observer.ledger;
        // Charged, then announced failed.
        w.captures.add(failed);
        l.set_terminal(failed, Terminal::Failed, 10);
        // Charged and never fulfilled.
        w.captures.add(unfulfilled);
        // Shipped, never charged.
        l.effect(unpaid, Effect::Shipped);
        l.set_terminal(unpaid, Terminal::Fulfilled, 10);
        // A declined card charged anyway.
        w.captures.add(declining);
        l.set_terminal(declining, Terminal::Declined, 10);

        let r = w.judge(&MoneyMatchesState);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.observed.starts_with("4 of ")
                && r.observed.ends_with(
                    "(2 charged but failed or declined, 1 charged but never fulfilled, 1 \
                     fulfilled without a capture)"
                ),
            "{}",
            r.observed
        );
        let mut expected = vec![
            (
                failed,
                format!("order {failed}: charged 1x, but the order ended payment failed"),
            ),
            (
                unfulfilled,
                format!("order {unfulfilled}: charged 1x, never fulfilled"),
            ),
            (
                unpaid,
                format!("order {unpaid}: fulfilled without a capture"),
            ),
            (
                declining,
                format!("order {declining}: charged 1x, but the order ended declined"),
            ),
        ];
        expected.sort();
        let expected: Vec<String> = expected.into_iter().map(|(_, e)| e).collect();
        assert_eq!(r.evidence, expected);

        // The charged-and-unfulfilled order may still be on its way while the warehouse has
        // work in hand: not settled, never a disagreement.
        w.settlement.handling[ServiceKind::Warehouse as usize] = 1;
        let r = w.judge(&MoneyMatchesState);
        assert!(
            r.observed.contains("0 charged but never fulfilled"),
            "{}",
            r.observed
        );
        assert!(
            r.observed.contains("1 charged orders not settled"),
            "{}",
            r.observed
        );
    }
}
