//! The ledger: per order, what was attempted, acked, delivered and applied.
//!
//! Attempted / acked / delivered / consumed / effects are kept apart (the Jepsen discipline):
//! a publish the broker acked is a promise, a delivery is one arrival at one service, a
//! consumed delivery is one the service acked back to the broker (it will not come again),
//! and an effect is what a service did about it. Loss is judged on effects (DESIGN.md §5): a
//! consumer that acks and then crashes shows as consumed without its effect. Every slot is a
//! handful of atomics so recording from many tasks needs only a shared lock on its chunk: 48
//! bytes per order for all five services together (about 10 per service), allocated a chunk
//! at a time as orders are made, so a run holds slots for the orders it made, not for every
//! order it planned.
//!
//! A run that writes files pages out the chunks nothing was recorded into for a while (its
//! orders settled) to an unnamed file in its folder, and back in when one of their orders is
//! recorded into (a late redelivery, a replay) or read (the checks, at the end): memory holds
//! the orders still moving, however long the run, and every check still judges every order
//! from its whole record, as if nothing had been paged.
//!
//! Events of one order on one topic are told apart by their `seq` (0 for the first
//! `order.created`, 1 for a resubmit, ...); up to 8 per (order, topic) are tracked exactly,
//! later ones share the last bit.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};

use crate::events::{EventMeta, Topic};
use crate::sync::lock;
use crate::topology::SUBSCRIPTIONS;

/// Dead letters are not pipeline stages: they are counted by the observer, not here.
const TOPICS: usize = Topic::PIPELINE.len();
const SUBS: usize = SUBSCRIPTIONS.len();

/// What happened to a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Checkout {
    /// Not yet answered (or never sent, for a run that was interrupted).
    Pending = 0,
    /// `order.created` acked within `checkout_timeout`.
    Accepted = 1,
    /// Refused, or not acked within `checkout_timeout`.
    Failed = 2,
}

/// How an order ended, as the services reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Terminal {
    None = 0,
    Fulfilled = 1,
    /// Declined for a business reason (the card): an outcome, not a failure.
    Declined = 2,
    /// The payment provider failed after the last retry.
    Failed = 3,
}

impl Terminal {
    /// How an order ended, in plain words.
    pub fn words(self) -> &'static str {
        match self {
            Terminal::None => "not settled",
            Terminal::Fulfilled => "fulfilled",
            Terminal::Declined => "declined (its card was refused)",
            Terminal::Failed => "failed (the payment provider failed after the last retry)",
        }
    }
}

/// What a service did about an order, recorded when it did it (captures are the payment
/// provider's own records, not the ledger's). Each is applied at most once per order by an
/// idempotent service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Effect {
    /// A confirmation email sent (email service).
    EmailSent = 0,
    /// Stock decremented for the order's items (inventory service).
    StockReserved = 1,
    /// A shipment created (warehouse service).
    Shipped = 2,
    /// Revenue booked for a captured payment (analytics service).
    RevenueBooked = 3,
    /// Not enough stock for the order's items: nothing decremented, the order is backordered
    /// (inventory service). A decision like a reservation, but without a side effect, so a
    /// second one is not a duplicate effect.
    Backordered = 4,
    /// The order counted on the dashboard (analytics, from `order.created`).
    OrderCounted = 5,
    /// The failed payment counted (analytics, from `order.payment.failed`).
    FailureCounted = 6,
    /// The fulfilment counted (analytics, from `order.fulfilled`).
    FulfilmentCounted = 7,
}

impl Effect {
    pub const ALL: [Effect; 8] = [
        Effect::EmailSent,
        Effect::StockReserved,
        Effect::Shipped,
        Effect::RevenueBooked,
        Effect::Backordered,
        Effect::OrderCounted,
        Effect::FailureCounted,
        Effect::FulfilmentCounted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Effect::EmailSent => "email sent",
            Effect::StockReserved => "stock decremented",
            Effect::Shipped => "shipment created",
            Effect::RevenueBooked => "revenue booked",
            Effect::Backordered => "backorder recorded",
            Effect::OrderCounted => "order counted",
            Effect::FailureCounted => "payment failure counted",
            Effect::FulfilmentCounted => "fulfilment counted",
        }
    }

    /// The service that applies it.
    pub fn service(self) -> crate::topology::ServiceKind {
        use crate::topology::ServiceKind;
        match self {
            Effect::EmailSent => ServiceKind::Email,
            Effect::StockReserved | Effect::Backordered => ServiceKind::Inventory,
            Effect::Shipped => ServiceKind::Warehouse,
            Effect::RevenueBooked
            | Effect::OrderCounted
            | Effect::FailureCounted
            | Effect::FulfilmentCounted => ServiceKind::Analytics,
        }
    }

    /// Whether applying it twice harms (a second email, stock decremented twice, a figure
    /// counted twice). Recording a backorder twice changes nothing.
    pub fn harms_when_repeated(self) -> bool {
        self != Effect::Backordered
    }
}

#[derive(Default)]
struct Slot {
    checkout: AtomicU8,
    terminal: AtomicU8,
    /// Events published per topic (the next `seq`).
    published: [AtomicU8; TOPICS],
    /// Bit `seq` set once that event was acked by the broker.
    acked: [AtomicU8; TOPICS],
    /// Per subscription: bit `seq` set once that event was delivered.
    delivered: [AtomicU8; SUBS],
    /// Per subscription: bit `seq` set once the service acked a delivery of that event back
    /// to the broker (it will not be delivered again).
    consumed: [AtomicU8; SUBS],
    effects: [AtomicU8; Effect::ALL.len()],
    /// Milliseconds from intended time to the terminal state; `u32::MAX` = none yet.
    terminal_ms: AtomicU32,
    /// Deliveries per subscription, counting redeliveries (saturating at 255: the exact
    /// total per subscription is the ledger's `delivery_totals`).
    deliveries: [AtomicU8; SUBS],
}

/// The outcome of recording a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryNote {
    /// The first delivery of this event to this subscription.
    pub first: bool,
    /// A later event of the same order on this topic was delivered before this one.
    pub out_of_order: bool,
}

/// Orders per chunk of slots: 65,536 x 48 B = 3 MiB, allocated on its first write, and the
/// unit that is paged out to the page file and back.
const CHUNK: usize = 1 << 16;

/// Chunks paged back in from the page file kept in memory at once (24 MiB): reading a long
/// run's ledger from end to end at the judgement, or writing late to old orders, pages the
/// oldest of them out again.
const PAGED_IN_MAX: usize = 8;

/// A chunk of slots: in memory, or paged out to the page file.
#[derive(Default)]
struct Chunk {
    /// The slots while in memory: `None` before the first write and while paged out.
    slots: RwLock<Option<Box<[Slot]>>>,
    /// The page file holds this chunk as of its last page-out.
    paged: AtomicBool,
    /// Written since it was paged back in: a page-out writes it again.
    dirty: AtomicBool,
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
struct Paging {
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

pub struct Ledger {
    chunks: Box<[Chunk]>,
    orders: usize,
    /// Deliveries per subscription over all orders, counting redeliveries (exact).
    delivery_totals: [AtomicU64; SUBS],
    paging: OnceLock<Paging>,
    /// Why a paged-out chunk could not be read back, if one could not: what the ledger says
    /// about its orders is then not what happened, and the run is invalid.
    lost: OnceLock<String>,
}

// The budget: at most 32 bytes per order per service, for the five services.
const _: () = assert!(std::mem::size_of::<Slot>() <= 32 * crate::topology::ServiceKind::ALL.len());
const _: () = assert!(std::mem::size_of::<Slot>() == 48);
// `Slot::to_bytes` writes every field of a slot, byte for byte: the same 48.
const _: () = assert!(2 + 2 * TOPICS + 3 * SUBS + Effect::ALL.len() + 4 == 48);

fn bit(seq: u8) -> u8 {
    1 << seq.min(7)
}

impl Slot {
    /// Every field in turn, little-endian: the layout of a shard's `ledger.bin` and of the
    /// page file.
    fn to_bytes(&self) -> [u8; Ledger::BYTES_PER_ORDER] {
        let mut out = [0u8; Ledger::BYTES_PER_ORDER];
        let head: [&[AtomicU8]; 7] = [
            std::slice::from_ref(&self.checkout),
            std::slice::from_ref(&self.terminal),
            &self.published,
            &self.acked,
            &self.delivered,
            &self.consumed,
            &self.effects,
        ];
        let mut at = 0;
        for b in head.into_iter().flatten() {
            out[at] = b.load(Relaxed);
            at += 1;
        }
        out[at..at + 4].copy_from_slice(&self.terminal_ms.load(Relaxed).to_le_bytes());
        at += 4;
        for b in &self.deliveries {
            out[at] = b.load(Relaxed);
            at += 1;
        }
        debug_assert_eq!(at, Ledger::BYTES_PER_ORDER);
        out
    }

    /// The slot [`Slot::to_bytes`] wrote.
    fn from_bytes(b: &[u8; Ledger::BYTES_PER_ORDER]) -> Slot {
        let s = Slot::default();
        let (head, rest) = b.split_at(2);
        let fields: [(&[AtomicU8], usize); 5] = [
            (&s.published, TOPICS),
            (&s.acked, TOPICS),
            (&s.delivered, SUBS),
            (&s.consumed, SUBS),
            (&s.effects, Effect::ALL.len()),
        ];
        let mut rest = rest;
        for (to, n) in fields {
            let (from, tail) = rest.split_at(n);
            for (t, f) in to.iter().zip(from) {
                t.store(*f, Relaxed);
            }
            rest = tail;
        }
        let (ms, deliveries) = rest.split_at(4);
        s.checkout.store(head[0], Relaxed);
        s.terminal.store(head[1], Relaxed);
        s.terminal_ms
            .store(u32::from_le_bytes([ms[0], ms[1], ms[2], ms[3]]), Relaxed);
        for (t, f) in s.deliveries.iter().zip(deliveries) {
            t.store(*f, Relaxed);
        }
        s
    }

    /// Adds another part's slot of the same order, as if one process had seen both: bits
    /// are or-ed, counts added, and the checkout and end are the part's that saw them (the
    /// earlier end, if both did).
    fn absorb(&self, other: &Slot) {
        let add = |to: &[AtomicU8], from: &[AtomicU8]| {
            for (t, f) in to.iter().zip(from) {
                let f = f.load(Relaxed);
                let _ = t.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(f)));
            }
        };
        let or = |to: &[AtomicU8], from: &[AtomicU8]| {
            for (t, f) in to.iter().zip(from) {
                t.fetch_or(f.load(Relaxed), Relaxed);
            }
        };
        let checkout = other.checkout.load(Relaxed);
        if checkout != 0 {
            self.checkout.store(checkout, Relaxed);
        }
        let (terminal, ms) = (
            other.terminal.load(Relaxed),
            other.terminal_ms.load(Relaxed),
        );
        let theirs_first = self.terminal.load(Relaxed) == 0 || ms < self.terminal_ms.load(Relaxed);
        if terminal != 0 && theirs_first {
            self.terminal.store(terminal, Relaxed);
            self.terminal_ms.store(ms, Relaxed);
        }
        add(&self.published, &other.published);
        or(&self.acked, &other.acked);
        or(&self.delivered, &other.delivered);
        or(&self.consumed, &other.consumed);
        add(&self.effects, &other.effects);
        add(&self.deliveries, &other.deliveries);
    }
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
    /// A ledger for order ids `0..orders`.
    pub fn new(orders: usize) -> Ledger {
        Ledger {
            chunks: (0..orders.div_ceil(CHUNK))
                .map(|_| Chunk::default())
                .collect(),
            orders,
            delivery_totals: Default::default(),
            paging: OnceLock::new(),
            lost: OnceLock::new(),
        }
    }

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

    pub fn len(&self) -> usize {
        self.orders
    }

    pub fn is_empty(&self) -> bool {
        self.orders == 0
    }

    /// Bytes of ledger per order (all services).
    pub const BYTES_PER_ORDER: usize = std::mem::size_of::<Slot>();

    /// Bytes of slots in memory now.
    #[cfg(test)]
    fn resident_bytes(&self) -> usize {
        let slots: usize = (self.chunks.iter())
            .filter_map(|c| read(&c.slots).as_ref().map(|slots| slots.len()))
            .sum();
        slots * Self::BYTES_PER_ORDER
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

    fn chunk_len(&self, c: usize) -> usize {
        CHUNK.min(self.orders - c * CHUNK)
    }

    /// The index of `order`'s slot; `None` beyond the ledger.
    fn index(&self, order: u64) -> Option<usize> {
        usize::try_from(order).ok().filter(|&i| i < self.orders)
    }

    /// Runs `f` on slot `i` to record into (`write`) or read. A chunk paged out is paged
    /// back in; a chunk never written reads as a fresh slot, all zero, without being
    /// allocated.
    fn with<R>(&self, i: usize, write: bool, f: impl FnOnce(&Slot) -> R) -> R {
        let (c, at) = (i / CHUNK, i % CHUNK);
        let chunk = &self.chunks[c];
        loop {
            let slots = read(&chunk.slots);
            if let Some(slots) = slots.as_deref() {
                if write && chunk.paged.load(Relaxed) && !chunk.dirty.load(Relaxed) {
                    chunk.dirty.store(true, Relaxed);
                }
                return f(&slots[at]);
            }
            drop(slots);
            if !write && !chunk.paged.load(Relaxed) {
                return f(&Slot::default());
            }
            self.page_in(c);
        }
    }

    /// Records into the slot of `order`; `None` (nothing recorded) beyond the ledger.
    fn slot<R>(&self, order: u64, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        self.index(order).map(|i| self.with(i, true, f))
    }

    /// Reads the slot of `order`: a fresh one beyond the ledger.
    fn view<R>(&self, order: u64, f: impl FnOnce(&Slot) -> R) -> R {
        match self.index(order) {
            Some(i) => self.with(i, false, f),
            None => f(&Slot::default()),
        }
    }

    /// Brings chunk `c` into memory: from the page file if it was paged out, fresh if it
    /// never was. Beyond [`PAGED_IN_MAX`] chunks paged back in, the oldest goes out again.
    fn page_in(&self, c: usize) {
        let chunk = &self.chunks[c];
        let mut slots = write(&chunk.slots);
        if slots.is_some() {
            return;
        }
        let n = self.chunk_len(c);
        let paged = chunk.paged.load(Relaxed);
        *slots = Some(match self.paging.get().filter(|_| paged) {
            Some(paging) => self.read_page(paging, c, n),
            None => (0..n).map(|_| Slot::default()).collect(),
        });
        chunk.dirty.store(false, Relaxed);
        drop(slots);
        let Some(paging) = self.paging.get().filter(|_| paged) else {
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

    /// Chunk `c`'s `n` slots as last paged out. A page that cannot be read back leaves its
    /// orders fresh and the ledger [`lost`](Ledger::lost).
    fn read_page(&self, paging: &Paging, c: usize, n: usize) -> Box<[Slot]> {
        let mut bytes = vec![0u8; n * Self::BYTES_PER_ORDER];
        let at = (c * CHUNK * Self::BYTES_PER_ORDER) as u64;
        if let Err(e) = paging.file.read_exact_at(&mut bytes, at) {
            self.lose(c, &e);
        }
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
            let at = (c * CHUNK * Self::BYTES_PER_ORDER) as u64;
            if let Err(e) = paging.file.write_all_at(&bytes, at) {
                if !paging.stopped.swap(true, Relaxed) {
                    tracing::warn!(error = %e, "the ledger cannot page out: it stays in memory");
                }
                return;
            }
            chunk.paged.store(true, Relaxed);
        }
        let mut tally = Tally::default();
        s.iter().for_each(|slot| tally.count(slot));
        *lock(&chunk.tally) = Some(tally);
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
            if slots.is_some() || !chunk.paged.load(Relaxed) {
                continue;
            }
            bytes.resize(self.chunk_len(c) * Self::BYTES_PER_ORDER, 0);
            let at = (c * CHUNK * Self::BYTES_PER_ORDER) as u64;
            if let Err(e) = paging.file.read_exact_at(&mut bytes, at) {
                self.lose(c, &e);
                return;
            }
        }
    }

    fn lose(&self, c: usize, e: &std::io::Error) {
        let _ = self.lost.set(format!(
            "orders {}..{} of the ledger could not be read back from its page file: {e}",
            c * CHUNK,
            c * CHUNK + self.chunk_len(c)
        ));
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

    pub fn set_checkout(&self, order: u64, outcome: Checkout) {
        self.slot(order, |s| s.checkout.store(outcome as u8, Relaxed));
    }

    pub fn checkout(&self, order: u64) -> Checkout {
        match self.view(order, |s| s.checkout.load(Relaxed)) {
            1 => Checkout::Accepted,
            2 => Checkout::Failed,
            _ => Checkout::Pending,
        }
    }

    /// The `seq` for the next event of `order` on `topic`.
    pub fn next_seq(&self, order: u64, topic: Topic) -> u8 {
        self.slot(order, |s| {
            s.published.get(topic.index()).map_or(0, |n| {
                n.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
    }

    /// Records a broker ack; returns true if it is the first acked event of the order on
    /// this topic (the moment the order reached that stage).
    pub fn acked(&self, topic: Topic, meta: &EventMeta) -> bool {
        self.slot(meta.order_id, |s| {
            s.acked
                .get(topic.index())
                .is_some_and(|a| a.fetch_or(bit(meta.seq), Relaxed) == 0)
        })
        .unwrap_or(false)
    }

    pub fn acked_mask(&self, order: u64, topic: Topic) -> u8 {
        self.view(order, |s| {
            s.acked.get(topic.index()).map_or(0, |a| a.load(Relaxed))
        })
    }

    /// Records one delivery to subscription `sub` (an index into `topology::SUBSCRIPTIONS`).
    pub fn delivered(&self, sub: usize, meta: &EventMeta) -> DeliveryNote {
        let note = self.slot(meta.order_id, |s| {
            let _ = s.deliveries[sub].fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)));
            let b = bit(meta.seq);
            let before = s.delivered[sub].fetch_or(b, Relaxed);
            let first = before & b == 0;
            // Bits above `b` mean a later event of this key arrived first.
            let later = before & !(b | (b - 1));
            DeliveryNote {
                first,
                out_of_order: first && later != 0,
            }
        });
        let Some(note) = note else {
            return DeliveryNote {
                first: false,
                out_of_order: false,
            };
        };
        self.delivery_totals[sub].fetch_add(1, Relaxed);
        note
    }

    pub fn delivered_mask(&self, order: u64, sub: usize) -> u8 {
        self.view(order, |s| s.delivered[sub].load(Relaxed))
    }

    /// Records that the service acked a delivery of this event back to the broker.
    pub fn consumed(&self, sub: usize, meta: &EventMeta) {
        self.slot(meta.order_id, |s| {
            s.consumed[sub].fetch_or(bit(meta.seq), Relaxed)
        });
    }

    pub fn consumed_mask(&self, order: u64, sub: usize) -> u8 {
        self.view(order, |s| s.consumed[sub].load(Relaxed))
    }

    /// Deliveries of `order` to `sub` so far, counting redeliveries; saturates at 255.
    pub fn deliveries(&self, order: u64, sub: usize) -> u8 {
        self.view(order, |s| s.deliveries[sub].load(Relaxed))
    }

    /// Deliveries to `sub` over all orders, counting redeliveries.
    pub fn delivery_total(&self, sub: usize) -> u64 {
        self.delivery_totals[sub].load(Relaxed)
    }

    /// Records an applied effect; returns how many times it was applied before.
    pub fn effect(&self, order: u64, effect: Effect) -> u8 {
        self.slot(order, |s| {
            s.effects[effect as usize]
                .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
                .unwrap_or(0)
        })
        .unwrap_or(0)
    }

    pub fn effects(&self, order: u64, effect: Effect) -> u8 {
        self.view(order, |s| s.effects[effect as usize].load(Relaxed))
    }

    /// Records the order's end; the first report wins. `after_ms` is from the intended time.
    pub fn set_terminal(&self, order: u64, terminal: Terminal, after_ms: u32) {
        self.slot(order, |s| {
            if s.terminal
                .compare_exchange(0, terminal as u8, Relaxed, Relaxed)
                .is_ok()
            {
                s.terminal_ms.store(after_ms.min(u32::MAX - 1), Relaxed);
            }
        });
    }

    /// Writes the slots of orders `0..orders`, 48 bytes each ([`Slot::to_bytes`], the
    /// layout [`Ledger::absorb_from`] reads), through `w`: a shard's part of the run for
    /// `doorbuster merge`, streamed, so a long run's ledger is never held twice.
    pub fn export_to(&self, orders: u64, w: &mut impl std::io::Write) -> std::io::Result<()> {
        for order in 0..orders {
            w.write_all(&self.view(order, Slot::to_bytes))?;
        }
        Ok(())
    }

    /// Adds another part's [`Ledger::export_to`] of orders `0..orders`, read from `r` a
    /// chunk at a time, and its delivery totals to this ledger, as if one process had seen
    /// both ([`Slot::absorb`]). A part shorter than `orders` is an error (`UnexpectedEof`).
    pub fn absorb_from(
        &self,
        r: &mut impl std::io::Read,
        orders: u64,
        delivery_totals: &[u64],
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; CHUNK * Self::BYTES_PER_ORDER];
        let mut first = 0u64;
        while first < orders {
            let n = (orders - first).min(CHUNK as u64) as usize;
            let bytes = &mut buf[..n * Self::BYTES_PER_ORDER];
            r.read_exact(bytes)?;
            for (i, b) in bytes.chunks_exact(Self::BYTES_PER_ORDER).enumerate() {
                if b.iter().any(|&x| x != 0) {
                    let theirs = Slot::from_bytes(b.try_into().expect("48 bytes"));
                    self.slot(first + i as u64, |s| s.absorb(&theirs));
                }
            }
            first += n as u64;
        }
        for (total, more) in self.delivery_totals.iter().zip(delivery_totals) {
            total.fetch_add(*more, Relaxed);
        }
        Ok(())
    }

    /// Deliveries per subscription over all orders (exact).
    pub fn delivery_totals(&self) -> Vec<u64> {
        self.delivery_totals
            .iter()
            .map(|t| t.load(Relaxed))
            .collect()
    }

    pub fn terminal(&self, order: u64) -> (Terminal, Option<u32>) {
        let (t, ms) = self.view(order, |s| {
            (s.terminal.load(Relaxed), s.terminal_ms.load(Relaxed))
        });
        let t = match t {
            1 => Terminal::Fulfilled,
            2 => Terminal::Declined,
            3 => Terminal::Failed,
            _ => return (Terminal::None, None),
        };
        (t, Some(ms))
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn meta(order: u64, seq: u8) -> EventMeta {
        EventMeta {
            event_id: 0,
            order_id: order,
            seq,
            intended_at: 0,
            intended_wall_ns: 0,
            sent_at: 0,
            idempotency_key: Bytes::new(),
        }
    }

    #[test]
    fn deliveries_tell_first_duplicate_and_out_of_order_apart() {
        let ledger = Ledger::new(2);
        assert_eq!(
            ledger.delivered(0, &meta(1, 1)),
            DeliveryNote {
                first: true,
                out_of_order: false
            }
        );
        // seq 0 arrives after seq 1: out of order.
        assert_eq!(
            ledger.delivered(0, &meta(1, 0)),
            DeliveryNote {
                first: true,
                out_of_order: true
            }
        );
        // A redelivery of seq 0 is a duplicate, not another violation.
        assert_eq!(
            ledger.delivered(0, &meta(1, 0)),
            DeliveryNote {
                first: false,
                out_of_order: false
            }
        );
        assert_eq!(ledger.deliveries(1, 0), 3);
        assert_eq!(ledger.delivered_mask(1, 0), 0b11);
        assert_eq!(ledger.delivery_total(0), 3);
        assert_eq!(ledger.delivery_total(1), 0);
    }

    #[test]
    fn an_orders_count_saturates_but_the_total_stays_exact() {
        let ledger = Ledger::new(2);
        for _ in 0..300 {
            ledger.delivered(2, &meta(0, 0));
        }
        ledger.delivered(2, &meta(1, 0));
        // A delivery of an order outside the ledger is not counted anywhere.
        ledger.delivered(2, &meta(7, 0));
        assert_eq!(ledger.deliveries(0, 2), 255);
        assert_eq!(ledger.deliveries(1, 2), 1);
        assert_eq!(ledger.delivery_total(2), 301);
    }

    #[test]
    fn first_terminal_wins_and_unknown_orders_are_ignored() {
        let ledger = Ledger::new(1);
        ledger.set_terminal(0, Terminal::Declined, 5);
        ledger.set_terminal(0, Terminal::Fulfilled, 9);
        assert_eq!(ledger.terminal(0), (Terminal::Declined, Some(5)));
        ledger.set_terminal(99, Terminal::Fulfilled, 1);
        assert_eq!(ledger.effect(99, Effect::EmailSent), 0);
    }

    #[test]
    fn chunks_are_allocated_by_the_first_write_not_by_reads() {
        let ledger = Ledger::new(3 * CHUNK + 10);
        assert_eq!(ledger.resident_bytes(), 0);
        assert_eq!(
            ledger.effects(5, Effect::Shipped),
            0,
            "an unwritten order reads as fresh"
        );
        assert_eq!(ledger.terminal(2 * CHUNK as u64), (Terminal::None, None));
        assert_eq!(ledger.resident_bytes(), 0, "reading allocates nothing");
        ledger.effect(CHUNK as u64 + 1, Effect::Shipped);
        assert_eq!(ledger.effects(CHUNK as u64 + 1, Effect::Shipped), 1);
        assert_eq!(ledger.resident_bytes(), CHUNK * Ledger::BYTES_PER_ORDER);
        // The last chunk holds only the orders that exist.
        ledger.set_checkout(3 * CHUNK as u64 + 9, Checkout::Accepted);
        assert_eq!(ledger.checkout(3 * CHUNK as u64 + 9), Checkout::Accepted);
        assert_eq!(
            ledger.resident_bytes(),
            (CHUNK + 10) * Ledger::BYTES_PER_ORDER
        );
        ledger.set_checkout(3 * CHUNK as u64 + 10, Checkout::Accepted);
        assert_eq!(
            ledger.checkout(3 * CHUNK as u64 + 10),
            Checkout::Pending,
            "beyond the plan"
        );
    }

    #[test]
    fn seq_and_ack_bits() {
        let ledger = Ledger::new(1);
        assert_eq!(ledger.next_seq(0, Topic::OrderCreated), 0);
        assert_eq!(ledger.next_seq(0, Topic::OrderCreated), 1);
        assert!(ledger.acked(Topic::OrderCreated, &meta(0, 1)));
        assert!(!ledger.acked(Topic::OrderCreated, &meta(0, 0)));
        assert_eq!(ledger.acked_mask(0, Topic::OrderCreated), 0b11);
    }

    /// A shard's ledger written out and absorbed into a fresh one is the same ledger, chunk
    /// boundaries included; absorbed twice, its counts add and its bits stay; a part cut
    /// short is an error, never a silently smaller run.
    #[test]
    fn a_part_exported_and_absorbed_is_the_same_ledger() {
        let n = CHUNK as u64 * 2 + 10;
        let part = Ledger::new(n as usize);
        part.set_checkout(3, Checkout::Accepted);
        part.acked(Topic::OrderCreated, &meta(3, 0));
        part.effect(CHUNK as u64 + 5, Effect::EmailSent);
        part.set_terminal(n - 1, Terminal::Fulfilled, 250);
        part.delivered(0, &meta(n - 1, 0));
        let mut bytes = Vec::new();
        part.export_to(n, &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, n * Ledger::BYTES_PER_ORDER as u64);

        let whole = Ledger::new(n as usize);
        let totals = part.delivery_totals();
        whole
            .absorb_from(&mut bytes.as_slice(), n, &totals)
            .unwrap();
        let mut again = Vec::new();
        whole.export_to(n, &mut again).unwrap();
        assert!(again == bytes, "the absorbed ledger exports the same bytes");
        assert_eq!(whole.terminal(n - 1), (Terminal::Fulfilled, Some(250)));

        whole
            .absorb_from(&mut bytes.as_slice(), n, &totals)
            .unwrap();
        assert_eq!(whole.effects(CHUNK as u64 + 5, Effect::EmailSent), 2);
        assert_eq!(whole.acked_mask(3, Topic::OrderCreated), 1);

        let short = &bytes[..bytes.len() - 1];
        let cut = Ledger::new(n as usize).absorb_from(&mut &short[..], n, &totals);
        assert_eq!(cut.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

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
