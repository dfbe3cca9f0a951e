//! What a convergence layer needs of the agent (design §2: layers reach the agent through a
//! small trait, not through its store's types): this node's ID, a way to hand over what it
//! receives — whole, or in pieces as they arrive, acknowledged to the peer only once durable —
//! and a way to say which neighbours it reaches.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::{ConvergenceLayer, Refusal, Sender};
use crate::agent::PendingReceive;
use crate::agent::node::{Agent, AgentError, Reception};
use crate::bundle::BundleError;
use crate::bundle::Eid;
use crate::store::{Store, StoreError};

/// The agent as a convergence layer sees it. [`Agent`] implements it.
pub trait BundleSink: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// A bundle arriving in pieces.
    type Incoming: IncomingBundle;

    /// This node's ID (what the layer announces to its peers).
    fn node_id(&self) -> &Eid;

    /// A whole received bundle (RFC 9171 §5.6). `Ok` means durable: the layer may acknowledge
    /// it to the peer.
    fn receive(&self, encoded: Bytes) -> impl Future<Output = Result<Reception, SinkError>> + Send;

    /// As [`BundleSink::receive`], from a `sender` the layer can check claims against: what the
    /// agent would act on in a neighbour's name is refused when it cannot have come from it.
    fn receive_from(
        &self,
        encoded: Bytes,
        sender: &dyn Sender,
    ) -> impl Future<Output = Result<Reception, SinkError>> + Send;

    /// Starts receiving a bundle whose bytes arrive in pieces.
    fn begin_receive(&self) -> impl Future<Output = Result<Self::Incoming, SinkError>> + Send;

    /// The neighbour `node` is reachable through `link`.
    fn neighbour_up(
        &self,
        node: Eid,
        link: Arc<dyn ConvergenceLayer>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The neighbour `node` is no longer reachable.
    fn neighbour_down(&self, node: &Eid);
}

/// A bundle being received in pieces: nothing is stored, and nothing left behind, until
/// [`IncomingBundle::commit`] returns; dropping it abandons the bundle.
pub trait IncomingBundle: Send + 'static {
    /// The next bytes; an error means the bundle is refused and the rest is to be dropped.
    fn write(&mut self, chunk: &[u8]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// As `write`, taking the bytes of `chunk` (left empty, with a spare buffer's capacity).
    fn write_owned(&mut self, chunk: &mut Vec<u8>) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Whether this node holds, or remembers handling, the bundle; `None` until its header is in.
    fn already_held(&self) -> impl Future<Output = Result<Option<bool>, SinkError>> + Send + 'static;

    /// Completes the bundle: `Ok` means durable here.
    fn commit(self) -> impl Future<Output = Result<Reception, SinkError>> + Send;
}

/// Why the agent did not take what a layer handed it, in the terms a layer acts on: the
/// [`Refusal`] it gives its peer, and a message for its log. Layers see this, not the agent's
/// own error type (whose API-only cases are none of theirs). A bundle this node already holds
/// or handled is no error: it is `Ok` ([`Reception::Duplicate`], [`Reception::AlreadyHandled`])
/// and acknowledged like any other.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SinkError(AgentError);

impl SinkError {
    /// What the layer tells its peer: no room (the store is full or failing: the peer may
    /// try again) or not acceptable (the bundle is invalid, unwanted, or not the sender's to
    /// send).
    pub fn refusal(&self) -> Refusal {
        match &self.0 {
            AgentError::Store(StoreError::InvalidBundle(_)) => Refusal::NotAcceptable,
            AgentError::Store(_) => Refusal::NoResources,
            AgentError::Invalid(_)
            | AgentError::PayloadLength(_)
            | AgentError::NotLocal { .. }
            | AgentError::ForeignSource { .. }
            | AgentError::AlreadyHandled(_)
            | AgentError::Impostor { .. } => Refusal::NotAcceptable,
        }
    }

    /// A bundle that does not decode or violates RFC 9171 (as a layer finds it itself).
    pub fn invalid(error: BundleError) -> SinkError {
        SinkError(AgentError::Invalid(error))
    }

    /// The store failed or is full.
    pub fn store(error: StoreError) -> SinkError {
        SinkError(AgentError::Store(error))
    }
}

impl From<AgentError> for SinkError {
    fn from(error: AgentError) -> SinkError {
        SinkError(error)
    }
}

impl<S: Store> BundleSink for Agent<S> {
    type Incoming = PendingReceive<S>;

    fn node_id(&self) -> &Eid {
        Agent::node_id(self)
    }
    async fn receive(&self, encoded: Bytes) -> Result<Reception, SinkError> {
        Ok(Agent::receive(self, encoded).await?)
    }
    fn receive_from(
        &self,
        encoded: Bytes,
        sender: &dyn Sender,
    ) -> impl Future<Output = Result<Reception, SinkError>> + Send {
        let received = Agent::receive_from(self, encoded, Some(sender));
        async move { Ok(received.await?) }
    }
    async fn begin_receive(&self) -> Result<PendingReceive<S>, SinkError> {
        Ok(Agent::begin_receive(self).await?)
    }
    async fn neighbour_up(&self, node: Eid, link: Arc<dyn ConvergenceLayer>) -> Result<(), SinkError> {
        Ok(Agent::neighbour_up(self, node, link).await?)
    }
    fn neighbour_down(&self, node: &Eid) {
        Agent::neighbour_down(self, node)
    }
}

impl<S: Store> IncomingBundle for PendingReceive<S> {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        Ok(PendingReceive::write(self, chunk).await?)
    }
    async fn write_owned(&mut self, chunk: &mut Vec<u8>) -> Result<(), SinkError> {
        Ok(PendingReceive::write_owned(self, chunk).await?)
    }
    fn already_held(&self) -> impl Future<Output = Result<Option<bool>, SinkError>> + Send + 'static {
        let held = PendingReceive::already_held(self);
        async move { Ok(held.await?) }
    }
    async fn commit(self) -> Result<Reception, SinkError> {
        Ok(PendingReceive::commit(self).await?)
    }
}
