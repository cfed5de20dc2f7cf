//! Overlapping windows of one fault kind on one target.
//!
//! Most kinds act through one piece of state per target (a service's `paused` flag, its
//! latency slot, the provider's outage), so two windows cannot be applied through it
//! independently: left alone, the first window's end switches the fault off while the second
//! is still open, and the report shows a fault that was not there. This module says, per
//! kind, which state a fault switches ([`switch`]), when two windows overlap, and when they
//! may share the state ([`conflict`]). `run_timeline` keeps a switch on from the first
//! window's start to the last one's end ([`Held`]); validation refuses overlapping windows
//! whose settings differ, since the state holds one setting at a time and the report could
//! not say which one was applied.

use std::collections::HashMap;
use std::time::Duration;

use super::proxy::LinkToxic;
use crate::chaos::model::{Fault, FaultKind};

/// The state one fault kind switches for one target: its kind's label and the target as
/// the report names it (`action`'s second half).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Switch {
    pub kind: &'static str,
    pub target: String,
}

/// Which state a fault switches on and off, decided per kind:
///
/// - `crash`, `pause`: one flag per service (down, paused). Windows compose: the service
///   stays down (paused) until the last window ends. They have nothing to disagree on; a
///   crash's `restart_after` only decides its window.
/// - `latency`, `errors`, `duplicate`: one slot per service holding one distribution and
///   one scope. Identical windows compose; windows with different settings are refused.
/// - `reorder`: one slot per topic, the same rule.
/// - `provider_outage`: the provider mock's one outage, the same rule.
/// - `link`: one toxic of each kind on the fault proxy. Two different toxics (a latency and
///   a bandwidth cap) are two switches and both apply; two of one kind compose when they are
///   identical and are refused otherwise, because the proxy would stack them (two delays add
///   up) while the report would show two separate settings.
/// - `poison`: none. Every window is kept apart with its own scope (`PoisonWindow`) and its
///   end closes only itself, so overlapping windows are applied exactly as written.
/// - `replay`, `exec`: none. They act at one instant and leave nothing switched on; two
///   commands run side by side, each with its own window.
pub fn switch(fault: &Fault) -> Option<Switch> {
    let target = match &fault.kind {
        FaultKind::Crash { service, .. }
        | FaultKind::Pause { service }
        | FaultKind::Latency { service, .. }
        | FaultKind::Errors { service }
        | FaultKind::Duplicate { service } => service.to_string(),
        FaultKind::Reorder { topic } => topic.to_string(),
        FaultKind::ProviderOutage { .. } | FaultKind::Link { .. } => super::action(fault).1,
        FaultKind::Poison { .. } | FaultKind::Replay { .. } | FaultKind::Exec { .. } => {
            return None;
        }
    };
    Some(Switch {
        kind: fault.kind.label(),
        target,
    })
}

/// The window's end on the run clock; `None` never ends (a crash without restart).
fn end(fault: &Fault) -> Option<Duration> {
    fault.duration.map(|d| fault.at + d)
}

/// Whether two windows share an instant. A window is `[at, at + for)`: one that starts when
/// the other ends does not overlap it (the timeline stops the first before starting the
/// second).
pub fn overlap(a: &Fault, b: &Fault) -> bool {
    end(a).is_none_or(|e| b.at < e) && end(b).is_none_or(|e| a.at < e)
}

/// The settings in which two faults differ, by their scenario keys.
fn differences(a: &Fault, b: &Fault) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differ = |key, differs: bool| {
        if differs {
            keys.push(key);
        }
    };
    match (&a.kind, &b.kind) {
        (FaultKind::Latency { add: x, .. }, FaultKind::Latency { add: y, .. }) => {
            differ("add", x != y);
        }
        (
            FaultKind::ProviderOutage {
                errors,
                status,
                latency,
                retry_after,
                lost_answers,
            },
            FaultKind::ProviderOutage {
                errors: errors_b,
                status: status_b,
                latency: latency_b,
                retry_after: retry_after_b,
                lost_answers: lost_answers_b,
            },
        ) => {
            differ("errors", errors != errors_b);
            differ("status", status != status_b);
            differ("latency", latency != latency_b);
            differ("retry_after", retry_after != retry_after_b);
            differ("lost_answers", lost_answers != lost_answers_b);
        }
        (
            FaultKind::Link {
                toxic, direction, ..
            },
            FaultKind::Link {
                toxic: toxic_b,
                direction: direction_b,
                ..
            },
        ) => {
            match (toxic, toxic_b) {
                (
                    LinkToxic::Latency { latency, jitter },
                    LinkToxic::Latency {
                        latency: latency_b,
                        jitter: jitter_b,
                    },
                ) => {
                    differ("delay", latency != latency_b);
                    differ("jitter", jitter != jitter_b);
                }
                (x, y) => differ("bytes_per_sec", x != y),
            }
            differ("direction", direction != direction_b);
        }
        _ => {}
    }
    // A crash or a pause touches every delivery whatever its scope says.
    if !matches!(a.kind, FaultKind::Crash { .. } | FaultKind::Pause { .. }) {
        differ("share", a.scope.share != b.scope.share);
        differ("keys", a.scope.keys != b.scope.keys);
    }
    keys
}

/// Why two faults cannot both be applied: they switch the same state, their windows
/// overlap, and their settings differ (the keys that differ). `None` when they can: they
/// switch different state, do not overlap, or compose.
pub fn conflict(a: &Fault, b: &Fault) -> Option<Vec<&'static str>> {
    let same = switch(a).is_some_and(|s| Some(s) == switch(b));
    if !same || !overlap(a, b) {
        return None;
    }
    Some(differences(a, b)).filter(|d| !d.is_empty())
}

/// The switches on right now, each with the fault whose action switched it on (the holder:
/// its action switches it off again) and every fault whose window is open on it.
#[derive(Default)]
pub(crate) struct Held {
    on: HashMap<Switch, (usize, Vec<usize>)>,
}

pub(crate) enum Opened {
    /// The switch was off: the fault's action switches it on.
    First,
    /// The switch was already on, switched by `holder`; nothing more is applied.
    Joined { holder: usize },
}

pub(crate) enum Closed {
    /// No other window is open: the holder's action switches it off.
    Last { holder: usize },
    /// These faults' windows are still open: it stays on.
    StillOpen { by: Vec<usize> },
}

impl Held {
    pub(crate) fn open(&mut self, switch: Switch, index: usize) -> Opened {
        match self.on.get_mut(&switch) {
            Some((holder, open)) => {
                open.push(index);
                Opened::Joined { holder: *holder }
            }
            None => {
                self.on.insert(switch, (index, vec![index]));
                Opened::First
            }
        }
    }

    pub(crate) fn close(&mut self, switch: &Switch, index: usize) -> Closed {
        let Some((holder, open)) = self.on.get_mut(switch) else {
            return Closed::Last { holder: index };
        };
        open.retain(|&i| i != index);
        if open.is_empty() {
            let holder = *holder;
            self.on.remove(switch);
            Closed::Last { holder }
        } else {
            Closed::StillOpen { by: open.clone() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One fault per line, each parsed alone (validation would refuse the conflicting ones
    /// together).
    fn faults(list: &str) -> Vec<Fault> {
        list.lines()
            .map(|line| {
                let text = format!(
                    "name: x\ntarget: redis://127.0.0.1:6379\nload:\n  phases:\n    - {{ hold: 60s, rate: 5/s }}\nfaults:\n{line}\n"
                );
                let mut s =
                    crate::scenario::parse("x.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
                s.faults.remove(0)
            })
            .collect()
    }

    #[test]
    fn windows_overlap_only_when_they_share_an_instant() {
        let f = faults(
            "  - { at: 10s, for: 5s, pause: email }\n  - { at: 15s, for: 5s, pause: email }\n  - { at: 14s, for: 1s, pause: email }\n  - { at: 40s, crash: email }\n  - { at: 50s, crash: email, restart_after: 1s }",
        );
        assert!(!overlap(&f[0], &f[1]), "back to back");
        assert!(overlap(&f[0], &f[2]) && overlap(&f[2], &f[0]));
        assert!(!overlap(&f[1], &f[2]));
        // A crash without restart never ends.
        assert!(overlap(&f[3], &f[4]));
    }

    #[test]
    fn only_overlapping_windows_of_one_switch_with_different_settings_conflict() {
        let f = faults(
            "  - { at: 10s, for: 5s, latency: email, add: 100ms }
  - { at: 12s, for: 5s, latency: email, add: 100ms }
  - { at: 12s, for: 5s, latency: email, add: 300ms }
  - { at: 12s, for: 5s, latency: payment, add: 300ms }
  - { at: 15s, for: 5s, latency: email, add: 300ms }
  - { at: 12s, for: 5s, errors: email, share: 5% }
  - { at: 13s, for: 5s, errors: email, share: 10%, keys: 50% }
  - { at: 13s, for: 5s, link: latency, delay: 10ms }
  - { at: 13s, for: 5s, link: bandwidth, bytes_per_sec: 1000 }
  - { at: 14s, for: 5s, link: latency, delay: 10ms, direction: upstream }
  - { at: 12s, for: 5s, provider_outage: { errors: 30% } }
  - { at: 14s, for: 5s, provider_outage: { errors: 30%, status: 429 } }
  - { at: 12s, for: 5s, poison: email, keys: 1% }
  - { at: 14s, for: 5s, poison: email, keys: 2% }
  - { at: 12s, for: 5s, pause: email }
  - { at: 14s, crash: email, restart_after: 30s }
  - { at: 15s, crash: email }",
        );
        let c = |i: usize, j: usize| conflict(&f[i], &f[j]);
        assert_eq!(c(0, 1), None, "identical: they compose");
        assert_eq!(c(0, 2), Some(vec!["add"]));
        assert_eq!(c(0, 3), None, "another service");
        assert_eq!(c(0, 4), None, "back to back");
        assert_eq!(c(5, 6), Some(vec!["share", "keys"]));
        assert_eq!(c(7, 8), None, "two toxics, two switches");
        assert_eq!(c(7, 9), Some(vec!["direction"]));
        assert_eq!(c(10, 11), Some(vec!["status"]));
        assert_eq!(c(12, 13), None, "poison windows are kept apart");
        assert_eq!(c(14, 14), None);
        assert_eq!(c(15, 16), None, "crashes compose");
        assert_eq!(c(14, 15), None, "different kinds");
    }

    #[test]
    fn a_switch_stays_on_until_its_last_window_closes() {
        let mut held = Held::default();
        let s = Switch {
            kind: "pause",
            target: "email".into(),
        };
        assert!(matches!(held.open(s.clone(), 0), Opened::First));
        assert!(matches!(
            held.open(s.clone(), 2),
            Opened::Joined { holder: 0 }
        ));
        assert!(matches!(held.close(&s, 0), Closed::StillOpen { by } if by == [2]));
        assert!(matches!(held.close(&s, 2), Closed::Last { holder: 0 }));
        assert!(matches!(held.open(s, 3), Opened::First));
    }
}
