//! A tap on one of the user's topics (observe mode): a consumer of its own that `assign`s
//! every partition of the topic at its end and commits nothing. librdkafka 2.12 refuses
//! `assign` to a consumer without a `group.id`, so it has one of its own,
//! `{namespace}.tap.{n}`, which it never joins (no JoinGroup: `assign`, not `subscribe`) and
//! never commits to. It joins none of the user's consumer groups, so their members,
//! assignments and committed offsets are untouched.
//!
//! Where the end is: librdkafka asks the broker (ListOffsets), and Tansu 0.6 answers too low:
//! the first offset of the partition's last record batch, plus one, so every other record of
//! a batch of several lies beyond it (rdkafka's `fetch_watermarks` reads the same answer; a
//! test measured 1 for a partition holding a batch of 20). Nor can the tap read on from
//! there: Tansu answers a fetch from inside a batch with no records, so a consumer assigned
//! at [`Offset::End`] waits there for good. The tap assigns each partition one before that
//! answer ([`Offset::OffsetTail`]`(1)`: on Tansu the start of the last batch, on Kafka the
//! last record), reads on until every partition reports its end (`enable.partition.eof`,
//! from the high watermark of a fetch answer), drops what it read on the way (all of it
//! published before the tap was in place), and only then resolves: everything published
//! afterwards is read, nothing before.
//!
//! A thread of its own polls the consumer and stamps each record as it arrives; a record's
//! key is the tapped key, its headers the headers, its value the body. While every broker
//! connection is down the tap holds no assignment (the fetch that crashes librdkafka against
//! a restarted Tansu, see the member module, is never sent), and takes its partitions back at
//! the next offsets it had not read once the broker lists the topic again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::{Inner, REQUEST_TIMEOUT, base_config};
use crate::clock::Clock;
use crate::transport::{BoxFuture, Cause, Tap, Tapped, TransportError};

/// Records the tap buffers before its thread waits for the run to take them.
const BUFFER_MAX: usize = 4096;
/// How long one poll waits; also how promptly the thread sees a stop.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long the tap may take to reach the end of every partition.
const POSITION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fetch waits for records. Tansu 0.6 holds every fetch for half of this or more
/// even once it has records, so it bounds how late a record is stamped (librdkafka's default
/// is 500 ms).
const FETCH_WAIT_MS: &str = "20";
/// While the broker is away, how often (in polls) the tap checks whether it lists the topic.
const REASSIGN_POLLS: u32 = 10;
/// The tap's `reconnect.backoff.ms`: as a member's, long enough for its thread to see every
/// connection down and drop its assignment before a restarted broker is fetched from.
const RECONNECT_BACKOFF_MS: &str = "1000";

type TapConsumer = BaseConsumer;

/// Numbers the taps of this process, for their group ids.
static TAPS: AtomicU64 = AtomicU64::new(0);

fn tap_error(topic: &str, source: impl Into<Cause>) -> TransportError {
    TransportError::Group {
        group: format!("tap {topic}"),
        source: source.into(),
    }
}

pub(super) struct KafkaTap {
    rx: mpsc::Receiver<Tapped>,
    stop: Arc<AtomicBool>,
}

/// Makes the tap on `topic`: resolves once it reads from the end of every partition.
pub(super) async fn open(inner: &Inner, topic: &str) -> Result<KafkaTap, TransportError> {
    let n = TAPS.fetch_add(1, Ordering::Relaxed);
    let consumer: TapConsumer = base_config(&inner.servers)
        .set("group.id", format!("{}.tap.{n}", inner.cfg.namespace))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // A log the broker lost and began again: read the new one from its start.
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .set("reconnect.backoff.ms", RECONNECT_BACKOFF_MS)
        .create()
        .map_err(|e| tap_error(topic, e))?;
    let (name, clock) = (topic.to_owned(), inner.clock.clone());
    let consumer = tokio::task::spawn_blocking(move || position_at_end(consumer, &name, &clock))
        .await
        .map_err(|e| tap_error(topic, e))?
        .map_err(|e| tap_error(topic, e))?;
    let (tx, rx) = mpsc::channel(BUFFER_MAX);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        consumer,
        topic: topic.to_owned(),
        clock: inner.clock.clone(),
        tx,
        stop: stop.clone(),
    };
    // Counted until its consumer is closed: cleanup waits for it (see the member module).
    let running = inner.members_running.clone();
    running.fetch_add(1, Ordering::AcqRel);
    let spawned = std::thread::Builder::new()
        .name(format!("kafka-tap-{topic}"))
        .spawn(move || {
            reader.run();
            running.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        inner.members_running.fetch_sub(1, Ordering::AcqRel);
        return Err(tap_error(topic, e));
    }
    Ok(KafkaTap { rx, stop })
}

/// The partitions of `topic`, as the broker lists them; an error when it does not.
fn partitions(consumer: &TapConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>, Cause> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Cause::from(e).context(format!("metadata of {topic}")))?;
    let listed = metadata.topics().iter().find(|t| t.name() == topic);
    match listed {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => Err(Cause::from(format!(
            "the topic {topic} does not exist on the broker"
        ))),
    }
}

/// Assigns every partition of `topic` at its end and reads until each one reports that it is
/// there, dropping what it read on the way (see the module docs).
fn position_at_end(
    consumer: TapConsumer,
    topic: &str,
    clock: &Clock,
) -> Result<TapConsumer, Cause> {
    let ids = partitions(&consumer, topic, REQUEST_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for &id in &ids {
        tpl.add_partition_offset(topic, id, Offset::OffsetTail(1))?;
    }
    consumer.assign(&tpl)?;
    let mut waiting: HashSet<i32> = ids.iter().copied().collect();
    let mut dropped = 0u64;
    let deadline = clock.now() + crate::clock::duration_ns(POSITION_TIMEOUT);
    while !waiting.is_empty() {
        if clock.now() >= deadline {
            let mut left: Vec<i32> = waiting.into_iter().collect();
            left.sort_unstable();
            return Err(Cause::from(format!(
                "partitions {left:?} of {topic} did not reach their end within {POSITION_TIMEOUT:?}"
            )));
        }
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(_)) => dropped += 1,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                waiting.remove(&partition);
            }
            Some(Err(e)) if fatal(&e) => return Err(e.into()),
            Some(Err(e)) => tracing::debug!(topic, error = %e, "kafka tap positioning"),
            None => {}
        }
    }
    tracing::debug!(topic, dropped, "kafka tap at the end of every partition");
    Ok(consumer)
}

/// Errors the tap cannot read on from.
fn fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopic
        )
    )
}

/// The tap's thread.
struct Reader {
    consumer: TapConsumer,
    topic: String,
    clock: Clock,
    tx: mpsc::Sender<Tapped>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    /// Reads until the tap is dropped; the consumer is closed when this returns.
    fn run(self) {
        // The next offset to read per partition, kept for taking the partitions back after
        // an outage: at first where positioning left each one.
        let mut next: HashMap<i32, i64> = self
            .consumer
            .position()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut last_error: Option<String> = None;
        // Polls since the assignment was dropped; `None` while assigned.
        let mut unassigned: Option<u32> = None;
        while !self.stop.load(Ordering::Acquire) {
            if let Some(polls) = unassigned.as_mut() {
                *polls += 1;
                if *polls % REASSIGN_POLLS == 0 && self.reassign(&next) {
                    unassigned = None;
                }
            }
            let Some(polled) = self.consumer.poll(POLL_INTERVAL) else {
                continue;
            };
            match polled {
                Ok(message) => {
                    last_error = None;
                    next.insert(message.partition(), message.offset() + 1);
                    let tapped = self.tapped(&message);
                    drop(message);
                    if self.tx.blocking_send(tapped).is_err() {
                        return; // The tap was dropped.
                    }
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => {
                    if unassigned.is_none()
                        && e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown)
                    {
                        if let Err(e) = self.consumer.unassign() {
                            tracing::debug!(topic = %self.topic, error = %e, "kafka tap unassign");
                        }
                        unassigned = Some(0);
                    }
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::debug!(topic = %self.topic, error = %text, "kafka tap");
                        last_error = Some(text);
                    }
                }
            }
        }
    }

    /// Assigns the topic's partitions again once the broker lists it: each at the next
    /// offset not read (one the broker no longer has: from the start of its log), a new
    /// partition at its end. False until then.
    fn reassign(&self, next: &HashMap<i32, i64>) -> bool {
        let Ok(ids) = partitions(&self.consumer, &self.topic, Duration::from_secs(1)) else {
            return false;
        };
        let mut tpl = TopicPartitionList::new();
        for id in ids {
            let offset = next.get(&id).map_or(Offset::End, |&o| Offset::Offset(o));
            if tpl.add_partition_offset(&self.topic, id, offset).is_err() {
                return false;
            }
        }
        match self.consumer.assign(&tpl) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(topic = %self.topic, error = %e, "kafka tap reassign failed");
                false
            }
        }
    }

    fn tapped(&self, message: &BorrowedMessage<'_>) -> Tapped {
        let at = self.clock.now();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            Bytes::copy_from_slice(h.value.unwrap_or_default()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Tapped {
            key: message.key().map(Bytes::copy_from_slice),
            headers,
            body: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            at,
        }
    }
}

impl Tap for KafkaTap {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Tapped>, TransportError>> {
        Box::pin(async move { Ok(self.rx.recv().await) })
    }
}

impl Drop for KafkaTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
