//! Captures per order, kept compact: the provider's own count of how often each order was
//! charged, which is what proves a double charge.
//!
//! A run's order ids are dense (0, 1, 2, ...), so the counts live in a byte per order, grown
//! as ids arrive: ten million orders cost 10 MB, not a hash map of ten million entries. Ids far
//! beyond the dense range (a user's own payment service may send any id) and counts past 254
//! go to a map instead. Each order is counted in exactly one of the two places.

use std::collections::HashMap;

/// How far past the dense range an id may land and still grow it (1 MiB of counts at most
/// per step): a run's ids arrive nearly in order; anything further is someone else's id space.
const GROWTH_SLACK: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChargesPerOrder {
    /// Captures of order `i`, 0 to 254; 0 also for an order counted in `sparse`.
    dense: Vec<u8>,
    sparse: HashMap<u64, u32>,
}

impl ChargesPerOrder {
    /// Counts one capture for `order`.
    pub fn add(&mut self, order: u64) {
        if let Some(n) = self.sparse.get_mut(&order) {
            *n = n.saturating_add(1);
            return;
        }
        let index = usize::try_from(order).ok().filter(|&i| {
            i < self.dense.len() || i < self.dense.len().saturating_mul(2) + GROWTH_SLACK
        });
        let Some(i) = index else {
            self.sparse.insert(order, 1);
            return;
        };
        if i >= self.dense.len() {
            self.dense.resize(i + 1, 0);
        }
        let n = &mut self.dense[i];
        if *n < u8::MAX - 1 {
            *n += 1;
        } else {
            // Past what a byte holds: the order moves to the map with its count.
            let count = u32::from(*n) + 1;
            *n = 0;
            self.sparse.insert(order, count);
        }
    }

    /// How many times `order` was charged (0 for never).
    pub fn get(&self, order: u64) -> u32 {
        if let Some(n) = self.sparse.get(&order) {
            return *n;
        }
        usize::try_from(order)
            .ok()
            .and_then(|i| self.dense.get(i))
            .map_or(0, |n| u32::from(*n))
    }

    /// Every order charged at least once with its count: the dense ones by id, then the rest.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let dense = (self.dense.iter().enumerate())
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i as u64, u32::from(*n)));
        dense.chain(self.sparse.iter().map(|(order, n)| (*order, *n)))
    }

    /// Orders charged more than once, ascending, with their counts.
    pub fn doubled(&self) -> Vec<(u64, u32)> {
        let mut doubled: Vec<(u64, u32)> = self.iter().filter(|(_, n)| *n > 1).collect();
        doubled.sort_unstable();
        doubled
    }

    /// How many orders were charged at least once.
    pub fn len(&self) -> usize {
        self.dense.iter().filter(|n| **n > 0).count() + self.sparse.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromIterator<u64> for ChargesPerOrder {
    /// One capture per id yielded.
    fn from_iter<I: IntoIterator<Item = u64>>(orders: I) -> ChargesPerOrder {
        let mut charges = ChargesPerOrder::default();
        for order in orders {
            charges.add(order);
        }
        charges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_dense_and_far_ids_once_each() {
        let far = 1 << 40;
        let charges: ChargesPerOrder = [3, 0, 3, far, far, 7].into_iter().collect();
        assert_eq!((charges.get(0), charges.get(3), charges.get(7)), (1, 2, 1));
        assert_eq!(
            (charges.get(far), charges.get(1), charges.get(far + 1)),
            (2, 0, 0)
        );
        assert_eq!(charges.len(), 4);
        assert_eq!(charges.doubled(), vec![(3, 2), (far, 2)]);
        assert!(
            charges.dense.len() <= 8,
            "a far id does not grow the dense counts"
        );
    }

    #[test]
    fn a_count_past_a_byte_moves_to_the_map() {
        let charges: ChargesPerOrder = std::iter::repeat_n(5, 300).collect();
        assert_eq!(charges.get(5), 300);
        assert_eq!(charges.len(), 1);
        assert_eq!(charges.iter().collect::<Vec<_>>(), vec![(5, 300)]);
    }

    #[test]
    fn an_id_counted_in_the_map_stays_there_when_the_dense_range_grows_over_it() {
        let far = (GROWTH_SLACK * 3) as u64;
        let mut charges: ChargesPerOrder = [far].into_iter().collect();
        // Ids arriving in order grow the dense range past `far` (which is counted again on
        // the way, in the map where it already is).
        for order in (0..=far + GROWTH_SLACK as u64 / 2).step_by(GROWTH_SLACK / 2) {
            charges.add(order);
        }
        assert!(charges.dense.len() as u64 > far);
        assert_eq!(charges.get(far), 2);
        assert_eq!(charges.iter().filter(|(o, _)| *o == far).count(), 1);
    }
}
