//! `crash`: the service's consumers stop without committing or acking anything they hold;
//! the runner brings new ones up when the fault stops (`restart_after`). The broker hands
//! the uncommitted events to the new members: redeliveries follow.

use super::{ChaosCtx, FaultAction};
use crate::topology::ServiceKind;
use crate::transport::BoxFuture;

pub struct Crash(pub ServiceKind);

impl FaultAction for Crash {
    fn start<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        ctx.chaos.service(self.0).down.send_replace(true);
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        ctx.chaos.service(self.0).down.send_replace(false);
        Box::pin(async {})
    }
}
