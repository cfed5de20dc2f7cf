//! The payment-service-provider test cards that orders pay with and the provider mock knows.
//!
//! Sits between the order factory (which picks a card per order) and the provider mock
//! (which maps a card token back to an outcome). It is a static table and pure lookups: it
//! may not generate randomness or know about orders. The numbers and tokens are the public
//! test values PSPs document (Stripe's), so they are Luhn-valid and obviously not real cards.

/// What the provider does with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    Approve,
    /// Declined with this decline code (Stripe's `decline_code` vocabulary).
    Decline(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    /// The token a checkout hands to the payment service instead of the card number.
    pub token: &'static str,
    pub number: &'static str,
    pub brand: &'static str,
    pub funding: &'static str,
    pub outcome: CardOutcome,
    /// Relative weight when a card of this outcome is chosen, roughly market share.
    pub weight: u32,
}

impl TestCard {
    pub fn last4(&self) -> &'static str {
        &self.number[self.number.len().saturating_sub(4)..]
    }
}

const fn approve(
    token: &'static str,
    number: &'static str,
    brand: &'static str,
    funding: &'static str,
    weight: u32,
) -> TestCard {
    TestCard {
        token,
        number,
        brand,
        funding,
        outcome: CardOutcome::Approve,
        weight,
    }
}

const fn decline(
    token: &'static str,
    number: &'static str,
    code: &'static str,
    weight: u32,
) -> TestCard {
    TestCard {
        token,
        number,
        brand: "visa",
        funding: "credit",
        outcome: CardOutcome::Decline(code),
        weight,
    }
}

/// Cards the provider captures.
pub const APPROVING: &[TestCard] = &[
    approve("tok_visa", "4242424242424242", "visa", "credit", 40),
    approve("tok_visa_debit", "4000056655665556", "visa", "debit", 15),
    approve(
        "tok_mastercard",
        "5555555555554444",
        "mastercard",
        "credit",
        15,
    ),
    approve(
        "tok_mastercard_debit",
        "5200828282828210",
        "mastercard",
        "debit",
        7,
    ),
    approve("tok_amex", "378282246310005", "amex", "credit", 12),
    approve("tok_discover", "6011111111111117", "discover", "credit", 6),
    approve("tok_diners", "3056930009020004", "diners", "credit", 2),
    approve("tok_jcb", "3566002020360505", "jcb", "credit", 2),
    approve("tok_unionpay", "6200000000000005", "unionpay", "credit", 1),
];

/// Cards the provider declines, each with its decline code.
pub const DECLINING: &[TestCard] = &[
    decline(
        "tok_chargeDeclined",
        "4000000000000002",
        "generic_decline",
        45,
    ),
    decline(
        "tok_chargeDeclinedInsufficientFunds",
        "4000000000009995",
        "insufficient_funds",
        30,
    ),
    decline(
        "tok_chargeDeclinedExpiredCard",
        "4000000000000069",
        "expired_card",
        10,
    ),
    decline(
        "tok_chargeDeclinedLostCard",
        "4000000000009987",
        "lost_card",
        5,
    ),
    decline(
        "tok_chargeDeclinedStolenCard",
        "4000000000009979",
        "stolen_card",
        5,
    ),
    decline(
        "tok_chargeDeclinedIncorrectCvc",
        "4000000000000127",
        "incorrect_cvc",
        5,
    ),
];

/// The decline code for a token or number the provider does not know.
pub const INVALID_CARD: &str = "invalid_card";

/// A decline code as a small number (the provider keeps one per idempotency key, so it
/// packs them): the table's codes by position, then [`INVALID_CARD`] for anything else.
pub fn decline_number(code: &str) -> u8 {
    let found = DECLINING
        .iter()
        .position(|card| matches!(card.outcome, CardOutcome::Decline(c) if c == code));
    found.map_or(DECLINING.len() as u8, |i| i as u8)
}

/// The code [`decline_number`] numbered `n`.
pub fn decline_code(n: u8) -> &'static str {
    match DECLINING.get(usize::from(n)).map(|card| card.outcome) {
        Some(CardOutcome::Decline(code)) => code,
        _ => INVALID_CARD,
    }
}

/// The card a token names. Also accepts a bare test number or `tok_<number>`, because a
/// user's payment service in observe mode may send either.
pub fn lookup(token: &str) -> Option<&'static TestCard> {
    let bare = token.strip_prefix("tok_").unwrap_or(token);
    APPROVING
        .iter()
        .chain(DECLINING)
        .find(|card| card.token == token || card.number == bare)
}

/// Picks a card from `table` by weight, given a uniform draw in `0..total_weight(table)`.
pub fn pick_weighted(table: &'static [TestCard], draw: u32) -> &'static TestCard {
    let mut left = draw;
    for card in table {
        if left < card.weight {
            return card;
        }
        left -= card.weight;
    }
    // Only reached for a draw beyond the total; the first card is a safe answer.
    &table[0]
}

pub const fn total_weight(table: &[TestCard]) -> u32 {
    let mut sum = 0;
    let mut i = 0;
    while i < table.len() {
        sum += table[i].weight;
        i += 1;
    }
    sum
}

/// The Luhn check every real card number passes.
pub fn luhn_valid(number: &str) -> bool {
    let mut sum = 0u32;
    let mut digits = 0usize;
    for (i, c) in number.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        digits += 1;
    }
    digits >= 12 && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_card_passes_luhn() {
        for card in APPROVING.iter().chain(DECLINING) {
            assert!(luhn_valid(card.number), "{}", card.number);
        }
        assert!(!luhn_valid("4242424242424241"));
    }

    #[test]
    fn tokens_and_numbers_map_back_to_their_card() {
        let visa = lookup("tok_visa").expect("known token");
        assert_eq!(visa.outcome, CardOutcome::Approve);
        assert_eq!(lookup("4000000000009995"), lookup("tok_4000000000009995"));
        assert_eq!(
            lookup("tok_chargeDeclinedInsufficientFunds").map(|c| c.outcome),
            Some(CardOutcome::Decline("insufficient_funds"))
        );
        assert!(lookup("tok_nope").is_none());
    }

    #[test]
    fn decline_codes_round_trip_through_their_numbers() {
        for card in DECLINING {
            let CardOutcome::Decline(code) = card.outcome else {
                panic!("{} declines", card.token);
            };
            assert_eq!(decline_code(decline_number(code)), code);
        }
        assert_eq!(decline_code(decline_number(INVALID_CARD)), INVALID_CARD);
        assert_eq!(decline_code(decline_number("no_such_code")), INVALID_CARD);
    }

    #[test]
    fn weighted_pick_covers_the_table() {
        let total = total_weight(APPROVING);
        assert_eq!(pick_weighted(APPROVING, 0).token, "tok_visa");
        assert_eq!(pick_weighted(APPROVING, total - 1).token, "tok_unionpay");
    }
}
