//! The Redis Streams transport (redis-rs, Redis 7.0 or newer).
//!
//! Guarantees (DESIGN.md §6) and how doorbuster maps them:
//! - publish ack = the `XADD` reply (the entry id): the server appended the event to the
//!   stream `{namespace}:{topic}`, fields = the [`EventMeta`](crate::events::EventMeta)
//!   headers plus the binary payload. Durability is the server's: with `appendonly no`
//!   (the loopback test server) an acked event is lost when the server restarts, and a run
//!   reports it as lost. Every publish is bounded by [`PUBLISH_BOUND`]: a refusal (a server
//!   error, a connection refused before sending) is `Publish`, no answer is `Indeterminate`.
//! - consumer group = a Redis consumer group `{namespace}-{group}` created at id `0` with
//!   `MKSTREAM` on each of its topics' streams (so events published before the first member
//!   joined are delivered too); a member = consumer `{namespace}-{group}-{process}-{n}` reading
//!   `XREADGROUP >` with `BLOCK` on its own connection; ack = `XACK`.
//! - redelivery: each member keeps a heartbeat key `{namespace}:member:{consumer}` alive
//!   (TTL `ack_wait`). A member whose heartbeat expired (a dropped [`Subscription`], a
//!   crashed process) is dead: the remaining members `XCLAIM` its pending entries (Redis
//!   counts the delivery again) and delete the empty consumer. A live member keeps what it
//!   holds however long it takes, like a Kafka partition owner: Redis 7.0's consumer `idle`
//!   only moves when a consumer receives something, so idle time cannot tell a slow member
//!   from a dead one. `nack` = `XCLAIM` to the same member, handed out again at once.
//!   `redelivered` = the entry was claimed, or it is re-read after a rewind.
//! - replay: `XGROUP SETID` to `0` (earliest) or to the last id before a time (ids are
//!   Unix ms); entries the group had been handed before are flagged redelivered.
//! - lag = per stream, `XINFO GROUPS` `lag` (not yet delivered to the group) + `pending`
//!   (delivered, not acked), summed over the group's streams; when Redis cannot say `lag`
//!   (after a rewind to a time) the entries after the group's position are counted.
//! - order: a stream is one ordered log, so one member sees the events of a key in publish
//!   order; members of a group share entries without key affinity (Redis Streams have no
//!   partitions), so with several members the events of one key may go to different ones.
//! - a broker restart: the shared connection and each member's connection reconnect with
//!   backoff; a member that gets `NOGROUP` (the server lost the stream) re-creates the group.
//!   `max_deliver` is not enforced.
//! - observe mode: the orders go to the user's own stream (`observe.orders_to`) with the
//!   rendered key and headers as fields beside `payload`; the run never deletes that
//!   stream. A tap (`tap.rs`) `XREAD`s one of the user's streams from its end at start,
//!   outside every consumer group.
//! - TLS: `rediss://` connects through rustls (ring) and checks the server's certificate
//!   against the system's roots; `rediss://host:port/#insecure` skips the check (a
//!   self-signed test server).

pub mod config;
mod member;
mod reply;
mod store;
mod tap;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, RedisError, Value};

use super::groups::{GroupTopics, Groups};
use super::{
    Ack, BoxFuture, BrokerConfig, Cause, RewindTo, Subscription, Tap, Transport, TransportError,
    TransportInfo,
};
use crate::clock::Clock;
use crate::events::{Envelope, Topic};
use reply::StreamId;

/// The longest a publish may take before it counts as `Indeterminate`.
pub const PUBLISH_BOUND: Duration = Duration::from_secs(10);
/// Connecting (TCP + handshake) gives up after this.
const CONNECT_BOUND: Duration = Duration::from_secs(3);
/// Control commands (group setup, rewind, lag, ack) give up after this.
const COMMAND_BOUND: Duration = Duration::from_secs(10);

pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// Shared, multiplexed (pipelined) and self-reconnecting: publishes, acks, control.
    conn: ConnectionManager,
    cfg: BrokerConfig,
    options: config::Options,
    clock: Clock,
    groups: Groups<GroupState>,
    /// Set by `cleanup`: members stop and nothing re-creates the streams.
    shut: AtomicBool,
    /// What the server said about itself at connect (version, persistence).
    server: Vec<(String, String)>,
    /// This process among those sharing the namespace (the shards of one run id): its
    /// members' consumer names are its own, as two replicas' would be.
    process: u32,
}

/// What this process knows about one consumer group.
struct GroupState {
    /// The group as the harness names it.
    label: String,
    /// The group as Redis names it: `{namespace}-{label}`.
    name: String,
    topics: Vec<Topic>,
    streams: Vec<String>,
    next_member: AtomicU32,
    marks: Mutex<Vec<Marks>>,
}

impl GroupTopics for GroupState {
    fn topics(&self) -> &[Topic] {
        &self.topics
    }
}

/// Per stream: the highest id handed to the group and the rewind watermark below which a
/// fresh read is a re-read.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    highest: StreamId,
    rewound_below: StreamId,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn stream(&self, topic: Topic) -> String {
        self.cfg.topic_name(topic, ":")
    }

    fn heartbeat_key(&self, consumer: &str) -> String {
        format!("{}:member:{consumer}", self.cfg.namespace)
    }

    fn group(&self, label: &str) -> Result<Arc<GroupState>, TransportError> {
        self.groups.existing(label)
    }

    /// The group's state, made on first use; every member must name the same topics.
    fn group_for(&self, label: &str, topics: &[Topic]) -> Result<Arc<GroupState>, TransportError> {
        self.groups.join(label, topics, || {
            Ok(GroupState {
                label: label.to_owned(),
                name: format!("{}-{label}", self.cfg.namespace),
                topics: topics.to_vec(),
                streams: topics.iter().map(|t| self.stream(*t)).collect(),
                next_member: AtomicU32::new(0),
                marks: Mutex::new(vec![Marks::default(); topics.len()]),
            })
        })
    }

    /// A dedicated connection for one member's blocking reads.
    async fn member_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_BOUND))
            .set_response_timeout(Some(COMMAND_BOUND));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// True when the server answered with this error code (`NOGROUP`, `BUSYGROUP`, ...).
fn has_code(e: &RedisError, code: &str) -> bool {
    e.code() == Some(code) || e.to_string().contains(code)
}

/// The stream or the group is gone (a restarted server, a cleanup).
fn group_missing(e: &RedisError) -> bool {
    has_code(e, "NOGROUP") || e.to_string().contains("no such key")
}

/// `XGROUP CREATE stream group 0 MKSTREAM`; an existing group is fine.
async fn create_group(
    conn: &mut impl ::redis::aio::ConnectionLike,
    stream: &str,
    group: &str,
) -> Result<(), RedisError> {
    let mut cmd = ::redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM");
    match cmd.query_async::<Value>(conn).await {
        Ok(_) => Ok(()),
        Err(e) if has_code(&e, "BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs one command on the shared connection within [`COMMAND_BOUND`].
async fn query(inner: &Inner, cmd: &Cmd) -> Result<Value, RedisError> {
    let mut conn = inner.conn.clone();
    match tokio::time::timeout(COMMAND_BOUND, cmd.query_async::<Value>(&mut conn)).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from Redis",
        ))),
    }
}

/// Connects to the Redis server at `cfg.url`; `Unreachable` within a few seconds if it is not
/// there.
pub async fn connect(
    cfg: &BrokerConfig,
    options: &config::Options,
    clock: Clock,
) -> Result<Arc<dyn Transport>, TransportError> {
    let target = cfg.redacted_url();
    let unreachable = |source: Cause| TransportError::Unreachable {
        target: target.clone(),
        source,
    };
    crate::tls::install_provider();
    let client = Client::open(cfg.url.as_str())
        // The parser's message may quote the URL (and its password): name the kind only.
        .map_err(|e| unreachable(format!("not a Redis URL ({:?})", e.kind()).into()))?;
    // A plain connection first, so an absent server fails fast instead of inside the
    // connection manager's retries.
    let probe_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_BOUND))
        .set_response_timeout(Some(CONNECT_BOUND));
    let mut probe = tokio::time::timeout(
        CONNECT_BOUND + Duration::from_secs(1),
        client.get_multiplexed_async_connection_with_config(&probe_cfg),
    )
    .await
    .map_err(|_| unreachable("no answer within 4 s".into()))?
    .map_err(|e| unreachable(e.into()))?;
    let server = server_settings(&mut probe).await;
    let manager_cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_BOUND))
        .set_response_timeout(Some(PUBLISH_BOUND))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(6);
    let conn = tokio::time::timeout(
        PUBLISH_BOUND,
        ConnectionManager::new_with_config(client.clone(), manager_cfg),
    )
    .await
    .map_err(|_| unreachable("no answer within 10 s".into()))?
    .map_err(|e| unreachable(e.into()))?;
    Ok(Arc::new(RedisBroker {
        inner: Arc::new(Inner {
            client,
            conn,
            cfg: cfg.clone(),
            options: options.clone(),
            clock,
            groups: Groups::default(),
            shut: AtomicBool::new(false),
            server,
            process: crate::rng::run_nonce() as u32,
        }),
    }))
}

/// The server's version and persistence settings, for the report; "unknown" where the server
/// does not say (managed Redis often disables CONFIG).
async fn server_settings(conn: &mut MultiplexedConnection) -> Vec<(String, String)> {
    let version = ::redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(conn)
        .await
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let mut out = vec![("server version".to_owned(), version)];
    for name in ["appendonly", "appendfsync"] {
        let value = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async::<Value>(conn)
            .await
            .ok()
            .and_then(|v| {
                reply::get(&v, name)
                    .and_then(reply::text)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned());
        out.push((format!("server {name}"), value));
    }
    out
}

/// Maps a failed XADD: a server refusal or a connection refused before sending is `Publish`;
/// anything else (dropped connection, timeout) may have reached the server.
fn publish_error(topic: Topic, e: RedisError) -> TransportError {
    let refused = matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
        || e.is_connection_refusal();
    TransportError::failed_publish(topic, e, refused)
}

#[async_trait::async_trait]
impl Transport for RedisBroker {
    fn info(&self) -> TransportInfo {
        let cfg = &self.inner.cfg;
        let mut settings: Vec<(String, String)> = vec![
            ("url".into(), cfg.redacted_url()),
            ("namespace".into(), cfg.namespace.clone()),
            (
                "publish ack".into(),
                "XADD id (the server appended it)".into(),
            ),
            ("publish bound".into(), format!("{PUBLISH_BOUND:?}")),
            (
                "consumer group".into(),
                "XREADGROUP per member, group at id 0".into(),
            ),
            ("ack policy".into(), "XACK per delivery".into()),
            (
                "commit policy".into(),
                "each ack commits its entry only (PEL)".into(),
            ),
            (
                "ack wait".into(),
                format!(
                    "{:?} (member heartbeat TTL; then XCLAIM)",
                    self.inner.options.ack_wait
                ),
            ),
            ("max deliver".into(), "not enforced".into()),
            (
                "key order".into(),
                "per stream; no key affinity across members".into(),
            ),
        ];
        settings.extend(self.inner.server.iter().cloned());
        TransportInfo {
            kind: "redis".into(),
            settings,
        }
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        Box::pin(async move {
            let topic = envelope.topic;
            let mut cmd = ::redis::cmd("XADD");
            cmd.arg(self.inner.stream(topic)).arg("*");
            for (name, value) in envelope.meta.to_headers() {
                cmd.arg(name).arg(value);
            }
            // The user's own key and headers (observe mode), as fields beside the payload.
            if let Some(user) = &envelope.user {
                for (name, value) in &user.headers {
                    cmd.arg(name).arg(value);
                }
                if let Some(key) = &user.key {
                    cmd.arg("key").arg(key);
                }
            }
            cmd.arg("payload").arg(envelope.payload.as_ref());
            let mut conn = self.inner.conn.clone();
            let reply =
                tokio::time::timeout(PUBLISH_BOUND, cmd.query_async::<Value>(&mut conn)).await;
            match reply {
                Err(_) => Err(TransportError::Indeterminate {
                    topic,
                    source: format!("no XADD reply within {PUBLISH_BOUND:?}").into(),
                }),
                Ok(Err(e)) => Err(publish_error(topic, e)),
                Ok(Ok(v)) => match reply::text(&v).and_then(StreamId::parse) {
                    // The id is the ack: its ms part and sequence, packed into one offset.
                    Some(id) => Ok(Ack {
                        partition: 0,
                        offset: id.ms.saturating_mul(1 << 20).saturating_add(id.seq),
                    }),
                    None => Err(TransportError::Indeterminate {
                        topic,
                        source: format!("unexpected XADD reply {v:?}").into(),
                    }),
                },
            }
        })
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let g = self.inner.group_for(group, topics)?;
        let group_err = |e: RedisError| TransportError::Group {
            group: group.to_owned(),
            source: e.into(),
        };
        let mut conn = self.inner.conn.clone();
        for stream in &g.streams {
            tokio::time::timeout(COMMAND_BOUND, create_group(&mut conn, stream, &g.name))
                .await
                .map_err(|_| TransportError::Group {
                    group: group.to_owned(),
                    source: "no answer to XGROUP CREATE".into(),
                })?
                .map_err(group_err)?;
        }
        let conn = self.inner.member_connection().await.map_err(group_err)?;
        let n = g.next_member.fetch_add(1, Ordering::Relaxed);
        let consumer = format!(
            "{}-{group}-{:08x}-{n}",
            self.inner.cfg.namespace, self.inner.process
        );
        member::spawn(self.inner.clone(), g, consumer, conn).await
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        let g = self.inner.group(group)?;
        let group_err = |e: RedisError| TransportError::Group {
            group: group.to_owned(),
            source: e.into(),
        };
        let setid = |stream: &str| {
            let mut cmd = ::redis::cmd("XGROUP");
            cmd.arg("SETID").arg(stream).arg(&g.name);
            match to {
                // ENTRIESREAD 0 keeps XINFO's `lag` exact after a full replay.
                RewindTo::Earliest => cmd.arg("0").arg("ENTRIESREAD").arg(0),
                RewindTo::Time(t) => {
                    // Ids are Unix ms; the group resumes after the last id before `t`.
                    let ms = self.inner.clock.wall_ns(t) / 1_000_000;
                    match ms.checked_sub(1) {
                        Some(before) => cmd.arg(format!("{before}-{}", u64::MAX)),
                        None => cmd.arg("0"),
                    }
                }
            };
            cmd
        };
        for stream in &g.streams {
            let cmd = setid(stream);
            if let Err(e) = query(&self.inner, &cmd).await {
                if !group_missing(&e) {
                    return Err(group_err(e));
                }
                let mut conn = self.inner.conn.clone();
                create_group(&mut conn, stream, &g.name)
                    .await
                    .map_err(group_err)?;
                query(&self.inner, &cmd).await.map_err(group_err)?;
            }
        }
        for m in lock(&g.marks).iter_mut() {
            m.rewound_below = m.highest;
        }
        Ok(())
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        let g = self.inner.group(group)?;
        let mut total = 0u64;
        for stream in &g.streams {
            total = total.saturating_add(stream_lag(&self.inner, stream, &g.name).await.map_err(
                |e| TransportError::Group {
                    group: group.to_owned(),
                    source: e.into(),
                },
            )?);
        }
        Ok(total)
    }

    async fn tap(&self, name: &str) -> Result<Box<dyn Tap>, TransportError> {
        let tap = tap::open(&self.inner, name).await?;
        Ok(Box::new(tap) as Box<dyn Tap>)
    }

    async fn cleanup(&self) -> Result<(), TransportError> {
        self.inner.shut.store(true, Ordering::SeqCst);
        let cleanup_err = |e: RedisError| TransportError::Group {
            group: "*".to_owned(),
            source: Cause::from(e).context("cleanup"),
        };
        // The run's own streams; never the user's.
        let mut del = ::redis::cmd("DEL");
        for t in Topic::ALL.into_iter().filter(|t| self.inner.cfg.owns(*t)) {
            del.arg(self.inner.stream(t));
        }
        query(&self.inner, &del).await.map_err(cleanup_err)?;
        // Heartbeat keys expire by themselves; delete them anyway so nothing is left. The
        // shared state of a sharded run goes too.
        for kind in ["member", "state"] {
            let pattern = format!("{}:{kind}:*", self.inner.cfg.namespace);
            delete_matching(&self.inner, &pattern)
                .await
                .map_err(cleanup_err)?;
        }
        Ok(())
    }

    async fn shared_store(&self) -> Result<Option<Arc<dyn super::SharedStore>>, TransportError> {
        // `SET NX GET` (the provider's key records) is Redis 7's; an older server would fail
        // every charge, so the run is refused at setup instead. A version the server does not
        // tell is tried.
        let version = (self.inner.server.iter())
            .find(|(k, _)| k == "server version")
            .and_then(|(_, v)| v.split('.').next()?.parse::<u32>().ok());
        if let Some(major @ ..7) = version {
            return Err(TransportError::Store {
                space: format!("{}:state", self.inner.cfg.namespace),
                source: Cause::Observed(format!(
                    "a sharded run keeps its services' shared state with SET NX GET, which \
                     needs Redis 7 or later; this server is Redis {major}"
                )),
            });
        }
        Ok(Some(Arc::new(store::RedisStore {
            inner: self.inner.clone(),
        })))
    }
}

/// Deletes every key matching `pattern`, a thousand per `SCAN` step.
async fn delete_matching(inner: &Inner, pattern: &str) -> Result<(), RedisError> {
    let mut cursor = "0".to_owned();
    for _ in 0..10_000 {
        let mut scan = ::redis::cmd("SCAN");
        scan.arg(&cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let v = query(inner, &scan).await?;
        let parts = reply::pairs(&v);
        let Some((next, keys)) = parts.first() else {
            break;
        };
        let keys = reply::texts(keys);
        if !keys.is_empty() {
            let mut del = ::redis::cmd("DEL");
            del.arg(&keys);
            query(inner, &del).await?;
        }
        match reply::text(next) {
            Some("0") | None => break,
            Some(c) => cursor = c.to_owned(),
        }
    }
    Ok(())
}

/// One stream's share of a group's lag: not yet delivered + delivered and not acked.
async fn stream_lag(inner: &Inner, stream: &str, group: &str) -> Result<u64, RedisError> {
    let mut info = ::redis::cmd("XINFO");
    info.arg("GROUPS").arg(stream);
    let groups = match query(inner, &info).await {
        Ok(v) => v,
        // The stream does not exist (nothing published yet, or a restarted server).
        Err(e) if group_missing(&e) => return Ok(0),
        Err(e) => return Err(e),
    };
    let Some(rec) = reply::records(&groups)
        .iter()
        .find(|r| reply::get(r, "name").and_then(reply::text) == Some(group))
    else {
        // The server lost the group (a restart): everything in the stream is undelivered.
        let mut xlen = ::redis::cmd("XLEN");
        xlen.arg(stream);
        let n = reply::int(&query(inner, &xlen).await?).unwrap_or(0);
        return Ok(u64::try_from(n).unwrap_or(0));
    };
    let pending = reply::get(rec, "pending").and_then(reply::int).unwrap_or(0);
    let undelivered = match reply::get(rec, "lag").and_then(reply::int) {
        Some(lag) => lag,
        None => {
            let last = reply::get(rec, "last-delivered-id")
                .and_then(reply::text)
                .unwrap_or("0-0")
                .to_owned();
            count_after(inner, stream, &last).await?
        }
    };
    Ok(u64::try_from(pending.saturating_add(undelivered)).unwrap_or(0))
}

/// Entries after `id` in `stream`, counted page by page (only when Redis cannot say `lag`).
async fn count_after(inner: &Inner, stream: &str, id: &str) -> Result<i64, RedisError> {
    const PAGE: usize = 10_000;
    let mut from = format!("({id}");
    let mut count = 0i64;
    for _ in 0..10_000 {
        let mut range = ::redis::cmd("XRANGE");
        range.arg(stream).arg(&from).arg("+").arg("COUNT").arg(PAGE);
        let page = reply::entries(&query(inner, &range).await?);
        count = count.saturating_add(i64::try_from(page.len()).unwrap_or(i64::MAX));
        match page.last() {
            Some(last) if page.len() == PAGE => from = format!("({}", last.id),
            _ => break,
        }
    }
    Ok(count)
}
