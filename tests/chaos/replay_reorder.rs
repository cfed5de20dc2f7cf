//! Faults on the broker's order of events: a replay that rewinds a group, and reordering
//! within a key.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_replay_rebuilds_analytics_and_is_caught_reapplying_effects_without_idempotency() {
    let replay = "  - { at: 12s, replay: analytics, to: earliest }";
    let r = run(&scenario(replay, "  analytics: { latency: 1ms }")).await;
    passes(&r);
    assert_eq!(check(&r, "replay").verdict, Verdict::Pass);
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
    let replay_check = check(&r, "replay");
    assert_eq!(replay_check.verdict, Verdict::Fail);
    assert!(
        replay_check
            .evidence
            .iter()
            .any(|e| e.starts_with("analytics after the replay: ")
                && e.contains("revenue ")
                && e.contains(" where the ground truth is ")),
        "{:?}",
        replay_check.evidence
    );
    let c = check(&r, "no_duplicate_effects");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.observed.contains("revenue booked more than once"),
        "{}",
        c.observed
    );
}

#[tokio::test(start_paused = true)]
async fn a_reorder_fault_is_caught_by_per_key_order() {
    // Resubmits give keys two `order.created` events, the ones a reorder can swap.
    let text = |faults: &str| {
        format!(
            "name: reorder\nseed: 9\nload:\n  arrivals: uniform\n  phases:\n    - {{ hold: 10s, rate: 100/s }}\n  drain: 30s\norders: {{ resubmits: 30% }}\nprovider: {{ via: in_process, latency: 1ms }}\n{faults}"
        )
    };
    let clean = doorbuster::scenario::parse("r.yaml", &text("")).unwrap();
    let r = run(&clean).await;
    assert_eq!(check(&r, "per_key_order").verdict, Verdict::Pass);
    let faulted = doorbuster::scenario::parse(
        "r.yaml",
        &text("faults:\n  - { at: 1s, for: 8s, reorder: order.created, keys: 50% }\n"),
    )
    .unwrap();
    let r = run(&faulted).await;
    let c = check(&r, "per_key_order");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    // Held events were released, never dropped.
    assert_eq!(check(&r, "no_loss").verdict, Verdict::Pass);
    assert_eq!(window(&r, "reorder").target, "order.created");
}
