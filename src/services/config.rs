//! `services:` in a scenario file: the standard topology's defaults, the raw shape of one
//! service's overrides, its schema and its validation into the model's [`Services`].

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::check::{Checker, Path};
use crate::config::tree::Text;
use crate::config::units::{self, LatencyDist, choice, int_in};
use crate::scenario::model::{CommitPolicy, Service, Services};

const SERVICE_NAMES: [&str; 5] = ["payment", "inventory", "email", "warehouse", "analytics"];

/// The standard topology: what each service looks like when the file does not say.
fn default_service(name: &str) -> Service {
    let ms = Duration::from_millis;
    let (replicas, latency) = match name {
        "payment" => (
            4,
            LatencyDist::Uniform {
                low: ms(5),
                high: ms(20),
            },
        ),
        "inventory" => (
            2,
            LatencyDist::Uniform {
                low: ms(1),
                high: ms(5),
            },
        ),
        "email" => (2, LatencyDist::Fixed(ms(30))),
        "warehouse" => (
            2,
            LatencyDist::Uniform {
                low: ms(10),
                high: ms(50),
            },
        ),
        _ => (1, LatencyDist::Fixed(ms(1))),
    };
    Service {
        enabled: true,
        replicas,
        concurrency: 256,
        latency,
        idempotent: true,
        commit: CommitPolicy::AfterEffect,
        max_deliveries: None,
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[schemars(with = "Option<bool>")]
    pub enabled: Option<Text>,
    #[schemars(with = "Option<crate::config::schema::Int<1, 64>>")]
    pub replicas: Option<Text>,
    /// Deliveries a replica handles at once (per-key order is kept regardless).
    #[schemars(with = "Option<crate::config::schema::Int<1, 100000>>")]
    pub concurrency: Option<Text>,
    /// `5ms`, `5ms..20ms`, `normal(10ms, 2ms)` or `lognormal(120ms, 0.4)`.
    #[schemars(with = "Option<crate::config::schema::Latency>")]
    pub latency: Option<Text>,
    /// `false` for negative controls: every delivery applies its effect again.
    #[schemars(with = "Option<bool>")]
    pub idempotent: Option<Text>,
    /// `after_effect` (at-least-once, default) or `on_receive` (at-most-once).
    #[schemars(with = "Option<crate::scenario::model::CommitPolicy>")]
    pub commit: Option<Text>,
    /// Deliveries of one event before it is moved to `order.dead_letter` (default: retry
    /// forever).
    #[schemars(with = "Option<crate::config::schema::Int<1, 1000>>")]
    pub max_deliveries: Option<Text>,
}

/// The standard topology; override only what differs.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServices {
    #[schemars(with = "Option<RawService>")]
    pub payment: Option<Spanned<RawService>>,
    #[schemars(with = "Option<RawService>")]
    pub inventory: Option<Spanned<RawService>>,
    #[schemars(with = "Option<RawService>")]
    pub email: Option<Spanned<RawService>>,
    #[schemars(with = "Option<RawService>")]
    pub warehouse: Option<Spanned<RawService>>,
    #[schemars(with = "Option<RawService>")]
    pub analytics: Option<Spanned<RawService>>,
}

/// Checks `services:`: the standard topology, with what the file overrides.
pub fn validate(raw: Option<&Spanned<RawServices>>, check: &mut Checker, path: &Path) -> Services {
    let service = |check: &mut Checker, name: &str, raw: Option<&Spanned<RawService>>| {
        let default = default_service(name);
        match raw {
            Some(raw) => one_service(&raw.value, default, check, &path.key(name)),
            None => default,
        }
    };
    let raw = raw.map(|r| &r.value);
    Services {
        payment: service(
            check,
            SERVICE_NAMES[0],
            raw.and_then(|r| r.payment.as_ref()),
        ),
        inventory: service(
            check,
            SERVICE_NAMES[1],
            raw.and_then(|r| r.inventory.as_ref()),
        ),
        email: service(check, SERVICE_NAMES[2], raw.and_then(|r| r.email.as_ref())),
        warehouse: service(
            check,
            SERVICE_NAMES[3],
            raw.and_then(|r| r.warehouse.as_ref()),
        ),
        analytics: service(
            check,
            SERVICE_NAMES[4],
            raw.and_then(|r| r.analytics.as_ref()),
        ),
    }
}

fn one_service(raw: &RawService, default: Service, check: &mut Checker, path: &Path) -> Service {
    Service {
        enabled: check.or_default(
            &raw.enabled,
            &path.key("enabled"),
            default.enabled,
            units::parse_bool,
        ),
        replicas: check.or_default(
            &raw.replicas,
            &path.key("replicas"),
            default.replicas,
            |t| int_in(t, 1, 64).map(|n| n as u32),
        ),
        concurrency: check.or_default(
            &raw.concurrency,
            &path.key("concurrency"),
            default.concurrency,
            |t| int_in(t, 1, 100_000).map(|n| n as u32),
        ),
        latency: check.or_default(
            &raw.latency,
            &path.key("latency"),
            default.latency,
            units::parse_latency,
        ),
        idempotent: check.or_default(
            &raw.idempotent,
            &path.key("idempotent"),
            default.idempotent,
            units::parse_bool,
        ),
        commit: check.or_default(&raw.commit, &path.key("commit"), default.commit, |t| {
            choice(
                t,
                "a commit policy",
                &[
                    ("after_effect", CommitPolicy::AfterEffect),
                    ("on_receive", CommitPolicy::OnReceive),
                ],
            )
        }),
        max_deliveries: check.or_default(
            &raw.max_deliveries,
            &path.key("max_deliveries"),
            default.max_deliveries,
            |t| int_in(t, 1, 1000).map(|n| Some(n as u32)),
        ),
    }
}
