//! The neighbours' comings and goings, carried out: up with a queue of their own, down with
//! what was queued put back to wait, a clean stop that waits for sends under way, and whether
//! the agent is at rest. (Where bundles can go is the core's: `core::reach`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::node::*;
use super::queue::NeighbourQueue;
use crate::bundle::Eid;
use crate::cla::ConvergenceLayer;
use crate::store::{BundleState, StateKind, Store, StoreError};

/// A neighbour as [`Agent::neighbours`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourInfo {
    /// The neighbour's node ID.
    pub node_id: Eid,
    /// The convergence layer's name.
    pub cla: String,
    /// Bundles being handed over now.
    pub in_flight: usize,
    /// Its queue has nothing more to hand over: everything waiting for this neighbour that the
    /// store held at its last change was taken. With `in_flight` at 0, the neighbour is settled:
    /// nothing moves towards it until something changes (a bundle arrives, a route, a retry).
    pub queue_idle: bool,
}

impl<S: Store> Agent<S> {
    /// A neighbour is reachable through `cla`: what waits for it is sent, read from the store by
    /// the neighbour's queue.
    pub async fn neighbour_up(
        &self,
        neighbour: Eid,
        cla: Arc<dyn ConvergenceLayer>,
    ) -> Result<(), AgentError> {
        tracing::info!(neighbour = %neighbour, cla = cla.name(), "neighbour up");
        let node = neighbour.node_id();
        let slots = self.inner.config.max_in_flight_per_neighbour.max(1);
        let (entry, replaced) = self.state().neighbour_up(node.clone(), |link| Neighbour {
            cla,
            queue: Arc::new(NeighbourQueue::default()),
            slots: Arc::new(Semaphore::new(slots)),
            link,
            learned_max: Arc::new(AtomicU64::new(u64::MAX)),
        });
        if let Some(old) = replaced {
            old.queue.close();
        }
        tokio::spawn(Self::run_queue(Arc::downgrade(&self.inner), node, entry));
        Ok(())
    }

    /// A neighbour is gone: nothing more is sent to it. Bundles queued for it wait for a route
    /// again (those being sent find the link down and do so themselves).
    pub fn neighbour_down(&self, neighbour: &Eid) {
        let node = neighbour.node_id();
        let Some(gone) = self.state().neighbour_down(&node) else { return };
        gone.queue.close();
        tracing::info!(neighbour = %neighbour, "neighbour down");
        let agent = self.clone();
        self.inner.requeues.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(error) = agent.requeue(&node).await {
                if agent.stopped_under(&error) {
                    tracing::info!(neighbour = %node, "the node stopped before bundles queued for a neighbour that went down waited for a route again; they do at the next start");
                } else {
                    tracing::error!(%error, neighbour = %node, "bundles queued for a neighbour that went down could not be made to wait for a route; they do on the next start");
                }
            }
            agent.inner.requeues.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Begins a clean stop and waits, up to `grace`, for what is under way — sends being
    /// completed, bundles of neighbours that went down being put back — to be recorded in the
    /// store, so that it can be closed with nothing half done (an exported file recorded as
    /// forwarded, not exported again at the next start). Timers stop at once. Call it after the
    /// convergence layers were shut down (their sends then end) and before closing the store;
    /// answers how many were still under way at the end of the grace (they are done again at
    /// the next start, from what the store says).
    pub async fn quiesce(&self, grace: Duration) -> usize {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.stop_housekeeping();
        self.inner.timers_changed.notify_one();
        // Every neighbour goes down now, whatever its layer says later (a connection may close
        // after this returns): what was queued for it is put back to wait before the store
        // closes, not after.
        let neighbours: Vec<Eid> = self.state().core.neighbours();
        for neighbour in &neighbours {
            self.neighbour_down(neighbour);
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let busy = self.state().core.in_flight() + self.inner.requeues.load(Ordering::SeqCst);
            if busy == 0 || tokio::time::Instant::now() >= deadline {
                return busy;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether `error` is the store having closed under a clean stop (expected: the work is
    /// done again at the next start), rather than a failure to report.
    pub(super) fn stopped_under(&self, error: &AgentError) -> bool {
        self.stopping() && matches!(error, AgentError::Store(StoreError::Closed))
    }

    /// Whether a clean stop has begun ([`Agent::quiesce`]).
    pub(super) fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Bundles queued for `node` wait for a route again, a page at a time.
    async fn requeue(&self, node: &Eid) -> Result<(), AgentError> {
        let store = &self.inner.store;
        let name = node.to_string();
        loop {
            // Each page leaves the state, so the next is read from the start again.
            let page = store.by_state(StateKind::QueuedFor, Some(&name), 0, SCAN_PAGE).await?;
            if page.is_empty() {
                return Ok(());
            }
            if self.state().core.is_up(node) {
                return Ok(()); // back up: its queue sends them
            }
            for meta in page {
                match store.set_state(meta.id, BundleState::WaitingForRoute).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            self.redispatch().await?;
        }
    }

    /// The neighbours connected now.
    pub fn neighbours(&self) -> Vec<NeighbourInfo> {
        let max = self.inner.config.max_in_flight_per_neighbour.max(1);
        let mut list: Vec<NeighbourInfo> = self
            .state()
            .links
            .iter()
            .map(|(node_id, n)| NeighbourInfo {
                node_id: node_id.clone(),
                cla: n.cla.name().to_string(),
                in_flight: max.saturating_sub(n.slots.available_permits()),
                queue_idle: n.queue.is_idle(),
            })
            .collect();
        list.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        list
    }

    /// Whether nothing moves towards any neighbour now: each queue has taken everything the
    /// store held for it at its last change, and no send is under way (each failure recorded,
    /// its retry set). Work can start again on any change: a bundle, a route, a retry due.
    pub fn neighbours_settled(&self) -> bool {
        self.neighbours().iter().all(|n| n.queue_idle && n.in_flight == 0)
    }

    /// Whether the agent has nothing under way: no timer due or being fired, every neighbour
    /// settled ([`Agent::neighbours_settled`]), no bundle being forwarded, none of a neighbour
    /// gone down being put back, and every in-process application's reader parked with nothing
    /// unread. Then nothing changes until an input comes (a bundle, a neighbour, a request) or
    /// the clock reaches the next timer — a fact a test on virtual time waits for instead of a
    /// pause. A send waiting inside a layer counts as under way, and so does a reader whose
    /// application does not take what it was given.
    pub fn is_idle(&self) -> bool {
        let now = self.inner.clock.now_dtn_ms();
        let quiet = {
            let state = self.state();
            (self.stopping() || state.core.timers_quiet(now))
                && state.core.in_flight() == 0
                && state.applications.values().flatten().all(super::applications::Connection::is_idle)
        };
        quiet && self.neighbours_settled() && self.inner.requeues.load(Ordering::SeqCst) == 0
    }
}
