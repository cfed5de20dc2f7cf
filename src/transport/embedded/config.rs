//! The embedded broker's part of a scenario's `target:` (`target: { kind: embedded, ... }`):
//! the keys it takes and their validation.

use crate::config::check::{Checker, Path};
use crate::config::schema::Int;
use crate::config::units::int_in;
use crate::transport::settings::{self, OptionKeys};
use crate::transport::target::EmbeddedTarget;

/// The keys the embedded broker takes in a `target:` mapping: its schema fragment.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // a schema, never built
pub struct Keys {
    /// Partitions per topic (1..=1024, default 12); Kafka and the embedded broker.
    partitions: Option<Int<1, 1024>>,
    /// Events kept per partition (default 1000000); embedded broker only.
    retention: Option<Int<1000, { u64::MAX }>>,
}

/// Takes the embedded broker's keys out of `keys`.
pub fn validate(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> EmbeddedTarget {
    let defaults = EmbeddedTarget::default();
    EmbeddedTarget {
        partitions: settings::partitions(check, keys, path),
        retention: check.or_default(
            &keys.take("retention"),
            &path.key("retention"),
            defaults.retention,
            |t| int_in(t, 1000, u64::MAX),
        ),
        free_committed: defaults.free_committed,
    }
}
