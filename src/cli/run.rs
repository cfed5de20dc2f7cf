//! `doorbuster run SCENARIO`: validate, run and judge a scenario; print the verdict table
//! and where the report went. Ctrl-C, SIGTERM and SIGHUP stop the run early with a partial
//! report.

use std::path::{Path, PathBuf};

use anyhow::Context;
use doorbuster::exit::{Exit, StopSignal};
use doorbuster::report::terminal::{closing_lines, verdict_table};
use doorbuster::run::{RunOptions, execute};
use doorbuster::scenario;
use tokio::runtime::Runtime;

use super::print_warnings;

/// `run`'s own flags (beside the scenario overrides `validate` shares).
pub struct RunFlags {
    pub out: Option<PathBuf>,
    pub seed: Option<u64>,
    pub quiet: bool,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub start_at: Option<std::time::SystemTime>,
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
    } = flags;
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
