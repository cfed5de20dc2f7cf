//! `services:` in a scenario file: the standard topology's defaults, the raw shape of one
//! service's overrides, its schema and its validation into the model's [`Services`].

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::check::{Checker, Path};
use crate::config::schema;
use crate::config::tree::Scalar;
use crate::config::units::{self, LatencyDist, choice, int_in};
use crate::services::model::{CommitPolicy, Service, Services};
use crate::topology::ServiceKind;

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
    pub enabled: Option<Scalar<bool>>,
    pub replicas: Option<Scalar<schema::Int<1, 64>>>,
    /// Deliveries a replica handles at once (per-key order is kept regardless).
    pub concurrency: Option<Scalar<schema::Int<1, 100000>>>,
    /// `5ms`, `5ms..20ms`, `normal(10ms, 2ms)` or `lognormal(120ms, 0.4)`.
    pub latency: Option<Scalar<schema::Latency>>,
    /// `false` for negative controls: every delivery applies its effect again.
    pub idempotent: Option<Scalar<bool>>,
    /// `after_effect` (at-least-once, default) or `on_receive` (at-most-once).
    pub commit: Option<Scalar<crate::services::model::CommitPolicy>>,
    /// Deliveries of one event before it is moved to `order.dead_letter` (default: retry
    /// forever).
    pub max_deliveries: Option<Scalar<schema::Int<1, 1000>>>,
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
    let raw = raw.map(|r| &r.value);
    let mut service = |kind: ServiceKind| {
        let name = kind.name();
        let default = default_service(name);
        match raw.and_then(|r| r.get(kind)) {
            Some(raw) => one_service(&raw.value, default, check, &path.key(name)),
            None => default,
        }
    };
    Services {
        payment: service(ServiceKind::Payment),
        inventory: service(ServiceKind::Inventory),
        email: service(ServiceKind::Email),
        warehouse: service(ServiceKind::Warehouse),
        analytics: service(ServiceKind::Analytics),
    }
}

impl RawServices {
    fn get(&self, kind: ServiceKind) -> Option<&Spanned<RawService>> {
        match kind {
            ServiceKind::Payment => self.payment.as_ref(),
            ServiceKind::Inventory => self.inventory.as_ref(),
            ServiceKind::Email => self.email.as_ref(),
            ServiceKind::Warehouse => self.warehouse.as_ref(),
            ServiceKind::Analytics => self.analytics.as_ref(),
        }
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
