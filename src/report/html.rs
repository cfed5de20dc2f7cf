//! `report.html`: one self-contained page per run (DESIGN.md §8), rendered from the
//! [`Summary`] with a minijinja template and the inline SVG charts of `charts.rs`.
//!
//! The page needs no network, no fonts and no JavaScript, so it reads the same offline and
//! as a CI artifact. This module only formats what the summary says: it never changes a
//! verdict, does no I/O (`report::write_all` writes the file), and escapes every string
//! that comes from the scenario or the summary file, which a user may have written.

use std::time::{Duration, UNIX_EPOCH};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use super::charts;
use super::summary::{RunVerdict, StageLatency, Summary};
use crate::observe::Percentiles;
use crate::verify::Verdict;

const TEMPLATE_NAME: &str = "report.html";
const TEMPLATE: &str = include_str!("templates/report.html");
/// Evidence lines shown before the rest folds into a `<details>`.
const EVIDENCE_INLINE: usize = 5;
/// Evidence lines rendered at all; summary.json keeps every one.
const EVIDENCE_MAX: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("cannot render report.html from the template: {0}")]
    Template(#[from] minijinja::Error),
}

/// Renders the whole page.
pub fn render(summary: &Summary) -> Result<String, HtmlError> {
    let mut env = Environment::new();
    // Explicit, not left to the file-name rule: every value is escaped unless marked safe,
    // and only the charts (SVG we drew ourselves) are.
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    // A field the template names but the view lacks is a bug to see in tests, not a blank.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template(TEMPLATE_NAME, TEMPLATE)?;
    let template = env.get_template(TEMPLATE_NAME)?;
    Ok(template.render(Serde(View::of(summary)))?)
}

/// Everything the template shows, already formatted: the template only lays it out.
#[derive(Serialize)]
struct View {
    scenario: String,
    description: String,
    seed: u64,
    version: String,
    started: String,
    duration: String,
    verdict: &'static str,
    exit_code: i32,
    invalid_reason: Option<String>,
    ended_early: Option<String>,
    /// What a rebuilt report of a killed run does not know (empty for any other run).
    unknown: Vec<String>,
    reproduce: String,
    checks: Vec<CheckView>,
    rate_chart: String,
    lag_chart: String,
    failures_chart: String,
    deliveries_chart: String,
    stages: Vec<StageView>,
    stages_without_data: Vec<String>,
    latency_not_judged: Vec<String>,
    send_lag: LatencyRow,
    orders: Vec<(&'static str, u64)>,
    /// Failed checkouts by reason: how, why, how many, the first orders.
    failed_by_reason: Vec<(&'static str, String, u64, String)>,
    target_kind: String,
    target_settings: Vec<(String, String)>,
    deliveries: Vec<(&'static str, u64)>,
    subscriptions: Vec<SubscriptionRow>,
    provider: Vec<(&'static str, u64)>,
    analytics: Option<Vec<(&'static str, String)>>,
    faults: Vec<FaultRow>,
    /// Observe mode: the user's shop's outputs, as tapped.
    outputs: Vec<OutputRow>,
    findings: Vec<(String, String)>,
}

#[derive(Serialize)]
struct OutputRow {
    name: String,
    from: String,
    matched: u64,
    repeated: u64,
    unknown: u64,
    latency: LatencyRow,
    /// Per fault window: the fault, and the latency of the orders intended inside it.
    during: Vec<(String, LatencyRow)>,
    broken: Option<String>,
}

#[derive(Serialize)]
struct CheckView {
    name: String,
    verdict: &'static str,
    observed: String,
    threshold: String,
    evidence_inline: Vec<String>,
    evidence_folded: Vec<String>,
    evidence_total: u64,
    /// The true remainder beyond what the page lists, said once.
    evidence_omitted: Option<String>,
}

#[derive(Serialize)]
struct StageView {
    label: String,
    latency_chart: String,
    distribution_chart: String,
    row: LatencyRow,
}

#[derive(Serialize)]
struct LatencyRow {
    count: u64,
    p50: String,
    p90: String,
    p99: String,
    p999: String,
    max: String,
}

#[derive(Serialize)]
struct SubscriptionRow {
    name: String,
    deliveries: u64,
    duplicates: u64,
    latency: LatencyRow,
}

#[derive(Serialize)]
struct FaultRow {
    kind: String,
    target: String,
    start: String,
    end: String,
    /// What applying it did or found, and how an `exec` command ended.
    notes: Vec<String>,
    /// An `exec` command's last lines of output.
    output_tail: Vec<String>,
    /// Per stage with samples: p50 / p99 before, during and after the window.
    latency: Vec<SplitRow>,
    /// The largest lag in the window, and how long after the window it took to return to its
    /// level before ("never" within the run); `None` when lag was not measured.
    backlog_peak: Option<u64>,
    recovered_after: Option<String>,
}

#[derive(Serialize)]
struct SplitRow {
    stage: String,
    before: String,
    during: String,
    after: String,
}

impl SplitRow {
    /// `p50 / p99`, or a dash for a part without samples.
    fn of(split: &crate::observe::StageSplit) -> SplitRow {
        let part = |p: &Percentiles| {
            if p.count == 0 {
                "-".to_owned()
            } else {
                format!("{} / {}", ms(p.p50_us), ms(p.p99_us))
            }
        };
        SplitRow {
            stage: split.stage.label().to_owned(),
            before: part(&split.before),
            during: part(&split.during),
            after: part(&split.after),
        }
    }
}

impl View {
    fn of(s: &Summary) -> View {
        let axis = charts::TimeAxis::of(s);
        let (with_data, without): (Vec<&StageLatency>, Vec<&StageLatency>) = s
            .latency
            .iter()
            .partition(|l| l.percentiles.count > 0 || !l.series.is_empty());
        let o = &s.orders;
        let p = &s.provider;
        let d = &s.deliveries;
        View {
            scenario: s.scenario.clone(),
            description: s.description.clone(),
            seed: s.seed,
            version: s.doorbuster_version.clone(),
            started: wall_time(s.started_unix_ms),
            duration: format!("{:.1} s", s.duration_s),
            verdict: run_verdict(s.verdict),
            exit_code: s.exit_code,
            invalid_reason: s.invalid_reason.clone(),
            ended_early: s.ended_early(),
            unknown: s
                .incomplete
                .as_ref()
                .map(|i| i.unknown.clone())
                .unwrap_or_default(),
            reproduce: s.reproduce.clone(),
            checks: s.checks.iter().map(CheckView::of).collect(),
            rate_chart: charts::rate(s),
            lag_chart: charts::lag(s),
            failures_chart: charts::failures(s),
            deliveries_chart: charts::deliveries(s),
            stages: with_data
                .into_iter()
                .map(|l| StageView {
                    label: l.stage.clone(),
                    latency_chart: charts::latency_over_time(l, &axis),
                    distribution_chart: charts::distribution(l),
                    row: LatencyRow::of(&l.percentiles),
                })
                .collect(),
            // In observe mode the simulated stages never have data: the outputs stand for them.
            stages_without_data: without
                .into_iter()
                .filter(|_| s.outputs.is_empty())
                .map(|l| l.stage.clone())
                .collect(),
            latency_not_judged: s.latency_not_judged.clone(),
            send_lag: LatencyRow::of(&s.send_lag),
            orders: if s.incomplete.is_some() {
                // A rebuilt report knows only what the interval logs counted.
                vec![
                    ("planned", o.planned),
                    ("accepted (at least)", o.accepted),
                    ("fulfilled (at least)", o.fulfilled),
                ]
            } else if s.checkout_only() || !s.outputs.is_empty() {
                // Against a checkout endpoint, or the user's own shop, nothing of doorbuster's
                // simulated pipeline ran: no zeros for it.
                vec![
                    ("planned", o.planned),
                    ("attempted", o.attempted),
                    ("accepted", o.accepted),
                    ("failed checkouts", o.failed),
                    ("refused (non-2xx, not sent)", o.publish_refused),
                    ("unknown (sent, no answer)", o.publish_unknown),
                    ("not sent (no slot in time)", o.not_sent),
                    ("resubmits", o.resubmits),
                ]
            } else {
                vec![
                    ("planned", o.planned),
                    ("attempted", o.attempted),
                    ("accepted", o.accepted),
                    ("failed checkouts", o.failed),
                    ("publishes refused", o.publish_refused),
                    ("publishes unknown (sent, no answer)", o.publish_unknown),
                    ("checkouts not sent (no slot in time)", o.not_sent),
                    ("completed", o.completed),
                    ("fulfilled", o.fulfilled),
                    ("declined (business outcome)", o.declined),
                    (
                        "payment failed (the provider failed after the last retry)",
                        o.payment_failed,
                    ),
                    ("resubmits", o.resubmits),
                    (
                        "backordered (items out of stock: recorded, stock untouched)",
                        o.backordered,
                    ),
                ]
            },
            failed_by_reason: o
                .failed_by_reason
                .iter()
                .map(|f| {
                    let orders: Vec<String> = f.orders.iter().map(u64::to_string).collect();
                    (
                        f.outcome.words(),
                        f.reason.clone(),
                        f.count,
                        orders.join(", "),
                    )
                })
                .collect(),
            target_kind: s.target.kind.clone(),
            target_settings: s.target.settings.clone(),
            deliveries: vec![
                ("deliveries", d.total),
                ("duplicate deliveries", d.duplicates),
                ("redelivered flags", d.redelivered_flags),
                ("publish errors", d.publish_errors),
            ],
            subscriptions: d
                .per_subscription
                .iter()
                .map(|sub| SubscriptionRow {
                    name: sub.subscription.clone(),
                    deliveries: sub.deliveries,
                    duplicates: sub.duplicate_deliveries,
                    latency: LatencyRow::of(&sub.latency),
                })
                .collect(),
            provider: vec![
                ("calls", p.calls),
                ("captures", p.captures),
                ("declines", p.declines),
                ("replays (same key, same result)", p.replays),
                ("conflicts", p.conflicts),
                ("errors (outage)", p.errors),
            ],
            analytics: s.analytics.as_ref().map(|a| {
                vec![
                    ("orders created", a.orders_created.to_string()),
                    ("payments succeeded", a.payments_succeeded.to_string()),
                    (
                        "payments failed (declined cards and provider failures)",
                        a.payments_failed.to_string(),
                    ),
                    ("fulfilled", a.fulfilled.to_string()),
                    ("revenue", crate::orders::decimal(a.revenue_cents)),
                ]
            }),
            faults: s
                .faults
                .iter()
                .map(|f| FaultRow {
                    kind: f.kind.clone(),
                    target: f.target.clone(),
                    start: seconds_from_ms(f.start_ms),
                    end: f
                        .end_ms
                        .map_or_else(|| "still on at the end".to_owned(), seconds_from_ms),
                    notes: f.notes.clone(),
                    output_tail: f
                        .exec
                        .as_ref()
                        .map(|e| e.output_tail.clone())
                        .unwrap_or_default(),
                    latency: f
                        .latency
                        .iter()
                        .filter(|l| l.before.count + l.during.count + l.after.count > 0)
                        .map(SplitRow::of)
                        .collect(),
                    backlog_peak: f.recovery.as_ref().map(|r| r.backlog_peak),
                    recovered_after: f.recovery.as_ref().map(|r| {
                        r.lag_recovered_after_ms
                            .map_or("never".to_owned(), super::fmt_ms)
                    }),
                })
                .collect(),
            outputs: s
                .outputs
                .iter()
                .map(|o| OutputRow {
                    name: o.name.clone(),
                    from: o.from.clone(),
                    matched: o.matched,
                    repeated: o.repeated_events,
                    unknown: o.unknown,
                    latency: LatencyRow::of(&o.latency),
                    during: (s.faults.iter().zip(&o.during_faults))
                        .filter(|(_, p)| p.count > 0)
                        .map(|(f, p)| (format!("{} on {}", f.kind, f.target), LatencyRow::of(p)))
                        .collect(),
                    broken: o.broken.clone(),
                })
                .collect(),
            findings: s
                .findings
                .iter()
                .map(|f| (seconds_from_ms(f.at_ms), f.what.clone()))
                .collect(),
        }
    }
}

impl CheckView {
    fn of(c: &crate::verify::CheckResult) -> CheckView {
        let shown = c.evidence.len().min(EVIDENCE_MAX);
        let (inline, folded) = if shown > EVIDENCE_INLINE {
            // A long list folds whole, so the verdict table stays one screen tall.
            (Vec::new(), c.evidence[..shown].to_vec())
        } else {
            (c.evidence[..shown].to_vec(), Vec::new())
        };
        CheckView {
            name: c.name.clone(),
            verdict: match c.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Unknown => "unknown",
            },
            observed: c.observed.clone(),
            threshold: c.threshold.clone(),
            evidence_inline: inline,
            evidence_folded: folded,
            evidence_total: c.evidence_count(),
            evidence_omitted: c.remainder_note(shown),
        }
    }
}

impl LatencyRow {
    fn of(p: &Percentiles) -> LatencyRow {
        LatencyRow {
            count: p.count,
            p50: ms(p.p50_us),
            p90: ms(p.p90_us),
            p99: ms(p.p99_us),
            p999: ms(p.p999_us),
            max: ms(p.max_us),
        }
    }
}

fn run_verdict(v: RunVerdict) -> &'static str {
    match v {
        RunVerdict::Pass => "pass",
        RunVerdict::Fail => "fail",
        RunVerdict::Invalid => "invalid",
        RunVerdict::Interrupted => "interrupted",
        RunVerdict::Incomplete => "incomplete",
    }
}

/// Microseconds as milliseconds with about three significant digits.
fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    let decimals = match ms {
        m if m >= 100.0 => 0,
        m if m >= 10.0 => 1,
        m if m >= 1.0 => 2,
        _ => 3,
    };
    format!("{ms:.decimals$} ms")
}

fn seconds_from_ms(ms: u64) -> String {
    format!("{:.3} s", ms as f64 / 1000.0)
}

/// The start as RFC 3339 UTC; a time humantime cannot show (beyond year 9999, from an
/// edited file) stays a number rather than failing the page.
fn wall_time(unix_ms: u64) -> String {
    const YEAR_10000_S: u64 = 253_402_300_800;
    match UNIX_EPOCH.checked_add(Duration::from_millis(unix_ms)) {
        Some(t) if unix_ms / 1000 < YEAR_10000_S => {
            humantime::format_rfc3339_seconds(t).to_string()
        }
        _ => format!("{unix_ms} ms after the Unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{ExecOutcome, Finding, Sample, SeriesPoint};
    use crate::report::summary::{
        Deliveries, FaultWindow, OrderCounts, PercentilePoint, Rates, SCHEMA_VERSION,
    };
    use crate::services::provider::ProviderStats;
    use crate::topology::ServiceKind;
    use crate::transport::TransportInfo;
    use crate::verify::CheckResult;

    fn percentiles(base: u64) -> Percentiles {
        Percentiles {
            count: 10,
            p50_us: base,
            p90_us: base * 2,
            p99_us: base * 3,
            p999_us: base * 4,
            max_us: base * 5,
        }
    }

    /// A small hand-made summary with user-written text in every free-text field.
    fn hostile_summary() -> Summary {
        Summary {
            schema_version: SCHEMA_VERSION,
            doorbuster_version: "0.1.0".into(),
            scenario: "<b>shop</b>".into(),
            description: "peak <script>alert('x')</script> & more".into(),
            seed: 7,
            reproduce: "doorbuster run \"a&b.yaml\" --seed 7".into(),
            verdict: RunVerdict::Fail,
            exit_code: 1,
            invalid_reason: None,
            interrupted_by: None,
            incomplete: None,
            started_unix_ms: 1_700_000_000_000,
            start: None,
            duration_s: 3.0,
            target: TransportInfo {
                kind: "embedded".into(),
                settings: vec![("acks".into(), "<all>".into())],
            },
            checkout_mode: Default::default(),
            orders: OrderCounts {
                planned: 3,
                attempted: 3,
                accepted: 3,
                failed: 0,
                completed: 3,
                fulfilled: 3,
                failed_by_reason: vec![crate::observe::failures::FailedCheckouts {
                    outcome: crate::observe::failures::CheckoutFailure::Refused,
                    reason: "HTTP 503 <Service Unavailable>".into(),
                    count: 20,
                    orders: vec![0, 20],
                }],
                ..Default::default()
            },
            checks: vec![CheckResult {
                name: "no_loss".into(),
                verdict: Verdict::Fail,
                observed: "1 lost".into(),
                threshold: "0".into(),
                evidence: vec!["order 1 <img src=x onerror=alert(1)>".into()],
                evidence_total: 1,
            }],
            rates: Rates {
                planned_per_second: vec![1, 1, 1],
                achieved_per_second: vec![1, 1, 1],
                phases: Vec::new(),
            },
            latency: vec![StageLatency {
                stage: "order.created -> order.fulfilled".into(),
                percentiles: percentiles(1000),
                distribution: vec![
                    PercentilePoint {
                        percentile: 50.0,
                        value_us: 1000,
                    },
                    PercentilePoint {
                        percentile: 100.0,
                        value_us: 5000,
                    },
                ],
                series: vec![SeriesPoint {
                    second: 0,
                    percentiles: percentiles(1000),
                }],
            }],
            latency_not_judged: vec!["<order.created>".into()],
            send_lag: percentiles(10),
            deliveries: Deliveries::default(),
            provider: ProviderStats::default(),
            analytics: None,
            samples: Vec::new(),
            tolerances: Default::default(),
            faults: vec![FaultWindow {
                kind: "exec".into(),
                target: "<email>".into(),
                start_ms: 1000,
                end_ms: Some(2000),
                notes: vec!["<note>".into()],
                latency: Vec::new(),
                recovery: None,
                exec: Some(ExecOutcome {
                    exit_code: Some(1),
                    output_tail: vec!["<img src=x> failed".into()],
                }),
            }],
            outputs: vec![crate::observe::outputs::OutputSummary {
                name: "<paid>".into(),
                from: "<shop.payments>".into(),
                tapped: 3,
                matched: 2,
                repeated_events: 1,
                unknown: 1,
                latency: percentiles(1000),
                during_faults: vec![percentiles(2000)],
                broken: Some("<reset>".into()),
            }],
            findings: vec![Finding {
                at_ms: 5,
                what: "broker said <no>".into(),
            }],
            ledger_bytes_per_order: 44,
        }
    }

    /// Text from the scenario or an edited summary is escaped, never markup: a
    /// `<script>` in the description shows as text and no tag from user text survives.
    #[test]
    fn user_text_is_escaped() {
        let html = render(&hostile_summary()).expect("renders");
        assert!(!html.contains("<script"), "a script tag got through");
        assert!(!html.contains("<b>shop"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<all>"));
        assert!(!html.contains("<email>"));
        assert!(!html.contains("<no>"));
        assert!(html.contains("&lt;note&gt;"), "notes are shown, escaped");
        assert!(
            html.contains("HTTP 503 &lt;Service Unavailable&gt;"),
            "a failed checkout's reason is shown, escaped"
        );
        assert!(
            html.contains("Measured, not judged") && html.contains("&lt;order.created&gt;"),
            "a stage without an SLO is said to be unjudged"
        );
        assert!(
            html.contains("&lt;img src=x&gt; failed"),
            "an exec command's output is shown, escaped"
        );
        assert!(
            html.contains("&lt;script&gt;"),
            "the description is shown, escaped"
        );
        assert!(html.contains("&lt;b&gt;shop&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;shop"));
    }

    /// The charts are inlined as markup (not escaped), with their ids.
    #[test]
    fn charts_are_inline_svg() {
        let simulated = Summary {
            outputs: Vec::new(),
            ..hostile_summary()
        };
        let html = render(&simulated).expect("renders");
        for id in [
            "chart-rate",
            "chart-failures",
            "chart-lag",
            "chart-deliveries",
            "chart-latency-order-created-order-fulfilled",
            "chart-distribution-order-created-order-fulfilled",
        ] {
            assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id} missing");
        }
        assert!(html.contains("class=\"fault-window\""));
        // The hand-made summary has no samples: failures, lag and deliveries say so.
        assert_eq!(html.matches("no data for this chart").count(), 3);
        assert!(!html.contains("http://") && !html.contains("https://"));
        // In observe mode the shop's outputs stand where doorbuster's consumers would.
        let observed = render(&hostile_summary()).expect("renders");
        assert!(observed.contains("Your shop's outputs") && !observed.contains("chart-lag"));
        assert!(!html.contains("Your shop's outputs"));
    }

    /// Odd data from an edited file (a fault ending before it starts or after the run, a
    /// percentile past 100, a counter going down, huge values) renders instead of panicking.
    #[test]
    fn odd_summaries_render() {
        let mut s = hostile_summary();
        s.duration_s = -1.0;
        s.faults.push(FaultWindow {
            kind: "pause".into(),
            target: "email".into(),
            start_ms: 9_000_000,
            end_ms: Some(10),
            notes: Vec::new(),
            latency: Vec::new(),
            recovery: None,
            exec: None,
        });
        s.latency[0].distribution.push(PercentilePoint {
            percentile: 250.0,
            value_us: u64::MAX,
        });
        s.latency[0].series[0].percentiles.max_us = u64::MAX;
        s.rates.achieved_per_second = vec![u64::MAX, 0];
        s.samples = [(0, 10), (1, 4)]
            .iter()
            .map(|&(second, deliveries)| Sample {
                second,
                attempted: 0,
                accepted: 0,
                failed: 0,
                deliveries,
                duplicate_deliveries: 0,
                dead_lettered: 0,
                in_flight: 0,
                lag: vec![(ServiceKind::Email, None), (ServiceKind::Payment, Some(3))],
            })
            .collect();
        s.checks[0].evidence = (0..100).map(|i| format!("order {i}")).collect();
        s.checks[0].evidence_total = 5000;
        let html = render(&s).expect("renders");
        assert!(
            html.contains("and 4900 more (summary.json keeps 100 of 5000)"),
            "{html}"
        );
    }

    /// A start time beyond what humantime can print stays a number.
    #[test]
    fn absurd_start_time_does_not_fail() {
        assert!(wall_time(u64::MAX).contains("after the Unix epoch"));
        assert_eq!(wall_time(0), "1970-01-01T00:00:00Z");
    }
}
