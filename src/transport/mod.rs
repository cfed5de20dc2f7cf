//! The seam between the harness and a broker.
//!
//! Services, checks and reports see only [`Transport`], [`Subscription`] and [`Delivery`];
//! adding a broker means one folder here, a [`BrokerKind`] variant with its URL scheme
//! (`scenario/target.rs`, the schema mirror), and passing the conformance suite in
//! `tests/transport.rs` (docs/adding-a-transport.md walks through it). A transport never records observations
//! itself: the driver and the services do that around its calls, so every broker is measured
//! the same way.
//!
//! Guarantees are per transport and documented in each one's module (DESIGN.md §6). The
//! contract they all share:
//! - `publish` resolves to `Ok(Ack)` only once the broker has accepted the event durably by
//!   its own definition (append, PubAck, publisher confirm, XADD id).
//! - Deliveries to a group are at-least-once: an event whose delivery was not acked before
//!   its consumer stopped is delivered again to another member of the group.
//! - Dropping a [`Subscription`] is a crash: the member leaves without acking what it holds.

pub mod embedded;
pub mod http;
pub mod kafka;
pub mod nats;
pub mod rabbitmq;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::RunTime;
use crate::events::{Envelope, Topic};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The target as given cannot be used (an unset `${ENV}`, a remote host without the
    /// opt-in): a scenario or command-line error, exit code 2.
    #[error("target {target}: {reason}")]
    Config { target: String, reason: String },
    #[error("cannot reach the broker at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("publish to {topic} was refused: {reason}")]
    Publish { topic: Topic, reason: String },
    /// The event was sent but no answer came (the connection dropped, the ack timed out): the
    /// broker may or may not have it. Counted apart from refused publishes and from loss.
    #[error("publish to {topic} got no answer: {reason}")]
    Indeterminate { topic: Topic, reason: String },
    #[error("group {group}: {reason}")]
    Group { group: String, reason: String },
}

/// The broker's acknowledgement of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: u32,
    pub offset: u64,
}

/// What a report states about the delivery settings in use.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct TransportInfo {
    pub kind: String,
    /// Human-readable settings: acks, commit policy, partitions, retention, ...
    pub settings: Vec<(String, String)>,
}

/// Where a rewound group starts reading again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindTo {
    /// The oldest retained event.
    Earliest,
    /// The first event published at or after this run time.
    Time(RunTime),
}

pub trait Transport: Send + Sync + 'static {
    fn info(&self) -> TransportInfo;

    /// Publish one event; resolves when the broker acked it.
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>>;

    /// Join `group` as a new member consuming `topics`. Every member of a group must name the
    /// same topics.
    ///
    /// Resolves only once the member is ready: events published from then on reach the
    /// group (on Kafka, once the member holds its partition assignment). The run starts its
    /// clock after every member has joined, so however long joining takes is setup, never
    /// load the system under test was late for.
    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        topics: &'a [Topic],
    ) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>>;

    /// Move the group's committed position back; members re-read from there.
    fn rewind<'a>(
        &'a self,
        group: &'a str,
        to: RewindTo,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Events published to the group's topics and not yet committed by it.
    fn lag<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, TransportError>>;

    /// Removes what this run created on the broker (streams, topics, queues, groups under
    /// its namespace). Called once at the end of a run; the embedded broker has nothing to do.
    fn cleanup(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
}

/// One member of a consumer group.
pub trait Subscription: Send {
    /// The next delivery, waiting for one; `Ok(None)` once the transport is shut down.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>>;
}

/// One arrival of one event at one member.
pub struct Delivery {
    pub envelope: Arc<Envelope>,
    /// The broker says this event was handed out before (to this group).
    pub redelivered: bool,
    pub ack: Box<dyn AckHandle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// Settles a delivery. Acking commits it; nacking asks for it to be delivered again.
/// Acks that arrive after the member lost the event's partition are ignored by the broker,
/// exactly like a Kafka commit after a rebalance: the event is redelivered elsewhere.
pub trait AckHandle: Send {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;
    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;
}

/// The networked brokers doorbuster speaks to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    Kafka,
    Nats,
    Rabbitmq,
    Redis,
}

impl BrokerKind {
    pub const ALL: [BrokerKind; 4] = [Self::Kafka, Self::Nats, Self::Rabbitmq, Self::Redis];

    /// The URL scheme that selects this broker (`kafka://`, `nats://`, `amqp://`, `redis://`).
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Nats => "nats",
            Self::Rabbitmq => "amqp",
            Self::Redis => "redis",
        }
    }
}

/// RabbitMQ queue types (`x-queue-type`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
    Stream,
}

/// Everything a networked transport needs to connect; built from the scenario's `target:`
/// (with `${ENV}` references expanded) or from `--target URL`.
#[derive(Clone)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// The URL with credentials expanded. Never print it: use [`BrokerConfig::redacted_url`].
    pub url: String,
    /// Prefix of every stream, topic, exchange, queue and group name the run creates. Unique
    /// per run, so runs (and tests) never see each other's events.
    pub namespace: String,
    /// Partitions per topic where the broker has them (Kafka); ignored elsewhere.
    pub partitions: u32,
    pub options: BrokerOptions,
}

impl BrokerConfig {
    /// The URL with any password replaced by `***`, for reports and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("kind", &self.kind)
            .field("url", &self.redacted_url())
            .field("namespace", &self.namespace)
            .field("partitions", &self.partitions)
            .field("options", &self.options)
            .finish()
    }
}

/// `scheme://user:secret@host` becomes `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Delivery settings a scenario can choose; each transport uses the ones that apply to it
/// and states them in [`Transport::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// Kafka: `acks=all` (true) or `acks=1`.
    pub acks_all: bool,
    /// Kafka: `enable.idempotence`.
    pub idempotent: bool,
    /// RabbitMQ: the type of the queue declared per service.
    pub queue_type: QueueType,
    /// How long a delivery may stay unacked before the broker hands it to another member
    /// (NATS AckWait; Redis: the idle time after which XAUTOCLAIM takes it over).
    pub ack_wait: Duration,
    /// Deliveries of one event before the broker gives up on it (NATS MaxDeliver, RabbitMQ
    /// quorum `x-delivery-limit`); `None` means no limit.
    pub max_deliver: Option<u32>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            acks_all: true,
            idempotent: true,
            queue_type: QueueType::Classic,
            ack_wait: Duration::from_secs(30),
            max_deliver: None,
        }
    }
}

/// Builds the transport a scenario targets. A networked broker that cannot be reached is
/// [`TransportError::Unreachable`] (exit code 3).
pub async fn connect(
    target: &crate::scenario::model::Target,
    clock: crate::clock::Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    use crate::scenario::model::Target;
    match target {
        Target::Embedded(cfg) => Ok(Arc::new(embedded::EmbeddedBroker::new(
            cfg.partitions,
            cfg.retention,
            clock,
        ))),
        Target::Broker(b) => connect_broker(&broker_config(b)?, clock).await,
        Target::Http(h) => http::connect(h).await,
    }
}

/// A target URL as written, made ready to connect: `${ENV}` references expanded and the one
/// check of a target URL applied ([`crate::scenario::target::check_expanded`]: it parses, a
/// port from 1 to 65535, a host outside loopback refused unless `allow_remote`). Scenario
/// validation has made the same check with the file position; this call is what stands
/// between a target built in code (tests, `bench`) and the network.
pub fn expand_and_guard(url: &str, allow_remote: bool) -> Result<String, TransportError> {
    let config_error = |e: crate::config::units::UnitError| TransportError::Config {
        target: redact_url(url),
        reason: match e.hint {
            Some(hint) => format!("{} ({hint})", e.message),
            None => e.message,
        },
    };
    let expanded = crate::config::env::expand_env(url).map_err(config_error)?;
    crate::scenario::target::check_expanded(&expanded, &redact_url(url), allow_remote)
        .map_err(config_error)?;
    Ok(expanded)
}

/// Whether the client library of the URL's scheme accepts it, asked without connecting:
/// validation refuses exactly what connecting would. The reason may quote the URL.
pub fn client_parses(url: &str) -> Result<(), String> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("redis" | "rediss") => ::redis::IntoConnectionInfo::into_connection_info(url)
            .map(|_| ())
            .map_err(|e| format!("is not a Redis URL: {e}")),
        Some("amqp" | "amqps") => url
            .parse::<lapin::uri::AMQPUri>()
            .map(|_| ())
            .map_err(|e| format!("is not an AMQP URL: {e}")),
        _ => Ok(()),
    }
}

/// The connection settings of a scenario's broker target: `${ENV}` expanded, the loopback
/// guard applied, a fresh namespace for the run.
pub fn broker_config(
    b: &crate::scenario::model::BrokerTarget,
) -> Result<BrokerConfig, TransportError> {
    Ok(BrokerConfig {
        kind: b.kind,
        url: expand_and_guard(&b.url, b.allow_remote)?,
        namespace: run_namespace(),
        partitions: b.partitions,
        options: BrokerOptions {
            acks_all: b.acks_all,
            idempotent: b.idempotent,
            queue_type: b.queue_type,
            ack_wait: b.ack_wait,
            max_deliver: b.max_deliver,
        },
    })
}

/// `doorbuster-<unix ms in hex>`: unique per run, a valid name on every broker.
fn run_namespace() -> String {
    let ms = crate::clock::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("doorbuster-{ms:x}")
}

/// Connects to a networked broker.
pub async fn connect_broker(
    cfg: &BrokerConfig,
    clock: crate::clock::Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    match cfg.kind {
        BrokerKind::Kafka => kafka::connect(cfg, clock).await,
        BrokerKind::Nats => nats::connect(cfg, clock).await,
        BrokerKind::Rabbitmq => rabbitmq::connect(cfg, clock).await,
        BrokerKind::Redis => self::redis::connect(cfg, clock).await,
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_a_report() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://:pw@localhost:6379/0"),
            "redis://:***@localhost:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("nats://token@host:4222"), "nats://***@host:4222");
    }
}
