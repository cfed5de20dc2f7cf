//! `orders:` in a scenario file: its raw shape, its schema and its validation into the
//! model's [`Orders`]. Pure: the same text always gives the same result.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::check::{Checker, Path};
use crate::config::schema;
use crate::config::tree::Scalar;
use crate::config::units::{self, Share, choice, int_in};
use crate::scenario::model::{Catalog, Orders};

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

/// Checks `orders:`; every key has a default.
pub fn validate(raw: Option<&Spanned<RawOrders>>, check: &mut Checker, path: &Path) -> Orders {
    let empty = RawOrders {
        catalog: None,
        items: None,
        locale: None,
        declines: None,
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
    Orders {
        catalog,
        items_min,
        items_max,
        locale,
        declines,
        resubmits,
    }
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
