//! The bundle protocol agent: BPv7 bundles (RFC 9171), administrative records, and (in later
//! modules) the store, the agent and the local API.
//!
//! Module map: [`bundle`] is the codec; [`admin`] the administrative records of RFC 9171 §6
//! and of BIBE custody transfer; [`time`] the one clock.

pub mod admin;
pub mod agent;
pub mod bundle;
pub mod cla;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
