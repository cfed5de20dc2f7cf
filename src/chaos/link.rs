//! `link`: a fault on the TCP link between doorbuster and a networked broker. When a
//! scenario has link faults, the run puts the built-in fault proxy (`proxy/`) between every
//! client (driver and services) and the broker; this action switches the fault's toxic on
//! at `at` and off at `at + for`. Kafka clients learn the broker's own address from the
//! bootstrap metadata, so on Kafka only the bootstrap connection passes the proxy.

use super::proxy::{Direction, LinkToxic, ToxicSpec};
use super::{ChaosCtx, FaultAction};
use crate::scenario::model::Share;
use crate::transport::BoxFuture;

pub struct Link {
    pub toxic: LinkToxic,
    pub direction: Direction,
    /// The share of connections it reaches.
    pub share: Share,
}

fn name(index: usize) -> String {
    format!("fault-{index}")
}

impl FaultAction for Link {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let spec = ToxicSpec::new(self.toxic.clone())
            .direction(self.direction)
            .share(self.share);
        match &ctx.proxy {
            Some(proxy) => {
                if let Err(e) = proxy.add_toxic(&name(index), spec) {
                    ctx.observer.finding(format!("link fault {index}: {e}"));
                }
            }
            None => ctx
                .observer
                .finding(format!("link fault {index}: no fault proxy in this run")),
        }
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        if let Some(proxy) = &ctx.proxy {
            proxy.remove_toxic(&name(index));
        }
        Box::pin(async {})
    }
}
