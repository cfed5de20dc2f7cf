//! `load:` in a scenario file: the arrival schedule's raw shape (with its schema) and its
//! pure validation into the model's [`Load`], with `--rate-scale` applied to every rate.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::config::check::{Checker, Path, Section, Spot};
use crate::config::schema;
use crate::config::tree::{Scalar, Text};
use crate::config::units::{
    self, DURATION_MAX, RATE_MAX_PER_SEC, Rate, choice, duration_in, int_in, quoted,
};
use crate::load::model::{Arrivals, CheckoutMode, Load, Phase, PhaseKind};

const PHASES_MAX: usize = 1000;
/// The most orders a scenario may plan. Every order is held until the checks (its ledger
/// entry, its due time, its ground truth): 100 million is several gigabytes, and more is a
/// typo in a rate or a duration, not a test that fits on one machine.
const ORDERS_MAX: f64 = 100_000_000.0;

/// The arrival schedule: orders arrive on it whether or not earlier ones finished.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    /// `poisson` (default) or `uniform`.
    pub arrivals: Option<Scalar<crate::load::model::Arrivals>>,
    /// A checkout not acked within this time has failed (default `2s`).
    pub checkout_timeout: Option<Scalar<schema::Duration>>,
    /// What a checkout waits for: `{ mode: async }` (default) or `{ mode: sync }`.
    #[schemars(with = "Option<RawCheckout>")]
    pub checkout: Option<Spanned<RawCheckout>>,
    /// At most this many checkouts in flight (default 10000).
    pub max_in_flight: Option<Scalar<schema::Int<1, 1000000>>>,
    /// The run is INVALID when the generator's own send-lag p99 exceeds this (default `100ms`).
    pub max_send_lag: Option<Scalar<schema::Duration>>,
    /// One kind per phase: `{ ramp: 30s, from: 50/s, to: 500/s }`, `{ hold: 40s, rate: 500/s }`,
    /// `{ spike: 15s, rate: 1500/s }`, `{ pause: 5s }`.
    #[schemars(required, with = "Vec<RawPhase>", length(min = 1, max = 1000))]
    pub phases: Option<Spanned<Vec<Spanned<RawPhase>>>>,
    /// After the last phase, time for the pipeline to settle before the checks (default `30s`).
    pub drain: Option<Scalar<schema::Duration>>,
}

/// `checkout: { mode: sync }`: a mapping, so that later checkout settings (an HTTP
/// checkout endpoint in observe mode) have a place next to the mode.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheckout {
    pub mode: Option<Scalar<crate::load::model::CheckoutMode>>,
}

/// One phase; exactly one of `ramp`, `hold`, `spike`, `pause` must be present (checked in
/// `validate.rs`, so that a phase with two kinds is reported next to every other problem).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPhase {
    pub ramp: Option<Scalar<schema::Duration>>,
    pub hold: Option<Scalar<schema::Duration>>,
    pub spike: Option<Scalar<schema::Duration>>,
    pub pause: Option<Scalar<schema::Duration>>,
    /// Ramp start rate, e.g. `50/s`.
    pub from: Option<Scalar<schema::Rate>>,
    /// Ramp end rate, e.g. `500/s`.
    pub to: Option<Scalar<schema::Rate>>,
    /// Hold or spike rate, e.g. `500/s`.
    pub rate: Option<Scalar<schema::Rate>>,
}

/// Checks `load:`. `rate_scale` is `--rate-scale`, once it is known to be a valid factor;
/// `hold` is `--hold`, which replaces the phases with one hold at their peak rate for that
/// long. Returns the load and where `checkout.mode` was written, if it was.
pub fn validate(
    raw: &Spanned<RawLoad>,
    check: &mut Checker,
    path: &Path,
    rate_scale: Option<f64>,
    hold: Option<Duration>,
) -> (Load, Option<Spot>) {
    let mut v = LoadValidator {
        check,
        state: LoadState {
            rate_scale,
            hold,
            mode_spot: None,
        },
    };
    let load = v.load(raw, path);
    (load, v.state.mode_spot)
}

type LoadValidator<'c, 'a> = Section<'c, 'a, LoadState>;

struct LoadState {
    rate_scale: Option<f64>,
    hold: Option<Duration>,
    mode_spot: Option<Spot>,
}

impl LoadValidator<'_, '_> {
    fn load(&mut self, raw: &Spanned<RawLoad>, path: &Path) -> Load {
        let at = &raw.referenced;
        let raw = &raw.value;
        let arrivals = self.or_default(
            &raw.arrivals,
            &path.key("arrivals"),
            Arrivals::Poisson,
            |t| {
                choice(
                    t,
                    "an arrival process",
                    &[
                        ("poisson", Arrivals::Poisson),
                        ("uniform", Arrivals::Uniform),
                    ],
                )
            },
        );
        let checkout_timeout = self.or_default(
            &raw.checkout_timeout,
            &path.key("checkout_timeout"),
            Duration::from_secs(2),
            |t| duration_in(t, true, units::LATENCY_MAX),
        );
        let checkout_mode = match &raw.checkout {
            Some(checkout) => self.checkout_mode(&checkout.value, &path.key("checkout")),
            None => CheckoutMode::Async,
        };
        let max_in_flight = self.or_default(
            &raw.max_in_flight,
            &path.key("max_in_flight"),
            10_000,
            |t| int_in(t, 1, 1_000_000).map(|n| n as usize),
        );
        let max_send_lag = self.or_default(
            &raw.max_send_lag,
            &path.key("max_send_lag"),
            Duration::from_millis(100),
            |t| duration_in(t, true, units::LATENCY_MAX),
        );
        let drain = self.or_default(
            &raw.drain,
            &path.key("drain"),
            Duration::from_secs(30),
            |t| duration_in(t, true, DURATION_MAX),
        );
        let phases_path = path.key("phases");
        let phases = match &raw.phases {
            Some(phases) => self.phases(phases, &phases_path),
            None => {
                self.missing(at, &phases_path, "phases: [ { hold: 10s, rate: 100/s } ]");
                Vec::new()
            }
        };
        Load {
            arrivals,
            checkout_timeout,
            checkout_mode,
            max_in_flight,
            phases,
            drain,
            max_send_lag,
        }
    }

    fn checkout_mode(&mut self, raw: &RawCheckout, path: &Path) -> CheckoutMode {
        if let Some(mode) = &raw.mode {
            self.state.mode_spot = Some(Spot::at(&mode.referenced, path.key("mode")));
        }
        self.or_default(&raw.mode, &path.key("mode"), CheckoutMode::Async, |t| {
            choice(
                t,
                "a checkout mode",
                &[("async", CheckoutMode::Async), ("sync", CheckoutMode::Sync)],
            )
        })
    }

    fn phases(&mut self, raw: &Spanned<Vec<Spanned<RawPhase>>>, path: &Path) -> Vec<Phase> {
        let hint = Some("write phases like `- { hold: 40s, rate: 500/s }`".to_owned());
        if raw.value.is_empty() {
            self.report(
                &raw.referenced,
                path,
                "needs at least one phase".to_owned(),
                hint,
            );
            return Vec::new();
        }
        if raw.value.len() > PHASES_MAX {
            let message = format!(
                "has {} phases, above the limit of {PHASES_MAX}",
                raw.value.len()
            );
            self.report(&raw.referenced, path, message, None);
            return Vec::new();
        }
        let phases: Vec<Phase> = raw
            .value
            .iter()
            .enumerate()
            .filter_map(|(i, phase)| self.phase(phase, &path.index(i)))
            .collect();
        let total: Duration = phases.iter().map(|p| p.duration).sum();
        if total > DURATION_MAX {
            let message = format!(
                "the phases add up to {}, above the limit of 24h",
                humantime::format_duration(total)
            );
            self.report(&raw.referenced, path, message, None);
        }
        // `--hold`: the same peak, held: one phase at the highest (scaled) rate.
        let phases = match self.state.hold {
            Some(duration) if phases.len() == raw.value.len() => {
                if duration > DURATION_MAX {
                    let message = format!(
                        "--hold {} is above the limit of 24h",
                        humantime::format_duration(duration)
                    );
                    self.report(&raw.referenced, path, message, None);
                }
                let peak = (phases.iter())
                    .map(|p| p.kind.rates().0.max(p.kind.rates().1))
                    .fold(0.0, f64::max);
                vec![Phase {
                    kind: PhaseKind::Hold { rate: Rate(peak) },
                    duration,
                }]
            }
            _ => phases,
        };
        // Orders are counted only when every phase is valid: a phase left out would
        // make the count wrong.
        if phases.len() == raw.value.len() || self.state.hold.is_some() {
            self.orders_planned(&phases, &raw.referenced, path);
        }
        phases
    }

    /// A scenario plans at least one order (a run of pauses, or rates so low that no order
    /// falls due, has nothing to judge) and at most [`ORDERS_MAX`].
    fn orders_planned(&mut self, phases: &[Phase], at: &Location, path: &Path) {
        let expected: f64 = phases.iter().map(Phase::expected_orders).sum();
        let mut scaled = self
            .state
            .rate_scale
            .map(|f| format!(" with --rate-scale {f}"))
            .unwrap_or_default();
        if let Some(hold) = self.state.hold {
            scaled.push_str(&format!(
                " as a {} --hold at the peak",
                humantime::format_duration(hold)
            ));
        }
        if expected < 1.0 {
            let message = if phases.iter().all(|p| p.kind == PhaseKind::Pause) {
                "the phases plan no orders: every phase is a pause".to_owned()
            } else {
                format!("the phases plan no orders ({expected:.2} expected{scaled})")
            };
            let hint =
                "give a phase a rate that brings orders, e.g. `- { hold: 10s, rate: 100/s }`";
            self.report(at, path, message, Some(hint.to_owned()));
        } else if expected > ORDERS_MAX {
            self.report(
                at,
                path,
                format!(
                    "the phases plan {expected:.0} orders{scaled}, above the limit of {ORDERS_MAX:.0}"
                ),
                Some(
                    "every order is kept in memory until the checks: lower the rates or \
                     shorten the phases"
                        .to_owned(),
                ),
            );
        }
    }

    /// A phase's rate times `--rate-scale`, held to the limit the file's own rates meet.
    fn scaled(&mut self, rate: Rate, text: &Text, path: &Path) -> Option<Rate> {
        let Some(factor) = self.state.rate_scale else {
            return Some(rate);
        };
        let scaled = rate.per_sec() * factor;
        if scaled > RATE_MAX_PER_SEC {
            self.report(
                &text.referenced,
                path,
                format!(
                    "{} times --rate-scale {factor} is {scaled:.0}/s, above the limit of \
                     {RATE_MAX_PER_SEC}/s",
                    quoted(&text.value)
                ),
                Some(format!(
                    "--rate-scale may be at most {} for this phase",
                    // Rounded down, so that the factor suggested is one that passes.
                    (RATE_MAX_PER_SEC / rate.per_sec() * 100.0).floor() / 100.0
                )),
            );
            return None;
        }
        Some(Rate(scaled))
    }

    fn phase(&mut self, raw: &Spanned<RawPhase>, path: &Path) -> Option<Phase> {
        let at = &raw.referenced;
        let p = &raw.value;
        let kinds: Vec<(&str, &Text)> = [
            ("ramp", &p.ramp),
            ("hold", &p.hold),
            ("spike", &p.spike),
            ("pause", &p.pause),
        ]
        .into_iter()
        .filter_map(|(name, text)| text.as_deref().map(|t| (name, t)))
        .collect();
        let (kind, duration_text) = match kinds.as_slice() {
            [] => {
                self.report(
                    at,
                    path,
                    "a phase needs one of ramp, hold, spike or pause".to_owned(),
                    Some("write a phase like `{ hold: 40s, rate: 500/s }`".to_owned()),
                );
                return None;
            }
            [one] => *one,
            [first, second, ..] => {
                self.report(
                    &second.1.referenced,
                    &path.key(second.0),
                    format!(
                        "a phase has exactly one kind, but this one has both `{}` and `{}`",
                        first.0, second.0
                    ),
                    Some("split it into two phases, one after the other".to_owned()),
                );
                return None;
            }
        };
        let duration = self.parse(duration_text, &path.key(kind), |t| {
            duration_in(t, true, DURATION_MAX)
        });
        let (needs, forbids): (&[&str], &[&str]) = match kind {
            "ramp" => (&["from", "to"], &["rate"]),
            "pause" => (&[], &["from", "to", "rate"]),
            _ => (&["rate"], &["from", "to"]),
        };
        let example = match kind {
            "ramp" => "{ ramp: 30s, from: 50/s, to: 500/s }",
            "pause" => "{ pause: 5s }",
            "spike" => "{ spike: 15s, rate: 1500/s }",
            _ => "{ hold: 40s, rate: 500/s }",
        };
        let companions = [("from", &p.from), ("to", &p.to), ("rate", &p.rate)];
        let mut complete = true;
        for (name, text) in companions {
            match text {
                Some(t) if forbids.contains(&name) => {
                    complete = false;
                    let message = match needs {
                        [] => format!("a pause has no `{name}`: no orders arrive during a pause"),
                        [one] => format!("a {kind} takes `{one}`, not `{name}`"),
                        _ => format!("a {kind} takes `{}`, not `{name}`", needs.join("` and `")),
                    };
                    self.report(
                        &t.referenced,
                        &path.key(name),
                        message,
                        Some(format!("write a {kind} like `{example}`")),
                    );
                }
                None if needs.contains(&name) => {
                    complete = false;
                    self.report(
                        at,
                        &path.key(name),
                        format!("a {kind} needs `{name}`"),
                        Some(format!("write a {kind} like `{example}`")),
                    );
                }
                _ => {}
            }
        }
        // Rates are checked even when a companion is wrong, so every bad value is reported.
        let rate_of =
            |v: &mut Self, name: &str, text: &Option<Scalar<schema::Rate>>, positive: bool| {
                let text = text.as_ref()?;
                let parse = if positive {
                    units::parse_positive_rate
                } else {
                    units::parse_rate
                };
                let rate = v.parse(text, &path.key(name), parse)?;
                v.scaled(rate, text, &path.key(name))
            };
        let kind = match kind {
            "ramp" => {
                let from = rate_of(self, "from", &p.from, false);
                let to = rate_of(self, "to", &p.to, false);
                PhaseKind::Ramp {
                    from: from?,
                    to: to?,
                }
            }
            "hold" => PhaseKind::Hold {
                rate: rate_of(self, "rate", &p.rate, true)?,
            },
            "spike" => PhaseKind::Spike {
                rate: rate_of(self, "rate", &p.rate, true)?,
            },
            _ => PhaseKind::Pause,
        };
        complete.then_some(Phase {
            kind,
            duration: duration?,
        })
    }
}

/// Stands in for a missing `load` so the rest of the file is still checked.
pub fn placeholder() -> Load {
    Load {
        arrivals: Arrivals::Poisson,
        checkout_timeout: Duration::from_secs(2),
        checkout_mode: CheckoutMode::Async,
        max_in_flight: 10_000,
        phases: Vec::new(),
        drain: Duration::from_secs(30),
        max_send_lag: Duration::from_millis(100),
    }
}
