//! Shards: one run split over `n` processes (or machines, as a Kubernetes Indexed Job's
//! pods). Shard `i` makes the orders whose id is `i` modulo `n` ([`Shard`]), each at the
//! instant the whole run's schedule gives it, so the `n` shards together make exactly the orders, at
//! exactly the times, one process would; every shard's rate is 1/n of every phase's. On a
//! real broker they share one namespace, named by the run id, so the simulated services of
//! all shards join the same consumer groups as replicas of one service would. A shard
//! judges nothing: it leaves its state in its run folder (`shard.json` and `ledger.bin`
//! beside the interval logs), and `doorbuster merge` joins the states and judges the run once.

use std::path::Path;

use crate::exit::StopSignal;
pub use crate::load::shard::Shard;
use crate::observe::Settlement;
use crate::observe::state::ObserverState;
use crate::scenario::model::Scenario;
use crate::services::analytics::AnalyticsState;
use crate::services::provider::ProviderStats;
use crate::topology::ServiceKind;
use crate::transport::TransportInfo;

/// The file a shard leaves its state in, inside its run folder.
pub const STATE_FILE: &str = "shard.json";
/// The file beside it holding the shard's ledger: 48 bytes per order, raw
/// ([`crate::observe::Ledger::export_to`]).
pub const LEDGER_FILE: &str = "ledger.bin";
/// [`ShardState::version`] this build writes and reads.
pub const STATE_VERSION: u32 = 2;

/// What a shard leaves for `doorbuster merge`: its part of the run's observations and the
/// ground truth to judge them by (the scenario and seed give every order).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShardState {
    pub version: u32,
    pub sharding: Sharding,
    pub seed: u64,
    pub run_arg: String,
    pub scenario: Scenario,
    /// Ids `0..attempted` were due (this shard's among them).
    pub attempted: u64,
    pub interrupted: bool,
    pub interrupted_by: Option<StopSignal>,
    pub start: Option<crate::clock::StartSync>,
    pub transport: TransportInfo,
    pub enabled: Vec<ServiceKind>,
    pub provider: ProviderStats,
    /// Captures per order from this shard's provider: `(order, captures)`.
    pub captures: Vec<(u64, u32)>,
    pub analytics: Option<AnalyticsState>,
    pub settlement: Settlement,
    pub observed: ObserverState,
}

impl ShardState {
    /// Writes the ledger, then the state: a folder with `shard.json` has its ledger whole.
    pub fn write(&self, dir: &Path, ledger: &crate::observe::Ledger) -> std::io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(dir)?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join(LEDGER_FILE))?);
        ledger.export_to(self.observed.orders, &mut file)?;
        file.flush()?;
        let file = std::io::BufWriter::new(std::fs::File::create(dir.join(STATE_FILE))?);
        serde_json::to_writer(file, self).map_err(std::io::Error::other)
    }

    /// The state in run folder `dir`; why not, in words, when it is not there or not one.
    pub fn read(dir: &Path) -> Result<ShardState, String> {
        let path = dir.join(STATE_FILE);
        let file = std::fs::File::open(&path).map_err(|e| {
            format!(
                "{}: {e}: not the run folder of a shard, or the shard did not finish (killed \
                 before it could write its state)",
                path.display()
            )
        })?;
        let state: ShardState = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| format!("{}: not a shard's state: {e}", path.display()))?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "{}: state version {}, this doorbuster reads version {STATE_VERSION}",
                path.display(),
                state.version
            ));
        }
        Ok(state)
    }
}

/// A run that is one of several processes: the run id they share and this one's shard
/// (`0/1` for `--run-id` alone).
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Sharding {
    pub run_id: String,
    pub shard: Shard,
}

impl Sharding {
    /// The broker namespace all the run's shards share.
    pub fn namespace(&self) -> String {
        format!("doorbuster-{}", self.run_id)
    }

    /// A key salt all the shards agree on (where a run's orders need keys of their own).
    pub fn key_salt(&self) -> u64 {
        crate::rng::for_run_id(&self.run_id)
    }

    /// The run is split: this process sees part of it and judges nothing.
    pub fn is_part(&self) -> bool {
        self.shard.count > 1
    }
}

/// `--run-id`: 1 to 48 letters, digits, `-` or `_`, starting with a letter or digit: it
/// names the broker namespace (`doorbuster-<id>`), which every broker must accept.
pub fn parse_run_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 48
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?}: a run id is 1 to 48 letters, digits, '-' or '_', starting with a letter \
             or digit (it names the run's streams on the broker), e.g. bf-2026-12-07"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_run_ids_say_what_was_expected() {
        assert_eq!(parse_run_id("bf-2026_1"), Ok("bf-2026_1".to_owned()));
        for bad in ["", "-x", "a b", "a.b", &"x".repeat(49)] {
            assert!(parse_run_id(bad).unwrap_err().contains("run id"));
        }
    }
}
