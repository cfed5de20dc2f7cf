//! `summary.md`: the verdict as a Markdown page, for a CI job's summary
//! (`$GITHUB_STEP_SUMMARY`) or a pull-request comment. Everything comes from the summary.

use std::fmt::Write;

use super::summary::Summary;
use crate::verify::Verdict;
use crate::verify::latency_slo::fmt_us;

/// Evidence lines per failed check (summary.json keeps them all).
const EVIDENCE_SHOWN: usize = 10;

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn render(s: &Summary) -> String {
    let mut md = String::new();
    let verdict = format!("{:?}", s.verdict).to_uppercase();
    let _ = writeln!(md, "## doorbuster: {} {verdict}\n", s.scenario);
    if let Some(reason) = &s.invalid_reason {
        let _ = writeln!(md, "**Invalid run:** {}\n", cell(reason));
    }
    if let Some(note) = s.ended_early() {
        let _ = writeln!(md, "**Partial run:** {}\n", cell(&note));
    }
    if let Some(start) = &s.start {
        let _ = writeln!(
            md,
            "Started {:+.3} ms from the agreed instant {} ({}).\n",
            start.offset_ms,
            start.agreed,
            cell(&start.clock_source)
        );
    }
    let _ = writeln!(
        md,
        "| check | verdict | observed | threshold |\n|---|---|---|---|"
    );
    for c in &s.checks {
        let v = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
            Verdict::Unknown => "**UNKNOWN**",
        };
        let _ = writeln!(
            md,
            "| {} | {v} | {} | {} |",
            cell(&c.name),
            cell(&c.observed),
            cell(&c.threshold)
        );
    }
    for c in s
        .checks
        .iter()
        .filter(|c| c.verdict != Verdict::Pass && !c.evidence.is_empty())
    {
        let _ = writeln!(
            md,
            "\n<details><summary>{} evidence</summary>\n",
            cell(&c.name)
        );
        for e in c.evidence.iter().take(EVIDENCE_SHOWN) {
            let _ = writeln!(md, "- {}", cell(e));
        }
        if let Some(note) = c.remainder_note(EVIDENCE_SHOWN) {
            let _ = writeln!(md, "- {}", cell(&note));
        }
        let _ = writeln!(md, "\n</details>");
    }
    // In observe mode the pipeline is the user's: its figures are the outputs'.
    let observed = !s.outputs.is_empty();
    let _ = writeln!(
        md,
        "\n**Orders:** {}.\n",
        s.orders.line(s.checkout_only() || observed)
    );
    if !s.orders.failed_by_reason.is_empty() {
        let _ = writeln!(
            md,
            "| failed checkouts | reason | count | first orders |\n|---|---|---|---|"
        );
        for f in &s.orders.failed_by_reason {
            let orders: Vec<String> = f.orders.iter().map(u64::to_string).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                f.outcome.words(),
                cell(&f.reason),
                f.count,
                orders.join(", ")
            );
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "| stage | samples | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|"
    );
    for l in s
        .latency
        .iter()
        .filter(|l| !observed || l.percentiles.count > 0)
    {
        let p = &l.percentiles;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&l.stage),
            p.count,
            fmt_us(p.p50_us),
            fmt_us(p.p90_us),
            fmt_us(p.p99_us),
            fmt_us(p.p999_us),
            fmt_us(p.max_us)
        );
    }
    if !s.latency_not_judged.is_empty() {
        let stages: Vec<String> = s
            .latency_not_judged
            .iter()
            .map(|l| format!("`{}`", cell(l)))
            .collect();
        let _ = writeln!(
            md,
            "\nMeasured, not judged (no SLO in `checks.latency`): {}.",
            stages.join(", ")
        );
    }
    if !s.outputs.is_empty() {
        let _ = writeln!(
            md,
            "\n| output | from | for the run's orders | written again | unknown orders | p50 | p99 | max |\n|---|---|---|---|---|---|---|---|"
        );
        for o in &s.outputs {
            let p = &o.latency;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&o.name),
                cell(&o.from),
                o.matched,
                o.repeated_events,
                o.unknown,
                fmt_us(p.p50_us),
                fmt_us(p.p99_us),
                fmt_us(p.max_us)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nDeliveries: {}. Target: {}. Generator send-lag p99: {}.\n",
        s.deliveries.describe(),
        s.target.kind,
        fmt_us(s.send_lag.p99_us)
    );
    if !s.faults.is_empty() {
        let _ = writeln!(
            md,
            "| fault | target | from | to | backlog peak | lag recovered after |\n|---|---|---|---|---|---|"
        );
        for f in &s.faults {
            let recovery = f.recovery.as_ref();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&f.kind),
                cell(&f.target),
                super::fmt_ms(f.start_ms),
                f.end_ms.map_or("-".to_owned(), super::fmt_ms),
                recovery.map_or("-".to_owned(), |r| r.backlog_peak.to_string()),
                recovery
                    .and_then(|r| r.lag_recovered_after_ms)
                    .map_or("-".to_owned(), super::fmt_ms),
            );
        }
        md.push('\n');
        for (i, f) in s.faults.iter().enumerate() {
            if f.notes.is_empty() && f.exec.is_none() {
                continue;
            }
            let _ = writeln!(md, "- {} on {}:", cell(&f.kind), cell(&f.target));
            for note in &f.notes {
                let _ = writeln!(md, "  - {}", cell(note));
            }
            if let Some(exec) = f.exec.as_ref().filter(|e| !e.output_tail.is_empty()) {
                let _ = writeln!(md, "  - last output (`exec-{i}.log`):\n");
                let _ = writeln!(md, "    ```text");
                for line in &exec.output_tail {
                    let _ = writeln!(md, "    {}", line.replace("```", "'''"));
                }
                let _ = writeln!(md, "    ```");
            }
        }
        md.push('\n');
    }
    let _ = writeln!(md, "Reproduce: `{}`", s.reproduce);
    md
}

/// Appends `markdown` to the file GitHub Actions names in `$GITHUB_STEP_SUMMARY`.
pub fn append_to(path: &std::path::Path, markdown: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{markdown}")
}
