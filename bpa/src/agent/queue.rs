//! One neighbour's queue (design §3.3): what waits for the neighbour is in the store, not in
//! memory. One task per neighbour feeds a bounded window of sends from two sources:
//!
//! - bundles dispatched to the neighbour while it is up, pushed with their bytes still in
//!   memory (at most [`PUSHED_MAX`]; past that they are left to the store and read from there);
//! - the store itself, read through a cursor over the bundles waiting for a route, a page at a
//!   time, taking those whose next hop is this neighbour.
//!
//! A bundle handed to the layer is recorded as in flight to the neighbour; it leaves the store
//! when the neighbour has it, or waits for a route again if the send fails. Nothing here grows
//! with the store: a neighbour that comes up to a million waiting bundles holds one page of
//! their metadata and at most `max_in_flight_per_neighbour` sends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::contacts::HeldBooking;
use super::core::BundleFacts;
use super::forwarder::InFlight;
use super::node::{Agent, Inner, Neighbour};
use crate::bundle::{Bundle, Eid};
use crate::store::{StateKind, Store, StoreId};

/// Bundles read from the store per page.
pub(super) const QUEUE_PAGE: usize = 512;

/// Bundles held in memory, pushed by dispatch, beyond those being sent.
pub(super) const PUSHED_MAX: usize = 256;

/// A bundle for the neighbour, as the queue holds it until a send slot is free.
#[derive(Debug)]
pub(super) struct Queued {
    pub id: StoreId,
    /// The bundle, when it is still in memory from its reception (saves reading it back).
    pub bundle: Option<Bundle>,
    /// When the store took it (DTN ms), for the Bundle Age.
    pub received_at: u64,
    /// This is a detour: the neighbour named refused the bundle first.
    pub refused_by: Option<Eid>,
    /// Volume booked on its planned route (given back unless it is sent).
    pub booking: Option<HeldBooking>,
}

/// The shared side of a neighbour's queue: the agent pushes and wakes, the queue's task takes.
#[derive(Debug, Default)]
pub(super) struct NeighbourQueue {
    pushed: Mutex<VecDeque<Queued>>,
    /// Read the store again from its first waiting bundle (a route changed, a retry is due).
    rescan: AtomicBool,
    /// Bundles were dispatched past `pushed`'s room: read on from the cursor.
    more: AtomicBool,
    wake: Notify,
    closed: AtomicBool,
    /// The task is parked with nothing to hand over: nothing pushed, the store read to its end
    /// since the last change, no bundle held for a send slot. Cleared by every wake-up.
    idle: AtomicBool,
}

impl NeighbourQueue {
    /// Queues a dispatched bundle. `always`: taken even past [`PUSHED_MAX`] (a detour, of which
    /// there are at most as many as sends in flight). Otherwise a full queue leaves the bundle
    /// in the store, where the cursor finds it.
    pub fn push(&self, queued: Queued, always: bool) {
        {
            let mut pushed = lock(&self.pushed);
            if always || pushed.len() < PUSHED_MAX {
                pushed.push_back(queued);
            } else {
                self.more.store(true, Ordering::SeqCst);
            }
        }
        self.wake();
    }

    /// Reads on from the cursor: bundles were stored that may go to this neighbour.
    pub fn read_on(&self) {
        self.more.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Reads the store again from the start: what waits may have a route to this neighbour now.
    pub fn rescan(&self) {
        self.rescan.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// The neighbour is gone: the task ends (sends under way finish on their own).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the task is parked with nothing to hand over (see [`Self::park`]).
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst)
    }

    /// After the work is recorded (pushed, flagged): the task is not idle, and runs.
    fn wake(&self) {
        self.idle.store(false, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The task found nothing to do: it is idle unless work came meanwhile. Marked first, then
    /// checked, while [`Self::wake`] records first and clears after, so `idle` is never left
    /// set with work waiting. Answers whether to wait.
    fn park(&self) -> bool {
        self.idle.store(true, Ordering::SeqCst);
        let work = !lock(&self.pushed).is_empty()
            || self.rescan.load(Ordering::SeqCst)
            || self.more.load(Ordering::SeqCst)
            || self.is_closed();
        if work {
            self.idle.store(false, Ordering::SeqCst);
        }
        !work
    }
}

/// Where the queue's task is in the store.
struct Cursor {
    /// The last store id read.
    after: StoreId,
    /// The end was reached: nothing more until woken.
    at_end: bool,
    /// Read, routed here, not yet sent: at most a page (with the volume booked for each on a
    /// planned route).
    page: VecDeque<(StoreId, u64, Option<HeldBooking>)>,
}

impl<S: Store> Agent<S> {
    /// The task that feeds a neighbour's sends until the neighbour goes down (or the agent is
    /// dropped: it holds the agent only while it works, not while it waits).
    pub(super) async fn run_queue(agent: Weak<Inner<S>>, hop: Eid, neighbour: Neighbour) {
        let queue = Arc::clone(&neighbour.queue);
        let mut cursor = Cursor { after: 0, at_end: false, page: VecDeque::new() };
        // The next bundle, claimed (no other send takes it), waiting for a send slot.
        let mut held: Option<(Queued, InFlight<S>)> = None;
        loop {
            if queue.is_closed() {
                return;
            }
            if queue.rescan.swap(false, Ordering::SeqCst) {
                cursor = Cursor { after: 0, at_end: false, page: VecDeque::new() };
            }
            if queue.more.swap(false, Ordering::SeqCst) {
                cursor.at_end = false;
            }
            let Some(inner) = agent.upgrade() else { return };
            let this = Agent { inner };
            if held.is_none() {
                held = this.next_claimed(&queue, &mut cursor);
            }
            match held.take() {
                Some((queued, claim)) => {
                    // At most `max_in_flight_per_neighbour` sends at once.
                    tokio::select! {
                        slot = Arc::clone(&neighbour.slots).acquire_owned() => {
                            let Ok(slot) = slot else { return };
                            this.start_send(queued, claim, hop.clone(), neighbour.clone(), slot);
                        }
                        // Closed, or told to read again: the bundle stays held meanwhile.
                        () = queue.wake.notified() => held = Some((queued, claim)),
                    }
                }
                None if !cursor.at_end => {
                    if let Err(error) = this.read_page(&hop, &mut cursor).await {
                        tracing::error!(
                            %error, neighbour = %hop,
                            "cannot read what waits for a neighbour; read again on the next change or retry"
                        );
                        cursor.at_end = true;
                    }
                }
                None => {
                    drop(this);
                    if queue.park() {
                        queue.wake.notified().await;
                    }
                }
            }
        }
    }

    /// The next bundle to send that no other send has: pushed ones first, then the page read.
    fn next_claimed(&self, queue: &NeighbourQueue, cursor: &mut Cursor) -> Option<(Queued, InFlight<S>)> {
        loop {
            let pushed = lock(&queue.pushed).pop_front();
            let queued = match pushed {
                Some(queued) => queued,
                None => {
                    let (id, received_at, booking) = cursor.page.pop_front()?;
                    Queued { id, bundle: None, received_at, refused_by: None, booking }
                }
            };
            if let Some(claim) = self.claim(queued.id, queued.refused_by.clone()) {
                return Some((queued, claim));
            }
        }
    }

    /// Reads the next page of bundles waiting for a route and keeps those that go to `hop`.
    async fn read_page(&self, hop: &Eid, cursor: &mut Cursor) -> Result<(), crate::store::StoreError> {
        let page =
            self.inner.store.by_state(StateKind::WaitingForRoute, None, cursor.after, QUEUE_PAGE).await?;
        cursor.at_end = page.len() < QUEUE_PAGE;
        if let Some(last) = page.last() {
            cursor.after = last.id;
        }
        // One look at the routes for the page.
        use routing::Router as _;
        let now = self.inner.clock.now_dtn_ms();
        let state = self.state();
        for meta in page {
            if self.is_local(&meta.destination) {
                continue;
            }
            // Routed by the size it will have on the wire, with this node's Previous Node block.
            let size = meta.length.saturating_add(self.inner.forwarding_overhead);
            let facts = BundleFacts { destination: &meta.destination, size, expiry: meta.expires_at, now };
            let Some((via, decision)) = state.next_hop_for(&facts) else { continue };
            if via != *hop {
                continue;
            }
            // Booked now, so the next bundle of the page sees the volume left.
            let booking = match (decision, &state.core.reach.contacts) {
                (Some(decision), Some(contacts)) => {
                    contacts.book(&decision).map(|booking| HeldBooking::new(contacts, booking))
                }
                _ => None,
            };
            cursor.page.push_back((meta.id, meta.received_at, booking));
        }
        Ok(())
    }
}

/// The queue's hand-over list: a panic in a task that held it leaves it as it was.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
