//! Contact Graph Routing: the earliest-arriving route over a contact plan (CCSDS 734.3-B-1
//! SABR), exact, with volume booking, alternative routes and a route cache.
//!
//! A route is a chain of contacts from the bundle's node to its destination. Over a contact
//! from `u` to `v` a bundle that reached `u` at `t` starts transmitting at `max(contact start,
//! t, when the bytes already booked on the contact are sent)`; the contact is usable only if
//! that is *before* its end (a contact ending exactly at the transmit time is not usable), the
//! rest of the contact holds the bundle (start + size/rate ≤ end: the residual volume), a range
//! covers the contact's start (its one-way light time is the contact's, as in ION), and the
//! arrival (start + size/rate + OWLT) is no later than the bundle's expiry. The first contact
//! must not lead back to the previous hop. Among routes arriving at the same time, fewer hops
//! win, then the one whose first contact ends later.
//!
//! The search is label-setting over nodes with Pareto labels (arrival, hops, first contact's
//! end). With one light time per contact, arrival over a contact never decreases when the
//! arrival before it grows (FIFO), so the first label taken at the destination is the best
//! route — checked against a brute-force search over every contact path in the tests.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::plan::{NodeIndex, Plan};

/// What is asked of the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The node that has the bundle.
    pub from: NodeIndex,
    /// The node it is for.
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
    /// Indices into the plan's contacts, from the first hop to the last.
    pub contacts: Vec<usize>,
    /// When the bundle arrives at the destination (DTN ms).
    pub arrival: u64,
}

impl Route {
    /// How many contacts (hops) the route takes.
    pub fn hops(&self) -> usize {
        self.contacts.len()
    }

    /// The route's first contact (a route has at least one).
    pub fn first_contact(&self) -> usize {
        self.contacts.first().copied().unwrap_or(usize::MAX)
    }
}

/// Volume set aside for one bundle on the contacts of its route. The agent keeps it while the
/// bundle is queued or sent, and gives it back ([`ContactGraph::release`]) when it is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a booking not released holds volume until the plan is replaced"]
pub struct Booking {
    graph: u64,
    contacts: Vec<usize>,
    bytes: u64,
}

impl Booking {
    /// The contacts the volume is booked on.
    pub fn contacts(&self) -> &[usize] {
        &self.contacts
    }

    /// The bytes booked on each of them.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// How many routes the cache keeps; past it, it starts again empty (bounded whatever traffic).
const CACHE_CAPACITY: usize = 4096;

/// Graphs are numbered so that a booking is given back only to the plan it was made on.
static GRAPHS: AtomicU64 = AtomicU64::new(1);

/// A plan prepared for routing: each contact's light time looked up once, contacts indexed by
/// sender, the volume booked on each, and the routes found so far.
#[derive(Debug)]
pub struct ContactGraph {
    plan: Plan,
    id: u64,
    /// Per contact: the light time of the range covering its start, `None` when none does.
    owlt: Vec<Option<u64>>,
    /// Per node: the contacts it sends on, by end.
    outgoing: Vec<Vec<usize>>,
    /// Per node: its contacts grouped by receiver, for hops past the first.
    pairs: Vec<Vec<Pair>>,
    /// Per contact: bytes booked.
    booked: Vec<u64>,
    /// Counts releases: a route cached before one may have been beaten since.
    releases: u64,
    cache: HashMap<CacheKey, Cached>,
    cache_hits: u64,
}

/// The contacts from one node to one other, by start; `max_end[i]` is the latest end among the
/// first `i + 1`, so the ones that ended by a time are a prefix found by binary search.
#[derive(Debug)]
struct Pair {
    to: NodeIndex,
    contacts: Vec<usize>,
    max_end: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    from: NodeIndex,
    to: NodeIndex,
    previous_hop: Option<NodeIndex>,
    size: u64,
}

#[derive(Debug, Clone)]
struct Cached {
    /// The answer: a route, or none.
    route: Option<Route>,
    now: u64,
    /// The expiry asked with: "no route" holds for bundles expiring no later.
    expiry: u64,
    releases: u64,
}

impl ContactGraph {
    /// Prepares `plan` for routing (time and memory linear in its size).
    pub fn new(plan: Plan) -> ContactGraph {
        // Ranges by node pair, so that each contact's light time is found among its pair's.
        let mut ranges: HashMap<(NodeIndex, NodeIndex), Vec<&crate::plan::Range>> = HashMap::new();
        for range in &plan.ranges {
            ranges.entry((range.from, range.to)).or_default().push(range);
        }
        let covering = |a: NodeIndex, b: NodeIndex, at: u64| {
            ranges.get(&(a, b))?.iter().find(|r| r.start <= at && at < r.end).map(|r| r.owlt_ms)
        };
        // The same rule as `Plan::owlt`: this direction's range, else the other's.
        let owlt = plan
            .contacts
            .iter()
            .map(|c| covering(c.from, c.to, c.start).or_else(|| covering(c.to, c.from, c.start)))
            .collect::<Vec<_>>();
        let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); plan.node_count()];
        for (index, contact) in plan.contacts.iter().enumerate() {
            if let Some(list) = outgoing.get_mut(contact.from.0 as usize) {
                list.push(index);
            }
        }
        for list in &mut outgoing {
            list.sort_by_key(|&c| plan.contacts[c].end);
        }
        let pairs = outgoing
            .iter()
            .map(|list| {
                let mut by_receiver: HashMap<NodeIndex, Vec<usize>> = HashMap::new();
                for &c in list {
                    by_receiver.entry(plan.contacts[c].to).or_default().push(c);
                }
                let mut pairs: Vec<Pair> = by_receiver
                    .into_iter()
                    .map(|(to, mut contacts)| {
                        contacts.sort_by_key(|&c| (plan.contacts[c].start, c));
                        let max_end = contacts
                            .iter()
                            .scan(0u64, |latest, &c| {
                                *latest = (*latest).max(plan.contacts[c].end);
                                Some(*latest)
                            })
                            .collect();
                        Pair { to, contacts, max_end }
                    })
                    .collect();
                pairs.sort_by_key(|p| p.to);
                pairs
            })
            .collect();
        let booked = vec![0; plan.contacts.len()];
        ContactGraph {
            plan,
            id: GRAPHS.fetch_add(1, Ordering::Relaxed),
            owlt,
            outgoing,
            pairs,
            booked,
            releases: 0,
            cache: HashMap::new(),
            cache_hits: 0,
        }
    }

    /// The plan the graph was built from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The one-way light time of a contact (the range covering its start), if any.
    pub fn owlt(&self, contact: usize) -> Option<u64> {
        self.owlt.get(contact).copied().flatten()
    }

    /// Bytes booked on a contact.
    pub fn booked(&self, contact: usize) -> u64 {
        self.booked.get(contact).copied().unwrap_or(0)
    }

    /// The arrival over contact `index` of a bundle that reached the contact's sender at `at`,
    /// if the contact can carry it then (the rules in the module's comment).
    pub fn arrival_over(&self, index: usize, at: u64, size: u64, expiry: u64) -> Option<u64> {
        let contact = self.plan.contacts.get(index)?;
        let backlog = transmit_ms(self.booked(index), contact.rate)?;
        let start = contact.start.saturating_add(backlog).max(at);
        if start >= contact.end {
            return None;
        }
        let sent = start.checked_add(transmit_ms(size, contact.rate)?)?;
        if sent > contact.end {
            return None;
        }
        let arrival = sent.checked_add(self.owlt(index)?)?;
        (arrival <= expiry).then_some(arrival)
    }

    /// The arrival along `contacts` (which must chain from `query.from` to `query.to`), if
    /// every one of them can carry the bundle in turn.
    pub fn arrival_along(&self, query: &Query, contacts: &[usize]) -> Option<u64> {
        let mut at = query.now;
        let mut node = query.from;
        for &index in contacts {
            let contact = self.plan.contacts.get(index)?;
            if contact.from != node {
                return None;
            }
            at = self.arrival_over(index, at, query.size, query.expiry)?;
            node = contact.to;
        }
        (node == query.to && !contacts.is_empty()).then_some(at)
    }

    /// The best route for `query`, if there is one (searched afresh; see [`Self::route`]).
    pub fn earliest_route(&self, query: &Query) -> Option<Route> {
        self.search(query, &[])
    }

    /// Up to `k` routes, best first, each through a different next hop: the best route, then
    /// the best not through its first contact's receiver, and so on (first-hop removal). A
    /// critical bundle goes on all of them.
    pub fn routes(&self, query: &Query, k: usize) -> Vec<Route> {
        let mut routes: Vec<Route> = Vec::new();
        let mut excluded = Vec::new();
        while routes.len() < k {
            let Some(route) = self.search(query, &excluded) else { break };
            if let Some(contact) = self.plan.contacts.get(route.first_contact()) {
                excluded.push(contact.to);
            }
            routes.push(route);
        }
        routes
    }

    /// The best route for `query`, from the cache when the answer cached for the same
    /// destination, size and previous hop is still exactly the best. It is while time has
    /// only moved forward and nothing was released or the plan replaced since: every route's
    /// arrival can then only have grown (arrivals never decrease with the departure time, and a
    /// booking only delays a contact), so a cached route that still arrives when it did is
    /// still the best, and where there was no route there is none (for a bundle expiring no
    /// later).
    pub fn route(&mut self, query: &Query) -> Option<Route> {
        let key =
            CacheKey { from: query.from, to: query.to, previous_hop: query.previous_hop, size: query.size };
        if let Some(cached) = self.cache.get(&key)
            && cached.releases == self.releases
            && query.now >= cached.now
        {
            let still = match &cached.route {
                Some(route) => self.arrival_along(query, &route.contacts) == Some(route.arrival),
                None => query.expiry <= cached.expiry,
            };
            if still {
                self.cache_hits += 1;
                return cached.route.clone();
            }
        }
        let route = self.search(query, &[]);
        if self.cache.len() >= CACHE_CAPACITY {
            self.cache.clear();
        }
        let cached =
            Cached { route: route.clone(), now: query.now, expiry: query.expiry, releases: self.releases };
        self.cache.insert(key, cached);
        route
    }

    /// How many [`Self::route`] answers came from the cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits
    }

    /// Books `bytes` on every contact of `route`: later bundles see that much less volume.
    pub fn book(&mut self, route: &Route, bytes: u64) -> Booking {
        let contacts: Vec<usize> =
            route.contacts.iter().copied().filter(|&c| c < self.booked.len()).collect();
        for &c in &contacts {
            self.booked[c] = self.booked[c].saturating_add(bytes);
        }
        Booking { graph: self.id, contacts, bytes }
    }

    /// Gives back a booking for a bundle that will not be sent on it. A booking made on another
    /// plan (one since replaced) is ignored.
    pub fn release(&mut self, booking: Booking) {
        if booking.graph != self.id {
            return;
        }
        for &c in &booking.contacts {
            self.booked[c] = self.booked[c].saturating_sub(booking.bytes);
        }
        self.releases += 1;
    }

    /// The contact to `pair.to` that gets a bundle there first from `at`, and when. Contacts are
    /// looked at by start, and no contact starting after the best arrival so far can beat it.
    fn best_over(&self, pair: &Pair, at: u64, query: &Query) -> Option<(u64, usize)> {
        let contacts = &self.plan.contacts;
        let first = pair.max_end.partition_point(|&end| end <= at);
        let mut best: Option<(u64, usize)> = None;
        for &index in &pair.contacts[first..] {
            if best.is_some_and(|(arrival, _)| contacts[index].start >= arrival) {
                break;
            }
            if let Some(arrival) = self.arrival_over(index, at, query.size, query.expiry)
                && best.is_none_or(|(b, _)| arrival < b)
            {
                best = Some((arrival, index));
            }
        }
        best
    }

    /// The earliest arrival at `query.to`, if any (one label per node: with one light time per
    /// contact, arrivals are FIFO, so the first time a node is settled is its earliest). Cheap
    /// next to the full search: it tells "no route" at once and bounds the full search.
    fn earliest_arrival(&self, query: &Query, excluded: &[NodeIndex]) -> Option<u64> {
        let mut best = vec![u64::MAX; self.plan.node_count()];
        let mut heap = BinaryHeap::new();
        *best.get_mut(query.from.0 as usize)? = query.now;
        heap.push(Reverse((query.now, query.from.0)));
        while let Some(Reverse((at, node))) = heap.pop() {
            if at > best[node as usize] {
                continue;
            }
            if node == query.to.0 {
                return Some(at);
            }
            for pair in &self.pairs[node as usize] {
                if node == query.from.0
                    && (Some(pair.to) == query.previous_hop || excluded.contains(&pair.to))
                {
                    continue;
                }
                let Some((arrival, _)) = self.best_over(pair, at, query) else { continue };
                let slot = &mut best[pair.to.0 as usize];
                if arrival < *slot {
                    *slot = arrival;
                    heap.push(Reverse((arrival, pair.to.0)));
                }
            }
        }
        None
    }

    /// The search, with the first hop barred from `previous_hop` and `excluded`: the earliest
    /// arrival first, then the label-setting search for the best route arriving then (fewest
    /// hops, latest-ending first contact), which never needs a label arriving later.
    fn search(&self, query: &Query, excluded: &[NodeIndex]) -> Option<Route> {
        let bound = self.earliest_arrival(query, excluded)?;
        let query = &Query { expiry: query.expiry.min(bound), ..query.clone() };
        let contacts = &self.plan.contacts;
        let mut labels =
            vec![Label { node: query.from, arrival: query.now, hops: 0, first_end: u64::MAX, via: None }];
        let mut heap = Frontier::new();
        heap.push(Reverse((query.now, 0usize, Reverse(u64::MAX), 0usize)));
        let mut settled: Settled = vec![Vec::new(); self.plan.node_count()];
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
            if label.hops == 0 {
                // From the source every contact is its own candidate: each first contact ends
                // at its own time.
                let out = &self.outgoing[node];
                // Contacts that ended by the time the bundle is here cannot carry it.
                let open = out.partition_point(|&c| contacts[c].end <= label.arrival);
                for &index in &out[open..] {
                    let contact = &contacts[index];
                    if Some(contact.to) == query.previous_hop || excluded.contains(&contact.to) {
                        continue;
                    }
                    let Some(arrival) = self.arrival_over(index, label.arrival, query.size, query.expiry)
                    else {
                        continue;
                    };
                    push(&mut labels, &mut heap, &settled, (index, contact.to, arrival, 1, contact.end, id));
                }
            } else {
                // Past the first hop, of the contacts to one neighbour only the earliest
                // arrival matters: the others reach it later with the same hops and first end.
                for pair in &self.pairs[node] {
                    let Some((arrival, index)) = self.best_over(pair, label.arrival, query) else { continue };
                    let next = (index, pair.to, arrival, label.hops + 1, label.first_end, id);
                    push(&mut labels, &mut heap, &settled, next);
                }
            }
        }
        None
    }
}

/// The best route for `query` over `plan`, prepared for this one question (to ask many,
/// prepare a [`ContactGraph`] once).
pub fn earliest_route(plan: &Plan, query: &Query) -> Option<Route> {
    ContactGraph::new(plan.clone()).earliest_route(query)
}

/// Settled labels per node: (arrival, hops, first contact's end).
type Settled = Vec<Vec<(u64, usize, u64)>>;

/// Labels to take, earliest arrival first, then fewer hops, then the later first-contact end;
/// the last field is the label's index.
type Frontier = BinaryHeap<Reverse<(u64, usize, Reverse<u64>, usize)>>;

/// Adds the label `(contact, node, arrival, hops, first_end, from label)` to the search unless a
/// label as good in every way was already taken at its node.
fn push(
    labels: &mut Vec<Label>,
    heap: &mut Frontier,
    settled: &Settled,
    (contact, node, arrival, hops, first_end, from): (usize, NodeIndex, u64, usize, u64, usize),
) {
    let beaten = settled
        .get(node.0 as usize)
        .is_none_or(|done| done.iter().any(|&(a, h, e)| a <= arrival && h <= hops && e >= first_end));
    if beaten {
        return;
    }
    labels.push(Label { node, arrival, hops, first_end, via: Some((contact, from)) });
    heap.push(Reverse((arrival, hops, Reverse(first_end), labels.len() - 1)));
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
pub fn transmit_ms(size: u64, rate: u64) -> Option<u64> {
    if rate == 0 {
        return None;
    }
    let ms = u128::from(size) * 1000;
    u64::try_from(ms.div_ceil(u128::from(rate))).ok()
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
