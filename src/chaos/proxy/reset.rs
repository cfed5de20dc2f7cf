//! The reset toxic: resets the connection (RST on both sides) as soon as it is installed.
//!
//! Installing it on a live link resets that connection at once; on a new connection it is
//! installed before any byte moves, so new connections are reset while it is on. The RST
//! itself (SO_LINGER 0, then close) is the pump's job.

use crate::clock::RunTime;
use crate::rng::Rng;

use super::toxic::{Chunk, Toxic, ToxicAction};

#[derive(Debug, Clone, Copy)]
pub struct Reset;

impl Toxic for Reset {
    fn apply(&mut self, _chunk: Chunk, _not_before: RunTime, _rng: &mut Rng) -> ToxicAction {
        ToxicAction::Reset
    }

    fn resets_on_install(&self) -> bool {
        true
    }
}
