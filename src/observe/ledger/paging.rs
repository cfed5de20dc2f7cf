//! Paging: a run that writes files pages out the chunks of the ledger nothing was recorded
//! into for a while (their orders settled) to an unnamed file in its folder, and back in when
//! one of their orders is recorded into or read, so memory holds the orders still moving.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};

use super::{CHUNK, Checkout, Effect, Ledger, Slot, Terminal, read, write};
use crate::sync::lock;

/// Chunks paged back in from the page file kept in memory at once (24 MiB): reading a long
/// run's ledger from end to end at the judgement, or writing late to old orders, pages the
/// oldest of them out again.
const PAGED_IN_MAX: usize = 8;

/// A chunk of slots: in memory, or paged out to the page file.
#[derive(Default)]
pub(super) struct Chunk {
    /// The slots while in memory: `None` before the first write and while paged out.
    pub(super) slots: RwLock<Option<Box<[Slot]>>>,
    /// The page file holds this chunk as of its last page-out.
    pub(super) paged: AtomicBool,
    /// Written since it was paged back in: a page-out writes it again.
    pub(super) dirty: AtomicBool,
    /// [`Ledger::tend`]'s last look: the slots' fingerprint and since when (run ms) it is
    /// unchanged.
    seen: Mutex<Option<(u64, u64)>>,
    /// The slots' [`Tally`] when last paged out: while out, they are unchanged.
    tally: Mutex<Option<Tally>>,
}

/// What the live views count over the whole ledger (`/metrics`): effects applied, orders with
/// an effect applied more than once, and accepted orders not settled yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub applied: [u64; Effect::ALL.len()],
    pub twice: [u64; Effect::ALL.len()],
    pub unsettled: u64,
}

impl Tally {
    fn count(&mut self, s: &Slot) {
        for (i, n) in s.effects.iter().enumerate() {
            let n = u64::from(n.load(Relaxed));
            self.applied[i] += n;
            self.twice[i] += u64::from(n > 1);
        }
        let accepted = s.checkout.load(Relaxed) == Checkout::Accepted as u8;
        self.unsettled += u64::from(accepted && s.terminal.load(Relaxed) == Terminal::None as u8);
    }

    fn add(&mut self, other: &Tally) {
        for i in 0..Effect::ALL.len() {
            self.applied[i] += other.applied[i];
            self.twice[i] += other.twice[i];
        }
        self.unsettled += other.unsettled;
    }
}

/// Where quiet chunks go (see [`Ledger::page_to`]).
pub(super) struct Paging {
    file: File,
    /// How long a chunk stays unchanged before it is paged out.
    quiet_ms: u64,
    /// Chunks paged back in, the oldest first.
    back_in: Mutex<VecDeque<usize>>,
    /// A page-out failed (a full disk): the ledger stays in memory from then on.
    stopped: AtomicBool,
    /// A [`Ledger::tend`] is under way.
    tending: AtomicBool,
    /// Chunks paged out so far.
    page_outs: AtomicU64,
}

/// Where chunk `c` lies in the page file.
fn page_at(c: usize) -> u64 {
    (c * CHUNK * Ledger::BYTES_PER_ORDER) as u64
}

/// A fingerprint of the slots' contents: equal twice over a while means nothing was recorded
/// in between (every field only grows, so a change cannot be undone).
fn fingerprint(slots: &[Slot]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    for s in slots {
        h.write(&s.to_bytes());
    }
    h.finish()
}

impl Ledger {
    /// Pages chunks that stayed unchanged for `quiet` out to `file` from now on (see
    /// [`Ledger::tend`]), and back in when an order of theirs is read or written again: a
    /// run holds the orders still moving, not every order it made. `file` is the run's own
    /// (unnamed, in its folder); the first one given stays.
    pub fn page_to(&self, file: File, quiet: std::time::Duration) {
        let _ = self.paging.set(Paging {
            file,
            quiet_ms: u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX),
            back_in: Mutex::new(VecDeque::new()),
            stopped: AtomicBool::new(false),
            tending: AtomicBool::new(false),
            page_outs: AtomicU64::new(0),
        });
    }

    /// Chunks paged out so far (0 without a page file).
    pub fn page_outs(&self) -> u64 {
        (self.paging.get()).map_or(0, |p| p.page_outs.load(Relaxed))
    }

    /// Why the ledger does not hold what happened, if it does not (a page could not be read
    /// back).
    pub fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// Brings chunk `c` into memory: from the page file if it was paged out, fresh if it
    /// never was. Beyond [`PAGED_IN_MAX`] chunks paged back in, the oldest goes out again.
    pub(super) fn page_in(&self, c: usize) {
        let chunk = &self.chunks[c];
        let mut slots = write(&chunk.slots);
        if slots.is_some() {
            return;
        }
        let from_file = self.paging.get().filter(|_| chunk.paged.load(Relaxed));
        *slots = Some(match from_file {
            Some(paging) => self.read_page(paging, c),
            None => (0..self.chunk_len(c)).map(|_| Slot::default()).collect(),
        });
        chunk.dirty.store(false, Relaxed);
        drop(slots);
        let Some(paging) = from_file else {
            return;
        };
        let out = {
            let mut back_in = lock(&paging.back_in);
            back_in.retain(|&other| other != c);
            back_in.push_back(c);
            // The oldest that nothing wrote to since (a read's, leaving costs nothing), else
            // the oldest: a pass over the whole ledger does not push out the late writes.
            let clean = back_in
                .iter()
                .position(|&other| !self.chunks[other].dirty.load(Relaxed));
            (back_in.len() > PAGED_IN_MAX)
                .then(|| back_in.remove(clean.unwrap_or(0)))
                .flatten()
        };
        if let Some(oldest) = out {
            self.page_out(paging, oldest);
        }
    }

    /// Chunk `c`'s slots as last paged out. A page that cannot be read back leaves its
    /// orders fresh and the ledger [`lost`](Ledger::lost).
    fn read_page(&self, paging: &Paging, c: usize) -> Box<[Slot]> {
        let mut bytes = Vec::new();
        self.read_bytes(paging, c, &mut bytes);
        (bytes.chunks_exact(Self::BYTES_PER_ORDER))
            .map(|b| Slot::from_bytes(b.try_into().expect("48 bytes")))
            .collect()
    }

    /// Pages chunk `c` out, writing it unless the page file already holds it as it is. A
    /// write that fails keeps it (and every later chunk) in memory.
    fn page_out(&self, paging: &Paging, c: usize) {
        let chunk = &self.chunks[c];
        let mut slots = write(&chunk.slots);
        let Some(s) = slots.as_deref() else {
            return;
        };
        if !chunk.paged.load(Relaxed) || chunk.dirty.load(Relaxed) {
            if paging.stopped.load(Relaxed) {
                return;
            }
            let bytes: Vec<u8> = s.iter().flat_map(Slot::to_bytes).collect();
            if let Err(e) = paging.file.write_all_at(&bytes, page_at(c)) {
                if !paging.stopped.swap(true, Relaxed) {
                    tracing::warn!(error = %e, "the ledger cannot page out: it stays in memory");
                }
                return;
            }
            chunk.paged.store(true, Relaxed);
            // A clean chunk's tally is still the one it last went out with.
            let mut tally = Tally::default();
            s.iter().for_each(|slot| tally.count(slot));
            *lock(&chunk.tally) = Some(tally);
        }
        *slots = None;
        paging.page_outs.fetch_add(1, Relaxed);
        chunk.dirty.store(false, Relaxed);
    }

    /// The [`Tally`] of every order, without paging anything in: a chunk paged out counts
    /// as it was when it went.
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for chunk in self.chunks.iter() {
            let slots = read(&chunk.slots);
            match slots.as_deref() {
                Some(slots) => slots.iter().for_each(|s| tally.count(s)),
                None => {
                    if let Some(out) = *lock(&chunk.tally) {
                        tally.add(&out);
                    }
                }
            }
        }
        tally
    }

    /// Pages out the chunks nothing was recorded into for the quiet time, `now_ms` being
    /// run time: called every few seconds while the run goes. Without a page file, or while
    /// an earlier call still runs, it does nothing.
    pub fn tend(&self, now_ms: u64) {
        let Some(paging) = self.paging.get() else {
            return;
        };
        if paging.tending.swap(true, Relaxed) {
            return;
        }
        self.tend_chunks(paging, now_ms);
        paging.tending.store(false, Relaxed);
    }

    /// Reads back every chunk paged out and not in memory, to find now, before anything
    /// is judged, a page file that lost one ([`Ledger::lost`]).
    pub fn check_pages(&self) {
        let Some(paging) = self.paging.get() else {
            return;
        };
        let mut bytes = Vec::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            let slots = read(&chunk.slots);
            if slots.is_none()
                && chunk.paged.load(Relaxed)
                && !self.read_bytes(paging, c, &mut bytes)
            {
                return;
            }
        }
    }

    /// Reads chunk `c` as last paged out into `bytes`; false, with the ledger
    /// [`lost`](Ledger::lost), when the page file cannot give it back.
    fn read_bytes(&self, paging: &Paging, c: usize, bytes: &mut Vec<u8>) -> bool {
        bytes.resize(self.chunk_len(c) * Self::BYTES_PER_ORDER, 0);
        let Err(e) = paging.file.read_exact_at(bytes, page_at(c)) else {
            return true;
        };
        bytes.fill(0);
        let _ = self.lost.set(format!(
            "orders {}..{} of the ledger could not be read back from its page file: {e}",
            c * CHUNK,
            c * CHUNK + self.chunk_len(c)
        ));
        false
    }

    fn tend_chunks(&self, paging: &Paging, now_ms: u64) {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if paging.stopped.load(Relaxed) {
                return;
            }
            let Some(now) = read(&chunk.slots).as_deref().map(fingerprint) else {
                continue;
            };
            let mut seen = lock(&chunk.seen);
            match *seen {
                Some((then, since)) if then == now => {
                    if now_ms.saturating_sub(since) >= paging.quiet_ms {
                        *seen = None;
                        drop(seen);
                        self.page_out(paging, c);
                    }
                }
                _ => *seen = Some((now, now_ms)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::meta;
    use super::*;
    use crate::events::Topic;

    /// The same records, made into a ledger that pages and one that does not.
    fn record_some(ledger: &Ledger, orders: &[u64]) {
        for &order in orders {
            ledger.set_checkout(order, Checkout::Accepted);
            ledger.next_seq(order, Topic::OrderCreated);
            ledger.acked(Topic::OrderCreated, &meta(order, 0));
            ledger.delivered(1, &meta(order, 0));
            ledger.consumed(1, &meta(order, 0));
            ledger.effect(order, Effect::EmailSent);
            ledger.set_terminal(order, Terminal::Fulfilled, 42);
        }
    }

    fn exported(ledger: &Ledger) -> Vec<u8> {
        let mut bytes = Vec::new();
        ledger.export_to(ledger.len() as u64, &mut bytes).unwrap();
        bytes
    }

    /// Chunks left unchanged for the quiet time leave memory; what is read back is what was
    /// recorded, and a late record into a paged-out order (a redelivery, an effect applied
    /// twice) sees everything before it, as in a ledger that never paged.
    #[test]
    fn quiet_chunks_are_paged_out_and_read_back_whole() {
        let n = 3 * CHUNK + 10;
        let orders = [0, 7, CHUNK as u64 + 1, 3 * CHUNK as u64 + 9];
        let (paging, kept) = (Ledger::new(n), Ledger::new(n));
        paging.page_to(tempfile::tempfile().unwrap(), std::time::Duration::ZERO);
        record_some(&paging, &orders);
        record_some(&kept, &orders);
        let resident = paging.resident_bytes();
        assert!(resident > 0);
        paging.tend(0);
        assert_eq!(
            paging.resident_bytes(),
            resident,
            "a first look pages nothing"
        );
        paging.tend(1);
        assert_eq!(paging.resident_bytes(), 0, "every chunk was quiet");
        assert_eq!(paging.tally(), kept.tally(), "counted while out");
        assert_eq!(paging.resident_bytes(), 0, "counting paged nothing in");
        assert_eq!(kept.tally().applied[Effect::EmailSent as usize], 4);
        assert_eq!(kept.tally().unsettled, 0);
        assert!(
            exported(&paging) == exported(&kept),
            "read back as recorded"
        );

        for ledger in [&paging, &kept] {
            assert_eq!(
                ledger.effect(7, Effect::EmailSent),
                1,
                "the second email is seen"
            );
            let again = ledger.delivered(1, &meta(CHUNK as u64 + 1, 0));
            assert!(!again.first, "a redelivery, not a first delivery");
        }
        assert!(exported(&paging) == exported(&kept));
        assert_eq!(paging.tally(), kept.tally());
        assert_eq!(
            paging.tally().twice[Effect::EmailSent as usize],
            1,
            "the second email"
        );
        assert_eq!(paging.effects(7, Effect::EmailSent), 2);
        assert_eq!(paging.delivery_totals(), kept.delivery_totals());
        assert!(paging.lost().is_none());

        // The late records made their chunks dirty: paged out again, they are written again.
        paging.tend(2);
        paging.tend(3);
        assert_eq!(paging.resident_bytes(), 0);
        assert_eq!(
            paging.tally(),
            kept.tally(),
            "the late records counted once out again"
        );
        assert!(exported(&paging) == exported(&kept));
    }

    /// A chunk still recorded into stays; it goes once unchanged for the whole quiet time.
    #[test]
    fn a_chunk_still_moving_stays_in_memory() {
        let ledger = Ledger::new(10);
        ledger.page_to(
            tempfile::tempfile().unwrap(),
            std::time::Duration::from_millis(5),
        );
        ledger.set_checkout(1, Checkout::Accepted);
        ledger.tend(0);
        ledger.effect(1, Effect::Shipped);
        ledger.tend(10);
        assert!(ledger.resident_bytes() > 0, "changed since the last look");
        ledger.tend(14);
        assert!(ledger.resident_bytes() > 0, "unchanged for 4 ms of 5");
        ledger.tend(15);
        assert_eq!(ledger.resident_bytes(), 0);
        assert_eq!(ledger.effects(1, Effect::Shipped), 1);
        assert_eq!(ledger.checkout(1), Checkout::Accepted);
    }

    /// Reading a long ledger from end to end (the checks) holds at most a few chunks paged
    /// back in at once; chunks never written are never allocated by it.
    #[test]
    fn reading_back_holds_a_bounded_window() {
        let chunks = PAGED_IN_MAX + 4;
        let ledger = Ledger::new(chunks * CHUNK + CHUNK);
        ledger.page_to(tempfile::tempfile().unwrap(), std::time::Duration::ZERO);
        let orders: Vec<u64> = (0..chunks as u64).map(|c| c * CHUNK as u64 + c).collect();
        record_some(&ledger, &orders);
        ledger.tend(0);
        ledger.tend(1);
        assert_eq!(ledger.resident_bytes(), 0);
        let mut most = 0;
        for order in 0..ledger.len() as u64 {
            let expected = if orders.contains(&order) {
                Checkout::Accepted
            } else {
                Checkout::Pending
            };
            assert_eq!(ledger.checkout(order), expected, "order {order}");
            most = most.max(ledger.resident_bytes());
        }
        assert_eq!(most, PAGED_IN_MAX * CHUNK * Ledger::BYTES_PER_ORDER);
    }

    /// A page file that loses what was paged out makes the ledger say so, rather than pass
    /// its orders off as never having happened; a page file that cannot be written keeps
    /// the ledger in memory, whole.
    #[test]
    fn a_page_file_that_fails_is_never_silent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages");
        let ledger = Ledger::new(10);
        ledger.page_to(
            std::fs::File::create_new(&path).unwrap(),
            std::time::Duration::ZERO,
        );
        record_some(&ledger, &[3]);
        ledger.tend(0);
        ledger.tend(1);
        assert_eq!(ledger.resident_bytes(), 0);
        ledger.check_pages();
        assert!(ledger.lost().is_none(), "the page reads back");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        ledger.check_pages();
        assert!(
            ledger.lost().is_some(),
            "found before anything reads the order"
        );
        assert_eq!(ledger.checkout(3), Checkout::Pending);
        let lost = ledger.lost().expect("the loss is known");
        assert!(lost.contains("orders 0..10"), "{lost}");

        let unwritable = Ledger::new(10);
        let read_only = std::fs::File::open(&path).unwrap();
        unwritable.page_to(read_only, std::time::Duration::ZERO);
        record_some(&unwritable, &[3]);
        unwritable.tend(0);
        unwritable.tend(1);
        assert!(unwritable.resident_bytes() > 0, "kept in memory");
        assert_eq!(unwritable.checkout(3), Checkout::Accepted);
        assert!(unwritable.lost().is_none());
    }
}
