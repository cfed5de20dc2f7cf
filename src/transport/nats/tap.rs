//! A tap on one of the user's subjects (observe mode): an ephemeral pull consumer of the
//! user's stream that takes the subject, with no acks, positioned after the stream's last
//! message when the tap is made. It is a consumer of its own, so the user's consumers, their
//! pending counts and ack floors are untouched.
//!
//! The tap keeps its place itself rather than through the client's ordered consumer: that one
//! re-creates itself from the stream's first message when it fails before reading anything,
//! which would hand the run every output the stream ever held. Here a failure (a lost
//! connection, missed heartbeats, a gap in the consumer's sequence) re-creates the consumer at
//! the first stream sequence not yet read, a bounded number of times in a row before the tap
//! gives up with a [`TransportError`].
//!
//! A tapped message's subject is the key, its headers the headers, its payload the body.
//! A stream with the work-queue retention policy cannot be tapped: the server refuses a
//! second consumer of the same subjects, and the tap reports the refusal.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, Message};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{ADMIN_TIMEOUT, Inner, bounded};
use crate::clock::Clock;
use crate::transport::backoff::Backoff;
use crate::transport::{BoxFuture, Cause, Tap, Tapped, TransportError};

/// Messages one pull request asks for.
const PULL_BATCH: usize = 256;
/// The server removes the tap's consumer this long after the tap stopped pulling (a run
/// that was killed leaves nothing behind for long).
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);
/// Failures in a row (no consumer, a broken pull) before the tap gives up.
const FAILURES_MAX: u32 = 12;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(super) struct NatsTap {
    js: jetstream::Context,
    subject: String,
    /// The user's stream that takes `subject`.
    stream: String,
    /// The first stream sequence the tap has not read yet.
    next_sequence: u64,
    /// The open pull, and its consumer's name and last consumer sequence read.
    pull: Option<Open>,
    clock: Clock,
    backoff: Backoff,
}

struct Open {
    consumer: String,
    messages: pull::Stream,
    consumer_sequence: u64,
}

fn tap_error(subject: &str, source: impl Into<Cause>) -> TransportError {
    TransportError::Group {
        group: format!("tap {subject}"),
        source: source.into(),
    }
}

/// Makes the tap: finds the user's stream that takes `subject` and opens a consumer after
/// its last message. Resolves once the server holds the consumer.
pub(super) async fn open(inner: &Inner, subject: &str) -> Result<NatsTap, TransportError> {
    let js = inner.js.clone();
    let error = |e: Cause| tap_error(subject, e);
    let stream = bounded(
        &format!("no stream takes subject {subject}"),
        js.stream_by_subject(subject),
    )
    .await
    .map_err(error)?;
    let mut handle = bounded(&format!("stream {stream}"), js.get_stream(&stream))
        .await
        .map_err(error)?;
    let last = bounded(&format!("stream {stream}"), handle.info())
        .await
        .map_err(error)?
        .state
        .last_sequence;
    let mut tap = NatsTap {
        js,
        subject: subject.to_owned(),
        stream,
        next_sequence: last + 1,
        pull: None,
        clock: inner.clock.clone(),
        backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
    };
    let open = tap.open_pull().await.map_err(error)?;
    tap.pull = Some(open);
    Ok(tap)
}

impl NatsTap {
    /// A fresh consumer starting at `next_sequence`, and its pull.
    async fn open_pull(&self) -> Result<Open, Cause> {
        let config = pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: self.next_sequence,
            },
            ack_policy: AckPolicy::None,
            filter_subject: self.subject.clone(),
            inactive_threshold: INACTIVE_THRESHOLD,
            memory_storage: true,
            description: Some("doorbuster tap".to_owned()),
            ..Default::default()
        };
        let consumer: PullConsumer = bounded(
            &format!("tap consumer on stream {}", self.stream),
            self.js.create_consumer_on_stream(config, &self.stream),
        )
        .await?;
        let name = consumer.cached_info().name.clone();
        let messages = super::pull(&consumer, PULL_BATCH).await?;
        Ok(Open {
            consumer: name,
            messages,
            consumer_sequence: 0,
        })
    }

    /// Drops the open pull and asks the server to delete its consumer (best effort: the
    /// inactivity threshold removes it anyway).
    fn close(&mut self) {
        if let Some(open) = self.pull.take() {
            let (js, stream) = (self.js.clone(), self.stream.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let delete = js.delete_consumer_from_stream(&open.consumer, &stream);
                    let _ = tokio::time::timeout(ADMIN_TIMEOUT, delete).await;
                });
            }
        }
    }

    /// The next message of the open pull, or why the pull has to be re-opened.
    async fn pull_next(&mut self) -> Result<Option<Tapped>, Cause> {
        let Some(open) = &mut self.pull else {
            return Err("no pull open".into());
        };
        let message = match open.messages.next().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(Cause::nats(e).context("pull")),
            None => return Err("the pull ended".into()),
        };
        let info = message
            .info()
            .map_err(|e| Cause::nats(e).context("metadata"))?;
        let (consumer_sequence, stream_sequence) = (info.consumer_sequence, info.stream_sequence);
        if consumer_sequence != open.consumer_sequence + 1 {
            // Without acks nothing is sent again: a gap is a lost message, so start over
            // from the first one not read.
            return Err(format!(
                "consumer sequence {consumer_sequence} after {}",
                open.consumer_sequence
            )
            .into());
        }
        open.consumer_sequence = consumer_sequence;
        if stream_sequence < self.next_sequence {
            return Ok(None);
        }
        self.next_sequence = stream_sequence + 1;
        Ok(Some(self.tapped(message)))
    }

    fn tapped(&self, message: Message) -> Tapped {
        let at = self.clock.now();
        let message = message.message;
        let headers = message
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (name.to_string(), Bytes::copy_from_slice(v.as_ref())))
            })
            .collect();
        Tapped {
            key: Some(Bytes::copy_from_slice(message.subject.as_bytes())),
            headers,
            body: message.payload,
            at,
        }
    }
}

impl Tap for NatsTap {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Tapped>, TransportError>> {
        Box::pin(async move {
            let mut failures = 0;
            loop {
                let reason = if self.pull.is_some() {
                    match self.pull_next().await {
                        Ok(Some(event)) => {
                            self.backoff.reset();
                            return Ok(Some(event));
                        }
                        Ok(None) => continue,
                        Err(reason) => reason,
                    }
                } else {
                    match self.open_pull().await {
                        Ok(open) => {
                            self.pull = Some(open);
                            continue;
                        }
                        Err(reason) => reason,
                    }
                };
                failures += 1;
                if failures >= FAILURES_MAX {
                    return Err(tap_error(&self.subject, reason));
                }
                tracing::debug!(subject = %self.subject, %reason, "NATS tap re-opening");
                self.close();
                self.backoff.wait().await;
            }
        })
    }
}

impl Drop for NatsTap {
    fn drop(&mut self) {
        self.close();
    }
}
