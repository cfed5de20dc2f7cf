//! `errors`: the service fails a share of its deliveries (nack, no effect applied), so the
//! broker delivers them again.

use super::{Active, ChaosCtx, FaultAction, write};
use crate::scenario::model::FaultScope;
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

pub struct Errors {
    pub service: ServiceKind,
    pub scope: FaultScope,
}

impl FaultAction for Errors {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let active = Active {
            index,
            scope: self.scope,
            what: (),
        };
        write(&ctx.chaos.service(self.service).errors, Some(active));
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        write(&ctx.chaos.service(self.service).errors, None);
        Box::pin(async {})
    }
}
