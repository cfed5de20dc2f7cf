//! The validated scenario: what the rest of the pipeline consumes.
//!
//! A [`Scenario`] composes each component's validated part, which that component owns in its
//! folder's `model.rs` (the load, the orders, the services and provider, the faults, the
//! checks) beside its `config.rs` that reads it from YAML. Everything is already checked
//! (rates positive, shares within 0..=1, ranges ordered), with units in types; nothing here
//! parses text or reads files.

pub use crate::config::units::{Comparison, LatencyDist, Rate, Share, ShareThreshold};

// Re-exported under one name for the scenario's readers.
pub use crate::chaos::model::{Fault, FaultKind, FaultKindName, FaultScope, ReplayTo};
pub use crate::checks::model::{Checks, CompareTolerances, LatencySlo};
pub use crate::load::model::{Arrivals, CheckoutMode, Load, Phase, PhaseKind};
pub use crate::orders::model::{Catalog, Orders, Payload, SourceFile};
pub use crate::services::model::{CommitPolicy, Service, Services};
pub use crate::services::provider::model::{Provider, ProviderVia};
pub use crate::topology::Stage;

pub use crate::transport::target::{BrokerTarget, EmbeddedTarget, HttpTarget, Target};

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub target: Target,
    pub load: Load,
    pub orders: Orders,
    pub services: Services,
    pub provider: Provider,
    pub checks: Checks,
    /// Faults on the scenario's clock, in file order.
    pub faults: Vec<Fault>,
    /// Black-box mode: the user's own shop is under test (`observe:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe: Option<crate::observe::config::Observe>,
}
