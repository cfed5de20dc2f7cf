//! RabbitMQ over AMQP 0-9-1 (lapin), the `amqp://` / `amqps://` target.
//!
//! Guarantees and how doorbuster maps them (DESIGN.md §6):
//! - publish ack = a publisher confirm: every event goes to the fanout exchange
//!   `{namespace}.{topic}` on a confirm-mode channel (many publishes in flight on it),
//!   persistent (delivery mode 2), the EventMeta in AMQP headers, `message_id` = event id.
//!   `publish` resolves `Ok` only on the broker's `basic.ack`; a `basic.nack` or a publish
//!   that could not be sent is [`TransportError::Publish`]; a confirm that never comes
//!   (connection lost after sending, or 10 s without an answer) is
//!   [`TransportError::Indeterminate`].
//! - Every exchange also feeds a stream queue `{namespace}.log.{topic}` that keeps the
//!   topic's events for the run, so a group that joins late still reads from the earliest
//!   event (Kafka's semantics, which the harness and the conformance suite expect).
//! - consumer group, classic and quorum (`queue_type`): one durable queue
//!   `{namespace}.{group}` per group, bound to its topics' exchanges; each member is one
//!   consumer on its own channel with manual ack and a prefetch of [`PREFETCH`]. RabbitMQ
//!   shares the queue among members. A group queue created after events were published is
//!   seeded from the topic logs first. Quorum queues get `x-delivery-limit = max_deliver`.
//! - redelivery: a nack is `basic.nack(requeue)`; a member that stops (a dropped
//!   [`Subscription`]) closes its channel, and RabbitMQ requeues what it held to the other
//!   members with the `redelivered` flag, which doorbuster passes on. There is no ack wait:
//!   the broker only takes an event back when the holder's channel closes (or after its
//!   `consumer_timeout`, 30 min by default).
//! - consumer group, `queue_type: stream`: members read the topic logs directly (a stream
//!   hands every consumer everything, so the transport shares the work itself: one reader
//!   per group and topic, events of one key always to the same member). Stream acks only
//!   return credit, so the group's committed offset is kept by this transport (the acked
//!   prefix of each log); a member that leaves hands its unacked events to the others,
//!   flagged redelivered.
//! - replay: stream groups only; `rewind` restarts the group's readers from the first
//!   offset or from a timestamp (`x-stream-offset`, whole seconds, then filtered on the
//!   publish time header), and events read again are flagged redelivered. Classic and quorum
//!   groups cannot rewind: [`TransportError::Group`] "replay needs queue_type: stream".
//! - lag: classic/quorum = the queue's ready messages (passive declare) + deliveries this
//!   transport holds unsettled; stream = per log, its length minus the group's acked offsets.
//! - per key order: a queue delivers in order; one member's channel sees one key in order
//!   (a requeued event may come back after later ones, flagged redelivered).
//! - outages: lapin does not reconnect, so [`link::Link`] does (backoff 100 ms to 2 s),
//!   re-declares the exchanges and logs, and every member re-attaches its consumer.
//!   Durable exchanges and queues and persistent messages survive a broker restart.
//!
//! - observe mode: the orders go to the user's own exchange (`observe.orders_to`:
//!   `exchange` or `exchange:routing-key`, [`config::Address`]), never declared, changed or
//!   deleted by the run. The routing key is the fixed one, else the template's rendered key,
//!   else the order id; the rendered headers travel beside the `db-*` ones. They are published
//!   `mandatory` on a confirm channel of their own: an order no queue takes comes back and is
//!   [`TransportError::Publish`], and so is one to a missing exchange, whose channel the
//!   broker closes without touching the run's. A tap (`tap.rs`) binds a queue of the run's
//!   own to one of the user's exchanges; the user's queues are never read.
//!
//! It may not record observations: the driver and the services do.

mod classic;
mod codec;
pub mod config;
mod link;
mod stream;
mod tap;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Channel;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Confirmation, Queue};

use super::{
    Ack, BoxFuture, BrokerConfig, Cause, QueueType, RewindTo, Subscription, Tap, Transport,
    TransportError, TransportInfo,
};
use crate::clock::Clock;
use crate::events::{Envelope, Topic};
use classic::ClassicGroup;
use link::{Link, exchange_name, log_name};
use stream::StreamGroup;

/// Deliveries one member may hold unacked (`basic.qos`).
pub const PREFETCH: u16 = 1000;
/// The longest a publish may wait for its confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What members, readers and ack handles share with the transport.
pub(super) struct Ctx {
    link: Link,
    namespace: String,
    options: config::Options,
    clock: Clock,
    prefetch: u16,
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Publishes confirmed per topic: a lower bound on each topic log's length (the
    /// `message_count` a stream reports lags behind its appends).
    confirmed: [AtomicU64; Topic::ALL.len()],
    /// Observe mode: the user's exchange the orders go to (`orders_to`).
    orders_to: Option<config::Address>,
    /// The confirm-mode channel of the publishes to the user's exchange, with the generation
    /// of the connection it is on.
    user_channel: tokio::sync::Mutex<Option<(u64, Channel)>>,
}

impl Ctx {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the run's own exchange carries `topic`: every topic but the orders in observe
    /// mode, which go to the user's exchange.
    fn owns(&self, topic: Topic) -> bool {
        self.orders_to.is_none() || topic != Topic::OrderCreated
    }

    /// The channel the orders go to the user's exchange on, apart from the run's publish
    /// channel: a publish to an exchange that does not exist makes the broker close the
    /// channel it came on, and that must not take the run's channel (and with it the
    /// connection, which `Link` would then re-open) along. Re-opened when it was closed.
    async fn user_channel(&self, live: &link::Live) -> lapin::Result<Channel> {
        let mut slot = self.user_channel.lock().await;
        if let Some((generation, ch)) = slot.as_ref()
            && *generation == live.generation
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let ch = live.conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *slot = Some((live.generation, ch.clone()));
        Ok(ch)
    }

    fn queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let kind: &'static str = self.options.queue_type.into();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(kind)),
        );
        if self.options.queue_type == QueueType::Quorum
            && let Some(limit) = self.options.max_deliver
        {
            let limit = i64::from(limit);
            args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
        }
        args
    }

    /// Declares a classic or quorum group's queue and binds it to its topics' exchanges.
    async fn declare_group_queue(
        &self,
        ch: &Channel,
        queue: &str,
        topics: &[Topic],
    ) -> lapin::Result<Queue> {
        let declared = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                self.queue_arguments(),
            )
            .await?;
        for topic in topics {
            ch.queue_bind(
                queue.into(),
                exchange_name(&self.namespace, *topic).into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(declared)
    }

    /// How many events topic log `topic` holds (offsets start at 0 in a run's fresh log).
    async fn log_length(&self, topic: Topic) -> Result<u64, Cause> {
        let reported = self
            .message_count(&log_name(&self.namespace, topic))
            .await?
            .unwrap_or(0);
        Ok(reported.max(self.confirmed[topic.index()].load(Ordering::SeqCst)))
    }

    /// Message count of a queue by a passive declare on a throwaway channel (a failed
    /// passive declare closes its channel); `None` when the queue does not exist.
    async fn message_count(&self, queue: &str) -> Result<Option<u64>, Cause> {
        let live = self.link.live().await?;
        let probe = async {
            let ch = live.conn.create_channel().await?;
            let found = ch
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            if found.is_ok() {
                let _ = ch.close(200, "probe done".into()).await;
            }
            Ok::<_, lapin::Error>(found.ok().map(|q| u64::from(q.message_count())))
        };
        match tokio::time::timeout(link::CONNECT_TIMEOUT, probe).await {
            Ok(Ok(count)) => Ok(count),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err("no answer to a passive queue.declare".into()),
        }
    }
}

/// Where one event is published.
struct Route {
    exchange: String,
    key: String,
    props: lapin::BasicProperties,
    /// The user's exchange (observe mode): published mandatory on a channel of its own.
    user: bool,
}

#[derive(Clone)]
enum Group {
    Classic(Arc<ClassicGroup>),
    Stream(Arc<StreamGroup>),
}

pub struct RabbitmqTransport {
    ctx: Arc<Ctx>,
    redacted_url: String,
    groups: Mutex<HashMap<String, Group>>,
    published: AtomicU64,
    /// The queues of the taps made in this run (observe mode), deleted at cleanup.
    taps: Mutex<Vec<String>>,
}

/// Connects to the broker at `cfg.url`; [`TransportError::Unreachable`] within a few
/// seconds when nobody answers there.
pub async fn connect(
    cfg: &BrokerConfig,
    options: &config::Options,
    clock: Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    let orders_to = match &cfg.orders_to {
        Some(name) => Some(
            config::Address::parse(name).map_err(|e| TransportError::Config {
                target: cfg.redacted_url(),
                source: format!("orders_to: {e}").into(),
            })?,
        ),
        None => None,
    };
    let ctx = Arc::new(Ctx {
        link: Link::new(cfg.url.clone(), cfg.namespace.clone(), clock.clone()),
        namespace: cfg.namespace.clone(),
        options: options.clone(),
        clock,
        prefetch: PREFETCH,
        closed: AtomicBool::new(false),
        next_id: AtomicU64::new(0),
        confirmed: std::array::from_fn(|_| AtomicU64::new(0)),
        orders_to,
        user_channel: tokio::sync::Mutex::new(None),
    });
    ctx.link
        .live()
        .await
        .map_err(|source| TransportError::Unreachable {
            target: cfg.redacted_url(),
            source,
        })?;
    Ok(Arc::new(RabbitmqTransport {
        ctx,
        redacted_url: cfg.redacted_url(),
        groups: Mutex::new(HashMap::new()),
        published: AtomicU64::new(0),
        taps: Mutex::new(Vec::new()),
    }))
}

impl RabbitmqTransport {
    fn group(&self, group: &str) -> Result<Group, TransportError> {
        lock(&self.groups)
            .get(group)
            .cloned()
            .ok_or_else(|| TransportError::Group {
                group: group.to_owned(),
                source: "no such group in this run".into(),
            })
    }

    /// The exchange, routing key and properties of `envelope`: the run's own exchange of its
    /// topic keyed by the order id, or, for the orders in observe mode, the user's exchange
    /// (see [`Route`]).
    fn route(&self, envelope: &Envelope) -> Result<Route, Cause> {
        let clock = &self.ctx.clock;
        let props = codec::properties(envelope, clock.wall_ns(clock.now()));
        let order_id = envelope.key().to_string();
        let Some(to) = self
            .ctx
            .orders_to
            .as_ref()
            .filter(|_| !self.ctx.owns(envelope.topic))
        else {
            return Ok(Route {
                exchange: exchange_name(&self.ctx.namespace, envelope.topic),
                key: order_id,
                props,
                user: false,
            });
        };
        let rendered = envelope.user.as_ref().and_then(|u| u.key.clone());
        let key = to.key.clone().or(rendered).unwrap_or(order_id);
        let props = match &envelope.user {
            Some(user) => codec::with_user_headers(props, user, to.key.is_some())?,
            None => props,
        };
        Ok(Route {
            exchange: to.exchange.clone(),
            key,
            props,
            user: true,
        })
    }

    async fn publish_one(&self, envelope: Envelope) -> Result<Ack, TransportError> {
        let topic = envelope.topic;
        let refused = |source: Cause| TransportError::Publish { topic, source };
        let unknown = |source: Cause| TransportError::Indeterminate { topic, source };
        let route = self.route(&envelope).map_err(refused)?;
        let exchange = ShortString::try_new(route.exchange.as_str())
            .map_err(|e| refused(format!("exchange {}: {e}", route.exchange).into()))?;
        let key = ShortString::try_new(route.key.as_str())
            .map_err(|e| refused(format!("routing key {:?}: {e}", route.key).into()))?;
        let sent = AtomicBool::new(false);
        let work = async {
            let live = self.ctx.link.live().await.map_err(refused)?;
            let channel = if route.user {
                self.ctx.user_channel(&live).await.map_err(|e| {
                    refused(
                        Cause::from(e).context(format!("channel to exchange {}", route.exchange)),
                    )
                })?
            } else {
                live.publish.clone()
            };
            // Only the user's exchange is published to mandatory: an order no queue of theirs
            // takes comes back (basic.return) and is refused, not lost without a word.
            let options = BasicPublishOptions {
                mandatory: route.user,
                ..BasicPublishOptions::default()
            };
            let confirm = channel
                .basic_publish(exchange, key, options, &envelope.payload, route.props)
                .await
                .map_err(|e| {
                    if !route.user || !live.conn.status().connected() {
                        self.ctx.link.invalidate(live.generation);
                    }
                    refused(e.into())
                })?;
            sent.store(true, Ordering::SeqCst);
            match confirm.await {
                Ok(Confirmation::Ack(None)) => Ok(Ack {
                    partition: 0,
                    offset: {
                        self.ctx.confirmed[topic.index()].fetch_add(1, Ordering::SeqCst);
                        self.published.fetch_add(1, Ordering::Relaxed)
                    },
                }),
                Ok(Confirmation::Ack(Some(returned))) => Err(refused(
                    format!(
                        "no queue took it: exchange {} routed routing key {:?} nowhere ({} {})",
                        route.exchange, route.key, returned.reply_code, returned.reply_text
                    )
                    .into(),
                )),
                Ok(Confirmation::Nack(_)) => Err(refused("the broker nacked it".into())),
                Ok(Confirmation::NotRequested) => {
                    Err(unknown("the channel was not in confirm mode".into()))
                }
                // The broker closed the user's channel (no such exchange, no access) while
                // the connection stayed up: it took nothing after the close.
                Err(e) if route.user && live.conn.status().connected() => Err(refused(
                    Cause::from(e).context(format!("exchange {}", route.exchange)),
                )),
                Err(e) => {
                    self.ctx.link.invalidate(live.generation);
                    Err(unknown(e.into()))
                }
            }
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) if sent.load(Ordering::SeqCst) => Err(unknown(
                format!("no publisher confirm within {PUBLISH_TIMEOUT:?}").into(),
            )),
            Err(_) => Err(refused(
                format!("not sent within {PUBLISH_TIMEOUT:?}").into(),
            )),
        }
    }

    async fn subscribe_one(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let (entry, fresh) = {
            let mut groups = lock(&self.groups);
            match groups.get(group) {
                Some(g) => (g.clone(), false),
                None => {
                    let queue = format!("{}.{group}", self.ctx.namespace);
                    let g = match self.ctx.options.queue_type {
                        QueueType::Stream => {
                            Group::Stream(Arc::new(StreamGroup::new(queue, topics.to_vec())))
                        }
                        QueueType::Classic | QueueType::Quorum => {
                            Group::Classic(Arc::new(ClassicGroup::new(queue, topics.to_vec())))
                        }
                    };
                    groups.insert(group.to_owned(), g.clone());
                    (g, true)
                }
            }
        };
        match entry {
            Group::Classic(g) => {
                if fresh {
                    classic::prepare(&self.ctx, &g).await.map_err(|source| {
                        lock(&self.groups).remove(group);
                        TransportError::Group {
                            group: group.to_owned(),
                            source,
                        }
                    })?;
                }
                classic::subscribe(self.ctx.clone(), g).await
            }
            Group::Stream(g) => stream::subscribe(self.ctx.clone(), g).await,
        }
    }

    async fn cleanup_all(&self) -> Result<(), TransportError> {
        self.ctx.closed.store(true, Ordering::SeqCst);
        let groups: Vec<Group> = lock(&self.groups).drain().map(|(_, g)| g).collect();
        let fail = |source: Cause| TransportError::Group {
            group: self.ctx.namespace.clone(),
            source: source.context("cleanup"),
        };
        let live = self.ctx.link.live().await.map_err(fail)?;
        let ch = live
            .conn
            .create_channel()
            .await
            .map_err(|e| fail(e.into()))?;
        let mut queues = Vec::new();
        for g in &groups {
            match g {
                Group::Classic(c) => {
                    c.stop().await;
                    queues.push(c.queue.clone());
                }
                Group::Stream(s) => s.stop(),
            }
        }
        queues.extend(Topic::ALL.iter().map(|t| log_name(&self.ctx.namespace, *t)));
        queues.append(&mut lock(&self.taps));
        for q in queues {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| fail(Cause::from(e).context(format!("delete queue {q}"))))?;
        }
        for topic in Topic::ALL {
            let ex = exchange_name(&self.ctx.namespace, topic);
            ch.exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(|e| fail(Cause::from(e).context(format!("delete exchange {ex}"))))?;
        }
        let _ = ch.close(200, "cleanup done".into()).await;
        self.ctx.link.close().await;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for RabbitmqTransport {
    fn info(&self) -> TransportInfo {
        let o = &self.ctx.options;
        let queue_type: &'static str = o.queue_type.into();
        let commit = match o.queue_type {
            QueueType::Stream => "offsets kept by the transport (acked prefix per topic log)",
            _ => "basic.ack per delivery; nack = basic.nack(requeue)",
        };
        let max_deliver = match (o.queue_type, o.max_deliver) {
            (QueueType::Quorum, Some(n)) => format!("{n} (x-delivery-limit)"),
            (QueueType::Quorum, None) => "unlimited".to_owned(),
            _ => "not enforced (only quorum queues have x-delivery-limit)".to_owned(),
        };
        let settings = [
            ("url", self.redacted_url.clone()),
            ("acks", "publisher confirms, persistent messages".to_owned()),
            (
                "ack policy",
                format!("manual ack, prefetch {}", self.ctx.prefetch),
            ),
            ("commit policy", commit.to_owned()),
            ("queue type", queue_type.to_owned()),
            (
                "ack wait",
                "none: unacked events return when the member's channel closes".to_owned(),
            ),
            ("max deliver", max_deliver),
            (
                "topology",
                format!(
                    "fanout exchange + stream log per topic, queue per group, prefix {}",
                    self.ctx.namespace
                ),
            ),
            (
                "replay",
                if o.queue_type == QueueType::Stream {
                    "rewind to first offset or a time"
                } else {
                    "none (needs queue_type: stream)"
                }
                .to_owned(),
            ),
        ];
        TransportInfo {
            kind: "rabbitmq".to_owned(),
            settings: settings
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        Box::pin(self.publish_one(envelope))
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        self.subscribe_one(group, topics).await
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        match self.group(group)? {
            Group::Classic(_) => Err(TransportError::Group {
                group: group.to_owned(),
                source: "replay needs queue_type: stream".into(),
            }),
            Group::Stream(g) => {
                g.rewind(&self.ctx, to);
                Ok(())
            }
        }
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        let fail = |source: Cause| TransportError::Group {
            group: group.to_owned(),
            source,
        };
        match self.group(group)? {
            Group::Classic(g) => {
                let ready = self
                    .ctx
                    .message_count(&g.queue)
                    .await
                    .map_err(fail)?
                    .ok_or_else(|| fail("its queue is gone".into()))?;
                Ok(ready + g.held(self.ctx.prefetch).await)
            }
            Group::Stream(g) => g.lag(&self.ctx).await.map_err(fail),
        }
    }

    async fn cleanup(&self) -> Result<(), TransportError> {
        self.cleanup_all().await
    }

    async fn forget_groups(&self, groups: &[String]) -> Result<(), TransportError> {
        let fail = |source: Cause| TransportError::Group {
            group: self.ctx.namespace.clone(),
            source: source.context("forget groups"),
        };
        let live = self.ctx.link.live().await.map_err(fail)?;
        let ch = (live.conn.create_channel().await).map_err(|e| fail(e.into()))?;
        for g in groups {
            // The queue `subscribe_one` names; deleting one that is not there is no error.
            let q = format!("{}.{g}", self.ctx.namespace);
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| fail(Cause::from(e).context(format!("delete queue {q}"))))?;
        }
        let _ = ch.close(200, "groups forgotten".into()).await;
        Ok(())
    }

    async fn tap(&self, name: &str) -> Result<Box<dyn Tap>, TransportError> {
        let n = self.ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = format!("{}.tap.{n}", self.ctx.namespace);
        // Registered first: a tap that fails half-way leaves nothing cleanup misses.
        lock(&self.taps).push(queue.clone());
        let tap = tap::open(self.ctx.clone(), name, queue).await?;
        Ok(Box::new(tap) as Box<dyn Tap>)
    }
}
