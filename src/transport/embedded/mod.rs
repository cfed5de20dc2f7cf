//! The embedded broker: the default transport, in-process, with Kafka's semantics.
//!
//! Guarantees (DESIGN.md §6):
//! - publish ack = the event is appended to its partition (key = order id), in order;
//! - consumer groups own partitions (eager rebalancing), commit offsets on ack, and a member
//!   that stops (a dropped [`Subscription`]) leaves without committing what it held: those
//!   events are redelivered to the remaining members, flagged `redelivered`;
//! - a nacked delivery is handed out again by its partition's owner;
//! - rewind moves a group's committed offsets back (to the earliest retained event or to a
//!   time); lag = published and not committed; retention keeps the newest N per partition;
//! - unless told to keep them (a scenario that replays), events every group reading their
//!   topic has committed are freed (all of a topic nobody reads), so memory follows the
//!   backlog, not the run's length.
//!
//! It exists so the main job runs with nothing installed and so tests are deterministic. It
//! is not a product broker: nothing is persisted and there is one process.

pub mod config;
mod group;
mod log;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use super::groups::Groups;
use group::{Group, Tp, TpState, lock};
use log::PartitionLog;

use super::{
    Ack, AckHandle, BoxFuture, Delivery, RewindTo, Subscription, Transport, TransportError,
    TransportInfo,
};
use crate::clock::Clock;
use crate::events::{Envelope, Topic};

/// Handed-out, unacked events a member may hold per partition before it must wait.
const WINDOW_MAX: usize = 2048;
/// Events taken from one partition per fetch, so members rotate over their partitions.
const FETCH_BATCH: usize = 64;
/// A partition frees what every group committed once per this many appends: often enough
/// that the committed tail stays small, rarely enough to cost nothing per event.
const FREE_EVERY: u64 = 1024;

pub struct EmbeddedBroker {
    inner: Arc<Inner>,
}

struct Inner {
    partitions: u32,
    retention: u64,
    /// Free events every reading group has committed (off when the run replays them).
    free_committed: bool,
    clock: Clock,
    logs: Vec<Vec<Mutex<PartitionLog>>>,
    groups: Groups<Group>,
    /// Groups per topic, to wake on publish.
    readers: Vec<RwLock<Vec<Arc<Group>>>>,
}

impl EmbeddedBroker {
    /// A broker that keeps every event up to its retention.
    pub fn new(partitions: u32, retention: u64, clock: Clock) -> EmbeddedBroker {
        EmbeddedBroker::build(partitions, retention, false, clock)
    }

    /// A broker that frees events once every group reading their topic has committed them (a
    /// topic nobody reads keeps nothing). A group that rewinds could not re-read them,
    /// so a scenario that replays uses [`EmbeddedBroker::new`].
    pub fn freeing_committed(partitions: u32, retention: u64, clock: Clock) -> EmbeddedBroker {
        EmbeddedBroker::build(partitions, retention, true, clock)
    }

    fn build(
        partitions: u32,
        retention: u64,
        free_committed: bool,
        clock: Clock,
    ) -> EmbeddedBroker {
        let partitions = partitions.max(1);
        let logs = Topic::ALL
            .iter()
            .map(|_| {
                (0..partitions)
                    .map(|_| Mutex::new(PartitionLog::new(retention)))
                    .collect()
            })
            .collect();
        EmbeddedBroker {
            inner: Arc::new(Inner {
                partitions,
                retention,
                free_committed,
                clock,
                logs,
                groups: Groups::default(),
                readers: Topic::ALL.iter().map(|_| RwLock::new(Vec::new())).collect(),
            }),
        }
    }
}

impl Inner {
    fn log(&self, tp: Tp) -> &Mutex<PartitionLog> {
        &self.logs[tp.topic.index()][tp.partition as usize]
    }

    fn partition_for(&self, key: u64) -> u32 {
        // Fibonacci hashing: consecutive order ids spread over partitions.
        let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> 32) % u64::from(self.partitions)) as u32
    }

    fn append(&self, envelope: Envelope) -> Ack {
        let topic = envelope.topic;
        let partition = self.partition_for(envelope.key());
        let at = self.clock.now();
        let offset = lock(self.log(Tp { topic, partition })).append(Arc::new(envelope), at);
        for group in self.readers[topic.index()]
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            group.wake_owner(topic, partition);
        }
        if self.free_committed && offset % FREE_EVERY == FREE_EVERY - 1 {
            self.free_committed_of(Tp { topic, partition });
        }
        Ack { partition, offset }
    }

    /// Drops what every group reading `tp`'s topic has committed (everything, when no group
    /// reads it: a group that joins later starts from what is published after).
    fn free_committed_of(&self, tp: Tp) {
        let committed = {
            let readers = self.readers[tp.topic.index()]
                .read()
                .unwrap_or_else(|e| e.into_inner());
            readers
                .iter()
                .filter_map(|g| g.state(tp).map(|s| lock(s).committed))
                .min()
        };
        let mut log = lock(self.log(tp));
        // Committed by every group that reads it, which is true of all of a topic nobody
        // reads (payment.attempted in the standard shop): kept, it would grow with the run.
        let end = log.end();
        log.drop_before(committed.unwrap_or(end));
    }

    fn group(&self, name: &str, topics: &[Topic]) -> Result<Arc<Group>, TransportError> {
        let group = self
            .groups
            .join(name, topics, || Ok(Group::new(topics, self.partitions)))?;
        // A new group reads from the earliest event: wake it on every later publish.
        for topic in topics {
            let mut readers = self.readers[topic.index()]
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if !readers.iter().any(|g| Arc::ptr_eq(g, &group)) {
                readers.push(group.clone());
            }
        }
        Ok(group)
    }

    fn existing_group(&self, name: &str) -> Result<Arc<Group>, TransportError> {
        self.groups.existing(name)
    }
}

#[async_trait::async_trait]
impl Transport for EmbeddedBroker {
    fn info(&self) -> TransportInfo {
        TransportInfo {
            kind: "embedded".into(),
            settings: vec![
                ("publish ack".into(), "appended to the partition log".into()),
                ("partitions".into(), self.inner.partitions.to_string()),
                (
                    "retention".into(),
                    if self.inner.free_committed {
                        format!(
                            "{} events per partition; freed once every group committed them",
                            self.inner.retention
                        )
                    } else {
                        format!("{} events per partition", self.inner.retention)
                    },
                ),
                (
                    "commit".into(),
                    "offset committed on ack (contiguous)".into(),
                ),
                (
                    "rebalance".into(),
                    "eager, uncommitted work redelivered".into(),
                ),
            ],
        }
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        let ack = self.inner.append(envelope);
        Box::pin(async move { Ok(ack) })
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let group = self.inner.group(group, topics)?;
        let (member, wake) = group.join();
        Ok(Box::new(EmbeddedSubscription {
            broker: self.inner.clone(),
            group,
            member,
            wake,
            generation: 0,
            owned: Vec::new(),
            cursor: 0,
            buffer: VecDeque::new(),
        }) as Box<dyn Subscription>)
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        let group = self.inner.existing_group(group)?;
        group.rewind(|tp| {
            let log = lock(self.inner.log(tp));
            match to {
                RewindTo::Earliest => log.base(),
                RewindTo::Time(at) => log.offset_at(at),
            }
        });
        Ok(())
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        let group = self.inner.existing_group(group)?;
        let lag = group
            .tps
            .iter()
            .map(|state| {
                let state = lock(state);
                let end = lock(self.inner.log(state.tp)).end();
                end.saturating_sub(state.committed)
            })
            .sum();
        Ok(lag)
    }
}

struct EmbeddedSubscription {
    broker: Arc<Inner>,
    group: Arc<Group>,
    member: u64,
    wake: Arc<tokio::sync::Notify>,
    /// The generation `owned` was computed for.
    generation: u64,
    owned: Vec<usize>,
    cursor: usize,
    buffer: VecDeque<(u64, Delivery)>,
}

/// Whether a partition has something to hand out: a nacked offset, or a published one the
/// window has room for.
fn has_more(state: &TpState, end: u64) -> bool {
    !state.retry.is_empty() || (state.next_fetch < end && state.window.len() < WINDOW_MAX)
}

impl EmbeddedSubscription {
    /// Recomputes the partitions this member owns after a rebalance.
    fn refresh_ownership(&mut self, generation: u64) {
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.owned = (0..self.group.tps.len())
            .filter(|&i| lock(&self.group.tps[i]).owner == Some(self.member))
            .collect();
        // Fetched under an old generation: the new owner re-reads them from the commit. What
        // was fetched under this one (a fetch that raced the rebalance) is still this member's.
        self.buffer.retain(|(fetched, _)| *fetched == generation);
    }

    /// Takes a batch from every owned partition that has something to hand out, starting at
    /// a rotating partition so none is favoured. One pass serves many deliveries. Only the
    /// partitions marked ready are looked at (all of them after a rebalance): with a few
    /// events at a time, locking every owned partition per pass cost more than the deliveries.
    fn fill(&mut self) {
        let generation = self
            .group
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        self.refresh_ownership(generation);
        let n = self.owned.len();
        for i in 0..n {
            let index = self.owned[(self.cursor + i) % n];
            if self.group.take_ready(index) {
                self.fetch_from(index);
            }
        }
        self.cursor = self.cursor.wrapping_add(1);
    }

    fn fetch_from(&mut self, index: usize) {
        let mut state = lock(&self.group.tps[index]);
        if state.owner != Some(self.member) {
            // Moved to another member since this one looked: the mark it took is the new
            // owner's.
            drop(state);
            self.group.wake_index(index);
            return;
        }
        let generation = state.generation;
        let log = lock(self.broker.log(state.tp));
        state.skip_to(log.base());
        let mut offsets = Vec::new();
        while offsets.len() < FETCH_BATCH && has_more(&state, log.end()) {
            if let Some(offset) = state.retry.pop_front() {
                offsets.push(offset);
            } else {
                offsets.push(state.next_fetch);
                state.window.push_back(false);
                state.next_fetch += 1;
            }
        }
        // Stopped at the batch size with more to hand out: look again on the next pass.
        if has_more(&state, log.end()) {
            self.group.mark_ready(index);
        }
        for offset in offsets {
            let Some(stored) = log.get(offset) else {
                // Dropped by retention after being handed out once: it cannot come back.
                state.ack(offset);
                continue;
            };
            let redelivered = offset < state.delivered_end;
            state.delivered_end = state.delivered_end.max(offset + 1);
            let ack = EmbeddedAck {
                group: self.group.clone(),
                index,
                offset,
                generation,
            };
            self.buffer.push_back((
                generation,
                Delivery {
                    envelope: stored.envelope.clone(),
                    redelivered,
                    ack: Box::new(ack),
                },
            ));
        }
    }
}

impl Subscription for EmbeddedSubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>> {
        Box::pin(async move {
            loop {
                let current = self
                    .group
                    .generation
                    .load(std::sync::atomic::Ordering::Acquire);
                while let Some((generation, delivery)) = self.buffer.pop_front() {
                    if generation == current {
                        return Ok(Some(delivery));
                    }
                }
                self.fill();
                if self.buffer.is_empty() {
                    // A publish after `fill` looked left a permit, so this cannot miss it.
                    self.wake.clone().notified().await;
                }
            }
        })
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        // A stop without commit: the group rebalances and re-reads from committed offsets.
        self.group.leave(self.member);
    }
}

struct EmbeddedAck {
    group: Arc<Group>,
    index: usize,
    offset: u64,
    generation: u64,
}

impl EmbeddedAck {
    fn settle(self, ack: bool) {
        let mut state = lock(&self.group.tps[self.index]);
        if state.generation != self.generation {
            // The partition moved on (rebalance or rewind): this ack is stale.
            return;
        }
        let was_full = state.window.len() >= WINDOW_MAX;
        if ack {
            state.ack(self.offset);
        } else {
            state.retry.push_back(self.offset);
        }
        drop(state);
        if was_full || !ack {
            self.group.wake_index(self.index);
        }
    }
}

impl AckHandle for EmbeddedAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settle(true);
        Box::pin(async { Ok(()) })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settle(false);
        Box::pin(async { Ok(()) })
    }
}
