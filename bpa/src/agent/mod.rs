//! The bundle processing agent (RFC 9171 §5), in two halves:
//!
//! - `core`: the decisions, with no I/O — where a bundle goes (`core::reach`, routing hooks in
//!   `core::routing`), the timers, the contact plan's edges, the edits a node makes when it
//!   forwards a bundle (`core::forward`), how one bundle goes to a neighbour
//!   (`core::transmit`), fragmentation and reassembly's arithmetic (`core::fragment`) and the
//!   status reports (`core::report`).
//! - the driver, which carries them out against the store and the layers: the agent and
//!   dispatch (`node`), what it holds under its one lock (`state`), reception, forwarding per
//!   neighbour (`forwarder`, `queue`), neighbours coming and going (`neighbours`), the timer
//!   task, expiry, local delivery and registrations (`delivery`), reassembly, custody and the
//!   contact plan's events (`contacts`).
//!
//! The modules are the crate's own; what other crates use is re-exported here (and the most
//! used names at the crate's root: `bpa::Agent`, `bpa::AgentConfig`, ...).

mod applications;
mod config;
mod contacts;
pub(crate) mod core;
mod counters;
pub(crate) mod custody;
pub(crate) mod delivery;
mod error;
mod expiry;
mod forwarder;
mod neighbours;
pub(crate) mod node;
pub(crate) mod outgoing;
mod provoked;
mod queue;
mod queue_task;
mod reassembly;
mod reception;
mod state;
mod timer_task;
mod waiting;
mod warnings;

pub use reception::PendingReceive;

pub use self::core::ContactEvent;
pub use self::core::forward::{ForwardError, prepare_for_forwarding};
pub use self::core::fragment::{FragmentError, Reassembly, ReassemblyError, fragment};
pub use self::core::report::ReportPolicy;
pub use self::core::routing::{ContactRouter, EidPattern, Router, StaticRoute, plan_endpoint, plan_name};
pub use applications::{Delivery, SUBSCRIPTION_WINDOW, Subscription, Watcher};
pub use config::AgentConfig;
pub use counters::{AgentStats, CustodyStats};
pub use custody::{CustodyPeer, CustodyPolicy, PeerCustody, RetransmissionTime};
pub use delivery::MAX_ECHO_PAYLOAD;
pub use error::AgentError;
pub use neighbours::NeighbourInfo;
pub use node::{Agent, Reception, Route};
pub use outgoing::{PendingSend, SendRequest};
