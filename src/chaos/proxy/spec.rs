//! What a toxic is, as data: the serde shapes a scenario or the CLI hands to the proxy.
//!
//! A `ToxicSpec` names one fault (`LinkToxic`), the direction it acts in and the share of
//! connections it reaches. It is plain validated data, like the scenario model it will be
//! carried in: building the running toxic from it is `chain::build`'s job, deciding which
//! connection and direction it reaches is the chain's (`chain.rs`). Nothing here does I/O.

use std::time::Duration;

use crate::config::units::Share;

/// The largest latency or jitter a toxic takes: anything longer is a typo, not a link.
pub const LATENCY_MAX: Duration = Duration::from_secs(3600);

/// One link fault, as the scenario and the CLI write it.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkToxic {
    /// Delays every chunk by `latency`, give or take a uniform `jitter`.
    Latency {
        latency: Duration,
        #[serde(default)]
        jitter: Duration,
    },
    /// Caps the rate at which bytes pass, per connection and direction.
    Bandwidth { bytes_per_sec: u64 },
    /// Resets connections (TCP RST) when switched on, and new ones while it is on.
    Reset,
    /// Reads and drops every byte: the connection stays open but nothing arrives.
    Blackhole,
}

impl LinkToxic {
    /// Every kind, as written in YAML.
    pub const KINDS: [&str; 4] = ["latency", "bandwidth", "reset", "blackhole"];

    /// The toxic's kind, as written in YAML (`latency`, `bandwidth`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            LinkToxic::Latency { .. } => "latency",
            LinkToxic::Bandwidth { .. } => "bandwidth",
            LinkToxic::Reset => "reset",
            LinkToxic::Blackhole => "blackhole",
        }
    }
}

/// Which way through the proxy a toxic acts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to upstream server (requests, produces).
    Upstream,
    /// Upstream server to client (responses, fetches).
    Downstream,
    #[default]
    Both,
}

impl Direction {
    /// Whether a toxic set for `self` acts on the one-way `flow`.
    pub(super) fn covers(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Direction::Both, _)
                | (Direction::Upstream, Flow::Upstream)
                | (Direction::Downstream, Flow::Downstream)
        )
    }
}

/// One of the two one-way byte streams of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Upstream,
    Downstream,
}

/// A toxic with where it acts: the unit `ProxyHandle::add_toxic` takes.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToxicSpec {
    pub toxic: LinkToxic,
    #[serde(default)]
    pub direction: Direction,
    /// The share of connections it reaches, decided once per connection from the seed.
    #[serde(default = "share_all")]
    pub share: Share,
}

fn share_all() -> Share {
    Share(1.0)
}

impl ToxicSpec {
    /// A toxic on both directions of every connection.
    pub fn new(toxic: LinkToxic) -> ToxicSpec {
        ToxicSpec {
            toxic,
            direction: Direction::Both,
            share: share_all(),
        }
    }

    pub fn direction(mut self, direction: Direction) -> ToxicSpec {
        self.direction = direction;
        self
    }

    pub fn share(mut self, share: Share) -> ToxicSpec {
        self.share = share;
        self
    }

    /// Why this spec cannot run, if it cannot. Pure, so the scenario validator can call it
    /// too and report the problem with a position instead of at fault time.
    pub fn problem(&self) -> Option<String> {
        let share = self.share.fraction();
        if !(0.0..=1.0).contains(&share) {
            return Some(format!("share must be within 0% and 100%, not {share}"));
        }
        match &self.toxic {
            LinkToxic::Latency { latency, jitter } => {
                if *latency > LATENCY_MAX || *jitter > LATENCY_MAX {
                    return Some(format!(
                        "latency and jitter must be at most {}s",
                        LATENCY_MAX.as_secs()
                    ));
                }
            }
            LinkToxic::Bandwidth { bytes_per_sec: 0 } => {
                return Some(
                    "bytes_per_sec must be positive (use blackhole to stop traffic)".into(),
                );
            }
            LinkToxic::Bandwidth { .. } | LinkToxic::Reset | LinkToxic::Blackhole => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_with_defaults() {
        // The scenario will carry specs as data: the defaults must be "both ways, everyone".
        let spec: ToxicSpec = serde_json::from_str(
            r#"{"toxic": {"kind": "latency", "latency": {"secs": 0, "nanos": 100000000}}}"#,
        )
        .expect("a latency spec parses");
        assert_eq!(
            spec,
            ToxicSpec::new(LinkToxic::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::ZERO
            })
        );
    }

    #[test]
    fn unknown_kinds_and_fields_are_refused() {
        assert!(serde_json::from_str::<LinkToxic>(r#"{"kind": "latncy"}"#).is_err());
        // Serde cannot deny fields beside a tagged unit variant (`reset`, `blackhole`), so
        // the check is shown on a struct variant; user YAML is read by `scenario::raw` anyway.
        let typo = r#"{"kind": "bandwidth", "bytes_per_sec": 1, "burst": 2}"#;
        assert!(serde_json::from_str::<LinkToxic>(typo).is_err());
    }

    #[test]
    fn problems_are_found_before_running() {
        let zero = ToxicSpec::new(LinkToxic::Bandwidth { bytes_per_sec: 0 });
        assert!(zero.problem().is_some());
        let share = ToxicSpec::new(LinkToxic::Blackhole).share(Share(1.5));
        assert!(share.problem().is_some());
        assert!(ToxicSpec::new(LinkToxic::Reset).problem().is_none());
    }

    #[test]
    fn directions_cover_their_flows() {
        assert!(Direction::Both.covers(Flow::Upstream));
        assert!(Direction::Upstream.covers(Flow::Upstream));
        assert!(!Direction::Upstream.covers(Flow::Downstream));
        assert!(!Direction::Downstream.covers(Flow::Upstream));
    }
}
