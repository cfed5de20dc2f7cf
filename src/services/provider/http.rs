//! The provider mock over HTTP: what a real payment service points at.
//!
//! A thin axum layer over `ProviderCore`, speaking a Stripe-shaped card API on loopback:
//! `POST /v1/charges` (an `Idempotency-Key` header is required) and `GET /v1/captures` for
//! the capture records. It translates, nothing more: every decision is the core's. It may
//! not bind anything but 127.0.0.1.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::json;

use super::core::{ChargeRequest, ChargeResponse, ProviderCore};
use super::wire::{IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_LEN_MAX, provider_error};

/// The routes, for serving or for tests that drive the router directly.
pub fn router(core: Arc<ProviderCore>) -> Router {
    Router::new()
        .route("/v1/charges", post(create_charge))
        .route("/v1/captures", get(list_captures))
        .with_state(core.clone())
        .merge(super::stripe::routes(core))
}

/// Serves the mock on 127.0.0.1 at a free port until `shutdown` completes.
pub async fn serve(
    core: Arc<ProviderCore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_on(core, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), shutdown).await
}

/// Serves the mock at `addr`, a loopback address (`doorbuster provider --listen`), until
/// `shutdown` completes. Any other address is refused before binding.
pub async fn serve_on(
    core: Arc<ProviderCore>,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} is not a loopback address; the provider serves on loopback only"),
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    core.keep_captures();
    // Small request/response pairs: Nagle's delay would dominate the latency we measure.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "provider mock could not set TCP_NODELAY");
        }
    });
    let app = router(core);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "provider mock server stopped with an error");
        }
    });
    tracing::debug!(%addr, "provider mock listening");
    Ok((addr, task))
}

async fn create_charge(
    State(core): State<Arc<ProviderCore>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX);
    let Some(key) = key else {
        return invalid_request(
            "idempotency_key_missing",
            "an Idempotency-Key header of 1 to 255 visible characters is required",
        );
    };
    let req: ChargeRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(error) => return invalid_request("parameter_invalid", &error.to_string()),
    };
    match core.charge(key, &req).await {
        ChargeResponse::Captured { charge_id } => (
            StatusCode::OK,
            axum::Json(json!({
                "id": charge_id,
                "object": "charge",
                "amount": req.amount_cents,
                "currency": req.currency.to_ascii_lowercase(),
                "captured": true,
                "paid": true,
                "status": "succeeded",
                "metadata": { "order_id": req.order_id.to_string() },
            })),
        )
            .into_response(),
        ChargeResponse::Declined { code } => (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(json!({ "error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": code,
                "message": "Your card was declined.",
            }})),
        )
            .into_response(),
        ChargeResponse::IdempotencyConflict => (
            StatusCode::CONFLICT,
            axum::Json(json!({ "error": {
                "type": "idempotency_error",
                "message": "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            }})),
        )
            .into_response(),
        ChargeResponse::Error {
            status,
            retry_after,
        } => provider_error(status, retry_after),
    }
}

async fn list_captures(State(core): State<Arc<ProviderCore>>) -> Response {
    // Served means kept (`serve_on` asks before its first call); a router mounted elsewhere
    // without asking lists nothing rather than a partial book.
    axum::Json(core.captures().unwrap_or_default()).into_response()
}

fn invalid_request(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
        }})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::super::client::{ProviderClient, ProviderError};
    use super::super::core::Outage;
    use super::super::core::tests::{cfg, req};
    use super::*;
    use crate::clock::Clock;
    use crate::config::units::LatencyDist;

    struct Server {
        core: Arc<ProviderCore>,
        base: String,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(latency: LatencyDist) -> Server {
        let core = Arc::new(ProviderCore::new(
            7,
            &cfg(latency, Duration::from_secs(5)),
            Clock::start(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, task) = serve(Arc::clone(&core), async move {
            let _ = stopped.await;
        })
        .await
        .expect("bind loopback");
        Server {
            core,
            base: format!("http://{addr}"),
            stop,
            task,
        }
    }

    impl Server {
        fn client(&self, timeout: Duration) -> ProviderClient {
            let cfg = cfg(LatencyDist::ZERO, timeout);
            ProviderClient::http(&self.base, &cfg).expect("client builds")
        }

        async fn stop(self) {
            let _ = self.stop.send(());
            tokio::time::timeout(Duration::from_secs(10), self.task)
                .await
                .expect("server shuts down")
                .expect("server task ends cleanly");
        }
    }

    /// A plain client for requests the provider client would never send; no proxy, since
    /// an environment proxy must not sit between a test and loopback.
    fn raw_client() -> reqwest::Client {
        crate::http_client::builder()
            .no_proxy()
            .build()
            .expect("client builds")
    }

    const FAST: LatencyDist = LatencyDist::Fixed(Duration::from_millis(1));

    #[tokio::test]
    async fn replays_over_http_capture_once() {
        let server = start(FAST).await;
        let client = server.client(Duration::from_secs(5));
        let first = client.charge("ik_1", &req(1, 2_500, "tok_visa")).await;
        let again = client.charge("ik_1", &req(1, 2_500, "tok_visa")).await;
        let first = first.expect("captured");
        assert!(matches!(first, ChargeResponse::Captured { .. }));
        assert_eq!(Ok(first), again.map_err(|e| e.to_string()));
        let conflict = client.charge("ik_1", &req(1, 2_600, "tok_visa")).await;
        assert_eq!(
            conflict.expect("answered"),
            ChargeResponse::IdempotencyConflict
        );
        // The capture records are served too.
        let records: Vec<serde_json::Value> = raw_client()
            .get(format!("{}/v1/captures", server.base))
            .send()
            .await
            .expect("get captures")
            .json()
            .await
            .expect("json");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["order_id"], 1);
        assert_eq!(server.core.captures().expect("served, so kept").len(), 1);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_decline_maps_through_402() {
        let server = start(FAST).await;
        let client = server.client(Duration::from_secs(5));
        let r = client
            .charge("k", &req(1, 100, "tok_chargeDeclinedExpiredCard"))
            .await
            .expect("answered");
        assert_eq!(
            r,
            ChargeResponse::Declined {
                code: "expired_card".into()
            }
        );
        let raw = raw_client()
            .post(format!("{}/v1/charges", server.base))
            .header("Idempotency-Key", "k2")
            .json(&req(2, 100, "tok_chargeDeclined"))
            .send()
            .await
            .expect("sent");
        assert_eq!(raw.status(), StatusCode::PAYMENT_REQUIRED);
        let body: serde_json::Value = raw.json().await.expect("json");
        assert_eq!(body["error"]["type"], "card_error");
        assert_eq!(body["error"]["decline_code"], "generic_decline");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_missing_idempotency_key_is_a_400() {
        let server = start(FAST).await;
        let raw = raw_client()
            .post(format!("{}/v1/charges", server.base))
            .json(&req(1, 100, "tok_visa"))
            .send()
            .await
            .expect("sent");
        assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
        let bad_body = raw_client()
            .post(format!("{}/v1/charges", server.base))
            .header("Idempotency-Key", "k")
            .body("{not json")
            .send()
            .await
            .expect("sent");
        assert_eq!(bad_body.status(), StatusCode::BAD_REQUEST);
        assert!(server.core.captures().expect("served, so kept").is_empty());
        server.stop().await;
    }

    #[tokio::test]
    async fn an_outage_maps_429_and_retry_after() {
        let server = start(FAST).await;
        let client = server.client(Duration::from_secs(5));
        server
            .core
            .set_outage(Outage::down(429, Some(Duration::from_millis(1_500))));
        let r = client.charge("k", &req(1, 100, "tok_visa")).await;
        let expected = ChargeResponse::Error {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(r.expect("answered"), expected);
        server.core.set_outage(Outage::down(503, None));
        let r = client.charge("k", &req(1, 100, "tok_visa")).await;
        let expected = ChargeResponse::Error {
            status: 503,
            retry_after: None,
        };
        assert_eq!(r.expect("answered"), expected);
        assert!(server.core.captures().expect("served, so kept").is_empty());
        server.stop().await;
    }

    #[tokio::test]
    async fn a_slow_provider_times_the_client_out() {
        // 300 ms responses against a 100 ms client timeout: the client gives up, while the
        // provider has already captured (what a retry with the same key must cope with).
        let server = start(LatencyDist::Fixed(Duration::from_millis(300))).await;
        let client = server.client(Duration::from_millis(100));
        let r = client.charge("k", &req(1, 100, "tok_visa")).await;
        assert!(matches!(r, Err(ProviderError::Timeout)), "{r:?}");
        assert_eq!(server.core.captures().expect("served, so kept").len(), 1);
        server.stop().await;
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_a_connect_error() {
        // Bind and drop a listener so the port is known to be closed.
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let cfg = cfg(LatencyDist::ZERO, Duration::from_secs(2));
        let client = ProviderClient::http(format!("http://{addr}"), &cfg).expect("builds");
        let r = client.charge("k", &req(1, 100, "tok_visa")).await;
        assert!(matches!(r, Err(ProviderError::Connect(_))), "{r:?}");
    }
}
