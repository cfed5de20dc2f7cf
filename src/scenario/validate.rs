//! Validation: the pure step from the raw serde shapes (`raw.rs`) to the checked model
//! (`model.rs`), filling in the standard topology's defaults.
//!
//! It parses every leaf with `units.rs`, checks ranges and the rules that span several keys
//! (a phase has exactly one kind, a ramp needs `from` and `to`), and collects every problem
//! in the file instead of stopping at the first, each with its position and field path.
//! It reads no clock and no file but those the scenario names, through its context; the
//! same raw input and files always give the same result.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::context::{Context, RATE_SCALE_MAX};
use super::model::*;
use super::raw::*;
use crate::config::check::{Checker, Path, Problem, Spot};
use crate::config::units::{self, parse_name};

/// What validation found: the scenario and its warnings, or the problems and the warnings.
type Checked = Result<(Scenario, Vec<Problem>), (Vec<Problem>, Vec<Problem>)>;

/// Checks a whole scenario in its context (the command line's overrides, the environment);
/// `Ok` holds the warnings, `Err` every problem and the warnings, each in file order.
pub fn validate(raw: &Spanned<RawScenario>, context: &Context) -> Checked {
    let mut v = Validator {
        check: Checker {
            files: context.files.clone(),
            ..Checker::new(context.env, context.unset)
        },
        context,
        rate_scale: None,
        spots: Spots::default(),
    };
    let scenario = v.scenario(raw);
    // Missing keys are found after their siblings; file order reads best. Problems of a
    // command-line flag have no position and come first.
    let Checker {
        mut problems,
        mut warnings,
        ..
    } = v.check;
    warnings.sort_by_key(|p| (p.line, p.column));
    if problems.is_empty() {
        Ok((scenario, warnings))
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        Err((problems, warnings))
    }
}

struct Validator<'a> {
    check: Checker<'a>,
    context: &'a Context<'a>,
    /// `--rate-scale`, once it is known to be a valid factor.
    rate_scale: Option<f64>,
    spots: Spots,
}

impl<'a> std::ops::Deref for Validator<'a> {
    type Target = Checker<'a>;

    fn deref(&self) -> &Checker<'a> {
        &self.check
    }
}

impl std::ops::DerefMut for Validator<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.check
    }
}

/// Where the values that the checks across sections (the target against the faults, the
/// checkout mode and the environment) are about came from, recorded while validating them.
#[derive(Default)]
struct Spots {
    target: crate::transport::config::TargetSpots,
    checkout_mode: Option<Spot>,
    /// Parallel to the scenario's faults: where each one's kind key is.
    faults: Vec<Spot>,
    /// Where `orders.payload` and its `key` are, when written.
    payload: Option<Spot>,
    payload_key: Option<Spot>,
    /// Where `observe:` and `services:` are, when written.
    observe: Option<Spot>,
    services: Option<Spot>,
    /// `observe.orders_to` and each output's `from`, as written, with where they are.
    observe_names: Vec<(String, Spot)>,
}

/// `orders_to` and each output's `from` in `observe:`, as written, with their spots.
fn observe_names(raw: &crate::observe::config::RawObserve, path: &Path) -> Vec<(String, Spot)> {
    let orders_to = raw.orders_to.iter().map(|t| {
        (
            t.value.clone(),
            Spot::at(&t.referenced, path.key("orders_to")),
        )
    });
    let from = raw
        .outputs
        .iter()
        .flat_map(|e| &e.0)
        .filter_map(|(key, o)| {
            let from = o.value.from.as_ref()?;
            let spot = Spot::at(
                &from.referenced,
                path.key("outputs").key(&key.value).key("from"),
            );
            Some((from.value.clone(), spot))
        });
    orders_to.chain(from).collect()
}

impl Validator<'_> {
    fn scenario(&mut self, raw: &Spanned<RawScenario>) -> Scenario {
        let root = Path::root();
        let at = &raw.referenced;
        let raw = &raw.value;
        let name = self
            .required(
                &raw.name,
                at,
                &root.key("name"),
                "name: black-friday",
                parse_name,
            )
            .unwrap_or_default();
        let description = raw
            .description
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_default();
        let seed = self.or_default(&raw.seed, &root.key("seed"), 1, units::parse_integer);
        self.rate_scale = self.rate_scale();
        let flags = crate::transport::config::TargetFlags {
            target: self.context.overrides.target.as_deref(),
            allow_remote: self.context.overrides.allow_remote,
        };
        let (target, target_valid, target_spots) = crate::transport::config::validate(
            raw.target.as_ref(),
            self,
            &root.key("target"),
            flags,
        );
        self.spots.target = target_spots;
        let load = match &raw.load {
            Some(load) => {
                let rate_scale = self.rate_scale;
                let hold = self.context.overrides.hold;
                let (load, mode) =
                    crate::load::config::validate(load, self, &root.key("load"), rate_scale, hold);
                self.spots.checkout_mode = mode;
                load
            }
            None => {
                self.missing(
                    at,
                    &root.key("load"),
                    "load: { phases: [ { hold: 10s, rate: 100/s } ] }",
                );
                crate::load::config::placeholder()
            }
        };
        let orders =
            crate::orders::config::validate(raw.orders.as_ref(), self, &root.key("orders"));
        if let Some(payload) = raw.orders.as_ref().and_then(|o| o.value.payload.as_ref()) {
            let path = root.key("orders").key("payload");
            self.spots.payload_key =
                (payload.value.key.as_ref()).map(|k| Spot::at(&k.referenced, path.key("key")));
            self.spots.payload = Some(Spot::at(&payload.referenced, path));
        }
        let services =
            crate::services::config::validate(raw.services.as_ref(), self, &root.key("services"));
        let provider = crate::services::provider::config::validate(
            raw.provider.as_ref(),
            self,
            &root.key("provider"),
        );
        let checks =
            crate::checks::config::validate(raw.checks.as_ref(), self, &root.key("checks"));
        let run_end = load.phases.iter().map(|p| p.duration).sum::<Duration>() + load.drain;
        let faults = match &raw.faults {
            Some(raw) => {
                let path = root.key("faults");
                let (faults, spots) = crate::chaos::config::validate(raw, self, &path, run_end);
                self.spots.faults = spots;
                faults
            }
            None => Vec::new(),
        };
        let observe = raw.observe.as_ref().map(|o| {
            self.spots.observe = Some(Spot::at(&o.referenced, root.key("observe")));
            self.spots.observe_names = observe_names(&o.value, &root.key("observe"));
            crate::observe::config::validate(o, self, &root.key("observe"))
        });
        self.spots.services =
            (raw.services.as_ref()).map(|s| Spot::at(&s.referenced, root.key("services")));
        let mut target = target;
        if let (Target::Broker(b), Some(o)) = (&mut target, &observe) {
            b.orders_to = o.orders_to.clone();
        }
        let scenario = Scenario {
            name,
            description,
            seed,
            target,
            load,
            orders,
            services,
            provider,
            checks,
            faults,
            observe,
        };
        // A target that did not validate is the embedded placeholder: checking the faults
        // against it would only repeat the target's problem.
        if target_valid {
            self.target_fits(&scenario);
        }
        scenario
    }

    /// `--rate-scale`, if given and a usable factor.
    fn rate_scale(&mut self) -> Option<f64> {
        let factor = self.context.overrides.rate_scale?;
        if factor.is_finite() && factor > 0.0 && factor <= RATE_SCALE_MAX {
            return Some(factor);
        }
        self.report_spot(
            &Spot::flag("--rate-scale"),
            format!("{factor} is not a factor above 0 and at most {RATE_SCALE_MAX}"),
            Some("0.5 halves every phase's rate, 2 doubles it".to_owned()),
        );
        None
    }

    /// What `run` would refuse about the target only once it is about to connect, checked
    /// here so that `validate` finds it too, with the position: faults and a checkout mode the
    /// target cannot carry, the URL as its client reads it (after `${NAME}` expansion) behind
    /// the loopback guard, and header values.
    fn target_fits(&mut self, s: &Scenario) {
        if s.observe.is_some() {
            self.observe_fits(s);
        } else {
            for (fault, spot) in s.faults.iter().zip(&self.spots.faults.clone()) {
                if let FaultKind::Link { on: Some(_), .. } = fault.kind {
                    self.report_spot(
                        spot,
                        "`on` names one of your services' links (`observe.links`), and the \
                         scenario has no `observe:` block"
                            .to_owned(),
                        Some(
                            "remove `on`: without it the fault is on doorbuster's own link \
                             to the broker"
                                .to_owned(),
                        ),
                    );
                }
            }
        }
        let fault_spots = std::mem::take(&mut self.spots.faults);
        match &s.target {
            Target::Embedded(_) => {
                for (fault, spot) in s.faults.iter().zip(&fault_spots) {
                    if matches!(fault.kind, FaultKind::Link { .. }) {
                        self.report_spot(
                            spot,
                            "a link fault needs a networked broker or an http:// checkout \
                             endpoint to put the fault proxy in front of, and the target is \
                             the embedded broker"
                                .to_owned(),
                            Some(
                                "give the scenario a broker `target:`, or run with --target URL"
                                    .to_owned(),
                            ),
                        );
                    }
                }
            }
            Target::Broker(b) => {
                if let Some((why, hint)) = b.options.cannot_rewind() {
                    for (fault, spot) in s.faults.iter().zip(&fault_spots) {
                        if matches!(fault.kind, FaultKind::Replay { .. }) {
                            self.report_spot(spot, why.to_owned(), Some(hint.to_owned()));
                        }
                    }
                }
            }
            Target::Http(h) => self.http_target_fits(s, h, &fault_spots),
        }
        self.payload_fits(s);
        let spots = std::mem::take(&mut self.spots.target);
        crate::transport::config::check_connectable(&s.target, &spots, &mut self.check);
    }

    /// `orders.payload` is the body a checkout endpoint receives. On a broker, doorbuster's
    /// simulated services read its own `order.created`, so a payload in another schema has
    /// no reader there until observe mode taps the user's own services; a checkout endpoint
    /// takes no message key.
    fn payload_fits(&mut self, s: &Scenario) {
        let Some(spot) = self.spots.payload.take() else {
            return;
        };
        match &s.target {
            // Observe mode publishes the user's own event to the user's own topic.
            Target::Broker(_) if s.observe.is_some() => {}
            Target::Http(_) => {
                if let Some(key) = self.spots.payload_key.take() {
                    self.report_spot(
                        &key,
                        "a checkout endpoint takes no message key; `key` is for a broker"
                            .to_owned(),
                        Some("remove it; the endpoint gets the body and headers".to_owned()),
                    );
                }
            }
            Target::Embedded(_) | Target::Broker(_) => self.report_spot(
                &spot,
                "the orders in your own schema go to your own shop: a checkout endpoint, or \
                 your topic on your broker in observe mode; doorbuster's simulated services \
                 read only its own order.created"
                    .to_owned(),
                Some(
                    "set `target:` to your checkout URL (http://127.0.0.1:PORT/checkout), or add \
                     `observe:` with `orders_to` (docs/black-box.md), or remove `orders.payload`"
                        .to_owned(),
                ),
            ),
        }
    }

    /// Observe mode runs none of doorbuster's services: it publishes to the user's topic on
    /// the user's broker and taps the user's outputs there. Only faults that reach the user's
    /// shop apply: the provider it calls (served at `provider.listen`) and commands.
    fn observe_fits(&mut self, s: &Scenario) {
        let Some(observe) = &s.observe else {
            return;
        };
        let spot = self
            .spots
            .observe
            .clone()
            .unwrap_or_else(|| Spot::flag("observe"));
        match &s.target {
            Target::Embedded(_) => self.report_spot(
                &spot,
                "observe taps your own shop on your broker, and the target is the embedded \
                 broker inside doorbuster, which no other process can reach"
                    .to_owned(),
                Some("set `target:` to your broker's URL, or run with --target URL".to_owned()),
            ),
            Target::Http(_) => {
                if observe
                    .broker
                    .as_ref()
                    .is_some_and(|b| b.options.kind() == crate::transport::BrokerKind::Rabbitmq)
                {
                    self.rabbitmq_names_fit(observe);
                }
                let tapped = observe.outputs.iter().any(|o| o.webhook.is_none());
                if observe.broker.is_none() && tapped {
                    self.report_spot(
                        &spot,
                        "observe taps your shop's outputs on a broker, and the target is a \
                         checkout endpoint"
                            .to_owned(),
                        Some(
                            "name the broker your shop writes to: `broker: \
                             redis://127.0.0.1:6379`"
                                .to_owned(),
                        ),
                    );
                }
                if observe.orders_to.is_some() {
                    self.report_spot(
                        &spot,
                        "`orders_to` is a topic on your broker, and the orders go to the \
                         checkout endpoint"
                            .to_owned(),
                        Some("remove `orders_to`".to_owned()),
                    );
                }
            }
            Target::Broker(b) => {
                if b.options.kind() == crate::transport::BrokerKind::Rabbitmq {
                    self.rabbitmq_names_fit(observe);
                }
                if observe.orders_to.is_none() {
                    self.report_spot(
                        &spot,
                        "observe on a broker needs `orders_to`: your topic the orders go to"
                            .to_owned(),
                        Some("orders_to: shop.orders".to_owned()),
                    );
                }
            }
        }
        if let Some(services) = self.spots.services.clone() {
            self.report_spot(
                &services,
                "observe mode runs none of doorbuster's simulated services: your own consume \
                 the orders"
                    .to_owned(),
                Some("remove `services:`".to_owned()),
            );
        }
        for (fault, spot) in s.faults.iter().zip(&self.spots.faults.clone()) {
            match &fault.kind {
                FaultKind::Exec { .. } => {}
                FaultKind::Link { on: Some(name), .. }
                    if observe.links.iter().any(|l| l.name == *name) => {}
                FaultKind::Link { on, .. } => {
                    let names: Vec<&str> = observe.links.iter().map(|l| l.name.as_str()).collect();
                    let message = match on {
                        Some(name) => format!("`on: {name}` names no link of `observe.links`"),
                        None => "in observe mode a link fault acts on one of your services' \
                                 links: name it with `on`"
                            .to_owned(),
                    };
                    let hint = if names.is_empty() {
                        "add `observe.links: { shop-redis: { listen: 127.0.0.1:16379, to: \
                         127.0.0.1:6379 } }` and point your services at `listen`"
                            .to_owned()
                    } else {
                        format!("the links are {}", names.join(", "))
                    };
                    self.report_spot(spot, message, Some(hint));
                }
                FaultKind::ProviderOutage { .. } if s.provider.listen.is_some() => {}
                FaultKind::ProviderOutage { .. } => self.report_spot(
                    spot,
                    "in observe mode a provider outage reaches your payment service only \
                     through the provider it calls, and `provider.listen` is not set"
                        .to_owned(),
                    Some(
                        "provider: { listen: 127.0.0.1:12111 }, and point your payment \
                          service at it"
                            .to_owned(),
                    ),
                ),
                _ => self.report_spot(
                    spot,
                    format!(
                        "a {} fault acts on doorbuster's simulated services or its own \
                         connection, which observe mode does not run",
                        fault.kind.label()
                    ),
                    Some(
                        "in observe mode use `provider_outage` (with `provider.listen`), \
                         `link` (on one of `observe.links`) and `exec` faults"
                            .to_owned(),
                    ),
                ),
            }
        }
    }

    /// On RabbitMQ `orders_to` and every tapped `from` name an exchange, with a routing key
    /// after a `:` if any.
    fn rabbitmq_names_fit(&mut self, observe: &crate::observe::config::Observe) {
        let tapped = observe.outputs.iter().filter(|o| o.webhook.is_none());
        let names = observe.orders_to.iter().chain(tapped.map(|o| &o.from));
        for name in names {
            let Err(problem) = crate::transport::rabbitmq::config::Address::parse(name) else {
                continue;
            };
            let spot = self
                .spots
                .observe_names
                .iter()
                .find(|(written, _)| written == name)
                .map(|(_, spot)| spot.clone())
                .or_else(|| self.spots.observe.clone())
                .unwrap_or_else(|| Spot::flag("observe"));
            self.report_spot(
                &spot,
                problem,
                Some(
                    "on RabbitMQ name an exchange, `shop.events`, or an exchange and a routing \
                     key, `shop.events:order.paid`"
                        .to_owned(),
                ),
            );
        }
    }

    /// A checkout endpoint runs none of doorbuster's services, provider or broker: only
    /// `link` (over http://) and `exec` faults apply, and `sync` checkout does not.
    fn http_target_fits(&mut self, s: &Scenario, h: &HttpTarget, fault_spots: &[Spot]) {
        if s.load.checkout_mode == CheckoutMode::Sync {
            let spot = self
                .spots
                .checkout_mode
                .clone()
                .unwrap_or_else(|| Spot::flag("load.checkout.mode"));
            self.report_spot(
                &spot,
                "`sync` charges through doorbuster's payment provider; a checkout \
                 endpoint does its own payment"
                    .to_owned(),
                Some("remove it: a checkout endpoint is tested with `async`".to_owned()),
            );
        }
        for (fault, spot) in s.faults.iter().zip(fault_spots) {
            match fault.kind {
                FaultKind::Link { .. } if !h.url.starts_with("http://") => {
                    self.report_spot(
                        spot,
                        "the fault proxy cannot stand in for an https endpoint: its \
                         certificate names the shop, not the proxy"
                            .to_owned(),
                        Some("test link faults against an http:// endpoint".to_owned()),
                    );
                }
                FaultKind::Link { .. } | FaultKind::Exec { .. } => {}
                _ => self.report_spot(
                    spot,
                    format!(
                        "a {} fault acts on doorbuster's simulated services, provider \
                         or broker, which a checkout endpoint target does not run",
                        fault.kind.label()
                    ),
                    Some(
                        "only `link` and `exec` faults apply to a checkout endpoint; \
                         remove it"
                            .to_owned(),
                    ),
                ),
            }
        }
    }
}
