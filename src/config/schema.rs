//! The JSON Schema of each unit, for editors: a component's raw config names the unit of a
//! leaf (`Option<Scalar<schema::Duration>>`, [`crate::config::tree::Scalar`]) and the scenario schema is derived
//! from the raw types, so there is no second, hand-kept description of the file.
//!
//! A pattern here is what an editor can check without running doorbuster: the shape of the
//! text the parser in `units.rs` reads. The parser stays the authority (ranges, limits and
//! every message); the tests below hold each pattern to its parser on the same samples.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Declares a unit's schema: a string of the given pattern, with a description.
macro_rules! unit {
    ($(#[$doc:meta])* $name:ident, $pattern:expr, $description:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl $name {
            pub const PATTERN: &'static str = $pattern;
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $description,
                })
            }
        }
    };
}

unit!(
    /// `90s`, `2m`, `1m30s`, `250ms` (`units::parse_duration`).
    Duration,
    r"^\s*([0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)\s*)+$",
    "A duration such as 90s, 2m, 1m30s or 250ms."
);
unit!(
    /// `200/s`, `30000/m`, `100/h` (`units::parse_rate`).
    Rate,
    r"^\s*[0-9]+(\.[0-9]+)?\s*/\s*(s|m|h)\s*$",
    "A rate such as 200/s, 30000/m or 100/h."
);
unit!(
    /// `2.5%` (`units::parse_share`).
    Share,
    r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$",
    "A share such as 2.5%."
);
unit!(
    /// `5ms`, `5ms..20ms`, `normal(10ms, 2ms)`, `lognormal(120ms, 0.4)`
    /// (`units::parse_latency`).
    Latency,
    r"^\s*(\S+(\s*\.\.\s*\S+)?|normal\(.*\)|lognormal\(.*\))\s*$",
    "5ms, 5ms..20ms, normal(10ms, 2ms) or lognormal(120ms, 0.4)."
);
unit!(
    /// `">= 99.5%"` or `off` (`units::threshold_or_off`).
    Threshold,
    r"^\s*((>=|<=|>|<)\s*)?[0-9]+(\.[0-9]+)?\s*%\s*$|^off$",
    "A threshold such as \">= 99.5%\", or off."
);
unit!(
    /// `"< 3s"`, `"<= 250ms"` or a bare duration (`units::parse_latency_bound`).
    Bound,
    r"^\s*(<=|<)?\s*[0-9].*$",
    "A bound such as \"< 3s\" or \"<= 250ms\"; a bare duration means <=."
);
unit!(
    /// `1..5` or `3` (`units::parse_items`).
    Items,
    r"^\s*[0-9]+(\s*\.\.\s*[0-9]+)?\s*$",
    "Line items per order: 1..5 or 3."
);
unit!(
    /// `zipf(1.1)` or `uniform` (`units::parse_popularity`).
    Popularity,
    r"^\s*(uniform|zipf\(\s*[0-9]+(\.[0-9]+)?\s*\))\s*$",
    "zipf(1.1) or uniform."
);
unit!(
    /// A loopback address and port (`units::parse_listen`).
    ListenAddr,
    r"^\s*(127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\]):[0-9]{1,5}\s*$",
    "A loopback address and port such as 127.0.0.1:12111."
);
unit!(
    /// Where a value is in a tapped event (`observe::config::parse_locator`).
    Locator,
    r"^(key|header:\s*\S.*|/([^~]|~[01])*)$",
    "A JSON pointer into the body (/orderId), a header (header:x-order-id) or key."
);
unit!(
    /// A scenario name (`units::parse_name`).
    Name,
    r"^[a-z0-9-]{1,64}$",
    "Lowercase letters, digits and dashes, e.g. black-friday."
);

/// Declares the schema of one of a closed set of words, listed by the slice the validator
/// reads them from.
#[macro_export]
macro_rules! words_schema {
    ($(#[$doc:meta])* $name:ident, $words:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let words: &[&str] = &$words;
                schemars::json_schema!({ "type": "string", "enum": words })
            }
        }
    };
}

/// A whole number from `MIN` to `MAX` (`units::int_in`).
pub struct Int<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> JsonSchema for Int<MIN, MAX> {
    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("Int_{MIN}_{MAX}"))
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        if MAX == u64::MAX {
            json_schema!({ "type": "integer", "minimum": MIN })
        } else {
            json_schema!({ "type": "integer", "minimum": MIN, "maximum": MAX })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::units;
    use super::*;

    /// Whether a JSON Schema validator (as an editor runs it) accepts `text` for `pattern`.
    fn matches(pattern: &str, text: &str) -> bool {
        let schema = serde_json::json!({ "type": "string", "pattern": pattern });
        jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&serde_json::json!(text))
    }

    /// Each pattern accepts what its parser reads and refuses text its parser refuses for
    /// its shape (a parser may still refuse a well-shaped value for its range).
    #[test]
    fn every_pattern_agrees_with_its_parser() {
        type Parse = fn(&str) -> bool;
        let cases: [(&str, Parse, &[&str], &[&str]); 9] = [
            (
                Duration::PATTERN,
                |t| units::parse_duration(t).is_ok(),
                &["90s", "2m", "1m30s", "250ms", "1.5h", " 10 s "],
                &["90", "-5s", "ten seconds", "", "5 parsecs"],
            ),
            (
                Rate::PATTERN,
                |t| units::parse_rate(t).is_ok(),
                &["200/s", "30000/m", "100/h", "0.5/s"],
                &["200", "-5/s", "5/d", "fast"],
            ),
            (
                Share::PATTERN,
                |t| units::parse_share(t).is_ok(),
                &["2.5%", "0%", "100%"],
                &["2.5", "-1%", "half"],
            ),
            (
                Latency::PATTERN,
                |t| units::parse_latency(t).is_ok(),
                &[
                    "5ms",
                    "5ms..20ms",
                    "normal(10ms, 2ms)",
                    "lognormal(120ms, 0.4)",
                ],
                &[""],
            ),
            (
                Threshold::PATTERN,
                |t| units::threshold_or_off(t).is_ok(),
                &[">= 99.5%", "99%", "< 1%", "off"],
                &["99.5", "at least 99%", ">= 99.5"],
            ),
            (
                Bound::PATTERN,
                |t| units::parse_latency_bound(t).is_ok(),
                &["< 3s", "<= 250ms", "3s"],
                &["> 3s", "fast"],
            ),
            (
                Items::PATTERN,
                |t| units::parse_items(t).is_ok(),
                &["1..5", "3", " 2 .. 4 "],
                &["1-5", "a few", "-1"],
            ),
            (
                Popularity::PATTERN,
                |t| units::parse_popularity(t).is_ok(),
                &["zipf(1.1)", "uniform", "zipf( 2 )"],
                &["zipf", "normal", "zipf(-1)"],
            ),
            (
                Locator::PATTERN,
                |t| crate::observe::config::parse_locator(t).is_ok(),
                &["key", "header:x-order-id", "/orderId", "/a~1b/0", "/"],
                &["orderId", "header:", "/a~2", "Key", ""],
            ),
        ];
        for (pattern, parses, good, bad) in cases {
            for text in good {
                assert!(parses(text), "the parser refuses {text:?}");
                assert!(matches(pattern, text), "{pattern} refuses {text:?}");
            }
            for text in bad {
                assert!(!parses(text), "the parser reads {text:?}");
                assert!(!matches(pattern, text), "{pattern} accepts {text:?}");
            }
        }
        for name in ["black-friday", "a", "x2"] {
            assert!(units::parse_name(name).is_ok() && matches(Name::PATTERN, name));
        }
        for name in ["Black Friday", "", "a_b", &"a".repeat(65)] {
            assert!(units::parse_name(name).is_err() && !matches(Name::PATTERN, name));
        }
    }
}
