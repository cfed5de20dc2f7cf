//! Orders in the user's own event schema (`orders.payload`): a minijinja template over the
//! seeded order renders each order's body, and optionally its message key and extra headers;
//! an optional JSON Schema holds every rendered body to the user's contract.
//!
//! A template sees one variable, `order` ([`OrderContext`]; docs/payload-templates.md lists
//! every field). Money is there twice: integer cents (`total_cents`) and decimal text
//! (`total`, `"122.43"`), which renders as a JSON number where it is written bare and as a
//! string where it is quoted. Both forms come from the same cents, so line totals are unit
//! price times quantity and the order total is the items plus tax and shipping, whichever
//! form the schema wants. Undefined names are errors, never empty text: a misspelled field
//! fails validation instead of sending orders without it.
//!
//! This module renders and checks; it decides nothing about an order (the factory does).

use bytes::Bytes;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use super::decimal;
use super::order::{LineItem, Order};
use super::payload::{CustomerOut, PaymentOut};
use crate::orders::model::{Payload, SourceFile};

const BODY: &str = "body";
const KEY: &str = "key";

/// Which template of a payload an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Body,
    Key,
    /// The header at this index of [`Payload::headers`].
    Header(usize),
}

/// A template that does not compile or render, a body that is not JSON, or one the schema
/// refuses. `line` and `column` are 1-based, within the template named by `part` (the body
/// file, or the key's or a header's text in the scenario); 0 where the engine gave none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("{message}")]
    Template {
        part: Part,
        line: u32,
        column: u32,
        message: String,
    },
    #[error(
        "order {order}'s rendered body is not JSON: {message} (rendered line {line}: `{near}`)"
    )]
    NotJson {
        order: u64,
        line: u32,
        column: u32,
        message: String,
        /// The rendered line the parser stopped in, trimmed.
        near: String,
    },
    #[error("order {order}'s rendered body does not satisfy the schema at `{pointer}`: {message}")]
    Schema {
        order: u64,
        pointer: String,
        message: String,
    },
    #[error("the schema is not a valid JSON Schema: {message}")]
    BadSchema { message: String },
}

/// One order in the user's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Bytes,
    /// The message key, when the payload has a key template.
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// A payload's templates, compiled once per run, and its schema.
pub struct Renderer {
    env: Environment<'static>,
    has_key: bool,
    header_names: Vec<String>,
    schema: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("has_key", &self.has_key)
            .field("header_names", &self.header_names)
            .field("schema", &self.schema.is_some())
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Compiles every template of `payload` and its schema.
    pub fn new(payload: &Payload) -> Result<Renderer, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // The user writes JSON (or whatever their broker carries) by hand: no HTML escaping.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_debug(true);
        add(&mut env, BODY, &payload.template.text, Part::Body)?;
        if let Some(key) = &payload.key {
            add(&mut env, KEY, key, Part::Key)?;
        }
        for (i, (_, value)) in payload.headers.iter().enumerate() {
            add(&mut env, &header_template(i), value, Part::Header(i))?;
        }
        let schema = payload.schema.as_ref().map(compile_schema).transpose()?;
        Ok(Renderer {
            env,
            has_key: payload.key.is_some(),
            header_names: payload.headers.iter().map(|(n, _)| n.clone()).collect(),
            schema,
        })
    }

    /// Renders one order; with a schema, its body must be JSON the schema accepts.
    pub fn render(&self, order: &Order) -> Result<Rendered, TemplateError> {
        let context = minijinja::context! { order => Value::from(Serde(OrderContext::new(order))) };
        let body = self.part(BODY, Part::Body, &context)?;
        if let Some(schema) = &self.schema {
            let value = parse_json(order.id, &body)?;
            if let Some(error) = schema.iter_errors(&value).next() {
                return Err(TemplateError::Schema {
                    order: order.id,
                    pointer: error.instance_path().to_string(),
                    message: error.to_string(),
                });
            }
        }
        let key = if self.has_key {
            Some(self.part(KEY, Part::Key, &context)?)
        } else {
            None
        };
        let headers = (self.header_names.iter().enumerate())
            .map(|(i, name)| {
                let value = self.part(&header_template(i), Part::Header(i), &context)?;
                Ok((name.clone(), value))
            })
            .collect::<Result<_, TemplateError>>()?;
        Ok(Rendered {
            body: Bytes::from(body),
            key,
            headers,
        })
    }

    /// Renders `order` and also requires its body to be JSON (schema or not): what
    /// validation asks of the sample orders, so that a template producing broken JSON is
    /// refused before any order is sent.
    pub fn check(&self, order: &Order) -> Result<Rendered, TemplateError> {
        let rendered = self.render(order)?;
        let text = String::from_utf8_lossy(&rendered.body);
        parse_json(order.id, &text)?;
        Ok(rendered)
    }

    fn part(&self, name: &str, part: Part, context: &Value) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| template_error(&e, part))?;
        template
            .render(context)
            .map_err(|e| template_error(&e, part))
    }
}

fn header_template(i: usize) -> String {
    format!("header {i}")
}

fn add(
    env: &mut Environment<'static>,
    name: &str,
    text: &str,
    part: Part,
) -> Result<(), TemplateError> {
    env.add_template_owned(name.to_owned(), text.to_owned())
        .map_err(|e| template_error(&e, part))
}

/// Where in the template the engine says the error is: its line, and the column of the
/// start of its byte range when it gives one.
fn template_error(error: &minijinja::Error, part: Part) -> TemplateError {
    let line = error.line().unwrap_or(0);
    let column = match (error.range(), error.template_source()) {
        (Some(range), Some(source)) if range.start <= source.len() => {
            let before = &source[..range.start];
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            before[line_start..].chars().count() + 1
        }
        _ if line > 0 => 1,
        _ => 0,
    };
    let mut message = error.kind().to_string();
    if let Some(detail) = error.detail() {
        message = format!("{message}: {detail}");
    }
    TemplateError::Template {
        part,
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
        message,
    }
}

fn parse_json(order: u64, text: &str) -> Result<serde_json::Value, TemplateError> {
    serde_json::from_str(text).map_err(|e| {
        let near = text
            .lines()
            .nth(e.line().saturating_sub(1))
            .unwrap_or("")
            .trim();
        // serde_json's message ends with its own position; the line is said above.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        TemplateError::NotJson {
            order,
            line: u32::try_from(e.line()).unwrap_or(u32::MAX),
            column: u32::try_from(e.column()).unwrap_or(u32::MAX),
            message,
            near: near.chars().take(80).collect(),
        }
    })
}

/// Where in a JSON template the member a schema pointer ends in is written: the first line
/// with `"name":`, 1-based line and column; `None` for an index or a name not found.
pub fn member_line(template: &str, pointer: &str) -> Option<(u32, u32)> {
    let name = pointer.rsplit('/').next()?;
    if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let needle = format!("\"{name}\"");
    template.lines().enumerate().find_map(|(i, line)| {
        let at = line.find(&needle)?;
        let column = line[..at].chars().count() + 1;
        Some((u32::try_from(i + 1).ok()?, u32::try_from(column).ok()?))
    })
}

fn compile_schema(file: &SourceFile) -> Result<jsonschema::Validator, TemplateError> {
    let schema: serde_json::Value =
        serde_json::from_str(&file.text).map_err(|e| TemplateError::BadSchema {
            message: format!("line {}, column {}: {e}", e.line(), e.column()),
        })?;
    jsonschema::validator_for(&schema).map_err(|e| TemplateError::BadSchema {
        message: e.to_string(),
    })
}

/// What a template sees as `order`. Every amount is in the order's currency.
#[derive(Debug, Serialize)]
struct OrderContext<'a> {
    /// The order id doorbuster judges by (a number).
    pub id: u64,
    /// 24 lowercase hex digits unique to the order in this run (the last 16 are the id), for
    /// schemas whose ids are strings like `314919ab8aed637123f804eb`.
    pub uid: String,
    pub idempotency_key: &'a str,
    /// The checkout's intended time, RFC 3339 UTC with nanoseconds.
    pub created_at: &'a str,
    /// The same instant, Unix milliseconds.
    pub created_at_ms: u64,
    pub currency: &'a str,
    pub channel: &'a str,
    pub user_agent: &'a str,
    pub shipping_method: &'a str,
    pub customer: CustomerOut<'a>,
    pub ship_to: AddressContext<'a>,
    pub items: Vec<ItemContext<'a>>,
    pub totals: TotalsContext,
    pub payment: PaymentOut<'a>,
}

#[derive(Debug, Serialize)]
struct AddressContext<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub line1: &'a str,
    /// Empty when the address has no second line.
    pub line2: &'a str,
    pub city: &'a str,
    pub state: &'a str,
    pub postal_code: &'a str,
    pub country: &'a str,
}

#[derive(Debug, Serialize)]
struct ItemContext<'a> {
    pub product_id: u32,
    pub sku: &'a str,
    pub name: &'a str,
    pub quantity: u32,
    pub unit_price: String,
    pub unit_price_cents: u64,
    /// `unit_price * quantity`.
    pub total: String,
    pub total_cents: u64,
}

#[derive(Debug, Serialize)]
struct TotalsContext {
    /// The items' totals added up.
    pub subtotal: String,
    pub subtotal_cents: u64,
    pub tax: String,
    pub tax_cents: u64,
    pub shipping: String,
    pub shipping_cents: u64,
    /// `subtotal + tax + shipping`.
    pub total: String,
    pub total_cents: u64,
}

impl<'a> OrderContext<'a> {
    pub fn new(order: &'a Order) -> OrderContext<'a> {
        let t = &order.totals;
        OrderContext {
            id: order.id,
            uid: format!("{:08x}{:016x}", order_tag(order), order.id),
            idempotency_key: &order.idempotency_key,
            created_at: &order.created_at,
            created_at_ms: order.intended_wall_ns / 1_000_000,
            currency: order.currency,
            channel: order.channel,
            user_agent: order.user_agent,
            shipping_method: order.shipping_method,
            customer: CustomerOut::new(order),
            ship_to: AddressContext {
                first_name: order.customer.first_name,
                last_name: order.customer.last_name,
                line1: &order.ship_to.line1,
                line2: order.ship_to.line2.as_deref().unwrap_or(""),
                city: order.ship_to.city,
                state: order.ship_to.state,
                postal_code: &order.ship_to.postal_code,
                country: order.ship_to.country,
            },
            items: order.items.iter().map(ItemContext::new).collect(),
            totals: TotalsContext {
                subtotal: decimal(t.subtotal_cents),
                subtotal_cents: t.subtotal_cents,
                tax: decimal(t.tax_cents),
                tax_cents: t.tax_cents,
                shipping: decimal(t.shipping_cents),
                shipping_cents: t.shipping_cents,
                total: decimal(t.total_cents),
                total_cents: t.total_cents,
            },
            payment: PaymentOut::new(order),
        }
    }
}

impl<'a> ItemContext<'a> {
    fn new(item: &'a LineItem) -> ItemContext<'a> {
        ItemContext {
            product_id: item.product_id,
            sku: &item.sku,
            name: &item.name,
            quantity: item.quantity,
            unit_price: decimal(item.unit_price_cents),
            unit_price_cents: item.unit_price_cents,
            total: decimal(item.total_cents()),
            total_cents: item.total_cents(),
        }
    }
}

/// The first eight hex digits of an order's `uid`: from its idempotency key, which is
/// seeded per run, so two runs' uids differ while one run's are stable.
fn order_tag(order: &Order) -> u32 {
    uid_tag(&order.idempotency_key)
}

/// The tag of a `uid` from the order's idempotency key (`ik_` and 16 hex digits).
pub fn uid_tag(idempotency_key: &str) -> u32 {
    let hex = idempotency_key.trim_start_matches("ik_");
    hex.get(..8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// The intended time `doorbuster preview` and validation give order `id`: Black Friday 2026,
/// noon UTC, plus one millisecond per order, so that previews are the same every time.
pub fn sample_wall_ns(id: u64) -> u64 {
    const BLACK_FRIDAY_NOON_NS: u64 = 1_795_780_800_000_000_000;
    BLACK_FRIDAY_NOON_NS.saturating_add(id.saturating_mul(1_000_000))
}

/// One order as `doorbuster preview` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub order: u64,
    pub rendered: Rendered,
}

/// Orders `from..from + count` of a run with `seed`, rendered the way the run sends them:
/// through the scenario's payload template, or as doorbuster's own `order.created`.
pub fn preview(
    orders: &crate::orders::model::Orders,
    seed: u64,
    from: u64,
    count: u64,
) -> Result<Vec<Preview>, TemplateError> {
    let factory = super::OrderFactory::new(seed, orders);
    let renderer = orders.payload.as_ref().map(Renderer::new).transpose()?;
    (from..from.saturating_add(count))
        .map(|id| {
            let order = factory.make(id, sample_wall_ns(id));
            let rendered = match &renderer {
                Some(renderer) => renderer.render(&order)?,
                None => Rendered {
                    body: order.to_json(),
                    key: None,
                    headers: Vec::new(),
                },
            };
            Ok(Preview {
                order: id,
                rendered,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::OrderFactory;

    const SEED_TEMPLATE: &str = include_str!("../../examples/payloads/order-created.json.j2");
    const SEED_SCHEMA: &str = include_str!("../../examples/payloads/order-created.schema.json");

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.to_owned(),
            shown: path.to_owned(),
            text: text.to_owned(),
        }
    }

    fn payload(template: &str, schema: Option<&str>) -> Payload {
        Payload {
            template: file("t.json.j2", template),
            key: None,
            headers: Vec::new(),
            schema: schema.map(|s| file("s.json", s)),
        }
    }

    fn factory() -> OrderFactory {
        OrderFactory::new(7, &crate::orders::order::tests::cfg())
    }

    fn cents(value: &serde_json::Value) -> u64 {
        // Decimal text with two places, read back exactly (no float rounding).
        let text = value.to_string();
        let (units, fraction) = text.split_once('.').unwrap_or((&text, "0"));
        units.parse::<u64>().unwrap() * 100 + format!("{fraction:0<2}").parse::<u64>().unwrap()
    }

    #[test]
    fn the_seed_articles_order_created_renders_parses_and_adds_up() {
        let renderer = Renderer::new(&payload(SEED_TEMPLATE, Some(SEED_SCHEMA))).unwrap();
        let f = factory();
        for id in 0..300 {
            let order = f.make(id, sample_wall_ns(id));
            let rendered = renderer.check(&order).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&rendered.body).unwrap();
            // The seed's fields, nested as in the article.
            let address = &v["shipTo"][0]["address"];
            assert_eq!(address["name"]["first"], order.customer.first_name);
            assert_eq!(address["name"]["last"], order.customer.last_name);
            assert_eq!(address["zipCode"], order.ship_to.postal_code.as_str());
            assert_eq!(address["phone"]["kind"], "mobile");
            assert!(v["shipTo"][0]["shipmentCarrier"].is_string());
            assert_eq!(v["orderCurrency"], "USD");
            let uid = v["cartId"].as_str().unwrap();
            assert_eq!(u64::from_str_radix(&uid[8..], 16).unwrap(), id);
            // Line total = price x quantity; order total = the lines plus tax and shipping.
            let items = v["items"].as_array().unwrap();
            assert_eq!(items.len(), order.items.len());
            let mut lines = 0;
            for item in items {
                let quantity = item["quantity"].as_u64().unwrap();
                assert_eq!(cents(&item["total"]), cents(&item["price"]) * quantity);
                lines += cents(&item["total"]);
            }
            let t = &order.totals;
            assert_eq!(lines, t.subtotal_cents);
            assert_eq!(
                cents(&v["orderTotal"]),
                lines + t.tax_cents + t.shipping_cents
            );
        }
    }

    #[test]
    fn the_schema_refuses_what_breaks_the_contract() {
        // Negative control: the total written as a string.
        let quoted = SEED_TEMPLATE.replace(
            r#""orderTotal": {{ order.totals.total }}"#,
            r#""orderTotal": "{{ order.totals.total }}""#,
        );
        assert_ne!(quoted, SEED_TEMPLATE);
        let renderer = Renderer::new(&payload(&quoted, Some(SEED_SCHEMA))).unwrap();
        let order = factory().make(0, sample_wall_ns(0));
        match renderer.render(&order) {
            Err(TemplateError::Schema { pointer, .. }) => {
                assert_eq!(pointer, "/orderTotal");
                assert_eq!(member_line(&quoted, &pointer), Some((7, 3)));
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
        // Without the schema it renders; `check` still requires JSON, which this is.
        let renderer = Renderer::new(&payload(&quoted, None)).unwrap();
        assert!(renderer.check(&order).is_ok());
    }

    #[test]
    fn template_mistakes_say_where_they_are() {
        let misspelled = "{\n  \"total\": {{ order.totals.totl }}\n}";
        let order = factory().make(3, sample_wall_ns(3));
        let renderer = Renderer::new(&payload(misspelled, None)).unwrap();
        match renderer.render(&order) {
            Err(TemplateError::Template {
                part: Part::Body,
                line: 2,
                column,
                message,
            }) => {
                // Within `order.totals.totl` (columns 15 to 31), where the engine's span starts.
                assert!((15..=31).contains(&column), "{column}: {message}");
                assert!(message.contains("order.totals.totl"), "{message}");
            }
            other => panic!("expected an undefined-value error, got {other:?}"),
        }
        let unclosed = "{\n  \"items\": [{% for i in order.items %}{{ i.sku }}]\n}";
        match Renderer::new(&payload(unclosed, None)) {
            Err(TemplateError::Template { line, .. }) => assert!(line >= 2, "{line}"),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        let not_json = "{ \"id\": {{ order.id }}, }";
        let renderer = Renderer::new(&payload(not_json, None)).unwrap();
        assert!(matches!(
            renderer.check(&order),
            Err(TemplateError::NotJson { order: 3, .. })
        ));
        let bad_schema = Renderer::new(&payload("{}", Some("{\"type\": 12}")));
        assert!(matches!(bad_schema, Err(TemplateError::BadSchema { .. })));
    }

    #[test]
    fn key_and_headers_render_per_order() {
        let mut p = payload("{\"id\": {{ order.id }}}", None);
        p.key = Some("{{ order.customer.id }}".to_owned());
        p.headers = vec![
            ("ce-type".to_owned(), "order.created".to_owned()),
            ("ce-id".to_owned(), "{{ order.uid }}".to_owned()),
        ];
        let renderer = Renderer::new(&p).unwrap();
        let order = factory().make(9, sample_wall_ns(9));
        let r = renderer.render(&order).unwrap();
        assert_eq!(r.key.as_deref(), Some(order.customer.id.as_str()));
        assert_eq!(
            r.headers[0],
            ("ce-type".to_owned(), "order.created".to_owned())
        );
        assert!(
            r.headers[1].1.ends_with("0000000000000009"),
            "{:?}",
            r.headers
        );
        assert_eq!(&r.body[..], b"{\"id\": 9}");
        // Preview renders the same orders the run would, and doorbuster's own without one.
        let mut orders = crate::orders::order::tests::cfg();
        orders.payload = Some(p);
        let previews = preview(&orders, 7, 9, 2).unwrap();
        assert_eq!(previews[0].rendered, r);
        assert_eq!(previews[1].order, 10);
        orders.payload = None;
        let own = preview(&orders, 7, 9, 1).unwrap();
        assert_eq!(own[0].rendered.body, order.to_json());
    }
}
