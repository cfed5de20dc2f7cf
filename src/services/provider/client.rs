//! How the payment service reaches the provider: in process, or over HTTP to the mock.
//!
//! Both paths return the same `ChargeResponse` and apply the same per-call timeout, so a
//! scenario means the same thing whichever `provider.via` it picks. Business answers
//! (declines, conflicts, outage errors with their status) are responses; only not getting an
//! answer is a `ProviderError`. It may not retry: retries and backoff are the payment
//! service's policy.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Deserialize;

use super::core::{ChargeRequest, ChargeResponse, ProviderCore};
use super::model;
use super::wire::IDEMPOTENCY_KEY;
use crate::http_client::plain;

/// Idle keep-alive connections kept. Bounded: unbounded pools caused connection storms at
/// 20-30k calls/s in the driver measurements (DESIGN §12).
const POOL_IDLE_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider did not answer within the client timeout")]
    Timeout,
    #[error("could not reach the provider: {0}")]
    Connect(String),
    #[error("the provider answered something unexpected: {0}")]
    Protocol(String),
    #[error("could not build the provider HTTP client: {0}")]
    Setup(String),
}

#[derive(Debug, Clone)]
pub enum ProviderClient {
    InProcess(Arc<ProviderCore>),
    /// The mock over `http://` on loopback (`http_client::plain`).
    Http(Arc<HttpProvider>),
}

/// Where charges go over HTTP, and what every call carries.
pub struct HttpProvider {
    pool: plain::Pool,
    /// `<base path>/v1/charges`.
    charges: hyper::Uri,
    /// Host and Content-Type.
    head: HeaderMap,
    timeout: Duration,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("head", &self.head)
            .field("charges", &self.charges)
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    pub fn in_process(core: Arc<ProviderCore>) -> ProviderClient {
        ProviderClient::InProcess(core)
    }

    /// One pool of keep-alive connections for all calls to `base` (e.g.
    /// `http://127.0.0.1:4242`), each call (connecting included) bounded by the provider's
    /// client timeout.
    pub fn http(
        base: impl Into<String>,
        cfg: &model::Provider,
    ) -> Result<ProviderClient, ProviderError> {
        let base = base.into();
        let setup = |what: String| ProviderError::Setup(format!("{base}: {what}"));
        let url = url::Url::parse(&base).map_err(|e| setup(e.to_string()))?;
        if url.scheme() != "http" {
            return Err(setup(
                "the provider mock is reached over http:// only".into(),
            ));
        }
        let charges = format!("{}/v1/charges", url.path().trim_end_matches('/'))
            .parse::<hyper::Uri>()
            .map_err(|e| setup(e.to_string()))?;
        let mut head = HeaderMap::new();
        let host = plain::host_header(&url);
        head.insert(
            HOST,
            HeaderValue::from_str(host).map_err(|e| setup(e.to_string()))?,
        );
        head.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(ProviderClient::Http(Arc::new(HttpProvider {
            pool: plain::Pool::for_url(&url, cfg.timeout, POOL_IDLE_MAX)
                .ok_or_else(|| setup("no host".into()))?,
            charges,
            head,
            timeout: cfg.timeout,
        })))
    }

    pub async fn charge(
        &self,
        idempotency_key: &str,
        req: &ChargeRequest,
    ) -> Result<ChargeResponse, ProviderError> {
        match self {
            ProviderClient::InProcess(core) => {
                tokio::time::timeout(core.timeout(), core.charge(idempotency_key, req))
                    .await
                    .map_err(|_| ProviderError::Timeout)
            }
            ProviderClient::Http(provider) => provider.charge(idempotency_key, req).await,
        }
    }
}

impl HttpProvider {
    async fn charge(
        &self,
        idempotency_key: &str,
        req: &ChargeRequest,
    ) -> Result<ChargeResponse, ProviderError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| ProviderError::Protocol(format!("cannot encode the request: {e}")))?;
        let key = HeaderValue::from_str(idempotency_key).map_err(|_| {
            ProviderError::Protocol(format!("{idempotency_key:?} is not a header value"))
        })?;
        let mut request = hyper::Request::new(plain::Body::from(body));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = self.charges.clone();
        *request.headers_mut() = self.head.clone();
        request.headers_mut().insert(IDEMPOTENCY_KEY, key);
        let answer = match tokio::time::timeout(self.timeout, self.pool.send(request)).await {
            Ok(Ok(answer)) => answer,
            // Not sent, or sent and unanswered: either way the provider was not reached
            // with an answer (the payment service retries both alike).
            Ok(Err(failure)) => return Err(ProviderError::Connect(failure.to_string())),
            Err(_) => return Err(ProviderError::Timeout),
        };
        read_answer(answer)
    }
}

/// The provider's answer as the payment service acts on it.
fn read_answer(answer: plain::Answer) -> Result<ChargeResponse, ProviderError> {
    let status = answer.status.as_u16();
    let retry_after = answer
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = answer.body;
    match status {
        200 => {
            let charge: ChargeBody = parse(status, &body)?;
            Ok(ChargeResponse::Captured {
                charge_id: charge.id,
            })
        }
        402 => {
            let error: ErrorBody = parse(status, &body)?;
            let code = error
                .error
                .decline_code
                .or(error.error.code)
                .unwrap_or_else(|| "card_declined".to_owned());
            Ok(ChargeResponse::Declined { code })
        }
        409 => Ok(ChargeResponse::IdempotencyConflict),
        429 | 500..=599 => Ok(ChargeResponse::Error {
            status,
            retry_after,
        }),
        other => Err(ProviderError::Protocol(format!(
            "status {other}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))),
    }
}

#[derive(Deserialize)]
struct ChargeBody {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    decline_code: Option<String>,
}

fn parse<'a, T: Deserialize<'a>>(status: u16, body: &'a [u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::Protocol(format!("status {status} with an unreadable body: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::super::core::tests::{cfg, req};
    use super::*;
    use crate::clock::Clock;
    use crate::config::units::LatencyDist;

    #[tokio::test(start_paused = true)]
    async fn the_in_process_client_applies_the_timeout() {
        // 300 ms latency against a 100 ms timeout: a timeout, but the provider captured.
        let latency = LatencyDist::Fixed(Duration::from_millis(300));
        let cfg = cfg(latency, Duration::from_millis(100));
        let core = Arc::new(ProviderCore::new(3, &cfg, Clock::start()));
        let client = ProviderClient::in_process(Arc::clone(&core));
        let r = client.charge("k", &req(1, 100, "tok_visa")).await;
        assert!(matches!(r, Err(ProviderError::Timeout)), "{r:?}");
        assert_eq!(core.captures_per_order().get(1), 1);
    }
}
