//! Kafka's part of a scenario's `target:`: what selects it, the keys it takes, their
//! validation and the options the producer and the consumer groups are built with.

use crate::config::check::{Checker, Path};
use crate::config::schema::Int;
use crate::config::units::{choice, parse_bool};
use crate::transport::settings::{self, BrokerSettings, BrokerSpec, OptionKeys};

/// The words `acks:` takes: `all` (acks=all) or `leader` (acks=1).
pub const ACKS: [&str; 2] = ["all", "leader"];

crate::words_schema!(
    /// Kafka producer acks.
    Acks,
    ACKS
);

/// The keys Kafka takes in a `target:` mapping besides `url`: its schema fragment.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // a schema, never built
pub struct Keys {
    /// Partitions per topic (1..=1024, default 12); Kafka and the embedded broker.
    partitions: Option<Int<1, 1024>>,
    /// Kafka producer acks (default all).
    acks: Option<Acks>,
    /// Kafka idempotent producer (default true).
    idempotent: Option<bool>,
}

/// How the run's topics are created and its producer acks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Options {
    /// Partitions per topic the run creates.
    pub partitions: u32,
    /// `acks=all` (true) or `acks=1`.
    pub acks_all: bool,
    /// `enable.idempotence`.
    pub idempotent: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            partitions: settings::PARTITIONS_DEFAULT,
            acks_all: true,
            idempotent: true,
        }
    }
}

impl Options {
    /// The producer's `acks` setting.
    pub fn acks(&self) -> &'static str {
        if self.acks_all { "all" } else { "1" }
    }

    /// Idempotence requires `acks=all`, so `acks=1` turns it off.
    pub fn idempotent_producer(&self) -> bool {
        self.idempotent && self.acks_all
    }
}

impl BrokerSettings for Options {
    const SPEC: BrokerSpec = BrokerSpec {
        name: "kafka",
        label: "Kafka",
        schemes: &[("kafka", 9092)],
        default_url: "kafka://127.0.0.1:9092",
    };
    type Keys = Keys;

    fn validate(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> Self {
        let defaults = Self::default();
        Self {
            partitions: settings::partitions(check, keys, path),
            acks_all: check.or_default(&keys.take("acks"), &path.key("acks"), true, |t| {
                choice(t, "an acks setting", &ACKS.map(|w| (w, w == "all")))
            }),
            idempotent: check.or_default(
                &keys.take("idempotent"),
                &path.key("idempotent"),
                defaults.idempotent,
                parse_bool,
            ),
        }
    }
}
