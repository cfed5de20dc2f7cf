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

#[derive(clap::Args)]
pub struct ProviderArgs {
    /// Where to listen (loopback only), e.g. 127.0.0.1:12111.
    #[arg(long)]
    listen: SocketAddr,
    /// How long each answer takes: `5ms..20ms`, `lognormal(50ms, 0.4)`, `0ms`.
    #[arg(long, default_value = "5ms..20ms")]
    latency: String,
    /// Seeds charge ids, latencies and which calls the faults below hit.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of calls that fail with --status (an outage for the whole run), e.g. 10%.
    #[arg(long, default_value = "0%", value_parser = super::parse_share)]
    errors: f64,
    /// The failing calls' status: 5xx, or 429 (sent with Retry-After: 1).
    #[arg(long, default_value_t = 503, value_parser = clap::value_parser!(u16).range(400..=599))]
    status: u16,
    /// Share of the other calls whose answer is lost: the card is charged and the answer
    /// withheld for --lost-answer-delay, past your client's timeout, e.g. 5%.
    #[arg(long, default_value = "0%", value_parser = super::parse_share)]
    lost_answers: f64,
    /// How long a lost answer is withheld (it is then sent, to nobody listening).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    lost_answer_delay: Duration,
}

pub fn provider(runtime: &Runtime, args: &ProviderArgs) -> Exit {
    let ProviderArgs {
        listen,
        latency,
        seed,
        errors,
        status,
        lost_answers,
        lost_answer_delay,
    } = args;
    let (listen, seed) = (*listen, *seed);
    let latency = match units::parse_latency(latency) {
        Ok(latency) => latency,
        Err(e) => {
            errln!("--latency {latency:?}: {}", e.message);
            return Exit::BadInput;
        }
    };
    let cfg = Provider {
        via: ProviderVia::Http,
        listen: None,
        latency,
        // The client's timeout is the user's service's; a lost answer is withheld this long
        // (and a second more).
        timeout: lost_answer_delay.saturating_sub(Duration::from_secs(1)),
        retries: 0,
        idempotency_retention: doorbuster::services::provider::config::RETENTION_DEFAULT,
    };
    let core = Arc::new(ProviderCore::new(seed, &cfg, Clock::start()));
    if *errors > 0.0 || *lost_answers > 0.0 {
        core.set_outage(Outage {
            error_share: *errors,
            status: *status,
            latency: None,
            retry_after: (*status == 429).then_some(Duration::from_secs(1)),
            lost_answers: *lost_answers,
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
        let charged_twice: Vec<u64> = (core.captures_per_order().doubled().into_iter())
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
            let orders = charged_twice;
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
