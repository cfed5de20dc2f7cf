//! One direction of one proxied connection: read chunks, let the chain decide, write them.
//!
//! A reader stamps each chunk with its read time and hands it over a bounded channel (so a
//! link buffers at most `CHUNKS_IN_FLIGHT_MAX` chunks of at most `CHUNK_LEN_MAX` bytes, and a
//! slow link pushes back on its sender through TCP); a writer holds each chunk until the
//! chain's delivery time and writes it. Every wait of the writer also watches the toxic set,
//! so a reset switched on mid-wait takes effect at once. This file does the waiting and the
//! I/O; it knows no toxic by name.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, RunTime};
use crate::rng::Rng;

use super::chain::{ToxicChain, ToxicSet};
use super::spec::Flow;
use super::stats::Counters;
use super::toxic::{Chunk, ToxicAction};

/// The most bytes one read takes: small enough that a bandwidth cap paces smoothly.
pub const CHUNK_LEN_MAX: usize = 16 * 1024;
/// The most chunks waiting between reader and writer (256 KiB a direction).
pub const CHUNKS_IN_FLIGHT_MAX: usize = 16;

/// How a link ended.
#[derive(Debug)]
pub enum LinkEnd {
    /// The source closed and everything read was delivered (or dropped) and the close passed on.
    Eof,
    /// A toxic reset the connection.
    Reset,
    /// A socket failed; the peer is gone.
    Failed(io::Error),
}

struct Read {
    bytes: Bytes,
    read_at: RunTime,
}

/// Everything one direction of a connection needs besides its two socket halves.
pub struct Link {
    pub flow: Flow,
    pub chain: ToxicChain,
    pub rng: Rng,
    pub toxics: watch::Receiver<ToxicSet>,
    pub clock: Clock,
    pub counters: Arc<Counters>,
}

impl Link {
    /// Moves bytes from `from` to `to` until the source closes, a toxic resets or I/O fails.
    pub async fn pump(self, from: ReadHalf<'_>, to: WriteHalf<'_>) -> LinkEnd {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT_MAX);
        let reading = read_chunks(from, tx, self.clock.clone());
        let writing = self.write_chunks(rx, to);
        tokio::pin!(reading, writing);
        let mut read_done = false;
        loop {
            tokio::select! {
                end = &mut writing => return end,
                read = &mut reading, if !read_done => match read {
                    // The writer drains what is queued, then passes the close on.
                    Ok(()) => read_done = true,
                    Err(error) => return LinkEnd::Failed(error),
                },
            }
        }
    }

    async fn write_chunks(
        mut self,
        mut rx: mpsc::Receiver<Read>,
        mut to: WriteHalf<'_>,
    ) -> LinkEnd {
        loop {
            let Some(next) = self.unless_reset(rx.recv()).await else {
                return LinkEnd::Reset;
            };
            let Some(read) = next else {
                return match to.shutdown().await {
                    Ok(()) => LinkEnd::Eof,
                    Err(error) => LinkEnd::Failed(error),
                };
            };
            let chunk = Chunk {
                len: read.bytes.len(),
                read_at: read.read_at,
            };
            let at = match self.chain.apply(chunk, &mut self.rng) {
                ToxicAction::Deliver(at) => at,
                ToxicAction::Drop => {
                    self.counters.dropped(chunk.len);
                    continue;
                }
                ToxicAction::Reset => return LinkEnd::Reset,
            };
            if at > self.clock.now() {
                let hold = tokio::time::sleep_until(self.clock.instant_at(at));
                if self.unless_reset(hold).await.is_none() {
                    return LinkEnd::Reset;
                }
            }
            match self.unless_reset(to.write_all(&read.bytes)).await {
                None => return LinkEnd::Reset,
                Some(Err(error)) => return LinkEnd::Failed(error),
                Some(Ok(())) => self.counters.forwarded(self.flow, chunk.len),
            }
        }
    }

    /// Runs `work` to completion unless a toxic switched on meanwhile resets the connection
    /// (then `None`). Other changes to the toxic set are followed without interrupting it.
    async fn unless_reset<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                changed = self.toxics.changed() => match changed {
                    Ok(()) => {
                        let set = self.toxics.borrow_and_update();
                        if self.chain.sync(&set) {
                            return None;
                        }
                    }
                    // The proxy is gone (it holds the sender while links live), so the set can
                    // no longer change: finish the work without watching.
                    Err(_) => return Some(work.await),
                },
                out = &mut work => return Some(out),
            }
        }
    }
}

async fn read_chunks(
    mut from: ReadHalf<'_>,
    tx: mpsc::Sender<Read>,
    clock: Clock,
) -> io::Result<()> {
    loop {
        let mut buf = BytesMut::with_capacity(CHUNK_LEN_MAX);
        if from.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let read = Read {
            bytes: buf.freeze(),
            read_at: clock.now(),
        };
        if tx.send(read).await.is_err() {
            // The writer has ended the link; nothing more to carry.
            return Ok(());
        }
    }
}
