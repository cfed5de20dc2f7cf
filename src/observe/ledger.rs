//! The ledger: per order, what was attempted, acked, delivered and applied.
//!
//! Attempted / acked / delivered / consumed / effects are kept apart (the Jepsen discipline):
//! a publish the broker acked is a promise, a delivery is one arrival at one service, a
//! consumed delivery is one the service acked back to the broker (it will not come again),
//! and an effect is what a service did about it. Loss is judged on effects (DESIGN.md §5): a
//! consumer that acks and then crashes shows as consumed without its effect. Every slot is a
//! handful of atomics so recording from many tasks needs no lock: 48 bytes per order for all
//! five services together (about 10 per service), allocated a chunk at a time as orders are
//! made, so a run holds slots for the orders it made, not for every order it planned.
//!
//! Events of one order on one topic are told apart by their `seq` (0 for the first
//! `order.created`, 1 for a resubmit, ...); up to 8 per (order, topic) are tracked exactly,
//! later ones share the last bit.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::events::{EventMeta, Topic};
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

/// Orders per chunk of slots: 65,536 x 48 B = 3 MiB, allocated on its first write.
const CHUNK: usize = 1 << 16;

pub struct Ledger {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    orders: usize,
    /// Deliveries per subscription over all orders, counting redeliveries (exact).
    delivery_totals: [AtomicU64; SUBS],
}

// The budget: at most 32 bytes per order per service, for the five services.
const _: () = assert!(std::mem::size_of::<Slot>() <= 32 * crate::topology::ServiceKind::ALL.len());
const _: () = assert!(std::mem::size_of::<Slot>() == 48);
// `Ledger::export` writes every field of a slot, byte for byte: the same 48.
const _: () = assert!(2 + 2 * TOPICS + 3 * SUBS + Effect::ALL.len() + 4 == 48);

fn bit(seq: u8) -> u8 {
    1 << seq.min(7)
}

impl Ledger {
    /// A ledger for order ids `0..orders`.
    pub fn new(orders: usize) -> Ledger {
        Ledger {
            chunks: (0..orders.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            orders,
            delivery_totals: Default::default(),
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

    /// Bytes of slots allocated so far (chunks that were written to).
    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        let slots: usize = (self.chunks.iter())
            .filter_map(|chunk| chunk.get().map(|slots| slots.len()))
            .sum();
        slots * Self::BYTES_PER_ORDER
    }

    /// The slot to record into: its chunk is allocated on the first write.
    fn slot(&self, order: u64) -> Option<&Slot> {
        let i = usize::try_from(order).ok().filter(|&i| i < self.orders)?;
        let first = i / CHUNK * CHUNK;
        let chunk = self.chunks[i / CHUNK].get_or_init(|| {
            let n = CHUNK.min(self.orders - first);
            (0..n).map(|_| Slot::default()).collect()
        });
        chunk.get(i - first)
    }

    /// The slot to read: `None` for an order whose chunk nothing was written to, which
    /// reads as a fresh slot does (all zero).
    fn read(&self, order: u64) -> Option<&Slot> {
        let i = usize::try_from(order).ok()?;
        self.chunks.get(i / CHUNK)?.get()?.get(i % CHUNK)
    }

    pub fn set_checkout(&self, order: u64, outcome: Checkout) {
        if let Some(s) = self.slot(order) {
            s.checkout.store(outcome as u8, Relaxed);
        }
    }

    pub fn checkout(&self, order: u64) -> Checkout {
        match self.read(order).map(|s| s.checkout.load(Relaxed)) {
            Some(1) => Checkout::Accepted,
            Some(2) => Checkout::Failed,
            _ => Checkout::Pending,
        }
    }

    /// The `seq` for the next event of `order` on `topic`.
    pub fn next_seq(&self, order: u64, topic: Topic) -> u8 {
        self.slot(order)
            .and_then(|s| s.published.get(topic.index()))
            .map_or(0, |n| {
                n.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
                    .unwrap_or(0)
            })
    }

    /// Records a broker ack; returns true if it is the first acked event of the order on
    /// this topic (the moment the order reached that stage).
    pub fn acked(&self, topic: Topic, meta: &EventMeta) -> bool {
        self.slot(meta.order_id)
            .and_then(|s| s.acked.get(topic.index()))
            .is_some_and(|a| a.fetch_or(bit(meta.seq), Relaxed) == 0)
    }

    pub fn acked_mask(&self, order: u64, topic: Topic) -> u8 {
        self.read(order)
            .and_then(|s| s.acked.get(topic.index()))
            .map_or(0, |a| a.load(Relaxed))
    }

    /// Records one delivery to subscription `sub` (an index into `topology::SUBSCRIPTIONS`).
    pub fn delivered(&self, sub: usize, meta: &EventMeta) -> DeliveryNote {
        let Some(s) = self.slot(meta.order_id) else {
            return DeliveryNote {
                first: false,
                out_of_order: false,
            };
        };
        let _ = s.deliveries[sub].fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)));
        self.delivery_totals[sub].fetch_add(1, Relaxed);
        let b = bit(meta.seq);
        let before = s.delivered[sub].fetch_or(b, Relaxed);
        let first = before & b == 0;
        // Bits above `b` mean a later event of this key arrived first.
        let later = before & !(b | (b - 1));
        DeliveryNote {
            first,
            out_of_order: first && later != 0,
        }
    }

    pub fn delivered_mask(&self, order: u64, sub: usize) -> u8 {
        self.read(order)
            .map_or(0, |s| s.delivered[sub].load(Relaxed))
    }

    /// Records that the service acked a delivery of this event back to the broker.
    pub fn consumed(&self, sub: usize, meta: &EventMeta) {
        if let Some(s) = self.slot(meta.order_id) {
            s.consumed[sub].fetch_or(bit(meta.seq), Relaxed);
        }
    }

    pub fn consumed_mask(&self, order: u64, sub: usize) -> u8 {
        self.read(order)
            .map_or(0, |s| s.consumed[sub].load(Relaxed))
    }

    /// Deliveries of `order` to `sub` so far, counting redeliveries; saturates at 255.
    pub fn deliveries(&self, order: u64, sub: usize) -> u8 {
        self.read(order)
            .map_or(0, |s| s.deliveries[sub].load(Relaxed))
    }

    /// Deliveries to `sub` over all orders, counting redeliveries.
    pub fn delivery_total(&self, sub: usize) -> u64 {
        self.delivery_totals[sub].load(Relaxed)
    }

    /// Records an applied effect; returns how many times it was applied before.
    pub fn effect(&self, order: u64, effect: Effect) -> u8 {
        self.slot(order).map_or(0, |s| {
            s.effects[effect as usize]
                .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
                .unwrap_or(0)
        })
    }

    pub fn effects(&self, order: u64, effect: Effect) -> u8 {
        self.read(order)
            .map_or(0, |s| s.effects[effect as usize].load(Relaxed))
    }

    /// Records the order's end; the first report wins. `after_ms` is from the intended time.
    pub fn set_terminal(&self, order: u64, terminal: Terminal, after_ms: u32) {
        if let Some(s) = self.slot(order)
            && s.terminal
                .compare_exchange(0, terminal as u8, Relaxed, Relaxed)
                .is_ok()
        {
            s.terminal_ms.store(after_ms.min(u32::MAX - 1), Relaxed);
        }
    }

    /// Writes the slots of orders `0..orders`, 48 bytes each, every field in turn (the
    /// layout [`Ledger::absorb_from`] reads), through `w`: a shard's part of the run for
    /// `doorbuster merge`, streamed, so a long run's ledger is never held twice.
    pub fn export_to(&self, orders: u64, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let fresh = Slot::default();
        let mut out = [0u8; Self::BYTES_PER_ORDER];
        for order in 0..orders {
            let s = self.read(order).unwrap_or(&fresh);
            let head: [&[AtomicU8]; 7] = [
                std::slice::from_ref(&s.checkout),
                std::slice::from_ref(&s.terminal),
                &s.published,
                &s.acked,
                &s.delivered,
                &s.consumed,
                &s.effects,
            ];
            let mut at = 0;
            for b in head.into_iter().flatten() {
                out[at] = b.load(Relaxed);
                at += 1;
            }
            out[at..at + 4].copy_from_slice(&s.terminal_ms.load(Relaxed).to_le_bytes());
            at += 4;
            for b in &s.deliveries {
                out[at] = b.load(Relaxed);
                at += 1;
            }
            debug_assert_eq!(at, Self::BYTES_PER_ORDER);
            w.write_all(&out)?;
        }
        Ok(())
    }

    /// Adds another part's [`Ledger::export_to`] of orders `0..orders`, read from `r` a
    /// chunk at a time, and its delivery totals to this ledger, as if one process had seen
    /// both: bits are or-ed, counts added, and an order's checkout and end are the part's
    /// that saw them (the earlier end, if both did). A part shorter than `orders` is an
    /// error (`UnexpectedEof`).
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
            self.absorb_at(first, bytes);
            first += n as u64;
        }
        for (total, more) in self.delivery_totals.iter().zip(delivery_totals) {
            total.fetch_add(*more, Relaxed);
        }
        Ok(())
    }

    /// [`Ledger::absorb_from`]'s step: the slots in `bytes`, of orders from `first`.
    fn absorb_at(&self, first: u64, bytes: &[u8]) {
        for (i, b) in bytes.chunks_exact(Self::BYTES_PER_ORDER).enumerate() {
            if b.iter().all(|&x| x == 0) {
                continue;
            }
            let Some(s) = self.slot(first + i as u64) else {
                break;
            };
            let (head, rest) = b.split_at(2);
            let (published, rest) = rest.split_at(TOPICS);
            let (acked, rest) = rest.split_at(TOPICS);
            let (delivered, rest) = rest.split_at(SUBS);
            let (consumed, rest) = rest.split_at(SUBS);
            let (effects, rest) = rest.split_at(Effect::ALL.len());
            let (terminal_ms, deliveries) = rest.split_at(4);
            let add = |to: &[AtomicU8], from: &[u8]| {
                for (t, f) in to.iter().zip(from) {
                    let _ = t.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(*f)));
                }
            };
            let or = |to: &[AtomicU8], from: &[u8]| {
                for (t, f) in to.iter().zip(from) {
                    t.fetch_or(*f, Relaxed);
                }
            };
            if head[0] != 0 {
                s.checkout.store(head[0], Relaxed);
            }
            let ms = u32::from_le_bytes([
                terminal_ms[0],
                terminal_ms[1],
                terminal_ms[2],
                terminal_ms[3],
            ]);
            let theirs_first = s.terminal.load(Relaxed) == 0 || ms < s.terminal_ms.load(Relaxed);
            if head[1] != 0 && theirs_first {
                s.terminal.store(head[1], Relaxed);
                s.terminal_ms.store(ms, Relaxed);
            }
            add(&s.published, published);
            or(&s.acked, acked);
            or(&s.delivered, delivered);
            or(&s.consumed, consumed);
            add(&s.effects, effects);
            add(&s.deliveries, deliveries);
        }
    }

    /// Deliveries per subscription over all orders (exact).
    pub fn delivery_totals(&self) -> Vec<u64> {
        self.delivery_totals
            .iter()
            .map(|t| t.load(Relaxed))
            .collect()
    }

    pub fn terminal(&self, order: u64) -> (Terminal, Option<u32>) {
        let Some(s) = self.read(order) else {
            return (Terminal::None, None);
        };
        let t = match s.terminal.load(Relaxed) {
            1 => Terminal::Fulfilled,
            2 => Terminal::Declined,
            3 => Terminal::Failed,
            _ => return (Terminal::None, None),
        };
        (t, Some(s.terminal_ms.load(Relaxed)))
    }
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
        assert_eq!(ledger.allocated_bytes(), 0);
        assert_eq!(
            ledger.effects(5, Effect::Shipped),
            0,
            "an unwritten order reads as fresh"
        );
        assert_eq!(ledger.terminal(2 * CHUNK as u64), (Terminal::None, None));
        assert_eq!(ledger.allocated_bytes(), 0, "reading allocates nothing");
        ledger.effect(CHUNK as u64 + 1, Effect::Shipped);
        assert_eq!(ledger.effects(CHUNK as u64 + 1, Effect::Shipped), 1);
        assert_eq!(ledger.allocated_bytes(), CHUNK * Ledger::BYTES_PER_ORDER);
        // The last chunk holds only the orders that exist.
        ledger.set_checkout(3 * CHUNK as u64 + 9, Checkout::Accepted);
        assert_eq!(ledger.checkout(3 * CHUNK as u64 + 9), Checkout::Accepted);
        assert_eq!(
            ledger.allocated_bytes(),
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
