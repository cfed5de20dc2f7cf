//! One run, start to verdict, in four steps:
//!
//! ```text
//! setup  connect (through the fault proxy for link faults), start the provider and the
//!        services, begin the clock (t=0), start the fault timeline and the ticker
//! drive  the open-model driver dispatches the schedule, until its end or an interrupt
//! drain  wait (bounded) until the pipeline is quiet, then stop everything and tidy up
//! judge  the checks, the verdict and each fault window's recovery; the summary and the
//!        report files
//! ```
//!
//! This is the only place that wires the parts together, and it owns the run's shutdown.
//! It prints nothing and picks no exit code: the binary does both, from what it returns.

mod drain;
mod drive;
mod judge;
pub mod merge;
mod setup;
pub mod shard;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::exit::{Exit, StopSignal};
use crate::observe::Observer;
use crate::services::analytics::AnalyticsState;
use crate::services::provider::ProviderCore;
use crate::transport::{Transport, TransportError};

pub use crate::report::summary::Summary;
pub use setup::Run;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot start the payment-provider mock: {0}")]
    Provider(std::io::Error),
    /// A webhook output's receiver could not listen (the port is taken).
    #[error("cannot start a webhook receiver: {0}")]
    Webhook(std::io::Error),
    /// `orders.payload` validated but does not compile now (a bug of doorbuster's).
    #[error("the payload template: {0}")]
    Template(#[from] crate::orders::template::TemplateError),
    /// `--metrics-listen` could not listen (a remote address, a port taken).
    #[error("cannot serve the metrics: {0}")]
    Metrics(String),
    #[error("cannot write the report to {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A target the configuration refuses is bad input; every other failure means the run could
/// not be carried out.
impl From<&RunError> for Exit {
    fn from(error: &RunError) -> Exit {
        match error {
            RunError::Transport(e) => Exit::from(e),
            RunError::Template(_) => Exit::BadInput,
            RunError::Provider(_)
            | RunError::Webhook(_)
            | RunError::Metrics(_)
            | RunError::Report { .. } => Exit::CannotRun,
        }
    }
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
    /// Serve live metrics (OpenMetrics text at `/metrics`) here while the run goes.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Start the load at this wall-clock instant (after setup), not as soon as setup ends.
    pub start_at: Option<std::time::SystemTime>,
    /// One of several processes of one run (`--run-id`, `--shard`).
    pub sharding: Option<shard::Sharding>,
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

/// Runs a validated scenario (from `scenario::load_with`, `parse` or `parse_with`, or built
/// in code as `bench` does): what the file and the command line alone determine (the
/// target's URL and the loopback guard, the faults and checkout mode the target can carry,
/// the planned orders) was checked there, with positions, and is not checked again here.
/// Connecting still expands `${ENV}` and applies the same URL check, for targets built in
/// code.
pub async fn execute(
    scenario: &crate::scenario::Scenario,
    opts: RunOptions,
) -> Result<RunResult, RunError> {
    let mut run = Run::setup(scenario, opts).await?;
    let driven = run.drive().await;
    let drained = run.drain(driven).await;
    run.judge(drained)
}
