//! The seam between the harness and a broker.
//!
//! Services, checks and reports see only [`Transport`], [`Subscription`] and [`Delivery`];
//! adding a broker means one folder here, one `scenario::model::Target` variant, and passing
//! the conformance suite in `tests/transport.rs`. A transport never records observations
//! itself: the driver and the services do that around its calls, so every broker is measured
//! the same way.
//!
//! Guarantees are per transport and documented in each one's module (DESIGN.md §6). The
//! contract they all share:
//! - `publish` resolves to `Ok(Ack)` only once the broker has accepted the event durably by
//!   its own definition (append, PubAck, publisher confirm, XADD id).
//! - Deliveries to a group are at-least-once: an event whose delivery was not acked before
//!   its consumer stopped is delivered again to another member of the group.
//! - Dropping a [`Subscription`] is a crash: the member leaves without acking what it holds.

pub mod embedded;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::RunTime;
use crate::events::{Envelope, Topic};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach the broker at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("publish to {topic} was refused: {reason}")]
    Publish { topic: Topic, reason: String },
    #[error("group {group}: {reason}")]
    Group { group: String, reason: String },
}

/// The broker's acknowledgement of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: u32,
    pub offset: u64,
}

/// What a report states about the delivery settings in use.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct TransportInfo {
    pub kind: String,
    /// Human-readable settings: acks, commit policy, partitions, retention, ...
    pub settings: Vec<(String, String)>,
}

/// Where a rewound group starts reading again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindTo {
    /// The oldest retained event.
    Earliest,
    /// The first event published at or after this run time.
    Time(RunTime),
}

pub trait Transport: Send + Sync + 'static {
    fn info(&self) -> TransportInfo;

    /// Publish one event; resolves when the broker acked it.
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>>;

    /// Join `group` as a new member consuming `topics`. Every member of a group must name the
    /// same topics.
    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        topics: &'a [Topic],
    ) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>>;

    /// Move the group's committed position back; members re-read from there.
    fn rewind<'a>(
        &'a self,
        group: &'a str,
        to: RewindTo,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Events published to the group's topics and not yet committed by it.
    fn lag<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, TransportError>>;
}

/// One member of a consumer group.
pub trait Subscription: Send {
    /// The next delivery, waiting for one; `Ok(None)` once the transport is shut down.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>>;
}

/// One arrival of one event at one member.
pub struct Delivery {
    pub envelope: Arc<Envelope>,
    /// The broker says this event was handed out before (to this group).
    pub redelivered: bool,
    pub ack: Box<dyn AckHandle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// Settles a delivery. Acking commits it; nacking asks for it to be delivered again.
/// Acks that arrive after the member lost the event's partition are ignored by the broker,
/// exactly like a Kafka commit after a rebalance: the event is redelivered elsewhere.
pub trait AckHandle: Send {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;
    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;
}

/// Builds the transport a scenario targets.
pub fn connect(
    target: &crate::scenario::model::Target,
    clock: crate::clock::Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    match target {
        crate::scenario::model::Target::Embedded(cfg) => Ok(Arc::new(
            embedded::EmbeddedBroker::new(cfg.partitions, cfg.retention, clock),
        )),
    }
}
