//! Why checkouts failed, counted by reason (an HTTP status, a broker's refusal, no answer in
//! time), each with its first orders: what the reports show instead of a bare "failed".

use std::collections::BTreeMap;

/// Distinct reasons kept; further ones are counted together as [`OTHER`].
const REASONS_MAX: usize = 16;
/// Orders named per reason.
const ORDERS_KEPT: usize = 5;
/// The reason under which the reasons beyond [`REASONS_MAX`] are counted.
pub const OTHER: &str = "other reasons";

/// How a checkout failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutFailure {
    /// The broker or the checkout endpoint answered no: the order was not taken.
    Refused,
    /// Sent, and no answer (or one that says it may have been taken): the order may exist.
    Unknown,
    /// Never sent: no checkout slot in time, or the order could not be rendered in the
    /// user's schema.
    NotSent,
    /// Published, but the checkout's inline card payment failed (`checkout: sync`).
    Payment,
}

impl CheckoutFailure {
    /// In plain words, for evidence and reports.
    pub fn words(self) -> &'static str {
        match self {
            CheckoutFailure::Refused => "refused",
            CheckoutFailure::Unknown => "unanswered",
            CheckoutFailure::NotSent => "not sent",
            CheckoutFailure::Payment => "payment failed at checkout",
        }
    }
}

/// The checkouts that failed one way for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FailedCheckouts {
    pub outcome: CheckoutFailure,
    /// "HTTP 503 Service Unavailable", "no answer within 2s", a broker's refusal.
    pub reason: String,
    pub count: u64,
    /// The first orders that failed so (at most 5).
    pub orders: Vec<u64>,
}

impl FailedCheckouts {
    /// "20 refused: HTTP 503 Service Unavailable (orders 49, 99, 149, 199, 249, ...)".
    pub fn describe(&self) -> String {
        let orders: Vec<String> = self.orders.iter().map(u64::to_string).collect();
        let more = if self.count > self.orders.len() as u64 {
            ", ..."
        } else {
            ""
        };
        let noun = if self.orders.len() == 1 {
            "order"
        } else {
            "orders"
        };
        format!(
            "{} {}: {} ({noun} {}{more})",
            self.count,
            self.outcome.words(),
            self.reason,
            orders.join(", ")
        )
    }
}

#[derive(Debug, Default)]
pub struct Failures {
    by: BTreeMap<(CheckoutFailure, String), (u64, Vec<u64>)>,
}

impl Failures {
    pub fn add(&mut self, outcome: CheckoutFailure, reason: String, order: u64) {
        let mut key = (outcome, reason);
        if self.by.len() >= REASONS_MAX && !self.by.contains_key(&key) {
            key.1 = OTHER.to_owned();
        }
        let (count, orders) = self.by.entry(key).or_default();
        *count += 1;
        if orders.len() < ORDERS_KEPT {
            orders.push(order);
        }
    }

    /// Adds another part's failures of one reason (`doorbuster merge`).
    pub fn absorb(&mut self, f: &FailedCheckouts) {
        let (count, orders) = self.by.entry((f.outcome, f.reason.clone())).or_default();
        *count += f.count;
        orders.extend(
            f.orders
                .iter()
                .take(ORDERS_KEPT.saturating_sub(orders.len())),
        );
    }

    /// Every reason, the most frequent first.
    pub fn list(&self) -> Vec<FailedCheckouts> {
        let mut list: Vec<FailedCheckouts> = self
            .by
            .iter()
            .map(|((outcome, reason), (count, orders))| FailedCheckouts {
                outcome: *outcome,
                reason: reason.clone(),
                count: *count,
                orders: orders.clone(),
            })
            .collect();
        list.sort_by_key(|f| std::cmp::Reverse(f.count));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_reason_with_their_first_orders() {
        let mut f = Failures::default();
        for order in (49..1_000).step_by(50) {
            f.add(
                CheckoutFailure::Refused,
                "HTTP 503 Service Unavailable".into(),
                order,
            );
        }
        f.add(CheckoutFailure::Unknown, "no answer within 2s".into(), 7);
        let list = f.list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].describe(),
            "20 refused: HTTP 503 Service Unavailable (orders 49, 99, 149, 199, 249, ...)"
        );
        assert_eq!(
            list[1].describe(),
            "1 unanswered: no answer within 2s (order 7)"
        );
    }

    #[test]
    fn reasons_beyond_the_limit_are_counted_together() {
        let mut f = Failures::default();
        for i in 0..(REASONS_MAX as u64 + 4) {
            f.add(CheckoutFailure::Refused, format!("offset {i} refused"), i);
        }
        let list = f.list();
        assert_eq!(list.len(), REASONS_MAX + 1);
        let other = list.iter().find(|l| l.reason == OTHER).unwrap();
        assert_eq!((other.count, other.orders.len()), (4, 4));
        assert_eq!(
            list.iter().map(|l| l.count).sum::<u64>(),
            REASONS_MAX as u64 + 4
        );
    }
}
