//! Which deliveries a service fault touches, decided once for every kind (the toxiproxy
//! rule: probability and targeting live in one wrapper, never in the faults).
//!
//! `keys` picks a share of orders, stably: an order is in or out for the whole window.
//! `share` picks a share of deliveries; the draw includes how often the order was already
//! delivered to this subscription, so a redelivery is drawn again (an `errors: 5%` fault does
//! not make the same 5 % fail forever).

use crate::chaos::model::FaultScope;
use crate::events::EventMeta;
use crate::rng::unit_for_item;

pub fn applies(seed: u64, index: usize, scope: FaultScope, meta: &EventMeta, attempt: u16) -> bool {
    let component = format!("fault.{index}");
    let in_keys = scope.keys.fraction() >= 1.0
        || unit_for_item(seed, &component, meta.order_id) < scope.keys.fraction();
    let draw = meta
        .event_id
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(u64::from(attempt));
    let in_share = scope.share.fraction() >= 1.0
        || unit_for_item(seed, &format!("{component}.share"), draw) < scope.share.fraction();
    in_keys && in_share
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::Share;

    fn meta(order: u64, event: u64) -> EventMeta {
        EventMeta {
            event_id: event,
            order_id: order,
            ..Default::default()
        }
    }

    #[test]
    fn keys_are_stable_and_shares_come_out_near_their_value() {
        let scope = FaultScope {
            share: Share(1.0),
            keys: Share(0.1),
        };
        let hit = (0..10_000)
            .filter(|&o| applies(7, 0, scope, &meta(o, o), 0))
            .count();
        assert!((900..1_100).contains(&hit), "{hit}");
        // The same order is in or out whatever the event or attempt.
        for o in 0..100 {
            let first = applies(7, 0, scope, &meta(o, 1), 0);
            assert_eq!(first, applies(7, 0, scope, &meta(o, 99), 3));
        }
        let scope = FaultScope {
            share: Share(0.05),
            keys: Share(1.0),
        };
        let hit = (0..20_000)
            .filter(|&e| applies(7, 1, scope, &meta(e, e), 0))
            .count();
        assert!((800..1_200).contains(&hit), "{hit}");
        assert!((0..1_000).all(|e| applies(7, 1, FaultScope::ALL, &meta(e, e), 0)));
    }
}
