//! Runs a service as a consumer group: replicas, concurrency, per-key order, commits, and
//! the faults the chaos timeline switches on.
//!
//! Each replica is one group member. It takes deliveries as fast as its concurrency allows
//! and handles them in tasks, but never two events of the same order at once: a key's later
//! events queue behind its earlier one (the Confluent parallel-consumer model), so per-key
//! order survives concurrency. With `commit: after_effect` a delivery is acked after it was
//! handled (at-least-once); with `on_receive` it is acked on arrival (at-most-once: work in
//! flight is lost if the replica stops).
//!
//! A supervisor per service owns the replicas. On a `crash` it aborts them: subscriptions
//! and in-flight work are dropped without acks, as a killed process's are, and the broker
//! redelivers; on restart it brings up fresh members. `pause` holds the replicas before
//! their next delivery; `latency`, `errors` and `duplicate` act on the deliveries their
//! scope picks; a `poison` event fails on every delivery.
//!
//! A delivery that fails (an `errors` fault, poison, a refused downstream publish) is nacked
//! so the broker sends it again, until the service's `max_deliveries`: then the event goes to
//! `order.dead_letter` with the reason, and the original is acked, so one bad event cannot
//! stall its key forever. Failed deliveries are counted per event across the service's
//! replicas, as a broker's delivery count would be.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::{Service, ServiceError};
use crate::chaos::{ServiceFaults, scope};
use crate::events::{Envelope, Topic};
use crate::load::driver::stopped;
use crate::observe::Observer;
use crate::observe::dead_letters::DeadLetter;
use crate::scenario::model::{CommitPolicy, Service as ServiceConfig};
use crate::sync::lock;
use crate::topology::{ServiceKind, subscription_index};
use crate::transport::{AckHandle, Delivery, Subscription, Transport, TransportError};

type Busy = Arc<Mutex<HashMap<u64, VecDeque<Delivery>>>>;

pub struct Runner {
    pub service: Arc<dyn Service>,
    pub config: ServiceConfig,
    pub transport: Arc<dyn Transport>,
    pub observer: Arc<Observer>,
    pub seed: u64,
    pub faults: Arc<crate::chaos::Chaos>,
    /// Failed deliveries per event id, while the event is still being retried.
    pub failures: Mutex<HashMap<u64, u32>>,
}

/// Counts a handler as running (in all, and for its service) until dropped, even when its
/// task is aborted by a crash.
struct Running<'a>([&'a AtomicI64; 2]);

impl<'a> Running<'a> {
    fn new(o: &'a Observer, kind: ServiceKind) -> Running<'a> {
        let counters = [
            &o.counters.processing,
            &o.counters.processing_by_service[kind as usize],
        ];
        for c in counters {
            c.fetch_add(1, Relaxed);
        }
        Running(counters)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        for c in self.0 {
            c.fetch_sub(1, Relaxed);
        }
    }
}

impl Runner {
    fn faults(&self) -> &ServiceFaults {
        self.faults.service(self.service.kind())
    }

    /// Joins every replica to the group and returns once all of them are members, so the
    /// load never starts against a group that is still assembling. The replicas join at
    /// once: on Kafka each member that joins alone costs the group a rebalance (about 3 s on
    /// Tansu 0.6), so one after another, four replicas took 9 s.
    pub async fn join(&self) -> Result<Vec<Box<dyn Subscription>>, TransportError> {
        let kind = self.service.kind();
        let mut joining = JoinSet::new();
        for _ in 0..self.config.replicas {
            let transport = self.transport.clone();
            joining.spawn(async move { transport.subscribe(kind.name(), kind.consumes()).await });
        }
        let mut subscriptions = Vec::new();
        while let Some(joined) = joining.join_next().await {
            // An early return drops the other replicas: they leave the group again.
            let subscription = joined.map_err(|e| TransportError::Group {
                group: kind.name().to_owned(),
                source: crate::transport::Cause::from(e).context("joining panicked"),
            })??;
            subscriptions.push(subscription);
        }
        Ok(subscriptions)
    }

    /// Runs the service on the members [`Runner::join`] made until `stop` turns true.
    pub fn start(
        self: Arc<Self>,
        first: Vec<Box<dyn Subscription>>,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) {
        tasks.spawn(self.supervise(first, stop));
    }

    async fn supervise(
        self: Arc<Self>,
        mut subscriptions: Vec<Box<dyn Subscription>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut down = self.faults().down.subscribe();
        loop {
            let mut replicas = JoinSet::new();
            for subscription in subscriptions.drain(..) {
                replicas.spawn(self.clone().replica(subscription, stop.clone()));
            }
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = down.wait_for(|d| *d) => {}
            }
            // The crash: no acks, no commits, in-flight work gone.
            replicas.abort_all();
            while replicas.join_next().await.is_some() {}
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = down.wait_for(|d| !*d) => {}
            }
            match self.join().await {
                Ok(fresh) => subscriptions = fresh,
                Err(e) => {
                    self.observer
                        .finding(format!("{}: restart failed: {e}", self.service.kind()));
                    return;
                }
            }
        }
    }

    async fn replica(
        self: Arc<Self>,
        mut subscription: Box<dyn Subscription>,
        mut stop: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency as usize));
        let busy: Busy = Arc::default();
        let mut paused = self.faults().paused.subscribe();
        // Owned here so that aborting the replica (a crash) aborts its work too.
        let mut work = JoinSet::new();
        loop {
            while work.try_join_next().is_some() {}
            if *paused.borrow_and_update() {
                tokio::select! {
                    _ = paused.wait_for(|p| !*p) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
            // Backpressure: take a slot before taking a delivery.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
                _ = stopped(&mut stop) => return,
            };
            let delivery = tokio::select! {
                d = subscription.next() => d,
                _ = stopped(&mut stop) => return,
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
            self.observe(&delivery.envelope, delivery.redelivered);
            let key = delivery.envelope.key();
            {
                let mut busy = lock(&busy);
                if let Some(queue) = busy.get_mut(&key) {
                    queue.push_back(delivery);
                    continue;
                }
                busy.insert(key, VecDeque::new());
            }
            work.spawn(self.clone().work_key(key, delivery, busy.clone(), slot));
        }
    }

    /// Records a delivery in the ledger before anything is done with it.
    fn observe(&self, envelope: &Envelope, redelivered: bool) {
        let o = &self.observer;
        let meta = &envelope.meta;
        o.counters.deliveries.fetch_add(1, Relaxed);
        if redelivered {
            o.counters.redelivered_flags.fetch_add(1, Relaxed);
        }
        let Some(sub) = subscription_index(self.service.kind(), envelope.topic) else {
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
        busy: Busy,
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

    /// How many times this order was delivered to this subscription so far: redeliveries
    /// draw the fault scope again.
    fn attempt(&self, envelope: &Envelope) -> u16 {
        subscription_index(self.service.kind(), envelope.topic).map_or(0, |sub| {
            self.observer.ledger.deliveries(envelope.meta.order_id, sub)
        })
    }

    async fn handle(&self, delivery: Delivery) {
        let o = &self.observer;
        let Delivery {
            envelope,
            ack,
            redelivered,
        } = delivery;
        let faults = self.faults();
        let attempt = self.attempt(&envelope);
        let picks = |index, scope| scope::applies(self.seed, index, scope, &envelope.meta, attempt);
        if faults.is_poison(self.seed, &envelope.meta) {
            o.counters.poison_failures.fetch_add(1, Relaxed);
            self.failed(&envelope, ack, "poison: the event fails every time")
                .await;
            return;
        }
        if let Some(f) = faults.errors()
            && picks(f.index, f.scope)
        {
            // The service fails this delivery: nothing applied, the broker sends it again.
            o.counters.fault_errors.fetch_add(1, Relaxed);
            self.failed(&envelope, ack, "errors fault").await;
            return;
        }
        let mut ack: Option<Box<dyn AckHandle>> = Some(ack);
        if self.config.commit == CommitPolicy::OnReceive
            && let Some(a) = ack.take()
        {
            self.acked(&envelope, a.ack().await);
        }
        let running = Running::new(o, self.service.kind());
        let mut rng = crate::rng::for_item(
            self.seed,
            self.service.kind().name(),
            envelope.meta.event_id,
        );
        let mut pause = crate::latency::sample(&self.config.latency, &mut rng);
        if let Some(f) = faults.latency()
            && picks(f.index, f.scope)
        {
            pause += crate::latency::sample(&f.what, &mut rng);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let mut result = self.service.handle(&envelope).await;
        if let Some(f) = faults.duplicate()
            && picks(f.index, f.scope)
            && result.is_ok()
        {
            // The same event arrives again: the service sees a second delivery.
            self.observe(&envelope, true);
            result = self.service.handle(&envelope).await;
        }
        drop(running);
        let Some(ack) = ack else { return };
        let acked = match result {
            Ok(()) => {
                // Only a redelivery can follow a failure (every transport flags a nacked
                // event when it comes back), so first deliveries skip the lock.
                if redelivered {
                    lock(&self.failures).remove(&envelope.meta.event_id);
                }
                ack.ack().await
            }
            Err(e @ ServiceError::Malformed { .. }) => {
                o.finding(e.to_string());
                ack.ack().await
            }
            Err(e @ ServiceError::Publish { .. }) => {
                o.finding(e.to_string());
                self.failed(&envelope, ack, &e.to_string()).await;
                return;
            }
        };
        self.acked(&envelope, acked);
    }

    /// Records the outcome of acking a delivery back to the broker: once acked, the event is
    /// consumed (the broker will not send it again), whether or not its effect happened.
    fn acked(&self, envelope: &Envelope, result: Result<(), TransportError>) {
        match result {
            Ok(()) => {
                if let Some(sub) = subscription_index(self.service.kind(), envelope.topic) {
                    self.observer.ledger.consumed(sub, &envelope.meta);
                }
            }
            Err(e) => settle(&self.observer, self.service.kind(), Err(e)),
        }
    }

    /// A delivery failed: nack it for another try, or, at `max_deliveries`, move the event
    /// to the dead-letter topic and ack the original.
    async fn failed(&self, envelope: &Envelope, ack: Box<dyn AckHandle>, reason: &str) {
        let o = &self.observer;
        let kind = self.service.kind();
        let failures = {
            let mut failures = lock(&self.failures);
            let n = failures.entry(envelope.meta.event_id).or_default();
            *n += 1;
            *n
        };
        if self.config.max_deliveries.is_none_or(|max| failures < max) {
            // Back off before handing it back, as a real consumer's retry policy does, so a
            // poison event costs a redelivery every second at most, not a hot loop.
            tokio::time::sleep(retry_backoff(failures)).await;
            settle(o, kind, ack.nack().await);
            return;
        }
        let letter = DeadLetter {
            service: kind,
            topic: envelope.topic.name().to_owned(),
            event_id: envelope.meta.event_id,
            order_id: envelope.meta.order_id,
            deliveries: failures,
            reason: reason.to_owned(),
            payload: String::from_utf8_lossy(&envelope.payload).into_owned(),
        };
        let payload = match serde_json::to_vec(&letter) {
            Ok(p) => bytes::Bytes::from(p),
            Err(e) => {
                o.finding(format!("{kind}: cannot encode a dead letter: {e}"));
                settle(o, kind, ack.nack().await);
                return;
            }
        };
        let parked = Envelope {
            topic: Topic::DeadLetter,
            meta: envelope.meta.clone(),
            payload,
        };
        match self.transport.publish(parked).await {
            Ok(_) => {
                o.counters.dead_lettered.fetch_add(1, Relaxed);
                lock(&o.dead_letters).sent(kind, letter.event_id, letter.order_id);
                lock(&self.failures).remove(&letter.event_id);
                self.acked(envelope, ack.ack().await);
            }
            Err(e) => {
                // Parking failed: keep the event where it is and try again.
                o.counters.publish_errors.fetch_add(1, Relaxed);
                o.finding(format!("{kind}: dead-letter publish failed: {e}"));
                settle(o, kind, ack.nack().await);
            }
        }
    }
}

/// 20 ms after the first failure, doubling, at most 1 s.
fn retry_backoff(failures: u32) -> std::time::Duration {
    let ms = 20u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    std::time::Duration::from_millis(ms.min(1000))
}

/// The group that reads `order.dead_letter` back, so a dead letter the broker lost shows.
pub const DEAD_LETTER_AUDIT: &str = "dead-letter-audit";

/// Reads the dead-letter topic until `stop`, recording each arrival.
pub async fn audit_dead_letters(
    mut sub: Box<dyn Subscription>,
    observer: Arc<Observer>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let delivery = tokio::select! {
            d = sub.next() => d,
            _ = stopped(&mut stop) => return,
        };
        let delivery = match delivery {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                observer.finding(format!("dead-letter audit: {e}"));
                return;
            }
        };
        match serde_json::from_slice::<DeadLetter>(&delivery.envelope.payload) {
            Ok(letter) => {
                let first = {
                    let mut book = lock(&observer.dead_letters);
                    book.arrived(letter.service, letter.event_id)
                };
                if first {
                    observer.counters.dead_letters_arrived.fetch_add(1, Relaxed);
                }
            }
            Err(e) => observer.finding(format!(
                "dead-letter audit: an order.dead_letter event is not a dead letter: {e}"
            )),
        }
        if let Err(e) = delivery.ack.ack().await {
            observer.finding(format!("dead-letter audit: ack failed: {e}"));
        }
    }
}

fn settle(o: &Observer, kind: ServiceKind, result: Result<(), TransportError>) {
    if let Err(e) = result {
        o.finding(format!("{kind}: ack failed: {e}"));
    }
}
