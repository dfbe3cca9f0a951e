//! One neighbour's queue (design §3.3): what waits for the neighbour is in the store, not in
//! memory. One task per neighbour feeds a bounded window of sends from two sources:
//!
//! - bundles dispatched to the neighbour while it is up, pushed with their bytes still in
//!   memory (at most [`PUSHED_MAX`]; past that they are left to the store and read from there);
//! - the store itself, read through a cursor over the bundles waiting for a route, a page at a
//!   time, taking those whose next hop is this neighbour.
//!
//! This is the shared side; the task that reads the store and claims sends is
//! `queue_task.rs`.
//!
//! A bundle handed to the layer is recorded as in flight to the neighbour; it leaves the store
//! when the neighbour has it, or waits for a route again if the send fails. Nothing here grows
//! with the store: a neighbour that comes up to a million waiting bundles holds one page of
//! their metadata and at most `max_in_flight_per_neighbour` sends.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::core::routing::HeldBooking;
use crate::bundle::{Bundle, Eid};
use crate::store::StoreId;
use crate::sync::lock;

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

/// What a queue's task was told to do ([`NeighbourQueue::take_orders`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Orders {
    /// Read the store again from its first waiting bundle (a route changed).
    pub rescan: bool,
    /// Read on past where the last read ended (a bundle was stored that may be routed here).
    pub read_on: bool,
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

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// What the queue was told since the task last asked: read the store from the start, or
    /// read on past its end. Each order is taken once.
    pub(super) fn take_orders(&self) -> Orders {
        Orders {
            rescan: self.rescan.swap(false, Ordering::SeqCst),
            read_on: self.more.swap(false, Ordering::SeqCst),
        }
    }

    /// The oldest bundle pushed and not yet taken.
    pub(super) fn take_pushed(&self) -> Option<Queued> {
        lock(&self.pushed).pop_front()
    }

    /// Resolves when the queue is woken (work pushed or flagged, or closed).
    pub(super) fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Whether the task is parked with nothing to hand over (see [`Self::park`]).
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst)
    }

    /// After the work is recorded (pushed, flagged): the task is not idle, and runs.
    pub(super) fn wake(&self) {
        self.idle.store(false, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The task found nothing to do: it is idle unless work came meanwhile. Marked first, then
    /// checked, while [`Self::wake`] records first and clears after, so `idle` is never left
    /// set with work waiting. Answers whether to wait.
    pub(super) fn park(&self) -> bool {
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
