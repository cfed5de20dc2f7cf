//! The `doorbuster` command: parse arguments, call the library, print, map to exit codes.
//! Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doorbuster::bench::{BenchOptions, MARKDOWN_HEADER, markdown_row, search};
use doorbuster::report::terminal::{closing_lines, verdict_table};
use doorbuster::run::{RunError, RunOptions, execute};
use doorbuster::scenario;
use doorbuster::scenario::model::ProviderVia;

/// Exit codes (DESIGN.md §8).
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_CANNOT_RUN: u8 = 3;

const EXAMPLES: &str = "\
Examples:
  doorbuster run scenarios/black-friday.yaml      a Black Friday ramp, spike and cool-down
  doorbuster run black-friday --seed 11           a bundled scenario, another seed
  doorbuster run smoke --out /tmp/smoke --quiet   where the report goes, no live view
  doorbuster validate scenarios/*.yaml            check files without running them
  doorbuster scenarios                            list the bundled scenarios
  doorbuster init flash-sale                      write a commented flash-sale.yaml

Exit codes: 0 every check passed, 1 a check failed, 2 invalid scenario or command line,
3 the run could not be carried out or is not valid, 130 interrupted (partial report written).";

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
    },
    /// Check scenario files without running them; every error at once.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
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
            eprintln!("error: {e:#}");
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
        } => run(&scenario, out, seed, quiet),
        Command::Validate { files } => Ok(validate(&files)),
        Command::Scenarios => {
            for (name, text) in scenario::bundled() {
                let description = scenario::parse(name, text)
                    .map(|s| s.description)
                    .unwrap_or_default();
                println!("{name:<16} {description}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { name, force } => init(&name, force),
        Command::Bench {
            provider,
            seconds,
            start,
            max,
            refine,
        } => bench(BenchOptions {
            via: match provider {
                Via::Http => ProviderVia::Http,
                Via::InProcess => ProviderVia::InProcess,
            },
            seconds: seconds.max(1),
            start_rate: start.max(1.0),
            max_rate: max,
            refine,
        }),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Via {
    InProcess,
    Http,
}

fn bench(options: BenchOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    println!(
        "provider via {:?}, {} s per trial",
        options.via, options.seconds
    );
    println!("{MARKDOWN_HEADER}");
    let report = runtime.block_on(search(&options, |t| println!("{}", markdown_row(t))));
    match report {
        Ok(report) => {
            match &report.sustained {
                Some(t) => println!(
                    "highest sustained: {:.0} orders/s (send lag p99 {} us, fulfilled p99 {} us); ledger {} bytes per order",
                    t.rate, t.send_lag_p99_us, t.fulfilled_p99_us, report.ledger_bytes_per_order
                ),
                None => println!("no rate was sustained; lower --start"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_CANNOT_RUN))
        }
    }
}

fn run(
    arg: &str,
    out: Option<PathBuf>,
    seed: Option<u64>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let (scenario, source) = match scenario::load(arg) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (interrupt_tx, interrupt_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\ninterrupted: stopping the load, draining briefly, writing the partial report"
                );
                let _ = interrupt_tx.send(true);
            }
        });
        let options = RunOptions {
            seed,
            out_dir: out,
            progress: !quiet,
            run_arg: source.run_arg(),
            interrupt: Some(interrupt_rx),
            ..RunOptions::default()
        };
        match execute(&scenario, options).await {
            Ok(result) => {
                println!("{}", verdict_table(&result.summary));
                print!("{}", closing_lines(&result.summary));
                if let Some(dir) = &result.dir {
                    println!("report: {}", dir.join("summary.json").display());
                }
                Ok(ExitCode::from(result.summary.exit_code as u8))
            }
            Err(e @ (RunError::Transport(_) | RunError::Provider(_) | RunError::Report { .. })) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(EXIT_CANNOT_RUN))
            }
        }
    })
}

fn validate(files: &[String]) -> ExitCode {
    let mut bad = false;
    for file in files {
        match scenario::load(file) {
            Ok((s, _)) => println!(
                "{file}: ok ({} phases, seed {})",
                s.load.phases.len(),
                s.seed
            ),
            Err(e) => {
                bad = true;
                eprintln!("{e}");
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
        eprintln!(
            "init: the name {name:?} must be lowercase letters, digits and dashes, e.g. flash-sale"
        );
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    let path = PathBuf::from(format!("{name}.yaml"));
    if path.exists() && !force {
        eprintln!(
            "init: {} exists; pass --force to overwrite it",
            path.display()
        );
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    std::fs::write(&path, scenario::template(name))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
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
