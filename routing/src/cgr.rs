//! Contact Graph Routing: the earliest-arriving route over a contact plan (CCSDS 734.3-B-1
//! SABR), exact.
//!
//! A route is a chain of contacts from the bundle's node to its destination. Over a contact
//! from `u` to `v` a bundle that reached `u` at `t` starts transmitting at `max(contact start,
//! t)`; the contact is usable only if that is *before* its end (a contact ending exactly at the
//! transmit time is not usable), the rest of the contact holds the bundle (start + size/rate ≤
//! end), a range gives the one-way light time then, and the arrival (start + size/rate + OWLT)
//! is no later than the bundle's expiry. The first contact must not lead back to the previous
//! hop. Among routes arriving at the same time, fewer hops win, then the one whose first
//! contact ends later.
//!
//! The search is a label-setting one over nodes with Pareto labels (arrival, hops, first
//! contact's end): arrival over a contact never decreases when the arrival before it grows, so
//! the first label taken at the destination is the best route. (Not yet: volume booking, K
//! routes, a route cache — issue 15.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::plan::{NodeIndex, Plan};

/// What is asked of the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub from: NodeIndex,
    pub to: NodeIndex,
    /// The current time (DTN ms).
    pub now: u64,
    /// The bundle's size in bytes.
    pub size: u64,
    /// When the bundle expires (DTN ms): a route arriving later is no route.
    pub expiry: u64,
    /// The node the bundle came from, not to be the next hop.
    pub previous_hop: Option<NodeIndex>,
}

/// A route: its contacts (indices into the plan's contacts), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub contacts: Vec<usize>,
    /// When the bundle arrives at the destination (DTN ms).
    pub arrival: u64,
}

impl Route {
    pub fn hops(&self) -> usize {
        self.contacts.len()
    }
}

/// A label: a way to reach a node.
#[derive(Debug, Clone, Copy)]
struct Label {
    node: NodeIndex,
    arrival: u64,
    hops: usize,
    /// The end of the route's first contact (`u64::MAX` at the source).
    first_end: u64,
    /// The contact that reached the node, and the label it extended.
    via: Option<(usize, usize)>,
}

/// The milliseconds to transmit `size` bytes at `rate` bytes/s, rounded up.
fn transmit_ms(size: u64, rate: u64) -> Option<u64> {
    if rate == 0 {
        return None;
    }
    let ms = u128::from(size) * 1000;
    u64::try_from(ms.div_ceil(u128::from(rate))).ok()
}

/// The arrival over contact `index` of a bundle that reached the contact's sender at `at`, if
/// the contact can carry it then (the rules in the module's comment).
pub fn arrival_over(plan: &Plan, index: usize, at: u64, size: u64, expiry: u64) -> Option<u64> {
    let contact = plan.contacts.get(index)?;
    let start = contact.start.max(at);
    if start >= contact.end {
        return None;
    }
    let sent = start.checked_add(transmit_ms(size, contact.rate)?)?;
    if sent > contact.end {
        return None;
    }
    let arrival = sent.checked_add(plan.owlt(contact.from, contact.to, start)?)?;
    (arrival <= expiry).then_some(arrival)
}

/// The best route for `query`, if there is one.
pub fn earliest_route(plan: &Plan, query: &Query) -> Option<Route> {
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); plan.node_count()];
    for (index, contact) in plan.contacts.iter().enumerate() {
        if let Some(list) = outgoing.get_mut(contact.from.0 as usize) {
            list.push(index);
        }
    }
    let mut labels =
        vec![Label { node: query.from, arrival: query.now, hops: 0, first_end: u64::MAX, via: None }];
    // Ordered by arrival, then hops, then the later first-contact end.
    let mut heap = BinaryHeap::new();
    heap.push(Reverse((query.now, 0usize, Reverse(u64::MAX), 0usize)));
    let mut settled: Vec<Vec<(u64, usize, u64)>> = vec![Vec::new(); plan.node_count()];
    while let Some(Reverse((_, _, _, id))) = heap.pop() {
        let label = labels[id];
        let node = label.node.0 as usize;
        let Some(done) = settled.get_mut(node) else { continue };
        if done.iter().any(|&(a, h, e)| a <= label.arrival && h <= label.hops && e >= label.first_end) {
            continue; // a label as good in every way was taken here already
        }
        done.push((label.arrival, label.hops, label.first_end));
        if label.node == query.to {
            return Some(route_of(&labels, id));
        }
        for &index in &outgoing[node] {
            let contact = &plan.contacts[index];
            if label.hops == 0 && Some(contact.to) == query.previous_hop {
                continue;
            }
            let Some(arrival) = arrival_over(plan, index, label.arrival, query.size, query.expiry) else {
                continue;
            };
            let first_end = if label.hops == 0 { contact.end } else { label.first_end };
            let next =
                Label { node: contact.to, arrival, hops: label.hops + 1, first_end, via: Some((index, id)) };
            labels.push(next);
            heap.push(Reverse((arrival, next.hops, Reverse(first_end), labels.len() - 1)));
        }
    }
    None
}

fn route_of(labels: &[Label], mut id: usize) -> Route {
    let arrival = labels[id].arrival;
    let mut contacts = Vec::new();
    while let Some((contact, previous)) = labels[id].via {
        contacts.push(contact);
        id = previous;
    }
    contacts.reverse();
    Route { contacts, arrival }
}

#[cfg(test)]
mod tests;
