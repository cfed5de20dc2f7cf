//! One member of a NATS consumer group: a pull per topic consumer, merged into one queue.
//!
//! Each pull runs in its own task and re-opens itself after any error (a lost connection, a
//! missed heartbeat, a consumer replaced by a rewind), with backoff, so `next()` keeps
//! waiting through a broker restart instead of failing. Dropping the member aborts its tasks:
//! what it held unacked comes back to the others after AckWait.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::AckKind;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{GroupState, Inner};
use crate::events::{Envelope, EventMeta};
use crate::transport::{AckHandle, BoxFuture, Delivery, Subscription, TransportError};

/// Messages one pull request asks for; small, so several members of a group share the work.
const PULL_BATCH: usize = 64;
/// A pull request's lifetime and the server's idle heartbeat inside it.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
const PULL_HEARTBEAT: Duration = Duration::from_secs(3);
/// Pulled messages waiting for `next()`, per member.
const QUEUE_MAX: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A message with the generation of the consumer it came from and the index of its topic.
struct Pulled {
    generation: u64,
    index: usize,
    message: async_nats::jetstream::Message,
}

pub(super) struct NatsSubscription {
    group: Arc<GroupState>,
    queue: mpsc::Receiver<Pulled>,
    pulls: Vec<JoinHandle<()>>,
}

impl NatsSubscription {
    pub(super) fn start(inner: Arc<Inner>, group: Arc<GroupState>) -> NatsSubscription {
        let (tx, queue) = mpsc::channel(QUEUE_MAX);
        let pulls = (0..group.consumers.len())
            .map(|index| tokio::spawn(pull_loop(inner.clone(), group.clone(), index, tx.clone())))
            .collect();
        NatsSubscription {
            group,
            queue,
            pulls,
        }
    }

    /// The delivery for a pulled message; `None` for one doorbuster cannot read.
    fn delivery(&self, pulled: Pulled) -> Option<Delivery> {
        let Pulled {
            generation,
            index,
            message,
        } = pulled;
        let info = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(e) => {
                tracing::warn!(group = %self.group.name, error = %e, "NATS message without JetStream metadata");
                return None;
            }
        };
        let (sequence, delivered) = info;
        let meta = message.headers.as_ref().and_then(|headers| {
            EventMeta::from_headers(|name| headers.get(name).map(|v| v.as_str()))
        });
        let Some(meta) = meta else {
            tracing::warn!(group = %self.group.name, sequence, "NATS message without doorbuster headers: terminated");
            tokio::spawn(async move {
                let _ = message.ack_with(AckKind::Term).await;
            });
            return None;
        };
        self.group.handed_max[index].fetch_max(sequence, Ordering::AcqRel);
        let redelivered =
            delivered > 1 || sequence <= self.group.reread_max[index].load(Ordering::Acquire);
        let envelope = Envelope {
            topic: self.group.topics[index],
            meta,
            payload: message.payload.clone(),
        };
        Some(Delivery {
            envelope: Arc::new(envelope),
            redelivered,
            ack: Box::new(NatsAck {
                message,
                group: self.group.clone(),
                generation,
            }),
        })
    }
}

impl Subscription for NatsSubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>> {
        Box::pin(async move {
            loop {
                let Some(pulled) = self.queue.recv().await else {
                    return Ok(None);
                };
                if pulled.generation != self.group.generation() {
                    // Pulled from a consumer a rewind replaced: the new one hands it out again.
                    continue;
                }
                if let Some(delivery) = self.delivery(pulled) {
                    return Ok(Some(delivery));
                }
            }
        })
    }
}

impl Drop for NatsSubscription {
    fn drop(&mut self) {
        // The crash: the pulls stop, nothing held is acked.
        for pull in &self.pulls {
            pull.abort();
        }
    }
}

/// Opens a pull on the consumer of `index` in the current generation.
async fn open(
    inner: &Inner,
    group: &GroupState,
    index: usize,
) -> Result<(u64, pull::Stream), String> {
    let _rewinding = group.rewinding.read().await;
    let generation = group.generation();
    let name = &group.consumers[index];
    let stream = tokio::time::timeout(
        super::ADMIN_TIMEOUT,
        inner.js.get_stream_no_info(&inner.stream),
    )
    .await
    .map_err(|_| "no answer".to_owned())?
    .map_err(|e| e.to_string())?;
    let consumer: async_nats::jetstream::consumer::PullConsumer = tokio::time::timeout(
        super::ADMIN_TIMEOUT,
        stream.get_consumer::<pull::Config>(name),
    )
    .await
    .map_err(|_| format!("consumer {name}: no answer"))?
    .map_err(|e| format!("consumer {name}: {e}"))?;
    let messages = tokio::time::timeout(
        super::ADMIN_TIMEOUT,
        consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages(),
    )
    .await
    .map_err(|_| format!("pull on {name}: no answer"))?
    .map_err(|e| format!("pull on {name}: {e}"))?;
    Ok((generation, messages))
}

/// Pulls from one consumer into the member's queue until the member is dropped.
async fn pull_loop(inner: Arc<Inner>, group: Arc<GroupState>, index: usize, tx: mpsc::Sender<Pulled>) {
    let mut rewinds = group.generation.subscribe();
    let mut backoff = BACKOFF_MIN;
    loop {
        rewinds.borrow_and_update();
        let (generation, mut messages) = match open(&inner, &group, index).await {
            Ok(opened) => opened,
            Err(reason) => {
                tracing::debug!(group = %group.name, %reason, "NATS pull not open, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            tokio::select! {
                changed = rewinds.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Re-open on the consumer the rewind created.
                    backoff = BACKOFF_MIN;
                    break;
                }
                item = messages.next() => match item {
                    Some(Ok(message)) => {
                        backoff = BACKOFF_MIN;
                        if tx.send(Pulled { generation, index, message }).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(group = %group.name, error = %e, "NATS pull failed, re-opening");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        break;
                    }
                    None => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        break;
                    }
                }
            }
        }
    }
}

struct NatsAck {
    message: async_nats::jetstream::Message,
    group: Arc<GroupState>,
    generation: u64,
}

impl NatsAck {
    async fn settle(self, kind: AckKind) -> Result<(), TransportError> {
        // Confirmed by the server, so the lag a caller reads next already counts it.
        let result = match kind {
            AckKind::Ack => self.message.double_ack().await,
            _ => self.message.ack_with(kind).await,
        };
        match result {
            Ok(()) => Ok(()),
            // The consumer that handed it out is gone; the new one hands it out again.
            Err(_) if self.generation != self.group.generation() => Ok(()),
            Err(e) => Err(self.group.error(format!("{kind:?} not confirmed: {e}"))),
        }
    }
}

impl AckHandle for NatsAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(self.settle(AckKind::Ack))
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(self.settle(AckKind::Nak(None)))
    }
}
