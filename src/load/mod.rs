//! Load: the arrival schedule and the open-model driver that keeps to it.
pub mod config;
pub mod driver;
pub mod model;
pub mod schedule;
pub mod shard;
pub mod sync_checkout;

pub use schedule::{PlannedPhase, Schedule};

/// The run's orders as observe mode's tally asks about them: the schedule's intended times,
/// the factory's uids and planned declines. The tally asks by id in any order, so the due
/// times are drawn once and kept (8 bytes per order, for observe mode only).
pub struct PlannedOrders {
    due: Vec<crate::clock::RunTime>,
    factory: std::sync::Arc<crate::orders::OrderFactory>,
}

impl PlannedOrders {
    pub fn new(
        schedule: &Schedule,
        factory: std::sync::Arc<crate::orders::OrderFactory>,
    ) -> PlannedOrders {
        PlannedOrders {
            due: schedule.due_times().collect(),
            factory,
        }
    }
}

impl crate::observe::outputs::Orders for PlannedOrders {
    fn count(&self) -> u64 {
        self.due.len() as u64
    }

    fn intended_at(&self, id: u64) -> crate::clock::RunTime {
        self.due.get(id as usize).copied().unwrap_or_default()
    }

    fn uid_tag(&self, id: u64) -> u32 {
        crate::orders::template::uid_tag(&self.factory.idempotency_key(id))
    }

    fn declines(&self, id: u64) -> bool {
        self.factory.plan(id).declines
    }
}
