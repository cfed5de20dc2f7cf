//! Delivery faults: the faults that decide what happens to one delivery at a service.
//!
//! The toxiproxy shape. Each kind (`latency`, `errors`, `duplicate`, `poison`) is a small
//! [`DeliveryFault`] that says what it does to a delivery it touches: pass it, delay it,
//! fail it, or hand it to the service twice. Which deliveries it touches (the fault's
//! `share` and `keys`) is decided once, for every kind, by the [`Armed`] wrapper that holds
//! it ([`scope::applies`]). The timeline arms a fault on a service when its window opens
//! and disarms it when it closes; the service runner asks [`Armory::plan`] once per delivery
//! and acts on the [`Plan`], without knowing which kinds are on.
//!
//! `crash` and `pause` are not decided per delivery: a crash aborts the work in hand and a
//! pause holds a replica before it takes its next delivery, so they stay switches the runner
//! watches (`ServiceFaults::down`, `ServiceFaults::paused`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::scope;
use crate::chaos::model::FaultScope;
use crate::clock::RunTime;
use crate::events::EventMeta;
use crate::rng::Rng;

/// One delivery, as a fault sees it.
pub struct DeliveryCtx<'a> {
    /// The run's seed: every decision is drawn from it.
    pub seed: u64,
    pub meta: &'a EventMeta,
    /// How often this order was delivered to this subscription before: a redelivery is
    /// drawn again.
    pub attempt: u16,
}

/// What one fault does to one delivery it touches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Pass,
    /// Added processing time before the service handles it.
    Delay(Duration),
    /// The service fails it: nothing is applied and the broker delivers it again.
    Fail(Failure),
    /// The service handles it a second time after a first success.
    Twice,
}

/// Why a fault failed a delivery. When two faults fail the same delivery the first in this
/// order wins: a poison event fails as poison whatever else is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    Poison,
    Errors,
}

impl Failure {
    /// The reason a dead letter records.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Poison => "poison: the event fails every time",
            Failure::Errors => "errors fault",
        }
    }
}

/// One delivery fault kind: what it does to a delivery its scope picked.
pub trait DeliveryFault: Send + Sync {
    /// Draws from `rng` (the delivery's own generator) only when it needs randomness.
    fn decide(&self, delivery: &DeliveryCtx, rng: &mut Rng) -> Decision;

    /// Whether the scope is drawn once per event instead of once per delivery: a poison
    /// event stays poison on every redelivery.
    fn per_event(&self) -> bool {
        false
    }

    /// Called when the fault's window opens.
    fn opened(&self, _now: RunTime) {}

    /// Called when the fault's window closes; `true` keeps it armed after its window.
    fn closed(&self, _now: RunTime) -> bool {
        false
    }

    /// Whether its window is open (a fault kept armed after its window is not).
    fn in_force(&self) -> bool {
        true
    }
}

/// A fault with its scope, armed on one service; `index` is the fault's place in the
/// scenario (it seeds the scope's draws).
#[derive(Clone)]
pub struct Armed {
    pub index: usize,
    pub scope: FaultScope,
    pub fault: Arc<dyn DeliveryFault>,
}

impl Armed {
    /// The fault's decision when its scope picks the delivery, `Pass` otherwise.
    pub fn on_delivery(&self, delivery: &DeliveryCtx, rng: &mut Rng) -> Decision {
        let attempt = if self.fault.per_event() {
            0
        } else {
            delivery.attempt
        };
        if scope::applies(
            delivery.seed,
            self.index,
            self.scope,
            delivery.meta,
            attempt,
        ) {
            self.fault.decide(delivery, rng)
        } else {
            Decision::Pass
        }
    }
}

/// What the runner does with one delivery: every armed fault's decision, combined.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Fail it without handling it.
    pub fail: Option<Failure>,
    /// Added before the service handles it.
    pub delay: Duration,
    /// Handle it a second time after a first success.
    pub twice: bool,
}

/// The delivery faults armed on one service, in the order their windows opened.
#[derive(Default)]
pub struct Armory(RwLock<Vec<Armed>>);

impl Armory {
    pub fn arm(&self, armed: Armed) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(armed);
    }

    pub fn disarm(&self, index: usize) {
        let mut armed = self.0.write().unwrap_or_else(|e| e.into_inner());
        armed.retain(|a| a.index != index);
    }

    /// Asks every armed fault about one delivery.
    pub fn plan(&self, delivery: &DeliveryCtx, rng: &mut Rng) -> Plan {
        let armed = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut plan = Plan::default();
        for a in armed.iter() {
            match a.on_delivery(delivery, rng) {
                Decision::Pass => {}
                Decision::Delay(d) => plan.delay += d,
                Decision::Fail(f) => plan.fail = Some(plan.fail.map_or(f, |g| g.min(f))),
                Decision::Twice => plan.twice = true,
            }
        }
        plan
    }

    /// The faults whose windows are open, by their index.
    pub fn in_force(&self) -> Vec<usize> {
        let armed = self.0.read().unwrap_or_else(|e| e.into_inner());
        armed
            .iter()
            .filter(|a| a.fault.in_force())
            .map(|a| a.index)
            .collect()
    }
}
