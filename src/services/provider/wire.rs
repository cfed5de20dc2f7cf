//! What both of the provider's HTTP APIs (the JSON card API in `http.rs`, the Stripe subset
//! in `stripe.rs`) say the same way: the idempotency header and an outage's answer.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Stripe's limit; longer keys are a client bug worth reporting, not storing.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// An injected outage's answer: its status (any non-error status becomes a 500), Stripe's
/// error type for it, and Retry-After in whole seconds when the outage gives one.
pub fn provider_error(status: u16, retry_after: Option<Duration>) -> Response {
    // An outage configured with a status that is not an HTTP error still has to fail.
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limit_error"
    } else {
        "api_error"
    };
    let mut response = (
        status,
        axum::Json(json!({ "error": { "type": kind, "message": "injected provider outage" } })),
    )
        .into_response();
    if let Some(after) = retry_after {
        // Retry-After carries whole seconds; round up so clients never retry too early.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
