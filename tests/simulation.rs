//! Whole runs on the embedded broker under tokio's paused clock: exact expectations for a
//! clean Black Friday, and a negative control for every check: a transport or service broken
//! on purpose that the check must catch, next to the clean run it must pass.

mod support;

use support::{assert_all_pass, check, run_with};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use doorbuster::events::{Envelope, Topic};
use doorbuster::load::Schedule;
use doorbuster::observe::Effect;
use doorbuster::orders::OrderFactory;
use doorbuster::report::summary::RunVerdict;

use doorbuster::scenario::model::{ProviderVia, Scenario};
use doorbuster::transport::{
    Ack, AckHandle, BoxFuture, Delivery, RewindTo, Subscription, Transport, TransportError,
    TransportInfo,
};
use doorbuster::verify::Verdict;

fn bundled(name: &str) -> Scenario {
    doorbuster::scenario::load(name)
        .expect("bundled scenario")
        .0
}

/// About 1 000 orders in 10 s, 5 % resubmitted, a fast in-process provider.
fn control() -> Scenario {
    doorbuster::scenario::parse(
        "control.yaml",
        r#"
name: control
seed: 3
load:
  arrivals: uniform
  phases:
    - { hold: 10s, rate: 100/s }
  drain: 30s
orders:
  resubmits: 5%
provider:
  via: in_process
  latency: 1ms..5ms
checks:
  latency:
    order.created -> order.fulfilled: { p99: "< 3s" }
"#,
    )
    .expect("control scenario parses")
}

#[tokio::test(start_paused = true)]
async fn black_friday_runs_exactly_under_a_paused_clock() {
    let mut s = bundled("black-friday");
    // Sockets and a paused clock do not mix; the provider logic is the same in process.
    s.provider.via = ProviderVia::InProcess;
    let r = run_with(&s, None).await;

    let schedule = Schedule::plan(&s.load, s.seed);
    let factory = OrderFactory::new(s.seed, &s.orders);
    let planned = schedule.orders() as u64;
    let declining: Vec<u64> = (0..planned).filter(|&i| factory.plan(i).declines).collect();
    let resubmitted = (0..planned).filter(|&i| factory.plan(i).resubmit).count() as u64;
    let approved = planned - declining.len() as u64;

    let o = &r.summary.orders;
    assert_eq!(o.planned, planned);
    assert_eq!(o.attempted, planned);
    assert_eq!(o.accepted, planned);
    assert_eq!(o.failed, 0);
    assert_eq!(o.declined, declining.len() as u64);
    assert_eq!(o.fulfilled, approved);
    assert_eq!(o.completed, planned);
    assert_eq!(o.payment_failed, 0);
    assert_eq!(o.resubmits, resubmitted);
    assert_all_pass(&r);
    // No faults, so no duplicate deliveries; resubmits are new events, not duplicates.
    assert_eq!(r.summary.deliveries.duplicates, 0);

    // The provider's own records: one capture per approved order, none for declines.
    let captures = r.provider.captures_per_order();
    assert_eq!(captures.len() as u64, approved);
    assert!(captures.iter().all(|(_, n)| n == 1));
    assert!(declining.iter().all(|id| captures.get(*id) == 0));

    // Analytics equals the ground truth.
    let a = r.analytics.clone().expect("analytics ran");
    assert_eq!(a.orders_created, planned);
    assert_eq!(a.payments_succeeded, approved);
    assert_eq!(a.payments_failed, declining.len() as u64);
    assert_eq!(a.fulfilled, approved);
    let revenue: u64 = (0..planned)
        .filter(|&i| !factory.plan(i).declines)
        .map(|i| factory.make(i, 0).totals.total_cents)
        .sum();
    assert_eq!(a.revenue_cents, revenue);

    // Inventory: stock used equals the items of the orders whose reservation applied.
    let initial = factory.initial_stock();
    let left = r.stock.clone().expect("inventory ran");
    let mut used = vec![0u64; initial.len()];
    for id in 0..planned {
        if r.observer.ledger.effects(id, Effect::StockReserved) == 1 {
            for item in factory.items(id) {
                used[item.product_id as usize] += u64::from(item.quantity);
            }
        }
    }
    for p in 0..initial.len() {
        assert_eq!(u64::from(initial[p] - left[p]), used[p], "product {p}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_clean_control_passes_every_check() {
    let r = run_with(&control(), None).await;
    assert_all_pass(&r);
    assert_eq!(r.summary.orders.attempted, 1_000);
}

// ---- Transports broken on purpose -------------------------------------------------------

#[derive(Clone)]
enum Fault {
    /// Acks the first publish of `topic` for `order` without storing it.
    DropAcked { topic: Topic, order: u64 },
    /// Acks `order.created` of every order id divisible by `every` only after `delay`.
    SlowAck { every: u64, delay: Duration },
    /// Holds the first `order.created` of `order` until its next one, then sends both
    /// in reverse.
    Reorder { order: u64 },
    /// Stores every event of `topic` twice (a duplicate delivery at the broker).
    Duplicate { topic: Topic },
    /// Every new member takes `delay` to join (Kafka: until its partitions are assigned).
    SlowJoin { delay: Duration },
    /// The ack of `group`'s first delivery of `order` fails at the broker: the event stays
    /// uncommitted, and nothing hands it out again within the run.
    LostAck { group: &'static str, order: u64 },
    /// Announces `order.payment.succeeded` where payment published `order.payment.failed`
    /// for `order` (a payment service that reports success for a declined card).
    ForgeSuccess { order: u64 },
}

struct Sabotage {
    inner: Arc<dyn Transport>,
    fault: Fault,
    done: Mutex<bool>,
    held: Mutex<Option<Envelope>>,
}

fn sabotage(s: &Scenario, fault: Fault) -> Arc<dyn Transport> {
    let clock = doorbuster::clock::Clock::start();
    Arc::new(Sabotage {
        inner: {
            let doorbuster::scenario::model::Target::Embedded(cfg) = &s.target else {
                panic!("the simulation runs on the embedded broker");
            };
            Arc::new(doorbuster::transport::embedded::EmbeddedBroker::new(
                cfg.partitions,
                cfg.retention,
                clock,
            ))
        },
        fault,
        done: Mutex::new(false),
        held: Mutex::new(None),
    })
}

#[async_trait::async_trait]
impl Transport for Sabotage {
    fn info(&self) -> TransportInfo {
        self.inner.info()
    }

    fn publish(&self, e: Envelope) -> BoxFuture<'_, Result<Ack, TransportError>> {
        Box::pin(async move {
            let fake_ack = Ack {
                partition: 0,
                offset: 0,
            };
            match self.fault.clone() {
                Fault::DropAcked { topic, order }
                    if e.topic == topic && e.meta.order_id == order =>
                {
                    let mut done = self.done.lock().unwrap();
                    if !*done {
                        *done = true;
                        return Ok(fake_ack);
                    }
                }
                Fault::SlowAck { every, delay }
                    if e.topic == Topic::OrderCreated && e.meta.order_id.is_multiple_of(every) =>
                {
                    let ack = self.inner.publish(e).await;
                    tokio::time::sleep(delay).await;
                    return ack;
                }
                Fault::Reorder { order }
                    if e.topic == Topic::OrderCreated && e.meta.order_id == order =>
                {
                    let held = self.held.lock().unwrap().take();
                    match held {
                        None if !*self.done.lock().unwrap() => {
                            *self.done.lock().unwrap() = true;
                            *self.held.lock().unwrap() = Some(e);
                            return Ok(fake_ack);
                        }
                        Some(first) => {
                            let ack = self.inner.publish(e).await;
                            self.inner.publish(first).await?;
                            return ack;
                        }
                        None => {}
                    }
                }
                Fault::Duplicate { topic } if e.topic == topic => {
                    self.inner.publish(e.clone()).await?;
                }
                Fault::ForgeSuccess { order }
                    if e.topic == Topic::PaymentFailed && e.meta.order_id == order =>
                {
                    let forged = Envelope {
                        user: None,
                        topic: Topic::PaymentSucceeded,
                        ..e
                    };
                    return self.inner.publish(forged).await;
                }
                _ => {}
            }
            self.inner.publish(e).await
        })
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
    ) -> Result<Box<dyn Subscription>, TransportError> {
        match self.fault {
            Fault::SlowJoin { delay } => tokio::time::sleep(delay).await,
            Fault::LostAck { group: g, order } if g == group => {
                let inner = self.inner.subscribe(group, topics).await?;
                return Ok(Box::new(LoseAck {
                    inner,
                    order,
                    group: g,
                }) as Box<dyn Subscription>);
            }
            _ => {}
        }
        self.inner.subscribe(group, topics).await
    }

    async fn rewind(&self, group: &str, to: RewindTo) -> Result<(), TransportError> {
        self.inner.rewind(group, to).await
    }

    async fn lag(&self, group: &str) -> Result<u64, TransportError> {
        self.inner.lag(group).await
    }
}

/// A member whose ack of one order's first delivery fails.
struct LoseAck {
    inner: Box<dyn Subscription>,
    order: u64,
    group: &'static str,
}

struct FailingAck(&'static str);

impl AckHandle for FailingAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        let group = self.0.to_owned();
        Box::pin(async move {
            Err(TransportError::Group {
                group,
                source: "the broker dropped the commit".into(),
            })
        })
    }

    fn nack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        self.ack()
    }
}

impl Subscription for LoseAck {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, TransportError>> {
        Box::pin(async move {
            let mut delivery = self.inner.next().await?;
            if let Some(d) = &mut delivery
                && d.envelope.meta.order_id == self.order
                && d.envelope.meta.seq == 0
                && !d.redelivered
            {
                d.ack = Box::new(FailingAck(self.group));
            }
            Ok(delivery)
        })
    }
}

/// Regression (issue 11): a run whose ack failed left the email group's lag at 1 until the
/// drain limit and passed with no word about it. The effect happened, so nothing is lost,
/// but the drain did not settle: the run says so in `no_loss` and in its findings.
#[tokio::test(start_paused = true)]
async fn a_drain_that_ends_with_an_event_still_queued_says_so() {
    let mut s = control();
    s.load.drain = Duration::from_secs(5);
    let fault = Fault::LostAck {
        group: "email",
        order: 40,
    };
    let r = run_with(&s, Some(sabotage(&s, fault))).await;
    // The embedded broker commits offsets: every event behind the uncommitted one in its
    // partition counts in the lag.
    let c = check(&r, "no_loss");
    assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
    assert!(
        c.observed
            .ends_with("events still queued at the drain limit, every owed effect happened"),
        "{c:?}"
    );
    let findings: Vec<&str> = r.summary.findings.iter().map(|f| f.what.as_str()).collect();
    assert!(
        findings
            .iter()
            .any(|f| f.starts_with("the drain ended with ")
                && f.ends_with("events not settled (still queued or being handled): email 87")),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.starts_with("email: ack failed")),
        "{findings:?}"
    );
    // The clean twin drains to zero and says nothing of a queue.
    let clean = run_with(&s, None).await;
    assert!(!check(&clean, "no_loss").observed.contains("queued"));
    assert!(
        !clean
            .summary
            .findings
            .iter()
            .any(|f| f.what.starts_with("the drain ended with"))
    );
}

/// Regression (Kafka on Tansu, black-friday INVALID with a send-lag p99 of 12 s): the run's
/// clock started before the services' members had joined, so every order due during those
/// seconds of setup was dispatched late at once. Joining is setup; t=0 comes after it.
#[tokio::test(start_paused = true)]
async fn members_slow_to_join_delay_the_start_not_the_schedule() {
    let s = control();
    let delay = Duration::from_secs(2);
    let r = run_with(&s, Some(sabotage(&s, Fault::SlowJoin { delay }))).await;
    assert_all_pass(&r);
    assert_eq!(r.summary.orders.attempted, 1_000);
    assert_eq!(r.summary.orders.failed, 0);
    // Eleven members at 2 s each: without the fix, the first 22 s of arrivals, all of them.
    assert!(
        r.summary.send_lag.max_us < 10_000,
        "send lag {:?}",
        r.summary.send_lag
    );
}

#[tokio::test(start_paused = true)]
async fn no_loss_catches_an_acked_event_that_was_never_stored() {
    let s = control();
    let fault = Fault::DropAcked {
        topic: Topic::OrderCreated,
        order: 17,
    };
    let r = run_with(&s, Some(sabotage(&s, fault))).await;
    let c = check(&r, "no_loss");
    assert_eq!(c.verdict, Verdict::Fail);
    // Order 17 pays: payment owed a capture and its announcement, inventory a stock
    // decision, analytics a count; every one of them lost with the delivery.
    assert!(
        c.observed.starts_with("4 of ")
            && c.observed.contains(
                "owed effects lost (4 with their delivery, 0 received and never acted on); 3 of "
            ),
        "{}",
        c.observed
    );
    let examples: Vec<&String> = c
        .evidence
        .iter()
        .filter(|e| e.starts_with("order "))
        .collect();
    assert_eq!(
        examples,
        [
            "order 17: payment: the card was never captured (its order.created was acked by the \
             broker, never delivered)",
            "order 17: payment: order.payment.succeeded was never published (its order.created \
             was acked by the broker, never delivered)",
            "order 17: inventory: stock was never reserved (nor the order backordered) (its \
             order.created was acked by the broker, never delivered)",
            "order 17: analytics: order counted never happened (its order.created was acked by \
             the broker, never delivered)",
        ]
    );
    // Per service: who lost what, and who never got the events that were never published.
    for (service, what) in [
        ("payment", "2 of"),
        ("inventory", "1 of"),
        ("analytics", "1 of"),
        ("email", "1 more never reached it"),
        ("warehouse", "2 more never reached it"),
    ] {
        assert!(
            c.evidence
                .iter()
                .any(|e| e.starts_with(&format!("{service}: {what}"))),
            "{service}: {what} in {:?}",
            c.evidence
        );
    }
    assert_eq!(c.evidence_total, c.evidence.len() as u64);
    assert_eq!(r.summary.verdict, RunVerdict::Fail);
    assert_eq!(r.summary.exit_code, 1);
}

#[tokio::test(start_paused = true)]
async fn money_matches_state_catches_an_order_fulfilled_without_a_capture() {
    // A payment service that announces success for a declined card: the warehouse ships an
    // order the provider never charged.
    let s = control();
    let factory = OrderFactory::new(s.seed, &s.orders);
    let declined = (0..1_000)
        .find(|&o| factory.plan(o).declines)
        .expect("the control declines some cards");
    let r = run_with(
        &s,
        Some(sabotage(&s, Fault::ForgeSuccess { order: declined })),
    )
    .await;
    let c = check(&r, "money_matches_state");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(
        c.observed.starts_with("1 of ")
            && c.observed.ends_with(
                "(0 charged but failed or declined, 0 charged but never fulfilled, 1 fulfilled \
                 without a capture)"
            ),
        "{}",
        c.observed
    );
    assert_eq!(
        c.evidence,
        [format!("order {declined}: fulfilled without a capture")]
    );
    assert_eq!(r.provider.captures_per_order().get(declined), 0);
    // The clean twin: the same run without the forgery agrees on every order.
    let clean = run_with(&s, None).await;
    let c = check(&clean, "money_matches_state");
    assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
    assert!(c.observed.starts_with("0 of "), "{}", c.observed);
}

#[tokio::test(start_paused = true)]
async fn checkout_success_rate_catches_acks_slower_than_the_timeout() {
    let s = control();
    let fault = Fault::SlowAck {
        every: 10,
        delay: Duration::from_secs(3),
    };
    let r = run_with(&s, Some(sabotage(&s, fault))).await;
    let c = check(&r, "checkout_success_rate");
    assert_eq!(c.verdict, Verdict::Fail);
    assert_eq!(c.observed, "90.00% (900 of 1000)");
    assert_eq!(r.summary.orders.failed, 100);
    // The late acks were stored: nothing is lost, the shopper just gave up.
    assert_eq!(check(&r, "no_loss").verdict, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn completion_rate_catches_a_warehouse_that_never_fulfils() {
    let mut s = control();
    s.services.warehouse.enabled = false;
    let r = run_with(&s, None).await;
    let c = check(&r, "completion_rate");
    assert_eq!(c.verdict, Verdict::Fail);
    // Only the declined cards reached their terminal state.
    let declines = r.summary.orders.declined;
    assert!(
        c.observed.contains(&format!("({declines} of 1000)")),
        "{}",
        c.observed
    );
    assert_eq!(check(&r, "checkout_success_rate").verdict, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn latency_slo_catches_a_slow_warehouse() {
    let mut s = control();
    s.services.warehouse.latency =
        doorbuster::scenario::model::LatencyDist::Fixed(Duration::from_secs(4));
    let r = run_with(&s, None).await;
    let c = check(&r, "latency order.created -> order.fulfilled p99");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert_eq!(check(&r, "no_loss").verdict, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn no_duplicate_effects_names_every_double_charged_order() {
    let mut s = bundled("double-charge");
    s.provider.via = ProviderVia::InProcess;
    let r = run_with(&s, None).await;
    let c = check(&r, "no_duplicate_effects");
    assert_eq!(c.verdict, Verdict::Fail);
    // A non-idempotent payment service charges every resubmitted order twice, and only those.
    let factory = OrderFactory::new(s.seed, &s.orders);
    let expected: HashSet<u64> = (0..r.summary.orders.attempted)
        .filter(|&i| factory.plan(i).resubmit && !factory.plan(i).declines)
        .collect();
    let charged = r.provider.captures_per_order();
    let doubled: HashSet<u64> = charged.doubled().into_iter().map(|(o, _)| o).collect();
    assert_eq!(doubled, expected);
    assert!(!expected.is_empty());
    assert_eq!(
        c.observed,
        format!(
            "{} orders charged more than once; no other effect repeated",
            expected.len()
        )
    );
    // Every double-charged order is named, in order.
    let mut named: Vec<u64> = expected.iter().copied().collect();
    named.sort_unstable();
    let named: Vec<String> = named
        .iter()
        .map(|o| format!("order {o}: payment: charged 2 times"))
        .collect();
    assert_eq!(c.evidence, named);
    assert_eq!(c.evidence_total, named.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn duplicate_deliveries_are_counted_and_a_non_idempotent_email_is_caught() {
    let s = control();
    let fault = Fault::Duplicate {
        topic: Topic::PaymentSucceeded,
    };
    // Idempotent email: duplicates delivered, counted, and no second email.
    let r = run_with(&s, Some(sabotage(&s, fault.clone()))).await;
    assert!(r.summary.deliveries.duplicates > 0);
    assert_eq!(check(&r, "no_duplicate_effects").verdict, Verdict::Pass);
    // The same duplicates into an email service without idempotency: second emails.
    let mut broken = s.clone();
    broken.services.email.idempotent = false;
    let r = run_with(&broken, Some(sabotage(&broken, fault))).await;
    let c = check(&r, "no_duplicate_effects");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.observed.contains("orders with email sent more than once"),
        "{}",
        c.observed
    );
    assert!(
        c.evidence.iter().any(|e| e.ends_with("email sent 2 times")),
        "{:?}",
        c.evidence
    );
}

#[tokio::test(start_paused = true)]
async fn per_key_order_catches_a_reordered_key() {
    let s = control();
    let factory = OrderFactory::new(s.seed, &s.orders);
    let order = (0..1_000)
        .find(|&i| factory.plan(i).resubmit)
        .expect("a resubmitted order");
    let r = run_with(&s, Some(sabotage(&s, Fault::Reorder { order }))).await;
    let c = check(&r, "per_key_order");
    assert_eq!(c.verdict, Verdict::Fail);
    // payment, inventory and analytics all saw the resubmit before the first submission.
    assert_eq!(c.observed, "3 out-of-order deliveries");
    let mut expected: Vec<String> = ["payment", "inventory", "analytics"]
        .iter()
        .map(|s| format!("{s} <- order.created: 1 out of order"))
        .collect();
    expected.extend(["payment", "inventory", "analytics"].iter().map(|s| {
        format!(
            "order {order}: {s} <- order.created: a later event of the order was delivered first"
        )
    }));
    assert_eq!(c.evidence, expected);
}

/// A sample's value in OpenMetrics text: the line `name{labels} value` (or `name value`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_are_scraped_while_the_run_goes_and_end_as_the_summary_says() {
    // Real time: a scraper polls /metrics over loopback as Prometheus would. The email
    // service takes 3 s an order, so the drain lasts that long after the load: the last
    // scrapes see the final checkout counts, which must be the summary's.
    let s = doorbuster::scenario::parse(
        "metrics.yaml",
        "name: metrics\nseed: 3\nload:\n  arrivals: uniform\n  phases:\n    - { hold: 3s, rate: 40/s }\n  drain: 10s\nservices:\n  email: { latency: 3s }\nprovider: { via: in_process, latency: 1ms }\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let run = tokio::spawn(async move {
        let options = doorbuster::run::RunOptions {
            no_files: true,
            metrics_listen: Some(addr),
            ..Default::default()
        };
        doorbuster::run::execute(&s, options).await
    });
    let client = doorbuster::http_client::builder().build().unwrap();
    let (mut scrapes, mut last, mut content_type) = (0, String::new(), String::new());
    while !run.is_finished() {
        if let Ok(r) = client.get(format!("http://{addr}/metrics")).send().await {
            content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
            last = r.text().await.unwrap();
            scrapes += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = run.await.unwrap().expect("the run completes");
    assert!(scrapes >= 10, "{scrapes} scrapes");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(last.ends_with("# EOF\n"), "{last}");
    let o = &r.summary.orders;
    let value = |series: &str| sample(&last, series).unwrap_or_else(|| panic!("{series}\n{last}"));
    assert_eq!(value("doorbuster_orders_planned"), o.planned as f64);
    assert_eq!(
        value("doorbuster_orders_attempted_total"),
        o.attempted as f64
    );
    assert_eq!(value("doorbuster_orders_accepted_total"), o.accepted as f64);
    assert_eq!(
        value("doorbuster_orders_failed_total{outcome=\"refused\"}"),
        o.publish_refused as f64
    );
    let checkout = &r.summary.latency[0];
    assert_eq!(checkout.stage, "order.created");
    assert_eq!(
        value("doorbuster_latency_seconds_count{stage=\"order.created\"}"),
        checkout.percentiles.count as f64
    );
    assert_eq!(
        value("doorbuster_latency_seconds_bucket{le=\"+Inf\",stage=\"order.created\"}"),
        checkout.percentiles.count as f64
    );
    // Buckets are cumulative: never fewer below a higher bound.
    let bucket = |le: &str| {
        value(&format!(
            "doorbuster_latency_seconds_bucket{{le=\"{le}\",stage=\"order.created\"}}"
        ))
    };
    assert!(bucket("0.001") <= bucket("0.01") && bucket("0.01") <= bucket("+Inf"));
    assert_eq!(
        value("doorbuster_provider_calls_total{answer=\"captured\"}"),
        r.summary.provider.captures as f64
    );
    assert!(value("doorbuster_elapsed_seconds") >= 5.0);
    // The mails were still on their way while the load had ended: not settled then, all
    // settled in the end.
    assert_eq!(o.completed, o.accepted);
    assert!(
        last.contains("# TYPE doorbuster_consumer_lag gauge"),
        "{last}"
    );
    // A non-loopback address is refused before the run starts.
    let remote = doorbuster::run::RunOptions {
        no_files: true,
        metrics_listen: Some("10.0.0.1:9464".parse().unwrap()),
        ..Default::default()
    };
    let s = doorbuster::scenario::parse(
        "m.yaml",
        "name: m\nload:\n  phases:\n    - { hold: 1s, rate: 1/s }\n",
    )
    .unwrap();
    let refused = doorbuster::run::execute(&s, remote).await;
    assert!(
        matches!(&refused, Err(doorbuster::run::RunError::Metrics(why)) if why.contains("loopback")),
        "{:?}",
        refused.err()
    );
}

/// Every metric the Grafana dashboard queries is one doorbuster serves: the dashboard cannot
/// drift into charting names that do not exist.
#[test]
fn the_grafana_dashboard_queries_only_served_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/doorbuster.json"
    )))
    .expect("the dashboard is JSON");
    let s = doorbuster::scenario::parse(
        "m.yaml",
        "name: m\nload:\n  phases:\n    - { hold: 1s, rate: 1/s }\n",
    )
    .unwrap();
    let schedule = Arc::new(Schedule::plan(&s.load, s.seed));
    let clock = doorbuster::clock::Clock::start();
    let live = doorbuster::report::metrics::Live {
        observer: Arc::new(doorbuster::observe::Observer::new(clock.clone(), 1)),
        provider: Arc::new(doorbuster::services::provider::ProviderCore::new(
            1,
            &s.provider,
            clock,
        )),
        schedule,
    };
    let served = doorbuster::report::metrics::render(&live);
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("doorbuster_"))
            {
                queried += 1;
                let family = ["_bucket", "_total"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(
                    served.contains(&format!("# TYPE {family} ")),
                    "{name} is not served:\n{served}"
                );
            }
        }
    }
    assert!(queried >= 15, "{queried}");
}
