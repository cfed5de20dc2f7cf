//! Inventory: consumes `order.created` and reserves stock for the order's items, all or
//! nothing (the effect `stock decremented`). An order whose items are not all in stock is
//! backordered: recorded (the decision the order gets instead), stock untouched. Idempotent per order by default; with
//! `idempotent: false` a redelivered or resubmitted order decrements stock again.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use super::{Idempotency, Service, ServiceEnv, ServiceError};
use crate::events::Envelope;
use crate::observe::Effect;
use crate::sync::lock;
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

pub struct Inventory {
    pub env: ServiceEnv,
    pub idempotency: Idempotency,
    /// Units left per product id.
    stock: Arc<Mutex<Vec<u32>>>,
}

impl Inventory {
    pub fn new(env: ServiceEnv, idempotent: bool, initial: Vec<u32>) -> Inventory {
        Inventory {
            idempotency: env.idempotency(ServiceKind::Inventory, idempotent),
            env,
            stock: Arc::new(Mutex::new(initial)),
        }
    }

    /// Units left per product id, now.
    pub fn stock(&self) -> Vec<u32> {
        lock(&self.stock).clone()
    }

    async fn process(&self, event: &Envelope) -> Result<(), ServiceError> {
        let order = event.meta.order_id;
        let view = super::order_view(ServiceKind::Inventory, event)?;
        let items: Vec<(usize, u32)> = (view.items.iter())
            .map(|item| (item.product_id as usize, item.quantity))
            .collect();
        let (o, stock) = (self.env.publisher.observer.clone(), self.stock.clone());
        let reserve = move || {
            let mut stock = lock(&stock);
            let available = (items.iter()).all(|&(product, quantity)| {
                stock.get(product).is_some_and(|&left| left >= quantity)
            });
            if !available {
                drop(stock);
                o.counters.backorders.fetch_add(1, Relaxed);
                o.ledger.effect(order, Effect::Backordered);
                return;
            }
            for (product, quantity) in items {
                stock[product] -= quantity;
            }
            drop(stock);
            o.ledger.effect(order, Effect::StockReserved);
        };
        self.idempotency.first_time_then(order, reserve).await?;
        Ok(())
    }
}

impl Service for Inventory {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Inventory
    }

    fn handle<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(self.process(event))
    }
}
