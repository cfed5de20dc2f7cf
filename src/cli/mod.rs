//! One function per subcommand: each takes its parsed arguments, calls the library, prints
//! what it found and says how the process exits (`doorbuster::exit::Exit`). No work of the
//! library's is done here. `dispatch` builds the process's one async runtime for the
//! subcommands that need it and hands it to them; `args` is the command line clap reads.

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

pub mod args;
pub mod bench;
pub mod capacity;
pub mod compare;
pub mod init;
pub mod merge;
pub mod preview;
pub mod provider;
pub mod proxy;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod schema;
pub mod shell;
pub mod validate;

use clap::CommandFactory;
use doorbuster::bench::BenchOptions;
use doorbuster::exit::Exit;
use doorbuster::scenario;
use doorbuster::scenario::model::ProviderVia;

use args::{Cli, Command, Via};

/// Prints what validation could not check, one `file:line:col: path: warning: ...` each.
fn print_warnings(origin: &str, warnings: &[scenario::Problem]) {
    for warning in warnings {
        errln!("{}", warning.render_warning(origin));
    }
}

/// `10%` -> 0.10, for the command line.
pub fn parse_share(text: &str) -> Result<f64, String> {
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

/// Diagnostics to stderr, filtered by `DOORBUSTER_LOG` (default: warnings). lapin logs every
/// channel the server closes as an ERROR, including the expected ones (a passive declare
/// asking whether a group's queue exists yet closes its throwaway channel on "no"); what
/// fails for real reaches doorbuster as an error it reports, so those are off by default.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOORBUSTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin::channel=off")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The process's one async runtime, for the subcommands that need one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs one subcommand and names how the process exits; an `Err` is a subcommand that could
/// not start (no runtime), which `main` prints and exits 3 on.
pub fn dispatch(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Run {
            scenario,
            flags,
            overrides,
        } => run::run(&runtime()?, &scenario, flags, overrides.into()),
        Command::Merge(args) => Ok(merge::merge(&runtime()?, &args)),
        Command::Validate { files, overrides } => Ok(validate::validate(&files, &overrides.into())),
        Command::Completions { shell } => Ok(shell::completions(shell, &mut Cli::command())),
        Command::Man => Ok(shell::man(Cli::command())),
        Command::Scenarios => Ok(scenarios::scenarios()),
        Command::Init { name, force } => init::init(&name, force),
        Command::Report { run_dir } => report::report(&run_dir),
        Command::Provider(args) => Ok(provider::provider(&runtime()?, &args)),
        Command::Proxy(args) => Ok(proxy::proxy(&runtime()?, args)),
        Command::Compare {
            baseline,
            candidate,
            latency_increase,
            latency_floor,
            rate_drop,
            gate,
            force,
        } => Ok(compare::compare(
            &baseline,
            &candidate,
            compare::ToleranceFlags {
                latency_increase,
                latency_floor,
                rate_drop,
                gate,
            },
            force,
        )),
        Command::Preview(args) => Ok(preview::preview(&args)),
        Command::Schema { summary } => Ok(schema::schema(summary)),
        Command::Capacity { args, overrides } => {
            Ok(capacity::capacity(&runtime()?, args, overrides.into()))
        }
        Command::Bench {
            provider,
            seconds,
            start,
            max,
            refine,
            target,
            publish_only,
            clients,
        } => {
            let target = match bench::target(target.as_deref()) {
                Ok(target) => target,
                Err(exit) => return Ok(exit),
            };
            if publish_only {
                return Ok(bench::publish(
                    &runtime()?,
                    target,
                    clients.max(1),
                    seconds.max(1),
                ));
            }
            let options = BenchOptions {
                via: match provider {
                    Via::Http => ProviderVia::Http,
                    Via::InProcess => ProviderVia::InProcess,
                },
                seconds: seconds.max(1),
                start_rate: start.max(1.0),
                max_rate: max,
                refine,
                target,
            };
            Ok(bench::bench(&runtime()?, options))
        }
    }
}
