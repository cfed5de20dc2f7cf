//! Scenario errors: every problem found in one file, each with file, line, column, field
//! path, what was expected, and a hint.
//!
//! Both steps of the pipeline end here: a structural error from serde-saphyr (`raw.rs`) is
//! translated into one `Problem` with a readable message, and `validate.rs` returns all its
//! semantic problems at once. Nothing here reads files or parses units; the binary decides
//! how to print (plain text via `Display`, or a miette report via [`ScenarioError::to_report`]).

use std::fmt;

use super::raw::{PathSegment, RawError};
pub use crate::config::check::Problem;
use crate::config::check::push_key;
pub(crate) use crate::config::units::did_you_mean;

/// A scenario that could not be loaded, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Rendered { origin: &self.origin, problems: &self.problems })]
pub struct ScenarioError {
    /// The file name used in messages (the path as given, or the bundled name).
    pub origin: String,
    /// In file order; never empty.
    pub problems: Vec<Problem>,
    /// What could not be checked (a `${NAME}` that `validate` finds unset), in file order;
    /// not part of `Display`, which is the problems alone.
    pub warnings: Vec<Problem>,
}

struct Rendered<'a> {
    origin: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            problem.render(self.origin, f)?;
        }
        Ok(())
    }
}

impl ScenarioError {
    pub fn new(origin: &str, problems: Vec<Problem>) -> ScenarioError {
        ScenarioError {
            origin: origin.to_owned(),
            problems,
            warnings: Vec::new(),
        }
    }

    /// A problem with the file as a whole (unreadable, empty, unknown bundled name).
    pub fn whole_file(origin: &str, message: String, hint: Option<String>) -> ScenarioError {
        let problem = Problem {
            line: 0,
            column: 0,
            path: String::new(),
            message,
            hint,
            file: None,
        };
        ScenarioError::new(origin, vec![problem])
    }

    /// A miette report that underlines every problem in `text` (the scenario's source).
    /// For terminals; `Display` stays the stable, snapshot-tested form.
    pub fn to_report(&self, text: &str) -> miette::Report {
        let labels = (self.problems.iter())
            .filter(|p| p.line > 0 && p.file.is_none())
            .map(|p| {
                let offset = byte_offset(text, p.line, p.column);
                let label = match &p.hint {
                    Some(hint) => format!("{}: {} ({hint})", p.path, p.message),
                    None => format!("{}: {}", p.path, p.message),
                };
                miette::LabeledSpan::at(offset..offset + token_len(&text[offset..]), label)
            });
        let count = self.problems.len();
        let diagnostic = miette::MietteDiagnostic::new(format!(
            "{} has {count} problem{}",
            self.origin,
            if count == 1 { "" } else { "s" }
        ))
        .with_labels(labels.collect::<Vec<_>>());
        let report = miette::Report::new(diagnostic);
        report.with_source_code(miette::NamedSource::new(&self.origin, text.to_owned()))
    }
}

/// The byte offset of a 1-based line and character column, clamped to the text.
fn byte_offset(text: &str, line: u32, column: u32) -> usize {
    let Some(line_start) = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .try_fold(0usize, |acc, len| acc.checked_add(len))
    else {
        return 0;
    };
    let line_start = line_start.min(text.len());
    let rest = &text[line_start..];
    let within = rest
        .char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map_or(rest.len(), |(i, _)| i);
    line_start + within
}

/// The length of the token starting a slice: up to the end of the line, a comma or a brace.
fn token_len(rest: &str) -> usize {
    rest.find(['\n', ',', '}', ']', '#'])
        .unwrap_or(rest.len())
        .max(rest.chars().next().map_or(0, char::len_utf8))
}

/// Renders a field path: `load.phases[2].rate`, with keys that are not plain words quoted
/// (`checks.latency["order.created -> email.sent"].p99`).
pub(crate) fn join_path(segments: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
            PathSegment::Key(key) => push_key(&mut out, key),
        }
    }
    out
}

/// Translates serde-saphyr's structural error into one problem. Its messages are written
/// for developers ("invalid type: map, expected struct RawLoad"); these say what the file
/// needs instead, with the path serde_path_to_error recorded.
pub(crate) fn from_raw_error(raw: &RawError, text: &str) -> Problem {
    use serde_saphyr::Error as E;

    let error = unwrap_error(&raw.error);
    let (line, column) = error
        .location()
        .map(|l| (clamp(l.line()), clamp(l.column())))
        .unwrap_or((0, 0));
    let mut segments = raw.path.clone();
    let (message, hint) = match error {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            // The recorded path ends at the unknown key itself; point at its mapping.
            if segments.last() == Some(&PathSegment::Key(field.clone())) {
                segments.pop();
            }
            let services = segments.last() == Some(&PathSegment::Key("services".to_owned()));
            unknown_key(field, expected, services)
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key
                .as_deref()
                .map_or("a key".to_owned(), |k| format!("{k:?}"));
            (
                format!("{key} appears twice in the same mapping"),
                Some("keep one of them; YAML does not allow a key to repeat".to_owned()),
            )
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            format!(
                "expected {}, found {}",
                humanize_expected(expected),
                humanize_found(unexpected)
            ),
            example_for(&segments),
        ),
        E::Unexpected { expected, .. } => {
            let wanted = match *expected {
                "sequence start" => "a list".to_owned(),
                "mapping start" => "a mapping of keys".to_owned(),
                other => humanize_expected(other),
            };
            let found = found_at(text, line, column);
            let message = match found {
                Some(found) => format!("expected {wanted}, found {found}"),
                None => format!("expected {wanted}"),
            };
            let hint = if segments.is_empty() && *expected == "mapping start" {
                Some(
                    "a scenario is a mapping that starts with `name:` and `load:`; \
                     `doorbuster init NAME` writes one"
                        .to_owned(),
                )
            } else {
                example_for(&segments)
            };
            (message, hint)
        }
        E::Eof { .. } => ("the file ends in the middle of a value".to_owned(), None),
        E::MultipleDocuments { .. } => (
            "a scenario file holds one YAML document, but this one has a second `---`".to_owned(),
            Some("put each scenario in its own file".to_owned()),
        ),
        E::ExternalMessage { msg, .. } => syntax_problem(msg, text, line),
        other => (
            serde_saphyr::MessageFormatter::format_message(
                &serde_saphyr::UserMessageFormatter,
                other,
            )
            .into_owned(),
            None,
        ),
    };
    Problem {
        line,
        column,
        path: join_path(&segments),
        message,
        hint,
        file: None,
    }
}

/// Alias and snippet wrappers carry the error that matters inside.
fn unwrap_error(error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match error {
        serde_saphyr::Error::WithSnippet { error, .. } => unwrap_error(error),
        serde_saphyr::Error::AliasError { error, .. } => unwrap_error(error),
        other => other,
    }
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// "unknown key ...; valid keys here are ..." with a did-you-mean, or the hint for a comma
/// inside `{ }`; `services` names the mapping of services.
pub(super) fn unknown_key(
    field: &str,
    expected: &[&str],
    services: bool,
) -> (String, Option<String>) {
    let what = if services { "service" } else { "key" };
    let message = format!(
        "unknown {what} {field:?}; valid {what}s here are {}",
        expected.join(", ")
    );
    let hint = did_you_mean(field, expected)
        .map(|s| format!("did you mean {s:?}?"))
        .or_else(|| {
            // `{ add: lognormal(400ms, 0.3) }`: the comma ended the value and started a key.
            (field.ends_with(')') || field.starts_with(|c: char| c.is_ascii_digit())).then(|| {
                "inside `{ }` a comma separates keys: quote a value that contains one, \
                 e.g. add: \"lognormal(400ms, 0.3)\""
                    .to_owned()
            })
        });
    (message, hint)
}

fn humanize_expected(expected: &str) -> String {
    if expected.starts_with("struct ") || expected == "a mapping" {
        "a mapping of keys".to_owned()
    } else if expected == "a sequence" {
        "a list".to_owned()
    } else if expected == "a string" || expected == "string scalar" {
        "a single value".to_owned()
    } else {
        expected.to_owned()
    }
}

fn humanize_found(unexpected: &str) -> String {
    match unexpected {
        "map" => "a mapping".to_owned(),
        "sequence" => "a list".to_owned(),
        other => other.to_owned(),
    }
}

/// An example for the field a structural error is about, when one helps.
fn example_for(segments: &[PathSegment]) -> Option<String> {
    let last = segments.iter().rev().find_map(|s| match s {
        PathSegment::Key(k) => Some(k.as_str()),
        PathSegment::Index(_) => None,
    })?;
    let example = match last {
        "phases" => {
            "phases:\n      - { ramp: 30s, from: 50/s, to: 500/s }\n      - { hold: 40s, rate: 500/s }"
        }
        "latency" if segments.len() == 2 => {
            r#"latency: { order.created -> order.fulfilled: { p99: "< 3s" } }"#
        }
        "target" => "target: embedded",
        "catalog" => "catalog: { products: 5000, popularity: zipf(1.1), stock: 200 }",
        _ => return None,
    };
    Some(format!("write it like\n    {example}"))
}

/// What the source holds at a position, for "found ..." in a message: the kind of a
/// collection, or the scalar as written.
fn found_at(text: &str, line: u32, column: u32) -> Option<String> {
    if line == 0 {
        return None;
    }
    let rest = &text[byte_offset(text, line, column)..];
    let token = rest[..token_len(rest)].trim();
    let found = if token.starts_with('[') || token.starts_with("- ") || token == "-" {
        "a list".to_owned()
    } else if token.starts_with('{') || token.contains(": ") || token.ends_with(':') {
        "a mapping".to_owned()
    } else if token.starts_with(['"', '\'']) {
        token.to_owned()
    } else if token.is_empty() {
        return None;
    } else {
        format!("{token:?}")
    };
    Some(found)
}

/// A YAML syntax error from the parser, with a hint for the usual causes.
fn syntax_problem(msg: &str, text: &str, line: u32) -> (String, Option<String>) {
    let source_line = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or("");
    let indent: String = source_line
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    let hint = if msg.contains("tab") || indent.contains('\t') {
        "YAML indents with spaces only; replace the tab at the start of this line with spaces"
    } else if msg.contains("did not find expected")
        || msg.contains("mapping values are not allowed")
        || msg.contains("indentation")
    {
        "check the indentation: keys of one mapping, and the `- ` of one list, must start in the same column"
    } else if msg.contains("unclosed") || msg.contains("flow") {
        "every `{` and `[` needs its closing `}` or `]`"
    } else {
        "check the YAML syntax on this line and the one above"
    };
    (
        format!("this is not valid YAML: {msg}"),
        Some(hint.to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_renders_in_the_documented_shape() {
        // The exact one-line shape scripts and people rely on, with the hint below.
        let p = Problem {
            line: 14,
            column: 11,
            path: "load.phases[2].rate".to_owned(),
            message: r#""-5/s" must be positive"#.to_owned(),
            hint: Some(r#"write a rate like "200/s""#.to_owned()),
            file: None,
        };
        let e = ScenarioError::new("black-friday.yaml", vec![p.clone(), p]);
        let expected = "black-friday.yaml:14:11: load.phases[2].rate: \"-5/s\" must be positive\n  hint: write a rate like \"200/s\"";
        assert_eq!(e.to_string(), format!("{expected}\n{expected}"));
    }

    #[test]
    fn whole_file_problems_have_no_position() {
        // An unreadable file has no line to point at, so none is printed.
        let e = ScenarioError::whole_file("x.yaml", "cannot read it".to_owned(), None);
        assert_eq!(e.to_string(), "x.yaml: cannot read it");
    }

    #[test]
    fn paths_quote_keys_that_are_not_words() {
        // Stage labels contain spaces and dots, so they are quoted; percentiles are not.
        let segments = [
            PathSegment::Key("checks".into()),
            PathSegment::Key("latency".into()),
            PathSegment::Key("order.created".into()),
            PathSegment::Key("p99.9".into()),
        ];
        assert_eq!(
            join_path(&segments),
            r#"checks.latency["order.created"].p99.9"#
        );
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        // A typo gets a suggestion; an unrelated word does not.
        let services = ["payment", "inventory", "email", "warehouse", "analytics"];
        assert_eq!(did_you_mean("paymnt", &services), Some("payment"));
        assert_eq!(did_you_mean("shipping", &services), None);
        assert_eq!(
            did_you_mean("poison", &["poisson", "uniform"]),
            Some("poisson")
        );
    }

    #[test]
    fn offsets_follow_lines_and_characters() {
        // Columns count characters, so a multi-byte character before the value is one column.
        let text = "a: 1\nbé: x\n";
        assert_eq!(&text[byte_offset(text, 2, 5)..], "x\n");
        assert_eq!(byte_offset(text, 9, 9), text.len());
    }
}
