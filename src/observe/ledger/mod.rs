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

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{OnceLock, PoisonError, RwLock};

use crate::events::{EventMeta, Topic};
use crate::topology::SUBSCRIPTIONS;

mod paging;

pub use paging::Tally;
use paging::{Chunk, Paging};

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

    pub(super) fn meta(order: u64, seq: u8) -> EventMeta {
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
}
