//! `${NAME}` references: credentials and hosts come into a scenario only from the
//! environment, so the file, the model, the summary and every report hold the reference,
//! never the value. Expanded only where a value is checked or used.

use super::units::UnitError;

/// `${NAME}` references must be closed and name a variable (letters, digits, `_`).
pub fn check_references(text: &str) -> Result<(), UnitError> {
    references(text).map(|_| ())
}

/// The variables a text's `${NAME}` references name, in order (repeats kept).
pub fn references(text: &str) -> Result<Vec<String>, UnitError> {
    let mut names = Vec::new();
    expand_with(text, |name| {
        names.push(name.to_owned());
        Some(String::new())
    })?;
    Ok(names)
}

/// Replaces every `${NAME}` with what `lookup` gives; an unset variable is an error.
pub fn expand_from(
    text: &str,
    lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, UnitError> {
    expand_with(text, lookup)
}

/// Replaces every `${NAME}` with the environment variable's value.
pub fn expand_env(text: &str) -> Result<String, UnitError> {
    expand_with(text, |name| std::env::var(name).ok())
}

fn expand_with(
    text: &str,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, UnitError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(UnitError::new(
                format!("unclosed `${{` in {text:?}"),
                Some("write a reference as ${NAME}"),
            ));
        };
        let name = &after[..end];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(UnitError::new(
                format!("`${{{name}}}` is not an environment variable reference"),
                Some("write a reference as ${NAME}, with letters, digits and _"),
            ));
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(UnitError::new(
                    format!("the environment variable {name} is not set"),
                    Some("export it before the run; credentials come only from the environment"),
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
