//! What a scenario's `target:` names, checked: the embedded broker, a networked broker or a
//! checkout endpoint, each with its settings. The URLs stay as written (`${ENV}` references
//! unexpanded) until [`super::connect`] expands and guards them.

use super::target_url::{check_has_host, is_http_scheme, parse_url};
use super::{BrokerKind, BrokerOptions};
use crate::config::env::check_references;
use crate::config::units::UnitError;

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The in-process broker (the default).
    Embedded(EmbeddedTarget),
    /// A networked broker: Kafka, NATS JetStream, RabbitMQ or Redis Streams.
    Broker(BrokerTarget),
    /// A checkout endpoint: orders are POSTed to it; the pipeline behind it is not observed.
    Http(HttpTarget),
}

/// A checkout endpoint as the scenario (or `--target`) names it.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct HttpTarget {
    /// The URL as written (`http://` or `https://`); `${ENV}` references are expanded only
    /// when connecting.
    pub url: String,
    /// Request headers sent with every order (`Authorization: "Bearer ${SHOP_TOKEN}"`),
    /// values expanded only when connecting.
    pub headers: Vec<(String, String)>,
    /// A host outside loopback is refused unless this is set (or `--allow-remote`).
    pub allow_remote: bool,
}

/// A networked broker as the scenario (or `--target`) names it.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct BrokerTarget {
    /// The URL as written: `${ENV}` references are expanded only when connecting, so
    /// credentials never reach a report.
    pub url: String,
    /// The broker its URL's scheme selected, with the options its folder validated.
    pub options: BrokerOptions,
    /// A host outside loopback is refused unless this is set (or `--allow-remote`).
    pub allow_remote: bool,
    /// Observe mode: the user's topic the orders go to (`observe.orders_to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders_to: Option<String>,
}

impl BrokerTarget {
    /// A broker target with every option at its default.
    pub fn defaults(kind: BrokerKind, url: impl Into<String>) -> BrokerTarget {
        BrokerTarget {
            url: url.into(),
            options: BrokerOptions::defaults(kind),
            allow_remote: false,
            orders_to: None,
        }
    }

    pub fn kind(&self) -> BrokerKind {
        self.options.kind()
    }
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct EmbeddedTarget {
    /// Partitions per topic (default 12).
    pub partitions: u32,
    /// Events kept per partition before the oldest are dropped (default 1_000_000).
    pub retention: u64,
    /// Free events every group has committed (set by the run unless its timeline replays,
    /// which must re-read them).
    #[serde(default)]
    pub free_committed: bool,
}

impl Default for EmbeddedTarget {
    fn default() -> Self {
        Self {
            partitions: super::settings::PARTITIONS_DEFAULT,
            retention: 1_000_000,
            free_committed: false,
        }
    }
}

/// What a target URL names, every option at its default: a broker or a checkout endpoint.
pub fn target_of_url(url: &str) -> Result<Target, UnitError> {
    if url
        .split_once("://")
        .is_some_and(|(scheme, _)| is_http_scheme(scheme))
    {
        check_references(url)?;
        check_has_host(url)?;
        return Ok(Target::Http(HttpTarget {
            url: url.to_owned(),
            headers: Vec::new(),
            allow_remote: false,
        }));
    }
    let kind = parse_url(url)?;
    Ok(Target::Broker(BrokerTarget::defaults(kind, url)))
}
