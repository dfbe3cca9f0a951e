//! The bundle processing agent (RFC 9171 §5). So far its sans-IO pieces: the edits a node makes
//! when it forwards a bundle ([`forward`]) and fragmentation and reassembly ([`fragment`]).

pub mod forward;
pub mod fragment;
