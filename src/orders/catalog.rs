//! The product catalog orders draw from: names, SKUs, prices, starting stock, popularity.
//!
//! Built once per run from the seed, before any order is made; the order factory reads it
//! and the inventory ground truth starts from its stock. It may not hold mutable state (stock
//! changes belong to the inventory service) and makes no generators itself (`rng.rs` does).

use rand::RngExt;
use rand_distr::{Distribution, Zipf};

use super::model;
use crate::rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Home,
    Kitchen,
    Electronics,
    Outdoors,
    Apparel,
    Toys,
    Beauty,
    Office,
}

impl Category {
    const ALL: [Category; 8] = [
        Category::Home,
        Category::Kitchen,
        Category::Electronics,
        Category::Outdoors,
        Category::Apparel,
        Category::Toys,
        Category::Beauty,
        Category::Office,
    ];

    fn sku_prefix(self) -> &'static str {
        match self {
            Category::Home => "HOM",
            Category::Kitchen => "KIT",
            Category::Electronics => "ELE",
            Category::Outdoors => "OUT",
            Category::Apparel => "APP",
            Category::Toys => "TOY",
            Category::Beauty => "BEA",
            Category::Office => "OFF",
        }
    }

    /// Nouns that fit the category, so a "Cotton Blender" never appears under Apparel.
    fn nouns(self) -> &'static [&'static str] {
        match self {
            Category::Home => &["Lamp", "Rug", "Mirror", "Throw Pillow", "Vase", "Clock"],
            Category::Kitchen => &["Skillet", "Kettle", "Knife Set", "Cutting Board", "Mug"],
            Category::Electronics => &["Speaker", "Headphones", "Charger", "Keyboard", "Mouse"],
            Category::Outdoors => &["Tent", "Backpack", "Water Bottle", "Lantern", "Hammock"],
            Category::Apparel => &["Jacket", "Hoodie", "Scarf", "Beanie", "Sneakers", "Gloves"],
            Category::Toys => &["Puzzle", "Robot", "Building Set", "Kite", "Plush Bear"],
            Category::Beauty => &["Hairbrush", "Mirror", "Makeup Bag", "Diffuser", "Soap Dish"],
            Category::Office => &[
                "Desk Organizer",
                "Notebook",
                "Pen Set",
                "Chair",
                "Monitor Stand",
            ],
        }
    }
}

const ADJECTIVES: &[&str] = &[
    "Ergonomic",
    "Rustic",
    "Compact",
    "Heavy-Duty",
    "Sleek",
    "Handcrafted",
    "Vintage",
    "Modern",
    "Portable",
    "Premium",
    "Classic",
    "Lightweight",
    "Deluxe",
    "Minimalist",
    "Foldable",
    "Weatherproof",
];

const MATERIALS: &[&str] = &[
    "Steel", "Wooden", "Cotton", "Granite", "Bamboo", "Leather", "Ceramic", "Aluminum", "Glass",
    "Wool", "Rubber", "Copper", "Marble", "Silicone", "Linen", "Walnut",
];

/// Prices are log-uniform between these, so cheap items are common and a few cost hundreds.
const PRICE_MIN_CENTS: f64 = 300.0;
const PRICE_MAX_CENTS: f64 = 90_000.0;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Product {
    /// 1-based and equal to the popularity rank: product 1 is the most popular.
    pub id: u32,
    pub sku: String,
    pub name: String,
    pub category: Category,
    pub unit_price_cents: u64,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub products: Vec<Product>,
    /// Units in stock per product when the run starts.
    pub stock_initial: u32,
    popularity: Popularity,
}

#[derive(Debug, Clone)]
enum Popularity {
    Uniform,
    Zipf(Zipf<f64>),
}

impl Catalog {
    pub fn new(seed: u64, cfg: &model::Catalog) -> Catalog {
        // Validation rejects an empty catalog; one product keeps the factory total anyway.
        let count = cfg.products.max(1);
        let mut rng = rng::for_component(seed, "orders.catalog");
        let products = (1..=count).map(|id| make_product(id, &mut rng)).collect();
        let popularity = if cfg.zipf_exponent > 0.0 {
            // An invalid exponent (NaN) cannot pass validation; uniform is the safe reading.
            Zipf::new(f64::from(count), cfg.zipf_exponent)
                .map(Popularity::Zipf)
                .unwrap_or(Popularity::Uniform)
        } else {
            Popularity::Uniform
        };
        Catalog {
            products,
            stock_initial: cfg.stock,
            popularity,
        }
    }

    /// A product id drawn by popularity (Zipf over ranks; exponent 0 is uniform).
    pub fn pick(&self, rng: &mut impl rand::Rng) -> u32 {
        let count = self.products.len() as u32;
        match &self.popularity {
            Popularity::Uniform => rng.random_range(1..=count),
            // Zipf yields a float rank in 1..=count; the clamp guards the float edge.
            Popularity::Zipf(zipf) => (zipf.sample(rng) as u32).clamp(1, count),
        }
    }

    /// Units per product when the run starts, indexed by product id; slot 0 (no product)
    /// holds nothing, so `stock[product_id]` needs no offset.
    pub fn initial_stock(&self) -> Vec<u32> {
        let mut stock = vec![self.stock_initial; self.products.len() + 1];
        stock[0] = 0;
        stock
    }

    pub fn product(&self, id: u32) -> Option<&Product> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.products.get(index)
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

fn make_product(id: u32, rng: &mut rng::Rng) -> Product {
    let category = Category::ALL[rng.random_range(0..Category::ALL.len())];
    let nouns = category.nouns();
    let name = format!(
        "{} {} {}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        MATERIALS[rng.random_range(0..MATERIALS.len())],
        nouns[rng.random_range(0..nouns.len())],
    );
    let log_price = rng.random_range(PRICE_MIN_CENTS.ln()..PRICE_MAX_CENTS.ln());
    // Shops price at x.99: round to whole dollars, then take off a cent.
    let dollars = (log_price.exp() / 100.0).round().max(3.0) as u64;
    Product {
        id,
        sku: format!("{}-{id:06}", category.sku_prefix()),
        name,
        category,
        unit_price_cents: dollars * 100 - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(products: u32, zipf_exponent: f64) -> model::Catalog {
        model::Catalog {
            products,
            zipf_exponent,
            stock: 100,
        }
    }

    #[test]
    fn zipf_skews_toward_the_first_ranks() {
        // With exponent 1.1 the top product must be picked far more than rank 1000.
        let catalog = Catalog::new(7, &cfg(5_000, 1.1));
        let mut rng = rng::for_component(7, "test");
        let mut hits = vec![0u32; 5_001];
        for _ in 0..200_000 {
            hits[catalog.pick(&mut rng) as usize] += 1;
        }
        assert!(
            hits[1] > 50 * hits[1000].max(1),
            "{} vs {}",
            hits[1],
            hits[1000]
        );
        assert_eq!(hits[0], 0, "ids are 1-based");
    }

    #[test]
    fn exponent_zero_is_uniform() {
        let catalog = Catalog::new(7, &cfg(10, 0.0));
        let mut rng = rng::for_component(7, "test");
        let mut hits = [0u32; 11];
        for _ in 0..100_000 {
            hits[catalog.pick(&mut rng) as usize] += 1;
        }
        for h in &hits[1..] {
            assert!((9_000..11_000).contains(h), "{hits:?}");
        }
    }

    #[test]
    fn prices_spread_over_the_log_uniform_range() {
        let catalog = Catalog::new(3, &cfg(2_000, 1.0));
        let prices: Vec<u64> = catalog
            .products
            .iter()
            .map(|p| p.unit_price_cents)
            .collect();
        assert!(prices.iter().all(|p| (299..=90_000).contains(p)));
        // Log-uniform: about a third of products under $20, a few over $500.
        let cheap = prices.iter().filter(|p| **p < 2_000).count();
        let dear = prices.iter().filter(|p| **p > 50_000).count();
        assert!((500..900).contains(&cheap), "{cheap}");
        assert!((130..290).contains(&dear), "{dear}");
        assert!(prices.iter().all(|p| p % 100 == 99));
    }

    #[test]
    fn the_catalog_is_a_function_of_the_seed() {
        let a = Catalog::new(9, &cfg(50, 1.0));
        let b = Catalog::new(9, &cfg(50, 1.0));
        let c = Catalog::new(10, &cfg(50, 1.0));
        assert_eq!(a.products, b.products);
        assert_ne!(a.products, c.products);
        assert_eq!(a.product(50).map(|p| p.id), Some(50));
        assert!(a.product(0).is_none() && a.product(51).is_none());
        let stock = a.initial_stock();
        assert_eq!((stock.len(), stock[0], stock[50]), (51, 0, 100));
    }
}
