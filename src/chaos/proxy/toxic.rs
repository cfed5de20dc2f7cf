//! The one-method interface every toxic implements (`chain.rs` builds them from specs).
//!
//! As in toxiproxy, a toxic is a tiny unit that decides the fate of one chunk of bytes on
//! one link (one direction of one connection): deliver it at some time, drop it, or reset the
//! connection. It never sees sockets, never sleeps and never decides *whether* it applies:
//! direction and share are applied once, by the chain (`chain.rs`), and the pump (`link.rs`)
//! does the waiting and the I/O. Each link builds its own toxic instances, so a toxic may
//! keep per-link state (the bandwidth bucket) in `&mut self` without locks.

use crate::clock::RunTime;
use crate::rng::Rng;

/// What a toxic knows about a chunk: its size and when the proxy read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub len: usize,
    pub read_at: RunTime,
}

/// The fate of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToxicAction {
    /// Write it to the other side at (not before) this run time.
    Deliver(RunTime),
    /// Discard it; the connection stays open.
    Drop,
    /// Reset both sides of the connection.
    Reset,
}

pub trait Toxic: Send {
    /// Decides the fate of `chunk`. `not_before` is when the toxics earlier in the chain
    /// would deliver it (the read time if none did), so toxics compose: latency adds to it,
    /// bandwidth queues after it. `rng` is the link's own seeded stream.
    fn apply(&mut self, chunk: Chunk, not_before: RunTime, rng: &mut Rng) -> ToxicAction;

    /// Whether installing this toxic on a link resets the connection at once, without
    /// waiting for a chunk. Only a reset acts on its own; toxiproxy's `reset_peer` likewise.
    fn resets_on_install(&self) -> bool {
        false
    }
}
