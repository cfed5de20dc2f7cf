//! `observe:` in a scenario file (black-box mode): where the orders go on the user's broker,
//! which of the user's topics to tap, how to find an order in what is tapped, and how many
//! outputs each order should make. Its raw shape, its schema, its validation and the
//! validated [`Observe`]. Pure: the same text always gives the same result.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::check::{Checker, Path};
use crate::config::schema;
use crate::config::tree::{Entries, Scalar, Text};
use crate::config::units::{UnitError, duration_in, int_in};

/// The user's own shop under test: no simulated service runs; doorbuster publishes the
/// orders and taps the outputs named here (see docs/black-box.md).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawObserve {
    /// Your topic, stream, subject or exchange the orders are published to, as your broker
    /// names it (on a broker target). doorbuster never creates or deletes it.
    pub orders_to: Option<Scalar<String>>,
    /// The broker the taps read, when it is not the target (a checkout endpoint's shop
    /// writes its outputs to a broker): `redis://127.0.0.1:6379`, `${ENV}` for credentials.
    pub broker: Option<Scalar<String>>,
    /// How long after the last order the run waits for outputs still missing (default 30s).
    pub settle_within: Option<Scalar<schema::Duration>>,
    /// The outputs to tap, by a name of your choosing, in the order your shop makes them.
    #[schemars(required, with = "std::collections::BTreeMap<String, RawOutput>")]
    pub outputs: Option<Entries<Spanned<RawOutput>>>,
    /// Your services' own connections, for link faults (`on: NAME`): the fault proxy listens
    /// at `listen` and forwards to `to`; point your services at `listen`.
    #[schemars(with = "Option<std::collections::BTreeMap<String, RawLink>>")]
    pub links: Option<Entries<Spanned<RawLink>>>,
}

/// `{ listen: 127.0.0.1:16379, to: 127.0.0.1:6379 }`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    /// Where your services connect instead (loopback).
    #[schemars(required)]
    pub listen: Option<Scalar<schema::ListenAddr>>,
    /// Your broker's or database's address, `host:port` (loopback unless the target allows
    /// remote hosts).
    #[schemars(required)]
    pub to: Option<Scalar<String>>,
}

/// One output of the user's shop.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// The topic, stream, subject or exchange, as your broker names it; or
    /// `http://127.0.0.1:PORT/path`, a webhook receiver doorbuster serves on loopback.
    #[schemars(required)]
    pub from: Option<Scalar<String>>,
    /// Where the order is in an output: a JSON pointer into the body (`/orderId`), a header
    /// (`header:x-order-id`) or the message `key`. Its value is the order's `order.uid` or
    /// its `order.id`.
    #[schemars(required)]
    pub order: Option<Scalar<schema::Locator>>,
    /// Where the output's own event id is (same forms), to find the same event published
    /// twice.
    pub event_id: Option<Scalar<schema::Locator>>,
    /// Only outputs whose field has this value: `{ at: /type, equals: payment.succeeded }`.
    #[schemars(with = "Option<RawFilter>")]
    pub filter: Option<Spanned<RawFilter>>,
    /// Outputs per accepted order of each class: `{ approved: 1, declined: 0 }`, or
    /// `{ each: 1 }` for every order. A class not named expects none.
    #[schemars(required, with = "RawExpect")]
    pub expect: Option<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    #[schemars(required)]
    pub at: Option<Scalar<schema::Locator>>,
    #[schemars(required)]
    pub equals: Option<Scalar<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// Orders whose card the provider approves.
    pub approved: Option<Scalar<schema::Int<0, 100>>>,
    /// Orders whose card the provider declines (`orders.declines`).
    pub declined: Option<Scalar<schema::Int<0, 100>>>,
    /// Every order, whatever its card.
    pub each: Option<Scalar<schema::Int<0, 100>>>,
}

/// Black-box mode, validated.
#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Observe {
    /// The user's topic the orders are published to (a broker target).
    pub orders_to: Option<String>,
    /// Where the taps read, when not the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<crate::transport::target::BrokerTarget>,
    pub settle_within: Duration,
    /// In the order the shop makes them: an order seen in one output and missing from a
    /// later one is stuck between the two.
    pub outputs: Vec<Output>,
    /// The user's links the run puts a fault proxy on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<UserLink>,
}

/// A fault proxy on one of the user's own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct UserLink {
    pub name: String,
    pub listen: std::net::SocketAddr,
    /// `host:port`, resolved when the run starts.
    pub to: String,
}

#[derive(Debug, Clone, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Output {
    pub name: String,
    pub from: String,
    /// `from` is a webhook doorbuster serves, not a topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<super::webhook::Webhook>,
    pub order: Locator,
    pub event_id: Option<Locator>,
    pub filter: Option<Filter>,
    pub expect: Expect,
}

/// Where a value is in a tapped event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Locator {
    /// An RFC 6901 JSON pointer into the body.
    Json(String),
    Header(String),
    Key,
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locator::Json(pointer) => f.write_str(pointer),
            Locator::Header(name) => write!(f, "header:{name}"),
            Locator::Key => f.write_str("key"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Filter {
    pub at: Locator,
    pub equals: String,
}

/// Outputs expected per accepted order, by the order's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Expect {
    pub approved: u32,
    pub declined: u32,
}

impl Expect {
    pub fn of(&self, declines: bool) -> u32 {
        if declines {
            self.declined
        } else {
            self.approved
        }
    }
}

const LOCATOR_HINT: &str =
    "a JSON pointer into the body (`/orderId`), a header (`header:x-order-id`) or `key`";

/// `/a/b`, `header:NAME` or `key`.
pub fn parse_locator(text: &str) -> Result<Locator, UnitError> {
    let bad = |why: &str| UnitError::new(format!("{text:?} {why}"), Some(LOCATOR_HINT));
    if text == "key" {
        return Ok(Locator::Key);
    }
    if let Some(name) = text.strip_prefix("header:") {
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("names no header"));
        }
        return Ok(Locator::Header(name.to_owned()));
    }
    if !text.starts_with('/') {
        return Err(bad("is not a place in an event"));
    }
    // RFC 6901: `~` is only ever `~0` or `~1`.
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(bad("is not a JSON pointer: `~` must be `~0` or `~1`"));
        }
    }
    Ok(Locator::Json(text.to_owned()))
}

/// Checks `observe:`.
pub fn validate(raw: &Spanned<RawObserve>, check: &mut Checker, path: &Path) -> Observe {
    let at = &raw.referenced;
    let raw = &raw.value;
    let orders_to = raw
        .orders_to
        .as_ref()
        .and_then(|t| name(t, check, &path.key("orders_to")));
    let broker = raw.broker.as_ref().and_then(|t| {
        let b = check.parse(t, &path.key("broker"), |url| {
            match crate::transport::target::target_of_url(url)? {
                crate::transport::Target::Broker(b) => Ok(b),
                _ => Err(UnitError::new(
                    format!("{url:?} is not a broker URL"),
                    Some("the taps read a broker: redis://, nats://, amqp:// or kafka://"),
                )),
            }
        })?;
        let spot = crate::config::check::Spot::at(&t.referenced, path.key("broker"));
        crate::transport::config::check_broker_url(check, &b, &spot);
        Some(b)
    });
    let settle_within = check.or_default(
        &raw.settle_within,
        &path.key("settle_within"),
        Duration::from_secs(30),
        |t| duration_in(t, true, Duration::from_secs(3600)),
    );
    let mut outputs = Vec::new();
    match &raw.outputs {
        None => check.missing(
            at,
            &path.key("outputs"),
            "outputs: { paid: { from: payments, order: /orderId, expect: { approved: 1 } } }",
        ),
        Some(entries) if entries.0.is_empty() => check.report(
            at,
            &path.key("outputs"),
            "observe names no output to tap".to_owned(),
            Some("name at least one topic your shop writes to".to_owned()),
        ),
        Some(entries) => {
            for (key, output) in &entries.0 {
                if let Some(o) =
                    self::output(key, output, check, &path.key("outputs").key(&key.value))
                {
                    outputs.push(o);
                }
            }
        }
    }
    let mut links = Vec::new();
    for (key, raw) in raw.links.iter().flat_map(|l| &l.0) {
        let path = path.key("links").key(&key.value);
        let listen = check.required(
            &raw.value.listen,
            &raw.referenced,
            &path.key("listen"),
            "listen: 127.0.0.1:16379",
            crate::config::units::parse_listen,
        );
        let to = check.required(
            &raw.value.to,
            &raw.referenced,
            &path.key("to"),
            "to: 127.0.0.1:6379",
            parse_host_port,
        );
        if let (Some(listen), Some(to)) = (listen, to) {
            links.push(UserLink {
                name: key.value.clone(),
                listen,
                to,
            });
        }
    }
    Observe {
        orders_to,
        broker,
        settle_within,
        outputs,
        links,
    }
}

/// `host:port`, the address a link's proxy forwards to.
fn parse_host_port(text: &str) -> Result<String, UnitError> {
    let text = text.trim();
    let port = text.rsplit_once(':').and_then(|(host, port)| {
        (!host.is_empty()).then_some(())?;
        port.parse::<u16>().ok().filter(|p| *p > 0)
    });
    match port {
        Some(_) => Ok(text.to_owned()),
        None => Err(UnitError::new(
            format!("{text:?} is not a host and port"),
            Some("write it like `127.0.0.1:6379`"),
        )),
    }
}

/// A topic name as the user's broker spells it: not empty, no spaces.
fn name(text: &Text, check: &mut Checker, path: &Path) -> Option<String> {
    check.parse(text, path, |t| {
        if t.starts_with("https://") {
            Err(UnitError::new(
                format!("{t:?}: a webhook receiver serves plain http on loopback"),
                Some("point your shop at http://127.0.0.1:PORT/path"),
            ))
        } else if t.is_empty() || t.chars().any(char::is_whitespace) {
            Err(UnitError::new(
                format!("{t:?} is not a topic name"),
                Some("write the name as your broker has it, like `shop.orders`"),
            ))
        } else {
            Ok(t.to_owned())
        }
    })
}

fn output(
    key: &Text,
    raw: &Spanned<RawOutput>,
    check: &mut Checker,
    path: &Path,
) -> Option<Output> {
    let at = &raw.referenced;
    let raw = &raw.value;
    let mut webhook = None;
    let from = match &raw.from {
        Some(t) => match super::webhook::parse(&t.value) {
            Some(hook) => {
                webhook = check.parse(t, &path.key("from"), |_| hook);
                webhook.as_ref().map(|_| t.value.clone())
            }
            None => name(t, check, &path.key("from")),
        },
        None => {
            check.missing(at, &path.key("from"), "from: shop.payments");
            None
        }
    };
    let order = check.required(
        &raw.order,
        at,
        &path.key("order"),
        "order: /orderId",
        parse_locator,
    );
    let event_id = raw
        .event_id
        .as_ref()
        .and_then(|t| check.parse(t, &path.key("event_id"), parse_locator));
    let filter = match &raw.filter {
        None => None,
        Some(f) => {
            let fpath = path.key("filter");
            let located = check.required(
                &f.value.at,
                &f.referenced,
                &fpath.key("at"),
                "at: /type",
                parse_locator,
            );
            let equals = match &f.value.equals {
                Some(t) => Some(t.value.clone()),
                None => {
                    check.missing(&f.referenced, &fpath.key("equals"), "equals: order.paid");
                    None
                }
            };
            Some(Filter {
                at: located?,
                equals: equals?,
            })
        }
    };
    let expect = match &raw.expect {
        None => {
            check.missing(
                at,
                &path.key("expect"),
                "expect: { approved: 1, declined: 0 }",
            );
            None
        }
        Some(e) => expect(e, check, &path.key("expect")),
    };
    Some(Output {
        name: key.value.clone(),
        from: from?,
        webhook,
        order: order?,
        event_id,
        filter,
        expect: expect?,
    })
}

fn expect(raw: &Spanned<RawExpect>, check: &mut Checker, path: &Path) -> Option<Expect> {
    let count = |check: &mut Checker, t: &Option<Scalar<schema::Int<0, 100>>>, key: &str| {
        t.as_ref()
            .map(|t| check.parse(t, &path.key(key), |t| int_in(t, 0, 100).map(|n| n as u32)))
    };
    let approved = count(check, &raw.value.approved, "approved");
    let declined = count(check, &raw.value.declined, "declined");
    let each = count(check, &raw.value.each, "each");
    match (each, approved, declined) {
        (None, None, None) => {
            check.report(
                &raw.referenced,
                path,
                "expect names no order class".to_owned(),
                Some("`{ approved: 1, declined: 0 }`, or `{ each: 1 }`".to_owned()),
            );
            None
        }
        (Some(each), None, None) => Some(Expect {
            approved: each?,
            declined: each?,
        }),
        (Some(_), ..) => {
            check.report(
                &raw.referenced,
                &path.key("each"),
                "`each` is every order: it cannot be given with `approved` or `declined`"
                    .to_owned(),
                Some("keep `each`, or name the classes".to_owned()),
            );
            None
        }
        (None, approved, declined) => Some(Expect {
            approved: approved.unwrap_or(Some(0))?,
            declined: declined.unwrap_or(Some(0))?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_read_pointers_headers_and_the_key() {
        assert_eq!(parse_locator("key").unwrap(), Locator::Key);
        assert_eq!(
            parse_locator("header:x-order-id").unwrap(),
            Locator::Header("x-order-id".into())
        );
        assert_eq!(
            parse_locator("/order/id").unwrap(),
            Locator::Json("/order/id".into())
        );
        assert_eq!(
            parse_locator("/a~1b/~0c").unwrap(),
            Locator::Json("/a~1b/~0c".into())
        );
        for bad in ["orderId", "header:", "/a~2", "/a~", ""] {
            assert!(parse_locator(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
