//! `poison`: events that always fail at a service. An event is poison when its order's
//! checkout was intended inside the fault window and the fault's scope picks it (decided
//! once per event, not per delivery), so every redelivery fails again, after the window too,
//! exactly like a malformed message would. Services with `max_deliveries` give up on it and
//! move it to the dead-letter topic; without a limit it comes back forever.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::delivery::{Decision, DeliveryCtx, DeliveryFault, Failure};
use crate::clock::RunTime;
use crate::rng::Rng;

/// One poison fault's window on the run clock; `until` is open while it lasts. The fault
/// stays armed after its window: its events stay poison.
pub struct Poison {
    from: AtomicU64,
    until: AtomicU64,
}

impl Default for Poison {
    fn default() -> Self {
        Poison {
            from: AtomicU64::new(RunTime::MAX),
            until: AtomicU64::new(RunTime::MAX),
        }
    }
}

impl DeliveryFault for Poison {
    fn decide(&self, delivery: &DeliveryCtx, _: &mut Rng) -> Decision {
        let window = self.from.load(Relaxed)..=self.until.load(Relaxed);
        if window.contains(&delivery.meta.intended_at) {
            Decision::Fail(Failure::Poison)
        } else {
            Decision::Pass
        }
    }

    fn per_event(&self) -> bool {
        true
    }

    fn opened(&self, now: RunTime) {
        self.from.store(now, Relaxed);
        self.until.store(RunTime::MAX, Relaxed);
    }

    fn closed(&self, now: RunTime) -> bool {
        self.until.store(now, Relaxed);
        true
    }

    fn in_force(&self) -> bool {
        self.until.load(Relaxed) == RunTime::MAX
    }
}
