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
