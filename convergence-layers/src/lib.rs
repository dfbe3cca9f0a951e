//! Convergence layers (design §2): each a sans-IO protocol core and a thin tokio driver that
//! implements [`bpa::ConvergenceLayer`].

pub mod clock;
pub mod framed;
pub mod listener;
pub mod serial;
pub mod spool;
pub mod tcpcl;
pub mod tcpcl3;
pub mod udp;

#[cfg(feature = "testing")]
pub mod testing;

pub(crate) use bpa::sync::lock;
