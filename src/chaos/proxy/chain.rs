//! The wrapper that decides, once, which toxics act on a link, and runs them in order.
//!
//! Toxics never check direction or share themselves (toxiproxy's rule): a link keeps a chain
//! holding only the toxics whose direction covers its flow and whose share reaches its
//! connection. A connection's `ticket` (a uniform draw in `0..1` from the connection's seeded
//! generator) is reached by every toxic with `share > ticket`, so the decision depends on the
//! seed and the connection number alone, never on timing or on the order toxics were added.

use std::collections::BTreeMap;

use crate::rng::Rng;

use super::spec::LinkToxic;
use super::spec::{Flow, ToxicSpec};
use super::toxic::{Chunk, Toxic, ToxicAction};
use super::{bandwidth::Bandwidth, blackhole::Blackhole, latency::Latency, reset::Reset};

/// The toxics switched on, by name. Names order the chain, so it is the same on every link.
pub type ToxicSet = BTreeMap<String, ToxicSpec>;

/// Whether a toxic reaches the link carrying `flow` of a connection holding `ticket`.
pub fn reaches(spec: &ToxicSpec, flow: Flow, ticket: f64) -> bool {
    spec.direction.covers(flow) && ticket < spec.share.fraction()
}

struct Installed {
    name: String,
    spec: ToxicSpec,
    toxic: Box<dyn Toxic>,
}

/// The toxics acting on one link.
pub struct ToxicChain {
    flow: Flow,
    ticket: f64,
    installed: Vec<Installed>,
}

impl ToxicChain {
    pub fn new(flow: Flow, ticket: f64) -> ToxicChain {
        ToxicChain {
            flow,
            ticket,
            installed: Vec::new(),
        }
    }

    /// Follows a change of the toxic set. A toxic that is unchanged keeps its instance (and
    /// so its state: the bandwidth bucket does not refill because a latency was added).
    /// Returns true when a newly installed toxic resets the connection.
    pub fn sync(&mut self, set: &ToxicSet) -> bool {
        let mut previous = std::mem::take(&mut self.installed);
        let mut resets = false;
        for (name, spec) in set {
            if !reaches(spec, self.flow, self.ticket) {
                continue;
            }
            let kept = previous
                .iter()
                .position(|i| i.name == *name && i.spec == *spec)
                .map(|at| previous.swap_remove(at));
            let installed = kept.unwrap_or_else(|| {
                let toxic = build(&spec.toxic);
                resets |= toxic.resets_on_install();
                Installed {
                    name: name.clone(),
                    spec: spec.clone(),
                    toxic,
                }
            });
            self.installed.push(installed);
        }
        resets
    }

    /// The fate of one chunk: each toxic in turn, stopping at the first drop or reset.
    pub fn apply(&mut self, chunk: Chunk, rng: &mut Rng) -> ToxicAction {
        let mut deliver_at = chunk.read_at;
        for installed in &mut self.installed {
            match installed.toxic.apply(chunk, deliver_at, rng) {
                ToxicAction::Deliver(at) => deliver_at = deliver_at.max(at),
                stop @ (ToxicAction::Drop | ToxicAction::Reset) => return stop,
            }
        }
        ToxicAction::Deliver(deliver_at)
    }
}

/// A fresh toxic for one link.
fn build(toxic: &LinkToxic) -> Box<dyn Toxic> {
    match *toxic {
        LinkToxic::Latency { latency, jitter } => Box::new(Latency::new(latency, jitter)),
        LinkToxic::Bandwidth { bytes_per_sec } => Box::new(Bandwidth::new(bytes_per_sec)),
        LinkToxic::Reset => Box::new(Reset),
        LinkToxic::Blackhole => Box::new(Blackhole),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::chaos::proxy::spec::{Direction, LinkToxic};
    use crate::config::units::Share;

    fn set(entries: &[(&str, ToxicSpec)]) -> ToxicSet {
        entries
            .iter()
            .map(|(name, spec)| ((*name).to_owned(), spec.clone()))
            .collect()
    }

    #[test]
    fn direction_and_share_are_applied_by_the_chain() {
        // An upstream-only blackhole must leave the downstream link alone, and a 30 % share
        // must skip a connection whose ticket is 0.5.
        let spec = ToxicSpec::new(LinkToxic::Blackhole).direction(Direction::Upstream);
        let chunk = Chunk { len: 3, read_at: 0 };
        let mut rng = crate::rng::for_item(1, "proxy.upstream", 0);

        let mut up = ToxicChain::new(Flow::Upstream, 0.5);
        up.sync(&set(&[("hole", spec.clone())]));
        assert_eq!(up.apply(chunk, &mut rng), ToxicAction::Drop);

        let mut down = ToxicChain::new(Flow::Downstream, 0.5);
        down.sync(&set(&[("hole", spec.clone())]));
        assert_eq!(down.apply(chunk, &mut rng), ToxicAction::Deliver(0));

        let mut unlucky = ToxicChain::new(Flow::Upstream, 0.5);
        unlucky.sync(&set(&[("hole", spec.share(Share(0.3)))]));
        assert_eq!(unlucky.apply(chunk, &mut rng), ToxicAction::Deliver(0));
    }

    #[test]
    fn reset_fires_on_install_only_once() {
        let mut chain = ToxicChain::new(Flow::Downstream, 0.0);
        let reset = set(&[("rst", ToxicSpec::new(LinkToxic::Reset))]);
        assert!(chain.sync(&reset));
        assert!(
            !chain.sync(&reset),
            "an unchanged reset is not installed again"
        );
    }

    #[test]
    fn toxics_compose_in_name_order() {
        // 10 ms latency then 1 KB/s bandwidth: a 100-byte chunk leaves at 10 ms + 100 ms.
        let mut chain = ToxicChain::new(Flow::Upstream, 0.0);
        chain.sync(&set(&[
            (
                "a-latency",
                ToxicSpec::new(LinkToxic::Latency {
                    latency: Duration::from_millis(10),
                    jitter: Duration::ZERO,
                }),
            ),
            (
                "b-bandwidth",
                ToxicSpec::new(LinkToxic::Bandwidth {
                    bytes_per_sec: 1_000,
                }),
            ),
        ]));
        let mut rng = crate::rng::for_item(1, "proxy.upstream", 0);
        let chunk = Chunk {
            len: 100,
            read_at: 0,
        };
        assert_eq!(
            chain.apply(chunk, &mut rng),
            ToxicAction::Deliver(110_000_000)
        );
    }
}
