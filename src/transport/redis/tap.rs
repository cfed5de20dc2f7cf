//! A tap on one of the user's streams (observe mode): `XREAD` from the entry that was last
//! when the tap was made, on a connection of its own. It joins no consumer group, so the
//! user's groups, their pending lists and their lag are untouched.
//!
//! An entry's fields are the tapped event's headers; its `payload` field (or `body`, or
//! `data`, the first present) is the body and its `key` field the key.

use std::collections::VecDeque;
use std::time::Duration;

use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use bytes::Bytes;

use super::Inner;
use super::reply::{self, Entry, StreamId};
use crate::clock::Clock;
use crate::transport::{BoxFuture, Cause, Tap, Tapped, TransportError};

/// Entries asked for per read.
const READ_COUNT: usize = 256;
/// How long one `XREAD` blocks before it asks again.
const BLOCK: Duration = Duration::from_millis(500);
/// The fields that hold the body, in the order they are looked for.
const BODY_FIELDS: [&str; 3] = ["payload", "body", "data"];

pub(super) struct RedisTap {
    conn: MultiplexedConnection,
    stream: String,
    /// The last entry read (or the last one in the stream when the tap was made).
    after: StreamId,
    clock: Clock,
    ready: VecDeque<Tapped>,
}

fn tap_error(stream: &str, e: impl Into<Cause>) -> TransportError {
    TransportError::Group {
        group: format!("tap {stream}"),
        source: e.into(),
    }
}

/// Makes the tap: its own connection, positioned after the stream's last entry.
pub(super) async fn open(inner: &Inner, stream: &str) -> Result<RedisTap, TransportError> {
    let mut conn = inner
        .member_connection()
        .await
        .map_err(|e| tap_error(stream, e))?;
    let mut last = ::redis::cmd("XREVRANGE");
    last.arg(stream).arg("+").arg("-").arg("COUNT").arg(1);
    let v = last
        .query_async::<Value>(&mut conn)
        .await
        .map_err(|e| tap_error(stream, e))?;
    let after = reply::entries(&v)
        .first()
        .map_or(StreamId::default(), |e| e.id);
    Ok(RedisTap {
        conn,
        stream: stream.to_owned(),
        after,
        clock: inner.clock.clone(),
        ready: VecDeque::new(),
    })
}

impl RedisTap {
    fn tapped(&self, entry: Entry) -> Tapped {
        let at = self.clock.now();
        let body = BODY_FIELDS
            .iter()
            .find_map(|name| entry.field(name))
            .map(Bytes::copy_from_slice)
            .unwrap_or_default();
        let key = entry.field("key").map(Bytes::copy_from_slice);
        Tapped {
            key,
            headers: entry
                .fields
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), Bytes::from(v)))
                .collect(),
            body,
            at,
        }
    }
}

impl Tap for RedisTap {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Tapped>, TransportError>> {
        Box::pin(async move {
            loop {
                if let Some(event) = self.ready.pop_front() {
                    return Ok(Some(event));
                }
                let mut read = ::redis::cmd("XREAD");
                read.arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("BLOCK")
                    .arg(BLOCK.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(self.after.to_string());
                let v = read
                    .query_async::<Value>(&mut self.conn)
                    .await
                    .map_err(|e| tap_error(&self.stream, e))?;
                for (_, entries) in reply::read(&v) {
                    for entry in entries {
                        self.after = self.after.max(entry.id);
                        let event = self.tapped(entry);
                        self.ready.push_back(event);
                    }
                }
            }
        })
    }
}
