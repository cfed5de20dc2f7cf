//! Redis Streams' part of a scenario's `target:`: what selects it, the keys it takes, their
//! validation and the options its consumer groups run with.

use std::time::Duration;

use crate::config::check::{Checker, Path};
use crate::transport::settings::{self, BrokerSettings, BrokerSpec, OptionKeys};

/// The keys Redis takes in a `target:` mapping besides `url`: its schema fragment.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // a schema, never built
pub struct Keys {
    /// Time a delivery may stay unacked before the broker hands it to another member
    /// (NATS AckWait, Redis the idle time before XAUTOCLAIM; default 30s).
    ack_wait: Option<crate::config::schema::Duration>,
}

/// How the run's consumer groups reclaim a crashed member's deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Options {
    /// The idle time after which XAUTOCLAIM hands a pending delivery to another member.
    pub ack_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ack_wait: settings::ACK_WAIT_DEFAULT,
        }
    }
}

impl BrokerSettings for Options {
    const SPEC: BrokerSpec = BrokerSpec {
        name: "redis",
        label: "Redis",
        schemes: &[("redis", 6379), ("rediss", 6379)],
        default_url: "redis://127.0.0.1:6379",
    };
    type Keys = Keys;

    fn validate(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> Self {
        Self {
            ack_wait: settings::ack_wait(check, keys, path),
        }
    }
}
