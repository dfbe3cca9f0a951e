//! The bundle processing agent (RFC 9171 §5): the pipeline (`node`: the agent, dispatch,
//! neighbours and routes; `reception`; `forwarder`, per neighbour; `expiry`), local delivery,
//! registrations and the echo service (`delivery`), routing hooks (`routing`) and the contact
//! plan (`contacts`) and its sans-IO pieces — the edits a node makes when it forwards a bundle
//! (`forward`), how one bundle goes to a neighbour (`transmit`), fragmentation and reassembly
//! (`fragment`), and the status reports it sends (`report`).
//!
//! The modules are the crate's own; what other crates use is re-exported here (and the most
//! used names at the crate's root: `bpa::Agent`, `bpa::AgentConfig`, ...).

mod contacts;
mod core;
mod counters;
pub(crate) mod custody;
pub(crate) mod delivery;
mod expiry;
pub(crate) mod forward;
mod forwarder;
pub(crate) mod fragment;
mod neighbours;
pub(crate) mod node;
pub(crate) mod outgoing;
mod queue;
mod reassembly;
mod reception;
pub(crate) mod report;
pub(crate) mod routing;
mod state;
mod timer_task;
mod transmit;
mod waiting;
mod warnings;

pub use reception::PendingReceive;

pub use contacts::ContactEvent;
pub use counters::{AgentStats, CustodyStats};
pub use custody::{CustodyPeer, CustodyPolicy, PeerCustody, RetransmissionTime};
pub use delivery::{MAX_ECHO_PAYLOAD, SUBSCRIPTION_WINDOW, Subscription, Watcher};
pub use forward::{ForwardError, prepare_for_forwarding};
pub use fragment::{FragmentError, Reassembly, ReassemblyError, fragment};
pub use node::{Agent, AgentConfig, AgentError, Delivery, NeighbourInfo, Reception, Route};
pub use outgoing::{PendingSend, SendRequest};
pub use report::ReportPolicy;
pub use routing::{ContactRouter, EidPattern, Router, StaticRoute, plan_endpoint, plan_name};
