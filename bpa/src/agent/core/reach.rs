//! Where bundles can go now: the neighbours that are up, and the routes to nodes beyond them
//! (static routes, a plugged-in router, the contact plan), read together by every forwarding
//! decision. Neighbours are named by node ID; how the agent reaches one (its layer, its queue)
//! is the driver's to keep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::routing::{ContactRouter, Router, StaticRoutes};
use crate::bundle::Eid;
use crate::log::RateLimit;

/// What the core keeps of a neighbour that is up.
#[derive(Debug)]
pub(crate) struct NeighbourState {
    /// The next retry timer's delay, doubled while sends keep failing (whether a timer runs is
    /// the timer table's to say).
    pub retry_delay: Duration,
    /// Failed sends are logged once per window, not once per bundle (a whole queue fails when
    /// a session ends).
    pub failure_log: RateLimit,
    /// Which coming-up of the neighbour this is: a send begun before it went down and up
    /// again is not the current link's.
    pub link: u64,
}

/// What the agent knows of a stored bundle when it routes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BundleFacts<'a> {
    /// Its destination.
    pub destination: &'a Eid,
    /// Encoded length in bytes.
    pub size: u64,
    /// When its lifetime ends (DTN ms).
    pub expiry: u64,
    /// The time the decision is made at (DTN ms).
    pub now: u64,
}

/// The neighbours that are up and the routes beyond them.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    pub neighbours: HashMap<Eid, NeighbourState>,
    pub static_routes: StaticRoutes,
    pub router: Option<Arc<dyn Router>>,
    /// The contact plan's router, consulted last.
    pub contacts: Option<Arc<ContactRouter>>,
}

impl Reachability {
    /// The neighbour a bundle for `destination` goes to now, passing over `except` (one that
    /// refused it): the destination's node if it is a neighbour, else the first next hop of the
    /// static routes, then of the router, that is up.
    pub fn next_hop(&self, destination: &Eid, except: Option<&Eid>) -> Option<Eid> {
        if self.neighbours.is_empty() {
            return None;
        }
        let allowed = |node: &Eid| except.is_none_or(|except| except != node);
        let node = destination.node_id();
        if self.neighbours.contains_key(&node) && allowed(&node) {
            return Some(node);
        }
        use routing::Router as _;
        let mut candidates = self.static_routes.next_hops(destination);
        if let Some(router) = &self.router {
            candidates.extend(router.next_hops(destination));
        }
        candidates.into_iter().filter(|via| allowed(via)).find(|via| self.neighbours.contains_key(via))
    }

    /// The neighbour a bundle goes to now, knowing its size and times: as
    /// [`Reachability::next_hop`], then by the contact plan, whose decision (the planned route,
    /// to book) comes with it. A planned next hop that is not up now is no next hop now.
    pub fn next_hop_for(&self, facts: &BundleFacts<'_>) -> Option<(Eid, Option<routing::Decision<Eid>>)> {
        if let Some(via) = self.next_hop(facts.destination, None) {
            return Some((via, None));
        }
        use routing::Router as _;
        let contacts = self.contacts.as_ref()?;
        if self.neighbours.is_empty() {
            return None;
        }
        let request = routing::RouteRequest {
            destination: facts.destination,
            size: facts.size,
            expiry: facts.expiry,
            previous_hop: None,
            critical: false,
            now: facts.now,
        };
        contacts.route(&request).into_iter().find_map(|decision| {
            self.neighbours
                .contains_key(&decision.next_hop)
                .then(|| (decision.next_hop.clone(), Some(decision)))
        })
    }

    /// Whether anything but the contact plan routes a bundle for `destination` now or could
    /// later: a neighbour, a static route, the router.
    pub fn routes_without_plan(&self, destination: &Eid) -> bool {
        use routing::Router as _;
        self.neighbours.contains_key(&destination.node_id())
            || !self.static_routes.next_hops(destination).is_empty()
            || self.router.as_ref().is_some_and(|r| !r.next_hops(destination).is_empty())
    }
}
