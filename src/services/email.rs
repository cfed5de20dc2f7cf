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
            let order = event.meta.order_id;
            if self.idempotency.first_time(order).await? {
                let o = &self.env.publisher.observer;
                if o.ledger.effect(order, Effect::EmailSent) == 0 {
                    o.reached(Stage::EmailSent, event.meta.intended_at);
                }
            }
            Ok(())
        })
    }
}
