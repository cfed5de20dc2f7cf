//! Chaos: faults on the scenario's clock.
//!
//! The timeline (`run_timeline`) starts and stops each fault at its `at` and `at + for`,
//! records the window in the observer as it really happened, and leaves the work to one
//! small [`FaultAction`] per kind (one file each). Service faults do not reach into the
//! services: they switch [`ServiceFaults`], which the service runner consults around every
//! delivery, and [`scope::applies`] decides once, for every kind, which deliveries a fault
//! touches (share of deliveries, share of order keys, seeded).
//!
//! `proxy/` is the TCP fault proxy for link faults (latency, jitter, bandwidth, reset,
//! blackhole) between services and a networked broker, also runnable alone as
//! `doorbuster proxy`.

pub mod crash;
pub mod duplicate;
pub mod errors;
pub mod exec;
pub mod latency;
pub mod link;
pub mod pause;
pub mod poison;
pub mod provider_outage;
pub mod proxy;
pub mod reorder;
pub mod replay;
pub mod scope;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::observe::Observer;
use crate::scenario::model::{Fault, FaultKind, FaultScope, LatencyDist};
use crate::services::provider::ProviderCore;
use crate::topology::ServiceKind;
use crate::transport::{BoxFuture, Transport};

/// A fault that touches a share of a service's deliveries, with the fault's index (for
/// seeding its decisions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Active<T> {
    pub index: usize,
    pub scope: FaultScope,
    pub what: T,
}

/// What the chaos timeline has switched on for one service right now.
pub struct ServiceFaults {
    /// True while the service's consumers are crashed.
    pub down: watch::Sender<bool>,
    /// True while the service is paused.
    pub paused: watch::Sender<bool>,
    pub latency: RwLock<Option<Active<LatencyDist>>>,
    pub errors: RwLock<Option<Active<()>>>,
    pub duplicate: RwLock<Option<Active<()>>>,
    /// Poison windows, kept after they close: their events stay poison.
    pub poison: RwLock<Vec<poison::PoisonWindow>>,
}

impl Default for ServiceFaults {
    fn default() -> Self {
        ServiceFaults {
            down: watch::channel(false).0,
            paused: watch::channel(false).0,
            latency: RwLock::new(None),
            errors: RwLock::new(None),
            duplicate: RwLock::new(None),
            poison: RwLock::new(Vec::new()),
        }
    }
}

fn read<T: Copy>(slot: &RwLock<Option<T>>) -> Option<T> {
    *slot.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(slot: &RwLock<Option<T>>, value: Option<T>) {
    *slot.write().unwrap_or_else(|e| e.into_inner()) = value;
}

impl ServiceFaults {
    pub fn latency(&self) -> Option<Active<LatencyDist>> {
        read(&self.latency)
    }

    pub fn errors(&self) -> Option<Active<()>> {
        read(&self.errors)
    }

    pub fn duplicate(&self) -> Option<Active<()>> {
        read(&self.duplicate)
    }
}

/// Every service's fault switches.
#[derive(Default)]
pub struct Chaos {
    services: [ServiceFaults; ServiceKind::ALL.len()],
    /// The topic whose events are being reordered, if any.
    pub reorder: RwLock<Option<Active<crate::events::Topic>>>,
}

impl Chaos {
    pub fn service(&self, kind: ServiceKind) -> &ServiceFaults {
        &self.services[kind as usize]
    }
}

/// What a fault action may use.
pub struct ChaosCtx {
    pub chaos: Arc<Chaos>,
    pub transport: Arc<dyn Transport>,
    pub provider: Arc<ProviderCore>,
    pub observer: Arc<Observer>,
    pub seed: u64,
    /// Where `exec` output goes; `None` when the run writes no files.
    pub run_dir: Option<PathBuf>,
    /// The fault proxy in front of the broker, when the scenario has link faults.
    pub proxy: Option<proxy::ProxyHandle>,
}

/// One fault kind: what starting and stopping it does.
pub trait FaultAction: Send + Sync {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()>;
    /// Called at `at + for` (never for instant faults).
    fn stop<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()>;
}

/// The action for a fault, and what it acts on, as the report shows it (its kind's label is
/// [`FaultKind::label`]).
pub fn action(fault: &Fault) -> (Box<dyn FaultAction>, String) {
    let scope = fault.scope;
    match &fault.kind {
        FaultKind::Crash { service, .. } => (Box::new(crash::Crash(*service)), service.to_string()),
        FaultKind::Pause { service } => (Box::new(pause::Pause(*service)), service.to_string()),
        FaultKind::Latency { service, add } => (
            Box::new(latency::Latency {
                service: *service,
                add: *add,
                scope,
            }),
            service.to_string(),
        ),
        FaultKind::Errors { service } => (
            Box::new(errors::Errors {
                service: *service,
                scope,
            }),
            service.to_string(),
        ),
        FaultKind::Poison { service } => (
            Box::new(poison::Poison {
                service: *service,
                scope,
            }),
            service.to_string(),
        ),
        FaultKind::Duplicate { service } => (
            Box::new(duplicate::Duplicate {
                service: *service,
                scope,
            }),
            service.to_string(),
        ),
        FaultKind::ProviderOutage {
            errors,
            status,
            latency,
            retry_after,
        } => (
            Box::new(provider_outage::ProviderOutage {
                errors: *errors,
                status: *status,
                latency: *latency,
                retry_after: *retry_after,
            }),
            "payment provider".to_owned(),
        ),
        FaultKind::Replay { service, to } => (
            Box::new(replay::Replay {
                service: *service,
                to: *to,
            }),
            service.to_string(),
        ),
        FaultKind::Reorder { topic } => (
            Box::new(reorder::Reorder {
                topic: *topic,
                scope,
            }),
            topic.to_string(),
        ),
        FaultKind::Link { toxic, direction } => (
            Box::new(link::Link {
                toxic: toxic.clone(),
                direction: *direction,
                share: scope.share,
            }),
            format!("broker link ({})", toxic.kind()),
        ),
        FaultKind::Exec { command } => (
            Box::new(exec::Exec {
                command: command.clone(),
            }),
            command.clone(),
        ),
    }
}

/// Starts and stops every fault on the run's clock until `stop`.
pub async fn run_timeline(faults: Vec<Fault>, ctx: ChaosCtx, mut stop: watch::Receiver<bool>) {
    let clock = &ctx.observer.clock;
    let actions: Vec<_> = faults.iter().map(action).collect();
    // (time, fault index, is_start), in time order; a stop sorts before a start at the
    // same instant so back-to-back windows do not overlap.
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        let at = crate::clock::duration_ns(fault.at);
        events.push((at, i, true));
        if let Some(d) = fault.duration {
            events.push((at + crate::clock::duration_ns(d), i, false));
        }
    }
    events.sort_by_key(|(t, i, start)| (*t, *start, *i));
    for (at, i, start) in events {
        tokio::select! {
            _ = clock.sleep_until(at) => {}
            _ = crate::load::driver::stopped(&mut stop) => return,
        }
        let (action, target) = &actions[i];
        if start {
            ctx.observer
                .fault_started(i, faults[i].kind.label(), target);
            action.start(i, &ctx).await;
        } else {
            action.stop(i, &ctx).await;
            ctx.observer.fault_stopped(i);
        }
    }
}
