//! The one way events enter a transport: publish, then record the ack in the ledger.
//!
//! The driver (for `order.created`) and the services (for everything downstream) both publish
//! through here, so every event gets an id, a per-order `seq`, its causing order's intended
//! time, and the same accounting.

use std::sync::Arc;

use bytes::Bytes;

use crate::clock::RunTime;
use crate::events::{Envelope, EventMeta, Topic};
use crate::observe::Observer;
use crate::transport::{Ack, Transport, TransportError};

/// The identity an event inherits from the order that caused it.
#[derive(Debug, Clone)]
pub struct Cause {
    pub order_id: u64,
    pub intended_at: RunTime,
    pub intended_wall_ns: u64,
    pub idempotency_key: Bytes,
}

impl Cause {
    pub fn of(meta: &EventMeta) -> Cause {
        Cause {
            order_id: meta.order_id,
            intended_at: meta.intended_at,
            intended_wall_ns: meta.intended_wall_ns,
            idempotency_key: meta.idempotency_key.clone(),
        }
    }
}

/// The result of an acked publish.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub ack: Ack,
    /// This was the order's first acked event on the topic.
    pub first: bool,
}

#[derive(Clone)]
pub struct Publisher {
    pub transport: Arc<dyn Transport>,
    pub observer: Arc<Observer>,
}

impl Publisher {
    pub fn envelope(&self, topic: Topic, cause: &Cause, payload: Bytes) -> Envelope {
        let o = &self.observer;
        Envelope {
            user: None,
            topic,
            meta: EventMeta {
                event_id: o.next_event_id(),
                order_id: cause.order_id,
                seq: o.ledger.next_seq(cause.order_id, topic),
                intended_at: cause.intended_at,
                intended_wall_ns: cause.intended_wall_ns,
                sent_at: o.now(),
                idempotency_key: cause.idempotency_key.clone(),
            },
            payload,
        }
    }

    /// Publishes and, once acked, records it. A refusal is counted and returned.
    pub async fn publish(&self, envelope: Envelope) -> Result<Published, TransportError> {
        let topic = envelope.topic;
        let meta = envelope.meta.clone();
        match self.transport.publish(envelope).await {
            Ok(ack) => Ok(Published {
                ack,
                first: self.observer.ledger.acked(topic, &meta),
            }),
            Err(e) => {
                self.observer
                    .counters
                    .publish_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(e)
            }
        }
    }
}
