//! `errors`: the service fails a share of its deliveries (nack, no effect applied), so the
//! broker delivers them again.

use super::delivery::{Decision, DeliveryCtx, DeliveryFault, Failure};
use crate::rng::Rng;

pub struct Errors;

impl DeliveryFault for Errors {
    fn decide(&self, _: &DeliveryCtx, _: &mut Rng) -> Decision {
        Decision::Fail(Failure::Errors)
    }
}
