//! Poison events and the dead-letter topic: parked after `max_deliveries`, read back, and
//! caught when the broker loses them.

use super::*;

/// Orders a keys-scoped poison fault (the scenario's first fault) picks among those intended
/// inside `[from, until]`, and that reach `service`'s topic (warehouse: approved orders).
fn poisoned_orders(s: &Scenario, r: &RunResult, from_ms: u64, until_ms: u64) -> Vec<u64> {
    let due: Vec<u64> = doorbuster::load::schedule::Schedule::plan(&s.load, s.seed)
        .due_times()
        .collect();
    let factory = doorbuster::orders::OrderFactory::new(s.seed, &s.orders);
    let fault = &s.faults[0];
    (0..r.summary.orders.attempted)
        .filter(|&o| {
            let due = due[o as usize];
            let meta = doorbuster::events::EventMeta {
                event_id: 0,
                order_id: o,
                seq: 0,
                intended_at: due,
                intended_wall_ns: 0,
                sent_at: 0,
                idempotency_key: Default::default(),
            };
            (from_ms * 1_000_000..=until_ms * 1_000_000).contains(&due)
                && doorbuster::chaos::scope::applies(s.seed, 0, fault.scope, &meta, 0)
                && !factory.plan(o).declines
        })
        .collect()
}

fn dead_lettered_orders(r: &RunResult) -> Vec<u64> {
    let book = doorbuster::sync::lock(&r.observer.dead_letters);
    book.orders().into_iter().collect()
}

#[tokio::test(start_paused = true)]
async fn poison_events_are_dead_lettered_after_max_deliveries_and_read_back() {
    let s = scenario_with(
        "  - { at: 3s, for: 4s, poison: warehouse, keys: 5% }",
        "  warehouse: { max_deliveries: 4 }",
        "  dead_letters: \"<= 5%\"",
    );
    let r = run(&s).await;
    passes(&r);
    let w = window(&r, "poison");
    let expected = poisoned_orders(&s, &r, w.start_ms, w.end_ms.unwrap());
    assert!(expected.len() >= 5, "the fault picked {expected:?}");
    // Exactly the poisoned orders were parked, each after exactly 4 failed deliveries, and
    // every one of them was read back from the dead-letter topic.
    assert_eq!(dead_lettered_orders(&r), expected);
    let d = &r.summary.deliveries;
    assert_eq!(d.poison_failures, 4 * expected.len() as u64);
    assert_eq!(d.dead_lettered, expected.len() as u64);
    assert_eq!(d.dead_letters_arrived, expected.len() as u64);
    let dl = check(&r, "dead_letters");
    assert!(
        dl.evidence.iter().any(|e| e.contains("warehouse")),
        "{dl:?}"
    );
    // The parked orders are not counted against completion; everything else completed.
    assert_eq!(check(&r, "completion_rate").verdict, Verdict::Pass);
    assert!(r.summary.samples.iter().any(|s| s.dead_lettered > 0));
}

#[tokio::test(start_paused = true)]
async fn without_max_deliveries_poison_orders_never_settle_and_completion_fails() {
    // Negative control: a consumer that retries forever never gets past a poison event.
    let s = scenario_with(
        "  - { at: 3s, for: 4s, poison: warehouse, keys: 5% }",
        "  warehouse: {}",
        "  settle_within: 20s",
    );
    let mut s = s;
    s.load.drain = Duration::from_secs(15);
    let r = run(&s).await;
    let w = window(&r, "poison");
    let expected = poisoned_orders(&s, &r, w.start_ms, w.end_ms.unwrap());
    let completion = check(&r, "completion_rate");
    assert_eq!(completion.verdict, Verdict::Fail, "{completion:?}");
    for order in expected.iter().take(3) {
        assert!(
            completion
                .evidence
                .iter()
                .any(|e| e == &format!("order {order}: never settled")),
            "order {order} missing from {:?}",
            completion.evidence
        );
    }
    assert_eq!(r.summary.deliveries.dead_lettered, 0);
    // They kept coming back: far more poison failures than poisoned orders.
    assert!(r.summary.deliveries.poison_failures > 10 * expected.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn too_many_dead_letters_fail_the_run() {
    // The default bound is `<= 0%`: a scenario that does not expect dead letters fails.
    let s = scenario(
        "  - { at: 3s, for: 4s, poison: warehouse, keys: 5% }",
        "  warehouse: { max_deliveries: 3 }",
    );
    let r = run(&s).await;
    let dl = check(&r, "dead_letters");
    assert_eq!(dl.verdict, Verdict::Fail, "{dl:?}");
    assert_eq!(r.summary.exit_code, 1);
}

/// Acks dead letters without storing them: a broker that loses what was parked.
struct LosesDeadLetters(std::sync::Arc<dyn doorbuster::transport::Transport>);

#[async_trait::async_trait]
impl doorbuster::transport::Transport for LosesDeadLetters {
    fn info(&self) -> doorbuster::transport::TransportInfo {
        self.0.info()
    }

    fn publish(
        &self,
        envelope: doorbuster::events::Envelope,
    ) -> doorbuster::transport::BoxFuture<
        '_,
        Result<doorbuster::transport::Ack, doorbuster::transport::TransportError>,
    > {
        if envelope.topic == doorbuster::events::Topic::DeadLetter {
            return Box::pin(async {
                Ok(doorbuster::transport::Ack {
                    partition: 0,
                    offset: 0,
                })
            });
        }
        self.0.publish(envelope)
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[doorbuster::events::Topic],
    ) -> Result<Box<dyn doorbuster::transport::Subscription>, doorbuster::transport::TransportError>
    {
        self.0.subscribe(group, topics).await
    }

    async fn rewind(
        &self,
        group: &str,
        to: doorbuster::transport::RewindTo,
    ) -> Result<(), doorbuster::transport::TransportError> {
        self.0.rewind(group, to).await
    }

    async fn lag(&self, group: &str) -> Result<u64, doorbuster::transport::TransportError> {
        self.0.lag(group).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_the_broker_lost_is_caught() {
    // Negative control for the read-back: parked events that never reach the topic fail
    // `dead_letters`, naming them, even within the share bound.
    let s = scenario_with(
        "  - { at: 3s, for: 4s, poison: warehouse, keys: 5% }",
        "  warehouse: { max_deliveries: 2 }",
        "  dead_letters: \"<= 50%\"",
    );
    let doorbuster::scenario::model::Target::Embedded(cfg) = &s.target else {
        panic!("embedded")
    };
    let inner = std::sync::Arc::new(doorbuster::transport::embedded::EmbeddedBroker::new(
        cfg.partitions,
        cfg.retention,
        doorbuster::clock::Clock::start(),
    ));
    let mut s = s;
    s.load.drain = Duration::from_secs(10);
    let r = support::run_with(&s, Some(std::sync::Arc::new(LosesDeadLetters(inner)))).await;
    let dl = check(&r, "dead_letters");
    assert_eq!(dl.verdict, Verdict::Fail, "{dl:?}");
    assert!(
        dl.evidence
            .iter()
            .any(|e| e.contains("never arrived on order.dead_letter")),
        "{dl:?}"
    );
    assert_eq!(r.summary.deliveries.dead_letters_arrived, 0);
    assert!(r.summary.deliveries.dead_lettered > 0);
}
