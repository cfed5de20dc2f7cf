//! Shared by the test crates: what every summary a test produces must satisfy.

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
