//! Chaos: every fault kind, one module per area (service faults, interrupts, the provider,
//! replay and reorder, exec, validation, dead letters, link faults, the fault proxy, broker
//! restarts), each with a negative control that must fail and its clean twin that passes.
//! One test binary; this file holds the scenario helpers the modules share.

#[path = "../support/mod.rs"]
mod support;

mod dead_letters;
mod exec;
mod interrupt;
mod link;
mod link_proxy;
mod paging;
mod provider;
mod replay_reorder;
mod restart;
mod service_faults;
mod validation;

use support::{assert_all_pass as passes, check};

async fn run(s: &Scenario) -> RunResult {
    support::run_with(s, None).await
}

use std::time::Duration;

use doorbuster::observe::FaultWindow;

use doorbuster::run::{RunOptions, RunResult, execute};
use doorbuster::scenario::model::{CheckoutMode, Scenario};
use doorbuster::verify::Verdict;

/// About 1 000 orders in 10 s, a fast in-process provider, then `faults` (YAML list items).
fn scenario(faults: &str, services: &str) -> Scenario {
    scenario_with(faults, services, "  no_loss: true")
}

fn scenario_with(faults: &str, services: &str, checks: &str) -> Scenario {
    let text = format!(
        r#"
name: chaos
seed: 5
load:
  arrivals: uniform
  phases:
    - {{ hold: 10s, rate: 100/s }}
  drain: 60s
provider:
  via: in_process
  latency: 1ms..5ms
services:
{services}
checks:
{checks}
faults:
{faults}
"#
    );
    doorbuster::scenario::parse("chaos.yaml", &text).expect("the chaos scenario parses")
}

fn window(r: &RunResult, kind: &str) -> FaultWindow {
    r.summary
        .faults
        .iter()
        .find(|f| f.kind == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} window in {:?}", r.summary.faults))
}

/// Whether a loopback broker listens on `port`; without it a real-broker test skips
/// visibly, or fails with DOORBUSTER_REQUIRE_BROKERS=1.
fn broker_up_or_skip(test: &str, kind: &str, port: u16) -> bool {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        return true;
    }
    assert!(
        !std::env::var("DOORBUSTER_REQUIRE_BROKERS").is_ok_and(|v| v == "1"),
        "{test}: {kind} is not running on 127.0.0.1:{port} (scripts/brokers.sh start {kind})"
    );
    eprintln!("SKIP: {test}: {kind} is not running on 127.0.0.1:{port}");
    false
}

/// Real-broker runs in this file take turns: one restarts the server under the others.
static REAL_BROKERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A short real-time run on the loopback Redis with `faults`.
fn redis_scenario(faults: &str) -> Scenario {
    let text = format!(
        r#"
name: link
seed: 9
target: redis://127.0.0.1:6379
load:
  arrivals: uniform
  phases:
    - {{ hold: 6s, rate: 40/s }}
  drain: 20s
provider:
  via: in_process
  latency: 1ms
faults:
{faults}
"#
    );
    doorbuster::scenario::parse("link.yaml", &text).expect("the link scenario parses")
}

fn checkout_split(r: &RunResult, kind: &str) -> doorbuster::observe::StageSplit {
    window(r, kind)
        .latency
        .into_iter()
        .find(|l| l.stage.label() == "order.created")
        .expect("a split for the checkout stage")
}
