//! Shared by the test crates: running a scenario through the library, finding a check,
//! and what every summary a test produces must satisfy. Not every crate uses every helper.
#![allow(dead_code)]

use std::sync::Arc;

use doorbuster::report::summary::RunVerdict;
use doorbuster::run::{RunOptions, RunResult, execute};
use doorbuster::scenario::model::Scenario;
use doorbuster::transport::Transport;
use doorbuster::verify::{CheckResult, Verdict};

/// Holds a summary (as JSON) to the committed schemas/summary.schema.json.
pub fn assert_valid_summary(doc: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/summary.schema.json"))
            .expect("the committed schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the committed schema compiles");
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "summary.json breaks its schema: {errors:?}"
    );
}

/// Runs `s` without files, optionally on a replacement transport; the summary must satisfy
/// its schema.
pub async fn run_with(s: &Scenario, transport: Option<Arc<dyn Transport>>) -> RunResult {
    let options = RunOptions {
        no_files: true,
        run_arg: "test".into(),
        transport,
        ..RunOptions::default()
    };
    let result = execute(s, options).await.expect("the run completes");
    assert_valid_summary(&serde_json::to_value(&result.summary).expect("summary serialises"));
    result
}

/// The check whose name starts with `name`.
pub fn check<'a>(r: &'a RunResult, name: &str) -> &'a CheckResult {
    r.summary
        .checks
        .iter()
        .find(|c| c.name.starts_with(name))
        .unwrap_or_else(|| panic!("no check {name}"))
}

/// Deliveries to one subscription, by its label (`email <- order.payment.succeeded`).
pub fn subscription<'a>(
    r: &'a RunResult,
    label: &str,
) -> &'a doorbuster::report::summary::SubscriptionStats {
    r.summary
        .deliveries
        .per_subscription
        .iter()
        .find(|s| s.subscription == label)
        .unwrap_or_else(|| panic!("no subscription {label}"))
}

/// Every check passed and so did the run.
pub fn assert_all_pass(r: &RunResult) {
    for c in &r.summary.checks {
        assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
    }
    assert_eq!(r.summary.verdict, RunVerdict::Pass);
}
