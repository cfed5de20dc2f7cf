//! Warehouse: consumes `order.payment.succeeded`, creates one shipment per order (the effect
//! `shipment created`) and publishes `order.fulfilled`, the order's terminal state.

use bytes::Bytes;

use super::payment::since_ms;
use super::{Idempotency, Processed, Service, ServiceEnv, ServiceError};
use crate::events::{Envelope, Topic};
use crate::observe::{Effect, Terminal};
use crate::publisher::Cause;
use crate::topology::ServiceKind;
use crate::topology::Stage;
use crate::transport::BoxFuture;

pub struct Warehouse {
    pub env: ServiceEnv,
    pub idempotency: Idempotency,
    /// Orders whose `order.fulfilled` was acked: an idempotent warehouse announces once, but
    /// retries the announcement if the publish failed after the shipment was created.
    pub announced: Processed,
}

impl Warehouse {
    async fn process(&self, event: &Envelope) -> Result<(), ServiceError> {
        let order = event.meta.order_id;
        let o = &self.env.publisher.observer;
        let observer = o.clone();
        let ship = move || {
            observer.ledger.effect(order, Effect::Shipped);
        };
        if !self.idempotency.first_time_then(order, ship).await?
            && self.announced.contains(order).await?
        {
            return Ok(());
        }
        let body = format!(r#"{{"order_id":{order},"shipment":"shp_{order:012}"}}"#);
        let p = &self.env.publisher;
        let envelope = p.envelope(Topic::Fulfilled, &Cause::of(&event.meta), Bytes::from(body));
        let published = p
            .publish(envelope)
            .await
            .map_err(|source| ServiceError::Broker {
                service: ServiceKind::Warehouse,
                source,
            })?;
        if self.idempotency.enabled() {
            self.announced.claim(order).await?;
        }
        if published.first {
            o.reached(Stage::Fulfilled, event.meta.intended_at);
            o.ledger.set_terminal(
                order,
                Terminal::Fulfilled,
                since_ms(o, event.meta.intended_at),
            );
        }
        Ok(())
    }
}

impl Service for Warehouse {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Warehouse
    }

    fn handle<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(self.process(event))
    }
}
