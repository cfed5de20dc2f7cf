//! Every unknown key of a scenario file in one pass, before the structural step.
//!
//! serde stops at the first key a `deny_unknown_fields` shape does not know, so a file with
//! five misspelt keys would take five tries. This pass walks the whole YAML tree beside the
//! scenario's JSON Schema (derived from the same raw shapes, `schema.rs`) and reports each
//! key no mapping there accepts, at its position, with the valid keys and a did-you-mean.
//!
//! So that the problems of the values come in the same pass, each unknown entry written in
//! block style is then commented out (whole lines, so every other position stays where it
//! was) and the rest of the file goes through the usual steps. An unknown key inside a flow
//! mapping (`{ at: 1s, fualt: crash }`) or first after a list dash cannot be cut out by
//! lines: then the unknown keys are all this pass reports.

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::config::check::{Problem, pos};
use crate::config::tree::Node;
use crate::config::units::did_you_mean;

/// One key no mapping in the schema accepts.
pub struct Unknown {
    pub problem: Problem,
    /// The key's mapping's path and the key it most likely meant.
    pub meant: Option<String>,
    /// The file's lines `[first, last]` (0-based) the entry fills, when it is written in
    /// block style and can be commented out.
    lines: Option<(usize, usize)>,
}

/// The unknown keys of `text`, in file order; empty when the text is not YAML this pass can
/// read (the structural step reports that).
pub fn unknown(text: &str) -> Vec<Unknown> {
    let Ok(root) = serde_saphyr::from_str::<Spanned<Node>>(text) else {
        return Vec::new();
    };
    let schema = super::schema::value();
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let mut walk = Walk {
        defs: &defs,
        lines: text.lines().collect(),
        found: Vec::new(),
    };
    walk.node(&root.value, &schema, "");
    walk.found
}

/// `text` with the entries of `unknown` commented out, when every one of them can be.
pub fn without(text: &str, unknown: &[Unknown]) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for u in unknown {
        let (first, last) = u.lines?;
        for line in &mut lines[first..=last] {
            line.insert(0, '#');
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Some(out)
}

struct Walk<'a> {
    defs: &'a Value,
    lines: Vec<&'a str>,
    found: Vec<Unknown>,
}

impl<'a> Walk<'a> {
    fn node(&mut self, node: &Node, schema: &'a Value, path: &str) {
        match node {
            Node::Map(entries) => {
                let objects = self.variants(schema, "object");
                if objects.is_empty() {
                    return;
                }
                let known: Vec<&str> = objects
                    .iter()
                    .filter_map(|o| o.get("properties")?.as_object())
                    .flat_map(|p| p.keys().map(String::as_str))
                    .collect();
                let open = objects
                    .iter()
                    .find_map(|o| o.get("additionalProperties").filter(|a| a.is_object()));
                let closed = open.is_none()
                    && objects
                        .iter()
                        .all(|o| o.get("additionalProperties") == Some(&Value::Bool(false)));
                for (key, value) in &entries.0 {
                    let child = join(path, &key.value);
                    let property = objects
                        .iter()
                        .find_map(|o| o.get("properties")?.get(&key.value));
                    match property.or(open) {
                        Some(s) => self.node(&value.value, s, &child),
                        None if closed => self.report(path, key, &known),
                        None => {}
                    }
                }
            }
            Node::List(items) => {
                let Some(each) = self
                    .variants(schema, "array")
                    .into_iter()
                    .find_map(|a| a.get("items"))
                else {
                    return;
                };
                for (i, item) in items.iter().enumerate() {
                    self.node(&item.value, each, &format!("{path}[{i}]"));
                }
            }
            Node::Scalar(_) | Node::Null => {}
        }
    }

    /// The schemas of `kind` (`object`, `array`) that `schema` allows, through `$ref`,
    /// `anyOf`, `oneOf` and `allOf`.
    fn variants(&self, schema: &'a Value, kind: &str) -> Vec<&'a Value> {
        let mut out = Vec::new();
        collect(self.defs, schema, kind, &mut out, 0);
        out
    }

    fn report(&mut self, path: &str, key: &crate::config::tree::Text, known: &[&str]) {
        let (line, column) = pos(&key.defined);
        let mut valid = known.to_vec();
        valid.sort_unstable();
        let (message, hint) = super::error::unknown_key(&key.value, &valid, path == "services");
        self.found.push(Unknown {
            problem: Problem {
                line,
                column,
                path: path.to_owned(),
                message,
                hint,
                file: None,
            },
            meant: did_you_mean(&key.value, known).map(|m| join(path, m)),
            lines: self.block_lines(line as usize, column as usize),
        });
    }

    /// The lines of a block-style entry whose key is at `line`:`column` (1-based): its own
    /// and every following one indented deeper, or blank.
    fn block_lines(&self, line: usize, column: usize) -> Option<(usize, usize)> {
        let first = line.checked_sub(1)?;
        let text = self.lines.get(first)?;
        let indent = column.checked_sub(1)?;
        // Only spaces before the key: not inside `{ }` or after a list's dash.
        if text.chars().take(indent).any(|c| c != ' ') || text.chars().count() <= indent {
            return None;
        }
        let mut last = first;
        for (i, l) in self.lines.iter().enumerate().skip(first + 1) {
            let trimmed = l.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if l.len() - trimmed.len() <= indent {
                break;
            }
            last = i;
        }
        Some((first, last))
    }
}

fn collect<'a>(
    defs: &'a Value,
    schema: &'a Value,
    kind: &str,
    out: &mut Vec<&'a Value>,
    depth: u8,
) {
    if depth > 16 {
        return;
    }
    if let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        if let Some(def) = defs.get(name) {
            collect(defs, def, kind, out, depth + 1);
        }
        return;
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        for s in schema
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect(defs, s, kind, out, depth + 1);
        }
    }
    let is = |t: &Value| t.as_str() == Some(kind);
    let typed = match schema.get("type") {
        Some(Value::Array(types)) => types.iter().any(is),
        Some(t) => is(t),
        None => false,
    };
    let shaped = match kind {
        "object" => {
            schema.get("properties").is_some() || schema.get("additionalProperties").is_some()
        }
        _ => schema.get("items").is_some(),
    };
    if typed || shaped {
        out.push(schema);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
