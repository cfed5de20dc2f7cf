//! Observe mode against a real broker: doorbuster publishes orders to the user's own stream,
//! a shop that is not doorbuster's (a separate task on its own connection, with the broker's
//! own client, as the user's service would be) consumes them and writes its outputs to its
//! own streams, and the taps judge those outputs. The clean shop passes; each planted bug fails the check that
//! should catch it, and the evidence names the orders it hurt.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use ::redis::AsyncCommands;
use doorbuster::run::{RunOptions, RunResult, execute};
use doorbuster::transport::BrokerKind;
use doorbuster::verify::Verdict;

/// The bugs the test shop can have.
#[derive(Clone, Copy, Default)]
struct Bugs {
    /// Every order whose id is a multiple of this gets no `paid` output (a dropped event).
    drop_every: Option<u64>,
    /// Every order whose id is a multiple of this gets its `paid` output twice, as two
    /// events with the same event id (a publish retried after a lost answer).
    twice_every: Option<u64>,
    /// Writes one `paid` output for an order the run never made.
    foreign: bool,
}

/// What the shop did, to hold the evidence to.
#[derive(Default)]
struct Did {
    dropped: BTreeSet<u64>,
    twice: BTreeSet<u64>,
}

/// Which of the shop's outputs an event goes to.
#[derive(Clone, Copy)]
enum Out {
    Received,
    Paid,
    Declined,
}

/// Where the shop reads its orders and writes its outputs, as the broker names them.
#[derive(Clone)]
struct Names {
    orders: String,
    received: String,
    paid: String,
    declined: String,
}

impl Names {
    /// `{ns}{sep}orders` and so on.
    fn new(ns: &str, sep: &str) -> Names {
        let name = |s: &str| format!("{ns}{sep}{s}");
        Names {
            orders: name("orders"),
            received: name("received"),
            paid: name("paid"),
            declined: name("declined"),
        }
    }

    fn of(&self, out: Out) -> &str {
        match out {
            Out::Received => &self.received,
            Out::Paid => &self.paid,
            Out::Declined => &self.declined,
        }
    }
}

/// The user's shop, apart from any broker: per order it writes `received` always, and
/// `paid` (approved cards) or `declined` (declining cards) with the order id in the JSON
/// body at `/order`.
struct Logic {
    bugs: Bugs,
    did: Arc<Mutex<Did>>,
    event: u64,
    /// A shopper's second click carries the same idempotency key: handled once.
    handled: std::collections::HashSet<String>,
    foreign: bool,
}

impl Logic {
    fn new(bugs: Bugs, did: Arc<Mutex<Did>>) -> Logic {
        Logic {
            bugs,
            did,
            event: 0,
            handled: Default::default(),
            foreign: bugs.foreign,
        }
    }

    /// The outputs one order (its rendered body) makes, in the order they are written.
    fn outputs(&mut self, body: &[u8]) -> Vec<(Out, String)> {
        let order: serde_json::Value = serde_json::from_slice(body).unwrap();
        if !self
            .handled
            .insert(order["idempotency_key"].as_str().unwrap().to_owned())
        {
            return Vec::new();
        }
        let id = order["order_id"].as_u64().unwrap();
        let mut outs = Vec::new();
        if std::mem::take(&mut self.foreign) {
            // Once the run is on (its taps are in place): an order it never made.
            let body = r#"{"order":"ffffffff00000000000f4240","event":"x"}"#;
            outs.push((Out::Paid, body.to_owned()));
        }
        let declines = order["payment"]["card_token"]
            .as_str()
            .unwrap()
            .contains("Declined");
        let mut out = |name: &str| {
            self.event += 1;
            format!(
                r#"{{"order":{id},"event":"e{}","type":"{name}"}}"#,
                self.event
            )
        };
        outs.push((Out::Received, out("received")));
        if declines {
            outs.push((Out::Declined, out("declined")));
            return outs;
        }
        if self.bugs.drop_every.is_some_and(|n| id.is_multiple_of(n)) {
            self.did.lock().unwrap().dropped.insert(id);
            return outs;
        }
        let body = out("paid");
        outs.push((Out::Paid, body.clone()));
        if self.bugs.twice_every.is_some_and(|n| id.is_multiple_of(n)) {
            self.did.lock().unwrap().twice.insert(id);
            outs.push((Out::Paid, body));
        }
        outs
    }
}

/// The shop on Redis Streams: reads `orders` from its end.
async fn redis_shop(
    url: String,
    names: Names,
    mut logic: Logic,
    stop: tokio_util::sync::CancellationToken,
) {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut after = "$".to_owned();
    while !stop.is_cancelled() {
        let opts = ::redis::streams::StreamReadOptions::default()
            .block(200)
            .count(100);
        let reply: ::redis::streams::StreamReadReply =
            match conn.xread_options(&[&names.orders], &[&after], &opts).await {
                Ok(r) => r,
                Err(_) => continue,
            };
        for key in reply.keys {
            for entry in key.ids {
                after = entry.id.clone();
                let Some(::redis::Value::BulkString(body)) = entry.map.get("payload") else {
                    continue;
                };
                for (out, body) in logic.outputs(body) {
                    let _: String = conn
                        .xadd(names.of(out), "*", &[("payload", &body)])
                        .await
                        .unwrap();
                }
            }
        }
    }
}

/// The user's stream on NATS JetStream: `{ns}` takes every subject `{ns}.>`; the shop is its
/// durable consumer `shop`, made before the run from the stream's end.
async fn nats_setup(url: &str, ns: &str) -> async_nats::jetstream::Context {
    use async_nats::jetstream::{consumer::pull, stream};
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js
        .create_stream(stream::Config {
            name: ns.to_owned(),
            subjects: vec![format!("{ns}.>")],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("shop".to_owned()),
            filter_subject: format!("{ns}.orders"),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    js
}

/// The shop on NATS JetStream: pulls from its durable consumer, publishes its outputs
/// through JetStream and acks each order after its outputs were acked.
async fn nats_shop(
    js: async_nats::jetstream::Context,
    stream: String,
    names: Names,
    mut logic: Logic,
    stop: tokio_util::sync::CancellationToken,
) {
    use futures_util::StreamExt;
    let stream = js.get_stream(&stream).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("shop").await.unwrap();
    let mut messages = consumer
        .stream()
        .heartbeat(std::time::Duration::from_secs(1))
        .expires(std::time::Duration::from_secs(3))
        .messages()
        .await
        .unwrap();
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            m = messages.next() => match m {
                Some(Ok(m)) => m,
                _ => continue,
            },
        };
        for (out, body) in logic.outputs(&message.payload) {
            js.publish(names.of(out).to_owned(), body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        message.ack().await.unwrap();
    }
}

/// The user's side on RabbitMQ: one topic exchange `{ns}`, the routing key naming the topic
/// (`orders`, `paid`, ...); the shop's queue `{ns}.shop` and an audit queue `{ns}.audit` that
/// nobody reads both take `orders`.
async fn rabbitmq_setup(url: &str, ns: &str) -> lapin::Connection {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let topic = lapin::ExchangeKind::Topic;
    ch.exchange_declare(ns.into(), topic, durable, FieldTable::default())
        .await
        .unwrap();
    for queue in ["shop", "audit"] {
        let queue = format!("{ns}.{queue}");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(queue.as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
        let bind = QueueBindOptions::default();
        ch.queue_bind(
            queue.into(),
            ns.into(),
            "orders".into(),
            bind,
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    conn
}

/// The shop on RabbitMQ: consumes its queue with manual acks, publishes its outputs to the
/// exchange (publisher confirms) and acks each order after its outputs were confirmed.
async fn rabbitmq_shop(
    url: String,
    ns: String,
    names: Names,
    mut logic: Logic,
    stop: tokio_util::sync::CancellationToken,
) {
    use futures_util::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    };
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut orders = ch
        .basic_consume(
            format!("{ns}.shop").as_str().into(),
            "shop".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => return,
            d = orders.next() => match d {
                Some(Ok(d)) => d,
                _ => return,
            },
        };
        for (out, body) in logic.outputs(&delivery.data) {
            // `{ns}:paid`: the exchange, and the routing key.
            let (exchange, key) = names.of(out).split_once(':').unwrap();
            ch.basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
}

/// The shop's Kafka client settings.
fn kafka_config(url: &str) -> rdkafka::ClientConfig {
    let servers = url.trim_start_matches("kafka://").trim_end_matches('/');
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", servers);
    config
}

/// The user's topics on Kafka: the orders and the three outputs, 3 partitions each, made
/// before the run as the user would.
async fn kafka_setup(url: &str, names: &Names) -> rdkafka::ClientConfig {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let config = kafka_config(url);
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = config.create().unwrap();
    let all = [&names.orders, &names.received, &names.paid, &names.declined];
    let topics: Vec<NewTopic<'_>> = all
        .iter()
        .map(|n| NewTopic::new(n, 3, TopicReplication::Fixed(1)))
        .collect();
    let made = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap();
    assert!(made.iter().all(Result::is_ok), "{made:?}");
    config
}

/// The shop on Kafka: a consumer in its own group `{ns}-shop` (rdkafka's StreamConsumer),
/// joined before the run; it writes its outputs through its own producer and commits each
/// order after its outputs were acked.
async fn kafka_shop(
    config: rdkafka::ClientConfig,
    group: String,
    names: Names,
    mut logic: Logic,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use rdkafka::Message;
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let consumer: StreamConsumer = config
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Tansu holds a fetch for half its wait even when it has records.
        .set("fetch.wait.max.ms", "20")
        .create()
        .unwrap();
    consumer.subscribe(&[&names.orders]).unwrap();
    let producer: FutureProducer = config.clone().set("linger.ms", "1").create().unwrap();
    let consumer = Arc::new(consumer);
    let shop = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    m = consumer.recv() => match m {
                        Ok(m) => m,
                        Err(_) => continue,
                    },
                };
                for (out, body) in logic.outputs(message.payload().unwrap_or_default()) {
                    let record: FutureRecord<'_, (), str> =
                        FutureRecord::to(names.of(out)).payload(&body);
                    producer
                        .send(record, std::time::Duration::from_secs(10))
                        .await
                        .unwrap();
                }
                consumer
                    .commit_message(&message, CommitMode::Async)
                    .unwrap();
            }
        })
    };
    // Joined: the group assigned it the orders' partitions (the task above serves the
    // rebalance).
    // At most 45 s.
    for polls in 0.. {
        if consumer.assignment().map_or(0, |a| a.count()) > 0 {
            break;
        }
        assert!(polls < 450, "the shop did not join");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    shop
}

/// How many events `topic` holds, read from the start to the end of every partition.
fn kafka_count(config: &rdkafka::ClientConfig, topic: &str) -> u64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "doorbuster-test-reader")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "20")
        .create()
        .unwrap();
    let wait = std::time::Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), wait).unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut waiting = std::collections::HashSet::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
        waiting.insert(p.id());
    }
    consumer.assign(&tpl).unwrap();
    let mut count = 0;
    // At most 100 polls of 100 ms that bring nothing.
    let mut idle = 0;
    while !waiting.is_empty() {
        assert!(
            idle < 100,
            "{topic} not read to the end: {count} read, {waiting:?} left"
        );
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(_)) => count += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                waiting.remove(&p);
            }
            _ => idle += 1,
        }
    }
    count
}

/// The scenario against the shop at `url`; the orders go to its `orders` topic, or, given a
/// checkout endpoint, are POSTed there and the taps read `url`.
fn scenario(url: &str, names: &Names, checkout: Option<&str>) -> doorbuster::scenario::Scenario {
    let Names {
        orders,
        received,
        paid,
        declined,
    } = names;
    let (target, entry) = match checkout {
        None => (url, format!("orders_to: {orders}")),
        Some(endpoint) => (endpoint, format!("broker: \"{url}\"")),
    };
    let text = format!(
        r#"name: black-box
seed: 5
target: "{target}"
load:
  arrivals: uniform
  phases:
    - {{ hold: 3s, rate: 100/s }}
orders:
  declines: 10%
observe:
  {entry}
  settle_within: 4s
  outputs:
    received:
      from: {received}
      order: /order
      expect: {{ each: 1 }}
    paid:
      from: {paid}
      order: /order
      event_id: /event
      expect: {{ approved: 1 }}
    declined:
      from: {declined}
      order: /order
      filter: {{ at: /type, equals: declined }}
      expect: {{ declined: 1 }}
checks:
  checkout_success_rate: ">= 99%"
"#
    );
    match doorbuster::scenario::parse("black-box.yaml", &text) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// Runs the scenario against the shop on `kind`; afterwards checks the run left the user's
/// orders topic in place with every order it published, and removes the user's topics.
async fn run_against_shop_on(kind: BrokerKind, bugs: Bugs) -> Option<(RunResult, Did)> {
    run_against(kind, bugs, false).await
}

/// A checkout endpoint on loopback that takes each order into the shop's Redis stream, as a
/// shop's API puts orders on its broker; its URL.
async fn checkout_endpoint(url: &str, stream: String) -> String {
    let client = ::redis::Client::open(url).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let app = axum::Router::new().route(
        "/checkout",
        axum::routing::post(move |body: bytes::Bytes| {
            let (mut conn, stream) = (conn.clone(), stream.clone());
            async move {
                let added: ::redis::RedisResult<String> =
                    conn.xadd(&stream, "*", &[("payload", body.as_ref())]).await;
                match added {
                    Ok(_) => axum::http::StatusCode::CREATED,
                    Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/checkout")
}

/// Runs the scenario against the shop on `kind`, its orders published to the shop's topic or
/// (`through_checkout`, Redis) POSTed to a checkout endpoint that puts them there.
async fn run_against(
    kind: BrokerKind,
    bugs: Bugs,
    through_checkout: bool,
) -> Option<(RunResult, Did)> {
    // Held to the end: a test that restarts the server waits for this one.
    let _server = super::broker(kind).await?;
    let url = super::broker_url(kind);
    let ns = super::fresh_namespace();
    let did = Arc::new(Mutex::new(Did::default()));
    let logic = Logic::new(bugs, did.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut rabbitmq = None;
    let (names, shop, nats) = match kind {
        BrokerKind::Redis => {
            let names = Names::new(&ns, ":");
            let shop = redis_shop(url.clone(), names.clone(), logic, stop.clone());
            (names, tokio::spawn(shop), None)
        }
        BrokerKind::Nats => {
            let names = Names::new(&ns, ".");
            let js = nats_setup(&url, &ns).await;
            let shop = nats_shop(js.clone(), ns.clone(), names.clone(), logic, stop.clone());
            (names, tokio::spawn(shop), Some(js))
        }
        BrokerKind::Rabbitmq => {
            // `{ns}:orders` is the exchange `{ns}` with the routing key `orders`.
            let names = Names::new(&ns, ":");
            rabbitmq = Some(rabbitmq_setup(&url, &ns).await);
            let shop = rabbitmq_shop(url.clone(), ns.clone(), names.clone(), logic, stop.clone());
            (names, tokio::spawn(shop), None)
        }
        BrokerKind::Kafka => {
            let names = Names::new(&ns, ".");
            let config = kafka_setup(&url, &names).await;
            let group = format!("{ns}-shop");
            let shop = kafka_shop(config, group, names.clone(), logic, stop.clone()).await;
            (names, shop, None)
        }
    };
    // The shop is reading from the stream's end before the first order goes out.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let checkout = if through_checkout {
        Some(checkout_endpoint(&url, names.orders.clone()).await)
    } else {
        None
    };
    let result = execute(
        &scenario(&url, &names, checkout.as_deref()),
        RunOptions {
            no_files: true,
            ..Default::default()
        },
    )
    .await
    .expect("the run completes");
    stop.cancel();
    shop.await.unwrap();
    // The user's topics are the user's: the run left the orders where they were.
    let published = result.summary.orders.attempted + result.summary.orders.resubmits;
    if let Some(conn) = rabbitmq {
        rabbitmq_kept(&conn, &ns, published).await;
    } else if let Some(js) = nats {
        let stream = js.get_stream(&ns).await.unwrap();
        let info = stream.info_with_subjects(&names.orders).await.unwrap();
        let kept: Vec<_> = futures_util::StreamExt::collect(info).await;
        let kept: u64 = kept.into_iter().map(|s| s.unwrap().1 as u64).sum();
        assert_eq!(kept, published);
        js.delete_stream(&ns).await.unwrap();
    } else if kind == BrokerKind::Kafka {
        let config = kafka_config(&url);
        let (c, orders) = (config.clone(), names.orders.clone());
        let kept = tokio::task::spawn_blocking(move || kafka_count(&c, &orders))
            .await
            .unwrap();
        assert_eq!(kept, published);
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            config.create().unwrap();
        let all = [
            &*names.orders,
            &names.received,
            &names.paid,
            &names.declined,
        ];
        let opts = rdkafka::admin::AdminOptions::new();
        admin.delete_topics(&all, &opts).await.unwrap();
    } else {
        let client = ::redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let kept: usize = conn.xlen(&names.orders).await.unwrap();
        assert_eq!(kept as u64, published);
        let all = [&names.orders, &names.received, &names.paid, &names.declined];
        let _: () = conn.del(&all).await.unwrap();
    }
    let did = std::mem::take(&mut *did.lock().unwrap());
    Some((result, did))
}

/// The user's audit queue, which nobody reads, holds every order the run published; then the
/// user's exchange and queues are removed.
async fn rabbitmq_kept(conn: &lapin::Connection, ns: &str, published: u64) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let audit = format!("{ns}.audit");
    let q = ch
        .queue_declare(audit.as_str().into(), passive, Default::default())
        .await
        .unwrap();
    assert_eq!(u64::from(q.message_count()), published);
    for queue in [audit, format!("{ns}.shop")] {
        ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    ch.exchange_delete(ns.into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

pub(super) fn check<'a>(r: &'a RunResult, name: &str) -> &'a doorbuster::verify::CheckResult {
    r.summary
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check in {:?}", r.summary.checks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_clean_shop_passes_and_its_outputs_are_timed() {
    clean_shop_passes(BrokerKind::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_shop_that_drops_doubles_or_invents_outputs_fails_and_names_the_orders() {
    buggy_shop_fails(BrokerKind::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shop_passes_and_its_outputs_are_timed() {
    clean_shop_passes(BrokerKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_drops_doubles_or_invents_outputs_fails_and_names_the_orders() {
    buggy_shop_fails(BrokerKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_clean_shop_passes_and_its_outputs_are_timed() {
    clean_shop_passes(BrokerKind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_shop_that_drops_doubles_or_invents_outputs_fails_and_names_the_orders() {
    buggy_shop_fails(BrokerKind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_a_clean_shop_passes_and_its_outputs_are_timed() {
    clean_shop_passes(BrokerKind::Rabbitmq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_a_shop_that_drops_doubles_or_invents_outputs_fails_and_names_the_orders() {
    buggy_shop_fails(BrokerKind::Rabbitmq).await;
}

/// The clean twin: every check passes, every order is received once and paid or declined.
async fn clean_shop_passes(kind: BrokerKind) {
    let Some((r, _)) = run_against_shop_on(kind, Bugs::default()).await else {
        return;
    };
    for name in ["no_loss", "no_duplicate_effects", "no_unknown_outputs"] {
        let c = check(&r, name);
        assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
    }
    assert_eq!(r.summary.verdict, doorbuster::exit::RunVerdict::Pass);
    let o = &r.summary.orders;
    assert_eq!(o.accepted, 300, "{o:?}");
    let outputs = &r.summary.outputs;
    assert_eq!(outputs.len(), 3);
    // Every order was received once (a resubmit is the same order: the shop handles it once),
    // and either paid or declined.
    let received = &outputs[0];
    let declined = &outputs[2];
    assert_eq!(received.matched, 300);
    assert!(
        declined.matched > 10 && declined.matched < 60,
        "{declined:?}"
    );
    assert_eq!(outputs[1].matched + declined.matched, 300);
    assert!(received.latency.count == 300 && received.latency.p50_us > 0);
}

/// The planted bugs: a dropped, a doubled and an invented output each fail their check,
/// naming the orders.
async fn buggy_shop_fails(kind: BrokerKind) {
    let bugs = Bugs {
        drop_every: Some(17),
        twice_every: Some(13),
        foreign: true,
    };
    let Some((r, did)) = run_against_shop_on(kind, bugs).await else {
        return;
    };
    let loss = check(&r, "no_loss");
    assert_eq!(loss.verdict, Verdict::Fail, "{loss:?}");
    assert!(!did.dropped.is_empty());
    for order in &did.dropped {
        assert!(
            loss.evidence
                .iter()
                .any(|e| e.starts_with(&format!("order {order} "))
                    && e.contains("no `paid`")
                    && e.contains("stuck after `received`")),
            "order {order} not named: {:?}",
            loss.evidence
        );
    }
    assert_eq!(loss.evidence_count() as usize, did.dropped.len());

    let dups = check(&r, "no_duplicate_effects");
    assert_eq!(dups.verdict, Verdict::Fail, "{dups:?}");
    for order in &did.twice {
        assert!(
            dups.evidence
                .iter()
                .any(|e| e.starts_with(&format!("order {order} "))
                    && e.contains("`paid` seen 2 times, expected 1")),
            "order {order} not named: {:?}",
            dups.evidence
        );
    }
    assert!(
        dups.observed.contains(&format!(
            "{} `paid` events published again",
            did.twice.len()
        )),
        "{}",
        dups.observed
    );

    let unknown = check(&r, "no_unknown_outputs");
    assert_eq!(unknown.verdict, Verdict::Fail, "{unknown:?}");
    assert!(
        unknown.evidence[0].contains("ffffffff00000000000f4240"),
        "{unknown:?}"
    );
    assert_eq!(r.summary.verdict, doorbuster::exit::RunVerdict::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_posted_to_a_checkout_endpoint_are_followed_to_the_shops_outputs() {
    let bugs = Bugs {
        drop_every: Some(23),
        ..Bugs::default()
    };
    let Some((r, did)) = run_against(BrokerKind::Redis, bugs, true).await else {
        return;
    };
    assert_eq!(r.summary.orders.accepted, 300);
    assert_eq!(r.summary.outputs[0].matched, 300);
    assert_eq!(check(&r, "checkout_success_rate").verdict, Verdict::Pass);
    let loss = check(&r, "no_loss");
    assert_eq!(loss.verdict, Verdict::Fail, "{loss:?}");
    assert_eq!(loss.evidence_count() as usize, did.dropped.len());
    assert_eq!(check(&r, "no_duplicate_effects").verdict, Verdict::Pass);
}

/// A checkout endpoint that confirms each order to a webhook (as a shop calls a partner's
/// API), except the orders whose id is a multiple of `drop_every`; its URL.
async fn confirming_checkout(hook: String, drop_every: Option<u64>) -> String {
    let client = doorbuster::http_client::builder().build().unwrap();
    let app = axum::Router::new().route(
        "/checkout",
        axum::routing::post(move |body: bytes::Bytes| {
            let (client, hook) = (client.clone(), hook.clone());
            async move {
                let order: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let id = order["order_id"].as_u64().unwrap();
                if !drop_every.is_some_and(|n| id.is_multiple_of(n)) {
                    tokio::spawn(async move {
                        let body = format!(r#"{{"order":{id}}}"#);
                        client.post(hook).body(body).send().await.unwrap();
                    });
                }
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/checkout")
}

async fn run_with_webhook(drop_every: Option<u64>) -> RunResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = format!("http://127.0.0.1:{port}/hooks/confirmed");
    let endpoint = confirming_checkout(hook.clone(), drop_every).await;
    let text = format!(
        r#"name: webhook
seed: 3
target: "{endpoint}"
load:
  arrivals: uniform
  phases:
    - {{ hold: 2s, rate: 100/s }}
orders:
  resubmits: 0%
observe:
  settle_within: 3s
  outputs:
    confirmed:
      from: "{hook}"
      order: /order
      expect: {{ each: 1 }}
"#
    );
    let scenario =
        doorbuster::scenario::parse("webhook.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    execute(
        &scenario,
        RunOptions {
            no_files: true,
            ..Default::default()
        },
    )
    .await
    .expect("the run completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_the_shop_calls_is_a_tap() {
    // Clean twin: every order confirmed once.
    let r = run_with_webhook(None).await;
    assert_eq!(r.summary.outputs[0].matched, 200);
    for name in ["no_loss", "no_duplicate_effects", "no_unknown_outputs"] {
        assert_eq!(
            check(&r, name).verdict,
            Verdict::Pass,
            "{:?}",
            check(&r, name)
        );
    }
    // The shop forgets every 29th confirmation: those orders are named.
    let r = run_with_webhook(Some(29)).await;
    let loss = check(&r, "no_loss");
    assert_eq!(loss.verdict, Verdict::Fail);
    let named: Vec<&str> = loss
        .evidence
        .iter()
        .map(|e| e.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(named, ["0", "29", "58", "87", "116", "145", "174"]);
}
