//! The simulated services as a scenario states them, validated. `config.rs` reads them from
//! YAML; the runner runs them.

use crate::config::units::LatencyDist;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommitPolicy {
    /// Commit (ack) after the effect is applied: at-least-once.
    AfterEffect,
    /// Commit as soon as the delivery arrives: at-most-once, loses work on a crash.
    OnReceive,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Service {
    pub enabled: bool,
    pub replicas: u32,
    /// Deliveries a replica processes concurrently (per-key order is kept regardless).
    pub concurrency: u32,
    pub latency: LatencyDist,
    pub idempotent: bool,
    pub commit: CommitPolicy,
    /// Deliveries of one event before the service gives up on it and moves it to the
    /// dead-letter topic (`order.dead_letter`); `None` retries forever.
    pub max_deliveries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Services {
    pub payment: Service,
    pub inventory: Service,
    pub email: Service,
    pub warehouse: Service,
    pub analytics: Service,
}

impl Services {
    /// Some enabled service parks events on the dead-letter topic (`max_deliveries`).
    pub fn park_dead_letters(&self) -> bool {
        [
            &self.payment,
            &self.inventory,
            &self.email,
            &self.warehouse,
            &self.analytics,
        ]
        .iter()
        .any(|c| c.enabled && c.max_deliveries.is_some())
    }
}
