//! `target:` in a scenario file: its raw shape, its schema and its pure validation into a
//! [`Target`].
//!
//! The keys every target shares (`kind`, `url`, `allow_remote`, a checkout endpoint's
//! `headers`) are read here; every other key belongs to what the target turns out to be and
//! is validated by it: the embedded broker's `embedded/config.rs`, a networked broker's
//! `<broker>/config.rs` (through [`BrokerSettings`]). A key the named target does not take is
//! an error that says who takes it. The scenario composes this module; it knows no broker.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::settings::{OptionKeys, keys_of};
use super::target::target_of_url;
use super::target::{BrokerTarget, EmbeddedTarget, HttpTarget, Target};
use super::target_url::{check_expanded, is_http_scheme, parse_url};
use super::{BrokerKind, BrokerOptions};
use crate::config::check::{Checker, Path, Spot};
use crate::config::env;
use crate::config::tree::{Text, visit_scalars_as_text};
use crate::config::units::{did_you_mean, parse_bool, quoted};

/// `target: embedded`, `target: redis://127.0.0.1:6379`, or a mapping:
/// `target: { kind: embedded, partitions: 12 }`, `target: { url: "...", queue_type: quorum }`,
/// `target: { url: "https://...", headers: { Authorization: "Bearer ${TOKEN}" } }`.
#[derive(Debug)]
pub enum RawTarget {
    Kind(String),
    Map(Box<RawTargetMap>),
}

/// A `target:` mapping: the shared keys, and the rest for what the target names.
#[derive(Debug, Default)]
pub struct RawTargetMap {
    pub kind: Option<Text>,
    pub url: Option<Text>,
    pub allow_remote: Option<Text>,
    pub headers: Option<Spanned<BTreeMap<String, Text>>>,
    /// Every other key, in file order.
    pub options: OptionKeys,
}

/// A target block: `url` (or `kind`) names the target; the other keys are its own
/// (see each broker's `config.rs`).
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // a schema, never built
struct SharedKeys {
    /// The broker; optional when `url` is given (its scheme selects the broker).
    kind: Option<TargetName>,
    /// The broker's URL; credentials only as `${ENV}` references.
    url: Option<TargetUrl>,
    /// Allow a host outside loopback (default false).
    allow_remote: Option<bool>,
    /// Checkout endpoints only: header name to value.
    headers: Option<BTreeMap<String, String>>,
}

/// `target: embedded` or a broker kind on its loopback default port.
pub struct TargetName;

impl schemars::JsonSchema for TargetName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("TargetName")
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "enum": target_kinds() })
    }
}

/// A target URL: a broker's or a checkout endpoint's. The pattern lists the schemes the
/// broker folders declare.
pub struct TargetUrl;

impl TargetUrl {
    pub fn pattern() -> String {
        let schemes = BrokerKind::schemes()
            .map(|(s, ..)| s)
            .chain(["http", "https"])
            .map(|scheme| {
                // A scheme may hold `+`, `-` and `.` (`pulsar+ssl`): literal in a pattern.
                scheme.chars().fold(String::new(), |mut out, c| {
                    if !c.is_ascii_alphanumeric() {
                        out.push('\\');
                    }
                    out.push(c);
                    out
                })
            })
            .collect::<Vec<String>>();
        format!("^({})://.+$", schemes.join("|"))
    }
}

impl schemars::JsonSchema for TargetUrl {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("TargetUrl")
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A broker URL such as redis://127.0.0.1:6379, or a checkout endpoint's http(s):// URL.",
            "type": "string",
            "pattern": TargetUrl::pattern(),
        })
    }
}

/// Every word `target:` (or its `kind:`) accepts: `embedded` and each broker's name.
pub fn target_kinds() -> Vec<&'static str> {
    std::iter::once("embedded")
        .chain(BrokerKind::ALL.iter().map(|k| k.spec().name))
        .collect()
}

impl schemars::JsonSchema for RawTarget {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Target")
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Where the orders go: `embedded` (the in-process broker, the default), a broker kind on its loopback default port (`redis`), a broker URL (`redis://127.0.0.1:6379`), a checkout endpoint's URL (`http://127.0.0.1:8080/checkout`), or a block.",
            "anyOf": [
                generator.subschema_for::<TargetName>(),
                generator.subschema_for::<TargetUrl>(),
                generator.subschema_for::<RawTargetMap>(),
            ]
        })
    }
}

impl schemars::JsonSchema for RawTargetMap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("RawTargetMap")
    }

    /// The shared keys, then each owner's fragment (the embedded broker's, each broker's);
    /// a key two owners take (`partitions`) keeps the first description.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = <SharedKeys as schemars::JsonSchema>::json_schema(generator);
        let fragments = std::iter::once(
            <super::embedded::config::Keys as schemars::JsonSchema>::json_schema(generator),
        )
        .chain(super::key_schemas(generator));
        let mut merged = serde_json::Map::new();
        for fragment in std::iter::once(schema.clone()).chain(fragments) {
            let properties = fragment
                .as_object()
                .and_then(|o| o.get("properties"))
                .and_then(|p| p.as_object());
            for (key, value) in properties.into_iter().flatten() {
                merged.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        schema.insert("properties".to_owned(), merged.into());
        schema.insert("additionalProperties".to_owned(), false.into());
        schema.remove("required");
        schema
    }
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;

        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = RawTarget;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a target kind such as `embedded`, or a mapping with `kind:`")
            }

            visit_scalars_as_text!(RawTarget, RawTarget::Kind);

            /// The map access is still serde-saphyr's, so spans inside survive (and it
            /// refuses a repeated key itself).
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTarget, A::Error> {
                let mut raw = RawTargetMap::default();
                while let Some(key) = map.next_key::<Text>()? {
                    match key.value.as_str() {
                        "kind" => raw.kind = Some(map.next_value()?),
                        "url" => raw.url = Some(map.next_value()?),
                        "allow_remote" => raw.allow_remote = Some(map.next_value()?),
                        "headers" => raw.headers = Some(map.next_value()?),
                        _ => {
                            let value = map.next_value()?;
                            raw.options.0.push((key, value));
                        }
                    }
                }
                Ok(RawTarget::Map(Box::new(raw)))
            }
        }

        deserializer.deserialize_any(TargetVisitor)
    }
}

/// Where the target's values came from, for the checks that can run only once the whole
/// scenario is known (its faults, the environment).
#[derive(Debug, Default)]
pub struct TargetSpots {
    /// The target's URL; `None` while the target is the default or named by kind alone.
    pub url: Option<Spot>,
    /// Each header of a checkout endpoint, by name: where its value is.
    pub headers: Vec<(String, Spot)>,
}

/// The command line's say over the target.
#[derive(Debug, Default, Clone, Copy)]
pub struct TargetFlags<'a> {
    /// `--target URL`.
    pub target: Option<&'a str>,
    /// `--allow-remote`.
    pub allow_remote: bool,
}

/// What `target:` names, checked, with the flags applied: the target (the embedded broker
/// when there is none, or when it did not validate), whether it validated, and where its
/// values are.
pub fn validate(
    raw: Option<&Spanned<RawTarget>>,
    check: &mut Checker,
    path: &Path,
    flags: TargetFlags,
) -> (Target, bool, TargetSpots) {
    let before = check.problems.len();
    let mut spots = TargetSpots::default();
    let target = match raw {
        None => Target::Embedded(EmbeddedTarget::default()),
        Some(raw) => named(raw, check, path, &mut spots),
    };
    let target = apply_flags(target, check, flags, &mut spots);
    let valid = check.problems.len() == before;
    (target, valid, spots)
}

fn named(
    raw: &Spanned<RawTarget>,
    check: &mut Checker,
    path: &Path,
    spots: &mut TargetSpots,
) -> Target {
    match &raw.value {
        RawTarget::Kind(word) if word.contains("://") => {
            spots.url = Some(Spot::at(&raw.referenced, path.clone()));
            match target_of_url(word) {
                Ok(target) => target,
                Err(e) => {
                    check.report(&raw.referenced, path, e.message, e.hint);
                    Target::Embedded(EmbeddedTarget::default())
                }
            }
        }
        RawTarget::Kind(word) => match target_kind(check, word, &raw.referenced, path) {
            Some(kind) => Target::Broker(BrokerTarget::defaults(kind, kind.spec().default_url)),
            None => Target::Embedded(EmbeddedTarget::default()),
        },
        RawTarget::Map(map) => target_map(check, map, &raw.referenced, path, spots),
    }
}

/// A `target:` mapping: what its `url` (or `kind`) names, then that target's own keys.
fn target_map(
    check: &mut Checker,
    map: &RawTargetMap,
    at: &Location,
    path: &Path,
    spots: &mut TargetSpots,
) -> Target {
    let mut keys = OptionKeys(map.options.0.clone());
    let http_url = map.url.as_ref().filter(|url| {
        url.value
            .split_once("://")
            .is_some_and(|(scheme, _)| is_http_scheme(scheme))
    });
    if let Some(url) = http_url {
        let target = http_target_map(check, map, url, path, spots);
        not_its_own(check, keys, path, Owner::Http);
        return target;
    }
    if let Some(headers) = &map.headers {
        check.report(
            &headers.referenced,
            &path.key("headers"),
            "`headers` apply to an HTTP checkout endpoint, not a broker".to_owned(),
            Some(
                "remove them; a broker's credentials go in its URL as ${ENV} references".to_owned(),
            ),
        );
    }
    let kind_path = path.key("kind");
    let named = map
        .kind
        .as_ref()
        .map(|k| (k, target_kind(check, &k.value, &k.referenced, &kind_path)));
    if let Some(url) = &map.url {
        spots.url = Some(Spot::at(&url.referenced, path.key("url")));
    }
    let from_url = map.url.as_ref().and_then(|url| {
        check
            .parse(url, &path.key("url"), parse_url)
            .map(|kind| (kind, url.value.clone()))
    });
    let broker = match (named, from_url) {
        (None, None) if map.url.is_none() => {
            check.missing(at, &kind_path, "kind: embedded");
            None
        }
        (None, None) => None,
        (Some((_, None)), None) => None,
        (Some((text, Some(kind))), Some((url_kind, url))) => {
            if kind != url_kind {
                check.report(
                    &text.referenced,
                    &kind_path,
                    format!(
                        "kind {} does not match the url's scheme, which names {:?}",
                        quoted(&text.value),
                        url_kind
                    ),
                    Some("leave `kind` out: the url's scheme selects the broker".to_owned()),
                );
            }
            Some((url_kind, url))
        }
        (Some((_, Some(kind))), None) => Some((kind, kind.spec().default_url.to_owned())),
        (_, Some(from_url)) => Some(from_url),
    };
    let Some((kind, url)) = broker else {
        let embedded = super::embedded::config::validate(check, &mut keys, path);
        if let Some(value) = &map.allow_remote {
            keys.0.push((
                Text {
                    value: "allow_remote".to_owned(),
                    ..value.clone()
                },
                value.clone(),
            ));
        }
        not_its_own(check, keys, path, Owner::Embedded);
        return Target::Embedded(embedded);
    };
    let options = BrokerOptions::validate(kind, check, &mut keys, path);
    not_its_own(check, keys, path, Owner::Broker(kind));
    let allow_remote = check.or_default(
        &map.allow_remote,
        &path.key("allow_remote"),
        false,
        parse_bool,
    );
    Target::Broker(BrokerTarget {
        url,
        options,
        allow_remote,
        orders_to: None,
    })
}

/// `target: { url: "https://...", headers: {...}, allow_remote }`: a checkout endpoint.
fn http_target_map(
    check: &mut Checker,
    map: &RawTargetMap,
    url: &Text,
    path: &Path,
    spots: &mut TargetSpots,
) -> Target {
    if let Some(kind) = &map.kind {
        check.report(
            &kind.referenced,
            &path.key("kind"),
            format!(
                "kind {} does not apply: the url names an HTTP checkout endpoint",
                quoted(&kind.value)
            ),
            Some("leave `kind` out: the url's scheme selects the target".to_owned()),
        );
    }
    spots.url = Some(Spot::at(&url.referenced, path.key("url")));
    let Some(Target::Http(mut http)) = check.parse(url, &path.key("url"), target_of_url) else {
        return Target::Embedded(EmbeddedTarget::default());
    };
    if let Some(headers) = &map.headers {
        let headers_path = path.key("headers");
        // Header names are case-insensitive: `authorization` would overwrite
        // `Authorization` on the wire.
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (name, value) in &headers.value {
            let header_path = headers_path.key(name);
            if let Err(e) = super::http::headers::check_header_name(name) {
                check.report(&headers.referenced, &header_path, e.message, e.hint);
                continue;
            }
            if let Some(first) = seen.insert(name.to_ascii_lowercase(), name) {
                check.report(
                    &headers.referenced,
                    &header_path,
                    format!(
                        "header {} repeats {} (header names are case-insensitive)",
                        quoted(name),
                        quoted(first)
                    ),
                    Some("keep one of them".to_owned()),
                );
                continue;
            }
            if check
                .parse(value, &header_path, env::check_references)
                .is_some()
            {
                http.headers.push((name.clone(), value.value.clone()));
                spots
                    .headers
                    .push((name.clone(), Spot::at(&value.referenced, header_path)));
            }
        }
    }
    http.allow_remote = check.or_default(
        &map.allow_remote,
        &path.key("allow_remote"),
        false,
        parse_bool,
    );
    Target::Http(http)
}

/// What a target turned out to be, for the keys it does not take.
#[derive(Clone, Copy)]
enum Owner {
    Embedded,
    Broker(BrokerKind),
    Http,
}

/// Reports every key left over once the target took its own: whose key it is, or that it is
/// nobody's.
fn not_its_own(check: &mut Checker, keys: OptionKeys, path: &Path, owner: Owner) {
    if keys.0.is_empty() {
        return;
    }
    let embedded_keys = keys_of::<super::embedded::config::Keys>();
    let broker_keys: Vec<(BrokerKind, Vec<String>)> =
        BrokerKind::ALL.iter().map(|&k| (k, k.keys())).collect();
    for (key, value) in keys.0 {
        let name = key.value.as_str();
        let key_path = path.key(name);
        let brokers: Vec<&str> = broker_keys
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| k == name))
            .map(|(k, _)| k.spec().label)
            .collect();
        let embedded = embedded_keys.iter().any(|k| k == name);
        let (message, hint) = match owner {
            _ if brokers.is_empty() && !embedded && name != "allow_remote" => {
                let known = all_keys();
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                (
                    format!(
                        "unknown key {}; valid keys here are {}",
                        quoted(name),
                        known.join(", ")
                    ),
                    did_you_mean(name, &known).map(|s| format!("did you mean {s:?}?")),
                )
            }
            Owner::Embedded => (
                format!("`{name}` applies to networked brokers, not the embedded one"),
                Some("remove it, or give the target a `url`".to_owned()),
            ),
            Owner::Http => (
                format!("`{name}` applies to brokers, not to an HTTP checkout endpoint"),
                Some("remove it".to_owned()),
            ),
            Owner::Broker(_) if brokers.is_empty() => (
                format!(
                    "`{name}` applies to the embedded broker; a networked broker keeps its own"
                ),
                Some(format!("remove it and configure {name} on the broker")),
            ),
            Owner::Broker(kind) => (
                format!(
                    "`{name}` applies to {}, not {}",
                    brokers.join(" and "),
                    kind.spec().label
                ),
                Some("remove it, or point the target at a broker that takes it".to_owned()),
            ),
        };
        check.report(&value.referenced, &key_path, message, hint);
    }
}

/// Every key a target mapping takes, the shared ones first.
fn all_keys() -> Vec<String> {
    let mut keys = keys_of::<SharedKeys>();
    for key in keys_of::<super::embedded::config::Keys>()
        .into_iter()
        .chain(BrokerKind::ALL.iter().flat_map(|k| k.keys()))
    {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// A kind name: `None` (with the problem recorded) unless it names a broker; `embedded` is
/// `None` without a problem.
fn target_kind(check: &mut Checker, kind: &str, at: &Location, path: &Path) -> Option<BrokerKind> {
    if kind == "embedded" {
        return None;
    }
    if let Some(broker) = BrokerKind::of_name(kind) {
        return Some(broker);
    }
    let kinds = target_kinds();
    let (message, hint) = if is_http_scheme(kind) {
        (
            "an HTTP checkout endpoint is named by its URL".to_owned(),
            "write `target: \"http://127.0.0.1:8080/checkout\"`, or `url:` in a target block"
                .to_owned(),
        )
    } else {
        (
            format!(
                "{} is not a target kind; expected one of {}",
                quoted(kind),
                kinds.join(", ")
            ),
            did_you_mean(kind, &kinds).map_or(
                "use `target: embedded`, the in-process broker".to_owned(),
                |s| format!("did you mean {s:?}?"),
            ),
        )
    };
    check.report(at, path, message, Some(hint));
    None
}

/// Applies `--target` and `--allow-remote` to the file's target. The file's delivery
/// settings stay when only the address of the same broker kind changes, its headers when
/// one checkout endpoint replaces another.
fn apply_flags(
    file: Target,
    check: &mut Checker,
    flags: TargetFlags,
    spots: &mut TargetSpots,
) -> Target {
    let mut target = file;
    if let Some(url) = flags.target {
        let flag = Spot::flag("--target");
        match target_of_url(url) {
            Err(e) => check.report_spot(&flag, e.message, e.hint),
            Ok(given) => {
                spots.url = Some(flag);
                target = match (target, given) {
                    (Target::Broker(old), Target::Broker(new)) if old.kind() == new.kind() => {
                        Target::Broker(BrokerTarget {
                            url: new.url,
                            ..old
                        })
                    }
                    (Target::Http(old), Target::Http(new)) => Target::Http(HttpTarget {
                        url: new.url,
                        ..old
                    }),
                    (_, given) => {
                        spots.headers.clear();
                        given
                    }
                };
            }
        }
    }
    if flags.allow_remote {
        match &mut target {
            Target::Broker(b) => b.allow_remote = true,
            Target::Http(h) => h.allow_remote = true,
            Target::Embedded(_) => {}
        }
    }
    target
}

/// What connecting would refuse, checked now so that `validate` finds it too, with the
/// position: the URL as its client reads it (after `${NAME}` expansion) behind the loopback
/// guard, and header values.
pub fn check_connectable(target: &Target, spots: &TargetSpots, check: &mut Checker) {
    let url_spot = spots.url.clone().unwrap_or_else(|| Spot::flag("target"));
    match target {
        Target::Embedded(_) => {}
        Target::Broker(b) => check_url(check, &b.url, b.allow_remote, &url_spot),
        Target::Http(h) => {
            check_url(check, &h.url, h.allow_remote, &url_spot);
            for (name, value) in &h.headers {
                let Some((_, spot)) = spots.headers.iter().find(|(n, _)| n == name) else {
                    continue;
                };
                let Some(expanded) = check.expand(value, spot) else {
                    continue;
                };
                if let Err(mut e) = super::http::headers::check_header_value(&expanded) {
                    if &expanded != value {
                        e.message
                            .push_str(" (with its ${NAME} references expanded)");
                    }
                    check.report_spot(spot, e.message, e.hint);
                }
            }
        }
    }
}

/// A broker URL named outside `target:` (`observe.broker`), checked as connecting reads it.
pub fn check_broker_url(check: &mut Checker, b: &BrokerTarget, spot: &Spot) {
    check_url(check, &b.url, b.allow_remote, spot);
}

/// The target URL as connecting reads it: `${NAME}` expanded, then the one check of a target
/// URL (it parses, ports, the loopback guard).
fn check_url(check: &mut Checker, url: &str, allow_remote: bool, spot: &Spot) {
    let Some(expanded) = check.expand(url, spot) else {
        return;
    };
    let shown = super::redact_url(url);
    if let Err(mut e) = check_expanded(&expanded, &shown, allow_remote) {
        if expanded != url {
            e.message
                .push_str(" (with its ${NAME} references expanded)");
        }
        check.report_spot(spot, e.message, e.hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Text {
        Text {
            value: value.to_owned(),
            referenced: Location::UNKNOWN,
            defined: Location::UNKNOWN,
        }
    }

    /// The schema fragment of each broker and the keys its validation takes are the same
    /// list: every key of the fragment is taken, and nothing else is.
    #[test]
    fn each_broker_takes_exactly_the_keys_its_schema_lists() {
        let env = |_: &str| None;
        for &kind in BrokerKind::ALL {
            let listed = kind.keys();
            assert!(!listed.is_empty(), "{kind:?} lists no keys");
            let mut keys = OptionKeys(
                listed
                    .iter()
                    .map(|k| (text(k), text("1")))
                    .chain([(text("not_a_key"), text("1"))])
                    .collect(),
            );
            let mut check = Checker::new(&env, crate::config::check::Unset::Error);
            BrokerOptions::validate(kind, &mut check, &mut keys, &Path::root());
            let left: Vec<&str> = keys.0.iter().map(|(k, _)| k.value.as_str()).collect();
            assert_eq!(left, ["not_a_key"], "{kind:?} left keys of its own schema");
        }
        let mut keys = OptionKeys(
            keys_of::<super::super::embedded::config::Keys>()
                .iter()
                .map(|k| (text(k), text("1000")))
                .collect(),
        );
        let env = |_: &str| None;
        let mut check = Checker::new(&env, crate::config::check::Unset::Error);
        super::super::embedded::config::validate(&mut check, &mut keys, &Path::root());
        assert!(keys.0.is_empty(), "the embedded broker left {:?}", keys.0);
    }

    /// The URL pattern of the schema comes from the schemes the broker folders declare, and
    /// agrees with the parser on them.
    #[test]
    fn the_url_pattern_lists_every_scheme_the_parser_takes() {
        let schema = serde_json::json!({ "type": "string", "pattern": TargetUrl::pattern() });
        let validator = jsonschema::validator_for(&schema).unwrap();
        for &kind in BrokerKind::ALL {
            for (scheme, _) in kind.spec().schemes {
                let url = format!("{scheme}://127.0.0.1:1");
                assert!(validator.is_valid(&url.as_str().into()), "{url}");
                assert!(target_of_url(&url).is_ok(), "{url}");
            }
        }
        for url in ["ftp://127.0.0.1:1", "redis:/127.0.0.1"] {
            assert!(!validator.is_valid(&url.into()), "{url}");
            assert!(target_of_url(url).is_err(), "{url}");
        }
    }
}
