//! Why the agent refused something.

use crate::bundle::Eid;
use crate::bundle::{BundleError, PayloadLengthMismatch};
use crate::store::StoreError;

/// Why the agent refused something.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The bundle does not decode or breaks a rule of RFC 9171.
    #[error("the bundle is refused: {0}")]
    Invalid(#[from] BundleError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An application asked for an endpoint of another node.
    #[error(
        "{endpoint} is not an endpoint of this node ({node}): applications register endpoints of their own node"
    )]
    NotLocal {
        /// The endpoint asked for.
        endpoint: Eid,
        /// This node's ID.
        node: Eid,
    },
    /// An application sent from an endpoint of another node.
    #[error(
        "the source {from} is not an endpoint of this node ({node}): bundles are sent from the node's own endpoints"
    )]
    ForeignSource {
        /// The source given.
        from: Eid,
        /// This node's ID.
        node: Eid,
    },
    /// A payload written in pieces did not come to the length announced.
    #[error("the bundle is incomplete: {0}")]
    PayloadLength(#[from] PayloadLengthMismatch),
    /// A bundle with this ID was delivered or forwarded already (exactly once, design §3).
    #[error(
        "this node already delivered or forwarded a bundle with the ID {0}; \
         a new bundle needs a new creation timestamp (is the clock behind?)"
    )]
    AlreadyHandled(crate::bundle::BundleId),
    /// An administrative record claims a neighbour's name from where that neighbour does not
    /// send from (design §3.10).
    #[error(
        "an administrative record in the name of {claimed} came from {sender}, which is not where \
         {claimed} sends from: refused (if it is {claimed}, set sends_from for it)"
    )]
    Impostor {
        /// The node the record claims to come from.
        claimed: Eid,
        /// Where it came from, as its layer saw it.
        sender: String,
    },
}
