//! The HTTP checkout target against a real shop endpoint: an axum server on loopback that
//! takes orders the way a shop's checkout API does (JSON body, Idempotency-Key, 201 on a new
//! order, 200 on a replayed key), and can refuse, stall or hang up on command. Every
//! assertion compares what doorbuster counted with what the shop itself saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use doorbuster::clock::Clock;
use doorbuster::events::Topic;
use doorbuster::run::RunResult;
use doorbuster::scenario::model::{HttpTarget, Target};
use doorbuster::transport::{Transport, TransportError};
use doorbuster::verify::Verdict;

use super::event;

/// How the shop answers.
#[derive(Clone, Copy)]
enum Behaviour {
    Accept,
    /// Answers `status` (and takes no order) for every order whose id is a multiple of
    /// `every`; a 3xx points off loopback.
    Refuse {
        every: u64,
        status: u16,
    },
    /// Takes every order, but answers those whose id is a multiple of `every` only after
    /// `pause`.
    Slow {
        every: u64,
        pause: Duration,
    },
}

/// One request as the shop saw it.
#[derive(Debug, Clone)]
struct Seen {
    order_id: u64,
    key: String,
    authorization: Option<String>,
    json: bool,
    /// The order's id inside the JSON body matches the header's.
    body_matches: bool,
    /// The key had been seen before: answered as a replay, not a new order.
    replay: bool,
    /// The shop took the order (it answered 2xx or was about to).
    taken: bool,
    /// The `ce-type` header, when the request had one.
    ce_type: Option<String>,
}

struct Shop {
    behaviour: Behaviour,
    /// The JSON Schema of the bodies the shop takes; it answers 422 to any other.
    contract: Option<jsonschema::Validator>,
    seen: Mutex<Vec<Seen>>,
    /// Idempotency key -> order id of the first request with it.
    keys: Mutex<HashMap<String, u64>>,
}

impl Shop {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Orders the shop took, counting each idempotency key once.
    fn orders_taken(&self) -> usize {
        self.seen().iter().filter(|s| s.taken && !s.replay).count()
    }
}

async fn checkout(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let order_id: u64 = header("x-doorbuster-order-id")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    let key = header("idempotency-key").unwrap_or_default();
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    // doorbuster's own order.created has `order_id`; the seed article's schema a string
    // `orderId` whose last 16 hex digits are the id (the template's `order.uid`).
    let own_id = parsed.as_ref().and_then(|v| v.get("order_id")?.as_u64());
    let seed_id = parsed.as_ref().and_then(|v| {
        let uid = v.get("orderId")?.as_str()?;
        u64::from_str_radix(uid.get(8..)?, 16).ok()
    });
    let body_matches = own_id.or(seed_id) == Some(order_id);
    let breaks_contract = (shop.contract.as_ref())
        .is_some_and(|c| parsed.as_ref().is_none_or(|body| !c.is_valid(body)));
    let refuse = match shop.behaviour {
        _ if breaks_contract => Some(422),
        Behaviour::Refuse { every, status } if order_id.is_multiple_of(every) => Some(status),
        _ => None,
    };
    let replay = refuse.is_none()
        && shop
            .keys
            .lock()
            .unwrap()
            .insert(key.clone(), order_id)
            .is_some();
    shop.seen.lock().unwrap().push(Seen {
        order_id,
        key,
        authorization: header("authorization"),
        json: header("content-type").as_deref() == Some("application/json"),
        body_matches,
        replay,
        taken: refuse.is_none(),
        ce_type: header("ce-type"),
    });
    if let Some(status) = refuse {
        let status = StatusCode::from_u16(status).unwrap();
        let mut headers = HeaderMap::new();
        if status.is_redirection() {
            headers.insert("location", "http://10.255.0.1/elsewhere".parse().unwrap());
        }
        return (status, headers, "payment gateway unavailable".to_owned());
    }
    if let Behaviour::Slow { every, pause } = shop.behaviour
        && order_id.is_multiple_of(every)
    {
        tokio::time::sleep(pause).await;
    }
    let status = if replay {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (
        status,
        HeaderMap::new(),
        format!("{{\"order_id\":{order_id}}}"),
    )
}

/// Starts a shop on 127.0.0.1:0; returns its checkout URL. It serves until the test's
/// runtime ends.
async fn start_shop(behaviour: Behaviour) -> (String, Arc<Shop>) {
    serve(Shop {
        behaviour,
        contract: None,
        seen: Mutex::new(Vec::new()),
        keys: Mutex::new(HashMap::new()),
    })
    .await
}

/// A shop that takes only bodies `schema` accepts.
async fn start_contract_shop(schema: &str) -> (String, Arc<Shop>) {
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    serve(Shop {
        behaviour: Behaviour::Accept,
        contract: Some(jsonschema::validator_for(&schema).unwrap()),
        seen: Mutex::new(Vec::new()),
        keys: Mutex::new(HashMap::new()),
    })
    .await
}

async fn serve(shop: Shop) -> (String, Arc<Shop>) {
    let shop = Arc::new(shop);
    let app = axum::Router::new()
        .route("/checkout", axum::routing::post(checkout))
        .with_state(shop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/checkout"), shop)
}

fn target(url: &str, headers: &[(&str, &str)]) -> Target {
    Target::Http(HttpTarget {
        url: url.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        allow_remote: false,
    })
}

async fn connect(url: &str, headers: &[(&str, &str)]) -> Arc<dyn Transport> {
    doorbuster::transport::connect(&target(url, headers), Clock::start())
        .await
        .expect("the shop is up")
}

#[tokio::test]
async fn each_order_is_posted_once_with_its_key_and_the_scenarios_headers() {
    let (url, shop) = start_shop(Behaviour::Accept).await;
    // The header value comes from the environment, as credentials must; cargo sets
    // CARGO_PKG_NAME for the tests it runs.
    let t = connect(&url, &[("Authorization", "Bearer ${CARGO_PKG_NAME}")]).await;
    for order in 0..20 {
        let mut e = event(order, 0);
        e.payload = bytes::Bytes::from(format!("{{\"order_id\":{order}}}"));
        t.publish(e).await.expect("a 201 is an ack");
    }
    let seen = shop.seen();
    assert_eq!(seen.len(), 20, "one request per publish");
    let mut orders: Vec<u64> = seen.iter().map(|s| s.order_id).collect();
    orders.sort_unstable();
    assert_eq!(orders, (0..20).collect::<Vec<_>>());
    for s in &seen {
        assert_eq!(s.key, format!("ik_{}", s.order_id), "{s:?}");
        assert!(s.json && s.body_matches && !s.replay, "{s:?}");
        assert_eq!(
            s.authorization.as_deref(),
            Some(concat!("Bearer ", env!("CARGO_PKG_NAME")))
        );
    }
    // The same key again is the shop's replay, still a 2xx: accepted.
    let mut again = event(3, 0);
    again.payload = bytes::Bytes::from_static(b"{\"order_id\":3}");
    t.publish(again)
        .await
        .expect("a replayed key is answered 200");
    assert!(shop.seen().last().unwrap().replay);
    // What the report states: how acceptance is decided, header names but no values.
    let info = t.info();
    assert_eq!(info.kind, "http");
    let headers = info.settings.iter().find(|(k, _)| k == "headers").unwrap();
    assert!(headers.1.contains("authorization") && !headers.1.contains("Bearer"));
}

#[tokio::test]
async fn refused_unanswered_and_unreachable_are_told_apart() {
    let (url, shop) = start_shop(Behaviour::Refuse {
        every: 2,
        status: 503,
    })
    .await;
    let t = connect(&url, &[]).await;
    // A 503 is a refusal, with the status and the shop's words.
    match t.publish(event(4, 0)).await {
        Err(TransportError::Publish { source, .. }) => {
            let reason = source.to_string();
            assert!(reason.contains("503"), "{reason}");
            assert!(reason.contains("payment gateway unavailable"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(t.publish(event(5, 0)).await.is_ok());
    assert_eq!(shop.seen().len(), 2);
    // Only orders go to a checkout endpoint, and it has no consumer groups.
    let mut other = event(7, 1);
    other.topic = Topic::PaymentSucceeded;
    assert!(matches!(
        t.publish(other).await,
        Err(TransportError::Publish { .. })
    ));
    assert!(matches!(
        t.subscribe("email", &[Topic::OrderCreated]).await,
        Err(TransportError::Group { .. })
    ));
    assert_eq!(shop.seen().len(), 2, "nothing else reached the shop");

    // A gateway's 502 or 504 and a redirect (not followed: the POST already arrived, and the
    // new address is off loopback) may mean the shop took the order: unknown, not refused.
    for status in [502, 504, 303] {
        let (url, shop) = start_shop(Behaviour::Refuse { every: 1, status }).await;
        let t = connect(&url, &[]).await;
        match t.publish(event(1, 0)).await {
            Err(TransportError::Indeterminate { source, .. }) => {
                let reason = source.to_string();
                assert!(reason.contains(&status.to_string()), "{reason}");
            }
            other => panic!("{status}: expected unknown, got {other:?}"),
        }
        assert_eq!(
            shop.seen().len(),
            1,
            "{status}: one request, nothing followed"
        );
    }

    // A server that reads the request and hangs up without answering: the order was sent,
    // the shop may have it: indeterminate, not refused.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}/checkout", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    });
    let hangs_up = connect(&silent, &[]).await;
    assert!(
        matches!(
            hangs_up.publish(event(8, 0)).await,
            Err(TransportError::Indeterminate { .. })
        ),
        "sent and unanswered is unknown"
    );

    // Nothing listens on port 1: a clear error before any order, naming the address, the
    // password masked.
    let down = doorbuster::transport::connect(
        &target("http://shop:hunter2@127.0.0.1:1/checkout", &[]),
        Clock::start(),
    )
    .await;
    match down {
        Err(e @ TransportError::Unreachable { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("127.0.0.1:1") && !text.contains("hunter2"),
                "{text}"
            );
        }
        Err(e) => panic!("expected Unreachable, got {e}"),
        Ok(_) => panic!("connected to a port nothing listens on"),
    }
}

/// Credentials written in the URL reach the shop as HTTP Basic authentication (percent-decoded,
/// as curl and browsers send them) and are masked wherever doorbuster shows the URL.
#[tokio::test]
async fn credentials_in_the_url_are_sent_as_basic_auth_and_never_shown() {
    let (url, shop) = start_shop(Behaviour::Accept).await;
    let with_user = url.replace("http://", "http://shop:p%40ss@");
    let t = connect(&with_user, &[]).await;
    let mut e = event(1, 0);
    e.payload = bytes::Bytes::from_static(b"{\"order_id\":1}");
    t.publish(e).await.expect("a 201 is an ack");
    let seen = shop.seen();
    assert_eq!(seen.len(), 1);
    // base64("shop:p@ss")
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic c2hvcDpwQHNz"),
        "{seen:?}"
    );
    let shown = format!("{:?}", t.info());
    assert!(
        !shown.contains("p%40ss") && !shown.contains("p@ss"),
        "{shown}"
    );
}

/// An `https://` endpoint goes through the TLS client (reqwest, rustls): a server that does
/// not speak TLS fails the handshake, so the order provably never left: refused, not unknown.
#[tokio::test]
async fn an_https_endpoint_whose_handshake_fails_never_got_the_order() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/checkout", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let t = connect(&url, &[]).await;
    match t.publish(event(1, 0)).await {
        Err(TransportError::Publish { source, .. }) => {
            assert!(source.to_string().contains("not sent"), "{source}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A server that closes each keep-alive connection shortly after answering on it (as nginx
/// and most servers do after their idle timeout): the next order finds its pooled connection
/// closed, and goes on a new one. Every order is answered and each reaches the server once.
#[tokio::test]
async fn an_endpoint_that_closes_idle_connections_loses_no_order() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/checkout", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (r, c) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                // One whole request: the head, then as many body bytes as it announces.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                let answer = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
                let _ = socket.write_all(answer).await;
                // Idle for a moment, then closed: keep-alive's idle timeout.
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    let t = connect(&url, &[]).await;
    for order in 0..5 {
        t.publish(event(order, 0))
            .await
            .unwrap_or_else(|e| panic!("order {order}: {e}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(requests.load(Ordering::SeqCst), 5, "each order sent once");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        5 + 1,
        "a new connection per order (and the reachability probe's)"
    );
}

fn scenario(url: &str, checkout_timeout: &str, faults: &str) -> doorbuster::scenario::Scenario {
    let text = format!(
        r#"
name: http-checkout
seed: 5
target: "{url}"
load:
  arrivals: uniform
  checkout_timeout: {checkout_timeout}
  phases:
    - {{ hold: 4s, rate: 100/s }}
  drain: 10s
orders:
  resubmits: 5%
checks:
  checkout_success_rate: ">= 99%"
  completion_rate: ">= 99%"
  latency:
    order.created: {{ p99: "< 1s" }}
    order.created -> order.fulfilled: {{ p99: "< 5s" }}
  no_loss: true
{faults}
"#
    );
    doorbuster::scenario::parse("http-checkout.yaml", &text).expect("the scenario parses")
}

async fn run(s: &doorbuster::scenario::Scenario) -> RunResult {
    super::support::run_with(s, None).await
}

fn verdict(r: &RunResult, name: &str) -> Verdict {
    super::support::check(r, name).verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_a_checkout_endpoint_judges_what_the_shopper_sees() {
    let (url, shop) = start_shop(Behaviour::Accept).await;
    let r = run(&scenario(&url, "2s", "")).await;
    let o = &r.summary.orders;
    assert_eq!(o.attempted, 400);
    assert_eq!(o.accepted, 400, "{o:?}");
    // The shop took every order once; resubmits came with a key it had seen.
    assert_eq!(shop.orders_taken(), 400);
    assert!(
        shop.seen().iter().all(|s| s.json && s.body_matches),
        "every request carried its order as JSON"
    );
    let replays = shop.seen().iter().filter(|s| s.replay).count() as u64;
    assert_eq!(replays, o.resubmits);
    assert!(o.resubmits > 0);
    // Only the checks a checkout endpoint can show; the rest is said to be left out.
    let names: Vec<&str> = r.summary.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["checkout_success_rate", "latency order.created p99"]
    );
    assert_eq!(verdict(&r, "checkout_success_rate"), Verdict::Pass);
    let left_out = r
        .summary
        .target
        .settings
        .iter()
        .find(|(k, _)| k == "checks left out")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    for name in ["completion_rate", "no_loss", "order.fulfilled"] {
        assert!(left_out.contains(name), "{left_out}");
    }
    assert_eq!(
        r.summary.verdict,
        doorbuster::report::summary::RunVerdict::Pass
    );
    // The terminal says what was and was not observed, with no pipeline counts of zero.
    let closing = doorbuster::report::terminal::closing_lines(&r.summary);
    assert!(closing.contains("deliveries: not observed"), "{closing}");
    assert!(!closing.contains("completed"), "{closing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_fail_the_checkout_success_rate_order_for_order() {
    // Negative control: the shop refuses every 20th order (5 %); the gate is 99 %.
    let (url, shop) = start_shop(Behaviour::Refuse {
        every: 20,
        status: 503,
    })
    .await;
    let r = run(&scenario(&url, "2s", "")).await;
    // Orders the shop refused (a refused order's resubmit is refused again: counted once).
    let refused_by_shop = shop
        .seen()
        .iter()
        .filter(|s| !s.taken)
        .map(|s| s.order_id)
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    assert_eq!(refused_by_shop, 20);
    let o = &r.summary.orders;
    assert_eq!(o.publish_refused, refused_by_shop);
    assert_eq!(o.failed, refused_by_shop);
    assert_eq!(o.publish_unknown, 0);
    assert_eq!(o.accepted + o.failed, o.attempted);
    let c = super::support::check(&r, "checkout_success_rate");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(c.observed.contains("380 of 400"), "{c:?}");
    // The status travels: counted by reason in summary.json, and first in the evidence.
    let [by_reason] = o.failed_by_reason.as_slice() else {
        panic!("one reason: {o:?}")
    };
    assert_eq!(by_reason.reason, "HTTP 503 Service Unavailable");
    assert_eq!(by_reason.count, refused_by_shop);
    assert_eq!(by_reason.orders, [0, 20, 40, 60, 80], "every 20th order");
    assert_eq!(
        c.evidence[0],
        "20 refused: HTTP 503 Service Unavailable (orders 0, 20, 40, 60, 80, ...)"
    );
    // ...and into the reports people read.
    let md = doorbuster::report::markdown::render(&r.summary);
    assert!(
        md.contains("| refused | HTTP 503 Service Unavailable | 20 |"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_after_the_checkout_timeout_are_unknown_not_lost() {
    // Every 25th order is answered after 3 s with a 1 s checkout timeout: the shopper gave
    // up, the shop still took the order. doorbuster counts those as unknown (at least those
    // 16: a loaded machine may add a slow answer of its own, never take one away).
    let (url, shop) = start_shop(Behaviour::Slow {
        every: 25,
        pause: Duration::from_secs(3),
    })
    .await;
    let r = run(&scenario(&url, "1s", "")).await;
    let o = &r.summary.orders;
    assert!(o.publish_unknown >= 16, "{o:?}");
    assert_eq!(o.publish_refused, 0);
    assert_eq!(o.accepted + o.publish_unknown, o.attempted);
    // Every unknown checkout reached the shop.
    assert_eq!(shop.orders_taken() as u64, o.attempted);
    assert_eq!(verdict(&r, "checkout_success_rate"), Verdict::Fail);
    let timeouts = o
        .failed_by_reason
        .iter()
        .find(|f| f.reason == "no answer within the checkout timeout (1s)")
        .unwrap_or_else(|| panic!("{o:?}"));
    assert_eq!(timeouts.count, o.publish_unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_endpoint_still_adds_up_order_for_order() {
    // Every answer takes 2 s, two requests may be in flight, the checkout timeout is 1 s:
    // orders queue for a slot and time out. Every one is still accounted for: refused,
    // unknown (sent, no answer) or not sent (no slot before its deadline; with one timeout
    // for all, a waiter usually gets the slot its predecessor frees at that one's deadline,
    // so this is rare, but it is counted).
    let (url, shop) = start_shop(Behaviour::Slow {
        every: 1,
        pause: Duration::from_secs(2),
    })
    .await;
    let text = format!(
        "name: slots\nseed: 5\ntarget: \"{url}\"\nload:\n  arrivals: uniform\n  \
         checkout_timeout: 1s\n  max_in_flight: 2\n  phases:\n    - {{ hold: 2s, rate: 20/s }}\n  \
         drain: 5s\n"
    );
    let s = doorbuster::scenario::parse("slots.yaml", &text).expect("parses");
    let r = run(&s).await;
    let o = &r.summary.orders;
    assert_eq!(o.accepted, 0, "{o:?}");
    assert_eq!(o.failed, o.publish_refused + o.publish_unknown + o.not_sent);
    assert_eq!(o.attempted, o.accepted + o.failed);
    // Exactly what was sent reached the shop.
    let sent_first_time = shop.seen().iter().filter(|s| !s.replay).count() as u64;
    assert_eq!(sent_first_time, o.publish_unknown, "{o:?}");
    assert!(o.publish_unknown > 0, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_fault_sits_between_doorbuster_and_the_endpoint() {
    // 100 ms each way on the link for seconds 1..3 of the 4 s run: checkouts in the
    // window answer in >= 200 ms, the rest in loopback time.
    let (url, _shop) = start_shop(Behaviour::Accept).await;
    let s = scenario(
        &url,
        "2s",
        "faults:\n  - { at: 1s, for: 2s, link: latency, delay: 100ms }",
    );
    let r = run(&s).await;
    let window = r
        .summary
        .faults
        .iter()
        .find(|f| f.kind == "link")
        .expect("a link window")
        .clone();
    let split = window
        .latency
        .into_iter()
        .find(|l| l.stage.label() == "order.created")
        .expect("a checkout split");
    assert!(split.during.p50_us >= 200_000, "{:?}", split.during);
    assert!(split.before.p50_us < 50_000, "{:?}", split.before);
}

#[test]
fn faults_on_services_the_endpoint_target_does_not_run_are_refused() {
    // Validation refuses them at the fault, before anything is sent
    // (tests/fixtures/broken/47-*); `run` gets the refusal by validating.
    let text = "name: x\ntarget: \"http://127.0.0.1:1/checkout\"\nload:\n  phases:\n    - { hold: 2s, rate: 5/s }\nfaults:\n  - { at: 1s, crash: email }\n";
    let err = doorbuster::scenario::parse("f.yaml", text)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("f.yaml:7:22: faults[0].crash: a crash fault"),
        "{err}"
    );
}

const SEED_TEMPLATE: &str = include_str!("../../examples/payloads/order-created.json.j2");
const SEED_SCHEMA: &str = include_str!("../../examples/payloads/order-created.schema.json");

/// A scenario file beside a payload template (and the schema, when `with_schema`), as a user
/// keeps them, loaded the way `run` loads it.
fn payload_scenario(
    dir: &std::path::Path,
    url: &str,
    template: &str,
    with_schema: bool,
) -> doorbuster::scenario::Scenario {
    std::fs::write(dir.join("order.json.j2"), template).unwrap();
    std::fs::write(dir.join("order.schema.json"), SEED_SCHEMA).unwrap();
    let schema = if with_schema {
        "    schema: order.schema.json\n"
    } else {
        ""
    };
    let text = format!(
        r#"name: seed-schema
seed: 11
target: "{url}"
load:
  arrivals: uniform
  phases:
    - {{ hold: 3s, rate: 60/s }}
  drain: 5s
orders:
  resubmits: 0%
  payload:
    template: order.json.j2
{schema}    headers:
      ce-type: order.created
checks:
  checkout_success_rate: ">= 99%"
"#
    );
    let path = dir.join("checkout.yaml");
    std::fs::write(&path, text).unwrap();
    let context = doorbuster::scenario::Context::run(Default::default());
    match doorbuster::scenario::load_with(path.to_str().unwrap(), &context) {
        Ok(loaded) => loaded.scenario,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_in_the_users_schema_reach_the_shop_as_its_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let (url, shop) = start_contract_shop(SEED_SCHEMA).await;
    let r = run(&payload_scenario(dir.path(), &url, SEED_TEMPLATE, true)).await;
    let o = &r.summary.orders;
    assert_eq!(o.attempted, 180);
    assert_eq!(o.accepted, 180, "{o:?}");
    let seen = shop.seen();
    assert_eq!(shop.orders_taken(), 180);
    // Every body was the seed schema's, about the order its headers named, with the
    // template's header.
    assert!(seen.iter().all(|s| s.json && s.body_matches), "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.ce_type.as_deref() == Some("order.created"))
    );
    assert_eq!(verdict(&r, "checkout_success_rate"), Verdict::Pass);

    // Negative control: the total quoted, which the shop's contract refuses. Without
    // `schema:` in the scenario, validation has no contract to hold it to, so the orders go
    // out and the shop refuses every one.
    let quoted = SEED_TEMPLATE.replace(
        r#""orderTotal": {{ order.totals.total }}"#,
        r#""orderTotal": "{{ order.totals.total }}""#,
    );
    assert_ne!(quoted, SEED_TEMPLATE);
    let (url, shop) = start_contract_shop(SEED_SCHEMA).await;
    let r = run(&payload_scenario(dir.path(), &url, &quoted, false)).await;
    assert_eq!(r.summary.orders.accepted, 0);
    assert_eq!(shop.orders_taken(), 0);
    assert_eq!(verdict(&r, "checkout_success_rate"), Verdict::Fail);
    // With the schema, the same template is refused before any order is sent.
    let (_, shop) = start_contract_shop(SEED_SCHEMA).await;
    std::fs::write(dir.path().join("order.json.j2"), &quoted).unwrap();
    let path = dir.path().join("checkout.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "    template: order.json.j2\n",
        "    template: order.json.j2\n    schema: order.schema.json\n",
    );
    std::fs::write(&path, text).unwrap();
    let context = doorbuster::scenario::Context::run(Default::default());
    let error = doorbuster::scenario::load_with(path.to_str().unwrap(), &context).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("order.json.j2:7:3: orders.payload.template:"),
        "{message}"
    );
    assert!(message.contains("/orderTotal"), "{message}");
    assert!(shop.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_template_cannot_render_makes_the_run_invalid_not_green() {
    // Validation renders orders 0 to 15; this template breaks from order 100 on, so only
    // the run meets it. Those orders are not sent, and the run cannot be trusted.
    let dir = tempfile::tempdir().unwrap();
    let (url, shop) = start_contract_shop(SEED_SCHEMA).await;
    let late = SEED_TEMPLATE.replace(
        r#""orderCurrency": {{ order.currency|tojson }},"#,
        r#""orderCurrency": {{ (order.currency if order.id < 100 else order.nope)|tojson }},"#,
    );
    assert_ne!(late, SEED_TEMPLATE);
    let r = run(&payload_scenario(dir.path(), &url, &late, true)).await;
    let o = &r.summary.orders;
    assert_eq!(o.attempted, 180);
    assert_eq!(o.accepted, 100, "{o:?}");
    assert_eq!(shop.seen().len(), 100);
    assert_eq!(
        r.summary.verdict,
        doorbuster::report::summary::RunVerdict::Invalid
    );
    assert!(
        r.summary
            .findings
            .iter()
            .any(|f| f.what.contains("order 100 could not be rendered")),
        "{:?}",
        r.summary.findings
    );
}

/// One run split over two shard processes against the endpoint, merged, and held to one
/// process's run of the same seed: the same orders taken and refused, the same verdict
/// (a failing one here: every tenth order is refused), and no idempotency key sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_post_each_order_once_and_merge_into_one_processs_verdict() {
    let (url, shop) = start_shop(Behaviour::Refuse {
        every: 10,
        status: 503,
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("web.yaml");
    std::fs::write(
        &file,
        format!(
            "name: web-shards\ndescription: a checkout endpoint, sharded\nseed: 3\n\
             target: {url}\nload:\n  max_send_lag: 500ms\n  phases:\n    \
             - {{ hold: 3s, rate: 100/s }}\n  drain: 3s\nchecks:\n  \
             checkout_success_rate: \">= 95%\"\n"
        ),
    )
    .unwrap();
    let doorbuster = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_doorbuster"));
        cmd.args(args);
        cmd
    };
    let dir = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let run = |out: &str| {
        let file = file.to_str().unwrap().to_owned();
        vec![
            "run".into(),
            file,
            "--quiet".into(),
            "--out".into(),
            dir(out),
        ]
    };
    let single = doorbuster(run("single")).output().await.unwrap();
    assert_eq!(
        single.status.code(),
        Some(1),
        "every tenth order refused: a fail"
    );
    let before = shop.seen().len();

    let start_at =
        humantime::format_rfc3339(doorbuster::clock::wall_now() + Duration::from_secs(3))
            .to_string();
    let shards = (0..2).map(|i| {
        let mut args = run(&format!("shard-{i}"));
        args.extend(["--shard".into(), format!("{i}/2"), "--run-id".into()]);
        args.extend(["web-shards".into(), "--start-at".into(), start_at.clone()]);
        doorbuster(args).output()
    });
    for out in futures_util::future::join_all(shards).await {
        assert_eq!(out.unwrap().status.code(), Some(0));
    }
    let mut merge: Vec<String> = vec!["merge".into(), dir("shard-0"), dir("shard-1")];
    merge.extend(["--out".into(), dir("merged")]);
    let merged = doorbuster(merge).output().await.unwrap();
    assert_eq!(
        merged.status.code(),
        Some(1),
        "the same verdict as one process"
    );

    let summary = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(tmp.path().join(name).join("summary.json")).unwrap())
            .unwrap()
    };
    let (one, all) = (summary("single"), summary("merged"));
    for count in [
        "planned",
        "attempted",
        "accepted",
        "failed",
        "publish_refused",
    ] {
        assert_eq!(all["orders"][count], one["orders"][count], "orders.{count}");
    }
    assert_eq!(all["checks"][0]["verdict"], one["checks"][0]["verdict"]);
    assert_eq!(all["checks"][0]["observed"], one["checks"][0]["observed"]);
    // The shards' requests: every order once, under a key of its own.
    let sharded = &shop.seen()[before..];
    assert_eq!(
        sharded.len() as u64,
        one["orders"]["attempted"].as_u64().unwrap()
    );
    assert!(
        sharded.iter().all(|s| !s.replay),
        "a key sent twice across shards"
    );
    let mut ids: Vec<u64> = sharded.iter().map(|s| s.order_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sharded.len(), "an order posted by two shards");
}
