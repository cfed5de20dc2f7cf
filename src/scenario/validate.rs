//! Validation: the pure step from the raw serde shapes (`raw.rs`) to the checked model
//! (`model.rs`), filling in the standard topology's defaults.
//!
//! It parses every leaf with `units.rs`, checks ranges and the rules that span several keys
//! (a phase has exactly one kind, a ramp needs `from` and `to`), and collects every problem
//! in the file instead of stopping at the first, each with its position and field path.
//! It reads no files and no clock; the same raw input always gives the same result.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::context::{Context, RATE_SCALE_MAX};
use super::model::*;
use super::raw::*;
use crate::config::check::{Checker, Path, Problem, Spot};
use crate::config::env;
use crate::config::tree::Text;
use crate::config::units::{self, choice, did_you_mean, duration_in, int_in, parse_name, quoted};
use crate::transport::{BrokerKind, QueueType};

/// The words `acks:` accepts: `all` (acks=all) or `leader` (acks=1).
pub(super) const ACKS: [&str; 2] = ["all", "leader"];

/// Every word `target:` (or its `kind:`) accepts.
pub(super) const TARGET_KINDS: [&str; 5] = ["embedded", "kafka", "nats", "rabbitmq", "redis"];

/// What validation found: the scenario and its warnings, or the problems and the warnings.
type Checked = Result<(Scenario, Vec<Problem>), (Vec<Problem>, Vec<Problem>)>;

/// Checks a whole scenario in its context (the command line's overrides, the environment);
/// `Ok` holds the warnings, `Err` every problem and the warnings, each in file order.
pub fn validate(raw: &Spanned<RawScenario>, context: &Context) -> Checked {
    let mut v = Validator {
        check: Checker::new(context.env, context.unset),
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
    /// The target's URL; `None` while the target is the default or named by kind alone.
    target_url: Option<Spot>,
    /// Each header of a checkout endpoint, by name: where its value is.
    headers: Vec<(String, Spot)>,
    checkout_mode: Option<Spot>,
    /// Parallel to the scenario's faults: where each one's kind key is.
    faults: Vec<Spot>,
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
        let before_target = self.problems.len();
        let target = self.target(raw.target.as_ref(), &root.key("target"));
        let target = self.override_target(target);
        let target_valid = self.problems.len() == before_target;
        let load = match &raw.load {
            Some(load) => {
                let rate_scale = self.rate_scale;
                let (load, mode) =
                    crate::load::config::validate(load, self, &root.key("load"), rate_scale);
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
        let services =
            crate::services::config::validate(raw.services.as_ref(), self, &root.key("services"));
        let provider = crate::services::provider::config::validate(
            raw.provider.as_ref(),
            self,
            &root.key("provider"),
        );
        let checks =
            crate::verify::config::validate(raw.checks.as_ref(), self, &root.key("checks"));
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

    /// Applies `--target` and `--allow-remote` to the file's target. The file's delivery
    /// settings stay when only the address of the same broker kind changes, its headers when
    /// one checkout endpoint replaces another.
    fn override_target(&mut self, file: Target) -> Target {
        // The context outlives the validator: borrowing it does not hold `self`.
        let context = self.context;
        let overrides = &context.overrides;
        let mut target = file;
        if let Some(url) = &overrides.target {
            let flag = Spot::flag("--target");
            match super::target::target_of_url(url) {
                Err(e) => self.report_spot(&flag, e.message, e.hint),
                Ok(given) => {
                    self.spots.target_url = Some(flag);
                    target = match (target, given) {
                        (Target::Broker(old), Target::Broker(new)) if old.kind == new.kind => {
                            Target::Broker(BrokerTarget {
                                url: new.url,
                                ..old
                            })
                        }
                        (Target::Http(old), Target::Http(new)) => Target::Http(HttpTarget {
                            url: new.url,
                            ..old
                        }),
                        (_, given) => {
                            self.spots.headers.clear();
                            given
                        }
                    };
                }
            }
        }
        if overrides.allow_remote {
            match &mut target {
                Target::Broker(b) => b.allow_remote = true,
                Target::Http(h) => h.allow_remote = true,
                Target::Embedded(_) => {}
            }
        }
        target
    }

    /// What `run` would refuse about the target only once it is about to connect, checked
    /// here so that `validate` finds it too, with the position: faults and a checkout mode the
    /// target cannot carry, the URL as its client reads it (after `${NAME}` expansion) behind
    /// the loopback guard, and header values.
    fn target_fits(&mut self, s: &Scenario) {
        let fault_spots = std::mem::take(&mut self.spots.faults);
        let url_spot = self
            .spots
            .target_url
            .clone()
            .unwrap_or_else(|| Spot::flag("target"));
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
                let rewinds = b.kind != BrokerKind::Rabbitmq || b.queue_type == QueueType::Stream;
                for (fault, spot) in s.faults.iter().zip(&fault_spots) {
                    if !rewinds && matches!(fault.kind, FaultKind::Replay { .. }) {
                        self.report_spot(
                            spot,
                            "RabbitMQ classic and quorum queues cannot be rewound, so a replay \
                             fault would never happen"
                                .to_owned(),
                            Some("set `target.queue_type: stream`, or remove the fault".to_owned()),
                        );
                    }
                }
                self.check_url(&b.url, b.allow_remote, &url_spot);
            }
            Target::Http(h) => self.http_target_fits(s, h, &fault_spots, &url_spot),
        }
    }

    /// A checkout endpoint runs none of doorbuster's services, provider or broker: only
    /// `link` (over http://) and `exec` faults apply, and `sync` checkout does not.
    fn http_target_fits(
        &mut self,
        s: &Scenario,
        h: &HttpTarget,
        fault_spots: &[Spot],
        url_spot: &Spot,
    ) {
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
        self.check_url(&h.url, h.allow_remote, url_spot);
        let header_spots = std::mem::take(&mut self.spots.headers);
        for (name, value) in &h.headers {
            let Some((_, spot)) = header_spots.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let Some(expanded) = self.expand(value, spot) else {
                continue;
            };
            if let Err(mut e) = super::target::check_header_value(&expanded) {
                if &expanded != value {
                    e.message
                        .push_str(" (with its ${NAME} references expanded)");
                }
                self.report_spot(spot, e.message, e.hint);
            }
        }
    }

    /// The target URL as connecting reads it: `${NAME}` expanded, then the one check of a
    /// target URL (it parses, ports, the loopback guard).
    fn check_url(&mut self, url: &str, allow_remote: bool, spot: &Spot) {
        let Some(expanded) = self.expand(url, spot) else {
            return;
        };
        let shown = crate::transport::redact_url(url);
        if let Err(mut e) = super::target::check_expanded(&expanded, &shown, allow_remote) {
            if expanded != url {
                e.message
                    .push_str(" (with its ${NAME} references expanded)");
            }
            self.report_spot(spot, e.message, e.hint);
        }
    }

    fn target(&mut self, raw: Option<&Spanned<RawTarget>>, path: &Path) -> Target {
        let embedded = EmbeddedTarget {
            partitions: 12,
            retention: 1_000_000,
        };
        let Some(raw) = raw else {
            return Target::Embedded(embedded);
        };
        match &raw.value {
            RawTarget::Kind(word) if word.contains("://") => {
                self.spots.target_url = Some(Spot::at(&raw.referenced, path.clone()));
                match super::target::target_of_url(word) {
                    Ok(target) => target,
                    Err(e) => {
                        self.report(&raw.referenced, path, e.message, e.hint);
                        Target::Embedded(embedded)
                    }
                }
            }
            RawTarget::Kind(word) => match self.target_kind(word, &raw.referenced, path) {
                Some(kind) => {
                    let url = super::target::default_url(kind).to_owned();
                    Target::Broker(super::target::broker_defaults(kind, url))
                }
                None => Target::Embedded(embedded),
            },
            RawTarget::Map(map) => self.target_map(map, &raw.referenced, path, embedded),
        }
    }

    fn target_map(
        &mut self,
        map: &RawTargetMap,
        at: &Location,
        path: &Path,
        mut embedded: EmbeddedTarget,
    ) -> Target {
        let kind_path = path.key("kind");
        let http_url = map.url.as_ref().filter(|url| {
            url.value
                .split_once("://")
                .is_some_and(|(scheme, _)| super::target::is_http_scheme(scheme))
        });
        if let Some(url) = http_url {
            return self.http_target_map(map, url, path, embedded);
        }
        if let Some(headers) = &map.headers {
            self.report(
                &headers.referenced,
                &path.key("headers"),
                "`headers` apply to an HTTP checkout endpoint, not a broker".to_owned(),
                Some(
                    "remove them; a broker's credentials go in its URL as ${ENV} references"
                        .to_owned(),
                ),
            );
        }
        let named = map
            .kind
            .as_ref()
            .map(|k| (k, self.target_kind(&k.value, &k.referenced, &kind_path)));
        if let Some(url) = &map.url {
            self.spots.target_url = Some(Spot::at(&url.referenced, path.key("url")));
        }
        let from_url = map.url.as_ref().and_then(|url| {
            self.parse(url, &path.key("url"), super::target::parse_url)
                .map(|kind| (kind, url.value.clone()))
        });
        let broker = match (named, from_url) {
            (None, None) if map.url.is_none() => {
                self.missing(at, &kind_path, "kind: embedded");
                None
            }
            (None, None) => None,
            (Some((_, None)), None) => None,
            (Some((text, Some(kind))), Some((url_kind, url))) => {
                if kind != url_kind {
                    self.report(
                        &text.referenced,
                        &kind_path,
                        format!(
                            "kind {} does not match the url's scheme, which names {:?}",
                            quoted(&text.value),
                            url_kind
                        ),
                        Some("leave `kind` out: the url's scheme selects the broker".to_owned()),
                    );
                }
                Some((url_kind, url))
            }
            (Some((_, Some(kind))), None) => {
                Some((kind, super::target::default_url(kind).to_owned()))
            }
            (_, Some(from_url)) => Some(from_url),
        };
        let Some((kind, url)) = broker else {
            embedded.partitions =
                self.or_default(&map.partitions, &path.key("partitions"), 12, |t| {
                    int_in(t, 1, 1024).map(|n| n as u32)
                });
            embedded.retention =
                self.or_default(&map.retention, &path.key("retention"), 1_000_000, |t| {
                    int_in(t, 1000, u64::MAX)
                });
            for (key, value) in [
                ("acks", &map.acks),
                ("idempotent", &map.idempotent),
                ("queue_type", &map.queue_type),
                ("ack_wait", &map.ack_wait),
                ("max_deliver", &map.max_deliver),
                ("allow_remote", &map.allow_remote),
            ] {
                if let Some(value) = value {
                    self.report(
                        &value.referenced,
                        &path.key(key),
                        format!("`{key}` applies to networked brokers, not the embedded one"),
                        Some("remove it, or give the target a `url`".to_owned()),
                    );
                }
            }
            return Target::Embedded(embedded);
        };
        let mut broker = super::target::broker_defaults(kind, url);
        if let Some(retention) = &map.retention {
            self.report(
                &retention.referenced,
                &path.key("retention"),
                "`retention` applies to the embedded broker; a networked broker keeps its own"
                    .to_owned(),
                Some("remove it and configure retention on the broker".to_owned()),
            );
        }
        broker.partitions = self.or_default(&map.partitions, &path.key("partitions"), 12, |t| {
            int_in(t, 1, 1024).map(|n| n as u32)
        });
        broker.acks_all = self.or_default(&map.acks, &path.key("acks"), true, |t| {
            choice(t, "an acks setting", &ACKS.map(|w| (w, w == "all")))
        });
        broker.idempotent = self.or_default(
            &map.idempotent,
            &path.key("idempotent"),
            true,
            units::parse_bool,
        );
        broker.queue_type = self.or_default(
            &map.queue_type,
            &path.key("queue_type"),
            QueueType::Classic,
            |t| {
                choice(
                    t,
                    "a queue type",
                    &[
                        ("classic", QueueType::Classic),
                        ("quorum", QueueType::Quorum),
                        ("stream", QueueType::Stream),
                    ],
                )
            },
        );
        broker.ack_wait =
            self.or_default(&map.ack_wait, &path.key("ack_wait"), broker.ack_wait, |t| {
                duration_in(t, true, Duration::from_secs(3600))
            });
        broker.max_deliver =
            self.or_default(&map.max_deliver, &path.key("max_deliver"), None, |t| {
                int_in(t, 1, 1_000_000).map(|n| Some(n as u32))
            });
        broker.allow_remote = self.or_default(
            &map.allow_remote,
            &path.key("allow_remote"),
            false,
            units::parse_bool,
        );
        Target::Broker(broker)
    }

    /// `target: { url: "https://...", headers: {...}, allow_remote }`: a checkout endpoint.
    fn http_target_map(
        &mut self,
        map: &RawTargetMap,
        url: &Text,
        path: &Path,
        embedded: EmbeddedTarget,
    ) -> Target {
        if let Some(kind) = &map.kind {
            self.report(
                &kind.referenced,
                &path.key("kind"),
                format!(
                    "kind {} does not apply: the url names an HTTP checkout endpoint",
                    quoted(&kind.value)
                ),
                Some("leave `kind` out: the url's scheme selects the target".to_owned()),
            );
        }
        for (key, value) in [
            ("partitions", &map.partitions),
            ("retention", &map.retention),
            ("acks", &map.acks),
            ("idempotent", &map.idempotent),
            ("queue_type", &map.queue_type),
            ("ack_wait", &map.ack_wait),
            ("max_deliver", &map.max_deliver),
        ] {
            if let Some(value) = value {
                self.report(
                    &value.referenced,
                    &path.key(key),
                    format!("`{key}` applies to brokers, not to an HTTP checkout endpoint"),
                    Some("remove it".to_owned()),
                );
            }
        }
        self.spots.target_url = Some(Spot::at(&url.referenced, path.key("url")));
        let Some(Target::Http(mut http)) =
            self.parse(url, &path.key("url"), super::target::target_of_url)
        else {
            return Target::Embedded(embedded);
        };
        if let Some(headers) = &map.headers {
            let headers_path = path.key("headers");
            // Header names are case-insensitive: `authorization` would overwrite
            // `Authorization` on the wire.
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for (name, value) in &headers.value {
                let header_path = headers_path.key(name);
                if let Err(e) = super::target::check_header_name(name) {
                    self.report(&headers.referenced, &header_path, e.message, e.hint);
                    continue;
                }
                if let Some(first) = seen.insert(name.to_ascii_lowercase(), name) {
                    self.report(
                        &headers.referenced,
                        &header_path,
                        format!(
                            "header {} repeats {} (header names are case-insensitive)",
                            quoted(name),
                            quoted(first)
                        ),
                        Some("keep one of them".to_owned()),
                    );
                    continue;
                }
                if self
                    .parse(value, &header_path, env::check_references)
                    .is_some()
                {
                    http.headers.push((name.clone(), value.value.clone()));
                    self.spots
                        .headers
                        .push((name.clone(), Spot::at(&value.referenced, header_path)));
                }
            }
        }
        http.allow_remote = self.or_default(
            &map.allow_remote,
            &path.key("allow_remote"),
            false,
            units::parse_bool,
        );
        Target::Http(http)
    }

    /// A kind name: `None` (with the problem recorded) unless it names a broker; `embedded`
    /// is `None` without a problem.
    fn target_kind(&mut self, kind: &str, at: &Location, path: &Path) -> Option<BrokerKind> {
        if kind == "embedded" {
            return None;
        }
        if let Some(broker) = super::target::kind_of_name(kind) {
            return Some(broker);
        }
        let (message, hint) = if kind == "http" || kind == "https" {
            (
                "an HTTP checkout endpoint is named by its URL".to_owned(),
                "write `target: \"http://127.0.0.1:8080/checkout\"`, or `url:` in a target block"
                    .to_owned(),
            )
        } else {
            (
                format!(
                    "{} is not a target kind; expected one of {}",
                    quoted(kind),
                    TARGET_KINDS.join(", ")
                ),
                did_you_mean(kind, &TARGET_KINDS).map_or(
                    "use `target: embedded`, the in-process broker".to_owned(),
                    |s| format!("did you mean {s:?}?"),
                ),
            )
        };
        self.report(at, path, message, Some(hint));
        None
    }
}
