//! Validation of `faults:`: one kind per entry, the companions that kind takes, `at` inside
//! the run and `for` where the fault is a window. Part of the pure validation step: every
//! problem is collected, nothing is read or run.

use super::*;
use crate::topology::ServiceKind;

const SERVICES: [(&str, ServiceKind); 5] = [
    ("payment", ServiceKind::Payment),
    ("inventory", ServiceKind::Inventory),
    ("email", ServiceKind::Email),
    ("warehouse", ServiceKind::Warehouse),
    ("analytics", ServiceKind::Analytics),
];

const EXAMPLE: &str = "write a fault like `{ at: 80s, crash: email, restart_after: 10s }`";

/// Kinds that last a window and so need `for`.
const WINDOWED: [&str; 8] = [
    "link",
    "pause",
    "latency",
    "errors",
    "poison",
    "duplicate",
    "reorder",
    "provider_outage",
];

impl Validator<'_> {
    pub(super) fn faults(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawFault>>>>,
        path: &Path,
        run_end: Duration,
    ) -> Vec<Fault> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let faults: Vec<(usize, Fault)> = raw
            .value
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((i, self.fault(f, &path.index(i), run_end)?)))
            .collect();
        self.overlaps(&faults, &raw.value, path);
        faults.into_iter().map(|(_, f)| f).collect()
    }

    /// Refuses two overlapping windows of one fault on one target whose settings differ:
    /// the state they switch holds one setting at a time, so the report could not say
    /// which was applied (`chaos::compose`). Identical ones compose and pass.
    fn overlaps(&mut self, faults: &[(usize, Fault)], raw: &[Spanned<RawFault>], path: &Path) {
        for (n, (j, later)) in faults.iter().enumerate() {
            for (i, earlier) in &faults[..n] {
                let Some(keys) = crate::chaos::compose::conflict(earlier, later) else {
                    continue;
                };
                let target = crate::chaos::action(later).1;
                let kind = later.kind.label();
                let window = |f: &Fault| {
                    let at = humantime::format_duration(f.at);
                    match f.duration {
                        Some(d) => format!("{at}..{}", humantime::format_duration(f.at + d)),
                        None => format!("from {at} on"),
                    }
                };
                let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                let keys = match quoted.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} and {last}", rest.join(", "))
                    }
                    _ => quoted.concat(),
                };
                let differs = if quoted.len() == 1 {
                    format!("a different {keys}")
                } else {
                    format!("different {keys}")
                };
                self.report(
                    &raw[*j].referenced,
                    &path.index(*j),
                    format!(
                        "this {kind} fault on {target} ({}) overlaps faults[{i}] at line {} \
                         ({}) with {differs}; {target} has one {kind} setting at a \
                         time, so the report could not say which one was applied",
                        window(later),
                        raw[*i].referenced.line(),
                        window(earlier),
                    ),
                    Some(format!(
                        "give both the same {keys} (overlapping windows of one fault compose: \
                         on until the last one ends), or make the windows back to back"
                    )),
                );
            }
        }
    }

    fn fault(&mut self, raw: &Spanned<RawFault>, path: &Path, run_end: Duration) -> Option<Fault> {
        let at_fault = &raw.referenced;
        let f = &raw.value;
        let mut kinds: Vec<(&str, &Location)> = [
            ("crash", &f.crash),
            ("pause", &f.pause),
            ("latency", &f.latency),
            ("errors", &f.errors),
            ("poison", &f.poison),
            ("duplicate", &f.duplicate),
            ("reorder", &f.reorder),
            ("replay", &f.replay),
            ("exec", &f.exec),
            ("link", &f.link),
        ]
        .into_iter()
        .filter_map(|(name, text)| text.as_ref().map(|t| (name, &t.referenced)))
        .collect();
        if let Some(outage) = &f.provider_outage {
            kinds.push(("provider_outage", &outage.referenced));
        }
        let (kind, kind_at) = match kinds.as_slice() {
            [] => {
                self.report(
                    at_fault,
                    path,
                    "a fault needs one of crash, pause, latency, errors, poison, duplicate, \
                     reorder, provider_outage, link, replay or exec"
                        .to_owned(),
                    Some(EXAMPLE.to_owned()),
                );
                return None;
            }
            [(one, at)] => (*one, **at),
            [(first, _), (second, at), ..] => {
                self.report(
                    at,
                    &path.key(second),
                    format!(
                        "a fault has exactly one kind, but this one has both `{first}` and `{second}`"
                    ),
                    Some("split it into two faults".to_owned()),
                );
                return None;
            }
        };
        let at = self.required(&f.at, at_fault, &path.key("at"), "at: 30s", |t| {
            duration_in(t, false, DURATION_MAX)
        });
        let duration = f
            .for_
            .as_ref()
            .and_then(|t| self.parse(t, &path.key("for"), |t| duration_in(t, true, DURATION_MAX)));
        let windowed = WINDOWED.contains(&kind);
        match &f.for_ {
            None if windowed => self.missing(at_fault, &path.key("for"), "for: 20s"),
            Some(t) if !windowed => {
                let hint = if kind == "crash" {
                    "a crash ends when the service restarts: write `restart_after: 10s`"
                } else {
                    "it happens at one instant"
                };
                self.report(
                    &t.referenced,
                    &path.key("for"),
                    format!("a {kind} fault takes no `for`"),
                    Some(hint.to_owned()),
                );
            }
            _ => {}
        }
        self.companions(f, kind, path);
        let scope = FaultScope {
            share: self.or_default(&f.share, &path.key("share"), Share(1.0), units::parse_share),
            keys: self.or_default(&f.keys, &path.key("keys"), Share(1.0), units::parse_share),
        };
        let kind = self.fault_kind(f, kind, at_fault, path)?;
        let at = at?;
        if at > run_end {
            if let Some(t) = &f.at {
                self.report(
                    &t.referenced,
                    &path.key("at"),
                    format!(
                        "the fault starts at {} but the run ends at {} (phases and drain)",
                        humantime::format_duration(at),
                        humantime::format_duration(run_end)
                    ),
                    Some("move it inside the run, or lengthen the phases or the drain".to_owned()),
                );
            }
            return None;
        }
        // A crash's window is its downtime: until the restart, or open-ended.
        let duration = match &kind {
            FaultKind::Crash { restart_after, .. } => *restart_after,
            _ => duration,
        };
        // Where the kind key is, for the checks of the faults against the target.
        let kind_path = path.key(kind.label());
        self.spots.faults.push(Spot::at(&kind_at, kind_path));
        Some(Fault {
            at,
            duration,
            kind,
            scope,
        })
    }

    /// Reports companions the kind does not take (`add` on a crash, `to` on a pause...).
    fn companions(&mut self, f: &RawFault, kind: &str, path: &Path) {
        let allowed: &[&str] = match kind {
            "crash" => &["restart_after"],
            "latency" => &["add", "share", "keys"],
            "errors" | "poison" | "duplicate" | "reorder" => &["share", "keys"],
            "replay" => &["to"],
            "link" => &["delay", "jitter", "bytes_per_sec", "direction", "share"],
            _ => &[],
        };
        for (name, text) in [
            ("restart_after", &f.restart_after),
            ("add", &f.add),
            ("share", &f.share),
            ("keys", &f.keys),
            ("to", &f.to),
            ("delay", &f.delay),
            ("jitter", &f.jitter),
            ("bytes_per_sec", &f.bytes_per_sec),
            ("direction", &f.direction),
        ] {
            if let Some(t) = text
                && !allowed.contains(&name)
            {
                let hint = if allowed.is_empty() {
                    format!(
                        "a {kind} fault takes only `at`{}",
                        if WINDOWED.contains(&kind) {
                            " and `for`"
                        } else {
                            ""
                        }
                    )
                } else {
                    format!("a {kind} fault takes {}", allowed.join(", "))
                };
                self.report(
                    &t.referenced,
                    &path.key(name),
                    format!("a {kind} fault takes no `{name}`"),
                    Some(hint),
                );
            }
        }
    }

    fn fault_kind(
        &mut self,
        f: &RawFault,
        kind: &str,
        at_fault: &Location,
        path: &Path,
    ) -> Option<FaultKind> {
        let service = |v: &mut Validator, text: &Option<Text>| {
            text.as_ref()
                .and_then(|t| v.parse(t, &path.key(kind), |t| choice(t, "a service", &SERVICES)))
        };
        Some(match kind {
            "crash" => {
                let service = service(self, &f.crash)?;
                let restart_after = f.restart_after.as_ref().and_then(|t| {
                    self.parse(t, &path.key("restart_after"), |t| {
                        duration_in(t, false, DURATION_MAX)
                    })
                });
                FaultKind::Crash {
                    service,
                    restart_after,
                }
            }
            "pause" => FaultKind::Pause {
                service: service(self, &f.pause)?,
            },
            "latency" => {
                let service = service(self, &f.latency);
                let add = self.required(
                    &f.add,
                    at_fault,
                    &path.key("add"),
                    "add: lognormal(200ms, 0.3)",
                    units::parse_latency,
                );
                FaultKind::Latency {
                    service: service?,
                    add: add?,
                }
            }
            "errors" => FaultKind::Errors {
                service: service(self, &f.errors)?,
            },
            "poison" => FaultKind::Poison {
                service: service(self, &f.poison)?,
            },
            "duplicate" => FaultKind::Duplicate {
                service: service(self, &f.duplicate)?,
            },
            "reorder" => {
                let text = f.reorder.as_ref()?;
                let topics: Vec<(&str, crate::events::Topic)> = crate::events::Topic::ALL
                    .iter()
                    .map(|t| (t.name(), *t))
                    .collect();
                FaultKind::Reorder {
                    topic: self.parse(text, &path.key("reorder"), |t| {
                        choice(t, "a topic", &topics)
                    })?,
                }
            }
            "replay" => {
                let service = service(self, &f.replay);
                let to = self.or_default(&f.to, &path.key("to"), ReplayTo::Earliest, |t| {
                    if t.trim() == "earliest" {
                        Ok(ReplayTo::Earliest)
                    } else {
                        duration_in(t, false, DURATION_MAX)
                            .map(ReplayTo::Time)
                            .map_err(|_| {
                                UnitError::new(
                                    format!("{} is neither `earliest` nor a run time", quoted(t)),
                                    Some("write `to: earliest` or `to: 30s`"),
                                )
                            })
                    }
                });
                FaultKind::Replay {
                    service: service?,
                    to,
                }
            }
            "exec" => {
                let command = f.exec.as_ref()?;
                if command.value.trim().is_empty() {
                    self.report(
                        &command.referenced,
                        &path.key("exec"),
                        "the command is empty".to_owned(),
                        Some("write a command like `exec: \"redis-cli ping\"`".to_owned()),
                    );
                    return None;
                }
                FaultKind::Exec {
                    command: command.value.clone(),
                }
            }
            "link" => self.link(f, at_fault, path)?,
            _ => self.outage(f.provider_outage.as_ref()?, &path.key("provider_outage"))?,
        })
    }

    /// `{ link: latency, delay: 100ms, jitter: 20ms }`, `{ link: bandwidth, bytes_per_sec:
    /// 65536 }`, `{ link: reset }`, `{ link: blackhole }`; `direction` and `share` optional.
    fn link(&mut self, f: &RawFault, at_fault: &Location, path: &Path) -> Option<FaultKind> {
        use crate::chaos::proxy::{Direction, LinkToxic, ToxicSpec};
        let text = f.link.as_ref()?;
        let kind = self.parse(text, &path.key("link"), |t| {
            choice(
                t,
                "a link fault",
                &[
                    ("latency", "latency"),
                    ("bandwidth", "bandwidth"),
                    ("reset", "reset"),
                    ("blackhole", "blackhole"),
                ],
            )
        })?;
        let wants: &[&str] = match kind {
            "latency" => &["delay", "jitter"],
            "bandwidth" => &["bytes_per_sec"],
            _ => &[],
        };
        for (name, value) in [
            ("delay", &f.delay),
            ("jitter", &f.jitter),
            ("bytes_per_sec", &f.bytes_per_sec),
        ] {
            if let Some(v) = value
                && !wants.contains(&name)
            {
                self.report(
                    &v.referenced,
                    &path.key(name),
                    format!("a {kind} link fault takes no `{name}`"),
                    Some(if wants.is_empty() {
                        format!("a {kind} link fault takes only `direction` and `share`")
                    } else {
                        format!("a {kind} link fault takes {}", wants.join(", "))
                    }),
                );
            }
        }
        let max = crate::chaos::proxy::LATENCY_MAX;
        let toxic = match kind {
            "latency" => LinkToxic::Latency {
                latency: self.required(
                    &f.delay,
                    at_fault,
                    &path.key("delay"),
                    "delay: 100ms",
                    |t| duration_in(t, false, max),
                )?,
                jitter: self.or_default(&f.jitter, &path.key("jitter"), Duration::ZERO, |t| {
                    duration_in(t, false, max)
                }),
            },
            "bandwidth" => LinkToxic::Bandwidth {
                bytes_per_sec: self.required(
                    &f.bytes_per_sec,
                    at_fault,
                    &path.key("bytes_per_sec"),
                    "bytes_per_sec: 65536",
                    |t| int_in(t, 1, 10_000_000_000),
                )?,
            },
            "reset" => LinkToxic::Reset,
            _ => LinkToxic::Blackhole,
        };
        let direction =
            self.or_default(&f.direction, &path.key("direction"), Direction::Both, |t| {
                choice(
                    t,
                    "a direction",
                    &[
                        ("both", Direction::Both),
                        ("upstream", Direction::Upstream),
                        ("downstream", Direction::Downstream),
                    ],
                )
            });
        if let Some(problem) = ToxicSpec::new(toxic.clone()).problem() {
            self.report(&text.referenced, &path.key("link"), problem, None);
            return None;
        }
        Some(FaultKind::Link { toxic, direction })
    }

    fn outage(&mut self, raw: &Spanned<RawOutage>, path: &Path) -> Option<FaultKind> {
        let o = &raw.value;
        let errors = self.or_default(
            &o.errors,
            &path.key("errors"),
            Share(1.0),
            units::parse_share,
        );
        let latency = o
            .latency
            .as_ref()
            .and_then(|t| self.parse(t, &path.key("latency"), units::parse_latency));
        let status = self.or_default(&o.status, &path.key("status"), 503, |t| {
            int_in(t, 400, 599).map(|n| n as u16)
        });
        let retry_after = o.retry_after.as_ref().and_then(|t| {
            self.parse(t, &path.key("retry_after"), |t| {
                duration_in(t, false, units::LATENCY_MAX)
            })
        });
        Some(FaultKind::ProviderOutage {
            errors,
            status,
            latency,
            retry_after,
        })
    }
}
