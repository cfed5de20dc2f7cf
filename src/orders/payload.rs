//! The `order.created` payload: the JSON a checkout publishes, and the view consumers parse.
//!
//! The factory's `Order` becomes about 1 KB of JSON here, shaped like a real shop's event
//! (customer, addresses, line items, totals, payment method). Consumers (payment, inventory,
//! analytics) parse only the fields they act on through `OrderView`, borrowing from the
//! payload. This module only converts; it may not decide anything about an order. The full
//! card number never leaves the factory: events carry brand, last four and a PSP token.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::customer::Address;
use super::order::{LineItem, Order};

/// Room for a typical payload, so serialising does not reallocate.
const PAYLOAD_CAPACITY: usize = 1_536;

impl Order {
    /// The `order.created` payload.
    pub fn to_json(&self) -> Bytes {
        let name = FullName(self.customer.first_name, self.customer.last_name);
        let payload = Payload {
            order_id: self.id,
            idempotency_key: &self.idempotency_key,
            created_at: &self.created_at,
            channel: self.channel,
            currency: self.currency,
            customer: CustomerOut::new(self),
            shipping_address: AddressOut::new(&self.ship_to, name),
            // Spelled out as a flag rather than a second copy of the address: it keeps the
            // payload near the 1 KB of a real event, and no consumer reads billing.
            billing_same_as_shipping: true,
            line_items: ItemsOut(&self.items),
            shipping_method: self.shipping_method,
            totals: TotalsOut {
                subtotal_cents: self.totals.subtotal_cents,
                tax_cents: self.totals.tax_cents,
                shipping_cents: self.totals.shipping_cents,
                total_cents: self.totals.total_cents,
            },
            payment: PaymentOut::new(self),
            user_agent: self.user_agent,
        };
        let mut out = Vec::with_capacity(PAYLOAD_CAPACITY);
        // Writing plain structs with string keys into a Vec cannot fail; an empty payload
        // would be caught by every consumer's parse, never silently accepted.
        match serde_json::to_writer(&mut out, &payload) {
            Ok(()) => Bytes::from(out),
            Err(error) => {
                tracing::error!(order_id = self.id, %error, "order payload did not serialise");
                Bytes::new()
            }
        }
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    order_id: u64,
    idempotency_key: &'a str,
    created_at: &'a str,
    channel: &'a str,
    currency: &'a str,
    customer: CustomerOut<'a>,
    shipping_address: AddressOut<'a>,
    billing_same_as_shipping: bool,
    line_items: ItemsOut<'a>,
    shipping_method: &'a str,
    totals: TotalsOut,
    payment: PaymentOut<'a>,
    user_agent: &'a str,
}

/// The shopper, as doorbuster's own payload and a payload template (`order.customer`) see
/// them. The phone is US format in the 555-01xx range reserved for fiction.
#[derive(Debug, Serialize)]
pub(super) struct CustomerOut<'a> {
    id: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    phone: &'a str,
}

impl<'a> CustomerOut<'a> {
    pub(super) fn new(order: &'a Order) -> Self {
        let c = &order.customer;
        CustomerOut {
            id: &c.id,
            first_name: c.first_name,
            last_name: c.last_name,
            email: &c.email,
            phone: &c.phone,
        }
    }
}

#[derive(Serialize)]
struct AddressOut<'a> {
    name: FullName<'a>,
    line1: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line2: Option<&'a str>,
    city: &'a str,
    state: &'a str,
    postal_code: &'a str,
    country: &'a str,
}

impl<'a> AddressOut<'a> {
    fn new(a: &'a Address, name: FullName<'a>) -> Self {
        AddressOut {
            name,
            line1: &a.line1,
            line2: a.line2.as_deref(),
            city: a.city,
            state: a.state,
            postal_code: &a.postal_code,
            country: a.country,
        }
    }
}

/// "First Last", written straight into the output without an intermediate String.
#[derive(Clone, Copy)]
struct FullName<'a>(&'a str, &'a str);

impl fmt::Display for FullName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

impl Serialize for FullName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The line items, serialised from the order's own Vec without collecting a second one.
struct ItemsOut<'a>(&'a [LineItem]);

impl Serialize for ItemsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|i| ItemOut {
            product_id: i.product_id,
            sku: &i.sku,
            name: &i.name,
            quantity: i.quantity,
            unit_price_cents: i.unit_price_cents,
        }))
    }
}

#[derive(Serialize)]
struct ItemOut<'a> {
    product_id: u32,
    sku: &'a str,
    name: &'a str,
    quantity: u32,
    unit_price_cents: u64,
}

#[derive(Serialize)]
struct TotalsOut {
    subtotal_cents: u64,
    tax_cents: u64,
    shipping_cents: u64,
    total_cents: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct PaymentOut<'a> {
    brand: &'a str,
    last4: &'a str,
    exp_month: u32,
    exp_year: u32,
    /// The PSP token standing for the card; the card number never leaves the factory.
    card_token: &'a str,
}

impl<'a> PaymentOut<'a> {
    pub(super) fn new(order: &'a Order) -> Self {
        PaymentOut {
            brand: order.payment.card.brand,
            last4: order.payment.card.last4(),
            exp_month: order.payment.exp_month,
            exp_year: order.payment.exp_year,
            card_token: order.payment.card.token,
        }
    }
}

/// What payment, inventory and analytics read from an `order.created` payload. Strings
/// borrow from the payload; they are owned only when the JSON escapes characters in them
/// (payloads from a user's own checkout in observe mode may).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderView<'a> {
    pub order_id: u64,
    pub idempotency_key: Cow<'a, str>,
    pub total_cents: u64,
    pub currency: Cow<'a, str>,
    pub card_token: Cow<'a, str>,
    /// The payload's `line_items`.
    #[serde(rename = "line_items")]
    pub items: Vec<ItemView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    pub product_id: u32,
    pub quantity: u32,
}

/// Parses the consumer view of an `order.created` payload.
pub fn parse_view(bytes: &[u8]) -> Result<OrderView<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The payload's nesting (`totals.total_cents`, `payment.card_token`), flattened into the
/// view after parsing so consumers see one flat struct.
#[derive(Deserialize)]
struct RawView<'a> {
    order_id: u64,
    #[serde(borrow)]
    idempotency_key: Cow<'a, str>,
    #[serde(borrow)]
    currency: Cow<'a, str>,
    totals: RawTotals,
    #[serde(borrow)]
    payment: RawPayment<'a>,
    line_items: Vec<ItemView>,
}

#[derive(Deserialize)]
struct RawTotals {
    total_cents: u64,
}

#[derive(Deserialize)]
struct RawPayment<'a> {
    #[serde(borrow)]
    card_token: Cow<'a, str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for OrderView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawView::deserialize(d)?;
        Ok(OrderView {
            order_id: raw.order_id,
            idempotency_key: raw.idempotency_key,
            total_cents: raw.totals.total_cents,
            currency: raw.currency,
            card_token: raw.payment.card_token,
            items: raw.line_items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::OrderFactory;

    fn factory(seed: u64) -> OrderFactory {
        OrderFactory::new(seed, &crate::orders::order::tests::cfg())
    }

    const WALL_NS: u64 = 1_764_320_400_000_000_000;

    #[test]
    fn same_seed_and_id_give_the_same_bytes() {
        let a = factory(7);
        let b = factory(7);
        // Asked in a different order, order 42 is still the same order.
        let _ = b.make(41, WALL_NS);
        assert_eq!(a.make(42, WALL_NS).to_json(), b.make(42, WALL_NS).to_json());
        assert_ne!(a.make(42, WALL_NS).to_json(), a.make(43, WALL_NS).to_json());
        assert_ne!(
            a.make(42, WALL_NS).to_json(),
            factory(8).make(42, WALL_NS).to_json()
        );
    }

    #[test]
    fn payloads_are_about_a_kilobyte() {
        let f = factory(3);
        let sizes: Vec<usize> = (0..5_000)
            .map(|id| f.make(id, WALL_NS).to_json().len())
            .collect();
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        assert!(
            sizes.iter().all(|s| (700..=1_500).contains(s)),
            "{min:?}..{max:?}"
        );
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((900..=1_250).contains(&mean), "{mean}");
    }

    #[test]
    fn the_view_reads_back_what_the_order_holds() {
        let f = factory(5);
        for id in 0..500 {
            let order = f.make(id, WALL_NS);
            let json = order.to_json();
            let view = parse_view(&json).expect("own payload parses");
            assert_eq!(view.order_id, id);
            assert_eq!(view.idempotency_key, order.idempotency_key);
            assert_eq!(view.total_cents, order.totals.total_cents);
            assert_eq!(view.currency, "USD");
            assert_eq!(view.card_token, order.payment.card.token);
            let items: Vec<(u32, u32)> = view
                .items
                .iter()
                .map(|i| (i.product_id, i.quantity))
                .collect();
            let expected: Vec<(u32, u32)> = order
                .items
                .iter()
                .map(|i| (i.product_id, i.quantity))
                .collect();
            assert_eq!(items, expected);
            // Nothing to unescape in our own payloads, so the view borrows.
            assert!(matches!(view.idempotency_key, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn the_payload_never_carries_the_card_number() {
        let f = factory(5);
        for id in 0..500 {
            let order = f.make(id, WALL_NS);
            let json = order.to_json();
            let text = std::str::from_utf8(&json).expect("utf-8");
            assert!(!text.contains(order.payment.card.number), "{text}");
            assert!(text.contains(&format!("\"last4\":\"{}\"", order.payment.card.last4())));
        }
    }

    #[test]
    fn a_broken_payload_is_an_error_not_a_panic() {
        assert!(parse_view(b"{").is_err());
        assert!(parse_view(b"{\"order_id\":1}").is_err());
        let escaped = br#"{"order_id":1,"idempotency_key":"ik_\u0041","currency":"USD",
            "totals":{"total_cents":5},"payment":{"card_token":"tok_visa"},"line_items":[]}"#;
        let view = parse_view(escaped).expect("escaped strings are owned, not rejected");
        assert_eq!(view.idempotency_key, "ik_A");
    }
}
