//! The one way this workspace takes a `std::sync::Mutex`.

use std::sync::{Mutex, MutexGuard};

/// Locks `m` even if a holder panicked. What the workspace guards with a mutex (counters,
/// tables of sessions and peers, the agent's state, a store's channels) is left whole between
/// statements, so the data is taken on as it is, and one failed task does not stop the rest.
/// Never held across an `.await`.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
