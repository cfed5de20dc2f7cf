//! `no_loss`: every effect an accepted order is owed happened by the end of the drain
//! (DESIGN.md §5). Zero is the bar.
//!
//! Judged on effects, not receipts: a consumer that acks and then crashes before acting has
//! had every event delivered and still lost the order. Each missing effect is put in one of
//! four places, per service:
//! - *lost delivery*: its input event was acked by the broker and never delivered;
//! - *lost effect*: the event was delivered and the service never acted on it (acked back to
//!   the broker first, or no longer pending anywhere);
//! - *not settled*: the service still had events queued or handlers running when the drain
//!   ended, so the effect may yet happen: reported, never called lost, never passed;
//! - *not reached*: its input event was never published, which is the upstream service's
//!   loss (counted there), not this one's.
//!
//! Orders parked on the dead-letter topic are `dead_letters`' to judge.

use super::expected::{Course, Expected, happened, owed};
use super::{Check, CheckInput, CheckResult, Examples, Verdict};
use crate::observe::Checkout;
use crate::topology::{ServiceKind, subscription_index};

pub struct NoLoss;

/// Per service: what was owed and what became of the missing part.
#[derive(Default, Clone, Copy)]
struct Tally {
    expected: u64,
    lost_deliveries: u64,
    lost_effects: u64,
    /// Of the lost effects: the delivery was acked back to the broker before the effect.
    acked_first: u64,
    not_settled: u64,
    not_reached: u64,
}

impl Tally {
    fn lost(&self) -> u64 {
        self.lost_deliveries + self.lost_effects
    }
}

/// Where a missing effect went.
enum Missing {
    NotReached,
    LostDelivery,
    LostEffect { acked_first: bool },
    NotSettled,
}

fn classify(input: &CheckInput<'_>, order: u64, e: &Expected) -> Missing {
    let ledger = &input.observer.ledger;
    let Some(sub) = subscription_index(e.service, e.input) else {
        return Missing::NotReached;
    };
    let published = ledger.acked_mask(order, e.input);
    if published == 0 {
        return Missing::NotReached;
    }
    let settled = input.settlement.settled(e.service);
    let delivered = ledger.delivered_mask(order, sub) & published != 0;
    let consumed = ledger.consumed_mask(order, sub) != 0;
    match (delivered, consumed, settled) {
        (_, _, false) => Missing::NotSettled,
        (false, _, true) => Missing::LostDelivery,
        (true, acked_first, true) => Missing::LostEffect { acked_first },
    }
}

fn why(m: &Missing, deliveries: u16) -> String {
    match m {
        Missing::LostDelivery => "acked by the broker, never delivered".to_owned(),
        Missing::LostEffect { acked_first: true } => {
            format!("delivered {deliveries}x and acked back, never acted on")
        }
        Missing::LostEffect { acked_first: false } => {
            format!("delivered {deliveries}x, never acted on, no longer pending")
        }
        Missing::NotSettled => "still queued or being handled at the drain limit".to_owned(),
        Missing::NotReached => "its input was never published".to_owned(),
    }
}

impl Check for NoLoss {
    fn name(&self) -> String {
        "no_loss".into()
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> CheckResult {
        let ledger = &input.observer.ledger;
        let parked = super::parked_orders(input);
        let mut tallies = [Tally::default(); ServiceKind::ALL.len()];
        let mut examples = Examples::default();
        for order in 0..input.attempted {
            if ledger.checkout(order) != Checkout::Accepted || parked.contains(&order) {
                continue;
            }
            for e in owed(Course::of(input, order)) {
                if !input.enabled.contains(&e.service) {
                    continue;
                }
                let t = &mut tallies[e.service as usize];
                t.expected += 1;
                if happened(input, order, e.proof) > 0 {
                    continue;
                }
                let missing = classify(input, order, e);
                match missing {
                    Missing::NotReached => {
                        t.not_reached += 1;
                        continue;
                    }
                    Missing::LostDelivery => t.lost_deliveries += 1,
                    Missing::LostEffect { acked_first } => {
                        t.lost_effects += 1;
                        t.acked_first += u64::from(acked_first);
                    }
                    Missing::NotSettled => t.not_settled += 1,
                }
                let deliveries = subscription_index(e.service, e.input)
                    .map_or(0, |sub| ledger.deliveries(order, sub));
                examples.push(|| {
                    format!(
                        "order {order}: {}: {} ({})",
                        e.service,
                        e.describe(),
                        why(&missing, deliveries)
                    )
                });
            }
        }
        let total = tallies.iter().fold(Tally::default(), |a, t| Tally {
            expected: a.expected + t.expected,
            lost_deliveries: a.lost_deliveries + t.lost_deliveries,
            lost_effects: a.lost_effects + t.lost_effects,
            acked_first: a.acked_first + t.acked_first,
            not_settled: a.not_settled + t.not_settled,
            not_reached: a.not_reached + t.not_reached,
        });
        examples.prepend(per_service_lines(&tallies));
        let mut observed = format!(
            "{} of {} expected effects lost ({} deliveries lost, {} received and never acted on)",
            total.lost(),
            total.expected,
            total.lost_deliveries,
            total.lost_effects
        );
        if total.not_settled > 0 {
            observed.push_str(&format!(
                "; {} not settled (still queued at the drain limit)",
                total.not_settled
            ));
        }
        let (queued, queued_total) = input.settlement.queued();
        if total.not_settled == 0 && !queued.is_empty() {
            observed.push_str(&format!(
                "; {queued_total} events still queued at the drain limit, every expected effect \
                 happened"
            ));
        }
        let verdict = if total.lost() > 0 {
            Verdict::Fail
        } else if total.not_settled > 0 {
            Verdict::Unknown
        } else if total.expected == 0 {
            observed = "no accepted order owed an effect: nothing to judge".to_owned();
            Verdict::Unknown
        } else {
            Verdict::Pass
        };
        CheckResult::new(&self.name(), verdict, observed, "0 lost").with_examples(examples)
    }
}

fn per_service_lines(tallies: &[Tally]) -> Vec<String> {
    let mut lines = Vec::new();
    for service in ServiceKind::ALL {
        let t = tallies[service as usize];
        if t.lost() > 0 {
            let mut line = format!(
                "{service}: {} of {} effects lost: {} deliveries lost (acked by the broker, never \
                 delivered), {} received and never acted on",
                t.lost(),
                t.expected,
                t.lost_deliveries,
                t.lost_effects
            );
            if t.acked_first > 0 {
                line.push_str(&format!(
                    " ({} of them acked back before the effect: `commit: on_receive`?)",
                    t.acked_first
                ));
            }
            lines.push(line);
        }
        if t.not_settled > 0 {
            lines.push(format!(
                "{service}: {} not settled (still queued or being handled at the drain limit)",
                t.not_settled
            ));
        }
        if t.not_reached > 0 {
            lines.push(format!(
                "{service}: {} more never reached it (their input was never published upstream)",
                t.not_reached
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Topic;
    use crate::observe::Effect;
    use crate::verify::testkit::World;

    #[test]
    fn a_complete_history_passes_and_an_empty_one_is_unknown() {
        let mut w = World::new(20);
        assert_eq!(w.judge(&NoLoss).verdict, Verdict::Unknown);
        for order in 0..20 {
            w.complete(order);
        }
        let r = w.judge(&NoLoss);
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        assert!(r.evidence.is_empty());
    }

    #[test]
    fn an_effect_acked_and_never_applied_is_lost_at_its_service() {
        let mut w = World::new(20);
        let order = w.order_that_pays(true);
        // Everything an approved order is owed but the email: its delivery was acked back
        // and nothing was sent.
        w.accept(order);
        w.flow(order, Topic::OrderCreated);
        *w.captures.entry(order).or_default() += 1;
        w.flow(order, Topic::PaymentSucceeded);
        w.flow(order, Topic::Fulfilled);
        let l = &w.observer.ledger;
        for effect in [
            Effect::StockReserved,
            Effect::OrderCounted,
            Effect::Shipped,
            Effect::RevenueBooked,
            Effect::FulfilmentCounted,
        ] {
            l.effect(order, effect);
        }
        let r = w.judge(&NoLoss);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(
            r.observed,
            "1 of 9 expected effects lost (0 deliveries lost, 1 received and never acted on)"
        );
        assert_eq!(
            r.evidence,
            [
                "email: 1 of 1 effects lost: 0 deliveries lost (acked by the broker, never \
                 delivered), 1 received and never acted on (1 of them acked back before the \
                 effect: `commit: on_receive`?)"
                    .to_owned(),
                format!(
                    "order {order}: email: email sent never happened (delivered 1x and acked \
                     back, never acted on)"
                ),
            ]
        );
        assert_eq!(r.evidence_total, 2);
    }

    #[test]
    fn an_event_still_queued_at_the_drain_limit_is_not_settled_never_lost() {
        let mut w = World::new(20);
        let order = w.order_that_pays(false);
        w.accept(order);
        // order.created acked by the broker and delivered nowhere: every group still holds it.
        for (_, lag) in &mut w.settlement.lags {
            *lag = Some(1);
        }
        let r = w.judge(&NoLoss);
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert_eq!(
            r.observed,
            "0 of 4 expected effects lost (0 deliveries lost, 0 received and never acted on); 3 \
             not settled (still queued at the drain limit)"
        );
        assert!(
            r.evidence.contains(
                &"inventory: 1 not settled (still queued or being handled at the drain limit)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn the_same_missing_delivery_is_lost_once_the_groups_are_drained() {
        let w = World::new(20);
        let order = w.order_that_pays(false);
        w.accept(order);
        let r = w.judge(&NoLoss);
        assert_eq!(r.verdict, Verdict::Fail);
        // Payment (announce the decline), inventory and analytics (count the order) lost
        // the delivery; the failure's count never had its event published, so it is not
        // analytics' loss but payment's.
        assert_eq!(
            r.observed,
            "3 of 4 expected effects lost (3 deliveries lost, 0 received and never acted on)"
        );
        assert!(
            r.evidence.contains(
                &"analytics: 1 more never reached it (their input was never published upstream)"
                    .to_owned()
            ),
            "{:?}",
            r.evidence
        );
    }

    #[test]
    fn a_handler_still_running_leaves_its_service_unsettled() {
        let mut w = World::new(20);
        let order = w.order_that_pays(false);
        w.accept(order);
        w.flow(order, Topic::OrderCreated);
        let l = &w.observer.ledger;
        l.effect(order, Effect::OrderCounted);
        w.flow(order, Topic::PaymentFailed);
        l.effect(order, Effect::FailureCounted);
        // Inventory acked on receipt and is still working on it when the drain ends.
        w.settlement.handling[ServiceKind::Inventory as usize] = 1;
        let r = w.judge(&NoLoss);
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        w.settlement.handling[ServiceKind::Inventory as usize] = 0;
        assert_eq!(w.judge(&NoLoss).verdict, Verdict::Fail);
    }
}
