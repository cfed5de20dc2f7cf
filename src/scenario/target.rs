//! Target URLs: which broker (or checkout endpoint) a URL names, `${ENV}` references, and the
//! loopback guard.
//!
//! A scenario names its broker by URL (`redis://127.0.0.1:6379`,
//! `amqp://${RABBIT_USER}:${RABBIT_PASSWORD}@127.0.0.1:5672/%2f`) or by kind alone (`redis`:
//! the loopback default); an `http://` or `https://` URL names a checkout endpoint. Validation
//! checks references for syntax, expands them (where the variables are set) to check the URL
//! as its client will read it ([`check_expanded`]), and keeps the text as written: values are
//! expanded again only when connecting, so credentials stay out of the model, the summary and
//! every report. Load goes only where it is told to: a host outside loopback needs
//! `allow_remote` (DESIGN.md §11).

use super::model::{BrokerTarget, HttpTarget, Target};
use crate::transport::BrokerKind;

use crate::config::env::check_references;
use crate::config::units::UnitError;

/// The broker a URL scheme selects.
pub fn kind_of_scheme(scheme: &str) -> Option<BrokerKind> {
    match scheme {
        "kafka" => Some(BrokerKind::Kafka),
        "nats" | "tls" => Some(BrokerKind::Nats),
        "amqp" | "amqps" => Some(BrokerKind::Rabbitmq),
        "redis" | "rediss" => Some(BrokerKind::Redis),
        _ => None,
    }
}

/// The broker a kind name (`target: redis`) selects.
pub fn kind_of_name(name: &str) -> Option<BrokerKind> {
    match name {
        "kafka" => Some(BrokerKind::Kafka),
        "nats" => Some(BrokerKind::Nats),
        "rabbitmq" => Some(BrokerKind::Rabbitmq),
        "redis" => Some(BrokerKind::Redis),
        _ => None,
    }
}

/// Where a broker named only by kind is looked for: its standard port on loopback.
pub fn default_url(kind: BrokerKind) -> &'static str {
    match kind {
        BrokerKind::Kafka => "kafka://127.0.0.1:9092",
        BrokerKind::Nats => "nats://127.0.0.1:4222",
        BrokerKind::Rabbitmq => "amqp://guest:guest@127.0.0.1:5672/%2f",
        BrokerKind::Redis => "redis://127.0.0.1:6379",
    }
}

const URL_HINT: &str = "write a URL such as \"redis://127.0.0.1:6379\", \"nats://127.0.0.1:4222\", \
     \"amqp://guest:guest@127.0.0.1:5672/%2f\", \"kafka://127.0.0.1:9092\" or, for a checkout \
     endpoint, \"http://127.0.0.1:8080/checkout\"";

/// `http` and `https` select a checkout endpoint rather than a broker.
pub fn is_http_scheme(scheme: &str) -> bool {
    scheme == "http" || scheme == "https"
}

/// What a target URL names, every option at its default: a broker or a checkout endpoint.
pub fn target_of_url(url: &str) -> Result<Target, UnitError> {
    if url
        .split_once("://")
        .is_some_and(|(scheme, _)| is_http_scheme(scheme))
    {
        check_references(url)?;
        check_has_host(url)?;
        return Ok(Target::Http(HttpTarget {
            url: url.to_owned(),
            headers: Vec::new(),
            allow_remote: false,
        }));
    }
    let kind = parse_url(url)?;
    Ok(Target::Broker(broker_defaults(kind, url.to_owned())))
}

/// Headers doorbuster writes itself on every order it POSTs.
pub const RESERVED_HEADERS: [&str; 4] =
    ["content-type", "content-length", "host", "idempotency-key"];

/// A header a scenario may add: an HTTP token (RFC 9110 §5.6.2) not written by doorbuster.
pub fn check_header_name(name: &str) -> Result<(), UnitError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(UnitError::new(
            format!("{name:?} is not an HTTP header name"),
            Some("header names are letters, digits and -, such as Authorization or X-Api-Key"),
        ));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(UnitError::new(
            format!("doorbuster sets the {name} header itself"),
            Some("remove it: every order is sent as JSON with its own Idempotency-Key"),
        ));
    }
    Ok(())
}

/// A header value as it goes on the wire (`${NAME}` expanded): the rule of the HTTP client
/// itself, with a line break named, since a CR or LF would end the header and start
/// another. The message never quotes the value: it usually holds a credential.
pub fn check_header_value(value: &str) -> Result<(), UnitError> {
    if value.contains(['\r', '\n']) {
        return Err(UnitError::new(
            "the value holds a line break (CR or LF), which would end the header and start another",
            Some(
                "write the value on one line; a value read from ${NAME} must not hold a newline either",
            ),
        ));
    }
    reqwest::header::HeaderValue::from_str(value)
        .map(|_| ())
        .map_err(|_| {
            UnitError::new(
                "the value holds a control character, which HTTP does not allow in a header",
                Some("a header value is text on one line; tabs are the only control characters allowed"),
            )
        })
}

fn check_has_host(url: &str) -> Result<(), UnitError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    if hosts_of(rest).iter().all(|h| h.is_empty()) {
        return Err(UnitError::new(
            format!("{url:?} names no host"),
            Some(URL_HINT),
        ));
    }
    Ok(())
}

/// A broker target with every option at its default.
pub fn broker_defaults(kind: BrokerKind, url: String) -> BrokerTarget {
    let defaults = crate::transport::BrokerOptions::default();
    BrokerTarget {
        kind,
        url,
        partitions: 12,
        acks_all: defaults.acks_all,
        idempotent: defaults.idempotent,
        queue_type: defaults.queue_type,
        ack_wait: defaults.ack_wait,
        max_deliver: defaults.max_deliver,
        allow_remote: false,
    }
}

/// The broker a target URL names; the URL must have a host. A checkout endpoint's URL is an
/// error here: use [`target_of_url`] where one is allowed.
pub fn parse_url(url: &str) -> Result<BrokerKind, UnitError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(UnitError::new(
            format!("{url:?} is not a URL"),
            Some(URL_HINT),
        ));
    };
    let kind = match kind_of_scheme(scheme) {
        Some(kind) => kind,
        None if is_http_scheme(scheme) => {
            return Err(UnitError::new(
                "an HTTP checkout endpoint is not a broker",
                Some(
                    "a checkout endpoint takes orders but has no consumer groups to read events from; give a broker URL here",
                ),
            ));
        }
        None => {
            return Err(UnitError::new(
                format!(
                    "{scheme:?} is not a target URL scheme; expected kafka, nats, tls, amqp, amqps, redis, rediss, http or https"
                ),
                Some(URL_HINT),
            ));
        }
    };
    check_references(url)?;
    check_has_host(url)?;
    Ok(kind)
}

/// The hosts of a URL's authority (`a:1,b:2` lists several, as Kafka's bootstrap does).
fn hosts_of(after_scheme: &str) -> Vec<String> {
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    authority
        .split(',')
        .map(|hostport| {
            if let Some(v6) = hostport.strip_prefix('[') {
                v6.split(']').next().unwrap_or_default().to_owned()
            } else {
                hostport.split(':').next().unwrap_or_default().to_owned()
            }
        })
        .collect()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The port a scheme's client uses when the URL names none.
fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "kafka" => 9092,
        "nats" | "tls" => 4222,
        "amqp" => 5672,
        "amqps" => 5671,
        "redis" | "rediss" => 6379,
        "http" => 80,
        "https" => 443,
        _ => return None,
    })
}

/// One `host:port` a target URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As the `url` crate reads it: an IPv6 address without brackets, `http` hosts normalised
    /// (`127.1` is `127.0.0.1`).
    pub host: String,
    pub port: u16,
}

/// Every `host:port` of an expanded target URL, read by the `url` crate as the clients read
/// it (a security boundary is not hand-parsed: `http://10.0.0.5\@127.0.0.1/` is a request to
/// 10.0.0.5). Kafka's bootstrap list names several hosts, every other URL one. `shown` is the
/// URL as written, for messages: the expanded one may hold a secret.
pub fn endpoints(url: &str, shown: &str) -> Result<Vec<Endpoint>, UnitError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(UnitError::new(
            format!("{shown:?} is not a URL"),
            Some(URL_HINT),
        ));
    };
    let parts: Vec<String> = if scheme == "kafka" {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        authority
            .split(',')
            .map(|host_port| format!("kafka://{host_port}{tail}"))
            .collect()
    } else {
        vec![url.to_owned()]
    };
    parts
        .iter()
        .map(|part| endpoint(scheme, part, shown))
        .collect()
}

fn endpoint(scheme: &str, url: &str, shown: &str) -> Result<Endpoint, UnitError> {
    let no_host = || UnitError::new(format!("{shown:?} names no host"), Some(URL_HINT));
    let bad_port = || {
        UnitError::new(
            format!("{shown:?} names a port outside 1 to 65535"),
            Some("a port is a number from 1 to 65535, such as 6379"),
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| match e {
        url::ParseError::InvalidPort => bad_port(),
        url::ParseError::EmptyHost => no_host(),
        other => UnitError::new(
            format!("{shown:?} is not a valid URL: {other}"),
            Some(URL_HINT),
        ),
    })?;
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(no_host()),
    };
    let port = match (parsed.port(), default_port(scheme)) {
        (Some(0), _) => return Err(bad_port()),
        (Some(port), _) | (None, Some(port)) => port,
        (None, None) => return Err(no_host()),
    };
    Ok(Endpoint { host, port })
}

/// The one check of a target URL before anything connects to it, made by validation (with
/// the file position) and again by the connecting code (for targets built without a file):
/// the expanded URL parses as its client parses it, names a host and a port from 1 to 65535,
/// and names only loopback hosts unless `allow_remote` (DESIGN.md §11). `shown` is the URL
/// as written, for messages.
pub fn check_expanded(url: &str, shown: &str, allow_remote: bool) -> Result<(), UnitError> {
    let endpoints = endpoints(url, shown)?;
    crate::transport::client_parses(url).map_err(|reason| {
        UnitError::new(
            format!("{shown:?} {}", reason.replace(url, shown)),
            Some(URL_HINT),
        )
    })?;
    let remote: Vec<&str> = endpoints
        .iter()
        .map(|e| e.host.as_str())
        .filter(|host| !is_loopback(host))
        .collect();
    if !remote.is_empty() && !allow_remote {
        return Err(UnitError::new(
            format!(
                "{} is not a loopback address; doorbuster sends load only where it is told to",
                remote.join(", ")
            ),
            Some("pass --allow-remote or set `target.allow_remote: true`"),
        ));
    }
    Ok(())
}

/// The first `host:port` of an expanded URL, with the scheme's default port when none is
/// written.
pub fn first_host_port(url: &str) -> Option<(String, u16)> {
    let first = endpoints(url, "").ok()?.into_iter().next()?;
    Some((first.host, first.port))
}

/// The URL with its host list replaced by `host_port` (credentials and path kept): how a
/// client is pointed at the fault proxy instead of the broker.
pub fn with_host_port(url: &str, host_port: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => format!("{scheme}://{userinfo}@{host_port}{tail}"),
        None => format!("{scheme}://{host_port}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_select_brokers() {
        assert_eq!(parse_url("redis://127.0.0.1:6379"), Ok(BrokerKind::Redis));
        assert_eq!(parse_url("amqps://u:p@h/vh"), Ok(BrokerKind::Rabbitmq));
        assert_eq!(parse_url("kafka://a:9092,b:9092"), Ok(BrokerKind::Kafka));
        assert!(parse_url("mqtt://127.0.0.1").is_err());
        assert!(parse_url("https://shop.test/checkout").is_err());
        assert!(matches!(
            target_of_url("https://shop.test/checkout"),
            Ok(Target::Http(_))
        ));
        assert!(matches!(
            target_of_url("redis://127.0.0.1"),
            Ok(Target::Broker(_))
        ));
        assert!(target_of_url("http:///checkout").is_err());
        assert!(target_of_url("http://${BAD NAME}/checkout").is_err());
        assert!(parse_url("127.0.0.1:6379").is_err());
        assert!(parse_url("redis://").is_err());
    }

    #[test]
    fn references_expand_from_the_environment_only() {
        let lookup = |name: &str| (name == "PW").then(|| "s3cret".to_owned());
        assert_eq!(
            crate::config::env::expand_from("amqp://u:${PW}@h", lookup).unwrap(),
            "amqp://u:s3cret@h"
        );
        assert!(crate::config::env::expand_from("amqp://u:${MISSING}@h", lookup).is_err());
        assert!(crate::config::env::expand_from("amqp://u:${PW@h", lookup).is_err());
        assert!(crate::config::env::expand_from("amqp://u:${1X}@h", lookup).is_err());
        assert!(crate::config::env::check_references("redis://${ANY_NAME}:6379").is_ok());
    }

    #[test]
    fn the_proxy_takes_the_brokers_place_in_the_url() {
        assert_eq!(
            first_host_port("amqp://u:p@127.0.0.1:5672/%2f"),
            Some(("127.0.0.1".to_owned(), 5672))
        );
        assert_eq!(
            first_host_port("redis://localhost"),
            Some(("localhost".to_owned(), 6379))
        );
        assert_eq!(
            first_host_port("kafka://127.0.0.1:9092,127.0.0.2:9093"),
            Some(("127.0.0.1".to_owned(), 9092))
        );
        assert_eq!(
            first_host_port("rediss://127.0.0.1:6380#insecure"),
            Some(("127.0.0.1".to_owned(), 6380))
        );
        assert_eq!(
            first_host_port("nats://[::1]:4223"),
            Some(("::1".to_owned(), 4223))
        );
        assert_eq!(
            with_host_port("amqp://u:p@127.0.0.1:5672/%2f", "127.0.0.1:40000"),
            "amqp://u:p@127.0.0.1:40000/%2f"
        );
        assert_eq!(
            with_host_port("kafka://a:9092,b:9092", "127.0.0.1:1"),
            "kafka://127.0.0.1:1"
        );
    }

    #[test]
    fn only_loopback_hosts_pass_the_guard() {
        let guard = |url: &str| check_expanded(url, url, false);
        for url in [
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "nats://[::1]:4222",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "kafka://127.0.0.1:9092,localhost:9093",
            "http://127.1:8080/checkout",
        ] {
            assert_eq!(guard(url), Ok(()), "{url}");
        }
        let refused = |url: &str| guard(url).expect_err(url).message;
        assert!(
            refused("kafka://127.0.0.1:9092,kafka-2.prod:9092")
                .starts_with("kafka-2.prod is not a loopback")
        );
        assert!(refused("amqp://u:p@10.0.0.5:5672/").starts_with("10.0.0.5 is not"));
        // A backslash ends the host of an http URL: the request goes to 10.0.0.5, whatever
        // follows the `@`.
        assert!(refused(r"http://10.0.0.5\@127.0.0.1/checkout").starts_with("10.0.0.5 is not"));
        assert_eq!(
            check_expanded("amqp://u:p@10.0.0.5:5672/", "x", true),
            Ok(())
        );
    }

    #[test]
    fn ports_and_unparsable_urls_are_refused_before_connecting() {
        let refused = |url: &str| check_expanded(url, url, true).expect_err(url).message;
        for url in [
            "redis://127.0.0.1:0",
            "redis://127.0.0.1:70000",
            "http://127.0.0.1:65536/checkout",
            "kafka://127.0.0.1:9092,127.0.0.1:0",
        ] {
            assert!(refused(url).contains("port outside 1 to 65535"), "{url}");
        }
        assert!(refused("http://[::1/checkout").contains("is not a valid URL"));
        assert!(refused("redis://exa mple:6379").contains("is not a valid URL"));
        // The clients' own parsers: Redis wants a database number, refuses a wildcard address.
        assert!(refused("redis://127.0.0.1:6379/db").contains("is not a Redis URL"));
        assert!(refused("redis://0.0.0.0:6379").contains("is not a Redis URL"));
        assert!(refused("amqp://127.0.0.1:5672/?heartbeat=often").contains("is not an AMQP URL"));
        assert_eq!(
            check_expanded("redis://127.0.0.1:6379/2", "", false),
            Ok(())
        );
        assert_eq!(
            check_expanded("rediss://127.0.0.1:6380#insecure", "", false),
            Ok(())
        );
    }

    #[test]
    fn secrets_of_the_expanded_url_stay_out_of_messages() {
        let e = check_expanded(
            "amqp://u:s3cret@127.0.0.1:5672/?heartbeat=x",
            "amqp://u:${PW}@127.0.0.1:5672/?heartbeat=x",
            false,
        )
        .unwrap_err();
        assert!(!e.message.contains("s3cret"), "{}", e.message);
        let e = check_expanded(
            "redis://:s3cret@127.0.0.1:99999",
            "redis://:${PW}@127.0.0.1:99999",
            false,
        )
        .unwrap_err();
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }
}
