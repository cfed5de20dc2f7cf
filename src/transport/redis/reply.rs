//! Reading Redis replies into plain Rust values.
//!
//! Every parser here is total: a reply of an unexpected shape yields `None` or an empty list,
//! never a panic, because the broker's answers are input like any other (STYLE.md: a
//! misbehaving broker is a finding, not a crash). Both RESP2 (flat arrays) and RESP3 (maps)
//! shapes are accepted.

use ::redis::Value;

/// A stream entry id, `ms-seq`, ordered like Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One entry of a stream; `fields` is empty when the entry was deleted.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// The bytes of a string reply.
pub(super) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(v)?).ok()
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// The elements of an array-like reply.
fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Attribute { data, .. } => items(data),
        _ => &[],
    }
}

/// Name/value pairs of a reply that is a map (RESP3) or a flat `k, v, k, v` array (RESP2).
pub(super) fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Attribute { data, .. } => pairs(data),
        other => items(other)
            .chunks_exact(2)
            .map(|kv| (&kv[0], &kv[1]))
            .collect(),
    }
}

/// The value named `name` in a map-like reply.
pub(super) fn get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    pairs(v)
        .into_iter()
        .find(|(k, _)| text(k) == Some(name))
        .map(|(_, v)| v)
}

/// One `[id, [field, value, ...]]` entry.
fn entry(v: &Value) -> Option<Entry> {
    let parts = items(v);
    let id = StreamId::parse(text(parts.first()?)?)?;
    let fields = parts
        .get(1)
        .map(|f| {
            pairs(f)
                .into_iter()
                .filter_map(|(k, v)| Some((bytes(k)?.to_vec(), bytes(v)?.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    Some(Entry { id, fields })
}

/// A list of entries (XRANGE, XCLAIM); entries that are not entries are skipped.
pub(super) fn entries(v: &Value) -> Vec<Entry> {
    items(v).iter().filter_map(entry).collect()
}

/// An XREADGROUP reply: entries per stream name. `Nil` (the BLOCK ran out) is empty.
pub(super) fn read(v: &Value) -> Vec<(String, Vec<Entry>)> {
    pairs_or_arrays(v)
        .into_iter()
        .filter_map(|(name, list)| Some((text(name)?.to_owned(), entries(list))))
        .collect()
}

/// XREAD-style replies are `[[name, entries], ...]` in RESP2 and a map in RESP3.
fn pairs_or_arrays(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Map(_) => pairs(v),
        other => items(other)
            .iter()
            .filter_map(|s| {
                let p = items(s);
                Some((p.first()?, p.get(1)?))
            })
            .collect(),
    }
}

/// The strings of an array reply (SCAN's keys).
pub(super) fn texts(v: &Value) -> Vec<String> {
    items(v)
        .iter()
        .filter_map(|k| text(k).map(str::to_owned))
        .collect()
}

/// A list of map-like records (XINFO GROUPS, XINFO CONSUMERS).
pub(super) fn records(v: &Value) -> &[Value] {
    items(v)
}

/// XPENDING (extended form) rows: `[id, consumer, idle ms, deliveries]`; the ids.
pub(super) fn pending_ids(v: &Value) -> Vec<StreamId> {
    items(v)
        .iter()
        .filter_map(|row| StreamId::parse(text(items(row).first()?)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn stream_ids_parse_and_order() {
        let a = StreamId::parse("5-10").unwrap();
        let b = StreamId::parse("6-0").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "5-10");
        assert_eq!(StreamId::parse("nonsense"), None);
        assert_eq!(StreamId::parse("1-x"), None);
    }

    #[test]
    fn xreadgroup_replies_parse_in_both_protocols() {
        let e = Value::Array(vec![
            bulk("1-1"),
            Value::Array(vec![bulk("payload"), bulk("x")]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("ns:t"),
            Value::Array(vec![e.clone()]),
        ])]);
        let resp3 = Value::Map(vec![(bulk("ns:t"), Value::Array(vec![e]))]);
        for reply in [resp2, resp3] {
            let got = read(&reply);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0, "ns:t");
            assert_eq!(got[0].1[0].field("payload"), Some(&b"x"[..]));
        }
        assert!(read(&Value::Nil).is_empty());
    }

    #[test]
    fn odd_replies_are_empty_not_panics() {
        assert!(entries(&Value::Int(3)).is_empty());
        assert!(read(&Value::Array(vec![Value::Nil, Value::Int(1)])).is_empty());
        assert!(pending_ids(&Value::Okay).is_empty());
        let deleted = Value::Array(vec![Value::Array(vec![bulk("1-0"), Value::Nil])]);
        assert!(entries(&deleted)[0].fields.is_empty());
    }
}
