//! Interrupted runs: what a pause or a running `exec` command leaves when the run is cut short.

use super::exec::exec_findings;
use super::*;

/// Regression (issue 11): an interrupt while a service is paused reported "196 deliveries
/// lost". The paused service's events were still queued when the shortened drain ended: not
/// settled, never lost, and the check cannot pass.
#[tokio::test(start_paused = true)]
async fn an_interrupt_during_a_pause_leaves_events_not_settled_never_lost() {
    use doorbuster::report::summary::{RunVerdict, StopSignal};
    let s = scenario(
        "  - { at: 2s, for: 60s, pause: email }",
        "  email: { latency: 1ms }",
    );
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let _ = tx.send(Some(StopSignal::Sigterm));
    });
    let options = RunOptions {
        no_files: true,
        run_arg: "test".into(),
        interrupt: Some(rx),
        ..RunOptions::default()
    };
    let r = execute(&s, options).await.expect("the run completes");
    assert_eq!(r.summary.verdict, RunVerdict::Interrupted);
    let c = check(&r, "no_loss");
    assert_eq!(c.verdict, Verdict::Unknown, "{c:?}");
    assert!(
        c.observed.starts_with("0 of ")
            && c.observed
                .contains("not settled (still queued at the drain limit)"),
        "{}",
        c.observed
    );
    assert!(
        c.evidence
            .iter()
            .any(|e| e.starts_with("email: ") && e.contains("not settled")),
        "{:?}",
        c.evidence
    );
    assert!(
        r.summary
            .findings
            .iter()
            .any(|f| f.what.starts_with("the drain ended with") && f.what.contains("email")),
        "{:?}",
        r.summary.findings
    );
    // The clean twin: the same pause, no interrupt, drains and passes.
    let r = run(&scenario(
        "  - { at: 2s, for: 3s, pause: email }",
        "  email: { latency: 1ms }",
    ))
    .await;
    passes(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_kills_a_running_exec_command_and_says_so() {
    // Real time: a 30 s command at 0.5 s, the run interrupted at about 1.5 s. The run does
    // not wait the command out: its window ends at the kill, which is a finding.
    let text = "name: hook\nload:\n  phases:\n    - { hold: 10s, rate: 20/s }\n  drain: 5s\nprovider: { via: in_process, latency: 1ms }\nfaults:\n  - { at: 500ms, exec: \"echo started; sleep 30\" }\n";
    let s = doorbuster::scenario::parse("hook.yaml", text).unwrap();
    let (interrupt_tx, interrupt_rx) = tokio::sync::watch::channel(None);
    let options = RunOptions {
        no_files: true,
        run_arg: "test".into(),
        interrupt: Some(interrupt_rx),
        ..RunOptions::default()
    };
    let run = tokio::spawn(async move { execute(&s, options).await });
    // The stimulus, not a synchronisation: the command has been running for about 1 s.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    interrupt_tx.send_replace(Some(doorbuster::report::summary::StopSignal::Sigint));
    let r = run.await.unwrap().unwrap();
    assert_eq!(
        r.summary.verdict,
        doorbuster::report::summary::RunVerdict::Interrupted
    );
    let w = window(&r, "exec");
    assert!(
        w.notes
            .iter()
            .any(|n| n == "killed: the run was interrupted before it finished"),
        "{w:?}"
    );
    assert!(w.end_ms.is_some_and(|end| end < 10_000), "{w:?}");
    let exec = w.exec.expect("the outcome is on the window");
    assert_eq!(exec.exit_code, None);
    assert_eq!(exec.output_tail, ["started"]);
    assert_eq!(exec_findings(&r).len(), 1, "{:?}", r.summary.findings);
}
