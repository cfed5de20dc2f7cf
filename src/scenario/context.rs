//! What validation checks beyond the file: the command line's changes to the scenario, and
//! the environment its `${NAME}` references read.
//!
//! `validate` and `run` check a scenario with the same code; they differ only in what an
//! unset variable is. `validate` cannot know the environment the run will have (CI may set
//! a secret later), so an unset variable is a warning there and the values that need it are
//! checked when they can be; `run` is about to connect, so it is an error there.

/// Command-line changes to a scenario's target and load (`run --target URL --allow-remote
/// --rate-scale F`). Validation applies them, so a flag's result meets the rules the file's
/// own values meet, and a problem names the flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Replaces the target (`--target URL`); the file's delivery settings stay when the
    /// broker kind is the same, its headers when both are checkout endpoints.
    pub target: Option<String>,
    /// `--allow-remote`: a host outside loopback is allowed.
    pub allow_remote: bool,
    /// `--rate-scale F`: every phase's rate times F.
    pub rate_scale: Option<f64>,
    /// `--hold D`: the phases replaced by one hold at their peak rate (after the scale) for D.
    pub hold: Option<std::time::Duration>,
}

/// The largest `--rate-scale`; far beyond any real use, so a typo (`--rate-scale 5000`) is
/// refused rather than multiplied through.
pub const RATE_SCALE_MAX: f64 = 1000.0;

pub use crate::config::check::{Files, Unset};

/// Everything validation needs besides the file's text.
pub struct Context<'a> {
    pub overrides: Overrides,
    /// Reads an environment variable. Validation never reads the process environment
    /// itself, so it stays a pure function of its inputs.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub unset: Unset,
    /// Where the files the scenario names are read from (its folder).
    pub files: Files,
}

impl<'a> Context<'a> {
    /// The same context, reading named files from `files`.
    pub fn with_files(&self, files: Files) -> Context<'a> {
        Context {
            overrides: self.overrides.clone(),
            env: self.env,
            unset: self.unset,
            files,
        }
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn no_env(_: &str) -> Option<String> {
    None
}

impl Context<'static> {
    /// `doorbuster validate`: this process's environment; an unset variable is a warning.
    pub fn validate(overrides: Overrides) -> Self {
        Context {
            overrides,
            env: &process_env,
            unset: Unset::Warning,
            files: Files::None,
        }
    }

    /// `doorbuster run`: this process's environment; an unset variable is an error.
    pub fn run(overrides: Overrides) -> Self {
        Context {
            overrides,
            env: &process_env,
            unset: Unset::Error,
            files: Files::None,
        }
    }

    /// The file alone: no environment (every reference is a warning), no overrides. What
    /// [`super::parse`] and [`super::load`] check.
    pub fn file_only() -> Self {
        Context {
            overrides: Overrides::default(),
            env: &no_env,
            unset: Unset::Warning,
            files: Files::None,
        }
    }
}
