//! The serde shapes of a scenario file: the first step of `YAML -> raw -> validate -> Scenario`.
//!
//! These types mirror the YAML one to one and check only its structure: which keys exist
//! (unknown keys are errors that list the valid ones), which values are mappings or lists,
//! and that no key appears twice. Every leaf is kept as its verbatim text with its position
//! (`Spanned<String>`), so that `validate.rs` can parse units, check ranges, and report every
//! problem in the file at once, each pointing at the value that caused it. Every field is
//! optional here, even required ones: a missing key is a validation problem that points at
//! its parent mapping, not a serde error that stops at the first one.
//!
//! Spans survive only on plain structs, lists and maps: serde's buffering for
//! `#[serde(tag)]`, untagged and flatten drops them, so none of those appear here. That is why
//! a phase is one struct with optional `ramp`, `hold`, `spike` and `pause` keys.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::Spanned;

pub use crate::config::tree::Text;

/// A doorbuster scenario: load, orders, services, the payment provider and the checks, on
/// one clock. Only `name` and `load.phases` are required.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "doorbuster scenario")]
pub struct RawScenario {
    /// Lowercase letters, digits and dashes, e.g. `black-friday`.
    #[schemars(required, with = "crate::config::schema::Name")]
    pub name: Option<Text>,
    #[schemars(with = "Option<String>")]
    pub description: Option<Text>,
    /// One seed drives the whole run; every report prints it. Default 1.
    #[schemars(with = "Option<crate::config::schema::Int<0, {u64::MAX}>>")]
    pub seed: Option<Text>,
    #[schemars(with = "Option<RawTarget>")]
    pub target: Option<Spanned<RawTarget>>,
    #[schemars(required, with = "crate::load::config::RawLoad")]
    pub load: Option<Spanned<crate::load::config::RawLoad>>,
    #[schemars(with = "Option<crate::orders::config::RawOrders>")]
    pub orders: Option<Spanned<crate::orders::config::RawOrders>>,
    #[schemars(with = "Option<crate::services::config::RawServices>")]
    pub services: Option<Spanned<crate::services::config::RawServices>>,
    #[schemars(with = "Option<crate::services::provider::config::RawProvider>")]
    pub provider: Option<Spanned<crate::services::provider::config::RawProvider>>,
    #[schemars(with = "Option<crate::verify::config::RawChecks>")]
    pub checks: Option<Spanned<crate::verify::config::RawChecks>>,
    /// Faults on the scenario's clock, e.g. `{ at: 80s, crash: email, restart_after: 10s }`.
    #[schemars(with = "Option<Vec<crate::chaos::config::RawFault>>")]
    pub faults: Option<Spanned<Vec<Spanned<crate::chaos::config::RawFault>>>>,
}

/// `target: embedded`, `target: redis://127.0.0.1:6379`, or a mapping:
/// `target: { kind: embedded, partitions: 12 }`, `target: { url: "...", queue_type: quorum }`,
/// `target: { url: "https://...", headers: { Authorization: "Bearer ${TOKEN}" } }`.
#[derive(Debug)]
pub enum RawTarget {
    Kind(String),
    Map(Box<RawTargetMap>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTargetMap {
    /// The broker; optional when `url` is given (its scheme selects the broker).
    #[schemars(with = "Option<TargetName>")]
    pub kind: Option<Text>,
    /// The broker's URL; credentials only as `${ENV}` references.
    #[schemars(with = "Option<crate::config::schema::TargetUrl>")]
    pub url: Option<Text>,
    /// Partitions per topic (1..=1024, default 12); Kafka and the embedded broker.
    #[schemars(with = "Option<crate::config::schema::Int<1, 1024>>")]
    pub partitions: Option<Text>,
    /// Events kept per partition (default 1000000); embedded broker only.
    #[schemars(with = "Option<crate::config::schema::Int<1000, {u64::MAX}>>")]
    pub retention: Option<Text>,
    /// Kafka producer acks (default all).
    #[schemars(with = "Option<Acks>")]
    pub acks: Option<Text>,
    /// Kafka idempotent producer (default true).
    #[schemars(with = "Option<bool>")]
    pub idempotent: Option<Text>,
    /// RabbitMQ queue type (default classic).
    #[schemars(with = "Option<crate::transport::QueueType>")]
    pub queue_type: Option<Text>,
    /// Time a delivery may stay unacked before the broker hands it to another member
    /// (default 30s).
    #[schemars(with = "Option<crate::config::schema::Duration>")]
    pub ack_wait: Option<Text>,
    /// Deliveries of one event before the broker gives up on it (default unlimited).
    #[schemars(with = "Option<crate::config::schema::Int<1, {u32::MAX as u64}>>")]
    pub max_deliver: Option<Text>,
    /// Allow a host outside loopback (default false).
    #[schemars(with = "Option<bool>")]
    pub allow_remote: Option<Text>,
    /// Checkout endpoints only: header name to value.
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub headers: Option<Spanned<std::collections::BTreeMap<String, Text>>>,
}

crate::words_schema!(
    /// `target: embedded` or a broker kind on its loopback default port.
    TargetName,
    super::validate::TARGET_KINDS
);
crate::words_schema!(
    /// Kafka producer acks.
    Acks,
    super::validate::ACKS
);

impl schemars::JsonSchema for RawTarget {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Target")
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Where the orders go: `embedded` (the in-process broker, the default), a broker kind on its loopback default port (`redis`), a broker URL (`redis://127.0.0.1:6379`), a checkout endpoint's URL (`http://127.0.0.1:8080/checkout`), or a block.",
            "anyOf": [
                generator.subschema_for::<TargetName>(),
                generator.subschema_for::<crate::config::schema::TargetUrl>(),
                generator.subschema_for::<RawTargetMap>(),
            ]
        })
    }
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;

        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = RawTarget;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a target kind such as `embedded`, or a mapping with `kind:`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Kind(v.to_owned()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawTarget, E> {
                Ok(RawTarget::Kind(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawTarget, E> {
                Ok(RawTarget::Kind(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawTarget, E> {
                Ok(RawTarget::Kind(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawTarget, E> {
                Ok(RawTarget::Kind(v.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTarget, A::Error> {
                // The map access is still serde-saphyr's, so spans inside survive.
                RawTargetMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|map| RawTarget::Map(Box::new(map)))
            }
        }

        deserializer.deserialize_any(TargetVisitor)
    }
}

/// What the structural step failed on: serde-saphyr's error and the field path it was at.
#[derive(Debug)]
pub struct RawError {
    pub error: Box<serde_saphyr::Error>,
    /// Field path segments (`load`, `phases`, `2`, ...); empty when outside any field.
    pub path: Vec<PathSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// Reads the structure of a scenario. `Ok(None)` means the document is empty (or only
/// comments), which `mod.rs` reports with its own message.
pub fn from_str(text: &str) -> Result<Option<Spanned<RawScenario>>, RawError> {
    // Snippets are off: `error.rs` renders positions itself, one line per problem.
    let options = serde_saphyr::options! { with_snippet: false };
    let mut path = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().clone());
            e.into_inner()
        })
    });
    result.map_err(|error| RawError {
        error: Box::new(error),
        path: path.as_ref().map(segments).unwrap_or_default(),
    })
}

/// serde_path_to_error also records the synthetic map serde-saphyr uses to carry a
/// `Spanned` value's position (`value`, `referenced`, ...); those are not user keys.
fn segments(path: &serde_path_to_error::Path) -> Vec<PathSegment> {
    const SPAN_KEYS: [&str; 4] = [
        "value",
        "referenced",
        "defined",
        "__serde_saphyr_private_spanned",
    ];
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(PathSegment::Index(*index)),
            serde_path_to_error::Segment::Map { key } if !SPAN_KEYS.contains(&key.as_str()) => {
                Some(PathSegment::Key(key.clone()))
            }
            serde_path_to_error::Segment::Enum { variant } => {
                Some(PathSegment::Key(variant.clone()))
            }
            _ => None,
        })
        .collect()
}
