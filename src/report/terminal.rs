//! The verdict table printed at the end of a run (comfy-table), as a string the binary
//! prints. Plain text, so it reads the same in a terminal and in a CI log.

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::summary::Summary;
use crate::scenario::model::CheckoutMode;
use crate::verify::Verdict;

/// Evidence lines shown per failed check; summary.json keeps them all.
const TERMINAL_EXAMPLES: usize = 10;

/// The verdict table, wrapped to the terminal's width (see [`super::table_width`]).
pub fn verdict_table(summary: &Summary) -> String {
    verdict_table_in(summary, super::table_width())
}

/// The verdict table in at most `width` columns.
pub fn verdict_table_in(summary: &Summary, width: u16) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(vec!["check", "verdict", "observed", "threshold"]);
    for check in &summary.checks {
        let verdict = match check.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
        };
        table.add_row(vec![
            Cell::new(&check.name),
            Cell::new(verdict),
            Cell::new(&check.observed),
            Cell::new(&check.threshold),
        ]);
    }
    let mut out = table.to_string();
    for check in summary.checks.iter().filter(|c| c.verdict != Verdict::Pass) {
        if !check.evidence.is_empty() {
            out.push_str(&format!("\n{}:\n", check.name));
            for e in check.evidence.iter().take(TERMINAL_EXAMPLES) {
                out.push_str(&format!("  - {e}\n"));
            }
            if let Some(note) = check.remainder_note(TERMINAL_EXAMPLES) {
                out.push_str(&format!("  {note}\n"));
            }
        }
    }
    out
}

/// Says what an accepted checkout meant in this run, so a sync baseline's numbers are never
/// read as the asynchronous design's.
fn checkout_line(mode: CheckoutMode) -> &'static str {
    match mode {
        CheckoutMode::Async => "async (accepted = order.created acked; payment runs downstream)",
        CheckoutMode::Sync => {
            "sync (accepted = order.created acked and the card API answered inline, one try)"
        }
    }
}

/// The lines after the table: counts, verdict, reproduce command.
pub fn closing_lines(summary: &Summary) -> String {
    let d = &summary.deliveries;
    let mut out = if let Some(incomplete) = &summary.incomplete {
        format!(
            "orders: {} planned; at least {} accepted and {} fulfilled in the {} s the interval \
             logs cover\nnot known: {}\n",
            summary.orders.planned,
            summary.orders.accepted,
            summary.orders.fulfilled,
            incomplete.logged_seconds,
            incomplete.unknown.join("; ")
        )
    } else if !summary.outputs.is_empty() {
        let mut out = format!(
            "checkout: published to your topic (accepted = the broker acked)
orders: {}
",
            summary.orders.line(true),
        );
        for o in &summary.outputs {
            let us = crate::verify::latency_slo::fmt_us;
            out.push_str(&format!(
                "output {} from {}: {} for the run's orders, {} written again, {} unknown; \
                 intended -> tapped p50 {}, p99 {}, max {}\n",
                o.name,
                o.from,
                o.matched,
                o.repeated_events,
                o.unknown,
                us(o.latency.p50_us),
                us(o.latency.p99_us),
                us(o.latency.max_us),
            ));
            if let Some(why) = &o.broken {
                out.push_str(&format!("  the tap stopped: {why}\n"));
            }
        }
        out
    } else if summary.checkout_only() {
        format!(
            "checkout: POST to the endpoint (accepted = a 2xx within checkout_timeout)\n\
             orders: {}\ndeliveries: not observed (the pipeline behind the endpoint is the shop's)\n",
            summary.orders.line(true),
        )
    } else {
        format!(
            "checkout: {}\norders: {}\ndeliveries: {}\n",
            checkout_line(summary.checkout_mode),
            summary.orders.line(false),
            d.describe(),
        )
    };
    if !summary.latency_not_judged.is_empty() {
        out.push_str(&format!(
            "latency not judged (no SLO in checks.latency): {}\n",
            summary.latency_not_judged.join(", ")
        ));
    }
    for f in &summary.orders.failed_by_reason {
        out.push_str(&format!("failed checkouts: {}\n", f.describe()));
    }
    for f in &summary.faults {
        let end = f.end_ms.map_or("the end".to_owned(), super::fmt_ms);
        out.push_str(&format!(
            "fault: {} on {} from {} to {end}{}\n",
            f.kind,
            f.target,
            super::fmt_ms(f.start_ms),
            f.recovery
                .as_ref()
                .map(|r| format!(
                    ", backlog peak {}, lag recovered after {}",
                    r.backlog_peak,
                    r.lag_recovered_after_ms
                        .map_or("never".to_owned(), super::fmt_ms)
                ))
                .unwrap_or_default()
        ));
        for note in &f.notes {
            out.push_str(&format!("  {note}\n"));
        }
        if let Some(exec) = f.exec.as_ref().filter(|e| !e.output_tail.is_empty()) {
            out.push_str("  last output:\n");
            for line in &exec.output_tail {
                out.push_str(&format!("  | {line}\n"));
            }
        }
    }
    if let Some(start) = &summary.start {
        out.push_str(&format!(
            "start: {:+.3} ms from the agreed instant {} ({})\n",
            start.offset_ms, start.agreed, start.clock_source
        ));
    }
    if let Some(reason) = &summary.invalid_reason {
        out.push_str(&format!("INVALID: {reason}\n"));
    }
    if let Some(note) = summary.ended_early() {
        out.push_str(&format!("PARTIAL: {note}\n"));
    }
    out.push_str(&format!(
        "verdict: {:?} (exit {})\nreproduce: {}\n",
        summary.verdict, summary.exit_code, summary.reproduce
    ));
    out
}
