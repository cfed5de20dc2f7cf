//! Exit codes, in one place: which number the process exits with for a run's verdict, for
//! the signal that stopped it, and for each kind of error (DESIGN.md §8).
//!
//! It sits below everything else: the report writes a run's code into `summary.json`, the
//! binary exits with it, and each error type says which `Exit` it is. It may not import
//! anything above the components (no `run`, no `report`).

use crate::chaos::proxy::ProxyError;
use crate::transport::TransportError;

/// How a run ended, as `summary.json` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    Pass,
    Fail,
    Invalid,
    Interrupted,
    // The run was killed before it could judge anything (no summary.json): `doorbuster
    // report` rebuilt this summary from what was on disk. Never a pass. (A plain comment: a
    // doc comment would make the schema's plain string enum a `oneOf`.)
    Incomplete,
}

/// The signal that stopped a run early. The run stops the same way for each (load off, a
/// short drain, a partial report); the exit code says which one it was, as a shell would
/// (128 + the signal's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub enum StopSignal {
    // Ctrl-C.
    #[serde(rename = "SIGINT")]
    Sigint,
    // `kill`, CI timeouts and cancelled jobs, `docker stop`.
    #[serde(rename = "SIGTERM")]
    Sigterm,
    // The terminal or the SSH session went away.
    #[serde(rename = "SIGHUP")]
    Sighup,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Sigint => "SIGINT",
            StopSignal::Sigterm => "SIGTERM",
            StopSignal::Sighup => "SIGHUP",
        }
    }
}

/// Every way the process can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every check passed, or the command did what it was asked.
    Success,
    /// A check failed (`compare`: the candidate regressed).
    Failed,
    /// An invalid scenario, command line or input file.
    BadInput,
    /// The run could not be carried out, or is not valid.
    CannotRun,
    /// `report` rebuilt a killed run's partial report: no check judged.
    Incomplete,
    /// A signal stopped the run (its partial report is written).
    Stopped(StopSignal),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::CannotRun => 3,
            Exit::Incomplete => 4,
            Exit::Stopped(StopSignal::Sigint) => 130,
            Exit::Stopped(StopSignal::Sigterm) => 143,
            Exit::Stopped(StopSignal::Sighup) => 129,
        }
    }

    /// A run's exit: its verdict, and for an interrupted run the signal that stopped it
    /// (Ctrl-C when it is not known).
    pub fn of_run(verdict: RunVerdict, signal: Option<StopSignal>) -> Exit {
        match verdict {
            RunVerdict::Pass => Exit::Success,
            RunVerdict::Fail => Exit::Failed,
            RunVerdict::Invalid => Exit::CannotRun,
            RunVerdict::Interrupted => Exit::Stopped(signal.unwrap_or(StopSignal::Sigint)),
            RunVerdict::Incomplete => Exit::Incomplete,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(exit.code())
    }
}

/// A target the configuration refuses is bad input; anything else the broker did is a run
/// that could not be carried out.
impl From<&TransportError> for Exit {
    fn from(error: &TransportError) -> Exit {
        match error {
            TransportError::Config { .. } => Exit::BadInput,
            _ => Exit::CannotRun,
        }
    }
}

/// An address or toxic the proxy refuses is bad input; a proxy that cannot listen or reach
/// its upstream could not run.
impl From<&ProxyError> for Exit {
    fn from(error: &ProxyError) -> Exit {
        match error {
            ProxyError::RemoteUpstream { .. }
            | ProxyError::RemoteListen { .. }
            | ProxyError::InvalidToxic { .. } => Exit::BadInput,
            _ => Exit::CannotRun,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes DESIGN.md §8 and `doorbuster --help` promise, verdict by verdict.
    #[test]
    fn every_verdict_and_signal_has_its_documented_code() {
        let code = |v, s| Exit::of_run(v, s).code();
        assert_eq!(code(RunVerdict::Pass, None), 0);
        assert_eq!(code(RunVerdict::Fail, None), 1);
        assert_eq!(code(RunVerdict::Invalid, None), 3);
        assert_eq!(code(RunVerdict::Incomplete, None), 4);
        assert_eq!(code(RunVerdict::Interrupted, None), 130);
        assert_eq!(code(RunVerdict::Interrupted, Some(StopSignal::Sigint)), 130);
        assert_eq!(
            code(RunVerdict::Interrupted, Some(StopSignal::Sigterm)),
            143
        );
        assert_eq!(code(RunVerdict::Interrupted, Some(StopSignal::Sighup)), 129);
        // A signal noted on a run that was not interrupted does not change its code.
        assert_eq!(code(RunVerdict::Fail, Some(StopSignal::Sigterm)), 1);
        assert_eq!(Exit::BadInput.code(), 2);
        assert_eq!(Exit::CannotRun.code(), 3);
    }
}
