//! Target URLs: which broker (or checkout endpoint) a URL names, `${ENV}` references, and the
//! loopback guard.
//!
//! A scenario names its broker by URL (`redis://127.0.0.1:6379`,
//! `amqp://${RABBIT_USER}:${RABBIT_PASSWORD}@127.0.0.1:5672/%2f`) or by kind alone (`redis`:
//! the loopback default); an `http://` or `https://` URL names a checkout endpoint. References are checked for syntax when the file is validated and
//! expanded only when connecting, so credentials stay out of the model, the summary and every
//! report. Load goes only where it is told to: a host outside loopback needs `allow_remote`
//! (DESIGN.md §11).

use super::model::{BrokerTarget, HttpTarget, Target};
use crate::transport::BrokerKind;

use super::units::UnitError;

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

/// `${NAME}` references must be closed and name a variable (letters, digits, `_`).
pub fn check_references(text: &str) -> Result<(), UnitError> {
    expand_with(text, |_| Some(String::new())).map(|_| ())
}

/// Replaces every `${NAME}` with the environment variable's value.
pub fn expand_env(text: &str) -> Result<String, UnitError> {
    expand_with(text, |name| std::env::var(name).ok())
}

fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, UnitError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(UnitError::new(
                format!("unclosed `${{` in {text:?}"),
                Some("write a reference as ${NAME}"),
            ));
        };
        let name = &after[..end];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(UnitError::new(
                format!("`${{{name}}}` is not an environment variable reference"),
                Some("write a reference as ${NAME}, with letters, digits and _"),
            ));
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(UnitError::new(
                    format!("the environment variable {name} is not set"),
                    Some("export it before the run; credentials come only from the environment"),
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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

/// The first `host:port` of a URL's authority, with the scheme's default port when none is
/// written.
pub fn first_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let host = hosts_of(rest)
        .into_iter()
        .next()
        .filter(|h| !h.is_empty())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let first = authority.split(',').next().unwrap_or_default();
    let port_text = if first.starts_with('[') {
        first.rsplit_once("]:").map(|(_, p)| p)
    } else {
        first.split_once(':').map(|(_, p)| p)
    };
    let default_port = match scheme {
        "kafka" => 9092,
        "nats" | "tls" => 4222,
        "amqp" => 5672,
        "amqps" => 5671,
        "redis" | "rediss" => 6379,
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let port = match port_text {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host, port))
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

/// The hosts of an expanded URL that are not loopback addresses.
pub fn remote_hosts(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    hosts_of(rest)
        .into_iter()
        .filter(|h| !is_loopback(h))
        .collect()
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
            expand_with("amqp://u:${PW}@h", lookup).unwrap(),
            "amqp://u:s3cret@h"
        );
        assert!(expand_with("amqp://u:${MISSING}@h", lookup).is_err());
        assert!(expand_with("amqp://u:${PW@h", lookup).is_err());
        assert!(expand_with("amqp://u:${1X}@h", lookup).is_err());
        assert!(check_references("redis://${ANY_NAME}:6379").is_ok());
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
        assert!(remote_hosts("redis://127.0.0.1:6379").is_empty());
        assert!(remote_hosts("redis://localhost").is_empty());
        assert!(remote_hosts("nats://[::1]:4222").is_empty());
        assert!(remote_hosts("amqp://guest:guest@127.0.0.1:5672/%2f").is_empty());
        assert_eq!(
            remote_hosts("kafka://127.0.0.1:9092,kafka-2.prod:9092"),
            vec!["kafka-2.prod".to_owned()]
        );
        assert_eq!(
            remote_hosts("amqp://u:p@10.0.0.5:5672/"),
            vec!["10.0.0.5".to_owned()]
        );
    }
}
