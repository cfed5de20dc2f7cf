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

pub use crate::config::tree::{Entries, Node, Text};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<Text>,
    pub description: Option<Text>,
    pub seed: Option<Text>,
    pub target: Option<Spanned<RawTarget>>,
    pub load: Option<Spanned<RawLoad>>,
    pub orders: Option<Spanned<RawOrders>>,
    pub services: Option<Spanned<RawServices>>,
    pub provider: Option<Spanned<RawProvider>>,
    pub checks: Option<Spanned<RawChecks>>,
    pub faults: Option<Spanned<Vec<Spanned<RawFault>>>>,
}

/// One fault on the timeline. Exactly one kind key (`crash`, `pause`, `latency`, `errors`,
/// `duplicate`, `provider_outage`, `replay`, `exec`), its companions, and `at`/`for`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub at: Option<Text>,
    #[serde(rename = "for")]
    pub for_: Option<Text>,
    pub crash: Option<Text>,
    pub restart_after: Option<Text>,
    pub pause: Option<Text>,
    pub latency: Option<Text>,
    pub add: Option<Text>,
    pub errors: Option<Text>,
    pub poison: Option<Text>,
    pub duplicate: Option<Text>,
    pub share: Option<Text>,
    pub keys: Option<Text>,
    pub provider_outage: Option<Spanned<RawOutage>>,
    pub reorder: Option<Text>,
    pub replay: Option<Text>,
    pub to: Option<Text>,
    pub exec: Option<Text>,
    pub link: Option<Text>,
    pub delay: Option<Text>,
    pub jitter: Option<Text>,
    pub bytes_per_sec: Option<Text>,
    pub direction: Option<Text>,
}

/// `provider_outage: { errors: 30%, latency: 2s, status: 503, retry_after: 1s }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutage {
    pub errors: Option<Text>,
    pub latency: Option<Text>,
    pub status: Option<Text>,
    pub retry_after: Option<Text>,
}

/// `target: embedded`, `target: redis://127.0.0.1:6379`, or a mapping:
/// `target: { kind: embedded, partitions: 12 }`, `target: { url: "...", queue_type: quorum }`,
/// `target: { url: "https://...", headers: { Authorization: "Bearer ${TOKEN}" } }`.
#[derive(Debug)]
pub enum RawTarget {
    Kind(String),
    Map(Box<RawTargetMap>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetMap {
    pub kind: Option<Text>,
    pub url: Option<Text>,
    pub partitions: Option<Text>,
    pub retention: Option<Text>,
    pub acks: Option<Text>,
    pub idempotent: Option<Text>,
    pub queue_type: Option<Text>,
    pub ack_wait: Option<Text>,
    pub max_deliver: Option<Text>,
    pub allow_remote: Option<Text>,
    /// Checkout endpoints only: header name to value.
    pub headers: Option<Spanned<std::collections::BTreeMap<String, Text>>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    pub arrivals: Option<Text>,
    pub checkout_timeout: Option<Text>,
    pub checkout: Option<Spanned<RawCheckout>>,
    pub max_in_flight: Option<Text>,
    pub max_send_lag: Option<Text>,
    pub phases: Option<Spanned<Vec<Spanned<RawPhase>>>>,
    pub drain: Option<Text>,
}

/// `checkout: { mode: sync }`: a mapping, so that later checkout settings (an HTTP
/// checkout endpoint in observe mode) have a place next to the mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckout {
    pub mode: Option<Text>,
}

/// One phase; exactly one of `ramp`, `hold`, `spike`, `pause` must be present (checked in
/// `validate.rs`, so that a phase with two kinds is reported next to every other problem).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPhase {
    pub ramp: Option<Text>,
    pub hold: Option<Text>,
    pub spike: Option<Text>,
    pub pause: Option<Text>,
    pub from: Option<Text>,
    pub to: Option<Text>,
    pub rate: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrders {
    pub catalog: Option<Spanned<RawCatalog>>,
    pub items: Option<Text>,
    pub locale: Option<Text>,
    pub declines: Option<Text>,
    pub resubmits: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    pub products: Option<Text>,
    pub popularity: Option<Text>,
    pub stock: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServices {
    pub payment: Option<Spanned<RawService>>,
    pub inventory: Option<Spanned<RawService>>,
    pub email: Option<Spanned<RawService>>,
    pub warehouse: Option<Spanned<RawService>>,
    pub analytics: Option<Spanned<RawService>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub enabled: Option<Text>,
    pub replicas: Option<Text>,
    pub concurrency: Option<Text>,
    pub latency: Option<Text>,
    pub idempotent: Option<Text>,
    pub commit: Option<Text>,
    pub max_deliveries: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub via: Option<Text>,
    pub latency: Option<Text>,
    pub timeout: Option<Text>,
    pub retries: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChecks {
    pub checkout_success_rate: Option<Text>,
    pub completion_rate: Option<Text>,
    pub settle_within: Option<Text>,
    /// Stage label -> percentile -> bound, in file order. The values are kept as generic
    /// nodes: the keys carry spans, which serde_path_to_error cannot record, so a value of
    /// the wrong shape is reported by `validate.rs`, which knows the path.
    pub latency: Option<Spanned<Entries<Spanned<Node>>>>,
    pub no_loss: Option<Text>,
    pub money_matches_state: Option<Text>,
    pub no_duplicate_effects: Option<Text>,
    pub per_key_order: Option<Text>,
    pub compare: Option<Spanned<RawCompare>>,
    pub recovery: Option<Spanned<RawRecovery>>,
    pub dead_letters: Option<Text>,
}

/// `recovery: { drain_within: 30s }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecovery {
    pub drain_within: Option<Text>,
}

/// Tolerances `doorbuster compare` applies when this scenario's run is the candidate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    pub latency_increase: Option<Text>,
    pub latency_floor: Option<Text>,
    pub rate_drop: Option<Text>,
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
