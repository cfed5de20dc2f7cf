//! `reorder`: events of one key delivered out of order. A transport wrapper holds a picked
//! event of the topic (publish is acked: the broker has it, it just delivers it late) until
//! the next event of the same key arrives, then sends the newer one first. A held event is
//! released after `HOLD_MAX` whatever happens, so nothing acked is ever dropped; `per_key_order`
//! is the check that must notice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Active, Chaos, ChaosCtx, FaultAction};
use crate::chaos::model::FaultScope;
use crate::events::{Envelope, Topic};
use crate::sync::lock;
use crate::transport::{
    Ack, BoxFuture, RewindTo, Subscription, Transport, TransportError, TransportInfo,
};

/// The longest an event is held back waiting for a later one of its key.
pub const HOLD_MAX: Duration = Duration::from_secs(1);

pub struct Reorder {
    pub topic: Topic,
    pub scope: FaultScope,
}

impl FaultAction for Reorder {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let active = Active {
            index,
            scope: self.scope,
            what: self.topic,
        };
        lock_write(&ctx.chaos.reorder).push(active);
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        lock_write(&ctx.chaos.reorder).retain(|a| a.index != index);
        Box::pin(async {})
    }
}

fn lock_write(
    slot: &std::sync::RwLock<Vec<Active<Topic>>>,
) -> std::sync::RwLockWriteGuard<'_, Vec<Active<Topic>>> {
    slot.write().unwrap_or_else(|e| e.into_inner())
}

/// Wraps the run's transport; does nothing unless a reorder fault is on.
pub struct ReorderTransport {
    inner: Arc<dyn Transport>,
    chaos: Arc<Chaos>,
    seed: u64,
    held: Arc<Mutex<HashMap<(Topic, u64), Envelope>>>,
}

impl ReorderTransport {
    pub fn new(inner: Arc<dyn Transport>, chaos: Arc<Chaos>, seed: u64) -> ReorderTransport {
        ReorderTransport {
            inner,
            chaos,
            seed,
            held: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl Transport for ReorderTransport {
    fn info(&self) -> TransportInfo {
        self.inner.info()
    }

    async fn shared_store(
        &self,
    ) -> Result<Option<Arc<dyn crate::transport::SharedStore>>, TransportError> {
        self.inner.shared_store().await
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        Box::pin(async move {
            let key = (envelope.topic, envelope.key());
            let earlier = lock(&self.held).remove(&key);
            if let Some(earlier) = earlier {
                // The newer event overtakes the one held back.
                let ack = self.inner.publish(envelope).await;
                self.inner.publish(earlier).await?;
                return ack;
            }
            let picked = {
                let on = self.chaos.reorder.read().unwrap_or_else(|e| e.into_inner());
                on.iter().any(|a| {
                    a.what == envelope.topic
                        && super::scope::applies(self.seed, a.index, a.scope, &envelope.meta, 0)
                })
            };
            if !picked {
                return self.inner.publish(envelope).await;
            }
            lock(&self.held).insert(key, envelope);
            let (inner, held) = (self.inner.clone(), self.held.clone());
            tokio::spawn(async move {
                tokio::time::sleep(HOLD_MAX).await;
                let late = lock(&held).remove(&key);
                if let Some(late) = late {
                    let _ = inner.publish(late).await;
                }
            });
            Ok(Ack {
                partition: 0,
                offset: 0,
            })
        })
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        self.inner.subscribe(group, topics).await
    }

    async fn cleanup(&self) -> Result<(), TransportError> {
        self.inner.cleanup().await
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        self.inner.rewind(group, to).await
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        self.inner.lag(group).await
    }
}
