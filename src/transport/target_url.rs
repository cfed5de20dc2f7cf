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
//!
//! This is a security boundary, so hosts are read by the `url` crate, as the clients read
//! them, and a host is judged by what a resolver makes of it: `127.1`, `0x7f.1`,
//! `2130706433` and `::ffff:127.0.0.1` are loopback, `::ffff:10.0.0.1` is not. The module
//! belongs to the transport: the scenario asks it about URLs, never the reverse.

use super::{BrokerKind, TransportError};

use crate::config::env::check_references;
use crate::config::units::UnitError;

/// Every scheme a target URL may have, for messages: `kafka, nats, ..., http or https`.
fn known_schemes() -> String {
    let schemes: Vec<&str> = BrokerKind::schemes().map(|(s, ..)| s).collect();
    format!("{}, http or https", schemes.join(", "))
}

const URL_HINT: &str = "write a URL such as \"redis://127.0.0.1:6379\", \"nats://127.0.0.1:4222\", \
     \"amqp://guest:guest@127.0.0.1:5672/%2f\", \"kafka://127.0.0.1:9092\" or, for a checkout \
     endpoint, \"http://127.0.0.1:8080/checkout\"";

/// `http` and `https` select a checkout endpoint rather than a broker.
pub fn is_http_scheme(scheme: &str) -> bool {
    scheme == "http" || scheme == "https"
}

/// `scheme://user:secret@host` becomes `scheme://user:***@host`; a lone user name (a NATS
/// token) becomes `***`. For reports and errors. The scan masks everything up to the last
/// `@` before the first `/`, which covers at least what the `url` crate reads as userinfo
/// (it ends the authority at `/`, `?` or `#`, and at `\` for http): it may hide more than
/// the credentials, never less.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// A target URL as written, made ready to connect: `${ENV}` references expanded and the one
/// check of a target URL applied ([`check_expanded`]: it parses, a port from 1 to 65535, a
/// host outside loopback refused unless `allow_remote`). Scenario validation has made the
/// same check with the file position; this call is what stands between a target built in
/// code (tests, `bench`) and the network.
pub fn expand_and_guard(url: &str, allow_remote: bool) -> Result<String, TransportError> {
    let config_error = |e| refused(redact_url(url), e);
    let expanded = crate::config::env::expand_env(url).map_err(config_error)?;
    check_expanded(&expanded, &redact_url(url), allow_remote).map_err(config_error)?;
    Ok(expanded)
}

/// A target refused before connecting: a scenario or command-line error (exit code 2).
pub(crate) fn refused(target: String, e: UnitError) -> TransportError {
    TransportError::Config {
        target,
        source: e.into(),
    }
}

/// Whether the client library of the URL's scheme accepts it, asked without connecting:
/// validation refuses exactly what connecting would. The message may quote the URL.
pub fn client_parses(url: &str) -> Result<(), UnitError> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("redis" | "rediss") => ::redis::IntoConnectionInfo::into_connection_info(url)
            .map(|_| ())
            .map_err(|e| UnitError::new(format!("is not a Redis URL: {e}"), None)),
        Some("amqp" | "amqps") => url
            .parse::<lapin::uri::AMQPUri>()
            .map(|_| ())
            .map_err(|e| UnitError::new(format!("is not an AMQP URL: {e}"), None)),
        _ => Ok(()),
    }
}

pub(crate) fn check_has_host(url: &str) -> Result<(), UnitError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    if hosts_of(rest).iter().all(|h| h.is_empty()) {
        return Err(UnitError::new(
            format!("{url:?} names no host"),
            Some(URL_HINT),
        ));
    }
    Ok(())
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
    let kind = match BrokerKind::of_scheme(scheme) {
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
                    "{scheme:?} is not a target URL scheme; expected {}",
                    known_schemes()
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

/// Whether a host, as [`endpoint`] names it, is this machine's loopback interface.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            Ok(ip) => ip.is_loopback(),
            Err(_) => false,
        }
}

/// The host a client's resolver reaches. The `url` crate reads the host of a non-special
/// scheme (`redis`, `kafka`, ...) as an opaque name, but the resolver (`inet_aton`) reads
/// `127.1`, `0x7f.1`, `0177.0.0.1` and `2130706433` as IPv4 addresses: read such a name as
/// an http host is read (the WHATWG IPv4 rules, IDNA), so that it is named, and judged, by
/// the address it stands for. A name that is not an address stays as written.
fn resolved_name(domain: &str) -> String {
    match url::Host::parse(domain) {
        Ok(url::Host::Ipv4(ip)) => ip.to_string(),
        Ok(url::Host::Ipv6(ip)) => ip.to_string(),
        Ok(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => name,
        _ => domain.to_owned(),
    }
}

/// The port a scheme's client uses when the URL names none.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => BrokerKind::schemes()
            .find(|(s, ..)| *s == scheme)
            .map(|(.., port)| port),
    }
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
        // The client reads the whole list as `host:port,host:port` (see
        // `kafka::bootstrap_servers`): anything after the hosts but a closing `/` would be
        // read as more hosts, so it is refused here rather than checked in part.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && tail != "/" {
            return Err(UnitError::new(
                format!(
                    "{shown:?} has something after its host list; a Kafka URL is kafka://host:port[,host:port]"
                ),
                Some(URL_HINT),
            ));
        }
        authority
            .split(',')
            .map(|host_port| format!("kafka://{host_port}"))
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
        Some(url::Host::Domain(d)) if !d.is_empty() => resolved_name(d),
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
    client_parses(url).map_err(|e| {
        UnitError::new(
            format!("{shown:?} {}", e.message.replace(url, shown)),
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

    #[test]
    fn passwords_never_reach_a_report() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://:pw@localhost:6379/0"),
            "redis://:***@localhost:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("nats://token@host:4222"), "nats://***@host:4222");
    }

    /// The loopback guard against the forms a resolver, a URL parser or a client library read
    /// differently: every target outside loopback is refused (before anything connects:
    /// this is the check validation and `connect_broker` make), every loopback shorthand
    /// passes and is named by the address it stands for.
    #[test]
    fn the_guard_reads_tricky_targets_as_the_clients_do() {
        use Guard::*;
        enum Guard {
            /// Passes; the hosts as `endpoints` names them.
            Loopback(&'static [&'static str]),
            /// Refused; the message names this host (or says why, for a bad URL).
            Refused(&'static str),
        }
        let table: &[(&str, Guard)] = &[
            // Plain loopback, every scheme.
            ("redis://127.0.0.1:6379", Loopback(&["127.0.0.1"])),
            ("rediss://127.0.0.1:6380#insecure", Loopback(&["127.0.0.1"])),
            (
                "nats://127.255.255.254:4222",
                Loopback(&["127.255.255.254"]),
            ),
            ("tls://localhost:4222", Loopback(&["localhost"])),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                Loopback(&["127.0.0.1"]),
            ),
            ("redis://LOCALHOST:6379", Loopback(&["localhost"])),
            // IPv4 shorthands a resolver (inet_aton) reads as 127.0.0.1.
            ("redis://127.1:6379", Loopback(&["127.0.0.1"])),
            ("redis://2130706433:6379", Loopback(&["127.0.0.1"])),
            ("redis://0x7f.1:6379", Loopback(&["127.0.0.1"])),
            ("redis://0x7f000001:6379", Loopback(&["127.0.0.1"])),
            ("nats://0177.0.0.1:4222", Loopback(&["127.0.0.1"])),
            ("http://127.1:8080/checkout", Loopback(&["127.0.0.1"])),
            ("http://2130706433:8080/checkout", Loopback(&["127.0.0.1"])),
            ("http://0x7f.0.0.1/checkout", Loopback(&["127.0.0.1"])),
            // IPv6 loopback, written out or mapped.
            ("nats://[::1]:4222", Loopback(&["::1"])),
            ("nats://[0:0:0:0:0:0:0:1]:4222", Loopback(&["::1"])),
            (
                "redis://[::ffff:127.0.0.1]:6379",
                Loopback(&["::ffff:127.0.0.1"]),
            ),
            (
                "http://[::ffff:7f00:1]:8080/checkout",
                Loopback(&["::ffff:127.0.0.1"]),
            ),
            // IDNA: full-width letters and ideographic full stops map to ASCII.
            (
                "http://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}:8080/",
                Loopback(&["localhost"]),
            ),
            (
                "http://127\u{3002}0\u{3002}0\u{3002}1:8080/",
                Loopback(&["127.0.0.1"]),
            ),
            // Kafka bootstrap lists of loopback hosts only.
            (
                "kafka://127.0.0.1:9092,localhost:9093",
                Loopback(&["127.0.0.1", "localhost"]),
            ),
            ("kafka://127.1,[::1]:9093/", Loopback(&["127.0.0.1", "::1"])),
            // A loopback-looking user name does not make the host loopback.
            (
                "amqp://127.0.0.1@localhost:5672/%2f",
                Loopback(&["localhost"]),
            ),
            // Remote addresses, in every spelling.
            ("redis://10.0.0.1:6379", Refused("10.0.0.1 is not")),
            ("redis://167772161:6379", Refused("10.0.0.1 is not")),
            ("redis://0xa.0.0.1:6379", Refused("10.0.0.1 is not")),
            ("redis://012.0.0.1:6379", Refused("10.0.0.1 is not")),
            ("http://10.1:8080/checkout", Refused("10.0.0.1 is not")),
            (
                "nats://[::ffff:10.0.0.1]:4222",
                Refused("::ffff:10.0.0.1 is not"),
            ),
            (
                "nats://[::ffff:a00:1]:4222",
                Refused("::ffff:10.0.0.1 is not"),
            ),
            ("nats://[2001:db8::1]:4222", Refused("2001:db8::1 is not")),
            ("http://[::]:8080/checkout", Refused(":: is not")),
            (
                "redis://localhost.evil.example:6379",
                Refused("localhost.evil.example is not"),
            ),
            (
                "redis://127.0.0.1.evil.example:6379",
                Refused("127.0.0.1.evil.example is not"),
            ),
            ("http://l\u{043e}calhost:8080/", Refused("xn--lcalhost-")),
            ("tls://10.0.0.1:4222", Refused("10.0.0.1 is not")),
            // Userinfo, fragment and query tricks: the host is what follows the last `@` of
            // the authority, and `#`, `?` (and `\` for http) end the authority.
            (
                "http://127.0.0.1@evil.example/checkout",
                Refused("evil.example is not"),
            ),
            (
                "redis://127.0.0.1@evil.example:6379",
                Refused("evil.example is not"),
            ),
            (
                "redis://evil.example#@127.0.0.1:6379",
                Refused("evil.example is not"),
            ),
            (
                "redis://evil.example?@127.0.0.1:6379",
                Refused("evil.example is not"),
            ),
            (
                r"http://evil.example\@127.0.0.1/checkout",
                Refused("evil.example is not"),
            ),
            (
                "amqp://u:p@evil.example:5672/@127.0.0.1",
                Refused("evil.example is not"),
            ),
            // Kafka bootstrap lists mixing loopback and remote hosts, and text after the list
            // that librdkafka would read as more hosts.
            (
                "kafka://127.0.0.1:9092,evil.example:9092",
                Refused("evil.example is not"),
            ),
            (
                "kafka://evil.example:9092,127.0.0.1:9092",
                Refused("evil.example is not"),
            ),
            (
                "kafka://x@127.0.0.1:9092,evil.example:9092",
                Refused("evil.example is not"),
            ),
            (
                "kafka://127.0.0.1:9092,10.0.0.1",
                Refused("10.0.0.1 is not"),
            ),
            (
                "kafka://127.0.0.1:9092/,evil.example:9092",
                Refused("after its host list"),
            ),
            (
                "kafka://127.0.0.1:9092/@evil.example:9092",
                Refused("after its host list"),
            ),
            (
                "kafka://127.0.0.1:9092?,evil.example:9092",
                Refused("after its host list"),
            ),
            (
                "kafka://127.0.0.1:9092#,evil.example:9092",
                Refused("after its host list"),
            ),
            // NATS takes one URL: a comma is part of the host or the port, never a list.
            (
                "nats://127.0.0.1:4222,evil.example:4222",
                Refused("port outside 1 to 65535"),
            ),
            (
                "nats://127.0.0.1,evil.example",
                Refused("127.0.0.1,evil.example is not"),
            ),
            // No host, bad ports, the wildcard address.
            ("redis://:6379", Refused("names no host")),
            // An http client skips the extra slashes: the host is `checkout`, not loopback.
            (
                "http:///checkout",
                Refused("checkout is not a loopback address"),
            ),
            ("kafka://127.0.0.1:9092,", Refused("names no host")),
            ("redis://127.0.0.1:0", Refused("port outside 1 to 65535")),
            (
                "redis://127.0.0.1:65536",
                Refused("port outside 1 to 65535"),
            ),
            ("redis://0.0.0.0:6379", Refused("is not a Redis URL")),
        ];
        assert!(table.len() >= 40);
        for (url, expected) in table {
            let result = check_expanded(url, url, false);
            match expected {
                Loopback(names) => {
                    assert_eq!(result, Ok(()), "{url}");
                    let hosts: Vec<String> = endpoints(url, url)
                        .unwrap()
                        .into_iter()
                        .map(|e| e.host)
                        .collect();
                    assert_eq!(&hosts, names, "{url}");
                }
                Refused(why) => {
                    let e = result.expect_err(url);
                    assert!(e.message.contains(why), "{url}: {}", e.message);
                }
            }
        }
    }

    #[test]
    fn a_refused_target_never_shows_its_password() {
        for url in [
            "redis://:s3cret@10.0.0.1:6379",
            "amqp://u:s3cret@evil.example:5672/%2f",
            "kafka://u:s3cret@127.0.0.1:9092,evil.example:9092",
            "kafka://u:s3cret@127.0.0.1:9092/,evil.example:9092",
            "nats://u:s3cret@[::ffff:10.0.0.1]:4222",
            "redis://:s3cret@127.0.0.1:0",
        ] {
            let e = expand_and_guard(url, false).expect_err(url);
            assert!(matches!(e, TransportError::Config { .. }), "{url}: {e}");
            assert!(!e.to_string().contains("s3cret"), "{url}: {e}");
        }
    }
}
