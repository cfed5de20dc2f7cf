//! A seeded whole-run sweep in the spirit of TigerBeetle's VOPR: per seed, draw a random
//! scenario (rates, replicas, concurrency, processing latency, a random mix of fault windows)
//! and run it on the embedded broker under a paused clock, twice. With correct services
//! every check must pass (a failure is a false positive: the harness accused a correct
//! system). With one seeded bug class planted, the check that guards against it must fail
//! and name an order. Either miss prints the seed and the command that replays it.
//!
//! ```text
//! cargo test --test sweep                                   # 200 seeds (CI)
//! DOORBUSTER_SWEEP_SEEDS=5000 cargo test --release --test sweep -- --nocapture
//! DOORBUSTER_SWEEP_SEED=1234 cargo test --test sweep -- --nocapture   # one seed, its YAML
//! ```

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use doorbuster::events::{Envelope, Topic};
use doorbuster::rng;
use doorbuster::run::RunResult;
use doorbuster::scenario::model::Scenario;
use doorbuster::transport::{
    Ack, BoxFuture, RewindTo, Subscription, Transport, TransportError, TransportInfo,
};
use doorbuster::verify::Verdict;
use rand::RngExt;

const SERVICES: [&str; 5] = ["payment", "inventory", "email", "warehouse", "analytics"];

/// A bug planted in an otherwise correct system, and the check that must catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bug {
    /// The service acks each delivery before acting on it (`commit: on_receive`) and
    /// crashes with work in hand.
    AckBeforeEffect(&'static str),
    /// The service has no idempotency and an event reaches it twice.
    NotIdempotent(&'static str),
    /// The broker acks one publish of a topic and never stores it.
    DroppedPublish(Topic),
    /// Events of a share of keys reach consumers out of order.
    ReorderedKey,
    /// The provider captures but answers after the payment service's timeout, every retry:
    /// the service announces a failure for an order the shopper paid for.
    CaptureWithoutFulfilment,
}

impl Bug {
    fn class(self) -> &'static str {
        match self {
            Bug::AckBeforeEffect(_) => "ack before the effect + crash",
            Bug::NotIdempotent(_) => "non-idempotent + redelivery",
            Bug::DroppedPublish(_) => "dropped publish",
            Bug::ReorderedKey => "reordered key",
            Bug::CaptureWithoutFulfilment => "capture without fulfilment",
        }
    }

    /// The check that guards against it.
    fn check(self) -> &'static str {
        match self {
            Bug::AckBeforeEffect(_) | Bug::DroppedPublish(_) => "no_loss",
            Bug::NotIdempotent(_) => "no_duplicate_effects",
            Bug::ReorderedKey => "per_key_order",
            Bug::CaptureWithoutFulfilment => "money_matches_state",
        }
    }

    /// The service the check's evidence must name, where one service is to blame.
    fn service(self) -> Option<&'static str> {
        match self {
            Bug::AckBeforeEffect(s) | Bug::NotIdempotent(s) => Some(s),
            _ => None,
        }
    }

    fn draw(seed: u64) -> Bug {
        let mut r = rng::for_component(seed, "sweep.bug");
        let service = SERVICES[r.random_range(0..SERVICES.len())];
        match r.random_range(0..5) {
            0 => Bug::AckBeforeEffect(service),
            1 => Bug::NotIdempotent(service),
            2 => Bug::DroppedPublish(
                [
                    Topic::OrderCreated,
                    Topic::PaymentSucceeded,
                    Topic::Fulfilled,
                ][r.random_range(0..3)],
            ),
            3 => Bug::ReorderedKey,
            _ => Bug::CaptureWithoutFulfilment,
        }
    }
}

/// One drawn system: the load, each service's shape, the fault windows correct services
/// must ride out.
struct Draw {
    seconds: u64,
    rate: u64,
    resubmits: u32,
    /// Per service: replicas, concurrency, processing latency range in ms.
    services: BTreeMap<&'static str, (u32, u32, u32, u32)>,
    /// Fault list items (YAML flow mappings).
    faults: Vec<String>,
}

impl Draw {
    fn new(seed: u64) -> Draw {
        let mut r = rng::for_component(seed, "sweep.scenario");
        let seconds = r.random_range(4..=8);
        let rate = r.random_range(20..=80);
        let services = SERVICES
            .iter()
            .map(|&s| {
                let low = r.random_range(0..=20);
                let high = low + r.random_range(1..=30);
                let shape = (r.random_range(1..=3), r.random_range(1..=32), low, high);
                (s, shape)
            })
            .collect();
        // Fault windows inside the load, at most one per (kind, target), each of a kind a
        // correct system rides out: crashes restart, errors are retried, the provider
        // recovers before the payment service's retries run out.
        let mut faults = Vec::new();
        let mut used = Vec::new();
        for _ in 0..r.random_range(0..=4) {
            let service = SERVICES[r.random_range(0..SERVICES.len())];
            let at = r.random_range(1..seconds - 1);
            let length = r.random_range(1..=3);
            let (kind, item) = match r.random_range(0..7) {
                0 => (
                    "crash",
                    format!(
                        "{{ at: {at}s, crash: {service}, restart_after: {}ms }}",
                        r.random_range(200..=2000)
                    ),
                ),
                1 => (
                    "pause",
                    format!("{{ at: {at}s, for: {length}s, pause: {service} }}"),
                ),
                2 => (
                    "latency",
                    format!(
                        "{{ at: {at}s, for: {length}s, latency: {service}, add: {}ms, share: {}% }}",
                        r.random_range(10..=300),
                        r.random_range(10..=100)
                    ),
                ),
                3 => (
                    "errors",
                    format!(
                        "{{ at: {at}s, for: {length}s, errors: {service}, share: {}% }}",
                        r.random_range(5..=50)
                    ),
                ),
                4 => (
                    "duplicate",
                    format!(
                        "{{ at: {at}s, for: {length}s, duplicate: {service}, share: {}% }}",
                        r.random_range(10..=100)
                    ),
                ),
                5 => (
                    "provider_outage",
                    format!(
                        "{{ at: {at}s, for: {length}s, provider_outage: {{ errors: {}%, latency: 20ms..{}ms }} }}",
                        r.random_range(10..=60),
                        r.random_range(30..=400)
                    ),
                ),
                _ => (
                    "replay",
                    format!("{{ at: {at}s, replay: {service}, to: earliest }}"),
                ),
            };
            let target = if kind == "provider_outage" {
                "provider"
            } else {
                service
            };
            if !used.contains(&(kind, target)) {
                used.push((kind, target));
                faults.push(item);
            }
        }
        Draw {
            seconds,
            rate,
            resubmits: r.random_range(0..=5),
            services,
            faults,
        }
    }

    /// The scenario, correct or with `bug` planted.
    fn yaml(&self, seed: u64, bug: Option<Bug>) -> String {
        let mut services = self.services.clone();
        let mut faults = self.faults.clone();
        let mut resubmits = self.resubmits;
        let mut provider =
            "provider: { via: in_process, latency: 1ms..5ms, timeout: 2s, retries: 8 }".to_owned();
        let middle = self.seconds / 2;
        let mut settings: BTreeMap<&str, String> = BTreeMap::new();
        match bug {
            Some(Bug::AckBeforeEffect(s)) => {
                // Work takes long enough that the crash finds some in hand, with slots
                // enough to keep up with the load.
                let shape = services.get_mut(s).expect("a service");
                (shape.1, shape.2, shape.3) = (shape.1.max(64), 300, 500);
                settings.insert(s, "commit: on_receive".into());
                spare(&mut faults, s);
                // What would keep the service idle at the crash (an upstream crash or pause)
                // or deliver its orders again (a replay, a duplicate) would hide or heal the
                // loss: the bug would not show, which is not a miss.
                faults.retain(|f| {
                    !["replay:", "duplicate:", "crash:", "pause:"]
                        .iter()
                        .any(|kind| f.contains(kind))
                });
                faults.push(format!(
                    "{{ at: {middle}s, crash: {s}, restart_after: 1s }}"
                ));
            }
            Some(Bug::NotIdempotent(s)) => {
                settings.insert(s, "idempotent: false".into());
                spare(&mut faults, s);
                faults.push(format!("{{ at: 1s, for: {middle}s, duplicate: {s} }}"));
            }
            Some(Bug::ReorderedKey) => {
                resubmits = 30;
                faults.push(format!(
                    "{{ at: 1s, for: {}s, reorder: order.created }}",
                    self.seconds - 1
                ));
            }
            Some(Bug::CaptureWithoutFulfilment) => {
                provider =
                    "provider: { via: in_process, latency: 1ms..5ms, timeout: 1s, retries: 1 }"
                        .to_owned();
                faults.retain(|f| !f.contains("provider_outage"));
                spare(&mut faults, "payment");
                faults.push(format!(
                    "{{ at: 1s, for: {middle}s, provider_outage: {{ errors: 0%, latency: 5s }} }}"
                ));
            }
            Some(Bug::DroppedPublish(_)) | None => {}
        }
        let mut text = format!(
            "name: sweep-{seed}\nseed: {seed}\nload:\n  arrivals: poisson\n  phases:\n    - {{ hold: {}s, rate: {}/s }}\n  drain: 120s\norders:\n  resubmits: {resubmits}%\n  catalog: {{ products: 500, stock: 1000000 }}\n{provider}\nservices:\n",
            self.seconds, self.rate
        );
        for (name, (replicas, concurrency, low, high)) in &services {
            let extra = settings
                .get(name)
                .map(|s| format!(", {s}"))
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "  {name}: {{ replicas: {replicas}, concurrency: {concurrency}, latency: {low}ms..{high}ms{extra} }}"
            );
        }
        text.push_str("checks:\n  settle_within: 120s\n");
        if faults.is_empty() {
            text.push_str("faults: []\n");
        } else {
            text.push_str("faults:\n");
            for f in &faults {
                let _ = writeln!(text, "  - {f}");
            }
        }
        text
    }
}

/// Takes every fault on `service` out, so the planted bug is not masked by a crash or a
/// pause that keeps the service from working while the bug would show.
fn spare(faults: &mut Vec<String>, service: &str) {
    faults.retain(|f| !f.contains(&format!(" {service},")) && !f.contains(&format!(" {service} ")));
}

/// A broker that acks the `nth` publish of `topic` and never stores it.
struct DropOne {
    inner: Arc<dyn Transport>,
    topic: Topic,
    nth: u64,
    seen: AtomicU64,
    dropped: Mutex<Option<u64>>,
}

#[async_trait::async_trait]
impl Transport for DropOne {
    fn info(&self) -> TransportInfo {
        self.inner.info()
    }

    fn publish(&self, e: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        Box::pin(async move {
            if e.topic == self.topic && self.seen.fetch_add(1, Relaxed) == self.nth {
                *self.dropped.lock().unwrap() = Some(e.meta.order_id);
                return Ok(Ack {
                    partition: 0,
                    offset: 0,
                });
            }
            self.inner.publish(e).await
        })
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        self.inner.subscribe(group, topics).await
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        self.inner.rewind(group, to).await
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        self.inner.lag(group).await
    }
}

fn parse(seed: u64, text: &str) -> Scenario {
    doorbuster::scenario::parse(&format!("sweep-{seed}.yaml"), text)
        .unwrap_or_else(|e| panic!("seed {seed}: the drawn scenario does not parse: {e}\n{text}"))
}

/// What one seed showed: a false positive, a missed bug, or neither.
struct Outcome {
    seed: u64,
    bug: Bug,
    false_positive: Option<String>,
    missed: Option<String>,
}

fn replay_command(seed: u64) -> String {
    format!("DOORBUSTER_SWEEP_SEED={seed} cargo test --test sweep -- --nocapture")
}

async fn sweep_one(seed: u64) -> Outcome {
    let draw = Draw::new(seed);
    let clean_text = draw.yaml(seed, None);
    let clean = support::run_with(&parse(seed, &clean_text), None).await;
    let false_positive = clean
        .summary
        .checks
        .iter()
        .find(|c| c.verdict != Verdict::Pass)
        .map(|c| format!("{}: {:?}: {}\n{clean_text}", c.name, c.verdict, c.observed));

    let bug = Bug::draw(seed);
    let text = draw.yaml(seed, Some(bug));
    let scenario = parse(seed, &text);
    let (r, dropped): (RunResult, Option<u64>) = match bug {
        Bug::DroppedPublish(topic) => {
            let clock = doorbuster::clock::Clock::start();
            let inner = doorbuster::transport::connect(&scenario.target, clock)
                .await
                .expect("the embedded broker starts");
            let expected = draw.seconds * draw.rate;
            let mut r = rng::for_component(seed, "sweep.drop");
            let wrapper = Arc::new(DropOne {
                inner,
                topic,
                nth: r.random_range(0..expected / 2),
                seen: AtomicU64::new(0),
                dropped: Mutex::new(None),
            });
            let r = support::run_with(&scenario, Some(wrapper.clone())).await;
            let dropped = *wrapper.dropped.lock().unwrap();
            (r, dropped)
        }
        _ => (support::run_with(&scenario, None).await, None),
    };
    let missed = caught(&r, bug, dropped)
        .err()
        .map(|why| format!("{why}\n{text}"));
    Outcome {
        seed,
        bug,
        false_positive,
        missed,
    }
}

/// The guarding check failed and named an order (and the service to blame, if one is).
fn caught(r: &RunResult, bug: Bug, dropped: Option<u64>) -> Result<(), String> {
    let c = r
        .summary
        .checks
        .iter()
        .find(|c| c.name == bug.check())
        .ok_or_else(|| format!("{:?}: no {} check ran", bug, bug.check()))?;
    if c.verdict != Verdict::Fail {
        return Err(format!(
            "{bug:?}: {} said {:?}: {}",
            c.name, c.verdict, c.observed
        ));
    }
    let order_named = match dropped {
        Some(order) => c
            .evidence
            .iter()
            .any(|e| e.starts_with(&format!("order {order}:"))),
        None => c.evidence.iter().any(|e| {
            e.strip_prefix("order ")
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(id, _)| id.parse::<u64>().is_ok())
        }),
    };
    if !order_named {
        return Err(format!(
            "{bug:?}: {} failed without naming the order ({dropped:?}): {:?}",
            c.name, c.evidence
        ));
    }
    if let Some(service) = bug.service()
        && !c
            .evidence
            .iter()
            .any(|e| e.contains(&format!("{service}:")))
    {
        return Err(format!(
            "{bug:?}: {} failed without naming {service}: {:?}",
            c.name, c.evidence
        ));
    }
    Ok(())
}

fn seeds() -> std::ops::Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("DOORBUSTER_SWEEP_SEED") {
        return seed..seed + 1;
    }
    let first = var("DOORBUSTER_SWEEP_FIRST").unwrap_or(1);
    first..first + var("DOORBUSTER_SWEEP_SEEDS").unwrap_or(200)
}

/// Every seed: correct services pass every check, the planted bug is caught.
#[test]
fn a_seeded_sweep_passes_correct_systems_and_catches_every_planted_bug() {
    let seeds = seeds();
    if seeds.end - seeds.start == 1 {
        println!("{}", Draw::new(seeds.start).yaml(seeds.start, None));
        println!("planted: {:?}", Bug::draw(seeds.start));
    }
    // Each run is its own paused-clock runtime; the seeds spread over the cores.
    let queue = Mutex::new(seeds.clone());
    let outcomes = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let Some(seed) = queue.lock().unwrap().next() else {
                        return;
                    };
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .start_paused(true)
                        .build()
                        .expect("a runtime");
                    let outcome = runtime.block_on(sweep_one(seed));
                    outcomes.lock().unwrap().push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| o.seed);

    let mut per_class: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut problems = Vec::new();
    for o in &outcomes {
        let tally = per_class.entry(o.bug.class()).or_default();
        tally.0 += 1;
        tally.1 += u64::from(o.missed.is_none());
        if let Some(why) = &o.false_positive {
            problems.push(format!(
                "seed {}: FALSE POSITIVE on correct services: {why}\n  replay: {}",
                o.seed,
                replay_command(o.seed)
            ));
        }
        if let Some(why) = &o.missed {
            problems.push(format!(
                "seed {}: MISSED {}: {why}\n  replay: {}",
                o.seed,
                o.bug.class(),
                replay_command(o.seed)
            ));
        }
    }
    let false_positives = outcomes
        .iter()
        .filter(|o| o.false_positive.is_some())
        .count();
    println!(
        "sweep: {} seeds ({}..{}), {false_positives} false positives",
        outcomes.len(),
        seeds.start,
        seeds.end
    );
    for (class, (planted, caught)) in &per_class {
        println!("  {class}: caught {caught} of {planted}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
