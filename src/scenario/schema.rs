//! The JSON Schema of scenario files, for editors (completion, hover text, red squiggles)
//! and for `doorbuster schema`.
//!
//! Derived from the raw shapes the parser reads (`raw.rs`): their fields, their doc comments
//! and the schema of each leaf's unit (`config::schema`), so the schema cannot drift from
//! what the parser accepts. The validator in `validate.rs` gives the authoritative errors
//! (ranges, rules across keys); the tests hold the schema to it: every bundled scenario and
//! the full `init` template validate, and misspelt keys and malformed units are rejected.

/// The scenario-file schema as pretty JSON, its keys in the order schemars writes them
/// (`$schema` and `title` first, as editors show them).
pub fn json() -> String {
    // A generated schema always serialises.
    serde_json::to_string_pretty(&schema()).unwrap_or_default()
}

/// The scenario-file schema as a JSON value (what `keys.rs` walks for unknown keys).
pub fn value() -> serde_json::Value {
    schema().to_value()
}

fn schema() -> schemars::Schema {
    schemars::schema_for!(super::raw::RawScenario)
}
