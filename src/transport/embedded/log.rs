//! A partition's log: an append-only sequence with bounded retention.
//!
//! Offsets are absolute and never reused; retention drops the oldest entries and moves
//! `base` forward, so a reader positioned before `base` has lost those events, exactly as a
//! Kafka consumer that falls behind retention does.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::clock::RunTime;
use crate::events::Envelope;

pub(crate) struct Stored {
    pub envelope: Arc<Envelope>,
    pub at: RunTime,
}

pub(crate) struct PartitionLog {
    base: u64,
    entries: VecDeque<Stored>,
    retention: u64,
}

impl PartitionLog {
    pub fn new(retention: u64) -> Self {
        PartitionLog {
            base: 0,
            entries: VecDeque::new(),
            retention: retention.max(1),
        }
    }

    /// Appends and returns the new entry's offset.
    pub fn append(&mut self, envelope: Arc<Envelope>, at: RunTime) -> u64 {
        let offset = self.end();
        self.entries.push_back(Stored { envelope, at });
        while self.entries.len() as u64 > self.retention {
            self.entries.pop_front();
            self.base += 1;
        }
        offset
    }

    /// Drops every entry below `offset` (what every group has committed), keeping the rest.
    pub fn drop_before(&mut self, offset: u64) {
        while self.base < offset && self.entries.pop_front().is_some() {
            self.base += 1;
        }
    }

    /// The oldest retained offset.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the newest offset.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    pub fn get(&self, offset: u64) -> Option<&Stored> {
        let i = offset.checked_sub(self.base)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The first retained offset appended at or after `at`.
    pub fn offset_at(&self, at: RunTime) -> u64 {
        self.base + self.entries.partition_point(|s| s.at < at) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventMeta, Topic};
    use bytes::Bytes;

    fn env(id: u64) -> Arc<Envelope> {
        Arc::new(Envelope {
            user: None,
            topic: Topic::OrderCreated,
            meta: EventMeta {
                event_id: id,
                order_id: id,
                seq: 0,
                intended_at: 0,
                intended_wall_ns: 0,
                sent_at: 0,
                idempotency_key: Bytes::new(),
            },
            payload: Bytes::new(),
        })
    }

    #[test]
    fn retention_drops_the_oldest_and_keeps_offsets() {
        let mut log = PartitionLog::new(3);
        for i in 0..5 {
            assert_eq!(log.append(env(i), i * 10), i);
        }
        assert_eq!((log.base(), log.end()), (2, 5));
        assert!(log.get(1).is_none());
        assert_eq!(log.get(2).map(|s| s.envelope.meta.event_id), Some(2));
        assert_eq!(log.offset_at(25), 3);
        assert_eq!(log.offset_at(0), 2);
        assert_eq!(log.offset_at(1_000), 5);
    }
}
