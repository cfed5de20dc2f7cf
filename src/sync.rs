//! Small synchronisation helpers shared by the library.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering the data if a panicking thread poisoned it. Every structure the
/// library guards is consistent after each single operation, so a poison carries no broken
/// invariant; refusing to go on would only turn one bug into a lost report.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
