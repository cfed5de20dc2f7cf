//! `doorbuster run SCENARIO`: validate, run and judge a scenario; print the verdict table
//! and where the report went. Ctrl-C, SIGTERM and SIGHUP stop the run early with a partial
//! report.

use std::path::{Path, PathBuf};

use anyhow::Context;
use doorbuster::exit::{Exit, StopSignal};
use doorbuster::report::terminal::{closing_lines, verdict_table};
use doorbuster::run::shard::{Shard, Sharding, parse_run_id};
use doorbuster::run::{RunOptions, execute};
use doorbuster::scenario;
use tokio::runtime::Runtime;

use super::print_warnings;

/// `run`'s own flags (beside the scenario overrides `validate` shares).
#[derive(clap::Args)]
pub struct RunFlags {
    /// The run folder (default: reports/<scenario>-<time>-seed<N>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Overrides the scenario's seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// No live progress view.
    #[arg(long, short)]
    pub quiet: bool,
    /// Serve live metrics for Prometheus at http://ADDR/metrics while the run goes
    /// (loopback only), e.g. 127.0.0.1:9464; deploy/grafana/doorbuster.json charts them.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Start the load at this instant (RFC 3339 UTC, e.g. 2026-12-07T06:00:00Z) instead
    /// of when setup ends, so that runs on several machines start together; a start
    /// later than the scenario's max_send_lag makes the run INVALID.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,
    /// Make only shard i of n (from 0): the orders whose id is i modulo n, each at its
    /// planned time (1/n of every phase's rate); the shard judges nothing and leaves its
    /// state for `doorbuster merge`. Needs --run-id and --start-at.
    #[arg(long, value_name = "i/n", value_parser = Shard::parse, requires = "run_id")]
    pub shard: Option<Shard>,
    /// The run's name, shared by its shards: their streams and consumer groups on the
    /// broker are doorbuster-<ID>'s, so the shards' services join the same groups. Use a
    /// run id once.
    #[arg(long, value_name = "ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
}

/// `--start-at`: an RFC 3339 instant in UTC (`2026-12-07T06:00:00Z`, fractions allowed), at
/// most a day ahead. One in the past is taken: the run starts at once and says how late.
pub fn parse_start_at(text: &str) -> Result<std::time::SystemTime, String> {
    let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        format!("{e}: expected an RFC 3339 instant in UTC, like 2026-12-07T06:00:00Z")
    })?;
    let ahead = at
        .duration_since(doorbuster::clock::wall_now())
        .unwrap_or_default();
    if ahead > std::time::Duration::from_secs(24 * 3600) {
        return Err(format!(
            "{text} is {} away; a run waits at most a day for its start",
            humantime::format_duration(std::time::Duration::from_secs(ahead.as_secs()))
        ));
    }
    Ok(at)
}

pub fn run(
    runtime: &Runtime,
    arg: &str,
    flags: RunFlags,
    overrides: scenario::Overrides,
) -> anyhow::Result<Exit> {
    let RunFlags {
        out,
        seed,
        quiet,
        metrics_listen,
        start_at,
        shard,
        run_id,
    } = flags;
    let sharding = run_id.map(|run_id| Sharding {
        run_id,
        shard: shard.unwrap_or(Shard { index: 0, count: 1 }),
    });
    if let Some(Err(why)) = metrics_listen.map(doorbuster::report::metrics::loopback_only) {
        errln!("error: {why}");
        return Ok(Exit::BadInput);
    }
    if let Some(out) = &out
        && let Some((format, file)) = out.to_str().and_then(|o| o.split_once('='))
        && !out.exists()
    {
        errln!(
            "error: --out takes the run's folder, not {format}={file}: doorbuster writes \
             summary.json, summary.md, report.html, junit.xml and the interval logs into it \
             (e.g. --out reports/{format}-run)"
        );
        return Ok(Exit::BadInput);
    }
    let run_arg = reproduce_args(&overrides);
    // The same validation as `validate`, with the flags applied and every ${ENV} required:
    // everything `run` refuses about the scenario is refused here, with its position, before
    // anything connects.
    let (scenario, source) = match scenario::load_with(arg, &scenario::Context::run(overrides)) {
        Ok(loaded) => {
            print_warnings(arg, &loaded.warnings);
            (loaded.scenario, loaded.source)
        }
        Err(e) => {
            errln!("{e}");
            print_warnings(&e.origin, &e.warnings);
            return Ok(Exit::BadInput);
        }
    };
    if start_at.is_none() && sharding.as_ref().is_some_and(Sharding::is_part) {
        errln!(
            "error: --shard needs --start-at: the shards of a run start their load at one \
             agreed instant, or their orders would not leave at the times one process's would"
        );
        return Ok(Exit::BadInput);
    }
    if let scenario::model::Target::Broker(b) = &scenario.target
        && let doorbuster::transport::BrokerOptions::Rabbitmq(o) = &b.options
        && o.queue_type == doorbuster::transport::QueueType::Stream
        && sharding.as_ref().is_some_and(Sharding::is_part)
    {
        errln!(
            "error: --shard cannot split a run on RabbitMQ stream queues: their groups' \
             offsets live in each process, so every shard would handle every event; use \
             classic or quorum queues (target option queue_type)"
        );
        return Ok(Exit::BadInput);
    }
    if scenario.observe.is_some() && sharding.as_ref().is_some_and(Sharding::is_part) {
        errln!(
            "error: --shard cannot split an observe-mode scenario yet: what the taps see of \
             the shop's outputs is not merged across shards; run it as one process"
        );
        return Ok(Exit::BadInput);
    }
    if let Some(why) = sharding
        .as_ref()
        .filter(|s| s.is_part())
        .and_then(|_| state_apart(&scenario))
    {
        errln!(
            "warning: {why}, and on this broker each shard's services keep their own \
             idempotency stores and provider, so the merged run may count such an order's \
             effects twice where one process would not (docs/distributed.md)"
        );
    }
    runtime.block_on(async move {
        let (interrupt_tx, interrupt_rx) = tokio::sync::watch::channel(None);
        let signals = StopSignals::listen().context("cannot listen for signals")?;
        tokio::spawn(async move {
            let signal = signals.next().await;
            errln!(
                "\n{}: stopping the load, draining briefly, writing the partial report",
                signal.name()
            );
            let _ = interrupt_tx.send(Some(signal));
        });
        let options = RunOptions {
            seed,
            out_dir: out,
            progress: !quiet,
            run_arg: format!("{}{run_arg}", source.run_arg()),
            interrupt: Some(interrupt_rx),
            metrics_listen,
            start_at,
            sharding: sharding.clone(),
            ..RunOptions::default()
        };
        if let Some(at) = start_at {
            outln!(
                "the load starts at {} (after setup), the instant agreed with --start-at",
                humantime::format_rfc3339_millis(at)
            );
        }
        match execute(&scenario, options).await {
            Ok(result) => {
                outln!("{}", verdict_table(&result.summary));
                out!("{}", closing_lines(&result.summary));
                if let Some(dir) = &result.dir {
                    outln!("report: {}", dir.join("report.html").display());
                    outln!("summary: {}", dir.join("summary.json").display());
                }
                step_summary(&result.summary);
                if let (Some(sharding), Some(dir)) = (&sharding, &result.dir)
                    && sharding.is_part()
                    && result.summary.interrupted_by.is_none()
                {
                    // A shard judges nothing: it did its part when its state is written.
                    outln!(
                        "shard {} of run {}: not judged here; its state: {}\njudge the run: \
                         doorbuster merge <the {} shards' folders> --out <folder>",
                        sharding.shard,
                        sharding.run_id,
                        dir.join(doorbuster::run::shard::STATE_FILE).display(),
                        sharding.shard.count
                    );
                    return Ok(Exit::Success);
                }
                Ok(Exit::of_run(
                    result.summary.verdict,
                    result.summary.interrupted_by,
                ))
            }
            Err(e) => {
                errln!("error: {e}");
                Ok(Exit::from(&e))
            }
        }
    })
}

/// The flags to repeat in the reproduce command (passwords masked).
pub fn reproduce_args(overrides: &scenario::Overrides) -> String {
    let mut args = String::new();
    if let Some(url) = &overrides.target {
        args.push_str(&format!(
            " --target '{}'",
            doorbuster::transport::redact_url(url)
        ));
    }
    if overrides.allow_remote {
        args.push_str(" --allow-remote");
    }
    if let Some(factor) = overrides.rate_scale {
        args.push_str(&format!(" --rate-scale {factor}"));
    }
    if let Some(hold) = overrides.hold {
        args.push_str(&format!(" --hold {}", humantime::format_duration(hold)));
    }
    args
}

/// The signals that stop a run the way Ctrl-C does: CI timeouts, cancelled jobs and `docker
/// stop` send SIGTERM, a closed terminal or SSH session SIGHUP. Once listened for, a signal
/// no longer kills the process, so the run can write its partial report.
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn listen() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The first of them to arrive.
    pub async fn next(mut self) -> StopSignal {
        tokio::select! {
            _ = self.interrupt.recv() => StopSignal::Sigint,
            _ = self.terminate.recv() => StopSignal::Sigterm,
            _ = self.hangup.recv() => StopSignal::Sighup,
        }
    }
}

/// Appends the Markdown summary to GitHub Actions' job page when running there.
fn step_summary(summary: &doorbuster::report::summary::Summary) {
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let markdown = doorbuster::report::markdown::render(summary);
        if let Err(e) = doorbuster::report::markdown::append_to(Path::new(&path), &markdown) {
            errln!("warning: cannot append to $GITHUB_STEP_SUMMARY: {e}");
        }
    }
}

/// Why a sharded run of `scenario` may see an order's events handled in two shards whose
/// services' state is apart, if it may: behind a checkout endpoint the shop is the user's,
/// the embedded broker keeps an order in its shard, and on Redis and NATS the shards share
/// their services' state. On RabbitMQ any member takes any event; on Kafka an order's
/// partition moves only when a consumer crashes or stalls.
fn state_apart(scenario: &doorbuster::scenario::model::Scenario) -> Option<String> {
    use doorbuster::chaos::model::FaultKind;
    use doorbuster::load::shard::{one_process_per_key, shares_state};
    let target = &scenario.target;
    let on_a_broker = matches!(target, doorbuster::transport::Target::Broker(_));
    if !on_a_broker || shares_state(target) {
        return None;
    }
    let resubmits = scenario.orders.resubmits.fraction();
    if resubmits > 0.0 && !one_process_per_key(target) {
        return Some(format!(
            "orders.resubmits is {}%: a resubmitted checkout's second order.created may be \
             handled by another shard",
            resubmits * 100.0
        ));
    }
    let moves = (scenario.faults.iter())
        .find(|f| matches!(f.kind, FaultKind::Crash { .. } | FaultKind::Pause { .. }));
    moves.map(|f| {
        format!(
            "the fault at {} stops a consumer: what it held is handed to a member that may be \
             in another shard",
            humantime::format_duration(f.at)
        )
    })
}
