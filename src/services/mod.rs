//! The simulated services of the standard topology (DESIGN.md §2).
//!
//! Each service is a consumer group on the target transport: `runner.rs` owns the replicas,
//! their subscriptions, concurrency, per-key ordering and commit policy, and records every
//! delivery; a [`Service`] only says what one event means to it. Services know events, never
//! each other. Idempotency is on by default and can be switched off per service, which is how
//! negative controls double-charge or send a second email on purpose.

pub mod analytics;
pub mod config;
pub mod email;
pub mod inventory;
pub mod model;
pub mod payment;
pub mod provider;
pub mod runner;
pub mod warehouse;

use std::sync::{Arc, Mutex};

use roaring::RoaringTreemap;

use crate::events::Envelope;
use crate::publisher::Publisher;
use crate::sync::lock;
use crate::topology::ServiceKind;
use crate::transport::{BoxFuture, SharedStore, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The event could not be understood; it is acked and reported (retrying cannot help).
    #[error("{service}: malformed {what} in order {order}: {reason}")]
    Malformed {
        service: ServiceKind,
        what: &'static str,
        order: u64,
        reason: String,
    },
    /// A publish or a call on the shared state failed; the delivery is nacked and comes back.
    #[error("{service}: {source}")]
    Broker {
        service: ServiceKind,
        #[source]
        source: TransportError,
    },
}

/// Parses the `order.created` payload a service needs; a payload that does not parse is a
/// malformed event (acked and reported, since retrying cannot help).
pub fn order_view(
    service: ServiceKind,
    event: &Envelope,
) -> Result<crate::orders::OrderView<'_>, ServiceError> {
    crate::orders::parse_view(&event.payload).map_err(|e| ServiceError::Malformed {
        service,
        what: "order.created payload",
        order: event.meta.order_id,
        reason: e.to_string(),
    })
}

pub trait Service: Send + Sync + 'static {
    fn kind(&self) -> ServiceKind;

    /// Handles one delivery. `Ok` means done (ack); `Err(Publish)` means try again (nack).
    fn handle<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, Result<(), ServiceError>>;
}

/// What every service gets: the way to publish and the run's observer.
#[derive(Clone)]
pub struct ServiceEnv {
    pub publisher: Publisher,
    /// The run's seed: a service's random choices (its retry jitter) are drawn from it.
    pub seed: u64,
    /// The state replicas in other processes share (the shards of one run id), or `None`:
    /// every replica is in this process and state stays in memory.
    pub shared: Option<Arc<dyn SharedStore>>,
    /// This process among the shards of the run (0 without shards): what a service makes up
    /// (a non-idempotent payment's fresh keys) is its own.
    pub process: u32,
}

impl ServiceEnv {
    /// `service`'s set of handled keys named `space`: in the store the shards share, when
    /// there is one, else in memory.
    pub fn processed(&self, service: ServiceKind, space: &'static str) -> Processed {
        Processed {
            service,
            keys: match &self.shared {
                Some(store) => Keys::Shared {
                    store: store.clone(),
                    space,
                },
                None => Keys::Local(Mutex::default()),
            },
        }
    }

    /// `service`'s idempotency store, decided by its configuration.
    pub fn idempotency(&self, service: ServiceKind, enabled: bool) -> Idempotency {
        Idempotency {
            enabled,
            processed: self.processed(service, service.name()),
        }
    }
}

/// The set of keys a service has already handled: its idempotency store. `claim` is the
/// unique-constraint insert a real service does before applying an effect. Keys are order
/// ids (dense), so a compressed bitmap holds a million in about 130 KB.
pub struct Processed {
    service: ServiceKind,
    keys: Keys,
}

enum Keys {
    Local(Mutex<RoaringTreemap>),
    /// Run-wide: a second shard's replica finds what the first one claimed.
    Shared {
        store: Arc<dyn SharedStore>,
        space: &'static str,
    },
}

impl Processed {
    /// Claims `key` and, the first time, applies `effect`, as one step: a real service's
    /// unique-constraint insert and its effect commit in one transaction. In memory they
    /// are one synchronous step; with the state shared across shards the pair runs as a task
    /// of its own, so that a consumer crash dropping this call between the broker's answer
    /// and the effect cannot leave a key claimed whose effect never happened. A shared store
    /// that cannot be reached is an error: the delivery comes back, as when a real
    /// service's database is down.
    pub async fn claim_then(
        &self,
        key: u64,
        effect: impl FnOnce() + Send + 'static,
    ) -> Result<bool, ServiceError> {
        let (store, space) = match &self.keys {
            Keys::Local(keys) => {
                let first = lock(keys).insert(key);
                if first {
                    effect();
                }
                return Ok(first);
            }
            Keys::Shared { store, space } => (store.clone(), *space),
        };
        let step = tokio::spawn(async move {
            let first = store.claim(space, key).await?;
            if first {
                effect();
            }
            Ok(first)
        });
        let done = step.await.unwrap_or_else(|e| {
            Err(TransportError::Store {
                space: space.to_owned(),
                source: crate::transport::Cause::Observed(format!("claim task: {e}")),
            })
        });
        done.map_err(|e| self.failed(e))
    }

    /// A shared store's failure, as this service's: the delivery is nacked and comes back.
    fn failed(&self, source: TransportError) -> ServiceError {
        ServiceError::Broker {
            service: self.service,
            source,
        }
    }

    /// True the first time `key` is claimed (see [`Self::claim_then`]).
    pub async fn claim(&self, key: u64) -> Result<bool, ServiceError> {
        match &self.keys {
            Keys::Local(keys) => Ok(lock(keys).insert(key)),
            Keys::Shared { store, space } => {
                store.claim(space, key).await.map_err(|e| self.failed(e))
            }
        }
    }

    pub async fn contains(&self, key: u64) -> Result<bool, ServiceError> {
        match &self.keys {
            Keys::Local(keys) => Ok(lock(keys).contains(key)),
            Keys::Shared { store, space } => {
                store.claimed(space, key).await.map_err(|e| self.failed(e))
            }
        }
    }
}

/// A service's idempotency, decided by its configuration.
pub struct Idempotency {
    enabled: bool,
    processed: Processed,
}

impl Idempotency {
    /// Applies `effect` unless `key` was handled before (always when idempotency is off),
    /// claim and effect as one step ([`Processed::claim_then`]); true when it applied it.
    pub async fn first_time_then(
        &self,
        key: u64,
        effect: impl FnOnce() + Send + 'static,
    ) -> Result<bool, ServiceError> {
        if !self.enabled {
            effect();
            return Ok(true);
        }
        self.processed.claim_then(key, effect).await
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    use super::*;
    use crate::services::provider::core::tests::Books;

    /// A service whose shared claim reached the store applies its effect even when the
    /// delivery's handling is dropped before reading the answer (a consumer crash): claim
    /// and effect are one step, as in one process.
    #[tokio::test(start_paused = true)]
    async fn a_shared_claim_dropped_mid_way_still_applies_its_effect() {
        let processed = Processed {
            service: ServiceKind::Email,
            keys: Keys::Shared {
                store: Arc::new(Books::default()),
                space: "email",
            },
        };
        let applied = Arc::new(AtomicBool::new(false));
        let effect = {
            let applied = applied.clone();
            move || applied.store(true, SeqCst)
        };
        let mut call = Box::pin(processed.claim_then(7, effect));
        tokio::select! {
            biased;
            _ = &mut call => panic!("claimed within one poll"),
            () = std::future::ready(()) => {}
        }
        drop(call);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        assert!(applied.load(SeqCst), "the claim's effect was applied");
        let again = processed.claim_then(7, || panic!("applied twice"));
        assert!(!again.await.expect("claimed"));
    }
}
