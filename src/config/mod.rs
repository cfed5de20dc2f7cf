//! The toolkit component configs are written with, and nothing else: the shapes a file is
//! read into (`tree`), the human unit parsers and unit types (`units`), `${NAME}` references
//! (`env`) and the checker that collects every problem with its position (`check`).
//!
//! It knows no component: a broker, a fault kind, a check or a report format owns its own
//! config (raw shape, pure validation, validated options, schema) in its own folder and
//! writes it with these parts; the scenario module only composes them.

pub mod check;
pub mod env;
pub mod schema;
pub mod tree;
pub mod units;

pub use check::{Checker, Path, Problem, Spot, Unset};
pub use tree::{Entries, Node, Text};
pub use units::UnitError;
