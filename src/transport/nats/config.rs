//! NATS JetStream's part of a scenario's `target:`: what selects it, the keys it takes, their
//! validation and the options its consumers are created with.

use std::time::Duration;

use crate::config::check::{Checker, Path};
use crate::transport::settings::{self, BrokerSettings, BrokerSpec, OptionKeys};

/// The keys NATS takes in a `target:` mapping besides `url`: its schema fragment.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // a schema, never built
pub struct Keys {
    /// Time a delivery may stay unacked before the broker hands it to another member
    /// (NATS AckWait, Redis the idle time before XAUTOCLAIM; default 30s).
    ack_wait: Option<crate::config::schema::Duration>,
    /// Deliveries of one event before the broker gives up on it (NATS MaxDeliver,
    /// RabbitMQ quorum `x-delivery-limit`; default unlimited).
    max_deliver: Option<crate::config::schema::Int<1, 1_000_000>>,
}

/// How the run's durable consumers are created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Options {
    /// AckWait: how long a delivery may stay unacked before another member gets it.
    pub ack_wait: Duration,
    /// MaxDeliver; `None` is unlimited.
    pub max_deliver: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ack_wait: settings::ACK_WAIT_DEFAULT,
            max_deliver: None,
        }
    }
}

impl BrokerSettings for Options {
    const SPEC: BrokerSpec = BrokerSpec {
        name: "nats",
        label: "NATS",
        schemes: &[("nats", 4222), ("tls", 4222)],
        default_url: "nats://127.0.0.1:4222",
    };
    type Keys = Keys;

    fn validate(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> Self {
        Self {
            ack_wait: settings::ack_wait(check, keys, path),
            max_deliver: settings::max_deliver(check, keys, path),
        }
    }
}
