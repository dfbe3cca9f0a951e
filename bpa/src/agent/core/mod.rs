//! The agent's decisions and the state they are made from, with no I/O (design §3.1, after
//! `quinn-proto`): no tokio, no store, no lock. Facts and the time go in — a neighbour up or
//! down, a route, a contact plan, a send claimed, sent or failed, the clock read — and
//! decisions come out: where a bundle goes next, whether a bundle is free to send, when a
//! failed neighbour is tried again and whether the failure is logged, which timer is due, which
//! contact edges are due, and when the core next needs waking ([`Core::poll_timeout`]).
//!
//! The agent holds one `Core` with the handles it drives (each neighbour's layer and queue,
//! the applications' channels) under one short lock that is never held across an `.await` —
//! as `quinn` holds a `quinn_proto::Connection` — and carries out the decisions against the
//! store and the layers. Everything here is tested without a runtime (`tests.rs`).
//!
//! - `reach`: the neighbours that are up and the routes beyond them; `routing`: static routes,
//!   the router hook and Contact Graph Routing over a plan.
//! - `timers`: the one timer table; `edges`: the contact plan's starts and ends from this node.
//! - `forward`: the edits a node makes to a bundle it forwards; `transmit`: whether a bundle
//!   goes whole or in fragments, or not at all, over a link; `fragment`: fragmentation and the
//!   reassembly of an ADU, and `coverage` which ranges of the ADUs being reassembled are
//!   stored; `report`: the status reports.

pub(crate) mod coverage;
mod edges;
pub(crate) mod forward;
pub(crate) mod fragment;
mod reach;
pub(crate) mod report;
pub(crate) mod routing;
#[cfg(test)]
mod tests;
mod timers;
pub(crate) mod transmit;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use edges::ContactEvent;
pub(crate) use edges::Edge;
use edges::{ContactEdges, DueEdge};
pub(crate) use reach::BundleFacts;
use reach::{NeighbourState, Reachability};
pub(crate) use timers::Timer;
use timers::TimerTable;

use self::routing::ContactRouter;
use crate::bundle::Eid;
use crate::log::RateLimit;
use crate::store::StoreId;

/// A failed send's log lines: at most one per neighbour per window.
const FAILURE_LOG_WINDOW: Duration = Duration::from_secs(10);

/// What the core is configured with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreConfig {
    /// The first retry delay after a failed send to a neighbour.
    pub retry_min: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
}

/// What a failed send to a neighbour leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendFailed {
    /// The delay of a retry timer started now (none: one runs already).
    pub retry_in: Option<Duration>,
    /// `Some(n)`: log this failure, `n` failures having been left out of the log since the last
    /// line; `None`: leave it out.
    pub log: Option<u64>,
}

/// The agent's decisions' state.
#[derive(Debug)]
pub(crate) struct Core {
    config: CoreConfig,
    /// Where bundles can go now.
    pub reach: Reachability,
    /// Bundles being forwarded now: never dispatched twice at once.
    in_flight: HashSet<StoreId>,
    /// Every timer of the agent.
    timers: TimerTable,
    /// How often expiry runs, once [`Core::housekeep_every`] was called.
    housekeeping: Option<Duration>,
    /// The contact plan's starts and ends from this node.
    contacts: ContactEdges,
    /// A due timer was taken and is being acted on (set as the timer leaves the table, so a
    /// due timer is always either in the table or being fired).
    firing: bool,
    /// Counts neighbours' comings-up, to tell one link from the next.
    links: u64,
}

impl Core {
    /// A core with no neighbours, routes or timers.
    pub fn new(config: CoreConfig) -> Core {
        Core {
            config,
            reach: Reachability::default(),
            in_flight: HashSet::new(),
            timers: TimerTable::default(),
            housekeeping: None,
            contacts: ContactEdges::default(),
            firing: false,
            links: 0,
        }
    }

    // ---- neighbours

    /// `node` is up (again): its retry state starts afresh. Answers the link's number, and
    /// whether it replaced a link still up.
    pub fn neighbour_up(&mut self, node: Eid) -> (u64, bool) {
        self.links += 1;
        let state = NeighbourState {
            retry_delay: self.config.retry_min,
            failure_log: RateLimit::new(FAILURE_LOG_WINDOW),
            link: self.links,
        };
        let replaced = self.reach.neighbours.insert(node.clone(), state).is_some();
        (self.links, replaced)
    }

    /// `node` is down: nothing more is routed to it and its retry timer stops. Answers whether
    /// it was up.
    pub fn neighbour_down(&mut self, node: &Eid) -> bool {
        let was_up = self.reach.neighbours.remove(node).is_some();
        self.timers.cancel(&Timer::Retry(node.clone()));
        was_up
    }

    /// The neighbours up now.
    pub fn neighbours(&self) -> Vec<Eid> {
        self.reach.neighbours.keys().cloned().collect()
    }

    /// Whether `node` is up.
    pub fn is_up(&self, node: &Eid) -> bool {
        self.reach.neighbours.contains_key(node)
    }

    // ---- sends

    /// Claims a bundle for a send; false if another send has it.
    pub fn claim(&mut self, id: StoreId) -> bool {
        self.in_flight.insert(id)
    }

    /// The send that claimed `id` ended, however.
    pub fn release(&mut self, id: StoreId) {
        self.in_flight.remove(&id);
    }

    /// Bundles claimed by sends now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A send over link `link` to `node` went: the neighbour's retry delay starts afresh.
    pub fn sent(&mut self, node: &Eid, link: u64) {
        if let Some(state) = self.reach.neighbours.get_mut(node).filter(|n| n.link == link) {
            state.retry_delay = self.config.retry_min;
        }
    }

    /// A send over link `link` to `node` failed at `now` (DTN ms; `instant` for the log's
    /// window): a retry timer starts unless one runs, and the failure is logged unless one was
    /// lately.
    pub fn send_failed(&mut self, node: &Eid, link: u64, now: u64, instant: Instant) -> SendFailed {
        let retry_in = self.retry_later(node, Some(link), now);
        let log = match self.reach.neighbours.get_mut(node).filter(|n| n.link == link) {
            Some(state) => state.failure_log.allow(instant),
            // A link gone: its queue failed as a whole, and the new link logs its own.
            None => None,
        };
        SendFailed { retry_in, log }
    }

    /// Starts `node`'s retry timer unless one runs: at its expiry, what waits for `node` is
    /// dispatched again. Each timer started while sends keep failing over one link waits twice
    /// as long as the last, up to the configured longest. Answers the delay of a timer started
    /// now. `link`: the link a send failed over (`None`: whichever is up).
    pub fn retry_later(&mut self, node: &Eid, link: Option<u64>, now: u64) -> Option<Duration> {
        let timer = Timer::Retry(node.clone());
        if self.timers.deadline(&timer).is_some() {
            return None;
        }
        let state = self.reach.neighbours.get_mut(node).filter(|n| link.is_none_or(|link| n.link == link));
        let delay = match state {
            Some(state) => {
                let delay = state.retry_delay;
                state.retry_delay = (delay * 2).min(self.config.retry_max);
                delay
            }
            None => self.config.retry_min,
        };
        self.timers.set(timer, now.saturating_add(millis(delay)));
        Some(delay)
    }

    // ---- timers

    /// The earliest deadline: when the core next needs waking (DTN ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.poll_timeout()
    }

    /// A timer due at `now`, taken from the table to be acted on; none, and the core is no
    /// longer firing, when nothing is due.
    pub fn take_due(&mut self, now: u64) -> Option<Timer> {
        let due = self.timers.pop_due(now);
        self.firing = due.is_some();
        due
    }

    /// Whether no timer is due at `now` or being acted on.
    pub fn timers_quiet(&self, now: u64) -> bool {
        !self.firing && self.timers.poll_timeout().is_none_or(|at| at > now)
    }

    /// Sets a custody timer to `at` unless it is set earlier already; answers whether it moved.
    pub fn arm_earliest(&mut self, timer: Timer, at: u64) -> bool {
        if self.timers.deadline(&timer).is_some_and(|set| set <= at) {
            return false;
        }
        self.timers.set(timer, at);
        true
    }

    /// Runs housekeeping every `period` from `now`.
    pub fn housekeep_every(&mut self, period: Duration, now: u64) {
        self.housekeeping = Some(period);
        self.timers.set(Timer::Housekeeping, now.saturating_add(millis(period)));
    }

    /// Housekeeping ran at `now`: the next round is set, unless it was stopped.
    pub fn housekept(&mut self, now: u64) {
        if let Some(period) = self.housekeeping {
            self.timers.set(Timer::Housekeeping, now.saturating_add(millis(period)));
        }
    }

    /// No more housekeeping.
    pub fn stop_housekeeping(&mut self) {
        self.housekeeping = None;
        self.timers.cancel(&Timer::Housekeeping);
    }

    // ---- routes and the contact plan

    /// Routes by `router`'s plan from `now` on; answers the plan it replaces.
    pub fn set_contact_plan(&mut self, router: Arc<ContactRouter>, now: u64) -> Option<Arc<ContactRouter>> {
        self.contacts = ContactEdges::of(&router, now);
        self.arm_contacts();
        self.reach.contacts.replace(router)
    }

    /// The contact plan's edges due at `now`, each once; the contact timer is set for the next.
    pub fn contact_edges_due(&mut self, now: u64) -> Vec<DueEdge> {
        let due = self.contacts.take_due(now);
        self.arm_contacts();
        due
    }

    fn arm_contacts(&mut self) {
        match self.contacts.due() {
            Some(at) => self.timers.set(Timer::Contacts, at),
            None => self.timers.cancel(&Timer::Contacts),
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
