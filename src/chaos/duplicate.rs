//! `duplicate`: a share of the service's deliveries arrive twice. This is the duplicate a
//! consumer sees after a lost ack or a rebalance, which packet-level chaos cannot produce;
//! an idempotent service absorbs it, a non-idempotent one applies its effect again.

use super::{Active, ChaosCtx, FaultAction, write};
use crate::scenario::model::FaultScope;
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

pub struct Duplicate {
    pub service: ServiceKind,
    pub scope: FaultScope,
}

impl FaultAction for Duplicate {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let active = Active {
            index,
            scope: self.scope,
            what: (),
        };
        write(&ctx.chaos.service(self.service).duplicate, Some(active));
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        write(&ctx.chaos.service(self.service).duplicate, None);
        Box::pin(async {})
    }
}
