//! The bundle processing agent (RFC 9171 §5): the pipeline ([`node`]) and its sans-IO pieces —
//! the edits a node makes when it forwards a bundle ([`forward`]), fragmentation and reassembly
//! ([`fragment`]), and the status reports it sends ([`report`]).

pub mod forward;
pub mod fragment;
pub mod node;
pub mod report;
