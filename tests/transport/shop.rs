//! The example shop (examples/shop) as the system under test: three separate processes on
//! the real Redis, its payment service charging through doorbuster's provider at the
//! scenario's `provider.listen`. The clean shop passes through lost answers and a crash of its
//! payment service; each planted bug fails the check that should catch it and names orders.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use doorbuster::exit::RunVerdict;
use doorbuster::run::{RunOptions, RunResult, execute};

use super::observe::check;
use doorbuster::transport::BrokerKind;
use doorbuster::verify::Verdict;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The example's binary, built by `cargo test` beside this test's.
fn shop_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let shop = debug.join("examples").join("shop");
    assert!(
        shop.exists(),
        "{} is missing: `cargo test` builds it, or `cargo build --example shop`",
        shop.display()
    );
    shop
}

/// A loopback port nobody listens on right now, below Linux's ephemeral range (32768 and
/// up): the run binds it a moment later, and a port the kernel handed out (as port 0 does)
/// can meanwhile become the local end of some other test's outgoing connection, which made
/// the run's link unable to listen and the shop wait for it in vain.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let spread = std::process::id().wrapping_mul(7_919);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (spread.wrapping_add(n.wrapping_mul(101)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Where one test's shop lives: its streams' prefix and a folder for its pid files and the
/// scenario.
struct Place {
    /// The shop's broker.
    kind: BrokerKind,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Place {
    fn new(kind: BrokerKind) -> Place {
        Place {
            kind,
            prefix: super::fresh_namespace(),
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

struct Shop {
    stop: CancellationToken,
    /// Restarts per service (payment, inventory, email): a service that dies on its own
    /// shows here, so a clean run cannot pass on restarts alone.
    restarts: Arc<[AtomicU32; 3]>,
    supervisors: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a service may take to say it is ready (normally a few milliseconds), and how
/// many times it is started before the test gives up: like a startup probe, a service that
/// does not come up is killed and started again, and what it wrote is shown.
const START_TIMEOUT: Duration = Duration::from_secs(4);
const START_ATTEMPTS: u32 = 5;

/// Starts one service and waits until it reads its stream.
async fn spawn(service: &str, url: &str, prefix: &str, provider: &str, bugs: &[&str]) -> Child {
    let mut said = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        match spawn_once(service, url, prefix, provider, bugs).await {
            Ok(child) => return child,
            Err(why) => {
                eprintln!("shop {service}: start {attempt} of {START_ATTEMPTS} failed: {why}");
                said.push(why);
            }
        }
    }
    panic!("{service} did not start: {said:#?}");
}

/// One try: the running service, or why it did not say it was ready (with its stderr).
async fn spawn_once(
    service: &str,
    url: &str,
    prefix: &str,
    provider: &str,
    bugs: &[&str],
) -> Result<Child, String> {
    let mut cmd = Command::new(shop_binary());
    cmd.args(["--service", service, "--broker", url, "--prefix", prefix])
        .args(["--provider", provider])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for bug in bugs {
        cmd.args(["--bug", bug]);
    }
    let mut child = cmd.spawn().expect("the example shop starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let ready = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
    if !matches!(&ready, Ok(Ok(Some(line))) if line.starts_with("ready")) {
        let _ = child.kill().await;
        let mut said = String::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut said),
        )
        .await;
        return Err(format!("{ready:?}; it said: {said:?}"));
    }
    // The service's later complaints (a lost connection) go where the test's output goes.
    let service = service.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("shop {service}: {line}");
        }
    });
    Ok(child)
}

impl Shop {
    /// The three services, connecting to Redis at `url`, each restarted whenever it dies
    /// (as systemd or Kubernetes would); the payment service's current pid in
    /// `payment.pid`, for the scenario's `exec` fault to kill.
    async fn start(place: &Place, url: &str, provider_port: u16, bugs: &[&'static str]) -> Shop {
        let provider = format!("http://127.0.0.1:{provider_port}");
        let stop = CancellationToken::new();
        let restarts: Arc<[AtomicU32; 3]> = Arc::default();
        let mut supervisors = Vec::new();
        let services = ["payment", "inventory", "email"];
        // All three at once: each waits for its broker (the run's link may not be up yet),
        // and all must be reading before the first order, wherever the link's start falls.
        let children = futures_util::future::join_all(
            services.map(|service| spawn(service, url, &place.prefix, &provider, bugs)),
        )
        .await;
        for (i, (service, mut child)) in services.into_iter().zip(children).enumerate() {
            let pidfile = place.dir.path().join(format!("{service}.pid"));
            std::fs::write(&pidfile, child.id().unwrap().to_string()).unwrap();
            let (stop, url, prefix, provider) = (
                stop.clone(),
                url.to_owned(),
                place.prefix.clone(),
                provider.clone(),
            );
            let bugs: Vec<&'static str> = bugs.to_vec();
            let restarts = restarts.clone();
            supervisors.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = child.wait() => {}
                        () = stop.cancelled() => {
                            let _ = child.kill().await;
                            return;
                        }
                    }
                    restarts[i].fetch_add(1, Ordering::Relaxed);
                    // A service that died as the shop was being stopped stays down.
                    child = tokio::select! {
                        child = spawn(service, &url, &prefix, &provider, &bugs) => child,
                        () = stop.cancelled() => return,
                    };
                    std::fs::write(&pidfile, child.id().unwrap().to_string()).unwrap();
                }
            }));
        }
        Shop {
            stop,
            restarts,
            supervisors,
        }
    }

    /// Stops the shop and removes its streams and markers; its restarts per service.
    async fn stop(self, place: &Place) -> [u32; 3] {
        self.stop.cancel();
        for s in self.supervisors {
            s.await.unwrap();
        }
        let url = super::broker_url(place.kind);
        if place.kind == BrokerKind::Nats {
            let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
            js.delete_stream(place.prefix.replace('.', "_"))
                .await
                .unwrap();
        } else {
            let client = ::redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg(format!("{}*", place.prefix))
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: () = ::redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        }
        self.restarts.each_ref().map(|n| n.load(Ordering::Relaxed))
    }
}

/// examples/shop/redis.yaml, aimed at this test's shop: its streams, a free provider port,
/// `edit` applied to the text, and the faults given.
fn scenario(
    place: &Place,
    provider_port: u16,
    edit: impl FnOnce(String) -> String,
    faults: &str,
) -> doorbuster::scenario::Scenario {
    let example = match place.kind {
        BrokerKind::Nats => include_str!("../../examples/shop/nats.yaml"),
        _ => include_str!("../../examples/shop/redis.yaml"),
    };
    let head = example.split("\nfaults:").next().unwrap();
    let text = head
        .replace("shop.", &format!("{}.", place.prefix))
        .replace("127.0.0.1:12111", &format!("127.0.0.1:{provider_port}"))
        .replace(
            "redis://127.0.0.1:6379",
            &super::broker_url(BrokerKind::Redis),
        )
        .replace(
            "nats://127.0.0.1:4222",
            &super::broker_url(BrokerKind::Nats),
        )
        .replace(
            "latency: 20ms..60ms",
            // Payments take long enough that the payment service always holds some.
            "latency: 100ms..200ms",
        );
    let text = edit(text)
        + "\nfaults:\n"
        + &faults.replace("{dir}", &place.dir.path().display().to_string());
    let path = place.dir.path().join("shop.yaml");
    std::fs::write(&path, text).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop/order-created.json.j2"),
        place.dir.path().join("order-created.json.j2"),
    )
    .unwrap();
    let context = doorbuster::scenario::Context::run(Default::default());
    match doorbuster::scenario::load_with(path.to_str().unwrap(), &context) {
        Ok(loaded) => loaded.scenario,
        Err(e) => panic!("{e}"),
    }
}

fn quietly() -> RunOptions {
    RunOptions {
        no_files: true,
        ..Default::default()
    }
}

/// The payment service crashes (SIGKILL) mid-load and is restarted by its supervisor.
const CRASH: &str = "  - { at: 2s, exec: \"kill -9 $(cat {dir}/payment.pid)\" }\n";
const LOST_ANSWERS: &str = "  - { at: 1s, for: 3s, provider_outage: { lost_answers: 10% } }\n";
const PROVIDER_DOWN: &str =
    "  - { at: 1s, for: 3s, provider_outage: { errors: 100%, status: 503 } }\n";

/// Runs the scenario against a shop with these bugs and faults; the result and the shop's
/// restarts per service.
async fn run_shop(bugs: &[&'static str], faults: &str) -> Option<(RunResult, [u32; 3])> {
    run_shop_on(BrokerKind::Redis, bugs, faults).await
}

/// The same, on Redis, with `edit` applied to the scenario's text.
async fn run_shop_edited(
    bugs: &[&'static str],
    faults: &str,
    edit: impl FnOnce(String) -> String,
) -> Option<(RunResult, [u32; 3])> {
    run_shop_with(BrokerKind::Redis, bugs, faults, edit).await
}

/// The same, with the shop on `kind` (Redis Streams or NATS JetStream).
async fn run_shop_on(
    kind: BrokerKind,
    bugs: &[&'static str],
    faults: &str,
) -> Option<(RunResult, [u32; 3])> {
    run_shop_with(kind, bugs, faults, |s| s).await
}

async fn run_shop_with(
    kind: BrokerKind,
    bugs: &[&'static str],
    faults: &str,
    edit: impl FnOnce(String) -> String,
) -> Option<(RunResult, [u32; 3])> {
    let _server = super::broker(kind).await?;
    let (place, port) = (Place::new(kind), free_port());
    let shop = Shop::start(&place, &super::broker_url(kind), port, bugs).await;
    let scenario = scenario(&place, port, edit, faults);
    let result = execute(&scenario, quietly())
        .await
        .expect("the run completes");
    let restarts = shop.stop(&place).await;
    Some((result, restarts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_shop_passes_through_lost_answers_and_a_crash() {
    let faults = format!("{LOST_ANSWERS}{CRASH}");
    let Some((r, restarts)) = run_shop(&[], &faults).await else {
        return;
    };
    for c in &r.summary.checks {
        assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
    }
    assert_eq!(r.summary.verdict, RunVerdict::Pass);
    assert!(
        r.summary.provider.lost_answers > 0,
        "{:?}",
        r.summary.provider
    );
    let exec = &r.summary.faults[1];
    assert!(
        exec.exec.as_ref().is_some_and(|e| e.succeeded()),
        "{exec:?}"
    );
    // The kill, and nothing else: the shop passed with every service up.
    assert_eq!(restarts, [1, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_keys_on_retry_charge_twice_and_the_provider_proves_it() {
    let Some((r, restarts)) = run_shop(&["fresh-key-retries"], LOST_ANSWERS).await else {
        return;
    };
    let dups = check(&r, "no_duplicate_effects");
    assert_eq!(dups.verdict, Verdict::Fail, "{dups:?}");
    assert!(
        dups.evidence.iter().any(|e| e.contains("charged 2 times")),
        "{dups:?}"
    );
    assert!(r.summary.provider.lost_answers > 0);
    // The shop still wrote each output once: only the provider's books show the harm.
    assert_eq!(check(&r, "no_loss").verdict, Verdict::Pass);
    assert_eq!(restarts, [0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_payment_on_error_loses_the_order() {
    let Some((r, restarts)) = run_shop(&["drop-on-error"], PROVIDER_DOWN).await else {
        return;
    };
    let loss = check(&r, "no_loss");
    assert_eq!(loss.verdict, Verdict::Fail, "{loss:?}");
    assert!(
        loss.evidence.iter().any(|e| e.contains("no `paid`")),
        "{loss:?}"
    );
    // Their clean twin: the same outage, and the shop that keeps what it could not pay.
    let Some((clean, clean_restarts)) = run_shop(&[], PROVIDER_DOWN).await else {
        return;
    };
    assert_eq!(check(&clean, "no_loss").verdict, Verdict::Pass);
    assert_eq!((restarts, clean_restarts), ([0, 0, 0], [0, 0, 0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acking_before_the_effect_loses_what_a_crash_interrupts() {
    // A slow provider (300-500 ms a charge at 40 orders/s) keeps about sixteen payments
    // acked and not yet charged at any moment, so the kill surely interrupts some: at the
    // example's 20-60 ms there were one or two, and now and then none.
    let slow = |s: String| s.replace("latency: 20ms..60ms", "latency: 300ms..500ms");
    let Some((r, restarts)) = run_shop_edited(&["ack-before-effect"], CRASH, slow).await else {
        return;
    };
    let loss = check(&r, "no_loss");
    assert_eq!(loss.verdict, Verdict::Fail, "{loss:?}");
    assert!(
        loss.evidence.iter().any(|e| e.contains("no `paid`")),
        "{loss:?}"
    );
    assert_eq!(restarts, [1, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_to_the_shops_broker_slows_the_orders_it_carries() {
    let Some(_server) = super::broker(BrokerKind::Redis).await else {
        return;
    };
    let (place, port, link) = (Place::new(BrokerKind::Redis), free_port(), free_port());
    let redis = super::broker_url(BrokerKind::Redis);
    let upstream = redis.trim_start_matches("redis://").trim_end_matches('/');
    let scenario = scenario(
        &place,
        port,
        |s| {
            // The shop connects through the run's proxy, up once setup is done: the first
            // phase sends nothing while it does, as services wait for their broker. Long
            // enough for a loaded CI machine (a service that connects inside the window is
            // slowed, not stalled: tests/chaos/link_proxy.rs), so that orders start after.
            s.replace(
                "    - { hold: 6s, rate: 40/s }",
                "    - { pause: 8s }\n    - { hold: 5s, rate: 40/s }",
            ) + &format!(
                "  links:\n    shop-redis: {{ listen: \"127.0.0.1:{link}\", to: \"{upstream}\" }}\n"
            )
        },
        "  - { at: 9s, for: 2s, link: latency, delay: 1s, on: shop-redis }\n",
    );
    // Real time: the run's clock starts inside it; this one starts just before it.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let run = tokio::spawn(async move { execute(&scenario, quietly()).await });
    // The shop starts once the run's link listens; a run that ended first says why.
    for _ in 0..300 {
        if run.is_finished()
            || tokio::net::TcpStream::connect(("127.0.0.1", link))
                .await
                .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !run.is_finished(),
        "the run ended before its link listened: {:?}",
        run.await.unwrap().err()
    );
    let shop = Shop::start(&place, &format!("redis://127.0.0.1:{link}"), port, &[]).await;
    // Its groups start at the streams' end: the shop must be reading before the first order
    // (and, for a clean before/during split, before the window), or this test says so plainly.
    let ready_after = started.elapsed();
    assert!(
        ready_after < Duration::from_secs(8),
        "the shop took {ready_after:?} to start, past its first orders (at 8 s)"
    );
    let r = run.await.unwrap().expect("the run completes");
    let restarts = shop.stop(&place).await;
    let paid = &r.summary.outputs[0];
    let during = &paid.during_faults[0];
    // Every round trip of the shop's in the window waited a second more.
    assert!(during.count > 0 && during.p50_us >= 1_000_000, "{paid:?}");
    assert!(paid.latency.p50_us < during.p50_us, "{paid:?}");
    let window = &r.summary.faults[0];
    assert!(
        window.notes.iter().any(|n| n.contains("connections")),
        "{window:?}"
    );
    assert_eq!(check(&r, "no_loss").verdict, Verdict::Pass);
    assert_eq!(restarts, [0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_the_clean_shop_passes_and_fresh_keys_charge_twice() {
    // The same shop on NATS JetStream: clean through lost answers and a crash of its payment
    // service (JetStream redelivers what it held after ack_wait)...
    let faults = format!("{LOST_ANSWERS}{CRASH}");
    let Some((r, restarts)) = run_shop_on(BrokerKind::Nats, &[], &faults).await else {
        return;
    };
    for c in &r.summary.checks {
        assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
    }
    assert_eq!(restarts, [1, 0, 0]);
    // ...and charging twice once its retries take fresh keys.
    let Some((r, _)) = run_shop_on(BrokerKind::Nats, &["fresh-key-retries"], LOST_ANSWERS).await
    else {
        return;
    };
    let dups = check(&r, "no_duplicate_effects");
    assert_eq!(dups.verdict, Verdict::Fail, "{dups:?}");
    assert!(
        dups.evidence.iter().any(|e| e.contains("charged 2 times")),
        "{dups:?}"
    );
}

/// Capacity in black-box mode: the example shop's payment service pays a batch of at most 64
/// orders at a time and every payment takes 300 ms at the provider, so it pays at most about
/// 210 orders/s. Below that every step passes; far above it, 2 s of load leave a backlog that
/// does not drain within `settle_within: 2s`, and `no_loss` fails on the outputs the shop had
/// not written yet. The search over normal observe-mode runs finds the knee between, and the
/// failing step names what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_finds_where_the_example_shop_falls_behind() {
    use doorbuster::capacity::{Plan, StepError, search};
    let kind = BrokerKind::Redis;
    let Some(_server) = super::broker(kind).await else {
        return;
    };
    let (place, port) = (Place::new(kind), free_port());
    let shop = Shop::start(&place, &super::broker_url(kind), port, &[]).await;
    // Written to `shop.yaml` in the place's folder; each step loads it again, scaled.
    scenario(
        &place,
        port,
        |s| {
            s.replace("latency: 100ms..200ms", "latency: 300ms")
                .replace("{ hold: 6s, rate: 40/s }", "{ hold: 2s, rate: 40/s }")
                .replace("settle_within: 20s", "settle_within: 2s")
        },
        "",
    );
    let path = place.dir.path().join("shop.yaml");
    let make = |scale: f64| {
        let context = doorbuster::scenario::Context::run(doorbuster::scenario::Overrides {
            rate_scale: Some(scale),
            ..Default::default()
        });
        doorbuster::scenario::load_with(path.to_str().unwrap(), &context)
            .map(|l| l.scenario)
            .map_err(|e| StepError::Limit(e.to_string()))
    };
    let step = |s: doorbuster::scenario::Scenario, _scale: f64| async move {
        let r = execute(&s, quietly()).await?;
        Ok::<_, StepError>(Some((r.summary, None)))
    };
    let plan = Plan {
        start: 1.0,
        max: 16.0,
        refine: 1,
        settle: Duration::from_millis(500),
        forecast: None,
    };
    let found = search(&plan, make, step, |_| {})
        .await
        .expect("the search runs");
    shop.stop(&place).await;
    let said = format!("{:#?}", found.steps);
    let sustained = found.sustained().expect("the shop sustains its own 40/s");
    let failure = found.first_failure().expect("the shop falls behind at 16x");
    assert!(sustained.planned_peak >= 80.0, "{said}");
    assert!(failure.planned_peak > sustained.planned_peak, "{said}");
    assert!(failure.why.starts_with("no_loss"), "{said}");
    // Below the knee every output came; at the failure, orders were accepted and their
    // outputs had not all come.
    assert_eq!(sustained.accepted, sustained.orders, "{said}");
    assert!(failure.accepted > 0, "{said}");
}
