//! The standard commerce topology (DESIGN.md §2): which service consumes which topics.
//!
//! This table is the single source of "who should receive what": the services subscribe from
//! it and the `no_loss` check derives expected deliveries from it.

use crate::events::Topic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(strum::IntoStaticStr, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ServiceKind {
    Payment,
    Inventory,
    Email,
    Warehouse,
    Analytics,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 5] = [
        ServiceKind::Payment,
        ServiceKind::Inventory,
        ServiceKind::Email,
        ServiceKind::Warehouse,
        ServiceKind::Analytics,
    ];

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The topics this service's consumer group reads.
    pub fn consumes(self) -> &'static [Topic] {
        match self {
            ServiceKind::Payment | ServiceKind::Inventory => &[Topic::OrderCreated],
            ServiceKind::Email | ServiceKind::Warehouse => &[Topic::PaymentSucceeded],
            ServiceKind::Analytics => &[
                Topic::OrderCreated,
                Topic::PaymentSucceeded,
                Topic::PaymentFailed,
                Topic::Fulfilled,
            ],
        }
    }
}

/// A (service, topic) pair: one stream of deliveries the ledger tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Subscription {
    pub service: ServiceKind,
    pub topic: Topic,
}

impl Subscription {
    pub fn label(self) -> String {
        format!("{} <- {}", self.service, self.topic)
    }
}

/// Every subscription of the standard topology, in a fixed order (the ledger's index).
pub const SUBSCRIPTIONS: [Subscription; 8] = [
    Subscription {
        service: ServiceKind::Payment,
        topic: Topic::OrderCreated,
    },
    Subscription {
        service: ServiceKind::Inventory,
        topic: Topic::OrderCreated,
    },
    Subscription {
        service: ServiceKind::Email,
        topic: Topic::PaymentSucceeded,
    },
    Subscription {
        service: ServiceKind::Warehouse,
        topic: Topic::PaymentSucceeded,
    },
    Subscription {
        service: ServiceKind::Analytics,
        topic: Topic::OrderCreated,
    },
    Subscription {
        service: ServiceKind::Analytics,
        topic: Topic::PaymentSucceeded,
    },
    Subscription {
        service: ServiceKind::Analytics,
        topic: Topic::PaymentFailed,
    },
    Subscription {
        service: ServiceKind::Analytics,
        topic: Topic::Fulfilled,
    },
];

/// The ledger index of (service, topic), if the service consumes the topic.
pub fn subscription_index(service: ServiceKind, topic: Topic) -> Option<usize> {
    SUBSCRIPTIONS
        .iter()
        .position(|s| s.service == service && s.topic == topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_what_services_consume() {
        for service in ServiceKind::ALL {
            for &topic in service.consumes() {
                assert!(
                    subscription_index(service, topic).is_some(),
                    "{service} {topic}"
                );
            }
        }
        let total: usize = ServiceKind::ALL.iter().map(|s| s.consumes().len()).sum();
        assert_eq!(total, SUBSCRIPTIONS.len());
    }
}

/// A stage the latency SLOs and histograms name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `order.created` acked by the broker (the checkout latency); in the sync checkout
    /// mode, the inline provider call's answer too.
    #[strum(serialize = "order.created")]
    Checkout,
    /// `order.created -> order.payment.succeeded`
    #[strum(serialize = "order.created -> order.payment.succeeded")]
    PaymentSucceeded,
    /// `order.created -> order.fulfilled`
    #[strum(serialize = "order.created -> order.fulfilled")]
    Fulfilled,
    /// `order.created -> email.sent`
    #[strum(serialize = "order.created -> email.sent")]
    EmailSent,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Checkout,
        Stage::PaymentSucceeded,
        Stage::Fulfilled,
        Stage::EmailSent,
    ];

    /// The name used in scenario files and reports.
    pub fn label(self) -> &'static str {
        self.into()
    }
}
