//! `replay`: rewind a service's consumer group to the oldest retained event or to a run
//! time. Every retained event is read again; an idempotent service must not apply its
//! effects twice, and its derived state must still equal the ground truth.

use super::{ChaosCtx, FaultAction};
use crate::chaos::model::ReplayTo;
use crate::topology::ServiceKind;
use crate::transport::{BoxFuture, RewindTo};

pub struct Replay {
    pub service: ServiceKind,
    pub to: ReplayTo,
}

impl FaultAction for Replay {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let to = match self.to {
                ReplayTo::Earliest => RewindTo::Earliest,
                ReplayTo::Time(t) => RewindTo::Time(crate::clock::duration_ns(t)),
            };
            let group = self.service.name();
            match ctx.transport.rewind(group, to).await {
                Ok(()) => {
                    let lag = ctx.transport.lag(group).await.ok();
                    let note = lag.map_or("rewound".to_owned(), |n| {
                        format!("rewound: {n} events to read again")
                    });
                    ctx.observer.fault_note(index, note);
                }
                Err(e) => {
                    ctx.observer
                        .fault_note(index, format!("rewind failed: {e}"));
                    ctx.observer
                        .finding(format!("replay of {group} failed: {e}"));
                }
            }
        })
    }

    fn stop<'a>(&'a self, _: usize, _: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
