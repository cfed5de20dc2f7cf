//! The commented starting point `doorbuster init NAME` writes: every section of a scenario
//! with its default spelled out, so a user edits values instead of looking up keys, and the
//! lines that are examples said to be so. It is plain text with the name substituted; tests
//! check that it parses to the defaults and that its commented faults example is valid.

const TEMPLATE: &str = r#"# yaml-language-server: $schema=scenario.schema.json
# A doorbuster scenario. Run it with `doorbuster run THIS_FILE`.
# Completion and validation in your editor: `doorbuster schema > scenario.schema.json`.
# Durations: 250ms, 90s, 2m, 1m30s. Rates: 500/s, 30000/m. Shares: 2.5%.
# Every section except `name` and `load` is optional. A value marked (default) is what
# applies when you remove its line; the phases, the latency SLOs and the faults are examples:
# a stage without a latency SLO is not judged on latency (the verdict says so).

name: __NAME__              # lowercase letters, digits and dashes
description: ""
seed: 1                     # (default) one seed drives the whole run; failures print it

target: embedded            # (default) the in-process broker; or redis://, nats://, amqp://,
                            # kafka:// URLs, or an http(s):// checkout endpoint

load:
  arrivals: poisson         # (default) or uniform
  checkout_timeout: 2s      # (default) a checkout not answered within this time has failed
  checkout:
    mode: async             # (default) answered at the order.created ack; payment runs downstream.
                            # sync: the checkout also charges the card inline, once, like
                            # a monolith (the baseline the event-driven design beats)
  max_in_flight: 10000      # (default)
  max_send_lag: 100ms       # (default) the run is invalid if the generator itself lags more
  phases:                   # an example; one kind per phase: ramp, hold, spike or pause
    - { ramp: 10s, from: 10/s, to: 100/s }
    - { hold: 20s, rate: 100/s }
    - { spike: 5s, rate: 300/s }
    - { pause: 2s }
  drain: 30s                # (default) after the last phase, time for the pipeline to settle

orders:                     # every value here is the default
  catalog: { products: 5000, popularity: zipf(1.1), stock: 200 }
  items: 1..5               # line items per order
  locale: en_US
  declines: 2%              # cards the provider refuses: business outcomes
  resubmits: 0.5%           # shoppers clicking "buy" twice: same idempotency key

services:                   # the standard topology (defaults); override only what differs
  payment:   { replicas: 4, latency: 5ms..20ms }
  inventory: { replicas: 2, latency: 1ms..5ms }
  email:     { replicas: 2, latency: 30ms }
  warehouse: { replicas: 2, latency: 10ms..50ms }
  analytics: { replicas: 1, latency: 1ms }
  # each service also takes: concurrency: 256, idempotent: true,
  # commit: after_effect (or on_receive), enabled: true

# faults:                   # an example: what goes wrong, on the run's clock
#   - { at: 12s, for: 10s, provider_outage: { errors: 30%, latency: 1s..3s } }
#   - { at: 20s, crash: email, restart_after: 5s }
#   - { at: 25s, for: 5s, latency: warehouse, add: 200ms }

provider:                   # the card API the payment service calls (defaults)
  via: http                 # or in_process
  latency: lognormal(120ms, 0.4)
  timeout: 2s
  retries: 3

checks:
  checkout_success_rate: ">= 99.5%"   # (default) or off
  completion_rate: ">= 99%"           # (default)
  settle_within: 30s                  # (default)
  latency:                  # examples: none applies unless written here
    order.created -> order.fulfilled: { p99: "< 3s" }
    order.created -> email.sent:      { p99: "< 5s" }
    order.created:                    { p99: "< 250ms" }   # the checkout (publish ack)
  no_loss: true                 # (default) every effect an order is owed happened
  money_matches_state: true     # (default) every capture ends fulfilled, every fulfilment was captured
  no_duplicate_effects: true    # (default)
  per_key_order: true           # (default)
  # recovery: { drain_within: 30s }   # with faults: lag back to its pre-fault level in time
  compare:                  # (defaults) what `doorbuster compare` tolerates for this candidate
    latency_increase: 10%   # growth of p50/p90/p99 per stage
    latency_floor: 1ms      # growth below this is noise
    rate_drop: 0.1%         # percentage points of checkout success or completion
"#;

/// A commented scenario named `name`, ready to edit.
pub fn template(name: &str) -> String {
    TEMPLATE.replacen("__NAME__", name, 1)
}
