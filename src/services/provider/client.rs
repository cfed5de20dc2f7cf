//! How the payment service reaches the provider: in process, or over HTTP to the mock.
//!
//! Both paths return the same `ChargeResponse` and apply the same per-call timeout, so a
//! scenario means the same thing whichever `provider.via` it picks. Business answers
//! (declines, conflicts, outage errors with their status) are responses; only not getting an
//! answer is a `ProviderError`. It may not retry: retries and backoff are the payment
//! service's policy.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use serde::Deserialize;

use super::core::{ChargeRequest, ChargeResponse, ProviderCore};
use super::model;
use super::wire::IDEMPOTENCY_KEY;

/// Idle keep-alive connections kept per host. Bounded: unbounded pools caused connection
/// storms at 20-30k calls/s in the driver measurements (DESIGN §12).
const POOL_IDLE_PER_HOST_MAX: usize = 64;

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
    Http {
        client: reqwest::Client,
        base: String,
    },
}

impl ProviderClient {
    pub fn in_process(core: Arc<ProviderCore>) -> ProviderClient {
        ProviderClient::InProcess(core)
    }

    /// One pooled client for all calls to `base` (e.g. `http://127.0.0.1:4242`).
    pub fn http(
        base: impl Into<String>,
        cfg: &model::Provider,
    ) -> Result<ProviderClient, ProviderError> {
        let client = crate::http_client::builder()
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .tcp_nodelay(true)
            // The mock is on loopback; a proxy from the environment would only distort it.
            .no_proxy()
            .build()
            .map_err(|e| ProviderError::Setup(e.to_string()))?;
        let base = base.into().trim_end_matches('/').to_owned();
        Ok(ProviderClient::Http { client, base })
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
            ProviderClient::Http { client, base } => {
                charge_http(client, base, idempotency_key, req).await
            }
        }
    }
}

async fn charge_http(
    client: &reqwest::Client,
    base: &str,
    idempotency_key: &str,
    req: &ChargeRequest,
) -> Result<ChargeResponse, ProviderError> {
    let response = client
        .post(format!("{base}/v1/charges"))
        .header(IDEMPOTENCY_KEY, idempotency_key)
        .json(req)
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.bytes().await.map_err(transport_error)?;
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

fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout
    } else if error.is_connect() || error.is_request() {
        ProviderError::Connect(error.to_string())
    } else {
        ProviderError::Protocol(error.to_string())
    }
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
