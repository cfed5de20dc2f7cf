//! `exec` faults: a command on the run's clock, its output, its exit status and its window.

use super::*;

/// Runs `s` writing its folder into a fresh temporary directory.
pub(super) async fn run_in_dir(s: &Scenario) -> (RunResult, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        out_dir: Some(dir.path().to_path_buf()),
        run_arg: "test".into(),
        ..RunOptions::default()
    };
    (execute(s, options).await.unwrap(), dir)
}

pub(super) fn exec_findings(r: &RunResult) -> Vec<&str> {
    r.summary
        .findings
        .iter()
        .map(|f| f.what.as_str())
        .filter(|w| w.starts_with("exec "))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn exec_runs_a_command_and_keeps_its_output() {
    let s = scenario(
        "  - { at: 2s, exec: \"echo broker restarted\" }",
        "  email: { latency: 1ms }",
    );
    let (r, dir) = run_in_dir(&s).await;
    // The run waited for the command: its log and outcome are there when it ends.
    let log = std::fs::read_to_string(dir.path().join("exec-0.log")).unwrap();
    assert_eq!(log.trim(), "broker restarted");
    let w = window(&r, "exec");
    // The paused clock stands still while the command runs.
    assert_eq!((w.start_ms, w.end_ms), (2_000, Some(2_000)));
    let exec = w.exec.expect("the outcome is on the window");
    assert_eq!(exec.exit_code, Some(0));
    assert_eq!(exec.output_tail, ["broker restarted"]);
    assert!(exec_findings(&r).is_empty(), "{:?}", r.summary.findings);
    passes(&r);
}

#[tokio::test(start_paused = true)]
async fn a_failing_exec_is_a_finding_with_its_exit_status_and_last_lines_in_every_report() {
    let s = scenario(
        "  - { at: 2s, exec: \"echo flushing; echo 'broker: connection refused' >&2; exit 3\" }",
        "  email: { latency: 1ms }",
    );
    let (r, dir) = run_in_dir(&s).await;
    let w = window(&r, "exec");
    assert_eq!(w.end_ms, Some(2_000));
    assert!(
        w.notes.iter().any(|n| n == "exited with exit status: 3"),
        "{:?}",
        w.notes
    );
    let exec = w.exec.expect("the outcome is on the window");
    assert_eq!(exec.exit_code, Some(3));
    // Both streams, in the order they were written.
    assert_eq!(exec.output_tail, ["flushing", "broker: connection refused"]);
    assert_eq!(
        exec_findings(&r),
        [
            "exec faults[0]: the command exited with exit status: 3; last output: broker: connection refused"
        ]
    );
    let terminal = doorbuster::report::terminal::closing_lines(&r.summary);
    assert!(
        terminal.contains("  exited with exit status: 3\n"),
        "{terminal}"
    );
    assert!(
        terminal.contains("  | flushing\n  | broker: connection refused\n"),
        "{terminal}"
    );
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("  - exited with exit status: 3"), "{md}");
    assert!(md.contains("    broker: connection refused"), "{md}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("exited with exit status: 3"));
    assert!(html.contains("broker: connection refused"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["faults"][0]["exec"]["exit_code"], 3);
    support::assert_valid_summary(&json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_window_ends_when_its_command_exits_and_the_latency_split_with_it() {
    // Real time: a command of about 1 s at 1 s in a 4 s run. `during` holds the seconds up
    // to the command's exit, `after` the rest of the run.
    let text = "name: hook\nload:\n  arrivals: uniform\n  phases:\n    - { hold: 4s, rate: 50/s }\n  drain: 5s\nprovider: { via: in_process, latency: 1ms }\nfaults:\n  - { at: 1s, exec: \"sleep 1\" }\n";
    let s = doorbuster::scenario::parse("hook.yaml", text).unwrap();
    let r = run(&s).await;
    let w = window(&r, "exec");
    let end = w.end_ms.expect("the window ends when the command exits");
    assert!((1_900..=2_900).contains(&end), "{w:?}");
    assert_eq!(w.exec.as_ref().and_then(|e| e.exit_code), Some(0));
    let split = checkout_split(&r, "exec");
    eprintln!("exec window {}..{end} ms: {split:?}", w.start_ms);
    // One second of 50 checkouts/s in `during` (from 1 s to the exit's second), the two or
    // three seconds after it in `after`.
    let during_s = (end / 1_000).max(2) - 1;
    assert!(
        split.during.count <= 50 * during_s + 10,
        "during ran past the exit: {split:?}"
    );
    assert!(split.after.count >= 50, "{split:?}");
    assert_eq!(
        split.before.count + split.during.count + split.after.count,
        200
    );
}
