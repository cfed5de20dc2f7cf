//! Plain `http://`: HTTP/1.1 keep-alive connections on hyper's connection API, each one
//! driven by the request that is using it.
//!
//! reqwest (kept for `https://`, where TLS and HTTP/2 are its job) runs every connection as a
//! task of its own and hands each request and each answer across to it, and per request
//! turns the URL around, checks its pool out and in and consults its redirect policy. A load
//! generator sending tens of thousands of checkouts (and provider calls) a second pays all of
//! that on every order. Here a request takes an idle connection, polls it itself while it is
//! written and its answer read, and puts it back: one task and no hand-off, the way wrk
//! drives its connections. Used for the checkout endpoint (`transport::http`) and the
//! provider mock (`services::provider::client`).

use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Body = Full<Bytes>;

/// An endpoint's answer: its status, headers and whole body (empty when the body broke off
/// after the head: that was still an answer).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// It never left: no connection to the endpoint.
    #[error("connect to {address}: {error}")]
    Connect {
        address: String,
        error: std::io::Error,
    },
    /// It never left: a new connection closed before it was written.
    #[error(transparent)]
    Closed(hyper::Error),
    /// It was written, and no complete answer came: the endpoint may have acted on it.
    #[error(transparent)]
    Unanswered(hyper::Error),
}

impl Failure {
    /// Whether the request may have reached the endpoint.
    pub fn sent(&self) -> bool {
        matches!(self, Failure::Unanswered(_))
    }
}

/// The endpoint's address and the connections to it that are open and idle.
pub struct Pool {
    host: String,
    port: u16,
    connect_bound: Duration,
    /// Idle connections kept beyond this are closed.
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
}

/// The Host header for requests to `url`: its host (an IPv6 address in brackets) and its
/// port when one is written.
pub fn host_header(url: &url::Url) -> &str {
    &url[url::Position::BeforeHost..url::Position::AfterPort]
}

impl Pool {
    /// Connections to the host and port `url` names (the scheme's default port when none is
    /// written), each connect given up after `connect_bound`, at most `max_idle` of them kept
    /// open while idle; `None` when it names no host.
    pub fn for_url(url: &url::Url, connect_bound: Duration, max_idle: usize) -> Option<Self> {
        let host = match url.host()? {
            url::Host::Domain(name) => name.to_owned(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        Some(Pool {
            host,
            port,
            connect_bound,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` on an idle connection, or on a new one when none is idle, and reads
    /// the whole answer.
    pub async fn send(&self, mut request: Request<Body>) -> Result<Answer, Failure> {
        let mut idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        loop {
            let reused = idle.is_some();
            let connection = match idle.take() {
                Some(connection) => connection,
                None => self.open().await?,
            };
            match connection.exchange(request).await {
                Ok((answer, kept)) => {
                    if let (Some(connection), Ok(mut idle)) = (kept, self.idle.lock())
                        && idle.len() < self.max_idle
                    {
                        idle.push(connection);
                    }
                    return Ok(answer);
                }
                // The endpoint closed an idle connection just as the request was about to go
                // (keep-alive's race): it never left, so it goes again on a new connection,
                // as hyper's own pooled client does. Once: a new connection that does the
                // same is the endpoint turning it away.
                Err(Lost::NotSent(again, _)) if reused => request = *again,
                Err(Lost::NotSent(_, e)) => return Err(Failure::Closed(e)),
                Err(Lost::Unanswered(e)) => return Err(Failure::Unanswered(e)),
            }
        }
    }

    async fn open(&self) -> Result<Connection, Failure> {
        let failed = |error| Failure::Connect {
            address: format!("{}:{}", self.host, self.port),
            error,
        };
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_bound, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(failed(e)),
            Err(_) => {
                let bound = self.connect_bound;
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {bound:?}"),
                );
                return Err(failed(e));
            }
        };
        stream.set_nodelay(true).map_err(failed)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Closed)?;
        Ok(Connection { sender, driver })
    }
}

/// One open connection: hyper's handle for sending on it, and the state machine that reads
/// and writes it (which only moves while someone polls it).
struct Connection {
    sender: http1::SendRequest<Body>,
    driver: http1::Connection<TokioIo<TcpStream>, Body>,
}

/// How an exchange on a connection failed.
enum Lost {
    /// The request never left (the connection was closed, or closed before it was
    /// written), and is handed back.
    NotSent(Box<Request<Body>>, hyper::Error),
    /// The request was written, and no complete answer came.
    Unanswered(hyper::Error),
}

impl Connection {
    /// Sends `request` and reads its answer to the end, driving the connection meanwhile.
    /// The connection comes back when it can carry another request.
    async fn exchange(self, request: Request<Body>) -> Result<(Answer, Option<Self>), Lost> {
        let Connection { mut sender, driver } = self;
        // `None` once the connection has ended: dropped then, so that hyper's handle sees it
        // closed and hands back a request it had not written yet.
        let mut driver = Some(driver);
        let outcome = {
            let mut work = pin!(async {
                // An idle connection the endpoint has closed shows it here: the driver, polled
                // alongside, reads the end of the stream and the request is handed back.
                if let Err(e) = sender.ready().await {
                    return Err(Lost::NotSent(Box::new(request), e));
                }
                let response = sender.try_send_request(request).await.map_err(|mut e| {
                    match e.take_message() {
                        Some(request) => Lost::NotSent(Box::new(request), e.into_error()),
                        None => Lost::Unanswered(e.into_error()),
                    }
                })?;
                let (head, body) = response.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes());
                Ok((head.status, head.headers, body))
            });
            loop {
                let Some(running) = driver.as_mut() else {
                    break work.await;
                };
                tokio::select! {
                    biased;
                    outcome = &mut work => break outcome,
                    // The connection ended (closed by the endpoint, or broken): the request
                    // learns how from hyper.
                    _ = running => {}
                }
                driver = None;
            }
        };
        let (status, headers, body) = outcome?;
        let kept = driver.filter(|_| body.is_ok() && !sender.is_closed());
        let answer = Answer {
            status,
            headers,
            body: body.unwrap_or_default(),
        };
        Ok((answer, kept.map(|driver| Connection { sender, driver })))
    }
}
