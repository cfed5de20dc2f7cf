//! `faults:` in a scenario file: the raw shape of one fault entry (with its schema) and its
//! pure validation into the model's [`Fault`]s: exactly one kind per entry (the kind names
//! come from [`FaultKindName`]), the companions that kind takes, `at` inside the run and
//! `for` where the fault is a window, and no two overlapping windows of one fault whose
//! settings differ ([`super::compose::conflict`]). Every problem is collected; nothing is
//! read or run.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use strum::VariantArray;

use crate::chaos::model::{Fault, FaultKind, FaultKindName, FaultScope, ReplayTo};
use crate::config::check::{Checker, Path, Section, Spot};
use crate::config::schema;
use crate::config::tree::{Scalar, Text};
use crate::config::units::Share;
use crate::config::units::{self, DURATION_MAX, UnitError, choice, duration_in, int_in, quoted};
use crate::topology::ServiceKind;

/// One fault on the timeline. Exactly one kind key (`crash`, `pause`, `latency`, `errors`,
/// `duplicate`, `provider_outage`, `replay`, `exec`), its companions, and `at`/`for`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    /// Start, on the run's clock.
    #[schemars(required, with = "crate::config::schema::Duration")]
    pub at: Option<Text>,
    #[serde(rename = "for")]
    /// How long it lasts (pause, latency, errors, poison, duplicate, reorder,
    /// provider_outage).
    pub for_: Option<Scalar<schema::Duration>>,
    /// The service's consumers stop without committing.
    pub crash: Option<Scalar<crate::topology::ServiceKind>>,
    pub restart_after: Option<Scalar<schema::Duration>>,
    /// The service stops consuming, keeping its partitions.
    pub pause: Option<Scalar<crate::topology::ServiceKind>>,
    /// Added processing time for the service (with `add`).
    pub latency: Option<Scalar<crate::topology::ServiceKind>>,
    /// The added time: quote it inside `{ }` when it has a comma.
    pub add: Option<Scalar<schema::Latency>>,
    /// The service fails deliveries (nack).
    pub errors: Option<Scalar<crate::topology::ServiceKind>>,
    /// Events of the picked orders, intended inside the window, always fail at the service
    /// (poison messages); with `max_deliveries` they end on `order.dead_letter`.
    pub poison: Option<Scalar<crate::topology::ServiceKind>>,
    /// Deliveries arrive twice at the service.
    pub duplicate: Option<Scalar<crate::topology::ServiceKind>>,
    /// Share of deliveries the fault touches (default 100%).
    pub share: Option<Scalar<schema::Share>>,
    /// Share of orders the fault touches (default 100%).
    pub keys: Option<Scalar<schema::Share>>,
    #[schemars(with = "Option<RawOutage>")]
    pub provider_outage: Option<Spanned<RawOutage>>,
    /// Events of one key delivered out of order on this topic, e.g. `order.created`.
    pub reorder: Option<Scalar<String>>,
    /// Rewind the service's consumer group (`to: earliest` or a run time).
    pub replay: Option<Scalar<crate::topology::ServiceKind>>,
    pub to: Option<Scalar<String>>,
    /// A command run with `sh -c`; its output goes to the run folder.
    pub exec: Option<Scalar<String>>,
    /// A fault on the TCP link to a networked broker, through the built-in fault proxy.
    pub link: Option<Scalar<LinkKind>>,
    /// Link latency: the added delay.
    pub delay: Option<Scalar<schema::Duration>>,
    /// Link latency: uniform jitter around `delay`.
    pub jitter: Option<Scalar<schema::Duration>>,
    /// Link bandwidth: bytes per second, per connection and direction.
    pub bytes_per_sec: Option<Scalar<schema::Int<1, { u64::MAX }>>>,
    /// Which way a link fault acts (default both).
    pub direction: Option<Scalar<crate::chaos::proxy::Direction>>,
    /// Observe mode: which of your links (`observe.links`) a link fault acts on.
    pub on: Option<Scalar<String>>,
}

/// The payment provider fails a share of calls, or loses a share of answers:
/// `provider_outage: { errors: 30%, latency: 2s, status: 503, retry_after: 1s }`,
/// `provider_outage: { lost_answers: 5% }`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutage {
    /// Share of calls that fail with `status` (default 100%, or 0% with `lost_answers`).
    pub errors: Option<Scalar<schema::Share>>,
    /// Share of the other calls whose answer is lost: the card is charged, the answer comes
    /// only after the payment service's timeout (default 0%).
    pub lost_answers: Option<Scalar<schema::Share>>,
    pub latency: Option<Scalar<schema::Latency>>,
    pub status: Option<Scalar<schema::Int<400, 599>>>,
    pub retry_after: Option<Scalar<schema::Duration>>,
}

crate::words_schema!(
    /// A fault on the TCP link, through the built-in fault proxy.
    LinkKind,
    super::proxy::LinkToxic::KINDS
);

const EXAMPLE: &str = "write a fault like `{ at: 80s, crash: email, restart_after: 10s }`";

/// Whether the kind lasts a window and so needs `for`: all but the crash (its window is its
/// downtime) and the instant ones.
fn windowed(kind: FaultKindName) -> bool {
    !matches!(
        kind,
        FaultKindName::Crash | FaultKindName::Replay | FaultKindName::Exec
    )
}

/// The keys besides `at` and `for` a kind takes.
fn companions_of(kind: FaultKindName) -> &'static [&'static str] {
    match kind {
        FaultKindName::Crash => &["restart_after"],
        FaultKindName::Latency => &["add", "share", "keys"],
        FaultKindName::Errors
        | FaultKindName::Poison
        | FaultKindName::Duplicate
        | FaultKindName::Reorder => &["share", "keys"],
        FaultKindName::Replay => &["to"],
        FaultKindName::Link => &[
            "delay",
            "jitter",
            "bytes_per_sec",
            "direction",
            "share",
            "on",
        ],
        FaultKindName::Pause | FaultKindName::ProviderOutage | FaultKindName::Exec => &[],
    }
}

/// The service names a service fault may name.
fn services() -> Vec<(&'static str, ServiceKind)> {
    ServiceKind::ALL.iter().map(|k| (k.name(), *k)).collect()
}

impl RawFault {
    /// Where this entry names `kind`, if it does.
    fn kind_key(&self, kind: FaultKindName) -> Option<&Location> {
        let text = match kind {
            FaultKindName::Crash => self.crash.as_deref(),
            FaultKindName::Pause => self.pause.as_deref(),
            FaultKindName::Latency => self.latency.as_deref(),
            FaultKindName::Errors => self.errors.as_deref(),
            FaultKindName::Poison => self.poison.as_deref(),
            FaultKindName::Duplicate => self.duplicate.as_deref(),
            FaultKindName::Reorder => self.reorder.as_deref(),
            FaultKindName::Replay => self.replay.as_deref(),
            FaultKindName::Exec => self.exec.as_deref(),
            FaultKindName::Link => self.link.as_deref(),
            FaultKindName::ProviderOutage => {
                return self.provider_outage.as_ref().map(|o| &o.referenced);
            }
        };
        text.map(|t| &t.referenced)
    }
}

/// Checks `faults:`. Returns the faults that validated and, parallel to them, where each
/// one's kind key is (for the checks of the faults against the target).
pub fn validate(
    raw: &Spanned<Vec<Spanned<RawFault>>>,
    check: &mut Checker,
    path: &Path,
    run_end: Duration,
) -> (Vec<Fault>, Vec<Spot>) {
    let mut v = FaultsValidator {
        check,
        state: Vec::new(),
    };
    let faults = v.faults(raw, path, run_end);
    (faults, v.state)
}

/// The state is where each fault's kind was written.
type FaultsValidator<'c, 'a> = Section<'c, 'a, Vec<Spot>>;

impl FaultsValidator<'_, '_> {
    fn faults(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawFault>>>,
        path: &Path,
        run_end: Duration,
    ) -> Vec<Fault> {
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
                let Some(keys) = super::compose::conflict(earlier, later) else {
                    continue;
                };
                let target = super::action(later).1;
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
        let kinds: Vec<(FaultKindName, &Location)> = FaultKindName::VARIANTS
            .iter()
            .filter_map(|&kind| Some((kind, f.kind_key(kind)?)))
            .collect();
        let (kind, kind_at) = match kinds.as_slice() {
            [] => {
                let names: Vec<&str> = FaultKindName::VARIANTS.iter().map(|&k| k.into()).collect();
                let (last, rest) = names.split_last().unwrap_or((&"", &[]));
                self.report(
                    at_fault,
                    path,
                    format!("a fault needs one of {} or {last}", rest.join(", ")),
                    Some(EXAMPLE.to_owned()),
                );
                return None;
            }
            [(one, at)] => (*one, *at),
            [(first, _), (second, at), ..] => {
                let second: &str = (*second).into();
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
        let windowed = windowed(kind);
        match &f.for_ {
            None if windowed => self.missing(at_fault, &path.key("for"), "for: 20s"),
            Some(t) if !windowed => {
                let hint = if kind == FaultKindName::Crash {
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
        self.state.push(Spot::at(kind_at, kind_path));
        Some(Fault {
            at,
            duration,
            kind,
            scope,
        })
    }

    /// Reports companions the kind does not take (`add` on a crash, `to` on a pause...).
    fn companions(&mut self, f: &RawFault, kind: FaultKindName, path: &Path) {
        let allowed = companions_of(kind);
        for (name, text) in [
            ("restart_after", f.restart_after.as_deref()),
            ("add", f.add.as_deref()),
            ("share", f.share.as_deref()),
            ("keys", f.keys.as_deref()),
            ("to", f.to.as_deref()),
            ("delay", f.delay.as_deref()),
            ("jitter", f.jitter.as_deref()),
            ("bytes_per_sec", f.bytes_per_sec.as_deref()),
            ("direction", f.direction.as_deref()),
            ("on", f.on.as_deref()),
        ] {
            if let Some(t) = text
                && !allowed.contains(&name)
            {
                let hint = if allowed.is_empty() {
                    format!(
                        "a {kind} fault takes only `at`{}",
                        if windowed(kind) { " and `for`" } else { "" }
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
        kind: FaultKindName,
        at_fault: &Location,
        path: &Path,
    ) -> Option<FaultKind> {
        let key: &str = kind.into();
        let service = |v: &mut Self, text: Option<&Text>| {
            text.and_then(|t| v.parse(t, &path.key(key), |t| choice(t, "a service", &services())))
        };
        Some(match kind {
            FaultKindName::Crash => {
                let service = service(self, f.crash.as_deref())?;
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
            FaultKindName::Pause => FaultKind::Pause {
                service: service(self, f.pause.as_deref())?,
            },
            FaultKindName::Latency => {
                let service = service(self, f.latency.as_deref());
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
            FaultKindName::Errors => FaultKind::Errors {
                service: service(self, f.errors.as_deref())?,
            },
            FaultKindName::Poison => FaultKind::Poison {
                service: service(self, f.poison.as_deref())?,
            },
            FaultKindName::Duplicate => FaultKind::Duplicate {
                service: service(self, f.duplicate.as_deref())?,
            },
            FaultKindName::Reorder => {
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
            FaultKindName::Replay => {
                let service = service(self, f.replay.as_deref());
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
            FaultKindName::Exec => {
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
            FaultKindName::Link => self.link(f, at_fault, path)?,
            FaultKindName::ProviderOutage => {
                self.outage(f.provider_outage.as_ref()?, &path.key("provider_outage"))?
            }
        })
    }

    /// `{ link: latency, delay: 100ms, jitter: 20ms }`, `{ link: bandwidth, bytes_per_sec:
    /// 65536 }`, `{ link: reset }`, `{ link: blackhole }`; `direction` and `share` optional.
    fn link(&mut self, f: &RawFault, at_fault: &Location, path: &Path) -> Option<FaultKind> {
        use super::proxy::{Direction, LinkToxic, ToxicSpec};
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
            ("delay", f.delay.as_deref()),
            ("jitter", f.jitter.as_deref()),
            ("bytes_per_sec", f.bytes_per_sec.as_deref()),
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
        let max = super::proxy::LATENCY_MAX;
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
        Some(FaultKind::Link {
            toxic,
            direction,
            on: f.on.as_ref().map(|t| t.value.clone()),
        })
    }

    fn outage(&mut self, raw: &Spanned<RawOutage>, path: &Path) -> Option<FaultKind> {
        let o = &raw.value;
        // An outage fails every call unless it says otherwise; one that loses answers
        // fails none unless it says so.
        let errors_default = if o.lost_answers.is_some() {
            Share::ZERO
        } else {
            Share(1.0)
        };
        let errors = self.or_default(
            &o.errors,
            &path.key("errors"),
            errors_default,
            units::parse_share,
        );
        let lost_answers = self.or_default(
            &o.lost_answers,
            &path.key("lost_answers"),
            Share::ZERO,
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
            lost_answers,
        })
    }
}
