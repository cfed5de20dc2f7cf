//! The synchronous-checkout baseline: the checkout charges the card itself, inline, the way
//! a monolith's checkout calls the card API before it answers the shopper.
//!
//! In `load.checkout: { mode: sync }` the driver, once `order.created` is acked, calls the
//! payment provider through the same `ProviderClient` the payment service uses, with the
//! order's own idempotency key and the very request the payment service will build from the
//! event, so the provider captures once however the two calls interleave. It calls exactly
//! once: a shopper waiting on a spinner gets one try, not the payment service's retries
//! with backoff. Everything downstream runs as in the asynchronous mode; this only decides
//! whether the shopper saw a successful checkout. It may not record observations (the
//! driver does) or retry.

use tokio::time::Instant;

use crate::orders::parse_view;
use crate::services::payment::charge_request;
use crate::services::provider::{ChargeResponse, ProviderClient, ProviderError};

/// Why an inline payment did not answer the shopper in time.
#[derive(Debug, thiserror::Error)]
pub enum InlinePaymentError {
    #[error("the provider did not answer before the checkout deadline")]
    Deadline,
    #[error("the provider call failed: {0}")]
    Provider(#[from] ProviderError),
    #[error("the provider failed the call with status {status}")]
    ProviderFailed { status: u16 },
    /// Two callers sent one key with different requests: a harness bug, never a shopper's.
    #[error("the provider refused the idempotency key as reused with other parameters")]
    Conflict,
    #[error("the order's own payload did not parse: {0}")]
    Payload(String),
}

impl InlinePaymentError {
    /// True for errors that point at doorbuster itself rather than at the provider.
    pub fn is_harness_bug(&self) -> bool {
        matches!(
            self,
            InlinePaymentError::Conflict | InlinePaymentError::Payload(_)
        )
    }
}

/// Charges the order whose `order.created` payload is `payload`, once, by `deadline`.
///
/// `Ok` means the provider answered: a capture, or a decline (a business outcome the shopper
/// sees as an answer, not as a broken checkout).
pub async fn pay_inline(
    client: &ProviderClient,
    idempotency_key: &str,
    payload: &[u8],
    deadline: Instant,
) -> Result<(), InlinePaymentError> {
    // Built from the payload exactly as the payment service builds it from the event, so
    // the provider sees one key with one set of parameters and replays instead of
    // charging twice.
    let view = parse_view(payload).map_err(|e| InlinePaymentError::Payload(e.to_string()))?;
    let request = charge_request(view.order_id, &view);
    let response = tokio::time::timeout_at(deadline, client.charge(idempotency_key, &request))
        .await
        .map_err(|_| InlinePaymentError::Deadline)??;
    match response {
        ChargeResponse::Captured { .. } | ChargeResponse::Declined { .. } => Ok(()),
        ChargeResponse::Error { status, .. } => Err(InlinePaymentError::ProviderFailed { status }),
        ChargeResponse::IdempotencyConflict => Err(InlinePaymentError::Conflict),
    }
}
