//! Load: the arrival schedule and the open-model driver that keeps to it.
pub mod config;
pub mod driver;
pub mod schedule;
pub mod sync_checkout;

pub use schedule::{PlannedPhase, Schedule};
