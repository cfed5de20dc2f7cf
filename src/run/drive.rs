//! Drive: the open-model driver dispatches the schedule, from t=0 until its end or an
//! interrupt, while the ticker closes each second of the run.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Run;
use super::drain::lags;
use crate::load::Schedule;
use crate::load::driver::{Driver, DriverOutcome};
use crate::observe::Observer;
use crate::report::progress::Progress;
use crate::topology::ServiceKind;
use crate::transport::Transport;

impl Run<'_> {
    /// Dispatches every arrival of the schedule, or until the run is interrupted.
    pub async fn drive(&self) -> DriverOutcome {
        let driver = Arc::new(Driver {
            publisher: self.publisher.clone(),
            factory: self.factory.clone(),
            schedule: self.schedule.clone(),
            load: self.scenario.load.clone(),
            seed: self.seed,
            provider: self.client.clone(),
            renderer: self.renderer.clone(),
            shard: self.sharding.as_ref().map(|s| s.shard),
        });
        driver.run(self.interrupt.clone()).await
    }
}

/// Seconds between two looks for quiet ledger chunks to page out.
const TEND_EVERY_S: u32 = 5;

/// Closes each second of the run until `stop`, and pages quiet chunks of the ledger out.
pub(super) async fn tick(
    observer: Arc<Observer>,
    transport: Arc<dyn Transport>,
    groups: Vec<ServiceKind>,
    schedule: Arc<Schedule>,
    progress: Progress,
    stop: CancellationToken,
) {
    let clock = &observer.clock;
    let mut second: u32 = 0;
    loop {
        let end = u64::from(second + 1) * 1_000_000_000;
        tokio::select! {
            _ = clock.sleep_until(end) => {}
            _ = stop.cancelled() => break,
        }
        close(&observer, &transport, &groups, second).await;
        progress.update(&observer, &schedule, second);
        if second.is_multiple_of(TEND_EVERY_S) {
            let observer = Arc::clone(&observer);
            let now_ms = observer.clock.now() / 1_000_000;
            // Not awaited: a slow disk never delays the next second's close.
            drop(tokio::task::spawn_blocking(move || {
                observer.ledger.tend(now_ms)
            }));
        }
        second += 1;
    }
    // The last, partial second.
    close(&observer, &transport, &groups, second).await;
}

/// Closes `second` now, then asks the broker for the groups' lags.
async fn close(
    observer: &Observer,
    transport: &Arc<dyn Transport>,
    groups: &[ServiceKind],
    second: u32,
) {
    let mut sample = observer.close_second(second);
    sample.lag = lags(transport, groups).await;
    observer.record_sample(sample);
}
