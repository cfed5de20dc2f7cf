//! Chaos: faults on the scenario's clock.
//!
//! The timeline (`run_timeline`) starts and stops each fault at its `at` and `at + for`,
//! records the window in the observer as it really happened, and leaves the work to one
//! small [`FaultAction`] per kind. Overlapping windows of one kind on one target share the
//! state they switch: it stays on until the last of them ends ([`compose`]).
//!
//! Faults on a service's deliveries (`latency`, `errors`, `duplicate`, `poison`) are units
//! behind one trait, [`delivery::DeliveryFault`]: the timeline arms them on the service's
//! [`ServiceFaults`], where the runner asks for one [`delivery::Plan`] per delivery, and the
//! wrapper that holds each of them applies its scope once ([`scope::applies`]: share of
//! deliveries, share of order keys, seeded). `crash` and `pause` switch a service's gates.
//! Chaos reaches no service: the runner reads what chaos armed, and the provider outage acts
//! through [`provider_outage::OutageSwitch`], which the provider mock implements.
//!
//! `proxy/` is the TCP fault proxy for link faults (latency, jitter, bandwidth, reset,
//! blackhole) between services and a networked broker, also runnable alone as
//! `doorbuster proxy`.

pub mod compose;
pub mod config;
pub mod crash;
pub mod delivery;
pub mod duplicate;
pub mod errors;
pub mod exec;
pub mod latency;
pub mod link;
pub mod model;
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
use tokio_util::sync::CancellationToken;

use self::delivery::{Armed, Armory, DeliveryFault};
use crate::chaos::model::{Fault, FaultKind, FaultScope};
use crate::observe::Observer;
use crate::topology::ServiceKind;
use crate::transport::{BoxFuture, Transport};

/// A fault that touches a share of a topic's events, with the fault's index (for seeding
/// its decisions).
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
    /// The delivery faults armed on the service.
    pub deliveries: Armory,
}

impl Default for ServiceFaults {
    fn default() -> Self {
        ServiceFaults {
            down: watch::channel(false).0,
            paused: watch::channel(false).0,
            deliveries: Armory::default(),
        }
    }
}

/// Every service's fault switches.
#[derive(Default)]
pub struct Chaos {
    services: [ServiceFaults; ServiceKind::ALL.len()],
    /// The topics whose events are being reordered: one entry per topic at most, since
    /// overlapping reorder windows of one topic share one entry (see `compose`).
    pub reorder: RwLock<Vec<Active<crate::events::Topic>>>,
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
    pub provider: Arc<dyn provider_outage::OutageSwitch>,
    pub observer: Arc<Observer>,
    pub seed: u64,
    /// Where `exec` output goes; `None` when the run writes no files.
    pub run_dir: Option<PathBuf>,
    /// The fault proxy in front of the broker, when the scenario has link faults.
    pub proxy: Option<proxy::ProxyHandle>,
    /// Observe mode: the fault proxies on the user's own links (`observe.links`), by name.
    pub links: std::collections::HashMap<String, proxy::ProxyHandle>,
    /// Cancelled when the run is interrupted: commands still running are killed instead
    /// of waited for.
    pub interrupt: Option<CancellationToken>,
}

/// One fault kind: what starting and stopping it does.
pub trait FaultAction: Send + Sync {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()>;
    /// Called at `at + for` (never for instant faults).
    fn stop<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()>;
    /// Called once when the timeline ends: waits for work the fault left running in the
    /// background (an `exec` command), so that its outcome is in the report.
    fn finish<'a>(&'a self, _ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// A delivery fault's window on one service: arms the fault with its scope when it opens,
/// disarms it when it closes (unless the fault stays armed after its window).
pub struct Arm {
    pub service: ServiceKind,
    pub scope: FaultScope,
    pub fault: Arc<dyn DeliveryFault>,
}

impl FaultAction for Arm {
    fn start<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        self.fault.opened(ctx.observer.now());
        ctx.chaos.service(self.service).deliveries.arm(Armed {
            index,
            scope: self.scope,
            fault: self.fault.clone(),
        });
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, index: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        if !self.fault.closed(ctx.observer.now()) {
            ctx.chaos.service(self.service).deliveries.disarm(index);
        }
        Box::pin(async {})
    }
}

/// A fault that holds one of a service's gates (`crash`: down, `pause`: paused) while its
/// window is open.
pub struct Gate {
    pub service: ServiceKind,
    pub gate: fn(&ServiceFaults) -> &watch::Sender<bool>,
}

impl FaultAction for Gate {
    fn start<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        (self.gate)(ctx.chaos.service(self.service)).send_replace(true);
        Box::pin(async {})
    }

    fn stop<'a>(&'a self, _: usize, ctx: &'a ChaosCtx) -> BoxFuture<'a, ()> {
        (self.gate)(ctx.chaos.service(self.service)).send_replace(false);
        Box::pin(async {})
    }
}

/// The action for a fault, and what it acts on, as the report shows it (its kind's label is
/// [`FaultKind::label`]).
pub fn action(fault: &Fault) -> (Box<dyn FaultAction>, String) {
    let scope = fault.scope;
    let arm =
        |service: ServiceKind, fault: Arc<dyn DeliveryFault>| -> (Box<dyn FaultAction>, String) {
            (
                Box::new(Arm {
                    service,
                    scope,
                    fault,
                }),
                service.to_string(),
            )
        };
    match &fault.kind {
        FaultKind::Crash { service, .. } => (Box::new(crash::crash(*service)), service.to_string()),
        FaultKind::Pause { service } => (Box::new(pause::pause(*service)), service.to_string()),
        FaultKind::Latency { service, add } => arm(*service, Arc::new(latency::Latency(*add))),
        FaultKind::Errors { service } => arm(*service, Arc::new(errors::Errors)),
        FaultKind::Poison { service } => arm(*service, Arc::new(poison::Poison::default())),
        FaultKind::Duplicate { service } => arm(*service, Arc::new(duplicate::Duplicate)),
        FaultKind::ProviderOutage {
            errors,
            status,
            latency,
            retry_after,
            lost_answers,
        } => (
            Box::new(provider_outage::ProviderOutage {
                errors: *errors,
                status: *status,
                latency: *latency,
                retry_after: *retry_after,
                lost_answers: *lost_answers,
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
        FaultKind::Link {
            toxic,
            direction,
            on,
        } => (
            Box::new(link::Link {
                toxic: toxic.clone(),
                direction: *direction,
                share: scope.share,
                on: on.clone(),
            }),
            match on {
                Some(name) => format!("link {name} ({})", toxic.kind()),
                None => format!("broker link ({})", toxic.kind()),
            },
        ),
        FaultKind::Exec { command } => {
            (Box::new(exec::Exec::new(command.clone())), command.clone())
        }
    }
}

/// Starts and stops every fault on the run's clock until `stop`, then waits for what the
/// faults left running (see [`FaultAction::finish`]).
///
/// A fault whose switch is already on when its window opens composes with the window that
/// switched it (validation has refused overlapping windows with different settings): nothing
/// new is applied, and the switch goes off only when the last open window ends. Both cases
/// are noted on the windows, so the report says what was in force and why.
pub async fn run_timeline(faults: Vec<Fault>, ctx: ChaosCtx, stop: CancellationToken) {
    let clock = &ctx.observer.clock;
    let actions: Vec<_> = faults.iter().map(action).collect();
    let switches: Vec<_> = faults.iter().map(compose::switch).collect();
    let mut held = compose::Held::default();
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
            _ = stop.cancelled() => break,
        }
        let (action, target) = &actions[i];
        let kind = faults[i].kind.label();
        if start {
            ctx.observer.fault_started(i, kind, target);
            let opened = switches[i]
                .clone()
                .map_or(compose::Opened::First, |s| held.open(s, i));
            match opened {
                compose::Opened::First => action.start(i, &ctx).await,
                compose::Opened::Joined { holder } => ctx.observer.fault_note(
                    i,
                    format!(
                        "{kind} on {target} was already in force (faults[{holder}]): the \
                         windows compose, and it stays on until the last of them ends"
                    ),
                ),
            }
        } else {
            let closed = switches[i]
                .as_ref()
                .map_or(compose::Closed::Last { holder: i }, |s| held.close(s, i));
            match closed {
                compose::Closed::Last { holder } => actions[holder].0.stop(holder, &ctx).await,
                compose::Closed::StillOpen { by } => ctx.observer.fault_note(
                    i,
                    format!(
                        "its window closed while {} kept {kind} on {target} in force",
                        by.iter()
                            .map(|j| format!("faults[{j}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
            ctx.observer.fault_stopped(i);
        }
    }
    for (action, _) in &actions {
        action.finish(&ctx).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::Clock;
    use crate::transport::embedded::EmbeddedBroker;

    /// Every switch-like kind with overlapping identical windows (and poison, which keeps its
    /// windows apart), plus back-to-back pause windows on email.
    const FAULTS: &str = "
  - { at: 2s, for: 3s, pause: warehouse }
  - { at: 4s, for: 3s, pause: warehouse }
  - { at: 1s, crash: email, restart_after: 2s }
  - { at: 2s, crash: email, restart_after: 4s }
  - { at: 1s, for: 4s, latency: payment, add: 100ms }
  - { at: 3s, for: 4s, latency: payment, add: 100ms }
  - { at: 1s, for: 2s, errors: inventory, share: 5% }
  - { at: 2s, for: 4s, errors: inventory, share: 5% }
  - { at: 1s, for: 2s, duplicate: analytics }
  - { at: 2s, for: 2s, duplicate: analytics }
  - { at: 3s, for: 3s, duplicate: analytics }
  - { at: 1s, for: 2s, reorder: order.created }
  - { at: 2s, for: 3s, reorder: order.created }
  - { at: 1s, for: 3s, provider_outage: { errors: 30% } }
  - { at: 3s, for: 3s, provider_outage: { errors: 30% } }
  - { at: 1s, for: 2s, link: latency, delay: 10ms }
  - { at: 2s, for: 3s, link: latency, delay: 10ms }
  - { at: 2s, for: 2s, link: bandwidth, bytes_per_sec: 1000 }
  - { at: 1s, for: 3s, poison: payment }
  - { at: 2s, for: 3s, poison: payment }
  - { at: 8s, for: 1s, pause: email }
  - { at: 9s, for: 1s, pause: email }
";

    /// The provider's outage switch, as the test sees it.
    #[derive(Default)]
    struct Provider(std::sync::atomic::AtomicBool);

    impl provider_outage::OutageSwitch for Provider {
        fn set_outage(&self, _: provider_outage::Outage) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }

        fn clear_outage(&self) {
            self.0.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// What is applied right now, per (kind, target) as the report names them.
    fn applied(
        chaos: &Chaos,
        faults: &[Fault],
        provider: &Provider,
        proxy: &proxy::ProxyHandle,
    ) -> Vec<String> {
        let mut on = Vec::new();
        for kind in ServiceKind::ALL {
            let f = chaos.service(kind);
            for (label, is_on) in [("crash", *f.down.borrow()), ("pause", *f.paused.borrow())] {
                if is_on {
                    on.push(format!("{label} {kind}"));
                }
            }
            for index in f.deliveries.in_force() {
                on.push(format!("{} {kind}", faults[index].kind.label()));
            }
        }
        for a in chaos.reorder.read().unwrap().iter() {
            on.push(format!("reorder {}", a.what));
        }
        if provider.0.load(std::sync::atomic::Ordering::Relaxed) {
            on.push("provider_outage payment provider".to_owned());
        }
        for name in proxy.toxic_names() {
            let kind = if name == "fault-17" {
                "bandwidth"
            } else {
                "latency"
            };
            on.push(format!("link broker link ({kind})"));
        }
        on.sort();
        on.dedup();
        on
    }

    #[tokio::test(start_paused = true)]
    async fn a_fault_stays_on_exactly_while_one_of_its_reported_windows_is_open() {
        // Probed every 250 ms between the whole seconds the windows open and close at.
        let text = format!(
            "name: t\ntarget: redis://127.0.0.1:6379\nload:\n  phases:\n    - {{ hold: 20s, rate: 5/s }}\nfaults:\n{FAULTS}"
        );
        let scenario = crate::scenario::parse("t.yaml", &text).unwrap();
        let clock = Clock::start();
        clock.begin();
        let observer = Arc::new(Observer::new(clock.clone(), 100));
        let provider = Arc::new(Provider::default());
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let proxy = proxy::Proxy::start(loopback, loopback, 7, false, std::future::pending())
            .await
            .unwrap();
        let chaos = Arc::new(Chaos::default());
        let ctx = ChaosCtx {
            chaos: chaos.clone(),
            transport: Arc::new(EmbeddedBroker::new(1, 1_000, clock.clone())),
            provider: provider.clone(),
            observer: observer.clone(),
            seed: 7,
            run_dir: None,
            proxy: Some(proxy.clone()),
            links: Default::default(),
            interrupt: None,
        };
        let stop = CancellationToken::new();
        let timeline = tokio::spawn(run_timeline(scenario.faults.clone(), ctx, stop.clone()));
        let mut probes = Vec::new();
        for step in 0..48u64 {
            let at_ms = 125 + 250 * step;
            clock.sleep_until(at_ms * 1_000_000).await;
            probes.push((at_ms, applied(&chaos, &scenario.faults, &provider, &proxy)));
        }
        stop.cancel();
        timeline.await.unwrap();

        let windows = observer.fault_windows();
        // The report keeps every window as it was written.
        let planned: Vec<(u64, Option<u64>)> = scenario
            .faults
            .iter()
            .map(|f| {
                let ms = |d: std::time::Duration| d.as_millis() as u64;
                (ms(f.at), f.duration.map(|d| ms(f.at + d)))
            })
            .collect();
        let reported: Vec<_> = windows.iter().map(|w| (w.start_ms, w.end_ms)).collect();
        assert_eq!(reported, planned);
        // Second by second, what was applied is exactly what the open windows say.
        for (at_ms, on) in &probes {
            let mut open: Vec<String> = windows
                .iter()
                .filter(|w| w.start_ms <= *at_ms && w.end_ms.is_none_or(|e| *at_ms < e))
                .map(|w| format!("{} {}", w.kind, w.target))
                .collect();
            open.sort();
            open.dedup();
            assert_eq!(on, &open, "at {at_ms} ms");
        }
        // The composed windows say so, on the one that joined and the one that ended first.
        let notes: BTreeMap<usize, &Vec<String>> = windows
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.notes.is_empty())
            .map(|(i, w)| (i, &w.notes))
            .collect();
        assert!(
            notes[&1][0].contains("already in force (faults[0])"),
            "{notes:?}"
        );
        assert!(
            notes[&0][0].contains("faults[1] kept pause on warehouse"),
            "{notes:?}"
        );
        // Back to back is not an overlap, and poison windows are kept apart: no notes.
        assert!(
            !notes.contains_key(&20) && !notes.contains_key(&21),
            "{notes:?}"
        );
        assert!(
            !notes.contains_key(&18) && !notes.contains_key(&19),
            "{notes:?}"
        );
    }
}
