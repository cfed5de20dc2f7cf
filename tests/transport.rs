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
    std::env::var(var).unwrap_or_else(|_| {
        match kind {
            BrokerKind::Kafka => "kafka://127.0.0.1:9092",
            BrokerKind::Nats => "nats://127.0.0.1:4222",
            BrokerKind::Rabbitmq => "amqp://guest:guest@127.0.0.1:5672/%2f",
            BrokerKind::Redis => "redis://127.0.0.1:6379",
        }
        .to_owned()
    })
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
    BrokerConfig {
        kind,
        url,
        namespace: fresh_namespace(),
        partitions: 4,
        options: BrokerOptions {
            // Short, so a crashed member's events come back within a test's patience.
            ack_wait: Duration::from_secs(1),
            ..BrokerOptions::default()
        },
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
    connect_with(kind, tweak, turn).await
}

/// [`broker`] for a test that restarts the server: it waits until no other test of the
/// broker runs, and holds them off until it is done.
async fn broker_alone(kind: BrokerKind) -> Option<Server> {
    let turn = Turn::Alone(server_lock(kind).write().await);
    connect_with(kind, |_| {}, turn).await
}

async fn connect_with(
    kind: BrokerKind,
    tweak: impl FnOnce(&mut BrokerOptions),
    turn: Turn,
) -> Option<Server> {
    let mut cfg = broker_config(kind, broker_url(kind));
    tweak(&mut cfg.options);
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

/// Publish outcomes during a broker restart, counted per kind.
#[derive(Debug, Default)]
struct PublishTally {
    attempted: std::sync::atomic::AtomicU64,
    ok: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
    indeterminate: std::sync::atomic::AtomicU64,
    other: std::sync::atomic::AtomicU64,
    hung: std::sync::atomic::AtomicU64,
}

/// Publishes from `publishers` tasks until `stop` is set; every outcome is counted once.
async fn publish_until(
    t: Arc<dyn Transport>,
    publishers: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Arc<PublishTally> {
    use std::sync::atomic::Ordering::Relaxed;
    let tally = Arc::new(PublishTally::default());
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let (t, stop, tally) = (t.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                tally.attempted.fetch_add(1, Relaxed);
                // The transport bounds a publish at 10 s; past 15 s it hung.
                let outcome = tokio::time::timeout(
                    Duration::from_secs(15),
                    t.publish(event(p * 1_000_000 + n, 0)),
                )
                .await;
                let counter = match outcome {
                    Ok(Ok(_)) => &tally.ok,
                    Ok(Err(TransportError::Publish { .. })) => &tally.refused,
                    Ok(Err(TransportError::Indeterminate { .. })) => &tally.indeterminate,
                    Ok(Err(_)) => &tally.other,
                    Err(_) => &tally.hung,
                };
                counter.fetch_add(1, Relaxed);
                n += 1;
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher task");
    }
    tally
}

#[tokio::test]
async fn redis_restart_keeps_publish_accounting_exact() {
    // A server restart under continuous publishing: every publish ends acked, refused or
    // indeterminate within its bound, and the transport publishes and delivers again after.
    use std::sync::atomic::Ordering::Relaxed;
    let Some(server) = broker_alone(BrokerKind::Redis).await else {
        return;
    };
    let t = server.t.clone();
    let mut sub = t
        .subscribe("restart", &[Topic::OrderCreated])
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = tokio::spawn(publish_until(t.clone(), 4, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/brokers.sh");
    let restarted = tokio::process::Command::new(script)
        .args(["restart", "redis"])
        .status()
        .await
        .expect("run scripts/brokers.sh");
    assert!(
        restarted.success(),
        "scripts/brokers.sh restart redis failed"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Relaxed);
    let tally = publishing.await.expect("publishers");
    let (attempted, ok, refused, indeterminate, other, hung) = (
        tally.attempted.load(Relaxed),
        tally.ok.load(Relaxed),
        tally.refused.load(Relaxed),
        tally.indeterminate.load(Relaxed),
        tally.other.load(Relaxed),
        tally.hung.load(Relaxed),
    );
    eprintln!(
        "redis restart: attempted {attempted}, ok {ok}, publish (refused) {refused}, \
         indeterminate {indeterminate}, other {other}, hung {hung}"
    );
    assert_eq!(attempted, ok + refused + indeterminate + other + hung);
    assert_eq!(
        (other, hung),
        (0, 0),
        "every publish ended Ok, Publish or Indeterminate"
    );
    // The transport reconnected by itself: a fresh publish is acked ...
    let marker = event(999_999_999_999, 7);
    let mut acked = false;
    for _ in 0..50 {
        if t.publish(marker.clone()).await.is_ok() {
            acked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(acked, "a publish after the restart is acked");
    // ... and delivered to the subscription made before the restart.
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match sub.next().await {
                Ok(Some(d)) => {
                    let hit = d.envelope.meta.order_id == marker.meta.order_id;
                    // Acks of events the restarted server lost fail: that is fine here.
                    let _ = d.ack.ack().await;
                    if hit {
                        return true;
                    }
                }
                Ok(None) => return false,
                Err(e) => panic!("subscription failed after the restart: {e}"),
            }
        }
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the old subscription receives the fresh event"
    );
    t.cleanup().await.expect("cleanup");
}
broker_conformance!(nats, BrokerKind::Nats, "nats://127.0.0.1:1");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_keeps_publish_accounting_exact() {
    // A NATS restart under continuous publishing: every publish ends acked, refused or
    // indeterminate within its bound, the stream holds every acked event, and the transport
    // (publish and an existing subscription) works again by itself afterwards.
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let Some(server) = broker_alone(BrokerKind::Nats).await else {
        return;
    };
    let t = server.t.clone();
    let mut sub = t.subscribe("restart", &[Topic::Fulfilled]).await.unwrap();
    let fulfilled = |order| Envelope {
        topic: Topic::Fulfilled,
        ..event(order, 0)
    };
    publish_all(&t, [fulfilled(1)]).await;
    ack_all(take(&mut sub, 1).await).await;

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 5]> = Arc::new(Default::default()); // attempted ok publish indet hung
    let next_order = Arc::new(AtomicU64::new(1_000_000));
    let publishers: Vec<_> = (0..8)
        .map(|_| {
            let (t, stop, counts, next_order) =
                (t.clone(), stop.clone(), counts.clone(), next_order.clone());
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let order = next_order.fetch_add(1, Relaxed);
                    counts[0].fetch_add(1, Relaxed);
                    let outcome =
                        tokio::time::timeout(Duration::from_secs(20), t.publish(event(order, 0)))
                            .await;
                    let slot = match outcome {
                        Ok(Ok(_)) => 1,
                        Ok(Err(TransportError::Publish { .. })) => 2,
                        Ok(Err(TransportError::Indeterminate { .. })) => 3,
                        Ok(Err(e)) => panic!("publish ended with {e}"),
                        Err(_) => 4,
                    };
                    counts[slot].fetch_add(1, Relaxed);
                    if slot != 1 {
                        // Do not spin while the server is away.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restart = tokio::task::spawn_blocking(|| {
        std::process::Command::new("scripts/brokers.sh")
            .args(["restart", "nats"])
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("run scripts/brokers.sh");
    assert!(
        restart.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&restart.stderr)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Relaxed);
    for p in publishers {
        p.await.unwrap();
    }
    let [attempted, ok, refused, indeterminate, hung] = counts.each_ref().map(|c| c.load(Relaxed));
    println!(
        "nats restart: attempted {attempted}, acked {ok}, refused {refused}, \
         indeterminate {indeterminate}, hung {hung}"
    );
    assert_eq!(hung, 0, "no publish hung");
    assert_eq!(attempted, ok + refused + indeterminate);
    assert!(ok > 0);

    // The file store kept every acked event: a new group sees them all, and no more than
    // the acked plus the indeterminate ones.
    let _audit = t
        .subscribe("audit", &[Topic::OrderCreated])
        .await
        .expect("subscribe after the restart");
    let stored = t.lag("audit").await.unwrap();
    println!("nats restart: stored {stored}");
    assert!(
        ok <= stored && stored <= ok + indeterminate,
        "stored {stored}"
    );

    // A fresh publish is acked and reaches the subscription opened before the restart.
    let mut fresh = None;
    for _ in 0..30 {
        match t.publish(fulfilled(2)).await {
            Ok(ack) => {
                fresh = Some(ack);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    assert!(fresh.is_some(), "a publish is acked after the restart");
    let mut seen = false;
    for _ in 0..12 {
        if seen {
            break;
        }
        for d in take(&mut sub, 1).await {
            seen |= d.envelope.meta.order_id == 2;
            d.ack.ack().await.ok();
        }
    }
    assert!(seen, "the existing subscription received the fresh event");
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
        broker_with(BrokerKind::Rabbitmq, |o| o.queue_type = QueueType::Stream)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_keeps_publish_accounting_exact() {
    // Publishing through a broker restart: every publish ends Ok, Publish or Indeterminate
    // within its bound, and afterwards the transport publishes and delivers again by itself.
    // The restart drops every RabbitMQ connection on the machine: `broker_alone` waits for
    // the other RabbitMQ tests to finish and holds them off meanwhile.
    let Some(server) = broker_alone(BrokerKind::Rabbitmq).await else {
        return;
    };
    let t = server.t.clone();
    let mut sub = t
        .subscribe("restart", &[Topic::OrderCreated])
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let (t, stop) = (t.clone(), stop.clone());
            tokio::spawn(async move {
                // attempted, ok, refused, indeterminate, hung
                let mut counts = [0u64; 5];
                let mut order = 1_000_000 * (p + 1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    order += 1;
                    counts[0] += 1;
                    let outcome =
                        tokio::time::timeout(Duration::from_secs(15), t.publish(event(order, 0)))
                            .await;
                    match outcome {
                        Ok(Ok(_)) => counts[1] += 1,
                        Ok(Err(TransportError::Publish { .. })) => counts[2] += 1,
                        Ok(Err(TransportError::Indeterminate { .. })) => counts[3] += 1,
                        Ok(Err(e)) => panic!("unexpected publish error: {e}"),
                        Err(_) => counts[4] += 1,
                    }
                    if !matches!(outcome, Ok(Ok(_))) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                counts
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/brokers.sh");
    let status = tokio::process::Command::new(script)
        .args(["restart", "rabbitmq"])
        .status()
        .await
        .expect("run scripts/brokers.sh");
    assert!(status.success(), "restart rabbitmq: {status}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = [0u64; 5];
    for p in publishers {
        let counts = p.await.expect("publisher task");
        for (sum, n) in total.iter_mut().zip(counts) {
            *sum += n;
        }
    }
    let [attempted, ok, refused, indeterminate, hung] = total;
    println!(
        "rabbitmq restart: attempted {attempted}, ok {ok}, refused {refused}, \
         indeterminate {indeterminate}, hung {hung}"
    );
    assert_eq!(hung, 0, "no publish hung");
    assert_eq!(attempted, ok + refused + indeterminate);
    assert!(ok > 0);

    // Working again: a fresh publish is acked (after the reconnect) and reaches the
    // subscription that existed before the restart.
    let fresh = event(42, 7);
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => panic!("no publish acked after the restart"),
            r = t.publish(fresh.clone()) => match r {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            },
        }
    }
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let d = sub.next().await.expect("next").expect("a delivery");
            let hit = d.envelope.meta.event_id == fresh.meta.event_id;
            d.ack.ack().await.expect("ack");
            if hit {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "the fresh event reached the old subscription"
    );
    t.cleanup().await.expect("cleanup");
}

broker_conformance!(kafka, BrokerKind::Kafka, "kafka://127.0.0.1:1");

/// Outcomes of the publishes made while a broker restarted.
#[derive(Debug, Default)]
struct PublishCounts {
    attempted: u64,
    ok: u64,
    refused: u64,
    indeterminate: u64,
    hung: u64,
}

#[tokio::test]
async fn kafka_restart_keeps_publish_accounting_exact() {
    // Publishing through a broker restart: every publish ends (Ok, Publish or Indeterminate,
    // none hangs), the counts add up, and the transport works again afterwards by itself.
    let Some(server) = broker_alone(BrokerKind::Kafka).await else {
        return;
    };
    let t = server.t.clone();
    let mut sub = t
        .subscribe("restart", &[Topic::OrderCreated])
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (t, stop) = (t.clone(), stop.clone());
        tokio::spawn(async move {
            let mut counts = PublishCounts::default();
            let mut order = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                counts.attempted += 1;
                order += 1;
                match tokio::time::timeout(Duration::from_secs(20), t.publish(event(order, 0)))
                    .await
                {
                    Ok(Ok(_)) => counts.ok += 1,
                    Ok(Err(TransportError::Publish { .. })) => counts.refused += 1,
                    Ok(Err(TransportError::Indeterminate { .. })) => counts.indeterminate += 1,
                    Ok(Err(e)) => panic!("unexpected publish error: {e}"),
                    Err(_) => counts.hung += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            counts
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/brokers.sh");
    let restarted = tokio::process::Command::new(script)
        .args(["restart", "kafka"])
        .status()
        .await
        .expect("run scripts/brokers.sh");
    assert!(restarted.success(), "brokers.sh restart kafka failed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let counts = publisher.await.expect("publisher task");
    eprintln!("kafka restart: {counts:?}");
    assert_eq!(counts.hung, 0, "no publish may hang");
    assert_eq!(
        counts.attempted,
        counts.ok + counts.refused + counts.indeterminate
    );
    // Works again: a fresh publish is acked and reaches the existing member.
    let fresh = event(1_000_000, 7);
    let mut acked = false;
    for _ in 0..30 {
        if t.publish(fresh.clone()).await.is_ok() {
            acked = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(acked, "a publish after the restart is acked");
    let arrived = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match sub.next().await {
                Ok(Some(d)) if d.envelope.meta.order_id == 1_000_000 => return true,
                Ok(Some(d)) => {
                    let _ = d.ack.ack().await;
                }
                Ok(None) | Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(
        arrived,
        Ok(true),
        "the fresh event reached the existing member"
    );
    t.cleanup().await.expect("cleanup");
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
