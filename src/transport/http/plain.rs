//! Plain `http://` checkout endpoints: HTTP/1.1 keep-alive connections on hyper's connection
//! API, each one driven by the checkout that is using it.
//!
//! reqwest (kept for `https://`, where TLS and HTTP/2 are its job) runs every connection as a
//! task of its own and hands each request and each answer across to it, and per request
//! turns the URL around, arms a timer and consults its redirect policy. A load generator
//! sending tens of thousands of checkouts a second pays all of that on every order. Here a
//! checkout takes an idle connection, polls it itself while its request is written and its
//! answer read, and puts it back: one task and no hand-off, the way wrk drives its
//! connections.

use std::pin::pin;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::CONNECT_BOUND;
use crate::transport::Cause;

pub(super) type Body = Full<Bytes>;

/// An endpoint's answer: its status and its whole body (empty when the body broke off after
/// the status line: that was still an answer).
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug)]
pub(super) enum Failure {
    /// It never left: no connection to the endpoint, or a new connection that closed before
    /// the request was written.
    NotSent(Cause),
    /// It was written, and no complete answer came: the endpoint may have the order.
    Unanswered(hyper::Error),
}

/// The endpoint's address and the connections to it that are open and idle.
pub(super) struct Pool {
    host: String,
    port: u16,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    pub fn new(host: String, port: u16) -> Self {
        Pool {
            host,
            port,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` on an idle connection, or on a new one when none is idle, and reads
    /// the whole answer.
    pub async fn send(&self, mut request: Request<Body>) -> Result<Answer, Failure> {
        let mut idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        loop {
            let reused = idle.is_some();
            let connection = match idle.take() {
                Some(connection) => connection,
                None => self.open().await.map_err(Failure::NotSent)?,
            };
            match connection.exchange(request).await {
                Ok((answer, kept)) => {
                    if let (Some(connection), Ok(mut idle)) = (kept, self.idle.lock()) {
                        idle.push(connection);
                    }
                    return Ok(answer);
                }
                // The endpoint closed an idle connection just as the request was about to go
                // (keep-alive's race): it never left, so it goes again on a new connection,
                // as hyper's own pooled client does. Once: a new connection that does the
                // same is the endpoint turning it away.
                Err(Lost::NotSent(again, _)) if reused => request = *again,
                Err(Lost::NotSent(_, e)) => return Err(Failure::NotSent(Cause::Hyper(e))),
                Err(Lost::Unanswered(e)) => return Err(Failure::Unanswered(e)),
            }
        }
    }

    async fn open(&self) -> Result<Connection, Cause> {
        let address = || format!("{}:{}", self.host, self.port);
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(CONNECT_BOUND, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Cause::from(e).context(format!("connect to {}", address()))),
            Err(_) => {
                return Err(Cause::Observed(format!(
                    "connect to {}: no answer within {CONNECT_BOUND:?}",
                    address()
                )));
            }
        };
        stream.set_nodelay(true)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Cause::Hyper)?;
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
                let status = response.status();
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                Ok((status, body))
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
        let (status, body) = outcome?;
        let kept = driver.filter(|_| body.is_ok() && !sender.is_closed());
        let answer = Answer {
            status,
            body: body.unwrap_or_default(),
        };
        Ok((answer, kept.map(|driver| Connection { sender, driver })))
    }
}
