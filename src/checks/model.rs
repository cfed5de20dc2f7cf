//! The checks as a scenario states them, validated. `config.rs` reads them from YAML; each
//! check's unit judges one.

use std::time::Duration;

use crate::config::units::{Comparison, Share, ShareThreshold};
use crate::topology::Stage;

/// `order.created -> order.fulfilled: { p99: "< 3s" }`
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LatencySlo {
    pub stage: Stage,
    /// 0..=100, e.g. 99.9
    pub percentile: f64,
    pub comparison: Comparison,
    pub bound: Duration,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Checks {
    pub checkout_success_rate: Option<ShareThreshold>,
    pub completion_rate: Option<ShareThreshold>,
    /// An accepted order must reach a terminal state within this time of its intended time.
    pub settle_within: Duration,
    pub latency: Vec<LatencySlo>,
    /// Every effect an accepted order is owed happened (judged on effects, not receipts).
    pub no_loss: bool,
    /// Captures at the provider agree with how orders ended.
    pub money_matches_state: bool,
    pub no_duplicate_effects: bool,
    pub per_key_order: bool,
    pub compare: CompareTolerances,
    /// `recovery: { drain_within: 30s }`: after each fault window, consumer lag must be back
    /// to its pre-fault level within this time.
    pub recovery: Option<Duration>,
    /// The share of accepted orders that may end on the dead-letter topic (`<= 0%` by
    /// default: any dead letter fails the run unless the scenario expects some).
    pub dead_letters: Option<ShareThreshold>,
}

/// How far a run of this scenario may fall behind a baseline before `doorbuster compare`
/// calls it a regression (command-line flags override these).
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CompareTolerances {
    /// Relative growth allowed for the gated latency percentiles (`10%`).
    pub latency_increase: Share,
    /// Latency growth below this is never a regression (`1ms`).
    pub latency_floor: Duration,
    /// Percentage points the checkout-success or completion rate may fall (`0.1%`).
    pub rate_drop: Share,
}

impl Default for CompareTolerances {
    fn default() -> Self {
        CompareTolerances {
            latency_increase: Share(0.10),
            latency_floor: Duration::from_millis(1),
            rate_drop: Share(0.001),
        }
    }
}
