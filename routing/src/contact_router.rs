//! The contact-plan router: [`crate::Router`] over a [`ContactGraph`], for a node of the plan.
//!
//! Endpoints are mapped to the plan's node names by functions the agent gives (for the ipn
//! scheme, `ipn:N.S` ↔ node `"N"`), so this crate stays free of the agent's EID type. Bookings
//! follow the agent: a decision it queues a bundle on is booked, a bundle not sent is released.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::cgr::{Booking, ContactGraph, Query, Route};
use crate::plan::{NodeIndex, Plan};
use crate::{Decision, Planned, RouteRequest, Router};

/// How many routes a critical bundle is offered at most (one per next hop).
pub const CRITICAL_ROUTES: usize = 8;

/// Plan node name ↔ endpoint.
pub type NameOf<E> = Box<dyn Fn(&E) -> Option<String> + Send + Sync>;
/// Endpoint ↔ plan node name: the node a plan name stands for, if any.
pub type EndpointOf<E> = Box<dyn Fn(&str) -> Option<E> + Send + Sync>;

/// Contact Graph Routing for the node `local` of a plan.
pub struct ContactRouter<E> {
    local: Option<NodeIndex>,
    graph: Mutex<ContactGraph>,
    name_of: NameOf<E>,
    endpoint_of: EndpointOf<E>,
}

impl<E> fmt::Debug for ContactRouter<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let graph = self.graph();
        f.debug_struct("ContactRouter")
            .field("local", &self.local)
            .field("nodes", &graph.plan().node_count())
            .field("contacts", &graph.plan().contacts.len())
            .finish()
    }
}

impl<E> ContactRouter<E> {
    /// A router for the node named `local` (none of its answers lead anywhere if the plan does
    /// not name it).
    pub fn new(plan: Plan, local: &str, name_of: NameOf<E>, endpoint_of: EndpointOf<E>) -> ContactRouter<E> {
        let local = plan.find(local);
        ContactRouter { local, graph: Mutex::new(ContactGraph::new(plan)), name_of, endpoint_of }
    }

    /// The prepared plan, locked (for what the agent shows of it: contacts, queries).
    pub fn graph(&self) -> MutexGuard<'_, ContactGraph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node in the plan, if the plan names it.
    pub fn local(&self) -> Option<NodeIndex> {
        self.local
    }

    /// The endpoint of a plan node.
    pub fn endpoint(&self, node: NodeIndex) -> Option<E> {
        (self.endpoint_of)(self.graph().plan().name(node))
    }

    /// The plan query for a request, if both ends are in the plan.
    fn query(&self, graph: &ContactGraph, request: &RouteRequest<'_, E>) -> Option<Query> {
        let plan = graph.plan();
        let to = plan.find(&(self.name_of)(request.destination)?)?;
        let previous_hop = request.previous_hop.and_then(|p| plan.find(&(self.name_of)(p)?));
        Some(Query {
            from: self.local?,
            to,
            now: request.now,
            size: request.size,
            expiry: request.expiry,
            previous_hop,
        })
    }

    /// Up to `k` routes for a request, best first, each through another next hop (for
    /// explaining a decision: the best, and why the others lost).
    pub fn routes(&self, request: &RouteRequest<'_, E>, k: usize) -> Vec<Route> {
        let graph = self.graph();
        match self.query(&graph, request) {
            Some(query) if query.from != query.to => graph.routes(&query, k),
            _ => Vec::new(),
        }
    }

    fn decision(&self, graph: &ContactGraph, route: Route, size: u64) -> Option<Decision<E>> {
        let first = graph.plan().contacts.get(route.first_contact())?;
        let next_hop = (self.endpoint_of)(graph.plan().name(first.to))?;
        let planned = Planned { contact_start: first.start, contact_end: first.end, size, route };
        Some(Decision { next_hop, planned: Some(planned) })
    }
}

impl<E: Send + Sync> Router<E> for ContactRouter<E> {
    /// Without a bundle's size and times there is no contact-plan answer.
    fn next_hops(&self, _destination: &E) -> Vec<E> {
        Vec::new()
    }

    fn route(&self, request: &RouteRequest<'_, E>) -> Vec<Decision<E>> {
        let mut graph = self.graph();
        let Some(query) = self.query(&graph, request) else { return Vec::new() };
        if query.from == query.to {
            return Vec::new();
        }
        let routes = if request.critical {
            graph.routes(&query, CRITICAL_ROUTES)
        } else {
            graph.route(&query).into_iter().collect()
        };
        routes.into_iter().filter_map(|route| self.decision(&graph, route, request.size)).collect()
    }

    fn book(&self, decision: &Decision<E>) -> Option<Booking> {
        let planned = decision.planned.as_ref()?;
        Some(self.graph().book(&planned.route, planned.size))
    }

    fn release(&self, booking: Booking) {
        self.graph().release(booking);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(text: &str, local: &str) -> ContactRouter<u64> {
        let plan = crate::ion::parse(text, 0).expect("plan");
        ContactRouter::new(
            plan,
            local,
            Box::new(|node: &u64| Some(node.to_string())),
            Box::new(|name: &str| name.parse().ok()),
        )
    }

    fn request(destination: &u64, size: u64) -> RouteRequest<'_, u64> {
        RouteRequest { destination, size, expiry: 3_600_000, previous_hop: None, critical: false, now: 0 }
    }

    #[test]
    fn a_bundle_gets_its_next_hop_and_contact_and_bookings_come_and_go() {
        let r = router(
            "a contact +0 +100 1 2 1000\na contact +200 +400 1 3 1000\na contact +200 +400 3 2 1000\n\
             a range +0 +1000 1 2 0\na range +0 +1000 1 3 0\na range +0 +1000 3 2 0\n",
            "1",
        );
        let first = r.route(&request(&2, 60_000));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].next_hop, 2);
        let planned = first[0].planned.clone().expect("planned");
        assert_eq!((planned.contact_start, planned.contact_end, planned.route.arrival), (0, 100_000, 60_000));
        let booking = r.book(&first[0]).expect("booked");
        let second = r.route(&request(&2, 60_000));
        assert_eq!(second[0].next_hop, 3, "the direct contact is booked full: by way of 3");
        r.release(booking);
        assert_eq!(r.route(&request(&2, 60_000))[0].next_hop, 2);
        assert!(r.route(&request(&9, 1)).is_empty(), "a node the plan does not name");
        assert!(r.route(&request(&1, 1)).is_empty(), "this node itself");
        assert!(r.next_hops(&2).is_empty(), "no answer without the bundle");
    }

    #[test]
    fn a_critical_bundle_is_offered_every_next_hop_and_the_previous_hop_is_passed_over() {
        let r = router(
            "a contact +0 +100 1 2 1000\na contact +10 +100 1 3 1000\na contact +20 +100 3 2 1000\n\
             a range +0 +1000 1 2 0\na range +0 +1000 1 3 0\na range +0 +1000 3 2 0\n",
            "1",
        );
        let mut critical = request(&2, 1000);
        critical.critical = true;
        let hops: Vec<u64> = r.route(&critical).into_iter().map(|d| d.next_hop).collect();
        assert_eq!(hops, vec![2, 3]);
        let mut from_2 = request(&2, 1000);
        from_2.previous_hop = Some(&2);
        let hops: Vec<u64> = r.route(&from_2).into_iter().map(|d| d.next_hop).collect();
        assert_eq!(hops, vec![3]);
        let unplanned = router("a contact +0 +100 1 2 1000\na range +0 +1000 1 2 0\n", "7");
        assert!(unplanned.route(&request(&2, 1)).is_empty(), "this node is not in the plan");
    }
}
