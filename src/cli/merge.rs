//! `doorbuster merge DIR... --out DIR`: the shards of one run joined and judged once; the
//! verdict table and the exit code as `run` gives them.

use std::path::PathBuf;

use doorbuster::exit::Exit;
use doorbuster::report::terminal::{closing_lines, verdict_table};
use doorbuster::run::merge::{MergeError, merge as merge_shards};

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The shards' run folders (each holds shard.json, ledger.bin and the interval logs).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The merged run's folder: every report format and the merged interval logs.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Then remove the shards' streams, topics and groups from their broker (the run id's
    /// namespace, which no shard removes: the others may still use it). Needs the broker
    /// reachable from here, with any ${ENV} in its URL set; a failure is said and leaves
    /// the verdict as it is.
    #[arg(long)]
    pub delete_streams: bool,
}

pub fn merge(runtime: &tokio::runtime::Runtime, args: &MergeArgs) -> Exit {
    match merge_shards(&args.dirs, &args.out) {
        Ok(merged) => {
            let summary = &merged.summary;
            outln!("{}", verdict_table(summary));
            out!("{}", closing_lines(summary));
            outln!("report: {}", args.out.join("report.html").display());
            outln!("summary: {}", args.out.join("summary.json").display());
            if args.delete_streams {
                match runtime.block_on(merged.delete_streams()) {
                    Ok(()) => outln!(
                        "deleted the streams of run {} ({}) from the broker",
                        merged.sharding.run_id,
                        merged.sharding.namespace()
                    ),
                    Err(e) => errln!(
                        "warning: could not delete the streams of run {} from the broker: {e}",
                        merged.sharding.run_id
                    ),
                }
            }
            Exit::of_run(summary.verdict, None)
        }
        Err(MergeError::BadInput(why)) => {
            errln!("error: {why}");
            Exit::BadInput
        }
        Err(e @ MergeError::NotWhole(_)) => {
            errln!("error: cannot merge: {e}");
            Exit::CannotRun
        }
        Err(e) => {
            errln!("error: {e}");
            Exit::CannotRun
        }
    }
}
