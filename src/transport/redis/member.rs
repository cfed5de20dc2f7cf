//! One member of a Redis consumer group: a reader task, a heartbeat task, and the ack handles
//! of its deliveries.
//!
//! The reader owns a dedicated connection (a blocking `XREADGROUP` must not stall the shared
//! one), feeds a bounded channel the [`Subscription`] drains, and every takeover period claims
//! the pending entries of members whose heartbeat expired. It never returns an error to the
//! harness: a lost connection or a lost group is repaired (with backoff) and reading goes on.
//! It stops when the subscription is dropped or the transport is cleaned up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{ErrorKind, RedisError, Value};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::reply::{self, Entry, StreamId};
use super::{GroupState, Inner, create_group, group_missing, lock, query};
use crate::clock::{RunTime, duration_ns};
use crate::events::{Envelope, EventMeta, Topic};
use crate::transport::backoff::Backoff;
use crate::transport::{AckHandle, BoxFuture, Delivery, Subscription, TransportError};

/// Deliveries read ahead of the harness, per member.
const BUFFER: usize = 1024;
/// Entries asked for per stream per read.
const READ_COUNT: usize = 128;
/// Pending entries of a dead member claimed per stream per takeover.
const CLAIM_BATCH: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a member's tasks and ack handles share.
struct Route {
    inner: Arc<Inner>,
    group: Arc<GroupState>,
    consumer: String,
    tx: mpsc::Sender<Delivery>,
}

/// Timings derived from `ack_wait`.
struct Timing {
    heartbeat_ttl: Duration,
    heartbeat_every: Duration,
    takeover_every: Duration,
    claim_idle_min: Duration,
    block: Duration,
}

impl Timing {
    fn from_ack_wait(ack_wait: Duration) -> Timing {
        let ttl = ack_wait.max(Duration::from_millis(100));
        Timing {
            heartbeat_ttl: ttl,
            heartbeat_every: ttl / 3,
            takeover_every: (ack_wait / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)),
            claim_idle_min: ack_wait / 2,
            block: (ack_wait / 4).clamp(Duration::from_millis(10), Duration::from_millis(200)),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Starts a member: its heartbeat is set before it reads anything, so no other member can
/// take it for dead.
pub(super) async fn spawn(
    inner: Arc<Inner>,
    group: Arc<GroupState>,
    consumer: String,
    conn: MultiplexedConnection,
) -> Result<Box<dyn Subscription>, TransportError> {
    let timing = Timing::from_ack_wait(inner.options.ack_wait);
    let (tx, rx) = mpsc::channel(BUFFER);
    let route = Arc::new(Route {
        inner,
        group,
        consumer,
        tx,
    });
    route
        .beat(timing.heartbeat_ttl)
        .await
        .map_err(|e| route.error(e))?;
    tokio::spawn(heartbeat(
        route.clone(),
        timing.heartbeat_ttl,
        timing.heartbeat_every,
    ));
    let reader = Reader {
        route: route.clone(),
        conn: Some(conn),
        backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
        next_takeover: 0,
        timing,
    };
    tokio::spawn(reader.run());
    Ok(Box::new(RedisSubscription {
        rx,
        inner: route.inner.clone(),
    }))
}

impl Route {
    /// The subscription was dropped or the transport cleaned up.
    fn stopped(&self) -> bool {
        self.tx.is_closed() || self.inner.shut.load(Ordering::SeqCst)
    }

    fn error(&self, e: RedisError) -> TransportError {
        TransportError::Group {
            group: self.group.label.clone(),
            source: e.into(),
        }
    }

    async fn beat(&self, ttl: Duration) -> Result<(), RedisError> {
        let mut set = ::redis::cmd("SET");
        set.arg(self.inner.heartbeat_key(&self.consumer))
            .arg(1)
            .arg("PX")
            .arg(ms(ttl));
        query(&self.inner, &set).await.map(drop)
    }

    /// Records that the group was handed `id` from stream `idx`; true if it had been handed
    /// out before a rewind.
    fn mark(&self, idx: usize, id: StreamId) -> bool {
        let mut marks = lock(&self.group.marks);
        let Some(m) = marks.get_mut(idx) else {
            return false;
        };
        m.highest = m.highest.max(id);
        id <= m.rewound_below
    }

    /// Hands one entry to the subscription; an entry that is not a doorbuster event is acked
    /// and skipped (it would otherwise come back forever).
    async fn deliver(self: &Arc<Self>, idx: usize, entry: Entry, redelivered: bool) {
        let Some(&topic) = self.group.topics.get(idx) else {
            return;
        };
        let id = entry.id;
        match decode(topic, entry) {
            Some(envelope) => {
                let ack = Box::new(RedisAck {
                    route: self.clone(),
                    idx,
                    id,
                });
                let delivery = Delivery {
                    envelope: Arc::new(envelope),
                    redelivered,
                    ack,
                };
                // A closed channel means the member is gone: the entry stays pending and is
                // claimed by another member.
                let _ = self.tx.send(delivery).await;
            }
            None => {
                tracing::warn!(stream = %self.group.streams[idx], %id, "not a doorbuster event; acked and skipped");
                if let Err(e) = self.xack(idx, id).await {
                    tracing::debug!(error = %e, "ack of a skipped entry failed");
                }
            }
        }
    }

    async fn xack(&self, idx: usize, id: StreamId) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(&self.group.streams[idx])
            .arg(&self.group.name)
            .arg(id.to_string());
        query(&self.inner, &cmd).await.map(drop)
    }
}

/// The envelope of a stream entry written by `publish`; `None` if a field is missing or bad.
fn decode(topic: Topic, mut entry: Entry) -> Option<Envelope> {
    let meta = EventMeta::from_headers(|name| {
        entry.field(name).and_then(|v| std::str::from_utf8(v).ok())
    })?;
    let at = entry.fields.iter().position(|(k, _)| k == b"payload")?;
    let (_, payload) = entry.fields.swap_remove(at);
    Some(Envelope {
        user: None,
        topic,
        meta,
        payload: Bytes::from(payload),
    })
}

/// Keeps the member's heartbeat key alive until the member stops.
async fn heartbeat(route: Arc<Route>, ttl: Duration, every: Duration) {
    while !route.stopped() {
        tokio::time::sleep(every).await;
        if let Err(e) = route.beat(ttl).await {
            tracing::debug!(consumer = %route.consumer, error = %e, "heartbeat failed");
        }
    }
}

struct Reader {
    route: Arc<Route>,
    conn: Option<MultiplexedConnection>,
    backoff: Backoff,
    next_takeover: RunTime,
    timing: Timing,
}

impl Reader {
    async fn run(mut self) {
        while !self.route.stopped() {
            match self.step().await {
                Ok(()) => self.backoff.reset(),
                Err(e) => self.recover(e).await,
            }
        }
        tracing::debug!(consumer = %self.route.consumer, "member stopped");
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let conn = self.route.inner.member_connection().await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// One round: a takeover when due, then one blocking read.
    async fn step(&mut self) -> Result<(), RedisError> {
        let mut conn = self.connection().await?;
        if self.route.inner.clock.now() >= self.next_takeover {
            self.take_over(&mut conn).await?;
            self.next_takeover = self
                .route
                .inner
                .clock
                .now()
                .saturating_add(duration_ns(self.timing.takeover_every));
        }
        let g = &self.route.group;
        let mut read = ::redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&g.name)
            .arg(&self.route.consumer)
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(ms(self.timing.block))
            .arg("STREAMS")
            .arg(&g.streams);
        for _ in &g.streams {
            read.arg(">");
        }
        let v = read.query_async::<Value>(&mut conn).await?;
        for (stream, entries) in reply::read(&v) {
            let Some(idx) = g.streams.iter().position(|s| *s == stream) else {
                continue;
            };
            for entry in entries {
                let again = self.route.mark(idx, entry.id);
                self.route.deliver(idx, entry, again).await;
            }
        }
        Ok(())
    }

    /// Claims the pending entries of members whose heartbeat expired; deletes those that hold
    /// nothing.
    async fn take_over(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let g = self.route.group.clone();
        let prefix = format!("{}-", self.route.inner.cfg.namespace);
        let idle_min = ms(self.timing.claim_idle_min);
        for (idx, stream) in g.streams.iter().enumerate() {
            let mut info = ::redis::cmd("XINFO");
            info.arg("CONSUMERS").arg(stream).arg(&g.name);
            let consumers = info.query_async::<Value>(conn).await?;
            for rec in reply::records(&consumers) {
                let Some(name) = reply::get(rec, "name").and_then(reply::text) else {
                    continue;
                };
                if name == self.route.consumer || !name.starts_with(&prefix) {
                    continue;
                }
                let mut exists = ::redis::cmd("EXISTS");
                exists.arg(self.route.inner.heartbeat_key(name));
                if reply::int(&exists.query_async::<Value>(conn).await?) == Some(1) {
                    continue;
                }
                let pending = reply::get(rec, "pending").and_then(reply::int);
                if pending == Some(0) {
                    let mut del = ::redis::cmd("XGROUP");
                    del.arg("DELCONSUMER").arg(stream).arg(&g.name).arg(name);
                    del.query_async::<Value>(conn).await?;
                    continue;
                }
                let mut xpending = ::redis::cmd("XPENDING");
                xpending
                    .arg(stream)
                    .arg(&g.name)
                    .arg("IDLE")
                    .arg(idle_min)
                    .arg("-")
                    .arg("+")
                    .arg(CLAIM_BATCH)
                    .arg(name);
                let ids = reply::pending_ids(&xpending.query_async::<Value>(conn).await?);
                if ids.is_empty() {
                    continue;
                }
                let mut claim = ::redis::cmd("XCLAIM");
                claim
                    .arg(stream)
                    .arg(&g.name)
                    .arg(&self.route.consumer)
                    .arg(idle_min);
                for id in &ids {
                    claim.arg(id.to_string());
                }
                let claimed = reply::entries(&claim.query_async::<Value>(conn).await?);
                tracing::info!(
                    group = %g.label,
                    dead = name,
                    by = %self.route.consumer,
                    claimed = claimed.len(),
                    "took over a stopped member's pending events"
                );
                for entry in claimed {
                    self.route.mark(idx, entry.id);
                    self.route.deliver(idx, entry, true).await;
                }
            }
        }
        Ok(())
    }

    /// Repairs what an error broke: re-creates a lost group, or drops the connection and waits
    /// (with backoff) before the next attempt.
    async fn recover(&mut self, e: RedisError) {
        if self.route.stopped() {
            return;
        }
        let g = self.route.group.clone();
        if group_missing(&e) {
            tracing::info!(group = %g.label, "the server lost the group; re-creating it");
            if let Ok(mut conn) = self.connection().await {
                let mut all_ok = true;
                for stream in &g.streams {
                    if let Err(e) = create_group(&mut conn, stream, &g.name).await {
                        tracing::warn!(stream = %stream, error = %e, "cannot re-create the group");
                        all_ok = false;
                    }
                }
                if all_ok {
                    return;
                }
            }
        } else {
            tracing::warn!(consumer = %self.route.consumer, error = %e, "member read failed; retrying");
            if !matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
                self.conn = None;
            }
        }
        self.backoff.wait().await;
    }
}

struct RedisAck {
    route: Arc<Route>,
    idx: usize,
    id: StreamId,
}

impl AckHandle for RedisAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            self.route
                .xack(self.idx, self.id)
                .await
                .map_err(|e| self.route.error(e))
        })
    }

    /// Claims the entry again for this member (Redis counts one more delivery) and hands it
    /// out at once, flagged redelivered.
    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let route = &self.route;
            if route.stopped() {
                // The member is gone; the entry is claimed by another one.
                return Ok(());
            }
            let mut claim = ::redis::cmd("XCLAIM");
            claim
                .arg(&route.group.streams[self.idx])
                .arg(&route.group.name)
                .arg(&route.consumer)
                .arg(0)
                .arg(self.id.to_string());
            let v = query(&route.inner, &claim)
                .await
                .map_err(|e| route.error(e))?;
            for entry in reply::entries(&v) {
                route.deliver(self.idx, entry, true).await;
            }
            Ok(())
        })
    }
}

struct RedisSubscription {
    rx: mpsc::Receiver<Delivery>,
    inner: Arc<Inner>,
}

impl Subscription for RedisSubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>> {
        Box::pin(async move {
            loop {
                if self.inner.shut.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                let wait = tokio::time::sleep(Duration::from_millis(250));
                tokio::select! {
                    d = self.rx.recv() => return Ok(d),
                    () = wait => {}
                }
            }
        })
    }
}
