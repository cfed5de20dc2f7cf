//! The provider's Stripe-compatible subset, as Stripe's SDKs send it: form-encoded
//! PaymentIntents (create, confirm, capture, retrieve) and refunds, `metadata[...]`, the
//! documented test payment methods (`pm_card_visa`, `pm_card_chargeDeclined`, `tok_...`), and
//! Stripe's idempotency rules on every POST:
//!
//! - the same `Idempotency-Key` with the same parameters replays the first answer (status and
//!   body, with `Idempotent-Replayed: true`), charging nothing again;
//! - the same key with other parameters is a 400 `idempotency_error`;
//! - the same key while its first request is still in flight is a 409
//!   (`idempotency_key_in_use`);
//! - an injected outage (5xx, 429) stores nothing, so a retry with the key runs anew.
//!
//! stripe-mock is stateless and ignores idempotency keys; this keeps state, so a user's payment
//! service that charges twice (a retry with a fresh key, a confirm after a timeout) is proven
//! from the provider's own books: every capture is recorded in `ProviderCore` with the order
//! it names in `metadata[order_id]` (a number, or a payload template's 24-hex `order.uid`).
//! Every decision about money is the core's (card outcomes, outages, latency, captures);
//! this module keeps the intents and the keys and speaks Stripe's shapes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Value, json};

use super::core::{ChargeResponse, ProviderCore};
use super::wire::{IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_LEN_MAX, provider_error};
use crate::orders::cards::{self, CardOutcome};

/// The routes of the Stripe subset, over the core they charge through.
pub fn routes(core: Arc<ProviderCore>) -> Router {
    let stripe = Arc::new(Stripe {
        core,
        books: Mutex::new(Books::default()),
    });
    Router::new()
        .route(
            "/v1/payment_intents",
            create("/v1/payment_intents", new_intent),
        )
        .route("/v1/payment_intents/{id}", get(retrieve_intent))
        .route(
            "/v1/payment_intents/{id}/confirm",
            act("confirm", confirm_intent),
        )
        .route(
            "/v1/payment_intents/{id}/capture",
            act("capture", capture_intent),
        )
        .route("/v1/refunds", create("/v1/refunds", refund))
        .with_state(stripe)
}

/// A POST that creates an object: `make` under the idempotency rules.
fn create(
    path: &'static str,
    make: fn(&Stripe, &Params, &str) -> Answer,
) -> MethodRouter<Arc<Stripe>> {
    post(
        move |State(stripe): State<Arc<Stripe>>, headers: HeaderMap, body: Bytes| async move {
            stripe.idempotent(&headers, path, &body, make).await
        },
    )
}

struct Stripe {
    core: Arc<ProviderCore>,
    books: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    intents: HashMap<String, Intent>,
    keys: HashMap<String, KeyState>,
    refunds: u64,
}

/// What an idempotency key has seen.
enum KeyState {
    /// Its first request is still being answered.
    InFlight,
    /// Its first request's answer, replayed to later requests with the same parameters.
    Done {
        fingerprint: String,
        status: StatusCode,
        body: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaptureMethod {
    Automatic,
    Manual,
}

#[derive(Debug, Clone)]
struct Intent {
    id: String,
    amount: u64,
    currency: String,
    capture_method: CaptureMethod,
    payment_method: Option<String>,
    status: &'static str,
    amount_received: u64,
    amount_refunded: u64,
    latest_charge: Option<String>,
    metadata: BTreeMap<String, String>,
    last_payment_error: Option<Value>,
}

impl Intent {
    fn to_json(&self) -> Value {
        let capturable = if self.status == "requires_capture" {
            self.amount
        } else {
            0
        };
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": capturable,
            "amount_received": self.amount_received,
            "currency": self.currency,
            "capture_method": match self.capture_method {
                CaptureMethod::Automatic => "automatic",
                CaptureMethod::Manual => "manual",
            },
            "confirmation_method": "automatic",
            "status": self.status,
            "payment_method": self.payment_method,
            "latest_charge": self.latest_charge,
            "metadata": self.metadata,
            "last_payment_error": self.last_payment_error,
            "livemode": false,
        })
    }

    /// The order this intent pays for, from `metadata[order_id]`: a number, or 24 hex digits
    /// whose last 16 are the number (`order.uid`); `u64::MAX` when it names none.
    fn order_id(&self) -> u64 {
        let Some(text) = self.metadata.get("order_id") else {
            return u64::MAX;
        };
        text.parse()
            .ok()
            .or_else(|| {
                (text.len() == 24)
                    .then(|| u64::from_str_radix(&text[8..], 16).ok())
                    .flatten()
            })
            .unwrap_or(u64::MAX)
    }
}

/// A form-encoded body, in order, as Stripe's SDKs write it (`metadata[order_id]=17`).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(body: &[u8]) -> Params {
        Params(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        (self.0.iter())
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
                Some((key.to_owned(), v.clone()))
            })
            .collect()
    }

    /// The request as Stripe compares it for a POST with a reused key: path and parameters.
    fn fingerprint(&self, path: &str) -> String {
        let mut sorted = self.0.clone();
        sorted.sort();
        let params: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("POST {path}?{}", params.join("&"))
    }
}

/// Stores a key's answer when the request ends, however it ends.
struct StoreOnDrop<'a> {
    stripe: &'a Stripe,
    key: String,
    state: Option<KeyState>,
}

impl Drop for StoreOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let key = std::mem::take(&mut self.key);
            self.stripe.books().keys.insert(key, state);
        }
    }
}

/// What a reused key gets instead of a new answer.
enum Reuse {
    Replay(Answer),
    OtherParameters,
    InFlight,
}

/// One answer: its status and body.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body,
        }
    }

    fn invalid(code: &str, message: &str, param: Option<&str>) -> Answer {
        Answer {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": param,
            }}),
        }
    }

    fn missing(id: &str) -> Answer {
        Answer {
            status: StatusCode::NOT_FOUND,
            body: json!({ "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": format!("No such payment_intent: '{id}'"),
                "param": "intent",
            }}),
        }
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

impl Stripe {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `handle` under Stripe's idempotency rules for the request's key (a request
    /// without a key is simply handled), after an injected outage has had its say, and
    /// answers after the core's latency.
    async fn idempotent(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
        handle: impl FnOnce(&Stripe, &Params, &str) -> Answer,
    ) -> Response {
        let params = Params::parse(body);
        let key = match headers.get(IDEMPOTENCY_KEY).map(HeaderValue::to_str) {
            None => None,
            Some(Ok(k)) if !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX => Some(k),
            Some(_) => {
                return Answer::invalid(
                    "idempotency_key_invalid",
                    "an Idempotency-Key of 1 to 255 visible characters",
                    None,
                )
                .into_response(false);
            }
        };
        let fingerprint = params.fingerprint(path);
        if let Some(key) = key {
            // Decided under the lock, answered after it: no guard lives across an await.
            let reuse = {
                let mut books = self.books();
                match books.keys.get(key) {
                    Some(KeyState::Done {
                        fingerprint: first,
                        status,
                        body,
                    }) if *first == fingerprint => Some(Reuse::Replay(Answer {
                        status: *status,
                        body: body.clone(),
                    })),
                    Some(KeyState::Done { .. }) => Some(Reuse::OtherParameters),
                    Some(KeyState::InFlight) => Some(Reuse::InFlight),
                    None => {
                        books.keys.insert(key.to_owned(), KeyState::InFlight);
                        None
                    }
                }
            };
            match reuse {
                Some(Reuse::Replay(answer)) => {
                    self.core.count_reuse(true);
                    self.core.answer_after(key).await;
                    return answer.into_response(true);
                }
                Some(Reuse::OtherParameters) => {
                    self.core.count_reuse(false);
                    let body = json!({ "error": {
                        "type": "idempotency_error",
                        "message": format!(
                            "Keys for idempotent requests can only be used with the same \
                             parameters they were first used with. Try using a key other than \
                             '{key}' if you meant to execute a different request."
                        ),
                    }});
                    return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
                }
                Some(Reuse::InFlight) => {
                    self.core.count_reuse(false);
                    let body = json!({ "error": {
                        "type": "idempotency_error",
                        "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using this \
                                    idempotency key. Try again later.",
                    }});
                    return (StatusCode::CONFLICT, axum::Json(body)).into_response();
                }
                None => {}
            }
        }
        let key_text = key.unwrap_or("");
        if let Some(ChargeResponse::Error {
            status,
            retry_after,
        }) = self.core.outage_strikes(key_text)
        {
            // The provider never started the work: nothing stored, the key is free again.
            if let Some(key) = key {
                self.books().keys.remove(key);
            }
            self.core.answer_after(key_text).await;
            return provider_error(status, retry_after);
        }
        let answer = handle(self, &params, key_text);
        // Decided on arrival, answered after the latency: a client that gives up meanwhile
        // has still been charged, as with a real provider. The key stays in flight (a 409
        // for its twin) until the answer is ready, and the answer is stored even if the
        // client hung up and this future is dropped during the wait.
        let _stored = key.map(|key| StoreOnDrop {
            stripe: self,
            key: key.to_owned(),
            state: Some(KeyState::Done {
                fingerprint,
                status: answer.status,
                body: answer.body.clone(),
            }),
        });
        self.core.maybe_lose_answer(key_text).await;
        self.core.answer_after(key_text).await;
        answer.into_response(false)
    }

    /// Confirms `intent` with its payment method: a decline leaves it needing another one
    /// (402); an approval captures now (automatic) or authorizes (manual).
    fn confirm(&self, intent: &mut Intent, key: &str) -> Answer {
        let Some(method) = intent.payment_method.clone() else {
            return Answer::invalid(
                "payment_intent_unexpected_state",
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                Some("payment_method"),
            );
        };
        let token = match method.strip_prefix("pm_card_") {
            Some(name) => format!("tok_{name}"),
            None => method.clone(),
        };
        let Some(card) = cards::lookup(&token) else {
            return Answer::invalid(
                "resource_missing",
                &format!("No such PaymentMethod: '{method}'"),
                Some("payment_method"),
            );
        };
        match card.outcome {
            CardOutcome::Decline(code) => {
                self.core.count_decline();
                let error = json!({
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": code,
                    "message": "Your card was declined.",
                });
                intent.status = "requires_payment_method";
                intent.last_payment_error = Some(error.clone());
                let mut error = error;
                error["payment_intent"] = intent.to_json();
                Answer {
                    status: StatusCode::PAYMENT_REQUIRED,
                    body: json!({ "error": error }),
                }
            }
            CardOutcome::Approve => {
                intent.last_payment_error = None;
                match intent.capture_method {
                    CaptureMethod::Automatic => self.capture(intent, intent.amount, key),
                    CaptureMethod::Manual => intent.status = "requires_capture",
                }
                Answer::ok(intent.to_json())
            }
        }
    }

    fn capture(&self, intent: &mut Intent, amount: u64, key: &str) {
        let charge = self.core.capture(intent.order_id(), key, amount);
        intent.latest_charge = Some(charge);
        intent.amount_received = amount;
        intent.status = "succeeded";
    }

    fn intent_id(&self, key: &str, books: &Books) -> String {
        // Seeded by the key and the count so far: runs with the same calls name the same ids.
        format!(
            "pi_{:024x}",
            self.core.id_for(key, books.intents.len() as u64)
        )
    }
}

/// `POST /v1/payment_intents`, confirmed at once with `confirm=true`.
fn new_intent(s: &Stripe, p: &Params, key: &str) -> Answer {
    let Some(amount) = p.get("amount").and_then(|a| a.parse::<u64>().ok()) else {
        return missing_param("amount");
    };
    let Some(currency) = p.get("currency").filter(|c| c.len() == 3) else {
        return missing_param("currency");
    };
    let capture_method = match p.get("capture_method") {
        None | Some("automatic" | "automatic_async") => CaptureMethod::Automatic,
        Some("manual") => CaptureMethod::Manual,
        Some(_) => {
            return Answer::invalid(
                "parameter_invalid_string",
                "capture_method must be automatic or manual",
                Some("capture_method"),
            );
        }
    };
    let mut books = s.books();
    let mut intent = Intent {
        id: s.intent_id(key, &books),
        amount,
        currency: currency.to_ascii_lowercase(),
        capture_method,
        payment_method: p.get("payment_method").map(str::to_owned),
        status: if p.get("payment_method").is_some() {
            "requires_confirmation"
        } else {
            "requires_payment_method"
        },
        amount_received: 0,
        amount_refunded: 0,
        latest_charge: None,
        metadata: p.metadata(),
        last_payment_error: None,
    };
    let answer = if p.get("confirm") == Some("true") {
        s.confirm(&mut intent, key)
    } else {
        Answer::ok(intent.to_json())
    };
    books.intents.insert(intent.id.clone(), intent);
    answer
}

async fn retrieve_intent(State(stripe): State<Arc<Stripe>>, Path(id): Path<String>) -> Response {
    let books = stripe.books();
    match books.intents.get(&id) {
        Some(intent) => Answer::ok(intent.to_json()),
        None => Answer::missing(&id),
    }
    .into_response(false)
}

/// A POST on an existing intent (`/v1/payment_intents/{id}/{action}`): `op` under the
/// idempotency rules and the books' lock, as Stripe serializes an intent's operations (a
/// second confirm finds it succeeded instead of charging again).
fn act(
    action: &'static str,
    op: fn(&Stripe, &mut Intent, &Params, &str) -> Answer,
) -> MethodRouter<Arc<Stripe>> {
    post(
        move |State(stripe): State<Arc<Stripe>>,
              Path(id): Path<String>,
              headers: HeaderMap,
              body: Bytes| async move {
            let path = format!("/v1/payment_intents/{id}/{action}");
            (stripe.idempotent(&headers, &path, &body, |s, params, key| {
                let mut books = s.books();
                match books.intents.get_mut(&id) {
                    Some(intent) => op(s, intent, params, key),
                    None => Answer::missing(&id),
                }
            }))
            .await
        },
    )
}

/// `POST /v1/payment_intents/{id}/confirm`, optionally with another `payment_method`.
fn confirm_intent(s: &Stripe, intent: &mut Intent, params: &Params, key: &str) -> Answer {
    if !matches!(
        intent.status,
        "requires_confirmation" | "requires_payment_method"
    ) {
        return unexpected_state(format!(
            "This PaymentIntent's status is {}, so it cannot be confirmed.",
            intent.status
        ));
    }
    if let Some(method) = params.get("payment_method") {
        intent.payment_method = Some(method.to_owned());
    }
    s.confirm(intent, key)
}

/// `POST /v1/payment_intents/{id}/capture`: all or `amount_to_capture` of an authorization.
fn capture_intent(s: &Stripe, intent: &mut Intent, params: &Params, key: &str) -> Answer {
    if intent.status != "requires_capture" {
        return unexpected_state(format!(
            "This PaymentIntent could not be captured because it has a status of {}.",
            intent.status
        ));
    }
    let amount = match params.get("amount_to_capture").map(str::parse::<u64>) {
        None => intent.amount,
        Some(Ok(amount)) if amount > 0 && amount <= intent.amount => amount,
        Some(_) => {
            return Answer::invalid(
                "amount_too_large",
                "amount_to_capture must be at most the amount authorized",
                Some("amount_to_capture"),
            );
        }
    };
    s.capture(intent, amount, key);
    Answer::ok(intent.to_json())
}

fn missing_param(name: &str) -> Answer {
    Answer::invalid(
        "parameter_missing",
        &format!("Missing required param: {name}."),
        Some(name),
    )
}

fn unexpected_state(message: String) -> Answer {
    Answer::invalid("payment_intent_unexpected_state", &message, None)
}

/// `POST /v1/refunds`: all or part of what an intent captured and has not refunded yet.
fn refund(s: &Stripe, p: &Params, key: &str) -> Answer {
    let Some(id) = p.get("payment_intent") else {
        return missing_param("payment_intent");
    };
    let mut books = s.books();
    books.refunds += 1;
    let refund_id = format!("re_{:024x}", s.core.id_for(key, books.refunds));
    let Some(intent) = books.intents.get_mut(id) else {
        return Answer::missing(id);
    };
    let left = intent.amount_received - intent.amount_refunded;
    if intent.status != "succeeded" || left == 0 {
        return Answer::invalid(
            "charge_already_refunded",
            "This PaymentIntent has no captured amount left to refund.",
            Some("payment_intent"),
        );
    }
    let amount = match p.get("amount").map(str::parse::<u64>) {
        None => left,
        Some(Ok(amount)) if amount > 0 && amount <= left => amount,
        Some(_) => {
            return Answer::invalid(
                "amount_too_large",
                "Refund amount is greater than the amount left to refund.",
                Some("amount"),
            );
        }
    };
    intent.amount_refunded += amount;
    Answer::ok(json!({
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "currency": intent.currency,
        "payment_intent": intent.id,
        "charge": intent.latest_charge,
        "status": "succeeded",
        "metadata": p.metadata(),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::Client;
    use tokio::sync::oneshot;

    use super::super::core::Outage;
    use super::super::core::tests::cfg;
    use super::super::http::serve;
    use super::*;
    use crate::clock::Clock;
    use crate::config::units::LatencyDist;

    /// The provider over real loopback HTTP, as a user's payment service meets it.
    struct Provider {
        core: Arc<ProviderCore>,
        base: String,
        client: Client,
        _stop: oneshot::Sender<()>,
    }

    async fn start(latency: LatencyDist) -> Provider {
        let core = Arc::new(ProviderCore::new(
            3,
            &cfg(latency, Duration::from_secs(5)),
            Clock::start(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, _) = serve(core.clone(), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        Provider {
            core,
            base: format!("http://{addr}"),
            client: crate::http_client::builder().build().unwrap(),
            _stop: stop,
        }
    }

    impl Provider {
        /// A form-encoded POST, as Stripe's SDKs send it; the status, the body and whether
        /// it was a replay.
        async fn post(
            &self,
            path: &str,
            key: Option<&str>,
            form: &[(&str, &str)],
        ) -> (u16, Value, bool) {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            let mut request = (self.client.post(format!("{}{path}", self.base)))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            (status, response.json().await.unwrap(), replayed)
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json().await.unwrap())
        }

        fn captures_of(&self, order: u64) -> u32 {
            self.core.captures_per_order().get(order)
        }
    }

    const PAY_17: &[(&str, &str)] = &[
        ("amount", "2764"),
        ("currency", "usd"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("metadata[order_id]", "17"),
    ];

    #[tokio::test]
    async fn one_key_charges_once_and_replays_its_first_answer() {
        let p = start(LatencyDist::ZERO).await;
        let (status, first, replayed) = p.post("/v1/payment_intents", Some("k1"), PAY_17).await;
        assert_eq!(status, 200, "{first}");
        assert!(!replayed);
        assert_eq!(first["status"], "succeeded");
        assert_eq!(first["amount_received"], 2764);
        assert_eq!(first["metadata"]["order_id"], "17");
        assert!(first["latest_charge"].as_str().unwrap().starts_with("ch_"));
        // The SDK's retry after a lost answer: the same answer, no second charge.
        let (status, again, replayed) = p.post("/v1/payment_intents", Some("k1"), PAY_17).await;
        assert_eq!((status, replayed), (200, true));
        assert_eq!(again, first);
        assert_eq!(p.captures_of(17), 1);
        // The same key with another amount is refused and charges nothing.
        let mut other = PAY_17.to_vec();
        other[0] = ("amount", "2765");
        let (status, error, _) = p.post("/v1/payment_intents", Some("k1"), &other).await;
        assert_eq!(status, 400);
        assert_eq!(error["error"]["type"], "idempotency_error");
        assert_eq!(p.captures_of(17), 1);
        let (status, read) = p
            .get(&format!(
                "/v1/payment_intents/{}",
                first["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!((status, &read), (200, &first));
        let stats = p.core.stats();
        assert_eq!((stats.captures, stats.replays, stats.conflicts), (1, 1, 1));
    }

    #[tokio::test]
    async fn a_retry_with_a_fresh_key_is_a_double_charge_in_the_books() {
        // Negative control for the clean twin above: the bug the provider exists to prove.
        let p = start(LatencyDist::ZERO).await;
        for key in ["attempt-1", "attempt-2"] {
            let (status, _, replayed) = p.post("/v1/payment_intents", Some(key), PAY_17).await;
            assert_eq!((status, replayed), (200, false));
        }
        assert_eq!(p.captures_of(17), 2);
        // Without any key each call is new too.
        p.post("/v1/payment_intents", None, PAY_17).await;
        assert_eq!(p.captures_of(17), 3);
        // A payload template's 24-hex uid names the same order.
        let mut by_uid = PAY_17.to_vec();
        by_uid[4] = ("metadata[order_id]", "e71dc5d30000000000000011");
        p.post("/v1/payment_intents", Some("attempt-3"), &by_uid)
            .await;
        assert_eq!(p.captures_of(17), 4);
    }

    #[tokio::test]
    async fn the_same_key_while_its_first_request_is_in_flight_is_a_409() {
        let p = start(LatencyDist::Fixed(Duration::from_millis(300))).await;
        let (a, b) = tokio::join!(
            p.post("/v1/payment_intents", Some("k-same"), PAY_17),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                p.post("/v1/payment_intents", Some("k-same"), PAY_17).await
            }
        );
        assert_eq!(a.0, 200, "{}", a.1);
        assert_eq!(b.0, 409, "{}", b.1);
        assert_eq!(b.1["error"]["code"], "idempotency_key_in_use");
        assert_eq!(p.captures_of(17), 1);
    }

    #[tokio::test]
    async fn declines_manual_capture_and_refunds_follow_stripe() {
        let p = start(LatencyDist::ZERO).await;
        let mut declined = PAY_17.to_vec();
        declined[2] = ("payment_method", "pm_card_chargeDeclinedInsufficientFunds");
        let (status, error, _) = p.post("/v1/payment_intents", Some("d1"), &declined).await;
        assert_eq!(status, 402);
        assert_eq!(error["error"]["type"], "card_error");
        assert_eq!(error["error"]["decline_code"], "insufficient_funds");
        assert_eq!(
            error["error"]["payment_intent"]["status"],
            "requires_payment_method"
        );
        assert_eq!(p.captures_of(17), 0);

        let mut manual = PAY_17.to_vec();
        manual.push(("capture_method", "manual"));
        let (_, intent, _) = p.post("/v1/payment_intents", Some("m1"), &manual).await;
        assert_eq!(intent["status"], "requires_capture");
        assert_eq!(intent["amount_capturable"], 2764);
        assert_eq!(p.captures_of(17), 0, "authorized is not captured");
        let id = intent["id"].as_str().unwrap();
        let capture = format!("/v1/payment_intents/{id}/capture");
        let (status, captured, _) = p.post(&capture, Some("c1"), &[]).await;
        assert_eq!((status, &captured["status"]), (200, &json!("succeeded")));
        assert_eq!(p.captures_of(17), 1);
        let (status, _, _) = p.post(&capture, Some("c2"), &[]).await;
        assert_eq!(status, 400, "a succeeded intent cannot be captured again");
        assert_eq!(p.captures_of(17), 1);

        let (status, refund, _) = p
            .post(
                "/v1/refunds",
                Some("r1"),
                &[("payment_intent", id), ("amount", "1000")],
            )
            .await;
        assert_eq!((status, &refund["amount"]), (200, &json!(1000)));
        let (status, _, _) = p
            .post(
                "/v1/refunds",
                Some("r2"),
                &[("payment_intent", id), ("amount", "1765")],
            )
            .await;
        assert_eq!(status, 400, "only 1764 is left to refund");
        let (status, _, _) = p
            .post("/v1/refunds", Some("r3"), &[("payment_intent", id)])
            .await;
        assert_eq!(status, 200);
        let (status, missing) = p.get("/v1/payment_intents/pi_nope").await;
        assert_eq!(
            (status, &missing["error"]["code"]),
            (404, &json!("resource_missing"))
        );
    }

    #[tokio::test]
    async fn an_outage_stores_nothing_so_the_key_runs_again_after_it() {
        let p = start(LatencyDist::ZERO).await;
        p.core
            .set_outage(Outage::down(503, Some(Duration::from_secs(2))));
        let (status, error, _) = p.post("/v1/payment_intents", Some("o1"), PAY_17).await;
        assert_eq!(status, 503);
        assert_eq!(error["error"]["type"], "api_error");
        assert_eq!(p.captures_of(17), 0);
        p.core.clear_outage();
        let (status, intent, replayed) = p.post("/v1/payment_intents", Some("o1"), PAY_17).await;
        assert_eq!((status, replayed), (200, false), "{intent}");
        assert_eq!(p.captures_of(17), 1);
        assert_eq!(p.core.stats().errors, 1);
    }
}
