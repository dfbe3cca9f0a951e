//! The bundle pipeline (RFC 9171 §5): reception → validation → durable store → dispatch →
//! forwarding to a neighbour or delivery to a local application; expiry; status reports.
//!
//! Every bundle is in the store, with a state saying what it waits for, before anything else
//! happens to it, so a crash or restart loses nothing: what was waiting is dispatched again when
//! a neighbour comes up or an application registers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::forward::{ForwardError, prepare_for_forwarding};
use super::report::{ReportPolicy, Status, status_report};
use crate::admin::ReasonCode;
use crate::bundle::{
    Bundle, BundleBuilder, BundleError, BundleFlags, CreationTimestamp, Eid, ParseOptions, PrimaryBlock,
};
use crate::cla::ConvergenceLayer;
use crate::store::{BundleState, DeleteReason, InsertOutcome, StateKind, Store, StoreError, StoreId};
use crate::time::Clock;

/// How a node behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's ID (`ipn:N.0` or `dtn://node/`).
    pub node_id: Eid,
    /// How received bundles are parsed (leniency for peers that need it).
    pub parse: ParseOptions,
    /// Whether and how status reports are sent.
    pub reports: ReportPolicy,
}

/// Why the agent refused something.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the bundle is refused: {0}")]
    Invalid(#[from] BundleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The answer to a received bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reception {
    /// Durably stored under this id.
    Accepted(StoreId),
    /// Already held (RFC 9171 §5.6): nothing more is done.
    Duplicate(StoreId),
}

/// A bundle handed to a local application; it stays stored until [`Agent::acknowledge`].
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: StoreId,
    pub bundle: Bundle,
}

/// A static route: bundles for node `to` go via neighbour `via`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub to: Eid,
    pub via: Eid,
}

/// The agent of one node. Cheap to clone.
#[derive(Debug)]
pub struct Agent<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Agent<S> {
    fn clone(&self) -> Self {
        Agent { inner: Arc::clone(&self.inner) }
    }
}

#[derive(Debug)]
struct Inner<S> {
    config: AgentConfig,
    store: S,
    clock: Arc<dyn Clock>,
    sequence: AtomicU64,
    neighbours: Mutex<HashMap<Eid, Arc<dyn ConvergenceLayer>>>,
    routes: Mutex<Vec<Route>>,
    applications: Mutex<HashMap<Eid, mpsc::UnboundedSender<Delivery>>>,
}

type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
                routes: Mutex::new(Vec::new()),
                applications: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn node_id(&self) -> &Eid {
        &self.inner.config.node_id
    }

    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// A bundle from a convergence layer (RFC 9171 §5.6). `Ok` means it is durable here: the
    /// layer may acknowledge it to the sender.
    pub async fn receive(&self, encoded: Bytes) -> Result<Reception, AgentError> {
        let bundle = Bundle::parse(&encoded, &self.inner.config.parse)?;
        match self.inner.store.insert(encoded, BundleState::WaitingForRoute).await? {
            InsertOutcome::Duplicate(id) => Ok(Reception::Duplicate(id)),
            InsertOutcome::Stored(id) => {
                self.report(
                    bundle.primary(),
                    bundle.payload().len() as u64,
                    Status::Received,
                    ReasonCode::NO_ADDITIONAL_INFORMATION,
                )
                .await;
                self.dispatch(id, bundle).await;
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
        let bundle = BundleBuilder::new(source, destination, self.next_timestamp(), lifetime_ms)
            .report_to(self.inner.config.node_id.clone())
            .flags(flags)
            .payload(payload)
            .build()?;
        self.originate(bundle).await
    }

    fn next_timestamp(&self) -> CreationTimestamp {
        CreationTimestamp {
            time: self.inner.clock.now_dtn_ms(),
            sequence: self.inner.sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    async fn originate(&self, bundle: Bundle) -> Result<StoreId, AgentError> {
        let id =
            self.inner.store.insert(Bytes::from(bundle.encode()), BundleState::WaitingForRoute).await?.id();
        self.dispatch(id, bundle).await;
        Ok(id)
    }

    fn is_local(&self, destination: &Eid) -> bool {
        destination.node_id() == self.inner.config.node_id.node_id()
    }

    fn next_hop(&self, destination: &Eid) -> Option<(Eid, Arc<dyn ConvergenceLayer>)> {
        let node = destination.node_id();
        let neighbours = lock(&self.inner.neighbours);
        if let Some(cla) = neighbours.get(&node) {
            return Some((node, Arc::clone(cla)));
        }
        let routes = lock(&self.inner.routes);
        let via = routes.iter().find(|r| r.to == node).map(|r| r.via.clone())?;
        neighbours.get(&via).map(|cla| (via, Arc::clone(cla)))
    }

    /// Decides what happens to a stored bundle now (RFC 9171 §5.3): local delivery, forwarding,
    /// or waiting.
    ///
    /// Boxed: dispatching can send a status report, which is dispatched in turn.
    fn dispatch(&self, id: StoreId, bundle: Bundle) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.dispatch_now(id, bundle))
    }

    async fn dispatch_now(&self, id: StoreId, bundle: Bundle) {
        let destination = bundle.primary().destination.clone();
        if self.is_local(&destination) {
            let state = BundleState::WaitingForApplication { endpoint: destination.to_string() };
            if let Err(error) = self.inner.store.set_state(id, state).await {
                tracing::error!(%error, store_id = id, "cannot record a bundle as waiting for its application");
                return;
            }
            let app = lock(&self.inner.applications).get(&destination).cloned();
            if let Some(app) = app {
                let _ = app.send(Delivery { id, bundle });
            }
            return;
        }
        let Some((peer, cla)) = self.next_hop(&destination) else {
            return; // stays WaitingForRoute until a neighbour or route appears
        };
        let task: BoxedTask = Box::pin(self.clone().forward(id, bundle, peer, cla));
        tokio::spawn(task);
    }

    /// Sends one bundle to a neighbour (RFC 9171 §5.4).
    async fn forward(self, id: StoreId, mut bundle: Bundle, peer: Eid, cla: Arc<dyn ConvergenceLayer>) {
        let store = &self.inner.store;
        let received_at = match store.get(id).await {
            Ok(Some(meta)) => meta.received_at,
            _ => return, // gone meanwhile (expired, deleted)
        };
        let residence = self.inner.clock.now_dtn_ms().saturating_sub(received_at);
        let subject = bundle.primary().clone();
        let payload_len = bundle.payload().len() as u64;
        if let Err(ForwardError::HopLimitExceeded { .. }) =
            prepare_for_forwarding(&mut bundle, &self.inner.config.node_id, residence)
        {
            self.delete(id, &subject, payload_len, ReasonCode::HOP_LIMIT_EXCEEDED).await;
            return;
        }
        let neighbour = peer.to_string();
        if store.set_state(id, BundleState::InFlight { neighbour: neighbour.clone() }).await.is_err() {
            return;
        }
        match cla.send(&peer, Bytes::from(bundle.encode())).await {
            Ok(()) => {
                if store.delete(id, DeleteReason::Forwarded { neighbour }).await.is_ok() {
                    self.report(
                        &subject,
                        payload_len,
                        Status::Forwarded,
                        ReasonCode::NO_ADDITIONAL_INFORMATION,
                    )
                    .await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, store_id = id, cla = cla.name(), "forwarding failed; the bundle waits for the next chance");
                let _ = store.set_state(id, BundleState::WaitingForRoute).await;
            }
        }
    }

    async fn delete(&self, id: StoreId, subject: &PrimaryBlock, payload_len: u64, reason: ReasonCode) {
        let why = if reason == ReasonCode::LIFETIME_EXPIRED {
            DeleteReason::Expired
        } else {
            DeleteReason::Discarded { reason_code: reason.0 }
        };
        if self.inner.store.delete(id, why).await.is_ok() {
            self.report(subject, payload_len, Status::Deleted, reason).await;
        }
    }

    /// Sends the status report `subject` asked for, if any (RFC 9171 §5.1).
    async fn report(&self, subject: &PrimaryBlock, payload_len: u64, status: Status, reason: ReasonCode) {
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
            Ok(Some(report)) => {
                if let Err(error) = self.originate(report).await {
                    tracing::warn!(%error, "a status report could not be stored");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "a status report could not be made"),
        }
    }

    /// Registers a local application endpoint: bundles for it that are waiting, and every later
    /// one, are handed over until the returned receiver is dropped.
    pub async fn register(&self, endpoint: Eid) -> Result<mpsc::UnboundedReceiver<Delivery>, AgentError> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.applications).insert(endpoint.clone(), tx.clone());
        let waiting = self
            .inner
            .store
            .by_state(StateKind::WaitingForApplication, Some(&endpoint.to_string()), usize::MAX)
            .await?;
        for meta in waiting {
            if let Some(bundle) = self.load(meta.id).await {
                let _ = tx.send(Delivery { id: meta.id, bundle });
            }
        }
        Ok(rx)
    }

    /// The application has the bundle: it leaves the store, and a delivery report goes out if
    /// asked for (RFC 9171 §5.7).
    pub async fn acknowledge(&self, delivery: &Delivery) -> Result<(), AgentError> {
        self.inner.store.delete(delivery.id, DeleteReason::Delivered).await?;
        let b = &delivery.bundle;
        self.report(
            b.primary(),
            b.payload().len() as u64,
            Status::Delivered,
            ReasonCode::NO_ADDITIONAL_INFORMATION,
        )
        .await;
        Ok(())
    }

    async fn load(&self, id: StoreId) -> Option<Bundle> {
        let bytes = self.inner.store.open_data(id).await.ok()?.into_bytes().await.ok()?;
        Bundle::parse(&bytes, &self.inner.config.parse).ok()
    }

    /// A neighbour is reachable through `cla`: bundles waiting for a route are dispatched again.
    pub async fn neighbour_up(
        &self,
        neighbour: Eid,
        cla: Arc<dyn ConvergenceLayer>,
    ) -> Result<(), AgentError> {
        lock(&self.inner.neighbours).insert(neighbour.node_id(), cla);
        self.redispatch().await
    }

    /// A neighbour is gone: nothing more is sent to it.
    pub fn neighbour_down(&self, neighbour: &Eid) {
        lock(&self.inner.neighbours).remove(&neighbour.node_id());
    }

    /// Adds a static route and dispatches what it opens up.
    pub async fn add_route(&self, route: Route) -> Result<(), AgentError> {
        lock(&self.inner.routes).push(Route { to: route.to.node_id(), via: route.via.node_id() });
        self.redispatch().await
    }

    async fn redispatch(&self) -> Result<(), AgentError> {
        let waiting = self.inner.store.by_state(StateKind::WaitingForRoute, None, usize::MAX).await?;
        for meta in waiting {
            if self.next_hop(&meta.destination).is_some()
                && let Some(bundle) = self.load(meta.id).await
            {
                self.dispatch(meta.id, bundle).await;
            }
        }
        Ok(())
    }

    /// Deletes every bundle whose lifetime has ended (RFC 9171 §5.10), reporting as asked.
    /// Returns how many.
    pub async fn expire(&self) -> Result<usize, AgentError> {
        let now = self.inner.clock.now_dtn_ms();
        let mut expired = 0;
        loop {
            let due: Vec<_> = self
                .inner
                .store
                .next_expiring(100)
                .await?
                .into_iter()
                .filter(|m| m.expires_at <= now)
                .collect();
            if due.is_empty() {
                return Ok(expired);
            }
            for meta in due {
                match self.load(meta.id).await {
                    Some(bundle) => {
                        let payload_len = bundle.payload().len() as u64;
                        self.delete(meta.id, bundle.primary(), payload_len, ReasonCode::LIFETIME_EXPIRED)
                            .await;
                    }
                    None => {
                        let _ = self.inner.store.delete(meta.id, DeleteReason::Expired).await;
                    }
                }
                expired += 1;
            }
        }
    }
}
