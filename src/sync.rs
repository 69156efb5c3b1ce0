//! The one lock helper.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the guard of a poisoned mutex too: a panic while one of the cache's locks
/// was held (contained by `supervise`) cannot leave the state it guards half-updated in a way
/// that matters more than stopping the cache would; keep serving rather than propagate.
#[inline]
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
