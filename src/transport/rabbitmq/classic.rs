//! Members of classic and quorum queues: the broker shares the queue among its consumers.
//!
//! Each member is one consumer on its own channel (manual ack, prefetch). A member task
//! forwards deliveries to its [`Subscription`]; when the connection drops it waits for the
//! link to come back and consumes again. Dropping the subscription closes its channel, so
//! RabbitMQ requeues what it held, flagged redelivered, for the other consumers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Acker, Channel, Consumer};
use tokio::sync::mpsc;

use super::link::{BACKOFF_MAX, BACKOFF_MIN, log_name};
use super::{Ctx, codec, lock};
use crate::transport::backoff::Backoff;
use crate::transport::{AckHandle, BoxFuture, Cause, Delivery, Subscription, TransportError};

/// One consumer channel of one member, between two reconnects.
struct Incarnation {
    member: u64,
    channel: Channel,
    /// Delivered to this member on this channel and not settled yet.
    held: Arc<AtomicU64>,
}

/// A classic or quorum queue and the members consuming it in this transport.
pub(super) struct ClassicGroup {
    pub queue: String,
    pub topics: Vec<crate::events::Topic>,
    live: Mutex<Vec<Incarnation>>,
}

impl ClassicGroup {
    pub(super) fn new(queue: String, topics: Vec<crate::events::Topic>) -> ClassicGroup {
        ClassicGroup {
            queue,
            topics,
            live: Mutex::new(Vec::new()),
        }
    }

    /// Deliveries this transport holds unsettled for the group, after making sure every
    /// delivery the broker sent before now has arrived (a round trip on each member channel:
    /// AMQP keeps a channel's frames in order).
    pub(super) async fn held(&self, prefetch: u16) -> u64 {
        let channels: Vec<Channel> = lock(&self.live).iter().map(|i| i.channel.clone()).collect();
        for ch in channels {
            let _ = ch.basic_qos(prefetch, BasicQosOptions::default()).await;
        }
        // Let the member tasks take what lapin buffered before the round trip answered.
        tokio::time::sleep(Duration::from_millis(30)).await;
        lock(&self.live)
            .iter()
            .map(|i| i.held.load(Ordering::SeqCst))
            .sum()
    }

    /// Closes every member channel (cleanup).
    pub(super) async fn stop(&self) {
        let channels: Vec<Channel> = lock(&self.live).drain(..).map(|i| i.channel).collect();
        for ch in channels {
            let _ = ch.close(200, "cleanup".into()).await;
        }
    }

    fn forget(&self, member: u64) -> Vec<Channel> {
        let mut live = lock(&self.live);
        let (gone, kept): (Vec<_>, Vec<_>) = live.drain(..).partition(|i| i.member == member);
        *live = kept;
        gone.into_iter().map(|i| i.channel).collect()
    }
}

/// The first subscribe of a group in this transport: declares its queue and, when the queue
/// is new, seeds it with what its topics' logs already hold, so a late group still sees every
/// event from the earliest (like a new Kafka group reading from the start).
pub(super) async fn prepare(ctx: &Ctx, group: &ClassicGroup) -> Result<(), Cause> {
    let existed = ctx.message_count(&group.queue).await?.is_some();
    let live = ctx.link.live().await?;
    let work = async {
        let ch = live.conn.create_channel().await?;
        ctx.declare_group_queue(&ch, &group.queue, &group.topics)
            .await?;
        let mut seeded = 0;
        if !existed {
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            for topic in &group.topics {
                let log = log_name(&ctx.namespace, *topic);
                let count = ctx.log_length(*topic).await?;
                if count > 0 {
                    seeded +=
                        seed_from_log(ctx, &live.conn, &ch, &log, count, &group.queue).await?;
                }
            }
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok::<u64, Cause>(seeded)
    };
    let seeded = work.await?;
    if seeded > 0 {
        tracing::info!(queue = %group.queue, seeded, "rabbitmq: late group seeded from the topic logs");
    }
    Ok(())
}

/// Copies the first `count` events of a topic log into `queue` (publisher confirms).
async fn seed_from_log(
    ctx: &Ctx,
    conn: &lapin::Connection,
    out: &Channel,
    log: &str,
    count: u64,
    queue: &str,
) -> lapin::Result<u64> {
    let reader = conn.create_channel().await?;
    reader
        .basic_qos(ctx.prefetch, BasicQosOptions::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString(LongString::from("first")),
    );
    let mut consumer = reader
        .basic_consume(
            log.into(),
            format!("{queue}.seed").into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    let mut confirms = Vec::new();
    loop {
        let next =
            tokio::time::timeout(super::link::CONNECT_TIMEOUT, next_delivery(&mut consumer)).await;
        let Ok(Some(Ok(d))) = next else { break };
        let offset = codec::stream_offset(&d.properties).unwrap_or(u64::MAX);
        let confirm = out
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &d.data,
                codec::without_stream_offset(&d.properties),
            )
            .await?;
        confirms.push(confirm);
        let _ = d.acker.ack(BasicAckOptions::default()).await;
        if offset.saturating_add(1) >= count {
            break;
        }
    }
    let seeded = confirms.len() as u64;
    for confirm in confirms {
        confirm.await?;
    }
    let _ = reader.close(200, "seeded".into()).await;
    Ok(seeded)
}

/// Opens a member's channel and starts its consumer.
async fn attach(
    ctx: &Ctx,
    group: &ClassicGroup,
    member: u64,
) -> Result<(Channel, Consumer), Cause> {
    let live = ctx.link.live().await?;
    let setup = async {
        let ch = live.conn.create_channel().await?;
        ch.basic_qos(ctx.prefetch, BasicQosOptions::default())
            .await?;
        ctx.declare_group_queue(&ch, &group.queue, &group.topics)
            .await?;
        let tag = format!("{}.m{member}.g{}", group.queue, live.generation);
        let consumer = ch
            .basic_consume(
                group.queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((ch, consumer))
    };
    match tokio::time::timeout(super::link::CONNECT_TIMEOUT, setup).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err("consumer setup timed out".into()),
    }
}

/// The consumer's next delivery, in the order the broker sent them.
pub(super) async fn next_delivery(
    consumer: &mut Consumer,
) -> Option<lapin::Result<lapin::message::Delivery>> {
    std::future::poll_fn(|cx| {
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut *consumer), cx)
    })
    .await
}

pub(super) struct ClassicSubscription {
    rx: mpsc::UnboundedReceiver<Delivery>,
    group: Arc<ClassicGroup>,
    member: u64,
    task: tokio::task::JoinHandle<()>,
}

/// Joins `group` as a new member: the first attach happens before this returns, so events
/// published afterwards are routed to the group's queue.
pub(super) async fn subscribe(
    ctx: Arc<Ctx>,
    group: Arc<ClassicGroup>,
) -> Result<Box<dyn Subscription>, TransportError> {
    let member = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let first = attach(&ctx, &group, member)
        .await
        .map_err(|source| TransportError::Group {
            group: group.queue.clone(),
            source,
        })?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_member(ctx, group.clone(), member, tx, Some(first)));
    Ok(Box::new(ClassicSubscription {
        rx,
        group,
        member,
        task,
    }))
}

async fn run_member(
    ctx: Arc<Ctx>,
    group: Arc<ClassicGroup>,
    member: u64,
    tx: mpsc::UnboundedSender<Delivery>,
    mut first: Option<(Channel, Consumer)>,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        if ctx.is_closed() || tx.is_closed() {
            return;
        }
        let attached = match first.take() {
            Some(pair) => Ok(pair),
            None => attach(&ctx, &group, member).await,
        };
        let (channel, mut consumer) = match attached {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(queue = %group.queue, error = %e, "rabbitmq: member waits for the broker");
                backoff.wait().await;
                continue;
            }
        };
        backoff.reset();
        let held = Arc::new(AtomicU64::new(0));
        lock(&group.live).push(Incarnation {
            member,
            channel: channel.clone(),
            held: held.clone(),
        });
        loop {
            let next = tokio::select! {
                next = next_delivery(&mut consumer) => next,
                () = tx.closed() => None,
            };
            let Some(Ok(d)) = next else { break };
            let Some(envelope) = codec::decode(&d.properties, d.data) else {
                tracing::warn!(queue = %group.queue, "rabbitmq: dropping a message that is not a doorbuster event");
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                continue;
            };
            held.fetch_add(1, Ordering::SeqCst);
            let delivery = Delivery {
                envelope,
                redelivered: d.redelivered,
                ack: Box::new(ClassicAck {
                    acker: d.acker,
                    held: held.clone(),
                }),
            };
            if tx.send(delivery).is_err() {
                break;
            }
        }
        for ch in group.forget(member) {
            let _ = ch.close(200, "member stopped".into()).await;
        }
        drop(channel);
    }
}

impl Subscription for ClassicSubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>> {
        Box::pin(async move { Ok(self.rx.recv().await) })
    }
}

impl Drop for ClassicSubscription {
    fn drop(&mut self) {
        // A crash: close the channel without settling, so the broker requeues what it held.
        self.task.abort();
        let channels = self.group.forget(self.member);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for ch in channels {
                    let _ = ch.close(200, "member left".into()).await;
                }
            });
        }
    }
}

struct ClassicAck {
    acker: Acker,
    held: Arc<AtomicU64>,
}

impl ClassicAck {
    fn settle(&self) {
        let _ = self
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

impl AckHandle for ClassicAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            // On a channel that has closed since, the broker already requeued the event:
            // the ack is ignored, like a Kafka commit after a rebalance.
            if let Err(e) = self.acker.ack(BasicAckOptions::default()).await {
                tracing::debug!(error = %e, "rabbitmq: ack on a closed channel ignored");
            }
            self.settle();
            Ok(())
        })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(e) = self.acker.nack(requeue).await {
                tracing::debug!(error = %e, "rabbitmq: nack on a closed channel ignored");
            }
            self.settle();
            Ok(())
        })
    }
}
