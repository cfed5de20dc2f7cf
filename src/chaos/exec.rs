//! `exec`: run a command at a time (restart a broker, flip a feature flag) through
//! `sh -c`. It runs in the background, bounded by `EXEC_TIMEOUT`; its window ends when the
//! command does, so a broker restart's window is the restart itself and recovery (lag and
//! latency back to normal) is measured from when the broker was back.
//!
//! Its standard output and error go, interleaved as written, to `exec-<index>.log` in the
//! run folder (an unnamed temporary file when the run writes none). When it ends, the
//! window records how (exit code, or why there is none) and the last lines of its output;
//! anything but exit code 0 is also a finding. The output goes to a file, not a pipe, so
//! a command that leaves a daemon behind holding its output (a broker started with `&`)
//! still ends when it exits.
//!
//! The command is waited for on a blocking thread, polled every `POLL` so that it can be
//! killed at the timeout or when the run is interrupted. A side effect under tokio's
//! paused clock (tests): a blocking task keeps the clock from jumping ahead, so the
//! simulated run stands still while the command runs and its outcome is deterministic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{ChaosCtx, FaultAction};
use crate::clock::Clock;
use crate::observe::{ExecOutcome, Observer};
use crate::sync::lock;
use crate::transport::BoxFuture;

/// A hook that has not finished by then is killed.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the blocking thread checks whether the command has exited.
const POLL: Duration = Duration::from_millis(5);
/// The output kept on the fault window: its last lines, within its last bytes.
pub const TAIL_LINES: usize = 10;
pub const TAIL_BYTES: u64 = 2048;

pub struct Exec {
    pub command: String,
    /// The background task that runs the command and records its outcome.
    running: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Set to kill the command (the run was interrupted, or its task was dropped).
    kill: Arc<AtomicBool>,
}

impl Exec {
    pub fn new(command: String) -> Exec {
        Exec {
            command,
            running: std::sync::Mutex::new(None),
            kill: Arc::default(),
        }
    }
}

impl FaultAction for Exec {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        let command = self.command.clone();
        let observer = ctx.observer.clone();
        let output = output_file(index, ctx);
        let kill = self.kill.clone();
        // In the background: a slow hook must not hold up the rest of the timeline.
        let task = tokio::spawn(async move {
            let killer = KillOnDrop(kill.clone());
            let clock = observer.clock.clone();
            let (child_output, tail_source) = match output {
                Ok(file) => match file.try_clone() {
                    Ok(clone) => (Some(clone), Some(file)),
                    Err(e) => {
                        observer.finding(format!("exec faults[{index}]: output not kept: {e}"));
                        (None, None)
                    }
                },
                Err(e) => {
                    observer.finding(format!("exec faults[{index}]: output not kept: {e}"));
                    (None, None)
                }
            };
            let run = move || run(&command, child_output, &kill, &clock, EXEC_TIMEOUT);
            let ended = tokio::task::spawn_blocking(run)
                .await
                .unwrap_or_else(|e| Ended::Failed(format!("its waiting thread failed: {e}")));
            drop(killer);
            let tail = tail_source.map(|f| tail(f).unwrap_or_default());
            record(&observer, index, &ended, tail.unwrap_or_default());
        });
        *lock(&self.running) = Some(task);
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, _: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn finish<'a>(&'a self, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(mut task) = lock(&self.running).take() else {
                return;
            };
            let interrupted = async {
                match &ctx.interrupt {
                    Some(interrupt) => interrupt.cancelled().await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = &mut task => return,
                _ = interrupted => {}
            }
            self.kill.store(true, Relaxed);
            let _ = task.await;
        })
    }
}

/// Kills the command when the task waiting for it goes away (the run was torn down).
struct KillOnDrop(Arc<AtomicBool>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// Where the command's output goes: the run folder's log, or an unnamed temporary file.
fn output_file(index: usize, ctx: &ChaosCtx) -> std::io::Result<File> {
    match &ctx.run_dir {
        Some(dir) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(format!("exec-{index}.log"))),
        None => tempfile::tempfile(),
    }
}

/// How the command ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    NotStarted(std::io::Error),
    /// Still running at the timeout: killed.
    TimedOut(Duration),
    /// Killed because the run was interrupted.
    Killed,
    /// Waiting for it failed.
    Failed(String),
}

impl Ended {
    fn exit_code(&self) -> Option<i32> {
        match self {
            Ended::Exited(status) => status.code(),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Ended::Exited(status) => format!("exited with {status}"),
            Ended::NotStarted(e) => format!("could not start: {e}"),
            Ended::TimedOut(after) => format!(
                "killed after {}: still running at the timeout",
                humantime::format_duration(*after)
            ),
            Ended::Killed => "killed: the run was interrupted before it finished".to_owned(),
            Ended::Failed(why) => format!("lost: {why}"),
        }
    }
}

/// Runs `sh -c command` with its output (both streams) to `output`, until it exits, `kill`
/// is set, or `timeout` has passed on `clock`. Blocks: run it on a blocking thread.
pub fn run(
    command: &str,
    output: Option<File>,
    kill: &AtomicBool,
    clock: &Clock,
    timeout: Duration,
) -> Ended {
    let (stdout, stderr) = match output.map(|f| f.try_clone().map(|g| (f, g))) {
        Some(Ok((out, err))) => (Stdio::from(out), Stdio::from(err)),
        _ => (Stdio::null(), Stdio::null()),
    };
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Ended::NotStarted(e),
    };
    let deadline = clock.now() + crate::clock::duration_ns(timeout);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ended::Exited(status),
            Ok(None) => {}
            Err(e) => return Ended::Failed(e.to_string()),
        }
        let killed = kill.load(Relaxed);
        if killed || clock.now() >= deadline {
            // Only `sh` is killed: what it started lives on, as after a kill from a shell.
            let _ = child.kill();
            let _ = child.wait();
            return if killed {
                Ended::Killed
            } else {
                Ended::TimedOut(timeout)
            };
        }
        std::thread::park_timeout(POLL);
    }
}

/// The last `TAIL_LINES` lines within the last `TAIL_BYTES` bytes of `file`; a line cut by
/// the byte bound is left out.
pub fn tail(mut file: File) -> std::io::Result<Vec<String>> {
    let len = file.seek(SeekFrom::End(0))?;
    let from = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(TAIL_LINES);
    Ok(lines[skip..]
        .iter()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect())
}

/// Notes the outcome on the window, makes anything but exit code 0 a finding, and ends the
/// window now.
fn record(observer: &Observer, index: usize, ended: &Ended, output_tail: Vec<String>) {
    let note = ended.describe();
    let outcome = ExecOutcome {
        exit_code: ended.exit_code(),
        output_tail,
    };
    if outcome.succeeded() {
        tracing::info!(fault = index, "exec: {note}");
    } else {
        let last = outcome
            .output_tail
            .last()
            .map(|l| format!("; last output: {l}"))
            .unwrap_or_default();
        tracing::warn!(fault = index, "exec: {note}{last}");
        observer.finding(format!("exec faults[{index}]: the command {note}{last}"));
    }
    observer.fault_note(index, note);
    observer.exec_finished(index, outcome);
    observer.fault_stopped(index);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> File {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn the_tail_is_the_last_lines_within_the_last_bytes() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let lines = tail(file_with(&text)).unwrap();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line 21");
        assert_eq!(lines[9], "line 30");
        // One long line and a short one: the cut line is left out, the bound holds.
        let long = format!("{}\nend\n", "x".repeat(5000));
        assert_eq!(tail(file_with(&long)).unwrap(), ["end"]);
        assert!(tail(file_with("")).unwrap().is_empty());
        assert_eq!(tail(file_with("a\r\nb")).unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn a_command_is_killed_at_the_timeout_and_when_asked() {
        // Real time: a 30 s sleep against a 200 ms timeout, then against a kill request.
        let clock = Clock::start();
        let ended = tokio::task::spawn_blocking(move || {
            run(
                "sleep 30",
                None,
                &AtomicBool::new(false),
                &clock,
                Duration::from_millis(200),
            )
        })
        .await
        .unwrap();
        assert!(matches!(ended, Ended::TimedOut(_)), "{ended:?}");
        assert_eq!(ended.exit_code(), None);
        let clock = Clock::start();
        let ended = tokio::task::spawn_blocking(move || {
            run(
                "sleep 30",
                None,
                &AtomicBool::new(true),
                &clock,
                EXEC_TIMEOUT,
            )
        })
        .await
        .unwrap();
        assert!(matches!(ended, Ended::Killed), "{ended:?}");
        // The clean twin: a quick command exits by itself with its own code.
        let clock = Clock::start();
        let ended = tokio::task::spawn_blocking(move || {
            run(
                "exit 3",
                None,
                &AtomicBool::new(false),
                &clock,
                EXEC_TIMEOUT,
            )
        })
        .await
        .unwrap();
        assert_eq!(ended.exit_code(), Some(3), "{ended:?}");
    }
}
