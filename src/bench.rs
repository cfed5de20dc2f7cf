//! `doorbuster bench`: the highest order rate the whole pipeline sustains on this machine.
//!
//! A step-up search over real runs (not a timed test): hold a rate for a few seconds on the
//! embedded broker with every check on, double it while the run passes, then bisect between
//! the last pass and the first failure. A rate is *sustained* when the run's verdict is pass:
//! every order accepted within its checkout timeout, completed within `settle_within`,
//! fulfilment p99 under a second, nothing lost or applied twice, and the generator's own
//! send-lag p99 under `max_send_lag` (otherwise the run is invalid, not a pass).

use std::time::Duration;

use crate::report::summary::{RunVerdict, Summary};
use crate::run::{RunError, RunOptions, execute};
use crate::scenario::model::{ProviderVia, Stage};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub via: ProviderVia,
    /// Length of each trial's hold phase.
    pub seconds: u64,
    pub start_rate: f64,
    pub max_rate: f64,
    /// Bisection steps after the first failure.
    pub refine: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Trial {
    pub rate: f64,
    pub verdict: RunVerdict,
    pub orders: u64,
    pub accepted: u64,
    /// Mean acked checkouts per second over the hold.
    pub achieved_rate: f64,
    pub send_lag_p99_us: u64,
    pub checkout_p99_us: u64,
    pub fulfilled_p99_us: u64,
    pub wall_s: f64,
    /// The first failed check, or why the run was invalid.
    pub why: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub via: ProviderVia,
    pub trials: Vec<Trial>,
    pub sustained: Option<Trial>,
    pub ledger_bytes_per_order: usize,
}

fn scenario_text(rate: f64, seconds: u64, via: ProviderVia) -> String {
    let via = match via {
        ProviderVia::Http => "http",
        ProviderVia::InProcess => "in_process",
    };
    format!(
        r#"
name: bench
description: Throughput search on the embedded broker.
seed: 1
target: {{ kind: embedded, partitions: 12, retention: 1000000 }}
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

async fn trial(rate: f64, opts: &BenchOptions) -> Result<Trial, RunError> {
    let text = scenario_text(rate.round(), opts.seconds, opts.via);
    // The text is ours and parses; a failure here is a bug worth a loud message.
    let scenario = crate::scenario::parse("bench.yaml", &text)
        .map_err(|e| RunError::Provider(std::io::Error::other(e.to_string())))?;
    let result = execute(
        &scenario,
        RunOptions {
            no_files: true,
            run_arg: "bench".into(),
            ..RunOptions::default()
        },
    )
    .await?;
    Ok(summarise(rate.round(), opts.seconds, &result.summary))
}

fn summarise(rate: f64, seconds: u64, s: &Summary) -> Trial {
    let p99 = |stage: Stage| {
        s.latency
            .iter()
            .find(|l| l.stage == stage.label())
            .map_or(0, |l| l.percentiles.p99_us)
    };
    let why = s.invalid_reason.clone().unwrap_or_else(|| {
        s.checks
            .iter()
            .find(|c| c.verdict != crate::verify::Verdict::Pass)
            .map(|c| format!("{}: {}", c.name, c.observed))
            .unwrap_or_default()
    });
    Trial {
        rate,
        verdict: s.verdict,
        orders: s.orders.attempted,
        accepted: s.orders.accepted,
        achieved_rate: s.orders.accepted as f64 / seconds as f64,
        send_lag_p99_us: s.send_lag.p99_us,
        checkout_p99_us: p99(Stage::Checkout),
        fulfilled_p99_us: p99(Stage::Fulfilled),
        wall_s: s.duration_s,
        why,
    }
}

/// Runs the search; `on_trial` sees each trial as it finishes.
pub async fn search(
    opts: &BenchOptions,
    mut on_trial: impl FnMut(&Trial),
) -> Result<BenchReport, RunError> {
    let mut trials = Vec::new();
    let mut best: Option<Trial> = None;
    let mut failed_at: Option<f64> = None;
    let mut rate = opts.start_rate;
    while rate <= opts.max_rate {
        let t = trial(rate, opts).await?;
        on_trial(&t);
        let pass = t.verdict == RunVerdict::Pass;
        trials.push(t.clone());
        if pass {
            best = Some(t);
            rate *= 2.0;
        } else {
            failed_at = Some(rate);
            break;
        }
        // Let the previous run's tasks and memory go before the next one.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let (Some(mut high), Some(low)) = (failed_at, best.as_ref().map(|b| b.rate)) {
        let mut low = low;
        for _ in 0..opts.refine {
            let mid = (low + high) / 2.0;
            let t = trial(mid, opts).await?;
            on_trial(&t);
            trials.push(t.clone());
            if t.verdict == RunVerdict::Pass {
                low = mid;
                best = Some(t);
            } else {
                high = mid;
            }
        }
    }
    Ok(BenchReport {
        via: opts.via,
        trials,
        sustained: best,
        ledger_bytes_per_order: crate::observe::Ledger::BYTES_PER_ORDER,
    })
}

/// One Markdown table row per trial.
pub fn markdown_row(t: &Trial) -> String {
    use crate::verify::latency_slo::fmt_us;
    format!(
        "| {:.0} | {:?} | {} | {:.0} | {} | {} | {} | {:.1} | {} |",
        t.rate,
        t.verdict,
        t.orders,
        t.achieved_rate,
        fmt_us(t.send_lag_p99_us),
        fmt_us(t.checkout_p99_us),
        fmt_us(t.fulfilled_p99_us),
        t.wall_s,
        t.why
    )
}

pub const MARKDOWN_HEADER: &str = "| rate (orders/s) | verdict | orders | achieved/s | send lag p99 | checkout p99 | fulfilled p99 | wall s | first failure |\n|---|---|---|---|---|---|---|---|---|";
