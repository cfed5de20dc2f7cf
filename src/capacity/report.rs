//! The capacity report: `capacity.json`, `capacity.md` and `capacity.html` in the search's
//! folder, beside one normal run folder per step. The HTML charts the achieved rate and each
//! stage's p99 against the planned rate and marks the knee; like `report.html` it needs no
//! network, fonts or JavaScript.

use std::fmt::Write as _;
use std::path::Path;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use super::{Capacity, Ceiling, Step};
use crate::exit::RunVerdict;
use crate::report::charts::{RateY, over_planned_rate};
use crate::verify::latency_slo::fmt_us;

const TEMPLATE: &str = include_str!("capacity.html");

/// `1234.5` -> `1,235`.
fn rate(r: f64) -> String {
    let whole = r.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn scale(s: f64) -> String {
    let text = format!("{s:.3}");
    format!("x{}", text.trim_end_matches('0').trim_end_matches('.'))
}

/// The answer in a few sentences: sustained rate, what failed first and why, headroom.
pub fn answer(c: &Capacity) -> Vec<String> {
    let mut lines = Vec::new();
    match c.sustained() {
        Some(s) => lines.push(format!(
            "sustained: {} orders/s at the peak ({} of the scenario's {}/s), every check passing",
            rate(s.planned_peak),
            scale(s.scale),
            rate(c.base_peak)
        )),
        None => match c.steps.first() {
            Some(first) => lines.push(format!(
                "sustained: nothing; the first step ({}/s planned) already failed",
                rate(first.planned_peak)
            )),
            None => lines.push("sustained: unknown, no step ran".to_owned()),
        },
    }
    if let Some(f) = c.first_failure() {
        let what = if f.verdict == RunVerdict::Invalid {
            format!(
                "the run was invalid, doorbuster itself could not keep the plan ({}); the \
                 target's limit is above what this machine can generate",
                f.why
            )
        } else {
            f.why.clone()
        };
        lines.push(format!(
            "fails first at {} orders/s ({}): {what}",
            rate(f.planned_peak),
            scale(f.scale)
        ));
    }
    match &c.ceiling {
        Some(Ceiling::MaxScale { scale: s }) => lines.push(format!(
            "no failure up to the largest factor tried ({}): the capacity is at least that",
            scale(*s)
        )),
        Some(Ceiling::Limit { scale: s, message }) => lines.push(format!(
            "the scenario cannot be scaled to {}: {message}",
            scale(*s)
        )),
        Some(Ceiling::Error {
            scale: s, message, ..
        }) => lines.push(format!(
            "the step at {} could not run: {message}",
            scale(*s)
        )),
        Some(Ceiling::Interrupted) => {
            lines.push("stopped by a signal: the steps so far are below".to_owned())
        }
        None => {}
    }
    if let Some(h) = &c.forecast {
        lines.push(format!(
            "forecast {} orders/s: headroom {:.2}x, {}",
            rate(h.rate),
            h.ratio,
            if h.holds { "holds" } else { "does NOT hold" }
        ));
    }
    lines
}

/// The stages every step reported, in the first step's order.
fn stages(c: &Capacity) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    for step in &c.steps {
        for (stage, _) in &step.p99_us {
            if !stages.contains(stage) {
                stages.push(stage.clone());
            }
        }
    }
    stages
}

fn p99_of(step: &Step, stage: &str) -> Option<u64> {
    step.p99_us
        .iter()
        .find(|(s, _)| s == stage)
        .map(|(_, v)| *v)
}

/// Steps by planned rate, as the charts and tables show them.
fn by_rate(c: &Capacity) -> Vec<&Step> {
    let mut steps: Vec<&Step> = c.steps.iter().collect();
    steps.sort_by(|a, b| a.planned_peak.total_cmp(&b.planned_peak));
    steps
}

pub fn markdown(c: &Capacity) -> String {
    let mut out = format!("# Capacity: {}\n\n", c.scenario);
    for line in answer(c) {
        let _ = writeln!(out, "- {line}");
    }
    let stages = stages(c);
    out.push_str("\n| scale | planned peak/s | achieved at peak/s | verdict | send lag p99 |");
    for stage in &stages {
        let _ = write!(out, " {stage} p99 |");
    }
    out.push_str(" first failure |\n|---|---|---|---|---|");
    out.push_str(&"---|".repeat(stages.len()));
    out.push_str("---|\n");
    for step in by_rate(c) {
        let _ = write!(
            out,
            "| {} | {} | {} | {:?} | {} |",
            scale(step.scale),
            rate(step.planned_peak),
            rate(step.achieved_peak),
            step.verdict,
            fmt_us(step.send_lag_p99_us)
        );
        for stage in &stages {
            let _ = write!(out, " {} |", p99_of(step, stage).map_or("-".into(), fmt_us));
        }
        let _ = writeln!(out, " {} |", step.why.replace('|', "\\|"));
    }
    out
}

#[derive(Serialize)]
struct View {
    scenario: String,
    answer: Vec<String>,
    holds: bool,
    rate_chart: String,
    latency_chart: String,
    stages: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    scale: String,
    planned: String,
    achieved: String,
    verdict: String,
    send_lag: String,
    p99: Vec<String>,
    why: String,
    dir: String,
}

pub fn html(c: &Capacity) -> Result<String, minijinja::Error> {
    let steps = by_rate(c);
    let stages = stages(c);
    let knee = match (c.sustained(), c.first_failure()) {
        (Some(s), Some(f)) => Some((s.planned_peak, f.planned_peak)),
        _ => None,
    };
    let rate_chart = over_planned_rate(
        "chart-capacity-rate",
        RateY::OrdersPerSecond,
        vec![(
            "achieved at peak".to_owned(),
            steps
                .iter()
                .map(|s| (s.planned_peak, Some(s.achieved_peak)))
                .collect(),
        )],
        knee,
    );
    let latency_chart = over_planned_rate(
        "chart-capacity-latency",
        RateY::Milliseconds,
        stages
            .iter()
            .map(|stage| {
                let points = steps
                    .iter()
                    .map(|s| (s.planned_peak, p99_of(s, stage).map(|v| v as f64 / 1000.0)))
                    .collect();
                (format!("{stage} p99"), points)
            })
            .collect(),
        knee,
    );
    let rows = steps
        .iter()
        .map(|s| Row {
            scale: scale(s.scale),
            planned: rate(s.planned_peak),
            achieved: rate(s.achieved_peak),
            verdict: format!("{:?}", s.verdict).to_uppercase(),
            send_lag: fmt_us(s.send_lag_p99_us),
            p99: stages
                .iter()
                .map(|stage| p99_of(s, stage).map_or("-".into(), fmt_us))
                .collect(),
            why: s.why.clone(),
            dir: s
                .dir
                .as_ref()
                .and_then(|d| d.file_name())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
        .collect();
    let view = View {
        scenario: c.scenario.clone(),
        answer: answer(c),
        holds: c.exit(None) == crate::exit::Exit::Success,
        rate_chart,
        latency_chart,
        stages,
        rows,
    };
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template("capacity.html", TEMPLATE)?;
    env.get_template("capacity.html")?.render(Serde(view))
}

/// Writes the three files into `dir`.
pub fn write(c: &Capacity, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(c).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("capacity.json"), json + "\n")?;
    std::fs::write(dir.join("capacity.md"), markdown(c))?;
    let page = html(c).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("capacity.html"), page)
}
