//! The load as a scenario states it, validated: arrivals, phases, the checkout's limits.
//! `config.rs` reads it from YAML; the schedule and the driver run it.

use std::time::Duration;

use crate::config::units::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    Uniform,
    Poisson,
}

/// Where payment sits relative to the checkout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CheckoutMode {
    /// The checkout ends when `order.created` is acked; payment happens downstream, off the
    /// shopper's path (the event-driven design under test).
    #[default]
    Async,
    /// The checkout also calls the payment provider inline, once, like a monolith: it
    /// succeeds only if the provider captured or declined within `checkout_timeout`. The
    /// baseline the asynchronous design is measured against.
    Sync,
}

impl CheckoutMode {
    /// The name used in scenario files and reports.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Load {
    pub arrivals: Arrivals,
    /// An order whose checkout is not answered within this time is a failed checkout.
    pub checkout_timeout: Duration,
    /// What the checkout waits for before the shopper sees success.
    pub checkout_mode: CheckoutMode,
    /// At most this many checkouts in flight (default 10_000).
    pub max_in_flight: usize,
    pub phases: Vec<Phase>,
    /// After the last phase, how long the run may wait for the pipeline to settle.
    pub drain: Duration,
    /// The run is INVALID when the generator's own send lag p99 exceeds this (default 100ms).
    pub max_send_lag: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Phase {
    pub kind: PhaseKind,
    pub duration: Duration,
}

impl Phase {
    /// Arrivals the phase plans: the integral of its rate over its duration (the schedule's
    /// Λ, whose ceiling is the count with uniform arrivals and whose mean it is with Poisson).
    pub fn expected_orders(&self) -> f64 {
        let (from, to) = self.kind.rates();
        // Seconds from whole nanoseconds, exactly as the schedule counts them, so that its
        // count and this one agree to the last bit.
        let seconds = crate::clock::duration_ns(self.duration) as f64 / 1e9;
        (from + to) / 2.0 * seconds
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum PhaseKind {
    /// Rate changes linearly from `from` to `to` over the phase.
    Ramp { from: Rate, to: Rate },
    /// A constant rate.
    Hold { rate: Rate },
    /// A constant rate, marked as a spike in reports.
    Spike { rate: Rate },
    /// No arrivals.
    Pause,
}

impl PhaseKind {
    /// Orders per second at the phase's start and at its end.
    pub fn rates(&self) -> (f64, f64) {
        match *self {
            PhaseKind::Ramp { from, to } => (from.per_sec(), to.per_sec()),
            PhaseKind::Hold { rate } | PhaseKind::Spike { rate } => {
                (rate.per_sec(), rate.per_sec())
            }
            PhaseKind::Pause => (0.0, 0.0),
        }
    }
}
