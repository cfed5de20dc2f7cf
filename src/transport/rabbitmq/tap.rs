//! A tap on one of the user's exchanges (observe mode): a queue of the run's own, bound to
//! the user's exchange the way the user's queues are, read by one consumer. The user's queues
//! are never consumed from, declared or bound: each gets its copy of a message as before,
//! and their message counts and consumers are untouched.
//!
//! `from: exchange` binds with the key `#`: everything on a topic exchange, and a fanout or
//! headers exchange ignores the key. `from: exchange:key` binds with `key`: a direct
//! exchange's routing key, or a topic exchange's pattern (`order.*`). The exchange must
//! exist; a missing one is an error naming it, and nothing is left behind.
//!
//! The queue is `{namespace}.tap.{n}`, durable, with `x-expires` of a minute rather than
//! exclusive: an exclusive queue dies with its connection, and a tap that re-made it after a
//! lost connection would miss what the shop wrote meanwhile and report it as the shop's
//! loss. This one outlives the connection, so the tap re-attaches to it through the
//! transport's [`Link`](super::link::Link) and reads on with nothing missed; a run that is
//! killed leaves it for a minute. Cleanup deletes it. A queue gone on re-attach (a broker
//! that lost it, or an outage over a minute) ends the tap with an error, and so do
//! [`FAILURES_MAX`] failed attempts in a row.
//!
//! Each delivery is acked as it is handed on (prefetch [`PREFETCH`]): after a reconnect only
//! those whose ack was lost come again. A tapped message's routing key is the key, its AMQP
//! headers the headers (plus `message_id` when it has one), its body the body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Consumer, ExchangeKind};

use super::classic::next_delivery;
use super::config::Address;
use super::{Ctx, codec};
use crate::transport::backoff::Backoff;
use crate::transport::{BoxFuture, Cause, Tap, Tapped, TransportError};

/// Deliveries the tap's consumer may hold unacked.
const PREFETCH: u16 = 1000;
/// How long the tap's queue outlives its last consumer.
const EXPIRES: Duration = Duration::from_secs(60);
/// Failed attempts in a row (consuming, re-attaching) before the tap gives up.
const FAILURES_MAX: u32 = 12;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The longest one setup step (declare, bind, consume) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct RabbitmqTap {
    ctx: Arc<Ctx>,
    /// As the scenario names it.
    name: String,
    queue: String,
    open: Option<(Channel, Consumer)>,
    backoff: Backoff,
}

fn tap_error(name: &str, source: impl Into<Cause>) -> TransportError {
    TransportError::Group {
        group: format!("tap {name}"),
        source: source.into(),
    }
}

fn short(text: &str) -> Result<ShortString, Cause> {
    ShortString::try_new(text).map_err(|e| Cause::from(format!("{text:?}: {e}")))
}

async fn bounded<T>(
    what: String,
    step: impl Future<Output = lapin::Result<T>>,
) -> Result<T, Cause> {
    match tokio::time::timeout(SETUP_TIMEOUT, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Cause::from(e).context(what)),
        Err(_) => Err(format!("{what}: no answer within {SETUP_TIMEOUT:?}").into()),
    }
}

/// Makes the tap: checks the exchange exists, declares the tap's queue, binds it and starts
/// consuming. Resolves once the binding is in place, so every message the exchange routes
/// from then on reaches the tap.
pub(super) async fn open(
    ctx: Arc<Ctx>,
    name: &str,
    queue: String,
) -> Result<RabbitmqTap, TransportError> {
    let error = |e: Cause| tap_error(name, e);
    let address = Address::parse(name).map_err(|e| error(e.into()))?;
    let exchange = short(&address.exchange).map_err(error)?;
    let binding = short(address.binding_key()).map_err(error)?;
    let live = ctx.link.live().await.map_err(error)?;
    // A passive declare only checks: a missing exchange closes this throwaway channel, and
    // nothing has been made yet.
    let check = bounded(format!("exchange {}", address.exchange), async {
        let ch = live.conn.create_channel().await?;
        let options = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        let kind = ExchangeKind::Custom(String::new());
        ch.exchange_declare(exchange.clone(), kind, options, FieldTable::default())
            .await?;
        let _ = ch.close(200, "checked".into()).await;
        Ok(())
    });
    check.await.map_err(error)?;
    let declared = bounded(format!("tap queue {queue}"), async {
        let ch = live.conn.create_channel().await?;
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_arguments(),
        )
        .await?;
        let bound = ch
            .queue_bind(
                queue.as_str().into(),
                exchange,
                binding,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        if let Err(e) = bound {
            // The exchange went away since the check: leave no queue behind.
            if let Ok(other) = live.conn.create_channel().await {
                let _ = other
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            return Err(e);
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    });
    declared.await.map_err(error)?;
    let mut tap = RabbitmqTap {
        ctx,
        name: name.to_owned(),
        queue,
        open: None,
        backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
    };
    let attached = tap.attach().await.map_err(|f| match f {
        Failure::Again(e) | Failure::Final(e) => error(e),
    })?;
    tap.open = Some(attached);
    Ok(tap)
}

/// Durable, so it outlives the connection, and removed a minute after its last consumer.
/// Classic whatever the vhost's default queue type.
fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    let expires = i64::try_from(EXPIRES.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-expires".into(), AMQPValue::LongLongInt(expires));
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("classic")),
    );
    args
}

/// Why a read failed: worth another attempt, or the end of the tap.
enum Failure {
    Again(Cause),
    Final(Cause),
}

impl RabbitmqTap {
    /// A consumer of the tap's queue on the current connection. The queue is only looked up
    /// (a passive declare): re-made after it was lost, it would hide a gap.
    async fn attach(&self) -> Result<(Channel, Consumer), Failure> {
        let live = self.ctx.link.live().await.map_err(Failure::Again)?;
        let queue = self.queue.as_str();
        let ch = bounded("channel".to_owned(), live.conn.create_channel())
            .await
            .map_err(Failure::Again)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let found = bounded(
            format!("queue {queue}"),
            ch.queue_declare(queue.into(), passive, FieldTable::default()),
        )
        .await;
        match found {
            Ok(_) => {}
            Err(e) if live.conn.status().connected() && !ch.status().connected() => {
                return Err(Failure::Final(e.context(
                    "the tap's queue is gone, and with it what the exchange routed to it",
                )));
            }
            Err(e) => return Err(Failure::Again(e)),
        }
        let consume = async {
            ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
            let tag = format!("{queue}.g{}", live.generation);
            ch.basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        };
        let consumer = bounded(format!("consume {queue}"), consume)
            .await
            .map_err(Failure::Again)?;
        Ok((ch, consumer))
    }

    /// The next message, acked, attaching first when no consumer is open.
    async fn read(&mut self) -> Result<Tapped, Failure> {
        if self.open.is_none() {
            self.open = Some(self.attach().await?);
        }
        let Some((_, consumer)) = &mut self.open else {
            return Err(Failure::Again("no consumer".into()));
        };
        match next_delivery(consumer).await {
            Some(Ok(d)) => {
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                Ok(self.tapped(d))
            }
            Some(Err(e)) => Err(Failure::Again(Cause::from(e).context("consume"))),
            None => Err(Failure::Again("the consumer was cancelled".into())),
        }
    }

    fn tapped(&self, d: lapin::message::Delivery) -> Tapped {
        let at = self.ctx.clock.now();
        let mut headers: Vec<(String, Bytes)> = d
            .properties
            .headers()
            .iter()
            .flat_map(|h| h.inner())
            .filter_map(|(name, value)| {
                codec::header_bytes(value).map(|v| (name.as_str().to_owned(), v))
            })
            .collect();
        if let Some(id) = d.properties.message_id() {
            headers.push((
                "message_id".to_owned(),
                Bytes::copy_from_slice(id.as_str().as_bytes()),
            ));
        }
        Tapped {
            key: Some(Bytes::copy_from_slice(d.routing_key.as_str().as_bytes())),
            headers,
            body: Bytes::from(d.data),
            at,
        }
    }
}

impl Tap for RabbitmqTap {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Tapped>, TransportError>> {
        Box::pin(async move {
            let mut failures = 0;
            loop {
                if self.ctx.is_closed() {
                    return Ok(None);
                }
                let reason = match self.read().await {
                    Ok(event) => {
                        self.backoff.reset();
                        return Ok(Some(event));
                    }
                    Err(Failure::Final(reason)) => return Err(tap_error(&self.name, reason)),
                    Err(Failure::Again(reason)) => reason,
                };
                if self.ctx.is_closed() {
                    return Ok(None);
                }
                failures += 1;
                if failures >= FAILURES_MAX {
                    return Err(tap_error(&self.name, reason));
                }
                tracing::debug!(tap = %self.name, %reason, "rabbitmq tap re-attaching");
                if let Some((ch, _)) = self.open.take() {
                    let _ = ch.close(200, "tap re-attaching".into()).await;
                }
                self.backoff.wait().await;
            }
        })
    }
}

impl Drop for RabbitmqTap {
    /// Closes the consumer's channel; the queue goes at cleanup, or a minute later.
    fn drop(&mut self) {
        if let Some((ch, _)) = self.open.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = ch.close(200, "tap dropped".into()).await;
            });
        }
    }
}
