//! Service faults on the embedded broker under the paused clock: crashes (and the ack-first
//! negative controls), errors, pauses, latency, duplicates, and overlapping windows.

use super::*;

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

/// A crash at 5 s of a service whose every delivery takes 2 s (about 200 in hand), with the
/// given commit policy.
async fn crash_with_work_in_hand(service: &str, commit: &str) -> RunResult {
    let s = scenario(
        &format!("  - {{ at: 5s, crash: {service}, restart_after: 1s }}"),
        &format!("  {service}: {{ latency: 2s, commit: {commit} }}"),
    );
    run(&s).await
}

/// `commit: on_receive` acks a delivery before acting on it: the crash loses the work in
/// hand while every event counts as delivered. `no_loss` judges effects, so it must fail and
/// name the service, the orders and what they lost; the `after_effect` twin must pass.
async fn ack_first_loses_and_after_effect_does_not(service: &str, lost: &str) {
    let r = crash_with_work_in_hand(service, "on_receive").await;
    let c = check(&r, "no_loss");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(
        c.observed.contains("(0 with their delivery,")
            && c.observed.contains("; 0 of ")
            && c.observed.contains(" acked events never delivered"),
        "the broker lost nothing, the service did: {}",
        c.observed
    );
    let line = c
        .evidence
        .iter()
        .find(|e| e.starts_with(&format!("{service}: ")) && e.contains("owed effects lost"))
        .unwrap_or_else(|| panic!("no {service} line in {:?}", c.evidence));
    assert!(
        line.contains("(0 with their delivery,")
            && line.contains("acked back before the effect")
            && line.contains("; 0 of "),
        "{line}"
    );
    let example = format!("{service}: {lost} (delivered 1x and acked back, never acted on)");
    assert!(
        c.evidence
            .iter()
            .any(|e| e.starts_with("order ") && e.ends_with(&example)),
        "no `{example}` in {:?}",
        c.evidence
    );
    assert_eq!(r.summary.exit_code, 1);

    let safe = crash_with_work_in_hand(service, "after_effect").await;
    assert_eq!(check(&safe, "no_loss").verdict, Verdict::Pass);
    passes(&safe);
}

#[tokio::test(start_paused = true)]
async fn no_loss_catches_payment_acking_before_the_charge() {
    ack_first_loses_and_after_effect_does_not("payment", "the card was never captured").await;
}

#[tokio::test(start_paused = true)]
async fn no_loss_catches_inventory_acking_before_the_reservation() {
    ack_first_loses_and_after_effect_does_not(
        "inventory",
        "stock was never reserved (nor the order backordered)",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn no_loss_catches_email_acking_before_sending() {
    ack_first_loses_and_after_effect_does_not("email", "email sent never happened").await;
}

#[tokio::test(start_paused = true)]
async fn no_loss_catches_warehouse_acking_before_shipping() {
    ack_first_loses_and_after_effect_does_not("warehouse", "shipment created never happened").await;
}

#[tokio::test(start_paused = true)]
async fn no_loss_catches_analytics_acking_before_counting() {
    ack_first_loses_and_after_effect_does_not("analytics", "fulfilment counted never happened")
        .await;
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
    let inv = support::subscription(&r, "inventory <- order.created");
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
    let email = support::subscription(&r, "email <- order.payment.succeeded");
    // Half of about 490 deliveries in the window arrived twice.
    assert!(
        (200..=300).contains(&email.duplicate_deliveries),
        "{email:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn overlapping_pauses_compose_and_the_report_shows_the_pause_that_happened() {
    // Pauses 2..4 s and 3..6 s: the warehouse stays paused until 6 s, its backlog grows
    // every second of that, and both windows say why.
    let s = scenario(
        "  - { at: 2s, for: 2s, pause: warehouse }\n  - { at: 3s, for: 3s, pause: warehouse }",
        "  warehouse: { latency: 1ms }",
    );
    let r = run(&s).await;
    passes(&r);
    let lag = |second: u32| {
        let sample = r
            .summary
            .samples
            .iter()
            .find(|s| s.second == second)
            .unwrap();
        sample
            .lag
            .iter()
            .find(|(k, _)| k.name() == "warehouse")
            .and_then(|(_, l)| *l)
            .unwrap()
    };
    // Sample `s` is taken at the end of second s.
    for second in 2..6 {
        assert!(
            lag(second) > lag(second - 1) + 50,
            "still paused in second {second}: lag {} after {}",
            lag(second),
            lag(second - 1)
        );
    }
    assert!(lag(6) < 20, "resumed at 6 s: lag {}", lag(6));
    let windows: Vec<_> = r
        .summary
        .faults
        .iter()
        .map(|w| (w.start_ms, w.end_ms))
        .collect();
    assert_eq!(windows, [(2_000, Some(4_000)), (3_000, Some(6_000))]);
    assert!(
        r.summary.faults[1].notes[0].contains("already in force (faults[0])"),
        "{:?}",
        r.summary.faults
    );
    let terminal = doorbuster::report::terminal::closing_lines(&r.summary);
    assert!(
        terminal.contains("its window closed while faults[1] kept pause on warehouse in force"),
        "{terminal}"
    );
}
