//! Report formats and the commands around them: the committed JSON Schemas stay in step with
//! the code and judge real documents (and reject broken ones), Markdown and JUnit renderings
//! are snapshot-tested, `report` re-renders a run, `compare` exits 1 on a regression.

use std::path::Path;
use std::process::Command;

use doorbuster::report::compare::{Tolerances, compare};
use doorbuster::report::summary::Summary;
use serde_json::Value;

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
        "name: ok\nload:\n  phases:\n    - { hold: 1s, rate: 5/s }\ntarget: kafka\n",
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
    for file in ["summary.json", "summary.md", "junit.xml", "reproduce.txt"] {
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
