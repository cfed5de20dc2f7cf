//! Scenarios: a YAML file (or a bundled name) in, a validated [`Scenario`] out.
//!
//! The pipeline is `text -> raw.rs (serde shapes, positions) -> validate.rs (pure, every
//! problem at once) -> model.rs`; `config::units` reads human units, `error.rs` renders problems
//! as `file:line:col: path: message` with a hint. This module is the only part of doorbuster
//! that reads scenario files; everything downstream consumes the checked model and never
//! sees YAML.

mod bundled;
mod context;
mod error;
mod keys;
pub mod model;
mod raw;
pub mod schema;
pub mod target;
mod template;
mod validate;

use std::path::{Path, PathBuf};

pub use bundled::bundled;
pub use context::{Context, Files, Overrides, RATE_SCALE_MAX, Unset};
pub use error::{Problem, ScenarioError};
pub use model::*;
pub use template::template;

/// A scenario file is read whole; anything this large is not a hand-written scenario.
const FILE_SIZE_MAX: usize = 1 << 20;

/// Where a scenario came from, for error messages and the reproduce command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Bundled(&'static str),
}

impl Source {
    /// The file path as given, or the bundled name (`black-friday`).
    pub fn display_name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Bundled(name) => (*name).to_owned(),
        }
    }

    /// What to type after `doorbuster run` to load the same scenario again.
    pub fn run_arg(&self) -> String {
        self.display_name()
    }
}

/// A scenario that validated, with what validation could not check.
#[derive(Debug)]
pub struct Loaded {
    pub scenario: Scenario,
    pub source: Source,
    /// In file order, each rendered with [`Problem::render_warning`].
    pub warnings: Vec<Problem>,
}

/// Loads a scenario from the file alone: no overrides, no environment (see [`load_with`]).
/// `arg` is a path if it has a path separator or ends with `.yaml`/`.yml`; else the name of
/// a bundled scenario when there is one by that name (a folder `black-friday` does not hide
/// the bundled scenario: `./black-friday` names the folder); else a path.
pub fn load(arg: &str) -> Result<(Scenario, Source), ScenarioError> {
    load_with(arg, &Context::file_only()).map(|l| (l.scenario, l.source))
}

/// Loads a scenario and validates it with the command line's overrides and the
/// environment: how `validate` and `run` check a file, with the same code.
pub fn load_with(arg: &str, context: &Context) -> Result<Loaded, ScenarioError> {
    let path = Path::new(arg);
    let looks_like_file = arg.ends_with(".yaml")
        || arg.ends_with(".yml")
        || arg.contains('/')
        || arg.contains(std::path::MAIN_SEPARATOR);
    let is_bundled = bundled().iter().any(|(name, _)| *name == arg);
    if looks_like_file || (path.exists() && !is_bundled) {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let hint = (e.kind() == std::io::ErrorKind::NotFound)
                .then(|| format!("check the path; bundled scenarios are {}", bundled_names()));
            ScenarioError::whole_file(arg, format!("cannot read the scenario file: {e}"), hint)
        })?;
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let context = context.with_files(Files::Beside(dir));
        let (scenario, warnings) = parse_with(arg, &text, &context)?;
        return Ok(Loaded {
            scenario,
            source: Source::File(path.to_path_buf()),
            warnings,
        });
    }
    match bundled().iter().find(|(name, _)| *name == arg) {
        Some((name, text)) => {
            let (scenario, warnings) = parse_with(name, text, context)?;
            Ok(Loaded {
                scenario,
                source: Source::Bundled(name),
                warnings,
            })
        }
        None => {
            let names: Vec<&str> = bundled().iter().map(|(n, _)| *n).collect();
            let hint = match error::did_you_mean(arg, &names) {
                Some(name) => format!(
                    "did you mean {name:?}? bundled scenarios are {}",
                    bundled_names()
                ),
                None => format!(
                    "bundled scenarios are {}; or give a path to a .yaml file",
                    bundled_names()
                ),
            };
            Err(ScenarioError::whole_file(
                arg,
                format!("there is no scenario file {arg:?} and no bundled scenario by that name"),
                Some(hint),
            ))
        }
    }
}

fn bundled_names() -> String {
    bundled()
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses and validates scenario text from the file alone (no overrides, no environment:
/// warnings are dropped); `origin` is the file name used in messages.
pub fn parse(origin: &str, text: &str) -> Result<Scenario, ScenarioError> {
    parse_with(origin, text, &Context::file_only()).map(|(scenario, _)| scenario)
}

/// Parses and validates scenario text in a context; the scenario comes with its warnings.
pub fn parse_with(
    origin: &str,
    text: &str,
    context: &Context,
) -> Result<(Scenario, Vec<Problem>), ScenarioError> {
    if text.len() > FILE_SIZE_MAX {
        return Err(ScenarioError::whole_file(
            origin,
            format!(
                "the file is {} bytes, above the limit of 1 MiB for a scenario",
                text.len()
            ),
            None,
        ));
    }
    let unknown = keys::unknown(text);
    if !unknown.is_empty() {
        return Err(with_unknown_keys(origin, text, context, unknown));
    }
    parse_known(origin, text, context)
}

/// The structural step and validation, for a text whose keys are all known.
fn parse_known(
    origin: &str,
    text: &str,
    context: &Context,
) -> Result<(Scenario, Vec<Problem>), ScenarioError> {
    let raw = raw::from_str(text)
        .map_err(|e| ScenarioError::new(origin, vec![error::from_raw_error(&e, text)]))?;
    let Some(raw) = raw else {
        return Err(ScenarioError::whole_file(
            origin,
            "the file is empty; a scenario needs at least `name` and `load`".to_owned(),
            Some("`doorbuster init NAME` writes a commented scenario to start from".to_owned()),
        ));
    };
    validate::validate(&raw, context).map_err(|(problems, warnings)| ScenarioError {
        warnings,
        ..ScenarioError::new(origin, problems)
    })
}

/// The problems of a file with unknown keys: every one of them, and, when they can all be
/// cut out by lines, the problems of the rest of the file, in file order. A required key
/// reported missing where an unknown key most likely meant it is left out: the did-you-mean
/// says it.
fn with_unknown_keys(
    origin: &str,
    text: &str,
    context: &Context,
    unknown: Vec<keys::Unknown>,
) -> ScenarioError {
    let rest = keys::without(text, &unknown).map(|clean| parse_known(origin, &clean, context));
    let (mut problems, warnings) = match rest {
        Some(Err(e)) => (e.problems, e.warnings),
        Some(Ok((_, warnings))) => (Vec::new(), warnings),
        None => (Vec::new(), Vec::new()),
    };
    problems.retain(|p| {
        !(p.message == "this required key is missing"
            && unknown
                .iter()
                .any(|u| u.meant.as_deref() == Some(p.path.as_str())))
    });
    problems.extend(unknown.into_iter().map(|u| u.problem));
    problems.sort_by_key(|p| (p.file.is_some(), p.line, p.column));
    ScenarioError {
        warnings,
        ..ScenarioError::new(origin, problems)
    }
}
