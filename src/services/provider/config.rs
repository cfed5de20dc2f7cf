//! `provider:` in a scenario file: the payment-provider mock's raw shape, its schema and its
//! validation into the model's [`Provider`].

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::check::{Checker, Path};
use crate::config::schema;
use crate::config::tree::Scalar;
use crate::config::units::{self, LatencyDist, choice, duration_in, int_in};
use crate::services::provider::model::{Provider, ProviderVia};

/// The card API the payment service calls.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// `http` (a real server on loopback, default) or `in_process`.
    pub via: Option<Scalar<crate::services::provider::model::ProviderVia>>,
    /// Serve the provider's API at this loopback address, for your own payment service to
    /// call (observe mode), e.g. `127.0.0.1:12111`.
    pub listen: Option<Scalar<schema::ListenAddr>>,
    pub latency: Option<Scalar<schema::Latency>>,
    pub timeout: Option<Scalar<schema::Duration>>,
    pub retries: Option<Scalar<schema::Int<0, 20>>>,
    /// How long a key's first answer is kept, at least (default `24h`, as Stripe): a key
    /// reused after it is a new request, charged again.
    pub idempotency_retention: Option<Scalar<schema::Duration>>,
}

/// Stripe prunes keys at least 24 hours old.
pub const RETENTION_DEFAULT: Duration = Duration::from_secs(24 * 3600);
const RETENTION_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Checks `provider:`; every key has a default.
pub fn validate(raw: Option<&Spanned<RawProvider>>, check: &mut Checker, path: &Path) -> Provider {
    let empty = RawProvider {
        via: None,
        listen: None,
        latency: None,
        timeout: None,
        retries: None,
        idempotency_retention: None,
    };
    let raw = raw.map_or(&empty, |r| &r.value);
    Provider {
        via: check.or_default(&raw.via, &path.key("via"), ProviderVia::Http, |t| {
            choice(
                t,
                "a provider transport",
                &[
                    ("http", ProviderVia::Http),
                    ("in_process", ProviderVia::InProcess),
                ],
            )
        }),
        listen: raw
            .listen
            .as_ref()
            .and_then(|t| check.parse(t, &path.key("listen"), units::parse_listen)),
        latency: check.or_default(
            &raw.latency,
            &path.key("latency"),
            LatencyDist::LogNormal {
                median: Duration::from_millis(120),
                sigma: 0.4,
            },
            units::parse_latency,
        ),
        timeout: check.or_default(
            &raw.timeout,
            &path.key("timeout"),
            Duration::from_secs(2),
            |t| duration_in(t, true, units::LATENCY_MAX),
        ),
        retries: check.or_default(&raw.retries, &path.key("retries"), 3, |t| {
            int_in(t, 0, 20).map(|n| n as u32)
        }),
        idempotency_retention: check.or_default(
            &raw.idempotency_retention,
            &path.key("idempotency_retention"),
            RETENTION_DEFAULT,
            |t| duration_in(t, true, RETENTION_MAX),
        ),
    }
}
