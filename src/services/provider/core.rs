//! The payment provider's behaviour: a card API with Stripe's idempotency rules.
//!
//! The payment service charges orders here (in process, or through `http.rs` when a real
//! payment service points at the mock). Every capture is counted per order, so a double charge
//! is provable from the provider's own books, and the outage seam lets the chaos timeline make
//! calls fail. The books stay compact for runs of any length: 16 bytes per idempotency key
//! (its hash, a hash of its parameters, what it decided; the charge id is derived, not kept)
//! and a byte per order; the full record of each capture is kept only while the mock is
//! served, for `GET /v1/captures`. It may not read time except through the run's `Clock`,
//! make generators except through `rng.rs`, or know about events and brokers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::charges::ChargesPerOrder;
use super::model;
pub use crate::chaos::provider_outage::Outage;
use crate::clock::{Clock, RunTime};
use crate::config::units::LatencyDist;
use crate::latency;
use crate::orders::cards::{self, CardOutcome};
use crate::rng;
use crate::transport::{Cause, SharedStore, TransportError};

/// The body of `POST /v1/charges`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub order_id: u64,
    pub amount_cents: u64,
    pub currency: String,
    pub card_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResponse {
    /// The money moved (a first call, or the replay of one).
    Captured { charge_id: String },
    /// A business outcome, not a failure: the card said no.
    Declined { code: String },
    /// The key was used before with different parameters; nothing was charged.
    IdempotencyConflict,
    /// The provider failed (an injected outage); nothing was charged, a retry may succeed.
    Error {
        status: u16,
        retry_after: Option<Duration>,
    },
}

/// One capture: money taken from a card. Two for one order is a double charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    pub charge_id: String,
    pub order_id: u64,
    pub idempotency_key: String,
    pub amount_cents: u64,
    pub at: RunTime,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[derive(schemars::JsonSchema)]
#[derive(Serialize, Deserialize)]
pub struct ProviderStats {
    pub calls: u64,
    pub captures: u64,
    pub declines: u64,
    /// Calls answered from a stored result (a reused key with the same parameters).
    pub replays: u64,
    pub conflicts: u64,
    /// Calls failed by an outage.
    pub errors: u64,
    /// Calls decided whose answer an outage withheld until the client had given up.
    #[serde(default)]
    pub lost_answers: u64,
}

/// What a key's first call decided, kept to answer the key's later calls. Small on purpose:
/// one entry lives per idempotency key for the whole run (8 bytes, 16 with the key's hash:
/// ten million keys fill a 270 MiB table).
#[derive(Debug, Clone, Copy)]
struct Stored {
    /// 32 bits of the hash of order id, amount, currency and card token, to detect a reused
    /// key with other parameters (one such misuse in 4 billion would pass as a replay).
    params: u32,
    outcome: Outcome,
}

/// A capture's call number modulo 2³¹ (its charge id is derived from the key's hash and that
/// number), or a decline's code number (`cards::decline_number`) with the top bit set.
#[derive(Debug, Clone, Copy)]
struct Outcome(u32);

impl Stored {
    /// What call number `call`, the first with its key, decides for `req`: the card's answer.
    fn first(req: &ChargeRequest, call: u64) -> Stored {
        // An unknown token is an invalid card.
        let card = cards::lookup(&req.card_token).map(|card| card.outcome);
        let outcome = match card.unwrap_or(CardOutcome::Decline(cards::INVALID_CARD)) {
            CardOutcome::Approve => Outcome::captured(call),
            CardOutcome::Decline(code) => Outcome::declined(code),
        };
        Stored {
            params: params_hash(req),
            outcome,
        }
    }

    /// The record other processes read from the shared books: params, then outcome, both
    /// little-endian.
    fn to_bytes(self) -> [u8; 8] {
        let mut b = [0; 8];
        b[..4].copy_from_slice(&self.params.to_le_bytes());
        b[4..].copy_from_slice(&self.outcome.0.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Stored> {
        let b: &[u8; 8] = b.try_into().ok()?;
        let [p0, p1, p2, p3, o0, o1, o2, o3] = *b;
        Some(Stored {
            params: u32::from_le_bytes([p0, p1, p2, p3]),
            outcome: Outcome(u32::from_le_bytes([o0, o1, o2, o3])),
        })
    }
}

/// A key's first decision, made run-wide (see [`ProviderCore::share`]).
enum RunWide {
    /// This call decided it: book it.
    Mine(Stored),
    /// Another process decided it first: answer as a replay.
    Theirs(Stored),
}

/// The space of the shared store holding the provider's key records.
const SHARED_SPACE: &str = "provider.keys";

const DECLINED: u32 = 1 << 31;

impl Outcome {
    fn captured(call: u64) -> Outcome {
        Outcome(call_number(call))
    }

    fn declined(code: &str) -> Outcome {
        Outcome(DECLINED | u32::from(cards::decline_number(code)))
    }

    /// `Ok(call number)` of a capture, `Err(code)` of a decline.
    fn read(self) -> Result<u64, &'static str> {
        if self.0 & DECLINED == 0 {
            Ok(u64::from(self.0))
        } else {
            Err(cards::decline_code((self.0 & 0xff) as u8))
        }
    }
}

/// The part of a call's number a capture keeps (and names its charge by).
fn call_number(call: u64) -> u32 {
    (call & u64::from(!DECLINED)) as u32
}

/// The key records, by the key's 64-bit hash (two keys of a run colliding is a chance of
/// about n² / 2⁶⁵, 3 in a million for ten million keys; the parameters' hash catches most of
/// those), in two generations: a record is kept at least the retention after it was made and
/// at most twice that, so a run of any length holds the keys of its last retention or two, as
/// Stripe holds a key at least 24 hours.
#[derive(Debug, Default)]
struct Keys {
    current: HashMap<u64, Stored>,
    previous: HashMap<u64, Stored>,
    /// When `current` was started (run time).
    since: RunTime,
    /// How long a record is kept at least, in nanoseconds.
    retention_ns: u64,
}

impl Keys {
    fn get(&self, key: u64) -> Option<Stored> {
        self.current
            .get(&key)
            .or_else(|| self.previous.get(&key))
            .copied()
    }

    fn keeping_for(retention: Duration) -> Keys {
        Keys {
            retention_ns: u64::try_from(retention.as_nanos()).unwrap_or(u64::MAX),
            ..Keys::default()
        }
    }

    /// Keeps `stored` as `key`'s record; at `now`, a generation older than the retention
    /// becomes the previous one, and the one before is forgotten.
    fn insert(&mut self, key: u64, stored: Stored, now: RunTime) {
        if now.saturating_sub(self.since) >= self.retention_ns {
            let next = HashMap::with_capacity(self.current.len());
            self.previous = std::mem::replace(&mut self.current, next);
            self.since = now;
        }
        self.current.insert(key, stored);
    }

    /// `key`'s record, after keeping `stored` as it when it had none.
    fn get_or_insert(&mut self, key: u64, stored: Stored, now: RunTime) -> Stored {
        self.get(key).unwrap_or_else(|| {
            self.insert(key, stored, now);
            stored
        })
    }
}

#[derive(Debug, Default)]
struct State {
    keys: Keys,
    charges: ChargesPerOrder,
    /// Every capture in full, kept once the mock is served ([`ProviderCore::keep_captures`]).
    listing: Option<Vec<Capture>>,
    stats: ProviderStats,
}

pub struct ProviderCore {
    seed: u64,
    latency: LatencyDist,
    timeout: Duration,
    clock: Clock,
    /// One lock for keys, captures and counters: the decision per call is a few map
    /// operations, never held across an await, so a finer scheme would buy nothing.
    state: Mutex<State>,
    /// The fault seam: `None` is a healthy provider.
    outage: RwLock<Option<Outage>>,
    /// Key records shared with the providers of the run's other shards, if any.
    shared: Option<Arc<dyn SharedStore>>,
}

impl std::fmt::Debug for ProviderCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCore")
            .field("seed", &self.seed)
            .field("latency", &self.latency)
            .field("timeout", &self.timeout)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl ProviderCore {
    pub fn new(seed: u64, cfg: &model::Provider, clock: Clock) -> ProviderCore {
        ProviderCore {
            seed,
            latency: cfg.latency,
            timeout: cfg.timeout,
            clock,
            state: Mutex::new(State {
                keys: Keys::keeping_for(cfg.idempotency_retention),
                ..State::default()
            }),
            outage: RwLock::new(None),
            shared: None,
        }
    }

    /// Keeps the idempotency-key records in `store` too, shared with the providers of the
    /// run's other shards: a key first used in one shard is answered as a replay in another,
    /// as one real provider behind many payment replicas would. Captures stay in the books
    /// of the shard that made them (the merge adds them up).
    pub fn share(mut self, store: Arc<dyn SharedStore>) -> ProviderCore {
        self.shared = Some(store);
        // The shared books keep every key for the run: a key this process forgot would
        // still be answered from them, so it keeps them too (one answer per key, whichever
        // shard is asked).
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        state.keys.retention_ns = u64::MAX;
        self
    }

    /// The payment service's per-call timeout from the scenario; the in-process client
    /// applies it so both client paths mean the same thing.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Charges a card, honouring the idempotency key.
    ///
    /// The charge is decided (and a capture recorded) when the call arrives, then the
    /// response takes the sampled latency. A caller that gives up during that time has still
    /// been charged, as with a real provider: that ambiguity is what retries with the same
    /// key exist for.
    pub async fn charge(
        self: &Arc<Self>,
        idempotency_key: &str,
        req: &ChargeRequest,
    ) -> ChargeResponse {
        let key_hash = fnv1a(FNV_OFFSET, idempotency_key);
        let outage = self.outage();
        let (call, struck) = self.strike(key_hash, outage.as_ref());
        let response = match struck {
            Some(error) => error,
            None if self.shared.is_none() => {
                self.decide(idempotency_key, key_hash, req, call, None)
            }
            None => {
                // Run-wide, the decision and its booking are one step, as in one process:
                // a task of its own, so a caller that gives up (a timeout, a consumer crash)
                // between the shared books' answer and the booking cannot leave a key
                // decided with no capture booked anywhere.
                let (me, key, req) = (Arc::clone(self), idempotency_key.to_owned(), req.clone());
                let step = tokio::spawn(async move {
                    let first = me.run_wide(key_hash, &req, call).await?;
                    Ok(me.decide(&key, key_hash, &req, call, first))
                });
                let decided = step.await.unwrap_or_else(|e| {
                    Err(TransportError::Store {
                        space: SHARED_SPACE.into(),
                        source: Cause::Observed(format!("decision task: {e}")),
                    })
                });
                decided.unwrap_or_else(|e: TransportError| {
                    // The books cannot be read: nothing is charged, a retry may succeed.
                    tracing::warn!(error = %e, "provider: shared key records unreachable");
                    self.lock().stats.errors += 1;
                    ChargeResponse::Error {
                        status: 503,
                        retry_after: None,
                    }
                })
            }
        };
        if !matches!(response, ChargeResponse::Error { .. }) {
            self.lose_answer(key_hash, call).await;
        }
        let dist = outage.and_then(|o| o.latency).unwrap_or(self.latency);
        let mut rng = rng::for_item(self.seed, "provider.latency", key_hash ^ call);
        latency::wait(latency::sample(&dist, &mut rng)).await;
        response
    }

    /// Counts a call and numbers it; an outage fails a share of calls here, before anything
    /// is decided (failed calls store nothing, like a provider that never started the work).
    fn strike(&self, key_hash: u64, outage: Option<&Outage>) -> (u64, Option<ChargeResponse>) {
        let mut state = self.lock();
        state.stats.calls += 1;
        let call = state.stats.calls;
        let outage = outage.filter(|o| {
            rng::unit_for_item(self.seed, "provider.outage", key_hash ^ call) < o.error_share
        });
        let Some(outage) = outage else {
            return (call, None);
        };
        state.stats.errors += 1;
        let response = ChargeResponse::Error {
            status: outage.status,
            retry_after: outage.retry_after,
        };
        (call, Some(response))
    }

    /// With books shared across processes (the shards of one run id), a key new to this
    /// process is decided run-wide first: this call's decision is stored unless another
    /// process stored one, which is then answered instead. `None`: the local books decide.
    async fn run_wide(
        &self,
        key_hash: u64,
        req: &ChargeRequest,
        call: u64,
    ) -> Result<Option<RunWide>, TransportError> {
        let Some(store) = &self.shared else {
            return Ok(None);
        };
        if self.lock().keys.get(key_hash).is_some() {
            return Ok(None);
        }
        let mine = Stored::first(req, call);
        let there = store
            .put_first(SHARED_SPACE, key_hash, &mine.to_bytes())
            .await?;
        Ok(Some(match there {
            None => RunWide::Mine(mine),
            Some(bytes) => RunWide::Theirs(Stored::from_bytes(&bytes).ok_or_else(|| {
                TransportError::Store {
                    space: SHARED_SPACE.into(),
                    source: Cause::Observed(format!("a key record of {} bytes", bytes.len())),
                }
            })?),
        }))
    }

    /// The synchronous part of a call, under the lock: concurrent first calls with one key
    /// cannot both capture, because the second finds the first one's entry (or, run-wide,
    /// the other process's decision).
    fn decide(
        &self,
        key: &str,
        key_hash: u64,
        req: &ChargeRequest,
        call: u64,
        run_wide: Option<RunWide>,
    ) -> ChargeResponse {
        let mut guard = self.lock();
        let state = &mut *guard;
        let params = params_hash(req);
        let stored = match run_wide {
            Some(RunWide::Mine(mine)) => {
                return self.first_call(state, (key, key_hash), req, mine);
            }
            Some(RunWide::Theirs(theirs)) => {
                state.keys.get_or_insert(key_hash, theirs, self.clock.now())
            }
            None => match state.keys.get(key_hash) {
                Some(stored) => stored,
                None => {
                    let mine = Stored::first(req, call);
                    return self.first_call(state, (key, key_hash), req, mine);
                }
            },
        };
        if stored.params != params {
            state.stats.conflicts += 1;
            return ChargeResponse::IdempotencyConflict;
        }
        let response = match stored.outcome.read() {
            Ok(captured) => ChargeResponse::Captured {
                charge_id: self.charge_id(key_hash, captured),
            },
            Err(code) => ChargeResponse::Declined { code: code.into() },
        };
        state.stats.replays += 1;
        response
    }

    /// Carries out a key's first decision: a capture is booked, a decline counted.
    fn first_call(
        &self,
        state: &mut State,
        key: (&str, u64),
        req: &ChargeRequest,
        stored: Stored,
    ) -> ChargeResponse {
        let response = match stored.outcome.read() {
            Ok(captured) => ChargeResponse::Captured {
                charge_id: self.record(state, req.order_id, key, req.amount_cents, captured),
            },
            Err(code) => {
                state.stats.declines += 1;
                ChargeResponse::Declined { code: code.into() }
            }
        };
        state.keys.insert(key.1, stored, self.clock.now());
        response
    }

    /// During an outage that loses answers, a share of decided calls (drawn per key and
    /// call) wait here past the payment client's timeout before answering: the charge is
    /// made, the answer comes too late to be read. A client that stops waiting drops this
    /// wait with the call.
    async fn lose_answer(&self, key_hash: u64, call: u64) {
        let Some(outage) = self.outage() else {
            return;
        };
        let draw = rng::unit_for_item(self.seed, "provider.lost_answer", key_hash ^ call);
        if draw < outage.lost_answers {
            self.lock().stats.lost_answers += 1;
            tokio::time::sleep(self.timeout + LOST_ANSWER_MARGIN).await;
        }
    }

    /// [`Self::lose_answer`] for a call of the Stripe API, after it was decided.
    pub async fn maybe_lose_answer(&self, key: &str) {
        let call = self.lock().stats.calls;
        self.lose_answer(fnv1a(FNV_OFFSET, key), call).await;
    }

    /// An injected outage's answer to a call of the Stripe API, when the outage fails this
    /// call (counted as a call and an error); `None` lets it through (counted as a call).
    pub fn outage_strikes(&self, key: &str) -> Option<ChargeResponse> {
        let key_hash = fnv1a(FNV_OFFSET, key);
        let outage = self.outage();
        let mut state = self.lock();
        state.stats.calls += 1;
        let call = state.stats.calls;
        let outage = outage?;
        let draw = rng::unit_for_item(self.seed, "provider.outage", key_hash ^ call);
        (draw < outage.error_share).then(|| {
            state.stats.errors += 1;
            ChargeResponse::Error {
                status: outage.status,
                retry_after: outage.retry_after,
            }
        })
    }

    /// Waits one answer's latency (the outage's, during one), sampled per key and call.
    pub async fn answer_after(&self, key: &str) {
        let key_hash = fnv1a(FNV_OFFSET, key);
        let call = self.lock().stats.calls;
        let dist = self
            .outage()
            .and_then(|o| o.latency)
            .unwrap_or(self.latency);
        let mut rng = rng::for_item(self.seed, "provider.latency", key_hash ^ call);
        latency::wait(latency::sample(&dist, &mut rng)).await;
    }

    /// Records money taken for `order_id` under idempotency key `key` (empty for none) and
    /// returns the new charge's id.
    pub fn capture(&self, order_id: u64, key: &str, amount_cents: u64) -> String {
        let mut state = self.lock();
        let call = state.stats.calls;
        let key_hash = fnv1a(FNV_OFFSET, key);
        self.record(&mut state, order_id, (key, key_hash), amount_cents, call)
    }

    /// Books a capture: counted per order, listed in full when the mock is served. `key`
    /// comes with its hash, which the caller has already made.
    fn record(
        &self,
        state: &mut State,
        order_id: u64,
        (key, key_hash): (&str, u64),
        amount_cents: u64,
        call: u64,
    ) -> String {
        let charge_id = self.charge_id(key_hash, call);
        state.charges.add(order_id);
        state.stats.captures += 1;
        if let Some(listing) = &mut state.listing {
            listing.push(Capture {
                charge_id: charge_id.clone(),
                order_id,
                idempotency_key: key.to_owned(),
                amount_cents,
                at: self.clock.now(),
            });
        }
        charge_id
    }

    /// A card said no (a business outcome, counted).
    pub fn count_decline(&self) {
        self.lock().stats.declines += 1;
    }

    /// A reused key answered from its stored result (`replay`), or refused for other
    /// parameters or while its first request was in flight (`conflict`).
    pub fn count_reuse(&self, replay: bool) {
        let mut state = self.lock();
        if replay {
            state.stats.replays += 1;
        } else {
            state.stats.conflicts += 1;
        }
    }

    /// 96 seeded bits for an object id (`pi_...`, `re_...`), from a key and a count.
    pub fn id_for(&self, key: &str, n: u64) -> u128 {
        let mut rng = rng::for_item(self.seed, "provider.object_id", fnv1a(FNV_OFFSET, key) ^ n);
        rng.random::<u128>() >> 32
    }

    /// `ch_` and 24 hex digits, like a provider's opaque charge id.
    fn charge_id(&self, key_hash: u64, call: u64) -> String {
        let call = u64::from(call_number(call));
        let mut rng = rng::for_item(self.seed, "provider.charge_id", key_hash ^ call);
        format!("ch_{:024x}", rng.random::<u128>() >> 32)
    }

    /// Keeps every capture in full from now on, for `GET /v1/captures` (serving the mock
    /// turns it on before the first call). A run's in-process provider only counts them.
    pub fn keep_captures(&self) {
        self.lock().listing.get_or_insert_with(Vec::new);
    }

    /// Every capture since [`Self::keep_captures`], in the order they happened; `None` when
    /// they are only counted.
    pub fn captures(&self) -> Option<Vec<Capture>> {
        self.lock().listing.clone()
    }

    /// Captures per order id: more than one is a double charge.
    pub fn captures_per_order(&self) -> ChargesPerOrder {
        self.lock().charges.clone()
    }

    pub fn stats(&self) -> ProviderStats {
        self.lock().stats
    }

    pub fn set_outage(&self, outage: Outage) {
        *self.outage.write().unwrap_or_else(PoisonError::into_inner) = Some(outage);
    }

    pub fn clear_outage(&self) {
        *self.outage.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub fn outage(&self) -> Option<Outage> {
        *self.outage.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A panic while holding the lock leaves the state consistent (each call's updates are
    /// plain field writes), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// What a reused key must repeat: order, amount, currency and card (32 bits of their hash).
fn params_hash(req: &ChargeRequest) -> u32 {
    let start = fnv1a(FNV_OFFSET, req.order_id.to_le_bytes());
    let start = fnv1a(start, req.amount_cents.to_le_bytes());
    let hash = fnv1a(fnv1a(start, &req.currency), &req.card_token);
    (hash ^ (hash >> 32)) as u32
}

/// How long past the client's timeout a lost answer is withheld.
const LOST_ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// FNV-1a over bytes, continuing from `start` (`FNV_OFFSET` for a fresh hash): stable,
/// unlike std's hasher, which is not promised to stay the same across Rust releases, and
/// seeds must reproduce runs.
fn fnv1a(start: u64, bytes: impl AsRef<[u8]>) -> u64 {
    let mut hash = start;
    for &b in bytes.as_ref() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // A separator, so ("ab", "c") and ("a", "bc") differ when hashes are chained.
    (hash ^ 0xff).wrapping_mul(0x0100_0000_01b3)
}

/// The seam the `provider_outage` fault switches.
impl crate::chaos::provider_outage::OutageSwitch for ProviderCore {
    fn set_outage(&self, outage: Outage) {
        ProviderCore::set_outage(self, outage);
    }

    fn clear_outage(&self) {
        ProviderCore::clear_outage(self);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    pub(crate) fn cfg(latency: LatencyDist, timeout: Duration) -> model::Provider {
        model::Provider {
            via: model::ProviderVia::InProcess,
            listen: None,
            latency,
            timeout,
            retries: 0,
            idempotency_retention: super::super::config::RETENTION_DEFAULT,
        }
    }

    pub(crate) fn req(order_id: u64, amount_cents: u64, card_token: &str) -> ChargeRequest {
        ChargeRequest {
            order_id,
            amount_cents,
            currency: "USD".into(),
            card_token: card_token.into(),
        }
    }

    fn core(latency: LatencyDist) -> Arc<ProviderCore> {
        Arc::new(ProviderCore::new(
            7,
            &cfg(latency, Duration::from_secs(2)),
            Clock::start(),
        ))
    }

    fn ms(n: u64) -> LatencyDist {
        LatencyDist::Fixed(Duration::from_millis(n))
    }

    #[tokio::test(start_paused = true)]
    async fn a_replayed_key_gives_one_capture() {
        let core = core(ms(20));
        let first = core.charge("ik_1", &req(1, 4_999, "tok_visa")).await;
        let again = core.charge("ik_1", &req(1, 4_999, "tok_visa")).await;
        assert!(matches!(first, ChargeResponse::Captured { .. }));
        assert_eq!(first, again, "the replay returns the same charge id");
        assert_eq!(core.captures_per_order().get(1), 1);
        let stats = core.stats();
        assert_eq!((stats.calls, stats.captures, stats.replays), (2, 1, 1));
    }

    /// A key is answered as a replay for its retention at least; reused after twice that
    /// it is a new request (Stripe's pruning), charged again: the books forget old keys
    /// instead of growing with every order of a long run.
    #[tokio::test(start_paused = true)]
    async fn a_key_reused_past_its_retention_is_charged_again() {
        let mut cfg = cfg(ms(1), Duration::from_secs(2));
        cfg.idempotency_retention = Duration::from_secs(60);
        let core = Arc::new(ProviderCore::new(7, &cfg, Clock::start()));
        let visa = |order| req(order, 4_999, "tok_visa");
        let first = core.charge("ik_old", &visa(1)).await;
        tokio::time::sleep(Duration::from_secs(61)).await;
        core.charge("ik_2", &visa(2)).await;
        let kept = core.charge("ik_old", &visa(1)).await;
        assert_eq!(first, kept, "kept for its retention: a replay");
        assert_eq!(core.captures_per_order().get(1), 1);

        tokio::time::sleep(Duration::from_secs(61)).await;
        core.charge("ik_3", &visa(3)).await;
        let pruned = core.charge("ik_old", &visa(1)).await;
        assert!(matches!(pruned, ChargeResponse::Captured { .. }));
        assert_ne!(first, pruned, "a new charge");
        assert_eq!(core.captures_per_order().get(1), 2, "charged again");
        let again = core.charge("ik_2", &visa(2)).await;
        assert!(matches!(again, ChargeResponse::Captured { .. }));
        assert_eq!(core.stats().replays, 2, "ik_old once, ik_2 still kept");
        let state = core.lock();
        assert_eq!(state.keys.previous.len() + state.keys.current.len(), 3);
    }

    #[test]
    fn a_kept_outcome_names_the_charge_its_capture_named() {
        let core = core(ms(1));
        for call in [1, (1 << 31) - 1, 1 << 31, (1 << 40) + 5] {
            let kept = Outcome::captured(call).read().expect("a capture");
            assert_eq!(
                core.charge_id(99, kept),
                core.charge_id(99, call),
                "call {call}"
            );
        }
        assert_ne!(core.charge_id(99, 1), core.charge_id(98, 1));
        assert_eq!(Outcome::declined("lost_card").read(), Err("lost_card"));
        assert_eq!(
            Outcome::declined("no_such").read(),
            Err(cards::INVALID_CARD)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_keys_for_one_order_are_a_double_charge() {
        let core = core(ms(20));
        let a = core.charge("ik_a", &req(9, 100, "tok_mastercard")).await;
        let b = core.charge("ik_b", &req(9, 100, "tok_mastercard")).await;
        assert_ne!(a, b, "a new key is a new charge");
        assert_eq!(core.captures_per_order().get(9), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn declining_and_unknown_cards_decline_without_capture() {
        let core = core(ms(5));
        let declined = core.charge("k1", &req(1, 100, "tok_chargeDeclined")).await;
        let funds = core
            .charge("k2", &req(2, 100, "tok_4000000000009995"))
            .await;
        let unknown = core.charge("k3", &req(3, 100, "tok_garbage")).await;
        let code = |c: &str| ChargeResponse::Declined { code: c.into() };
        assert_eq!(declined, code("generic_decline"));
        assert_eq!(funds, code("insufficient_funds"));
        assert_eq!(unknown, code("invalid_card"));
        // A declined key replays its decline.
        let again = core.charge("k1", &req(1, 100, "tok_chargeDeclined")).await;
        assert_eq!(again, code("generic_decline"));
        assert!(core.captures_per_order().is_empty());
        assert_eq!(core.stats().declines, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_key_with_other_parameters_conflicts() {
        let core = core(ms(5));
        core.charge("k", &req(1, 100, "tok_visa")).await;
        let other_amount = core.charge("k", &req(1, 101, "tok_visa")).await;
        let other_card = core.charge("k", &req(1, 100, "tok_amex")).await;
        assert_eq!(other_amount, ChargeResponse::IdempotencyConflict);
        assert_eq!(other_card, ChargeResponse::IdempotencyConflict);
        assert_eq!(core.captures_per_order().get(1), 1);
        assert_eq!(core.stats().conflicts, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_first_calls_with_one_key_capture_once() {
        let core = core(LatencyDist::Uniform {
            low: Duration::from_millis(1),
            high: Duration::from_millis(50),
        });
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let core = Arc::clone(&core);
                tokio::spawn(async move { core.charge("same", &req(5, 700, "tok_visa")).await })
            })
            .collect();
        let mut responses = Vec::new();
        for call in calls {
            responses.push(call.await.expect("task finished"));
        }
        assert!(responses.iter().all(|r| *r == responses[0]));
        assert!(matches!(responses[0], ChargeResponse::Captured { .. }));
        assert_eq!(core.captures_per_order().get(5), 1);
        assert_eq!(core.stats().replays, 49);
    }

    #[tokio::test(start_paused = true)]
    async fn the_call_takes_the_sampled_latency() {
        let clock = Clock::start();
        let core = Arc::new(ProviderCore::new(
            1,
            &cfg(ms(250), Duration::from_secs(1)),
            clock.clone(),
        ));
        core.keep_captures();
        let before = clock.now();
        let response = core.charge("k", &req(1, 1, "tok_visa")).await;
        let took = clock.now() - before;
        assert!((250_000_000..252_000_000).contains(&took), "{took}");
        let listed = core.captures().expect("kept once asked");
        assert_eq!(listed[0].at, before, "captured on arrival");
        let ChargeResponse::Captured { charge_id } = response else {
            panic!("a visa card captures: {response:?}");
        };
        assert_eq!(
            listed[0].charge_id, charge_id,
            "the listing names the answered charge"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn captures_are_only_counted_until_the_listing_is_kept() {
        let core = core(ms(1));
        core.charge("a", &req(1, 100, "tok_visa")).await;
        assert_eq!(
            core.captures(),
            None,
            "a run's provider keeps no record per capture"
        );
        core.keep_captures();
        core.charge("b", &req(2, 100, "tok_visa")).await;
        let listed = core.captures().expect("kept");
        assert_eq!(listed.iter().map(|c| c.order_id).collect::<Vec<_>>(), [2]);
        assert_eq!(core.captures_per_order().len(), 2, "both are counted");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_fails_calls_without_capture_until_cleared() {
        let core = core(ms(5));
        core.set_outage(Outage::down(503, Some(Duration::from_secs(3))));
        for i in 0..20 {
            let r = core
                .charge(&format!("k{i}"), &req(i, 100, "tok_visa"))
                .await;
            let expected = ChargeResponse::Error {
                status: 503,
                retry_after: Some(Duration::from_secs(3)),
            };
            assert_eq!(r, expected);
        }
        assert!(core.captures_per_order().is_empty());
        core.clear_outage();
        // The same key that failed is charged now: errors store no result.
        let r = core.charge("k0", &req(0, 100, "tok_visa")).await;
        assert!(matches!(r, ChargeResponse::Captured { .. }));
        assert_eq!(core.stats().errors, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_outage_fails_about_its_share() {
        let core = core(ms(1));
        core.set_outage(Outage {
            lost_answers: 0.0,
            error_share: 0.3,
            status: 500,
            latency: None,
            retry_after: None,
        });
        for i in 0..2_000 {
            core.charge(&format!("k{i}"), &req(i, 100, "tok_visa"))
                .await;
        }
        let stats = core.stats();
        assert!((500..700).contains(&stats.errors), "{stats:?}");
        assert_eq!(stats.errors + stats.captures, 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_latency_replaces_the_usual_one() {
        let clock = Clock::start();
        let core = Arc::new(ProviderCore::new(
            1,
            &cfg(ms(10), Duration::from_secs(1)),
            clock.clone(),
        ));
        core.set_outage(Outage {
            lost_answers: 0.0,
            error_share: 0.0,
            status: 500,
            latency: Some(ms(4_000)),
            retry_after: None,
        });
        let before = clock.now();
        core.charge("k", &req(1, 1, "tok_visa")).await;
        assert!(clock.now() - before >= 4_000_000_000);
    }

    /// The shared books of a sharded run, in memory: every answer comes a scheduling turn
    /// after the write it answers, as a broker's reply travels after the broker applied it.
    #[derive(Default)]
    pub(crate) struct Books {
        claims: Mutex<std::collections::HashSet<(String, u64)>>,
        values: Mutex<HashMap<(String, u64), Vec<u8>>>,
    }

    #[async_trait::async_trait]
    impl SharedStore for Books {
        async fn claim(&self, space: &str, key: u64) -> Result<bool, TransportError> {
            let first = crate::sync::lock(&self.claims).insert((space.into(), key));
            tokio::task::yield_now().await;
            Ok(first)
        }

        async fn claimed(&self, space: &str, key: u64) -> Result<bool, TransportError> {
            Ok(crate::sync::lock(&self.claims).contains(&(space.into(), key)))
        }

        async fn put_first(
            &self,
            space: &str,
            key: u64,
            value: &[u8],
        ) -> Result<Option<Vec<u8>>, TransportError> {
            let there = {
                let mut values = crate::sync::lock(&self.values);
                let entry = values.entry((space.into(), key));
                match entry {
                    std::collections::hash_map::Entry::Occupied(e) => Some(e.get().clone()),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(value.to_vec());
                        None
                    }
                }
            };
            tokio::task::yield_now().await;
            Ok(there)
        }
    }

    /// Two shards' providers over one shared store.
    fn shards() -> (Arc<ProviderCore>, Arc<ProviderCore>) {
        let books: Arc<dyn SharedStore> = Arc::new(Books::default());
        let shard = || {
            let cfg = cfg(ms(5), Duration::from_secs(2));
            Arc::new(ProviderCore::new(7, &cfg, Clock::start()).share(books.clone()))
        };
        (shard(), shard())
    }

    fn captures(of: &[&Arc<ProviderCore>], order: u64) -> u32 {
        of.iter().map(|c| c.captures_per_order().get(order)).sum()
    }

    #[tokio::test(start_paused = true)]
    async fn shards_sharing_their_books_decide_a_key_once() {
        let (a, b) = shards();
        // A key first used in one shard is a replay in the other: one capture, one id.
        let first = a.charge("ik_1", &req(1, 4_999, "tok_visa")).await;
        let again = b.charge("ik_1", &req(1, 4_999, "tok_visa")).await;
        assert!(matches!(first, ChargeResponse::Captured { .. }));
        assert_eq!(first, again, "the other shard replays the same charge");
        assert_eq!(captures(&[&a, &b], 1), 1);
        assert_eq!((b.stats().replays, b.stats().captures), (1, 0));
        // So is a decline, and another shard's parameters under the key conflict.
        let declining = req(2, 100, "tok_chargeDeclined");
        let declined = a.charge("ik_2", &declining).await;
        assert_eq!(declined, b.charge("ik_2", &declining).await);
        let other = b.charge("ik_1", &req(1, 5_000, "tok_visa")).await;
        assert_eq!(other, ChargeResponse::IdempotencyConflict);
        // Both shards' first calls at once: one capture between them.
        let third = req(3, 700, "tok_visa");
        let (x, y) = tokio::join!(a.charge("ik_3", &third), b.charge("ik_3", &third));
        assert_eq!(x, y);
        assert_eq!(captures(&[&a, &b], 3), 1);
        // The negative twin: separate books (one process each, no sharing) capture twice.
        let (c, d) = (core(ms(5)), core(ms(5)));
        c.charge("ik_4", &req(4, 700, "tok_visa")).await;
        d.charge("ik_4", &req(4, 700, "tok_visa")).await;
        assert_eq!(captures(&[&c, &d], 4), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_giving_up_mid_decision_leaves_the_capture_booked() {
        let (a, b) = shards();
        // b's caller is polled once (the key is stored run-wide, its answer not yet read)
        // and then drops the call, as a timeout or a consumer crash does.
        let ninth = req(9, 1_200, "tok_visa");
        let mut call = Box::pin(b.charge("ik_9", &ninth));
        tokio::select! {
            biased;
            _ = &mut call => panic!("decided within one poll"),
            () = std::future::ready(()) => {}
        }
        drop(call);
        tokio::time::sleep(Duration::from_millis(1)).await;
        // The other shard replays the decision; the capture it names was booked by b.
        let replayed = a.charge("ik_9", &ninth).await;
        assert!(matches!(replayed, ChargeResponse::Captured { .. }));
        assert_eq!(
            captures(&[&a, &b], 9),
            1,
            "the capture is booked in b's books"
        );
    }
}
