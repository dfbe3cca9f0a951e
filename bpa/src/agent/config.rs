//! How a node behaves: the agent's configuration.

use std::time::Duration;

use super::core::report::ReportPolicy;
use super::custody::policy::CustodyPolicy;
use crate::bundle::{Eid, ParseOptions};

/// How a node behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's ID (`ipn:N.0` or `dtn://node/`).
    pub node_id: Eid,
    /// How received bundles are parsed (leniency for peers that need it).
    pub parse: ParseOptions,
    /// Whether and how status reports are sent.
    pub reports: ReportPolicy,
    /// Answer bundles sent to the echo service (`ipn:N.7`, `dtn://node/echo`) with their payload.
    pub echo: bool,
    /// Most bundles being handed to one neighbour's convergence layer at once; the others queue.
    pub max_in_flight_per_neighbour: usize,
    /// After a failed send to a neighbour that is still up (refused for want of room, a
    /// session lost while another carries on), what waits for it is tried again after this
    /// delay, doubled while sends keep failing, up to `forward_retry_max`; a successful send
    /// resets it.
    pub forward_retry_min: Duration,
    /// The longest delay between retries of failed sends.
    pub forward_retry_max: Duration,
    /// How custody is taken and handed over (docs/custody.md).
    pub custody: CustodyPolicy,
}

impl AgentConfig {
    /// The defaults for a node with this ID.
    pub fn new(node_id: Eid) -> AgentConfig {
        AgentConfig {
            node_id,
            parse: ParseOptions::default(),
            reports: ReportPolicy::default(),
            echo: true,
            max_in_flight_per_neighbour: 256,
            forward_retry_min: Duration::from_secs(1),
            forward_retry_max: Duration::from_secs(60),
            custody: CustodyPolicy::default(),
        }
    }
}
