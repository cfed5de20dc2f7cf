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

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use crate::config::schema;
use crate::config::tree::{Scalar, Text};

/// A doorbuster scenario: load, orders, services, the payment provider and the checks, on
/// one clock. Only `name` and `load.phases` are required.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "doorbuster scenario")]
pub struct RawScenario {
    /// Lowercase letters, digits and dashes, e.g. `black-friday`.
    #[schemars(required, with = "crate::config::schema::Name")]
    pub name: Option<Text>,
    pub description: Option<Scalar<String>>,
    /// One seed drives the whole run; every report prints it. Default 1.
    pub seed: Option<Scalar<schema::Int<0, { u64::MAX }>>>,
    #[schemars(with = "Option<crate::transport::config::RawTarget>")]
    pub target: Option<Spanned<crate::transport::config::RawTarget>>,
    #[schemars(required, with = "crate::load::config::RawLoad")]
    pub load: Option<Spanned<crate::load::config::RawLoad>>,
    #[schemars(with = "Option<crate::orders::config::RawOrders>")]
    pub orders: Option<Spanned<crate::orders::config::RawOrders>>,
    #[schemars(with = "Option<crate::services::config::RawServices>")]
    pub services: Option<Spanned<crate::services::config::RawServices>>,
    #[schemars(with = "Option<crate::services::provider::config::RawProvider>")]
    pub provider: Option<Spanned<crate::services::provider::config::RawProvider>>,
    #[schemars(with = "Option<crate::checks::config::RawChecks>")]
    pub checks: Option<Spanned<crate::checks::config::RawChecks>>,
    /// Faults on the scenario's clock, e.g. `{ at: 80s, crash: email, restart_after: 10s }`.
    #[schemars(with = "Option<Vec<crate::chaos::config::RawFault>>")]
    pub faults: Option<Spanned<Vec<Spanned<crate::chaos::config::RawFault>>>>,
    #[schemars(with = "Option<crate::observe::config::RawObserve>")]
    pub observe: Option<Spanned<crate::observe::config::RawObserve>>,
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
