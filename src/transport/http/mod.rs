//! The HTTP checkout target: orders POSTed to the shop's own checkout endpoint.
//!
//! Guarantees (DESIGN.md §6) and how doorbuster maps them:
//! - publish ack = a 2xx answer to `POST <url>` with the order as its JSON body
//!   (`order.created`'s payload, the same bytes a broker would carry), `Idempotency-Key` =
//!   the order's key, and `X-Doorbuster-Order-Id` / `X-Doorbuster-Event-Id` for the shop's
//!   logs. A 2xx within `checkout_timeout` is an accepted checkout (the driver's deadline).
//!   A 4xx or 5xx is a refusal, stated with the status and the start of the body, except
//!   502 and 504 (a gateway's: the shop behind it may have the order) and redirects (not
//!   followed: the POST already arrived), which are `Indeterminate`, as is a request that
//!   was sent and got no complete answer (a timeout, a reset mid-answer). A request that
//!   never left (no connection) is refused.
//! - client retries: doorbuster sends each request once; a resubmit (the shopper clicking
//!   "buy" again, `orders.resubmit_share`) is a second POST with the same key, so the
//!   endpoint's idempotency is exercised the way a real client's retry exercises it.
//! - consumer groups, redelivery, replay, lag: none. The pipeline behind the endpoint is the
//!   shop's; doorbuster runs no services against it and judges only what a shopper sees:
//!   the checkout success rate and the checkout latency (see `verify::checks_for`).
//! - connections: keep-alive and TCP_NODELAY. `http://` goes over HTTP/1.1 on hyper's
//!   connection API, each connection driven by the checkout using it (`plain`: no task per
//!   connection, no hand-off per request); `https://` through reqwest (HTTP/2 where the
//!   server offers it, rustls with the ring provider and the platform's roots).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue,
    USER_AGENT as USER_AGENT_HEADER,
};

use super::target::HttpTarget;
use super::{
    Ack, BoxFuture, Cause, RewindTo, Subscription, Transport, TransportError, TransportInfo,
};
use crate::events::{Envelope, Topic};
use crate::http_client::plain;

pub mod headers;

/// Connecting (TCP, and TLS for https) gives up after this.
const CONNECT_BOUND: Duration = Duration::from_secs(3);
/// No request outlives this, whoever is waiting for it (the driver's own deadline, the
/// checkout timeout, is normally much shorter).
pub const REQUEST_BOUND: Duration = Duration::from_secs(30);
/// What doorbuster calls itself in requests.
const USER_AGENT: &str = concat!("doorbuster/", env!("CARGO_PKG_VERSION"));
/// How much of a refusal's body goes into its reason.
const BODY_EXCERPT: usize = 200;

/// A gateway's errors: the request may have reached the shop behind it.
const GATEWAY_ERRORS: [u16; 2] = [502, 504];

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const ORDER_ID: &str = "x-doorbuster-order-id";
const EVENT_ID: &str = "x-doorbuster-event-id";

pub struct HttpCheckout {
    client: Client,
    /// The URL for reports and errors: password masked.
    redacted: String,
    /// The scenario's own headers, `${ENV}` expanded.
    headers: HeaderMap,
    accepted: AtomicU64,
}

/// How requests reach the endpoint.
enum Client {
    /// `http://`: hyper's HTTP/1.1 connections, each driven by the checkout using it
    /// (`plain`). `path` is the request target (`/checkout?...`); `head` holds what every
    /// request carries: Host, User-Agent, Content-Type, Authorization when the URL has
    /// credentials (as reqwest sends them), and the scenario's headers.
    Plain {
        pool: plain::Pool,
        path: hyper::Uri,
        head: HeaderMap,
    },
    /// `https://`: reqwest (rustls, HTTP/2 where the server offers it), redirects not
    /// followed.
    Tls {
        client: reqwest::Client,
        url: reqwest::Url,
    },
}

/// Connects to the checkout endpoint named by `target`: `${ENV}` expanded in the URL and the
/// header values, the loopback guard applied, the host reachable over TCP (else
/// `Unreachable`, exit 3, before the run starts).
pub async fn connect(target: &HttpTarget) -> Result<Arc<dyn Transport>, TransportError> {
    let url = super::target_url::expand_and_guard(&target.url, target.allow_remote)?;
    // Reports and errors show the URL as written: a secret in it is a ${ENV} reference
    // there, wherever in the URL it sits (a query's API key included).
    let redacted = super::target_url::redact_url(&target.url);
    let config_error = |source: String| TransportError::Config {
        target: redacted.clone(),
        source: source.into(),
    };
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| config_error(format!("not a valid URL: {e}")))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &target.headers {
        let value = crate::config::env::expand_env(value)
            .map_err(|e| config_error(format!("header {name}: {}", e.message)))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| config_error(format!("{name:?} is not an HTTP header name")))?;
        // Scenario validation has made this check with the file position; a target built in
        // code gets it here.
        headers::check_header_value(&value)
            .map_err(|e| config_error(format!("header {name}: {}", e.message)))?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            config_error(format!("the value of header {name} is not valid in HTTP"))
        })?;
        // Values usually carry credentials: keep them out of debug output.
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let client = if parsed.scheme() == "http" {
        plain_client(&parsed, &headers).map_err(config_error)?
    } else {
        let client = crate::http_client::builder()
            .connect_timeout(CONNECT_BOUND)
            // A redirect is not followed: the POST already reached the shop (which may have
            // taken the order), and the new address could be off loopback and would get the
            // scenario's headers.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_BOUND)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Client::Tls {
            client,
            url: parsed,
        }
    };
    probe(&url, &redacted).await?;
    Ok(Arc::new(HttpCheckout {
        client,
        redacted,
        headers,
        accepted: AtomicU64::new(0),
    }))
}

/// The client for an `http://` URL: its address, request target, and the headers every
/// request carries (the scenario's own win over doorbuster's defaults).
fn plain_client(url: &reqwest::Url, scenario: &HeaderMap) -> Result<Client, String> {
    let path = url[url::Position::BeforePath..url::Position::AfterQuery]
        .parse::<hyper::Uri>()
        .map_err(|e| format!("not a valid request target: {e}"))?;
    let invalid = |what: &str| format!("the URL's {what} is not valid in an HTTP header");
    let mut head = HeaderMap::new();
    head.insert(
        HOST,
        HeaderValue::from_str(plain::host_header(url)).map_err(|_| invalid("host"))?,
    );
    head.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
    head.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(credentials) = basic_auth(url) {
        let mut value = HeaderValue::from_str(&credentials).map_err(|_| invalid("user"))?;
        value.set_sensitive(true);
        head.insert(AUTHORIZATION, value);
    }
    head.extend(scenario.clone());
    Ok(Client::Plain {
        pool: plain::Pool::for_url(url, CONNECT_BOUND, usize::MAX)
            .ok_or("the URL names no host")?,
        path,
        head,
    })
}

/// `Basic ...` for a URL with a user (and password), percent-decoded, as reqwest and curl
/// send it; `None` without one.
fn basic_auth(url: &reqwest::Url) -> Option<String> {
    use base64::Engine;
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8_lossy()
            .into_owned()
    };
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        url.password().map(decode).unwrap_or_default()
    );
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// A TCP connection to the endpoint's host and port: an absent server is a clear error before
/// the first order, not thousands of refused checkouts. No request is sent, so probing has
/// no effect on the shop.
async fn probe(url: &str, redacted: &str) -> Result<(), TransportError> {
    let unreachable = |source: Cause| TransportError::Unreachable {
        target: redacted.to_owned(),
        source,
    };
    let (host, port) = super::target_url::first_host_port(url)
        .ok_or_else(|| unreachable("the URL names no host and port".into()))?;
    match tokio::time::timeout(
        CONNECT_BOUND,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(
            Cause::from(e).context(format!("{host}:{port}")),
        )),
        Err(_) => Err(unreachable(
            format!("{host}:{port}: no answer within {CONNECT_BOUND:?}").into(),
        )),
    }
}

impl HttpCheckout {
    async fn post(&self, envelope: Envelope) -> Result<Ack, TransportError> {
        let topic = envelope.topic;
        if topic != Topic::OrderCreated {
            return Err(TransportError::Publish {
                topic,
                source: "an HTTP checkout endpoint takes orders (order.created) only".into(),
            });
        }
        let refused = |reason: String| TransportError::Publish {
            topic,
            source: reason.into(),
        };
        let meta = &envelope.meta;
        let key = HeaderValue::from_bytes(&meta.idempotency_key)
            .map_err(|_| refused("the order's idempotency key is not a header value".into()))?;
        let mut headers = match &self.client {
            Client::Plain { head, .. } => head.clone(),
            Client::Tls { .. } => self.headers.clone(),
        };
        headers.insert(IDEMPOTENCY_KEY, key);
        headers.insert(ORDER_ID, HeaderValue::from(meta.order_id));
        headers.insert(EVENT_ID, HeaderValue::from(meta.event_id));
        // The headers the user's payload template rendered (`orders.payload.headers`).
        for (name, value) in envelope.user.iter().flat_map(|u| &u.headers) {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| refused(format!("{name:?} is not an HTTP header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                refused(format!(
                    "the rendered value of header {name} is not valid in HTTP"
                ))
            })?;
            headers.append(header, value);
        }
        let (status, body) = match &self.client {
            Client::Plain { pool, path, .. } => {
                let mut request = hyper::Request::new(plain::Body::new(envelope.payload));
                *request.method_mut() = hyper::Method::POST;
                *request.uri_mut() = path.clone();
                *request.headers_mut() = headers;
                match tokio::time::timeout(REQUEST_BOUND, pool.send(request)).await {
                    Ok(Ok(answer)) => (answer.status, answer.body),
                    Ok(Err(failure)) if failure.sent() => {
                        return Err(TransportError::failed_publish(
                            topic,
                            Cause::Plain(failure),
                            false,
                        ));
                    }
                    Ok(Err(failure)) => {
                        let source =
                            Cause::Plain(failure).context(format!("not sent to {}", self.redacted));
                        return Err(TransportError::failed_publish(topic, source, true));
                    }
                    Err(_) => {
                        let source = Cause::Observed(format!("no answer within {REQUEST_BOUND:?}"));
                        return Err(TransportError::failed_publish(topic, source, false));
                    }
                }
            }
            Client::Tls { client, url } => {
                headers
                    .entry(CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                let response = client
                    .post(url.clone())
                    .headers(headers)
                    .body(envelope.payload)
                    .send()
                    .await
                    .map_err(|e| self.send_error(topic, e))?;
                let status = response.status();
                // Read the body to the end either way: an unread body keeps the connection out
                // of the pool. A 2xx whose body then breaks was still an answer.
                (status, response.bytes().await.unwrap_or_default())
            }
        };
        if status.is_redirection() || GATEWAY_ERRORS.contains(&status.as_u16()) {
            // The shop (or the gateway's upstream) may have taken the order: unknown.
            let answer = Cause::HttpStatus {
                status,
                excerpt: String::new(),
            };
            return Err(TransportError::Indeterminate {
                topic,
                source: answer.context("the order may have been taken"),
            });
        }
        if !status.is_success() {
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)])
                .trim()
                .to_owned();
            return Err(TransportError::Publish {
                topic,
                source: Cause::HttpStatus { status, excerpt },
            });
        }
        Ok(Ack {
            partition: 0,
            offset: self.accepted.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A request that failed before an answer: refused when it provably never left,
    /// indeterminate otherwise.
    fn send_error(&self, topic: Topic, e: reqwest::Error) -> TransportError {
        let not_sent = e.is_connect() || e.is_builder();
        // Without the URL: reqwest's message may quote it, and it may hold a secret. Its
        // own message is generic ("error sending request"): the causes say what happened.
        let source = Cause::Http(e.without_url());
        let source = if not_sent {
            source.context(format!("not sent to {}", self.redacted))
        } else {
            source
        };
        TransportError::failed_publish(topic, source, not_sent)
    }

    fn no_groups(group: &str) -> TransportError {
        TransportError::Group {
            group: group.to_owned(),
            source: "an HTTP checkout endpoint has no consumer groups: doorbuster only \
                     submits orders to it"
                .into(),
        }
    }
}

#[async_trait::async_trait]
impl Transport for HttpCheckout {
    fn info(&self) -> TransportInfo {
        let mut names: Vec<String> = self.headers.keys().map(|n| n.to_string()).collect();
        names.sort();
        let settings: Vec<(String, String)> = vec![
            ("url".into(), self.redacted.clone()),
            (
                "publish ack".into(),
                "a 2xx answer to POST (the order as JSON)".into(),
            ),
            (
                "refused".into(),
                "4xx/5xx, or no connection; 3xx (not followed), 502, 504, no answer = unknown"
                    .into(),
            ),
            (
                "idempotency".into(),
                "Idempotency-Key = the order's key; a resubmit repeats it".into(),
            ),
            (
                "client retries".into(),
                "none (one request per submit)".into(),
            ),
            ("request bound".into(), format!("{REQUEST_BOUND:?}")),
            (
                "headers".into(),
                if names.is_empty() {
                    "none".into()
                } else {
                    format!("{} (values not shown)", names.join(", "))
                },
            ),
            (
                "observed".into(),
                "checkout answers only: the pipeline behind the endpoint is the shop's".into(),
            ),
        ];
        TransportInfo {
            kind: "http".into(),
            settings,
        }
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        Box::pin(self.post(envelope))
    }

    async fn subscribe(
        &self,
        group: &str,
        _topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        Err(Self::no_groups(group))
    }

    async fn rewind(&self, group: &str, _to: RewindTo) -> Result<(), TransportError> {
        Err(Self::no_groups(group))
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        Err(Self::no_groups(group))
    }
}
