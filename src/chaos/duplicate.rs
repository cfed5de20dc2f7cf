//! `duplicate`: a share of the service's deliveries arrive twice. This is the duplicate a
//! consumer sees after a lost ack or a rebalance, which packet-level chaos cannot produce;
//! an idempotent service absorbs it, a non-idempotent one applies its effect again.

use super::delivery::{Decision, DeliveryCtx, DeliveryFault};
use crate::rng::Rng;

pub struct Duplicate;

impl DeliveryFault for Duplicate {
    fn decide(&self, _: &DeliveryCtx, _: &mut Rng) -> Decision {
        Decision::Twice
    }
}
