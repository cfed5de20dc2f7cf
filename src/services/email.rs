//! Email: consumes `order.payment.succeeded` and sends exactly one confirmation per order
//! (the effect `email sent`). With `idempotent: false` every delivery sends again.

use super::{Idempotency, Service, ServiceEnv, ServiceError};
use crate::events::Envelope;
use crate::observe::Effect;
use crate::topology::ServiceKind;
use crate::topology::Stage;
use crate::transport::BoxFuture;

pub struct Email {
    pub env: ServiceEnv,
    pub idempotency: Idempotency,
}

impl Service for Email {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Email
    }

    fn handle<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let (order, intended_at) = (event.meta.order_id, event.meta.intended_at);
            let o = self.env.publisher.observer.clone();
            let send = move || {
                if o.ledger.effect(order, Effect::EmailSent) == 0 {
                    o.reached(Stage::EmailSent, intended_at);
                }
            };
            self.idempotency.first_time_then(order, send).await?;
            Ok(())
        })
    }
}
