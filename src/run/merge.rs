//! `doorbuster merge`: the shards of one run, joined and judged once. Every latency's
//! histograms are added second by second from the shards' interval logs (exactly, as the
//! OpenMessaging Benchmark adds its workers' HdrHistograms), the ledgers are unioned order by
//! order, the counters and the provider's captures added; then every check runs over the
//! whole run, with the ground truth the scenario and seed give, and the usual reports are
//! written. A run with a shard missing, interrupted or from another run is not merged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::judge::Evidence;
use super::setup::{factory_for, planned_observer};
use super::shard::{ShardState, Sharding};
use crate::clock::Clock;
use crate::load::Schedule;
use crate::observe::Settlement;
use crate::observe::hlog::{self, IntervalLogs, Logged};
use crate::report::summary::Summary;
use crate::scenario::model::Target;
use crate::services::provider::ChargesPerOrder;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The shards do not make one whole run: one is missing, was interrupted, or belongs
    /// to another run; or a state or log cannot be read.
    #[error("{0}")]
    NotWhole(String),
    /// The command line asks for something the merge cannot do.
    #[error("{0}")]
    BadInput(String),
    #[error("cannot write the merged report to {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A merged run: its summary, and where its shards ran.
pub struct Merged {
    pub summary: Summary,
    pub sharding: Sharding,
    pub target: Target,
    /// The consumer groups the shards' services joined.
    pub groups: Vec<String>,
}

impl Merged {
    /// Removes what the shards made on their broker (the namespace of their run id), which
    /// no shard could while the others might still use it. Nothing to do on the embedded
    /// broker or behind a checkout endpoint.
    pub async fn delete_streams(&self) -> Result<(), crate::transport::TransportError> {
        if !matches!(self.target, Target::Broker(_)) {
            return Ok(());
        }
        let namespace = Some(self.sharding.namespace());
        let broker = crate::transport::connect_in(&self.target, Clock::start(), namespace).await?;
        broker.forget_groups(&self.groups).await?;
        broker.cleanup().await
    }
}

/// Joins the shards in `dirs` and judges the run; writes the reports (and the merged
/// interval logs) to `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged, MergeError> {
    let mut shards = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let state = ShardState::read(dir).map_err(MergeError::NotWhole)?;
        shards.push((dir.clone(), state));
    }
    whole(&shards)?;
    not_a_shard(dirs, out)?;
    shards.sort_by_key(|(_, s)| s.sharding.shard.index);
    let wall_start = (shards.iter().map(|(_, s)| s.observed.wall_start_unix_ns))
        .min()
        .unwrap_or(0);
    let duration_ns = (shards.iter().map(|(_, s)| s.observed.duration_ns))
        .max()
        .unwrap_or(0);
    // The shards' logs are read before the merged ones are written.
    let seconds = logged_seconds(&shards)?;
    // Each shard's observations move into the merge (a long run's ledger is large).
    let parts: Vec<(String, crate::observe::state::ObserverState, PathBuf)> = shards
        .iter_mut()
        .map(|(dir, s)| {
            (
                format!("shard {}", s.sharding.shard),
                std::mem::take(&mut s.observed),
                dir.join(super::shard::LEDGER_FILE),
            )
        })
        .collect();
    let first = &shards[0].1;
    let scenario = &first.scenario;
    let schedule = Schedule::plan(&scenario.load, first.seed);
    let factory = factory_for(scenario, first.seed, Some(&first.sharding));
    let attempted = shards.iter().map(|(_, s)| s.attempted).max().unwrap_or(0);
    let report = |source| MergeError::Report {
        path: out.to_path_buf(),
        source,
    };
    let mut observer = planned_observer(scenario, Clock::ended(wall_start, duration_ns), &schedule);
    let logs = IntervalLogs::create_for(out, wall_start, &Logged::every(true));
    observer.write_interval_logs(logs.map_err(report)?);
    observer
        .absorb(&parts, &seconds)
        .map_err(MergeError::NotWhole)?;
    observer.finding(format!(
        "merged from the {} shards of run {} ({})",
        first.sharding.shard.count,
        first.sharding.run_id,
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut captures = ChargesPerOrder::default();
    for (_, s) in &shards {
        for &(order, n) in &s.captures {
            for _ in 0..n {
                captures.add(order);
            }
        }
    }
    let sum = |values: Vec<serde_json::Value>| {
        values.into_iter().reduce(|mut a, b| {
            crate::observe::state::add_json(&mut a, &b);
            a
        })
    };
    let provider = sum(shards
        .iter()
        .filter_map(|(_, s)| serde_json::to_value(s.provider).ok())
        .collect())
    .and_then(|v| serde_json::from_value(v).ok())
    .unwrap_or_default();
    let analytics = sum(shards
        .iter()
        .filter_map(|(_, s)| {
            s.analytics
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok())
        })
        .collect())
    .and_then(|v| serde_json::from_value(v).ok());
    let settlement = settled(shards.iter().map(|(_, s)| &s.settlement));
    // The latest start decides whether the run kept its appointment.
    let start = (shards.iter().filter_map(|(_, s)| s.start.clone()))
        .max_by(|a, b| a.offset_ms.total_cmp(&b.offset_ms));
    let mut summary = Evidence {
        scenario,
        seed: first.seed,
        run_arg: &first.run_arg,
        schedule: &schedule,
        observer: &observer,
        factory: &factory,
        transport: first.transport.clone(),
        provider,
        captures: &captures,
        analytics,
        enabled: &first.enabled,
        settlement: &settlement,
        attempted,
        interrupted: false,
        interrupted_by: None,
        start,
        shards: first.sharding.shard.count,
    }
    .judge(None);
    summary.duration_s = duration_ns as f64 / 1e9;
    crate::report::write_all(out, &summary).map_err(report)?;
    let mut groups: Vec<String> = (first.enabled.iter())
        .map(|k| k.name().to_owned())
        .collect();
    if scenario.services.park_dead_letters() {
        groups.push(crate::services::runner::DEAD_LETTER_AUDIT.to_owned());
    }
    Ok(Merged {
        summary,
        sharding: first.sharding.clone(),
        target: scenario.target.clone(),
        groups,
    })
}

/// Refuses an `--out` that is one of the shards' folders: the merged reports and logs would
/// overwrite the shard's.
fn not_a_shard(dirs: &[PathBuf], out: &Path) -> Result<(), MergeError> {
    let Ok(out_real) = out.canonicalize() else {
        return Ok(()); // Not there yet: not a shard's folder.
    };
    match dirs
        .iter()
        .find(|d| d.canonicalize().is_ok_and(|d| d == out_real))
    {
        Some(dir) => Err(MergeError::BadInput(format!(
            "--out {} is the shard folder {}: the merged run needs a folder of its own",
            out.display(),
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Refuses shards that do not make one whole run, naming what is wrong.
fn whole(shards: &[(PathBuf, ShardState)]) -> Result<(), MergeError> {
    let not_whole = |why: String| Err(MergeError::NotWhole(why));
    let Some((first_dir, first)) = shards.first() else {
        return not_whole("no shard folders given".into());
    };
    let Sharding { run_id, shard } = &first.sharding;
    for (dir, s) in shards {
        let d = dir.display();
        if s.sharding.run_id != *run_id {
            return not_whole(format!(
                "{d} is shard {} of run {}, not of run {run_id} ({})",
                s.sharding.shard,
                s.sharding.run_id,
                first_dir.display()
            ));
        }
        if s.sharding.shard.count != shard.count {
            return not_whole(format!(
                "{d} is shard {}, {} is shard {}: one run has one shard count",
                s.sharding.shard,
                first_dir.display(),
                shard
            ));
        }
        if s.seed != first.seed || s.scenario != first.scenario {
            return not_whole(format!(
                "{d} ran another scenario or seed than {} (seed {} vs {}): the shards of a \
                 run share both",
                first_dir.display(),
                s.seed,
                first.seed
            ));
        }
        if s.sharding.shard.index >= s.sharding.shard.count {
            return not_whole(format!("{d}: shard {} is not a shard", s.sharding.shard));
        }
        let agreed = |s: &ShardState| s.start.as_ref().map(|start| start.agreed.clone());
        if shard.count > 1 && (agreed(s).is_none() || agreed(s) != agreed(first)) {
            return not_whole(format!(
                "{d} started {}, {} {}: the shards of a run start at one --start-at instant",
                agreed(s).map_or("without --start-at".to_owned(), |a| format!("at {a}")),
                first_dir.display(),
                agreed(first).map_or("without --start-at".to_owned(), |a| format!("at {a}")),
            ));
        }
        if s.interrupted {
            return not_whole(format!(
                "{d}: shard {} was interrupted{}: its orders after the stop were never \
                 sent, so the merged run would judge a run that did not happen",
                s.sharding.shard,
                s.interrupted_by
                    .map(|sig| format!(" by {}", sig.name()))
                    .unwrap_or_default()
            ));
        }
    }
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for (dir, s) in shards {
        if let Some(other) = seen.insert(s.sharding.shard.index, dir) {
            return not_whole(format!(
                "shard {} is given twice: {} and {}",
                s.sharding.shard,
                other.display(),
                dir.display()
            ));
        }
    }
    let missing: Vec<String> = (0..shard.count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{}", shard.count))
        .collect();
    if !missing.is_empty() {
        return not_whole(format!(
            "run {run_id} has {} shards; missing: {}",
            shard.count,
            missing.join(", ")
        ));
    }
    Ok(())
}

/// Every latency per second over the shards (`Logged::every(true)`, in that order): each
/// shard's interval logs, added.
fn logged_seconds(
    shards: &[(PathBuf, ShardState)],
) -> Result<BTreeMap<u32, Vec<Histogram<u64>>>, MergeError> {
    let logged = Logged::every(true);
    let mut seconds: BTreeMap<u32, Vec<Histogram<u64>>> = BTreeMap::new();
    for (dir, state) in shards {
        for (i, l) in logged.iter().enumerate() {
            let mut count = 0;
            let read = hlog::read_back(dir, *l).map_err(|e| {
                MergeError::NotWhole(format!("{}: {e}", dir.join(hlog::file_name(*l)).display()))
            })?;
            if let Some(damaged) = read.damaged {
                return Err(MergeError::NotWhole(damaged));
            }
            for (second, h) in read.intervals {
                count += h.len();
                let row = seconds.entry(second).or_insert_with(|| {
                    logged
                        .iter()
                        .map(|_| crate::observe::recorder::new_histogram())
                        .collect()
                });
                // Same bounds on both sides, so `add` cannot fail.
                let _ = row[i].add(&h);
            }
            // A log cut at a line's end reads as whole: its samples must be the shard's.
            let recorded = state.observed.logged_counts.get(i).copied().unwrap_or(0);
            if count != recorded {
                return Err(MergeError::NotWhole(format!(
                    "{} holds {count} samples where the shard recorded {recorded}: the log is \
                     not whole",
                    dir.join(hlog::file_name(*l)).display()
                )));
            }
        }
    }
    Ok(seconds)
}

/// The pipeline at the end over the shards: handlers still running add up; a group's lag
/// is the largest any shard was told (they share their groups).
fn settled<'a>(parts: impl Iterator<Item = &'a Settlement>) -> Settlement {
    let mut all = Settlement::default();
    for p in parts {
        for (mine, theirs) in all.handling.iter_mut().zip(p.handling) {
            *mine += theirs;
        }
        for &(service, lag) in &p.lags {
            match all.lags.iter_mut().find(|(s, _)| *s == service) {
                Some((_, l)) => *l = worst_lag(*l, lag),
                None => all.lags.push((service, lag)),
            }
        }
    }
    all
}

/// A lag the broker would not tell is the worst.
fn worst_lag(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.zip(b).map(|(a, b)| a.max(b))
}
