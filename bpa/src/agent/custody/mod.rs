//! Custody transfer, hop by hop (BIBE custody after draft-ietf-dtn-bibect; design §4).
//!
//! A bundle this node holds as custodian (an application asked for custody, the node's policy
//! covers its destination, or it arrived under custody) goes to the next node inside a BIBE
//! PDU — an administrative record `[transmission ID, retransmission time, bundle]` in a
//! carrier bundle from this node to the neighbour — and stays in the store, awaiting custody,
//! until the neighbour's custody signal releases it ("accepted" or "redundant"). A refusal
//! puts it back to wait for a route (tried again after the neighbour's retry delay); a
//! deadline passed without a signal sends it again under a new transmission ID, with the wait
//! doubled each time up to a cap.
//!
//! A node receiving a PDU with a transmission ID stores the encapsulated bundle as its
//! custodian and, in the same transaction, queues the answer ("accepted"; "redundant" for a
//! bundle it holds or handled already; "depleted storage" when it has no room). Answers are
//! sent in batches: after a short delay, or at once when many are waiting, one signal per
//! custodian and disposition, each a few ranges of IDs ([`crate::admin::CustodySignal`]).
//!
//! Everything custody remembers is in the store ([`crate::store::CustodyIntake`] and the
//! writer's custody operations), and its two timers — the earliest retransmission deadline and
//! the signal batch — are on the agent's timer table, on its clock.

pub(crate) mod carrier;
pub(crate) mod policy;

pub(crate) use carrier::{Carrier, Decapsulation, PDU_PREFIX_MAX, Sniffed};
pub use policy::{CustodyPeer, CustodyPolicy, PeerCustody, RetransmissionTime};

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::core::Timer;
use super::counters::Counters;
use super::node::{Agent, AgentError, Reception, millis};
use crate::admin::{AdminRecord, BibePdu, BibePduHead, CustodyDisposition, CustodySignal};
use crate::bundle::{Bundle, BundleBuilder, BundleFlags, CrcType, Eid, PrimaryBlock};
use crate::store::{
    CustodyIntake, CustodyTiming, InsertOutcome, PayloadContent, SignalEffect, StateKind, Store, StoreError,
    StreamingInsert,
};

/// Transmission IDs answered per signal bundle at most (each a range of one or more).
const RANGES_PER_SIGNAL: usize = 1024;

/// Answers read from the store per batch.
const SIGNAL_PAGE: usize = 16_384;

/// Expired transmissions put back per store operation.
const EXPIRE_PAGE: usize = 1024;

/// Largest stored administrative record read whole to see whether it is a custody signal.
const MAX_STORED_SIGNAL: u64 = 1 << 20;

impl<S: Store> Agent<S> {
    /// Tells from the first bytes of a bundle arriving in pieces whether it is a BIBE carrier
    /// for this node that it can take apart as it streams ([`carrier::sniff`]).
    pub(super) fn sniff_carrier(&self, kept: &[u8]) -> Sniffed {
        let policy = self.custody_policy();
        carrier::sniff(kept, &self.inner.config.node_id, &self.inner.config.parse, |from| {
            policy.record_types_for(from)
        })
    }

    /// The bundle inside a carrier could not be stored (`error`): a custodian is told why
    /// when the store can say (no room, an invalid bundle); the layer refuses the carrier.
    pub(super) async fn carrier_failed(&self, carrier: &Decapsulation, error: &StoreError) {
        if carrier.tid == 0 {
            return;
        }
        let why = match error {
            StoreError::DepletedStorage { .. } => CustodyDisposition::DEPLETED_STORAGE,
            StoreError::InvalidBundle(_) => CustodyDisposition::BLOCK_UNINTELLIGIBLE,
            _ => return,
        };
        if let Err(error) = self.refuse_custody(&carrier.from, carrier.tid, why).await {
            tracing::warn!(%error, custodian = %carrier.from, "a custody refusal could not be queued");
        }
    }

    /// The whole carrier has passed: checked to its end; the bundle inside is taken (custody
    /// and all) as [`Agent::decapsulate`] takes one from a PDU in memory.
    pub(super) async fn finish_carrier(
        &self,
        carrier: Decapsulation,
        insert: S::Pending,
    ) -> Result<Reception, AgentError> {
        let Decapsulation { from, tid, inner_len, check, .. } = carrier;
        if let Err(error) = check.finish() {
            return Err(self.carrier_refused(error));
        }
        let header = insert.header().cloned();
        if tid != 0
            && let Some(why) = header.as_ref().and_then(|h| self.unroutable(&h.primary, inner_len))
        {
            drop(insert); // nothing of it stays
            self.log_custody_refused(&from.to_string(), tid, why, None);
            self.refuse_custody(&from, tid, why).await?;
            return Ok(Reception::Consumed);
        }
        let destination = header.as_ref().map(|h| h.primary.destination.clone()).unwrap_or(Eid::Null);
        let intake = self.pdu_intake(&from, tid, &destination);
        let asked = intake.as_ref().is_some_and(|i| i.from.is_some());
        let state = header
            .as_ref()
            .map_or(crate::store::BundleState::WaitingForRoute, |h| self.initial_state(&h.primary));
        let recorded = state.kind() == StateKind::WaitingForApplication;
        let outcome = insert.commit_with(state, intake).await;
        if let Err(StoreError::InvalidBundle(error)) = &outcome {
            Counters::bump(&self.inner.counters.refused);
            tracing::info!(%error, custodian = %from, transmission_id = tid, "a BIBE PDU holds an invalid bundle");
            if tid != 0 {
                self.refuse_custody(&from, tid, CustodyDisposition::BLOCK_UNINTELLIGIBLE).await?;
                return Ok(Reception::Consumed);
            }
        }
        self.after_intake(outcome, asked, recorded, None, header.map(|h| h.primary)).await
    }

    pub(super) fn custody_policy(&self) -> &CustodyPolicy {
        &self.inner.config.custody
    }

    /// How a custodial transmission to `hop` is timed, or `None` when bundles to it do not go
    /// under custody.
    pub(super) fn custody_timing(&self, hop: &Eid) -> Option<CustodyTiming> {
        let policy = self.custody_policy();
        let mode = policy.mode_for(hop);
        if mode == PeerCustody::Never {
            return None;
        }
        let now = self.inner.clock.now_dtn_ms();
        let configured = policy.peer(hop).and_then(|p| p.round_trip).map(millis);
        let planned = || {
            let router = self.state().core.reach.contacts.clone()?;
            let graph = router.graph();
            let plan = graph.plan();
            let local = router.local()?;
            let there = plan.find(&super::core::routing::plan_name(hop)?)?;
            let owlt = plan.owlt(local, there, now)?;
            Some(owlt.saturating_mul(2).saturating_add(millis(policy.signal_delay)))
        };
        let round_trip = configured.or_else(planned).unwrap_or_else(|| millis(policy.round_trip));
        let min = millis(policy.retransmit_min);
        let max = millis(policy.retransmit_max).max(min);
        Some(CustodyTiming {
            now,
            round_trip_ms: round_trip.clamp(min, max),
            max_ms: max,
            always: mode == PeerCustody::Always,
        })
    }

    /// The carrier that takes a bundle of `inner_len` bytes to `hop` under custody, transmission
    /// `tid`, to be answered by `deadline`; `expires_at` is the bundle's.
    pub(super) fn carrier_for(
        &self,
        hop: &Eid,
        tid: u64,
        deadline: u64,
        inner_len: u64,
        expires_at: u64,
    ) -> Carrier {
        let now = self.inner.clock.now_dtn_ms();
        let creation = self.next_timestamp();
        let primary = PrimaryBlock {
            flags: BundleFlags(BundleFlags::ADMIN_RECORD),
            crc_type: CrcType::Crc32c,
            destination: hop.node_id(),
            source: self.inner.config.node_id.clone(),
            report_to: self.inner.config.node_id.clone(),
            creation,
            // Twice the wait for its signal (after which a new carrier goes: fragments of this
            // one left behind at the neighbour need not outlive that), never past the bundle
            // inside, and a second at least.
            lifetime: deadline
                .saturating_sub(now)
                .saturating_mul(2)
                .min(expires_at.saturating_sub(now))
                .max(1000),
            fragment: None,
        };
        let policy = self.custody_policy();
        let types = policy.record_types_for(hop);
        let written = policy.retransmission_time_for(hop).encode(now, deadline);
        Carrier::new(&primary, types.bibe_pdu, (tid, written), inner_len)
    }

    /// A custodial transmission is out: its deadline joins the timer table.
    pub(super) fn custody_sent(&self, deadline: u64) {
        Counters::bump(&self.inner.counters.custody_sent);
        self.arm_custody_timer(Timer::CustodyRetransmit, deadline);
    }

    /// Sets `timer` to `at` unless it is set earlier already.
    fn arm_custody_timer(&self, timer: Timer, at: u64) {
        let moved = self.state().core.arm_earliest(timer, at);
        if moved {
            self.timers_changed();
        }
    }

    /// Answers queued: the signal batch goes after the delay, or at once when it is full.
    fn signal_soon(&self) {
        let waiting = self.inner.signals_waiting.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.inner.clock.now_dtn_ms();
        let policy = self.custody_policy();
        let at = if waiting >= policy.signal_batch as u64 { now } else { now + millis(policy.signal_delay) };
        self.arm_custody_timer(Timer::CustodySignals, at);
    }

    /// Whether a bundle received whole is a custody record for this node (a BIBE PDU or a
    /// custody signal to its administrative endpoint) and, if so, what taking it did.
    pub(super) async fn take_custody_record(&self, bundle: &Bundle) -> Option<Result<Reception, AgentError>> {
        let primary = bundle.primary();
        if !primary.flags.is_admin_record() || primary.destination != self.inner.config.node_id {
            return None;
        }
        if primary.fragment.is_some() {
            return None;
        }
        let from = primary.source.node_id();
        let types = self.custody_policy().record_types_for(&from);
        let payload = bundle.payload().clone();
        match AdminRecord::decode(&payload, &types) {
            Ok(AdminRecord::BibePdu(pdu)) => Some(self.decapsulate(&from, pdu).await),
            Ok(AdminRecord::CustodySignal(signal)) => Some(self.custody_signal(&from, signal).await),
            _ => None,
        }
    }

    /// Why this node refuses custody of a bundle (`primary`, `size` bytes) it has no way to
    /// forward, when `refuse_unroutable` is set; `None`: it takes it.
    fn unroutable(&self, primary: &PrimaryBlock, size: u64) -> Option<CustodyDisposition> {
        if !self.custody_policy().refuse_unroutable {
            return None;
        }
        let destination = &primary.destination;
        if self.is_local(destination) {
            return None;
        }
        let contacts = {
            let state = self.state();
            if state.core.reach.routes_without_plan(destination) {
                return None;
            }
            state.core.reach.contacts.clone()
        };
        let Some(contacts) = contacts else { return Some(CustodyDisposition::NO_ROUTE) };
        let now = self.inner.clock.now_dtn_ms();
        let expiry = primary.expiry(now);
        use routing::Router as _;
        let request =
            routing::RouteRequest { destination, size, expiry, previous_hop: None, critical: false, now };
        if !contacts.route(&request).is_empty() {
            return None;
        }
        let planned = super::core::routing::plan_name(destination)
            .is_some_and(|name| contacts.graph().plan().find(&name).is_some());
        Some(if planned { CustodyDisposition::NO_TIMELY_CONTACT } else { CustodyDisposition::NO_ROUTE })
    }

    /// The intake for a bundle arriving in a PDU from `from` with transmission ID `tid` (0: no
    /// custody asked, so only this node's policy can make it custodial).
    fn pdu_intake(&self, from: &Eid, tid: u64, destination: &Eid) -> Option<CustodyIntake> {
        match tid {
            0 => self.policy_intake(destination),
            tid => Some(CustodyIntake { from: Some((from.to_string(), tid)) }),
        }
    }

    /// The intake for a bundle this node takes into custody by its own policy (`[custody]
    /// destinations`), not for one of its own endpoints.
    pub(super) fn policy_intake(&self, destination: &Eid) -> Option<CustodyIntake> {
        (self.custody_policy().covers(destination) && !self.is_local(destination))
            .then_some(CustodyIntake { from: None })
    }

    /// A BIBE PDU from `from`, in memory: the bundle inside is received as if it had come
    /// alone, and taken into custody if the PDU asks.
    async fn decapsulate(&self, from: &Eid, pdu: BibePdu) -> Result<Reception, AgentError> {
        let counters = &self.inner.counters;
        let tid = pdu.transmission_id;
        let inner = match Bundle::parse(&pdu.bundle, &self.inner.config.parse) {
            Ok(inner) => inner,
            Err(error) => {
                Counters::bump(&counters.refused);
                if let Some(suppressed) = self.provoked(super::provoked::Provoked::InvalidPdu) {
                    tracing::info!(error = %crate::log::Escaped(&error), custodian = %from, transmission_id = tid, earlier_of_this_kind_not_logged = suppressed, "a BIBE PDU holds an invalid bundle");
                }
                if tid != 0 {
                    self.refuse_custody(from, tid, CustodyDisposition::BLOCK_UNINTELLIGIBLE).await?;
                    return Ok(Reception::Consumed);
                }
                return Err(error.into());
            }
        };
        if tid != 0
            && let Some(why) = self.unroutable(inner.primary(), pdu.bundle.len() as u64)
        {
            self.log_custody_refused(&from.to_string(), tid, why, Some(&inner.primary().destination));
            self.refuse_custody(from, tid, why).await?;
            return Ok(Reception::Consumed);
        }
        let intake = self.pdu_intake(from, tid, &inner.primary().destination);
        let asked = intake.as_ref().is_some_and(|i| i.from.is_some());
        let state = self.initial_state(inner.primary());
        let recorded = state.kind() == StateKind::WaitingForApplication;
        let outcome = self.inner.store.insert_with(pdu.bundle.clone(), state, intake).await;
        self.after_intake(outcome, asked, recorded, Some(inner), None).await
    }

    /// The payload (`content`, `len` bytes) of a stored administrative record for this node from
    /// `from`: a BIBE PDU's bundle is streamed into the store and received (memory stays at one
    /// buffer whatever its size); a custody signal is acted on. Returns whether it was either.
    pub(super) async fn take_stored_record(
        &self,
        from: &Eid,
        content: PayloadContent,
        len: u64,
    ) -> Result<bool, AgentError> {
        let types = self.custody_policy().record_types_for(from);
        let mut reader: std::pin::Pin<Box<dyn AsyncRead + Send>> = match content {
            PayloadContent::Memory(bytes) => Box::pin(std::io::Cursor::new(bytes)),
            PayloadContent::File(file) => Box::pin(file),
        };
        let mut prefix = vec![0u8; PDU_PREFIX_MAX.min(usize::try_from(len).unwrap_or(usize::MAX))];
        let io = |error: std::io::Error| StoreError::Io {
            action: "reading",
            path: "a stored BIBE PDU".into(),
            source: error,
        };
        reader.read_exact(&mut prefix).await.map_err(io)?;
        let (tid, inner_len, at) = match BibePduHead::decode(&prefix, &types) {
            Ok(Some(head)) => (head.transmission_id, head.bundle_length, head.bundle_offset),
            Ok(None) if len <= MAX_STORED_SIGNAL => {
                let mut whole = prefix;
                reader.read_to_end(&mut whole).await.map_err(io)?;
                return match AdminRecord::decode(&Bytes::from(whole), &types) {
                    Ok(AdminRecord::CustodySignal(signal)) => {
                        self.custody_signal(from, signal).await.map(|_| true)
                    }
                    _ => Ok(false),
                };
            }
            Ok(None) => return Ok(false),
            Err(error) => {
                tracing::info!(custodian = %from, %error, "a malformed BIBE PDU was dropped");
                return Ok(true);
            }
        };
        if (at as u64).saturating_add(inner_len) != len {
            tracing::info!(custodian = %from, "a BIBE PDU's bundle does not fill its record; dropped");
            if tid != 0 {
                self.refuse_custody(from, tid, CustodyDisposition::BLOCK_UNINTELLIGIBLE).await?;
            }
            return Ok(true);
        }
        let mut insert = self.inner.store.begin_insert().await?;
        let mut written = prefix.len() - at;
        let mut failed = insert.write(&prefix[at..]).await.err();
        let mut buffer = vec![0u8; 64 * 1024];
        while failed.is_none() && (written as u64) < inner_len {
            let want = buffer.len().min(usize::try_from(inner_len - written as u64).unwrap_or(usize::MAX));
            let n = reader.read(&mut buffer[..want]).await.map_err(io)?;
            if n == 0 {
                break;
            }
            failed = insert.write(&buffer[..n]).await.err();
            written += n;
        }
        let header = insert.header().cloned();
        if failed.is_none()
            && tid != 0
            && let Some(why) = header.as_ref().and_then(|h| self.unroutable(&h.primary, inner_len))
        {
            drop(insert); // nothing of it stays
            self.log_custody_refused(&from.to_string(), tid, why, None);
            self.refuse_custody(from, tid, why).await?;
            return Ok(true);
        }
        let destination = header.as_ref().map(|h| h.primary.destination.clone()).unwrap_or(Eid::Null);
        let intake = self.pdu_intake(from, tid, &destination);
        let asked = intake.as_ref().is_some_and(|i| i.from.is_some());
        let outcome = match failed {
            Some(StoreError::InvalidBundle(error)) => Err(StoreError::InvalidBundle(error)),
            Some(error) => Err(error),
            None => {
                let state = header
                    .as_ref()
                    .map_or(crate::store::BundleState::WaitingForRoute, |h| self.initial_state(&h.primary));
                insert.commit_with(state, intake).await
            }
        };
        if let Err(StoreError::InvalidBundle(error)) = &outcome {
            tracing::info!(%error, custodian = %from, transmission_id = tid, "a BIBE PDU holds an invalid bundle");
            if tid != 0 {
                self.refuse_custody(from, tid, CustodyDisposition::BLOCK_UNINTELLIGIBLE).await?;
            }
            return Ok(true);
        }
        if let Err(StoreError::DepletedStorage { .. }) = &outcome
            && tid != 0
        {
            self.refuse_custody(from, tid, CustodyDisposition::DEPLETED_STORAGE).await?;
        }
        let recorded = header
            .as_ref()
            .is_some_and(|h| self.initial_state(&h.primary).kind() == StateKind::WaitingForApplication);
        self.after_intake(outcome, asked, recorded, None, header.map(|h| h.primary)).await.map(|_| true)
    }

    /// What follows storing a decapsulated bundle: counters, the answer's timer, reception
    /// reports and dispatch, as for any received bundle.
    async fn after_intake(
        &self,
        outcome: Result<InsertOutcome, StoreError>,
        custody_asked: bool,
        recorded: bool,
        bundle: Option<Bundle>,
        primary: Option<PrimaryBlock>,
    ) -> Result<Reception, AgentError> {
        let counters = &self.inner.counters;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(StoreError::DepletedStorage { .. }) if custody_asked => {
                // Refused by a signal, which the store queued with the refusal.
                Counters::bump(&counters.custody_refused_here);
                self.signal_soon();
                return Ok(Reception::Consumed);
            }
            Err(error) => return Err(error.into()),
        };
        if custody_asked {
            match outcome {
                InsertOutcome::Stored(_) => Counters::bump(&counters.custody_accepted),
                _ => Counters::bump(&counters.custody_redundant),
            }
            self.signal_soon();
        }
        match outcome {
            InsertOutcome::Duplicate(id) => {
                Counters::bump(&counters.duplicates);
                Ok(Reception::Duplicate(id))
            }
            InsertOutcome::AlreadyHandled => {
                Counters::bump(&counters.duplicates);
                Ok(Reception::AlreadyHandled)
            }
            InsertOutcome::Stored(id) => {
                Counters::bump(&counters.received);
                let primary = match (&bundle, primary) {
                    (Some(bundle), _) => bundle.primary().clone(),
                    (None, Some(primary)) => primary,
                    (None, None) => return Ok(Reception::Accepted(id)),
                };
                let payload_len = bundle.as_ref().map_or(0, |b| b.payload().len() as u64);
                self.report(
                    &primary,
                    payload_len,
                    super::core::report::Status::Received,
                    crate::admin::ReasonCode::NO_ADDITIONAL_INFORMATION,
                )
                .await;
                self.dispatch_boxed(id, primary, bundle, recorded).await;
                Ok(Reception::Accepted(id))
            }
        }
    }

    /// [`Agent::dispatch_with`] behind a box: dispatch may deliver locally, which may
    /// decapsulate again.
    fn dispatch_boxed(
        &self,
        id: crate::store::StoreId,
        primary: PrimaryBlock,
        bundle: Option<Bundle>,
        recorded: bool,
    ) -> super::node::BoxedFuture<'_> {
        Box::pin(async move { self.dispatch_with(id, &primary, bundle, recorded).await })
    }

    /// Logs (rate-limited: a peer provokes it) custody refused to `custodian`'s transmission.
    fn log_custody_refused(
        &self,
        custodian: &str,
        tid: u64,
        why: CustodyDisposition,
        destination: Option<&Eid>,
    ) {
        if let Some(suppressed) = self.provoked(super::provoked::Provoked::CustodyRefused) {
            tracing::info!(
                custodian,
                transmission_id = tid,
                destination = destination.map(tracing::field::display),
                refusal = why.name(),
                earlier_of_this_kind_not_logged = suppressed,
                "custody refused"
            );
        }
    }

    /// Queues a refusal to `from`'s transmission `tid`.
    async fn refuse_custody(&self, from: &Eid, tid: u64, why: CustodyDisposition) -> Result<(), AgentError> {
        self.inner.store.queue_signal(from.to_string(), tid, why.0).await?;
        Counters::bump(&self.inner.counters.custody_refused_here);
        self.signal_soon();
        Ok(())
    }

    /// A custody signal from `from`: the transmissions it names are released or refused.
    async fn custody_signal(&self, from: &Eid, signal: CustodySignal) -> Result<Reception, AgentError> {
        let counters = &self.inner.counters;
        let effect =
            if signal.disposition.releases_custody() { SignalEffect::Release } else { SignalEffect::Refuse };
        // Applied in passes of a bounded number of bundles; what a pass acted on no longer
        // matches, so each pass takes the next ones.
        let mut matched = 0u64;
        loop {
            let outcome =
                self.inner.store.custody_signalled(&from.to_string(), effect, signal.ranges.clone()).await?;
            matched += outcome.matched.len() as u64;
            if outcome.complete {
                break;
            }
        }
        let named = signal.ranges.iter().fold(0u64, |sum, &(_, count)| sum.saturating_add(count));
        let unmatched = named.saturating_sub(matched);
        match effect {
            SignalEffect::Release => {
                counters.custody_released.fetch_add(matched, Ordering::Relaxed);
            }
            SignalEffect::Refuse => {
                counters.custody_refusal(signal.disposition.0, matched);
                if matched > 0 {
                    tracing::info!(
                        neighbour = %from, disposition = signal.disposition.name(), bundles = matched,
                        "custody refused: the bundles are kept and routed again later"
                    );
                    let neighbour = self.state().link(from).cloned();
                    match neighbour {
                        Some(neighbour) => {
                            self.retry_later(from, &neighbour);
                        }
                        None => self.redispatch().await?,
                    }
                }
            }
        }
        if unmatched > 0 {
            counters.custody_signal_ids_ignored.fetch_add(unmatched, Ordering::Relaxed);
            let allowed = self.state().custody_warnings.allow(from.clone(), crate::time::monotonic_now());
            if let Some(suppressed) = allowed {
                tracing::warn!(
                    neighbour = %from, disposition = signal.disposition.name(), ids = unmatched,
                    earlier_warnings_not_logged = suppressed,
                    "a custody signal names transmissions not awaiting its sender's custody (never sent, sent elsewhere, or answered already); ignored"
                );
            }
        }
        // Counted once acted on, so a count seen means its effects are there.
        Counters::bump(&counters.custody_signals_received);
        Ok(Reception::Consumed)
    }

    /// The signal batch is due: every queued answer goes, one signal bundle per custodian and
    /// disposition (split past [`RANGES_PER_SIGNAL`] ranges), then is forgotten.
    pub(super) async fn send_signals(&self) {
        self.inner.signals_waiting.store(0, Ordering::Relaxed);
        let pending = match self.inner.store.pending_signals(SIGNAL_PAGE).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "queued custody signals cannot be read; tried again shortly");
                let at = self.inner.clock.now_dtn_ms() + millis(self.custody_policy().retransmit_min);
                self.arm_custody_timer(Timer::CustodySignals, at);
                return;
            }
        };
        let full = pending.len() == SIGNAL_PAGE;
        let mut groups: Vec<((String, u64), Vec<u64>)> = Vec::new();
        for row in pending {
            let key = (row.peer, row.disposition);
            match groups.last_mut() {
                Some((k, ids)) if *k == key => ids.push(row.transmission_id),
                _ => groups.push((key, vec![row.transmission_id])),
            }
        }
        for ((peer, disposition), ids) in groups {
            let Ok(to) = peer.parse::<Eid>() else {
                tracing::error!(%peer, "a queued custody signal names no valid node; dropped");
                let sent = ids.into_iter().map(|id| (peer.clone(), id)).collect();
                let _ = self.inner.store.signals_sent(sent).await;
                continue;
            };
            let signal = CustodySignal::for_ids(CustodyDisposition(disposition), ids.iter().copied());
            let types = self.custody_policy().record_types_for(&to);
            let mut ok = true;
            for ranges in signal.ranges.chunks(RANGES_PER_SIGNAL) {
                let record = AdminRecord::CustodySignal(CustodySignal {
                    disposition: signal.disposition,
                    ranges: ranges.to_vec(),
                });
                if let Err(error) = self.send_admin_record(&to, record.encode(&types)).await {
                    tracing::error!(%error, custodian = %to, "a custody signal could not be stored; tried again shortly");
                    ok = false;
                    break;
                }
                Counters::bump(&self.inner.counters.custody_signals_sent);
            }
            if ok {
                let sent = ids.into_iter().map(|id| (peer.clone(), id)).collect();
                if let Err(error) = self.inner.store.signals_sent(sent).await {
                    tracing::error!(%error, "answered custody transmissions could not be forgotten; answered again later");
                }
            } else {
                let at = self.inner.clock.now_dtn_ms() + millis(self.custody_policy().retransmit_min);
                self.arm_custody_timer(Timer::CustodySignals, at);
            }
        }
        if full {
            self.arm_custody_timer(Timer::CustodySignals, self.inner.clock.now_dtn_ms());
        }
    }

    /// Sends an administrative record to `to`'s administrative endpoint: straight to it when
    /// it is a neighbour now (a signal needs no room in the store, so a node whose store is
    /// full can still refuse; a signal lost on the way is made up for by the custodian's
    /// retransmission), else stored and routed like any bundle.
    async fn send_admin_record(&self, to: &Eid, payload: Vec<u8>) -> Result<(), AgentError> {
        let lifetime = millis(self.custody_policy().signal_lifetime);
        let node = &self.inner.config.node_id;
        let bundle = BundleBuilder::new(node.clone(), to.node_id(), self.next_timestamp(), lifetime)
            .flags(BundleFlags(BundleFlags::ADMIN_RECORD))
            .payload(payload)
            .build()?;
        let neighbour = self.state().link(&to.node_id()).cloned();
        if let Some(neighbour) = neighbour {
            let encoded = Bytes::from(bundle.encode());
            match neighbour.cla.send(&to.node_id(), crate::cla::OutgoingBundle::from_bytes(encoded)).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::debug!(%error, custodian = %to, "a custody signal could not go straight to its custodian; stored and routed")
                }
            }
        }
        self.originate(bundle).await.map(drop)
    }

    /// Retransmission deadlines are due: those transmissions wait for a route again (and go
    /// under a new transmission ID, after a longer wait), and the timer moves to the next.
    pub(super) async fn custody_deadlines_passed(&self) {
        let now = self.inner.clock.now_dtn_ms();
        let mut total = 0u64;
        loop {
            match self.inner.store.expire_custody(now, EXPIRE_PAGE).await {
                Ok(n) => {
                    total += n as u64;
                    if n < EXPIRE_PAGE {
                        break;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "custodial transmissions past their deadline could not be reset; tried again shortly");
                    let at = now + millis(self.custody_policy().retransmit_min);
                    self.arm_custody_timer(Timer::CustodyRetransmit, at);
                    return;
                }
            }
        }
        if total > 0 {
            self.inner.counters.custody_retransmitted.fetch_add(total, Ordering::Relaxed);
            tracing::info!(bundles = total, "no custody signal came in time: sent again");
            if let Err(error) = self.redispatch().await {
                tracing::error!(%error, "bundles to send again could not be dispatched");
            }
        }
        self.rearm_custody_deadline().await;
    }

    /// The retransmission timer at the earliest deadline in the store.
    async fn rearm_custody_deadline(&self) {
        match self.inner.store.next_custody_deadline().await {
            Ok(Some(at)) => self.arm_custody_timer(Timer::CustodyRetransmit, at),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "the next custody deadline cannot be read; looked at again shortly");
                let at = self.inner.clock.now_dtn_ms() + millis(self.custody_policy().retransmit_min);
                self.arm_custody_timer(Timer::CustodyRetransmit, at);
            }
        }
    }

    /// At start: custody resumes where the store left it — retransmissions at their stored
    /// deadlines, answers still owed sent now.
    pub(super) async fn resume_custody(&self) -> Result<(), AgentError> {
        self.rearm_custody_deadline().await;
        if !self.inner.store.pending_signals(1).await?.is_empty() {
            self.arm_custody_timer(Timer::CustodySignals, self.inner.clock.now_dtn_ms());
        }
        Ok(())
    }
}
