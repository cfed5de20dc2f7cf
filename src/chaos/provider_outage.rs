//! `provider_outage`: the payment-provider mock answers a share of calls with an error
//! status (5xx, or 429 with Retry-After) and may be slow; nothing is captured for a failed
//! call. A share of answers may be lost: the card is charged and the answer never comes in
//! time, the classic cause of double charges when a client retries with a fresh key. The
//! payment service retries with backoff and the same idempotency key.
//!
//! Chaos does not know the provider: it switches an outage through [`OutageSwitch`], which
//! the provider mock implements.

use std::time::Duration;

use super::{ChaosCtx, FaultAction};
use crate::config::units::{LatencyDist, Share};
use crate::transport::BoxFuture;

/// A provider outage while it is switched on: a share of calls fail with `status`, and
/// every call takes `latency` instead of the usual distribution when it is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub error_share: f64,
    pub status: u16,
    pub latency: Option<LatencyDist>,
    pub retry_after: Option<Duration>,
    /// Share of the calls that do not fail whose answer is lost.
    pub lost_answers: f64,
}

impl Outage {
    /// Every call fails with `status` (and its `Retry-After`), at the usual latency.
    pub fn down(status: u16, retry_after: Option<Duration>) -> Outage {
        Outage {
            error_share: 1.0,
            status,
            latency: None,
            retry_after,
            lost_answers: 0.0,
        }
    }
}

/// What a provider offers the outage fault.
pub trait OutageSwitch: Send + Sync {
    fn set_outage(&self, outage: Outage);
    fn clear_outage(&self);
}

pub struct ProviderOutage {
    pub errors: Share,
    pub status: u16,
    pub latency: Option<LatencyDist>,
    pub retry_after: Option<Duration>,
    pub lost_answers: Share,
}

impl FaultAction for ProviderOutage {
    fn start<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        ctx.provider.set_outage(Outage {
            error_share: self.errors.fraction(),
            status: self.status,
            latency: self.latency,
            retry_after: self.retry_after,
            lost_answers: self.lost_answers.fraction(),
        });
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        ctx.provider.clear_outage();
        Box::pin(async {})
    }
}
