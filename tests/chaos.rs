//! Chaos: every fault kind on the embedded broker under tokio's paused clock, with exact or
//! bounded expectations, and the negative controls issue 4 names: a crashed non-idempotent
//! email service is caught sending second emails, a consumer that acks before processing
//! and crashes is caught losing orders, a replay into a non-idempotent service is caught
//! re-applying effects. Each has its clean twin that passes.

use std::time::Duration;

use doorbuster::observe::FaultWindow;
use doorbuster::report::summary::RunVerdict;
use doorbuster::run::{RunOptions, RunResult, execute};
use doorbuster::scenario::model::Scenario;
use doorbuster::verify::{CheckResult, Verdict};

/// About 1 000 orders in 10 s, a fast in-process provider, then `faults` (YAML list items).
fn scenario(faults: &str, services: &str) -> Scenario {
    scenario_with(faults, services, "  no_loss: true")
}

fn scenario_with(faults: &str, services: &str, checks: &str) -> Scenario {
    let text = format!(
        r#"
name: chaos
seed: 5
load:
  arrivals: uniform
  phases:
    - {{ hold: 10s, rate: 100/s }}
  drain: 60s
provider:
  via: in_process
  latency: 1ms..5ms
services:
{services}
checks:
{checks}
faults:
{faults}
"#
    );
    doorbuster::scenario::parse("chaos.yaml", &text).expect("the chaos scenario parses")
}

async fn run(s: &Scenario) -> RunResult {
    let options = RunOptions {
        no_files: true,
        run_arg: "test".into(),
        ..RunOptions::default()
    };
    execute(s, options).await.expect("the run completes")
}

fn check<'a>(r: &'a RunResult, name: &str) -> &'a CheckResult {
    r.summary
        .checks
        .iter()
        .find(|c| c.name.starts_with(name))
        .unwrap_or_else(|| panic!("no check {name}"))
}

fn window(r: &RunResult, kind: &str) -> FaultWindow {
    r.summary
        .faults
        .iter()
        .find(|f| f.kind == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} window in {:?}", r.summary.faults))
}

fn passes(r: &RunResult) {
    for c in &r.summary.checks {
        assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
    }
    assert_eq!(r.summary.verdict, RunVerdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_idempotent_email_service_redelivers_without_second_emails() {
    let s = scenario(
        "  - { at: 4s, crash: email, restart_after: 2s }",
        "  email: { latency: 30ms }",
    );
    let r = run(&s).await;
    passes(&r);
    // The broker handed the crashed members' uncommitted events to the new ones.
    assert!(r.summary.deliveries.redelivered_flags > 0);
    assert!(r.summary.deliveries.duplicates > 0);
    let w = window(&r, "crash");
    assert_eq!(
        (w.target.as_str(), w.start_ms, w.end_ms),
        ("email", 4_000, Some(6_000))
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_non_idempotent_email_service_is_caught_sending_second_emails() {
    let s = scenario(
        "  - { at: 4s, crash: email, restart_after: 2s }",
        "  email: { latency: 30ms, idempotent: false }",
    );
    let r = run(&s).await;
    let c = check(&r, "no_duplicate_effects");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.observed.contains("orders with email sent more than once"),
        "{}",
        c.observed
    );
    assert_eq!(r.summary.exit_code, 1);
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_acks_before_processing_and_crashes_is_caught_losing_orders() {
    // 2 s of warehouse work at 100 orders/s: about 200 orders in flight at the crash.
    let lossy = scenario(
        "  - { at: 5s, crash: warehouse, restart_after: 1s }",
        "  warehouse: { latency: 2s, commit: on_receive }",
    );
    let r = run(&lossy).await;
    let c = check(&r, "completion_rate");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(
        c.evidence.iter().any(|e| e.ends_with("never settled")),
        "{:?}",
        c.evidence
    );
    // The same crash with commits after the effect loses nothing.
    let safe = scenario(
        "  - { at: 5s, crash: warehouse, restart_after: 1s }",
        "  warehouse: { latency: 2s }",
    );
    passes(&run(&safe).await);
}

#[tokio::test(start_paused = true)]
async fn a_replay_rebuilds_analytics_and_is_caught_reapplying_effects_without_idempotency() {
    let replay = "  - { at: 12s, replay: analytics, to: earliest }";
    let r = run(&scenario(replay, "  analytics: { latency: 1ms }")).await;
    passes(&r);
    let w = window(&r, "replay");
    assert!(
        w.notes.iter().any(|n| n.starts_with("rewound: ")),
        "{:?}",
        w.notes
    );
    // Every event was read twice, and the state still equals the ground truth.
    let a = r.analytics.clone().unwrap();
    assert_eq!(a.orders_created, r.summary.orders.attempted);
    assert_eq!(
        a.payments_succeeded + a.payments_failed,
        r.summary.orders.attempted
    );
    assert!(r.summary.deliveries.duplicates >= r.summary.orders.attempted);

    let broken = scenario(replay, "  analytics: { latency: 1ms, idempotent: false }");
    let r = run(&broken).await;
    let c = check(&r, "no_duplicate_effects");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.observed.contains("revenue booked more than once"),
        "{}",
        c.observed
    );
}

#[tokio::test(start_paused = true)]
async fn a_provider_outage_is_retried_with_the_same_key_and_recovers() {
    let s = scenario(
        "  - { at: 3s, for: 4s, provider_outage: { errors: 30%, latency: 200ms } }",
        "  payment: { latency: 1ms }",
    );
    let r = run(&s).await;
    passes(&r);
    assert!(r.summary.provider.errors > 0, "{:?}", r.summary.provider);
    // Retries reused the key: one capture per approved order, none twice.
    assert!(r.provider.captures_per_order().values().all(|&n| n == 1));
    let w = window(&r, "provider_outage");
    assert_eq!((w.start_ms, w.end_ms), (3_000, Some(7_000)));
}

#[tokio::test(start_paused = true)]
async fn errors_make_deliveries_come_back_and_still_complete() {
    let s = scenario(
        "  - { at: 2s, for: 3s, errors: inventory, share: 20% }",
        "  inventory: { latency: 1ms }",
    );
    let r = run(&s).await;
    passes(&r);
    // Nacked deliveries came back: more deliveries than first deliveries to inventory.
    let inv = r
        .summary
        .deliveries
        .per_subscription
        .iter()
        .find(|s| s.subscription == "inventory <- order.created")
        .unwrap();
    assert!(inv.duplicate_deliveries > 20, "{inv:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pause_builds_a_backlog_that_drains_after() {
    let s = scenario(
        "  - { at: 2s, for: 3s, pause: warehouse }",
        "  warehouse: { latency: 1ms }",
    );
    let r = run(&s).await;
    passes(&r);
    let lag_peak = r
        .summary
        .samples
        .iter()
        .filter_map(|s| {
            s.lag
                .iter()
                .find(|(k, _)| k.name() == "warehouse")
                .and_then(|(_, l)| *l)
        })
        .max()
        .unwrap();
    // Three seconds of ~98 approved orders/s waited for the warehouse.
    assert!((250..=320).contains(&lag_peak), "{lag_peak}");
    // Nothing was redelivered: a pause keeps the partitions.
    assert_eq!(r.summary.deliveries.redelivered_flags, 0);
}

#[tokio::test(start_paused = true)]
async fn injected_latency_shows_in_the_during_histogram_within_10ms_at_p50() {
    let s = scenario(
        "  - { at: 3s, for: 4s, latency: email, add: 200ms }",
        "  email: { latency: 30ms }",
    );
    let r = run(&s).await;
    passes(&r);
    let split = window(&r, "latency")
        .latency
        .into_iter()
        .find(|l| l.stage.label() == "order.created -> email.sent")
        .expect("a split for email.sent");
    let added = split.during.p50_us as i64 - split.before.p50_us as i64;
    assert!((190_000..=210_000).contains(&added), "+{added} µs");
    // After the window the stage is back where it was.
    let after = split.after.p50_us as i64 - split.before.p50_us as i64;
    assert!(after.abs() <= 10_000, "{after} µs");
}

#[tokio::test(start_paused = true)]
async fn recovery_measures_the_backlog_and_gates_on_its_drain() {
    let s = scenario_with(
        "  - { at: 2s, for: 3s, pause: warehouse }",
        "  warehouse: { latency: 1ms }",
        "  recovery: { drain_within: 5s }",
    );
    let r = run(&s).await;
    passes(&r);
    let recovery = window(&r, "pause").recovery.expect("measured");
    assert!(recovery.backlog_peak >= 250, "{recovery:?}");
    assert!(
        recovery
            .lag_recovered_after_ms
            .is_some_and(|ms| ms <= 2_000),
        "{recovery:?}"
    );
    // Negative control: an email service that crashes and never comes back never drains.
    let s = scenario_with(
        "  - { at: 2s, crash: email }",
        "  email: { latency: 1ms }",
        "  recovery: { drain_within: 5s }",
    );
    let r = run(&s).await;
    let c = check(&r, "recovery");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert_eq!(c.observed, "lag never recovered");
}

#[tokio::test(start_paused = true)]
async fn duplicates_are_counted_and_absorbed_by_an_idempotent_service() {
    let s = scenario(
        "  - { at: 2s, for: 5s, duplicate: email, share: 50% }",
        "  email: { latency: 1ms }",
    );
    let r = run(&s).await;
    passes(&r);
    let email = r
        .summary
        .deliveries
        .per_subscription
        .iter()
        .find(|s| s.subscription == "email <- order.payment.succeeded")
        .unwrap();
    // Half of about 490 deliveries in the window arrived twice.
    assert!(
        (200..=300).contains(&email.duplicate_deliveries),
        "{email:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn exec_runs_a_command_and_keeps_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        "  - { at: 2s, exec: \"echo broker restarted\" }",
        "  email: { latency: 1ms }",
    );
    let options = RunOptions {
        out_dir: Some(dir.path().to_path_buf()),
        run_arg: "test".into(),
        ..RunOptions::default()
    };
    let r = execute(&s, options).await.unwrap();
    // The command runs in the background; real time passes for the child process.
    for _ in 0..100 {
        if dir.path().join("exec-0.log").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("exec-0.log")).unwrap();
    assert_eq!(log.trim(), "broker restarted");
    assert_eq!(window(&r, "exec").start_ms, 2_000);
}

#[test]
fn faults_are_validated_with_positions() {
    let bad = |faults: &str| {
        let text = format!(
            "name: x\nload:\n  phases:\n    - {{ hold: 10s, rate: 5/s }}\nfaults:\n{faults}\n"
        );
        doorbuster::scenario::parse("f.yaml", &text)
            .unwrap_err()
            .to_string()
    };
    let e = bad("  - { at: 1s, pause: email }");
    assert!(
        e.contains("faults[0].for: required key missing") || e.contains("faults[0].for"),
        "{e}"
    );
    let e = bad("  - { at: 1s, for: 2s, crash: email }");
    assert!(e.contains("a crash fault takes no `for`"), "{e}");
    let e = bad("  - { at: 1s, crash: emaill }");
    assert!(
        e.contains("faults[0].crash") && e.contains("did you mean \"email\""),
        "{e}"
    );
    let e = bad("  - { at: 1s, crash: email, pause: email }");
    assert!(e.contains("exactly one kind"), "{e}");
    let e = bad("  - { at: 90s, crash: email }");
    assert!(e.contains("but the run ends at"), "{e}");
    let e = bad("  - { at: 1s, for: 1s, latency: email }");
    assert!(e.contains("faults[0].add"), "{e}");
}
