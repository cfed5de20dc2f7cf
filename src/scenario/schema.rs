//! The JSON Schema of scenario files, for editors (completion, hover text, red squiggles)
//! and for `doorbuster schema`.
//!
//! These types describe the YAML a user writes; they are never deserialised. The parser in
//! `raw.rs` keeps spans and the validator in `validate.rs` gives the authoritative errors;
//! this schema only has to agree with them, which the tests hold it to: every bundled
//! scenario and the full `init` template validate, and misspelt keys and malformed units
//! are rejected.

#![allow(dead_code)] // fields exist to be described, not read

use std::collections::BTreeMap;

use schemars::JsonSchema;

const DURATION: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)\s*)+$";
const RATE: &str = r"^\s*[0-9]+(\.[0-9]+)?\s*/\s*(s|m|h)\s*$";
const SHARE: &str = r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$";
const LATENCY: &str = r"^\s*(\S+(\s*\.\.\s*\S+)?|normal\(.*\)|lognormal\(.*\))\s*$";
const THRESHOLD: &str = r"^\s*((>=|<=|>|<)\s*)?[0-9]+(\.[0-9]+)?\s*%\s*$|^off$";
const BOUND: &str = r"^\s*(<=|<)?\s*[0-9].*$";
const NAME: &str = r"^[a-z0-9-]{1,64}$";

/// A doorbuster scenario: load, orders, services, the payment provider and the checks, on
/// one clock. Only `name` and `load.phases` are required.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, title = "doorbuster scenario")]
struct Scenario {
    /// Lowercase letters, digits and dashes, e.g. `black-friday`.
    #[schemars(regex(pattern = NAME))]
    name: String,
    description: Option<String>,
    /// One seed drives the whole run; every report prints it. Default 1.
    seed: Option<u64>,
    target: Option<Target>,
    load: Load,
    orders: Option<Orders>,
    services: Option<Services>,
    provider: Option<Provider>,
    checks: Option<Checks>,
    /// Faults on the scenario's clock, e.g. `{ at: 80s, crash: email, restart_after: 10s }`.
    faults: Option<Vec<FaultEntry>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ServiceName {
    Payment,
    Inventory,
    Email,
    Warehouse,
    Analytics,
}

/// One fault: `at`, `for` when it lasts, and exactly one kind key.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct FaultEntry {
    /// Start, on the run's clock.
    #[schemars(regex(pattern = DURATION))]
    at: String,
    /// How long it lasts (pause, latency, errors, poison, duplicate, reorder,
    /// provider_outage).
    #[serde(rename = "for")]
    #[schemars(regex(pattern = DURATION))]
    for_: Option<String>,
    /// The service's consumers stop without committing.
    crash: Option<ServiceName>,
    #[schemars(regex(pattern = DURATION))]
    restart_after: Option<String>,
    /// The service stops consuming, keeping its partitions.
    pause: Option<ServiceName>,
    /// Added processing time for the service (with `add`).
    latency: Option<ServiceName>,
    /// The added time: quote it inside `{ }` when it has a comma.
    #[schemars(regex(pattern = LATENCY))]
    add: Option<String>,
    /// The service fails deliveries (nack).
    errors: Option<ServiceName>,
    /// Events of the picked orders, intended inside the window, always fail at the service
    /// (poison messages); with `max_deliveries` they end on `order.dead_letter`.
    poison: Option<ServiceName>,
    /// Deliveries arrive twice at the service.
    duplicate: Option<ServiceName>,
    /// Events of one key delivered out of order on this topic, e.g. `order.created`.
    reorder: Option<String>,
    /// Share of deliveries the fault touches (default 100%).
    #[schemars(regex(pattern = SHARE))]
    share: Option<String>,
    /// Share of orders the fault touches (default 100%).
    #[schemars(regex(pattern = SHARE))]
    keys: Option<String>,
    provider_outage: Option<Outage>,
    /// Rewind the service's consumer group (`to: earliest` or a run time).
    replay: Option<ServiceName>,
    to: Option<String>,
    /// A command run with `sh -c`; its output goes to the run folder.
    exec: Option<String>,
    /// A fault on the TCP link to a networked broker, through the built-in fault proxy.
    link: Option<LinkKind>,
    /// Link latency: the added delay.
    #[schemars(regex(pattern = DURATION))]
    delay: Option<String>,
    /// Link latency: uniform jitter around `delay`.
    #[schemars(regex(pattern = DURATION))]
    jitter: Option<String>,
    /// Link bandwidth: bytes per second, per connection and direction.
    #[schemars(range(min = 1))]
    bytes_per_sec: Option<u64>,
    /// Which way a link fault acts (default both).
    direction: Option<LinkDirection>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum LinkKind {
    Latency,
    Bandwidth,
    Reset,
    Blackhole,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum LinkDirection {
    Both,
    Upstream,
    Downstream,
}

/// The payment provider fails a share of calls.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Outage {
    #[schemars(regex(pattern = SHARE))]
    errors: Option<String>,
    #[schemars(regex(pattern = LATENCY))]
    latency: Option<String>,
    #[schemars(range(min = 400, max = 599))]
    status: Option<u16>,
    #[schemars(regex(pattern = DURATION))]
    retry_after: Option<String>,
}

/// Where the orders go: `embedded` (the in-process broker, the default), a broker kind on
/// its loopback default port (`redis`), a broker URL (`redis://127.0.0.1:6379`), a checkout
/// endpoint's URL (`http://127.0.0.1:8080/checkout`), or a block.
#[derive(JsonSchema)]
#[serde(untagged)]
enum Target {
    Name(TargetName),
    Url(#[schemars(regex(pattern = TARGET_URL))] String),
    Block(TargetBlock),
}

const TARGET_URL: &str = r"^(kafka|nats|tls|amqps?|rediss?|https?)://.+$";

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum TargetName {
    Embedded,
    Kafka,
    Nats,
    Rabbitmq,
    Redis,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct TargetBlock {
    /// The broker; optional when `url` is given (its scheme selects the broker).
    kind: Option<TargetName>,
    /// The broker's URL; credentials only as `${ENV}` references.
    #[schemars(regex(pattern = TARGET_URL))]
    url: Option<String>,
    /// Partitions per topic (1..=1024, default 12); Kafka and the embedded broker.
    #[schemars(range(min = 1, max = 1024))]
    partitions: Option<u32>,
    /// Events kept per partition (default 1000000); embedded broker only.
    #[schemars(range(min = 1000))]
    retention: Option<u64>,
    /// Kafka producer acks (default all).
    acks: Option<Acks>,
    /// Kafka idempotent producer (default true).
    idempotent: Option<bool>,
    /// RabbitMQ queue type (default classic).
    queue_type: Option<QueueTypeName>,
    /// Time a delivery may stay unacked before the broker hands it to another member
    /// (default 30s).
    #[schemars(regex(pattern = DURATION))]
    ack_wait: Option<String>,
    /// Deliveries of one event before the broker gives up on it (default unlimited).
    #[schemars(range(min = 1))]
    max_deliver: Option<u32>,
    /// Allow a host outside loopback (default false).
    allow_remote: Option<bool>,
    /// HTTP checkout endpoints: headers sent with every order (values may hold `${ENV}`).
    headers: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Acks {
    All,
    Leader,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum QueueTypeName {
    Classic,
    Quorum,
    Stream,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Arrivals {
    Uniform,
    Poisson,
}

/// The arrival schedule: orders arrive on it whether or not earlier ones finished.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Load {
    /// `poisson` (default) or `uniform`.
    arrivals: Option<Arrivals>,
    /// A checkout not acked within this time has failed (default `2s`).
    #[schemars(regex(pattern = DURATION))]
    checkout_timeout: Option<String>,
    /// What a checkout waits for: `{ mode: async }` (default) or `{ mode: sync }`.
    checkout: Option<Checkout>,
    /// At most this many checkouts in flight (default 10000).
    #[schemars(range(min = 1, max = 1_000_000))]
    max_in_flight: Option<u64>,
    /// The run is INVALID when the generator's own send-lag p99 exceeds this (default `100ms`).
    #[schemars(regex(pattern = DURATION))]
    max_send_lag: Option<String>,
    /// One kind per phase: `{ ramp: 30s, from: 50/s, to: 500/s }`, `{ hold: 40s, rate: 500/s }`,
    /// `{ spike: 15s, rate: 1500/s }`, `{ pause: 5s }`.
    #[schemars(length(min = 1, max = 1000))]
    phases: Vec<Phase>,
    /// After the last phase, time for the pipeline to settle before the checks (default `30s`).
    #[schemars(regex(pattern = DURATION))]
    drain: Option<String>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum CheckoutMode {
    Async,
    Sync,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Checkout {
    /// `async` (default): the checkout ends at the `order.created` ack and payment happens
    /// downstream. `sync`: the checkout also calls the payment provider once, inline, like a
    /// monolith, and succeeds only if the provider answered within `checkout_timeout`.
    mode: Option<CheckoutMode>,
}

/// A load phase. Exactly one of `ramp`, `hold`, `spike`, `pause` (its duration).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Phase {
    #[schemars(regex(pattern = DURATION))]
    ramp: Option<String>,
    #[schemars(regex(pattern = DURATION))]
    hold: Option<String>,
    #[schemars(regex(pattern = DURATION))]
    spike: Option<String>,
    #[schemars(regex(pattern = DURATION))]
    pause: Option<String>,
    /// Ramp start rate, e.g. `50/s`.
    #[schemars(regex(pattern = RATE))]
    from: Option<String>,
    /// Ramp end rate, e.g. `500/s`.
    #[schemars(regex(pattern = RATE))]
    to: Option<String>,
    /// Hold or spike rate, e.g. `500/s`.
    #[schemars(regex(pattern = RATE))]
    rate: Option<String>,
}

/// The fake orders: catalog, line items, declines and resubmits.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Orders {
    catalog: Option<Catalog>,
    /// Line items per order: `1..5` or `3` (default `1..5`).
    #[schemars(regex(pattern = r"^\s*[0-9]+(\s*\.\.\s*[0-9]+)?\s*$"))]
    items: Option<String>,
    /// Only `en_US` for now.
    locale: Option<String>,
    /// Share of cards the provider declines (business outcomes), e.g. `2%`.
    #[schemars(regex(pattern = SHARE))]
    declines: Option<String>,
    /// Share of shoppers who click "buy" twice (same idempotency key), e.g. `0.5%`.
    #[schemars(regex(pattern = SHARE))]
    resubmits: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Catalog {
    #[schemars(range(min = 1, max = 1_000_000))]
    products: Option<u32>,
    /// `zipf(1.1)` or `uniform`.
    #[schemars(regex(pattern = r"^\s*(uniform|zipf\(\s*[0-9]+(\.[0-9]+)?\s*\))\s*$"))]
    popularity: Option<String>,
    /// Units in stock per product at the start.
    stock: Option<u32>,
}

/// The standard topology; override only what differs.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Services {
    payment: Option<Service>,
    inventory: Option<Service>,
    email: Option<Service>,
    warehouse: Option<Service>,
    analytics: Option<Service>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Commit {
    AfterEffect,
    OnReceive,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Service {
    #[schemars(range(min = 1, max = 64))]
    replicas: Option<u32>,
    /// Deliveries a replica handles at once (per-key order is kept regardless).
    #[schemars(range(min = 1, max = 100_000))]
    concurrency: Option<u32>,
    /// `5ms`, `5ms..20ms`, `normal(10ms, 2ms)` or `lognormal(120ms, 0.4)`.
    #[schemars(regex(pattern = LATENCY))]
    latency: Option<String>,
    /// `false` for negative controls: every delivery applies its effect again.
    idempotent: Option<bool>,
    /// `after_effect` (at-least-once, default) or `on_receive` (at-most-once).
    commit: Option<Commit>,
    enabled: Option<bool>,
    /// Deliveries of one event before it is moved to `order.dead_letter` (default: retry
    /// forever).
    #[schemars(range(min = 1, max = 1000))]
    max_deliveries: Option<u32>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Via {
    Http,
    InProcess,
}

/// The card API the payment service calls.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Provider {
    /// `http` (a real server on loopback, default) or `in_process`.
    via: Option<Via>,
    #[schemars(regex(pattern = LATENCY))]
    latency: Option<String>,
    #[schemars(regex(pattern = DURATION))]
    timeout: Option<String>,
    #[schemars(range(max = 20))]
    retries: Option<u32>,
}

/// What the run is judged on.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Checks {
    /// e.g. `">= 99.5%"`, or `off`.
    #[schemars(regex(pattern = THRESHOLD))]
    checkout_success_rate: Option<String>,
    /// e.g. `">= 99%"`, or `off`.
    #[schemars(regex(pattern = THRESHOLD))]
    completion_rate: Option<String>,
    #[schemars(regex(pattern = DURATION))]
    settle_within: Option<String>,
    /// Per stage (`order.created`, `order.created -> order.payment.succeeded`,
    /// `order.created -> order.fulfilled`, `order.created -> email.sent`), per percentile
    /// (`p50`, `p90`, `p95`, `p99`, `p99.9`, `p99.99`, `max`): a bound like `"< 3s"`.
    latency: Option<BTreeMap<String, BTreeMap<String, Bound>>>,
    no_loss: Option<bool>,
    /// Every capture at the provider ends fulfilled, every fulfilment was captured.
    money_matches_state: Option<bool>,
    no_duplicate_effects: Option<bool>,
    per_key_order: Option<bool>,
    compare: Option<Compare>,
    /// After each fault window, consumer lag must be back to its pre-fault level within
    /// `drain_within`.
    recovery: Option<Recovery>,
    /// Share of accepted orders that may be dead-lettered, e.g. `"<= 1%"` (default
    /// `"<= 0%"`), or `off`.
    #[schemars(regex(pattern = THRESHOLD))]
    dead_letters: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Recovery {
    #[schemars(regex(pattern = DURATION))]
    drain_within: String,
}

/// Tolerances `doorbuster compare` applies when this scenario's run is the candidate.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Compare {
    /// Relative growth allowed for gated latency percentiles (default `10%`).
    #[schemars(regex(pattern = SHARE))]
    latency_increase: Option<String>,
    /// Latency growth below this is never a regression (default `1ms`).
    #[schemars(regex(pattern = DURATION))]
    latency_floor: Option<String>,
    /// Percentage points a rate may fall (default `0.1%`).
    #[schemars(regex(pattern = SHARE))]
    rate_drop: Option<String>,
}

/// `"< 3s"`, `"<= 250ms"` or a bare duration (meaning `<=`).
#[derive(JsonSchema)]
#[schemars(transparent)]
struct Bound(#[schemars(regex(pattern = BOUND))] String);

/// The scenario-file schema as pretty JSON.
pub fn json() -> String {
    let schema = schemars::schema_for!(Scenario);
    // A generated schema always serialises.
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
