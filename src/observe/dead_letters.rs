//! Dead letters: what services gave up on, and what arrived on the dead-letter topic.
//!
//! A service that fails an event `max_deliveries` times publishes it to `order.dead_letter`
//! and acks the original (`sent`); an audit consumer reads that topic back (`arrived`). The
//! `dead_letters` check compares the two, so a dead letter the broker lost is caught, and
//! holds the number of dead-lettered orders to the scenario's bound.

use std::collections::{BTreeMap, BTreeSet};

use crate::topology::ServiceKind;

/// Who gave up on which event (by event id), and for which order.
#[derive(Debug, Default)]
pub struct DeadLetters {
    sent: BTreeMap<(ServiceKind, u64), u64>,
    arrived: BTreeSet<(ServiceKind, u64)>,
}

/// [`DeadLetters`] as lists, for a shard's state file.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize
)]
pub struct DeadLetterParts {
    pub sent: Vec<(ServiceKind, u64, u64)>,
    pub arrived: Vec<(ServiceKind, u64)>,
}

/// The body of an `order.dead_letter` event: the original event and why it was parked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    pub service: ServiceKind,
    /// The topic the event was consumed from.
    pub topic: String,
    pub event_id: u64,
    pub order_id: u64,
    /// Deliveries that failed before the service gave up.
    pub deliveries: u32,
    pub reason: String,
    /// The original payload, as text.
    pub payload: String,
}

impl DeadLetters {
    pub fn sent(&mut self, service: ServiceKind, event_id: u64, order_id: u64) {
        self.sent.insert((service, event_id), order_id);
    }

    /// Records an arrival; false if this dead letter arrived before (a redelivery).
    pub fn arrived(&mut self, service: ServiceKind, event_id: u64) -> bool {
        self.arrived.insert((service, event_id))
    }

    /// Sent as `(service, event, order)` and arrived as `(service, event)`: a shard's part,
    /// for `doorbuster merge` (event ids are distinct across the shards of a run).
    pub fn parts(&self) -> DeadLetterParts {
        DeadLetterParts {
            sent: self.sent.iter().map(|(&(s, e), &o)| (s, e, o)).collect(),
            arrived: self.arrived.iter().copied().collect(),
        }
    }

    /// Adds another part's dead letters.
    pub fn absorb(&mut self, parts: &DeadLetterParts) {
        for &(service, event, order) in &parts.sent {
            self.sent(service, event, order);
        }
        self.arrived.extend(parts.arrived.iter().copied());
    }

    /// Orders with at least one dead-lettered event.
    pub fn orders(&self) -> BTreeSet<u64> {
        self.sent.values().copied().collect()
    }

    pub fn sent_count(&self) -> usize {
        self.sent.len()
    }

    /// Dead letters a service sent (and the broker acked) that never arrived on the topic.
    pub fn missing(&self) -> Vec<(ServiceKind, u64, u64)> {
        self.sent
            .iter()
            .filter(|(key, _)| !self.arrived.contains(key))
            .map(|(&(service, event), &order)| (service, event, order))
            .collect()
    }

    /// Dead letters sent per service, for the summary.
    pub fn per_service(&self) -> Vec<(ServiceKind, u64)> {
        let mut counts: BTreeMap<ServiceKind, u64> = BTreeMap::new();
        for (service, _) in self.sent.keys() {
            *counts.entry(*service).or_default() += 1;
        }
        counts.into_iter().collect()
    }
}
