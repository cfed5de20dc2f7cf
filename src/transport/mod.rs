//! The seam between the harness and a broker.
//!
//! Services, checks and reports see only [`Transport`], [`Subscription`] and [`Delivery`];
//! adding a broker means one folder here, a [`BrokerKind`] variant with its URL scheme
//! (`target_url.rs`, the schema mirror), and passing the conformance suite in
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

mod backoff;
pub mod embedded;
mod error;
pub mod http;
pub mod kafka;
pub mod nats;
pub mod rabbitmq;
pub mod redis;
pub mod target;
pub mod target_url;

pub use error::{Cause, TransportError};
pub use target::Target;
pub use target_url::{expand_and_guard, redact_url};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::RunTime;
use crate::events::{Envelope, Topic};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    /// A host outside loopback is refused unless this is set (DESIGN.md §11).
    pub allow_remote: bool,
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
            .field("allow_remote", &self.allow_remote)
            .finish()
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
    target: &Target,
    clock: crate::clock::Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
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

/// The connection settings of a scenario's broker target: `${ENV}` expanded, the loopback
/// guard applied, a fresh namespace for the run.
pub fn broker_config(b: &target::BrokerTarget) -> Result<BrokerConfig, TransportError> {
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
        allow_remote: b.allow_remote,
    })
}

/// `doorbuster-<unix ms in hex>`: unique per run, a valid name on every broker.
fn run_namespace() -> String {
    let ms = crate::clock::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("doorbuster-{ms:x}")
}

/// Connects to a networked broker. The loopback guard is applied here too, before any
/// client is built: a `BrokerConfig` made in code (tests, `bench`) passes the same gate as a
/// scenario's target.
pub async fn connect_broker(
    cfg: &BrokerConfig,
    clock: crate::clock::Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    target_url::check_expanded(&cfg.url, &cfg.redacted_url(), cfg.allow_remote)
        .map_err(|e| target_url::refused(cfg.redacted_url(), e))?;
    match cfg.kind {
        BrokerKind::Kafka => kafka::connect(cfg, clock).await,
        BrokerKind::Nats => nats::connect(cfg, clock).await,
        BrokerKind::Rabbitmq => rabbitmq::connect(cfg, clock).await,
        BrokerKind::Redis => self::redis::connect(cfg, clock).await,
    }
}
