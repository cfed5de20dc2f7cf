//! `doorbuster bench`: the highest order rate the whole pipeline sustains on this machine.
//!
//! The capacity search (`crate::capacity`, real runs, not a timed test) over one built-in
//! scenario: hold a rate for a few seconds on the embedded broker with every check on, double
//! it while the run passes, then bisect between the last pass and the first failure. A rate is *sustained* when the run's verdict is pass:
//! every order accepted within its checkout timeout, completed within `settle_within`,
//! fulfilment p99 under a second, nothing lost or applied twice, and the generator's own
//! send-lag p99 under `max_send_lag` (otherwise the run is invalid, not a pass).

use std::time::Duration;

use crate::capacity::{Capacity, Plan, Step, StepError};
use crate::config::{Checker, Path, Unset};
use crate::run::{RunOptions, execute};
use crate::scenario::model::{
    Arrivals, Comparison, EmbeddedTarget, LatencyDist, LatencySlo, Phase, PhaseKind, ProviderVia,
    Rate, Scenario, Stage, Target,
};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub via: ProviderVia,
    /// Length of each trial's hold phase.
    pub seconds: u64,
    pub start_rate: f64,
    pub max_rate: f64,
    /// Bisection steps after the first failure.
    pub refine: u32,
    /// The broker to run the trials against instead of the embedded one.
    pub target: Option<Target>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub via: ProviderVia,
    /// The capacity search over the trial scenario: each step one trial.
    pub search: Capacity,
    pub ledger_bytes_per_order: usize,
}

/// A component's configuration with every option at its default: what its `validate`
/// makes of a section the scenario leaves out.
fn defaults<T>(validate: impl FnOnce(&mut Checker, &Path) -> T) -> T {
    let no_env = |_: &str| None;
    let mut check = Checker::new(&no_env, Unset::Error);
    let value = validate(&mut check, &Path::root());
    debug_assert!(check.problems.is_empty(), "{:?}", check.problems);
    value
}

/// The embedded broker the trials run on unless told otherwise.
fn trial_target() -> Target {
    Target::Embedded(EmbeddedTarget {
        partitions: 12,
        retention: 1_000_000,
        free_committed: false,
    })
}

/// The embedded broker `--publish-only` measures unless told otherwise.
pub fn publish_target() -> Target {
    Target::Embedded(EmbeddedTarget {
        partitions: 12,
        retention: 100_000_000,
        free_committed: false,
    })
}

/// One trial's scenario, built in code: `rate` orders per second held for `seconds`, every
/// service and the provider without added latency, every check on, fulfilment p99 under a
/// second.
pub fn trial_scenario(
    rate: f64,
    seconds: u64,
    via: ProviderVia,
    target: Option<Target>,
) -> Scenario {
    let mut load = crate::load::config::placeholder();
    load.arrivals = Arrivals::Uniform;
    load.max_in_flight = 200_000;
    load.phases = vec![Phase {
        kind: PhaseKind::Hold { rate: Rate(rate) },
        duration: Duration::from_secs(seconds),
    }];
    load.drain = Duration::from_secs(10);
    let mut services = defaults(|c, p| crate::services::config::validate(None, c, p));
    for service in [
        &mut services.payment,
        &mut services.inventory,
        &mut services.email,
        &mut services.warehouse,
        &mut services.analytics,
    ] {
        service.latency = LatencyDist::ZERO;
    }
    let mut provider = defaults(|c, p| crate::services::provider::config::validate(None, c, p));
    provider.via = via;
    provider.latency = LatencyDist::ZERO;
    let mut checks = defaults(|c, p| crate::checks::config::validate(None, c, p));
    checks.settle_within = Duration::from_secs(5);
    checks.latency = vec![LatencySlo {
        stage: Stage::Fulfilled,
        percentile: 99.0,
        comparison: Comparison::LessThan,
        bound: Duration::from_secs(1),
    }];
    Scenario {
        name: "bench".to_owned(),
        description: "Throughput search, every check on.".to_owned(),
        seed: 1,
        target: target.unwrap_or_else(trial_target),
        load,
        orders: defaults(|c, p| crate::orders::config::validate(None, c, p)),
        services,
        provider,
        checks,
        faults: Vec::new(),
        observe: None,
    }
}

/// Runs the search: `doorbuster capacity` over the trial scenario, its hold rate doubled
/// from `start_rate` while every check passes, then bisected. `on_trial` sees each trial as it
/// finishes.
pub async fn search(
    opts: &BenchOptions,
    on_trial: impl FnMut(&Step),
) -> Result<BenchReport, StepError> {
    let plan = Plan {
        start: 1.0,
        max: (opts.max_rate / opts.start_rate).max(1.0),
        refine: opts.refine,
        // Let the previous run's tasks and memory go before the next one.
        settle: Duration::from_millis(200),
        forecast: None,
    };
    let make = |scale: f64| {
        Ok(trial_scenario(
            (opts.start_rate * scale).round(),
            opts.seconds,
            opts.via,
            opts.target.clone(),
        ))
    };
    let step = |scenario: Scenario, _scale: f64| async move {
        let options = RunOptions {
            no_files: true,
            run_arg: "bench".into(),
            ..RunOptions::default()
        };
        let result = execute(&scenario, options).await?;
        Ok::<_, StepError>(Some((result.summary, None)))
    };
    Ok(BenchReport {
        via: opts.via,
        search: crate::capacity::search(&plan, make, step, on_trial).await?,
        ledger_bytes_per_order: crate::observe::Ledger::BYTES_PER_ORDER,
    })
}

/// One Markdown table row per trial.
pub fn markdown_row(t: &Step) -> String {
    use crate::verify::latency_slo::fmt_us;
    let p99 = |stage: Stage| {
        t.p99_us
            .iter()
            .find(|(s, _)| s == stage.label())
            .map_or(0, |(_, v)| *v)
    };
    format!(
        "| {:.0} | {:?} | {} | {:.0} | {} | {} | {} | {:.1} | {} |",
        t.planned_peak,
        t.verdict,
        t.orders,
        t.achieved_peak,
        fmt_us(t.send_lag_p99_us),
        fmt_us(p99(Stage::Checkout)),
        fmt_us(p99(Stage::Fulfilled)),
        t.wall_s,
        t.why
    )
}

pub const MARKDOWN_HEADER: &str = "| rate (orders/s) | verdict | orders | achieved/s | send lag p99 | checkout p99 | fulfilled p99 | wall s | first failure |\n|---|---|---|---|---|---|---|---|---|";

/// What `doorbuster bench --publish-only` measured: the raw publish rate through one
/// transport, every publish awaited until the broker acked it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishReport {
    pub target: String,
    /// Publishes in flight at once (each a task awaiting its ack).
    pub clients: usize,
    pub seconds: f64,
    pub acked: u64,
    pub failed: u64,
    pub payload_bytes: usize,
    pub rate: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
}

/// Publishes real `order.created` events (one generated order's payload, a fresh order id
/// and idempotency key each) through the `Publisher`, from `clients` concurrent publishers
/// for `duration`, and reports acked publishes per second.
pub async fn publish_rate(
    target: &Target,
    clients: usize,
    duration: Duration,
) -> Result<PublishReport, crate::transport::TransportError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use crate::events::Topic;
    use crate::publisher::{Cause, Publisher};

    let clock = crate::clock::Clock::start();
    let transport = crate::transport::connect(target, clock.clone()).await?;
    let orders = defaults(|c, p| crate::orders::config::validate(None, c, p));
    let order = crate::orders::OrderFactory::new(1, &orders).make(0, 0);
    let payload = order.to_json();
    let key_text: Arc<str> = Arc::from(order.idempotency_key.as_str());
    // No ledger slots: the order ids are not planned ones, so the publisher records no
    // per-order acks, only its counters (the failed publishes among them).
    let publisher = Publisher {
        transport: transport.clone(),
        observer: Arc::new(crate::observe::Observer::new(clock.clone(), 0)),
    };
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = clock.now() + crate::clock::duration_ns(duration);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients as u64 {
        let (publisher, payload, key_text) = (publisher.clone(), payload.clone(), key_text.clone());
        let (acked, clock) = (acked.clone(), clock.clone());
        tasks.spawn(async move {
            let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds are valid");
            let mut n = 0u64;
            while clock.now() < deadline {
                let id = (client << 32) | n;
                n += 1;
                let sent = clock.now();
                let cause = Cause {
                    order_id: id,
                    intended_at: sent,
                    intended_wall_ns: clock.wall_ns(sent),
                    // One key per publish: a checkout endpoint must take each as a new
                    // order, not replay the first.
                    idempotency_key: bytes::Bytes::from(format!("{}-{id}", key_text)),
                };
                let envelope = publisher.envelope(Topic::OrderCreated, &cause, payload.clone());
                if publisher.publish(envelope).await.is_ok() {
                    acked.fetch_add(1, Relaxed);
                    latency.saturating_record((clock.now() - sent) / 1_000);
                }
            }
            latency
        });
    }
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .expect("static histogram bounds are valid");
    while let Some(joined) = tasks.join_next().await {
        if let Ok(h) = joined {
            let _ = latency.add(&h);
        }
    }
    let seconds = clock.now() as f64 / 1e9;
    let _ = transport.cleanup().await;
    let acked = acked.load(Relaxed);
    Ok(PublishReport {
        target: transport.info().kind,
        clients,
        seconds,
        acked,
        failed: publisher.observer.counters.publish_errors.load(Relaxed),
        payload_bytes: payload.len(),
        rate: acked as f64 / seconds.max(1e-9),
        latency_p50_us: latency.value_at_quantile(0.5),
        latency_p99_us: latency.value_at_quantile(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scenario text `bench` used to parse, kept to prove the scenario now built in code
    /// is the same one.
    fn text(rate: f64, seconds: u64, via: &str, target: &str) -> String {
        format!(
            r#"
name: bench
description: Throughput search, every check on.
seed: 1
target: {target}
load:
  arrivals: uniform
  max_in_flight: 200000
  phases:
    - {{ hold: {seconds}s, rate: {rate}/s }}
  drain: 10s
services:
  payment:   {{ latency: 0ms }}
  inventory: {{ latency: 0ms }}
  email:     {{ latency: 0ms }}
  warehouse: {{ latency: 0ms }}
  analytics: {{ latency: 0ms }}
provider: {{ via: {via}, latency: 0ms }}
checks:
  settle_within: 5s
  latency:
    order.created -> order.fulfilled: {{ p99: "< 1s" }}
"#
        )
    }

    /// A trial's scenario built in code equals the one its YAML text described, on the
    /// embedded broker and on a broker named by URL, for either provider path.
    #[test]
    fn the_trial_scenario_built_in_code_is_the_one_the_text_described() {
        let embedded = "{ kind: embedded, partitions: 12, retention: 1000000 }";
        let parsed =
            crate::scenario::parse("bench.yaml", &text(2500.0, 7, "in_process", embedded)).unwrap();
        assert_eq!(
            trial_scenario(2500.0, 7, ProviderVia::InProcess, None),
            parsed
        );
        let url = "redis://127.0.0.1:6379";
        let parsed =
            crate::scenario::parse("bench.yaml", &text(40.0, 1, "http", &format!("{url:?}")))
                .unwrap();
        let target = crate::scenario::target::target_of_url(url).unwrap();
        assert_eq!(
            trial_scenario(40.0, 1, ProviderVia::Http, Some(target)),
            parsed
        );
    }
}
