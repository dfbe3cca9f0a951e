//! The TCP convergence layer, version 4 (RFC 9174).
//!
//! [`wire`] is the byte format; [`session`] the sans-IO session state machine (bytes and the time
//! in, bytes and events out), which the tokio driver only feeds and drains.

pub mod driver;
mod handshake;
mod receiving;
pub mod session;
mod session_task;
pub mod tls;
pub mod wire;
mod writer;
