//! `orders:` in a scenario file: its raw shape, its schema and its validation into the
//! model's [`Orders`]. Pure: the same text always gives the same result.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::check::{Checker, Path};
use crate::config::schema;
use crate::config::tree::{Entries, Scalar, Text};
use crate::config::units::{self, Share, choice, int_in};
use crate::orders::OrderFactory;
use crate::orders::model::{Catalog, Orders, Payload, SourceFile};
use crate::orders::template::{Part, Renderer, TemplateError, member_line, sample_wall_ns};

/// The fake orders: catalog, line items, declines and resubmits.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOrders {
    #[schemars(with = "Option<RawCatalog>")]
    pub catalog: Option<Spanned<RawCatalog>>,
    /// Line items per order: `1..5` or `3` (default `1..5`).
    pub items: Option<Scalar<schema::Items>>,
    /// Only `en_US` for now.
    pub locale: Option<Scalar<String>>,
    /// Share of cards the provider declines (business outcomes), e.g. `2%`.
    pub declines: Option<Scalar<schema::Share>>,
    /// Orders in your own event schema: a template file and optionally a key, headers and a
    /// JSON Schema (see docs/payload-templates.md).
    #[schemars(with = "Option<RawPayload>")]
    pub payload: Option<Spanned<RawPayload>>,
    /// Share of shoppers who click "buy" twice (same idempotency key), e.g. `0.5%`.
    pub resubmits: Option<Scalar<schema::Share>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    pub products: Option<Scalar<schema::Int<1, 1000000>>>,
    /// `zipf(1.1)` or `uniform`.
    pub popularity: Option<Scalar<schema::Popularity>>,
    /// Units in stock per product at the start.
    pub stock: Option<Scalar<schema::Int<0, { u32::MAX as u64 }>>>,
}

/// `payload: { template: order.json.j2, key: "{{ order.id }}", headers: {..}, schema: .. }`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPayload {
    /// The body template (minijinja), a path relative to the scenario file.
    #[schemars(required)]
    pub template: Option<Scalar<String>>,
    /// The message key, a template such as `"{{ order.id }}"` (default: the order id).
    pub key: Option<Scalar<String>>,
    /// Extra headers, each value a template.
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub headers: Option<Entries<Text>>,
    /// A JSON Schema file every rendered body must satisfy, relative to the scenario file.
    pub schema: Option<Scalar<String>>,
}

/// An HTTP field name (RFC 9110 `token`), which brokers' headers accept too.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// How many orders validation renders to try a payload template: enough to meet orders
/// with one item and with several, few enough to stay instant.
const SAMPLE_ORDERS: u64 = 16;

/// Checks `orders:`; every key has a default.
pub fn validate(raw: Option<&Spanned<RawOrders>>, check: &mut Checker, path: &Path) -> Orders {
    let empty = RawOrders {
        catalog: None,
        items: None,
        locale: None,
        declines: None,
        payload: None,
        resubmits: None,
    };
    let raw = raw.map_or(&empty, |r| &r.value);
    let catalog = catalog(raw.catalog.as_ref(), check, &path.key("catalog"));
    let (items_min, items_max) =
        check.or_default(&raw.items, &path.key("items"), (1, 5), units::parse_items);
    let locale = check.or_default(&raw.locale, &path.key("locale"), "en_US".to_owned(), |t| {
        choice(t, "a supported locale", &[("en_US", "en_US".to_owned())])
    });
    let declines = check.or_default(
        &raw.declines,
        &path.key("declines"),
        Share(0.02),
        units::parse_share,
    );
    let resubmits = check.or_default(
        &raw.resubmits,
        &path.key("resubmits"),
        Share(0.005),
        units::parse_share,
    );
    let mut orders = Orders {
        catalog,
        items_min,
        items_max,
        locale,
        declines,
        resubmits,
        payload: None,
    };
    if let Some(raw) = &raw.payload {
        orders.payload = payload(raw, &orders, check, &path.key("payload"));
    }
    orders
}

/// Reads the payload's files, compiles its templates and renders sample orders through them,
/// so that a template or schema mistake is found here, at its line and column.
fn payload(
    raw: &Spanned<RawPayload>,
    orders: &Orders,
    check: &mut Checker,
    path: &Path,
) -> Option<Payload> {
    let at = &raw.referenced;
    let raw = &raw.value;
    let read = |check: &mut Checker, text: &Text, path: &Path| match check.files.read(&text.value) {
        Ok(file) => Some(SourceFile {
            path: text.value.clone(),
            shown: file.shown,
            text: file.text,
        }),
        Err(message) => {
            check.report(&text.referenced, path, message, None);
            None
        }
    };
    let template = match &raw.template {
        Some(text) => read(check, text, &path.key("template")),
        None => {
            check.missing(at, &path.key("template"), "template: order-created.json.j2");
            None
        }
    };
    let schema = match &raw.schema {
        Some(text) => Some(read(check, text, &path.key("schema"))?),
        None => None,
    };
    let headers: Vec<(String, String)> = (raw.headers.iter().flat_map(|h| &h.0))
        .map(|(name, value)| (name.value.clone(), value.value.clone()))
        .collect();
    for (name, _) in raw.headers.iter().flat_map(|h| &h.0) {
        if !is_header_name(&name.value) {
            check.report(
                &name.referenced,
                &path.key("headers").key(&name.value),
                format!("{:?} is not a header name", name.value),
                Some("letters, digits and !#$%&'*+-.^_`|~, like `ce-type`".to_owned()),
            );
        }
    }
    let payload = Payload {
        template: template?,
        key: raw.key.as_ref().map(|k| k.value.clone()),
        headers,
        schema,
    };
    let spot_of = |part: Part| -> (Option<&Text>, Path) {
        match part {
            Part::Body => (None, path.key("template")),
            Part::Key => (raw.key.as_deref(), path.key("key")),
            Part::Header(i) => {
                let entry = raw.headers.as_ref().and_then(|h| h.0.get(i));
                let name = entry.map_or("", |(n, _)| n.value.as_str());
                (entry.map(|(_, v)| v), path.key("headers").key(name))
            }
        }
    };
    let outcome = Renderer::new(&payload).and_then(|renderer| {
        let factory = OrderFactory::new(1, orders);
        (0..SAMPLE_ORDERS).try_for_each(|id| {
            renderer
                .check(&factory.make(id, sample_wall_ns(id)))
                .map(drop)
        })
    });
    let Err(error) = outcome else {
        return Some(payload);
    };
    match &error {
        TemplateError::Template {
            part, line, column, ..
        } => match spot_of(*part) {
            (None, path) => check.report_in(
                &payload.template.shown,
                (*line, *column),
                &path,
                error.to_string(),
            ),
            (Some(text), path) => check.report(
                &text.referenced,
                &path,
                format!("{error} (template line {line}, column {column})"),
                None,
            ),
        },
        TemplateError::NotJson { .. } => check.report_in(
            &payload.template.shown,
            (0, 0),
            &path.key("template"),
            error.to_string(),
        ),
        TemplateError::Schema { pointer, .. } => check.report_in(
            &payload.template.shown,
            member_line(&payload.template.text, pointer).unwrap_or((0, 0)),
            &path.key("template"),
            error.to_string(),
        ),
        TemplateError::BadSchema { .. } => {
            let file = payload.schema.as_ref().map_or("", |s| s.shown.as_str());
            check.report_in(file, (0, 0), &path.key("schema"), error.to_string());
        }
    }
    None
}

fn catalog(raw: Option<&Spanned<RawCatalog>>, check: &mut Checker, path: &Path) -> Catalog {
    let empty = RawCatalog {
        products: None,
        popularity: None,
        stock: None,
    };
    let raw = raw.map_or(&empty, |r| &r.value);
    Catalog {
        products: check.or_default(&raw.products, &path.key("products"), 5000, |t| {
            int_in(t, 1, 1_000_000).map(|n| n as u32)
        }),
        zipf_exponent: check.or_default(
            &raw.popularity,
            &path.key("popularity"),
            1.1,
            units::parse_popularity,
        ),
        stock: check.or_default(&raw.stock, &path.key("stock"), 200, |t| {
            int_in(t, 0, u64::from(u32::MAX)).map(|n| n as u32)
        }),
    }
}
