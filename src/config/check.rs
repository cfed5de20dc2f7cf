//! The checker every component's config is validated with: it parses leaves with the unit
//! parsers, collects every problem (and warning) with its position and field path, and
//! reads `${NAME}` references from the environment it was given, never from the process.
//!
//! A component's `validate` takes a `&mut Checker` and a [`Path`], pushes what it finds and
//! returns its validated options; nothing here stops at the first problem.

use std::fmt;

use serde_saphyr::Location;

use super::tree::Text;
use super::units::UnitError;

/// One thing wrong with a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; 0 when the problem has no position (the file could not be read).
    pub line: u32,
    /// 1-based, in characters; 0 when the problem has no position.
    pub column: u32,
    /// Field path such as `load.phases[2].rate`; empty for the file as a whole.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
    /// The file `line` and `column` are in when it is not the scenario itself (a payload
    /// template the scenario names).
    pub file: Option<String>,
}

impl Problem {
    /// Writes `origin:line:col: path: message` and, if there is one, `  hint: ...` below;
    /// `file:line:col: ...` for a problem in a file the scenario names.
    pub fn render(&self, origin: &str, f: &mut impl fmt::Write) -> fmt::Result {
        write!(f, "{}:", self.file.as_deref().unwrap_or(origin))?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, " {}:", self.path)?;
        }
        write!(f, " {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }

    /// The same shape with `warning: ` before the message: something validation could not
    /// check, which does not stop the file from validating.
    pub fn render_warning(&self, origin: &str) -> String {
        let mut out = String::new();
        let warning = Problem {
            message: format!("warning: {}", self.message),
            ..self.clone()
        };
        // Writing to a String cannot fail.
        let _ = warning.render(origin, &mut out);
        out
    }
}

/// A field path under construction: `load.phases[2].rate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(pub String);

impl Path {
    pub fn root() -> Path {
        Path::default()
    }

    pub fn key(&self, key: &str) -> Path {
        let mut out = self.0.clone();
        push_key(&mut out, key);
        Path(out)
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }
}

/// Appends one key to a path in the form `join_path` uses.
pub fn push_key(out: &mut String, key: &str) {
    let plain_word = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let percentile =
        key.starts_with('p') && key[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
    if plain_word || (percentile && key.len() > 1) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push_str(&format!("[{key:?}]"));
    }
}

/// Where a value is from: a position in the file, or a command-line flag (no position).
#[derive(Debug, Clone)]
pub struct Spot {
    pub at: Option<Location>,
    pub path: Path,
}

impl Spot {
    pub fn at(at: &Location, path: Path) -> Spot {
        Spot {
            at: Some(*at),
            path,
        }
    }

    pub fn flag(name: &str) -> Spot {
        Spot {
            at: None,
            path: Path(name.to_owned()),
        }
    }

    fn problem(&self, message: String, hint: Option<String>) -> Problem {
        let (line, column) = self.at.as_ref().map_or((0, 0), pos);
        Problem {
            line,
            column,
            path: self.path.0.clone(),
            message,
            hint,
            file: None,
        }
    }
}

/// `(line, column)` of a location, clamped into `u32`.
pub fn pos(location: &Location) -> (u32, u32) {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (clamp(location.line()), clamp(location.column()))
}

/// How serious a `${NAME}` reference to an unset variable is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// `validate`: said, and the values that need it are left unchecked.
    Warning,
    /// `run`: the scenario is refused.
    Error,
}

/// A section's validator: the shared [`Checker`] and what the section keeps while it walks
/// its raw config (`S`). It derefs to the checker, so `self.report(..)` and `self.parse(..)`
/// read the same in every section's methods.
pub struct Section<'c, 'a, S> {
    pub check: &'c mut Checker<'a>,
    pub state: S,
}

impl<'a, S> std::ops::Deref for Section<'_, 'a, S> {
    type Target = Checker<'a>;

    fn deref(&self) -> &Checker<'a> {
        self.check
    }
}

impl<S> std::ops::DerefMut for Section<'_, '_, S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.check
    }
}

/// Collects problems and warnings while component configs validate themselves.
pub struct Checker<'a> {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// Reads an environment variable: validation never reads the process environment
    /// itself, so it stays a pure function of its inputs.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub unset: Unset,
    /// Reads the files the scenario names.
    pub files: Files,
}

/// Where the files a scenario names (a payload template, a JSON Schema) are read from: the
/// scenario's own folder. Validation opens no other file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Files {
    /// Text with no folder (a bundled scenario, a test): naming a file is a problem.
    #[default]
    None,
    Beside(std::path::PathBuf),
}

/// A file the scenario names, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    /// The path as it is shown in messages (joined to the scenario's folder).
    pub shown: String,
    pub text: String,
}

/// The largest file a scenario may name; a template or schema is far smaller.
const NAMED_FILE_MAX: u64 = 1 << 20;

impl Files {
    pub fn read(&self, path: &str) -> Result<NamedFile, String> {
        let Files::Beside(dir) = self else {
            return Err("a scenario given as text (a bundled one) cannot name files".to_owned());
        };
        let full = dir.join(path);
        let shown = full.display().to_string();
        let size = std::fs::metadata(&full)
            .map_err(|e| format!("cannot read {shown}: {e}"))?
            .len();
        if size > NAMED_FILE_MAX {
            return Err(format!("{shown} is {size} bytes, above the limit of 1 MiB"));
        }
        let text =
            std::fs::read_to_string(&full).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Ok(NamedFile { shown, text })
    }
}

impl<'a> Checker<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>, unset: Unset) -> Checker<'a> {
        Checker {
            problems: Vec::new(),
            warnings: Vec::new(),
            env,
            unset,
            files: Files::None,
        }
    }

    /// A problem at a line and column of a file the scenario names.
    pub fn report_in(&mut self, file: &str, at: (u32, u32), path: &Path, message: String) {
        self.problems.push(Problem {
            line: at.0,
            column: at.1,
            path: path.0.clone(),
            message,
            hint: None,
            file: Some(file.to_owned()),
        });
    }

    pub fn report(&mut self, at: &Location, path: &Path, message: String, hint: Option<String>) {
        self.report_spot(&Spot::at(at, path.clone()), message, hint);
    }

    pub fn report_spot(&mut self, spot: &Spot, message: String, hint: Option<String>) {
        self.problems.push(spot.problem(message, hint));
    }

    pub fn warn_spot(&mut self, spot: &Spot, message: String, hint: Option<String>) {
        self.warnings.push(spot.problem(message, hint));
    }

    /// Parses one present value; on failure records the problem and returns `None`.
    pub fn parse<T>(
        &mut self,
        text: &Text,
        path: &Path,
        parse: impl FnOnce(&str) -> Result<T, UnitError>,
    ) -> Option<T> {
        match parse(&text.value) {
            Ok(value) => Some(value),
            Err(e) => {
                self.report(&text.referenced, path, e.message, e.hint);
                None
            }
        }
    }

    /// An optional key: its parsed value, or `default` when absent (or invalid, in which
    /// case the problem is recorded and the result is never used).
    pub fn or_default<T>(
        &mut self,
        text: &Option<impl AsRef<Text>>,
        path: &Path,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, UnitError>,
    ) -> T {
        match text {
            Some(text) => self.parse(text.as_ref(), path, parse).unwrap_or(default),
            None => default,
        }
    }

    /// A required key; a missing one is reported at its parent mapping.
    pub fn required<T>(
        &mut self,
        text: &Option<impl AsRef<Text>>,
        parent: &Location,
        path: &Path,
        example: &str,
        parse: impl FnOnce(&str) -> Result<T, UnitError>,
    ) -> Option<T> {
        match text {
            Some(text) => self.parse(text.as_ref(), path, parse),
            None => {
                self.missing(parent, path, example);
                None
            }
        }
    }

    pub fn missing(&mut self, parent: &Location, path: &Path, example: &str) {
        self.report(
            parent,
            path,
            "this required key is missing".to_owned(),
            Some(format!("add it, e.g. `{example}`")),
        );
    }

    /// A value with its `${NAME}` references expanded from the checker's environment, or
    /// `None` if one is unset: an error for `run`, a warning for `validate` (the value is
    /// then checked when the run expands it). Malformed references are reported where the
    /// value is read; they give `None` here.
    pub fn expand(&mut self, text: &str, spot: &Spot) -> Option<String> {
        let env = self.env;
        let mut unset: Vec<String> = Vec::new();
        for name in super::env::references(text).ok()? {
            if env(&name).is_none() && !unset.contains(&name) {
                unset.push(name);
            }
        }
        if unset.is_empty() {
            return super::env::expand_from(text, env).ok();
        }
        for name in unset {
            match self.unset {
                Unset::Error => self.report_spot(
                    spot,
                    format!("the environment variable {name} is not set"),
                    Some(
                        "export it before the run; credentials come only from the environment"
                            .to_owned(),
                    ),
                ),
                Unset::Warning => self.warn_spot(
                    spot,
                    format!(
                        "the environment variable {name} is not set here; `run` refuses the \
                         scenario while it is unset"
                    ),
                    Some(
                        "set it where the scenario runs (a CI secret, say); the value is \
                         checked then"
                            .to_owned(),
                    ),
                ),
            }
        }
        None
    }
}
