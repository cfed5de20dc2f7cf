//! One run, start to verdict: plan, start the provider and the services, drive the load,
//! drain, check, report.
//!
//! This is the only place that wires the parts together. It owns the run's shutdown: the
//! driver stops on the schedule's end or an interrupt, the drain waits (bounded) until the
//! pipeline is quiet, then services stop and the checks read the observations.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::chaos::reorder::ReorderTransport;
use crate::chaos::{Chaos, ChaosCtx, run_timeline};
use crate::clock::{Clock, duration_ns};
use crate::load::Schedule;
use crate::load::driver::{Driver, DriverOutcome};
use crate::observe::hlog::IntervalLogs;
use crate::observe::{Observer, Settlement};
use crate::orders::OrderFactory;
use crate::publisher::Publisher;
use crate::report::partial::RunRecord;
use crate::report::progress::Progress;
use crate::report::summary::{RunVerdict, StopSignal, Summary};
use crate::scenario::model::{ProviderVia, Scenario, Service as ServiceConfig, Target};
use crate::services::analytics::{Analytics, AnalyticsState};
use crate::services::email::Email;
use crate::services::inventory::Inventory;
use crate::services::payment::Payment;
use crate::services::provider::{ProviderClient, ProviderCore};
use crate::services::runner::Runner;
use crate::services::warehouse::Warehouse;
use crate::services::{Idempotency, Processed, Service, ServiceEnv};
use crate::topology::ServiceKind;
use crate::transport::{Transport, TransportError};
use crate::verify::{CheckInput, checks_for, evaluate_all};

/// After an interrupt the drain is cut to this.
const INTERRUPTED_DRAIN_MAX: Duration = Duration::from_secs(3);
/// How often the drain looks whether the pipeline is quiet.
const SETTLE_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot start the payment-provider mock: {0}")]
    Provider(std::io::Error),
    #[error("cannot write the report to {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to run, beyond the scenario itself.
#[derive(Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Where the run folder goes; `None` = `reports/<scenario>-<time>-seed<N>`.
    pub out_dir: Option<PathBuf>,
    /// Write no files (tests that only need the result).
    pub no_files: bool,
    /// Show live progress on the terminal.
    pub progress: bool,
    /// What to type after `doorbuster run` to repeat this run.
    pub run_arg: String,
    /// Replaces the scenario's transport (sabotage wrappers in tests).
    pub transport: Option<Arc<dyn Transport>>,
    /// Names the signal (Ctrl-C, SIGTERM, SIGHUP) that asks the run to stop early.
    pub interrupt: Option<watch::Receiver<Option<StopSignal>>>,
}

/// Everything a run leaves behind, for the binary and for tests.
pub struct RunResult {
    pub summary: Summary,
    pub dir: Option<PathBuf>,
    pub observer: Arc<Observer>,
    pub provider: Arc<ProviderCore>,
    pub analytics: Option<AnalyticsState>,
    pub stock: Option<Vec<u32>>,
}

struct Pipeline {
    tasks: JoinSet<()>,
    enabled: Vec<ServiceKind>,
    groups: Vec<ServiceKind>,
    analytics: Option<Arc<Analytics>>,
    inventory: Option<Arc<Inventory>>,
}

impl Pipeline {
    /// No services (an HTTP checkout target).
    fn none() -> Pipeline {
        Pipeline {
            tasks: JoinSet::new(),
            enabled: Vec::new(),
            groups: Vec::new(),
            analytics: None,
            inventory: None,
        }
    }
}

/// What the transport says of itself, and which of the scenario's checks it cannot show.
fn target_info(transport: &dyn Transport, scenario: &Scenario) -> crate::transport::TransportInfo {
    let mut info = transport.info();
    let left_out = crate::verify::left_out(scenario);
    if !left_out.is_empty() {
        info.settings.push((
            "checks left out".to_owned(),
            format!(
                "{} (the pipeline behind the target is not observed)",
                left_out.join(", ")
            ),
        ));
    }
    info
}

/// Runs a validated scenario (from `scenario::load_with`, `parse` or `parse_with`): what the
/// file and the command line alone determine (the target's URL and the loopback guard, the
/// faults and checkout mode the target can carry, the planned orders) was checked there,
/// with positions, and is not checked again here. Connecting still expands `${ENV}` and
/// applies the same URL check, for targets built in code.
pub async fn execute(scenario: &Scenario, opts: RunOptions) -> Result<RunResult, RunError> {
    let seed = opts.seed.unwrap_or(scenario.seed);
    let clock = Clock::start();
    let schedule = Arc::new(Schedule::plan(&scenario.load, seed));
    // What the target can carry (faults, the checkout mode) was checked with the scenario:
    // `scenario::validate` refuses the misfits with their position.
    let checkout_only = matches!(scenario.target, Target::Http(_));
    // Connect first: an unreachable broker leaves no half-made run folder behind.
    let (proxy_stop, proxy_stopped) = watch::channel(false);
    let links = scenario
        .faults
        .iter()
        .any(|f| matches!(f.kind, crate::scenario::model::FaultKind::Link { .. }));
    let (transport, proxy) = match &opts.transport {
        Some(t) => (t.clone(), None),
        None if links => {
            let (target, proxy) = through_fault_proxy(scenario, seed, proxy_stopped).await?;
            (
                crate::transport::connect(&target, clock.clone()).await?,
                Some(proxy),
            )
        }
        None => (
            crate::transport::connect(&scenario.target, clock.clone()).await?,
            None,
        ),
    };
    let dir = (!opts.no_files).then(|| {
        opts.out_dir
            .clone()
            .unwrap_or_else(|| crate::report::default_run_dir(&scenario.name, seed))
    });
    let observer = Arc::new(
        Observer::new(clock.clone(), schedule.orders()).with_fault_plan(
            scenario
                .faults
                .iter()
                .map(|f| (f.at, f.duration.map(|d| f.at + d))),
        ),
    );
    let chaos = Arc::new(Chaos::default());
    let reorders = scenario
        .faults
        .iter()
        .any(|f| matches!(f.kind, crate::scenario::model::FaultKind::Reorder { .. }));
    let transport: Arc<dyn Transport> = if reorders {
        Arc::new(ReorderTransport::new(transport, chaos.clone(), seed))
    } else {
        transport
    };
    let factory = Arc::new(OrderFactory::new(seed, &scenario.orders));
    let publisher = Publisher {
        transport: transport.clone(),
        observer: observer.clone(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let provider = Arc::new(ProviderCore::new(seed, &scenario.provider, clock.clone()));
    let client = Arc::new(provider_client(scenario, &provider, stop_rx.clone()).await?);
    // Behind a checkout endpoint the pipeline is the shop's own: no services run here.
    let mut pipeline = if checkout_only {
        Pipeline::none()
    } else {
        start_services(
            scenario,
            seed,
            &publisher,
            &factory,
            client.clone(),
            &chaos,
            stop_rx.clone(),
        )
        .await?
    };
    // Setup is over: the provider answers and every service's consumers have joined their
    // groups (on Kafka, each member holds its partitions, which takes seconds). The load's
    // t=0 is now, so that no arrival is due before the system under test could take it.
    let setup = clock.begin();
    tracing::info!(
        setup_ms = setup.as_millis() as u64,
        "setup done; the load starts"
    );
    if let Some(dir) = &dir {
        let logs = IntervalLogs::create(dir, clock.wall_start_unix_ns()).map_err(|source| {
            RunError::Report {
                path: dir.clone(),
                source,
            }
        })?;
        observer.write_interval_logs(logs);
        // What a report rebuilt after a kill needs and the interval logs do not hold.
        let started = clock.wall_start_unix_ns();
        RunRecord::of(
            scenario,
            seed,
            &opts.run_arg,
            &schedule,
            target_info(transport.as_ref(), scenario),
            started,
        )
        .write(dir)
        .map_err(|source| RunError::Report {
            path: dir.clone(),
            source,
        })?;
    }
    let signal = opts
        .interrupt
        .clone()
        .unwrap_or_else(|| watch::channel(None).1);
    let interrupt = interrupted(signal.clone(), stop_rx.clone());
    let timeline = tokio::spawn(run_timeline(
        scenario.faults.clone(),
        ChaosCtx {
            chaos,
            transport: transport.clone(),
            provider: provider.clone(),
            observer: observer.clone(),
            seed,
            run_dir: dir.clone(),
            proxy,
            interrupt: Some(interrupt.clone()),
        },
        stop_rx.clone(),
    ));

    let progress = Progress::new(opts.progress, scenario, &schedule);
    let ticker = tokio::spawn(tick(
        observer.clone(),
        transport.clone(),
        pipeline.groups.clone(),
        schedule.clone(),
        progress.clone(),
        stop_rx.clone(),
    ));

    let driver = Arc::new(Driver {
        publisher: publisher.clone(),
        factory: factory.clone(),
        schedule: schedule.clone(),
        load: scenario.load.clone(),
        seed,
        provider: client,
    });
    let outcome: DriverOutcome = driver.run(interrupt.clone()).await;

    let drain = if outcome.stopped_early {
        scenario.load.drain.min(INTERRUPTED_DRAIN_MAX)
    } else {
        scenario.load.drain
    };
    progress.draining();
    // The drain never ends before the last fault has started and stopped.
    let faults_end = scenario
        .faults
        .iter()
        .map(|f| duration_ns(f.at + f.duration.unwrap_or_default()))
        .max()
        .filter(|_| !outcome.stopped_early)
        .unwrap_or(0);
    let settlement = drain_until_quiet(
        &observer,
        &transport,
        &pipeline.groups,
        drain,
        faults_end,
        &interrupt,
    )
    .await;
    let interrupted = outcome.stopped_early || *interrupt.borrow();
    let (queued, queued_total) = settlement.queued();
    if !queued.is_empty() {
        let per_service: Vec<String> = queued
            .iter()
            .map(|(service, lag)| match lag {
                Some(n) => format!("{service} {n}"),
                None => format!("{service} (lag unknown)"),
            })
            .collect();
        observer.finding(format!(
            "the drain ended with {queued_total} events not settled (still queued or being \
             handled): {}",
            per_service.join(", ")
        ));
    }
    let interrupted_by = *signal.borrow();

    let _ = stop_tx.send(true);
    let _ = ticker.await;
    let _ = timeline.await;
    while pipeline.tasks.join_next().await.is_some() {}
    progress.finish();
    // What the run created on a networked broker goes; a failure to tidy up is not the
    // run's verdict, but it is said.
    if let Err(e) = transport.cleanup().await {
        tracing::warn!("could not remove the run's streams from the broker: {e}");
    }
    let _ = proxy_stop.send(true);

    let captures: HashMap<u64, u32> = provider.captures_per_order();
    let analytics_state = pipeline.analytics.as_ref().map(|a| a.state());
    let input = CheckInput {
        analytics: analytics_state.as_ref(),
        scenario,
        observer: &observer,
        factory: &factory,
        attempted: outcome.dispatched as u64,
        captures_per_order: &captures,
        enabled: &pipeline.enabled,
        settlement: &settlement,
    };
    let checks = evaluate_all(&checks_for(scenario), &input);
    let send_lag_p99 = observer.send_lag.total().value_at_quantile(0.99);
    let invalid = (send_lag_p99 > scenario.load.max_send_lag.as_micros() as u64).then(|| {
        format!(
            "the generator fell behind its schedule: send lag p99 {} exceeds max_send_lag {}",
            crate::verify::latency_slo::fmt_us(send_lag_p99),
            humantime::format_duration(scenario.load.max_send_lag)
        )
    });
    let verdict = RunVerdict::decide(interrupted, invalid.is_some(), &checks);
    let summary = Summary::build(crate::report::summary::SummaryInput {
        scenario,
        seed,
        run_arg: &opts.run_arg,
        schedule: &schedule,
        observer: &observer,
        transport: target_info(transport.as_ref(), scenario),
        provider: &provider,
        factory: &factory,
        attempted: outcome.dispatched as u64,
        checks,
        verdict,
        invalid_reason: invalid,
        interrupted_by,
        analytics: pipeline.analytics.as_ref().map(|a| a.state()),
    });
    if let Some(dir) = &dir {
        crate::report::write_all(dir, &summary).map_err(|source| RunError::Report {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(RunResult {
        summary,
        dir,
        observer,
        provider,
        analytics: pipeline.analytics.as_ref().map(|a| a.state()),
        stock: pipeline.inventory.as_ref().map(|i| i.stock()),
    })
}

/// Starts the TCP fault proxy in front of the scenario's broker (or checkout endpoint) for
/// its `link` faults and returns the target pointed at the proxy.
async fn through_fault_proxy(
    scenario: &Scenario,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(Target, crate::chaos::proxy::ProxyHandle), RunError> {
    let config_error = |target: &str, reason: &str| {
        RunError::Transport(TransportError::Config {
            target: crate::transport::redact_url(target),
            source: reason.into(),
        })
    };
    // Validation refuses link faults on the embedded broker and on an https endpoint, with
    // the fault's position; a scenario built in code gets this one line.
    let (written, allow_remote) = match &scenario.target {
        Target::Broker(b) => (b.url.clone(), b.allow_remote),
        Target::Http(h) if h.url.starts_with("http://") => (h.url.clone(), h.allow_remote),
        Target::Http(_) | Target::Embedded(_) => {
            return Err(config_error(
                "link",
                "a link fault needs a broker or an http:// target (see `doorbuster validate`)",
            ));
        }
    };
    let url = crate::transport::expand_and_guard(&written, allow_remote)?;
    let unreachable = |reason: String| {
        RunError::Transport(TransportError::Unreachable {
            target: crate::transport::redact_url(&url),
            source: reason.into(),
        })
    };
    let (host, port) = crate::scenario::target::first_host_port(&url)
        .ok_or_else(|| unreachable("the URL names no host and port".to_owned()))?;
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| unreachable(format!("{host} resolves to no address")))?;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let proxy =
        crate::chaos::proxy::Proxy::start(listen, upstream, seed, allow_remote, async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
        .map_err(|e| unreachable(format!("fault proxy: {e}")))?;
    // The URL as written (its ${ENV} references expand when connecting), host and port
    // replaced by the proxy's loopback address.
    let proxied =
        crate::scenario::target::with_host_port(&written, &proxy.local_addr().to_string());
    let target = match &scenario.target {
        Target::Broker(b) => Target::Broker(crate::scenario::model::BrokerTarget {
            url: proxied,
            ..b.clone()
        }),
        Target::Http(h) => Target::Http(crate::scenario::model::HttpTarget {
            url: proxied,
            ..h.clone()
        }),
        Target::Embedded(e) => Target::Embedded(e.clone()),
    };
    Ok((target, proxy))
}

async fn provider_client(
    scenario: &Scenario,
    core: &Arc<ProviderCore>,
    mut stop: watch::Receiver<bool>,
) -> Result<ProviderClient, RunError> {
    match scenario.provider.via {
        ProviderVia::InProcess => Ok(ProviderClient::InProcess(core.clone())),
        ProviderVia::Http => {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let (addr, _server) = crate::services::provider::serve(core.clone(), shutdown)
                .await
                .map_err(RunError::Provider)?;
            ProviderClient::http(format!("http://{addr}"), &scenario.provider)
                .map_err(|e| RunError::Provider(std::io::Error::other(e.to_string())))
        }
    }
}

async fn start_services(
    scenario: &Scenario,
    seed: u64,
    publisher: &Publisher,
    factory: &OrderFactory,
    client: Arc<ProviderClient>,
    chaos: &Arc<Chaos>,
    stop: watch::Receiver<bool>,
) -> Result<Pipeline, RunError> {
    let env = ServiceEnv {
        publisher: publisher.clone(),
    };
    let s = &scenario.services;
    let analytics = Arc::new(Analytics::new(env.clone(), s.analytics.idempotent));
    let inventory = Arc::new(Inventory::new(
        env.clone(),
        s.inventory.idempotent,
        factory.initial_stock(),
    ));
    let all: [(&ServiceConfig, Arc<dyn Service>); 5] = [
        (
            &s.payment,
            Arc::new(Payment::new(
                env.clone(),
                client,
                s.payment.idempotent,
                scenario.provider.retries,
            )),
        ),
        (&s.inventory, inventory.clone()),
        (
            &s.email,
            Arc::new(Email {
                env: env.clone(),
                idempotency: Idempotency::new(s.email.idempotent),
            }),
        ),
        (
            &s.warehouse,
            Arc::new(Warehouse {
                env: env.clone(),
                idempotency: Idempotency::new(s.warehouse.idempotent),
                announced: Processed::default(),
            }),
        ),
        (&s.analytics, analytics.clone()),
    ];
    let mut tasks = JoinSet::new();
    let mut enabled = Vec::new();
    let mut runners = Vec::new();
    for (config, service) in all {
        if !config.enabled {
            continue;
        }
        enabled.push(service.kind());
        runners.push(Arc::new(Runner {
            service,
            config: config.clone(),
            transport: publisher.transport.clone(),
            observer: publisher.observer.clone(),
            seed,
            faults: chaos.clone(),
            failures: std::sync::Mutex::new(HashMap::new()),
        }));
    }
    // Every service's members join at once: the groups are independent, and on Kafka each
    // one takes seconds to assemble.
    let mut joining = JoinSet::new();
    for (i, runner) in runners.iter().enumerate() {
        let runner = runner.clone();
        joining.spawn(async move { (i, runner.join().await) });
    }
    let mut members: Vec<Option<Vec<_>>> = runners.iter().map(|_| None).collect();
    while let Some(joined) = joining.join_next().await {
        let (i, joined) = joined.map_err(|e| TransportError::Group {
            group: "services".to_owned(),
            source: crate::transport::Cause::from(e).context("joining panicked"),
        })?;
        members[i] = Some(joined?);
    }
    for (runner, first) in runners.into_iter().zip(members) {
        runner.start(first.unwrap_or_default(), stop.clone(), &mut tasks);
    }
    if s.park_dead_letters() {
        let sub = publisher
            .transport
            .subscribe(
                crate::services::runner::DEAD_LETTER_AUDIT,
                &[crate::events::Topic::DeadLetter],
            )
            .await?;
        tasks.spawn(crate::services::runner::audit_dead_letters(
            sub,
            publisher.observer.clone(),
            stop.clone(),
        ));
    }
    Ok(Pipeline {
        tasks,
        groups: enabled.clone(),
        analytics: enabled
            .contains(&ServiceKind::Analytics)
            .then_some(analytics),
        inventory: enabled
            .contains(&ServiceKind::Inventory)
            .then_some(inventory),
        enabled,
    })
}

/// Turns true once `signal` names one, until the run stops: the driver and the drain only
/// need to know whether to stop, the summary which signal it was.
fn interrupted(
    mut signal: watch::Receiver<Option<StopSignal>>,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(signal.borrow().is_some());
    tokio::spawn(async move {
        tokio::select! {
            got = signal.wait_for(Option::is_some) => {
                if got.is_ok() {
                    let _ = tx.send(true);
                }
            }
            _ = crate::load::driver::stopped(&mut stop) => {}
        }
    });
    rx
}

async fn lags(
    transport: &Arc<dyn Transport>,
    groups: &[ServiceKind],
) -> Vec<(ServiceKind, Option<u64>)> {
    let mut out = Vec::with_capacity(groups.len());
    for &g in groups {
        out.push((g, transport.lag(g.name()).await.ok()));
    }
    out
}

/// Closes each second of the run until `stop`.
async fn tick(
    observer: Arc<Observer>,
    transport: Arc<dyn Transport>,
    groups: Vec<ServiceKind>,
    schedule: Arc<Schedule>,
    progress: Progress,
    mut stop: watch::Receiver<bool>,
) {
    let clock = &observer.clock;
    let mut second: u32 = 0;
    loop {
        let end = u64::from(second + 1) * 1_000_000_000;
        tokio::select! {
            _ = clock.sleep_until(end) => {}
            _ = crate::load::driver::stopped(&mut stop) => break,
        }
        close(&observer, &transport, &groups, second).await;
        progress.update(&observer, &schedule, second);
        second += 1;
    }
    // The last, partial second.
    close(&observer, &transport, &groups, second).await;
}

/// Closes `second` now, then asks the broker for the groups' lags.
async fn close(
    observer: &Observer,
    transport: &Arc<dyn Transport>,
    groups: &[ServiceKind],
    second: u32,
) {
    let mut sample = observer.close_second(second);
    sample.lag = lags(transport, groups).await;
    observer.record_sample(sample);
}

/// Waits until every checkout is answered, no service is handling anything and every group
/// has committed everything, or until `limit`, or until an interrupt; returns what was still
/// pending then.
async fn drain_until_quiet(
    observer: &Observer,
    transport: &Arc<dyn Transport>,
    groups: &[ServiceKind],
    limit: Duration,
    not_before: crate::clock::RunTime,
    interrupt: &watch::Receiver<bool>,
) -> Settlement {
    let clock = &observer.clock;
    let deadline = (clock.now() + duration_ns(limit)).max(not_before);
    let interrupted_before = *interrupt.borrow();
    loop {
        let c = &observer.counters;
        let quiet = c.open_checkouts.load(Relaxed) == 0
            && c.processing.load(Relaxed) == 0
            && c.dead_letters_arrived.load(Relaxed) >= c.dead_lettered.load(Relaxed)
            && clock.now() >= not_before;
        let ending = clock.now() >= deadline || (!interrupted_before && *interrupt.borrow());
        if quiet || ending {
            // A lag the broker cannot tell counts as not drained.
            let lags = lags(transport, groups).await;
            if ending || lags.iter().all(|(_, lag)| *lag == Some(0)) {
                return Settlement::now(c, lags);
            }
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}
