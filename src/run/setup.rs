//! Setup: everything before t=0. Connect (through the fault proxy when the scenario has
//! link faults), start the provider and every service's consumers, begin the clock, write
//! what a killed run's report needs, and start the fault timeline and the ticker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{RunError, RunOptions};
use crate::chaos::proxy::ProxyHandle;
use crate::chaos::reorder::ReorderTransport;
use crate::chaos::{Chaos, ChaosCtx, run_timeline};
use crate::clock::Clock;
use crate::exit::StopSignal;
use crate::load::Schedule;
use crate::observe::Observer;
use crate::observe::hlog::IntervalLogs;
use crate::observe::outputs::Outputs;
use crate::orders::OrderFactory;
use crate::orders::template::Renderer;
use crate::publisher::Publisher;
use crate::report::partial::RunRecord;
use crate::report::progress::Progress;
use crate::scenario::model::{ProviderVia, Scenario, Service as ServiceConfig, Target};
use crate::services::analytics::Analytics;
use crate::services::email::Email;
use crate::services::inventory::Inventory;
use crate::services::payment::Payment;
use crate::services::provider::{ProviderClient, ProviderCore};
use crate::services::runner::Runner;
use crate::services::warehouse::Warehouse;
use crate::services::{Service, ServiceEnv};
use crate::topology::ServiceKind;
use crate::transport::{Transport, TransportError};

/// A run between its steps: what setup started, for `drive`, `drain` and `judge`.
pub struct Run<'s> {
    pub(super) scenario: &'s Scenario,
    pub(super) seed: u64,
    pub(super) run_arg: String,
    pub(super) schedule: Arc<Schedule>,
    pub(super) dir: Option<PathBuf>,
    pub(super) observer: Arc<Observer>,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) factory: Arc<OrderFactory>,
    pub(super) renderer: Option<Arc<Renderer>>,
    pub(super) publisher: Publisher,
    pub(super) provider: Arc<ProviderCore>,
    pub(super) client: Arc<ProviderClient>,
    pub(super) pipeline: Pipeline,
    pub(super) progress: Progress,
    /// Names the signal that interrupted the run, if one did.
    pub(super) signal: watch::Receiver<Option<StopSignal>>,
    /// Cancelled when a signal interrupts the run.
    pub(super) interrupt: CancellationToken,
    /// Stops the services, the provider's server, the timeline and the ticker; cancelled by
    /// the drain, or when the run is dropped early.
    pub(super) stop: CancellationToken,
    /// Stops the fault proxy, after the broker's cleanup.
    pub(super) proxy_stop: CancellationToken,
    pub(super) timeline: Option<JoinHandle<()>>,
    pub(super) ticker: Option<JoinHandle<()>>,
    /// Observe mode: the broker the taps read, when it is not the target's.
    pub(super) tapped_broker: Option<Arc<dyn Transport>>,
    /// How the start kept `--start-at`'s instant, when there was one.
    pub(super) start: Option<crate::clock::StartSync>,
    /// One of several processes of one run, when it is.
    pub(super) sharding: Option<super::shard::Sharding>,
    _stop_on_drop: DropGuard,
    _proxy_stop_on_drop: DropGuard,
}

/// The services a run started: their tasks, and what the judge reads back from them.
pub(super) struct Pipeline {
    pub(super) tasks: JoinSet<()>,
    pub(super) enabled: Vec<ServiceKind>,
    /// The consumer groups whose lag the ticker and the drain watch.
    pub(super) groups: Vec<ServiceKind>,
    pub(super) analytics: Option<Arc<Analytics>>,
    pub(super) inventory: Option<Arc<Inventory>>,
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
pub(super) fn target_info(
    transport: &dyn Transport,
    scenario: &Scenario,
) -> crate::transport::TransportInfo {
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

impl<'s> Run<'s> {
    pub async fn setup(scenario: &'s Scenario, opts: RunOptions) -> Result<Run<'s>, RunError> {
        let seed = opts.seed.unwrap_or(scenario.seed);
        let clock = Clock::start();
        let schedule = Arc::new(Schedule::plan(&scenario.load, seed));
        let renderer = match &scenario.orders.payload {
            Some(payload) => Some(Arc::new(Renderer::new(payload)?)),
            None => None,
        };
        // What the target can carry (faults, the checkout mode) was checked with the scenario:
        // `scenario::validate` refuses the misfits with their position.
        let checkout_only = matches!(scenario.target, Target::Http(_));
        // Stops the fault proxy at the end, or on any early return.
        let proxy_stop = CancellationToken::new();
        let proxy_stop_on_drop = proxy_stop.clone().drop_guard();
        // Connect first: an unreachable broker leaves no half-made run folder behind.
        let (transport, proxy) = connect(scenario, seed, &opts, &clock, &proxy_stop).await?;
        // The user's services connect through these: up before anything else starts.
        let links = user_links(scenario, seed, &proxy_stop).await?;
        let dir = (!opts.no_files).then(|| {
            opts.out_dir
                .clone()
                .unwrap_or_else(|| crate::report::default_run_dir(&scenario.name, seed))
        });
        let factory = Arc::new(factory_for(scenario, seed, opts.sharding.as_ref()));
        let mut observer = planned_observer(scenario, clock.clone(), &schedule);
        if let Some(sharding) = &opts.sharding {
            observer = observer.with_event_ids_from(u64::from(sharding.shard.index) << 40);
        }
        if let Some(observe) = &scenario.observe {
            let windows = (scenario.faults.iter())
                .map(|f| {
                    let at = crate::clock::duration_ns(f.at);
                    (
                        at,
                        at + crate::clock::duration_ns(f.duration.unwrap_or_default()),
                    )
                })
                .collect();
            let orders = Arc::new(crate::load::PlannedOrders::new(&schedule, factory.clone()));
            observer = observer.with_outputs(Outputs::new(observe, orders, windows));
        }
        let observer = Arc::new(observer);
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
        let publisher = Publisher {
            transport: transport.clone(),
            observer: observer.clone(),
        };

        // Stops the services, the provider's server, the timeline and the ticker at the end of
        // the run, or on any early return.
        let stop = CancellationToken::new();
        let stop_on_drop = stop.clone().drop_guard();
        // The shards of one run id share their services' state on the broker, as a real
        // service's replicas share one database; one process keeps it in memory.
        let shared = match &opts.sharding {
            Some(_) => transport.shared_store().await?,
            None => None,
        };
        let mut provider = ProviderCore::new(seed, &scenario.provider, clock.clone());
        if let Some(store) = &shared {
            provider = provider.share(store.clone());
        }
        let provider = Arc::new(provider);
        let client = Arc::new(provider_client(scenario, &provider, stop.clone()).await?);
        // Behind a checkout endpoint the pipeline is the shop's own: no services run here.
        // In observe mode the shop is the user's too, and the taps read its outputs.
        let mut tapped_broker = None;
        let pipeline = if let Some(observe) = &scenario.observe {
            let taps_on = match &observe.broker {
                // The shop behind a checkout endpoint writes to a broker of its own.
                Some(b) => {
                    let b = crate::scenario::model::BrokerTarget {
                        allow_remote: b.allow_remote || target_allows_remote(scenario),
                        ..b.clone()
                    };
                    let t = crate::transport::connect(&Target::Broker(b), clock.clone()).await?;
                    tapped_broker = Some(t.clone());
                    t
                }
                None => transport.clone(),
            };
            start_taps(&taps_on, &observer, stop.clone()).await?
        } else if checkout_only {
            Pipeline::none()
        } else {
            let env = ServiceEnv {
                publisher: publisher.clone(),
                seed,
                shared: shared.clone(),
                process: opts.sharding.as_ref().map_or(0, |s| s.shard.index),
            };
            start_services(
                scenario,
                env,
                &factory,
                client.clone(),
                &chaos,
                stop.clone(),
            )
            .await?
        };
        // Setup is over: the provider answers and every service's consumers have joined their
        // groups (on Kafka, each member holds its partitions, which takes seconds). The load's
        // t=0 is now, so that no arrival is due before the system under test could take it.
        // With `--start-at`, t=0 is the agreed instant, which several machines share.
        let signal = opts
            .interrupt
            .clone()
            .unwrap_or_else(|| watch::channel(None).1);
        let interrupt = interrupted(signal.clone(), stop.clone());
        let (setup, start) = match opts.start_at {
            Some(agreed) => tokio::select! {
                (setup, start) = clock.begin_at(agreed) => (setup, Some(start)),
                // A signal during the wait: the load starts now and stops at once, so the
                // run ends interrupted, with its report.
                _ = interrupt.cancelled() => (clock.begin(), None),
            },
            None => (clock.begin(), None),
        };
        tracing::info!(
            setup_ms = setup.as_millis() as u64,
            "setup done; the load starts"
        );
        if let Some(dir) = &dir {
            record(dir, scenario, seed, &opts, &schedule, &observer, &transport)?;
        }
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
                links,
                interrupt: Some(interrupt.clone()),
            },
            stop.clone(),
        ));

        if let Some(addr) = opts.metrics_listen {
            let listener = crate::report::metrics::bind(addr)
                .await
                .map_err(super::RunError::Metrics)?;
            let live = crate::report::metrics::Live {
                observer: observer.clone(),
                schedule: schedule.clone(),
                provider: provider.clone(),
            };
            tokio::spawn(crate::report::metrics::serve(listener, live, stop.clone()));
        }
        let progress = Progress::new(opts.progress, scenario, &schedule);
        let ticker = tokio::spawn(super::drive::tick(
            observer.clone(),
            transport.clone(),
            pipeline.groups.clone(),
            schedule.clone(),
            progress.clone(),
            stop.clone(),
        ));

        Ok(Run {
            scenario,
            seed,
            run_arg: opts.run_arg,
            schedule,
            dir,
            observer,
            transport,
            factory,
            renderer,
            publisher,
            provider,
            client,
            pipeline,
            progress,
            signal,
            interrupt,
            stop,
            proxy_stop,
            timeline: Some(timeline),
            ticker: Some(ticker),
            tapped_broker,
            start,
            sharding: opts.sharding,
            _stop_on_drop: stop_on_drop,
            _proxy_stop_on_drop: proxy_stop_on_drop,
        })
    }
}

/// The run's order factory. The user's shop outlives the run: in observe mode and behind a
/// checkout endpoint this run's orders get keys and uids of their own, so that neither side
/// takes them for an earlier run's with the same seed (a checkout endpoint would answer them
/// as replays: a capacity search's second step would find its orders already taken). The
/// shards of one run id share theirs.
pub(super) fn factory_for(
    scenario: &Scenario,
    seed: u64,
    sharding: Option<&super::shard::Sharding>,
) -> OrderFactory {
    let factory = OrderFactory::new(seed, &scenario.orders);
    if scenario.observe.is_some() || matches!(scenario.target, Target::Http(_)) {
        factory.with_key_salt(sharding.map_or_else(crate::rng::run_nonce, |s| s.key_salt()))
    } else {
        factory
    }
}

/// An observer for the schedule's orders with the scenario's fault windows planned.
pub(super) fn planned_observer(scenario: &Scenario, clock: Clock, schedule: &Schedule) -> Observer {
    Observer::new(clock, schedule.orders()).with_fault_plan(
        scenario
            .faults
            .iter()
            .map(|f| (f.at, f.duration.map(|d| f.at + d))),
    )
}

/// Connects to the scenario's target, or takes the transport the options give; through the
/// fault proxy when the scenario has link faults.
///
/// The embedded broker frees what every group committed unless the timeline replays (a
/// rewind must find the events again), so a long run's memory follows its backlog.
fn memory_bounded(scenario: &Scenario) -> Target {
    let replays = scenario
        .faults
        .iter()
        .any(|f| matches!(f.kind, crate::scenario::model::FaultKind::Replay { .. }));
    match &scenario.target {
        Target::Embedded(e) => Target::Embedded(crate::transport::target::EmbeddedTarget {
            free_committed: !replays,
            ..e.clone()
        }),
        other => other.clone(),
    }
}

async fn connect(
    scenario: &Scenario,
    seed: u64,
    opts: &RunOptions,
    clock: &Clock,
    proxy_stop: &CancellationToken,
) -> Result<(Arc<dyn Transport>, Option<ProxyHandle>), RunError> {
    // Link faults on doorbuster's own connection (not on one of the user's links).
    let links = scenario.faults.iter().any(|f| {
        matches!(
            f.kind,
            crate::scenario::model::FaultKind::Link { on: None, .. }
        )
    });
    // The shards of one run id share their namespace on the broker.
    let namespace = opts.sharding.as_ref().map(|s| s.namespace());
    Ok(match &opts.transport {
        Some(t) => (t.clone(), None),
        None if links => {
            let (target, proxy) = through_fault_proxy(scenario, seed, proxy_stop.clone()).await?;
            (
                crate::transport::connect_in(&target, clock.clone(), namespace).await?,
                Some(proxy),
            )
        }
        None => (
            crate::transport::connect_in(&memory_bounded(scenario), clock.clone(), namespace)
                .await?,
            None,
        ),
    })
}

/// How long a chunk of the ledger stays unchanged before it is paged out to the run's
/// folder: its orders settled well before (a redelivery after it only pages it back in).
const LEDGER_QUIET: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts the interval logs and the ledger's page file, and writes `run.json`: what a report
/// rebuilt after a kill needs and the interval logs do not hold.
fn record(
    dir: &Path,
    scenario: &Scenario,
    seed: u64,
    opts: &RunOptions,
    schedule: &Schedule,
    observer: &Observer,
    transport: &Arc<dyn Transport>,
) -> Result<(), RunError> {
    let report_error = |source| RunError::Report {
        path: dir.to_path_buf(),
        source,
    };
    let started = observer.clock.wall_start_unix_ns();
    // A shard logs every latency, for the merge to add exactly.
    let logged = crate::observe::hlog::Logged::every(opts.sharding.is_some());
    let logs = IntervalLogs::create_for(dir, started, &logged).map_err(report_error)?;
    observer.write_interval_logs(logs);
    let pages = tempfile::tempfile_in(dir).map_err(report_error)?;
    observer.ledger.page_to(pages, LEDGER_QUIET);
    RunRecord::of(
        scenario,
        seed,
        &opts.run_arg,
        schedule,
        target_info(transport.as_ref(), scenario),
        started,
    )
    .write(dir)
    .map_err(report_error)
}

/// Starts the TCP fault proxy in front of the scenario's broker (or checkout endpoint) for
/// its `link` faults and returns the target pointed at the proxy.
async fn through_fault_proxy(
    scenario: &Scenario,
    seed: u64,
    stop: CancellationToken,
) -> Result<(Target, ProxyHandle), RunError> {
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
    let proxy = crate::chaos::proxy::Proxy::start(
        listen,
        upstream,
        seed,
        allow_remote,
        stop.cancelled_owned(),
    )
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

/// The scenario's opt-in to hosts outside loopback (its target's `allow_remote`), which
/// covers the user's links and the broker the taps read too.
fn target_allows_remote(scenario: &Scenario) -> bool {
    match &scenario.target {
        Target::Broker(b) => b.allow_remote,
        Target::Http(h) => h.allow_remote,
        Target::Embedded(_) => false,
    }
}

/// Observe mode: a fault proxy on each of the user's links (`observe.links`), listening
/// where the user's services connect and forwarding to their broker or database, for the
/// timeline's link faults; stopped with the run's own proxy.
async fn user_links(
    scenario: &Scenario,
    seed: u64,
    stop: &CancellationToken,
) -> Result<HashMap<String, ProxyHandle>, RunError> {
    let mut proxies = HashMap::new();
    let allow_remote = target_allows_remote(scenario);
    for link in scenario.observe.iter().flat_map(|o| &o.links) {
        let unreachable = |reason: String| {
            RunError::Transport(TransportError::Unreachable {
                target: format!("link {} ({})", link.name, link.to),
                source: reason.into(),
            })
        };
        let upstream = tokio::net::lookup_host(link.to.as_str())
            .await
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", link.to)))?
            .next()
            .ok_or_else(|| unreachable(format!("{} resolves to no address", link.to)))?;
        let proxy = crate::chaos::proxy::Proxy::start(
            link.listen,
            upstream,
            seed,
            allow_remote,
            stop.clone().cancelled_owned(),
        )
        .await
        .map_err(|e| unreachable(format!("fault proxy at {}: {e}", link.listen)))?;
        proxies.insert(link.name.clone(), proxy);
    }
    Ok(proxies)
}

/// The client the simulated payment service calls the provider through, and the provider's
/// server when one is wanted: `via: http` (on a port of its own), or `listen:` (where the
/// user's own payment service calls it, in observe mode).
async fn provider_client(
    scenario: &Scenario,
    core: &Arc<ProviderCore>,
    stop: CancellationToken,
) -> Result<ProviderClient, RunError> {
    let served = match (scenario.provider.listen, scenario.provider.via) {
        (Some(listen), _) => {
            crate::services::provider::serve_on(core.clone(), listen, stop.cancelled_owned()).await
        }
        // Observe mode runs no payment service of its own: nothing to serve.
        (None, ProviderVia::Http) if scenario.observe.is_none() => {
            crate::services::provider::serve(core.clone(), stop.cancelled_owned()).await
        }
        (None, _) => return Ok(ProviderClient::InProcess(core.clone())),
    };
    let (addr, _server) = served.map_err(RunError::Provider)?;
    ProviderClient::http(format!("http://{addr}"), &scenario.provider)
        .map_err(|e| RunError::Provider(std::io::Error::other(e.to_string())))
}

async fn start_services(
    scenario: &Scenario,
    env: ServiceEnv,
    factory: &OrderFactory,
    client: Arc<ProviderClient>,
    chaos: &Arc<Chaos>,
    stop: CancellationToken,
) -> Result<Pipeline, RunError> {
    let (publisher, seed) = (&env.publisher.clone(), env.seed);
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
                idempotency: env.idempotency(ServiceKind::Email, s.email.idempotent),
            }),
        ),
        (
            &s.warehouse,
            Arc::new(Warehouse {
                env: env.clone(),
                idempotency: env.idempotency(ServiceKind::Warehouse, s.warehouse.idempotent),
                announced: env.processed(ServiceKind::Warehouse, "warehouse.announced"),
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

/// Observe mode: one tap per output of the user's shop, each in place before the clock
/// starts, recording what it reads until the run stops.
async fn start_taps(
    transport: &Arc<dyn Transport>,
    observer: &Arc<Observer>,
    stop: CancellationToken,
) -> Result<Pipeline, RunError> {
    let mut pipeline = Pipeline::none();
    let Some(outputs) = &observer.outputs else {
        return Ok(pipeline);
    };
    // Webhook outputs are served, not tapped: one receiver per address.
    for served in crate::observe::webhook::serve(observer, &stop)
        .await
        .map_err(RunError::Webhook)?
    {
        pipeline.tasks.spawn(async move {
            let _ = served.await;
        });
    }
    for (index, tally) in outputs.outputs.iter().enumerate() {
        if tally.spec.webhook.is_some() {
            continue;
        }
        let mut tap = transport.tap(&tally.spec.from).await?;
        let observer = observer.clone();
        let stop = stop.clone();
        pipeline.tasks.spawn(async move {
            let Some(outputs) = &observer.outputs else {
                return;
            };
            loop {
                let next = tokio::select! {
                    next = tap.next() => next,
                    () = stop.cancelled() => return,
                };
                match next {
                    Ok(Some(event)) => outputs.tapped(index, &event),
                    Ok(None) => return,
                    Err(e) => {
                        outputs.broken(index, e.to_string());
                        observer.finding(format!("a tap stopped: {e}"));
                        return;
                    }
                }
            }
        });
    }
    Ok(pipeline)
}

/// Cancelled once `signal` names one, until the run stops: the driver and the drain only
/// need to know whether to stop, the summary which signal it was.
fn interrupted(
    mut signal: watch::Receiver<Option<StopSignal>>,
    stop: CancellationToken,
) -> CancellationToken {
    let interrupt = CancellationToken::new();
    if signal.borrow().is_some() {
        interrupt.cancel();
    }
    let cancel = interrupt.clone();
    tokio::spawn(async move {
        tokio::select! {
            got = signal.wait_for(Option::is_some) => {
                if got.is_ok() {
                    cancel.cancel();
                }
            }
            _ = stop.cancelled() => {}
        }
    });
    interrupt
}
