//! `latency`: added processing time on a share of the service's deliveries, drawn from a
//! distribution (fixed, uniform, normal, log-normal).

use super::delivery::{Decision, DeliveryCtx, DeliveryFault};
use crate::config::units::LatencyDist;
use crate::rng::Rng;

pub struct Latency(pub LatencyDist);

impl DeliveryFault for Latency {
    fn decide(&self, _: &DeliveryCtx, rng: &mut Rng) -> Decision {
        Decision::Delay(crate::latency::sample(&self.0, rng))
    }
}
