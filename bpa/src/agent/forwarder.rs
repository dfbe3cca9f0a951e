//! The per-neighbour forwarding of a bundle (RFC 9171 §5.4): a bundle takes a slot in its
//! neighbour's queue, is opened (header only), edited, fragmented if the link needs it (§5.8),
//! and handed to the convergence layer; it leaves the store only once the neighbour has all
//! of it. A refusal is acted on by its reason; failed sends wait on the neighbour's retry timer.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::core::forward::{ForwardError, prepare_for_forwarding};
use super::core::fragment::FragmentPlan;
use super::core::report::Status;
use super::core::transmit::{self, LinkLimits, Transmission, Unsendable};
use super::counters::Counters;
use super::custody::carrier::Carrier;
use super::node::{Agent, BoxedTask, Neighbour};
use super::queue::Queued;
use crate::admin::ReasonCode;
use crate::bundle::{Bundle, BundleHeader, Eid};
use crate::cla::{ClaError, OutgoingBundle, Refusal};
use crate::store::{
    BundleData, BundleState, DeleteReason, Forwarding, OpenedBundle, PayloadContent, Store, StoreError,
    StoreId,
};

/// How one forwarding attempt ended.
enum Sent {
    /// The neighbour has it; it left the store.
    Done,
    /// Nothing more to do now: gone meanwhile, deleted (hop limit), or waiting (logged).
    Gone,
    /// The layer could not hand it over.
    Failed(ClaError),
    /// Larger than the neighbour said it takes, and not to be fragmented.
    TooBigForLearnedLimit(Unsendable),
}

/// What one send hands over, and to whom: the bundle's store id, its head as edited for
/// forwarding and the rest of its bytes, the neighbour, and the link's limits.
struct Handover<'a> {
    id: StoreId,
    head: Bytes,
    rest: PayloadContent,
    hop: &'a Eid,
    neighbour: &'a Neighbour,
    limits: LinkLimits,
}

/// A stored payload's length, in memory or in its file.
fn content_len(content: &PayloadContent) -> u64 {
    match content {
        PayloadContent::Memory(bytes) => bytes.len() as u64,
        PayloadContent::File(file) => file.len(),
    }
}

/// What a send carries besides its claim: the bundle if still in memory, when it was stored,
/// and the volume booked for it (given back if it is not sent).
struct Sending {
    bundle: Option<Bundle>,
    received_at: u64,
    booking: Option<super::core::routing::HeldBooking>,
}

/// A bundle claimed for one send: no other send takes it until this is dropped, however the
/// send ends.
pub(super) struct InFlight<S: Store> {
    agent: Agent<S>,
    id: StoreId,
    /// This forwarding is a detour: the neighbour named refused the bundle first. A refusal on
    /// the detour too ends with the bundle's deletion, so two refusing neighbours cannot pass
    /// it back and forth.
    refused_by: Option<Eid>,
}

impl<S: Store> Drop for InFlight<S> {
    fn drop(&mut self) {
        self.agent.state().core.release(self.id);
    }
}

impl<S: Store> Agent<S> {
    /// Claims a bundle for a send, unless another send has it.
    pub(super) fn claim(&self, id: StoreId, refused_by: Option<Eid>) -> Option<InFlight<S>> {
        let claimed = self.state().core.claim(id);
        claimed.then(|| InFlight { agent: self.clone(), id, refused_by })
    }

    /// Queues the bundle for the neighbour a route leads to, if one is up; otherwise it stays
    /// waiting for a route. Returns whether it was queued. `received_at` (DTN ms) is when the
    /// store took it, for the Bundle Age.
    pub(super) fn forward_if_routed(
        &self,
        id: StoreId,
        destination: &Eid,
        bundle: Option<Bundle>,
        received_at: u64,
    ) -> bool {
        let state = self.state();
        let Some((_, neighbour)) = state.next_hop(destination, None) else {
            if state.core.reach.contacts.is_some() {
                // The contact plan routes by size and lifetime, which the queues read from the
                // store with the bundle: they read on.
                for neighbour in state.links.values() {
                    neighbour.queue.read_on();
                }
            }
            return false;
        };
        drop(state);
        neighbour.queue.push(Queued { id, bundle, received_at, refused_by: None, booking: None }, false);
        true
    }

    /// Sends a claimed bundle in a task of its own, holding a send slot until it ends.
    pub(super) fn start_send(
        &self,
        queued: Queued,
        claim: InFlight<S>,
        hop: Eid,
        neighbour: Neighbour,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let sending =
            Sending { bundle: queued.bundle, received_at: queued.received_at, booking: queued.booking };
        let task: BoxedTask = Box::pin(self.clone().forward(claim, sending, hop, neighbour, slot));
        tokio::spawn(task);
    }

    /// Sends one bundle to a neighbour (RFC 9171 §5.4), in fragments if the link needs them
    /// (§5.8). The bundle leaves the store only once the neighbour has all of it.
    ///
    /// A bundle deleted meanwhile (expired, by an operator) is found gone when it is opened; one
    /// still in memory is sent as it is and its deletion afterwards finds nothing, which is
    /// harmless.
    async fn forward(
        self,
        guard: InFlight<S>,
        sending: Sending,
        hop: Eid,
        neighbour: Neighbour,
        _slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let Sending { bundle, received_at, booking } = sending;
        let id = guard.id;
        // Recorded, so a listing shows it on its way and a scan for waiting bundles passes it;
        // a custodial bundle gets its transmission ID here, durably, before the PDU is out, so
        // the signal that answers it always finds it.
        let timing = self.custody_timing(&hop);
        let forwarding = match self.inner.store.begin_forward(id, &hop.to_string(), timing).await {
            Ok(forwarding) => forwarding,
            Err(StoreError::NotFound(_)) => return,
            Err(error) => {
                self.store_failed(id, "recording a bundle as in flight", &error);
                self.retry_later(&hop, &neighbour);
                return;
            }
        };
        let mut bundle = bundle;
        // A second attempt follows only a refusal as too large, with the limit learned.
        for attempt in 0..2 {
            let sent = self.forward_once(id, bundle.take(), received_at, &hop, &neighbour, forwarding).await;
            if matches!(sent, Sent::Done) {
                // It went on its planned route: the volume it took stays booked.
                if let Some(booking) = booking {
                    booking.keep();
                }
                return;
            }
            if let Sent::Failed(ClaError::Refused { reason: Refusal::TooLarge { limit }, .. }) = &sent
                && attempt == 0
            {
                tracing::info!(neighbour = %hop, limit, store_id = id, "the neighbour takes bundles of at most {limit} bytes");
                neighbour.learned_max.store(*limit, Ordering::Relaxed);
                continue;
            }
            // Not sent (a bundle deleted meanwhile is not found, which is as well).
            self.wait_for_route(id).await;
            match sent {
                Sent::Done | Sent::Gone => {
                    // Waiting again (unless deleted): a queue of the neighbour come up again
                    // meanwhile may have read the store while this send held the bundle.
                    drop(guard);
                    self.rescan_if_replaced(&hop, &neighbour);
                }
                Sent::Failed(
                    error @ ClaError::Refused {
                        reason: Refusal::NotAcceptable | Refusal::TooLarge { .. },
                        ..
                    },
                ) => self.refused(guard, received_at, &hop, &error.to_string()).await,
                Sent::TooBigForLearnedLimit(why) => {
                    self.refused(guard, received_at, &hop, &why.to_string()).await;
                }
                Sent::Failed(error) => {
                    let now = self.inner.clock.now_dtn_ms();
                    let instant = crate::time::monotonic_now();
                    let failed = self.state().core.send_failed(&hop.node_id(), neighbour.link, now, instant);
                    let retry_in = failed.retry_in;
                    if retry_in.is_some() {
                        self.timers_changed();
                    }
                    if let Some(suppressed) = failed.log {
                        tracing::warn!(
                            %error, neighbour = %hop, store_id = id, cla = neighbour.cla.name(), ?retry_in,
                            earlier_failures_not_logged = suppressed,
                            "forwarding failed; the bundle waits for the next chance"
                        );
                    }
                    // The neighbour may have come up again while this send failed: its new
                    // queue read the store before this bundle was waiting again (or while this
                    // send still held it), so it looks again, now the bundle is free.
                    drop(guard);
                    self.rescan_if_replaced(&hop, &neighbour);
                }
            }
            return;
        }
    }

    /// Tells the queue of `hop` to read the store again if it is not `ours` (the neighbour went
    /// down and came up while a send of ours was under way).
    fn rescan_if_replaced(&self, hop: &Eid, ours: &Neighbour) {
        let state = self.state();
        if let Some(current) = state.link(&hop.node_id())
            && current.link != ours.link
        {
            current.queue.rescan();
        }
    }

    /// A bundle that was not sent waits for a route again (unless it is gone, or quarantined).
    async fn wait_for_route(&self, id: StoreId) {
        match self.inner.store.set_state(id, BundleState::WaitingForRoute).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(error) => self.store_failed(id, "recording an unsent bundle as waiting", &error),
        }
    }

    /// One attempt at [`Agent::forward`]: the bundle opened, edited, sent whole or in
    /// fragments as [`transmit::plan`] decides (inside a custody carrier when under custody),
    /// and deleted once the neighbour has all of it — or kept for the next custodian's signal.
    async fn forward_once(
        &self,
        id: StoreId,
        bundle: Option<Bundle>,
        received_at: u64,
        hop: &Eid,
        neighbour: &Neighbour,
        forwarding: Forwarding,
    ) -> Sent {
        let Some(OpenedBundle { mut header, prefix, rest }) = self.open_for_forwarding(id, bundle).await
        else {
            return Sent::Gone;
        };
        let now = self.inner.clock.now_dtn_ms();
        let subject = header.primary.clone();
        let payload_len = header.payload.data_length;
        if let Err(ForwardError::HopLimitExceeded { .. }) =
            prepare_for_forwarding(&mut header, &self.inner.config.node_id, now.saturating_sub(received_at))
        {
            self.delete(id, &subject, payload_len, ReasonCode::HOP_LIMIT_EXCEEDED).await;
            return Sent::Gone;
        }
        let head: Bytes = header.encode_head(&prefix).into();
        let limits = LinkLimits {
            layer: neighbour.cla.max_bundle_size().map_or(u64::MAX, |m| m as u64),
            learned: neighbour.learned_max.load(Ordering::Relaxed),
        };
        let handover = Handover { id, head, rest, hop, neighbour, limits };
        let handed_over = match forwarding {
            Forwarding::Custodial { transmission_id, deadline, .. } => {
                let inner_len = handover.head.len() as u64 + content_len(&handover.rest);
                let carrier =
                    self.carrier_for(hop, transmission_id, deadline, inner_len, subject.expiry(now));
                self.send_carrier(carrier, handover).await
            }
            Forwarding::Plain => self.send_plain(&header, handover).await,
        };
        if let Err(sent) = handed_over {
            return sent;
        }
        self.state().core.sent(&hop.node_id(), neighbour.link);
        match forwarding {
            // Kept until the next custodian's signal releases it, or sent again at the deadline.
            Forwarding::Custodial { deadline, .. } => self.custody_sent(deadline),
            Forwarding::Plain => {
                let forwarded = DeleteReason::Forwarded { neighbour: hop.to_string() };
                if self.remove(id, forwarded).await.is_none() {
                    return Sent::Done;
                }
                Counters::bump(&self.inner.counters.forwarded);
            }
        }
        self.report(&subject, payload_len, Status::Forwarded, ReasonCode::NO_ADDITIONAL_INFORMATION).await;
        Sent::Done
    }

    /// The bundle to forward, its header read and its payload ready to stream: a bundle still
    /// in memory is encoded again rather than read back. `None`: gone, or unreadable (logged).
    async fn open_for_forwarding(&self, id: StoreId, bundle: Option<Bundle>) -> Option<OpenedBundle> {
        let data = match bundle {
            Some(bundle) => Ok(BundleData::Inline(Bytes::from(bundle.encode()))),
            None => self.inner.store.open_data(id).await,
        };
        let opened = match data {
            Ok(data) => data.into_opened(&self.inner.config.parse).await,
            Err(error) => Err(error),
        };
        match opened {
            Ok(opened) => Some(opened),
            Err(StoreError::NotFound(_)) => None,
            Err(StoreError::Closed) if self.stopping() => None,
            Err(error) => {
                tracing::error!(%error, store_id = id, "a stored bundle cannot be read for forwarding");
                None
            }
        }
    }

    /// Hands over a bundle as it is (`header` edited for forwarding), whole or in fragments.
    async fn send_plain(&self, header: &BundleHeader, handover: Handover<'_>) -> Result<(), Sent> {
        let Handover { id, head, rest, hop, neighbour, limits } = handover;
        let size = head.len() as u64 + content_len(&rest);
        match transmit::plan(header, size, limits) {
            Ok(Transmission::Whole) => {
                neighbour.cla.send(hop, OutgoingBundle::new(head, rest)).await.map_err(Sent::Failed)
            }
            Ok(Transmission::Fragments(plan)) => {
                let payload_len = header.payload.data_length;
                self.send_fragments(id, *plan, payload_len, Bytes::new(), rest, hop, neighbour).await
            }
            Err(refused @ Unsendable::OverLearnedLimit { .. }) => {
                Counters::bump(&self.inner.counters.too_big);
                Err(Sent::TooBigForLearnedLimit(refused))
            }
            Err(error) => {
                Counters::bump(&self.inner.counters.too_big);
                tracing::warn!(
                    %error, bundle = %header.id(), neighbour = %hop, cla = neighbour.cla.name(),
                    "the bundle waits for another route or its expiry"
                );
                Err(Sent::Gone)
            }
        }
    }

    /// Hands over a bundle inside a custody carrier (a BIBE PDU), whole or — like any bundle
    /// too big for the link (RFC 9171 §5.8) — in fragments the neighbour reassembles before it
    /// takes the bundle inside.
    async fn send_carrier(&self, carrier: Carrier, handover: Handover<'_>) -> Result<(), Sent> {
        let Handover { id, head, rest, hop, neighbour, limits } = handover;
        let carrier_header = match BundleHeader::parse(&carrier.bundle_head, &self.inner.config.parse) {
            Ok(Some(header)) => header,
            other => {
                tracing::error!(?other, store_id = id, "a carrier this node built does not parse: not sent");
                return Err(Sent::Gone);
            }
        };
        match transmit::plan(&carrier_header, carrier.len(), limits) {
            Ok(Transmission::Whole) => {
                let carrier_head = Bytes::from(
                    [carrier.bundle_head.as_ref(), carrier.record_head.as_ref(), head.as_ref()].concat(),
                );
                let wrapped = OutgoingBundle::wrapped(carrier_head, rest, carrier.tail);
                neighbour.cla.send(hop, wrapped).await.map_err(Sent::Failed)
            }
            Ok(Transmission::Fragments(plan)) => {
                Counters::bump(&self.inner.counters.custody_fragmented);
                let lead = Bytes::from([carrier.record_head.as_ref(), head.as_ref()].concat());
                self.send_fragments(id, *plan, carrier.payload_len, lead, rest, hop, neighbour).await
            }
            Err(error) => {
                Counters::bump(&self.inner.counters.too_big);
                tracing::warn!(
                    %error, store_id = id, neighbour = %hop,
                    "a custodial bundle cannot be fragmented to fit this link; it waits for another route or its expiry"
                );
                Err(Sent::Gone)
            }
        }
    }

    /// The neighbour `hop` will not take the bundle (`why`): it goes by another route if one is
    /// up (once: a detour refused too is not detoured again), else it is deleted with reason
    /// "transmission canceled" (reported if asked for).
    async fn refused(&self, guard: InFlight<S>, received_at: u64, hop: &Eid, why: &str) {
        let id = guard.id;
        let Some((header, _)) = self.open_payload(id).await else { return };
        let destination = &header.primary.destination;
        let detour = match guard.refused_by {
            Some(_) => None,
            None => self.next_hop_except(destination, Some(hop)),
        };
        if let Some((via, neighbour)) = detour {
            tracing::info!(store_id = id, neighbour = %hop, %why, other = %via, "refused; sent by another route");
            // Queued for the other neighbour in the store too, so no scan for waiting bundles
            // takes it back to the one that refused it.
            let state = BundleState::QueuedFor { neighbour: via.to_string() };
            if let Err(error) = self.inner.store.set_state(id, state).await {
                self.store_failed(id, "queueing a refused bundle for another neighbour", &error);
                return;
            }
            drop(guard);
            let queued =
                Queued { id, bundle: None, received_at, refused_by: Some(hop.clone()), booking: None };
            neighbour.queue.push(queued, true);
            return;
        }
        tracing::warn!(
            store_id = id, bundle = %header.id(), neighbour = %hop, %why,
            "refused and no other route: the bundle is deleted (transmission canceled)"
        );
        let len = header.payload.data_length;
        self.delete(id, &header.primary, len, ReasonCode::TRANSMISSION_CANCELED).await;
    }

    /// A send to `neighbour` failed: unless a retry timer is already running, one starts; when
    /// it expires, and the neighbour is still the one that failed, every bundle waiting for a
    /// route is dispatched again (those on their way already are skipped). Returns the delay
    /// of a timer started now. (A neighbour that goes down and up again gets a fresh state and
    /// is dispatched to at once by [`Agent::neighbour_up`].)
    pub(super) fn retry_later(&self, hop: &Eid, neighbour: &Neighbour) -> Option<Duration> {
        let now = self.inner.clock.now_dtn_ms();
        let delay = self.state().core.retry_later(&hop.node_id(), Some(neighbour.link), now);
        if delay.is_some() {
            self.timers_changed();
        }
        delay
    }

    /// Sends a bundle's payload — `lead` (bytes in memory before the stored part: a carrier's
    /// record head and the encapsulated bundle's head; empty otherwise), then `rest` (the stored
    /// bundle's payload content, its CRC field and final break), the first `payload_len` bytes
    /// of that — in the fragments of `plan` (RFC 9171 §5.8). A payload in memory is cut without a
    /// copy. One in a file is read one fragment's bytes at a time, after a checking pass over
    /// it that keeps nothing (the store's check completes only at the end of the file), so no
    /// fragment of a damaged bundle is ever sent.
    #[allow(clippy::too_many_arguments)]
    async fn send_fragments(
        &self,
        id: StoreId,
        plan: FragmentPlan,
        payload_len: u64,
        lead: Bytes,
        rest: PayloadContent,
        hop: &Eid,
        neighbour: &Neighbour,
    ) -> Result<(), Sent> {
        use tokio::io::AsyncReadExt;
        let length = usize::try_from(payload_len).map_err(|_| Sent::Gone)?;
        let send = |at: usize, chunk: Bytes| {
            let piece = plan.piece(at, chunk);
            neighbour.cla.send(hop, OutgoingBundle::from_bytes(Bytes::from(piece.encode())))
        };
        let file = match rest {
            PayloadContent::Memory(bytes) => {
                let bytes = if lead.is_empty() {
                    bytes
                } else {
                    Bytes::from([lead.as_ref(), bytes.as_ref()].concat())
                };
                let mut at = 0usize;
                while at < length.min(bytes.len()) {
                    let n = plan.chunk_len(at, length - at).map_err(|_| Sent::Gone)?;
                    send(at, bytes.slice(at..at + n)).await.map_err(Sent::Failed)?;
                    Counters::bump(&self.inner.counters.fragments_sent);
                    at += n;
                }
                return Ok(());
            }
            PayloadContent::File(file) => file,
        };
        // The check: every stored byte read and verified, none kept.
        let mut whole = OutgoingBundle::new(Bytes::new(), PayloadContent::File(file)).into_reader();
        if let Err(error) = tokio::io::copy(&mut whole, &mut tokio::io::sink()).await {
            tracing::error!(%error, store_id = id, "a stored bundle failed its check: not sent");
            return Err(Sent::Gone);
        }
        let parse = &self.inner.config.parse;
        let reopened = match self.inner.store.open_data(id).await {
            Ok(data) => data.into_opened(parse).await,
            Err(error) => Err(error),
        };
        let rest = match reopened {
            Ok(OpenedBundle { rest, .. }) => rest,
            Err(StoreError::NotFound(_)) => return Err(Sent::Gone),
            Err(error) => {
                tracing::error!(%error, store_id = id, "a stored bundle cannot be read for fragmentation");
                return Err(Sent::Gone);
            }
        };
        let mut payload = OutgoingBundle::new(lead, rest).into_reader();
        let length = usize::try_from(payload_len).map_err(|_| Sent::Gone)?;
        let mut at = 0usize;
        while at < length {
            let n = plan.chunk_len(at, length - at).map_err(|_| Sent::Gone)?;
            let mut chunk = vec![0u8; n];
            if let Err(error) = payload.read_exact(&mut chunk).await {
                tracing::error!(%error, store_id = id, "a stored payload ended early while fragmenting");
                return Err(Sent::Gone);
            }
            let piece = plan.piece(at, Bytes::from(chunk));
            if let Err(error) =
                neighbour.cla.send(hop, OutgoingBundle::from_bytes(Bytes::from(piece.encode()))).await
            {
                return Err(Sent::Failed(error));
            }
            Counters::bump(&self.inner.counters.fragments_sent);
            at += n;
        }
        Ok(())
    }
}
