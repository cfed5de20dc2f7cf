//! The TCP fault proxy: a loopback listener that forwards to one upstream (a broker, or any
//! TCP server) and applies link toxics that can be switched on and off while it runs.
//!
//! It is how chaos reaches the user's own services in observe mode (DESIGN.md §3, §7): they
//! connect to the proxy instead of the broker, and the chaos timeline adds a toxic at `at`
//! and removes it after `for`. The design is toxiproxy's: each toxic (`latency`, `bandwidth`,
//! `reset`, `blackhole`) is one small file behind the one-method `Toxic` trait
//! (`toxic.rs`); direction and share are applied once, per connection, by the chain
//! (`chain.rs`); the pumps (`link.rs`, `connection.rs`) do all waiting and I/O.
//!
//! ```text
//! Proxy::start(listen, upstream, seed, allow_remote, shutdown) -> Result<ProxyHandle, ProxyError>
//! ProxyHandle::local_addr() -> SocketAddr
//! ProxyHandle::add_toxic(name, ToxicSpec) -> Result<(), ProxyError>   // replaces a same-named one
//! ProxyHandle::remove_toxic(name) -> bool
//! ProxyHandle::stats() -> ProxyStats
//! run_standalone(listen, upstream, toxics, seed, allow_remote, shutdown, ready) -> Result<ProxyStats, ProxyError>
//! ```
//!
//! Adding a toxic, as toxiproxy's CREATING_TOXICS.md has it: one file here implementing
//! `Toxic` (decide one chunk's fate; never sleep, never check direction or share), one
//! `LinkToxic` variant with its `ToxicSpec::problem` checks, one arm in `chain::build`, a
//! unit test beside it and a real-socket test in `tests/chaos/link_proxy.rs`.
//!
//! Limits: it listens on loopback only, and dials only loopback upstreams unless built with
//! `allow_remote` (checked before any connection is made); at most `CONNECTIONS_MAX`
//! connections at once, and a bounded buffer per direction (`link::CHUNKS_IN_FLIGHT_MAX`).
//! The injected `shutdown` future stops the listener and closes every connection. It reads
//! time only through `crate::clock` and draws randomness only from `crate::rng`, so one seed
//! decides which connections each toxic reaches and every jitter.

mod bandwidth;
mod blackhole;
mod chain;
mod connection;
mod latency;
mod link;
mod reset;
mod spec;
mod stats;
mod toxic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;

use self::chain::ToxicSet;

pub use self::spec::{Direction, LATENCY_MAX, LinkToxic, ToxicSpec};
pub use self::stats::ProxyStats;

use self::stats::Counters;

/// The most connections the proxy serves at once; more wait in the listen backlog.
pub const CONNECTIONS_MAX: usize = 1024;
/// The pause after a failed accept (say, out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "the proxy only dials loopback upstreams (127.0.0.0/8, ::1); {upstream} is not one \
         (allow remote upstreams explicitly to proxy to another host)"
    )]
    RemoteUpstream { upstream: SocketAddr },
    #[error("the proxy only listens on loopback; {listen} is not a loopback address")]
    RemoteListen { listen: SocketAddr },
    #[error("the proxy could not listen on {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("toxic {name:?} ({kind}): {problem}")]
    InvalidToxic {
        name: String,
        kind: &'static str,
        problem: String,
    },
}

/// What the listener, the connections and the handles share.
struct Shared {
    upstream: SocketAddr,
    seed: u64,
    clock: Clock,
    toxics: watch::Sender<ToxicSet>,
    counters: Arc<Counters>,
}

/// The TCP fault proxy (see the module documentation).
pub struct Proxy;

impl Proxy {
    /// Binds `listen` (a loopback address; port 0 picks a free one) and forwards every
    /// connection to `upstream` until `shutdown` completes. `seed` decides which connections
    /// each toxic reaches and the jitter they see.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
        allow_remote: bool,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ProxyHandle, ProxyError> {
        // Checked before binding and long before dialling: a typo must not send a fault
        // proxy's traffic to a production host.
        if !allow_remote && !upstream.ip().to_canonical().is_loopback() {
            return Err(ProxyError::RemoteUpstream { upstream });
        }
        if !listen.ip().to_canonical().is_loopback() {
            return Err(ProxyError::RemoteListen { listen });
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ProxyError::Bind { listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ProxyError::Bind { listen, source })?;
        let shared = Arc::new(Shared {
            upstream,
            seed,
            clock: Clock::start(),
            toxics: watch::Sender::new(ToxicSet::new()),
            counters: Arc::new(Counters::default()),
        });
        let (stopped_tx, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            shutdown,
            stopped_tx,
        ));
        tracing::debug!(%local_addr, %upstream, "fault proxy listening");
        Ok(ProxyHandle {
            local_addr,
            shared,
            stopped,
        })
    }
}

/// Controls a running proxy. Cheap to clone; dropping every handle does not stop the proxy
/// (its `shutdown` future does).
#[derive(Clone)]
pub struct ProxyHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl ProxyHandle {
    /// Where clients connect instead of the upstream.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Switches a toxic on, for open connections as well as new ones; a toxic already on
    /// under this name is replaced. Refuses a spec `ToxicSpec::problem` objects to.
    pub fn add_toxic(&self, name: &str, spec: ToxicSpec) -> Result<(), ProxyError> {
        if let Some(problem) = spec.problem() {
            return Err(ProxyError::InvalidToxic {
                name: name.to_owned(),
                kind: spec.toxic.kind(),
                problem,
            });
        }
        tracing::debug!(name, kind = spec.toxic.kind(), "proxy toxic on");
        self.shared.toxics.send_modify(|set| {
            set.insert(name.to_owned(), spec);
        });
        Ok(())
    }

    /// Switches a toxic off; false if none was on under this name.
    pub fn remove_toxic(&self, name: &str) -> bool {
        let removed = self
            .shared
            .toxics
            .send_if_modified(|set| set.remove(name).is_some());
        tracing::debug!(name, removed, "proxy toxic off");
        removed
    }

    /// The names of the toxics on right now.
    pub fn toxic_names(&self) -> Vec<String> {
        self.shared.toxics.borrow().keys().cloned().collect()
    }

    pub fn stats(&self) -> ProxyStats {
        self.shared.counters.snapshot()
    }

    /// Resolves once the listener and every connection have stopped.
    async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        // An error means the accept loop is gone, which also means it stopped.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}

/// Runs a proxy with a fixed set of toxics until `shutdown`, then returns its final stats:
/// the body of the `doorbuster proxy` subcommand. Toxics are named `<kind>-<index>`.
pub async fn run_standalone(
    listen: SocketAddr,
    upstream: SocketAddr,
    toxics: Vec<ToxicSpec>,
    seed: u64,
    allow_remote: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<ProxyStats, ProxyError> {
    // Refuse a bad toxic before listening, so the command fails without ever proxying.
    for (index, spec) in toxics.iter().enumerate() {
        if let Some(problem) = spec.problem() {
            return Err(ProxyError::InvalidToxic {
                name: format!("{}-{index}", spec.toxic.kind()),
                kind: spec.toxic.kind(),
                problem,
            });
        }
    }
    let handle = Proxy::start(listen, upstream, seed, allow_remote, shutdown).await?;
    for (index, spec) in toxics.into_iter().enumerate() {
        handle.add_toxic(&format!("{}-{index}", spec.toxic.kind()), spec)?;
    }
    tracing::info!(listen = %handle.local_addr(), %upstream, "fault proxy running");
    // Only now, with the listener bound and every toxic in place (a refusal came first).
    ready(handle.local_addr());
    handle.stopped().await;
    Ok(handle.stats())
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stopped: watch::Sender<bool>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    let mut number: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set stays as small as the live ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed; if it were, no connection could be served.
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _peer)) => {
                Counters::bump(&shared.counters.connections_accepted, 1);
                let serving =
                    connection::serve(client, number, Arc::clone(&shared), stop_rx.clone());
                connections.spawn(async move {
                    serving.await;
                    drop(permit);
                });
                number += 1;
            }
            Err(error) => {
                tracing::warn!(%error, "fault proxy could not accept a connection");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
    drop(listener);
    // Every connection watches this and closes; waiting for them makes "stopped" mean it.
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    tracing::debug!("fault proxy stopped");
    let _ = stopped.send(true);
}
