//! The open-model driver: orders arrive on schedule whether or not earlier ones finished.
//!
//! Each arrival is dispatched at its due time into its own task; the latency of everything
//! downstream is measured from the due time, so a stalled broker or a late generator shows up
//! in the numbers (coordinated omission corrected by construction, as wrk2 does). In-flight
//! checkouts are capped; an order that cannot get a slot and an ack within
//! `checkout_timeout` of its due time is a failed checkout, counted, never skipped. How late the
//! driver itself dispatched each arrival is its *send lag*, recorded so a run whose generator
//! fell behind can be declared invalid instead of passing. In the synchronous-checkout
//! baseline (`sync_checkout.rs`) a checkout also waits for one inline provider call.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use rand::RngExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::{RunTime, duration_ns};
use crate::events::Topic;
use crate::events::UserFields;
use crate::load::Schedule;
use crate::load::model::{CheckoutMode, Load};
use crate::load::sync_checkout::pay_inline;
use crate::observe::failures::CheckoutFailure;
use crate::observe::{Checkout, Observer};
use crate::orders::OrderFactory;
use crate::orders::template::Renderer;
use crate::publisher::{Cause, Publisher};
use crate::services::provider::ProviderClient;
use crate::topology::Stage;
use crate::transport::TransportError;

/// A resubmit follows its first submission after this long (seeded, uniform).
const RESUBMIT_DELAY_MS: std::ops::RangeInclusive<u64> = 200..=2_000;

pub struct Driver {
    pub publisher: Publisher,
    pub factory: Arc<OrderFactory>,
    pub schedule: Arc<Schedule>,
    pub load: Load,
    pub seed: u64,
    /// The payment service's client; the synchronous checkout calls the provider with it.
    pub provider: Arc<ProviderClient>,
    /// The user's payload template (`orders.payload`); `None` sends doorbuster's own
    /// `order.created`.
    pub renderer: Option<Arc<Renderer>>,
    /// Dispatch only this shard's orders (each still at its planned time).
    pub shard: Option<crate::load::shard::Shard>,
}

/// The shortest mean time between arrivals (over the last 8) for which the driver's own
/// thread sleeps precisely until each. Each precise wait is a wake-up, and each arrival then
/// wakes a checkout worker on its own; arrivals closer than this (above 5,000/s) wait on
/// tokio's millisecond timer instead and leave in bursts, one wake-up for many. Measured
/// (release, embedded, reports/BENCHMARKS.md "Send lag"): at 2,000 orders/s precise waits cut
/// the send lag p50 from 701 to 33 us for +25 to +45 % CPU; at 20,000/s waking per arrival
/// cost +44 % CPU, for a lag that then matters less than the pipeline's own.
const PRECISE_FROM_NS: u64 = 200_000;

/// Arrivals over which the driver measures the rate the schedule is keeping.
const GAP_WINDOW: usize = 8;

/// The mean time between the arrivals before arrival `id` (due at `due`), from the ring of
/// the last `GAP_WINDOW` due times; `u64::MAX` for the first.
fn mean_gap(recent: &[RunTime; GAP_WINDOW], id: usize, due: RunTime) -> u64 {
    let back = id.min(GAP_WINDOW);
    // Arrival `id - back` sits at `(id - back) % GAP_WINDOW`: slot 0 until the ring is full,
    // then the slot arrival `id` is about to take.
    match back {
        0 => u64::MAX,
        _ => due.saturating_sub(recent[(id - back) % GAP_WINDOW]) / back as u64,
    }
}

/// How the dispatch loop waits for the next arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Blocking its own thread, to within tens of microseconds (`Clock::block_until`), for
    /// waits of at least `PRECISE_FROM_NS`; tokio's timers for shorter ones.
    Thread,
    /// On tokio's timers (whole milliseconds; the only way under the paused test clock).
    Timers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverOutcome {
    /// Arrivals dispatched (orders attempted): ids `0..dispatched` were due (a shard's
    /// own among them).
    pub dispatched: usize,
    /// The driver was stopped before the schedule ended.
    pub stopped_early: bool,
}

impl Driver {
    fn observer(&self) -> &Observer {
        &self.publisher.observer
    }

    /// Dispatches every scheduled arrival, or until `stop` is cancelled.
    ///
    /// On a multi-thread runtime the dispatch loop gets a thread of its own (the checkouts
    /// still run on the caller's runtime): a generator queued behind thousands of service
    /// tasks would fall behind its schedule because of the system under test, which is
    /// exactly what its send lag must not measure. Under a current-thread runtime (the
    /// paused-clock tests) it runs inline.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> DriverOutcome {
        let handle = tokio::runtime::Handle::current();
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return self.dispatch(stop, handle, Pace::Timers).await;
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let driver = self.clone();
        let dispatch_stop = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("doorbuster-driver".into())
            .spawn(move || {
                crate::clock::precise_sleeps();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build();
                if let Ok(runtime) = runtime {
                    let dispatch = driver.dispatch(dispatch_stop, handle, Pace::Thread);
                    let _ = done_tx.send(runtime.block_on(dispatch));
                }
            });
        let here = tokio::runtime::Handle::current();
        match spawned {
            Ok(_) => match done_rx.await {
                Ok(outcome) => outcome,
                // The thread could not build its runtime: dispatch here instead.
                Err(_) => self.dispatch(stop, here, Pace::Timers).await,
            },
            Err(_) => self.dispatch(stop, here, Pace::Timers).await,
        }
    }

    async fn dispatch(
        self: Arc<Self>,
        stop: CancellationToken,
        checkouts: tokio::runtime::Handle,
        pace: Pace,
    ) -> DriverOutcome {
        let slots = Arc::new(Semaphore::new(self.load.max_in_flight));
        let clock = &self.observer().clock;
        // The last 8 due times, for the rate the schedule is keeping now.
        let mut recent = [0; GAP_WINDOW];
        // Arrivals this driver dispatched (all of them, unless it is a shard).
        let mut own = 0;
        for (id, due) in self.schedule.due_times().enumerate() {
            if self.shard.is_some_and(|s| !s.owns(id as u64)) {
                continue;
            }
            let gap = mean_gap(&recent, own, due);
            recent[own % GAP_WINDOW] = due;
            own += 1;
            if stop.is_cancelled() {
                return DriverOutcome {
                    dispatched: id,
                    stopped_early: true,
                };
            }
            if due > clock.now() {
                let precise = pace == Pace::Thread && gap >= PRECISE_FROM_NS;
                let on_time = if precise {
                    clock.block_until(due, || stop.is_cancelled())
                } else {
                    tokio::select! {
                        _ = clock.sleep_until(due) => true,
                        _ = stop.cancelled() => false,
                    }
                };
                if !on_time {
                    return DriverOutcome {
                        dispatched: id,
                        stopped_early: true,
                    };
                }
            }
            let o = self.observer();
            o.send_lag.record_ns(clock.now().saturating_sub(due));
            o.counters.attempted.fetch_add(1, Relaxed);
            o.counters.open_checkouts.fetch_add(1, Relaxed);
            checkouts.spawn(self.clone().checkout(id as u64, due, slots.clone()));
        }
        DriverOutcome {
            dispatched: self.schedule.orders(),
            stopped_early: false,
        }
    }

    async fn checkout(self: Arc<Self>, id: u64, due: RunTime, slots: Arc<Semaphore>) {
        self.submit(id, due, slots).await;
        self.observer()
            .counters
            .open_checkouts
            .fetch_sub(1, Relaxed);
    }

    /// Why an order found no free checkout slot in time.
    fn no_slot(&self) -> String {
        format!(
            "all {} checkout slots busy for the checkout timeout ({})",
            self.load.max_in_flight,
            humantime::format_duration(self.load.checkout_timeout)
        )
    }

    async fn submit(&self, id: u64, due: RunTime, slots: Arc<Semaphore>) {
        let o = self.observer();
        let deadline = o
            .clock
            .instant_at(due + duration_ns(self.load.checkout_timeout));
        let slot = match tokio::time::timeout_at(deadline, slots.acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            // No slot in time (or the semaphore closed): the shopper saw a failed checkout,
            // and nothing was sent.
            _ => {
                o.ledger.set_checkout(id, Checkout::Failed);
                o.counters.failed.fetch_add(1, Relaxed);
                o.counters.checkout_not_sent.fetch_add(1, Relaxed);
                o.checkout_failed(id, CheckoutFailure::NotSent, self.no_slot());
                return;
            }
        };
        let wall = o.clock.wall_ns(due);
        let order = self.factory.make(id, wall);
        let cause = Cause {
            order_id: id,
            intended_at: due,
            intended_wall_ns: wall,
            idempotency_key: Bytes::from(order.idempotency_key.clone()),
        };
        let (payload, user) = match &self.renderer {
            None => (order.to_json(), None),
            Some(renderer) => match renderer.render(&order) {
                Ok(r) => (
                    r.body,
                    Some(Arc::new(UserFields::from_rendered(r.key, r.headers))),
                ),
                Err(error) => {
                    // Validation rendered sample orders; this one still failed: the run
                    // cannot send what the user's shop expects, and says so.
                    o.finding(format!("order {id} could not be rendered: {error}"));
                    o.ledger.set_checkout(id, Checkout::Failed);
                    o.counters.failed.fetch_add(1, Relaxed);
                    o.counters.checkout_not_sent.fetch_add(1, Relaxed);
                    o.counters.not_rendered.fetch_add(1, Relaxed);
                    let reason = "the payload template failed".to_owned();
                    o.checkout_failed(id, CheckoutFailure::NotSent, reason);
                    return;
                }
            },
        };
        let mut envelope = self
            .publisher
            .envelope(Topic::OrderCreated, &cause, payload.clone());
        envelope.user = user.clone();
        let published = tokio::time::timeout_at(deadline, self.publisher.publish(envelope)).await;
        let mut accepted = match published {
            Ok(Ok(_)) => {
                o.counters.checkout_acked.fetch_add(1, Relaxed);
                true
            }
            // Sent, and no answer: the broker may or may not hold the order.
            Ok(Err(e @ TransportError::Indeterminate { .. })) => {
                o.counters.checkout_unknown.fetch_add(1, Relaxed);
                o.checkout_failed(id, CheckoutFailure::Unknown, e.reason());
                false
            }
            Err(_) => {
                o.counters.checkout_unknown.fetch_add(1, Relaxed);
                let reason = format!(
                    "no answer within the checkout timeout ({})",
                    humantime::format_duration(self.load.checkout_timeout)
                );
                o.checkout_failed(id, CheckoutFailure::Unknown, reason);
                false
            }
            Ok(Err(e)) => {
                o.counters.checkout_refused.fetch_add(1, Relaxed);
                o.checkout_failed(id, CheckoutFailure::Refused, e.reason());
                false
            }
        };
        if accepted && self.load.checkout_mode == CheckoutMode::Sync {
            // The shopper's spinner keeps turning (and the slot stays taken) until the card
            // API answers; the order is already published, so payment still runs downstream.
            let key = &order.idempotency_key;
            if let Err(error) = pay_inline(&self.provider, key, &payload, deadline).await {
                if error.is_harness_bug() {
                    o.finding(format!("sync checkout of order {id}: {error}"));
                }
                tracing::debug!(order = id, %error, "sync checkout failed");
                o.checkout_failed(id, CheckoutFailure::Payment, error.to_string());
                accepted = false;
            }
        }
        drop(slot);
        if accepted {
            o.reached(Stage::Checkout, due);
            o.ledger.set_checkout(id, Checkout::Accepted);
            o.counters.accepted.fetch_add(1, Relaxed);
        } else {
            o.ledger.set_checkout(id, Checkout::Failed);
            o.counters.failed.fetch_add(1, Relaxed);
        }
        if self.factory.plan(id).resubmit {
            // The shopper clicks "buy" again: same order, same idempotency key, new event.
            let mut rng = crate::rng::for_item(self.seed, "load.resubmit", id);
            let delay = Duration::from_millis(rng.random_range(RESUBMIT_DELAY_MS));
            tokio::time::sleep(delay).await;
            o.counters.resubmits.fetch_add(1, Relaxed);
            let mut envelope = self
                .publisher
                .envelope(Topic::OrderCreated, &cause, payload);
            envelope.user = user;
            let timeout = self.load.checkout_timeout;
            if !matches!(
                tokio::time::timeout(timeout, self.publisher.publish(envelope)).await,
                Ok(Ok(_))
            ) {
                o.finding(format!("resubmit of order {id} was not acked"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_gap_is_over_the_last_eight_arrivals() {
        let due: Vec<RunTime> = (0..20).map(|i| i * i * 1_000).collect();
        let mut recent = [0; GAP_WINDOW];
        for (id, &at) in due.iter().enumerate() {
            let back = id.min(GAP_WINDOW);
            let expected = match back {
                0 => u64::MAX,
                _ => (at - due[id - back]) / back as u64,
            };
            assert_eq!(mean_gap(&recent, id, at), expected, "arrival {id}");
            recent[id % GAP_WINDOW] = at;
        }
    }
}
