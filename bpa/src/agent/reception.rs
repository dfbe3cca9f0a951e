//! Reception from convergence layers (RFC 9171 §5.6): a bundle received whole or in pieces
//! streamed into the store, checked against the agent's parse policy, stored durably (so the
//! layer may acknowledge it), reported if asked, and dispatched.

use std::future::Future;

use bytes::Bytes;

use super::core::report::Status;
use super::counters::Counters;
use super::node::{Agent, AgentError, Reception};
use crate::admin::ReasonCode;
use crate::bundle::{Bundle, BundleError};
use crate::cla::Sender;
use crate::store::{BundleState, InsertOutcome, StateKind, Store, StreamingInsert};

impl<S: Store> Agent<S> {
    /// A bundle from a convergence layer (RFC 9171 §5.6). `Ok` means it is durable here: the
    /// layer may acknowledge it to the sender.
    pub async fn receive(&self, encoded: Bytes) -> Result<Reception, AgentError> {
        self.receive_from(encoded, None).await
    }

    /// As [`Agent::receive`], from a `sender` the layer can check claims against
    /// ([`Sender`]): an administrative record for this node — whole or a fragment of one, since
    /// a reassembled record is acted on too — in the name of a node that cannot have sent it
    /// is refused ([`AgentError::Impostor`]), counted and logged (rate-limited).
    pub async fn receive_from(
        &self,
        encoded: Bytes,
        sender: Option<&dyn Sender>,
    ) -> Result<Reception, AgentError> {
        let counters = &self.inner.counters;
        let mut bundle = Bundle::parse(&encoded, &self.inner.config.parse)
            .map_err(AgentError::Invalid)
            .inspect_err(|error| self.log_refusal(error))?;
        if let Some(sender) = sender {
            self.check_sender(bundle.primary(), sender)?;
        }
        // Liberal in, strict out (design §3.6): extension blocks numbered 0 or twice (ION's
        // fragments), taken under `[accept] duplicate_block_numbers`, are given numbers of their
        // own, so the bundle is stored and forwarded as RFC 9171 §4.1 requires.
        let encoded = if bundle.block_numbers_clash() {
            bundle.renumber_blocks();
            Counters::bump(&counters.renumbered);
            Bytes::from(bundle.encode())
        } else {
            encoded
        };
        if let Some(taken) = self.take_custody_record(&bundle).await {
            return taken;
        }
        let state = self.initial_state(bundle.primary());
        let recorded = state.kind() == StateKind::WaitingForApplication;
        let intake = self.policy_intake(&bundle.primary().destination);
        match self.inner.store.insert_with(encoded, state, intake).await? {
            InsertOutcome::Duplicate(id) => {
                Counters::bump(&counters.duplicates);
                Ok(Reception::Duplicate(id))
            }
            InsertOutcome::AlreadyHandled => {
                Counters::bump(&counters.duplicates);
                tracing::debug!(bundle = %bundle.id(), "a bundle already delivered or forwarded arrived again");
                Ok(Reception::AlreadyHandled)
            }
            InsertOutcome::Stored(id) => {
                Counters::bump(&counters.received);
                self.report(
                    bundle.primary(),
                    bundle.payload().len() as u64,
                    Status::Received,
                    ReasonCode::NO_ADDITIONAL_INFORMATION,
                )
                .await;
                let primary = bundle.primary().clone();
                self.dispatch_with(id, &primary, Some(bundle), recorded).await;
                Ok(Reception::Accepted(id))
            }
        }
    }
}

impl<S: Store> Agent<S> {
    /// Refuses a record for this node in the name of a node `sender` cannot speak for.
    fn check_sender(
        &self,
        primary: &crate::bundle::PrimaryBlock,
        sender: &dyn Sender,
    ) -> Result<(), AgentError> {
        if !primary.flags.is_admin_record() || primary.destination.node_id() != self.inner.config.node_id {
            return Ok(());
        }
        let claimed = primary.source.node_id();
        if sender.may_speak_for(&claimed) {
            return Ok(());
        }
        Counters::bump(&self.inner.counters.impostors);
        Counters::bump(&self.inner.counters.refused);
        let error = AgentError::Impostor { claimed, sender: sender.describe() };
        if let Some(suppressed) = self.provoked(super::provoked::Provoked::Impostor) {
            tracing::warn!(error = %crate::log::Escaped(&error), earlier_of_this_kind_not_logged = suppressed, "a bundle was refused");
        }
        Err(error)
    }
}

/// A bundle arriving from a convergence layer in pieces ([`Agent::begin_receive`]): the pieces
/// go straight to the store, checked as they stream, so receiving a bundle of any size takes a
/// few buffers of memory. Nothing is stored, and nothing left behind, until
/// [`PendingReceive::commit`] returns; dropping it abandons the bundle.
///
/// A BIBE carrier for this node is told apart by its first bytes: its payload (the bundle
/// inside) goes to the store instead of the carrier, which is checked as it passes but never
/// stored — a custodial bundle of any size is written once at each hop (docs/custody.md).
#[derive(Debug)]
pub struct PendingReceive<S: Store> {
    agent: Agent<S>,
    insert: S::Pending,
    /// The header has been checked against the agent's parse policy.
    policy_checked: bool,
    arriving: Arriving,
}

/// Where the bytes of a bundle being received go.
#[derive(Debug)]
enum Arriving {
    /// The first bytes, kept (fewer than `SNIFF_MAX`, custody/carrier.rs) until its header says
    /// whether the bundle is a BIBE carrier for this node.
    Sniffing(Vec<u8>),
    /// To the store, as they come.
    Stored,
    /// A carrier: the bundle inside goes to the store.
    Decapsulating(Box<super::custody::Decapsulation>),
}

impl<S: Store> Agent<S> {
    /// Starts receiving a bundle whose bytes arrive in pieces (RFC 9171 §5.6).
    pub async fn begin_receive(&self) -> Result<PendingReceive<S>, AgentError> {
        Ok(PendingReceive {
            agent: self.clone(),
            insert: self.inner.store.begin_insert().await?,
            policy_checked: false,
            arriving: Arriving::Sniffing(Vec::new()),
        })
    }
}

impl<S: Store> PendingReceive<S> {
    /// The next bytes of the bundle; an error means the bundle is refused (invalid, too large,
    /// or the store failed) and the rest of it is to be dropped.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), AgentError> {
        match &mut self.arriving {
            Arriving::Stored => {
                self.insert
                    .write(chunk)
                    .await
                    .inspect_err(|_| Counters::bump(&self.agent.inner.counters.refused))?;
            }
            Arriving::Sniffing(kept) => {
                // Most bundles say what they are in their first chunk, looked at where it is;
                // only a header cut across chunks is gathered first.
                let gathered = (!kept.is_empty()).then(|| {
                    kept.extend_from_slice(chunk);
                    std::mem::take(kept)
                });
                self.sniff(gathered.as_deref().unwrap_or(chunk)).await?;
            }
            Arriving::Decapsulating(carrier) => {
                let inner = carrier.take(chunk).map_err(|error| self.agent.carrier_refused(error))?;
                self.write_inner(inner).await?;
            }
        }
        self.check_policy()
    }

    /// Decides from `seen` (the bundle's first bytes) whether it is a carrier for this node,
    /// and sends them on accordingly; keeps them while that cannot be told yet.
    async fn sniff(&mut self, seen: &[u8]) -> Result<(), AgentError> {
        match self.agent.sniff_carrier(seen) {
            super::custody::Sniffed::NeedMore => {
                // Shorter than SNIFF_MAX: the header is not all here yet.
                self.arriving = Arriving::Sniffing(seen.to_vec());
                Ok(())
            }
            super::custody::Sniffed::Plain => {
                self.arriving = Arriving::Stored;
                self.insert
                    .write(seen)
                    .await
                    .inspect_err(|_| Counters::bump(&self.agent.inner.counters.refused))?;
                Ok(())
            }
            super::custody::Sniffed::Carrier(mut carrier) => {
                let inner = carrier.start(seen).map_err(|error| self.agent.carrier_refused(error))?;
                self.arriving = Arriving::Decapsulating(carrier);
                self.write_inner(inner).await
            }
        }
    }

    /// Bytes of the bundle inside a carrier, to the store.
    async fn write_inner(&mut self, inner: &[u8]) -> Result<(), AgentError> {
        if inner.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.insert.write(inner).await {
            Counters::bump(&self.agent.inner.counters.refused);
            if let Arriving::Decapsulating(carrier) = &self.arriving {
                self.agent.carrier_failed(carrier, &error).await;
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// The agent's parse policy (its `[accept]` switches), the same for bundles received whole
    /// ([`Agent::receive`]) and in pieces: the store indexes what it is given leniently, so
    /// the leniencies are checked here once the header is in.
    fn check_policy(&mut self) -> Result<(), AgentError> {
        if self.policy_checked {
            return Ok(());
        }
        let Some(header) = self.insert.header() else { return Ok(()) };
        self.policy_checked = true;
        let options = &self.agent.inner.config.parse;
        let refusal = if header.primary_crc_missing() && !options.accept_primary_without_crc {
            Some(BundleError::MissingPrimaryCrc)
        } else if header.bundle_age_missing() && !options.accept_missing_bundle_age {
            Some(BundleError::MissingBundleAge)
        } else {
            None
        };
        match refusal {
            Some(error) => {
                let error = AgentError::Invalid(error);
                self.agent.log_refusal(&error);
                Err(error)
            }
            None => Ok(()),
        }
    }

    /// As [`PendingReceive::write`], taking the bytes of `chunk` rather than copying them:
    /// `chunk` comes back empty, with the capacity of a buffer written earlier.
    pub async fn write_owned(&mut self, chunk: &mut Vec<u8>) -> Result<(), AgentError> {
        if !matches!(self.arriving, Arriving::Stored) {
            let result = self.write(chunk).await;
            chunk.clear();
            return result;
        }
        self.insert
            .write_owned(chunk)
            .await
            .inspect_err(|_| Counters::bump(&self.agent.inner.counters.refused))?;
        self.check_policy()
    }

    /// Whether this node already holds the bundle being received, or delivered or forwarded it
    /// and still remembers it; `None` until its header has arrived. A layer can then refuse the rest at once (TCPCL's XFER_REFUSE "completed",
    /// RFC 9174 §5.2.4) rather than receive it all to find a duplicate at the commit.
    pub fn already_held(&self) -> impl Future<Output = Result<Option<bool>, AgentError>> + Send + 'static {
        // Nothing of `self` is held across the look-up (a pending insert need not be `Sync`).
        // A carrier is never held (each is new); the bundle inside, if it is, is answered
        // "redundant" at the commit, which a refusal of the transfer would keep from happening.
        let id = match self.arriving {
            Arriving::Stored => self.insert.header().map(|header| header.id()),
            Arriving::Sniffing(_) | Arriving::Decapsulating(_) => None,
        };
        let carrier = matches!(self.arriving, Arriving::Decapsulating(_));
        let store = self.agent.inner.store.clone();
        async move {
            if carrier {
                return Ok(Some(false));
            }
            let Some(id) = id else { return Ok(None) };
            Ok(Some(store.known(&id).await?))
        }
    }

    /// The bundle is complete: it is checked to its end, made durable and dispatched. `Ok`
    /// means it is durable here and the layer may acknowledge it to the sender.
    pub async fn commit(self) -> Result<Reception, AgentError> {
        let PendingReceive { agent, insert, arriving, .. } = self;
        match arriving {
            Arriving::Stored => {}
            // Never long enough to decide: the whole bundle is here, in memory.
            Arriving::Sniffing(kept) => return agent.receive(Bytes::from(kept)).await,
            Arriving::Decapsulating(carrier) => return agent.finish_carrier(*carrier, insert).await,
        }
        let header = insert.header().cloned();
        let counters = &agent.inner.counters;
        let state = header.as_ref().map_or(BundleState::WaitingForRoute, |h| agent.initial_state(&h.primary));
        let recorded = state.kind() == StateKind::WaitingForApplication;
        let intake = header.as_ref().and_then(|h| agent.policy_intake(&h.primary.destination));
        let outcome =
            insert.commit_with(state, intake).await.inspect_err(|error| agent.log_store_refusal(error))?;
        match (outcome, header) {
            (InsertOutcome::Duplicate(id), _) => {
                Counters::bump(&counters.duplicates);
                Ok(Reception::Duplicate(id))
            }
            (InsertOutcome::AlreadyHandled, _) => {
                Counters::bump(&counters.duplicates);
                Ok(Reception::AlreadyHandled)
            }
            (InsertOutcome::Stored(id), Some(header)) => {
                Counters::bump(&counters.received);
                let payload_len = header.payload.data_length;
                agent
                    .report(
                        &header.primary,
                        payload_len,
                        Status::Received,
                        ReasonCode::NO_ADDITIONAL_INFORMATION,
                    )
                    .await;
                agent.dispatch_with(id, &header.primary, None, recorded).await;
                Ok(Reception::Accepted(id))
            }
            // A committed insert has parsed its header; should that ever not hold, the bundle is
            // durable and is dispatched at the next start.
            (InsertOutcome::Stored(id), None) => Ok(Reception::Accepted(id)),
        }
    }
}
