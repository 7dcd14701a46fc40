//! Locking helpers shared by every module.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, ignoring poisoning: a thread that panicked while holding a
/// lock leaves data that is still consistent for every lock in this crate
/// (each critical section leaves it valid at every step), so the other
/// threads go on rather than panic in turn.
#[inline]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
