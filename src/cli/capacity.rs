//! `doorbuster capacity SCENARIO`: scale the scenario's shape step by step, find the highest
//! rate every check passes at, say what fails first above it, and whether the headroom holds
//! against `--forecast`. Each step is a normal run (its folder beside the capacity report).

use std::path::PathBuf;
use std::time::Duration;

use doorbuster::capacity::{self, Capacity, Forecast, Plan, StepError};
use doorbuster::exit::Exit;
use doorbuster::run::{RunOptions, execute};
use doorbuster::scenario;
use tokio::runtime::Runtime;

use super::run::{StopSignals, reproduce_args};

/// `capacity`'s own arguments (beside the scenario overrides `run` shares).
#[derive(clap::Args)]
pub struct CapacityArgs {
    /// A scenario file, or a bundled scenario's name.
    scenario: String,
    /// The peak the system must hold: a multiple of the scenario's own peak (3x) or a
    /// rate (4500/s). Without it, the scenario as written must pass.
    #[arg(long, value_parser = Forecast::parse)]
    forecast: Option<Forecast>,
    /// The folder for the capacity report and one run folder per step
    /// (default: reports/capacity-<scenario>-<time>-seed<N>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The first factor tried on the scenario's rates.
    #[arg(long, default_value_t = 1.0)]
    start: f64,
    /// The largest factor tried.
    #[arg(long, default_value_t = 64.0)]
    max: f64,
    /// Bisection steps between the last pass and the first failure.
    #[arg(long, default_value_t = 3)]
    refine: u32,
    /// The pause between steps, for the target to drain and settle.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// No live progress view.
    #[arg(long, short)]
    quiet: bool,
}

pub fn capacity(runtime: &Runtime, flags: CapacityArgs, overrides: scenario::Overrides) -> Exit {
    let arg = flags.scenario.as_str();
    if overrides.rate_scale.is_some() {
        errln!("error: capacity chooses the rate scale itself; use --start and --max instead");
        return Exit::BadInput;
    }
    if !(flags.start > 0.0 && flags.start <= flags.max && flags.max.is_finite()) {
        errln!(
            "error: --start {} and --max {} must be factors with 0 < start <= max",
            flags.start,
            flags.max
        );
        return Exit::BadInput;
    }
    // The scenario as written, checked the way `run` checks it: bad input is refused before
    // any step runs, with its position.
    let loaded = match scenario::load_with(arg, &scenario::Context::run(overrides.clone())) {
        Ok(loaded) => loaded,
        Err(e) => {
            errln!("{e}");
            return Exit::BadInput;
        }
    };
    let out = flags.out.clone().unwrap_or_else(|| {
        let dir = doorbuster::report::default_run_dir(&loaded.scenario.name, loaded.scenario.seed);
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        dir.with_file_name(format!("capacity-{}", name.unwrap_or_default()))
    });
    let plan = Plan {
        start: flags.start,
        max: flags.max,
        refine: flags.refine,
        settle: flags.settle,
        forecast: flags.forecast,
    };
    // What to type after `doorbuster run` to repeat a step: its target too.
    let run_arg = format!("{}{}", loaded.source.run_arg(), reproduce_args(&overrides));
    outln!(
        "capacity of {} ({}/s at its peak as written), steps into {}",
        loaded.scenario.name,
        capacity::peak_rate(&loaded.scenario),
        out.display()
    );
    let found = runtime.block_on(async {
        let (interrupt_tx, interrupt_rx) = tokio::sync::watch::channel(None);
        // Without signal handling a Ctrl-C still stops the search, only without its report.
        let signals = StopSignals::listen().ok();
        tokio::spawn(async move {
            let Some(signals) = signals else { return };
            let signal = signals.next().await;
            errln!("\n{}: stopping this step and the search", signal.name());
            let _ = interrupt_tx.send(Some(signal));
        });
        let make = |scale: f64| {
            let context = scenario::Context::run(scenario::Overrides {
                rate_scale: Some(scale),
                ..overrides.clone()
            });
            scenario::load_with(arg, &context)
                .map(|l| l.scenario)
                .map_err(|e| StepError::Limit(e.to_string().trim().to_owned()))
        };
        let mut number = 0;
        let step = |scenario: scenario::Scenario, scale: f64| {
            number += 1;
            let options = RunOptions {
                out_dir: Some(out.join(format!("step-{number:02}-x{scale}"))),
                progress: !flags.quiet,
                run_arg: format!("{run_arg} --rate-scale {scale}"),
                interrupt: Some(interrupt_rx.clone()),
                ..RunOptions::default()
            };
            async move {
                let result = execute(&scenario, options).await?;
                if result.summary.interrupted_by.is_some() {
                    return Ok::<_, StepError>(None);
                }
                Ok(Some((result.summary, result.dir)))
            }
        };
        let found = capacity::search(&plan, make, step, |s| {
            outln!(
                "step x{}: {:.0}/s planned, {:.0}/s achieved at the peak: {:?}{}",
                s.scale,
                s.planned_peak,
                s.achieved_peak,
                s.verdict,
                if s.why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.why)
                }
            )
        })
        .await?;
        let stopped = *interrupt_rx.borrow();
        Ok::<_, StepError>((found, stopped))
    });
    let (found, stopped): (Capacity, _) = match found {
        Ok(found) => found,
        Err(e) => {
            errln!("error: {e}");
            return e.exit();
        }
    };
    for line in capacity::report::answer(&found) {
        outln!("{line}");
    }
    match capacity::report::write(&found, &out) {
        Ok(()) => outln!("report: {}", out.join("capacity.html").display()),
        Err(e) => {
            errln!(
                "error: cannot write the capacity report into {}: {e}",
                out.display()
            );
            return Exit::CannotRun;
        }
    }
    found.exit(stopped)
}
