//! Live metrics: `run --metrics-listen 127.0.0.1:PORT` serves what the run has seen so far
//! in the OpenMetrics text format (which Prometheus scrapes), read from the observer at each
//! scrape, so the hot path pays nothing for it. `deploy/grafana/doorbuster.json` charts them.
//!
//! Names follow Prometheus' conventions: a `doorbuster_` prefix, base units (`_seconds`),
//! counters ending in `_total`, one family per quantity with labels for its parts. What a
//! scrape shows is what the verdict will judge, not the verdict: losses are only known once
//! the run has drained (`doorbuster_orders_unsettled` is what is still on its way), and
//! duplicates so far are counted as they happen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

use crate::load::Schedule;
use crate::observe::{Effect, Observer, Tally};
use crate::services::provider::ProviderCore;
use crate::topology::Stage;

/// The buckets of the latency histograms, in seconds: from a fast broker ack to a stuck order.
const BUCKETS_S: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The content type of what `/metrics` serves.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape reads: the run's observer, its plan and its payment provider.
#[derive(Clone)]
pub struct Live {
    pub observer: Arc<Observer>,
    pub schedule: Arc<Schedule>,
    pub provider: Arc<ProviderCore>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

/// The metrics now, as OpenMetrics text.
pub fn render(live: &Live) -> String {
    let mut registry = Registry::with_prefix("doorbuster");
    registry.register_collector(Box::new(live.clone()));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Serves `/metrics` on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, live: Live, stop: CancellationToken) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let live = live.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    render(&live),
                )
            }
        }),
    );
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}

/// Refuses an address off loopback (also checked by `run` before it loads anything).
pub fn loopback_only(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--metrics-listen {addr}: serve metrics on a loopback address (127.0.0.1 or ::1)"
        ))
    }
}

/// Binds `addr` for the metrics, on loopback only (load and its figures stay on this host).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    loopback_only(addr)?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

/// `(upper bound in seconds, samples in that bucket alone)`, from microseconds; the
/// encoder writes them cumulative, as `le` buckets are.
fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(BUCKETS_S.len() + 1);
    let mut below = 0;
    for &le in &BUCKETS_S {
        let up_to = h.count_between(0, (le * 1e6) as u64);
        out.push((le, up_to - below));
        below = up_to;
    }
    // prometheus-client writes the bucket bounded by f64::MAX as `le="+Inf"`.
    out.push((f64::MAX, h.len() - below));
    out
}

/// The sum of the samples, in seconds (each at its bucket's value: HdrHistogram keeps no sum).
fn sum_s(h: &Histogram<u64>) -> f64 {
    h.iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum::<f64>()
        / 1e6
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let o = &self.observer;
        let c = &o.counters;
        let now = o.now();
        gauge(
            &mut encoder,
            "elapsed",
            "Run time since the load started",
            Some(&Unit::Seconds),
            now as f64 / 1e9,
        )?;
        gauge(
            &mut encoder,
            "orders_planned",
            "Orders the scenario plans in all",
            None,
            self.schedule.orders() as f64,
        )?;
        let planned_rate = self
            .schedule
            .phase_at(now)
            .map_or(0.0, |(_, phase)| phase.rate_at(now));
        gauge(
            &mut encoder,
            "planned_rate",
            "Orders per second the current phase plans",
            None,
            planned_rate,
        )?;
        counter(
            &mut encoder,
            "orders_attempted",
            "Checkouts attempted",
            c.attempted.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "orders_accepted",
            "Checkouts accepted (order.created acked in time)",
            c.accepted.load(Relaxed),
        )?;
        let (refused, unknown, not_sent) = (
            c.checkout_refused.load(Relaxed),
            c.checkout_unknown.load(Relaxed),
            c.checkout_not_sent.load(Relaxed),
        );
        let failed = c.failed.load(Relaxed);
        let payment = failed.saturating_sub(refused + unknown + not_sent);
        {
            let mut family = encoder.encode_descriptor(
                "orders_failed",
                "Failed checkouts by how they failed",
                None,
                MetricType::Counter,
            )?;
            for (how, n) in [
                ("refused", refused),
                ("unknown", unknown),
                ("not_sent", not_sent),
                ("payment", payment),
            ] {
                ConstCounter::new(n).encode(family.encode_family(&[("outcome", how)])?)?;
            }
        }
        gauge(
            &mut encoder,
            "checkouts_in_flight",
            "Checkouts waiting for their answer now",
            None,
            c.open_checkouts.load(Relaxed) as f64,
        )?;
        // One pass over the ledger (the chunks paged out count as they went).
        let Tally {
            applied,
            twice,
            unsettled,
        } = o.ledger.tally();
        {
            let mut family = encoder.encode_descriptor(
                "effects",
                "Effects the simulated services applied, by kind",
                None,
                MetricType::Counter,
            )?;
            for (i, effect) in Effect::ALL.iter().enumerate() {
                let labels = [("effect", effect.name())];
                ConstCounter::new(applied[i]).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "duplicate_effect_orders",
                "Orders with an effect applied more than once so far",
                None,
                MetricType::Gauge,
            )?;
            for (i, effect) in Effect::ALL.iter().enumerate() {
                let labels = [("effect", effect.name())];
                ConstGauge::new(twice[i] as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "orders_unsettled",
            "Accepted orders not yet fulfilled, declined or failed: loss is judged on these \
             once the run has drained",
            None,
            unsettled as f64,
        )?;
        counter(
            &mut encoder,
            "deliveries",
            "Events delivered to the simulated services",
            c.deliveries.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "duplicate_deliveries",
            "Deliveries of an event a group had already received (normal under at-least-once)",
            c.duplicate_deliveries.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "dead_lettered",
            "Events parked on order.dead_letter",
            c.dead_lettered.load(Relaxed),
        )?;
        let p = self.provider.stats();
        {
            let mut family = encoder.encode_descriptor(
                "provider_calls",
                "Calls to the payment provider by how it answered",
                None,
                MetricType::Counter,
            )?;
            for (answer, n) in [
                ("captured", p.captures),
                ("declined", p.declines),
                ("replayed", p.replays),
                ("conflict", p.conflicts),
                ("error", p.errors),
            ] {
                ConstCounter::new(n).encode(family.encode_family(&[("answer", answer)])?)?;
            }
        }
        {
            // As of the last closed second; a group whose broker did not answer is left out.
            let lags = o
                .last_samples(1)
                .last()
                .map(|s| s.lag.clone())
                .unwrap_or_default();
            let mut family = encoder.encode_descriptor(
                "consumer_lag",
                "Events published to a group's topics and not yet committed by it",
                None,
                MetricType::Gauge,
            )?;
            for (group, lag) in lags.iter().filter_map(|(g, l)| l.map(|l| (g, l))) {
                let labels = [("group", group.name())];
                ConstGauge::new(lag as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "fault_active",
                "1 while a fault is on, 0 once it ended",
                None,
                MetricType::Gauge,
            )?;
            for w in o.fault_windows() {
                let labels = [("kind", w.kind.as_str()), ("target", w.target.as_str())];
                let on = i64::from(w.end_ms.is_none());
                ConstGauge::new(on).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "latency",
                "Latency per stage from each order's intended time, over the run so far",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for stage in Stage::ALL {
                let h = o.stage(stage).total();
                let labels = [("stage", stage.label())];
                family
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum_s(&h), h.len(), &buckets(&h), None)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "latency_recent",
                "Latency per stage over the last 10 s, by quantile",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for stage in Stage::ALL {
                let p = o.stage(stage).recent();
                if p.count == 0 {
                    continue;
                }
                for (q, us) in [("0.5", p.p50_us), ("0.99", p.p99_us)] {
                    let labels = [("stage", stage.label()), ("quantile", q)];
                    ConstGauge::new(us as f64 / 1e6).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let send_lag = o.send_lag.total();
        encoder
            .encode_descriptor(
                "send_lag",
                "How late the generator dispatched arrivals (the run's own health)",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                sum_s(&send_lag),
                send_lag.len(),
                &buckets(&send_lag),
                None,
            )
    }
}
