//! The payment provider under faults: outages retried under one key, answers too late for
//! the payment service, and the synchronous-checkout baseline.

use super::*;

/// Regression (issue 11): a provider that captures and then answers too late for the payment
/// service's timeout, every retry: the service gives up and announces a payment failure for
/// an order the shopper paid for. Nothing flagged it; `money_matches_state` must.
#[tokio::test(start_paused = true)]
async fn money_matches_state_catches_orders_charged_but_failed() {
    let with = |faults: &str| {
        let text = format!(
            r#"
name: charged-but-failed
seed: 5
load:
  arrivals: uniform
  phases:
    - {{ hold: 10s, rate: 100/s }}
  drain: 60s
provider:
  via: in_process
  latency: 1ms..5ms
  timeout: 1s
  retries: 1
faults:
{faults}
"#
        );
        doorbuster::scenario::parse("charged.yaml", &text).expect("the scenario parses")
    };
    let slow = "  - { at: 2s, for: 2s, provider_outage: { errors: 0%, latency: 5s } }";
    let r = run(&with(slow)).await;
    let c = check(&r, "money_matches_state");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    // Every order with a paying card that the service gave up on was captured at the
    // provider (declining cards time out too, but nothing was taken from them).
    let factory = doorbuster::orders::OrderFactory::new(5, &with("  []").orders);
    let failed: Vec<u64> = (0..r.summary.orders.attempted)
        .filter(|&o| r.observer.ledger.terminal(o).0 == doorbuster::observe::Terminal::Failed)
        .filter(|&o| !factory.plan(o).declines)
        .collect();
    let captures = r.provider.captures_per_order();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|o| captures.get(*o) > 0));
    assert!(
        c.observed.starts_with(&format!("{} of ", failed.len()))
            && c.observed.contains(&format!(
                "({} charged but failed or declined, 0 charged but never fulfilled",
                failed.len()
            )),
        "{}",
        c.observed
    );
    assert_eq!(
        c.evidence[0],
        format!(
            "order {}: charged 1x, but the order ended payment failed",
            failed[0]
        )
    );
    // The clean twin: no slow provider, every capture ends fulfilled.
    let clean = run(&with("  []")).await;
    assert_eq!(check(&clean, "money_matches_state").verdict, Verdict::Pass);
    passes(&clean);
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
    assert!(r.provider.captures_per_order().doubled().is_empty());
    let w = window(&r, "provider_outage");
    assert_eq!((w.start_ms, w.end_ms), (3_000, Some(7_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_windows_start_and_end_within_100ms_of_plan_in_real_time() {
    // Real time, bounded: 3 s of load, the outage from 1 s to 2 s.
    let text = "name: timing\nload:\n  phases:\n    - { hold: 3s, rate: 50/s }\n  drain: 5s\nprovider: { via: in_process, latency: 1ms }\nfaults:\n  - { at: 1s, for: 1s, provider_outage: { errors: 50% } }\n";
    let s = doorbuster::scenario::parse("timing.yaml", text).unwrap();
    let r = run(&s).await;
    let w = window(&r, "provider_outage");
    assert!((900..=1_100).contains(&w.start_ms), "{w:?}");
    assert!(
        w.end_ms.is_some_and(|end| (1_900..=2_100).contains(&end)),
        "{w:?}"
    );
}

// --- The synchronous-checkout baseline (issue 4) -------------------------------------------
//
// The same provider outage, once with payment off the checkout path (async, the design under
// test) and once with the checkout charging the card inline (sync, the monolith baseline).
// The async run is the proof that payment belongs off the checkout path; the sync run is the
// negative control showing the checkout success rate check can see a provider outage at all.

/// The outage both modes face: 30 % of calls fail, the rest answer in 1 s to 3 s.
///
/// Uniform latency rather than a fixed 2 s: with the checkout deadline at 2 s too, a fixed
/// answer would land exactly on the deadline under the paused clock, and the test would be
/// about the timer's tie-breaking instead of about slow answers.
const OUTAGE: &str = "  - { at: 2s, for: 6s, provider_outage: { errors: 30%, latency: 1s..3s } }";

/// 1 000 orders in 10 s at 100/s, `checkout_timeout` 2 s, a fast in-process provider.
/// The payment service's own client waits up to 5 s: off the shopper's path it can afford
/// to outwait a slow provider, which the shopper (and so the sync checkout) cannot.
fn checkout_scenario(mode: &str, faults: &str) -> Scenario {
    let text = format!(
        r#"
name: checkout-{mode}
seed: 5
load:
  arrivals: uniform
  checkout_timeout: 2s
  checkout: {{ mode: {mode} }}
  phases:
    - {{ hold: 10s, rate: 100/s }}
  drain: 60s
provider:
  via: in_process
  latency: 1ms..5ms
  timeout: 5s
services:
  payment: {{ latency: 1ms }}
faults:
{faults}
"#
    );
    doorbuster::scenario::parse("checkout.yaml", &text).expect("the checkout scenario parses")
}

/// No order has two captures: the provider's own records, not the payment service's word.
fn charged_at_most_once(r: &RunResult) {
    let captures = r.provider.captures_per_order();
    let twice = captures.doubled();
    assert!(twice.is_empty(), "charged twice: {twice:?}");
    assert_eq!(check(r, "no_duplicate_effects").verdict, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn an_async_checkout_rides_out_a_provider_outage() {
    // Payment is off the checkout path: every checkout succeeds, and payment recovers by
    // retrying with backoff under the same key.
    let r = run(&checkout_scenario("async", OUTAGE)).await;
    assert_eq!(r.summary.checkout_mode, CheckoutMode::Async);
    let o = &r.summary.orders;
    assert_eq!((o.attempted, o.accepted, o.failed), (1_000, 1_000, 0));
    assert!(r.summary.provider.errors > 100, "{:?}", r.summary.provider);
    passes(&r);
    charged_at_most_once(&r);
}

#[tokio::test(start_paused = true)]
async fn a_sync_checkout_fails_shoppers_during_the_same_outage() {
    // The negative control: the checkout waits for the card API, so the outage reaches the
    // shopper and the checkout success rate falls far below its 99.5 % bar.
    let r = run(&checkout_scenario("sync", OUTAGE)).await;
    assert_eq!(r.summary.checkout_mode, CheckoutMode::Sync);
    let c = check(&r, "checkout_success_rate");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert_eq!(r.summary.exit_code, 1);
    // Orders due outside the window (0-2 s and 8-10 s: 400) all succeed. Of the 600 due in
    // it, 30 % get an error and, of the 70 % answered, only those answered within 2 s (about
    // half of a uniform 1 s..3 s) beat the deadline: 600 x 0.7 x 0.5 = 210. About 610 of
    // 1 000 (61 %) expected; seed 5 gives 589 (58.9 %), within two standard deviations of
    // the 210 (binomial, about 12). The range allows for that spread, nothing more.
    let accepted = r.summary.orders.accepted;
    assert!(
        (570..=630).contains(&accepted),
        "{accepted} accepted: {c:?}"
    );
    assert!(
        c.observed.ends_with(&format!("({accepted} of 1000)")),
        "{c:?}"
    );
    assert_eq!(r.summary.orders.failed, 1_000 - accepted);
    // Downstream still ran: the payment service charged the failed checkouts' orders too,
    // with the key the checkout had used, so none twice.
    charged_at_most_once(&r);
    assert!(r.summary.provider.replays > 0, "{:?}", r.summary.provider);
}

#[tokio::test(start_paused = true)]
async fn a_sync_checkout_without_an_outage_passes_and_charges_once() {
    // The clean twin: inline payment against a healthy provider passes every check, and the
    // checkout's call and the payment service's call under one key make one capture.
    let r = run(&checkout_scenario("sync", "  []")).await;
    passes(&r);
    charged_at_most_once(&r);
    let p = r.summary.provider;
    // Every approved order was captured once and replayed to its second caller.
    assert_eq!(p.captures as usize, r.provider.captures_per_order().len());
    assert!(p.replays >= p.captures, "{p:?}");
}

/// A lost answer (the card charged, the answer too late to read) is harmless to a payment
/// service that retries under the order's key, and a double charge for one that retries with
/// a fresh key: the classic cause, proven from the provider's own captures.
#[tokio::test(start_paused = true)]
async fn lost_answers_are_safe_under_one_key_and_double_charge_with_fresh_keys() {
    let with = |services: &str| {
        scenario_with(
            "  - { at: 2s, for: 3s, provider_outage: { lost_answers: 20% } }",
            services,
            "  no_duplicate_effects: true\n  money_matches_state: true",
        )
    };
    let safe = run(&with("  payment: { latency: 1ms }")).await;
    let p = &safe.summary.provider;
    assert!(p.lost_answers > 0, "{p:?}");
    assert_eq!(p.errors, 0, "lost answers fail no call: {p:?}");
    // The retries after a lost answer were replays of the stored charge.
    assert!(p.replays >= p.lost_answers / 2, "{p:?}");
    assert!(safe.provider.captures_per_order().doubled().is_empty());
    assert_eq!(check(&safe, "no_duplicate_effects").verdict, Verdict::Pass);
    assert_eq!(check(&safe, "money_matches_state").verdict, Verdict::Pass);

    // Negative control: the same fault and a service that retries with a fresh key.
    let buggy = run(&with("  payment: { idempotent: false }")).await;
    let doubled = buggy.provider.captures_per_order().doubled().len();
    assert!(doubled > 0);
    let c = check(&buggy, "no_duplicate_effects");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(
        c.observed
            .starts_with(&format!("{doubled} orders charged more than once")),
        "{}",
        c.observed
    );
    assert!(
        c.evidence
            .iter()
            .any(|e| e.contains("payment: charged 2 times")),
        "{:?}",
        c.evidence
    );
}
