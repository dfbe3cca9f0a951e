//! Convergence layers (design §2): each a sans-IO protocol core and a thin tokio driver that
//! implements [`bpa::ConvergenceLayer`].

pub mod framed;
pub mod listener;
pub mod serial;
pub mod spool;
pub mod tcpcl;
pub mod tcpcl3;
pub mod udp;

#[cfg(feature = "testing")]
pub mod testing;

/// Locks a layer's mutex even if a holder panicked: what they guard (counters, tables of
/// sessions and peers) stays usable, and one failed task must not stop the whole layer.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
