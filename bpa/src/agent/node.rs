//! The bundle pipeline (RFC 9171 §5): reception → validation → durable store → dispatch →
//! forwarding to a neighbour or delivery to a local application; expiry; status reports.
//!
//! Every bundle is in the store, with a state saying what it waits for, before anything else
//! happens to it, so a crash or restart loses nothing: what was waiting is dispatched again by
//! [`Agent::start`], when a neighbour comes up, a route is added or an application connects.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::counters::{AgentStats, Counters};
use super::forward::{ForwardError, prepare_for_forwarding};
use super::fragment::{FragmentError, fragment};
use super::outgoing::SendRequest;
use super::report::{ReportPolicy, Status, status_report};
use super::routing::{Router, StaticRoute, StaticRoutes};
use crate::admin::ReasonCode;
use crate::bundle::{
    Bundle, BundleError, BundleFlags, BundleHeader, CreationTimestamp, Eid, ParseOptions,
    PayloadLengthMismatch, PrimaryBlock,
};
use crate::cla::{ClaError, ConvergenceLayer, OutgoingBundle, Refusal};
use crate::store::{
    BundleData, BundleState, DeleteReason, InsertOutcome, OpenedBundle, PayloadContent, StateKind, Store,
    StoreError, StoreId, StreamingInsert,
};
use crate::time::Clock;

/// A duration in whole milliseconds, as the clock counts.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How one forwarding attempt ended.
enum Sent {
    /// The neighbour has it; it left the store.
    Done,
    /// Nothing more to do now: gone meanwhile, deleted (hop limit), or waiting (logged).
    Gone,
    /// The layer could not hand it over.
    Failed(ClaError),
    /// Larger than the neighbour said it takes, and not to be fragmented.
    TooBigForLearnedLimit(String),
}

/// Bundles read per store query when the agent looks through a state (restart, redispatch).
const SCAN_PAGE: usize = 1024;

/// Bundles looked at per store query while expiring.
const EXPIRY_PAGE: usize = 256;

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
    pub forward_retry_max: Duration,
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
        }
    }
}

/// Why the agent refused something.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the bundle is refused: {0}")]
    Invalid(#[from] BundleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{endpoint} is not an endpoint of this node ({node}): applications register endpoints of their own node"
    )]
    NotLocal { endpoint: Eid, node: Eid },
    #[error(
        "the source {from} is not an endpoint of this node ({node}): bundles are sent from the node's own endpoints"
    )]
    ForeignSource { from: Eid, node: Eid },
    #[error("the bundle is incomplete: {0}")]
    PayloadLength(#[from] PayloadLengthMismatch),
    #[error(
        "this node already delivered or forwarded a bundle with the ID {0}; \
         a new bundle needs a new creation timestamp (is the clock behind?)"
    )]
    AlreadyHandled(crate::bundle::BundleId),
}

/// The answer to a received bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reception {
    /// Durably stored under this id.
    Accepted(StoreId),
    /// Already held (RFC 9171 §5.6): nothing more is done.
    Duplicate(StoreId),
    /// Already delivered or forwarded by this node, which remembers it until it expires
    /// (design §3.7): acknowledged to the sender, not delivered or forwarded again.
    AlreadyHandled,
}

/// A bundle handed to a local application; it stays stored until [`Agent::acknowledge`].
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: StoreId,
    pub bundle: Bundle,
}

/// A static route to a node: bundles for node `to` go via neighbour `via`. Shorthand for a
/// [`StaticRoute`] with a node pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub to: Eid,
    pub via: Eid,
}

/// A directly connected neighbour.
#[derive(Debug, Clone)]
pub(super) struct Neighbour {
    pub cla: Arc<dyn ConvergenceLayer>,
    /// The per-neighbour queue: a bundle waits for a slot before it is loaded and handed over.
    pub slots: Arc<Semaphore>,
    /// When failed sends are tried again.
    pub retry: Arc<Mutex<RetryState>>,
    /// Failed sends are logged once per window, not once per bundle (a whole queue fails
    /// when a session ends).
    pub warnings: Arc<Mutex<crate::log::RateLimit>>,
    /// The largest bundle the neighbour said it takes (a refusal as too large); `u64::MAX`
    /// until it says.
    pub learned_max: Arc<AtomicU64>,
}

/// One neighbour's retry timer: however many sends fail at once (a whole queue when a session
/// ends), one timer runs, and its expiry dispatches everything waiting again.
#[derive(Debug)]
pub(super) struct RetryState {
    /// A timer is running.
    pending: bool,
    /// The next timer's delay.
    delay: Duration,
}

/// A neighbour as [`Agent::neighbours`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourInfo {
    pub node_id: Eid,
    /// The convergence layer's name.
    pub cla: String,
    /// Bundles being handed over now.
    pub in_flight: usize,
}

/// The agent of one node. Cheap to clone.
#[derive(Debug)]
pub struct Agent<S: Store> {
    pub(super) inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Agent<S> {
    fn clone(&self) -> Self {
        Agent { inner: Arc::clone(&self.inner) }
    }
}

#[derive(Debug)]
pub(super) struct Inner<S> {
    pub config: AgentConfig,
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub sequence: AtomicU64,
    pub neighbours: Mutex<HashMap<Eid, Neighbour>>,
    pub static_routes: Mutex<StaticRoutes>,
    pub router: Mutex<Option<Arc<dyn Router>>>,
    /// Connected applications by endpoint: each gets every new bundle for it.
    pub applications: Mutex<HashMap<Eid, Vec<super::delivery::Connection>>>,
    /// Bundles being forwarded now: never dispatched twice at once.
    pub in_flight: Mutex<HashSet<StoreId>>,
    /// One reassembly at a time, so two last fragments cannot both complete an ADU.
    pub reassembly: tokio::sync::Mutex<()>,
    pub counters: Counters,
}

pub(super) type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a bundle from the in-flight set when its forwarding ends, however it ends.
struct InFlight<S: Store> {
    agent: Agent<S>,
    id: StoreId,
}

impl<S: Store> Drop for InFlight<S> {
    fn drop(&mut self) {
        lock(&self.agent.inner.in_flight).remove(&self.id);
    }
}

impl<S: Store> Agent<S> {
    pub fn new(config: AgentConfig, store: S, clock: Arc<dyn Clock>) -> Agent<S> {
        Agent {
            inner: Arc::new(Inner {
                config,
                store,
                clock,
                sequence: AtomicU64::new(0),
                neighbours: Mutex::new(HashMap::new()),
                static_routes: Mutex::new(StaticRoutes::default()),
                router: Mutex::new(None),
                applications: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashSet::new()),
                reassembly: tokio::sync::Mutex::new(()),
                counters: Counters::default(),
            }),
        }
    }

    pub fn node_id(&self) -> &Eid {
        &self.inner.config.node_id
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// What the agent has done since it started.
    pub fn stats(&self) -> AgentStats {
        self.inner.counters.snapshot()
    }

    /// Picks up what a previous run left (design §3.7): bundles that were being sent when it
    /// stopped wait for a route again, fragments are reassembled if they are complete, and
    /// everything waiting for a route is dispatched. Call once routes and neighbours are set.
    pub async fn start(&self) -> Result<(), AgentError> {
        let store = &self.inner.store;
        for kind in [StateKind::QueuedFor, StateKind::InFlight] {
            let mut after = 0;
            loop {
                let page = store.by_state(kind, None, after, SCAN_PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for meta in page {
                    store.set_state(meta.id, BundleState::WaitingForRoute).await?;
                }
            }
        }
        // Complete ADUs are reassembled, a page of fragments at a time (an incomplete one is
        // looked at again when its next fragment arrives).
        let mut after = 0;
        loop {
            let page = store.by_state(StateKind::AwaitingReassembly, None, after, SCAN_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let adus: HashSet<String> =
                page.into_iter().filter_map(|m| m.state.argument().map(str::to_string)).collect();
            for adu in adus {
                self.reassemble(&adu).await;
            }
        }
        self.redispatch_waiting(true).await
    }

    /// A bundle from a convergence layer (RFC 9171 §5.6). `Ok` means it is durable here: the
    /// layer may acknowledge it to the sender.
    pub async fn receive(&self, encoded: Bytes) -> Result<Reception, AgentError> {
        let counters = &self.inner.counters;
        let bundle = Bundle::parse(&encoded, &self.inner.config.parse).inspect_err(|error| {
            Counters::bump(&counters.refused);
            tracing::info!(%error, "a received bundle was refused");
        })?;
        let state = self.initial_state(bundle.primary());
        let recorded = state.kind() == StateKind::WaitingForApplication;
        match self.inner.store.insert(encoded, state).await? {
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

    /// A new bundle from a local application (RFC 9171 §5.2), durable when this returns.
    pub async fn send(
        &self,
        source: Eid,
        destination: Eid,
        payload: Bytes,
        lifetime_ms: u64,
        flags: BundleFlags,
    ) -> Result<StoreId, AgentError> {
        let request = SendRequest { source, destination, lifetime_ms, flags };
        Ok(self.send_whole(request, payload).await?.0)
    }

    pub(super) fn next_timestamp(&self) -> CreationTimestamp {
        CreationTimestamp {
            time: self.inner.clock.now_dtn_ms(),
            sequence: self.inner.sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(super) async fn originate(&self, bundle: Bundle) -> Result<StoreId, AgentError> {
        let id = self
            .inner
            .store
            .insert(Bytes::from(bundle.encode()), BundleState::WaitingForRoute)
            .await?
            .id()
            .ok_or_else(|| AgentError::AlreadyHandled(bundle.id()))?;
        Counters::bump(&self.inner.counters.originated);
        self.dispatch(id, bundle).await;
        Ok(id)
    }

    pub(super) fn is_local(&self, eid: &Eid) -> bool {
        !eid.is_null() && eid.node_id() == self.inner.config.node_id.node_id()
    }

    /// The neighbour a bundle for `destination` goes to now, if any.
    fn next_hop(&self, destination: &Eid) -> Option<(Eid, Neighbour)> {
        self.next_hop_except(destination, None)
    }

    /// [`Agent::next_hop`], passing over the neighbour `except` (one that refused the bundle).
    fn next_hop_except(&self, destination: &Eid, except: Option<&Eid>) -> Option<(Eid, Neighbour)> {
        let neighbours = lock(&self.inner.neighbours);
        if neighbours.is_empty() {
            return None;
        }
        let allowed = |node: &Eid| except.is_none_or(|except| except != node);
        let node = destination.node_id();
        if let Some(n) = neighbours.get(&node).filter(|_| allowed(&node)) {
            return Some((node, n.clone()));
        }
        let mut candidates = lock(&self.inner.static_routes).next_hops(destination);
        if let Some(router) = lock(&self.inner.router).as_ref() {
            candidates.extend(router.next_hops(destination));
        }
        candidates
            .into_iter()
            .filter(|via| allowed(via))
            .find_map(|via| neighbours.get(&via).map(|n| (via, n.clone())))
    }

    /// Decides what happens to a stored bundle now (RFC 9171 §5.3): local delivery, forwarding,
    /// or waiting.
    ///
    /// Boxed: dispatching can send a status report, which is dispatched in turn.
    pub(super) fn dispatch(
        &self,
        id: StoreId,
        bundle: Bundle,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let primary = bundle.primary().clone();
            self.dispatch_with(id, &primary, Some(bundle), false).await;
        })
    }

    /// [`Agent::dispatch`] for a bundle not in memory: it is read from the store when, and only
    /// as far as, its next step needs.
    pub(super) async fn dispatch_stored(&self, id: StoreId, primary: &PrimaryBlock) {
        self.dispatch_with(id, primary, None, false).await;
    }

    /// `waiting_recorded`: the bundle was stored already waiting for its application
    /// ([`Agent::initial_state`]), so that need not be written again.
    async fn dispatch_with(
        &self,
        id: StoreId,
        primary: &PrimaryBlock,
        bundle: Option<Bundle>,
        waiting_recorded: bool,
    ) {
        if self.is_local(&primary.destination) {
            self.deliver_locally(id, primary, bundle, waiting_recorded).await;
        } else {
            // Just stored: its time here starts now.
            let received_at = self.inner.clock.now_dtn_ms();
            self.forward_if_routed(id, &primary.destination, bundle, received_at);
        }
    }

    /// Starts forwarding if a neighbour can take the bundle; otherwise it stays waiting for a
    /// route. Returns whether it started. `received_at` (DTN ms) is when the store took it,
    /// for the Bundle Age.
    fn forward_if_routed(
        &self,
        id: StoreId,
        destination: &Eid,
        bundle: Option<Bundle>,
        received_at: u64,
    ) -> bool {
        let Some((hop, neighbour)) = self.next_hop(destination) else {
            return false;
        };
        self.forward_to(id, bundle, received_at, hop, neighbour);
        true
    }

    /// Starts forwarding a bundle to the neighbour `hop` unless it is on its way already.
    fn forward_to(
        &self,
        id: StoreId,
        bundle: Option<Bundle>,
        received_at: u64,
        hop: Eid,
        neighbour: Neighbour,
    ) {
        if !lock(&self.inner.in_flight).insert(id) {
            return; // already on its way
        }
        let guard = InFlight { agent: self.clone(), id };
        let agent = self.clone();
        // A bundle waits for a slot in its neighbour's queue in a small future; the forwarding
        // itself, a much larger one, is made only once it has the slot. (Thousands may wait
        // when a neighbour comes up.)
        let task: BoxedTask = Box::pin(async move {
            let Ok(slot) = Arc::clone(&neighbour.slots).acquire_owned().await else { return };
            let forwarding: BoxedTask =
                Box::pin(agent.forward(guard, bundle, received_at, hop, neighbour, slot));
            forwarding.await;
        });
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
        bundle: Option<Bundle>,
        received_at: u64,
        hop: Eid,
        neighbour: Neighbour,
        _slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let id = guard.id;
        let mut bundle = bundle;
        // A second attempt follows only a refusal as too large, with the limit learned.
        for attempt in 0..2 {
            match self.forward_once(id, bundle.take(), received_at, &hop, &neighbour).await {
                Sent::Done | Sent::Gone => return,
                Sent::Failed(ClaError::Refused { reason: Refusal::TooLarge { limit }, .. })
                    if attempt == 0 =>
                {
                    tracing::info!(neighbour = %hop, limit, store_id = id, "the neighbour takes bundles of at most {limit} bytes");
                    neighbour.learned_max.store(limit, Ordering::Relaxed);
                }
                Sent::Failed(
                    error @ ClaError::Refused {
                        reason: Refusal::NotAcceptable | Refusal::TooLarge { .. },
                        ..
                    },
                ) => {
                    return self.refused(guard, received_at, &hop, &error.to_string()).await;
                }
                Sent::TooBigForLearnedLimit(why) => {
                    return self.refused(guard, received_at, &hop, &why).await;
                }
                Sent::Failed(error) => {
                    let retry_in = self.retry_later(&hop, &neighbour);
                    let allowed = lock(&neighbour.warnings).allow(std::time::Instant::now());
                    if let Some(suppressed) = allowed {
                        tracing::warn!(
                            %error, neighbour = %hop, store_id = id, cla = neighbour.cla.name(), ?retry_in,
                            earlier_failures_not_logged = suppressed,
                            "forwarding failed; the bundle waits for the next chance"
                        );
                    }
                    return;
                }
            }
        }
    }

    /// One attempt at [`Agent::forward`]: the bundle opened, edited, fragmented if the link
    /// needs it, and handed over; deleted once the neighbour has all of it.
    async fn forward_once(
        &self,
        id: StoreId,
        bundle: Option<Bundle>,
        received_at: u64,
        hop: &Eid,
        neighbour: &Neighbour,
    ) -> Sent {
        let store = &self.inner.store;
        let parse = &self.inner.config.parse;
        // A bundle still in memory is encoded again rather than read back; one in the store is
        // opened with only its header read, its payload streamed as the layer sends it.
        let data = match bundle {
            Some(bundle) => Ok(BundleData::Inline(Bytes::from(bundle.encode()))),
            None => store.open_data(id).await,
        };
        let opened = match data {
            Ok(data) => data.into_opened(parse).await,
            Err(error) => Err(error),
        };
        let OpenedBundle { mut header, prefix, rest } = match opened {
            Ok(opened) => opened,
            Err(StoreError::NotFound(_)) => return Sent::Gone,
            Err(error) => {
                tracing::error!(%error, store_id = id, "a stored bundle cannot be read for forwarding");
                return Sent::Gone;
            }
        };
        let residence = self.inner.clock.now_dtn_ms().saturating_sub(received_at);
        let subject = header.primary.clone();
        let payload_len = header.payload.data_length;
        if let Err(ForwardError::HopLimitExceeded { .. }) =
            prepare_for_forwarding(&mut header, &self.inner.config.node_id, residence)
        {
            self.delete(id, &subject, payload_len, ReasonCode::HOP_LIMIT_EXCEEDED).await;
            return Sent::Gone;
        }
        let outgoing = OutgoingBundle::new(header.encode_head(&prefix).into(), rest);
        let cla = &neighbour.cla;
        let learned = neighbour.learned_max.load(Ordering::Relaxed);
        let link_max = cla.max_bundle_size().map_or(u64::MAX, |m| m as u64);
        let max = link_max.min(learned);
        let pieces = if outgoing.len() > max {
            let fitting = usize::try_from(max).unwrap_or(usize::MAX);
            match self.fragments(outgoing, fitting).await {
                Ok(pieces) => pieces,
                Err(error) => {
                    Counters::bump(&self.inner.counters.too_big);
                    if learned < link_max {
                        return Sent::TooBigForLearnedLimit(format!(
                            "{hop} takes bundles of at most {learned} bytes and this one cannot be fragmented: {error}"
                        ));
                    }
                    tracing::warn!(
                        %error, bundle = %header.id(), neighbour = %hop, cla = cla.name(), max,
                        "the bundle is too big for this link; it waits for another route or its expiry"
                    );
                    return Sent::Gone;
                }
            }
        } else {
            vec![outgoing]
        };
        let fragmented = pieces.len() > 1;
        for piece in pieces {
            if let Err(error) = cla.send(hop, piece).await {
                return Sent::Failed(error);
            }
            if fragmented {
                Counters::bump(&self.inner.counters.fragments_sent);
            }
        }
        lock(&neighbour.retry).delay = self.inner.config.forward_retry_min;
        if self.remove(id, DeleteReason::Forwarded { neighbour: hop.to_string() }).await.is_some() {
            Counters::bump(&self.inner.counters.forwarded);
            self.report(&subject, payload_len, Status::Forwarded, ReasonCode::NO_ADDITIONAL_INFORMATION)
                .await;
        }
        Sent::Done
    }

    /// The neighbour `hop` will not take the bundle (`why`): it goes by another route if one is
    /// up, else it is deleted with reason "transmission canceled" (reported if asked for).
    async fn refused(&self, guard: InFlight<S>, received_at: u64, hop: &Eid, why: &str) {
        let id = guard.id;
        let Some((header, _)) = self.open_payload(id).await else { return };
        let destination = &header.primary.destination;
        if let Some((via, neighbour)) = self.next_hop_except(destination, Some(hop)) {
            tracing::info!(store_id = id, neighbour = %hop, %why, other = %via, "refused; sent by another route");
            drop(guard);
            self.forward_to(id, None, received_at, via, neighbour);
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
    fn retry_later(&self, hop: &Eid, neighbour: &Neighbour) -> Option<Duration> {
        let delay = {
            let mut retry = lock(&neighbour.retry);
            if retry.pending {
                return None;
            }
            retry.pending = true;
            let delay = retry.delay;
            retry.delay = (delay * 2).min(self.inner.config.forward_retry_max);
            delay
        };
        // The timer does not keep the agent alive: one shut down meanwhile is left alone.
        let agent = Arc::downgrade(&self.inner);
        let node = hop.node_id();
        let state = Arc::clone(&neighbour.retry);
        let wake = self.inner.clock.sleep_until(self.inner.clock.now_dtn_ms().saturating_add(millis(delay)));
        tokio::spawn(async move {
            wake.await;
            lock(&state).pending = false;
            let Some(inner) = agent.upgrade() else { return };
            let agent = Agent { inner };
            let same_neighbour =
                lock(&agent.inner.neighbours).get(&node).is_some_and(|n| Arc::ptr_eq(&n.retry, &state));
            if same_neighbour && let Err(error) = agent.redispatch().await {
                tracing::error!(%error, "dispatching waiting bundles again failed");
            }
        });
        Some(delay)
    }

    /// Proactive fragmentation for a link that takes bundles of at most `max` bytes (RFC 9171
    /// §5.8). Such links are small, so the bundle is read whole.
    async fn fragments(&self, bundle: OutgoingBundle, max: usize) -> Result<Vec<OutgoingBundle>, String> {
        let bytes = bundle.into_bytes().await.map_err(|e| format!("reading the bundle: {e}"))?;
        let bundle = Bundle::parse(&bytes, &self.inner.config.parse).map_err(|e| e.to_string())?;
        match fragment(&bundle, max) {
            Ok(pieces) => {
                Ok(pieces.iter().map(|p| OutgoingBundle::from_bytes(Bytes::from(p.encode()))).collect())
            }
            Err(error @ (FragmentError::MustNotFragment | FragmentError::TooSmall { .. })) => {
                Err(error.to_string())
            }
        }
    }

    pub(super) async fn delete(
        &self,
        id: StoreId,
        subject: &PrimaryBlock,
        payload_len: u64,
        reason: ReasonCode,
    ) {
        let why = if reason == ReasonCode::LIFETIME_EXPIRED {
            DeleteReason::Expired
        } else {
            DeleteReason::Discarded { reason_code: reason.0 }
        };
        if self.remove(id, why).await.is_some() {
            let counter = if reason == ReasonCode::LIFETIME_EXPIRED {
                &self.inner.counters.expired
            } else {
                &self.inner.counters.discarded
            };
            Counters::bump(counter);
            self.report(subject, payload_len, Status::Deleted, reason).await;
        }
    }

    /// Deletes a stored bundle on an operator's request, reporting the deletion if the bundle
    /// asked for that. Returns whether it was there.
    pub async fn delete_on_request(&self, id: StoreId) -> Result<bool, AgentError> {
        let header = self.open_payload(id).await.map(|(header, _)| header);
        match self.inner.store.delete(id, DeleteReason::Requested).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(error) => return Err(error.into()),
        }
        Counters::bump(&self.inner.counters.discarded);
        if let Some(header) = header {
            let len = header.payload.data_length;
            self.report(&header.primary, len, Status::Deleted, ReasonCode::NO_ADDITIONAL_INFORMATION).await;
        }
        Ok(true)
    }

    /// Sends the status report `subject` asked for, if any (RFC 9171 §5.1).
    pub(super) async fn report(
        &self,
        subject: &PrimaryBlock,
        payload_len: u64,
        status: Status,
        reason: ReasonCode,
    ) {
        let made = status_report(
            subject,
            payload_len,
            status,
            reason,
            &self.inner.config.node_id,
            self.next_timestamp(),
            &self.inner.config.reports,
        );
        match made {
            Ok(Some(report)) => match self.originate(report).await {
                Ok(_) => Counters::bump(&self.inner.counters.reports_sent),
                Err(error) => tracing::warn!(%error, "a status report could not be stored"),
            },
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "a status report could not be made"),
        }
    }

    /// A stored bundle's header and payload content, the payload not read into memory (`None`
    /// if it is gone or unreadable, which is logged).
    pub async fn open_payload(&self, id: StoreId) -> Option<(BundleHeader, PayloadContent)> {
        let opened = match self.inner.store.open_data(id).await {
            Ok(data) => data.into_payload(&self.inner.config.parse).await,
            Err(error) => Err(error),
        };
        match opened {
            Ok(opened) => Some(opened),
            Err(StoreError::NotFound(_)) => None,
            Err(error) => {
                tracing::error!(%error, store_id = id, "a stored bundle cannot be read");
                None
            }
        }
    }

    /// A stored bundle, parsed (`None` if it is gone or unreadable, which is logged).
    pub async fn load(&self, id: StoreId) -> Option<Bundle> {
        let bytes = match self.inner.store.open_data(id).await {
            Ok(data) => data.into_bytes().await,
            Err(error) => Err(error),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound(_)) => return None,
            Err(error) => {
                tracing::error!(%error, store_id = id, "a stored bundle cannot be read");
                return None;
            }
        };
        match Bundle::parse(&bytes, &self.inner.config.parse) {
            Ok(bundle) => Some(bundle),
            Err(error) => {
                tracing::error!(%error, store_id = id, "a stored bundle no longer parses");
                None
            }
        }
    }

    /// A neighbour is reachable through `cla`: bundles waiting for a route are dispatched again.
    pub async fn neighbour_up(
        &self,
        neighbour: Eid,
        cla: Arc<dyn ConvergenceLayer>,
    ) -> Result<(), AgentError> {
        tracing::info!(neighbour = %neighbour, cla = cla.name(), "neighbour up");
        let slots = Arc::new(Semaphore::new(self.inner.config.max_in_flight_per_neighbour.max(1)));
        let retry =
            Arc::new(Mutex::new(RetryState { pending: false, delay: self.inner.config.forward_retry_min }));
        let warnings = Arc::new(Mutex::new(crate::log::RateLimit::new(Duration::from_secs(10))));
        let learned_max = Arc::new(AtomicU64::new(u64::MAX));
        lock(&self.inner.neighbours)
            .insert(neighbour.node_id(), Neighbour { cla, slots, retry, warnings, learned_max });
        self.redispatch().await
    }

    /// A neighbour is gone: nothing more is sent to it.
    pub fn neighbour_down(&self, neighbour: &Eid) {
        if lock(&self.inner.neighbours).remove(&neighbour.node_id()).is_some() {
            tracing::info!(neighbour = %neighbour, "neighbour down");
        }
    }

    /// The neighbours connected now.
    pub fn neighbours(&self) -> Vec<NeighbourInfo> {
        let max = self.inner.config.max_in_flight_per_neighbour.max(1);
        let mut list: Vec<NeighbourInfo> = lock(&self.inner.neighbours)
            .iter()
            .map(|(node_id, n)| NeighbourInfo {
                node_id: node_id.clone(),
                cla: n.cla.name().to_string(),
                in_flight: max.saturating_sub(n.slots.available_permits()),
            })
            .collect();
        list.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        list
    }

    /// Adds a static route to a node and dispatches what it opens up.
    pub async fn add_route(&self, route: Route) -> Result<(), AgentError> {
        let pattern = super::routing::EidPattern::Node(route.to.node_id());
        self.add_static_route(StaticRoute { pattern, via: route.via }).await
    }

    /// Adds a static route and dispatches what it opens up.
    pub async fn add_static_route(&self, route: StaticRoute) -> Result<(), AgentError> {
        lock(&self.inner.static_routes).add(route);
        self.redispatch().await
    }

    /// The static routes, in the order they are tried.
    pub fn static_routes(&self) -> Vec<StaticRoute> {
        lock(&self.inner.static_routes).routes().to_vec()
    }

    /// Plugs in a routing algorithm, consulted after direct neighbours and static routes.
    pub async fn set_router(&self, router: Arc<dyn Router>) -> Result<(), AgentError> {
        *lock(&self.inner.router) = Some(router);
        self.redispatch().await
    }

    /// Dispatches again every bundle waiting for a route that now has one.
    pub async fn redispatch(&self) -> Result<(), AgentError> {
        self.redispatch_waiting(false).await
    }

    /// As [`Agent::redispatch`]; `with_local` also dispatches bundles for this node that a crash
    /// left before their first dispatch.
    async fn redispatch_waiting(&self, with_local: bool) -> Result<(), AgentError> {
        if !with_local && lock(&self.inner.neighbours).is_empty() {
            return Ok(());
        }
        let mut after = 0;
        loop {
            let page = self.inner.store.by_state(StateKind::WaitingForRoute, None, after, SCAN_PAGE).await?;
            let Some(last) = page.last() else { return Ok(()) };
            after = last.id;
            for meta in page {
                if self.is_local(&meta.destination) {
                    if !with_local {
                        continue;
                    }
                    // Only the header is read: delivery reads the rest if it needs it.
                    if let Some((header, _)) = self.open_payload(meta.id).await {
                        self.dispatch_stored(meta.id, &header.primary).await;
                    }
                } else {
                    self.forward_if_routed(meta.id, &meta.destination, None, meta.received_at);
                }
            }
        }
    }

    /// Deletes every bundle whose lifetime has ended (RFC 9171 §5.10), reporting as asked.
    /// Returns how many. It pages through the store by expiry time once: a bundle whose delete
    /// fails is logged, counted and left for the next round, never looked at again in this one.
    pub async fn expire(&self) -> Result<usize, AgentError> {
        let now = self.inner.clock.now_dtn_ms();
        let mut expired = 0;
        let mut after = None;
        loop {
            let page = self.inner.store.next_expiring(after, EXPIRY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.expires_at, last.id));
            let due: Vec<_> = page.into_iter().take_while(|m| m.expires_at <= now).collect();
            let page_done = due.len() < EXPIRY_PAGE;
            for meta in due {
                // Only the header is read: the report needs the primary block and the length.
                let header = self.open_payload(meta.id).await.map(|(header, _)| header);
                if self.remove(meta.id, DeleteReason::Expired).await.is_none() {
                    continue;
                }
                Counters::bump(&self.inner.counters.expired);
                expired += 1;
                if let Some(header) = header {
                    let len = header.payload.data_length;
                    self.report(&header.primary, len, Status::Deleted, ReasonCode::LIFETIME_EXPIRED).await;
                }
            }
            if page_done {
                break;
            }
        }
        // Bundles remembered as delivered or forwarded are forgotten once they expire (a page
        // per round: the housekeeping comes back every second).
        if let Err(error) = self.inner.store.forget_handled(now, 10_000).await {
            Counters::bump(&self.inner.counters.store_errors);
            tracing::error!(%error, "forgetting expired records of handled bundles failed");
        }
        Ok(expired)
    }

    /// Removes a bundle from the store for `reason`; `None` (logged once with the bundle's
    /// store id, and counted) when the store failed, `None` quietly when it was gone already.
    pub(super) async fn remove(
        &self,
        id: StoreId,
        reason: DeleteReason,
    ) -> Option<crate::store::StoredBundle> {
        match self.inner.store.delete(id, reason.clone()).await {
            Ok(meta) => Some(meta),
            Err(StoreError::NotFound(_)) => None,
            Err(error) => {
                Counters::bump(&self.inner.counters.store_errors);
                tracing::error!(%error, store_id = id, %reason, "a bundle could not be removed from the store; it stays");
                None
            }
        }
    }

    /// The node's housekeeping, for ever: expiry every `period`, and every `retry_every`
    /// periods a new try for bundles whose forwarding failed while their neighbour stayed up.
    pub async fn maintain(self, period: Duration, retry_every: u32) {
        let mut ticks = 0u32;
        loop {
            let at = self.inner.clock.now_dtn_ms().saturating_add(millis(period));
            self.inner.clock.sleep_until(at).await;
            if let Err(error) = self.expire().await {
                tracing::error!(%error, "expiry failed");
            }
            ticks = ticks.wrapping_add(1);
            if retry_every > 0
                && ticks.is_multiple_of(retry_every)
                && let Err(error) = self.redispatch().await
            {
                tracing::error!(%error, "dispatching waiting bundles failed");
            }
        }
    }
}

/// A bundle arriving from a convergence layer in pieces ([`Agent::begin_receive`]): the pieces
/// go straight to the store, checked as they stream, so receiving a bundle of any size takes a
/// few buffers of memory. Nothing is stored, and nothing left behind, until
/// [`PendingReceive::commit`] returns; dropping it abandons the bundle.
#[derive(Debug)]
pub struct PendingReceive<S: Store> {
    agent: Agent<S>,
    insert: S::Pending,
    /// The header has been checked against the agent's parse policy.
    policy_checked: bool,
}

impl<S: Store> Agent<S> {
    /// Starts receiving a bundle whose bytes arrive in pieces (RFC 9171 §5.6).
    pub async fn begin_receive(&self) -> Result<PendingReceive<S>, AgentError> {
        Ok(PendingReceive {
            agent: self.clone(),
            insert: self.inner.store.begin_insert().await?,
            policy_checked: false,
        })
    }
}

impl<S: Store> PendingReceive<S> {
    /// The next bytes of the bundle; an error means the bundle is refused (invalid, too large,
    /// or the store failed) and the rest of it is to be dropped.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), AgentError> {
        self.insert.write(chunk).await.inspect_err(|_| Counters::bump(&self.agent.inner.counters.refused))?;
        self.check_policy()
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
                Counters::bump(&self.agent.inner.counters.refused);
                tracing::info!(%error, "a received bundle was refused");
                Err(AgentError::Invalid(error))
            }
            None => Ok(()),
        }
    }

    /// As [`PendingReceive::write`], taking the bytes of `chunk` rather than copying them:
    /// `chunk` comes back empty, with the capacity of a buffer written earlier.
    pub async fn write_owned(&mut self, chunk: &mut Vec<u8>) -> Result<(), AgentError> {
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
        let id = self.insert.header().map(|header| header.id());
        let store = self.agent.inner.store.clone();
        async move {
            let Some(id) = id else { return Ok(None) };
            Ok(Some(store.known(&id).await?))
        }
    }

    /// The bundle is complete: it is checked to its end, made durable and dispatched. `Ok`
    /// means it is durable here and the layer may acknowledge it to the sender.
    pub async fn commit(self) -> Result<Reception, AgentError> {
        let PendingReceive { agent, insert, .. } = self;
        let header = insert.header().cloned();
        let counters = &agent.inner.counters;
        let state = header.as_ref().map_or(BundleState::WaitingForRoute, |h| agent.initial_state(&h.primary));
        let recorded = state.kind() == StateKind::WaitingForApplication;
        let outcome = insert.commit(state).await.inspect_err(|error| {
            Counters::bump(&counters.refused);
            tracing::info!(%error, "a received bundle was refused");
        })?;
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
