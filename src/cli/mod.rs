//! One function per subcommand: each takes its parsed arguments, calls the library, prints
//! what it found and says how the process exits (`doorbuster::exit::Exit`). No work of the
//! library's is done here, and nothing here builds a runtime: `main` builds the one runtime
//! and hands it to the subcommands that need it.

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

use doorbuster::scenario;

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
