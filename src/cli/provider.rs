//! `doorbuster provider --listen ADDR`: the payment provider alone, until Ctrl-C, for a
//! user's own payment service to charge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use doorbuster::clock::Clock;
use doorbuster::config::units;
use doorbuster::exit::Exit;
use doorbuster::scenario::model::{Provider, ProviderVia};
use doorbuster::services::provider::{ProviderCore, serve_on};
use tokio::runtime::Runtime;

pub fn provider(runtime: &Runtime, listen: SocketAddr, latency: &str, seed: u64) -> Exit {
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
        // The client's timeout and retries are the user's service's, not the provider's.
        timeout: Duration::from_secs(30),
        retries: 0,
    };
    let core = Arc::new(ProviderCore::new(seed, &cfg, Clock::start()));
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
            "calls {} · captures {} · declines {} · replays {} · conflicts {} · outage errors {}",
            s.calls,
            s.captures,
            s.declines,
            s.replays,
            s.conflicts,
            s.errors
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
