//! `pause`: the service stops taking deliveries but keeps its group membership, its
//! partitions and its state (a GC pause, a stuck thread). Its backlog grows; nothing is
//! redelivered.

use super::{ChaosCtx, FaultAction};
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

pub struct Pause(pub ServiceKind);

impl FaultAction for Pause {
    fn start<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        ctx.chaos.service(self.0).paused.send_replace(true);
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        ctx.chaos.service(self.0).paused.send_replace(false);
        Box::pin(async {})
    }
}
