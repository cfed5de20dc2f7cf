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

/// Any YAML value, for the few places whose shape `validate.rs` checks itself.
#[derive(Debug)]
pub enum Node {
    /// A scalar's text (YAML 1.1 booleans arrive already read as `true`/`false`).
    Scalar(String),
    Map(Entries<Spanned<Node>>),
    List,
    Null,
}

impl Node {
    /// What this node is, for "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Node::Scalar(text) => format!("{text:?}"),
            Node::Map(_) => "a mapping".to_owned(),
            Node::List => "a list".to_owned(),
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

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_owned()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }

            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Node::List)
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
