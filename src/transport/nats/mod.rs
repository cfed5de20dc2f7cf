//! The NATS JetStream transport (async-nats, `nats://` URLs).
//!
//! Guarantees (DESIGN.md §6) and how doorbuster maps them:
//! - publish ack = JetStream's PubAck: the event is stored in the run's stream (file storage)
//!   before `publish` resolves. The stream is named after the run's namespace and takes the
//!   subjects `{namespace}.>`; a topic is the subject `{namespace}.{topic name}`. The event's
//!   [`EventMeta`](crate::events::EventMeta) travels as headers, and `Nats-Msg-Id` is
//!   `{stream}-{event id}`, so a retried publish inside the dedup window (2 min) is stored
//!   once, and two runs' events with the same id are both stored in the user's stream. A publish is
//!   bounded (10 s): a refusal (no stream answered, an error reply, the client could not send)
//!   is [`TransportError::Publish`]; no PubAck in time is [`TransportError::Indeterminate`].
//!   Publishes are pipelined: each caller waits for its own PubAck only.
//! - consumer group = durable pull consumers named after the group, one per topic (the
//!   loopback server, 2.9, filters one subject per consumer), explicit ack, `max_ack_pending`
//!   20 000. Every member of a group pulls from the same consumers, so the server shares the
//!   work between them. An ack is confirmed by the server (double ack) before it resolves.
//! - redelivery = AckWait / MaxDeliver: a live member tells the server every third of
//!   `ack_wait` that it is still working on what it holds (`+WPI`), so it keeps its deliveries
//!   like a partition owner; once a member is dropped (a crash) or loses its connection, what
//!   it held is handed out again after `ack_wait`, to any member. A nack is a NAK, handed out
//!   again at once. After `max_deliver` deliveries (default unlimited) the server gives up on
//!   an event. `redelivered` = the server's delivery count is above one, or the event was
//!   handed out before the group's last rewind.
//! - per key order: one consumer hands a topic's events out in stream order, so one member
//!   sees the events of a key in publish order. JetStream has no partitions: with several
//!   members, the events of one key may be split between them (each in order).
//! - replay = rewind deletes and re-creates the group's consumers with DeliverPolicy::All
//!   (earliest) or ByStartTime (the wall-clock time of the run time); live members move to
//!   the new consumers by themselves, and acks of deliveries from before the rewind are
//!   ignored, like a Kafka commit after a rebalance.
//! - lag = `num_pending + num_ack_pending` summed over the group's consumers: stored, not yet
//!   acked (a delivered, unacked event still counts).
//! - the client reconnects by itself with backoff; members re-open their pulls after an error.
//!   `cleanup` deletes the stream, and with it every consumer of the run.
//! - observe mode: the orders go to the user's own subject (`observe.orders_to`) through
//!   JetStream, so the PubAck comes from the user's stream that takes it (none: the publish
//!   is refused); the rendered headers travel beside the `db-*` ones, and a rendered key, NATS
//!   having none, as the header `key`. The run never creates, changes or deletes the user's
//!   stream. A tap (`tap.rs`) is an ephemeral consumer of its own on the user's stream,
//!   without acks, from the stream's end at start: the user's consumers are untouched.

pub mod config;
mod member;
mod store;
mod tap;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{ContextBuilder, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};

use super::{
    Ack, BoxFuture, BrokerConfig, Cause, RewindTo, Subscription, Tap, Transport, TransportError,
    TransportInfo,
};
use crate::clock::Clock;
use crate::events::{Envelope, Topic};

/// The bound of one publish, from the call to its PubAck.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `connect` tries before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The bound of one administrative request (stream, consumer, info).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Delivered, unacked events one group's consumer may have out at once; the harness runs
/// thousands of deliveries concurrently, far above the server's default of 1000.
const MAX_ACK_PENDING: i64 = 20_000;
/// Publishes of this process waiting for their PubAck at once before the next one waits.
const PUBLISH_INFLIGHT_MAX: usize = 20_000;
/// The server's default dedup window for `Nats-Msg-Id`.
const DEDUP_WINDOW: Duration = Duration::from_secs(120);

pub struct NatsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    /// The stream name and the first token of every subject of the run.
    stream: String,
    /// The run's settings, with the stream's name as the namespace: names the subjects.
    cfg: BrokerConfig,
    url: String,
    options: config::Options,
    clock: Clock,
    groups: tokio::sync::Mutex<HashMap<String, Arc<GroupState>>>,
}

/// What this process knows of one consumer group.
struct GroupState {
    name: String,
    topics: Vec<Topic>,
    /// The durable consumer of each topic, in the order of `topics`.
    consumers: Vec<String>,
    /// Bumped by every rewind; members re-open their pulls on the new consumers.
    generation: tokio::sync::watch::Sender<u64>,
    /// Held for writing while a rewind replaces the consumers, so a member never opens a
    /// pull on a consumer that is about to go (or tags a new one with the old generation).
    rewinding: tokio::sync::RwLock<()>,
    /// Per consumer: events up to this stream sequence were handed out before a rewind.
    reread_max: Vec<AtomicU64>,
    /// Per consumer: the highest stream sequence handed out by this process.
    handed_max: Vec<AtomicU64>,
}

impl GroupState {
    fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    fn error(&self, source: impl Into<Cause>) -> TransportError {
        TransportError::Group {
            group: self.name.clone(),
            source: source.into(),
        }
    }
}

/// Stream and consumer names may not hold `.`, `*`, `>`, spaces or path separators.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unreachable(cfg: &BrokerConfig, source: impl Into<Cause>) -> TransportError {
    TransportError::Unreachable {
        target: cfg.redacted_url(),
        source: source.into(),
    }
}

/// Connects to the server, checks JetStream answers, and creates the run's stream.
pub async fn connect(
    cfg: &BrokerConfig,
    settings: &config::Options,
    clock: Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    let options = async_nats::ConnectOptions::new()
        .name("doorbuster")
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(ADMIN_TIMEOUT))
        // Reconnect forever (with the client's own backoff): a broker restart is a fault the
        // harness measures, not the end of the run.
        .max_reconnects(None)
        // The server may advertise other cluster members; the loopback guard judged only
        // the URL given, so load never follows an advertised address elsewhere.
        .ignore_discovered_servers();
    let client = match tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(&cfg.url)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(unreachable(cfg, Cause::nats(e))),
        Err(_) => return Err(unreachable(cfg, "no connection within 6 s")),
    };
    let js = ContextBuilder::new()
        .timeout(PUBLISH_TIMEOUT)
        .max_ack_inflight(PUBLISH_INFLIGHT_MAX)
        .build(client);
    let name = sanitize(&cfg.namespace);
    let stream_config = stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        storage: stream::StorageType::File,
        duplicate_window: DEDUP_WINDOW,
        ..Default::default()
    };
    match tokio::time::timeout(ADMIN_TIMEOUT, js.get_or_create_stream(stream_config)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(unreachable(
                cfg,
                Cause::nats(e).context(format!("JetStream did not create stream {name}")),
            ));
        }
        Err(_) => return Err(unreachable(cfg, "JetStream did not answer within 10 s")),
    }
    Ok(Arc::new(NatsTransport {
        inner: Arc::new(Inner {
            js,
            cfg: BrokerConfig {
                namespace: name.clone(),
                ..cfg.clone()
            },
            stream: name,
            url: cfg.redacted_url(),
            options: settings.clone(),
            clock,
            groups: tokio::sync::Mutex::new(HashMap::new()),
        }),
    }))
}

/// The user's own headers (observe mode); NATS has no key, so a rendered one is the header
/// `key`. A name or value NATS cannot carry (a line break in a value) refuses the publish.
fn user_headers(
    headers: &mut async_nats::HeaderMap,
    user: &crate::events::UserFields,
) -> Result<(), Cause> {
    let key = user.key.as_ref().map(|k| ("key".to_owned(), k.clone()));
    for (name, value) in user.headers.iter().chain(key.as_ref()) {
        let bad = |e: &dyn std::fmt::Display| Cause::from(format!("header {name:?}: {e}"));
        let header: async_nats::HeaderName = name.parse().map_err(|e| bad(&e))?;
        let value: async_nats::HeaderValue = value.parse().map_err(|e| bad(&e))?;
        headers.append(header, value);
    }
    Ok(())
}

impl Inner {
    /// `{stream}.{topic}`, or the user's own subject for the orders in observe mode.
    fn subject(&self, topic: Topic) -> String {
        self.cfg.topic_name(topic, ".")
    }

    fn consumer_config(&self, name: &str, topic: Topic, deliver: DeliverPolicy) -> pull::Config {
        pull::Config {
            durable_name: Some(name.to_owned()),
            deliver_policy: deliver,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_deliver: self.options.max_deliver.map_or(-1, i64::from),
            filter_subject: self.subject(topic),
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }

    async fn publish(&self, envelope: Envelope) -> Result<Ack, TransportError> {
        let topic = envelope.topic;
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in envelope.meta.to_headers() {
            headers.insert(name, value.as_str());
        }
        if let Some(user) = &envelope.user {
            user_headers(&mut headers, user)
                .map_err(|e| TransportError::Publish { topic, source: e })?;
        }
        // Unique per run: in the user's stream, another run's event with the same id is not a
        // duplicate of this one.
        let message = PublishMessage::build()
            .payload(envelope.payload)
            .headers(headers)
            .message_id(format!("{}-{}", self.stream, envelope.meta.event_id));
        let deadline = self.clock.instant_at(self.clock.now()) + PUBLISH_TIMEOUT;
        let refused = |source: Cause| TransportError::Publish { topic, source };
        // Stage 1: hand the message to the connection. Failing here, nothing was sent.
        let pending = match tokio::time::timeout_at(
            deadline,
            self.js.send_publish(self.subject(topic), message),
        )
        .await
        {
            Ok(Ok(pending)) => pending,
            Ok(Err(e)) => return Err(refused(Cause::nats(e).context("not sent"))),
            Err(_) => return Err(refused("not sent within 10 s".into())),
        };
        // Stage 2: wait for the PubAck. Failing here without an answer, the server may have it.
        let indeterminate = |source: Cause| TransportError::Indeterminate { topic, source };
        match tokio::time::timeout_at(deadline, std::future::IntoFuture::into_future(pending)).await
        {
            Ok(Ok(ack)) => Ok(Ack {
                partition: 0,
                offset: ack.sequence,
            }),
            Ok(Err(e)) => match e.kind() {
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                    Err(indeterminate(Cause::nats(e).context("no PubAck")))
                }
                // An answer came and it was not a PubAck (no responders, an API error).
                _ => Err(refused(Cause::nats(e))),
            },
            Err(_) => Err(indeterminate("no PubAck within 10 s".into())),
        }
    }

    /// The group this process knows, or a new one whose consumers are created (or found).
    async fn join(&self, group: &str, topics: &[Topic]) -> Result<Arc<GroupState>, TransportError> {
        let mut groups = self.groups.lock().await;
        if let Some(state) = groups.get(group) {
            if state.topics != topics {
                return Err(state.error(format!(
                    "members must consume the same topics: {:?} vs {:?}",
                    state.topics, topics
                )));
            }
            return Ok(state.clone());
        }
        let state = GroupState {
            name: group.to_owned(),
            topics: topics.to_vec(),
            consumers: topics
                .iter()
                .map(|t| {
                    format!(
                        "{}__{}__{}",
                        self.stream,
                        sanitize(group),
                        sanitize(t.name())
                    )
                })
                .collect(),
            generation: tokio::sync::watch::Sender::new(0),
            rewinding: tokio::sync::RwLock::new(()),
            reread_max: topics.iter().map(|_| AtomicU64::new(0)).collect(),
            handed_max: topics.iter().map(|_| AtomicU64::new(0)).collect(),
        };
        for (topic, name) in topics.iter().zip(&state.consumers) {
            let config = self.consumer_config(name, *topic, DeliverPolicy::All);
            let created = tokio::time::timeout(
                ADMIN_TIMEOUT,
                self.js
                    .create_consumer_on_stream(config, self.stream.clone()),
            )
            .await;
            match created {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(state.error(Cause::nats(e).context(format!("consumer {name}"))));
                }
                Err(_) => return Err(state.error(format!("consumer {name}: no answer"))),
            }
        }
        let state = Arc::new(state);
        groups.insert(group.to_owned(), state.clone());
        Ok(state)
    }

    async fn existing(&self, group: &str) -> Result<Arc<GroupState>, TransportError> {
        self.groups
            .lock()
            .await
            .get(group)
            .cloned()
            .ok_or_else(|| TransportError::Group {
                group: group.to_owned(),
                source: "no such group".to_owned().into(),
            })
    }

    async fn consumer_info(
        &self,
        group: &GroupState,
        name: &str,
    ) -> Result<jetstream::consumer::Info, TransportError> {
        let stream = self.js.get_stream_no_info(&self.stream).await;
        let stream = stream
            .map_err(|e| group.error(Cause::nats(e).context(format!("stream {}", self.stream))))?;
        match tokio::time::timeout(ADMIN_TIMEOUT, stream.consumer_info(name)).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(group.error(Cause::nats(e).context(format!("consumer {name}")))),
            Err(_) => Err(group.error(format!("consumer {name}: no answer"))),
        }
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        let state = self.existing(group).await?;
        let deliver = match to {
            RewindTo::Earliest => DeliverPolicy::All,
            RewindTo::Time(at) => {
                let wall = i128::from(self.clock.wall_ns(at));
                let start_time = async_nats::datetime::from_nanos(wall)
                    .map_err(|e| state.error(Cause::nats(e).context("rewind time")))?;
                DeliverPolicy::ByStartTime { start_time }
            }
        };
        let _rewinding = state.rewinding.write().await;
        let stream = self.js.get_stream_no_info(&self.stream).await;
        let stream = stream
            .map_err(|e| state.error(Cause::nats(e).context(format!("stream {}", self.stream))))?;
        for (i, (topic, name)) in state.topics.iter().zip(&state.consumers).enumerate() {
            // What the old consumer handed out, by the server's count and by ours.
            let delivered = match self.consumer_info(&state, name).await {
                Ok(info) => info.delivered.stream_sequence,
                Err(_) => 0,
            };
            let handed = state.handed_max[i].load(Ordering::Acquire);
            state.reread_max[i].fetch_max(delivered.max(handed), Ordering::AcqRel);
            match tokio::time::timeout(ADMIN_TIMEOUT, stream.delete_consumer(name)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(
                        state.error(Cause::nats(e).context(format!("delete consumer {name}")))
                    );
                }
                Err(_) => return Err(state.error(format!("delete consumer {name}: no answer"))),
            }
            let config = self.consumer_config(name, *topic, deliver);
            match tokio::time::timeout(ADMIN_TIMEOUT, stream.create_consumer(config)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(
                        state.error(Cause::nats(e).context(format!("create consumer {name}")))
                    );
                }
                Err(_) => return Err(state.error(format!("create consumer {name}: no answer"))),
            }
        }
        state.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        let state = self.existing(group).await?;
        let mut lag = 0;
        for name in &state.consumers {
            let info = self.consumer_info(&state, name).await?;
            lag += info.num_pending + info.num_ack_pending as u64;
        }
        Ok(lag)
    }
}

/// A pull request's lifetime and the server's idle heartbeat inside it.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
const PULL_HEARTBEAT: Duration = Duration::from_secs(3);

/// Bounds one administrative request.
async fn bounded<T, E>(what: &str, request: impl Future<Output = Result<T, E>>) -> Result<T, Cause>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(ADMIN_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Cause::nats(e).context(what.to_owned())),
        Err(_) => Err(Cause::from(format!("{what}: no answer"))),
    }
}

/// Opens a stream of pull requests of `batch` messages on `consumer` (a member's or a tap's).
async fn pull(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    batch: usize,
) -> Result<async_nats::jetstream::consumer::pull::Stream, Cause> {
    let name = &consumer.cached_info().name;
    bounded(
        &format!("pull on {name}"),
        consumer
            .stream()
            .max_messages_per_batch(batch)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages(),
    )
    .await
}

#[async_trait::async_trait]
impl Transport for NatsTransport {
    fn info(&self) -> TransportInfo {
        let o = &self.inner.options;
        let max_deliver = o
            .max_deliver
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        TransportInfo {
            kind: "nats".into(),
            settings: vec![
                ("url".into(), self.inner.url.clone()),
                (
                    "publish ack".into(),
                    format!(
                        "JetStream PubAck, file storage, within {} s; Nats-Msg-Id = stream-event id (dedup window {} s)",
                        PUBLISH_TIMEOUT.as_secs(),
                        DEDUP_WINDOW.as_secs()
                    ),
                ),
                (
                    "stream".into(),
                    format!("{} (subjects {}.>)", self.inner.stream, self.inner.stream),
                ),
                (
                    "consumer group".into(),
                    "durable pull consumer per group and topic, shared by the members".into(),
                ),
                (
                    "ack policy".into(),
                    "explicit, confirmed by the server (double ack); nack = NAK".into(),
                ),
                ("ack wait".into(), format!("{:?}", o.ack_wait)),
                ("max deliver".into(), max_deliver),
                ("max ack pending".into(), MAX_ACK_PENDING.to_string()),
                (
                    "replay".into(),
                    "consumer re-created with DeliverPolicy All / ByStartTime".into(),
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
        let state = self.inner.join(group, topics).await?;
        Ok(
            Box::new(member::NatsSubscription::start(self.inner.clone(), state).await)
                as Box<dyn Subscription>,
        )
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

    /// Deletes the run's stream; the user's subject lives in the user's stream, never this one.
    async fn shared_store(&self) -> Result<Option<Arc<dyn super::SharedStore>>, TransportError> {
        Ok(Some(Arc::new(store::NatsStore::open(&self.inner).await?)))
    }

    async fn cleanup(&self) -> Result<(), TransportError> {
        let stream = &self.inner.stream;
        match tokio::time::timeout(ADMIN_TIMEOUT, self.inner.js.delete_stream(stream)).await {
            // Then a sharded run's shared state, if it made any.
            Ok(Ok(_)) => store::delete(&self.inner).await,
            Ok(Err(e)) => Err(TransportError::Group {
                group: stream.clone(),
                source: Cause::nats(e).context("delete stream"),
            }),
            Err(_) => Err(TransportError::Group {
                group: stream.clone(),
                source: "delete stream: no answer".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn names_lose_what_jetstream_forbids() {
        assert_eq!(sanitize("doorbuster-18c.x *>/"), "doorbuster-18c_x____");
        assert_eq!(sanitize("order.payment.failed"), "order_payment_failed");
    }
}
