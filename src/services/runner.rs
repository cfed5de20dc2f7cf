//! Runs a service as a consumer group: replicas, concurrency, per-key order, commits, and
//! the faults the chaos timeline switches on.
//!
//! Each replica is one group member. It takes deliveries as fast as its concurrency allows
//! and handles each as far as it goes without waiting, in a task of its own once it has to
//! wait, but never two events of the same order at once: a key's later events queue behind
//! its earlier one (the Confluent parallel-consumer model), so per-key order survives
//! concurrency. With `commit: after_effect` a delivery is acked after it was
//! handled (at-least-once); with `on_receive` it is acked on arrival (at-most-once: work in
//! flight is lost if the replica stops).
//!
//! A supervisor per service owns the replicas. On a `crash` it aborts them: subscriptions
//! and in-flight work are dropped without acks, as a killed process's are, and the broker
//! redelivers; on restart it brings up fresh members. `pause` holds the replicas before
//! their next delivery. The delivery faults (`latency`, `errors`, `duplicate`, `poison`)
//! are asked once per delivery for a plan (`chaos::delivery`): delay it, fail it, or handle
//! it twice.
//!
//! A delivery that fails (an `errors` fault, poison, a refused downstream publish) is nacked
//! so the broker sends it again, until the service's `max_deliveries`: then the event goes to
//! `order.dead_letter` with the reason, and the original is acked, so one bad event cannot
//! stall its key forever. Failed deliveries are counted per event across the service's
//! replicas, as a broker's delivery count would be.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Service, ServiceError};
use crate::chaos::ServiceFaults;
use crate::chaos::delivery::{DeliveryCtx, Failure};
use crate::events::{Envelope, Topic};
use crate::observe::Observer;
use crate::observe::dead_letters::DeadLetter;
use crate::services::model::{CommitPolicy, Service as ServiceConfig};
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

    /// Runs the service on the members [`Runner::join`] made until `stop` is cancelled.
    pub fn start(
        self: Arc<Self>,
        first: Vec<Box<dyn Subscription>>,
        stop: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) {
        tasks.spawn(self.supervise(first, stop));
    }

    async fn supervise(
        self: Arc<Self>,
        mut subscriptions: Vec<Box<dyn Subscription>>,
        stop: CancellationToken,
    ) {
        let mut down = self.faults().down.subscribe();
        loop {
            let mut replicas = JoinSet::new();
            for subscription in subscriptions.drain(..) {
                replicas.spawn(self.clone().replica(subscription, stop.clone()));
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = down.wait_for(|d| *d) => {}
            }
            // The crash: no acks, no commits, in-flight work gone.
            replicas.abort_all();
            while replicas.join_next().await.is_some() {}
            tokio::select! {
                _ = stop.cancelled() => return,
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
        stop: CancellationToken,
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
                    _ = stop.cancelled() => return,
                }
            }
            // Backpressure: take a slot before taking a delivery.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
                _ = stop.cancelled() => return,
            };
            let delivery = tokio::select! {
                d = subscription.next() => d,
                _ = stop.cancelled() => return,
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
            start(
                &mut work,
                self.clone().work_key(key, delivery, busy.clone(), slot),
            )
            .await;
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
            u16::from(self.observer.ledger.deliveries(envelope.meta.order_id, sub))
        })
    }

    async fn handle(&self, delivery: Delivery) {
        let o = &self.observer;
        let Delivery {
            envelope,
            ack,
            redelivered,
        } = delivery;
        let kind = self.service.kind();
        // One generator per event: the service's own latency first, then what the faults
        // draw.
        let mut rng = crate::rng::for_item(self.seed, kind.name(), envelope.meta.event_id);
        let service_latency = crate::latency::sample(&self.config.latency, &mut rng);
        let at = DeliveryCtx {
            seed: self.seed,
            meta: &envelope.meta,
            attempt: self.attempt(&envelope),
        };
        let plan = self.faults().deliveries.plan(&at, &mut rng);
        if let Some(failure) = plan.fail {
            // The service fails this delivery: nothing applied, the broker sends it again.
            let counter = match failure {
                Failure::Poison => &o.counters.poison_failures,
                Failure::Errors => &o.counters.fault_errors,
            };
            counter.fetch_add(1, Relaxed);
            self.failed(&envelope, ack, failure.reason()).await;
            return;
        }
        let mut ack: Option<Box<dyn AckHandle>> = Some(ack);
        if self.config.commit == CommitPolicy::OnReceive
            && let Some(a) = ack.take()
        {
            self.acked(&envelope, a.ack().await);
        }
        let running = Running::new(o, kind);
        crate::latency::wait(service_latency + plan.delay).await;
        let mut result = self.service.handle(&envelope).await;
        if plan.twice && result.is_ok() {
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
            Err(e @ ServiceError::Broker { .. }) => {
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

    /// How long to wait before handing an event back after its `failures`-th failure: the
    /// event's own seeded schedule, so its delays do not depend on which replica failed it.
    fn retry_backoff(&self, event_id: u64, failures: u32) -> std::time::Duration {
        let component = format!("{}.retry", self.service.kind().name());
        crate::rng::backoff(RETRY_BACKOFF, self.seed, &component, event_id)
            .nth(failures.saturating_sub(1) as usize)
            .unwrap_or_default()
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
            // poison event costs a redelivery every one to two seconds, not a hot loop.
            tokio::time::sleep(self.retry_backoff(envelope.meta.event_id, failures)).await;
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
            user: None,
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

/// Redeliveries wait 20 ms after the first failure, doubling up to 1 s, each plus a jitter of
/// up to as much again.
const RETRY_BACKOFF: backon::ExponentialBuilder = backon::ExponentialBuilder::new()
    .with_min_delay(std::time::Duration::from_millis(20))
    .with_max_delay(std::time::Duration::from_secs(1))
    .without_max_times();

/// The group that reads `order.dead_letter` back, so a dead letter the broker lost shows.
pub const DEAD_LETTER_AUDIT: &str = "dead-letter-audit";

/// Runs `job` here as far as it goes without waiting; only a job that has to wait becomes a
/// task in `tasks`. With an immediate broker most deliveries are handled in this first poll,
/// and a task per delivery (spawned, scheduled, joined) was a large share of the runtime's
/// cost. The task's own first poll registers its waker in place of the caller's.
async fn start<F>(tasks: &mut JoinSet<()>, job: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut job = Box::pin(job);
    let waiting = std::future::poll_fn(|cx| Poll::Ready(job.as_mut().poll(cx).is_pending())).await;
    if waiting {
        tasks.spawn(job);
    }
}

/// Reads the dead-letter topic until `stop`, recording each arrival.
pub async fn audit_dead_letters(
    mut sub: Box<dyn Subscription>,
    observer: Arc<Observer>,
    stop: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            d = sub.next() => d,
            _ = stop.cancelled() => return,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_that_does_not_wait_runs_here_and_one_that_waits_becomes_a_task() {
        let mut tasks = JoinSet::new();
        let done = Arc::new(std::sync::atomic::AtomicU32::new(0));

        let d = done.clone();
        start(&mut tasks, async move {
            d.fetch_add(1, Relaxed);
        })
        .await;
        assert_eq!(done.load(Relaxed), 1, "finished in the first poll");
        assert!(tasks.is_empty(), "no task for a job that did not wait");

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = done.clone();
        start(&mut tasks, async move {
            let _ = rx.await;
            d.fetch_add(1, Relaxed);
        })
        .await;
        assert_eq!(tasks.len(), 1, "the waiting job became a task");
        assert_eq!(done.load(Relaxed), 1);
        // Woken through the task's own waker, not the caller's: the task finishes.
        let _ = tx.send(());
        assert!(tasks.join_next().await.is_some_and(|r| r.is_ok()));
        assert_eq!(done.load(Relaxed), 2);
    }
}
