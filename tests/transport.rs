//! Transport conformance: the contract every transport keeps (src/transport/mod.rs), run
//! against each one. The embedded broker runs here always; each networked broker runs against
//! its real server on loopback, and skips with a visible message when that server is not
//! running (fails instead with DOORBUSTER_REQUIRE_BROKERS=1, as in CI).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use doorbuster::clock::Clock;
use doorbuster::events::{Envelope, EventMeta, Topic};
use doorbuster::transport::embedded::EmbeddedBroker;
use doorbuster::transport::{
    BrokerConfig, BrokerKind, BrokerOptions, Delivery, QueueType, RewindTo, Subscription,
    Transport, TransportError,
};

mod support;

// The HTTP checkout target is not a broker (no groups, no replay): its own cases, against a
// real shop endpoint on loopback.
#[path = "transport/http_checkout.rs"]
mod http_checkout;

// Observe mode: the user's own shop on a real broker, tapped.
#[path = "transport/observe.rs"]
mod observe;

// Taps and the user's own topics on each real broker, case by case.
#[path = "transport/taps.rs"]
mod taps;

// The example shop (examples/shop) as separate processes, under test in observe mode.
#[path = "transport/shop.rs"]
mod shop;

// One run as three shard processes on Redis, merged, against one process's run.
#[path = "transport/shards.rs"]
mod shards;

async fn embedded() -> Option<Server> {
    Some(Server {
        t: Arc::new(EmbeddedBroker::new(4, 100_000, Clock::start())),
        _turn: None,
    })
}

/// A transport for one test, holding its turn on the broker's server: tests that restart a
/// server take it alone, every other test of that broker shares it, so a restart never
/// pulls the server from under a conformance case running beside it.
struct Server {
    t: Arc<dyn Transport>,
    _turn: Option<Turn>,
}

/// Held, never read: dropping it ends the test's turn.
enum Turn {
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
}

fn server_lock(kind: BrokerKind) -> &'static tokio::sync::RwLock<()> {
    const KINDS: usize = BrokerKind::ALL.len();
    static LOCKS: [tokio::sync::RwLock<()>; KINDS] =
        [const { tokio::sync::RwLock::const_new(()) }; KINDS];
    &LOCKS[kind as usize]
}

/// The loopback server each networked broker's tests use; `DOORBUSTER_<KIND>_URL` overrides.
fn broker_url(kind: BrokerKind) -> String {
    let var = format!("DOORBUSTER_{}_URL", format!("{kind:?}").to_uppercase());
    std::env::var(var).unwrap_or_else(|_| kind.spec().default_url.to_owned())
}

/// A namespace no other test (or earlier run of this one) uses.
fn fresh_namespace() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = doorbuster::clock::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("dbtest-{}-{nanos:x}-{n}", std::process::id())
}

fn broker_config(kind: BrokerKind, url: String) -> BrokerConfig {
    let mut options = BrokerOptions::defaults(kind);
    // Short, so a crashed member's events come back within a test's patience; few
    // partitions, so a test's handful of events spreads over all of them.
    match &mut options {
        BrokerOptions::Kafka(o) => o.partitions = 4,
        BrokerOptions::Nats(o) => o.ack_wait = Duration::from_secs(1),
        BrokerOptions::Redis(o) => o.ack_wait = Duration::from_secs(1),
        _ => {}
    }
    BrokerConfig {
        url,
        namespace: fresh_namespace(),
        options,
        allow_remote: false,
        orders_to: None,
    }
}

fn brokers_required() -> bool {
    std::env::var("DOORBUSTER_REQUIRE_BROKERS").is_ok_and(|v| v == "1")
}

/// Connects to the real server of `kind`; `None` with a visible SKIP when it is not running.
async fn broker(kind: BrokerKind) -> Option<Server> {
    broker_with(kind, |_| {}).await
}

/// [`broker`] with some options changed.
async fn broker_with(kind: BrokerKind, tweak: impl FnOnce(&mut BrokerOptions)) -> Option<Server> {
    let turn = Turn::Shared(server_lock(kind).read().await);
    connect_with(kind, |cfg| tweak(&mut cfg.options), turn).await
}

/// [`broker`] in observe mode: the run's namespace is `namespace`, and its orders go to the
/// user's own `orders_to`.
async fn broker_observing(kind: BrokerKind, namespace: &str, orders_to: &str) -> Option<Server> {
    let turn = Turn::Shared(server_lock(kind).read().await);
    let observing = |cfg: &mut BrokerConfig| {
        cfg.namespace = namespace.to_owned();
        cfg.orders_to = Some(orders_to.to_owned());
    };
    connect_with(kind, observing, turn).await
}

/// [`broker`] for a test that restarts the server: it waits until no other test of the
/// broker runs, and holds them off until it is done.
async fn broker_alone(kind: BrokerKind) -> Option<Server> {
    let turn = Turn::Alone(server_lock(kind).write().await);
    connect_with(kind, |_| {}, turn).await
}

async fn connect_with(
    kind: BrokerKind,
    tweak: impl FnOnce(&mut BrokerConfig),
    turn: Turn,
) -> Option<Server> {
    let mut cfg = broker_config(kind, broker_url(kind));
    tweak(&mut cfg);
    match doorbuster::transport::connect_broker(&cfg, Clock::start()).await {
        Ok(t) => Some(Server {
            t,
            _turn: Some(turn),
        }),
        Err(e @ TransportError::Unreachable { .. }) if !brokers_required() => {
            eprintln!(
                "SKIP: {kind:?} conformance: {e} (set DOORBUSTER_REQUIRE_BROKERS=1 to fail instead)"
            );
            None
        }
        Err(e) => panic!("{kind:?} broker: {e}"),
    }
}

fn event(order: u64, seq: u8) -> Envelope {
    Envelope {
        user: None,
        topic: Topic::OrderCreated,
        meta: EventMeta {
            event_id: order * 10 + u64::from(seq),
            order_id: order,
            seq,
            intended_at: 0,
            intended_wall_ns: 0,
            sent_at: 0,
            idempotency_key: Bytes::from(format!("ik_{order}")),
        },
        payload: Bytes::from(format!("{{\"order\":{order},\"seq\":{seq}}}")),
    }
}

async fn publish_all(t: &Arc<dyn Transport>, events: impl IntoIterator<Item = Envelope>) {
    for e in events {
        t.publish(e).await.expect("publish acked");
    }
}

/// Takes deliveries until `n` arrived or nothing came for a while (long enough for a
/// networked broker's AckWait of 1 s plus its redelivery tick).
async fn take(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_millis(2500), sub.next()).await {
            Ok(Ok(Some(d))) => out.push(d),
            _ => break,
        }
    }
    out
}

async fn ack_all(deliveries: Vec<Delivery>) {
    for d in deliveries {
        d.ack.ack().await.expect("ack");
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<(u64, u8)> {
    deliveries
        .iter()
        .map(|d| (d.envelope.meta.order_id, d.envelope.meta.seq))
        .collect()
}

async fn publish_and_deliver_once(t: Arc<dyn Transport>) {
    // Every acked event reaches the group exactly once when nothing fails.
    let mut sub = t.subscribe("c1", &[Topic::OrderCreated]).await.unwrap();
    publish_all(&t, (0..100).map(|o| event(o, 0))).await;
    let got = take(&mut sub, 100).await;
    let unique: HashSet<_> = ids(&got).into_iter().collect();
    assert_eq!(unique.len(), 100);
    assert!(got.iter().all(|d| !d.redelivered));
    ack_all(got).await;
    assert_eq!(t.lag("c1").await.unwrap(), 0);
    assert!(
        take(&mut sub, 1).await.is_empty(),
        "nothing more after all acked"
    );
}

async fn group_members_share_the_work(t: Arc<dyn Transport>) {
    // Two members of one group split the events; together they see each once.
    let mut a = t.subscribe("c2", &[Topic::OrderCreated]).await.unwrap();
    let mut b = t.subscribe("c2", &[Topic::OrderCreated]).await.unwrap();
    publish_all(&t, (0..200).map(|o| event(o, 0))).await;
    let got_a = take(&mut a, 200).await;
    let got_b = take(&mut b, 200).await;
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both members got work"
    );
    let mut all = ids(&got_a);
    all.extend(ids(&got_b));
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!((all.len(), unique.len()), (200, 200));
    // A second group gets everything independently.
    let mut other = t
        .subscribe("c2-other", &[Topic::OrderCreated])
        .await
        .unwrap();
    assert_eq!(take(&mut other, 200).await.len(), 200);
}

async fn unacked_work_is_redelivered_after_a_crash(t: Arc<dyn Transport>) {
    // A member that stops without acking leaves its events to the others, flagged.
    let mut a = t.subscribe("c3", &[Topic::OrderCreated]).await.unwrap();
    publish_all(&t, (0..50).map(|o| event(o, 0))).await;
    let first = take(&mut a, 50).await;
    assert_eq!(first.len(), 50);
    let (acked, held): (Vec<_>, Vec<_>) = first.into_iter().partition(|d| d.envelope.key() < 25);
    let held_ids: HashSet<_> = ids(&held).into_iter().collect();
    ack_all(acked).await;
    let mut b = t.subscribe("c3", &[Topic::OrderCreated]).await.unwrap();
    drop(a); // the crash: `held` is never acked
    drop(held);
    let again = take(&mut b, 50).await;
    let again_ids: HashSet<_> = ids(&again).into_iter().collect();
    assert!(
        held_ids.is_subset(&again_ids),
        "every unacked event came back"
    );
    assert!(
        again
            .iter()
            .filter(|d| held_ids.contains(&(d.envelope.meta.order_id, 0)))
            .all(|d| d.redelivered)
    );
    ack_all(again).await;
    assert_eq!(t.lag("c3").await.unwrap(), 0);
}

async fn nacked_events_come_back(t: Arc<dyn Transport>) {
    let mut a = t.subscribe("c4", &[Topic::OrderCreated]).await.unwrap();
    publish_all(&t, [event(1, 0)]).await;
    let d = take(&mut a, 1).await.pop().expect("one delivery");
    d.ack.nack().await.unwrap();
    let again = take(&mut a, 1).await.pop().expect("redelivered after nack");
    assert_eq!(again.envelope.meta.order_id, 1);
    assert!(again.redelivered);
}

async fn lag_counts_published_not_committed(t: Arc<dyn Transport>) {
    let mut a = t.subscribe("c5", &[Topic::OrderCreated]).await.unwrap();
    publish_all(&t, (0..30).map(|o| event(o, 0))).await;
    assert_eq!(t.lag("c5").await.unwrap(), 30);
    let got = take(&mut a, 30).await;
    assert_eq!(t.lag("c5").await.unwrap(), 30, "delivered is not committed");
    let (first, rest): (Vec<_>, Vec<_>) = got.into_iter().partition(|d| d.envelope.key() < 10);
    ack_all(first).await;
    // Orders 0..9 were published first, so they are a prefix of every partition: acking
    // them commits exactly 10.
    assert_eq!(t.lag("c5").await.unwrap(), 20);
    ack_all(rest).await;
    assert_eq!(t.lag("c5").await.unwrap(), 0);
}

async fn rewind_rereads_everything(t: Arc<dyn Transport>) {
    let mut a = t.subscribe("c6", &[Topic::OrderCreated]).await.unwrap();
    publish_all(&t, (0..40).map(|o| event(o, 0))).await;
    ack_all(take(&mut a, 40).await).await;
    assert_eq!(t.lag("c6").await.unwrap(), 0);
    let rewound = t.rewind("c6", RewindTo::Earliest).await;
    if !replays(&t) {
        // RabbitMQ classic and quorum queues cannot replay: rewind says so, clearly.
        let e = rewound.expect_err("rewind of a queue that cannot replay");
        assert!(
            e.to_string().contains("replay needs queue_type: stream"),
            "{e}"
        );
        return;
    }
    rewound.unwrap();
    assert_eq!(t.lag("c6").await.unwrap(), 40);
    let again = take(&mut a, 40).await;
    assert_eq!(again.len(), 40);
    assert!(again.iter().all(|d| d.redelivered));
    ack_all(again).await;
    assert!(t.rewind("no-such-group", RewindTo::Earliest).await.is_err());
}

/// Whether the transport can rewind (all but RabbitMQ's classic and quorum queues).
fn replays(t: &Arc<dyn Transport>) -> bool {
    let info = t.info();
    info.kind != "rabbitmq"
        || info
            .settings
            .iter()
            .any(|(k, v)| k == "queue type" && v == "stream")
}

async fn per_key_order_is_kept(t: Arc<dyn Transport>) {
    // Events of one key arrive in publish order, whatever the interleaving of keys.
    let mut a = t.subscribe("c7", &[Topic::OrderCreated]).await.unwrap();
    let events = (0..5u8).flat_map(|seq| (0..20).map(move |o| event(o, seq)));
    publish_all(&t, events).await;
    let got = take(&mut a, 100).await;
    let mut per_key: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (order, seq) in ids(&got) {
        per_key.entry(order).or_default().push(seq);
    }
    assert_eq!(per_key.len(), 20);
    for seqs in per_key.values() {
        assert_eq!(seqs, &vec![0, 1, 2, 3, 4]);
    }
}

/// Runs one conformance case on a fresh transport, then removes what it created.
async fn case<F, Fut>(connect: impl Future<Output = Option<Server>>, body: F)
where
    F: FnOnce(Arc<dyn Transport>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(server) = connect.await else { return };
    body(server.t.clone()).await;
    server.t.cleanup().await.expect("cleanup");
}

async fn unreachable_broker_is_a_clear_error(kind: BrokerKind, url: &str) {
    // Nothing listens on port 1: connecting fails promptly, naming the broker's address.
    let cfg = broker_config(kind, url.to_owned());
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        doorbuster::transport::connect_broker(&cfg, Clock::start()),
    )
    .await
    .expect("connect gives up by itself");
    match result {
        Err(e @ TransportError::Unreachable { .. }) => {
            assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        }
        Err(e) => panic!("expected Unreachable, got {e}"),
        Ok(_) => panic!("connected to a port nothing listens on"),
    }
}

macro_rules! conformance {
    ($module:ident, $connect:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn publish_and_deliver_once() {
                case($connect, super::publish_and_deliver_once).await;
            }
            #[tokio::test]
            async fn group_members_share_the_work() {
                case($connect, super::group_members_share_the_work).await;
            }
            #[tokio::test]
            async fn unacked_work_is_redelivered_after_a_crash() {
                case($connect, super::unacked_work_is_redelivered_after_a_crash).await;
            }
            #[tokio::test]
            async fn nacked_events_come_back() {
                case($connect, super::nacked_events_come_back).await;
            }
            #[tokio::test]
            async fn lag_counts_published_not_committed() {
                case($connect, super::lag_counts_published_not_committed).await;
            }
            #[tokio::test]
            async fn rewind_rereads_everything() {
                case($connect, super::rewind_rereads_everything).await;
            }
            #[tokio::test]
            async fn per_key_order_is_kept() {
                case($connect, super::per_key_order_is_kept).await;
            }
        }
    };
}

conformance!(embedded_broker, embedded());

macro_rules! broker_conformance {
    ($module:ident, $kind:expr, $unreachable:literal) => {
        mod $module {
            use super::*;

            conformance!(contract, broker($kind));

            #[tokio::test]
            async fn unreachable_broker_is_a_clear_error() {
                super::unreachable_broker_is_a_clear_error($kind, $unreachable).await;
            }
        }
    };
}

broker_conformance!(redis, BrokerKind::Redis, "redis://127.0.0.1:1");

/// The state the shards of one run share (`Transport::shared_store`): two connections in one
/// namespace, as two shard processes of one run id, decide every claim and every first value
/// once between them, even when both ask at the same moment; another namespace (another run)
/// sees none of it, and the run's cleanup removes it.
async fn shared_state_decides_once(kind: BrokerKind) {
    let namespace = format!("doorbuster-store-{}", std::process::id());
    let in_namespace = |ns: String| move |cfg: &mut BrokerConfig| cfg.namespace = ns;
    let turn = || async { Turn::Shared(server_lock(kind).read().await) };
    let Some(a) = connect_with(kind, in_namespace(namespace.clone()), turn().await).await else {
        return;
    };
    let Some(b) = connect_with(kind, in_namespace(namespace.clone()), turn().await).await else {
        return;
    };
    let other = connect_with(
        kind,
        in_namespace(format!("{namespace}-other")),
        turn().await,
    )
    .await
    .expect("reached twice already");
    let (sa, sb, elsewhere) = (store(&a).await, store(&b).await, store(&other).await);

    // Dense order ids and one far beyond 2^32 (an analytics fact key of a long run).
    for key in (0..100).chain([(1 << 40) | 3]) {
        let (x, y) = tokio::join!(sa.claim("email", key), sb.claim("email", key));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            x != y,
            "key {key} claimed by {} of two",
            u8::from(x) + u8::from(y)
        );
        assert!(
            !sa.claim("email", key).await.unwrap(),
            "key {key} claimed again"
        );
        assert!(sb.claimed("email", key).await.unwrap());
    }
    assert!(!sa.claimed("email", 100).await.unwrap(), "never claimed");
    assert!(sb.claim("warehouse", 7).await.unwrap(), "spaces are apart");
    assert!(
        !elsewhere.claimed("email", 7).await.unwrap(),
        "runs are apart"
    );
    assert!(elsewhere.claim("email", 7).await.unwrap());

    let (x, y) = tokio::join!(
        sa.put_first("provider.keys", 42, b"from-a"),
        sb.put_first("provider.keys", 42, b"from-b")
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    match (&x, &y) {
        (None, Some(won)) => assert_eq!(won, b"from-a"),
        (Some(won), None) => assert_eq!(won, b"from-b"),
        _ => panic!("one first value of two: {x:?} {y:?}"),
    }
    let again = sa.put_first("provider.keys", 42, b"later").await.unwrap();
    assert!(
        matches!(again.as_deref(), Some(b"from-a" | b"from-b")),
        "{again:?}"
    );

    a.t.cleanup().await.expect("cleanup");
    other.t.cleanup().await.expect("cleanup");
    let Some(fresh) = connect_with(kind, in_namespace(namespace), turn().await).await else {
        return;
    };
    let fresh_store = store(&fresh).await;
    assert!(
        !fresh_store.claimed("email", 7).await.unwrap(),
        "cleanup removed the claims"
    );
    fresh.t.cleanup().await.expect("cleanup");
}

async fn store(server: &Server) -> Arc<dyn doorbuster::transport::SharedStore> {
    let store = server.t.shared_store().await.expect("the store opens");
    store.expect("a broker with a shared store")
}

mod shared_state {
    use super::*;

    #[tokio::test]
    async fn redis_decides_once() {
        shared_state_decides_once(BrokerKind::Redis).await;
    }

    #[tokio::test]
    async fn nats_decides_once() {
        shared_state_decides_once(BrokerKind::Nats).await;
    }

    #[tokio::test]
    async fn the_embedded_broker_has_none() {
        let server = embedded().await.expect("always there");
        assert!(server.t.shared_store().await.unwrap().is_none());
    }
}

/// A member looks only at partitions marked ready: one that stopped at the fetch batch with
/// more behind it must be looked at again without another publish to wake it.
#[tokio::test]
async fn the_embedded_broker_hands_out_a_backlog_longer_than_one_fetch() {
    let t: Arc<dyn Transport> = Arc::new(EmbeddedBroker::new(1, 100_000, Clock::start()));
    let mut sub = t
        .subscribe("backlog", &[Topic::OrderCreated])
        .await
        .unwrap();
    publish_all(&t, (0..500).map(|o| event(o, 0))).await;
    let got = take(&mut sub, 500).await;
    assert_eq!(got.len(), 500, "the whole backlog, in batches");
    assert_eq!(
        ids(&got),
        (0..500).map(|o| (o, 0)).collect::<Vec<_>>(),
        "in partition order"
    );
}

/// A Redis server of this test's own that speaks only TLS, on a free loopback port, with a
/// self-signed certificate made by `openssl`; stopped when dropped.
struct TlsRedis {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn tls_redis() -> Option<TlsRedis> {
    use std::process::{Command, Stdio};
    let tools = [("redis-server", "--version"), ("openssl", "version")];
    if let Some((missing, _)) = tools.iter().find(|(tool, arg)| {
        Command::new(tool)
            .arg(arg)
            .output()
            .map_or(true, |o| !o.status.success())
    }) {
        assert!(
            !brokers_required(),
            "{missing} is needed for the rediss:// test"
        );
        eprintln!("SKIP: rediss:// test: {missing} not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=doorbuster-test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl could not make a certificate");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = TlsRedis {
        port,
        child,
        _dir: dir,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the TLS redis-server did not listen on {port}");
}

#[tokio::test]
async fn rediss_connects_over_tls_and_checks_the_certificate() {
    let Some(server) = tls_redis().await else {
        return;
    };
    // The certificate is self-signed: with the check on, the connection is refused...
    let strict = broker_config(
        BrokerKind::Redis,
        format!("rediss://127.0.0.1:{}/", server.port),
    );
    match doorbuster::transport::connect_broker(&strict, Clock::start()).await {
        Err(TransportError::Unreachable { source, .. }) => {
            let reason = source.to_string();
            assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        }
        Err(e) => panic!("expected Unreachable, got {e}"),
        Ok(_) => panic!("a self-signed certificate passed the check"),
    }
    // ... and with `#insecure` the same server carries events like any Redis.
    let lax = broker_config(
        BrokerKind::Redis,
        format!("rediss://127.0.0.1:{}/#insecure", server.port),
    );
    let t = doorbuster::transport::connect_broker(&lax, Clock::start())
        .await
        .expect("TLS connection");
    publish_and_deliver_once(t.clone()).await;
    t.cleanup().await.expect("cleanup");
}

/// Publish outcomes during a broker restart.
#[derive(Debug, Default)]
struct PublishCounts {
    attempted: u64,
    ok: u64,
    refused: u64,
    indeterminate: u64,
    hung: u64,
}

/// How one broker's restart test runs.
struct Restart {
    kind: BrokerKind,
    /// `scripts/brokers.sh restart <name>`.
    name: &'static str,
    publishers: u64,
    /// Pause between one publisher's publishes (Tansu is slow to take a flood).
    pace: Duration,
    /// Publishing goes on this long after the restart script returned.
    after: Duration,
    /// Whether the server keeps its data across a restart; Redis and Tansu here keep
    /// nothing, so acks of events from before the restart may fail there.
    durable: bool,
}

/// Publishes from several tasks while the broker restarts: every publish ends Ok, Publish
/// or Indeterminate within its bound (none hangs, no other error), the counts add up, and
/// afterwards the transport publishes again and the subscription opened before the restart
/// receives the fresh event, all by itself. Returns the counts and the transport for
/// broker-specific checks; the caller cleans up.
async fn restart_keeps_publish_accounting_exact(plan: Restart) -> Option<(PublishCounts, Server)> {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let server = broker_alone(plan.kind).await?;
    let t = server.t.clone();
    let mut sub = t.subscribe("restart", &[Topic::Fulfilled]).await.unwrap();
    let fulfilled = |order| Envelope {
        user: None,
        topic: Topic::Fulfilled,
        ..event(order, 0)
    };
    // The subscription is open and consuming before the restart.
    publish_all(&t, [fulfilled(1)]).await;
    ack_all(take(&mut sub, 1).await).await;

    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..plan.publishers)
        .map(|p| {
            let (t, stop, pace) = (t.clone(), stop.clone(), plan.pace);
            tokio::spawn(async move {
                let mut counts = PublishCounts::default();
                let mut order = 1_000_000_000 * (p + 1);
                while !stop.load(Relaxed) {
                    order += 1;
                    counts.attempted += 1;
                    // Every transport bounds a publish at 10-13 s; past 15 s it hung.
                    let outcome =
                        tokio::time::timeout(Duration::from_secs(15), t.publish(event(order, 0)))
                            .await;
                    match &outcome {
                        Ok(Ok(_)) => counts.ok += 1,
                        Ok(Err(TransportError::Publish { .. })) => counts.refused += 1,
                        Ok(Err(TransportError::Indeterminate { .. })) => counts.indeterminate += 1,
                        Ok(Err(e)) => panic!("publish ended with {e}"),
                        Err(_) => counts.hung += 1,
                    }
                    if outcome.is_ok_and(|r| r.is_ok()) {
                        tokio::time::sleep(pace).await;
                    } else {
                        // Do not spin while the server is away.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                counts
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/brokers.sh");
    let restarted = tokio::process::Command::new(script)
        .args(["restart", plan.name])
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .expect("run scripts/brokers.sh");
    assert!(
        restarted.success(),
        "brokers.sh restart {}: {restarted}",
        plan.name
    );
    tokio::time::sleep(plan.after).await;
    stop.store(true, Relaxed);
    let mut counts = PublishCounts::default();
    for p in publishers {
        let c = p.await.expect("publisher task");
        counts.attempted += c.attempted;
        counts.ok += c.ok;
        counts.refused += c.refused;
        counts.indeterminate += c.indeterminate;
        counts.hung += c.hung;
    }
    eprintln!("{} restart: {counts:?}", plan.name);
    assert_eq!(counts.hung, 0, "no publish hung");
    assert_eq!(
        counts.attempted,
        counts.ok + counts.refused + counts.indeterminate
    );
    assert!(counts.ok > 0);

    // Working again by itself: a fresh publish is acked ...
    let fresh = fulfilled(2);
    let acked = tokio::time::timeout(Duration::from_secs(30), async {
        while t.publish(fresh.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(acked.is_ok(), "a publish after the restart is acked");
    // ... and reaches the subscription opened before the restart.
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let d = match sub.next().await {
                Ok(Some(d)) => d,
                Ok(None) => return false,
                Err(e) => panic!("subscription failed after the restart: {e}"),
            };
            let hit = d.envelope.meta.event_id == fresh.meta.event_id;
            let acked = d.ack.ack().await;
            if hit || plan.durable {
                acked.expect("ack");
            }
            if hit {
                return true;
            }
        }
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the old subscription receives the fresh event"
    );
    Some((counts, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_keeps_publish_accounting_exact() {
    let plan = Restart {
        kind: BrokerKind::Redis,
        name: "redis",
        publishers: 4,
        pace: Duration::ZERO,
        after: Duration::from_secs(1),
        durable: false,
    };
    if let Some((_, server)) = restart_keeps_publish_accounting_exact(plan).await {
        server.t.cleanup().await.expect("cleanup");
    }
}

broker_conformance!(nats, BrokerKind::Nats, "nats://127.0.0.1:1");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_keeps_publish_accounting_exact() {
    let plan = Restart {
        kind: BrokerKind::Nats,
        name: "nats",
        publishers: 8,
        pace: Duration::ZERO,
        after: Duration::from_secs(3),
        durable: true,
    };
    let Some((counts, server)) = restart_keeps_publish_accounting_exact(plan).await else {
        return;
    };
    // The file store kept every acked event: a new group sees them all, and no more than
    // the acked plus the indeterminate ones.
    let t = &server.t;
    let _audit = t
        .subscribe("audit", &[Topic::OrderCreated])
        .await
        .expect("subscribe after the restart");
    let stored = t.lag("audit").await.unwrap();
    eprintln!("nats restart: stored {stored}");
    assert!(
        counts.ok <= stored && stored <= counts.ok + counts.indeterminate,
        "stored {stored}"
    );
    t.cleanup().await.expect("cleanup");
}
broker_conformance!(
    rabbitmq,
    BrokerKind::Rabbitmq,
    "amqp://guest:guest@127.0.0.1:1/%2f"
);
mod rabbitmq_stream {
    use super::*;

    // The same contract on stream queues, the RabbitMQ queue type that can replay.
    conformance!(
        contract,
        broker_with(BrokerKind::Rabbitmq, |o| {
            if let BrokerOptions::Rabbitmq(o) = o {
                o.queue_type = QueueType::Stream;
            }
        })
    );
}

/// Whether RabbitMQ has queue `name`, by a passive declare on a connection of its own.
async fn rabbitmq_has_queue(name: &str) -> bool {
    let props = lapin::ConnectionProperties::default();
    let conn = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", props)
        .await
        .expect("RabbitMQ reachable");
    let ch = conn.create_channel().await.expect("a channel");
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let found = ch
        .queue_declare(name.into(), passive, lapin::types::FieldTable::default())
        .await
        .is_ok();
    let _ = conn.close(200, "checked".into()).await;
    found
}

/// The merge of a sharded run removes the groups its shards joined, which it never joined
/// itself: on RabbitMQ each is a queue that `cleanup` alone, knowing no groups, would leave.
#[tokio::test]
async fn rabbitmq_forgets_groups_another_process_joined() {
    let kind = BrokerKind::Rabbitmq;
    let namespace = format!("doorbuster-forget-{}", std::process::id());
    let in_namespace = |ns: String| move |cfg: &mut BrokerConfig| cfg.namespace = ns;
    let turn = || async { Turn::Shared(server_lock(kind).read().await) };
    let Some(shard) = connect_with(kind, in_namespace(namespace.clone()), turn().await).await
    else {
        return;
    };
    let member = shard
        .t
        .subscribe("payment", &[Topic::OrderCreated])
        .await
        .expect("joined");
    drop(member);
    let queue = format!("{namespace}.payment");
    assert!(rabbitmq_has_queue(&queue).await, "the shard's group queue");

    let merge = connect_with(kind, in_namespace(namespace.clone()), turn().await)
        .await
        .expect("reached once already");
    merge.t.cleanup().await.expect("cleanup");
    assert!(
        rabbitmq_has_queue(&queue).await,
        "cleanup alone leaves a group it did not join"
    );
    let merge = connect_with(kind, in_namespace(namespace), turn().await)
        .await
        .expect("reached once already");
    let groups = ["payment".to_owned(), "never-joined".to_owned()];
    merge.t.forget_groups(&groups).await.expect("forgotten");
    merge.t.cleanup().await.expect("cleanup");
    assert!(
        !rabbitmq_has_queue(&queue).await,
        "the group's queue is gone"
    );
    shard.t.cleanup().await.expect("cleanup");
}

/// A clean run on RabbitMQ, as a user runs it, says nothing alarming: the client library
/// logs every channel the server closes as an ERROR, including the throwaway channels of the
/// passive declares that ask whether a group's queue exists yet, and a passing run's stderr
/// must not carry those (a CI log reader takes them for failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_rabbitmq_run_logs_no_errors() {
    let _turn = server_lock(BrokerKind::Rabbitmq).read().await;
    if std::net::TcpStream::connect("127.0.0.1:5672").is_err() {
        assert!(
            !brokers_required(),
            "RabbitMQ is not running on 127.0.0.1:5672"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("quiet.yaml");
    let scenario = "name: quiet\ndescription: a short clean run\nseed: 1\n\
                    target: amqp://guest:guest@127.0.0.1:5672/%2f\n\
                    load:\n  phases:\n    - { hold: 2s, rate: 50/s }\n  drain: 15s\n\
                    provider:\n  via: in_process\n  latency: 1ms\n";
    std::fs::write(&file, scenario).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_doorbuster"))
        .args(["run", file.to_str().unwrap(), "--quiet", "--out"])
        .arg(tmp.path().join("run"))
        .env_remove("DOORBUSTER_LOG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_keeps_publish_accounting_exact() {
    // The restart drops every RabbitMQ connection on the machine: `broker_alone` waits for
    // the other RabbitMQ tests to finish and holds them off meanwhile.
    let plan = Restart {
        kind: BrokerKind::Rabbitmq,
        name: "rabbitmq",
        publishers: 4,
        pace: Duration::ZERO,
        after: Duration::from_secs(1),
        durable: true,
    };
    if let Some((_, server)) = restart_keeps_publish_accounting_exact(plan).await {
        server.t.cleanup().await.expect("cleanup");
    }
}

broker_conformance!(kafka, BrokerKind::Kafka, "kafka://127.0.0.1:1");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_restart_keeps_publish_accounting_exact() {
    let plan = Restart {
        kind: BrokerKind::Kafka,
        name: "kafka",
        publishers: 1,
        pace: Duration::from_millis(5),
        after: Duration::from_secs(3),
        durable: false,
    };
    if let Some((_, server)) = restart_keeps_publish_accounting_exact(plan).await {
        server.t.cleanup().await.expect("cleanup");
    }
}

#[tokio::test]
async fn retention_drops_the_oldest_events_and_lag_skips_them() {
    // Embedded-specific: a group that falls behind retention loses the oldest events.
    let t: Arc<dyn Transport> = Arc::new(EmbeddedBroker::new(1, 10, Clock::start()));
    let mut a = t.subscribe("r", &[Topic::OrderCreated]).await.unwrap();
    publish_all(&t, (0..25).map(|o| event(o, 0))).await;
    let got = take(&mut a, 25).await;
    assert_eq!(ids(&got).first(), Some(&(15, 0)));
    assert_eq!(got.len(), 10);
}

/// What is left of a partition after `group` read and acked 2047 events and one more was
/// published (the 2048th append frees the committed), seen as the group's lag once rewound
/// to the earliest event it could still read; `idle` also reads the topic and acks nothing.
async fn retained_after_commit(t: Arc<dyn Transport>, idle: bool) -> u64 {
    let mut g = t.subscribe("g", &[Topic::OrderCreated]).await.unwrap();
    let _idle = if idle {
        Some(t.subscribe("idle", &[Topic::OrderCreated]).await.unwrap())
    } else {
        None
    };
    publish_all(&t, (0..2047).map(|o| event(o, 0))).await;
    for d in take(&mut g, 2047).await {
        d.ack.ack().await.unwrap();
    }
    publish_all(&t, std::iter::once(event(2047, 0))).await;
    drop(g);
    t.rewind("g", RewindTo::Earliest).await.unwrap();
    t.lag("g").await.unwrap()
}

#[tokio::test]
async fn a_freeing_broker_drops_what_every_group_committed_and_keeps_the_rest() {
    // Freed: only the event published after the commit is left to re-read.
    let freeing = || {
        Arc::new(EmbeddedBroker::freeing_committed(
            1,
            1_000_000,
            Clock::start(),
        ))
    };
    assert_eq!(retained_after_commit(freeing(), false).await, 1);
    // Kept while another group has not committed them...
    assert_eq!(retained_after_commit(freeing(), true).await, 2048);
    // ...and always by a broker that keeps them (a scenario that replays).
    let keeping = Arc::new(EmbeddedBroker::new(1, 1_000_000, Clock::start()));
    assert_eq!(retained_after_commit(keeping, false).await, 2048);
    // A topic nobody reads keeps nothing: a group that comes later finds only what follows.
    for (t, kept) in [
        (freeing() as Arc<dyn Transport>, 0),
        (
            Arc::new(EmbeddedBroker::new(1, 1_000_000, Clock::start())),
            2048,
        ),
    ] {
        publish_all(&t, (0..2048).map(|o| event(o, 0))).await;
        let _late = t.subscribe("late", &[Topic::OrderCreated]).await.unwrap();
        t.rewind("late", RewindTo::Earliest).await.unwrap();
        assert_eq!(t.lag("late").await.unwrap(), kept);
    }
}

/// The loopback guard stands before every client: a target that names a host outside
/// loopback, however it is spelled, is refused as a configuration error before anything
/// connects. A listener on loopback takes the place of the broker in each URL and must see
/// no connection at all, not even to the loopback part of a mixed list; no password reaches
/// the message.
#[tokio::test]
async fn a_remote_target_is_refused_before_any_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counting = accepted.clone();
    let acceptor = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counting.fetch_add(1, Ordering::SeqCst);
        }
    });
    let brokers = [
        format!("kafka://127.0.0.1:{port},10.255.255.1:9092"),
        format!("kafka://u:s3cret@127.0.0.1:{port}/,10.255.255.1:9092"),
        format!("kafka://127.0.0.1:{port}#,evil.example:9092"),
        format!("kafka://127.0.0.1:{port}/@evil.example:9092"),
        format!("redis://:s3cret@evil.example#@127.0.0.1:{port}"),
        format!("redis://127.0.0.1@evil.example:{port}"),
        format!("redis://167772161:{port}"),
        format!("nats://[::ffff:10.0.0.1]:{port}"),
        format!("nats://127.0.0.1:{port},evil.example:{port}"),
        format!("amqp://u:s3cret@0xa.0.0.1:{port}/%2f"),
    ];
    for url in &brokers {
        let scheme = url.split_once("://").unwrap().0;
        let kind = BrokerKind::of_scheme(scheme).unwrap();
        match doorbuster::transport::connect_broker(
            &broker_config(kind, url.clone()),
            Clock::start(),
        )
        .await
        {
            Err(e @ TransportError::Config { .. }) => {
                assert!(!e.to_string().contains("s3cret"), "{url}: {e}");
            }
            Err(e) => panic!("{url}: expected a configuration error, got {e}"),
            Ok(_) => panic!("{url}: connected"),
        }
    }
    let endpoint = doorbuster::transport::Target::Http(doorbuster::transport::target::HttpTarget {
        url: format!("http://127.0.0.1@evil.example:{port}/checkout"),
        headers: Vec::new(),
        allow_remote: false,
    });
    match doorbuster::transport::connect(&endpoint, Clock::start()).await {
        Err(TransportError::Config { .. }) => {}
        Err(e) => panic!("expected a configuration error, got {e}"),
        Ok(_) => panic!("connected to the checkout endpoint"),
    }
    // Any connection would have been accepted by now: the clients connect at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    acceptor.abort();
}
