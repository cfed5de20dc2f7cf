//! The seam between the harness and a broker.
//!
//! Services, checks and reports see only [`Transport`], [`Subscription`] and [`Delivery`];
//! adding a broker means one folder here (its `config.rs` names its URL schemes and takes its
//! `target:` keys), one line in `brokers!` below, and one line running the conformance suite
//! in `tests/transport.rs` (docs/adding-a-transport.md walks through it). A transport never records observations
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
pub mod config;
pub mod embedded;
mod error;
mod groups;
pub mod http;
// The networked brokers' folders, declared here rather than by `brokers!` below so that
// rustfmt (which does not look into macro calls) formats them.
pub mod kafka;
pub mod nats;
pub mod rabbitmq;
pub mod redis;
pub mod settings;
pub mod target;
pub mod target_url;

pub use error::{Cause, TransportError};
pub use rabbitmq::config::QueueType;
pub use target::Target;
pub use target_url::{expand_and_guard, redact_url};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

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
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
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

#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    fn info(&self) -> TransportInfo;

    /// Publish one event; resolves when the broker acked it. Not an `async fn`: a broker may
    /// take the event in order at the call (the embedded one does) and resolve later.
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>>;

    /// Join `group` as a new member consuming `topics`. Every member of a group must name the
    /// same topics.
    ///
    /// Resolves only once the member is ready: events published from then on reach the
    /// group (on Kafka, once the member holds its partition assignment). The run starts its
    /// clock after every member has joined, so however long joining takes is setup, never
    /// load the system under test was late for.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError>;

    /// Move the group's committed position back; members re-read from there.
    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError>;

    /// Events published to the group's topics and not yet committed by it.
    async fn lag(&self, group: &str) -> Result<u64, TransportError>;

    /// Removes what this run created on the broker (streams, topics, queues, groups under
    /// its namespace). Called once at the end of a run; the embedded broker has nothing to do.
    async fn cleanup(&self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Reads what is published to `name` from now on: the user's own topic, stream, subject
    /// or exchange, as the broker names it (observe mode). A tap joins no consumer group and
    /// changes nothing the user's consumers see; it resolves once it is in place, so that
    /// every event published after that reaches it. A broker without taps says so.
    async fn tap(&self, name: &str) -> Result<Box<dyn Tap>, TransportError> {
        Err(TransportError::Group {
            group: format!("tap {name}"),
            source: Cause::Observed(format!("{} has no taps", self.info().kind)),
        })
    }

    /// Removes the named groups of the run's namespace that this process never joined,
    /// with what they hold: the merge of a sharded run, whose shards joined them, calls it
    /// before [`Transport::cleanup`]. On RabbitMQ a group is a queue of its own; on Redis and
    /// NATS groups go with the streams `cleanup` deletes, and Kafka's consumer groups expire
    /// by the broker's offsets retention: nothing to do there.
    async fn forget_groups(&self, _groups: &[String]) -> Result<(), TransportError> {
        Ok(())
    }

    /// The store the simulated services' replicas in several processes share for one run
    /// (the shards of one `--run-id`), on the broker itself, in the run's namespace: where
    /// their idempotency claims and the payment provider's key records live, as a real
    /// service's replicas share one database. `None` on a broker without one; services then
    /// keep their state in the process.
    async fn shared_store(&self) -> Result<Option<Arc<dyn SharedStore>>, TransportError> {
        Ok(None)
    }
}

/// Run-wide state the shards of one run id share (see [`Transport::shared_store`]). Keys
/// are numbers (order ids, key hashes) within a named space; every call is one atomic
/// operation on the broker, so replicas in different processes decide as one.
#[async_trait::async_trait]
pub trait SharedStore: Send + Sync + 'static {
    /// Marks `key` in `space`: true when this call marked it first (the unique-constraint
    /// insert a service makes before applying an effect).
    async fn claim(&self, space: &str, key: u64) -> Result<bool, TransportError>;

    /// Whether `key` in `space` is marked.
    async fn claimed(&self, space: &str, key: u64) -> Result<bool, TransportError>;

    /// Stores `value` under `key` in `space` unless a value is there already: `None` when
    /// this call stored it, else the value that was there (and stays).
    async fn put_first(
        &self,
        space: &str,
        key: u64,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError>;
}

/// A reader of one of the user's topics (see [`Transport::tap`]).
pub trait Tap: Send {
    /// The next event on the topic, waiting for one; `Ok(None)` once the tap is closed.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Tapped>, TransportError>>;
}

/// One event a tap read, as the user's service wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tapped {
    /// The message key, when the broker has keys (Kafka's key, a NATS or RabbitMQ routing
    /// subject, a Redis Streams field named `key`).
    pub key: Option<Bytes>,
    /// Headers (Kafka, NATS, AMQP properties' headers), or a Redis Streams entry's fields.
    pub headers: Vec<(String, Bytes)>,
    /// The body (a Redis Streams entry's `payload` field).
    pub body: Bytes,
    /// When the tap received it, on the run's clock.
    pub at: RunTime,
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

/// The one list of networked brokers: a variant and the folder that implements it. The
/// folder's `config.rs` declares how a scenario names the broker and the options it takes
/// ([`settings::BrokerSettings`]); its `mod.rs` has `connect(cfg, options, clock)`. Everything
/// that names a broker (the URL schemes, `target:` words, the schema, validation, connecting)
/// goes through the items this makes.
macro_rules! brokers {
    ($($variant:ident => $folder:ident),+ $(,)?) => {

        /// The networked brokers doorbuster speaks to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum BrokerKind {
            $($variant,)+
        }

        /// A networked broker's validated options: the variant is the broker its URL's
        /// scheme selected, the value its folder's `config::Options`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(tag = "broker", rename_all = "snake_case")]
        pub enum BrokerOptions {
            $($variant($folder::config::Options),)+
        }

        impl BrokerKind {
            pub const ALL: &'static [BrokerKind] = &[$(BrokerKind::$variant,)+];

            /// How a scenario names the broker (its folder's `config.rs`).
            pub fn spec(self) -> &'static settings::BrokerSpec {
                match self {
                    $(BrokerKind::$variant => {
                        &<$folder::config::Options as settings::BrokerSettings>::SPEC
                    })+
                }
            }

            /// The keys the broker takes in a `target:` mapping.
            pub fn keys(self) -> Vec<String> {
                match self {
                    $(BrokerKind::$variant => settings::keys_of::<
                        <$folder::config::Options as settings::BrokerSettings>::Keys,
                    >(),)+
                }
            }
        }

        impl BrokerOptions {
            pub fn kind(&self) -> BrokerKind {
                match self {
                    $(BrokerOptions::$variant(_) => BrokerKind::$variant,)+
                }
            }

            /// Every option at its default.
            pub fn defaults(kind: BrokerKind) -> BrokerOptions {
                match kind {
                    $(BrokerKind::$variant => BrokerOptions::$variant(Default::default()),)+
                }
            }

            /// Why a consumer group cannot be rewound (a `replay` fault), and what to
            /// change; `None` when it can.
            pub fn cannot_rewind(&self) -> Option<(&'static str, &'static str)> {
                match self {
                    $(BrokerOptions::$variant(o) => settings::BrokerSettings::cannot_rewind(o),)+
                }
            }

            pub(crate) fn validate(
                kind: BrokerKind,
                check: &mut crate::config::check::Checker,
                keys: &mut settings::OptionKeys,
                path: &crate::config::check::Path,
            ) -> BrokerOptions {
                match kind {
                    $(BrokerKind::$variant => BrokerOptions::$variant(
                        <$folder::config::Options as settings::BrokerSettings>::validate(
                            check, keys, path,
                        ),
                    ),)+
                }
            }
        }

        /// Each broker's fragment of the `target:` schema.
        fn key_schemas(generator: &mut schemars::SchemaGenerator) -> Vec<schemars::Schema> {
            vec![$(<<$folder::config::Options as settings::BrokerSettings>::Keys
                as schemars::JsonSchema>::json_schema(generator),)+]
        }

        /// Connects to a networked broker. The loopback guard is applied here too, before
        /// any client is built: a `BrokerConfig` made in code (tests, `bench`) passes the
        /// same gate as a scenario's target.
        pub async fn connect_broker(
            cfg: &BrokerConfig,
            clock: crate::clock::Clock,
        ) -> Result<Arc<dyn Transport>, TransportError> {
            target_url::check_expanded(&cfg.url, &cfg.redacted_url(), cfg.allow_remote)
                .map_err(|e| target_url::refused(cfg.redacted_url(), e))?;
            match &cfg.options {
                $(BrokerOptions::$variant(options) => {
                    $folder::connect(cfg, options, clock).await
                })+
            }
        }
    };
}

brokers! {
    Kafka => kafka,
    Nats => nats,
    Rabbitmq => rabbitmq,
    Redis => redis,
}

impl BrokerKind {
    /// The URL scheme that is the broker's own (`kafka://`, `nats://`, `amqp://`, `redis://`).
    pub fn scheme(self) -> &'static str {
        self.spec().schemes[0].0
    }

    /// The broker a kind name (`target: redis`) selects.
    pub fn of_name(name: &str) -> Option<BrokerKind> {
        BrokerKind::ALL
            .iter()
            .copied()
            .find(|k| k.spec().name == name)
    }

    /// Every URL scheme a broker answers to, with its broker and default port, in list order.
    pub fn schemes() -> impl Iterator<Item = (&'static str, BrokerKind, u16)> {
        BrokerKind::ALL.iter().flat_map(|&kind| {
            kind.spec()
                .schemes
                .iter()
                .map(move |&(scheme, port)| (scheme, kind, port))
        })
    }

    /// The broker a URL scheme selects.
    pub fn of_scheme(scheme: &str) -> Option<BrokerKind> {
        Self::schemes()
            .find(|(s, ..)| *s == scheme)
            .map(|(_, kind, _)| kind)
    }
}

/// Everything a networked transport needs to connect; built from the scenario's `target:`
/// (with `${ENV}` references expanded) or from `--target URL`.
#[derive(Clone)]
pub struct BrokerConfig {
    /// The URL with credentials expanded. Never print it: use [`BrokerConfig::redacted_url`].
    pub url: String,
    /// Prefix of every stream, topic, exchange, queue and group name the run creates. Unique
    /// per run, so runs (and tests) never see each other's events.
    pub namespace: String,
    /// The broker (the variant) and its options.
    pub options: BrokerOptions,
    /// A host outside loopback is refused unless this is set (DESIGN.md §11).
    pub allow_remote: bool,
    /// Observe mode: the user's own topic (stream, subject, exchange) the orders are
    /// published to, instead of the run's `order.created`. The user's: never created or
    /// deleted by the run.
    pub orders_to: Option<String>,
}

impl BrokerConfig {
    pub fn kind(&self) -> BrokerKind {
        self.options.kind()
    }

    /// The broker's name of `topic`: `{namespace}{sep}{topic}` for what the run creates, or
    /// the user's own topic for `order.created` in observe mode.
    pub fn topic_name(&self, topic: Topic, sep: &str) -> String {
        match (&self.orders_to, topic) {
            (Some(name), Topic::OrderCreated) => name.clone(),
            _ => format!("{}{sep}{}", self.namespace, topic.name()),
        }
    }

    /// Whether the run made `topic` on the broker (and removes it at the end): every topic
    /// but the user's own.
    pub fn owns(&self, topic: Topic) -> bool {
        self.orders_to.is_none() || topic != Topic::OrderCreated
    }

    /// The URL with any password replaced by `***`, for reports and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &self.redacted_url())
            .field("namespace", &self.namespace)
            .field("options", &self.options)
            .field("allow_remote", &self.allow_remote)
            .field("orders_to", &self.orders_to)
            .finish()
    }
}

/// Builds the transport a scenario targets. A networked broker that cannot be reached is
/// [`TransportError::Unreachable`] (exit code 3).
pub async fn connect(
    target: &Target,
    clock: crate::clock::Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    connect_in(target, clock, None).await
}

/// [`connect`], in `namespace` on a networked broker instead of one new to the run: the
/// namespace the shards of one `--run-id` share.
pub async fn connect_in(
    target: &Target,
    clock: crate::clock::Clock,
    namespace: Option<String>,
) -> Result<Arc<dyn Transport>, TransportError> {
    match target {
        Target::Embedded(cfg) if cfg.free_committed => Ok(Arc::new(
            embedded::EmbeddedBroker::freeing_committed(cfg.partitions, cfg.retention, clock),
        )),
        Target::Embedded(cfg) => Ok(Arc::new(embedded::EmbeddedBroker::new(
            cfg.partitions,
            cfg.retention,
            clock,
        ))),
        Target::Broker(b) => {
            let mut config = broker_config(b)?;
            if let Some(namespace) = namespace {
                config.namespace = namespace;
            }
            connect_broker(&config, clock).await
        }
        Target::Http(h) => http::connect(h).await,
    }
}

/// The connection settings of a scenario's broker target: `${ENV}` expanded, the loopback
/// guard applied, a fresh namespace for the run.
pub fn broker_config(b: &target::BrokerTarget) -> Result<BrokerConfig, TransportError> {
    Ok(BrokerConfig {
        url: expand_and_guard(&b.url, b.allow_remote)?,
        namespace: run_namespace(),
        options: b.options.clone(),
        allow_remote: b.allow_remote,
        orders_to: b.orders_to.clone(),
    })
}

/// `doorbuster-<unix ms in hex>`: unique per run, a valid name on every broker.
fn run_namespace() -> String {
    let ms = crate::clock::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("doorbuster-{ms:x}")
}
