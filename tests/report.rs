//! Report formats and the commands around them: the committed JSON Schemas stay in step with
//! the code and judge real documents (and reject broken ones), Markdown and JUnit renderings
//! are snapshot-tested, `report` re-renders a run, `compare` exits 1 on a regression.
//!
//! report.html opened in headless Chromium: a real run's page and a hand-made faulted,
//! failing one must show every chart with plotted lines, the fault shading on every time
//! chart, the check names in the verdict, no URL, and no console error; a page that throws
//! proves the console check can fail.
//!
//! Without Chromium the tests try `apt-get install chromium` once; when that fails they
//! print SKIP, or fail when `DOORBUSTER_REQUIRE_BROWSER=1`. Screenshots and pages are kept
//! under `$CARGO_TARGET_TMPDIR/report/` for a human to look at.

mod support;

use doorbuster::report::compare::{Tolerances, compare};
use doorbuster::report::summary::{FaultWindow, RunVerdict, Summary};
use doorbuster::run::{RunOptions, execute};
use doorbuster::scenario::model::Scenario;
use doorbuster::verify::Verdict;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const PASS: &str = "tests/fixtures/summaries/smoke-pass.json";
const FAIL: &str = "tests/fixtures/summaries/double-charge-fail.json";

fn fixture(path: &str) -> Summary {
    doorbuster::report::load_summary(Path::new(path)).expect("fixture summary loads")
}

fn committed(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("schemas/{name}")).expect("committed schema");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn doorbuster(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_doorbuster"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn tables_fit_the_width_they_are_given() {
    let fail = fixture(FAIL);
    let comparison = compare(&fixture(PASS), &fail, &Tolerances::default());
    for width in [80u16, 120] {
        for (what, table) in [
            (
                "verdict",
                doorbuster::report::terminal::verdict_table_in(&fail, width),
            ),
            (
                "compare",
                doorbuster::report::compare::render_in(&comparison, width),
            ),
        ] {
            let widest = table.lines().map(|l| l.chars().count()).max().unwrap();
            assert!(
                widest <= usize::from(width),
                "{what} at {width}: {widest}\n{table}"
            );
        }
    }
    // Wrapped, not cut: the long evidence of the failed check is all there.
    let narrow = doorbuster::report::terminal::verdict_table_in(&fail, 80);
    assert!(narrow.contains("no_duplicate_effects"), "{narrow}");
}

#[test]
fn committed_schemas_match_the_code() {
    // Regenerate with `doorbuster schema > schemas/scenario.schema.json` and
    // `doorbuster schema --summary > schemas/summary.schema.json`.
    let summary: Value = serde_json::from_str(&doorbuster::report::summary_schema()).unwrap();
    assert_eq!(summary, committed("summary.schema.json"));
    let scenario: Value = serde_json::from_str(&doorbuster::scenario::schema::json()).unwrap();
    assert_eq!(scenario, committed("scenario.schema.json"));
}

#[test]
fn summaries_validate_against_the_summary_schema_and_broken_ones_do_not() {
    let validator = jsonschema::validator_for(&committed("summary.schema.json")).unwrap();
    for path in [PASS, FAIL] {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{path}: {errors:?}");
        // Negative controls: a missing field and a verdict outside the enum.
        let mut broken = doc.clone();
        broken.as_object_mut().unwrap().remove("checks");
        assert!(!validator.is_valid(&broken));
        let mut broken = doc;
        broken["verdict"] = Value::from("mostly");
        assert!(!validator.is_valid(&broken));
    }
}

fn yaml_to_json(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML parses")
}

#[test]
fn bundled_scenarios_and_the_template_satisfy_the_scenario_schema() {
    let validator = jsonschema::validator_for(&committed("scenario.schema.json")).unwrap();
    let mut documents: Vec<(String, String)> = doorbuster::scenario::bundled()
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect();
    documents.push((
        "template".into(),
        doorbuster::scenario::template("flash-sale"),
    ));
    for (name, text) in documents {
        let doc = yaml_to_json(&text);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn the_scenario_schema_rejects_what_the_validator_rejects() {
    let validator = jsonschema::validator_for(&committed("scenario.schema.json")).unwrap();
    let minimal = "name: ok\nload:\n  phases:\n    - { hold: 10s, rate: 100/s }\n";
    assert!(validator.is_valid(&yaml_to_json(minimal)));
    for broken in [
        "name: ok\nload:\n  phases:\n    - { hold: 10s, rat: 100/s }\n", // typo'd key
        "name: ok\nload:\n  phases:\n    - { hold: 10s, rate: -5/s }\n", // negative rate
        "name: ok\nload:\n  phases:\n    - { hold: 90 sekunden, rate: 5/s }\n", // bad duration
        "name: Black Friday\nload:\n  phases:\n    - { hold: 1s, rate: 5/s }\n", // bad name
        "name: ok\nload:\n  phases: []\n",                               // no phases
        "name: ok\nload:\n  phases:\n    - { hold: 1s, rate: 5/s }\norders: { declines: 2 }\n",
        "name: ok\nload:\n  phases:\n    - { hold: 1s, rate: 5/s }\nservices: { paymnt: {} }\n",
        "name: ok\nload:\n  phases:\n    - { hold: 1s, rate: 5/s }\ntarget: mqtt://127.0.0.1:1883\n",
        "name: ok\nload:\n  checkout: { mode: synch }\n  phases:\n    - { hold: 1s, rate: 5/s }\n",
    ] {
        assert!(
            !validator.is_valid(&yaml_to_json(broken)),
            "accepted:\n{broken}"
        );
        assert!(
            doorbuster::scenario::parse("x.yaml", broken).is_err(),
            "{broken}"
        );
    }
}

#[test]
fn markdown_summary_reads_well() {
    insta::assert_snapshot!(
        "summary-md-fail",
        doorbuster::report::markdown::render(&fixture(FAIL))
    );
}

#[test]
fn junit_has_one_case_per_check_and_the_evidence_as_failure() {
    let xml = doorbuster::report::junit::render(&fixture(FAIL)).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 5);
    assert!(
        xml.contains(r#"<failure message="observed 35 orders charged more than once"#),
        "{xml}"
    );
    assert!(xml.contains("order 10: charged 2 times"));
    insta::assert_snapshot!("junit-fail", xml);
    let pass = doorbuster::report::junit::render(&fixture(PASS)).unwrap();
    assert!(!pass.contains("<failure"), "{pass}");
}

#[test]
fn report_rerenders_every_format_from_a_saved_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(FAIL, dir.path().join("summary.json")).unwrap();
    let out = doorbuster(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "summary.json",
        "summary.md",
        "junit.xml",
        "report.html",
        "reproduce.txt",
    ] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    // The re-rendered summary.json is the same document.
    let again = doorbuster::report::load_summary(dir.path()).unwrap();
    assert_eq!(again, fixture(FAIL));
    // Not a summary: bad input, exit 2.
    std::fs::write(dir.path().join("summary.json"), "{\"not\": \"a summary\"}").unwrap();
    assert_eq!(
        doorbuster(&["report", dir.path().to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn compare_passes_a_run_against_itself_and_catches_a_regression() {
    let base = fixture(PASS);
    let same = compare(&base, &base, &Tolerances::default());
    assert_eq!(same.regressions().count(), 0);

    // The candidate's fulfilment p99 doubles and one check fails.
    let mut worse = base.clone();
    let stage = worse
        .latency
        .iter_mut()
        .find(|l| l.stage == "order.created -> order.fulfilled")
        .unwrap();
    stage.percentiles.p99_us = stage.percentiles.p99_us * 2 + 5_000;
    worse.checks[0].verdict = doorbuster::verify::Verdict::Fail;
    let c = compare(&base, &worse, &Tolerances::default());
    let regressed: Vec<&str> = c.regressions().map(|d| d.what.as_str()).collect();
    assert_eq!(
        regressed,
        vec![
            "check checkout_success_rate",
            "order.created -> order.fulfilled p99"
        ]
    );

    // Through the binary: exit 0 for the same run, 1 for the regression.
    let dir = tempfile::tempdir().unwrap();
    let worse_path = dir.path().join("worse.json");
    std::fs::write(&worse_path, serde_json::to_vec(&worse).unwrap()).unwrap();
    assert_eq!(doorbuster(&["compare", PASS, PASS]).status.code(), Some(0));
    let out = doorbuster(&["compare", PASS, worse_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 regressions"));
    // A wider tolerance and no gate on p99 forgive the latency, not the failed check.
    let out = doorbuster(&[
        "compare",
        PASS,
        worse_path.to_str().unwrap(),
        "--gate",
        "p50",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 regressions"));
    assert_eq!(
        doorbuster(&["compare", PASS, "no/such/run"]).status.code(),
        Some(2)
    );
    // Two different scenarios: a warning and exit 2, unless --force, whose differences are
    // then reported as they are.
    let out = doorbuster(&["compare", PASS, FAIL]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the runs differ (scenario \"smoke\" vs \"double-charge\")"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    let forced = doorbuster(&["compare", PASS, FAIL, "--force"]);
    assert_eq!(forced.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&forced.stderr).contains("the runs differ"));
}

#[test]
fn compare_uses_the_candidate_scenarios_tolerances_unless_a_flag_overrides_them() {
    let base = fixture(PASS);
    // p99 of fulfilment grows by 15 % (about 13 ms): beyond the default 10 %, within 20 %.
    let mut worse = base.clone();
    let stage = worse
        .latency
        .iter_mut()
        .find(|l| l.stage == "order.created -> order.fulfilled")
        .unwrap();
    stage.percentiles.p99_us = stage.percentiles.p99_us * 115 / 100;
    worse.tolerances.latency_increase = doorbuster::scenario::model::Share(0.20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("candidate.json");
    std::fs::write(&path, serde_json::to_vec(&worse).unwrap()).unwrap();
    let candidate = path.to_str().unwrap();
    assert_eq!(
        doorbuster(&["compare", PASS, candidate]).status.code(),
        Some(0)
    );
    let strict = doorbuster(&["compare", PASS, candidate, "--latency-increase", "10%"]);
    assert_eq!(strict.status.code(), Some(1));
    // And the scenario file is where that tolerance is written.
    let scenario = doorbuster::scenario::parse(
        "t.yaml",
        "name: t\nload:\n  phases:\n    - { hold: 1s, rate: 5/s }\nchecks:\n  compare: { latency_increase: 20%, rate_drop: 0.5% }\n",
    )
    .unwrap();
    assert_eq!(scenario.checks.compare.latency_increase.fraction(), 0.20);
    assert!(
        doorbuster::scenario::parse(
            "t.yaml",
            "name: t\nload:\n  phases:\n    - { hold: 1s, rate: 5/s }\nchecks:\n  compare: { latency_increase: 20 }\n",
        )
        .is_err()
    );
}

// ---- report.html in headless Chromium ----------------------------------------------------

/// Seconds Chromium may take per page before the test gives up on it.
const BROWSER_TIMEOUT_S: &str = "120";
/// The time charts of every page; latency charts are added per stage.
const TIME_CHARTS: [&str; 4] = [
    "chart-rate",
    "chart-failures",
    "chart-lag",
    "chart-deliveries",
];

/// Three seconds of load at 50 orders/s, a fast in-process provider.
fn small() -> Scenario {
    doorbuster::scenario::parse(
        "small.yaml",
        r#"
name: small
description: "Three seconds of orders <script>alert('not run')</script>"
seed: 11
load:
  arrivals: uniform
  phases:
    - { hold: 3s, rate: 50/s }
  drain: 10s
provider:
  via: in_process
  latency: 1ms..5ms
checks:
  latency:
    order.created -> order.fulfilled: { p99: "< 3s" }
"#,
    )
    .expect("the small scenario parses")
}

async fn real_summary() -> Summary {
    let options = RunOptions {
        no_files: true,
        run_arg: "small.yaml".into(),
        ..RunOptions::default()
    };
    let summary = execute(&small(), options)
        .await
        .expect("the run completes")
        .summary;
    support::assert_valid_summary(&serde_json::to_value(&summary).unwrap());
    summary
}

fn percentiles(count: u64, us: u64) -> doorbuster::observe::Percentiles {
    doorbuster::observe::Percentiles {
        count,
        p50_us: us,
        p90_us: us,
        p99_us: us * 2,
        p999_us: us * 2,
        max_us: us * 3,
    }
}

/// The real summary with a fault window, and its duplicate-effects check turned into a
/// failure with a long evidence list.
fn faulted(mut s: Summary) -> Summary {
    s.faults = vec![FaultWindow {
        kind: "provider_outage".into(),
        target: "payment".into(),
        start_ms: 1_000,
        end_ms: Some(2_000),
        notes: Vec::new(),
        latency: vec![doorbuster::observe::StageSplit {
            stage: doorbuster::topology::Stage::Checkout,
            before: percentiles(10, 1_000),
            during: percentiles(10, 50_000),
            after: percentiles(10, 1_200),
        }],
        recovery: Some(doorbuster::observe::Recovery {
            lag_before: 0,
            backlog_peak: 420,
            lag_recovered_after_ms: Some(3_500),
            latency_recovered_after_ms: None,
        }),
        exec: None,
    }];
    let check = s
        .checks
        .iter_mut()
        .find(|c| c.name == "no_duplicate_effects")
        .expect("the run has a no_duplicate_effects check");
    check.verdict = Verdict::Fail;
    check.observed = "12 orders charged more than once".into();
    check.evidence = (0..12)
        .map(|i| format!("order {i} charged twice"))
        .collect();
    s.verdict = RunVerdict::Fail;
    s.exit_code = 1;
    s
}

/// Chromium's path, installing it once if needed; `None` means skip.
fn chromium() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        if let Some(p) = on_path() {
            return Some(p);
        }
        visible("chromium not found: trying `apt-get update && apt-get install -y chromium`");
        let installed = Command::new("sh")
            .args([
                "-c",
                "apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if installed { on_path() } else { None }
    });
    if found.is_none() {
        let why = "Chromium is missing and could not be installed";
        if std::env::var("DOORBUSTER_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("{why}, and DOORBUSTER_REQUIRE_BROWSER=1");
        }
        visible(&format!(
            "SKIP: {why}; the report was not checked in a browser"
        ));
    }
    found.as_deref()
}

/// Straight to stderr: libtest captures `eprintln!` of passing tests, and a skip must show.
fn visible(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn on_path() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    })
}

/// Runs Chromium headless on `page` with `extra` arguments, in a fresh profile, under
/// `timeout` so a hung browser fails the test instead of stalling it.
fn browse(browser: &Path, page: &Path, extra: &[String]) -> Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new("timeout")
        .arg(BROWSER_TIMEOUT_S)
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium failed on {}: {}\n{}",
        page.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Lines of Chromium's log that come from the page's console.
///
/// Debian's Chromium 156 logs every console message, `console.error` and uncaught
/// exceptions included, as `[pid:tid:date:INFO:CONSOLE:1] "Uncaught Error: x", source: ...`:
/// the level in the prefix is the logger's, not the message's, so matching `ERROR:CONSOLE`
/// alone would miss them all. The page has no script, so any console line is an error.
/// The `ERROR:dbus/...` lines a container without D-Bus produces are not console lines.
fn console_errors(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains("Uncaught") || l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect()
}

/// The DOM after load, and the console errors logged while loading it.
fn dump_dom(browser: &Path, page: &Path) -> (String, Vec<String>) {
    let out = browse(browser, page, &["--dump-dom".into()]);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        console_errors(&out.stderr),
    )
}

fn screenshot(browser: &Path, page: &Path, png: &Path) {
    browse(
        browser,
        page,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,4000".into(),
        ],
    );
    let size = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        png.display()
    );
}

/// The markup of `<svg id="{id}" ...>...</svg>` in the DOM.
fn svg<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no <svg id=\"{id}\"> in the DOM"));
    let end = dom[start..].find("</svg>").expect("svg closes") + start;
    &dom[start..end]
}

/// Plotted lines: polylines in a series colour. Axes are black polylines and grid lines
/// are `<line>`, so neither counts.
fn plotted_lines(svg: &str) -> usize {
    svg.match_indices("<polyline")
        .filter(|(i, _)| {
            let tag_end = svg[*i..].find('>').map_or(svg.len(), |e| e + i);
            !svg[*i..tag_end].contains("stroke=\"#000000\"")
        })
        .count()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Where pages and screenshots stay after the test, for a human to look at.
fn keep(name: &str, from: &Path) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::copy(from, dir.join(name));
}

/// Writes the run folder, opens report.html, and checks what a reader would see.
fn check_in_browser(browser: &Path, summary: &Summary, name: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    doorbuster::report::write_all(dir.path(), summary).expect("the report is written");
    assert!(dir.path().join("summary.json").exists());
    let page = dir.path().join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{name}: the page refers to a URL"
    );
    assert!(!html.contains("<script"), "{name}: the page has a script");

    let (dom, errors) = dump_dom(browser, &page);
    assert!(errors.is_empty(), "{name}: console errors: {errors:#?}");
    assert!(!dom.contains("http://") && !dom.contains("https://"));

    let stages: Vec<String> = summary
        .latency
        .iter()
        .filter(|l| l.percentiles.count > 0)
        .map(|l| doorbuster::report::charts::slug(&l.stage))
        .collect();
    assert!(!stages.is_empty(), "{name}: a real run has latency data");
    let mut charts: Vec<String> = TIME_CHARTS.iter().map(|s| s.to_string()).collect();
    charts.extend(stages.iter().map(|s| format!("chart-latency-{s}")));
    let mut with_distribution = charts.clone();
    with_distribution.extend(stages.iter().map(|s| format!("chart-distribution-{s}")));
    for id in &with_distribution {
        let lines = plotted_lines(svg(&dom, id));
        assert!(lines > 0, "{name}: {id} has axes but no plotted line");
    }
    let shaded = charts
        .iter()
        .filter(|id| svg(&dom, id).contains("class=\"fault-window\""))
        .count();
    let expected = if summary.faults.is_empty() {
        0
    } else {
        charts.len()
    };
    assert_eq!(shaded, expected, "{name}: time charts with fault shading");

    let verdict_start = dom
        .find("<section id=\"verdict\">")
        .expect("verdict section");
    let verdict_end = dom[verdict_start..].find("</section>").expect("closes") + verdict_start;
    let verdict = &dom[verdict_start..verdict_end];
    assert!(!summary.checks.is_empty());
    for c in &summary.checks {
        assert!(
            verdict.contains(&escape(&c.name)),
            "{name}: check {} missing from the verdict",
            c.name
        );
    }
    assert!(verdict.contains(&escape(&summary.reproduce)));

    let png = dir.path().join(format!("{name}.png"));
    screenshot(browser, &page, &png);
    keep(&format!("{name}.png"), &png);
    keep(&format!("{name}.html"), &page);
    dom
}

#[tokio::test(start_paused = true)]
async fn a_real_run_reads_in_chromium() {
    let summary = real_summary().await;
    assert_eq!(summary.verdict, RunVerdict::Pass, "{:?}", summary.checks);
    let Some(browser) = chromium() else { return };
    let dom = check_in_browser(browser, &summary, "real");
    assert!(dom.contains("class=\"badge run-verdict pass\""));
    // The scenario's description is shown as text, not run.
    assert!(dom.contains("&lt;script&gt;alert"));
}

#[tokio::test(start_paused = true)]
async fn a_faulted_failing_run_shades_every_time_chart() {
    let summary = faulted(real_summary().await);
    let Some(browser) = chromium() else { return };
    let dom = check_in_browser(browser, &summary, "faulted");
    assert!(dom.contains("class=\"badge run-verdict fail\""));
    // The fault section tells what the window did; the charts name the fault on its band.
    assert!(
        dom.contains("Backlog peak 420; lag back to its level before the fault after 3.5 s."),
        "{dom}"
    );
    assert!(dom.contains("class=\"fault-split\""), "{dom}");
    assert!(
        dom.contains("<td class=\"num\">50.0 ms / 100 ms</td>"),
        "{dom}"
    );
    assert!(dom.contains("class=\"fault-label\""), "{dom}");
    // Twelve evidence lines fold into a <details>.
    assert!(dom.contains("<details><summary>12 items</summary>"));
}

/// The console check is real: a page whose script throws, and one that only logs a console
/// error, are both caught by it.
#[test]
fn the_console_check_catches_a_throwing_page() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, script) in [
        ("throws", "throw new Error(\"x\")"),
        ("logs", "console.error(\"x\")"),
    ] {
        let page = dir.path().join(format!("{name}.html"));
        std::fs::write(
            &page,
            format!("<!DOCTYPE html><html><body><p>x</p><script>{script}</script></body></html>"),
        )
        .expect("write page");
        let (dom, errors) = dump_dom(browser, &page);
        assert!(dom.contains("<p>x</p>"), "{name}: the page loaded");
        assert!(
            !errors.is_empty(),
            "{name}: the console error went unnoticed"
        );
    }
}

/// A capacity search's step at `rate` orders/s (scale `rate / 100`).
fn capacity_step(rate: f64, pass: bool, p99_ms: u64) -> doorbuster::capacity::Step {
    doorbuster::capacity::Step {
        scale: rate / 100.0,
        planned_peak: rate,
        achieved_peak: if pass { rate } else { rate * 0.8 },
        verdict: if pass {
            RunVerdict::Pass
        } else {
            RunVerdict::Fail
        },
        orders: rate as u64 * 10,
        accepted: rate as u64 * 10,
        send_lag_p99_us: 900,
        p99_us: vec![
            ("order.created".into(), 2_000),
            ("order.created -> order.fulfilled".into(), p99_ms * 1000),
        ],
        why: if pass {
            String::new()
        } else {
            "latency order.created -> order.fulfilled p99: 1.9s over 4000 samples".into()
        },
        wall_s: 12.0,
        dir: None,
    }
}

/// capacity.html in Chromium: both charts plot their lines, the knee is shaded between the
/// last pass (200/s) and the first failure (400/s) and the page says what failed there; the
/// twin whose steps all passed shades no knee.
#[test]
fn a_capacity_report_reads_in_chromium() {
    use doorbuster::capacity::{Capacity, Ceiling, Headroom};
    let bent = Capacity {
        scenario: "bending".into(),
        base_peak: 100.0,
        steps: vec![
            capacity_step(100.0, true, 80),
            capacity_step(200.0, true, 120),
            capacity_step(400.0, false, 1900),
            capacity_step(300.0, true, 400),
        ],
        sustained: Some(3),
        first_failure: Some(2),
        ceiling: None,
        forecast: Some(Headroom {
            rate: 300.0,
            ratio: 1.0,
            holds: true,
        }),
    };
    let unbent = Capacity {
        steps: bent.steps[..2].to_vec(),
        sustained: Some(1),
        first_failure: None,
        ceiling: Some(Ceiling::MaxScale { scale: 2.0 }),
        ..bent.clone()
    };
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, capacity) in [("bent", &bent), ("unbent", &unbent)] {
        let folder = dir.path().join(name);
        doorbuster::capacity::report::write(capacity, &folder).expect("written");
        let page = folder.join("capacity.html");
        let (dom, errors) = dump_dom(browser, &page);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        // Achieved (the planned diagonal is light grey, a data colour too), and one p99
        // line per stage.
        assert_eq!(plotted_lines(svg(&dom, "chart-capacity-rate")), 2, "{name}");
        assert_eq!(
            plotted_lines(svg(&dom, "chart-capacity-latency")),
            2,
            "{name}"
        );
        let knees = dom.matches("class=\"knee\"").count();
        if name == "bent" {
            assert_eq!(knees, 2, "both charts mark the knee");
            assert!(dom.contains("passes at 300 orders/s, fails at 400 orders/s"));
            assert!(dom.contains("fails first at 400 orders/s (x4)"), "{dom}");
            assert!(dom.contains("HEADROOM HOLDS"));
        } else {
            assert_eq!(knees, 0, "no failure, no knee");
            assert!(dom.contains("no failure up to the largest factor tried (x2)"));
        }
        let png = folder.join("capacity.png");
        screenshot(browser, &page, &png);
        keep(&format!("capacity-{name}.png"), &png);
    }
}
