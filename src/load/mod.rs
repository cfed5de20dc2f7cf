//! Load: the arrival schedule and the open-model driver that keeps to it.
pub mod config;
pub mod driver;
pub mod model;
pub mod schedule;
pub mod sync_checkout;

pub use schedule::{PlannedPhase, Schedule};

/// The run's orders as observe mode's tally asks about them: the schedule's intended times,
/// the factory's uids and planned declines.
pub struct PlannedOrders {
    pub schedule: std::sync::Arc<Schedule>,
    pub factory: std::sync::Arc<crate::orders::OrderFactory>,
}

impl crate::observe::outputs::Orders for PlannedOrders {
    fn count(&self) -> u64 {
        self.schedule.orders() as u64
    }

    fn intended_at(&self, id: u64) -> crate::clock::RunTime {
        self.schedule
            .due
            .get(id as usize)
            .copied()
            .unwrap_or_default()
    }

    fn uid_tag(&self, id: u64) -> u32 {
        crate::orders::template::uid_tag(&self.factory.idempotency_key(id))
    }

    fn declines(&self, id: u64) -> bool {
        self.factory.plan(id).declines
    }
}
