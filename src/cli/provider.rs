//! `doorbuster provider --listen ADDR`: the payment provider alone, until Ctrl-C, for a
//! user's own payment service to charge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use doorbuster::clock::Clock;
use doorbuster::config::units;
use doorbuster::exit::Exit;
use doorbuster::scenario::model::{Provider, ProviderVia};
use doorbuster::services::provider::{Outage, ProviderCore, serve_on};
use tokio::runtime::Runtime;

/// Faults for the whole time the provider serves (`--errors`, `--lost-answers`).
pub struct Faults {
    pub errors: f64,
    pub status: u16,
    pub lost_answers: f64,
    pub lost_answer_delay: Duration,
}

pub fn provider(
    runtime: &Runtime,
    listen: SocketAddr,
    latency: &str,
    seed: u64,
    faults: Faults,
) -> Exit {
    let latency = match units::parse_latency(latency) {
        Ok(latency) => latency,
        Err(e) => {
            errln!("--latency {latency:?}: {}", e.message);
            return Exit::BadInput;
        }
    };
    let cfg = Provider {
        via: ProviderVia::Http,
        latency,
        // The client's timeout is the user's service's; a lost answer is withheld this long
        // (and a second more).
        timeout: faults
            .lost_answer_delay
            .saturating_sub(Duration::from_secs(1)),
        retries: 0,
    };
    let core = Arc::new(ProviderCore::new(seed, &cfg, Clock::start()));
    if faults.errors > 0.0 || faults.lost_answers > 0.0 {
        core.set_outage(Outage {
            error_share: faults.errors,
            status: faults.status,
            latency: None,
            retry_after: (faults.status == 429).then_some(Duration::from_secs(1)),
            lost_answers: faults.lost_answers,
        });
    }
    runtime.block_on(async {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let (addr, task) = match serve_on(core.clone(), listen, shutdown).await {
            Ok(served) => served,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                errln!("provider: {e}");
                return Exit::BadInput;
            }
            Err(e) => {
                errln!("provider: cannot listen on {listen}: {e}");
                return Exit::CannotRun;
            }
        };
        outln!("provider listening on http://{addr}");
        errln!(
            "JSON: POST /v1/charges · Stripe: /v1/payment_intents, /v1/refunds · \
             records: GET /v1/captures · Ctrl-C stops"
        );
        let _ = task.await;
        let s = core.stats();
        let charged_twice: Vec<u64> = core
            .captures_per_order()
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(order, _)| order)
            .collect();
        outln!(
            "calls {} · captures {} · declines {} · replays {} · conflicts {} · outage errors {} · \
             lost answers {}",
            s.calls,
            s.captures,
            s.declines,
            s.replays,
            s.conflicts,
            s.errors,
            s.lost_answers
        );
        if charged_twice.is_empty() {
            outln!("no order was charged more than once");
        } else {
            let mut orders = charged_twice;
            orders.sort_unstable();
            let shown: Vec<String> = orders.iter().take(20).map(u64::to_string).collect();
            outln!(
                "{} orders charged more than once: {}{}",
                orders.len(),
                shown.join(", "),
                if orders.len() > 20 { ", ..." } else { "" }
            );
        }
        Exit::Success
    })
}
