//! The Kafka transport (rdkafka / librdkafka), for Kafka and Kafka API-compatible brokers
//! such as Tansu. Services see only [`Transport`]; this module maps the contract onto Kafka.
//!
//! Guarantees (DESIGN.md §6) and how doorbuster maps them:
//! - publish ack = the producer's delivery report: `acks=all` (or `acks=1` when the scenario
//!   says so), optionally an idempotent producer. Topics are `{namespace}.{topic}` with
//!   `partitions` partitions, created when missing (again after a broker lost them). The key
//!   is the order id, so an order's events share a partition and keep their order; the
//!   [`EventMeta`](crate::events::EventMeta) travels as Kafka headers, the payload as the
//!   value. A publish is bounded by `message.timeout.ms` (10 s): refused before it was sent
//!   is [`TransportError::Publish`], sent without an answer (timed out, connection lost) is
//!   [`TransportError::Indeterminate`].
//! - consumer group = a Kafka consumer group `{namespace}.{group}`; each member is its own
//!   consumer (eager rebalancing). `enable.auto.commit` is off: an ack commits, synchronously,
//!   the contiguous acked prefix of its partition (offset = first unacked event).
//! - redelivery = uncommitted on crash or rebalance: a dropped [`Subscription`] closes its
//!   consumer (leaving the group) without committing, and the partition's next owner re-reads
//!   from the committed offset. This process remembers the highest offset each group was
//!   handed per partition, so those re-reads are flagged `redelivered`. A nack is a local
//!   requeue: the member hands the event out again promptly, flagged. Kafka has no delivery
//!   limit (`max_deliver` does not apply) and no per-event ack timeout: a member that dies
//!   without leaving is evicted after `session.timeout.ms`.
//! - broker restart: the producer reconnects by itself; a publish it could not place is
//!   refused or indeterminate as above. After every connection was down, topics the broker
//!   lost are created again and an idempotent producer is replaced (a fresh producer id:
//!   Tansu's memory storage forgets the old one).
//!   A member that sees all brokers down unsubscribes, and subscribes again once the broker
//!   lists every one of its topics (asking for the lost ones to be created again), so its
//!   consumer fetches with the topics' new ids. No fetch may name a topic id the broker does
//!   not know: Tansu 0.6 answers one with a zero topic id and a CurrentLeader tag, on which
//!   librdkafka 2.12 crashes the process (a NULL topic name in `rd_kafka_metadata_update_op`).
//!   Members wait 0.75-1.5 s before reconnecting, so the unsubscribe comes first.
//! - replay = offset reset: rewind commits the earliest retained offset (or the first offset
//!   at a time, by `offsets_for_times`) for every partition, and live members seek there.
//! - lag = events acked to this process's producer (its delivery reports give the high
//!   watermark; rdkafka's `fetch_watermarks` has read too low against Tansu) minus the
//!   group's committed offsets, summed over partitions. A broker that loses its log (Tansu's
//!   memory storage across a restart) makes that figure an overstatement until the log
//!   catches up again.
//! - observe mode: the orders go to the user's own topic (`observe.orders_to`), which the run
//!   never creates, re-creates or deletes. The key is the template's rendered key (else the
//!   order id) and its rendered headers travel beside the `db-*` ones. No client of
//!   doorbuster's asks the broker to create a topic (`allow.auto.create.topics=false`; Tansu
//!   0.6 creates none on a metadata request either way), and librdkafka would hold a record
//!   for a topic the broker does not list until `message.timeout.ms`, so the first order
//!   asks the broker whether the topic exists and, while it does not, every order is
//!   refused at once ([`TransportError::Publish`]). A tap (`tap.rs`) is a consumer without a
//!   group that assigns every partition of the user's topic at its end and commits nothing.

pub mod config;
mod member;
mod tap;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;

use super::{
    Ack, BoxFuture, BrokerConfig, Cause, RewindTo, Subscription, Tap, Transport, TransportError,
    TransportInfo, target_url,
};
use crate::clock::Clock;
use crate::events::{Envelope, Topic};
use crate::sync::lock;

use super::groups::{GroupTopics, Groups};
use member::{MemberShared, RewindCommand};

/// How long the broker has to acknowledge a publish (`message.timeout.ms`).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra patience on top of `PUBLISH_TIMEOUT` before a publish is called indeterminate.
const PUBLISH_GRACE: Duration = Duration::from_secs(3);
/// How long `connect` waits for the broker's metadata before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of admin and offset requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long topics lost with the broker are tried again, and the pause between tries.
const RECREATE_PATIENCE: Duration = Duration::from_secs(60);
const RECREATE_PAUSE: Duration = Duration::from_millis(500);
/// How long a new member waits for its first partition assignment.
const JOIN_TIMEOUT: Duration = Duration::from_secs(45);
/// A member that dies without leaving is evicted after this long.
const SESSION_TIMEOUT_MS: u32 = 6000;

/// A topic-partition of this run.
pub(crate) type Tp = (Topic, i32);

/// Connects to the Kafka cluster at `cfg.url` (`kafka://host:port[,host:port]`), checks that it
/// answers, and creates the run's topics.
pub async fn connect(
    cfg: &BrokerConfig,
    options: &config::Options,
    clock: Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    let servers = bootstrap_servers(&cfg.url).map_err(|e| TransportError::Config {
        target: cfg.redacted_url(),
        source: e.into(),
    })?;
    let unreachable = |source: Cause| TransportError::Unreachable {
        target: cfg.redacted_url(),
        source,
    };
    let admin: AdminClient<DefaultClientContext> = base_config(&servers)
        .create()
        .map_err(|e| unreachable(e.into()))?;
    let admin = Arc::new(admin);
    // librdkafka retries a dead address forever; one bounded metadata request tells.
    let probe = admin.clone();
    tokio::task::spawn_blocking(move || probe.inner().fetch_metadata(None, CONNECT_TIMEOUT))
        .await
        .map_err(|e| unreachable(e.into()))?
        .map_err(|e| {
            unreachable(Cause::from(e).context(format!("no metadata within {CONNECT_TIMEOUT:?}")))
        })?;
    let producer = new_producer(options, &servers).map_err(|e| unreachable(e.into()))?;
    let inner = Arc::new(Inner {
        cfg: cfg.clone(),
        options: options.clone(),
        servers,
        clock,
        admin,
        producer: RwLock::new(producer),
        high: Mutex::new(HashMap::new()),
        groups: Groups::default(),
        ensuring_topics: AtomicBool::new(false),
        user_topic: tokio::sync::OnceCell::new(),
        members_running: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    });
    inner
        .ensure_topics()
        .await
        .map_err(|e| unreachable(e.context("cannot create topics")))?;
    Ok(Arc::new(KafkaTransport { inner }))
}

/// `kafka://a:9092,b:9092/` becomes `a:9092,b:9092`: built from the endpoints the loopback
/// guard judged ([`target_url::endpoints`]), so librdkafka is given exactly the hosts that
/// were checked. Reading the text after `://` instead let `kafka://127.0.0.1:9092/,remote:9092`
/// past the guard (the guard read one host, librdkafka two).
fn bootstrap_servers(url: &str) -> Result<String, crate::config::units::UnitError> {
    let endpoints = target_url::endpoints(url, &target_url::redact_url(url))?;
    Ok(endpoints
        .iter()
        .map(|e| match e.host.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]:{}", e.port),
            Err(_) => format!("{}:{}", e.host, e.port),
        })
        .collect::<Vec<_>>()
        .join(","))
}

fn base_config(servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", servers)
        .set("client.id", "doorbuster")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        // doorbuster creates its own topics and never the user's: no client of it asks the
        // broker to create a topic it names (librdkafka's producer does by default).
        .set("allow.auto.create.topics", "false");
    config
}

fn producer_config(options: &config::Options, servers: &str) -> ClientConfig {
    let mut config = base_config(servers);
    config
        .set("acks", options.acks())
        .set(
            "enable.idempotence",
            options.idempotent_producer().to_string(),
        )
        .set(
            "message.timeout.ms",
            PUBLISH_TIMEOUT.as_millis().to_string(),
        )
        .set("linger.ms", "2")
        .set("partitioner", "consistent_random");
    config
}

/// The producer's context: notes when every broker connection was down, since a broker
/// that restarted may have forgotten the producer's id (Tansu's memory storage does).
struct ProducerWatch {
    brokers_lost: Arc<AtomicBool>,
}

impl ClientContext for ProducerWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_lost.store(true, Ordering::Release);
        }
        tracing::debug!(%error, reason, "kafka producer");
    }
}

/// The producer and its context's flag (librdkafka's context is out of reach once wrapped).
#[derive(Clone)]
struct Producing {
    producer: FutureProducer<ProducerWatch>,
    brokers_lost: Arc<AtomicBool>,
    /// Some publish was acked: the producer holds a producer id a broker could forget.
    acked: Arc<AtomicBool>,
}

fn new_producer(options: &config::Options, servers: &str) -> KafkaResult<Producing> {
    let brokers_lost = Arc::new(AtomicBool::new(false));
    let producer = producer_config(options, servers).create_with_context(ProducerWatch {
        brokers_lost: brokers_lost.clone(),
    })?;
    Ok(Producing {
        producer,
        brokers_lost,
        acked: Arc::new(AtomicBool::new(false)),
    })
}

pub struct KafkaTransport {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    cfg: BrokerConfig,
    options: config::Options,
    servers: String,
    clock: Clock,
    admin: Arc<AdminClient<DefaultClientContext>>,
    /// Replaced when librdkafka declares it fatally failed, and (idempotent) after an outage
    /// or a publish without a report: the broker may have lost its producer id.
    producer: RwLock<Producing>,
    /// One past the highest offset acked per partition: this run's high watermarks.
    high: Mutex<HashMap<Tp, i64>>,
    groups: Groups<GroupShared>,
    ensuring_topics: AtomicBool,
    /// Set once the broker listed the user's topic (observe mode).
    user_topic: tokio::sync::OnceCell<()>,
    /// Member and tap threads still running (their consumers not yet closed).
    pub(crate) members_running: Arc<std::sync::atomic::AtomicUsize>,
}

/// What this process knows about one consumer group.
pub(crate) struct GroupShared {
    /// The Kafka group id, `{namespace}.{group}`.
    pub id: String,
    pub topics: Vec<Topic>,
    /// One past the highest offset handed out per partition: below it, a delivery is a
    /// redelivery.
    pub delivered_end: Mutex<HashMap<Tp, i64>>,
    pub members: Mutex<Vec<Weak<MemberShared>>>,
    /// A consumer with the group's id that never joins: reads committed offsets, looks up
    /// offsets by time, commits a rewind when no member is alive.
    pub probe: Arc<BaseConsumer<DefaultConsumerContext>>,
}

impl GroupTopics for GroupShared {
    fn topics(&self) -> &[Topic] {
        &self.topics
    }
}

impl Inner {
    /// `{namespace}.{topic}`, or the user's own topic for the orders in observe mode.
    pub(crate) fn topic_name(&self, topic: Topic) -> String {
        self.cfg.topic_name(topic, ".")
    }

    pub(crate) fn topic_of(&self, name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|&t| self.topic_name(t) == name)
    }

    /// The run's own topics: every one but the user's (observe mode).
    fn owned_topic_names(&self) -> Vec<String> {
        Topic::ALL
            .into_iter()
            .filter(|&t| self.cfg.owns(t))
            .map(|t| self.topic_name(t))
            .collect()
    }

    fn partitions(&self) -> i32 {
        i32::try_from(self.options.partitions.max(1)).unwrap_or(1)
    }

    /// Creates the run's topics; ones that exist already are fine. Never the user's.
    async fn ensure_topics(&self) -> Result<(), Cause> {
        let names = self.owned_topic_names();
        let new: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| NewTopic::new(n, self.partitions(), TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = tokio::time::timeout(REQUEST_TIMEOUT, self.admin.create_topics(&new, &opts))
            .await
            .map_err(|_| Cause::from(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(Cause::from)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(Cause::from(code).context(name)),
            }
        }
        Ok(())
    }

    /// After an outage or a failed publish: the broker may have lost the topics (a restart
    /// of a broker with memory storage), so create them again in the background, one task
    /// at a time, trying until the broker answers (at most `RECREATE_PATIENCE`).
    pub(crate) fn recreate_topics_soon(self: &Arc<Self>) {
        if self.ensuring_topics.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let deadline = inner.clock.now() + crate::clock::duration_ns(RECREATE_PATIENCE);
            while let Err(reason) = inner.ensure_topics().await {
                if inner.clock.now() >= deadline {
                    tracing::warn!(%reason, "could not create the kafka topics again");
                    break;
                }
                tracing::debug!(%reason, "re-creating kafka topics failed; trying again");
                tokio::time::sleep(RECREATE_PAUSE).await;
            }
            inner.ensuring_topics.store(false, Ordering::Release);
        });
    }

    fn producer(&self) -> Producing {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces a producer librdkafka declared fatally failed; publishes through it would
    /// fail forever.
    fn replace_if_fatal(&self, failed: &Producing, timed_out: bool) {
        let (code, reason) = match failed.producer.client().fatal_error() {
            Some(fatal) => fatal,
            // Tansu forgets producer ids across a restart and answers UNKNOWN_PRODUCER_ID
            // forever, which librdkafka 2.12 retries without declaring the producer failed:
            // a timed-out idempotent publish also gets a fresh producer (a new producer id).
            None if timed_out && self.options.idempotent_producer() => (
                RDKafkaErrorCode::MessageTimedOut,
                "idempotent publish timed out".to_owned(),
            ),
            None => return,
        };
        self.replace_producer(failed, code, &reason);
    }

    /// After every broker connection was down: the topics are created again if the broker
    /// lost them, and an idempotent producer starts again with a fresh producer id. A broker
    /// that lost its state in the restart (Tansu's memory storage) answers the old id with
    /// UNKNOWN_PRODUCER_ID for good, and librdkafka retries those batches past
    /// `message.timeout.ms` without a report (a batch for a lost topic too), so waiting for
    /// a timeout would leave the harness unable to publish for 13 s after every restart. A
    /// broker that kept its state loses nothing by either: the topics exist, and the old
    /// producer finishes its own publishes. A producer with nothing acked yet has no id to
    /// lose (a fresh one that has not reached the broker yet): it stays.
    ///
    /// Returns the producer to publish with.
    fn producer_after_outage(self: &Arc<Self>) -> Producing {
        let current = self.producer();
        if !current.brokers_lost.swap(false, Ordering::AcqRel) {
            return current;
        }
        self.recreate_topics_soon();
        if !(self.options.idempotent_producer() && current.acked.load(Ordering::Acquire)) {
            return current;
        }
        self.replace_producer(
            &current,
            RDKafkaErrorCode::AllBrokersDown,
            "the broker may have forgotten the producer id",
        );
        self.producer()
    }

    fn replace_producer(&self, old: &Producing, code: RDKafkaErrorCode, reason: &str) {
        let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if current.producer.client().native_ptr() != old.producer.client().native_ptr() {
            return; // Someone replaced it already.
        }
        match new_producer(&self.options, &self.servers) {
            Ok(fresh) => {
                tracing::warn!(%code, reason, "kafka producer replaced");
                *current = fresh;
            }
            Err(e) => tracing::warn!(error = %e, "cannot replace the kafka producer"),
        }
    }

    /// Observe mode: whether the user's topic exists, asked of the broker until it once did.
    /// librdkafka holds a record for a topic the broker does not list until
    /// `message.timeout.ms` and then calls it timed out; this refuses it at once instead, and
    /// nothing asks the broker to create the topic.
    async fn user_topic_exists(&self, topic: Topic, name: &str) -> Result<(), TransportError> {
        if self.cfg.owns(topic) {
            return Ok(());
        }
        let refused = |source: Cause| TransportError::Publish { topic, source };
        self.user_topic
            .get_or_try_init(|| async {
                let admin = self.admin.clone();
                let wanted = name.to_owned();
                let partitions = tokio::task::spawn_blocking(move || {
                    let metadata = admin
                        .inner()
                        .fetch_metadata(Some(&wanted), REQUEST_TIMEOUT)?;
                    Ok::<_, KafkaError>(
                        metadata
                            .topics()
                            .iter()
                            .find(|t| t.name() == wanted && t.error().is_none())
                            .map_or(0, |t| t.partitions().len()),
                    )
                })
                .await
                .map_err(|e| refused(e.into()))?
                .map_err(|e| refused(Cause::from(e).context(format!("metadata of {name}"))))?;
                if partitions == 0 {
                    return Err(refused(Cause::from(format!(
                        "the topic {name} (observe.orders_to) does not exist on the broker; \
                         doorbuster never creates it"
                    ))));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn publish(self: &Arc<Self>, envelope: Envelope) -> Result<Ack, TransportError> {
        let topic = envelope.topic;
        let name = self.topic_name(topic);
        self.user_topic_exists(topic, &name).await?;
        // The template's rendered key (observe mode), else the order id.
        let key = match envelope.user.as_ref().and_then(|u| u.key.as_ref()) {
            Some(key) => key.clone(),
            None => envelope.key().to_string(),
        };
        let mut headers = OwnedHeaders::new();
        for (header, value) in envelope.meta.to_headers() {
            headers = headers.insert(Header {
                key: header,
                value: Some(value.as_str()),
            });
        }
        // The user's rendered headers, beside doorbuster's own.
        for (header, value) in envelope.user.iter().flat_map(|u| &u.headers) {
            headers = headers.insert(Header {
                key: header,
                value: Some(value.as_str()),
            });
        }
        let record = FutureRecord::to(&name)
            .key(key.as_str())
            .payload(envelope.payload.as_ref())
            .headers(headers);
        let producer = self.producer_after_outage();
        let sent = tokio::time::timeout(
            PUBLISH_TIMEOUT + PUBLISH_GRACE,
            producer
                .producer
                .send(record, Timeout::After(Duration::from_secs(1))),
        )
        .await;
        match sent {
            Ok(Ok(delivery)) => {
                let (Ok(partition), Ok(offset)) = (
                    u32::try_from(delivery.partition),
                    u64::try_from(delivery.offset),
                ) else {
                    return Err(TransportError::Indeterminate {
                        topic,
                        source: format!("delivery report without an offset: {delivery:?}").into(),
                    });
                };
                if !producer.acked.load(Ordering::Relaxed) {
                    producer.acked.store(true, Ordering::Release);
                }
                let mut high = lock(&self.high);
                let end = high.entry((topic, delivery.partition)).or_insert(0);
                *end = (*end).max(delivery.offset + 1);
                Ok(Ack { partition, offset })
            }
            Ok(Err((error, _))) => {
                let timed_out =
                    error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
                self.replace_if_fatal(&producer, timed_out);
                self.recreate_topics_soon();
                Err(publish_error(topic, error))
            }
            Err(_) => {
                // librdkafka keeps retrying an idempotent batch the broker answers with
                // UNKNOWN_PRODUCER_ID past message.timeout.ms, and a batch for a topic the
                // broker lost: no report at all.
                self.replace_if_fatal(&producer, true);
                self.recreate_topics_soon();
                Err(TransportError::Indeterminate {
                    topic,
                    source: format!(
                        "no delivery report within {:?}",
                        PUBLISH_TIMEOUT + PUBLISH_GRACE
                    )
                    .into(),
                })
            }
        }
    }

    fn group(&self, name: &str, topics: &[Topic]) -> Result<Arc<GroupShared>, TransportError> {
        self.groups
            .join(name, topics, || self.new_group(name, topics))
    }

    fn new_group(&self, name: &str, topics: &[Topic]) -> Result<GroupShared, TransportError> {
        let id = format!("{}.{}", self.cfg.namespace, name);
        let probe: BaseConsumer<DefaultConsumerContext> = base_config(&self.servers)
            .set("group.id", &id)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| TransportError::Group {
                group: name.to_owned(),
                source: e.into(),
            })?;
        Ok(GroupShared {
            id,
            topics: topics.to_vec(),
            delivered_end: Mutex::new(HashMap::new()),
            members: Mutex::new(Vec::new()),
            probe: Arc::new(probe),
        })
    }

    fn existing_group(&self, name: &str) -> Result<Arc<GroupShared>, TransportError> {
        self.groups.existing(name)
    }

    /// Every partition of the group's topics, with `offset` for each.
    fn partition_list(
        &self,
        group: &GroupShared,
        offset: impl Fn(Tp) -> Offset,
    ) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &topic in &group.topics {
            let name = self.topic_name(topic);
            for partition in 0..self.partitions() {
                // Only an out-of-range offset can fail here, and these come from the broker.
                let _ = tpl.add_partition_offset(&name, partition, offset((topic, partition)));
            }
        }
        tpl
    }

    async fn lag(&self, name: &str) -> Result<u64, TransportError> {
        let group = self.existing_group(name)?;
        let tpl = self.partition_list(&group, |_| Offset::Invalid);
        let probe = group.probe.clone();
        let committed =
            blocking(name, move || probe.committed_offsets(tpl, REQUEST_TIMEOUT)).await?;
        let high = lock(&self.high).clone();
        let mut lag = 0u64;
        for element in committed.elements() {
            let Some(topic) = self.topic_of(element.topic()) else {
                continue;
            };
            let end = high
                .get(&(topic, element.partition()))
                .copied()
                .unwrap_or(0);
            let from = match element.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            lag += u64::try_from(end - from).unwrap_or(0);
        }
        Ok(lag)
    }

    /// The offset each partition of the group restarts from.
    async fn rewind_targets(
        &self,
        name: &str,
        group: &GroupShared,
        to: RewindTo,
    ) -> Result<HashMap<Tp, i64>, TransportError> {
        let high = lock(&self.high).clone();
        let end = |tp: &Tp| high.get(tp).copied().unwrap_or(0);
        let mut targets = HashMap::new();
        match to {
            RewindTo::Earliest => {
                for &topic in &group.topics {
                    let topic_name = self.topic_name(topic);
                    for partition in 0..self.partitions() {
                        let probe = group.probe.clone();
                        let t = topic_name.clone();
                        let low = blocking(name, move || {
                            probe.fetch_watermarks(&t, partition, REQUEST_TIMEOUT)
                        })
                        .await
                        .map_or(0, |(low, _)| low.max(0));
                        targets.insert((topic, partition), low);
                    }
                }
            }
            RewindTo::Time(at) => {
                let ms = i64::try_from(self.clock.wall_ns(at) / 1_000_000).unwrap_or(i64::MAX);
                let tpl = self.partition_list(group, |_| Offset::Offset(ms));
                let probe = group.probe.clone();
                let found =
                    blocking(name, move || probe.offsets_for_times(tpl, REQUEST_TIMEOUT)).await?;
                for element in found.elements() {
                    let Some(topic) = self.topic_of(element.topic()) else {
                        continue;
                    };
                    let tp = (topic, element.partition());
                    let offset = match element.offset() {
                        Offset::Offset(o) if o >= 0 => o,
                        // No event at or after that time: start after the last one.
                        _ => end(&tp),
                    };
                    targets.insert(tp, offset);
                }
            }
        }
        Ok(targets)
    }

    async fn rewind(&self, name: &str, to: RewindTo) -> Result<(), TransportError> {
        let group = self.existing_group(name)?;
        let targets = self.rewind_targets(name, &group, to).await?;
        let members: Vec<Arc<MemberShared>> = {
            let mut members = lock(&group.members);
            members.retain(|m| m.strong_count() > 0);
            members.iter().filter_map(Weak::upgrade).collect()
        };
        let group_error = |source: Cause| TransportError::Group {
            group: name.to_owned(),
            source,
        };
        if members.is_empty() {
            let tpl = self.partition_list(&group, |tp| {
                Offset::Offset(targets.get(&tp).copied().unwrap_or(0))
            });
            let probe = group.probe.clone();
            return blocking(name, move || probe.commit(&tpl, CommitMode::Sync)).await;
        }
        // Live members seek and commit themselves: only they can move their fetch position.
        let names: HashMap<Tp, String> = targets
            .keys()
            .map(|&tp| (tp, self.topic_name(tp.0)))
            .collect();
        let mut replies = Vec::new();
        for member in members {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let command = RewindCommand {
                targets: targets
                    .iter()
                    .map(|(tp, &o)| ((names[tp].clone(), tp.1), o))
                    .collect(),
                reply,
            };
            if member.send_rewind(command) {
                replies.push(answer);
            }
        }
        for answer in replies {
            match tokio::time::timeout(REQUEST_TIMEOUT * 2, answer).await {
                Ok(Ok(Ok(()))) | Ok(Err(_)) => {} // Err: the member stopped meanwhile.
                Ok(Ok(Err(e))) => return Err(group_error(e.into())),
                Err(_) => return Err(group_error("a member did not rewind in time".into())),
            }
        }
        Ok(())
    }

    async fn cleanup(&self) -> Result<(), TransportError> {
        // Deleting topics under a consumer that is still closing can crash librdkafka 2.12
        // (see the member module), so let stopped members and taps finish closing first: a
        // user who deletes the tapped topics after the run then deletes them under no
        // consumer of doorbuster's.
        for _ in 0..100 {
            if self.members_running.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The run's own topics; never the user's.
        let names = self.owned_topic_names();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let failed = |source: Cause| TransportError::Unreachable {
            target: self.cfg.redacted_url(),
            source: source.context("cleanup"),
        };
        let results = tokio::time::timeout(REQUEST_TIMEOUT, self.admin.delete_topics(&refs, &opts))
            .await
            .map_err(|_| failed("deleting topics timed out".into()))?
            .map_err(|e| failed(e.into()))?;
        for result in results {
            if let Err((name, code)) = result
                && code != RDKafkaErrorCode::UnknownTopicOrPartition
            {
                return Err(failed(
                    Cause::from(code).context(format!("deleting {name}")),
                ));
            }
        }
        let groups: Vec<String> = self.groups.all().iter().map(|g| g.id.clone()).collect();
        if !groups.is_empty() {
            let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
            // Groups with live members cannot be deleted; the broker expires them later.
            match tokio::time::timeout(REQUEST_TIMEOUT, self.admin.delete_groups(&refs, &opts))
                .await
            {
                Ok(Ok(results)) => {
                    let kept: HashSet<String> = results
                        .into_iter()
                        .filter_map(|r| r.err().map(|(name, code)| format!("{name}: {code}")))
                        .collect();
                    if !kept.is_empty() {
                        tracing::debug!(?kept, "kafka groups left for the broker to expire");
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "deleting kafka groups failed"),
                Err(_) => tracing::debug!("deleting kafka groups timed out"),
            }
        }
        Ok(())
    }
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    group: &str,
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, TransportError> {
    let error = |source: Cause| TransportError::Group {
        group: group.to_owned(),
        source,
    };
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| error(e.into()))?
        .map_err(|e| error(e.into()))
}

/// Refused before it was sent, or sent and unanswered.
fn publish_error(topic: Topic, error: KafkaError) -> TransportError {
    let code = error.rdkafka_error_code();
    let unanswered = matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                | RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::PurgeInflight
        )
    );
    TransportError::failed_publish(topic, error, !unanswered)
}

#[async_trait::async_trait]
impl Transport for KafkaTransport {
    fn info(&self) -> TransportInfo {
        let cfg = &self.inner.cfg;
        let options = &self.inner.options;
        let acks = options.acks();
        TransportInfo {
            kind: "kafka".into(),
            settings: vec![
                ("url".into(), cfg.redacted_url()),
                (
                    "publish ack".into(),
                    format!("acks={acks}, delivery report"),
                ),
                (
                    "idempotent producer".into(),
                    options.idempotent_producer().to_string(),
                ),
                (
                    "publish timeout".into(),
                    format!("{} s (message.timeout.ms)", PUBLISH_TIMEOUT.as_secs()),
                ),
                ("partitions".into(), options.partitions.max(1).to_string()),
                (
                    "consumer group".into(),
                    format!("{}.<service>, eager rebalancing", cfg.namespace),
                ),
                (
                    "commit".into(),
                    "manual, on ack: contiguous acked prefix per partition, synchronous".into(),
                ),
                (
                    "redelivery".into(),
                    "uncommitted events re-read after crash/rebalance; nack = local requeue".into(),
                ),
                (
                    "ack wait".into(),
                    format!(
                        "n/a (a member that dies without leaving is evicted after session.timeout.ms = {} s)",
                        SESSION_TIMEOUT_MS / 1000
                    ),
                ),
                (
                    "max deliver".into(),
                    "unlimited (Kafka has no delivery limit)".into(),
                ),
                (
                    "replay".into(),
                    "offset reset (earliest or offsets_for_times)".into(),
                ),
            ],
        }
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        Box::pin(self.inner.publish(envelope))
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let shared = self.inner.group(group, topics)?;
        member::join(self.inner.clone(), group, shared).await
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        self.inner.rewind(group, to).await
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        self.inner.lag(group).await
    }

    async fn tap(&self, name: &str) -> Result<Box<dyn Tap>, TransportError> {
        let tap = tap::open(&self.inner, name).await?;
        Ok(Box::new(tap) as Box<dyn Tap>)
    }

    /// Deletes the run's own topics and groups; never the user's topic.
    async fn cleanup(&self) -> Result<(), TransportError> {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::bootstrap_servers;

    #[test]
    fn urls_become_bootstrap_servers() {
        let servers = |url: &str| bootstrap_servers(url).unwrap();
        assert_eq!(servers("kafka://127.0.0.1:9092"), "127.0.0.1:9092");
        assert_eq!(servers("kafka://a:1,b:2/"), "a:1,b:2");
        assert_eq!(servers("kafka://u:pw@a:1"), "a:1");
        assert_eq!(
            servers("kafka://[::1]:9092,127.1"),
            "[::1]:9092,127.0.0.1:9092"
        );
        // What the guard did not read never reaches librdkafka.
        assert!(bootstrap_servers("kafka://127.0.0.1:9092/,10.0.0.1:9092").is_err());
        assert!(bootstrap_servers("kafka://127.0.0.1:9092/@10.0.0.1:9092").is_err());
    }
}
