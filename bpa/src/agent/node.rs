//! The bundle pipeline (RFC 9171 §5): reception → validation → durable store → dispatch →
//! forwarding to a neighbour or delivery to a local application; expiry; status reports.
//!
//! Every bundle is in the store, with a state saying what it waits for, before anything else
//! happens to it, so a crash or restart loses nothing: what was waiting is dispatched again by
//! [`Agent::start`], when a neighbour comes up, a route is added or an application connects.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

pub use super::config::AgentConfig;
use super::core::report::{Status, status_report};
use super::core::routing::{Router, StaticRoute};
use super::counters::{AgentStats, Counters};
pub use super::error::AgentError;
pub(super) use super::state::Neighbour;
use crate::admin::ReasonCode;
use crate::bundle::{Bundle, BundleHeader, CreationTimestamp, Eid, PrimaryBlock};
use crate::store::{BundleState, DeleteReason, PayloadContent, StateKind, Store, StoreError, StoreId};
use crate::time::Clock;

pub(super) use super::core::millis;

/// Bundles read per store query when the agent looks through a state (restart, redispatch).
pub(super) const SCAN_PAGE: usize = 1024;

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
    /// A custody record for this node (a BIBE PDU whose bundle was refused, a custody signal):
    /// acted on, nothing of it stored.
    Consumed,
}

/// A static route to a node: bundles for node `to` go via neighbour `via`. Shorthand for a
/// [`StaticRoute`] with a node pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination node.
    pub to: Eid,
    /// The neighbour bundles for it go to.
    pub via: Eid,
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
    /// The core that decides and the handles it decides over, under one short lock
    /// ([`super::state`]).
    pub state: super::state::Guarded,
    /// One reassembly at a time, so two last fragments cannot both complete an ADU. (Held
    /// across the store's writes, unlike the state's lock.)
    pub reassembly: tokio::sync::Mutex<super::core::coverage::Coverage>,
    /// Wakes the timer task when a timer is set.
    pub timers_changed: Arc<tokio::sync::Notify>,
    /// The timer task was started.
    pub timer_task: std::sync::atomic::AtomicBool,
    pub counters: Counters,
    /// Bytes a bundle grows by when this node forwards it (routing by volume counts them).
    pub forwarding_overhead: u64,
    /// Custody answers queued since the last signal batch (it goes at once past a threshold).
    pub signals_waiting: AtomicU64,
    /// A clean stop has begun ([`Agent::quiesce`]): timers no longer run, and a store closed
    /// under work still under way is expected, not an error.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Bundles of neighbours gone down being put back to wait for a route.
    pub requeues: std::sync::atomic::AtomicUsize,
}

pub(super) type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send>>;
pub(super) type BoxedFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl<S: Store> Agent<S> {
    /// An agent with `config` over `store`, on `clock`; [`Agent::start`] recovers what the store
    /// holds from an earlier run.
    pub fn new(config: AgentConfig, store: S, clock: Arc<dyn Clock>) -> Agent<S> {
        let forwarding_overhead = super::core::forward::forwarding_overhead(&config.node_id);
        let state = super::state::Guarded::new(super::state::State::new(&config));
        Agent {
            inner: Arc::new(Inner {
                config,
                store,
                clock,
                sequence: AtomicU64::new(0),
                state,
                reassembly: tokio::sync::Mutex::new(super::core::coverage::Coverage::default()),
                timers_changed: Arc::new(tokio::sync::Notify::new()),
                timer_task: std::sync::atomic::AtomicBool::new(false),
                counters: Counters::default(),
                forwarding_overhead,
                signals_waiting: AtomicU64::new(0),
                stopping: std::sync::atomic::AtomicBool::new(false),
                requeues: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// The core and the handles, for one decision: let go before any `.await`.
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, super::state::State> {
        self.inner.state.lock()
    }

    /// This node's ID.
    pub fn node_id(&self) -> &Eid {
        &self.inner.config.node_id
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// Its store.
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
        self.dispatch_local_waiting().await?;
        self.resume_custody().await?;
        self.redispatch().await
    }

    pub(super) fn next_timestamp(&self) -> CreationTimestamp {
        CreationTimestamp {
            time: self.inner.clock.now_dtn_ms(),
            sequence: self.inner.sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(super) async fn originate(&self, bundle: Bundle) -> Result<StoreId, AgentError> {
        self.originate_with(bundle, None).await
    }

    /// [`Agent::originate`], taking the bundle into custody when `custody` is given.
    pub(super) async fn originate_with(
        &self,
        bundle: Bundle,
        custody: Option<crate::store::CustodyIntake>,
    ) -> Result<StoreId, AgentError> {
        let id = self
            .inner
            .store
            .insert_with(Bytes::from(bundle.encode()), BundleState::WaitingForRoute, custody)
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

    /// The neighbour a bundle for `destination` goes to now, passing over the neighbour `except`
    /// (one that refused the bundle).
    pub(super) fn next_hop_except(
        &self,
        destination: &Eid,
        except: Option<&Eid>,
    ) -> Option<(Eid, Neighbour)> {
        self.state().next_hop(destination, except)
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
    pub(super) async fn dispatch_with(
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

    /// Adds a static route to a node and dispatches what it opens up.
    pub async fn add_route(&self, route: Route) -> Result<(), AgentError> {
        let pattern = super::core::routing::EidPattern::Node(route.to.node_id());
        self.add_static_route(StaticRoute { pattern, via: route.via }).await
    }

    /// Adds a static route and dispatches what it opens up.
    pub async fn add_static_route(&self, route: StaticRoute) -> Result<(), AgentError> {
        // Routes lead to nodes: `via` is a node ID whatever endpoint of it was named.
        let route = StaticRoute { via: route.via.node_id(), ..route };
        self.state().core.reach.static_routes.add(route);
        self.redispatch().await
    }

    /// The static routes, in the order they are tried.
    pub fn static_routes(&self) -> Vec<StaticRoute> {
        self.state().core.reach.static_routes.routes().to_vec()
    }

    /// Plugs in a routing algorithm, consulted after direct neighbours and static routes.
    pub async fn set_router(&self, router: Arc<dyn Router>) -> Result<(), AgentError> {
        self.state().core.reach.router = Some(router);
        self.redispatch().await
    }

    /// Every neighbour's queue reads the store again from its first waiting bundle: a route
    /// changed, so what waits may have one now.
    pub async fn redispatch(&self) -> Result<(), AgentError> {
        self.state().rescan_all();
        Ok(())
    }

    /// Dispatches bundles for this node that a crash left before their first dispatch (bundles
    /// for other nodes are read by the neighbours' queues).
    async fn dispatch_local_waiting(&self) -> Result<(), AgentError> {
        let mut after = 0;
        loop {
            let page = self.inner.store.by_state(StateKind::WaitingForRoute, None, after, SCAN_PAGE).await?;
            let Some(last) = page.last() else { return Ok(()) };
            after = last.id;
            for meta in page {
                // Only the header is read: delivery reads the rest if it needs it.
                if self.is_local(&meta.destination)
                    && let Some((header, _)) = self.open_payload(meta.id).await
                {
                    self.dispatch_stored(meta.id, &header.primary).await;
                }
            }
        }
    }
}
