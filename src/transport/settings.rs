//! What a broker folder declares in its `config.rs`: how a scenario names the broker
//! ([`BrokerSpec`]), the `target:` keys it takes and their validation ([`BrokerSettings`]),
//! with the helpers the brokers share. `config.rs` beside this reads the rest of `target:`.

use std::time::Duration;

use crate::config::check::{Checker, Path};
use crate::config::tree::Text;
use crate::config::units::{duration_in, int_in};

/// What a broker folder declares about itself: how a scenario names it.
pub struct BrokerSpec {
    /// The word `target:` names it by (`target: rabbitmq`).
    pub name: &'static str,
    /// How messages name it (`RabbitMQ`).
    pub label: &'static str,
    /// The URL schemes that select it, each with the port its client uses when the URL
    /// names none; the first is its own.
    pub schemes: &'static [(&'static str, u16)],
    /// Where it is looked for when named by kind alone: its standard port on loopback.
    pub default_url: &'static str,
}

/// A networked broker's options, as its folder's `config.rs` declares and validates them.
/// `transport::brokers!` lists the folders; nothing else names a broker.
pub trait BrokerSettings: Sized + Default {
    const SPEC: BrokerSpec;
    /// The keys the broker takes in a `target:` mapping besides the shared ones: its
    /// fragment of the scenario schema, and the list unknown keys are judged against.
    type Keys: schemars::JsonSchema;

    /// Takes its keys out of `keys` (what it leaves is reported as not its own).
    fn validate(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> Self;

    /// Why a consumer group cannot be rewound (a `replay` fault) with these options, and
    /// what to change; `None` when it can.
    fn cannot_rewind(&self) -> Option<(&'static str, &'static str)> {
        None
    }
}

/// The default `ack_wait` of the brokers that redeliver after a timeout.
pub(crate) const ACK_WAIT_DEFAULT: Duration = Duration::from_secs(30);

/// `ack_wait:`, for the brokers that take it.
pub(crate) fn ack_wait(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> Duration {
    check.or_default(
        &keys.take("ack_wait"),
        &path.key("ack_wait"),
        ACK_WAIT_DEFAULT,
        |t| duration_in(t, true, Duration::from_secs(3600)),
    )
}

/// The partitions per topic when none are given (Kafka and the embedded broker).
pub(crate) const PARTITIONS_DEFAULT: u32 = 12;

/// `partitions:`, for the brokers that have them.
pub(crate) fn partitions(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> u32 {
    check.or_default(
        &keys.take("partitions"),
        &path.key("partitions"),
        PARTITIONS_DEFAULT,
        |t| int_in(t, 1, 1024).map(|n| n as u32),
    )
}

/// `max_deliver:`, for the brokers that take it.
pub(crate) fn max_deliver(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> Option<u32> {
    check.or_default(
        &keys.take("max_deliver"),
        &path.key("max_deliver"),
        None,
        |t| int_in(t, 1, 1_000_000).map(|n| Some(n as u32)),
    )
}

/// The keys of a `target:` mapping that belong to what the target names, each with its
/// position; validation takes the ones it knows.
#[derive(Debug, Default)]
pub struct OptionKeys(pub(crate) Vec<(Text, Text)>);

impl OptionKeys {
    /// The value of `key`, taken out.
    pub fn take(&mut self, key: &str) -> Option<Text> {
        let i = self.0.iter().position(|(k, _)| k.value == key)?;
        Some(self.0.remove(i).1)
    }
}

/// The property names of a keys struct's schema.
pub(crate) fn keys_of<K: schemars::JsonSchema>() -> Vec<String> {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<K>();
    schema
        .as_object()
        .and_then(|o| o.get("properties"))
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}
