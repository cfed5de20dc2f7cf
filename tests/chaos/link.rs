//! Link faults through the fault proxy in whole runs on the loopback Redis.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_latency_through_the_fault_proxy_shows_in_checkout_latency() {
    if !broker_up_or_skip("link latency", "redis", 6379) {
        return;
    }
    let _turn = REAL_BROKERS.lock().await;
    // 100 ms each way on the link to Redis for seconds 2..4: every XADD round trip in the
    // window pays at least 200 ms; before it, loopback is sub-10 ms.
    let s = redis_scenario("  - { at: 2s, for: 2s, link: latency, delay: 100ms }");
    let r = run(&s).await;
    let split = checkout_split(&r, "link");
    assert!(split.during.p50_us >= 200_000, "during: {:?}", split.during);
    // Every checkout before the window was fast: a second closed late (its lags asked
    // through the slowed link first) used to take the window's first latencies into
    // `before` (p90 222 ms) and leave `during` half fast (p50 177 ms, a CI failure).
    assert!(split.before.p99_us < 50_000, "before: {:?}", split.before);
    assert!(split.after.p50_us < 50_000, "after: {:?}", split.after);
    assert_eq!(check(&r, "no_loss").verdict, Verdict::Pass);
    assert_eq!(r.summary.target.kind, "redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_blackhole_fails_checkouts_and_the_run_says_so() {
    if !broker_up_or_skip("link blackhole", "redis", 6379) {
        return;
    }
    let _turn = REAL_BROKERS.lock().await;
    // Negative control for the link: a partition between doorbuster and Redis for 3 s of a
    // 6 s run. Checkouts in the window get no ack within checkout_timeout (2 s): the
    // checkout_success_rate check fails.
    let s = redis_scenario("  - { at: 2s, for: 3s, link: blackhole }");
    let r = run(&s).await;
    let checkout = check(&r, "checkout_success_rate");
    assert_eq!(checkout.verdict, Verdict::Fail, "{checkout:?}");
    assert!(r.summary.orders.failed > 0);
}
