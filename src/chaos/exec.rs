//! `exec`: run a command at a time (restart a broker, flip a feature flag) through
//! `sh -c`. Its output goes to `exec-<index>.log` in the run folder; it runs in the
//! background, bounded by `EXEC_TIMEOUT`, and its exit status is noted on the fault. Its
//! window ends when the command does: a broker restart's window is the restart itself, and
//! recovery (lag and latency back to normal) is measured from when the broker was back.

use std::time::Duration;

use super::{ChaosCtx, FaultAction};
use crate::transport::BoxFuture;

/// A hook that has not finished by then is killed.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Exec {
    pub command: String,
}

impl FaultAction for Exec {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let command = self.command.clone();
        let observer = ctx.observer.clone();
        let log = ctx
            .run_dir
            .as_ref()
            .map(|d| d.join(format!("exec-{index}.log")));
        Box::pin(async move {
            // In the background: a slow hook must not hold up the rest of the timeline.
            tokio::spawn(async move {
                let run = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&command)
                    .kill_on_drop(true)
                    .output();
                let note = match tokio::time::timeout(EXEC_TIMEOUT, run).await {
                    Ok(Ok(out)) => {
                        if let Some(log) = &log {
                            let mut text = out.stdout;
                            text.extend_from_slice(&out.stderr);
                            if let Err(e) = std::fs::write(log, text) {
                                observer
                                    .finding(format!("exec: cannot write {}: {e}", log.display()));
                            }
                        }
                        format!("exited with {}", out.status)
                    }
                    Ok(Err(e)) => format!("could not start: {e}"),
                    Err(_) => format!("killed after {}", humantime::format_duration(EXEC_TIMEOUT)),
                };
                observer.fault_note(index, note);
                observer.fault_stopped(index);
            });
        })
    }

    fn stop<'a>(&'a self, _: usize, _: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
