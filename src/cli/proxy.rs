//! `doorbuster proxy`: the TCP fault proxy alone, between a client and a loopback server,
//! until Ctrl-C.

use std::net::SocketAddr;

use doorbuster::chaos::proxy::{ToxicSpec, run_standalone};
use doorbuster::exit::Exit;
use tokio::runtime::Runtime;

pub fn proxy(
    runtime: &Runtime,
    listen: SocketAddr,
    upstream: SocketAddr,
    toxics: Vec<ToxicSpec>,
    seed: u64,
    allow_remote: bool,
) -> Exit {
    errln!("proxying {listen} -> {upstream}; Ctrl-C stops");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match runtime.block_on(run_standalone(
        listen,
        upstream,
        toxics,
        seed,
        allow_remote,
        shutdown,
    )) {
        Ok(stats) => {
            outln!("{stats:?}");
            Exit::Success
        }
        Err(e) => {
            errln!("proxy: {e}");
            Exit::from(&e)
        }
    }
}
