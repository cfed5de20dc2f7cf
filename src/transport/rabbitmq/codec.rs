//! Envelope <-> AMQP message: EventMeta travels as AMQP headers (long strings), the payload
//! as the body, the event id as `message_id`. Decoding never panics on broker input.

use std::sync::Arc;

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::events::{Envelope, EventMeta, Topic, UserFields};
use crate::transport::Cause;

/// Header naming the topic, so a queue bound to several exchanges can tell them apart.
const TOPIC_HEADER: &str = "db-topic";
/// Header with the wall-clock Unix ns of the publish, for rewinds by time on streams.
pub(super) const PUBLISHED_HEADER: &str = "db-published-wall-ns";
/// Header RabbitMQ adds to every message read from a stream queue.
pub(super) const STREAM_OFFSET_HEADER: &str = "x-stream-offset";

/// AMQP properties of a published event: persistent, with the meta as headers.
pub(super) fn properties(envelope: &Envelope, published_wall_ns: u64) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in envelope.meta.to_headers() {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    }
    headers.insert(
        TOPIC_HEADER.into(),
        AMQPValue::LongString(LongString::from(envelope.topic.name())),
    );
    headers.insert(
        PUBLISHED_HEADER.into(),
        AMQPValue::LongString(LongString::from(published_wall_ns.to_string())),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(envelope.meta.event_id.to_string().into())
        .with_timestamp(published_wall_ns / 1_000_000_000)
        .with_headers(headers)
}

/// `props` with the user's rendered headers beside doorbuster's own (observe mode), and the
/// rendered key as the header `key` when the routing key is not it. A name AMQP cannot
/// carry (over 255 bytes) refuses the publish; doorbuster's own `db-*` headers keep their
/// values.
pub(super) fn with_user_headers(
    props: BasicProperties,
    user: &UserFields,
    key_as_header: bool,
) -> Result<BasicProperties, Cause> {
    let mut headers = props.headers().clone().unwrap_or_default();
    let key = user
        .key
        .as_ref()
        .filter(|_| key_as_header)
        .map(|k| ("key".to_owned(), k.clone()));
    for (name, value) in user.headers.iter().chain(key.as_ref()) {
        let name = ShortString::try_new(name.as_str())
            .map_err(|e| Cause::from(format!("header {name:?}: {e}")))?;
        if !headers.inner().contains_key(&name) {
            let value = AMQPValue::LongString(LongString::from(value.as_bytes()));
            headers.insert(name, value);
        }
    }
    Ok(props.with_headers(headers))
}

/// A header's value as bytes, the way a tap hands it on: strings as they are, numbers,
/// booleans and timestamps in decimal; tables, arrays and decimals are left out.
pub(super) fn header_bytes(value: &AMQPValue) -> Option<Bytes> {
    let text = match value {
        AMQPValue::LongString(s) => return Some(Bytes::copy_from_slice(s.as_bytes())),
        AMQPValue::ByteArray(b) => return Some(Bytes::copy_from_slice(b.as_slice())),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(v) => v.to_string(),
        AMQPValue::ShortShortUInt(v) => v.to_string(),
        AMQPValue::ShortInt(v) => v.to_string(),
        AMQPValue::ShortUInt(v) => v.to_string(),
        AMQPValue::LongInt(v) => v.to_string(),
        AMQPValue::LongUInt(v) => v.to_string(),
        AMQPValue::LongLongInt(v) => v.to_string(),
        AMQPValue::Float(v) => v.to_string(),
        AMQPValue::Double(v) => v.to_string(),
        AMQPValue::Timestamp(v) => v.to_string(),
        AMQPValue::DecimalValue(_)
        | AMQPValue::FieldArray(_)
        | AMQPValue::FieldTable(_)
        | AMQPValue::Void => return None,
    };
    Some(Bytes::from(text))
}

fn header_str<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a str> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The envelope of a delivered message; `None` when it is not a doorbuster event.
pub(super) fn decode(properties: &BasicProperties, data: Vec<u8>) -> Option<Arc<Envelope>> {
    let headers = properties.headers().as_ref()?;
    let topic = Topic::from_name(header_str(headers, TOPIC_HEADER)?)?;
    let meta = EventMeta::from_headers(|name| header_str(headers, name))?;
    Some(Arc::new(Envelope {
        user: None,
        topic,
        meta,
        payload: Bytes::from(data),
    }))
}

/// Wall-clock ns of the publish, when the message says so.
pub(super) fn published_wall_ns(properties: &BasicProperties) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    header_str(headers, PUBLISHED_HEADER)?.parse().ok()
}

/// The stream offset RabbitMQ attached to a message read from a stream queue.
pub(super) fn stream_offset(properties: &BasicProperties) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    let value = headers.inner().get(STREAM_OFFSET_HEADER)?;
    let n: i128 = match value {
        AMQPValue::LongLongInt(v) => i128::from(*v),
        AMQPValue::LongInt(v) => i128::from(*v),
        AMQPValue::LongUInt(v) => i128::from(*v),
        AMQPValue::ShortInt(v) => i128::from(*v),
        AMQPValue::Timestamp(v) => i128::from(*v),
        _ => return None,
    };
    u64::try_from(n).ok()
}

/// The properties of a message read from a stream, without the offset RabbitMQ added.
pub(super) fn without_stream_offset(properties: &BasicProperties) -> BasicProperties {
    let Some(headers) = properties.headers().as_ref() else {
        return properties.clone();
    };
    let mut kept = FieldTable::default();
    for (name, value) in headers {
        if name.as_str() != STREAM_OFFSET_HEADER {
            kept.insert(name.clone(), value.clone());
        }
    }
    properties.clone().with_headers(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_the_round_trip() {
        let envelope = Envelope {
            user: None,
            topic: Topic::PaymentFailed,
            meta: EventMeta {
                event_id: 7,
                order_id: 3,
                seq: 1,
                intended_at: 10,
                intended_wall_ns: 20,
                sent_at: 30,
                idempotency_key: Bytes::from_static(b"ik_3"),
            },
            payload: Bytes::from_static(b"{}"),
        };
        let props = properties(&envelope, 5_000_000_000);
        let back = decode(&props, b"{}".to_vec()).expect("decodes");
        assert_eq!(*back, envelope);
        assert_eq!(published_wall_ns(&props), Some(5_000_000_000));
        assert!(decode(&BasicProperties::default(), Vec::new()).is_none());
    }
}
