//! The interface every convergence layer implements (design §2): the agent hands it a bundle
//! for a neighbour and learns when the neighbour has it; the layer hands the agent what it
//! receives through [`crate::agent::node::Agent::receive`].

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::bundle::Eid;

/// Why a convergence layer could not hand a bundle over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaError {
    #[error("the link to {peer} is down")]
    LinkDown { peer: String },
    #[error("{peer} refused the bundle: {reason}")]
    Refused { peer: String, reason: String },
    #[error("sending to {peer} failed: {reason}")]
    Failed { peer: String, reason: String },
}

/// A future a convergence layer returns.
pub type ClaFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClaError>> + Send + 'a>>;

/// A convergence layer's side of one or more links.
pub trait ConvergenceLayer: Send + Sync + std::fmt::Debug {
    /// A short name for logs and status (`tcpcl`, `udp`, `memory`, ...).
    fn name(&self) -> &str;

    /// The largest bundle the link takes whole; larger ones are fragmented proactively (RFC 9171
    /// §5.8) unless they must not be.
    fn max_bundle_size(&self) -> Option<usize> {
        None
    }

    /// Sends an encoded bundle to the neighbour `peer` (a node ID). Resolves `Ok` once the layer
    /// has the neighbour's acknowledgement (for TCPCL, the final XFER_ACK).
    fn send(&self, peer: &Eid, bundle: Bytes) -> ClaFuture<'_, ()>;
}

pub mod memory;
