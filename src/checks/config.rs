//! `checks:` in a scenario file: which checks run with which thresholds. The raw shape, its
//! schema and its validation into the model's [`Checks`].

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::checks::model::{Checks, CompareTolerances, LatencySlo};
use crate::config::check::{Checker, Path};
use crate::config::schema;
use crate::config::tree::{Entries, Node, Scalar, Text};
use crate::config::units::{
    self, Comparison, DURATION_MAX, Share, ShareThreshold, UnitError, did_you_mean, duration_in,
    quoted, threshold_or_off,
};
use crate::topology::Stage;

/// What the run is judged on.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChecks {
    /// e.g. `">= 99.5%"`, or `off`.
    pub checkout_success_rate: Option<Scalar<schema::Threshold>>,
    /// e.g. `">= 99%"`, or `off`.
    pub completion_rate: Option<Scalar<schema::Threshold>>,
    pub settle_within: Option<Scalar<schema::Duration>>,
    /// Stage label -> percentile -> bound, in file order. The values are kept as generic
    /// nodes: the keys carry spans, which serde_path_to_error cannot record, so a value of
    /// the wrong shape is reported by `validate.rs`, which knows the path.
    #[schemars(
        with = "Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, crate::config::schema::Bound>>>"
    )]
    pub latency: Option<Spanned<Entries<Spanned<Node>>>>,
    pub no_loss: Option<Scalar<bool>>,
    pub money_matches_state: Option<Scalar<bool>>,
    pub no_duplicate_effects: Option<Scalar<bool>>,
    pub per_key_order: Option<Scalar<bool>>,
    #[schemars(with = "Option<RawCompare>")]
    pub compare: Option<Spanned<RawCompare>>,
    /// After each fault window, consumer lag must be back to its pre-fault level within
    /// `drain_within`.
    #[schemars(with = "Option<RawRecovery>")]
    pub recovery: Option<Spanned<RawRecovery>>,
    /// Share of accepted orders that may be dead-lettered, e.g. `"<= 1%"` (default
    /// `"<= 0%"`), or `off`.
    pub dead_letters: Option<Scalar<schema::Threshold>>,
}

/// `recovery: { drain_within: 30s }`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRecovery {
    #[schemars(required, with = "crate::config::schema::Duration")]
    pub drain_within: Option<Text>,
}

/// Tolerances `doorbuster compare` applies when this scenario's run is the candidate.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    /// Relative growth allowed for gated latency percentiles (default `10%`).
    pub latency_increase: Option<Scalar<schema::Share>>,
    /// Latency growth below this is never a regression (default `1ms`).
    pub latency_floor: Option<Scalar<schema::Duration>>,
    /// Percentage points a rate may fall (default `0.1%`).
    pub rate_drop: Option<Scalar<schema::Share>>,
}

/// Checks `checks:`; every check has a default.
pub fn validate(raw: Option<&Spanned<RawChecks>>, check: &mut Checker, path: &Path) -> Checks {
    let empty = RawChecks {
        checkout_success_rate: None,
        completion_rate: None,
        settle_within: None,
        latency: None,
        no_loss: None,
        money_matches_state: None,
        no_duplicate_effects: None,
        per_key_order: None,
        compare: None,
        recovery: None,
        dead_letters: None,
    };
    let raw = raw.map_or(&empty, |r| &r.value);
    let at_least = |percent: f64| ShareThreshold {
        comparison: Comparison::AtLeast,
        share: Share(percent / 100.0),
    };
    Checks {
        checkout_success_rate: check.or_default(
            &raw.checkout_success_rate,
            &path.key("checkout_success_rate"),
            Some(at_least(99.5)),
            threshold_or_off,
        ),
        completion_rate: check.or_default(
            &raw.completion_rate,
            &path.key("completion_rate"),
            Some(at_least(99.0)),
            threshold_or_off,
        ),
        settle_within: check.or_default(
            &raw.settle_within,
            &path.key("settle_within"),
            Duration::from_secs(30),
            |t| duration_in(t, true, DURATION_MAX),
        ),
        latency: match &raw.latency {
            Some(latency) => latency_slos(&latency.value, check, &path.key("latency")),
            None => Vec::new(),
        },
        no_loss: check.or_default(&raw.no_loss, &path.key("no_loss"), true, units::parse_bool),
        money_matches_state: check.or_default(
            &raw.money_matches_state,
            &path.key("money_matches_state"),
            true,
            units::parse_bool,
        ),
        no_duplicate_effects: check.or_default(
            &raw.no_duplicate_effects,
            &path.key("no_duplicate_effects"),
            true,
            units::parse_bool,
        ),
        per_key_order: check.or_default(
            &raw.per_key_order,
            &path.key("per_key_order"),
            true,
            units::parse_bool,
        ),
        compare: compare(raw.compare.as_ref(), check, &path.key("compare")),
        recovery: raw.recovery.as_ref().and_then(|r| {
            let path = path.key("recovery");
            check.required(
                &r.value.drain_within,
                &r.referenced,
                &path.key("drain_within"),
                "recovery: { drain_within: 30s }",
                |t| duration_in(t, true, DURATION_MAX),
            )
        }),
        dead_letters: check.or_default(
            &raw.dead_letters,
            &path.key("dead_letters"),
            Some(ShareThreshold {
                comparison: Comparison::AtMost,
                share: Share(0.0),
            }),
            threshold_or_off,
        ),
    }
}

fn compare(
    raw: Option<&Spanned<RawCompare>>,
    check: &mut Checker,
    path: &Path,
) -> CompareTolerances {
    let defaults = CompareTolerances::default();
    let Some(raw) = raw.map(|r| &r.value) else {
        return defaults;
    };
    CompareTolerances {
        latency_increase: check.or_default(
            &raw.latency_increase,
            &path.key("latency_increase"),
            defaults.latency_increase,
            units::parse_share,
        ),
        latency_floor: check.or_default(
            &raw.latency_floor,
            &path.key("latency_floor"),
            defaults.latency_floor,
            |t| duration_in(t, false, units::LATENCY_MAX),
        ),
        rate_drop: check.or_default(
            &raw.rate_drop,
            &path.key("rate_drop"),
            defaults.rate_drop,
            units::parse_share,
        ),
    }
}

fn latency_slos(raw: &Entries<Spanned<Node>>, check: &mut Checker, path: &Path) -> Vec<LatencySlo> {
    let mut slos = Vec::new();
    let mut seen: Vec<Stage> = Vec::new();
    for (stage_text, percentiles) in &raw.0 {
        // An unknown key is reported at its mapping's path: the message names the key.
        let Some(stage) = check.parse(stage_text, path, parse_stage) else {
            continue;
        };
        let stage_path = path.key(stage.label());
        if seen.contains(&stage) {
            check.report(
                &stage_text.referenced,
                &stage_path,
                format!("stage {} is listed twice", quoted(stage.label())),
                Some("merge the two entries into one mapping".to_owned()),
            );
            continue;
        }
        seen.push(stage);
        let example = r#"write it like `{ p99: "< 3s" }`"#.to_owned();
        let entries = match &percentiles.value {
            Node::Map(entries) if entries.0.is_empty() => {
                let message = "lists no percentiles".to_owned();
                check.report(&percentiles.referenced, &stage_path, message, Some(example));
                continue;
            }
            Node::Map(entries) => entries,
            other => {
                let message = format!(
                    "expected a mapping of percentiles to bounds, found {}",
                    other.describe()
                );
                check.report(&percentiles.referenced, &stage_path, message, Some(example));
                continue;
            }
        };
        for (key, bound) in &entries.0 {
            let percentile = check.parse(key, &stage_path, units::parse_percentile);
            let bound_path = stage_path.key(&key.value);
            let bound = match &bound.value {
                Node::Scalar(text) => match units::parse_latency_bound(text) {
                    Ok(bound) => Some(bound),
                    Err(e) => {
                        check.report(&bound.referenced, &bound_path, e.message, e.hint);
                        None
                    }
                },
                other => {
                    let message =
                        format!("expected a bound like \"< 3s\", found {}", other.describe());
                    check.report(&bound.referenced, &bound_path, message, None);
                    None
                }
            };
            if let (Some(percentile), Some((comparison, bound))) = (percentile, bound) {
                slos.push(LatencySlo {
                    stage,
                    percentile,
                    comparison,
                    bound,
                });
            }
        }
    }
    // A stable order for reports and snapshots, whatever order the file used.
    slos.sort_by(|a, b| {
        a.stage
            .cmp(&b.stage)
            .then(a.percentile.total_cmp(&b.percentile))
    });
    slos
}

/// A stage label, with any spacing around `->`.
fn parse_stage(text: &str) -> Result<Stage, UnitError> {
    let normalized = text
        .split("->")
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" -> ");
    if let Some(stage) = Stage::ALL.into_iter().find(|s| s.label() == normalized) {
        return Ok(stage);
    }
    let labels: Vec<&str> = Stage::ALL.iter().map(|s| s.label()).collect();
    Err(UnitError {
        message: format!(
            "unknown stage {}; expected one of {}",
            quoted(text),
            labels
                .iter()
                .map(|l| quoted(l))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        hint: did_you_mean(&normalized, &labels).map(|s| format!("did you mean {s:?}?")),
    })
}
