//! The checks as a scenario asks for them: the `checks:` block's YAML shape, its validation
//! (`config.rs`) and the validated model (`model.rs`). Below the scenario, which composes it,
//! and below `verify`, whose units judge a run by it: neither has to import the other's
//! layer to agree on what a check is.

pub mod config;
pub mod model;
