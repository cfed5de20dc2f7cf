//! One member of a NATS consumer group: a pull per topic consumer, merged into one queue.
//!
//! Each pull runs in its own task and re-opens itself after any error (a lost connection, a
//! missed heartbeat, a consumer replaced by a rewind), with backoff, so `next()` keeps
//! waiting through a broker restart instead of failing. Dropping the member aborts its tasks:
//! what it held unacked comes back to the others after AckWait.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::AckKind;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{GroupState, Inner};
use crate::events::{Envelope, EventMeta};
use crate::transport::Cause;
use crate::transport::backoff::Backoff;
use crate::transport::{AckHandle, BoxFuture, Delivery, Subscription, TransportError};

/// Messages one pull request asks for; small, so several members of a group share the work.
const PULL_BATCH: usize = 64;
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

/// The reply subjects of the deliveries a live member holds (pulled, not yet settled). The
/// member tells the server it is still working on them (`+WPI`) every third of AckWait, so a
/// live member keeps what it holds, as a partition owner would; a crashed one stops telling.
type Held = Arc<Mutex<HashSet<String>>>;

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashSet<String>> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) struct NatsSubscription {
    group: Arc<GroupState>,
    queue: mpsc::Receiver<Pulled>,
    held: Held,
    tasks: Vec<JoinHandle<()>>,
}

impl NatsSubscription {
    /// Starts the member's pulls and returns once each has its first pull request open (or
    /// the admin bound passed: the pull keeps trying by itself).
    pub(super) async fn start(inner: Arc<Inner>, group: Arc<GroupState>) -> NatsSubscription {
        let (tx, queue) = mpsc::channel(QUEUE_MAX);
        let held: Held = Arc::default();
        let mut opened = Vec::new();
        let mut tasks: Vec<JoinHandle<()>> = (0..group.consumers.len())
            .map(|index| {
                let (ready, ready_rx) = tokio::sync::oneshot::channel();
                opened.push(ready_rx);
                let pull = Pull {
                    inner: inner.clone(),
                    group: group.clone(),
                    index,
                    tx: tx.clone(),
                    held: held.clone(),
                };
                tokio::spawn(pull.run(ready))
            })
            .collect();
        tasks.push(tokio::spawn(keep_in_progress(
            inner.js.client(),
            held.clone(),
            inner.options.ack_wait / 3,
        )));
        for ready in opened {
            let _ = tokio::time::timeout(super::ADMIN_TIMEOUT, ready).await;
        }
        NatsSubscription {
            group,
            queue,
            held,
            tasks,
        }
    }

    fn release(&self, message: &async_nats::jetstream::Message) {
        if let Some(reply) = &message.reply {
            lock(&self.held).remove(reply.as_str());
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
                self.release(&message);
                return None;
            }
        };
        let (sequence, delivered) = info;
        let meta = message.headers.as_ref().and_then(|headers| {
            EventMeta::from_headers(|name| headers.get(name).map(|v| v.as_str()))
        });
        let Some(meta) = meta else {
            tracing::warn!(group = %self.group.name, sequence, "NATS message without doorbuster headers: terminated");
            self.release(&message);
            tokio::spawn(async move {
                let _ = message.ack_with(AckKind::Term).await;
            });
            return None;
        };
        self.group.handed_max[index].fetch_max(sequence, Ordering::AcqRel);
        let redelivered =
            delivered > 1 || sequence <= self.group.reread_max[index].load(Ordering::Acquire);
        let envelope = Envelope {
            user: None,
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
                held: self.held.clone(),
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
                    self.release(&pulled.message);
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
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Tells the server every `period` that the held deliveries are still being worked on.
async fn keep_in_progress(client: async_nats::Client, held: Held, period: Duration) {
    let period = period.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let replies: Vec<String> = lock(&held).iter().cloned().collect();
        for reply in replies {
            // Best effort: a lost +WPI only risks a redelivery, which the contract allows.
            let _ = client
                .publish(reply, bytes::Bytes::from_static(b"+WPI"))
                .await;
        }
    }
}

/// One member's pull from the consumer of one topic.
struct Pull {
    inner: Arc<Inner>,
    group: Arc<GroupState>,
    index: usize,
    tx: mpsc::Sender<Pulled>,
    held: Held,
}

impl Pull {
    /// Opens a pull on the consumer in the current generation.
    async fn open(&self) -> Result<(u64, pull::Stream), Cause> {
        let _rewinding = self.group.rewinding.read().await;
        let generation = self.group.generation();
        let name = &self.group.consumers[self.index];
        let stream = tokio::time::timeout(
            super::ADMIN_TIMEOUT,
            self.inner.js.get_stream_no_info(&self.inner.stream),
        )
        .await
        .map_err(|_| Cause::from("no answer"))?
        .map_err(Cause::nats)?;
        let consumer: async_nats::jetstream::consumer::PullConsumer = tokio::time::timeout(
            super::ADMIN_TIMEOUT,
            stream.get_consumer::<pull::Config>(name),
        )
        .await
        .map_err(|_| Cause::from(format!("consumer {name}: no answer")))?
        .map_err(|e| Cause::nats(e).context(format!("consumer {name}")))?;
        let messages = super::pull(&consumer, PULL_BATCH).await?;
        Ok((generation, messages))
    }

    /// Pulls into the member's queue until the member is dropped.
    async fn run(self, ready: tokio::sync::oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut rewinds = self.group.generation.subscribe();
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            rewinds.mark_unchanged();
            let (generation, mut messages) = match self.open().await {
                Ok(opened) => opened,
                Err(reason) => {
                    tracing::debug!(group = %self.group.name, %reason, "NATS pull not open, retrying");
                    backoff.wait().await;
                    continue;
                }
            };
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            loop {
                tokio::select! {
                    changed = rewinds.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        // Re-open on the consumer the rewind created.
                        backoff.reset();
                        break;
                    }
                    item = messages.next() => match item {
                        Some(Ok(message)) => {
                            backoff.reset();
                            if let Some(reply) = &message.reply {
                                lock(&self.held).insert(reply.to_string());
                            }
                            let pulled = Pulled { generation, index: self.index, message };
                            if self.tx.send(pulled).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(group = %self.group.name, error = %e, "NATS pull failed, re-opening");
                            backoff.wait().await;
                            break;
                        }
                        None => {
                            backoff.wait().await;
                            break;
                        }
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
    held: Held,
}

impl NatsAck {
    async fn settle(self, kind: AckKind) -> Result<(), TransportError> {
        if let Some(reply) = &self.message.reply {
            lock(&self.held).remove(reply.as_str());
        }
        // Confirmed by the server, so the lag a caller reads next already counts it.
        let result = match kind {
            AckKind::Ack => self.message.double_ack().await,
            _ => self.message.ack_with(kind).await,
        };
        match result {
            Ok(()) => Ok(()),
            // The consumer that handed it out is gone; the new one hands it out again.
            Err(_) if self.generation != self.group.generation() => Ok(()),
            Err(e) => Err(self
                .group
                .error(Cause::nats(e).context(format!("{kind:?} not confirmed")))),
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
