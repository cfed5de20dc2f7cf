//! The blackhole toxic: a partition. Bytes are read and dropped; the connection stays open.
//!
//! Reading on (rather than stopping to read) keeps the sender's writes succeeding, as they
//! do when packets vanish in a network: the sender learns nothing until its own timeouts.

use crate::clock::RunTime;
use crate::rng::Rng;

use super::toxic::{Chunk, Toxic, ToxicAction};

#[derive(Debug, Clone, Copy)]
pub struct Blackhole;

impl Toxic for Blackhole {
    fn apply(&mut self, _chunk: Chunk, _not_before: RunTime, _rng: &mut Rng) -> ToxicAction {
        ToxicAction::Drop
    }
}
