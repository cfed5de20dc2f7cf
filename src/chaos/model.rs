//! A fault as a scenario states it, validated: what goes wrong, when, for how long and for
//! which deliveries. The timeline (`chaos`) runs these; `config.rs` reads them from YAML.

use std::time::Duration;

use crate::config::units::{LatencyDist, Share};

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
        toxic: super::proxy::LinkToxic,
        direction: super::proxy::Direction,
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
