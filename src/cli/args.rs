//! The command line as clap reads it: the subcommands, their flags and the help text. What
//! each subcommand does is in its own module beside this one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use doorbuster::scenario;

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `run` and `validate` may change in the scenario from the command line.
#[derive(clap::Args)]
pub struct Overrides {
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
    /// Replaces the phases with one hold at their peak rate (after --rate-scale) for this
    /// long, e.g. 60s: the scenario's peak as a constant load.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    hold: Option<std::time::Duration>,
}

impl From<Overrides> for scenario::Overrides {
    fn from(o: Overrides) -> Self {
        scenario::Overrides {
            target: o.target,
            allow_remote: o.allow_remote,
            rate_scale: o.rate_scale,
            hold: o.hold,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a scenario (a file, or the name of a bundled one) and judge it.
    #[command(after_help = EXAMPLES)]
    Run {
        /// A scenario file, or a bundled scenario's name (see `doorbuster scenarios`).
        scenario: String,
        #[command(flatten)]
        flags: super::run::RunFlags,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Join the shards of one run (`run --shard i/n --run-id ID`) and judge it once: the
    /// histograms added exactly, the ledgers unioned, every check over the whole run; exit
    /// as `run` does, or 3 when a shard is missing, interrupted or from another run.
    #[command(
        after_help = "Example:\n  doorbuster merge runs/shard-0 runs/shard-1 runs/shard-2 --out runs/merged"
    )]
    Merge(super::merge::MergeArgs),
    /// Check scenario files without running them; every error at once. With `run`'s flags,
    /// checks what `run` with them would refuse. An unset ${ENV} is a warning here (CI may set
    /// it later) and an error in `run`.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Print a shell completion script: `doorbuster completions bash > /etc/bash_completion.d/doorbuster`,
    /// or for zsh, fish, elvish, powershell.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): `doorbuster man > doorbuster.1 && man ./doorbuster.1`.
    Man,
    /// List the bundled scenarios.
    Scenarios,
    /// Find the highest rate a scenario's shape sustains: scale its phases step by step
    /// (doubling, then bisecting), judge each step by every check, and say what fails first
    /// and whether the headroom against --forecast holds (exit 0) or not (exit 1).
    #[command(
        after_help = "Examples:\n  doorbuster capacity black-friday --forecast 3x\n  doorbuster capacity shop.yaml --target redis://127.0.0.1:6379 --forecast 4500/s --max 16"
    )]
    Capacity {
        #[command(flatten)]
        args: super::capacity::CapacityArgs,
        #[command(flatten)]
        overrides: Overrides,
    },
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
        #[arg(long, value_parser = super::parse_share)]
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
        /// Compare runs of different scenarios or targets anyway (refused otherwise: their
        /// differences are not regressions).
        #[arg(long)]
        force: bool,
    },
    /// Print orders as the scenario sends them: through its `orders.payload` template, or as
    /// doorbuster's own order.created. The same seed gives the same orders as `run`.
    #[command(
        after_help = "Examples:\n  doorbuster preview examples/payloads/checkout.yaml --count 3\n  doorbuster preview examples/payloads/checkout.yaml --json | jq .body.orderTotal"
    )]
    Preview(super::preview::PreviewArgs),
    /// Print a JSON Schema: of scenario files (default) or of summary.json.
    Schema {
        /// The summary.json schema instead of the scenario one.
        #[arg(long)]
        summary: bool,
    },
    /// Serve the payment provider on loopback until Ctrl-C, for your own payment service to
    /// charge: the JSON card API (`POST /v1/charges`) and a Stripe-compatible subset
    /// (PaymentIntents create, confirm, capture, retrieve; refunds) with Stripe's idempotency
    /// rules. Every capture is recorded (`GET /v1/captures`); at the end it says which orders
    /// were charged more than once.
    #[command(
        after_help = "Example:\n  doorbuster provider --listen 127.0.0.1:12111\n  curl -s 127.0.0.1:12111/v1/payment_intents -H 'Idempotency-Key: k1' \\\n    -d amount=2000 -d currency=usd -d payment_method=pm_card_visa -d confirm=true \\\n    -d 'metadata[order_id]=17'"
    )]
    Provider(super::provider::ProviderArgs),
    /// Run the TCP fault proxy alone between a client and a loopback server, until Ctrl-C.
    #[command(
        after_help = "Examples:\n  doorbuster proxy --listen 127.0.0.1:16379 --upstream 127.0.0.1:6379 --latency 100ms --jitter 20ms\n  doorbuster proxy --listen 127.0.0.1:16379 --upstream 127.0.0.1:6379 \\\n    --toxic latency=200ms,direction=upstream --toxic bandwidth=65536,share=50%"
    )]
    Proxy(super::proxy::ProxyArgs),
    /// Write a commented scenario template to NAME.yaml.
    Init {
        name: String,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Via {
    InProcess,
    Http,
}
