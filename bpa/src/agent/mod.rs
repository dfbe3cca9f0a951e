//! The bundle processing agent (RFC 9171 §5): the pipeline ([`node`]: the agent, dispatch,
//! neighbours and routes; `reception`; `forwarder`, per neighbour; `expiry`), local delivery,
//! registrations and the echo service ([`delivery`]), routing hooks ([`routing`]) and the contact plan (`contacts`) and its
//! sans-IO pieces — the edits a node makes when it forwards a bundle ([`forward`]),
//! fragmentation and reassembly ([`fragment`]), and the status reports it sends ([`report`]).

mod contacts;
mod counters;
pub mod custody;
pub mod delivery;
mod expiry;
pub mod forward;
mod forwarder;
pub mod fragment;
pub mod node;
pub mod outgoing;
mod queue;
mod reassembly;
mod reception;
pub mod report;
pub mod routing;
mod timers;
mod transmit;
mod waiting;
mod warnings;

pub use reception::PendingReceive;

pub use contacts::ContactEvent;
pub use counters::{AgentStats, CustodyStats};
pub use custody::{CustodyPeer, CustodyPolicy, PeerCustody, RetransmissionTime};
pub use delivery::{Subscription, Watcher};
pub use node::{Agent, AgentConfig, AgentError, Delivery, NeighbourInfo, Reception, Route};
pub use outgoing::{PendingSend, SendRequest};
pub use report::ReportPolicy;
pub use routing::{ContactRouter, EidPattern, Router, StaticRoute};
