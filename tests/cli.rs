//! The `doorbuster` binary end to end: every exit code, the files a run leaves, and the
//! commands around `run`. Real time, bounded: the longest run here is the 15 s smoke.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn doorbuster() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doorbuster"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn run(args: &[&str]) -> Output {
    doorbuster().args(args).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads a run's summary.json and holds it to the committed schema.
fn summary(dir: &Path) -> serde_json::Value {
    let raw = std::fs::read(dir.join("summary.json")).expect("summary.json written");
    let doc: serde_json::Value = serde_json::from_slice(&raw).expect("summary.json is JSON");
    support::assert_valid_summary(&doc);
    doc
}

/// The intervals in one stage's HdrHistogram log, read with the crate's own reader.
fn intervals(dir: &Path, stage: &str) -> usize {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let text = std::fs::read(dir.join(format!("latency-{stage}.hlog"))).expect("the log exists");
    IntervalLogIterator::new(&text)
        .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
        .count()
}

/// Seconds the checkout interval log of a run in `dir` holds so far (0 before it exists).
fn logged_seconds(dir: &Path) -> usize {
    if dir.join("latency-order-created.hlog").exists() {
        intervals(dir, "order-created")
    } else {
        0
    }
}

/// Waits (bounded) until a run's load has been going for `seconds`: its interval log is the
/// event to wait for, written once a second from the load's t=0.
fn wait_for_load(dir: &Path, seconds: usize) {
    for _ in 0..600 {
        if logged_seconds(dir) >= seconds {
            return;
        }
        // A real process in real time: polling a file, not a paused clock.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the run in {} logged no {seconds} s in 30 s", dir.display());
}

/// Sends `signal` (TERM, HUP, INT, KILL) to a child with the system's `kill`.
fn send(signal: &str, child: &std::process::Child) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A stdout that is a pipe nobody reads: the first write fails with EPIPE, as with `| head -1`
/// once head has exited. Deterministic, unlike racing a reader that closes.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("Examples:"), "{help}");
    assert!(
        help.contains("doorbuster run scenarios/black-friday.yaml"),
        "{help}"
    );
    assert!(help.contains("130 / 143 / 129 interrupted"), "{help}");
    assert!(help.contains("4 `report` rebuilt a killed run's"), "{help}");
}

#[test]
fn scenarios_lists_the_bundled_ones() {
    let out = run(&["scenarios"]);
    assert_eq!(out.status.code(), Some(0));
    let list = text(&out.stdout);
    for name in ["black-friday", "smoke", "double-charge", "payment-outage"] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{list}");
    }
}

#[test]
fn a_bundled_name_is_not_hidden_by_a_folder_of_that_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("smoke")).unwrap();
    let validate = |arg: &str| {
        doorbuster()
            .current_dir(dir.path())
            .args(["validate", arg])
            .output()
            .unwrap()
    };
    let bundled = validate("smoke");
    assert_eq!(bundled.status.code(), Some(0), "{}", text(&bundled.stderr));
    // With a path separator it is the folder, which is no scenario file.
    let folder = validate("./smoke");
    assert_eq!(folder.status.code(), Some(2));
    assert!(
        text(&folder.stderr).contains("./smoke"),
        "{}",
        text(&folder.stderr)
    );
}

#[test]
fn metrics_are_served_on_loopback_only() {
    let out = run(&["run", "smoke", "--metrics-listen", "0.0.0.0:9464"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("loopback"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn out_takes_a_folder_and_says_so_to_a_k6_habit() {
    let dir = tempfile::tempdir().unwrap();
    let out = doorbuster()
        .current_dir(dir.path())
        .args(["run", "smoke", "--out", "json=x.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--out takes the run's folder"), "{err}");
    assert!(
        !dir.path().join("json=x.json").exists(),
        "no folder of that name"
    );
}

#[test]
fn the_proxy_refuses_before_it_says_it_proxies() {
    for (listen, upstream, says) in [
        ("0.0.0.0:0", "127.0.0.1:9", "only listens on loopback"),
        ("127.0.0.1:0", "10.0.0.1:9", "only dials loopback"),
    ] {
        let out = run(&["proxy", "--listen", listen, "--upstream", upstream]);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("proxying"), "{err}");
    }
    let out = run(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--toxic",
        "latncy=1s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown toxic"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_proxy_sums_up_in_words_when_stopped() {
    use std::io::{BufRead, Read};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = server.local_addr().unwrap().to_string();
    let mut child = doorbuster()
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", &upstream])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("proxying 127.0.0.1:"), "{first}");
    send("INT", &child);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        out.starts_with("proxy stopped: 0 connections (0 open), 0 B to the upstream"),
        "{out}"
    );
    assert!(!out.contains("ProxyStats"), "{out}");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_itself() {
    let bash = run(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    let script = text(&bash.stdout);
    assert!(script.contains("_doorbuster()"), "{script}");
    for word in ["validate", "--rate-scale", "--toxic", "compare"] {
        assert!(script.contains(word), "{word} is completed");
    }
    // bash reads it without a syntax error.
    let check = Command::new("bash")
        .args(["-n", "-c", &script])
        .status()
        .unwrap();
    assert!(check.success());
    let man = run(&["man"]);
    assert_eq!(man.status.code(), Some(0));
    let page = text(&man.stdout);
    let title = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_default();
    assert!(
        title.to_lowercase().starts_with(".th doorbuster 1"),
        "{page}"
    );
    assert!(page.contains("completions"), "subcommands are listed");
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn a_ci_log_gets_a_plain_progress_line_every_10_s_and_at_each_change() {
    // stderr is a pipe here, as in every CI job: no terminal, so plain lines.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ci.yaml");
    std::fs::write(
        &file,
        "name: ci\nload:\n  phases:\n    - { hold: 12s, rate: 20/s }\n  drain: 5s\n\
         faults:\n  - { at: 4s, for: 2s, provider_outage: { errors: 100% } }\n",
    )
    .unwrap();
    let out = run(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("ci ")).collect();
    // The first second, the fault on, the fault off, the 10th second, the drain.
    let at = |s: &str| lines.iter().any(|l| l.starts_with(&format!("ci {s} ")));
    assert!(at("1s") && at("10s"), "{err}");
    let fault_on: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("fault provider_outage"))
        .collect();
    assert_eq!(fault_on.len(), 1, "once when it starts: {err}");
    assert!(lines.iter().any(|l| l.starts_with("ci draining")), "{err}");
    assert!(lines.len() <= 8, "no line every second: {err}");
    let ten = lines.iter().find(|l| l.starts_with("ci 10s ")).unwrap();
    for field in [
        "1/1 hold 20/s",
        "20/s planned",
        "/s acked",
        "failed ",
        "p99 10s: checkout",
        "in flight",
    ] {
        assert!(ten.contains(field), "{field} in {ten}");
    }
}

#[test]
fn init_writes_a_template_that_validates_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let init = |extra: &[&str]| {
        doorbuster()
            .current_dir(dir.path())
            .args(["init", "flash-sale"])
            .args(extra)
            .output()
            .unwrap()
    };
    assert_eq!(init(&[]).status.code(), Some(0));
    let file = dir.path().join("flash-sale.yaml");
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again = init(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("--force"));
    assert_eq!(init(&["--force"]).status.code(), Some(0));
    assert_eq!(run(&["init", "Bad Name"]).status.code(), Some(2));
}

#[test]
fn invalid_input_exits_2_with_file_line_and_column() {
    let out = run(&["validate", "tests/fixtures/broken/04-negative-rate.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("tests/fixtures/broken/04-negative-rate.yaml:6:26: load.phases[2].rate:"),
        "{err}"
    );
    assert!(err.contains("must be positive"), "{err}");
    // The same file given to `run` is refused before anything starts.
    let out = run(&["run", "tests/fixtures/broken/04-negative-rate.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    // An unknown bundled name and an unknown flag are bad input too.
    let out = run(&["run", "cyber-monday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("black-friday"),
        "lists the bundled names"
    );
    assert_eq!(run(&["run", "smoke", "--sed", "3"]).status.code(), Some(2));
}

#[test]
fn targets_go_only_where_told_and_secrets_stay_out_of_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let out_arg = out_dir.to_str().unwrap();
    // A host outside loopback needs the opt-in: exit 2, nothing sent, no run folder.
    let remote = run(&[
        "run",
        "smoke",
        "-q",
        "--out",
        out_arg,
        "--target",
        "redis://10.255.0.1:6379",
    ]);
    assert_eq!(remote.status.code(), Some(2), "{}", text(&remote.stderr));
    assert!(text(&remote.stderr).contains("--allow-remote"));
    // A credential reference that is not set is a usage error naming the variable.
    let unset = doorbuster()
        .args(["run", "smoke", "-q", "--out", out_arg, "--target"])
        .arg("amqp://guest:${DOORBUSTER_TEST_UNSET}@127.0.0.1:5672/%2f")
        .env_remove("DOORBUSTER_TEST_UNSET")
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(2));
    assert!(text(&unset.stderr).contains("DOORBUSTER_TEST_UNSET is not set"));
    // Not a broker URL: exit 2 with the expected forms.
    let scheme = run(&["run", "smoke", "-q", "--target", "mqtt://127.0.0.1:1883"]);
    assert_eq!(scheme.status.code(), Some(2));
    assert!(text(&scheme.stderr).contains("redis://127.0.0.1:6379"));
    // A checkout endpoint is a target too, behind the same guard.
    let remote_shop = run(&[
        "run",
        "smoke",
        "-q",
        "--target",
        "https://shop.example.com/checkout",
    ]);
    assert_eq!(remote_shop.status.code(), Some(2));
    assert!(text(&remote_shop.stderr).contains("shop.example.com"));
    // Nothing listens on port 1, broker or shop: the run cannot be carried out, exit 3; the
    // password given on the command line is masked in the message.
    for target in [
        "amqp://guest:hunter2@127.0.0.1:1/%2f",
        "http://shop:hunter2@127.0.0.1:1/checkout",
    ] {
        let down = run(&["run", "smoke", "-q", "--out", out_arg, "--target", target]);
        assert_eq!(down.status.code(), Some(3), "{}", text(&down.stderr));
        let stderr = text(&down.stderr);
        assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!out_dir.exists(), "no half-made run folder");
    }
    // A nonsense scale factor is a usage error.
    assert_eq!(
        run(&["run", "smoke", "--rate-scale", "0"]).status.code(),
        Some(2)
    );
}

/// Regression: `bench` parsed a scenario text it built around `--target`, and a target that
/// text could not hold came out as "cannot start the payment-provider mock", exit 3. A bad
/// `--target` is bad input (exit 2), said as such, for the search and for `--publish-only`,
/// and a host outside loopback is refused before anything connects.
#[test]
fn bench_refuses_a_bad_target_as_bad_input() {
    for publish_only in [false, true] {
        let with = |target: &str| {
            let mut args = vec!["bench", "--seconds", "1", "--target", target];
            if publish_only {
                args.push("--publish-only");
            }
            run(&args)
        };
        let scheme = with("mqtt://127.0.0.1:1883");
        let stderr = text(&scheme.stderr);
        assert_eq!(scheme.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("error: --target: "), "{stderr}");
        assert!(stderr.contains("redis://127.0.0.1:6379"), "{stderr}");
        assert!(!stderr.contains("payment-provider"), "{stderr}");
        let remote = with("redis://10.255.0.1:6379");
        let stderr = text(&remote.stderr);
        assert_eq!(remote.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("10.255.0.1"), "{stderr}");
        assert!(!stderr.contains("payment-provider"), "{stderr}");
    }
}

#[test]
fn a_passing_run_exits_0_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("smoke");
    let step_summary = dir.path().join("step-summary.md");
    let out = doorbuster()
        .args([
            "run",
            "smoke",
            "--quiet",
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("verdict: Pass (exit 0)"), "{stdout}");
    let s = summary(&out_dir);
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["scenario"], "smoke");
    assert_eq!(s["verdict"], "pass");
    assert_eq!(s["reproduce"], "doorbuster run smoke --seed 1");
    assert_eq!(s["orders"]["attempted"], s["orders"]["accepted"]);
    assert!(
        s["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["verdict"] == "pass")
    );
    let reproduce = std::fs::read_to_string(out_dir.join("reproduce.txt")).unwrap();
    assert_eq!(reproduce.trim(), "doorbuster run smoke --seed 1");
    for file in ["summary.md", "junit.xml"] {
        assert!(out_dir.join(file).exists(), "{file}");
    }
    // One interval per second of the run, at least the 15 s of load.
    assert!(intervals(&out_dir, "order-created-to-order-fulfilled") >= 15);
    let md = std::fs::read_to_string(&step_summary).expect("appended to $GITHUB_STEP_SUMMARY");
    assert!(md.starts_with("## doorbuster: smoke PASS"), "{md}");
    // The t=0 record is there too, yet a finished run's report comes from its summary:
    // re-rendering keeps the verdict and exits 0 (the twin of the killed run's exit 4).
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["reproduce"], "doorbuster run smoke --seed 1");
    let rerender = run(&["report", out_dir.to_str().unwrap()]);
    assert_eq!(
        rerender.status.code(),
        Some(0),
        "{}",
        text(&rerender.stderr)
    );
    assert!(text(&rerender.stdout).starts_with("re-rendered the reports in"));
    let again = summary(&out_dir);
    assert_eq!(again["verdict"], "pass");
    assert_eq!(again["exit_code"], 0);
    assert!(again.get("incomplete").is_none());
}

#[test]
fn a_killed_run_leaves_what_report_rebuilds_into_a_partial_report_exit_4() {
    // SIGKILL leaves no summary; `report DIR` rebuilds one that is incomplete and never passes.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("killed");
    let mut child = doorbuster()
        .args(["run", "smoke", "-q", "--out", out_dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_load(&out_dir, 2);
    child.kill().unwrap(); // SIGKILL: no chance to write anything at exit
    child.wait().unwrap();
    assert!(!out_dir.join("summary.json").exists());
    assert!(
        intervals(&out_dir, "order-created") >= 2,
        "flushed every second"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["scenario"], "smoke");
    assert_eq!(record["seed"], 1);
    assert_eq!(record["target"]["kind"], "embedded");

    let out = run(&["report", out_dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("PARTIAL: the run ended without writing summary.json"),
        "{stdout}"
    );
    assert!(stdout.contains("verdict: Incomplete (exit 4)"), "{stdout}");
    assert!(text(&out.stderr).contains("killed before it finished"));
    let s = summary(&out_dir);
    assert_eq!(s["verdict"], "incomplete");
    assert_eq!(s["exit_code"], 4);
    assert_eq!(s["reproduce"], "doorbuster run smoke --seed 1");
    let checks = s["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    assert!(
        checks.iter().all(|c| c["verdict"] == "unknown"),
        "{checks:?}"
    );
    assert!(s["orders"]["accepted"].as_u64().unwrap() > 0);
    assert!(!s["latency"][0]["series"].as_array().unwrap().is_empty());
    let junit = std::fs::read_to_string(out_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("type=\"incomplete\""), "{junit}");
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("id=\"run-verdict\">incomplete<"));
    // Asked again, the rebuilt summary still says what it is.
    assert_eq!(
        run(&["report", out_dir.to_str().unwrap()]).status.code(),
        Some(4)
    );
    // A folder with neither file is not a run: bad input, said plainly.
    let empty = run(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        text(&empty.stderr).contains("neither summary.json"),
        "{}",
        text(&empty.stderr)
    );
}

#[test]
fn sigterm_and_sighup_stop_a_run_like_ctrl_c_with_their_own_exit_codes() {
    // What CI timeouts, cancelled jobs and `docker stop` send must leave the whole report.
    let dir = tempfile::tempdir().unwrap();
    for (signal, name, code) in [("TERM", "SIGTERM", 143), ("HUP", "SIGHUP", 129)] {
        let out_dir = dir.path().join(name);
        let child = doorbuster()
            .args(["run", "smoke", "-q", "--out", out_dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_load(&out_dir, 1);
        send(signal, &child);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(&format!("{name}: stopping the load")));
        assert!(text(&out.stdout).contains(&format!("verdict: Interrupted (exit {code})")));
        let s = summary(&out_dir);
        assert_eq!(s["verdict"], "interrupted");
        assert_eq!(s["interrupted_by"], name);
        assert_eq!(s["exit_code"], code);
        let attempted = s["orders"]["attempted"].as_u64().unwrap();
        assert!(attempted > 0 && attempted < s["orders"]["planned"].as_u64().unwrap());
        let junit = std::fs::read_to_string(out_dir.join("junit.xml")).unwrap();
        assert!(junit.contains(name), "{junit}");
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        assert!(html.contains(&format!("{name} interrupted the run")));
    }
}

#[test]
fn a_closed_stdout_never_panics_nor_changes_the_exit_code() {
    // `doorbuster ... | head -1`: the reader is gone; the exit code is still the command's.
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("tiny.yaml");
    std::fs::write(
        &pass,
        "name: tiny\nload:\n  phases:\n    - { hold: 2s, rate: 50/s }\n  drain: 5s\nprovider: { via: in_process, latency: 1ms }\n",
    )
    .unwrap();
    let invalid = dir.path().join("strict.yaml");
    std::fs::write(
        &invalid,
        "name: strict\nload:\n  max_send_lag: 1us\n  phases:\n    - { hold: 2s, rate: 200/s }\n  drain: 5s\nprovider: { via: in_process, latency: 1ms }\n",
    )
    .unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let cases: [(Vec<String>, i32); 5] = [
        (vec!["scenarios".into()], 0),
        (vec!["schema".into()], 0),
        (vec!["validate".into(), pass.to_str().unwrap().into()], 0),
        (
            vec![
                "run".into(),
                pass.to_str().unwrap().into(),
                "-q".into(),
                "--out".into(),
                out("pass"),
            ],
            0,
        ),
        (
            vec![
                "run".into(),
                invalid.to_str().unwrap().into(),
                "-q".into(),
                "--out".into(),
                out("invalid"),
            ],
            3,
        ),
    ];
    for (args, code) in cases {
        let result = doorbuster()
            .args(&args)
            .stdout(closed_stdout())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = text(&result.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(result.status.code(), Some(code), "{args:?}: {stderr}");
    }
    // The run's files are written all the same.
    assert_eq!(summary(&dir.path().join("pass"))["verdict"], "pass");
}

#[test]
fn a_failing_check_exits_1_and_names_the_orders() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "run",
        "scenarios/double-charge.yaml",
        "-q",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("no_duplicate_effects"), "{stdout}");
    assert!(stdout.contains(": charged 2 times"), "{stdout}");
    assert!(
        stdout.contains("reproduce: doorbuster run scenarios/double-charge.yaml --seed"),
        "{stdout}"
    );
    let s = summary(dir.path());
    assert_eq!(s["verdict"], "fail");
    assert_eq!(s["exit_code"], 1);
}

#[test]
fn a_generator_behind_its_bound_makes_the_run_invalid_exit_3() {
    // A send-lag bound of 1 µs no scheduler meets: the run must be INVALID, never a pass.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strict.yaml");
    std::fs::write(
        &file,
        "name: strict\nload:\n  max_send_lag: 1us\n  phases:\n    - { hold: 2s, rate: 200/s }\n  drain: 5s\nprovider: { via: in_process, latency: 1ms }\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = run(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("INVALID: the generator fell behind"),
        "{stdout}"
    );
    assert_eq!(summary(&out_dir)["verdict"], "invalid");
}

#[test]
fn ctrl_c_stops_the_run_writes_a_partial_report_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("interrupted");
    let child = doorbuster()
        .args(["run", "smoke", "-q", "--out", out_dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The smoke scenario is 15 s long; interrupt it a few seconds into its load.
    wait_for_load(&out_dir, 3);
    send("INT", &child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let s = summary(&out_dir);
    assert_eq!(s["verdict"], "interrupted");
    assert_eq!(s["interrupted_by"], "SIGINT");
    assert_eq!(s["exit_code"], 130);
    let attempted = s["orders"]["attempted"].as_u64().unwrap();
    let planned = s["orders"]["planned"].as_u64().unwrap();
    assert!(
        attempted > 0 && attempted < planned,
        "{attempted} of {planned}"
    );
}

/// A command's exit code and stderr.
type Outcome = (Option<i32>, String);

/// `validate` and `run` on the same scenario with the same flags and environment: the
/// exit codes and stderr of each, and whether `run` made a run folder.
fn validate_and_run(args: &[&str], env: &[(&str, &str)]) -> (Outcome, Outcome, bool) {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let with_env = |cmd: &mut Command| {
        for var in ["DOORBUSTER_TEST_SHOP_TOKEN", "SHOP_TOKEN"] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
    };
    let mut validate = doorbuster();
    validate.arg("validate").args(args);
    with_env(&mut validate);
    let validated = validate.output().unwrap();
    let mut run = doorbuster();
    run.args(["run", "-q", "--out", out_dir.to_str().unwrap()])
        .args(args);
    with_env(&mut run);
    let ran = run.output().unwrap();
    (
        (validated.status.code(), text(&validated.stderr)),
        (ran.status.code(), text(&ran.stderr)),
        out_dir.exists(),
    )
}

#[test]
fn validate_and_run_refuse_the_same_scenarios_at_the_same_position() {
    // Everything `run` refuses about a scenario, `validate` finds: both exit 2 and print the
    // same file:line:col lines, and `run` makes no run folder and connects nowhere. The
    // targets are unresolvable names or loopback port 0/1, so a mistake sends nothing.
    let cases: &[(&[&str], &str)] = &[
        (
            &["tests/fixtures/broken/39-remote-host.yaml"],
            ":3:9: target: orders-cache.invalid is not a loopback address",
        ),
        (
            &["tests/fixtures/broken/40-port-zero.yaml"],
            ":3:8: target.url: \"http://127.0.0.1:0/checkout\" names a port outside 1 to 65535",
        ),
        (
            &["tests/fixtures/broken/41-port-above-65535.yaml"],
            ":3:8: target.url: \"redis://127.0.0.1:70000\" names a port outside 1 to 65535",
        ),
        (
            &["tests/fixtures/broken/42-unparsable-url.yaml"],
            ":2:9: target: \"http://[::1/checkout\" is not a valid URL",
        ),
        (
            &["tests/fixtures/broken/43-link-on-embedded.yaml"],
            ":6:30: faults[0].link: a link fault needs a networked broker",
        ),
        (
            &["tests/fixtures/broken/44-header-line-break.yaml"],
            ":6:16: target.headers[\"X-Api-Key\"]: the value holds a line break",
        ),
        (
            &["tests/fixtures/broken/45-only-pauses.yaml"],
            ":4:5: load.phases: the phases plan no orders",
        ),
        (
            &["tests/fixtures/broken/46-rates-round-to-no-orders.yaml"],
            ":4:5: load.phases: the phases plan no orders",
        ),
        (
            &["tests/fixtures/broken/47-faults-a-checkout-endpoint-cannot-carry.yaml"],
            ":4:21: load.checkout.mode: `sync` charges through",
        ),
        (
            &["tests/fixtures/broken/49-host-hidden-behind-a-backslash.yaml"],
            ":3:9: target: shop.invalid is not a loopback address",
        ),
        // The flags meet the file's limits, named at the phase they break.
        (
            &["black-friday", "--rate-scale", "1000"],
            ":20:27: load.phases[2].rate: \"1500/s\" times --rate-scale 1000 is 1500000/s",
        ),
        (
            &["smoke", "--rate-scale", "0.00001"],
            ":16:5: load.phases: the phases plan no orders",
        ),
        // A target given on the command line is checked like a written one.
        (
            &["smoke", "--target", "redis://127.0.0.1:0"],
            ": --target: \"redis://127.0.0.1:0\" names a port outside",
        ),
        (
            &[
                "tests/fixtures/broken/43-link-on-embedded.yaml",
                "--target",
                "https://127.0.0.1:1/checkout",
            ],
            ":6:30: faults[0].link: the fault proxy cannot stand in for an https endpoint",
        ),
        (
            &["tests/fixtures/broken/50-replay-on-classic-queues.yaml"],
            ":9:23: faults[0].replay: RabbitMQ classic and quorum queues cannot be rewound",
        ),
        (
            &[
                "replay-analytics",
                "--target",
                "amqp://guest:guest@127.0.0.1:1/%2f",
            ],
            ":25:24: faults[0].replay: RabbitMQ classic and quorum queues",
        ),
    ];
    for (args, expected) in cases {
        let env = [("SHOP_TOKEN", "t0ken")];
        let ((v_code, v_err), (r_code, r_err), made_folder) = validate_and_run(args, &env);
        assert_eq!(v_code, Some(2), "validate {args:?}: {v_err}");
        assert_eq!(r_code, Some(2), "run {args:?}: {r_err}");
        let first = format!("{}{expected}", args[0]);
        assert!(v_err.starts_with(&first), "validate {args:?}: {v_err}");
        assert_eq!(v_err, r_err, "{args:?}: the same lines from both");
        assert!(!made_folder, "{args:?}: run made a folder");
        assert!(!r_err.contains("t0ken"), "{r_err}");
    }
}

#[test]
fn the_clean_twins_validate_with_exit_0() {
    // The same files with the opt-in, a target that carries the fault, a factor within the
    // limits: each validates. Nothing runs here.
    for args in [
        &[
            "tests/fixtures/broken/39-remote-host.yaml",
            "--allow-remote",
        ][..],
        &[
            "tests/fixtures/broken/43-link-on-embedded.yaml",
            "--target",
            "redis://127.0.0.1:1",
        ],
        &["black-friday", "--rate-scale", "600"],
        &["smoke", "--rate-scale", "0.01"],
        &["replay-analytics", "--target", "redis://127.0.0.1:1"],
    ] {
        let out = doorbuster().arg("validate").args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains(": ok ("), "{args:?}");
    }
}

#[test]
fn an_unset_variable_is_a_warning_for_validate_and_an_error_for_run() {
    // `validate` cannot know the run's environment (CI may set the secret later): a warning
    // with the position, exit 0. `run` is about to connect: the same position, exit 2,
    // before anything connects. Set, the file validates clean and `run` goes on to connect
    // (port 1 on loopback: nothing listens, exit 3).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(
        &file,
        "name: shop\ntarget:\n  url: \"http://127.0.0.1:1/checkout\"\n  headers:\n    Authorization: \"Bearer ${DOORBUSTER_TEST_SHOP_TOKEN}\"\nload:\n  phases:\n    - { hold: 2s, rate: 10/s }\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let at = format!("{path}:5:20: target.headers.Authorization: ");
    let ((v_code, v_err), (r_code, r_err), made_folder) = validate_and_run(&[path], &[]);
    assert_eq!(v_code, Some(0), "{v_err}");
    assert!(
        v_err.starts_with(&format!(
            "{at}warning: the environment variable DOORBUSTER_TEST_SHOP_TOKEN is not set here"
        )),
        "{v_err}"
    );
    assert_eq!(r_code, Some(2), "{r_err}");
    assert!(
        r_err.starts_with(&format!(
            "{at}the environment variable DOORBUSTER_TEST_SHOP_TOKEN is not set"
        )),
        "{r_err}"
    );
    assert!(!made_folder);
    let set = [("DOORBUSTER_TEST_SHOP_TOKEN", "t0ken")];
    let ((v_code, v_err), (r_code, r_err), _) = validate_and_run(&[path], &set);
    assert_eq!((v_code, v_err.as_str()), (Some(0), ""));
    assert_eq!(r_code, Some(3), "{r_err}");
    assert!(r_err.contains("127.0.0.1:1"), "{r_err}");
    // A set value is checked as the run would send it, by `validate` too.
    let newline = [("DOORBUSTER_TEST_SHOP_TOKEN", "t0ken\nX-Admin: yes")];
    let ((v_code, v_err), (r_code, r_err), _) = validate_and_run(&[path], &newline);
    assert_eq!((v_code, r_code), (Some(2), Some(2)), "{v_err}\n{r_err}");
    assert_eq!(v_err, r_err);
    assert!(
        v_err.starts_with(&format!("{at}the value holds a line break")),
        "{v_err}"
    );
}

#[test]
fn preview_shows_orders_in_the_users_schema_and_template_mistakes_exit_2() {
    // The bundled example: the seed article's order.created, held to its schema.
    let out = run(&[
        "preview",
        "examples/payloads/checkout.yaml",
        "--count",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["order"], i as u64);
        assert_eq!(line["headers"]["ce-type"], "order.created");
        assert!(
            line["body"]["shipTo"][0]["address"]["zipCode"].is_string(),
            "{line}"
        );
    }
    // The same seed gives the same orders; another seed others.
    let again = run(&[
        "preview",
        "examples/payloads/checkout.yaml",
        "-n",
        "4",
        "--json",
    ]);
    assert_eq!(again.stdout, out.stdout);
    let other = run(&[
        "preview",
        "examples/payloads/checkout.yaml",
        "-n",
        "4",
        "--json",
        "--seed",
        "8",
    ]);
    assert_ne!(other.stdout, out.stdout);

    // A misspelled field: `validate`, `preview` and `run` all refuse it with the template's
    // file, line and column, before any order is sent.
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/payloads");
    for name in ["checkout.yaml", "order-created.schema.json"] {
        std::fs::copy(example.join(name), dir.path().join(name)).unwrap();
    }
    let template = std::fs::read_to_string(example.join("order-created.json.j2")).unwrap();
    let broken = template.replace("order.totals.total", "order.totals.totl");
    std::fs::write(dir.path().join("order-created.json.j2"), broken).unwrap();
    let scenario = dir.path().join("checkout.yaml");
    let scenario = scenario.to_str().unwrap();
    let expected = format!("{}:7:", dir.path().join("order-created.json.j2").display());
    for command in ["validate", "preview", "run"] {
        let out = run(&[command, scenario]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = text(&out.stderr);
        assert!(err.starts_with(&expected), "{command}: {err}");
        assert!(err.contains("order.totals.totl"), "{command}: {err}");
    }
}

/// One form-encoded POST over a plain TCP connection, as any HTTP client would send it; the
/// response's status line.
fn post_form(addr: &str, path: &str, key: &str, form: &str) -> String {
    post_form_within(addr, path, key, form, Duration::from_secs(30)).expect("an answer")
}

/// The same, giving up after `timeout` like a payment client: `None` when no answer came.
fn post_form_within(
    addr: &str,
    path: &str,
    key: &str,
    form: &str,
    timeout: Duration,
) -> Option<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(timeout)).unwrap();
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nIdempotency-Key: {key}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut response = String::new();
    match tcp.read_to_string(&mut response) {
        Ok(_) => Some(response.lines().next().unwrap_or_default().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => None,
        Err(e) => panic!("{e}"),
    }
}

/// A `doorbuster provider` child, the rest of its stdout, and the address it listens on.
type Started = (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
);

/// Starts `doorbuster provider` with `flags` on a free loopback port.
fn start_provider(flags: &[&str]) -> Started {
    let mut child = doorbuster()
        .args(["provider", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("provider listening on http://")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    (child, stdout, addr)
}

/// Stops a provider with Ctrl-C; its closing lines.
fn stop_provider(mut child: std::process::Child, mut stdout: impl std::io::Read) -> String {
    send("INT", &child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    rest
}

#[test]
fn provider_serves_stripe_payment_intents_and_names_the_orders_charged_twice() {
    // Refused off loopback, before binding.
    let out = run(&["provider", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("loopback"),
        "{}",
        text(&out.stderr)
    );

    let (child, stdout, addr) = start_provider(&["--latency", "0ms"]);
    let pay =
        "amount=2764&currency=usd&payment_method=pm_card_visa&confirm=true&metadata%5Border_id%5D=";
    // Order 5: a retry with the same key (one charge). Order 6: a retry with a fresh key.
    for (key, order) in [("a", 5), ("a", 5), ("b", 6), ("c", 6)] {
        let status = post_form(&addr, "/v1/payment_intents", key, &format!("{pay}{order}"));
        assert!(status.contains(" 200 "), "{status}");
    }
    let rest = stop_provider(child, stdout);
    assert!(rest.contains("captures 3"), "{rest}");
    assert!(rest.contains("replays 1"), "{rest}");
    assert!(
        rest.contains("1 orders charged more than once: 6\n"),
        "{rest}"
    );
}

#[test]
fn a_lost_answer_charges_and_a_retry_with_a_fresh_key_charges_again() {
    // Every answer is lost: the client gives up after 300 ms, the card was charged anyway.
    let (child, stdout, addr) = start_provider(&[
        "--latency",
        "0ms",
        "--lost-answers",
        "100%",
        "--lost-answer-delay",
        "2s",
    ]);
    let pay = "amount=2764&currency=usd&payment_method=pm_card_visa&confirm=true&metadata%5Border_id%5D=9";
    for key in ["first-try", "fresh-key-retry"] {
        let answer = post_form_within(
            &addr,
            "/v1/payment_intents",
            key,
            pay,
            Duration::from_millis(300),
        );
        assert_eq!(answer, None, "the answer should have been lost");
    }
    let rest = stop_provider(child, stdout);
    assert!(rest.contains("captures 2"), "{rest}");
    assert!(rest.contains("lost answers 2"), "{rest}");
    assert!(
        rest.contains("1 orders charged more than once: 9\n"),
        "{rest}"
    );
}

/// A shop that bends at a known rate: one payment worker taking 20 ms per order serves 50
/// orders/s, so a 2 s hold above that builds a backlog and fulfilment p99 passes 600 ms.
const BENDING_SHOP: &str = "\
name: bending
description: One payment worker at 20 ms per order bends above 50 orders/s.
seed: 5
load:
  arrivals: uniform
  phases:
    - { hold: 2s, rate: 10/s }
  drain: 10s
services:
  payment: { replicas: 1, concurrency: 1, latency: 20ms }
provider: { via: in_process, latency: 0ms }
checks:
  settle_within: 5s
  latency:
    order.created -> order.fulfilled: { p99: \"< 600ms\" }
";

/// `doorbuster capacity FILE --forecast F --start S`, doubling up to x8 and bisecting once,
/// quietly, into `out`; `more` adds flags (the target, the settle time, `--hold`).
fn capacity(file: &Path, forecast: &str, start: &str, out: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "capacity",
        file.to_str().unwrap(),
        "--forecast",
        forecast,
        "--start",
        start,
        "--max",
        "8",
        "--refine",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    run(&args)
}

/// A capacity report (`capacity.json` in `out`), the sustained step's and the first
/// failure's planned peaks, and the first failure.
fn knee(out: &Path) -> (serde_json::Value, f64, f64, serde_json::Value) {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("capacity.json")).unwrap()).unwrap();
    let step = |i: &serde_json::Value| report["steps"][i.as_u64().unwrap() as usize].clone();
    let (sustained, failure) = (step(&report["sustained"]), step(&report["first_failure"]));
    let peak = |s: &serde_json::Value| s["planned_peak"].as_f64().unwrap();
    let (sustained, knee) = (peak(&sustained), peak(&failure));
    (report, sustained, knee, failure)
}

/// The capacity search: doubling from the scenario as written (10/s) then bisecting, it finds
/// the knee between 40/s (x4 passes) and 80/s (x8 fails on the fulfilment SLO), writes the
/// report and a run folder per step, and gates on the forecast: 2x (20/s) holds and exits 0;
/// the negative control, 10x (100/s), does not hold and exits 1.
#[test]
fn capacity_finds_the_knee_and_gates_on_the_forecast() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bending.yaml");
    std::fs::write(&file, BENDING_SHOP).unwrap();
    let out = dir.path().join("capacity");
    let search = |forecast: &str, start: &str, out: &Path| {
        capacity(&file, forecast, start, out, &["--settle", "100ms"])
    };
    let holds = search("2x", "1", &out);
    let said = text(&holds.stdout);
    assert_eq!(
        holds.status.code(),
        Some(0),
        "{said}{}",
        text(&holds.stderr)
    );
    let (report, sustained, knee, failure) = knee(&out);
    let steps = report["steps"].as_array().unwrap();
    assert!((40.0..80.0).contains(&sustained), "{said}");
    assert!(knee > sustained && knee <= 80.0, "{said}");
    assert!(
        failure["why"].as_str().unwrap().contains("p99"),
        "{failure}"
    );
    assert_eq!(report["forecast"]["holds"], true);
    assert!(
        said.contains("headroom") && said.contains("holds"),
        "{said}"
    );
    // Every step is a normal run folder, judged and written like any run.
    for step in steps {
        let folder = step["dir"].as_str().unwrap();
        summary(Path::new(folder));
    }
    let page = std::fs::read_to_string(out.join("capacity.html")).unwrap();
    assert!(page.contains("class=\"knee\"") && page.contains("chart-capacity-latency"));
    assert!(
        std::fs::read_to_string(out.join("capacity.md"))
            .unwrap()
            .contains("| x4 |")
    );

    let short = search("10x", "4", &dir.path().join("short"));
    assert_eq!(short.status.code(), Some(1), "{}", text(&short.stdout));
    assert!(text(&short.stdout).contains("does NOT hold"));
}

/// A checkout endpoint that bends at a known rate: one worker taking 10 ms per order serves
/// at most 100 orders/s; above that its queue grows and every later answer waits longer.
/// Returns its URL and the idempotency keys of the orders it took; it serves until the test
/// ends.
fn bounded_checkout() -> (
    String,
    std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
) {
    use std::sync::{Arc, Mutex};
    let taken = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let keys = taken.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let worker = Arc::new(tokio::sync::Semaphore::new(1));
            let app = axum::Router::new().route(
                "/checkout",
                axum::routing::post(move |headers: axum::http::HeaderMap| {
                    let (worker, keys) = (worker.clone(), keys.clone());
                    async move {
                        let _busy = worker.acquire().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let key = headers.get("idempotency-key").map(|k| k.as_bytes());
                        let key = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
                        keys.lock().unwrap().insert(key);
                        (axum::http::StatusCode::CREATED, "{}")
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().expect("the checkout endpoint is up");
    (format!("http://{addr}/checkout"), taken)
}

const BOUNDED_CHECKOUT: &str = "\
name: bounded-checkout
description: A checkout endpoint with one worker at 10 ms per order.
seed: 3
load:
  arrivals: uniform
  checkout_timeout: 2s
  phases:
    - { hold: 3s, rate: 15/s }
  drain: 5s
checks:
  checkout_success_rate: \">= 99%\"
  latency:
    order.created: { p99: \"< 100ms\" }
";

/// The capacity search against a checkout endpoint (`--target http://...`): the endpoint
/// serves at most 100 orders/s, so x4 (60/s) passes, x8 (120/s) builds a queue and fails the
/// checkout latency SLO, and the knee lies between. The endpoint's own count of orders taken
/// matches what the steps' run folders say was accepted. 3x (45/s) holds and exits 0; the
/// negative control, 10x (150/s), does not and exits 1.
#[test]
fn capacity_finds_the_knee_of_a_checkout_endpoint() {
    let (url, taken) = bounded_checkout();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bounded.yaml");
    std::fs::write(&file, BOUNDED_CHECKOUT).unwrap();
    let search = |forecast: &str, start: &str, out: &Path, more: &[&str]| {
        let flags = [&["--target", url.as_str(), "--settle", "200ms"], more].concat();
        capacity(&file, forecast, start, out, &flags)
    };
    let out = dir.path().join("capacity");
    let holds = search("3x", "1", &out, &[]);
    let said = text(&holds.stdout);
    assert_eq!(
        holds.status.code(),
        Some(0),
        "{said}{}",
        text(&holds.stderr)
    );
    let (report, sustained, knee, failure) = knee(&out);
    let steps = report["steps"].as_array().unwrap();
    assert!((60.0..120.0).contains(&sustained), "{said}");
    assert!(knee > sustained && knee <= 120.0, "{said}");
    assert!(
        failure["why"].as_str().unwrap().contains("p99"),
        "{failure}"
    );
    assert_eq!(report["forecast"]["holds"], true);
    // What the steps counted as accepted is what the endpoint took (an order answered after
    // the checkout timeout was taken but counted as failed).
    let count = |field: &str| -> u64 {
        (steps.iter())
            .map(|step| summary(Path::new(step["dir"].as_str().unwrap())))
            .map(|s| s["orders"][field].as_u64().unwrap())
            .sum()
    };
    let (accepted, failed) = (count("accepted"), count("failed"));
    let taken = taken.lock().unwrap().len() as u64;
    assert!(accepted > 0);
    assert!(
        (accepted..=accepted + failed).contains(&taken),
        "{accepted} + {failed} vs {taken}"
    );

    // The negative control, each step a 2 s hold at its peak (`--hold`) instead of the
    // scenario's 3 s: what each step planned and how to repeat it say so.
    let short_out = dir.path().join("short");
    let short = search("10x", "4", &short_out, &["--hold", "2s"]);
    assert_eq!(short.status.code(), Some(1), "{}", text(&short.stdout));
    assert!(text(&short.stdout).contains("does NOT hold"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(short_out.join("capacity.json")).unwrap()).unwrap();
    let first = &report["steps"][0];
    let s = summary(Path::new(first["dir"].as_str().unwrap()));
    assert_eq!(s["orders"]["planned"], 120, "60/s for 2 s");
    let reproduce = s["reproduce"].as_str().unwrap();
    assert!(
        reproduce.contains("--hold 2s") && reproduce.contains("--rate-scale 4"),
        "{reproduce}"
    );
}

/// A step that cannot run at all (nothing listens at the target) ends the search with a
/// report that says so, and exit 3, like `run` against that target.
#[test]
fn capacity_against_an_unreachable_target_reports_why_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("capacity");
    let searched = run(&[
        "capacity",
        "smoke",
        "--target",
        "redis://127.0.0.1:1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let said = text(&searched.stdout);
    assert_eq!(
        searched.status.code(),
        Some(3),
        "{said}{}",
        text(&searched.stderr)
    );
    assert!(said.contains("could not run"), "{said}");
    let md = std::fs::read_to_string(out.join("capacity.md")).unwrap();
    assert!(md.contains("sustained: unknown, no step ran"), "{md}");
}

/// A second of load on the embedded broker, for the flags around `run`.
const BRIEF: &str = "\
name: brief
seed: 2
load:
  arrivals: uniform
  max_send_lag: 100ms
  phases:
    - { hold: 1s, rate: 20/s }
  drain: 5s
";

/// `--start-at`: the load waits for the agreed wall-clock instant and the run reports how it
/// kept it (summary.json, the terminal); an instant already 5 s past when setup ends is a
/// start later than `max_send_lag`, which makes the run INVALID (exit 3) and says why; text
/// that is no instant is refused with exit 2.
#[test]
fn a_run_starts_at_the_agreed_instant_and_a_late_start_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brief.yaml");
    std::fs::write(&file, BRIEF).unwrap();
    let instant = |from_now: i64| {
        let now = doorbuster::clock::wall_now();
        let at = match from_now {
            n if n >= 0 => now + Duration::from_secs(n as u64),
            n => now - Duration::from_secs(n.unsigned_abs()),
        };
        humantime::format_rfc3339_millis(at).to_string()
    };
    let run_at = |at: &str, out: &Path| {
        run(&[
            "run",
            file.to_str().unwrap(),
            "--start-at",
            at,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
    };

    let agreed = instant(3);
    let on_time = run_at(&agreed, &dir.path().join("on-time"));
    let said = text(&on_time.stdout);
    assert_eq!(
        on_time.status.code(),
        Some(0),
        "{said}{}",
        text(&on_time.stderr)
    );
    let s = summary(&dir.path().join("on-time"));
    let start = &s["start"];
    let agreed_ms = humantime::parse_rfc3339_weak(&agreed)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // The load's t=0 is the agreed instant, not the end of setup (a few ms after launch).
    let started = s["started_unix_ms"].as_u64().unwrap();
    assert!(started + 5 >= agreed_ms && started < agreed_ms + 100, "{s}");
    let offset = start["offset_ms"].as_f64().unwrap();
    assert!((0.0..100.0).contains(&offset), "{start}");
    assert!(
        start["clock_source"]
            .as_str()
            .unwrap()
            .starts_with("CLOCK_REALTIME")
    );
    assert!(said.contains("from the agreed instant"), "{said}");

    // The negative control: the instant passed before the run was started.
    let late = run_at(&instant(-5), &dir.path().join("late"));
    let said = text(&late.stdout);
    assert_eq!(late.status.code(), Some(3), "{said}{}", text(&late.stderr));
    let s = summary(&dir.path().join("late"));
    assert_eq!(s["verdict"], "invalid", "{s}");
    assert!(s["start"]["offset_ms"].as_f64().unwrap() >= 5_000.0);
    let reason = s["invalid_reason"].as_str().unwrap();
    assert!(
        reason.contains("after the agreed --start-at instant"),
        "{reason}"
    );
    assert!(said.contains("INVALID"), "{said}");

    for bad in ["tomorrow", "2026-13-01T00:00:00Z", &instant(3 * 24 * 3600)] {
        let refused = run_at(bad, &dir.path().join("bad"));
        assert_eq!(refused.status.code(), Some(2), "{bad}");
        assert!(text(&refused.stderr).contains("--start-at"), "{bad}");
    }

    // SIGTERM while the run waits an hour for its instant: it stops now, with its report.
    let waiting = dir.path().join("waiting");
    let mut child = doorbuster()
        .args(["run", file.to_str().unwrap(), "--quiet", "--out"])
        .arg(&waiting)
        .args(["--start-at", &instant(3600)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says when the load starts once it listens for signals.
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert!(said.contains("the load starts at"), "{said}");
    send("TERM", &child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    let s = summary(&waiting);
    assert_eq!(s["verdict"], "interrupted", "{s}");
    assert!(s["duration_s"].as_f64().unwrap() < 60.0, "{s}");
}
