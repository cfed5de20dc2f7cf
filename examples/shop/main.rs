//! A small shop to put under test: not doorbuster's, a system of its own that doorbuster
//! loads and breaks from the outside (observe mode, docs/black-box.md).
//!
//! Three services, each its own process, on Redis Streams or NATS JetStream (`--broker`,
//! `bus.rs`), speaking the seed article's
//! `order.created` (examples/payloads): `payment` reads `{prefix}.orders`, charges the card
//! through a Stripe-compatible API (doorbuster's provider) and writes `order.paid` or
//! `order.payment_failed` to `{prefix}.payments`; `inventory` reserves stock for each paid
//! order (`stock.reserved` on `{prefix}.stock`); `email` confirms it (`email.sent` on
//! `{prefix}.emails`). Each service is a consumer group (a Redis group, a durable JetStream
//! consumer), acking after its effect, reading again what it had not acked when it starts
//! again, and writing each output once per order.
//!
//! Flags plant the bugs real shops have:
//! - `--bug fresh-key-retries`: a payment retried after a timeout or 5xx gets a new
//!   idempotency key, so a charge whose answer was lost is made again;
//! - `--bug ack-before-effect`: a service acks what it read before acting on it, so what it
//!   held when it crashed is gone;
//! - `--bug drop-on-error`: a payment that still fails after the retries is acked and
//!   dropped instead of left for a later attempt.
//!
//! ```text
//! cargo run --example shop -- --service payment --provider http://127.0.0.1:12111
//! cargo run --example shop -- --service payment --broker nats://127.0.0.1:4222
//! ```

// A program of its own, not part of doorbuster: the rules clippy.toml keeps for
// doorbuster's clock, randomness and HTTP clients are not its rules.
#![allow(clippy::disallowed_methods)]

mod bus;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{Value as Json, json};

use bus::{Bus, Entry};

#[derive(Parser, Debug)]
#[command(about = "An example shop on Redis Streams or NATS JetStream, with bugs to plant")]
struct Args {
    /// Which service this process is.
    #[arg(long, value_enum)]
    service: Service,
    /// `redis://...` or `nats://...`.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    broker: String,
    /// Prefix of the shop's streams and keys.
    #[arg(long, default_value = "shop")]
    prefix: String,
    /// The card API's base URL (payment only).
    #[arg(long, default_value = "http://127.0.0.1:12111")]
    provider: String,
    /// The consumer's name within its group; a restarted process with the same name re-reads
    /// what it held.
    #[arg(long, default_value = "1")]
    consumer: String,
    /// Bugs to plant (repeatable).
    #[arg(long = "bug", value_enum)]
    bugs: Vec<Bug>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Service {
    Payment,
    Inventory,
    Email,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Bug {
    FreshKeyRetries,
    AckBeforeEffect,
    DropOnError,
}

/// Provider calls per payment: the first and three retries.
const ATTEMPTS: u32 = 4;
/// The payment service's client timeout per provider call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What handling one event came to.
enum Handled {
    /// Write this output (stream, event id, body), then ack.
    Output(String, String, Json),
    /// Nothing to write (an event this service does not act on); ack.
    Nothing,
    /// Could not act now: leave it unacked, to be read again.
    Failed(String),
}

struct Shop {
    args: Args,
    bus: Bus,
    http: reqwest::Client,
}

impl Shop {
    fn stream(&self, name: &str) -> String {
        format!("{}.{name}", self.args.prefix)
    }

    fn has(&self, bug: Bug) -> bool {
        self.args.bugs.contains(&bug)
    }

    async fn handle(&self, event: &Json) -> Handled {
        let Some(order) = event["orderId"].as_str().map(str::to_owned) else {
            return Handled::Nothing;
        };
        let output = |stream: &str, kind: &str, extra: Json| {
            let event_id = format!("{kind}:{order}");
            let mut body = json!({ "type": kind, "orderId": order, "eventId": event_id });
            if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
                body.extend(extra.clone());
            }
            Handled::Output(self.stream(stream), event_id, body)
        };
        match self.args.service {
            Service::Payment => match self.charge(&order, event).await {
                Ok(Some(intent)) => {
                    output("payments", "order.paid", json!({ "paymentIntent": intent }))
                }
                Ok(None) => output("payments", "order.payment_failed", json!({})),
                Err(why) => Handled::Failed(why),
            },
            Service::Inventory if event["type"] == "order.paid" => {
                output("stock", "stock.reserved", json!({}))
            }
            Service::Email if event["type"] == "stock.reserved" => {
                output("emails", "email.sent", json!({}))
            }
            Service::Inventory | Service::Email => Handled::Nothing,
        }
    }

    /// Charges the order's card: `Ok(Some(intent id))` when approved, `Ok(None)` when
    /// declined, `Err` when the provider could not be reached or kept failing.
    async fn charge(&self, order: &str, event: &Json) -> Result<Option<String>, String> {
        let cents = (event["orderTotal"].as_f64().unwrap_or(0.0) * 100.0).round() as u64;
        let currency = event["orderCurrency"]
            .as_str()
            .unwrap_or("usd")
            .to_lowercase();
        let method = event["paymentMethod"].as_str().unwrap_or("pm_card_visa");
        let form = [
            ("amount", cents.to_string()),
            ("currency", currency),
            ("payment_method", method.to_owned()),
            ("confirm", "true".to_owned()),
            ("metadata[order_id]", order.to_owned()),
        ];
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let key = if self.has(Bug::FreshKeyRetries) {
                // New every time: the attempt and the clock.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                format!("pay-{order}-{attempt}-{nanos}")
            } else {
                format!("pay-{order}")
            };
            let sent = self
                .http
                .post(format!("{}/v1/payment_intents", self.args.provider))
                .header("Idempotency-Key", key)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .timeout(CALL_TIMEOUT)
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = format!("provider call failed: {e}");
                    continue;
                }
            };
            let status = response.status().as_u16();
            let answer: Json = response.json().await.unwrap_or(Json::Null);
            match status {
                200 if answer["status"] == "succeeded" => {
                    return Ok(answer["id"].as_str().map(str::to_owned));
                }
                402 => return Ok(None),
                _ => last = format!("provider answered {status}: {answer}"),
            }
        }
        Err(last)
    }

    /// One event, start to ack.
    async fn process(&self, entry: Entry) {
        let early_ack = self.has(Bug::AckBeforeEffect);
        if early_ack {
            let _ = self.bus.ack(&entry.ack).await;
        }
        let event: Json = (entry.payload.as_deref())
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or(Json::Null);
        let ack = match self.handle(&event).await {
            Handled::Output(out, event_id, body) => {
                match self.bus.emit(&out, &event_id, &body.to_string()).await {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("shop {:?}: cannot write {event_id}: {e}", self.args.service);
                        false
                    }
                }
            }
            Handled::Nothing => true,
            Handled::Failed(why) => {
                eprintln!("shop {:?}: {}: {why}", self.args.service, entry.id());
                self.has(Bug::DropOnError)
            }
        };
        if ack && !early_ack {
            let _ = self.bus.ack(&entry.ack).await;
        }
    }
}

/// The stream (subject) a service reads, and its group's name.
fn input(args: &Args) -> (String, &'static str) {
    let (name, group) = match args.service {
        Service::Payment => ("orders", "payment"),
        Service::Inventory => ("payments", "inventory"),
        Service::Email => ("stock", "email"),
    };
    (format!("{}.{name}", args.prefix), group)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build().expect("an HTTP client");
    let (input, group) = input(&args);
    let bus = match Bus::connect(&args.broker, &args.prefix, &input, group, &args.consumer).await {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("shop: cannot reach {}: {e}", args.broker);
            std::process::exit(3);
        }
    };
    println!("ready: {:?} reads {input} as {group}", args.service);
    let mut shop = Shop { args, bus, http };
    loop {
        let entries = match shop.bus.next().await {
            Ok(entries) => entries,
            Err(e) => {
                // Like a real service, it reconnects when it loses its broker (its group, and
                // what it held unacked, wait there), and gives up only when it cannot.
                eprintln!(
                    "shop {:?}: lost the broker ({e}); reconnecting",
                    shop.args.service
                );
                let a = &shop.args;
                match Bus::connect(&a.broker, &a.prefix, &input, group, &a.consumer).await {
                    Ok(bus) => shop.bus = bus,
                    Err(e) => {
                        eprintln!("shop: cannot reach {}: {e}", a.broker);
                        std::process::exit(3);
                    }
                }
                continue;
            }
        };
        let work = entries.into_iter().map(|e| shop.process(e));
        futures_util::future::join_all(work).await;
    }
}
