//! The bandwidth toxic: caps the bytes per second one link passes.
//!
//! A token bucket that holds at most one chunk (in GCRA form: the time the link is busy
//! until): a chunk starts once the link is free and whatever came before it in the chain
//! allows, and leaves when its last byte would have crossed at the capped rate. An idle link
//! saves up no credit, so a burst after a pause is capped too, like a real slow link.

use crate::clock::RunTime;
use crate::rng::Rng;

use super::toxic::{Chunk, Toxic, ToxicAction};

#[derive(Debug, Clone, Copy)]
pub struct Bandwidth {
    bytes_per_sec: u64,
    /// When the link finishes sending what it already accepted.
    busy_until: RunTime,
}

impl Bandwidth {
    pub fn new(bytes_per_sec: u64) -> Bandwidth {
        Bandwidth {
            // Zero is refused by `ToxicSpec::problem`; one byte a second keeps the maths
            // finite should it ever get here.
            bytes_per_sec: bytes_per_sec.max(1),
            busy_until: 0,
        }
    }

    fn transmit_ns(&self, len: usize) -> u64 {
        let ns = u128::try_from(len).unwrap_or(u128::MAX) * 1_000_000_000
            / u128::from(self.bytes_per_sec);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

impl Toxic for Bandwidth {
    fn apply(&mut self, chunk: Chunk, not_before: RunTime, _rng: &mut Rng) -> ToxicAction {
        let start = not_before.max(self.busy_until);
        self.busy_until = start.saturating_add(self.transmit_ns(chunk.len));
        ToxicAction::Deliver(self.busy_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_to_back_chunks_queue_at_the_rate() {
        // Ten 10 KB chunks read at once at 50 KB/s must take two seconds to leave.
        let mut toxic = Bandwidth::new(50_000);
        let mut rng = crate::rng::for_item(1, "proxy.upstream", 0);
        let chunk = Chunk {
            len: 10_000,
            read_at: 0,
        };
        let last = (0..10)
            .map(|_| toxic.apply(chunk, 0, &mut rng))
            .last()
            .expect("ten chunks");
        assert_eq!(last, ToxicAction::Deliver(2_000_000_000));
    }

    #[test]
    fn an_idle_link_saves_no_credit() {
        let mut toxic = Bandwidth::new(1_000);
        let mut rng = crate::rng::for_item(1, "proxy.upstream", 0);
        let chunk = Chunk {
            len: 500,
            read_at: 0,
        };
        let _ = toxic.apply(chunk, 0, &mut rng);
        let late = 10_000_000_000;
        let after_pause = Chunk {
            len: 500,
            read_at: late,
        };
        assert_eq!(
            toxic.apply(after_pause, late, &mut rng),
            ToxicAction::Deliver(late + 500_000_000)
        );
    }
}
