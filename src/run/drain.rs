//! Drain: after the load, wait (bounded) until the pipeline is quiet, say what was still
//! not settled, then stop the services, the timeline and the ticker and tidy the broker up.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Run;
use crate::clock::duration_ns;
use crate::exit::StopSignal;
use crate::load::driver::DriverOutcome;
use crate::observe::{Checkout, Observer, Settlement};
use crate::topology::ServiceKind;
use crate::transport::Transport;

/// Observe mode: once every expected output is in, the taps watch this long for more (a
/// duplicate that comes late) before the drain ends.
const OUTPUTS_QUIET: Duration = Duration::from_secs(1);
/// How often the drain counts the outputs still missing (a pass over every order).
const OUTPUTS_POLL: Duration = Duration::from_millis(250);
/// After an interrupt the drain is cut to this.
const INTERRUPTED_DRAIN_MAX: Duration = Duration::from_secs(3);
/// How often the drain looks whether the pipeline is quiet.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// What the load and the drain left for the judge.
pub struct Drained {
    pub outcome: DriverOutcome,
    pub settlement: Settlement,
    /// The load stopped early or the drain was cut short by a signal.
    pub interrupted: bool,
    /// Which signal, if one came.
    pub interrupted_by: Option<StopSignal>,
}

impl Run<'_> {
    /// Waits for the pipeline to settle (bounded by `load.drain`, cut short after an
    /// interrupt, never before the last fault has ended), then stops everything the run
    /// started.
    pub async fn drain(&mut self, outcome: DriverOutcome) -> Drained {
        let scenario = self.scenario;
        let drain = if outcome.stopped_early {
            scenario.load.drain.min(INTERRUPTED_DRAIN_MAX)
        } else {
            scenario.load.drain
        };
        self.progress.draining();
        // The drain never ends before the last fault has started and stopped.
        let faults_end = scenario
            .faults
            .iter()
            .map(|f| duration_ns(f.at + f.duration.unwrap_or_default()))
            .max()
            .filter(|_| !outcome.stopped_early)
            .unwrap_or(0);
        let settlement = match &scenario.observe {
            Some(observe) => {
                let limit = if outcome.stopped_early {
                    INTERRUPTED_DRAIN_MAX
                } else {
                    observe.settle_within
                };
                drain_until_outputs(&self.observer, limit, faults_end, &self.interrupt).await
            }
            None => {
                drain_until_quiet(
                    &self.observer,
                    &self.transport,
                    &self.pipeline.groups,
                    drain,
                    faults_end,
                    &self.interrupt,
                )
                .await
            }
        };
        let interrupted = outcome.stopped_early || self.interrupt.is_cancelled();
        self.note_not_settled(&settlement);
        let interrupted_by = *self.signal.borrow();
        self.stop_all().await;
        Drained {
            outcome,
            settlement,
            interrupted,
            interrupted_by,
        }
    }

    /// A finding for the events the drain left queued or in hand, per service.
    fn note_not_settled(&self, settlement: &Settlement) {
        let (queued, queued_total) = settlement.queued();
        if queued.is_empty() {
            return;
        }
        let per_service: Vec<String> = queued
            .iter()
            .map(|(service, lag)| match lag {
                Some(n) => format!("{service} {n}"),
                None => format!("{service} (lag unknown)"),
            })
            .collect();
        self.observer.finding(format!(
            "the drain ended with {queued_total} events not settled (still queued or being \
             handled): {}",
            per_service.join(", ")
        ));
    }

    /// Stops the services, the ticker and the timeline, removes what the run created on a
    /// networked broker, then stops the fault proxy.
    async fn stop_all(&mut self) {
        self.stop.cancel();
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.await;
        }
        if let Some(timeline) = self.timeline.take() {
            let _ = timeline.await;
        }
        while self.pipeline.tasks.join_next().await.is_some() {}
        self.progress.finish();
        // What the run created on a networked broker goes; a failure to tidy up is not the
        // run's verdict, but it is said. A shard's namespace is its run's: the other shards
        // may still be using it.
        if let Some(sharding) = self.sharding.as_ref().filter(|s| s.is_part()) {
            tracing::info!(
                "the streams of run {} stay on the broker (namespace {}): its other shards \
                 share them",
                sharding.run_id,
                sharding.namespace()
            );
        } else if let Err(e) = self.transport.cleanup().await {
            tracing::warn!("could not remove the run's streams from the broker: {e}");
        }
        if let Some(tapped) = &self.tapped_broker
            && let Err(e) = tapped.cleanup().await
        {
            tracing::warn!("could not tidy up the broker the taps read: {e}");
        }
        self.proxy_stop.cancel();
    }
}

/// The longest the groups' lags may take to come in, all asked at once: a broker behind a
/// broken link (a blackhole leaves its connection open and silent) answers nothing, and
/// the second's sample, the live view and the drain must not wait on it. A lag without an
/// answer in time is unknown (`None`), as it is when the broker says no.
const LAGS_BOUND: Duration = Duration::from_secs(2);

pub(super) async fn lags(
    transport: &Arc<dyn Transport>,
    groups: &[ServiceKind],
) -> Vec<(ServiceKind, Option<u64>)> {
    let asked = groups.iter().map(|&g| async move {
        let lag = tokio::time::timeout(LAGS_BOUND, transport.lag(g.name())).await;
        (g, lag.ok().and_then(Result::ok))
    });
    futures_util::future::join_all(asked).await
}

/// When a drain ends at the latest: `limit` from now (never before `not_before`), or an
/// interrupt that comes during the drain.
struct Until {
    deadline: crate::clock::RunTime,
    interrupted_before: bool,
}

impl Until {
    fn new(
        observer: &Observer,
        limit: Duration,
        not_before: crate::clock::RunTime,
        interrupt: &CancellationToken,
    ) -> Until {
        Until {
            deadline: (observer.clock.now() + duration_ns(limit)).max(not_before),
            interrupted_before: interrupt.is_cancelled(),
        }
    }

    fn reached(&self, observer: &Observer, interrupt: &CancellationToken) -> bool {
        observer.clock.now() >= self.deadline
            || (!self.interrupted_before && interrupt.is_cancelled())
    }
}

/// Waits until every checkout is answered, no service is handling anything and every group
/// has committed everything, or until `limit`, or until an interrupt; returns what was still
/// pending then.
async fn drain_until_quiet(
    observer: &Observer,
    transport: &Arc<dyn Transport>,
    groups: &[ServiceKind],
    limit: Duration,
    not_before: crate::clock::RunTime,
    interrupt: &CancellationToken,
) -> Settlement {
    let clock = &observer.clock;
    let until = Until::new(observer, limit, not_before, interrupt);
    loop {
        let c = &observer.counters;
        let quiet = c.open_checkouts.load(Relaxed) == 0
            && c.processing.load(Relaxed) == 0
            && c.dead_letters_arrived.load(Relaxed) >= c.dead_lettered.load(Relaxed)
            && clock.now() >= not_before;
        let ending = until.reached(observer, interrupt);
        if quiet || ending {
            // A lag the broker cannot tell counts as not drained.
            let lags = lags(transport, groups).await;
            if ending || lags.iter().all(|(_, lag)| *lag == Some(0)) {
                return Settlement::now(c, lags);
            }
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Observe mode: waits until every checkout is answered and every accepted order's expected
/// outputs are in, and then no output came for [`OUTPUTS_QUIET`]; or until `limit`, or an
/// interrupt.
async fn drain_until_outputs(
    observer: &Observer,
    limit: Duration,
    not_before: crate::clock::RunTime,
    interrupt: &CancellationToken,
) -> Settlement {
    let until = Until::new(observer, limit, not_before, interrupt);
    let ledger = &observer.ledger;
    loop {
        let c = &observer.counters;
        let now = observer.clock.now();
        let complete = observer.outputs.as_ref().is_none_or(|outputs| {
            let quiet_since = outputs.last_at.load(Relaxed) + duration_ns(OUTPUTS_QUIET);
            now >= quiet_since
                && outputs.missing(|order| ledger.checkout(order) == Checkout::Accepted) == 0
        });
        let quiet = c.open_checkouts.load(Relaxed) == 0 && complete && now >= not_before;
        if quiet || until.reached(observer, interrupt) {
            return Settlement::now(c, Vec::new());
        }
        tokio::time::sleep(OUTPUTS_POLL).await;
    }
}
