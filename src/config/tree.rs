//! The shapes a scenario file is read into before validation: every leaf kept as its text
//! with its position ([`Text`]), free-form mappings in file order ([`Entries`]) and any value ([`Node`]) for the few places
//! whose shape is checked by hand.
//!
//! Spans survive only on plain structs, lists and maps: serde's buffering for
//! `#[serde(tag)]`, untagged and flatten drops them, so no component's raw config uses those.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// A leaf value: the scalar's text as written (unquoted), with where it was written.
/// Reading `yes`, `5` or `1.0` as text keeps the user's spelling for messages and lets
/// validation refuse YAML 1.1 booleans instead of silently accepting them.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub value: String,
    /// Where the value was used (an alias's position, for a value reached through one).
    pub referenced: Location,
    /// Where the value was written.
    pub defined: Location,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Spanned::<String>::deserialize(deserializer).map(Text::from)
    }
}

impl From<Spanned<String>> for Text {
    fn from(s: Spanned<String>) -> Text {
        Text {
            value: s.value,
            referenced: s.referenced,
            defined: s.defined,
        }
    }
}

impl AsRef<Text> for Text {
    fn as_ref(&self) -> &Text {
        self
    }
}

/// A leaf whose schema is `S`'s: a raw config field declares `Option<Scalar<schema::Duration>>`,
/// the scenario schema shows a duration there, and validation still reads the located
/// [`Text`] (through `AsRef` and `Deref`), so that it can report the user's own spelling.
pub struct Scalar<S> {
    text: Text,
    schema: PhantomData<fn() -> S>,
}

impl<S> Scalar<S> {
    pub fn new(text: Text) -> Scalar<S> {
        Scalar {
            text,
            schema: PhantomData,
        }
    }
}

impl<S> fmt::Debug for Scalar<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.text.fmt(f)
    }
}

impl<'de, S> Deserialize<'de> for Scalar<S> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Text::deserialize(deserializer).map(Scalar::new)
    }
}

impl<S> std::ops::Deref for Scalar<S> {
    type Target = Text;

    fn deref(&self) -> &Text {
        &self.text
    }
}

impl<S> AsRef<Text> for Scalar<S> {
    fn as_ref(&self) -> &Text {
        &self.text
    }
}

/// Exactly `S`'s schema, so the derived scenario schema is what `#[schemars(with = "S")]`
/// would give.
impl<S: schemars::JsonSchema> schemars::JsonSchema for Scalar<S> {
    fn inline_schema() -> bool {
        S::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        S::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        S::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        S::json_schema(generator)
    }
}

/// A mapping with free-form keys, kept in file order with each key's position, so that an
/// unknown stage or percentile points at the key itself. Duplicate keys are already refused
/// by serde-saphyr.
#[derive(Debug)]
pub struct Entries<V>(pub Vec<(Text, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// The `visit_*` methods of a [`Visitor`] that reads any YAML scalar (a string, a boolean,
/// a number) as its text and wraps it with `$wrap`: the one rule for "a scalar written
/// anywhere a word was expected", shared by [`Node`] and `target:`.
macro_rules! visit_scalars_as_text {
    ($value:ty, $wrap:expr) => {
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$value, E> {
            Ok($wrap(v.to_owned()))
        }

        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<$value, E> {
            Ok($wrap(v.to_string()))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$value, E> {
            Ok($wrap(v.to_string()))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$value, E> {
            Ok($wrap(v.to_string()))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$value, E> {
            Ok($wrap(v.to_string()))
        }
    };
}
pub(crate) use visit_scalars_as_text;

/// Any YAML value, for the few places whose shape `validate.rs` checks itself.
#[derive(Debug)]
pub enum Node {
    /// A scalar's text (YAML 1.1 booleans arrive already read as `true`/`false`).
    Scalar(String),
    Map(Entries<Spanned<Node>>),
    List(Vec<Spanned<Node>>),
    Null,
}

impl Node {
    /// What this node is, for "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Node::Scalar(text) => format!("{text:?}"),
            Node::Map(_) => "a mapping".to_owned(),
            Node::List(_) => "a list".to_owned(),
            Node::Null => "nothing".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }

            visit_scalars_as_text!(Node, Node::Scalar);

            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }

            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::List(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(Entries(entries)))
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}
