//! A run long enough for its ledger to page settled orders out to its folder.

use super::*;

/// Email paused for 50 s while every other effect settles: the orders' chunk of the ledger
/// goes quiet for the 30 s it takes and is paged out, then the paused emails land in it,
/// duplicated by a fault. Judged from the paged ledger, every check says what it says about
/// a ledger that never paged (a run without files): nothing lost, no second email from an
/// idempotent service; and a service that is not idempotent is caught sending the emails
/// recorded after the page-out twice.
#[tokio::test(start_paused = true)]
async fn a_ledger_paged_out_mid_run_is_judged_whole() {
    let faults = "  - { at: 2s, for: 50s, pause: email }\n  \
                  - { at: 40s, for: 30s, duplicate: email, share: 50% }";
    let checks = "  no_loss: true\n  no_duplicate_effects: true";
    let idempotent = scenario_with(faults, "  email: { latency: 1ms }", checks);
    let not_idempotent = scenario_with(
        faults,
        "  email: { latency: 1ms, idempotent: false }",
        checks,
    );
    for (s, duplicates) in [(idempotent, Verdict::Pass), (not_idempotent, Verdict::Fail)] {
        let dir = tempfile::tempdir().expect("a run folder");
        let options = RunOptions {
            out_dir: Some(dir.path().join("run")),
            run_arg: "test".into(),
            ..RunOptions::default()
        };
        let paged = execute(&s, options).await.expect("the run completes");
        let kept = run(&s).await;
        assert!(paged.observer.ledger.page_outs() > 0, "the ledger paged");
        assert_eq!(
            kept.observer.ledger.page_outs(),
            0,
            "without files, no paging"
        );
        assert!(paged.summary.deliveries.duplicates > 0);
        for r in [&paged, &kept] {
            assert_eq!(check(r, "no_loss").verdict, Verdict::Pass);
            assert_eq!(check(r, "no_duplicate_effects").verdict, duplicates);
        }
        let verdicts = |r: &RunResult| -> Vec<(String, Verdict)> {
            (r.summary.checks.iter())
                .map(|c| (c.name.clone(), c.verdict))
                .collect()
        };
        assert_eq!(verdicts(&paged), verdicts(&kept));
        assert_eq!(paged.summary.orders, kept.summary.orders);
    }
}
