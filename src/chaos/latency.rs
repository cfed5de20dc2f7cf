//! `latency`: added processing time on a share of the service's deliveries, drawn from a
//! distribution (fixed, uniform, normal, log-normal).

use super::{Active, ChaosCtx, FaultAction, write};
use crate::scenario::model::{FaultScope, LatencyDist};
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

pub struct Latency {
    pub service: ServiceKind,
    pub add: LatencyDist,
    pub scope: FaultScope,
}

impl FaultAction for Latency {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let active = Active {
            index,
            scope: self.scope,
            what: self.add,
        };
        write(&ctx.chaos.service(self.service).latency, Some(active));
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        write(&ctx.chaos.service(self.service).latency, None);
        Box::pin(async {})
    }
}
