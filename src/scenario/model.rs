//! The validated scenario: what the rest of the pipeline consumes.
//!
//! Everything here is already checked (rates positive, shares within 0..=1, ranges ordered),
//! with units in types. Nothing in this module parses text or reads files; `raw.rs` and
//! `validate.rs` turn YAML into these types.

use std::time::Duration;

pub use crate::config::units::{Comparison, LatencyDist, Rate, Share, ShareThreshold};

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

/// One fault: what goes wrong, when, for how long, and for which deliveries.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Fault {
    /// Start, on the run's clock.
    pub at: Duration,
    /// How long it lasts; `None` for instant faults (replay, exec) and a crash without
    /// restart.
    pub duration: Option<Duration>,
    pub kind: FaultKind,
    /// Which deliveries a service fault touches (latency, errors, duplicate).
    pub scope: FaultScope,
}

/// A share of deliveries (`share`, decided per delivery) of a share of orders (`keys`,
/// decided per order id), both seeded. 100 % / 100 % touches everything.
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FaultScope {
    pub share: Share,
    pub keys: Share,
}

impl FaultScope {
    pub const ALL: FaultScope = FaultScope {
        share: Share(1.0),
        keys: Share(1.0),
    };
}

/// One fault kind with its settings. The variants are in the order error messages list the
/// kinds; [`FaultKindName`] is their names (`crash`, `provider_outage`, ...).
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(strum::EnumDiscriminants)]
#[strum_discriminants(
    name(FaultKindName),
    derive(strum::IntoStaticStr, strum::Display, strum::VariantArray),
    strum(serialize_all = "snake_case")
)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FaultKind {
    /// The service's consumers stop without committing, and restart after `restart_after`.
    Crash {
        service: crate::topology::ServiceKind,
        restart_after: Option<Duration>,
    },
    /// The service stops consuming and keeps its partitions and state.
    Pause {
        service: crate::topology::ServiceKind,
    },
    /// Added processing time.
    Latency {
        service: crate::topology::ServiceKind,
        add: LatencyDist,
    },
    /// The service fails deliveries (nack), so they come back.
    Errors {
        service: crate::topology::ServiceKind,
    },
    /// Events of the picked orders, intended inside the window, always fail at the
    /// service, however often they are delivered (a poison message).
    Poison {
        service: crate::topology::ServiceKind,
    },
    /// Deliveries arrive twice at the service (application-level duplicate delivery).
    Duplicate {
        service: crate::topology::ServiceKind,
    },
    /// Events of one key delivered out of order on this topic.
    Reorder { topic: crate::events::Topic },
    /// The payment provider fails a share of calls, optionally slower, with a status.
    ProviderOutage {
        errors: Share,
        status: u16,
        latency: Option<LatencyDist>,
        retry_after: Option<Duration>,
        /// Share of calls whose answer is lost: the call is decided (a card is charged) and
        /// the answer withheld until the client has given up.
        lost_answers: Share,
    },
    /// A fault on the TCP link between doorbuster and a networked broker, through the
    /// built-in fault proxy; `share` is the share of connections it reaches.
    Link {
        toxic: crate::chaos::proxy::LinkToxic,
        direction: crate::chaos::proxy::Direction,
        /// One of the user's links (`observe.links`) by name; `None` is doorbuster's own
        /// link to the broker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on: Option<String>,
    },
    /// Rewind the service's consumer group.
    Replay {
        service: crate::topology::ServiceKind,
        to: ReplayTo,
    },
    /// Run a command (`sh -c`); its output goes to the run folder.
    Exec { command: String },
}

impl FaultKind {
    /// The scenario key that selects this kind (`crash`, `provider_outage`, `link`, ...).
    pub fn label(&self) -> &'static str {
        FaultKindName::from(self).into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayTo {
    /// The oldest retained event.
    Earliest,
    /// The first event published at or after this run time.
    Time(Duration),
}

pub use crate::transport::target::{BrokerTarget, EmbeddedTarget, HttpTarget, Target};

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

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Orders {
    pub catalog: Catalog,
    /// Line items per order, inclusive bounds (default 1..=5).
    pub items_min: u32,
    pub items_max: u32,
    /// Locale for fake data; only `en_US` is supported for now.
    pub locale: String,
    /// Share of orders paid with a card the provider declines.
    pub declines: Share,
    /// Share of checkouts submitted twice with the same idempotency key.
    pub resubmits: Share,
    /// The user's own event schema, when the scenario gives one (`orders.payload`).
    pub payload: Option<Payload>,
}

/// `orders.payload`: each order rendered through the user's template instead of
/// doorbuster's own `order.created` (see `orders::template`).
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Payload {
    /// The body template.
    pub template: SourceFile,
    /// The message key, a template (`{{ order.id }}`); `None` keeps the order id.
    pub key: Option<String>,
    /// Extra headers, each value a template, in file order.
    pub headers: Vec<(String, String)>,
    /// A JSON Schema every rendered body must satisfy.
    pub schema: Option<SourceFile>,
}

/// A file a scenario names, read when it was validated.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SourceFile {
    /// As the scenario wrote it.
    pub path: String,
    /// Where it was read from, for messages (the path beside the scenario file).
    pub shown: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Catalog {
    pub products: u32,
    /// Zipf exponent of product popularity (`zipf(1.1)`).
    pub zipf_exponent: f64,
    /// Units in stock per product at the start.
    pub stock: u32,
}

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
}

/// A stage the latency SLOs and histograms name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `order.created` acked by the broker (the checkout latency); in the sync checkout
    /// mode, the inline provider call's answer too.
    #[strum(serialize = "order.created")]
    Checkout,
    /// `order.created -> order.payment.succeeded`
    #[strum(serialize = "order.created -> order.payment.succeeded")]
    PaymentSucceeded,
    /// `order.created -> order.fulfilled`
    #[strum(serialize = "order.created -> order.fulfilled")]
    Fulfilled,
    /// `order.created -> email.sent`
    #[strum(serialize = "order.created -> email.sent")]
    EmailSent,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Checkout,
        Stage::PaymentSucceeded,
        Stage::Fulfilled,
        Stage::EmailSent,
    ];

    /// The name used in scenario files and reports.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

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
