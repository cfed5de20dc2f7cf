//! Payment: consumes `order.created`, charges the card at the payment provider, and publishes
//! `order.payment.attempted`, then `order.payment.succeeded` or `order.payment.failed`.
//!
//! Idempotent (the default), it sends the order's idempotency key with every call, so the
//! provider captures once however often the order arrives. With `idempotent: false` it treats
//! every delivery as a new payment with a fresh key: the double charge a negative control
//! needs, provable from the provider's own capture records. Provider errors are retried with
//! jittered exponential backoff (honouring Retry-After) under the same key, as a real client
//! would;
//! after the last retry the order fails (a failure, unlike a decline).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

use super::provider::{ChargeRequest, ChargeResponse, ProviderClient};
use super::{Idempotency, Processed, Service, ServiceEnv, ServiceError};
use crate::events::{Envelope, Topic};
use crate::observe::Terminal;
use crate::orders::OrderView;
use crate::publisher::Cause;
use crate::topology::ServiceKind;
use crate::topology::Stage;
use crate::transport::BoxFuture;

/// Provider retries wait 100 ms, doubling up to 5 s, each plus a jitter of up to as much
/// again drawn from the order's seeded stream, so that retries of many orders spread out
/// and a rerun waits the same.
const BACKOFF: backon::ExponentialBuilder = backon::ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_max_delay(Duration::from_secs(5))
    .without_max_times();

/// The body of `order.payment.*` events.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PaymentFact {
    pub order_id: u64,
    pub amount_cents: u64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
    /// `card_declined` (a business outcome) or `provider_error` (a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl PaymentFact {
    fn to_bytes(&self) -> Bytes {
        // Serialising plain strings and integers cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

pub struct Payment {
    pub env: ServiceEnv,
    pub provider: Arc<ProviderClient>,
    pub idempotency: Idempotency,
    pub retries: u32,
    /// Numbers the fresh keys of a non-idempotent payment service.
    attempts: AtomicU64,
    /// With shards, the orders whose success some shard has timed: a resubmitted order's
    /// replayed success is timed once across the run, as it is in one process (where the
    /// ledger's first-publish bit decides).
    timed: Option<Processed>,
}

impl Payment {
    pub fn new(
        env: ServiceEnv,
        provider: Arc<ProviderClient>,
        idempotent: bool,
        retries: u32,
    ) -> Payment {
        Payment {
            idempotency: env.idempotency(ServiceKind::Payment, idempotent),
            provider,
            retries,
            // Shards number apart, so their fresh keys never meet in the shared books.
            attempts: AtomicU64::new(u64::from(env.process) << 40),
            timed: (env.shared.is_some())
                .then(|| env.processed(ServiceKind::Payment, "payment.timed")),
            env,
        }
    }

    async fn publish(
        &self,
        topic: Topic,
        cause: &Cause,
        fact: &PaymentFact,
    ) -> Result<bool, ServiceError> {
        let p = &self.env.publisher;
        let envelope = p.envelope(topic, cause, fact.to_bytes());
        p.publish(envelope)
            .await
            .map(|published| published.first)
            .map_err(|source| ServiceError::Broker {
                service: ServiceKind::Payment,
                source,
            })
    }

    /// Times `order`'s success once across the run: in one process its first acked
    /// publish decides; across shards a claim does, so a success replayed in another shard
    /// (a resubmitted order) is not timed twice.
    async fn time_success(
        &self,
        order: u64,
        first_publish: bool,
        intended_at: u64,
    ) -> Result<(), ServiceError> {
        let o = self.env.publisher.observer.clone();
        let time = move || o.reached(Stage::PaymentSucceeded, intended_at);
        match &self.timed {
            Some(timed) => {
                timed.claim_then(order, time).await?;
            }
            None if first_publish => time(),
            None => {}
        }
        Ok(())
    }

    async fn process(&self, event: &Envelope) -> Result<(), ServiceError> {
        let order = event.meta.order_id;
        let view = super::order_view(ServiceKind::Payment, event)?;
        let cause = Cause::of(&event.meta);
        let key = if self.idempotency.enabled() {
            String::from_utf8_lossy(&event.meta.idempotency_key).into_owned()
        } else {
            format!("pay_{order}_{}", self.attempts.fetch_add(1, Relaxed))
        };
        let mut fact = PaymentFact {
            order_id: order,
            amount_cents: view.total_cents,
            currency: view.currency.to_string(),
            charge_id: None,
            reason: None,
            code: None,
        };
        self.publish(Topic::PaymentAttempted, &cause, &fact).await?;
        let request = charge_request(order, &view);
        let o = &self.env.publisher.observer;
        let mut backoff = crate::rng::backoff(BACKOFF, self.env.seed, "payment.backoff", order);
        for attempt in 0..=self.retries {
            let wait = match self.provider.charge(&key, &request).await {
                Ok(ChargeResponse::Captured { charge_id }) => {
                    fact.charge_id = Some(charge_id);
                    let first = self.publish(Topic::PaymentSucceeded, &cause, &fact).await?;
                    self.time_success(order, first, cause.intended_at).await?;
                    return Ok(());
                }
                Ok(ChargeResponse::Declined { code }) => {
                    fact.reason = Some("card_declined".into());
                    fact.code = Some(code);
                    self.publish(Topic::PaymentFailed, &cause, &fact).await?;
                    o.ledger.set_terminal(
                        order,
                        Terminal::Declined,
                        since_ms(o, cause.intended_at),
                    );
                    return Ok(());
                }
                Ok(ChargeResponse::Error { retry_after, .. }) => retry_after,
                Ok(ChargeResponse::IdempotencyConflict) => {
                    o.finding(format!("payment: idempotency conflict for order {order}"));
                    None
                }
                Err(e) => {
                    tracing::debug!(order, attempt, error = %e, "provider call failed");
                    None
                }
            };
            o.counters.provider_errors.fetch_add(1, Relaxed);
            if attempt < self.retries {
                // The schedule moves on even when the provider said how long to wait.
                let next = backoff.next().unwrap_or_default();
                tokio::time::sleep(wait.unwrap_or(next)).await;
            }
        }
        fact.reason = Some("provider_error".into());
        self.publish(Topic::PaymentFailed, &cause, &fact).await?;
        o.ledger
            .set_terminal(order, Terminal::Failed, since_ms(o, cause.intended_at));
        Ok(())
    }
}

/// The provider request for an order. The one place it is built: the synchronous checkout
/// (`load/sync_checkout.rs`) sends the same request under the same key, and the provider
/// replays a key only for identical parameters, so both callers must agree exactly.
pub fn charge_request(order_id: u64, view: &OrderView<'_>) -> ChargeRequest {
    ChargeRequest {
        order_id,
        amount_cents: view.total_cents,
        currency: view.currency.to_string(),
        card_token: view.card_token.to_string(),
    }
}

/// Milliseconds from an intended time to now.
pub(crate) fn since_ms(o: &crate::observe::Observer, intended_at: u64) -> u32 {
    u32::try_from(o.now().saturating_sub(intended_at) / 1_000_000).unwrap_or(u32::MAX)
}

impl Service for Payment {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Payment
    }

    fn handle<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(self.process(event))
    }
}
