//! The `doorbuster` command: parse arguments, call the library, print, map to exit codes.
//! Nothing else lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doorbuster::bench::{BenchOptions, MARKDOWN_HEADER, markdown_row, search};
use doorbuster::report::compare::{Tolerances, compare, render as render_comparison};
use doorbuster::report::summary::{RunVerdict, StopSignal};
use doorbuster::report::terminal::{closing_lines, verdict_table};
use doorbuster::run::{RunError, RunOptions, execute};
use doorbuster::scenario;
use doorbuster::scenario::model::ProviderVia;
use doorbuster::transport::TransportError;

/// Exit codes (DESIGN.md §8).
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_CANNOT_RUN: u8 = 3;

/// `println!` without its panic: a reader that went away (`doorbuster scenarios | head -1`)
/// must not turn the command's exit code into a crash. What could not be written is dropped;
/// the exit code still says how the command went.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` without its panic (see `outln!`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` without its panic, for `doorbuster run x 2>&1 | head -1` (see `outln!`).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

const EXAMPLES: &str = "\
Examples:
  doorbuster run scenarios/black-friday.yaml      a Black Friday ramp, spike and cool-down
  doorbuster run black-friday --seed 11           a bundled scenario, another seed
  doorbuster run smoke --out /tmp/smoke --quiet   where the report goes, no live view
  doorbuster validate scenarios/*.yaml            check files without running them
  doorbuster scenarios                            list the bundled scenarios
  doorbuster init flash-sale                      write a commented flash-sale.yaml
  doorbuster compare reports/base reports/new     exit 1 if the new run regressed
  doorbuster report reports/black-friday-...      re-render the reports of a run, or
                                                  rebuild a killed run's partial report
  doorbuster schema > scenario.schema.json        editor completion and validation

Exit codes: 0 every check passed, 1 a check failed, 2 invalid scenario or command line,
3 the run could not be carried out or is not valid, 4 `report` rebuilt a killed run's
partial report (incomplete: no check judged), 130 / 143 / 129 interrupted by SIGINT (Ctrl-C)
/ SIGTERM / SIGHUP (partial report written).";

#[derive(Parser)]
#[command(name = "doorbuster", version, about = "Load-testing and chaos harness for commerce event systems", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (a file, or the name of a bundled one) and judge it.
    #[command(after_help = EXAMPLES)]
    Run {
        /// A scenario file, or a bundled scenario's name (see `doorbuster scenarios`).
        scenario: String,
        /// The run folder (default: reports/<scenario>-<time>-seed<N>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Overrides the scenario's seed.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// No live progress view.
        #[arg(long, short)]
        quiet: bool,
        /// Run against this broker instead of the scenario's target: kafka://host:port,
        /// nats://host:port, amqp://user:pass@host:port/vhost or redis://host:port; or POST
        /// the orders to a checkout endpoint: http(s)://host:port/path (checkout checks only).
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// Allow a target outside loopback (load goes only where it is told to).
        #[arg(long)]
        allow_remote: bool,
        /// Multiplies every phase's rate (0.5 halves the load), for brokers slower than the
        /// scenario was written for.
        #[arg(long, value_name = "FACTOR")]
        rate_scale: Option<f64>,
    },
    /// Check scenario files without running them; every error at once. With `run`'s flags,
    /// checks what `run` with them would refuse. An unset ${ENV} is a warning here (CI may set
    /// it later) and an error in `run`.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// As for `run`: check against this target instead of the scenario's.
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// As for `run`: allow a target outside loopback.
        #[arg(long)]
        allow_remote: bool,
        /// As for `run`: check the phases' rates multiplied by this factor.
        #[arg(long, value_name = "FACTOR")]
        rate_scale: Option<f64>,
    },
    /// List the bundled scenarios.
    Scenarios,
    /// Find the highest order rate the embedded pipeline sustains here, every check on.
    Bench {
        /// How the payment service reaches the provider mock.
        #[arg(long, value_enum, default_value_t = Via::InProcess)]
        provider: Via,
        /// Seconds each trial holds its rate.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The first rate tried, in orders per second.
        #[arg(long, default_value_t = 5_000.0)]
        start: f64,
        /// The search stops doubling here.
        #[arg(long, default_value_t = 400_000.0)]
        max: f64,
        /// Bisection steps between the last pass and the first failure.
        #[arg(long, default_value_t = 3)]
        refine: u32,
        /// Run against this broker (kafka://, nats://, amqp://, redis://) instead of the
        /// embedded one.
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// Measure only the publish rate (acked order.created events per second) with
        /// --clients publishes in flight, for --seconds; no services, no search.
        #[arg(long)]
        publish_only: bool,
        /// Concurrent publishes for --publish-only.
        #[arg(long, default_value_t = 50)]
        clients: usize,
    },
    /// Re-render every report format of a run from its saved summary.json; for a run killed
    /// before writing one, rebuild a partial report from run.json and the interval logs
    /// (exit 4).
    Report {
        /// The run folder (or its summary.json).
        run_dir: PathBuf,
    },
    /// Compare two runs; exit 1 when the candidate regressed beyond the tolerances.
    Compare {
        /// The reference run (folder or summary.json).
        baseline: PathBuf,
        /// The run under judgement.
        candidate: PathBuf,
        /// Relative growth allowed for gated latency percentiles, e.g. 10%
        /// (default: the candidate scenario's `checks.compare`, else 10%).
        #[arg(long, value_parser = parse_share)]
        latency_increase: Option<f64>,
        /// Latency growth below this is never a regression (default 1ms).
        #[arg(long, value_parser = humantime::parse_duration)]
        latency_floor: Option<std::time::Duration>,
        /// Percentage points the checkout-success or completion rate may fall (default 0.1).
        #[arg(long)]
        rate_drop: Option<f64>,
        /// Percentiles that gate (p50, p90, p99, p99.9, max).
        #[arg(long, value_delimiter = ',', default_value = "p50,p90,p99")]
        gate: Vec<String>,
    },
    /// Print a JSON Schema: of scenario files (default) or of summary.json.
    Schema {
        /// The summary.json schema instead of the scenario one.
        #[arg(long)]
        summary: bool,
    },
    /// Run the TCP fault proxy alone between a client and a loopback server, until Ctrl-C.
    #[command(
        after_help = "Example:\n  doorbuster proxy --listen 127.0.0.1:16379 --upstream 127.0.0.1:6379 --latency 100ms --jitter 20ms"
    )]
    Proxy {
        /// Where clients connect (loopback only).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The server to forward to (loopback unless --allow-remote).
        #[arg(long)]
        upstream: std::net::SocketAddr,
        /// Added delay per chunk.
        #[arg(long, value_parser = humantime::parse_duration)]
        latency: Option<std::time::Duration>,
        /// Uniform jitter around --latency.
        #[arg(long, value_parser = humantime::parse_duration)]
        jitter: Option<std::time::Duration>,
        /// Bytes per second, per connection and direction.
        #[arg(long, value_name = "BYTES_PER_SEC")]
        bandwidth: Option<u64>,
        /// Swallow traffic (a partition).
        #[arg(long)]
        blackhole: bool,
        /// Reset connections.
        #[arg(long)]
        reset: bool,
        /// Which way the toxics act.
        #[arg(long, value_enum, default_value_t = Way::Both)]
        direction: Way,
        /// Share of connections the toxics apply to, e.g. 50%.
        #[arg(long, default_value = "100%", value_parser = parse_share)]
        share: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Allow an upstream outside loopback.
        #[arg(long)]
        allow_remote: bool,
    },
    /// Write a commented scenario template to NAME.yaml.
    Init {
        name: String,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOORBUSTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            scenario,
            out,
            seed,
            quiet,
            target,
            allow_remote,
            rate_scale,
        } => run(
            &scenario,
            out,
            seed,
            quiet,
            scenario::Overrides {
                target,
                allow_remote,
                rate_scale,
            },
        ),
        Command::Validate {
            files,
            target,
            allow_remote,
            rate_scale,
        } => Ok(validate(
            &files,
            &scenario::Overrides {
                target,
                allow_remote,
                rate_scale,
            },
        )),
        Command::Scenarios => {
            for (name, text) in scenario::bundled() {
                let description = scenario::parse(name, text)
                    .map(|s| s.description)
                    .unwrap_or_default();
                outln!("{name:<16} {description}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { name, force } => init(&name, force),
        Command::Report { run_dir } => rerender(&run_dir),
        Command::Proxy {
            listen,
            upstream,
            latency,
            jitter,
            bandwidth,
            blackhole,
            reset,
            direction,
            share,
            seed,
            allow_remote,
        } => {
            use doorbuster::chaos::proxy::{Direction, LinkToxic, ToxicSpec};
            let mut toxics = Vec::new();
            if latency.is_some() || jitter.is_some() {
                toxics.push(LinkToxic::Latency {
                    latency: latency.unwrap_or_default(),
                    jitter: jitter.unwrap_or_default(),
                });
            }
            if let Some(bytes_per_sec) = bandwidth {
                toxics.push(LinkToxic::Bandwidth { bytes_per_sec });
            }
            if blackhole {
                toxics.push(LinkToxic::Blackhole);
            }
            if reset {
                toxics.push(LinkToxic::Reset);
            }
            let direction = match direction {
                Way::Upstream => Direction::Upstream,
                Way::Downstream => Direction::Downstream,
                Way::Both => Direction::Both,
            };
            let specs = toxics
                .into_iter()
                .map(|t| {
                    ToxicSpec::new(t)
                        .direction(direction)
                        .share(doorbuster::scenario::model::Share(share.min(1.0)))
                })
                .collect();
            proxy(listen, upstream, specs, seed, allow_remote)
        }
        Command::Compare {
            baseline,
            candidate,
            latency_increase,
            latency_floor,
            rate_drop,
            gate,
        } => compare_runs(
            &baseline,
            &candidate,
            ToleranceFlags {
                latency_increase,
                latency_floor,
                rate_drop,
                gate,
            },
        ),
        Command::Schema { summary } => {
            if summary {
                outln!("{}", doorbuster::report::summary_schema());
            } else {
                outln!("{}", scenario::schema::json());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            seconds,
            target,
            publish_only: true,
            clients,
            ..
        } => publish_bench(target, clients.max(1), seconds.max(1)),
        Command::Bench {
            provider,
            seconds,
            start,
            max,
            refine,
            target,
            ..
        } => bench(BenchOptions {
            via: match provider {
                Via::Http => ProviderVia::Http,
                Via::InProcess => ProviderVia::InProcess,
            },
            seconds: seconds.max(1),
            start_rate: start.max(1.0),
            max_rate: max,
            refine,
            target,
        }),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Way {
    Upstream,
    Downstream,
    Both,
}

fn proxy(
    listen: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    toxics: Vec<doorbuster::chaos::proxy::ToxicSpec>,
    seed: u64,
    allow_remote: bool,
) -> anyhow::Result<ExitCode> {
    use doorbuster::chaos::proxy::{ProxyError, run_standalone};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    errln!("proxying {listen} -> {upstream}; Ctrl-C stops");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match runtime.block_on(run_standalone(
        listen,
        upstream,
        toxics,
        seed,
        allow_remote,
        shutdown,
    )) {
        Ok(stats) => {
            outln!("{stats:?}");
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (ProxyError::RemoteUpstream { .. }
            | ProxyError::RemoteListen { .. }
            | ProxyError::InvalidToxic { .. }),
        ) => {
            errln!("proxy: {e}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
        Err(e) => {
            errln!("proxy: {e}");
            Ok(ExitCode::from(EXIT_CANNOT_RUN))
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Via {
    InProcess,
    Http,
}

fn publish_bench(target: Option<String>, clients: usize, seconds: u64) -> anyhow::Result<ExitCode> {
    let mut scenario_target = scenario::Target::Embedded(scenario::EmbeddedTarget {
        partitions: 12,
        retention: 100_000_000,
    });
    if let Some(url) = &target {
        match scenario::target::target_of_url(url) {
            Ok(target) => scenario_target = target,
            Err(e) => {
                errln!("error: --target: {}", e.message);
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(doorbuster::bench::publish_rate(
        &scenario_target,
        clients,
        std::time::Duration::from_secs(seconds),
    ));
    match report {
        Ok(r) => {
            outln!(
                "{}: {:.0} acked publishes/s ({} acked, {} failed in {:.1} s, {} clients, {} B payload, ack latency p50 {} us p99 {} us)",
                r.target,
                r.rate,
                r.acked,
                r.failed,
                r.seconds,
                r.clients,
                r.payload_bytes,
                r.latency_p50_us,
                r.latency_p99_us
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ TransportError::Config { .. }) => {
            errln!("error: {e}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
        Err(e) => {
            errln!("error: {e}");
            Ok(ExitCode::from(EXIT_CANNOT_RUN))
        }
    }
}

fn bench(options: BenchOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    outln!(
        "provider via {:?}, {} s per trial",
        options.via,
        options.seconds
    );
    outln!("{MARKDOWN_HEADER}");
    let report = runtime.block_on(search(&options, |t| outln!("{}", markdown_row(t))));
    match report {
        Ok(report) => {
            match &report.sustained {
                Some(t) => outln!(
                    "highest sustained: {:.0} orders/s (send lag p99 {} us, fulfilled p99 {} us); ledger {} bytes per order",
                    t.rate,
                    t.send_lag_p99_us,
                    t.fulfilled_p99_us,
                    report.ledger_bytes_per_order
                ),
                None => outln!("no rate was sustained; lower --start"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            errln!("error: {e}");
            Ok(ExitCode::from(EXIT_CANNOT_RUN))
        }
    }
}

/// The flags to repeat in the reproduce command (passwords masked).
fn reproduce_args(overrides: &scenario::Overrides) -> String {
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
    args
}

/// Prints what validation could not check, one `file:line:col: path: warning: ...` each.
fn print_warnings(origin: &str, warnings: &[scenario::Problem]) {
    for warning in warnings {
        errln!("{}", warning.render_warning(origin));
    }
}

fn run(
    arg: &str,
    out: Option<PathBuf>,
    seed: Option<u64>,
    quiet: bool,
    overrides: scenario::Overrides,
) -> anyhow::Result<ExitCode> {
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
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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
            ..RunOptions::default()
        };
        match execute(&scenario, options).await {
            Ok(result) => {
                outln!("{}", verdict_table(&result.summary));
                out!("{}", closing_lines(&result.summary));
                if let Some(dir) = &result.dir {
                    outln!("report: {}", dir.join("report.html").display());
                    outln!("summary: {}", dir.join("summary.json").display());
                }
                step_summary(&result.summary);
                Ok(ExitCode::from(result.summary.exit_code as u8))
            }
            Err(e @ RunError::Transport(TransportError::Config { .. })) => {
                errln!("error: {e}");
                Ok(ExitCode::from(EXIT_BAD_INPUT))
            }
            Err(e @ (RunError::Transport(_) | RunError::Provider(_) | RunError::Report { .. })) => {
                errln!("error: {e}");
                Ok(ExitCode::from(EXIT_CANNOT_RUN))
            }
        }
    })
}

/// The signals that stop a run the way Ctrl-C does: CI timeouts, cancelled jobs and `docker
/// stop` send SIGTERM, a closed terminal or SSH session SIGHUP. Once listened for, a signal
/// no longer kills the process, so the run can write its partial report.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The first of them to arrive.
    async fn next(mut self) -> StopSignal {
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

fn rerender(run_dir: &Path) -> anyhow::Result<ExitCode> {
    let summary = match doorbuster::report::load_or_rebuild(run_dir) {
        Ok(s) => s,
        Err(e) => {
            errln!("report: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let dir = if run_dir.is_dir() {
        run_dir.to_path_buf()
    } else {
        run_dir.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    doorbuster::report::write_all(&dir, &summary)
        .with_context(|| format!("cannot write the reports to {}", dir.display()))?;
    if summary.verdict != RunVerdict::Incomplete {
        outln!("re-rendered the reports in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{}", verdict_table(&summary));
    out!("{}", closing_lines(&summary));
    outln!("report: {}", dir.join("report.html").display());
    outln!("summary: {}", dir.join("summary.json").display());
    // Said on stderr too, where a script that keeps only stdout's data still shows it.
    errln!(
        "report: the run in {} was killed before it finished; this report is PARTIAL (exit {})",
        dir.display(),
        summary.exit_code
    );
    Ok(ExitCode::from(summary.exit_code as u8))
}

/// Tolerances given on the command line; each one overrides the candidate scenario's.
struct ToleranceFlags {
    latency_increase: Option<f64>,
    latency_floor: Option<std::time::Duration>,
    rate_drop: Option<f64>,
    gate: Vec<String>,
}

fn compare_runs(
    baseline: &Path,
    candidate: &Path,
    flags: ToleranceFlags,
) -> anyhow::Result<ExitCode> {
    let load = |p: &Path| doorbuster::report::load_summary(p);
    let (base, cand) = match (load(baseline), load(candidate)) {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => {
            errln!("compare: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let mut tolerances = Tolerances::from_scenario(&cand.tolerances);
    tolerances.gated = flags.gate;
    if let Some(v) = flags.latency_increase {
        tolerances.latency_increase = v;
    }
    if let Some(v) = flags.latency_floor {
        tolerances.latency_floor = v;
    }
    if let Some(v) = flags.rate_drop {
        tolerances.rate_drop_pp = v;
    }
    let comparison = compare(&base, &cand, &tolerances);
    outln!("{}", render_comparison(&comparison));
    let regressions: Vec<_> = comparison.regressions().collect();
    if regressions.is_empty() {
        outln!("no regression beyond the tolerances");
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("{} regressions:", regressions.len());
        for r in regressions {
            outln!(
                "  - {}: {} -> {} ({})",
                r.what,
                r.baseline,
                r.candidate,
                r.change
            );
        }
        Ok(ExitCode::from(1))
    }
}

/// `10%` -> 0.10, for the command line.
fn parse_share(text: &str) -> Result<f64, String> {
    let number = text
        .trim()
        .strip_suffix('%')
        .ok_or("write a share like 10%")?;
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v / 100.0)
        .ok_or_else(|| format!("{text:?} is not a share like 10%"))
}

fn validate(files: &[String], overrides: &scenario::Overrides) -> ExitCode {
    let context = scenario::Context::validate(overrides.clone());
    let mut bad = false;
    for file in files {
        match scenario::load_with(file, &context) {
            Ok(loaded) => {
                print_warnings(file, &loaded.warnings);
                outln!(
                    "{file}: ok ({} phases, seed {})",
                    loaded.scenario.load.phases.len(),
                    loaded.scenario.seed
                );
            }
            Err(e) => {
                bad = true;
                errln!("{e}");
                print_warnings(&e.origin, &e.warnings);
            }
        }
    }
    if bad {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    }
}

fn init(name: &str, force: bool) -> anyhow::Result<ExitCode> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        errln!(
            "init: the name {name:?} must be lowercase letters, digits and dashes, e.g. flash-sale"
        );
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    let path = PathBuf::from(format!("{name}.yaml"));
    if path.exists() && !force {
        errln!(
            "init: {} exists; pass --force to overwrite it",
            path.display()
        );
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    std::fs::write(&path, scenario::template(name))
        .with_context(|| format!("cannot write {}", path.display()))?;
    outln!(
        "wrote {}; run it with: doorbuster run {}",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// mimalloc instead of glibc malloc: the pipeline allocates and frees on both worker threads
/// at high rates, and glibc's arena locks showed up as 15-20 % of a profile at 20k orders/s
/// (measured in reports/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
