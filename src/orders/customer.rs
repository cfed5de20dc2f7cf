//! Fake shoppers: a name, an email derived from it, a phone and an address that agree.
//!
//! Called by the order factory with the order's own generator; it may not make generators,
//! read time or know about products. Names and street names come from `fake`; city, state,
//! ZIP prefix, area code and sales tax come together from one table below, because `fake`
//! draws each address field independently (state FL with a Seattle ZIP).

use std::fmt::Write as _;

use fake::Fake;
use fake::faker::address::en::StreetName;
use fake::faker::name::en::{FirstName, LastName};
use rand::RngExt;

/// A real US city with the values that must agree with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct City {
    pub name: &'static str,
    pub state: &'static str,
    /// The first three digits of the city's ZIP codes.
    pub zip3: &'static str,
    pub area_code: &'static str,
    /// The state's base sales tax in basis points (local add-ons are left out).
    pub tax_bps: u64,
}

const fn city(
    name: &'static str,
    state: &'static str,
    zip3: &'static str,
    area_code: &'static str,
    tax_bps: u64,
) -> City {
    City {
        name,
        state,
        zip3,
        area_code,
        tax_bps,
    }
}

pub const CITIES: &[City] = &[
    city("New York", "NY", "100", "212", 400),
    city("Brooklyn", "NY", "112", "718", 400),
    city("Los Angeles", "CA", "900", "213", 725),
    city("San Francisco", "CA", "941", "415", 725),
    city("San Diego", "CA", "921", "619", 725),
    city("Sacramento", "CA", "958", "916", 725),
    city("Chicago", "IL", "606", "312", 625),
    city("Houston", "TX", "770", "713", 625),
    city("Austin", "TX", "787", "512", 625),
    city("Dallas", "TX", "752", "214", 625),
    city("Phoenix", "AZ", "850", "602", 560),
    city("Tucson", "AZ", "857", "520", 560),
    city("Philadelphia", "PA", "191", "215", 600),
    city("Pittsburgh", "PA", "152", "412", 600),
    city("Seattle", "WA", "981", "206", 650),
    city("Portland", "OR", "972", "503", 0),
    city("Denver", "CO", "802", "303", 290),
    city("Boston", "MA", "021", "617", 625),
    city("Atlanta", "GA", "303", "404", 400),
    city("Miami", "FL", "331", "305", 600),
    city("Orlando", "FL", "328", "407", 600),
    city("Tampa", "FL", "336", "813", 600),
    city("Charlotte", "NC", "282", "704", 475),
    city("Nashville", "TN", "372", "615", 700),
    city("Minneapolis", "MN", "554", "612", 688),
    city("Detroit", "MI", "482", "313", 600),
    city("Columbus", "OH", "432", "614", 575),
    city("Las Vegas", "NV", "891", "702", 685),
    city("Salt Lake City", "UT", "841", "801", 485),
    city("Baltimore", "MD", "212", "410", 600),
    city("Kansas City", "MO", "641", "816", 423),
    city("Milwaukee", "WI", "532", "414", 500),
    city("Newark", "NJ", "071", "973", 663),
    city("Richmond", "VA", "232", "804", 530),
    city("Indianapolis", "IN", "462", "317", 700),
];

/// Consumer mail domains with rough weights: most shoppers use a handful of big providers.
const EMAIL_DOMAINS: &[(&str, u32)] = &[
    ("gmail.com", 45),
    ("yahoo.com", 12),
    ("outlook.com", 10),
    ("icloud.com", 10),
    ("hotmail.com", 8),
    ("aol.com", 4),
    ("comcast.net", 4),
    ("proton.me", 3),
    ("att.net", 2),
    ("msn.com", 2),
];
const EMAIL_DOMAIN_WEIGHT: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub email: String,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub line1: String,
    pub line2: Option<String>,
    pub city: &'static str,
    pub state: &'static str,
    pub postal_code: String,
    pub country: &'static str,
}

/// A shopper and where they live; the phone's area code matches the city.
pub fn make(rng: &mut impl rand::Rng) -> (Customer, Address, &'static City) {
    let first_name: &'static str = FirstName().fake_with_rng(rng);
    let last_name: &'static str = LastName().fake_with_rng(rng);
    let home = &CITIES[rng.random_range(0..CITIES.len())];
    let customer = Customer {
        id: prefixed_id("cus_", 14, rng),
        first_name,
        last_name,
        email: email_for(first_name, last_name, rng),
        phone: format!(
            // 555-0100..0199 is the range US numbering reserves for fiction.
            "+1-{}-555-01{:02}",
            home.area_code,
            rng.random_range(0..100u32)
        ),
    };
    let street: String = StreetName().fake_with_rng(rng);
    let line2 = match rng.random_range(0..10u32) {
        0..=1 => Some(format!("Apt {}", rng.random_range(1..=40u32))),
        2 => Some(format!("Suite {}", rng.random_range(100..=999u32))),
        _ => None,
    };
    let address = Address {
        line1: format!("{} {street}", rng.random_range(1..=9999u32)),
        line2,
        city: home.name,
        state: home.state,
        postal_code: format!("{}{:02}", home.zip3, rng.random_range(1..=99u32)),
        country: "US",
    };
    (customer, address, home)
}

/// An address people really type: `jane.doe42@gmail.com`, `j.doe1987@yahoo.com`.
pub fn email_for(first: &str, last: &str, rng: &mut impl rand::Rng) -> String {
    let mut email = String::with_capacity(first.len() + last.len() + 20);
    let pattern = rng.random_range(0..10u32);
    match pattern {
        0..=4 => {
            push_slug(&mut email, first);
            email.push('.');
            push_slug(&mut email, last);
            let _ = write!(email, "{}", rng.random_range(1..100u32));
        }
        5..=7 => {
            push_slug(&mut email, first.get(..1).unwrap_or("x"));
            email.push('.');
            push_slug(&mut email, last);
            let _ = write!(email, "{}", rng.random_range(1958..=2006u32));
        }
        _ => {
            push_slug(&mut email, first);
            push_slug(&mut email, last);
            let _ = write!(email, "{}", rng.random_range(100..1000u32));
        }
    }
    email.push('@');
    let mut draw = rng.random_range(0..EMAIL_DOMAIN_WEIGHT);
    let mut domain = EMAIL_DOMAINS[0].0;
    for (name, weight) in EMAIL_DOMAINS {
        if draw < *weight {
            domain = name;
            break;
        }
        draw -= weight;
    }
    email.push_str(domain);
    email
}

/// Lowercase ASCII letters and digits only: `O'Keefe` becomes `okeefe`.
fn push_slug(out: &mut String, name: &str) {
    out.extend(
        name.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase()),
    );
}

/// A Stripe-looking id: a prefix and base62 characters from the generator.
pub fn prefixed_id(prefix: &str, len: usize, rng: &mut impl rand::Rng) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend((0..len).map(|_| char::from(ALPHABET[rng.random_range(0..62usize)])));
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    #[test]
    fn emails_are_derived_from_the_name() {
        // Every email's local part carries the (slugged) last name, and the first name or
        // its initial, so a shopper's email never belongs to someone else.
        for i in 0..2_000 {
            let mut rng = rng::for_item(1, "test", i);
            let (customer, _, _) = make(&mut rng);
            let (local, domain) = customer.email.split_once('@').expect("one @");
            let mut last = String::new();
            push_slug(&mut last, customer.last_name);
            let mut first = String::new();
            push_slug(&mut first, customer.first_name);
            assert!(local.contains(&last), "{} {last}", customer.email);
            assert!(local.starts_with(&first[..1]), "{}", customer.email);
            assert!(local.ends_with(|c: char| c.is_ascii_digit()));
            assert!(local.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
            assert!(EMAIL_DOMAINS.iter().any(|(d, _)| *d == domain));
        }
    }

    #[test]
    fn city_state_zip_and_area_code_agree() {
        for i in 0..2_000 {
            let mut rng = rng::for_item(2, "test", i);
            let (customer, address, home) = make(&mut rng);
            let row = CITIES
                .iter()
                .find(|c| c.name == address.city)
                .expect("city from the table");
            assert_eq!(row, home);
            assert_eq!(address.state, row.state);
            assert!(address.postal_code.starts_with(row.zip3));
            assert_eq!(address.postal_code.len(), 5);
            assert!(
                customer
                    .phone
                    .starts_with(&format!("+1-{}-", row.area_code))
            );
        }
    }

    #[test]
    fn the_city_table_has_unique_zip_prefixes() {
        let mut zips: Vec<&str> = CITIES.iter().map(|c| c.zip3).collect();
        zips.sort_unstable();
        zips.dedup();
        assert_eq!(zips.len(), CITIES.len());
        assert_eq!(
            EMAIL_DOMAINS.iter().map(|(_, w)| w).sum::<u32>(),
            EMAIL_DOMAIN_WEIGHT
        );
    }
}
