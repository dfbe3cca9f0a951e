//! Bundles applications send (RFC 9171 §5.2 "bundle transmission"), whole or with a payload that
//! streams in: a large payload goes from the application straight into the store, its CRC
//! computed on the way, so sending a bundle of any size takes a few buffers of memory
//! (design §3.4).

use bytes::Bytes;

use crate::bundle::{BundleBuilder, BundleFlags, BundleHeader, BundleId, Eid, PayloadEncoder};
use crate::store::{BundleState, CustodyIntake, InsertOutcome, Store, StoreId, StreamingInsert};

use super::counters::Counters;
use super::node::{Agent, AgentError};

/// What an application asks for when it sends a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// A local endpoint, or `dtn:none` for an anonymous bundle.
    pub source: Eid,
    /// Where the bundle goes.
    pub destination: Eid,
    /// How long it lives after its creation, in milliseconds.
    pub lifetime_ms: u64,
    /// Bundle processing control flags chosen by the application (RFC 9171 §4.2.3).
    pub flags: BundleFlags,
    /// Custody transfer hop by hop: this node becomes the bundle's first custodian
    /// (docs/custody.md).
    pub custody: bool,
}

/// A bundle being sent whose payload arrives in chunks ([`Agent::begin_send`]). Nothing is
/// stored, and nothing is left behind, until [`PendingSend::commit`] returns; dropping it
/// abandons the bundle.
#[derive(Debug)]
pub struct PendingSend<S: Store> {
    agent: Agent<S>,
    insert: S::Pending,
    encoder: PayloadEncoder,
    header: BundleHeader,
    custody: Option<CustodyIntake>,
}

impl<S: Store> Agent<S> {
    /// A new bundle from a local application (RFC 9171 §5.2), durable when this returns.
    pub async fn send(
        &self,
        source: Eid,
        destination: Eid,
        payload: Bytes,
        lifetime_ms: u64,
        flags: BundleFlags,
    ) -> Result<StoreId, AgentError> {
        let request = SendRequest { source, destination, lifetime_ms, flags, custody: false };
        Ok(self.send_whole(request, payload).await?.0)
    }

    /// Starts sending a bundle whose payload of `payload_length` bytes comes in chunks through
    /// [`PendingSend::write`]. Refuses at once what [`Agent::send`] would refuse.
    pub async fn begin_send(
        &self,
        request: SendRequest,
        payload_length: u64,
    ) -> Result<PendingSend<S>, AgentError> {
        let builder = self.builder_for(&request)?;
        let (head, encoder) = builder.build_streamed(payload_length)?;
        let header = BundleHeader::parse(&head.clone().into(), &self.inner.config.parse)?
            .ok_or(AgentError::Invalid(crate::bundle::BundleError::HeaderTooLarge { limit: head.len() }))?;
        let mut insert = self.inner.store.begin_insert().await?;
        insert.write(&head).await?;
        let custody = self.custody_for(&request);
        Ok(PendingSend { agent: self.clone(), insert, encoder, header, custody })
    }

    /// Sends a bundle whose whole payload is in memory; answers once it is durable.
    pub async fn send_whole(
        &self,
        request: SendRequest,
        payload: Bytes,
    ) -> Result<(StoreId, BundleId), AgentError> {
        let bundle = self.builder_for(&request)?.payload(payload).build()?;
        let bundle_id = bundle.id();
        Ok((self.originate_with(bundle, self.custody_for(&request)).await?, bundle_id))
    }

    /// Whether this node takes an application's bundle into custody: the application asked,
    /// or the node's policy covers the destination.
    fn custody_for(&self, request: &SendRequest) -> Option<CustodyIntake> {
        if request.custody && !self.is_local(&request.destination) {
            return Some(CustodyIntake { from: None });
        }
        self.policy_intake(&request.destination)
    }

    /// The builder for an application's bundle, after checking the source is this node's.
    pub(super) fn builder_for(&self, request: &SendRequest) -> Result<BundleBuilder, AgentError> {
        let source = &request.source;
        if !source.is_null() && !self.is_local(source) {
            return Err(AgentError::ForeignSource {
                from: source.clone(),
                node: self.inner.config.node_id.clone(),
            });
        }
        Ok(BundleBuilder::new(
            source.clone(),
            request.destination.clone(),
            self.next_timestamp(),
            request.lifetime_ms,
        )
        .report_to(self.inner.config.node_id.clone())
        .flags(request.flags))
    }
}

impl<S: Store> PendingSend<S> {
    /// Payload bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.encoder.remaining()
    }

    /// Takes the next payload bytes; refuses bytes beyond the declared length.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), AgentError> {
        self.encoder.update(chunk)?;
        self.insert.write(chunk).await?;
        Ok(())
    }

    /// Completes the bundle, makes it durable and dispatches it. Refuses a payload shorter than
    /// declared. Answers only once the bundle is on disk.
    pub async fn commit(self) -> Result<(StoreId, BundleId), AgentError> {
        let PendingSend { agent, mut insert, encoder, header, custody } = self;
        let tail = encoder.finish()?;
        insert.write(&tail).await?;
        let id = match insert.commit_with(BundleState::WaitingForRoute, custody).await? {
            InsertOutcome::Stored(id) | InsertOutcome::Duplicate(id) => id,
            InsertOutcome::AlreadyHandled => return Err(AgentError::AlreadyHandled(header.id())),
        };
        Counters::bump(&agent.inner.counters.originated);
        agent.dispatch_stored(id, &header.primary).await;
        Ok((id, header.id()))
    }
}
