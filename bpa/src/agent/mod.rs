//! The bundle processing agent (RFC 9171 §5). So far its sans-IO pieces: the edits a node makes
//! when it forwards a bundle ([`forward`]), fragmentation and reassembly ([`fragment`]), and the
//! status reports it sends ([`report`]). The pipeline that drives them (reception, storage,
//! dispatch, forwarding, delivery, expiry) comes with the rest of issue 4.

pub mod forward;
pub mod fragment;
pub mod node;
pub mod report;
