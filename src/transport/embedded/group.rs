//! Consumer-group state of the embedded broker: membership, partition ownership, committed
//! offsets and the window of handed-out, not-yet-acked offsets of each partition.
//!
//! Rebalancing is eager, as in Kafka's classic protocol: any join, leave or rewind bumps the
//! generation, every partition restarts from its committed offset, and acks carrying an old
//! generation are ignored. That is what turns a crashed member's unacked work into
//! redeliveries elsewhere.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub(crate) use crate::sync::lock;

use crate::events::Topic;

/// A topic-partition the group consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tp {
    pub topic: Topic,
    pub partition: u32,
}

pub(crate) struct TpState {
    pub tp: Tp,
    /// Everything below is acked (and was delivered); the group's committed position.
    pub committed: u64,
    /// Next offset to hand out.
    pub next_fetch: u64,
    /// One past the highest offset ever handed out: below it a delivery is a redelivery.
    pub delivered_end: u64,
    /// Ack flags for offsets `committed..next_fetch`.
    pub window: VecDeque<bool>,
    /// Nacked offsets waiting to be handed out again.
    pub retry: VecDeque<u64>,
    pub owner: Option<u64>,
    /// The owner's wake-up: a publish to this partition wakes only the member that reads it.
    pub owner_wake: Option<Arc<Notify>>,
    pub generation: u64,
}

impl TpState {
    fn reset_to_committed(&mut self, owner: Option<&Member>, generation: u64) {
        self.next_fetch = self.committed;
        self.window.clear();
        self.retry.clear();
        self.owner = owner.map(|m| m.id);
        self.owner_wake = owner.map(|m| m.wake.clone());
        self.generation = generation;
    }

    /// Marks `offset` acked and advances the committed position past every acked prefix.
    pub fn ack(&mut self, offset: u64) {
        let Some(i) = offset.checked_sub(self.committed) else {
            return;
        };
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| self.window.get_mut(i)) {
            *slot = true;
        }
        self.compact();
    }

    /// Skips offsets that retention already dropped: they can no longer be delivered, so
    /// nothing waits for their acks (the ledger reports them as lost).
    pub fn skip_to(&mut self, base: u64) {
        if self.next_fetch >= base {
            return;
        }
        if self.window.is_empty() {
            self.committed = base;
        } else {
            self.window
                .extend(std::iter::repeat_n(true, (base - self.next_fetch) as usize));
        }
        self.next_fetch = base;
        self.compact();
    }

    fn compact(&mut self) {
        while self.window.front() == Some(&true) {
            self.window.pop_front();
            self.committed += 1;
        }
    }
}

/// A member as the group sees it. Its `wake` holds a permit once something is there for it
/// (a publish to a partition it owns, an ack that frees its window, a rebalance), so a
/// wake-up sent while it was busy is not lost.
pub(crate) struct Member {
    pub id: u64,
    pub wake: Arc<Notify>,
}

pub(crate) struct Group {
    pub topics: Vec<Topic>,
    partitions: u32,
    pub tps: Vec<Mutex<TpState>>,
    /// Per partition in `tps`: something happened that its owner has not looked at yet (a
    /// publish, a nack, an ack that freed a full window, a rebalance). A member looks only at
    /// these, so a fetch costs the partitions that changed, not every partition it owns.
    ready: Vec<AtomicBool>,
    pub generation: AtomicU64,
    members: Mutex<Vec<Member>>,
    next_member: AtomicU64,
}

impl crate::transport::groups::GroupTopics for Group {
    fn topics(&self) -> &[Topic] {
        &self.topics
    }
}

impl Group {
    pub fn new(topics: &[Topic], partitions: u32) -> Group {
        let mut tps = Vec::new();
        for &topic in topics {
            for partition in 0..partitions {
                tps.push(Mutex::new(TpState {
                    tp: Tp { topic, partition },
                    committed: 0,
                    next_fetch: 0,
                    delivered_end: 0,
                    window: VecDeque::new(),
                    retry: VecDeque::new(),
                    owner: None,
                    owner_wake: None,
                    generation: 0,
                }));
            }
        }
        Group {
            topics: topics.to_vec(),
            partitions,
            ready: tps.iter().map(|_| AtomicBool::new(true)).collect(),
            tps,
            generation: AtomicU64::new(0),
            members: Mutex::new(Vec::new()),
            next_member: AtomicU64::new(1),
        }
    }

    /// The group's state of one topic-partition, if it reads that topic.
    pub fn state(&self, tp: Tp) -> Option<&Mutex<TpState>> {
        let topic = self.topics.iter().position(|t| *t == tp.topic)?;
        self.tps
            .get(topic * self.partitions as usize + tp.partition as usize)
    }

    /// Joins a new member; returns its id and its wake-up.
    pub fn join(&self) -> (u64, Arc<Notify>) {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let mut members = lock(&self.members);
        members.push(Member {
            id,
            wake: wake.clone(),
        });
        self.rebalance(&members, None);
        (id, wake)
    }

    pub fn leave(&self, member: u64) {
        let mut members = lock(&self.members);
        members.retain(|m| m.id != member);
        self.rebalance(&members, None);
    }

    /// Wakes the member that owns `(topic, partition)`, if the group reads it.
    pub fn wake_owner(&self, topic: Topic, partition: u32) {
        if let Some(t) = self.topics.iter().position(|x| *x == topic) {
            self.wake_index(t * self.partitions as usize + partition as usize);
        }
    }

    /// Marks the partition at `index` in `tps` ready and wakes the member that owns it.
    pub fn wake_index(&self, index: usize) {
        self.mark_ready(index);
        let wake = self.tps.get(index).and_then(|s| lock(s).owner_wake.clone());
        if let Some(wake) = wake {
            wake.notify_one();
        }
    }

    /// Moves every partition's committed position to `position(tp)` and restarts the group.
    pub fn rewind(&self, position: impl Fn(Tp) -> u64) {
        let members = lock(&self.members);
        self.rebalance(&members, Some(&position));
    }

    /// Marks the partition at `index` in `tps` as having something for its owner to look at.
    pub fn mark_ready(&self, index: usize) {
        if let Some(ready) = self.ready.get(index) {
            ready.store(true, Ordering::Release);
        }
    }

    /// Whether the partition at `index` had something to look at, clearing the mark.
    pub fn take_ready(&self, index: usize) -> bool {
        self.ready
            .get(index)
            .is_some_and(|ready| ready.swap(false, Ordering::AcqRel))
    }

    /// Round-robin assignment under a new generation; every partition restarts from its
    /// committed offset (after an optional rewind).
    fn rebalance(&self, members: &[Member], rewind: Option<&dyn Fn(Tp) -> u64>) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        for (i, state) in self.tps.iter().enumerate() {
            let mut state = lock(state);
            if let Some(position) = rewind {
                state.committed = position(state.tp);
            }
            let owner = (!members.is_empty()).then(|| &members[i % members.len()]);
            state.reset_to_committed(owner, generation);
        }
        // Every partition restarts from its commit: each new owner looks at all of them.
        for index in 0..self.tps.len() {
            self.mark_ready(index);
        }
        for member in members {
            member.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_advances_only_over_an_acked_prefix() {
        let group = Group::new(&[Topic::OrderCreated], 1);
        let mut s = lock(&group.tps[0]);
        s.window.extend([false, false, false]);
        s.next_fetch = 3;
        s.ack(1);
        assert_eq!(s.committed, 0);
        s.ack(0);
        assert_eq!(s.committed, 2);
        s.ack(2);
        assert_eq!((s.committed, s.window.len()), (3, 0));
    }

    #[test]
    fn a_partition_is_marked_ready_by_what_happens_to_it_and_by_a_rebalance() {
        let group = Group::new(&[Topic::OrderCreated], 2);
        let _ = group.join();
        assert!(
            group.take_ready(0) && group.take_ready(1),
            "a join rebalances"
        );
        assert!(!group.take_ready(0), "taking clears the mark");
        group.wake_owner(Topic::OrderCreated, 1);
        assert!(!group.take_ready(0), "only the partition published to");
        assert!(group.take_ready(1));
        let _ = group.join();
        assert!(
            group.take_ready(0) && group.take_ready(1),
            "a second join rebalances"
        );
    }

    #[test]
    fn partitions_spread_over_members_and_move_when_one_leaves() {
        let group = Group::new(&[Topic::OrderCreated], 4);
        let (a, _) = group.join();
        let (b, _) = group.join();
        let owners =
            |g: &Group| -> Vec<Option<u64>> { g.tps.iter().map(|s| lock(s).owner).collect() };
        assert_eq!(owners(&group), vec![Some(a), Some(b), Some(a), Some(b)]);
        group.leave(a);
        assert_eq!(owners(&group), vec![Some(b); 4]);
    }
}
