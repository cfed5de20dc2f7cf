//! One proxied connection: decide its ticket, connect upstream, run both links, close.
//!
//! The connection's share ticket is drawn here, once, from `rng::for_item(seed, "proxy", n)`
//! with `n` the accept order, so which connections a toxic reaches is fixed by the seed. A
//! connection a reset toxic reaches is reset before the upstream is even dialled. When a
//! link is reset or fails, both sockets are closed with SO_LINGER 0 so each peer gets an RST,
//! as it would from a crashed broker or a dropped NAT entry; a clean end closes normally.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::RngExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;
use super::chain::ToxicChain;
use super::link::{Link, LinkEnd};
use super::spec::Flow;
use super::stats::Counters;

/// How long dialling the upstream may take before the client is reset.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps `connections_active` right however the connection task ends.
struct Active<'a>(&'a Counters);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted client until it closes, a toxic resets it, or `stop` turns true.
pub async fn serve(
    mut client: TcpStream,
    number: u64,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let counters = &shared.counters;
    Counters::bump(&counters.connections_active, 1);
    let _active = Active(counters);

    let ticket: f64 = crate::rng::for_item(shared.seed, "proxy", number).random();
    let mut toxics = shared.toxics.subscribe();
    let mut up = ToxicChain::new(Flow::Upstream, ticket);
    let mut down = ToxicChain::new(Flow::Downstream, ticket);
    let resets = {
        let set = toxics.borrow_and_update();
        // Both chains must be synced, so no short-circuit `||`.
        up.sync(&set) | down.sync(&set)
    };
    if resets {
        Counters::bump(&counters.resets, 1);
        abort(&client);
        return;
    }

    let dial = tokio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(shared.upstream),
    );
    let mut upstream = match dial.await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => {
            tracing::debug!(%error, upstream = %shared.upstream, "proxy could not reach the upstream");
            return refuse(&client, counters);
        }
        Err(_) => {
            tracing::debug!(upstream = %shared.upstream, "proxy timed out dialling the upstream");
            return refuse(&client, counters);
        }
    };
    // Chunks are timed one by one; Nagle's delay would add latency nobody asked for.
    for stream in [&client, &upstream] {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "proxy could not set TCP_NODELAY");
        }
    }

    let link = |flow, chain| Link {
        flow,
        chain,
        rng: crate::rng::for_item(shared.seed, link_component(flow), number),
        toxics: toxics.clone(),
        clock: shared.clock.clone(),
        counters: Arc::clone(&shared.counters),
    };
    let (up, down) = (link(Flow::Upstream, up), link(Flow::Downstream, down));
    let end = tokio::select! {
        end = relay(&mut client, &mut upstream, up, down) => end,
        // A stopping proxy closes its connections normally: the fault ends with the run.
        _ = stop.wait_for(|stopped| *stopped) => LinkEnd::Eof,
    };
    match end {
        LinkEnd::Eof => {}
        LinkEnd::Reset => {
            Counters::bump(&counters.resets, 1);
            abort(&client);
            abort(&upstream);
        }
        LinkEnd::Failed(error) => {
            // One peer vanished abruptly; the other learns it the same way.
            tracing::debug!(%error, connection = number, "proxied connection failed");
            abort(&client);
            abort(&upstream);
        }
    }
}

/// Runs both directions until both closed cleanly, or the first reset or failure.
async fn relay(client: &mut TcpStream, upstream: &mut TcpStream, up: Link, down: Link) -> LinkEnd {
    // Borrowed halves: unlike owned ones they send no FIN when dropped, so a reset is a
    // bare RST rather than a FIN followed by one.
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let up = up.pump(client_read, upstream_write);
    let down = down.pump(upstream_read, client_write);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            end = &mut up, if !up_done => match end {
                LinkEnd::Eof => up_done = true,
                other => return other,
            },
            end = &mut down, if !down_done => match end {
                LinkEnd::Eof => down_done = true,
                other => return other,
            },
        }
    }
    LinkEnd::Eof
}

fn link_component(flow: Flow) -> &'static str {
    match flow {
        Flow::Upstream => "proxy.upstream",
        Flow::Downstream => "proxy.downstream",
    }
}

fn refuse(client: &TcpStream, counters: &Counters) {
    Counters::bump(&counters.upstream_failures, 1);
    abort(client);
}

/// Makes the coming close an RST instead of a FIN. A zero linger never blocks the thread
/// on drop (the kernel discards unsent data and resets at once), which is why tokio keeps
/// `set_zero_linger` while it deprecates `set_linger`.
fn abort(stream: &TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "proxy could not set SO_LINGER 0; the peer sees a FIN");
    }
}
