//! The ground truth of effects: what every accepted order must leave behind at each service
//! (DESIGN.md §5), and where the proof that it happened is found.
//!
//! The order's *course* decides the set. Its card was planned to decline or not (the order
//! factory's ground truth); an approved card can still end in a payment failure when the
//! provider kept failing past the last retry, a failure `completion_rate` judges, after which
//! nothing downstream of payment is owed. Each expected effect names the event that makes its
//! service act (its *input*), so a missing effect can be told apart: the input never
//! published (upstream's loss, not this service's), acked but never delivered (a lost
//! delivery), or delivered and never acted on (a lost effect).

use crate::events::Topic;
use crate::observe::{Effect, Terminal};
use crate::topology::ServiceKind;

use super::CheckInput;

/// How an accepted order's payment went, which decides what it is owed downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Course {
    /// The card pays: one capture, stock, one email, one shipment, the bookings.
    Approved,
    /// The card declines (a business outcome): no capture, no email, no shipment.
    Declined,
    /// The provider failed past the last retry (a failure, judged by `completion_rate`):
    /// `order.payment.failed` is published and nothing after payment is owed.
    PaymentFailed,
}

impl Course {
    pub fn of(input: &CheckInput<'_>, order: u64) -> Course {
        if input.factory.plan(order).declines {
            Course::Declined
        } else if input.observer.ledger.terminal(order).0 == Terminal::Failed {
            Course::PaymentFailed
        } else {
            Course::Approved
        }
    }
}

/// Where the proof of an effect is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A capture in the payment provider's own records.
    Capture,
    /// An event of this topic acked by the broker (the service announced its outcome).
    Published(Topic),
    /// A ledger effect.
    Applied(Effect),
    /// Inventory's decision: stock reserved or the order backordered.
    StockDecision,
}

/// One effect an order is owed by one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub service: ServiceKind,
    pub proof: Proof,
    /// The event the service acts on to apply it.
    pub input: Topic,
}

impl Expected {
    const fn new(service: ServiceKind, proof: Proof, input: Topic) -> Expected {
        Expected {
            service,
            proof,
            input,
        }
    }

    /// What is missing when it never happened: `one capture`, `email sent`.
    pub fn describe(&self) -> String {
        match self.proof {
            Proof::Capture => "the card was never captured".to_owned(),
            Proof::Published(topic) => format!("{topic} was never published"),
            Proof::Applied(effect) => format!("{} never happened", effect.name()),
            Proof::StockDecision => "stock was never reserved (nor the order backordered)".into(),
        }
    }
}

use Proof::{Applied, Capture, Published, StockDecision};
use ServiceKind::{Analytics, Email, Inventory, Payment, Warehouse};
use Topic::{Fulfilled, OrderCreated, PaymentFailed, PaymentSucceeded};

const APPROVED: &[Expected] = &[
    Expected::new(Payment, Capture, OrderCreated),
    Expected::new(Payment, Published(PaymentSucceeded), OrderCreated),
    Expected::new(Inventory, StockDecision, OrderCreated),
    Expected::new(Email, Applied(Effect::EmailSent), PaymentSucceeded),
    Expected::new(Warehouse, Applied(Effect::Shipped), PaymentSucceeded),
    Expected::new(Warehouse, Published(Fulfilled), PaymentSucceeded),
    Expected::new(Analytics, Applied(Effect::OrderCounted), OrderCreated),
    Expected::new(Analytics, Applied(Effect::RevenueBooked), PaymentSucceeded),
    Expected::new(Analytics, Applied(Effect::FulfilmentCounted), Fulfilled),
];

/// A declined card and a failed payment are owed the same: the failure announced and
/// counted, the stock decision, nothing after payment.
const NOT_PAID: &[Expected] = &[
    Expected::new(Payment, Published(PaymentFailed), OrderCreated),
    Expected::new(Inventory, StockDecision, OrderCreated),
    Expected::new(Analytics, Applied(Effect::OrderCounted), OrderCreated),
    Expected::new(Analytics, Applied(Effect::FailureCounted), PaymentFailed),
];

/// Every effect an order on this course is owed, for every service.
pub fn owed(course: Course) -> &'static [Expected] {
    match course {
        Course::Approved => APPROVED,
        Course::Declined | Course::PaymentFailed => NOT_PAID,
    }
}

/// How many times the effect happened for `order` (0: never).
pub fn happened(input: &CheckInput<'_>, order: u64, proof: Proof) -> u32 {
    let ledger = &input.observer.ledger;
    match proof {
        Capture => input.captures_per_order.get(order),
        Published(topic) => ledger.acked_mask(order, topic).count_ones(),
        Applied(effect) => u32::from(ledger.effects(order, effect)),
        StockDecision => {
            u32::from(ledger.effects(order, Effect::StockReserved))
                + u32::from(ledger.effects(order, Effect::Backordered))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::subscription_index;

    #[test]
    fn every_expected_effect_is_read_from_a_topic_its_service_consumes() {
        for course in [Course::Approved, Course::Declined, Course::PaymentFailed] {
            for e in owed(course) {
                assert!(
                    subscription_index(e.service, e.input).is_some(),
                    "{e:?} on {course:?}"
                );
            }
        }
    }

    #[test]
    fn every_service_owes_an_approved_order_something() {
        for service in ServiceKind::ALL {
            assert!(
                owed(Course::Approved).iter().any(|e| e.service == service),
                "{service}"
            );
        }
    }
}
