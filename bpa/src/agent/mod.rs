//! The bundle processing agent (RFC 9171 §5): the pipeline ([`node`]), local delivery,
//! registrations and the echo service ([`delivery`]), routing hooks ([`routing`]) and its
//! sans-IO pieces — the edits a node makes when it forwards a bundle ([`forward`]),
//! fragmentation and reassembly ([`fragment`]), and the status reports it sends ([`report`]).

mod counters;
pub mod delivery;
pub mod forward;
pub mod fragment;
pub mod node;
pub mod outgoing;
pub mod report;
pub mod routing;

pub use counters::AgentStats;
