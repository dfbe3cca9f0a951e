//! Routing for the bundle protocol agent (RFC 9171 §5.4 step 1, "forwarding decision"): the
//! [`Router`] trait the agent consults, and [`StaticRoutes`]; contact plans ([`plan`]) and their
//! parsers ([`ion`], [`hdtn`], [`tvgutil`], [`native`], any of them by [`load`]); Contact Graph
//! Routing over them ([`cgr`]).
//!
//! Pure: no tokio, no I/O; time, when a router needs it, is passed in. Generic over the
//! endpoint type `E` the agent routes by (the agent's `bpa::Eid`): this crate sits below the
//! agent (`routing` ← `bpa`) and knows nothing of the bundle codec, so its algorithms are
//! tested here with toy endpoints and used there with real ones.
//!
//! ```
//! use routing::{Pattern, Router, StaticRoute, StaticRoutes};
//!
//! /// Nodes by number: one, or all.
//! #[derive(Debug, Clone, PartialEq)]
//! enum Nodes { One(u32), All }
//!
//! impl Pattern<u32> for Nodes {
//!     fn matches(&self, node: &u32) -> bool { matches!(self, Nodes::All) || *self == Nodes::One(*node) }
//!     fn specificity(&self) -> u8 { if *self == Nodes::All { 0 } else { 1 } }
//! }
//!
//! let mut routes = StaticRoutes::default();
//! routes.add(StaticRoute { pattern: Nodes::All, via: 9 });
//! routes.add(StaticRoute { pattern: Nodes::One(3), via: 2 });
//! assert_eq!(routes.next_hops(&3), vec![2, 9]); // the most specific first
//! assert_eq!(routes.next_hops(&4), vec![9]);
//! ```

#![warn(missing_docs)]

use std::fmt;

pub mod cgr;
pub mod contact_router;
pub mod explain;
pub mod hdtn;
pub mod ion;
mod json;
pub mod load;
pub mod native;
pub mod plan;
pub mod tvgutil;

pub use cgr::{Booking, ContactGraph, Query, Route, earliest_route};
pub use contact_router::ContactRouter;
pub use ion::PlanError;
pub use json::JsonPlanError;
pub use load::{PlanFileError, PlanFormat};
pub use plan::{Contact, NodeIndex, Plan, Range};

/// What the agent knows of a bundle when it asks where the bundle goes (RFC 9171 §5.4 step 1).
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a, E> {
    /// Where the bundle is going.
    pub destination: &'a E,
    /// The bundle's encoded size in bytes.
    pub size: u64,
    /// When it expires (DTN ms): a route arriving later is no route.
    pub expiry: u64,
    /// The node it came from, if known: not to be its next hop.
    pub previous_hop: Option<&'a E>,
    /// Send it on every useful route, not only the best.
    pub critical: bool,
    /// The current time (DTN ms).
    pub now: u64,
}

/// One answer of a router: a next hop, and for a contact-plan router the planned route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<E> {
    /// The neighbour to hand the bundle to.
    pub next_hop: E,
    /// The route over the contact plan, when the router has one.
    pub planned: Option<Planned>,
}

/// A route over a contact plan as the router planned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The contacts the bundle takes, and when it arrives.
    pub route: Route,
    /// The first contact: when it starts and ends (DTN ms).
    pub contact_start: u64,
    /// When the first contact ends (DTN ms).
    pub contact_end: u64,
    /// The size it was planned for.
    pub size: u64,
}

/// A routing algorithm the agent consults after its directly connected neighbours.
pub trait Router<E>: Send + Sync + fmt::Debug {
    /// Candidate next-hop node IDs for a bundle to `destination`, best first. The agent takes
    /// the first one that is a connected neighbour.
    fn next_hops(&self, destination: &E) -> Vec<E>;

    /// Candidate next hops for this bundle, best first (every useful one for a critical
    /// bundle). By default [`Router::next_hops`], which needs nothing but the destination.
    fn route(&self, request: &RouteRequest<'_, E>) -> Vec<Decision<E>> {
        self.next_hops(request.destination)
            .into_iter()
            .map(|next_hop| Decision { next_hop, planned: None })
            .collect()
    }

    /// The agent queues the bundle on `decision`: its volume is set aside until released.
    fn book(&self, _decision: &Decision<E>) -> Option<Booking> {
        None
    }

    /// The bundle booked with `booking` was not sent after all.
    fn release(&self, _booking: Booking) {}
}

/// Which destinations a static route covers.
pub trait Pattern<E>: Clone + PartialEq + fmt::Debug {
    /// Whether `destination` is covered.
    fn matches(&self, destination: &E) -> bool;
    /// How specific the pattern is: among matching routes, a more specific one is tried first.
    fn specificity(&self) -> u8;
}

/// A static route: bundles whose destination matches `pattern` go to the neighbour `via`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute<P, E> {
    /// Which destinations the route is for.
    pub pattern: P,
    /// The next hop's node ID.
    pub via: E,
}

/// Static routes, most specific pattern first; among equals, the first added wins.
#[derive(Debug, Clone)]
pub struct StaticRoutes<P, E> {
    routes: Vec<StaticRoute<P, E>>,
}

impl<P, E> Default for StaticRoutes<P, E> {
    fn default() -> Self {
        StaticRoutes { routes: Vec::new() }
    }
}

impl<P: Pattern<E>, E: PartialEq> StaticRoutes<P, E> {
    /// Adds a route (once: the same route again changes nothing).
    pub fn add(&mut self, route: StaticRoute<P, E>) {
        if self.routes.contains(&route) {
            return;
        }
        let specificity = route.pattern.specificity();
        let at = self.routes.partition_point(|r| r.pattern.specificity() >= specificity);
        self.routes.insert(at, route);
    }

    /// Removes the routes for exactly this pattern; returns how many.
    pub fn remove(&mut self, pattern: &P) -> usize {
        let before = self.routes.len();
        self.routes.retain(|r| &r.pattern != pattern);
        before - self.routes.len()
    }

    /// The routes, in the order they are tried.
    pub fn routes(&self) -> &[StaticRoute<P, E>] {
        &self.routes
    }
}

impl<P, E> Router<E> for StaticRoutes<P, E>
where
    P: Pattern<E> + Send + Sync,
    E: Clone + PartialEq + Send + Sync + fmt::Debug,
{
    fn next_hops(&self, destination: &E) -> Vec<E> {
        self.routes.iter().filter(|r| r.pattern.matches(destination)).map(|r| r.via.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy pattern over node numbers: one node, or a range, or everything.
    #[derive(Debug, Clone, PartialEq)]
    enum Nodes {
        All,
        Range(u32, u32),
        One(u32),
    }

    impl Pattern<u32> for Nodes {
        fn matches(&self, node: &u32) -> bool {
            match self {
                Nodes::All => true,
                Nodes::Range(low, high) => (low..=high).contains(&node),
                Nodes::One(one) => one == node,
            }
        }
        fn specificity(&self) -> u8 {
            match self {
                Nodes::All => 0,
                Nodes::Range(..) => 1,
                Nodes::One(_) => 2,
            }
        }
    }

    fn route(pattern: Nodes, via: u32) -> StaticRoute<Nodes, u32> {
        StaticRoute { pattern, via }
    }

    #[test]
    fn the_most_specific_route_wins_and_equals_keep_their_order() {
        let mut routes = StaticRoutes::default();
        routes.add(route(Nodes::All, 9));
        routes.add(route(Nodes::Range(3, 5), 2));
        routes.add(route(Nodes::One(3), 4));
        routes.add(route(Nodes::Range(1, 3), 5));
        routes.add(route(Nodes::Range(1, 3), 5));
        assert_eq!(routes.routes().len(), 4, "the same route twice is kept once");
        assert_eq!(routes.next_hops(&3), vec![4, 2, 5, 9]);
        assert_eq!(routes.next_hops(&8), vec![9]);
        assert_eq!(routes.remove(&Nodes::Range(3, 5)), 1);
        assert_eq!(routes.next_hops(&4), vec![9]);
        assert_eq!(routes.remove(&Nodes::One(7)), 0);
    }

    #[test]
    fn a_router_is_usable_as_a_trait_object() {
        let mut routes = StaticRoutes::default();
        routes.add(route(Nodes::One(1), 2));
        let router: Box<dyn Router<u32>> = Box::new(routes);
        assert_eq!(router.next_hops(&1), vec![2]);
        assert!(router.next_hops(&2).is_empty());
    }
}
