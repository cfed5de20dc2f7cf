//! Which orders a process makes when one run is split over several (`run --shard i/n`):
//! shard `i` of `n` makes the orders whose id is `i` modulo `n`, each at its planned time,
//! so the shards together make every order of the schedule once.

use std::fmt;

/// Shard `index` of `count` (0-based, as `JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The most shards one run splits into.
pub const SHARDS_MAX: u32 = 4096;

impl Shard {
    /// `i/n`, with `0 <= i < n <= 4096`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let expected = "expected i/n: this process's shard i of n, counted from 0 (e.g. 0/3)";
        let (i, n) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: {expected}"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|e| format!("{text:?}: {e}; {expected}"))
        };
        let (index, count) = (number(i)?, number(n)?);
        if count == 0 || count > SHARDS_MAX {
            return Err(format!(
                "{text:?}: a run splits into 1 to {SHARDS_MAX} shards, not {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "{text:?}: shards of {count} are numbered 0 to {}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard makes order `order`.
    pub fn owns(self, order: u64) -> bool {
        order % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Whether all of an order's events reach one process of a split run, as per-key order and
/// the simulated services' own idempotency need: on Kafka (an order's key picks its
/// partition, a partition one member) and on the embedded broker (each shard has its own);
/// behind a checkout endpoint no event reaches doorbuster at all.
pub fn one_process_per_key(target: &crate::transport::target::Target) -> bool {
    match target {
        crate::transport::target::Target::Broker(b) => {
            b.kind() == crate::transport::BrokerKind::Kafka
        }
        _ => true,
    }
}

/// Whether the shards' simulated services share their state (idempotency claims, the
/// provider's key records) through the broker, as a real service's replicas share a database:
/// on Redis and NATS, which keep it for them (`Transport::shared_store`). Elsewhere each
/// shard's state is its own, which matters only where an order's events can reach two shards
/// (see [`one_process_per_key`]).
pub fn shares_state(target: &crate::transport::target::Target) -> bool {
    use crate::transport::BrokerKind;
    match target {
        crate::transport::target::Target::Broker(b) => {
            matches!(b.kind(), BrokerKind::Redis | BrokerKind::Nats)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_ids_disjointly_and_completely() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for order in 0..1_000u64 {
            assert_eq!(shards.iter().filter(|s| s.owns(order)).count(), 1);
        }
        assert_eq!(Shard::parse("2/3"), Ok(shards[2]));
        assert_eq!(shards[2].to_string(), "2/3");
    }

    #[test]
    fn bad_shards_say_what_was_expected() {
        for bad in ["3/3", "1", "a/3", "0/0", "-1/2", "0/5000"] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
