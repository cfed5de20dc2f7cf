//! Runs a service as a consumer group: replicas, concurrency, per-key order, commits.
//!
//! Each replica is one group member. It takes deliveries as fast as its concurrency allows
//! and handles them in tasks, but never two events of the same order at once: a key's later
//! events queue behind its earlier one (the Confluent parallel-consumer model), so per-key
//! order survives concurrency. With `commit: after_effect` a delivery is acked after it was
//! handled (at-least-once); with `on_receive` it is acked on arrival (at-most-once: work in
//! flight is lost if the replica stops).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::{Service, ServiceError};
use crate::observe::Observer;
use crate::scenario::model::{CommitPolicy, Service as ServiceConfig};
use crate::sync::lock;
use crate::topology::subscription_index;
use crate::transport::{Delivery, Transport, TransportError};

pub struct Runner {
    pub service: Arc<dyn Service>,
    pub config: ServiceConfig,
    pub transport: Arc<dyn Transport>,
    pub observer: Arc<Observer>,
    pub seed: u64,
}

impl Runner {
    /// Joins every replica to the group before returning, so the load never starts against
    /// a group that is still assembling; replicas run until `stop` turns true.
    pub async fn start(
        self: Arc<Self>,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), TransportError> {
        let kind = self.service.kind();
        for _ in 0..self.config.replicas {
            let subscription = self
                .transport
                .subscribe(kind.name(), kind.consumes())
                .await?;
            tasks.spawn(self.clone().replica(subscription, stop.clone()));
        }
        Ok(())
    }

    async fn replica(
        self: Arc<Self>,
        mut subscription: Box<dyn crate::transport::Subscription>,
        mut stop: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency as usize));
        let busy: Arc<Mutex<HashMap<u64, VecDeque<Delivery>>>> = Arc::default();
        loop {
            // Backpressure: take a slot before taking a delivery.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
                _ = crate::load::driver::stopped(&mut stop) => return,
            };
            let delivery = tokio::select! {
                d = subscription.next() => d,
                _ = crate::load::driver::stopped(&mut stop) => return,
            };
            let delivery = match delivery {
                Ok(Some(d)) => d,
                Ok(None) => return,
                Err(e) => {
                    self.observer
                        .finding(format!("{}: receive failed: {e}", self.service.kind()));
                    continue;
                }
            };
            self.observe(&delivery);
            let key = delivery.envelope.key();
            {
                let mut busy = lock(&busy);
                if let Some(queue) = busy.get_mut(&key) {
                    queue.push_back(delivery);
                    continue;
                }
                busy.insert(key, VecDeque::new());
            }
            tokio::spawn(self.clone().work_key(key, delivery, busy.clone(), slot));
        }
    }

    /// Records the delivery in the ledger before anything is done with it.
    fn observe(&self, delivery: &Delivery) {
        let o = &self.observer;
        let meta = &delivery.envelope.meta;
        o.counters.deliveries.fetch_add(1, Relaxed);
        if delivery.redelivered {
            o.counters.redelivered_flags.fetch_add(1, Relaxed);
        }
        let Some(sub) = subscription_index(self.service.kind(), delivery.envelope.topic) else {
            return;
        };
        let note = o.ledger.delivered(sub, meta);
        if note.first {
            o.subscriptions[sub].record_ns(o.now().saturating_sub(meta.sent_at));
        } else {
            o.counters.duplicate_deliveries.fetch_add(1, Relaxed);
        }
        if note.out_of_order {
            o.out_of_order(sub, meta.order_id);
        }
    }

    /// Handles `first` and then every delivery of the same key that queued behind it.
    async fn work_key(
        self: Arc<Self>,
        key: u64,
        first: Delivery,
        busy: Arc<Mutex<HashMap<u64, VecDeque<Delivery>>>>,
        _slot: OwnedSemaphorePermit,
    ) {
        let mut next = Some(first);
        while let Some(delivery) = next {
            self.handle(delivery).await;
            let mut busy = lock(&busy);
            next = busy.get_mut(&key).and_then(VecDeque::pop_front);
            if next.is_none() {
                busy.remove(&key);
            }
        }
    }

    async fn handle(&self, delivery: Delivery) {
        let o = &self.observer;
        let Delivery { envelope, ack, .. } = delivery;
        let mut ack = Some(ack);
        if self.config.commit == CommitPolicy::OnReceive
            && let Some(a) = ack.take()
        {
            let _ = a.ack().await;
        }
        o.counters.processing.fetch_add(1, Relaxed);
        let mut rng = crate::rng::for_item(
            self.seed,
            self.service.kind().name(),
            envelope.meta.event_id,
        );
        let pause = crate::latency::sample(&self.config.latency, &mut rng);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let result = self.service.handle(&envelope).await;
        o.counters.processing.fetch_sub(1, Relaxed);
        let Some(ack) = ack else { return };
        let settled = match result {
            Ok(()) => ack.ack().await,
            Err(e @ ServiceError::Malformed { .. }) => {
                o.finding(e.to_string());
                ack.ack().await
            }
            Err(e @ ServiceError::Publish { .. }) => {
                o.finding(e.to_string());
                ack.nack().await
            }
        };
        if let Err(e) = settled {
            o.finding(format!("{}: ack failed: {e}", self.service.kind()));
        }
    }
}
