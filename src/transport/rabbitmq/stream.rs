//! Stream groups (`queue_type: stream`): members read the topic logs through this transport.
//!
//! A stream queue hands every consumer every message, so the transport shares the work: one
//! reader per group and topic consumes the topic's log (`x-stream-offset`, manual ack for
//! credit) and dispatches each event to a member chosen by its key, so one key stays with
//! one member while membership is stable. Stream acks only return credit: the group's
//! committed position is the acked prefix of each log, kept here. A rewind, or a lost
//! connection, starts a new epoch: the readers re-attach (from the first offset, a time, or
//! the committed offset), acks from an older epoch are ignored, and events read again are
//! flagged redelivered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use tokio::sync::{mpsc, watch};

use super::classic::next_delivery;
use super::link::{BACKOFF_MAX, BACKOFF_MIN, log_name};
use super::{Ctx, codec, lock};
use crate::events::{Envelope, Topic};
use crate::transport::backoff::Backoff;
use crate::transport::{
    AckHandle, BoxFuture, Cause, Delivery, RewindTo, Subscription, TransportError,
};

/// Where a reader attaches next.
#[derive(Debug, Clone, Copy)]
enum Start {
    First,
    Offset(u64),
    /// Unix seconds: the chunk holding this time (then filtered on the publish time).
    Timestamp(u64),
}

/// The group's position in one topic log.
struct Cursor {
    /// Every offset below is acked; `None` until the first event after a (re)start is read.
    committed: Option<u64>,
    acked_above: BTreeSet<u64>,
    /// The highest offset ever handed to a member: anything at or below is a redelivery.
    max_dispatched: Option<u64>,
    start: Start,
    /// After a rewind to a time: events published before this (Unix ns) count as committed.
    skip_before_ns: Option<u64>,
}

impl Cursor {
    fn is_acked(&self, offset: u64) -> bool {
        self.committed.is_some_and(|c| offset < c) || self.acked_above.contains(&offset)
    }

    fn mark_acked(&mut self, offset: u64) {
        let Some(mut c) = self.committed else {
            self.acked_above.insert(offset);
            return;
        };
        if offset == c {
            c += 1;
            while self.acked_above.remove(&c) {
                c += 1;
            }
            self.committed = Some(c);
        } else if offset > c {
            self.acked_above.insert(offset);
        }
    }
}

/// (index of the topic in the group's topics, offset in its log)
type Key = (usize, u64);

struct Pending {
    envelope: Arc<Envelope>,
    member: Option<u64>,
    acker: Acker,
    handed_out: bool,
}

struct State {
    epoch: u64,
    members: Vec<(u64, mpsc::UnboundedSender<Delivery>)>,
    pending: BTreeMap<Key, Pending>,
    cursors: Vec<Cursor>,
}

pub(super) struct StreamGroup {
    pub queue: String,
    pub topics: Vec<Topic>,
    state: Mutex<State>,
    epoch_tx: watch::Sender<u64>,
    started: AtomicBool,
    readers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn member_index(key: u64, members: usize) -> usize {
    // Fibonacci hashing: consecutive order ids spread over members.
    let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    usize::try_from(h).unwrap_or(0) % members.max(1)
}

impl StreamGroup {
    pub(super) fn new(queue: String, topics: Vec<Topic>) -> StreamGroup {
        let cursors = topics
            .iter()
            .map(|_| Cursor {
                committed: None,
                acked_above: BTreeSet::new(),
                max_dispatched: None,
                start: Start::First,
                skip_before_ns: None,
            })
            .collect();
        StreamGroup {
            queue,
            topics,
            state: Mutex::new(State {
                epoch: 0,
                members: Vec::new(),
                pending: BTreeMap::new(),
                cursors,
            }),
            epoch_tx: watch::Sender::new(0),
            started: AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
        }
    }

    /// Hands a pending event to the member owning its key (or leaves it waiting for one).
    fn dispatch(self: &Arc<Self>, st: &mut State, key: Key, redelivered: bool) {
        let epoch = st.epoch;
        loop {
            let Some(p) = st.pending.get_mut(&key) else {
                return;
            };
            if st.members.is_empty() {
                p.member = None;
                return;
            }
            let (id, tx) = &st.members[member_index(p.envelope.key(), st.members.len())];
            let delivery = Delivery {
                envelope: p.envelope.clone(),
                redelivered: redelivered || p.handed_out,
                ack: Box::new(StreamAck {
                    group: self.clone(),
                    epoch,
                    key,
                }),
            };
            if tx.send(delivery).is_ok() {
                p.member = Some(*id);
                p.handed_out = true;
                return;
            }
            // That member is gone: forget it and pick again.
            let gone = *id;
            st.members.retain(|(m, _)| *m != gone);
        }
    }

    /// Takes one message from topic log `i`; returns an acker to settle at once when the
    /// message needs no member (already committed, skipped, or not an event).
    fn on_delivery(
        self: &Arc<Self>,
        i: usize,
        epoch: u64,
        d: lapin::message::Delivery,
    ) -> Option<Acker> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.epoch != epoch {
            return None;
        }
        let Some(offset) = codec::stream_offset(&d.properties) else {
            tracing::warn!(queue = %self.queue, "rabbitmq: stream message without x-stream-offset");
            return Some(d.acker);
        };
        let cursor = &mut st.cursors[i];
        if cursor.committed.is_none() {
            cursor.committed = Some(offset);
        }
        if let Some(ns) = cursor.skip_before_ns {
            if codec::published_wall_ns(&d.properties).is_some_and(|p| p < ns) {
                cursor.mark_acked(offset);
                return Some(d.acker);
            }
            cursor.skip_before_ns = None;
        }
        if cursor.is_acked(offset) {
            return Some(d.acker);
        }
        let Some(envelope) = codec::decode(&d.properties, d.data) else {
            tracing::warn!(queue = %self.queue, offset, "rabbitmq: skipping a message that is not a doorbuster event");
            cursor.mark_acked(offset);
            return Some(d.acker);
        };
        let redelivered = d.redelivered || cursor.max_dispatched.is_some_and(|m| offset <= m);
        cursor.max_dispatched = Some(cursor.max_dispatched.map_or(offset, |m| m.max(offset)));
        let key = (i, offset);
        st.pending.insert(
            key,
            Pending {
                envelope,
                member: None,
                acker: d.acker,
                handed_out: false,
            },
        );
        self.dispatch(st, key, redelivered);
        None
    }

    fn settle(self: &Arc<Self>, epoch: u64, key: Key, ack: bool) -> Option<Acker> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.epoch != epoch {
            return None; // read again since: the new epoch delivers it anew
        }
        if ack {
            let p = st.pending.remove(&key)?;
            st.cursors[key.0].mark_acked(key.1);
            Some(p.acker)
        } else {
            self.dispatch(st, key, true);
            None
        }
    }

    fn join(self: &Arc<Self>, id: u64, tx: mpsc::UnboundedSender<Delivery>) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.members.push((id, tx));
        let waiting: Vec<Key> = st
            .pending
            .iter()
            .filter(|(_, p)| p.member.is_none())
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            self.dispatch(st, key, false);
        }
    }

    fn leave(self: &Arc<Self>, id: u64) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.members.retain(|(m, _)| *m != id);
        let held: Vec<Key> = st
            .pending
            .iter()
            .filter(|(_, p)| p.member == Some(id))
            .map(|(k, _)| *k)
            .collect();
        for key in held {
            self.dispatch(st, key, true);
        }
    }

    /// Starts a new epoch: the readers re-attach where each cursor says.
    fn restart(&self, st: &mut State) {
        st.epoch += 1;
        st.pending.clear();
        let _ = self.epoch_tx.send(st.epoch);
    }

    pub(super) fn rewind(&self, ctx: &Ctx, to: RewindTo) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        for cursor in &mut st.cursors {
            cursor.committed = None;
            cursor.acked_above.clear();
            match to {
                RewindTo::Earliest => {
                    cursor.start = Start::First;
                    cursor.skip_before_ns = None;
                }
                RewindTo::Time(at) => {
                    let ns = ctx.clock.wall_ns(at);
                    cursor.start = Start::Timestamp(ns / 1_000_000_000);
                    cursor.skip_before_ns = Some(ns);
                }
            }
        }
        self.restart(st);
    }

    /// Per log: its length minus what the group has acked.
    pub(super) async fn lag(&self, ctx: &Ctx) -> Result<u64, Cause> {
        let mut lengths = Vec::new();
        for topic in &self.topics {
            lengths.push(ctx.log_length(*topic).await?);
        }
        let st = lock(&self.state);
        Ok(st
            .cursors
            .iter()
            .zip(lengths)
            .map(|(c, len)| (c, len.max(c.max_dispatched.map_or(0, |m| m + 1))))
            .map(|(c, len)| match c.committed {
                None => len,
                Some(done) => len.saturating_sub(done + c.acked_above.len() as u64),
            })
            .sum())
    }

    /// Stops the readers and ends every member's subscription (cleanup).
    pub(super) fn stop(&self) {
        for reader in lock(&self.readers).drain(..) {
            reader.abort();
        }
        let mut st = lock(&self.state);
        st.members.clear();
        st.pending.clear();
    }
}

async fn attach(
    ctx: &Ctx,
    group: &StreamGroup,
    i: usize,
    start: Start,
    epoch: u64,
) -> Result<(lapin::Channel, lapin::Consumer), Cause> {
    let live = ctx.link.live().await?;
    let work = async {
        let ch = live.conn.create_channel().await?;
        ch.basic_qos(ctx.prefetch, BasicQosOptions::default())
            .await?;
        let offset = match start {
            Start::First => AMQPValue::LongString(LongString::from("first")),
            Start::Offset(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
            Start::Timestamp(secs) => AMQPValue::Timestamp(secs),
        };
        let mut args = FieldTable::default();
        args.insert("x-stream-offset".into(), offset);
        let tag = format!("{}.r{i}.e{epoch}.g{}", group.queue, live.generation);
        let consumer = ch
            .basic_consume(
                log_name(&ctx.namespace, group.topics[i]).into(),
                tag.into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await?;
        Ok::<_, lapin::Error>((ch, consumer))
    };
    match tokio::time::timeout(super::link::CONNECT_TIMEOUT, work).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err("stream consumer setup timed out".into()),
    }
}

async fn run_reader(ctx: Arc<Ctx>, group: Arc<StreamGroup>, i: usize) {
    let mut epoch_rx = group.epoch_tx.subscribe();
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        if ctx.is_closed() {
            return;
        }
        let (start, epoch) = {
            let st = lock(&group.state);
            (st.cursors[i].start, st.epoch)
        };
        epoch_rx.borrow_and_update();
        let (channel, mut consumer) = match attach(&ctx, &group, i, start, epoch).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(queue = %group.queue, error = %e, "rabbitmq: stream reader waits for the broker");
                backoff.wait().await;
                continue;
            }
        };
        backoff.reset();
        let lost = loop {
            let next = tokio::select! {
                next = next_delivery(&mut consumer) => next,
                changed = epoch_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break false;
                }
            };
            let Some(Ok(d)) = next else { break true };
            if let Some(acker) = group.on_delivery(i, epoch, d) {
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
        };
        if lost {
            // The connection (or the consumer) went away: every reader of the group starts
            // a new epoch from its committed offset; unacked events are read again.
            let mut guard = lock(&group.state);
            let st = &mut *guard;
            if st.epoch == epoch {
                for cursor in &mut st.cursors {
                    if let Some(c) = cursor.committed {
                        cursor.start = Start::Offset(c);
                    }
                }
                group.restart(st);
            }
        }
        let _ = channel.close(200, "reader restarts".into()).await;
    }
}

pub(super) struct StreamSubscription {
    rx: mpsc::UnboundedReceiver<Delivery>,
    group: Arc<StreamGroup>,
    id: u64,
}

pub(super) async fn subscribe(
    ctx: Arc<Ctx>,
    group: Arc<StreamGroup>,
) -> Result<Box<dyn Subscription>, TransportError> {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    group.join(id, tx);
    if !group.started.swap(true, Ordering::SeqCst) {
        let mut readers = lock(&group.readers);
        for i in 0..group.topics.len() {
            readers.push(tokio::spawn(run_reader(ctx.clone(), group.clone(), i)));
        }
    }
    Ok(Box::new(StreamSubscription { rx, group, id }))
}

impl Subscription for StreamSubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>> {
        Box::pin(async move { Ok(self.rx.recv().await) })
    }
}

impl Drop for StreamSubscription {
    fn drop(&mut self) {
        // A crash: what this member held goes to the others, flagged redelivered.
        self.group.leave(self.id);
    }
}

struct StreamAck {
    group: Arc<StreamGroup>,
    epoch: u64,
    key: Key,
}

impl AckHandle for StreamAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            if let Some(acker) = self.group.settle(self.epoch, self.key, true) {
                // Returns the credit; the committed offset is the transport's.
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
            Ok(())
        })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let _ = self.group.settle(self.epoch, self.key, false);
            Ok(())
        })
    }
}
