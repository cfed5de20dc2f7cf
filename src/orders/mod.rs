//! Orders: the catalog, fake shoppers and their orders, and the ground truth behind them.
//!
//! The load driver turns each arrival's order id into an `Order` and its `order.created`
//! payload here; the checks come back later to recompute what each order was meant to do
//! (`plan`, `items`, `expected_stock_use`). Every value is a pure function of the run seed
//! and the order id. This module may not read the clock, do I/O, or keep state that changes
//! during a run: stock and charges belong to the services.

pub mod cards;
pub mod catalog;
pub mod config;
pub mod customer;
pub mod model;
pub mod order;
pub mod payload;
pub mod template;

pub use cards::{CardOutcome, TestCard};
pub use catalog::{Catalog, Category, Product};
pub use customer::{Address, City, Customer};
pub use order::{LineItem, Order, OrderFactory, OrderPlan, Payment, Totals};
pub use payload::{ItemView, OrderView, parse_view};

/// Cents as decimal text: `12243` is `"122.43"` (reports, payload templates).
pub fn decimal(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::model;
    use super::*;
    use crate::config::units::Share;

    fn factory(seed: u64, products: u32, zipf_exponent: f64, items: (u32, u32)) -> OrderFactory {
        OrderFactory::new(
            seed,
            &model::Orders {
                catalog: model::Catalog {
                    products,
                    zipf_exponent,
                    stock: 10,
                },
                items_min: items.0,
                items_max: items.1,
                locale: "en_US".into(),
                declines: Share(0.5),
                resubmits: Share(0.5),
                payload: None,
            },
        )
    }

    #[test]
    fn the_factory_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<OrderFactory>();
    }

    proptest! {
        // `make` is total: any seed, any id, any wall time and odd catalog shapes give an
        // order whose payload parses back, never a panic.
        #[test]
        fn make_never_panics(
            seed in any::<u64>(),
            id in any::<u64>(),
            wall in any::<u64>(),
            products in 0u32..50,
            exponent in 0.0f64..6.0,
            lo in 0u32..8,
            hi in 0u32..8,
        ) {
            let f = factory(seed, products, exponent, (lo, hi));
            let order = f.make(id, wall);
            let json = order.to_json();
            let view = parse_view(&json).expect("own payload parses");
            prop_assert_eq!(view.order_id, id);
            prop_assert_eq!(view.total_cents, order.totals.total_cents);
        }
    }
}
