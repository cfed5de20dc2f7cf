//! `link`: a fault on the TCP link between doorbuster and a networked broker. When a
//! scenario has link faults, the run puts the built-in fault proxy (`proxy/`) between every
//! client (driver and services) and the broker; this action switches the fault's toxic on
//! at `at` and off at `at + for`. In observe mode the fault names (`on:`) one of the user's
//! own links (`observe.links`): a proxy the run started where the user's services connect,
//! in front of their broker or database. Kafka clients learn the broker's own address from the
//! bootstrap metadata, so on Kafka only the bootstrap connection passes the proxy.

use super::proxy::{Direction, LinkToxic, ToxicSpec};
use super::{ChaosCtx, FaultAction};
use crate::config::units::Share;
use crate::transport::BoxFuture;

pub struct Link {
    pub toxic: LinkToxic,
    pub direction: Direction,
    /// The share of connections it reaches.
    pub share: Share,
    /// One of the user's links (`observe.links`); `None` is doorbuster's own to the broker.
    pub on: Option<String>,
}

impl Link {
    /// The proxy this fault acts through.
    fn proxy<'a>(&self, ctx: &'a ChaosCtx) -> Option<&'a super::proxy::ProxyHandle> {
        match &self.on {
            Some(name) => ctx.links.get(name),
            None => ctx.proxy.as_ref(),
        }
    }
}

fn name(index: usize) -> String {
    format!("fault-{index}")
}

impl FaultAction for Link {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let spec = ToxicSpec::new(self.toxic.clone())
            .direction(self.direction)
            .share(self.share);
        match self.proxy(ctx) {
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
        if let Some(proxy) = self.proxy(ctx) {
            proxy.remove_toxic(&name(index));
            let s = proxy.stats();
            ctx.observer.fault_note(
                index,
                format!(
                    "through the proxy so far: {} connections, {} bytes up, {} bytes down",
                    s.connections_accepted, s.bytes_upstream, s.bytes_downstream
                ),
            );
        }
        Box::pin(async {})
    }
}
