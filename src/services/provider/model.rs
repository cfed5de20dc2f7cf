//! The payment provider as a scenario states it, validated. `config.rs` reads it from YAML.

use std::time::Duration;

use crate::config::units::LatencyDist;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderVia {
    Http,
    InProcess,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Provider {
    pub via: ProviderVia,
    /// Where the provider serves its API for the user's own payment service (observe mode),
    /// instead of a port of its own choosing; loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    pub latency: LatencyDist,
    /// The payment service's client timeout per call.
    pub timeout: Duration,
    /// Retries after a provider error (not after a decline), with exponential backoff.
    pub retries: u32,
    /// How long a key's first answer is kept at least (at most twice that), as Stripe
    /// prunes keys at least 24 hours old: a key reused later is a new request.
    pub idempotency_retention: Duration,
}
