//! The orders as a scenario states them, validated: catalog, items, declines, resubmits and
//! the user's own payload. `config.rs` reads them from YAML; the factory makes the orders.

use crate::config::units::Share;

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Orders {
    pub catalog: Catalog,
    /// Line items per order, inclusive bounds (default 1..=5).
    pub items_min: u32,
    pub items_max: u32,
    /// Locale for fake data; only `en_US` is supported for now.
    pub locale: String,
    /// Share of orders paid with a card the provider declines.
    pub declines: Share,
    /// Share of checkouts submitted twice with the same idempotency key.
    pub resubmits: Share,
    /// The user's own event schema, when the scenario gives one (`orders.payload`).
    pub payload: Option<Payload>,
}

/// `orders.payload`: each order rendered through the user's template instead of
/// doorbuster's own `order.created` (see `orders::template`).
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Payload {
    /// The body template.
    pub template: SourceFile,
    /// The message key, a template (`{{ order.id }}`); `None` keeps the order id.
    pub key: Option<String>,
    /// Extra headers, each value a template, in file order.
    pub headers: Vec<(String, String)>,
    /// A JSON Schema every rendered body must satisfy.
    pub schema: Option<SourceFile>,
}

/// A file a scenario names, read when it was validated.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SourceFile {
    /// As the scenario wrote it.
    pub path: String,
    /// Where it was read from, for messages (the path beside the scenario file).
    pub shown: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Catalog {
    pub products: u32,
    /// Zipf exponent of product popularity (`zipf(1.1)`).
    pub zipf_exponent: f64,
    /// Units in stock per product at the start.
    pub stock: u32,
}
