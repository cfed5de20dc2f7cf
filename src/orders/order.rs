//! The order factory: one realistic order per order id, and the ground truth behind it.
//!
//! The load driver asks it for the order behind each arrival; the checks ask it again, later,
//! what that order contained and whether its card was meant to decline. Everything is a pure
//! function of (seed, order id) through per-order generators, so order 17 is the same however
//! many orders ran before it and on whichever task. It may not read the clock (the caller
//! passes the intended wall time), hold mutable state, or do I/O.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use rand::RngExt;

use super::cards::{self, TestCard};
use super::catalog::Catalog;
use super::customer::{self, Address, Customer};
use super::model;
use crate::rng;

/// Orders at or above this subtotal ship free with standard shipping.
const FREE_SHIPPING_MIN_CENTS: u64 = 5_000;
const STANDARD_SHIPPING_CENTS: u64 = 599;
const EXPRESS_SHIPPING_CENTS: u64 = 1_499;

/// Current browsers, because the traffic a shop sees today is what a load test should send.
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S921U) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
];

/// The per-order decisions the checks recompute: cheap, no allocation, no generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPlan {
    /// The order pays with a card the provider declines.
    pub declines: bool,
    /// The checkout is submitted twice with the same idempotency key.
    pub resubmit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub product_id: u32,
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
}

impl LineItem {
    pub fn total_cents(&self) -> u64 {
        self.unit_price_cents * u64::from(self.quantity)
    }
}

/// All amounts in cents; `total = subtotal + tax + shipping` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal_cents: u64,
    pub tax_cents: u64,
    pub shipping_cents: u64,
    pub total_cents: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    /// The PSP test card this order pays with; only its token and last four digits go into
    /// events.
    pub card: &'static TestCard,
    pub exp_month: u32,
    pub exp_year: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: u64,
    pub idempotency_key: String,
    /// When the checkout was intended to happen, Unix nanoseconds.
    pub intended_wall_ns: u64,
    /// `intended_wall_ns` in RFC 3339, UTC, nanosecond precision.
    pub created_at: String,
    pub customer: Customer,
    /// Also the billing address: shoppers mostly ship to where they pay.
    pub ship_to: Address,
    pub tax_bps: u64,
    pub items: Vec<LineItem>,
    pub shipping_method: &'static str,
    pub totals: Totals,
    pub currency: &'static str,
    pub payment: Payment,
    pub channel: &'static str,
    pub user_agent: &'static str,
}

impl Order {
    pub fn billing(&self) -> &Address {
        &self.ship_to
    }
}

/// Makes orders for one run. Cheap to share behind an `Arc`: it holds only the catalog.
#[derive(Debug, Clone)]
pub struct OrderFactory {
    seed: u64,
    catalog: Catalog,
    items_min: u32,
    items_max: u32,
    declines: f64,
    resubmits: f64,
    /// Mixed into every idempotency key (and so every `order.uid`): 0, or a value new to the
    /// run in observe mode, where the user's shop outlives runs and must not take a run's
    /// orders for an earlier run's.
    key_salt: u64,
}

impl OrderFactory {
    pub fn new(seed: u64, cfg: &model::Orders) -> OrderFactory {
        // Validation orders the bounds; sorting them here keeps the factory total anyway.
        let (lo, hi) = if cfg.items_min <= cfg.items_max {
            (cfg.items_min, cfg.items_max)
        } else {
            (cfg.items_max, cfg.items_min)
        };
        OrderFactory {
            seed,
            catalog: Catalog::new(seed, &cfg.catalog),
            items_min: lo,
            items_max: hi,
            declines: cfg.declines.fraction(),
            resubmits: cfg.resubmits.fraction(),
            key_salt: 0,
        }
    }

    /// The same orders with idempotency keys (and uids) of their own: for runs against a
    /// shop that remembers keys and outputs from one run to the next.
    pub fn with_key_salt(mut self, salt: u64) -> OrderFactory {
        self.key_salt = salt;
        self
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn plan(&self, order_id: u64) -> OrderPlan {
        OrderPlan {
            declines: rng::unit_for_item(self.seed, "orders.declines", order_id) < self.declines,
            resubmit: rng::unit_for_item(self.seed, "orders.resubmits", order_id) < self.resubmits,
        }
    }

    /// The line items of an order, exactly as `make` puts them in it.
    pub fn items(&self, order_id: u64) -> Vec<LineItem> {
        self.picks(order_id)
            .into_iter()
            .filter_map(|(product_id, quantity)| {
                let product = self.catalog.product(product_id)?;
                Some(LineItem {
                    product_id,
                    sku: product.sku.clone(),
                    name: product.name.clone(),
                    quantity,
                    unit_price_cents: product.unit_price_cents,
                })
            })
            .collect()
    }

    /// Starting stock indexed by product id (see `Catalog::initial_stock`).
    pub fn initial_stock(&self) -> Vec<u32> {
        self.catalog.initial_stock()
    }

    /// Units each product loses to the given orders once inventory has reserved them all:
    /// the ground truth for the stock check. The caller chooses which orders count (accepted
    /// ones, since inventory reserves before payment).
    pub fn expected_stock_use(
        &self,
        order_ids: impl IntoIterator<Item = u64>,
    ) -> HashMap<u32, u64> {
        let mut used = HashMap::new();
        for id in order_ids {
            for (product_id, quantity) in self.picks(id) {
                *used.entry(product_id).or_insert(0) += u64::from(quantity);
            }
        }
        used
    }

    /// (product id, quantity) pairs of distinct products, without building names.
    fn picks(&self, order_id: u64) -> Vec<(u32, u32)> {
        let mut rng = rng::for_item(self.seed, "orders.items", order_id);
        let products = u32::try_from(self.catalog.len()).unwrap_or(u32::MAX);
        let hi = self.items_max.min(products);
        let count = rng.random_range(self.items_min.min(hi)..=hi) as usize;
        let mut picks: Vec<(u32, u32)> = Vec::with_capacity(count);
        for _ in 0..count {
            let product = self.distinct_pick(&picks, products, &mut rng);
            // Mostly one of a kind, sometimes two or three, as in real baskets.
            let quantity = match rng.random_range(0..20u32) {
                0..=15 => 1,
                16..=18 => 2,
                _ => 3,
            };
            picks.push((product, quantity));
        }
        picks
    }

    fn distinct_pick(&self, taken: &[(u32, u32)], products: u32, rng: &mut rng::Rng) -> u32 {
        let is_taken = |id: u32| taken.iter().any(|(p, _)| *p == id);
        let mut product = self.catalog.pick(rng);
        for _ in 0..32 {
            if !is_taken(product) {
                return product;
            }
            product = self.catalog.pick(rng);
        }
        // A steep Zipf over a tiny catalog can keep drawing the same few products; walk to
        // the next free id instead of drawing forever. One exists: count <= products.
        (product..=products)
            .chain(1..product)
            .find(|id| !is_taken(*id))
            .unwrap_or(product)
    }

    /// The order's idempotency key, as [`make`](Self::make) gives it, without making the
    /// rest of the order.
    pub fn idempotency_key(&self, order_id: u64) -> String {
        let mut rng = rng::for_item(self.seed, "orders.order", order_id);
        format!("ik_{:016x}", rng.random::<u64>() ^ self.key_salt)
    }

    /// The whole order, the same for the same (seed, order id) whenever it is asked for.
    pub fn make(&self, order_id: u64, intended_wall_ns: u64) -> Order {
        let plan = self.plan(order_id);
        let items = self.items(order_id);
        let mut rng = rng::for_item(self.seed, "orders.order", order_id);

        let idempotency_key = format!("ik_{:016x}", rng.random::<u64>() ^ self.key_salt);
        let (customer, ship_to, home) = customer::make(&mut rng);
        let table = if plan.declines {
            cards::DECLINING
        } else {
            cards::APPROVING
        };
        let card = cards::pick_weighted(table, rng.random_range(0..cards::total_weight(table)));
        let payment = Payment {
            card,
            exp_month: rng.random_range(1..=12),
            exp_year: rng.random_range(2027..=2032),
        };

        let subtotal_cents: u64 = items.iter().map(LineItem::total_cents).sum();
        // Round half up, as US tax tables do.
        let tax_cents = (subtotal_cents * home.tax_bps + 5_000) / 10_000;
        let express = rng.random_range(0..100u32) < 15;
        let shipping_cents = if express {
            EXPRESS_SHIPPING_CENTS
        } else if subtotal_cents >= FREE_SHIPPING_MIN_CENTS {
            0
        } else {
            STANDARD_SHIPPING_CENTS
        };
        let totals = Totals {
            subtotal_cents,
            tax_cents,
            shipping_cents,
            total_cents: subtotal_cents + tax_cents + shipping_cents,
        };

        let user_agent = USER_AGENTS[rng.random_range(0..USER_AGENTS.len())];

        Order {
            id: order_id,
            idempotency_key,
            intended_wall_ns,
            created_at: rfc3339_nanos(intended_wall_ns),
            customer,
            ship_to,
            tax_bps: home.tax_bps,
            items,
            shipping_method: if express { "express" } else { "standard" },
            totals,
            currency: "USD",
            payment,
            channel: "web",
            user_agent,
        }
    }
}

/// Unix nanoseconds as `2025-11-28T09:00:00.123456789Z`.
fn rfc3339_nanos(unix_ns: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_nanos(unix_ns);
    let mut out = String::with_capacity(30);
    // Formatting fails only past year 9999, beyond what u64 nanoseconds reach.
    let _ = write!(out, "{}", humantime::format_rfc3339_nanos(at));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::units::Share;
    use crate::orders::model::Catalog as CatalogCfg;

    pub(crate) fn cfg() -> model::Orders {
        model::Orders {
            catalog: CatalogCfg {
                products: 5_000,
                zipf_exponent: 1.1,
                stock: 1_000,
            },
            items_min: 1,
            items_max: 5,
            locale: "en_US".into(),
            declines: Share(0.02),
            resubmits: Share(0.01),
            payload: None,
        }
    }

    #[test]
    fn decline_share_is_within_tolerance() {
        // 2 % of 100k plans must decline, give or take sampling noise.
        let factory = OrderFactory::new(7, &cfg());
        let declined = (0..100_000).filter(|id| factory.plan(*id).declines).count();
        let resubmitted = (0..100_000).filter(|id| factory.plan(*id).resubmit).count();
        assert!((1_800..2_200).contains(&declined), "{declined}");
        assert!((850..1_150).contains(&resubmitted), "{resubmitted}");
    }

    #[test]
    fn planned_declines_pay_with_declining_cards() {
        let factory = OrderFactory::new(7, &cfg());
        for id in 0..3_000 {
            let order = factory.make(id, 0);
            let declines = matches!(order.payment.card.outcome, cards::CardOutcome::Decline(_));
            assert_eq!(declines, factory.plan(id).declines, "order {id}");
            assert!(cards::luhn_valid(order.payment.card.number));
        }
    }

    #[test]
    fn totals_add_up() {
        let factory = OrderFactory::new(11, &cfg());
        for id in 0..3_000 {
            let order = factory.make(id, 0);
            let t = order.totals;
            let subtotal: u64 = order.items.iter().map(LineItem::total_cents).sum();
            assert_eq!(t.subtotal_cents, subtotal);
            assert_eq!(
                t.total_cents,
                t.subtotal_cents + t.tax_cents + t.shipping_cents
            );
            assert_eq!(t.tax_cents, (subtotal * order.tax_bps + 5_000) / 10_000);
            assert!((1..=5).contains(&order.items.len()));
        }
    }

    #[test]
    fn items_are_distinct_and_match_make() {
        let factory = OrderFactory::new(5, &cfg());
        for id in 0..2_000 {
            let items = factory.items(id);
            let mut ids: Vec<u32> = items.iter().map(|i| i.product_id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), items.len());
            assert!(items.iter().all(|i| (1..=3).contains(&i.quantity)));
            assert_eq!(factory.make(id, 0).items, items);
            assert_eq!(
                factory.make(id, 0).idempotency_key,
                factory.idempotency_key(id)
            );
        }
    }

    #[test]
    fn a_tiny_steep_catalog_still_gives_distinct_items() {
        // Five products, exponent 8: nearly every draw is product 1, yet items stay distinct.
        let mut c = cfg();
        c.catalog.products = 5;
        c.catalog.zipf_exponent = 8.0;
        c.items_min = 5;
        c.items_max = 9;
        let factory = OrderFactory::new(1, &c);
        for id in 0..200 {
            let mut ids: Vec<u32> = factory.items(id).iter().map(|i| i.product_id).collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        }
    }

    #[test]
    fn stock_use_sums_quantities() {
        let factory = OrderFactory::new(5, &cfg());
        let used = factory.expected_stock_use(0..500);
        let direct: u64 = (0..500)
            .flat_map(|id| factory.items(id))
            .map(|i| u64::from(i.quantity))
            .sum();
        assert_eq!(used.values().sum::<u64>(), direct);
    }

    #[test]
    fn created_at_is_rfc3339_utc() {
        assert_eq!(
            rfc3339_nanos(1_764_320_400_123_456_789),
            "2025-11-28T09:00:00.123456789Z"
        );
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
    }
}
