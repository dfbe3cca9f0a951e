//! Local delivery (RFC 9171 §5.7): persistent registrations, connected applications, the echo
//! service, reassembly of fragments addressed to this node (§5.9), and the administrative
//! records the agent consumes itself.
//!
//! A bundle for a local endpoint waits in the store (`WaitingForApplication`) until an
//! application connected to that endpoint acknowledges it; only then is it deleted. Bundles for
//! local endpoints nobody registered wait too, until their lifetime ends, so a late
//! registration still finds them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::applications::{Connection, Delivery, FeedWake, SUBSCRIPTION_WINDOW, Subscription, Watcher};
use super::core::fragment::adu_key;
use super::core::report::Status;
use super::counters::Counters;
use super::node::{Agent, AgentError, Inner};
use crate::admin::ReasonCode;
use crate::bundle::{Bundle, BundleBuilder, BundleHeader, Eid, PrimaryBlock};
use crate::store::{BundleState, DeleteReason, PayloadContent, StateKind, Store, StoreId};

/// The echo service's number on an ipn node (the one other agents' ping tools use).
pub const ECHO_SERVICE: u64 = 7;
/// The echo service's demultiplexing token on a dtn node.
pub const ECHO_DEMUX: &str = "echo";

/// Whether `eid` is an echo service endpoint.
pub fn is_echo_endpoint(eid: &Eid) -> bool {
    match eid {
        Eid::Ipn { service, .. } => *service == ECHO_SERVICE,
        Eid::Dtn { demux, .. } => &**demux == ECHO_DEMUX,
        Eid::Null => false,
    }
}

/// Bundles over this size sent to the echo service are not answered.
pub const MAX_ECHO_PAYLOAD: u64 = 1 << 20;

impl<S: Store> Agent<S> {
    /// Local delivery of a stored bundle addressed to this node. `bundle` is `None` when it is
    /// not in memory (a large bundle streamed into the store): it is then read only if an
    /// in-process subscriber or the echo service needs it whole.
    /// The state a received bundle is stored in: waiting for its application when it is a
    /// whole bundle for an endpoint of this node that no agent service takes (so delivery need
    /// not write the state again, one durable write less per bundle), otherwise waiting for a
    /// route, from where dispatch decides.
    pub(super) fn initial_state(&self, primary: &PrimaryBlock) -> BundleState {
        let destination = &primary.destination;
        let for_a_service = (self.inner.config.echo && is_echo_endpoint(destination))
            || (primary.flags.is_admin_record() && *destination == self.inner.config.node_id);
        if self.is_local(destination) && primary.fragment.is_none() && !for_a_service {
            BundleState::WaitingForApplication { endpoint: destination.to_string() }
        } else {
            BundleState::WaitingForRoute
        }
    }

    pub(super) async fn deliver_locally(
        &self,
        id: StoreId,
        primary: &PrimaryBlock,
        bundle: Option<Bundle>,
        waiting_recorded: bool,
    ) {
        let store = &self.inner.store;
        if let Some(fragment) = primary.fragment {
            let adu = adu_key(primary);
            if let Err(error) =
                store.set_state(id, BundleState::AwaitingReassembly { adu: adu.clone() }).await
            {
                tracing::error!(%error, store_id = id, "cannot record a fragment as awaiting reassembly");
                return;
            }
            self.fragment_arrived(&adu, id, fragment.total_adu_length).await;
            return;
        }
        let destination = &primary.destination;
        if self.inner.config.echo && is_echo_endpoint(destination) && !primary.flags.is_admin_record() {
            self.echo(id, primary, bundle).await;
            return;
        }
        let connected = self.connected(destination);
        if connected.is_empty()
            && primary.flags.is_admin_record()
            && *destination == self.inner.config.node_id
            && !self.is_registered(destination).await
        {
            // BIBE PDUs and custody signals are custody's; status reports and other records
            // to this node's administrative endpoint that no application watches are taken by
            // the agent (they are logged) instead of being kept.
            if primary.fragment.is_none()
                && let Some((header, content)) = self.open_payload(id).await
            {
                let from = primary.source.node_id();
                match self.take_stored_record(&from, content, header.payload.data_length).await {
                    Ok(true) => {
                        // Its contents are durable elsewhere now; a crash before this line
                        // takes it again, which answers "redundant".
                        let _ = self.remove(id, DeleteReason::Delivered).await;
                        return;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, store_id = id, "a custody record could not be taken; tried again at the next start");
                        return;
                    }
                }
            }
            tracing::info!(
                source = %primary.source, creation = primary.creation.time, sequence = primary.creation.sequence,
                "administrative record received"
            );
            if self.remove(id, DeleteReason::Delivered).await.is_some() {
                Counters::bump(&self.inner.counters.delivered);
            }
            return;
        }
        let state = BundleState::WaitingForApplication { endpoint: destination.to_string() };
        if !waiting_recorded && let Err(error) = store.set_state(id, state).await {
            tracing::error!(%error, store_id = id, "cannot record a bundle as waiting for its application");
            return;
        }
        drop(bundle); // applications read it from the store
        let mut closed = false;
        for app in connected {
            closed |= match app {
                Connection::Feed { wake, deliveries } => {
                    wake.wake();
                    deliveries.is_closed()
                }
                // Full means a wake-up is waiting already.
                Connection::Wake(tx) => matches!(tx.try_send(id), Err(mpsc::error::TrySendError::Closed(_))),
            };
        }
        if closed && let Some(apps) = self.state().applications.get_mut(destination) {
            apps.retain(|c| !c.is_closed());
        }
    }

    /// The applications connected to `endpoint` now.
    fn connected(&self, endpoint: &Eid) -> Vec<Connection> {
        let state = self.state();
        state
            .applications
            .get(endpoint)
            .map(|list| list.iter().filter(|c| !c.is_closed()).cloned().collect())
            .unwrap_or_default()
    }

    /// Registers `endpoint` for good and connects, as [`Agent::register`], but hands over only
    /// bundles dispatched from now on: for callers that read what already waits with
    /// [`Agent::oldest_waiting`] and use the subscription as a wake-up.
    pub async fn watch(&self, endpoint: Eid) -> Result<Watcher, AgentError> {
        self.ensure_registered(&endpoint).await?;
        let (tx, receiver) = mpsc::channel(1);
        let mut state = self.state();
        let list = state.applications.entry(endpoint.clone()).or_default();
        list.retain(|c| !c.is_closed());
        list.push(Connection::Wake(tx));
        drop(state);
        Ok(Watcher { endpoint, receiver })
    }

    /// Records `endpoint` as registered unless it already is: receivers poll, and a poll must
    /// not cost a durable write.
    async fn ensure_registered(&self, endpoint: &Eid) -> Result<(), AgentError> {
        if !self.is_local(endpoint) {
            return Err(AgentError::NotLocal {
                endpoint: endpoint.clone(),
                node: self.inner.config.node_id.clone(),
            });
        }
        if !self.inner.store.registrations().await?.contains(endpoint) {
            self.inner.store.set_registration(endpoint, true).await?;
        }
        Ok(())
    }

    /// The oldest bundle waiting for `endpoint` that its application has not acknowledged: its
    /// store id, its header and its payload content ready to stream (not read into memory).
    pub async fn oldest_waiting(
        &self,
        endpoint: &Eid,
    ) -> Result<Option<(StoreId, BundleHeader, PayloadContent)>, AgentError> {
        // A few at a time: one found damaged (quarantined, logged) is passed over for the next.
        let waiting = self
            .inner
            .store
            .by_state(StateKind::WaitingForApplication, Some(&endpoint.to_string()), 0, 8)
            .await?;
        for meta in waiting {
            if let Some((header, content)) = self.open_payload(meta.id).await {
                return Ok(Some((meta.id, header, content)));
            }
        }
        Ok(None)
    }

    /// Acknowledges by store id a bundle waiting for `endpoint` ([`Agent::acknowledge`]).
    /// `Ok(false)` when no such bundle waits for that endpoint.
    pub async fn acknowledge_stored(&self, endpoint: &Eid, id: StoreId) -> Result<bool, AgentError> {
        let expected = BundleState::WaitingForApplication { endpoint: endpoint.to_string() };
        match self.inner.store.get(id).await? {
            Some(meta) if meta.state == expected => {}
            _ => return Ok(false),
        }
        let Some((header, _)) = self.open_payload(id).await else { return Ok(false) };
        match self.delivered(id, &header.primary, header.payload.data_length).await {
            Ok(()) => Ok(true),
            Err(AgentError::Store(crate::store::StoreError::NotFound(_))) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn is_registered(&self, endpoint: &Eid) -> bool {
        match self.inner.store.registrations().await {
            Ok(list) => list.contains(endpoint),
            Err(error) => {
                tracing::error!(%error, "cannot read registrations");
                true // keep the bundle: nothing is lost on a doubt
            }
        }
    }

    /// Answers an echo request: the same payload back to its source, from the echo endpoint.
    /// Requests with payloads over [`MAX_ECHO_PAYLOAD`] are deleted unanswered (reason "traffic
    /// pared"): an echo is for reachability, and its reply is built in memory.
    async fn echo(&self, id: StoreId, p: &PrimaryBlock, request: Option<Bundle>) {
        let (request_len, content) = match request {
            Some(bundle) => (bundle.payload().len() as u64, PayloadContent::Memory(bundle.payload().clone())),
            None => match self.open_payload(id).await {
                Some((header, content)) => (header.payload.data_length, content),
                None => return,
            },
        };
        if request_len > MAX_ECHO_PAYLOAD {
            tracing::warn!(
                store_id = id,
                length = request_len,
                limit = MAX_ECHO_PAYLOAD,
                "an echo request's payload is over the limit; deleted unanswered"
            );
            self.delete(id, p, request_len, ReasonCode::TRAFFIC_PARED).await;
            return;
        }
        let payload = match content {
            PayloadContent::Memory(bytes) => bytes,
            PayloadContent::File(mut reader) => {
                // At most MAX_ECHO_PAYLOAD bytes (checked above).
                let mut bytes = Vec::with_capacity(request_len as usize);
                if let Err(error) = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut bytes).await {
                    tracing::error!(%error, store_id = id, "an echo request cannot be read; it stays stored");
                    return;
                }
                Bytes::from(bytes)
            }
        };
        if !p.source.is_null() {
            let reply = BundleBuilder::new(
                p.destination.clone(),
                p.source.clone(),
                self.next_timestamp(),
                p.lifetime,
            )
            .payload(payload)
            .build();
            match reply {
                Ok(reply) => {
                    if let Err(error) = self.originate(reply).await {
                        // The request stays stored; it is answered on the next start.
                        tracing::warn!(%error, "an echo reply could not be stored");
                        return;
                    }
                    Counters::bump(&self.inner.counters.echoed);
                }
                Err(error) => tracing::warn!(%error, "an echo reply could not be made"),
            }
        }
        if self.remove(id, DeleteReason::Delivered).await.is_some() {
            Counters::bump(&self.inner.counters.delivered);
            self.report(p, request_len, Status::Delivered, ReasonCode::NO_ADDITIONAL_INFORMATION).await;
        }
    }

    /// Registers a local application endpoint for good (it survives restarts) and connects to
    /// it: the bundles waiting for it, and every later one, come through the subscription until
    /// it is dropped. Several connections to one endpoint each get every new bundle.
    pub async fn register(&self, endpoint: Eid) -> Result<Subscription, AgentError> {
        self.ensure_registered(&endpoint).await?;
        let (deliveries, receiver) = mpsc::channel(SUBSCRIPTION_WINDOW);
        let wake = Arc::new(FeedWake::default());
        self.state()
            .applications
            .entry(endpoint.clone())
            .or_default()
            .push(Connection::Feed { wake: Arc::clone(&wake), deliveries: deliveries.clone() });
        tracing::info!(%endpoint, "application connected");
        tokio::spawn(Self::feed(Arc::downgrade(&self.inner), endpoint.clone(), wake, deliveries));
        Ok(Subscription { endpoint, receiver })
    }

    /// An in-process application's reading task: the bundles waiting for `endpoint`, oldest
    /// first, a page at a time, each once; then it waits to be woken by the next arrival. It
    /// ends when the application drops its subscription, or finds the agent gone; it holds the
    /// agent only while it reads the store, not while it waits.
    async fn feed(
        agent: std::sync::Weak<Inner<S>>,
        endpoint: Eid,
        wake: Arc<FeedWake>,
        deliveries: mpsc::Sender<Delivery>,
    ) {
        let name = endpoint.to_string();
        let mut after = 0;
        loop {
            let seen = wake.wakes.load(Ordering::SeqCst);
            let page = {
                let Some(inner) = agent.upgrade() else { return };
                let state = StateKind::WaitingForApplication;
                inner.store.by_state(state, Some(&name), after, SUBSCRIPTION_WINDOW).await
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, %endpoint, "cannot read the bundles waiting for an application; read again at the next arrival");
                    Vec::new()
                }
            };
            if page.is_empty() {
                if !wake.park(seen) {
                    continue;
                }
                tokio::select! {
                    () = wake.notify.notified() => continue,
                    () = deliveries.closed() => return,
                }
            }
            wake.idle.store(false, Ordering::SeqCst);
            for meta in page {
                after = meta.id;
                let bundle = {
                    let Some(inner) = agent.upgrade() else { return };
                    Agent { inner }.load(meta.id).await
                };
                let Some(bundle) = bundle else { continue };
                if deliveries.send(Delivery { id: meta.id, bundle }).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Forgets a registration and disconnects its application. Bundles already waiting for it
    /// stay until they expire (or it registers again).
    pub async fn unregister(&self, endpoint: &Eid) -> Result<(), AgentError> {
        self.inner.store.set_registration(endpoint, false).await?;
        self.state().applications.remove(endpoint);
        Ok(())
    }

    /// The registered endpoints, and whether an application is connected to each.
    pub async fn registrations(&self) -> Result<Vec<(Eid, bool)>, AgentError> {
        let registered = self.inner.store.registrations().await?;
        let state = self.state();
        let apps = &state.applications;
        Ok(registered
            .into_iter()
            .map(|eid| {
                let connected = apps.get(&eid).is_some_and(|list| list.iter().any(|c| !c.is_closed()));
                (eid, connected)
            })
            .collect())
    }

    /// The application has the bundle: it leaves the store, and a delivery report goes out if
    /// asked for (RFC 9171 §5.7).
    pub async fn acknowledge(&self, delivery: &Delivery) -> Result<(), AgentError> {
        let b = &delivery.bundle;
        self.delivered(delivery.id, b.primary(), b.payload().len() as u64).await
    }

    async fn delivered(
        &self,
        id: StoreId,
        primary: &PrimaryBlock,
        payload_len: u64,
    ) -> Result<(), AgentError> {
        self.inner.store.delete(id, DeleteReason::Delivered).await?;
        Counters::bump(&self.inner.counters.delivered);
        self.report(primary, payload_len, Status::Delivered, ReasonCode::NO_ADDITIONAL_INFORMATION).await;
        Ok(())
    }
}
