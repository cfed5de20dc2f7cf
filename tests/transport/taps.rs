//! Observe mode's two broker abilities, case by case on each real broker: a tap sees what is
//! published to the user's topic after it was made and nothing before, and leaves the user's
//! consumers where they were; the orders reach the user's own topic with the user's key and
//! headers, and cleanup removes what the run made and never the user's topic.

use std::time::Duration;

use bytes::Bytes;
use doorbuster::events::UserFields;
use doorbuster::transport::{Tap, Tapped};

use super::*;

/// Reads from `tap` until `n` events came or nothing came for `quiet`.
async fn tapped(tap: &mut Box<dyn Tap>, n: usize, quiet: Duration) -> Vec<Tapped> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(quiet, tap.next()).await {
            Ok(Ok(Some(t))) => out.push(t),
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(e)) => panic!("tap failed: {e}"),
        }
    }
    out
}

fn bodies(events: &[Tapped]) -> Vec<String> {
    events
        .iter()
        .map(|t| String::from_utf8_lossy(&t.body).into_owned())
        .collect()
}

fn header<'a>(t: &'a Tapped, name: &str) -> Option<&'a [u8]> {
    t.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// An order as observe mode publishes it: the user's rendered key and headers beside it.
fn user_order(order: u64) -> Envelope {
    Envelope {
        user: Some(Arc::new(UserFields::from_rendered(
            Some(format!("cart-{order}")),
            vec![("x-tenant".to_owned(), "acme".to_owned())],
        ))),
        ..event(order, 0)
    }
}

/// One of doorbuster's own events (not the orders): it goes to the run's own topic.
fn own_event(order: u64) -> Envelope {
    Envelope {
        topic: Topic::Fulfilled,
        ..event(order, 0)
    }
}

/// The tapped `x-order` headers, as numbers.
fn orders_of(events: &[Tapped]) -> Vec<u64> {
    events
        .iter()
        .map(|t| {
            let v = header(t, "x-order").expect("x-order header");
            std::str::from_utf8(v).unwrap().parse().unwrap()
        })
        .collect()
}

mod nats {
    use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
    use async_nats::jetstream::{self, stream};
    use futures_util::StreamExt;

    use super::*;

    async fn client() -> jetstream::Context {
        let url = broker_url(BrokerKind::Nats);
        jetstream::new(async_nats::connect(url).await.expect("NATS client"))
    }

    /// The user's own stream `name`, taking the subjects `{name}.>`.
    async fn user_stream(js: &jetstream::Context, name: &str) -> stream::Stream {
        js.create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.>")],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("the user's stream")
    }

    async fn publish(js: &jetstream::Context, subject: &str, order: u64) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("x-order", order.to_string().as_str());
        let body = Bytes::from(format!("order {order}"));
        let ack = js.publish_with_headers(subject.to_owned(), headers, body);
        ack.await.unwrap().await.expect("PubAck");
    }

    /// What a tap must not change about the user's consumer.
    async fn position(c: &mut PullConsumer) -> (u64, usize, u64, u64) {
        let i = c.info().await.unwrap();
        (
            i.num_pending,
            i.num_ack_pending,
            i.ack_floor.stream_sequence,
            i.delivered.stream_sequence,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_a_tap_sees_what_comes_after_it_and_leaves_the_users_consumer_alone() {
        let Some(server) = broker(BrokerKind::Nats).await else {
            return;
        };
        let js = client().await;
        let ns = fresh_namespace();
        let user = user_stream(&js, &ns).await;
        let (paid, other) = (format!("{ns}.paid"), format!("{ns}.other"));
        // The user's payment service: a durable consumer that has read and acked two of the
        // three events before the tap, and holds none.
        let mut payment: PullConsumer = user
            .create_consumer(pull::Config {
                durable_name: Some("payment".to_owned()),
                filter_subject: paid.clone(),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        for order in 0..3 {
            publish(&js, &paid, order).await;
        }
        let mut batch = payment.fetch().max_messages(2).messages().await.unwrap();
        while let Some(m) = batch.next().await {
            m.unwrap().double_ack().await.unwrap();
        }
        let before = position(&mut payment).await;
        assert_eq!(before, (1, 0, 2, 2));

        let mut tap = server.t.tap(&paid).await.expect("tap");
        for order in 10..15 {
            publish(&js, &paid, order).await;
        }
        // Another subject of the same stream is not the tap's.
        publish(&js, &other, 99).await;
        let got = tapped(&mut tap, 6, Duration::from_secs(2)).await;
        assert_eq!(orders_of(&got), vec![10, 11, 12, 13, 14], "{got:?}");
        assert_eq!(bodies(&got)[0], "order 10");
        assert!(
            got.iter()
                .all(|t| t.key.as_deref() == Some(paid.as_bytes()))
        );

        // The user's consumer: five more pending, nothing else moved.
        let after = position(&mut payment).await;
        assert_eq!(after, (before.0 + 5, before.1, before.2, before.3));
        // The negative control: a reader inside the user's consumer (what a tap must not
        // be) moves exactly these numbers.
        let mut stolen = payment.fetch().max_messages(1).messages().await.unwrap();
        let _held = stolen.next().await.unwrap().unwrap();
        let moved = position(&mut payment).await;
        assert_ne!(moved, after, "taking one from the user's consumer shows");

        // A tap made now sees none of what came before it, and both see what comes next.
        let mut late = server.t.tap(&paid).await.expect("second tap");
        assert!(
            tapped(&mut late, 1, Duration::from_millis(500))
                .await
                .is_empty()
        );
        publish(&js, &paid, 20).await;
        assert_eq!(
            orders_of(&tapped(&mut late, 1, Duration::from_secs(2)).await),
            vec![20]
        );
        assert_eq!(
            orders_of(&tapped(&mut tap, 1, Duration::from_secs(2)).await),
            vec![20]
        );

        // A subject no stream takes is an error naming it, not a panic.
        let nowhere = format!("{ns}-nowhere.paid");
        let e = server.t.tap(&nowhere).await.err().expect("no stream");
        assert!(e.to_string().contains(&nowhere), "{e}");

        drop((tap, late));
        js.delete_stream(&ns).await.unwrap();
        server.t.cleanup().await.expect("cleanup");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_orders_reach_the_users_subject_and_cleanup_keeps_it() {
        let js = client().await;
        let ns = fresh_namespace();
        let shop = format!("{ns}-shop");
        let orders = format!("{shop}.orders");
        let Some(server) = broker_observing(BrokerKind::Nats, &ns, &orders).await else {
            return;
        };
        let mut user = user_stream(&js, &shop).await;
        let t = &server.t;

        let ack = t
            .publish(user_order(7))
            .await
            .expect("PubAck from the user's stream");
        let m = user.get_raw_message(ack.offset).await.unwrap();
        assert_eq!(m.subject.as_str(), orders);
        assert_eq!(m.payload, event(7, 0).payload);
        let h = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(h("x-tenant").as_deref(), Some("acme"));
        assert_eq!(h("key").as_deref(), Some("cart-7"));
        assert_eq!(h("db-order-id").as_deref(), Some("7"));
        // doorbuster's own events still go to the run's stream, not the user's.
        t.publish(own_event(8)).await.expect("own event");
        assert_eq!(user.info().await.unwrap().state.messages, 1);
        assert!(js.get_stream(&ns).await.is_ok(), "the run's own stream");

        // The same event again within the run is stored once (the dedup window)...
        t.publish(user_order(7)).await.unwrap();
        assert_eq!(user.info().await.unwrap().state.messages, 1);
        // ... but another run's event with the same id is another order.
        let mut cfg = broker_config(BrokerKind::Nats, broker_url(BrokerKind::Nats));
        cfg.orders_to = Some(orders.clone());
        let other = doorbuster::transport::connect_broker(&cfg, Clock::start())
            .await
            .unwrap();
        other.publish(user_order(7)).await.unwrap();
        assert_eq!(user.info().await.unwrap().state.messages, 2);
        other.cleanup().await.unwrap();

        t.cleanup().await.expect("cleanup");
        assert!(
            js.get_stream(&ns).await.is_err(),
            "the run's stream is gone"
        );
        assert_eq!(
            user.info().await.unwrap().state.messages,
            2,
            "the user's stream is kept, with its events"
        );
        js.delete_stream(&shop).await.unwrap();

        // No stream takes the user's subject: the publish is refused, not hung.
        let mut cfg = broker_config(BrokerKind::Nats, broker_url(BrokerKind::Nats));
        cfg.orders_to = Some(format!("{ns}-nowhere.orders"));
        let lost = doorbuster::transport::connect_broker(&cfg, Clock::start())
            .await
            .unwrap();
        match lost.publish(user_order(1)).await {
            Err(TransportError::Publish { .. }) => {}
            other => panic!("expected a refused publish, got {other:?}"),
        }
        lost.cleanup().await.unwrap();
    }
}

mod rabbitmq {
    use lapin::options::{
        BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

    use super::*;

    /// The user's side of the broker: a connection of its own and a confirm-mode channel.
    async fn client() -> (Connection, Channel) {
        let url = broker_url(BrokerKind::Rabbitmq);
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("AMQP client");
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        (conn, ch)
    }

    /// The user's durable exchange `name` of `kind`.
    async fn user_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(name.into(), kind, options, FieldTable::default())
            .await
            .expect("the user's exchange");
    }

    /// The user's durable queue `name`, bound to `exchange` with `key`.
    async fn user_queue(ch: &Channel, name: &str, exchange: &str, key: &str) {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(name.into(), options, FieldTable::default())
            .await
            .expect("the user's queue");
        ch.queue_bind(
            name.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }

    async fn publish(ch: &Channel, exchange: &str, key: &str, order: u64) {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-order".into(),
            AMQPValue::LongString(LongString::from(order.to_string())),
        );
        let props = BasicProperties::default().with_headers(headers);
        let body = format!("order {order}");
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .expect("confirm");
    }

    /// What a tap must not change about the user's queue: its ready messages and consumers
    /// (a passive declare on a channel of its own, which a missing queue would close).
    async fn position(conn: &Connection, queue: &str) -> (u32, u32) {
        let ch = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .expect("the queue exists");
        let _ = ch.close(200, "probed".into()).await;
        (q.message_count(), q.consumer_count())
    }

    /// Whether a queue exists (a passive declare on a channel of its own).
    async fn queue_exists(conn: &Connection, name: &str) -> bool {
        let ch = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let found = ch
            .queue_declare(name.into(), passive, FieldTable::default())
            .await;
        if found.is_ok() {
            let _ = ch.close(200, "probed".into()).await;
        }
        found.is_ok()
    }

    /// Whether an exchange exists (a passive declare on a channel of its own).
    async fn exchange_exists(conn: &Connection, name: &str) -> bool {
        let ch = conn.create_channel().await.unwrap();
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let found = ch
            .exchange_declare(
                name.into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await;
        if found.is_ok() {
            let _ = ch.close(200, "probed".into()).await;
        }
        found.is_ok()
    }

    async fn remove(ch: &Channel, exchanges: &[&str], queues: &[&str]) {
        for q in queues {
            ch.queue_delete((*q).into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        for x in exchanges {
            ch.exchange_delete((*x).into(), ExchangeDeleteOptions::default())
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rabbitmq_a_tap_sees_what_comes_after_it_and_leaves_the_users_queue_alone() {
        // The run's namespace is known, to find the taps' queues.
        let run = fresh_namespace();
        let kind = BrokerKind::Rabbitmq;
        let turn = Turn::Shared(server_lock(kind).read().await);
        let Some(server) = connect_with(kind, |cfg| cfg.namespace = run.clone(), turn).await else {
            return;
        };
        let (conn, ch) = client().await;
        let ns = fresh_namespace();
        let payments = format!("{ns}.payments");
        user_exchange(&ch, &ns, ExchangeKind::Topic).await;
        // The user's payment service's queue takes `paid`; nobody reads it yet.
        user_queue(&ch, &payments, &ns, "paid").await;
        for order in 0..3 {
            publish(&ch, &ns, "paid", order).await;
        }
        let before = position(&conn, &payments).await;
        assert_eq!(before, (3, 0));

        let mut tap = server.t.tap(&format!("{ns}:paid")).await.expect("tap");
        for order in 10..15 {
            publish(&ch, &ns, "paid", order).await;
        }
        // Another routing key of the same exchange is not the tap's.
        publish(&ch, &ns, "other", 99).await;
        let got = tapped(&mut tap, 6, Duration::from_secs(2)).await;
        assert_eq!(orders_of(&got), vec![10, 11, 12, 13, 14], "{got:?}");
        assert_eq!(bodies(&got)[0], "order 10");
        assert!(got.iter().all(|t| t.key.as_deref() == Some(&b"paid"[..])));

        // The user's queue: the five routed to it as well, no consumer, nothing taken.
        let after = position(&conn, &payments).await;
        assert_eq!(after, (before.0 + 5, 0));
        // The negative control: a reader on the user's queue (what a tap must not be)
        // moves exactly these numbers.
        let reader = conn.create_channel().await.unwrap();
        let _consumer = reader
            .basic_consume(
                payments.as_str().into(),
                "reader".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_ne!(
            position(&conn, &payments).await,
            after,
            "reading the user's queue shows"
        );
        let _ = reader.close(200, "control done".into()).await;

        // A tap made now, bound with `#`, sees none of what came before it, and both see
        // what comes next.
        let mut late = server.t.tap(&ns).await.expect("second tap");
        assert!(
            tapped(&mut late, 1, Duration::from_millis(500))
                .await
                .is_empty()
        );
        publish(&ch, &ns, "paid", 20).await;
        assert_eq!(
            orders_of(&tapped(&mut late, 1, Duration::from_secs(2)).await),
            vec![20]
        );
        assert_eq!(
            orders_of(&tapped(&mut tap, 1, Duration::from_secs(2)).await),
            vec![20]
        );

        // An exchange that does not exist is an error naming it, not a panic.
        let nowhere = format!("{ns}-nowhere");
        let e = server.t.tap(&nowhere).await.err().expect("no exchange");
        assert!(e.to_string().contains(&nowhere), "{e}");
        // A name AMQP cannot carry is an error too.
        assert!(server.t.tap(&format!(":{ns}")).await.is_err());

        drop((tap, late));
        let first_tap = format!("{run}.tap.0");
        assert!(queue_exists(&conn, &first_tap).await, "the tap's own queue");
        server.t.cleanup().await.expect("cleanup");
        // The taps' queues went with the run; the user's exchange and queue stayed.
        assert!(!queue_exists(&conn, &first_tap).await, "removed at cleanup");
        assert!(exchange_exists(&conn, &ns).await);
        assert!(queue_exists(&conn, &payments).await);
        remove(&ch, &[&ns], &[&payments]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rabbitmq_orders_reach_the_users_exchange_and_cleanup_keeps_it() {
        let (conn, ch) = client().await;
        let ns = fresh_namespace();
        let shop = format!("{ns}-shop");
        let orders = format!("{shop}.orders");
        user_exchange(&ch, &shop, ExchangeKind::Topic).await;
        user_queue(&ch, &orders, &shop, "#").await;
        let Some(server) = broker_observing(BrokerKind::Rabbitmq, &ns, &shop).await else {
            return;
        };
        let t = &server.t;

        t.publish(user_order(7))
            .await
            .expect("confirmed by the user's exchange");
        let m = ch
            .basic_get(orders.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("the order in the user's queue");
        // The rendered key is the routing key; the rendered headers sit beside doorbuster's.
        assert_eq!(m.delivery.routing_key.as_str(), "cart-7");
        assert_eq!(m.delivery.exchange.as_str(), shop);
        assert_eq!(m.delivery.data, event(7, 0).payload.to_vec());
        let headers = m.delivery.properties.headers().clone().unwrap_or_default();
        let h = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into()),
            _ => None,
        };
        assert_eq!(h("x-tenant").as_deref(), Some("acme"));
        assert_eq!(h("db-order-id").as_deref(), Some("7"));
        assert_eq!(h("key"), None::<String>);
        // Without a rendered key the order id is the routing key.
        t.publish(event(8, 0)).await.unwrap();
        let m = ch
            .basic_get(orders.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("the second order");
        assert_eq!(m.delivery.routing_key.as_str(), "8");
        // doorbuster's own events still go to the run's exchanges, not the user's.
        t.publish(own_event(9)).await.expect("own event");
        assert_eq!(position(&conn, &orders).await.0, 0);
        let own = format!("{ns}.{}", Topic::Fulfilled.name());
        assert!(exchange_exists(&conn, &own).await, "the run's own exchange");

        t.cleanup().await.expect("cleanup");
        assert!(
            !exchange_exists(&conn, &own).await,
            "the run's exchange is gone"
        );
        assert!(
            exchange_exists(&conn, &shop).await,
            "the user's exchange is kept"
        );

        // `exchange:routing-key` fixes the routing key; the rendered key travels as `key`.
        let observing = |to: String| {
            let mut cfg = broker_config(BrokerKind::Rabbitmq, broker_url(BrokerKind::Rabbitmq));
            cfg.orders_to = Some(to);
            cfg
        };
        let fixed = doorbuster::transport::connect_broker(
            &observing(format!("{shop}:checkout")),
            Clock::start(),
        )
        .await
        .unwrap();
        fixed.publish(user_order(3)).await.unwrap();
        let m = ch
            .basic_get(orders.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("the fixed-key order");
        assert_eq!(m.delivery.routing_key.as_str(), "checkout");
        let headers = m.delivery.properties.headers().clone().unwrap_or_default();
        assert!(matches!(
            headers.inner().get("key"),
            Some(AMQPValue::LongString(s)) if s.as_bytes() == b"cart-3"
        ));
        fixed.cleanup().await.unwrap();
        assert_eq!(position(&conn, &orders).await.0, 0);

        // An order no queue takes comes back and is refused, naming the exchange; the clean
        // twin (a key the queue is bound to) is confirmed.
        let direct = format!("{ns}-direct");
        let direct_queue = format!("{direct}.payments");
        user_exchange(&ch, &direct, ExchangeKind::Direct).await;
        user_queue(&ch, &direct_queue, &direct, "orders").await;
        let unrouted =
            doorbuster::transport::connect_broker(&observing(direct.clone()), Clock::start())
                .await
                .unwrap();
        match unrouted.publish(user_order(4)).await {
            Err(TransportError::Publish { source, .. }) => {
                let text = source.to_string();
                assert!(
                    text.contains("no queue took it") && text.contains(&direct),
                    "{text}"
                );
            }
            other => panic!("expected a refused publish, got {other:?}"),
        }
        unrouted.cleanup().await.unwrap();
        let routed = doorbuster::transport::connect_broker(
            &observing(format!("{direct}:orders")),
            Clock::start(),
        )
        .await
        .unwrap();
        routed.publish(user_order(4)).await.expect("routed");
        routed.cleanup().await.unwrap();
        assert_eq!(position(&conn, &direct_queue).await, (1, 0));

        // An exchange that does not exist: the publish is refused naming it, again on the next
        // try, and doorbuster's own publishes go on.
        let nowhere = format!("{ns}-nowhere");
        let lost =
            doorbuster::transport::connect_broker(&observing(nowhere.clone()), Clock::start())
                .await
                .unwrap();
        for _ in 0..2 {
            match lost.publish(user_order(1)).await {
                Err(TransportError::Publish { source, .. }) => {
                    assert!(source.to_string().contains(&nowhere), "{source}");
                }
                other => panic!("expected a refused publish, got {other:?}"),
            }
        }
        lost.publish(own_event(2)).await.expect("own events go on");
        lost.cleanup().await.unwrap();

        remove(&ch, &[&shop, &direct], &[&orders, &direct_queue]).await;
    }

    /// A tap whose connection the broker closed reconnects and reads on from its own queue,
    /// with nothing published meanwhile missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rabbitmq_a_tap_reads_on_after_its_connection_is_lost() {
        // Alone: closing every connection would pull the server from under other tests.
        let Some(server) = broker_alone(BrokerKind::Rabbitmq).await else {
            return;
        };
        let (conn, ch) = client().await;
        let ns = fresh_namespace();
        user_exchange(&ch, &ns, ExchangeKind::Fanout).await;
        let mut tap = server.t.tap(&ns).await.expect("tap");
        publish(&ch, &ns, "", 1).await;
        assert_eq!(
            orders_of(&tapped(&mut tap, 1, Duration::from_secs(2)).await),
            vec![1]
        );

        let closed = tokio::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "--global", "doorbuster test"])
            .output()
            .await;
        let Ok(closed) = closed.map(|o| o.status) else {
            eprintln!("SKIP: no rabbitmqctl to close connections with");
            remove(&client().await.1, &[&ns], &[]).await;
            return;
        };
        assert!(
            closed.success(),
            "rabbitmqctl close_all_connections: {closed}"
        );
        // The control: the connections really went (the user's client's too).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !conn.status().connected(),
            "the broker closed the connections"
        );

        // Published while the tap has no connection.
        let (_conn, ch) = client().await;
        for order in 2..4 {
            publish(&ch, &ns, "", order).await;
        }
        assert_eq!(
            orders_of(&tapped(&mut tap, 2, Duration::from_secs(10)).await),
            vec![2, 3]
        );
        publish(&ch, &ns, "", 4).await;
        assert_eq!(
            orders_of(&tapped(&mut tap, 1, Duration::from_secs(2)).await),
            vec![4]
        );
        drop(tap);
        server.t.cleanup().await.expect("cleanup");
        remove(&ch, &[&ns], &[]).await;
    }

    /// A tap whose queue was taken away ends with an error saying so, instead of making a
    /// new queue and hiding the gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rabbitmq_a_tap_whose_queue_is_gone_says_so() {
        let run = fresh_namespace();
        let kind = BrokerKind::Rabbitmq;
        let turn = Turn::Shared(server_lock(kind).read().await);
        let Some(server) = connect_with(kind, |cfg| cfg.namespace = run.clone(), turn).await else {
            return;
        };
        let (_conn, ch) = client().await;
        let ns = fresh_namespace();
        user_exchange(&ch, &ns, ExchangeKind::Fanout).await;
        let mut tap = server.t.tap(&ns).await.expect("tap");
        // The clean twin: the tap reads.
        publish(&ch, &ns, "", 1).await;
        assert_eq!(
            orders_of(&tapped(&mut tap, 1, Duration::from_secs(2)).await),
            vec![1]
        );
        remove(&ch, &[], &[&format!("{run}.tap.0")]).await;
        let e = tokio::time::timeout(Duration::from_secs(10), tap.next())
            .await
            .expect("the tap answers")
            .expect_err("an error, not an event or the end");
        let text = e.to_string();
        assert!(text.contains(&ns) && text.contains("is gone"), "{text}");
        drop(tap);
        server.t.cleanup().await.expect("cleanup");
        remove(&ch, &[&ns], &[]).await;
    }
}

mod kafka {
    use std::collections::BTreeMap;

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn config() -> ClientConfig {
        let url = broker_url(BrokerKind::Kafka);
        let servers = url.trim_start_matches("kafka://").trim_end_matches('/');
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", servers)
            .set("allow.auto.create.topics", "false");
        c
    }

    fn admin() -> AdminClient<DefaultClientContext> {
        config().create().expect("admin client")
    }

    /// The user's own topic, made by the user (not by doorbuster).
    async fn user_topic(name: &str, partitions: i32) {
        let opts = AdminOptions::new().operation_timeout(Some(WAIT));
        let made = admin()
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &opts,
            )
            .await
            .expect("create topic");
        assert!(made.iter().all(Result::is_ok), "{made:?}");
    }

    async fn delete_topics(names: &[&str]) {
        let opts = AdminOptions::new().operation_timeout(Some(WAIT));
        admin().delete_topics(names, &opts).await.expect("delete");
    }

    /// The topics the broker lists.
    async fn listed() -> HashSet<String> {
        tokio::task::spawn_blocking(|| {
            let consumer: BaseConsumer = config().create().unwrap();
            let metadata = consumer.fetch_metadata(None, WAIT).unwrap();
            metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name().to_owned())
                .collect()
        })
        .await
        .unwrap()
    }

    fn producer() -> FutureProducer {
        config().set("linger.ms", "5").create().expect("producer")
    }

    /// The user's service writes order `order` to `partition` of `topic`; its offset.
    async fn produce(p: &FutureProducer, topic: &str, partition: i32, order: u64) -> i64 {
        let headers = OwnedHeaders::new().insert(Header {
            key: "x-order",
            value: Some(order.to_string().as_str()),
        });
        let body = format!("order {order}");
        let key = format!("k{order}");
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&body)
            .headers(headers);
        p.send(record, WAIT).await.expect("produced").offset
    }

    /// The committed offsets of `group` on the partitions of `topic`.
    async fn committed(group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Offset> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config().set("group.id", &group).create().unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let got = consumer.committed_offsets(tpl, WAIT).unwrap();
            got.elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect()
        })
        .await
        .unwrap()
    }

    /// A consumer of the user's group reads one event of `partition` and commits it.
    async fn read_one_and_commit(group: &str, topic: &str, partition: i32, from: i64) {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config()
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(from))
                .unwrap();
            consumer.assign(&tpl).unwrap();
            for polls in 0.. {
                assert!(polls < 100, "nothing to read");
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    consumer.commit_message(&m, CommitMode::Sync).unwrap();
                    return;
                }
            }
        })
        .await
        .unwrap();
    }

    /// Every record of `topic` from the start: (partition, key, headers, value).
    #[allow(clippy::type_complexity)]
    async fn records(topic: &str) -> Vec<(i32, Option<String>, Vec<(String, String)>, Bytes)> {
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config()
                .set("group.id", "doorbuster-test-reader")
                .set("enable.partition.eof", "true")
                .set("fetch.wait.max.ms", "20")
                .create()
                .unwrap();
            let metadata = consumer.fetch_metadata(Some(&topic), WAIT).unwrap();
            let ids: Vec<i32> = metadata.topics()[0]
                .partitions()
                .iter()
                .map(|p| p.id())
                .collect();
            let mut tpl = TopicPartitionList::new();
            for &id in &ids {
                tpl.add_partition_offset(&topic, id, Offset::Beginning)
                    .unwrap();
            }
            consumer.assign(&tpl).unwrap();
            let mut waiting: HashSet<i32> = ids.into_iter().collect();
            let mut out = Vec::new();
            // At most 100 polls of 100 ms.
            for _ in 0..100 {
                if waiting.is_empty() {
                    break;
                }
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => out.push((
                        m.partition(),
                        m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        m.headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        let v = h.value.unwrap_or_default();
                                        (h.key.to_owned(), String::from_utf8_lossy(v).into())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                    )),
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                        waiting.remove(&p);
                    }
                    _ => {}
                }
            }
            assert!(
                waiting.is_empty(),
                "partitions {waiting:?} not read to the end"
            );
            out
        })
        .await
        .unwrap()
    }

    fn keys(events: &[Tapped]) -> Vec<String> {
        let mut keys: Vec<String> = events
            .iter()
            .map(|t| String::from_utf8_lossy(t.key.as_deref().unwrap_or_default()).into())
            .collect();
        keys.sort();
        keys
    }

    fn sorted(mut orders: Vec<u64>) -> Vec<u64> {
        orders.sort_unstable();
        orders
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_a_tap_sees_what_comes_after_it_and_leaves_the_users_group_alone() {
        let Some(server) = broker(BrokerKind::Kafka).await else {
            return;
        };
        let ns = fresh_namespace();
        let (paid, other) = (format!("{ns}.paid"), format!("{ns}.other"));
        user_topic(&paid, 3).await;
        user_topic(&other, 1).await;
        let p = producer();
        // Before the tap: three events on partition 0, and a burst on partition 1 that the
        // producer sends as one batch.
        for order in 0..3 {
            produce(&p, &paid, 0, order).await;
        }
        let burst: Vec<_> = (100..120).map(|o| produce(&p, &paid, 1, o)).collect();
        let offsets = futures_util::future::join_all(burst).await;
        let end = offsets.iter().max().unwrap() + 1;
        // What the broker answers for the partition's end (ListOffsets): Tansu 0.6 answers
        // the first offset of the last batch plus one.
        let probe: BaseConsumer = config().create().unwrap();
        let t = paid.clone();
        let (_, high) = tokio::task::spawn_blocking(move || probe.fetch_watermarks(&t, 1, WAIT))
            .await
            .unwrap()
            .unwrap();
        eprintln!("partition 1: {end} events, the broker's end offset (ListOffsets) is {high}");
        assert!(high <= end);

        // The user's payment service: its group has read and committed two of partition 0.
        let group = format!("{ns}-payment");
        read_one_and_commit(&group, &paid, 0, 1).await;
        let before = committed(&group, &paid, 3).await;
        assert_eq!(before[&0], Offset::Offset(2), "{before:?}");

        let mut tap = server.t.tap(&paid).await.expect("tap");
        for order in 10..16 {
            produce(&p, &paid, (order % 3) as i32, order).await;
        }
        // Another topic is not the tap's.
        produce(&p, &other, 0, 99).await;
        let got = tapped(&mut tap, 7, Duration::from_secs(3)).await;
        assert_eq!(
            sorted(orders_of(&got)),
            vec![10, 11, 12, 13, 14, 15],
            "{got:?}"
        );
        assert_eq!(keys(&got), ["k10", "k11", "k12", "k13", "k14", "k15"]);
        let ten = got
            .iter()
            .find(|t| t.key.as_deref() == Some(b"k10"))
            .unwrap();
        assert_eq!(ten.body, Bytes::from("order 10"));
        assert!(got.windows(2).all(|w| w[0].at <= w[1].at));

        // The user's group: its committed offsets are where they were.
        let after = committed(&group, &paid, 3).await;
        assert_eq!(after, before);
        // The negative control: a consumer inside the user's group (what a tap must not be)
        // that reads and commits moves them.
        read_one_and_commit(&group, &paid, 1, 0).await;
        let moved = committed(&group, &paid, 3).await;
        assert_ne!(moved, after, "a commit in the user's group shows");

        // A tap made now sees none of what came before it, and both see what comes next.
        let mut late = server.t.tap(&paid).await.expect("second tap");
        assert!(
            tapped(&mut late, 1, Duration::from_millis(1000))
                .await
                .is_empty()
        );
        produce(&p, &paid, 2, 20).await;
        assert_eq!(
            orders_of(&tapped(&mut late, 1, Duration::from_secs(3)).await),
            vec![20]
        );
        assert_eq!(
            orders_of(&tapped(&mut tap, 1, Duration::from_secs(3)).await),
            vec![20]
        );

        // A topic that does not exist is an error naming it, and is not created.
        let nowhere = format!("{ns}-nowhere");
        let e = server.t.tap(&nowhere).await.err().expect("no topic");
        assert!(e.to_string().contains(&nowhere), "{e}");
        assert!(!listed().await.contains(&nowhere));

        // Cleanup waits for the taps' consumers to close: a topic deleted under a consumer
        // that still fetches from it crashes librdkafka against Tansu (see the member module).
        drop((tap, late));
        server.t.cleanup().await.expect("cleanup");
        delete_topics(&[&paid, &other]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_orders_reach_the_users_topic_and_cleanup_keeps_it() {
        let ns = fresh_namespace();
        let orders = format!("{ns}-shop.orders");
        user_topic(&orders, 2).await;
        let Some(server) = broker_observing(BrokerKind::Kafka, &ns, &orders).await else {
            delete_topics(&[&orders]).await;
            return;
        };
        let t = &server.t;
        // The run made its own topics, and not one for the orders under its namespace.
        let topics = listed().await;
        assert!(
            topics.contains(&format!("{ns}.order.fulfilled")),
            "{topics:?}"
        );
        assert!(
            !topics.contains(&format!("{ns}.order.created")),
            "{topics:?}"
        );

        t.publish(user_order(7))
            .await
            .expect("acked by the user's topic");
        // Without a rendered key, the order id is the key.
        t.publish(event(9, 0)).await.expect("acked");
        // doorbuster's own events still go to the run's topic, not the user's.
        t.publish(own_event(8)).await.expect("own event");
        let got = records(&orders).await;
        assert_eq!(got.len(), 2, "{got:?}");
        let by_key = |k: &str| got.iter().find(|r| r.1.as_deref() == Some(k));
        let (_, _, headers, body) = by_key("cart-7").expect("the rendered key");
        assert_eq!(body, &event(7, 0).payload);
        let h = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("x-tenant"), Some("acme"));
        assert_eq!(h("db-order-id"), Some("7"));
        assert!(by_key("9").is_some(), "{got:?}");
        assert_eq!(records(&format!("{ns}.order.fulfilled")).await.len(), 1);

        t.cleanup().await.expect("cleanup");
        let topics = listed().await;
        assert!(
            !topics.contains(&format!("{ns}.order.fulfilled")),
            "the run's topics are gone"
        );
        assert!(topics.contains(&orders), "the user's topic is kept");
        assert_eq!(records(&orders).await.len(), 2, "with its events");
        delete_topics(&[&orders]).await;

        // A topic that does not exist: the publish is refused at once, and nothing creates it.
        let nowhere = format!("{ns}-nowhere.orders");
        let mut cfg = broker_config(BrokerKind::Kafka, broker_url(BrokerKind::Kafka));
        cfg.orders_to = Some(nowhere.clone());
        let lost = doorbuster::transport::connect_broker(&cfg, Clock::start())
            .await
            .unwrap();
        let clock = Clock::start();
        match lost.publish(user_order(1)).await {
            Err(e @ TransportError::Publish { .. }) => {
                assert!(e.to_string().contains(&nowhere), "{e}")
            }
            other => panic!("expected a refused publish, got {other:?}"),
        }
        let took = Duration::from_nanos(clock.now());
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(!listed().await.contains(&nowhere), "not created");
        lost.cleanup().await.unwrap();
    }
}
