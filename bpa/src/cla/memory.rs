//! An in-memory convergence layer: a link straight into another agent in the same process, that
//! tests cut and restore. The multi-node test harness is built from these.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle, Refusal};
use crate::agent::node::{Agent, AgentError};
use crate::bundle::{BundleError, Eid};
use crate::store::{Store, StoreError};

/// A switch on a link: cut it and sends fail with [`ClaError::LinkDown`].
#[derive(Debug, Clone)]
pub struct LinkSwitch(Arc<AtomicBool>);

impl LinkSwitch {
    /// Cuts the link: every send fails as the link being down.
    pub fn cut(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    /// Restores the link.
    pub fn restore(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One direction of a link to `to`, in memory.
#[derive(Debug)]
pub struct MemoryLink<S: Store> {
    to: Agent<S>,
    switch: LinkSwitch,
    max_bundle_size: Option<usize>,
}

impl<S: Store> MemoryLink<S> {
    /// A link into `to`, up, with the switch that cuts it.
    pub fn new(to: Agent<S>) -> (MemoryLink<S>, LinkSwitch) {
        let switch = LinkSwitch(Arc::new(AtomicBool::new(true)));
        (MemoryLink { to, switch: switch.clone(), max_bundle_size: None }, switch)
    }

    /// Bundles larger than `bytes` are fragmented before they cross this link.
    pub fn with_max_bundle_size(mut self, bytes: usize) -> MemoryLink<S> {
        self.max_bundle_size = Some(bytes);
        self
    }
}

/// What the receiving agent's error means to the sender.
fn refusal(error: &AgentError) -> Refusal {
    match error {
        AgentError::Store(StoreError::DepletedStorage { .. }) => Refusal::NoResources,
        AgentError::Invalid(BundleError::TooLarge { limit, .. })
        | AgentError::Store(StoreError::InvalidBundle(BundleError::TooLarge { limit, .. })) => {
            Refusal::TooLarge { limit: *limit }
        }
        AgentError::Invalid(_) | AgentError::Store(StoreError::InvalidBundle(_)) => Refusal::NotAcceptable,
        other => Refusal::Other(other.to_string()),
    }
}

impl<S: Store> ConvergenceLayer for MemoryLink<S> {
    fn name(&self) -> &str {
        "memory"
    }

    fn max_bundle_size(&self) -> Option<usize> {
        self.max_bundle_size
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let peer = peer.to_string();
        Box::pin(async move {
            if !self.switch.is_up() {
                return Err(ClaError::LinkDown { peer });
            }
            let bundle = bundle
                .into_bytes()
                .await
                .map_err(|e| ClaError::Failed { peer: peer.clone(), reason: e.to_string() })?;
            // The receiving agent answers once the bundle is durable there, like a final XFER_ACK.
            self.to
                .receive(bundle)
                .await
                .map(drop)
                .map_err(|error| ClaError::Refused { peer, reason: refusal(&error) })
        })
    }
}
