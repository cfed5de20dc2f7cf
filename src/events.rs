//! The vocabulary that travels: topics, event metadata and envelopes.
//!
//! An *event* is a fact on a topic; an *envelope* is what a transport carries (key, metadata,
//! payload). Metadata is typed here so the embedded broker moves it without encoding; networked
//! transports map it to native headers with [`EventMeta::to_headers`] / [`EventMeta::from_headers`].

use bytes::Bytes;

/// The topics of the standard commerce topology (DESIGN.md §2). The name of each is written
/// once per variant for serde and once for strum (`name`, `from_name`, `Display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display)]
pub enum Topic {
    #[serde(rename = "order.created")]
    #[strum(serialize = "order.created")]
    OrderCreated,
    #[serde(rename = "order.payment.attempted")]
    #[strum(serialize = "order.payment.attempted")]
    PaymentAttempted,
    #[serde(rename = "order.payment.succeeded")]
    #[strum(serialize = "order.payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "order.payment.failed")]
    #[strum(serialize = "order.payment.failed")]
    PaymentFailed,
    #[serde(rename = "order.fulfilled")]
    #[strum(serialize = "order.fulfilled")]
    Fulfilled,
    /// Where a service parks an event it gave up on after `max_deliveries`.
    #[serde(rename = "order.dead_letter")]
    #[strum(serialize = "order.dead_letter")]
    DeadLetter,
}

impl Topic {
    /// Every topic a transport carries.
    pub const ALL: [Topic; 6] = [
        Topic::OrderCreated,
        Topic::PaymentAttempted,
        Topic::PaymentSucceeded,
        Topic::PaymentFailed,
        Topic::Fulfilled,
        Topic::DeadLetter,
    ];

    /// The topics of the order pipeline (the ledger tracks these; dead letters are counted
    /// apart).
    pub const PIPELINE: [Topic; 5] = [
        Topic::OrderCreated,
        Topic::PaymentAttempted,
        Topic::PaymentSucceeded,
        Topic::PaymentFailed,
        Topic::Fulfilled,
    ];

    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        name.parse().ok()
    }

    /// Dense index for per-topic arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the harness needs to know about every event, carried alongside the payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// Unique per run.
    pub event_id: u64,
    /// The key: events of one order share a partition and an order.
    pub order_id: u64,
    /// Position of this event among the events of its order on its topic (0 for the first
    /// `order.created`, 1 for a resubmit): lets the ledger tell events apart without ids.
    pub seq: u8,
    /// The intended checkout time of the order that caused the event (run time, ns).
    pub intended_at: u64,
    /// The same instant as wall-clock Unix ns, for consumers in other processes.
    pub intended_wall_ns: u64,
    /// When this event was handed to the transport (run time, ns): the start of the
    /// per-subscription publish -> delivery latency.
    pub sent_at: u64,
    /// Shared by a checkout and its resubmits; services pass it to the payment provider.
    pub idempotency_key: Bytes,
}

impl EventMeta {
    /// Header names and values for transports with string headers.
    pub fn to_headers(&self) -> [(&'static str, String); 7] {
        [
            ("db-event-id", self.event_id.to_string()),
            ("db-order-id", self.order_id.to_string()),
            ("db-seq", self.seq.to_string()),
            ("db-intended-at", self.intended_at.to_string()),
            ("db-intended-wall-ns", self.intended_wall_ns.to_string()),
            ("db-sent-at", self.sent_at.to_string()),
            (
                "idempotency-key",
                String::from_utf8_lossy(&self.idempotency_key).into_owned(),
            ),
        ]
    }

    /// The inverse of [`to_headers`](Self::to_headers); `None` if a header is missing or bad.
    pub fn from_headers<'a>(mut get: impl FnMut(&str) -> Option<&'a str>) -> Option<EventMeta> {
        Some(EventMeta {
            event_id: get("db-event-id")?.parse().ok()?,
            order_id: get("db-order-id")?.parse().ok()?,
            seq: get("db-seq")?.parse().ok()?,
            intended_at: get("db-intended-at")?.parse().ok()?,
            intended_wall_ns: get("db-intended-wall-ns")?.parse().ok()?,
            sent_at: get("db-sent-at")?.parse().ok()?,
            idempotency_key: Bytes::copy_from_slice(get("idempotency-key")?.as_bytes()),
        })
    }
}

/// One event as a transport carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub topic: Topic,
    pub meta: EventMeta,
    pub payload: Bytes,
    /// The key and headers the user's payload template rendered (`orders.payload`); `None`
    /// for doorbuster's own events.
    pub user: Option<std::sync::Arc<UserFields>>,
}

/// What a payload template renders besides the body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserFields {
    /// The message key; `None` keeps the order id.
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl UserFields {
    pub fn from_rendered(key: Option<String>, headers: Vec<(String, String)>) -> UserFields {
        UserFields { key, headers }
    }
}

impl Envelope {
    /// The partitioning key.
    pub fn key(&self) -> u64 {
        self.meta.order_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let meta = EventMeta {
            event_id: 9,
            order_id: 42,
            seq: 1,
            intended_at: 1_000,
            intended_wall_ns: 1_700_000_000_000_000_000,
            sent_at: 1_500,
            idempotency_key: Bytes::from_static(b"ik_abc"),
        };
        let headers = meta.to_headers();
        let back = EventMeta::from_headers(|name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        });
        assert_eq!(back, Some(meta));
    }

    #[test]
    fn topic_names_round_trip() {
        for t in Topic::ALL {
            assert_eq!(Topic::from_name(t.name()), Some(t));
        }
        assert_eq!(Topic::from_name("order.shipped"), None);
    }
}
