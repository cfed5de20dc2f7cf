//! The TCP fault proxy against a real loopback echo server, in real time.
//!
//! Every toxic test has its negative control: the same exchange through a proxy with no
//! toxic round-trips unchanged. Delays are checked from below (at least what was injected)
//! with generous upper bounds, never as "faster than"; every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use doorbuster::chaos::proxy::{
    Direction, LinkToxic, Proxy, ProxyError, ProxyHandle, ToxicSpec, run_standalone,
};
use doorbuster::clock::Clock;
use doorbuster::scenario::model::Share;
use rand::RngExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const SEED: u64 = 42;
/// The bound on any wait that should succeed: far beyond what loopback needs.
const PATIENCE: Duration = Duration::from_secs(5);

/// Echoes every byte back on each connection, until the peer closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo server");
    let addr = listener.local_addr().expect("echo server address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A proxy in front of a fresh echo server; it stops when the returned sender is dropped.
async fn proxied(seed: u64) -> (ProxyHandle, oneshot::Sender<()>) {
    let upstream = echo_server().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let handle = Proxy::start(loopback_any(), upstream, seed, false, shutdown)
        .await
        .expect("proxy starts");
    (handle, stop)
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn connect(handle: &ProxyHandle) -> TcpStream {
    let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(handle.local_addr()))
        .await
        .expect("connect in time")
        .expect("connect to the proxy");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends `message` and reads back exactly as many bytes, within `wait`.
async fn round_trip(stream: &mut TcpStream, message: &[u8], wait: Duration) -> Option<Vec<u8>> {
    stream.write_all(message).await.expect("write to the proxy");
    let mut reply = vec![0u8; message.len()];
    match tokio::time::timeout(wait, stream.read_exact(&mut reply)).await {
        Ok(Ok(_)) => Some(reply),
        Ok(Err(error)) => panic!("read failed: {error}"),
        Err(_) => None,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn since(clock: &Clock, start: u64) -> Duration {
    Duration::from_nanos(clock.now() - start)
}

#[tokio::test]
async fn without_toxics_bytes_round_trip_unchanged() {
    // The negative control for every toxic below: the proxy alone changes nothing.
    let (proxy, _stop) = proxied(SEED).await;
    let mut stream = connect(&proxy).await;
    let message = pattern(200_000);
    let reply = round_trip(&mut stream, &message, PATIENCE).await;
    assert_eq!(reply.as_deref(), Some(&message[..]));
    let stats = proxy.stats();
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.bytes_upstream, 200_000);
    assert_eq!((stats.bytes_dropped, stats.resets), (0, 0));
}

#[tokio::test]
async fn latency_delays_a_round_trip_by_at_least_the_latency() {
    let (proxy, _stop) = proxied(SEED).await;
    let clock = Clock::start();
    let lag = ToxicSpec::new(LinkToxic::Latency {
        latency: ms(200),
        jitter: Duration::ZERO,
    });
    proxy
        .add_toxic("lag", lag.direction(Direction::Upstream))
        .expect("valid toxic");
    let mut stream = connect(&proxy).await;
    let start = clock.now();
    let reply = round_trip(&mut stream, b"ping", PATIENCE).await;
    let took = since(&clock, start);
    assert_eq!(reply.as_deref(), Some(&b"ping"[..]));
    assert!(
        took >= ms(200) && took < ms(2000),
        "round trip took {took:?}"
    );
}

/// A connection opened while a latency toxic is on both ways (as a service connecting in the
/// middle of a fault window does) completes its exchanges, slowed by the latency each way;
/// once the toxic is off, even with a reply still held, it goes back to loopback speed. A
/// client giving up mid-exchange (a handshake timeout) and dialling again is served too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_during_latency_is_slowed_not_stalled() {
    let (proxy, _stop) = proxied(SEED).await;
    let clock = Clock::start();
    let lag = ToxicSpec::new(LinkToxic::Latency {
        latency: ms(300),
        jitter: Duration::ZERO,
    });
    proxy
        .add_toxic("lag", lag.direction(Direction::Both))
        .expect("valid toxic");

    // Gives up after 100 ms, the way a client's connection timeout drops a slow handshake.
    let mut impatient = connect(&proxy).await;
    assert_eq!(round_trip(&mut impatient, b"hello", ms(100)).await, None);
    drop(impatient);

    let mut stream = connect(&proxy).await;
    let start = clock.now();
    let reply = round_trip(&mut stream, b"hello", PATIENCE).await;
    let took = since(&clock, start);
    assert_eq!(reply.as_deref(), Some(&b"hello"[..]));
    assert!(
        took >= ms(600) && took < ms(3000),
        "latency each way: {took:?}"
    );

    // A request in flight when the toxic goes off still gets its answer...
    stream.write_all(b"held").await.expect("write");
    tokio::time::sleep(ms(50)).await;
    assert!(proxy.remove_toxic("lag"));
    let mut held = [0u8; 4];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut held))
        .await
        .expect("the held request is answered")
        .expect("read");
    assert_eq!(&held, b"held");
    // ...and the next one goes at loopback speed, on this connection and on a new one.
    let start = clock.now();
    let reply = round_trip(&mut stream, b"fast", PATIENCE).await;
    assert_eq!(reply.as_deref(), Some(&b"fast"[..]));
    assert!(since(&clock, start) < ms(300), "no latency left");
    let mut fresh = connect(&proxy).await;
    let reply = round_trip(&mut fresh, b"fresh", ms(300)).await;
    assert_eq!(reply.as_deref(), Some(&b"fresh"[..]));
}

#[tokio::test]
async fn bandwidth_caps_the_rate() {
    // 100 KB at 50 KB/s is 2 s of transmission; 1.5 s leaves room for the first chunk.
    let (proxy, _stop) = proxied(SEED).await;
    let clock = Clock::start();
    let cap = ToxicSpec::new(LinkToxic::Bandwidth {
        bytes_per_sec: 50_000,
    });
    proxy
        .add_toxic("slow", cap.direction(Direction::Upstream))
        .expect("valid toxic");
    let mut stream = connect(&proxy).await;
    let message = pattern(100_000);
    let start = clock.now();
    let reply = round_trip(&mut stream, &message, Duration::from_secs(10)).await;
    let took = since(&clock, start);
    assert_eq!(reply.as_deref(), Some(&message[..]));
    assert!(took >= ms(1500), "100 KB at 50 KB/s took only {took:?}");
}

#[tokio::test]
async fn blackhole_swallows_traffic_until_removed() {
    let (proxy, _stop) = proxied(SEED).await;
    proxy
        .add_toxic("partition", ToxicSpec::new(LinkToxic::Blackhole))
        .expect("valid toxic");
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"ping", ms(500)).await, None);
    assert_eq!(proxy.stats().bytes_dropped, 4);

    assert!(proxy.remove_toxic("partition"));
    let mut healed = connect(&proxy).await;
    let reply = round_trip(&mut healed, b"pong", PATIENCE).await;
    assert_eq!(reply.as_deref(), Some(&b"pong"[..]));
}

/// How a connection's next read ends.
#[derive(Debug, PartialEq)]
enum Cut {
    /// The peer closed normally (FIN).
    Eof,
    /// The peer reset it (RST).
    Reset,
    Failed(std::io::ErrorKind),
    /// Bytes arrived or nothing happened within the patience: not cut.
    Open,
}

async fn cut(stream: &mut TcpStream) -> Cut {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
        Ok(Ok(0)) => Cut::Eof,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => Cut::Reset,
        Ok(Err(error)) => Cut::Failed(error.kind()),
        Ok(Ok(_)) | Err(_) => Cut::Open,
    }
}

#[tokio::test]
async fn reset_cuts_open_connections_and_refuses_new_ones() {
    let (proxy, _stop) = proxied(SEED).await;
    let mut open = connect(&proxy).await;
    let reply = round_trip(&mut open, b"ping", PATIENCE).await;
    assert_eq!(reply.as_deref(), Some(&b"ping"[..]), "established first");

    proxy
        .add_toxic("rst", ToxicSpec::new(LinkToxic::Reset))
        .expect("valid toxic");
    // An RST rather than a FIN: the proxy closed with SO_LINGER 0.
    assert_eq!(
        cut(&mut open).await,
        Cut::Reset,
        "the open connection is reset"
    );

    // The listener still accepts, so connect succeeds; the connection is reset at once.
    let mut fresh = connect(&proxy).await;
    let _ = fresh.write_all(b"ping").await;
    let fate = cut(&mut fresh).await;
    assert!(
        matches!(fate, Cut::Reset | Cut::Eof),
        "a new connection is reset: {fate:?}"
    );
    assert_eq!(proxy.stats().resets, 2);

    assert!(proxy.remove_toxic("rst"));
    let mut after = connect(&proxy).await;
    let reply = round_trip(&mut after, b"pong", PATIENCE).await;
    assert_eq!(reply.as_deref(), Some(&b"pong"[..]), "traffic resumes");
}

/// How many of `count` connections a blackhole with `share` reaches, read from the bytes it
/// dropped (4 per reached connection), so the count involves no timing at all.
async fn reached(share: f64, count: u64) -> u64 {
    let (proxy, _stop) = proxied(SEED).await;
    let hole = ToxicSpec::new(LinkToxic::Blackhole)
        .direction(Direction::Upstream)
        .share(Share(share));
    proxy.add_toxic("hole", hole).expect("valid toxic");
    let mut streams = Vec::new();
    for _ in 0..count {
        let mut stream = connect(&proxy).await;
        stream.write_all(b"ping").await.expect("write to the proxy");
        streams.push(stream);
    }
    let clock = Clock::start();
    loop {
        let stats = proxy.stats();
        if stats.bytes_upstream + stats.bytes_dropped == 4 * count {
            return stats.bytes_dropped / 4;
        }
        assert!(since(&clock, 0) < PATIENCE, "bytes unaccounted: {stats:?}");
        tokio::time::sleep(ms(10)).await;
    }
}

#[tokio::test]
async fn share_decides_per_connection_from_the_seed() {
    assert_eq!(reached(0.0, 10).await, 0, "0 % reaches nobody");
    assert_eq!(reached(1.0, 10).await, 10, "100 % reaches everyone");
    // Connection n is reached when the first draw of rng::for_item(42, "proxy", n) is below
    // 0.5. The proxy numbers connections 0..40 in accept order, so the set of draws (and so
    // this count) depends on the seed alone, whatever the scheduling: 22 for seed 42.
    let half = reached(0.5, 40).await;
    assert!((10..=30).contains(&half), "{half} of 40");
    let drawn = (0..40)
        .filter(|n| doorbuster::rng::for_item(SEED, "proxy", *n).random::<f64>() < 0.5)
        .count();
    assert_eq!((half, drawn), (22, 22), "the count for seed 42");
}

#[tokio::test]
async fn remote_upstreams_are_refused_before_any_connection() {
    // 10.0.0.1 is never dialled: the check comes before binding, let alone connecting.
    let remote = SocketAddr::from(([10, 0, 0, 1], 9));
    let refused = Proxy::start(loopback_any(), remote, SEED, false, std::future::pending()).await;
    assert!(matches!(refused, Err(ProxyError::RemoteUpstream { upstream }) if upstream == remote));

    let wide = SocketAddr::from(([0, 0, 0, 0], 0));
    let refused = Proxy::start(wide, remote, SEED, true, std::future::pending()).await;
    assert!(matches!(refused, Err(ProxyError::RemoteListen { .. })));
}

#[tokio::test]
async fn invalid_toxics_are_refused() {
    let (proxy, _stop) = proxied(SEED).await;
    let zero = ToxicSpec::new(LinkToxic::Bandwidth { bytes_per_sec: 0 });
    assert!(matches!(
        proxy.add_toxic("zero", zero),
        Err(ProxyError::InvalidToxic { .. })
    ));
    assert!(!proxy.remove_toxic("zero"), "a refused toxic was never on");
}

#[tokio::test]
async fn shutdown_stops_the_listener_and_closes_connections() {
    let (proxy, stop) = proxied(SEED).await;
    let mut stream = connect(&proxy).await;
    let reply = round_trip(&mut stream, b"ping", PATIENCE).await;
    assert_eq!(reply.as_deref(), Some(&b"ping"[..]));
    drop(stop);
    assert_eq!(
        cut(&mut stream).await,
        Cut::Eof,
        "open connections close normally"
    );
    // The listener is dropped before connections are told to close, so it is gone by now.
    assert!(TcpStream::connect(proxy.local_addr()).await.is_err());
}

#[tokio::test]
async fn standalone_runs_until_shutdown_and_reports_stats() {
    let upstream = echo_server().await;
    // Reserve a free port, then hand it over: the standalone proxy reports no address.
    let listen = TcpListener::bind(loopback_any())
        .await
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (stop, stopped) = oneshot::channel::<()>();
    let lag = ToxicSpec::new(LinkToxic::Latency {
        latency: ms(50),
        jitter: ms(10),
    });
    let running = tokio::spawn(run_standalone(
        listen,
        upstream,
        vec![lag],
        SEED,
        false,
        async {
            let _ = stopped.await;
        },
        |_| {},
    ));
    let mut stream = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(listen).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(ms(20)).await;
    }
    let mut stream = stream.expect("the standalone proxy listens");
    let reply = round_trip(&mut stream, b"ping", PATIENCE).await;
    assert_eq!(reply.as_deref(), Some(&b"ping"[..]));
    drop(stop);
    let stats = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("stops in time")
        .expect("does not panic")
        .expect("runs");
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!((stats.bytes_upstream, stats.bytes_downstream), (4, 4));
    assert_eq!(stats.connections_active, 0);
}
