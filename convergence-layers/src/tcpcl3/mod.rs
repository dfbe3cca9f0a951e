//! The TCP convergence layer, version 3 (RFC 7242), which ION, µD3TN and HDTN speak.
//!
//! [`wire`] is the byte format; [`session`] the sans-IO session (bytes and the time in, control
//! messages and events out); [`driver`] the tokio driver: listeners, dialled peers, and the
//! [`bpa::ConvergenceLayer`] the agent sends through.

mod connection;
pub mod driver;
pub mod session;
mod shared;
pub mod wire;
mod writer;

#[cfg(test)]
mod tests;
