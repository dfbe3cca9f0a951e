//! The contact plan's contacts from this node as edges on the agent's clock: each start and
//! end, in time order, and which is due next. Pure: the plan and the time go in, the edges due
//! come out; the agent announces them ([`crate::agent::ContactEvent`]).

use super::routing::ContactRouter;
use crate::bundle::Eid;

/// One end of a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Edge {
    // Ends sort first: at one instant a contact ends before the next one starts.
    End,
    Start,
}

/// An edge due: when, which end, and the contact's index in the plan.
pub(crate) type DueEdge = (u64, Edge, usize);

/// The edges of this node's contacts, in time order, and the next one due.
#[derive(Debug, Default)]
pub(crate) struct ContactEdges {
    edges: Vec<DueEdge>,
    next: usize,
}

impl ContactEdges {
    /// The starts and ends of `router`'s contacts from this node still to come at `now` (one
    /// going on starts at `now`).
    pub fn of(router: &ContactRouter, now: u64) -> ContactEdges {
        let mut edges = Vec::new();
        if let Some(local) = router.local() {
            let graph = router.graph();
            for (index, contact) in graph.plan().contacts.iter().enumerate() {
                if contact.from == local && contact.end > now {
                    edges.push((contact.start.max(now), Edge::Start, index));
                    edges.push((contact.end, Edge::End, index));
                }
            }
        }
        edges.sort_unstable();
        ContactEdges { edges, next: 0 }
    }

    /// When the next edge is due.
    pub fn due(&self) -> Option<u64> {
        self.edges.get(self.next).map(|(at, _, _)| *at)
    }

    /// The edges due at `now`, each once, in time order.
    pub fn take_due(&mut self, now: u64) -> Vec<DueEdge> {
        let first = self.next;
        while self.edges.get(self.next).is_some_and(|(at, _, _)| *at <= now) {
            self.next += 1;
        }
        self.edges[first..self.next].to_vec()
    }
}

/// What the plan says about a neighbour now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactEvent {
    /// A contact with `neighbour` starts: it lasts until `end` (DTN ms) at `rate` bytes/s.
    Started {
        /// The neighbour's node ID.
        neighbour: Eid,
        /// When the contact ends (DTN ms).
        end: u64,
        /// Its rate in bytes per second.
        rate: u64,
    },
    /// The contacts with `neighbour` ended: nothing more is planned over the link now.
    Ended {
        /// The neighbour's node ID.
        neighbour: Eid,
    },
}

impl std::fmt::Display for ContactEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContactEvent::Started { neighbour, end, rate } => write!(
                f,
                "planned contact with {neighbour} started: until {} at {rate} bytes/s",
                crate::time::format_dtn_time(*end)
            ),
            ContactEvent::Ended { neighbour } => write!(f, "planned contacts with {neighbour} ended"),
        }
    }
}
