//! `poison`: events that always fail at a service. An event is poison when its order's
//! checkout was intended inside the fault window and the fault's scope picks it (decided
//! once per event, not per delivery), so every redelivery fails again, after the window too,
//! exactly like a malformed message would. Services with `max_deliveries` give up on it and
//! move it to the dead-letter topic; without a limit it comes back forever.

use super::{ChaosCtx, FaultAction, ServiceFaults};
use crate::clock::RunTime;
use crate::events::EventMeta;
use crate::scenario::model::FaultScope;
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

pub struct Poison {
    pub service: ServiceKind,
    pub scope: FaultScope,
}

/// One poison fault's window on the run clock; `until` is open while it lasts.
#[derive(Debug, Clone, Copy)]
pub struct PoisonWindow {
    pub index: usize,
    pub scope: FaultScope,
    pub from: RunTime,
    pub until: RunTime,
}

impl ServiceFaults {
    /// Whether this event is poison for the service: it fails on every delivery.
    pub fn is_poison(&self, seed: u64, meta: &EventMeta) -> bool {
        let windows = self.poison.read().unwrap_or_else(|e| e.into_inner());
        windows.iter().any(|w| {
            (w.from..=w.until).contains(&meta.intended_at)
                && super::scope::applies(seed, w.index, w.scope, meta, 0)
        })
    }
}

impl Poison {
    fn windows<'a>(&self, ctx: &'a ChaosCtx) -> std::sync::RwLockWriteGuard<'a, Vec<PoisonWindow>> {
        let slot = &ctx.chaos.service(self.service).poison;
        slot.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl FaultAction for Poison {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let mut windows = self.windows(ctx);
        windows.push(PoisonWindow {
            index,
            scope: self.scope,
            from: ctx.observer.now(),
            until: RunTime::MAX,
        });
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let now = ctx.observer.now();
        let mut windows = self.windows(ctx);
        for window in windows.iter_mut() {
            if window.index == index {
                window.until = now;
            }
        }
        Box::pin(async {})
    }
}
