//! One member of a Kafka consumer group: a consumer polled by its own thread, the window of
//! handed-out offsets per assigned partition, and the commits acks make.
//!
//! The thread polls continuously, so rebalances are served even while the service is busy;
//! a rebalance or a rewind gives the partition a new epoch, and deliveries or acks carrying
//! an older epoch are stale: dropped, or ignored like a Kafka commit after a rebalance.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    GroupShared, Inner, JOIN_TIMEOUT, REQUEST_TIMEOUT, SESSION_TIMEOUT_MS, Tp, base_config,
};
use crate::events::{Envelope, EventMeta};
use crate::sync::lock;
use crate::transport::{AckHandle, BoxFuture, Cause, Delivery, Subscription, TransportError};

/// Fetched events a member buffers before its thread waits for the service.
const BUFFER_MAX: usize = 4096;
/// How long one poll waits; also how promptly the thread sees commands and a stop.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// While the broker is away, how often (in polls) a member checks whether it is back.
const RESUBSCRIBE_POLLS: u32 = 10;
/// How long that check waits for the broker's metadata.
const RESUBSCRIBE_PROBE: Duration = Duration::from_secs(1);
/// A member's `reconnect.backoff.ms`. librdkafka reconnects at once when a connection
/// drops and backs off only after that attempt fails, so a broker that restarts is next
/// tried 0.75-1.5 s later (the jitter is -25 %..+50 %): time for the member's thread to see
/// "all brokers down" and unsubscribe before any fetch reaches the restarted broker (see
/// `Poller::run`). The producer keeps the shorter back-off of `base_config`.
const MEMBER_RECONNECT_BACKOFF_MS: &str = "1000";

/// A live member asks its thread to seek and commit: (topic name, partition) -> offset.
pub(crate) struct RewindCommand {
    pub targets: HashMap<(String, i32), i64>,
    pub reply: oneshot::Sender<Result<(), KafkaError>>,
}

/// The handed-out, not yet committed offsets of one assigned partition.
struct PartState {
    epoch: u64,
    /// The first offset not acked yet; `None` until the first event after (re)assignment.
    base: Option<i64>,
    /// Ack flags for offsets `base..`.
    acked: VecDeque<bool>,
    /// The offset this member last committed (or the rewind committed).
    committed: i64,
}

#[derive(Default)]
struct MemberState {
    parts: HashMap<Tp, PartState>,
    next_epoch: u64,
    /// The Kafka names of this run's topics.
    names: HashMap<String, crate::events::Topic>,
}

impl MemberState {
    fn fresh(&mut self, committed: i64) -> PartState {
        self.next_epoch += 1;
        PartState {
            epoch: self.next_epoch,
            base: None,
            acked: VecDeque::new(),
            committed,
        }
    }

    fn tp_of(&self, topic: &str, partition: i32) -> Option<Tp> {
        self.names.get(topic).map(|&t| (t, partition))
    }

    fn epoch(&self, tp: Tp) -> Option<u64> {
        self.parts.get(&tp).map(|p| p.epoch)
    }
}

/// The consumer's callbacks: a rebalance resets the windows of the partitions it touches.
struct MemberContext {
    state: Arc<Mutex<MemberState>>,
    joined: watch::Sender<bool>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Eager rebalancing revokes everything; what was handed out is now stale.
            lock(&self.state).parts.clear();
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut state = lock(&self.state);
            state.parts.clear();
            for element in tpl.elements() {
                if let Some(tp) = state.tp_of(element.topic(), element.partition()) {
                    let part = state.fresh(-1);
                    state.parts.insert(tp, part);
                }
            }
            drop(state);
            self.joined.send_replace(true);
        }
    }
}

type MemberConsumer = BaseConsumer<MemberContext>;

/// What acks and the transport share with a member.
pub(crate) struct MemberShared {
    state: Arc<Mutex<MemberState>>,
    /// Weak: when the member stops, its consumer closes and late acks commit nothing.
    consumer: Weak<MemberConsumer>,
    /// Serialises commits so a later, lower commit never overtakes a higher one.
    commit_lock: tokio::sync::Mutex<()>,
    retry: mpsc::UnboundedSender<Fetched>,
    commands: Mutex<std_mpsc::Sender<RewindCommand>>,
    group: String,
}

impl MemberShared {
    /// False once the member's thread is gone.
    pub(crate) fn send_rewind(&self, command: RewindCommand) -> bool {
        lock(&self.commands).send(command).is_ok()
    }
}

/// One event handed to the member.
struct Fetched {
    tp: Tp,
    offset: i64,
    epoch: u64,
    envelope: Arc<Envelope>,
    redelivered: bool,
}

/// Creates a member of `shared`, waits for its first assignment, and starts its thread.
pub(super) async fn join(
    inner: Arc<Inner>,
    group: &str,
    shared: Arc<GroupShared>,
) -> Result<Box<dyn Subscription>, TransportError> {
    let error = |source: Cause| TransportError::Group {
        group: group.to_owned(),
        source,
    };
    let names = shared
        .topics
        .iter()
        .map(|&t| (inner.topic_name(t), t))
        .collect::<HashMap<_, _>>();
    let state = Arc::new(Mutex::new(MemberState {
        names: names.clone(),
        ..MemberState::default()
    }));
    let (joined_tx, mut joined) = watch::channel(false);
    let context = MemberContext {
        state: state.clone(),
        joined: joined_tx,
    };
    let consumer: MemberConsumer = base_config(&inner.servers)
        .set("group.id", &shared.id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", "500")
        .set("partition.assignment.strategy", "range")
        .set("reconnect.backoff.ms", MEMBER_RECONNECT_BACKOFF_MS)
        .create_with_context(context)
        .map_err(|e| error(e.into()))?;
    let topic_names: Vec<&str> = names.keys().map(String::as_str).collect();
    consumer
        .subscribe(&topic_names)
        .map_err(|e| error(e.into()))?;
    let consumer = Arc::new(consumer);
    let (tx, rx) = mpsc::channel(BUFFER_MAX);
    let (retry_tx, retry_rx) = mpsc::unbounded_channel();
    let (command_tx, command_rx) = std_mpsc::channel();
    let member = Arc::new(MemberShared {
        state: state.clone(),
        consumer: Arc::downgrade(&consumer),
        commit_lock: tokio::sync::Mutex::new(()),
        retry: retry_tx,
        commands: Mutex::new(command_tx),
        group: group.to_owned(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let poller = Poller {
        consumer,
        state,
        group: shared.clone(),
        member: Arc::downgrade(&member),
        tx,
        commands: command_rx,
        stop: stop.clone(),
        running: inner.members_running.clone(),
        transport: Arc::downgrade(&inner),
        runtime: tokio::runtime::Handle::current(),
    };
    inner.members_running.fetch_add(1, Ordering::AcqRel);
    std::thread::Builder::new()
        .name(format!("kafka-{group}"))
        .spawn(move || poller.run())
        .map_err(|e| error(e.into()))?;
    lock(&shared.members).push(Arc::downgrade(&member));
    let subscription = KafkaSubscription {
        member,
        rx,
        retry_rx,
        stop,
    };
    let started = inner.clock.now();
    tokio::time::timeout(JOIN_TIMEOUT, joined.wait_for(|&j| j))
        .await
        .map_err(|_| error(format!("no partitions assigned within {JOIN_TIMEOUT:?}").into()))?
        .map_err(|_| error("the member stopped while joining".into()))?;
    let join_ms = inner.clock.now().saturating_sub(started) / 1_000_000;
    tracing::debug!(group, join_ms, "kafka member joined");
    Ok(Box::new(subscription))
}

/// The member's thread: polls, keeps the windows, and runs rewinds.
struct Poller {
    consumer: Arc<MemberConsumer>,
    state: Arc<Mutex<MemberState>>,
    group: Arc<GroupShared>,
    member: Weak<MemberShared>,
    tx: mpsc::Sender<Fetched>,
    commands: std_mpsc::Receiver<RewindCommand>,
    stop: Arc<AtomicBool>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    /// The transport, to create topics the broker lost; weak, so a member left running does
    /// not keep the transport alive.
    transport: Weak<Inner>,
    runtime: tokio::runtime::Handle,
}

impl Poller {
    fn run(self) {
        let mut last_error: Option<String> = None;
        // Polls since the broker was lost; `None` while subscribed.
        let mut unsubscribed: Option<u32> = None;
        while !self.stop.load(Ordering::Acquire) {
            self.serve_commands();
            if let Some(polls) = unsubscribed.as_mut() {
                *polls += 1;
                if *polls % RESUBSCRIBE_POLLS == 0 && self.resubscribe() {
                    unsubscribed = None;
                }
            }
            let Some(polled) = self.consumer.poll(POLL_INTERVAL) else {
                continue;
            };
            match polled {
                Ok(message) => {
                    last_error = None;
                    if let Some(fetched) = self.take(&message) {
                        self.hand_over(fetched);
                    }
                }
                Err(e) => {
                    if unsubscribed.is_none()
                        && e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown)
                    {
                        // A fetch must not reach a broker that lost its topics (Tansu with
                        // memory storage, restarted): Tansu 0.6 answers a fetch for a topic id
                        // it does not know with a zero topic id and a CurrentLeader tag, and
                        // librdkafka 2.12 turns that into a metadata update for a NULL topic
                        // name and crashes (rd_kafka_metadata_update_op ->
                        // rd_kafka_metadata_cache_find(rk, NULL)). Fetching nothing while the
                        // broker is away avoids it; MEMBER_RECONNECT_BACKOFF_MS gives this
                        // thread the time to get here first. The member rejoins once the
                        // broker lists its topics again (`resubscribe`).
                        self.consumer.unsubscribe();
                        unsubscribed = Some(0);
                    }
                    // Transient (a broker restart): librdkafka reconnects by itself.
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::debug!(group = %self.group.id, error = %text, "kafka consumer");
                        last_error = Some(text);
                    }
                }
            }
        }
        // Dropping the last strong reference closes the consumer: it leaves the group
        // without committing what it held.
        let running = self.running.clone();
        drop(self);
        running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Subscribes again once the broker answers and lists every topic of the member; false
    /// until then.
    ///
    /// A broker that lost its topics (Tansu's memory storage, restarted) gets them back with
    /// new topic ids. librdkafka keeps the old ids of topics a full metadata answer leaves
    /// out, and a member subscribed before its topics are back fetches with them: the fetch
    /// that crashes librdkafka (see `run`). Once a full answer lists every topic, the
    /// consumer holds their new ids.
    fn resubscribe(&self) -> bool {
        let Ok(metadata) = self.consumer.fetch_metadata(None, RESUBSCRIBE_PROBE) else {
            return false;
        };
        let names: Vec<String> = lock(&self.state).names.keys().cloned().collect();
        let listed: HashSet<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.name())
            .collect();
        if let Some(missing) = names.iter().find(|n| !listed.contains(n.as_str())) {
            tracing::debug!(group = %self.group.id, topic = %missing, "kafka topic not back yet");
            if let Some(transport) = self.transport.upgrade() {
                let _runtime = self.runtime.enter();
                transport.recreate_topics_soon();
            }
            return false;
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match self.consumer.subscribe(&refs) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(group = %self.group.id, error = %e, "kafka resubscribe failed");
                false
            }
        }
    }

    /// Waits for room in the buffer, still serving rewinds and a stop.
    fn hand_over(&self, mut fetched: Fetched) {
        loop {
            match self.tx.try_send(fetched) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(back)) => fetched = back,
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            // Waiting on the command channel both paces this loop and serves a rewind.
            if let Ok(command) = self.commands.recv_timeout(Duration::from_millis(5)) {
                let result = self.rewind(&command.targets);
                let _ = command.reply.send(result);
            }
        }
    }

    /// Records a fetched event in its partition's window; `None` for events it cannot hand
    /// out (stale, or not one of this run's events: counted as acked so commits move on).
    fn take(&self, message: &BorrowedMessage<'_>) -> Option<Fetched> {
        let offset = message.offset();
        let mut state = lock(&self.state);
        let tp = state.tp_of(message.topic(), message.partition())?;
        if !state.parts.contains_key(&tp) {
            return None;
        }
        let expected = {
            let part = state.parts.get(&tp)?;
            part.base.map(|b| b + part.acked.len() as i64)
        };
        if expected.is_some_and(|e| offset < e) {
            // The log went back (an out-of-range reset after the broker lost it): start over.
            let committed = state.parts.get(&tp).map_or(-1, |p| p.committed);
            let part = state.fresh(committed.min(offset));
            state.parts.insert(tp, part);
        }
        let part = state.parts.get_mut(&tp)?;
        let base = *part.base.get_or_insert(offset);
        let end = base + part.acked.len() as i64;
        for _ in end..offset {
            part.acked.push_back(true); // A gap (compaction, control records): nothing to ack.
        }
        let epoch = part.epoch;
        let Some(envelope) = decode(tp, message) else {
            part.acked.push_back(true);
            tracing::warn!(group = %self.group.id, offset, "skipped an event without doorbuster headers");
            return None;
        };
        part.acked.push_back(false);
        drop(state);
        let mut delivered = lock(&self.group.delivered_end);
        let end = delivered.entry(tp).or_insert(0);
        let redelivered = offset < *end;
        *end = (*end).max(offset + 1);
        Some(Fetched {
            tp,
            offset,
            epoch,
            envelope: Arc::new(envelope),
            redelivered,
        })
    }

    fn serve_commands(&self) {
        while let Ok(command) = self.commands.try_recv() {
            let result = self.rewind(&command.targets);
            let _ = command.reply.send(result);
        }
    }

    /// Seeks the assigned partitions to their targets and commits every target.
    fn rewind(&self, targets: &HashMap<(String, i32), i64>) -> Result<(), KafkaError> {
        let member = self.member.upgrade();
        // No ack commit may land after this one and move the group forward again.
        let _guard = member.as_ref().map(|m| m.commit_lock.blocking_lock());
        let assigned = self.consumer.assignment()?;
        for element in assigned.elements() {
            let key = (element.topic().to_owned(), element.partition());
            let Some(&offset) = targets.get(&key) else {
                continue;
            };
            if let Err(e) =
                self.consumer
                    .seek(&key.0, key.1, Offset::Offset(offset), REQUEST_TIMEOUT)
            {
                tracing::debug!(group = %self.group.id, error = %e, "kafka seek failed");
            }
            let mut state = lock(&self.state);
            if let Some(tp) = state.tp_of(&key.0, key.1) {
                let part = state.fresh(offset);
                state.parts.insert(tp, part);
            }
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), &offset) in targets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync)
    }
}

fn decode(tp: Tp, message: &BorrowedMessage<'_>) -> Option<Envelope> {
    let headers = message.headers()?;
    let meta = EventMeta::from_headers(|name| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    })?;
    Some(Envelope {
        user: None,
        topic: tp.0,
        meta,
        payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
    })
}

pub(crate) struct KafkaSubscription {
    member: Arc<MemberShared>,
    rx: mpsc::Receiver<Fetched>,
    retry_rx: mpsc::UnboundedReceiver<Fetched>,
    stop: Arc<AtomicBool>,
}

impl KafkaSubscription {
    fn current(&self, fetched: &Fetched) -> bool {
        lock(&self.member.state).epoch(fetched.tp) == Some(fetched.epoch)
    }

    fn delivery(&self, fetched: Fetched) -> Delivery {
        Delivery {
            envelope: fetched.envelope.clone(),
            redelivered: fetched.redelivered,
            ack: Box::new(KafkaAck {
                member: Arc::downgrade(&self.member),
                fetched,
            }),
        }
    }
}

impl Subscription for KafkaSubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>> {
        Box::pin(async move {
            loop {
                let fetched = tokio::select! {
                    biased;
                    Some(retry) = self.retry_rx.recv() => retry,
                    fetched = self.rx.recv() => match fetched {
                        Some(f) => f,
                        None => return Err(TransportError::Group {
                            group: self.member.group.clone(),
                            source: "the member's consumer stopped".into(),
                        }),
                    },
                };
                if self.current(&fetched) {
                    return Ok(Some(self.delivery(fetched)));
                }
            }
        })
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // The crash: the thread stops polling and closes the consumer, committing nothing.
        self.stop.store(true, Ordering::Release);
    }
}

struct KafkaAck {
    member: Weak<MemberShared>,
    fetched: Fetched,
}

/// Commit errors that mean "this member no longer owns the partition": the ack is stale and
/// the event goes to the new owner, as the contract says.
fn stale_commit(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::State
                | RDKafkaErrorCode::AssignmentLost
        )
    )
}

impl KafkaAck {
    /// Marks the offset acked and returns the partition's new commit position, if it moved.
    fn mark(member: &MemberShared, fetched: &Fetched) -> Option<i64> {
        let mut state = lock(&member.state);
        let part = state.parts.get_mut(&fetched.tp)?;
        if part.epoch != fetched.epoch {
            return None;
        }
        let base = part.base?;
        let slot = usize::try_from(fetched.offset - base).ok()?;
        *part.acked.get_mut(slot)? = true;
        let mut base = base;
        while part.acked.front() == Some(&true) {
            part.acked.pop_front();
            base += 1;
        }
        part.base = Some(base);
        (base > part.committed).then_some(base)
    }

    async fn commit(member: Arc<MemberShared>, fetched: Fetched) -> Result<(), TransportError> {
        if Self::mark(&member, &fetched).is_none() {
            return Ok(());
        }
        let _guard = member.commit_lock.lock().await;
        // Commit what is ackable now (other acks may have moved it further meanwhile).
        let (name, offset) = {
            let state = lock(&member.state);
            let Some(part) = state.parts.get(&fetched.tp) else {
                return Ok(());
            };
            let Some(base) = part.base else {
                return Ok(());
            };
            if part.epoch != fetched.epoch || base <= part.committed {
                return Ok(());
            }
            let name = state
                .names
                .iter()
                .find(|(_, t)| **t == fetched.tp.0)
                .map(|(n, _)| n.clone());
            let Some(name) = name else {
                return Ok(());
            };
            (name, base)
        };
        let Some(consumer) = member.consumer.upgrade() else {
            return Ok(()); // The member stopped: its partitions went elsewhere.
        };
        let mut tpl = TopicPartitionList::new();
        let partition = fetched.tp.1;
        let group_error = |source: Cause| TransportError::Group {
            group: member.group.clone(),
            source,
        };
        tpl.add_partition_offset(&name, partition, Offset::Offset(offset))
            .map_err(|e| group_error(e.into()))?;
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
                .await
                .map_err(|e| group_error(e.into()))?;
        match committed {
            Ok(()) => {
                let mut state = lock(&member.state);
                if let Some(part) = state.parts.get_mut(&fetched.tp)
                    && part.epoch == fetched.epoch
                {
                    part.committed = part.committed.max(offset);
                }
                Ok(())
            }
            Err(e) if stale_commit(&e) => Ok(()),
            Err(e) => Err(group_error(Cause::from(e).context("commit failed"))),
        }
    }
}

impl AckHandle for KafkaAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        let KafkaAck { member, fetched } = *self;
        Box::pin(async move {
            match member.upgrade() {
                Some(member) => Self::commit(member, fetched).await,
                None => Ok(()),
            }
        })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        let KafkaAck {
            member,
            mut fetched,
        } = *self;
        if let Some(member) = member.upgrade() {
            fetched.redelivered = true;
            // Fails only when the member stopped: then the partition's next owner re-reads it.
            let _ = member.retry.send(fetched);
        }
        Box::pin(async { Ok(()) })
    }
}
