//! Analytics: consumes `order.*` and keeps the revenue and count ledger a dashboard shows.
//!
//! Idempotent per (order, topic) by default: a fact counts once however often it arrives.
//! Its state is what a replay must rebuild (the replay check compares it with ground truth).

use std::sync::{Arc, Mutex};

use super::payment::PaymentFact;
use super::{Idempotency, Service, ServiceEnv, ServiceError};
use crate::events::{Envelope, Topic};
use crate::observe::Effect;
use crate::sync::lock;
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AnalyticsState {
    pub orders_created: u64,
    pub payments_succeeded: u64,
    pub payments_failed: u64,
    pub fulfilled: u64,
    pub revenue_cents: u64,
}

impl AnalyticsState {
    /// Where this state differs from `truth`, in words: "revenue 2469.12 where the ground
    /// truth is 1234.56, orders created 240 where the ground truth is 120".
    pub fn differences(&self, truth: &AnalyticsState) -> String {
        let figures = |s: &AnalyticsState| {
            [
                ("orders created", s.orders_created.to_string()),
                ("payments succeeded", s.payments_succeeded.to_string()),
                ("payments failed", s.payments_failed.to_string()),
                ("fulfilled", s.fulfilled.to_string()),
                ("revenue", crate::orders::decimal(s.revenue_cents)),
            ]
        };
        figures(self)
            .into_iter()
            .zip(figures(truth))
            .filter(|((_, held), (_, true_value))| held != true_value)
            .map(|((name, held), (_, true_value))| {
                format!("{name} {held} where the ground truth is {true_value}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub struct Analytics {
    pub env: ServiceEnv,
    pub idempotency: Idempotency,
    state: Arc<Mutex<AnalyticsState>>,
}

impl Analytics {
    pub fn new(env: ServiceEnv, idempotent: bool) -> Analytics {
        Analytics {
            idempotency: env.idempotency(ServiceKind::Analytics, idempotent),
            env,
            state: Arc::default(),
        }
    }

    pub fn state(&self) -> AnalyticsState {
        lock(&self.state).clone()
    }

    async fn process(&self, event: &Envelope) -> Result<(), ServiceError> {
        let order = event.meta.order_id;
        // What the fact adds, read before it is claimed: a fact that cannot be read claims
        // nothing (it is acked and reported).
        let (effect, revenue_cents) = match event.topic {
            Topic::OrderCreated => (Effect::OrderCounted, 0),
            Topic::PaymentFailed => (Effect::FailureCounted, 0),
            Topic::Fulfilled => (Effect::FulfilmentCounted, 0),
            Topic::PaymentSucceeded => {
                let fact: PaymentFact = serde_json::from_slice(&event.payload).map_err(|e| {
                    ServiceError::Malformed {
                        service: ServiceKind::Analytics,
                        what: "order.payment.succeeded payload",
                        order,
                        reason: e.to_string(),
                    }
                })?;
                (Effect::RevenueBooked, fact.amount_cents)
            }
            Topic::PaymentAttempted | Topic::DeadLetter => return Ok(()),
        };
        let fact_key = (order << 3) | event.topic.index() as u64;
        let (state, o) = (self.state.clone(), self.env.publisher.observer.clone());
        let count = move || {
            let mut state = lock(&state);
            match effect {
                Effect::OrderCounted => state.orders_created += 1,
                Effect::FailureCounted => state.payments_failed += 1,
                Effect::FulfilmentCounted => state.fulfilled += 1,
                _ => {
                    state.payments_succeeded += 1;
                    state.revenue_cents += revenue_cents;
                }
            }
            drop(state);
            o.ledger.effect(order, effect);
        };
        self.idempotency.first_time_then(fact_key, count).await?;
        Ok(())
    }
}

impl Service for Analytics {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Analytics
    }

    fn handle<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(self.process(event))
    }
}
