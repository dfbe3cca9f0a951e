//! Hand-worked plans with known answers, and random plans against a brute-force search.

use super::*;
use crate::ion;

/// A plan in ION's form, times from 0.
fn plan(text: &str) -> Plan {
    ion::parse(text, 0).expect("plan")
}

fn query(plan: &Plan, from: &str, to: &str, size: u64, expiry_s: u64) -> Query {
    Query {
        from: plan.find(from).expect("from"),
        to: plan.find(to).expect("to"),
        now: 0,
        size,
        expiry: expiry_s * 1000,
        previous_hop: None,
    }
}

/// The route as "from>to" pairs of node names, and its arrival.
fn shown(plan: &Plan, route: Option<Route>) -> Option<(Vec<String>, u64)> {
    let route = route?;
    let hops = route
        .contacts
        .iter()
        .map(|&c| format!("{}>{}", plan.name(plan.contacts[c].from), plan.name(plan.contacts[c].to)))
        .collect();
    Some((hops, route.arrival))
}

fn pairs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_chain_waits_for_each_contact_and_adds_transmit_and_light_time() {
    let p = plan(
        "a contact +0 +100 1 2 1000\na contact +50 +200 2 3 1000\na range +0 +1000 1 2 1\na range +0 +1000 2 3 2\n",
    );
    // 1000 B at 1000 B/s: 1 s each; 1 s and 2 s of light time; the second contact starts at 50 s.
    let route = earliest_route(&p, &query(&p, "1", "3", 1000, 3600));
    assert_eq!(shown(&p, route), Some((pairs(&["1>2", "2>3"]), 53_000)));
}

#[test]
fn in_a_diamond_the_later_starting_path_can_arrive_first() {
    let p = plan(
        "a contact +0 +1000 1 2 1000\na contact +100 +1000 2 4 1000\n\
         a contact +10 +1000 1 3 1000\na contact +20 +1000 3 4 1000\na range +0 +1000 1 2 0\n\
         a range +0 +1000 2 4 0\na range +0 +1000 1 3 0\na range +0 +1000 3 4 0\n",
    );
    let route = earliest_route(&p, &query(&p, "1", "4", 1000, 3600));
    assert_eq!(shown(&p, route), Some((pairs(&["1>3", "3>4"]), 21_000)));
}

#[test]
fn a_contact_too_small_for_the_bundle_is_passed_over() {
    let p = plan("a contact +0 +5 1 2 100\na contact +60 +120 1 2 100\na range +0 +1000 1 2 0\n");
    // 1000 B at 100 B/s takes 10 s: the 5 s contact cannot hold it.
    let route = earliest_route(&p, &query(&p, "1", "2", 1000, 3600));
    assert_eq!(shown(&p, route), Some((pairs(&["1>2"]), 70_000)));
    assert_eq!(earliest_route(&p, &query(&p, "1", "2", 100_000, 3600)), None, "nothing holds 100 kB");
}

#[test]
fn a_bundle_that_would_arrive_after_it_expires_has_no_route() {
    let p = plan("a contact +100 +200 1 2 1000\na range +0 +1000 1 2 0\n");
    assert_eq!(earliest_route(&p, &query(&p, "1", "2", 1000, 100)), None);
    let route = earliest_route(&p, &query(&p, "1", "2", 1000, 101));
    assert_eq!(route.map(|r| r.arrival), Some(101_000), "arriving exactly at the expiry is in time");
}

#[test]
fn a_contact_without_a_range_is_unusable() {
    let p = plan("a contact +0 +100 1 2 1000\na contact +0 +100 2 3 1000\na range +0 +1000 1 2 0\n");
    assert_eq!(earliest_route(&p, &query(&p, "1", "3", 10, 3600)), None);
    assert!(earliest_route(&p, &query(&p, "1", "2", 10, 3600)).is_some());
}

#[test]
fn a_contact_ending_at_the_transmit_time_is_unusable() {
    // The bundle reaches 2 at exactly 10 s, when the contact 2>3 ends.
    let p = plan(
        "a contact +0 +100 1 2 1000\na contact +0 +10 2 3 1000\na range +0 +1000 1 2 9\na range +0 +1000 2 3 0\n",
    );
    assert_eq!(earliest_route(&p, &query(&p, "1", "3", 1000, 3600)), None);
    let graph = ContactGraph::new(p);
    assert_eq!(graph.arrival_over(1, 10_000, 0, u64::MAX), None, "even an empty bundle");
    assert_eq!(graph.arrival_over(1, 9_999, 0, u64::MAX), Some(9_999));
}

#[test]
fn a_destination_numbered_below_the_source_is_found() {
    let p = plan(
        "a contact +0 +100 9 5 1000\na contact +0 +100 5 1 1000\na range +0 +1000 9 5 0\na range +0 +1000 5 1 0\n",
    );
    let route = earliest_route(&p, &query(&p, "9", "1", 1000, 3600));
    assert_eq!(shown(&p, route), Some((pairs(&["9>5", "5>1"]), 2_000)));
}

#[test]
fn equally_early_routes_go_by_fewer_hops_then_the_later_ending_first_contact() {
    // Zero-size, zero-delay: every route arrives at 0 s; the direct contact wins on hops.
    let p = plan(
        "a contact +0 +100 1 2 1000\na contact +0 +100 2 3 1000\na contact +0 +50 1 3 1000\n\
         a contact +0 +80 1 3 1000\na range +0 +1000 1 2 0\na range +0 +1000 2 3 0\na range +0 +1000 1 3 0\n",
    );
    let route = earliest_route(&p, &query(&p, "1", "3", 0, 3600)).expect("route");
    assert_eq!(route.contacts, vec![3], "one hop, and of the two direct contacts the later-ending");
}

#[test]
fn the_previous_hop_is_not_the_next() {
    let p = plan(
        "a contact +0 +100 1 2 1000\na contact +0 +100 1 3 1000\na contact +50 +100 3 2 1000\n\
         a range +0 +1000 1 2 0\na range +0 +1000 1 3 0\na range +0 +1000 3 2 0\n",
    );
    let mut q = query(&p, "1", "2", 1000, 3600);
    assert_eq!(shown(&p, earliest_route(&p, &q)).map(|(h, _)| h), Some(pairs(&["1>2"])));
    q.previous_hop = p.find("2");
    assert_eq!(shown(&p, earliest_route(&p, &q)), Some((pairs(&["1>3", "3>2"]), 51_000)));
}

/// Every simple chain of contacts from `query.from`, the best by (arrival, hops, later first end).
fn brute_force(graph: &ContactGraph, query: &Query) -> Option<(u64, usize, u64)> {
    fn walk(
        graph: &ContactGraph,
        query: &Query,
        node: NodeIndex,
        at: u64,
        path: &mut Vec<usize>,
        best: &mut Option<(u64, usize, u64)>,
    ) {
        let plan = graph.plan();
        if node == query.to {
            let first_end = path.first().map_or(u64::MAX, |&c| plan.contacts[c].end);
            let key = (at, path.len(), first_end);
            let better = match best {
                None => true,
                Some((a, h, e)) => (key.0, key.1, Reverse(key.2)) < (*a, *h, Reverse(*e)),
            };
            if better {
                *best = Some(key);
            }
            return;
        }
        for (index, contact) in plan.contacts.iter().enumerate() {
            if contact.from != node || path.contains(&index) || path.len() >= plan.node_count() {
                continue;
            }
            if path.is_empty() && Some(contact.to) == query.previous_hop {
                continue;
            }
            if path.iter().any(|&c| plan.contacts[c].from == contact.to) || contact.to == query.from {
                continue; // simple paths only: a loop never arrives earlier
            }
            if let Some(arrival) = graph.arrival_over(index, at, query.size, query.expiry) {
                path.push(index);
                walk(graph, query, contact.to, arrival, path, best);
                path.pop();
            }
        }
    }
    let mut best = None;
    walk(graph, query, query.from, query.now, &mut Vec::new(), &mut best);
    best
}

/// A random plan of `nodes` nodes in ION's form, each contact with its own range.
fn random_plan(nodes: u32, contacts: &[(u32, u32, u64, u64, u64, u64)]) -> (Plan, String) {
    let mut text = String::new();
    for &(a, b, start, length, rate_k, owlt) in contacts {
        let (a, b) = (a % nodes, b % nodes);
        if a == b {
            continue;
        }
        text.push_str(&format!("a contact +{start} +{} {a} {b} {}\n", start + length, rate_k * 100));
        text.push_str(&format!("a range +{start} +{} {a} {b} {owlt}\n", start + length));
    }
    let mut p = plan(&text);
    for n in 0..nodes {
        p.node(&n.to_string());
    }
    (p, text)
}

fn contacts_strategy() -> impl proptest::strategy::Strategy<Value = Vec<(u32, u32, u64, u64, u64, u64)>> {
    proptest::collection::vec((0u32..8, 0u32..8, 0u64..300, 1u64..200, 1u64..5, 0u64..4), 1..25)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// On random plans of 3–8 nodes with random volume already booked, every route found is
    /// feasible (chained, each contact usable in turn: volume, time, range, expiry) and as early
    /// as the best of all contact paths (and with as few hops, and as late a first contact end),
    /// and one is found whenever any path exists.
    #[test]
    fn routes_are_feasible_and_as_early_as_any_path(
        nodes in 3u32..=8,
        contacts in contacts_strategy(),
        bookings in proptest::collection::vec((0usize..25, 0u64..30_000), 0..6),
        size in 0u64..3000,
        expiry_s in 50u64..600,
        from in 0u32..8,
        to in 0u32..7,
        previous in proptest::option::of(0u32..8),
        now_s in 0u64..150,
    ) {
        let (p, text) = random_plan(nodes, &contacts);
        let from = from % nodes;
        let to = (from + 1 + to % (nodes - 1)) % nodes; // another node
        let q = Query {
            from: p.find(&from.to_string()).expect("from"),
            to: p.find(&to.to_string()).expect("to"),
            now: now_s * 1000,
            size,
            expiry: expiry_s * 1000,
            previous_hop: previous.map(|n| p.find(&(n % nodes).to_string()).expect("previous")),
        };
        let mut graph = ContactGraph::new(p);
        let contact_count = graph.plan().contacts.len();
        for (contact, bytes) in bookings {
            if contact < contact_count {
                let _kept = graph.book(&Route { contacts: vec![contact], arrival: 0 }, bytes);
            }
        }
        let found = graph.earliest_route(&q);
        let expected = brute_force(&graph, &q);
        match (&found, expected) {
            (None, None) => {}
            (Some(route), Some((arrival, hops, first_end))) => {
                proptest::prop_assert_eq!(graph.arrival_along(&q, &route.contacts), Some(route.arrival));
                proptest::prop_assert_eq!(route.arrival, arrival);
                proptest::prop_assert_eq!(route.hops(), hops);
                proptest::prop_assert_eq!(graph.plan().contacts[route.contacts[0]].end, first_end);
            }
            (found, expected) => proptest::prop_assert!(false, "found {:?}, brute force {:?}\n{}", found, expected, text),
        }
    }

    /// The cache never answers differently from a fresh search, whatever happens between
    /// questions: time moving on, bookings on the routes given, releases.
    #[test]
    fn the_route_cache_answers_as_a_fresh_search_would(
        nodes in 3u32..=6,
        contacts in contacts_strategy(),
        steps in proptest::collection::vec((0u32..6, 0u64..20, 0u64..2000, 0u8..4, 1u64..4), 1..30),
    ) {
        let (p, text) = random_plan(nodes, &contacts);
        let mut graph = ContactGraph::new(p);
        let mut bookings = Vec::new();
        let mut now = 0;
        for (to, advance_s, size, action, expiry_quarter) in steps {
            now += advance_s * 1000;
            let q = Query {
                from: graph.plan().find("0").expect("0"),
                to: graph.plan().find(&(to % nodes).to_string()).expect("to"),
                now,
                size: size / 500 * 500, // a few sizes, so that the cache is hit
                expiry: expiry_quarter * 150_000, // "no route" may be one only for the shorter-lived
                previous_hop: None,
            };
            let fresh = graph.earliest_route(&q);
            let cached = graph.route(&q);
            proptest::prop_assert_eq!(&cached, &fresh, "{}", text);
            match (action, cached) {
                (0 | 1, Some(route)) => bookings.push(graph.book(&route, q.size)),
                (2, _) => {
                    if let Some(booking) = bookings.pop() {
                        graph.release(booking);
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn a_second_large_bundle_takes_the_later_route_once_the_first_has_booked_the_early_one() {
    // 1>2 for 100 s at 1 kB/s holds 100 kB; a later contact 1>3>2 holds as much.
    let p = plan(
        "a contact +0 +100 1 2 1000\na contact +200 +400 1 3 1000\na contact +200 +400 3 2 1000\n\
         a range +0 +1000 1 2 0\na range +0 +1000 1 3 0\na range +0 +1000 3 2 0\n",
    );
    let mut graph = ContactGraph::new(p);
    let q = query(graph.plan(), "1", "2", 60_000, 3600);
    let first = graph.route(&q).expect("first");
    assert_eq!((first.contacts.clone(), first.arrival), (vec![0], 60_000));
    let booking = graph.book(&first, q.size);
    assert_eq!(graph.booked(0), 60_000);
    // 40 kB left on the direct contact: the second 60 kB bundle goes the long way.
    let second = graph.route(&q).expect("second");
    assert_eq!((second.contacts.clone(), second.arrival), (vec![1, 2], 320_000));
    // A small one still fits behind the first: it starts when the first is sent.
    let small = graph.route(&query(graph.plan(), "1", "2", 1_000, 3600)).expect("small");
    assert_eq!((small.contacts, small.arrival), (vec![0], 61_000));
    // The first is not sent after all: its volume comes back, and the direct route with it.
    graph.release(booking);
    assert_eq!(graph.booked(0), 0);
    assert_eq!(graph.route(&q).map(|r| r.contacts), Some(vec![0]));
}

#[test]
fn a_booking_from_a_replaced_plan_is_ignored() {
    let text = "a contact +0 +100 1 2 1000\na range +0 +1000 1 2 0\n";
    let mut old = ContactGraph::new(plan(text));
    let q = query(old.plan(), "1", "2", 1000, 3600);
    let booking = old.book(&old.earliest_route(&q).expect("route"), 1000);
    let mut new = ContactGraph::new(plan(text));
    let other = new.book(&new.earliest_route(&q).expect("route"), 500);
    new.release(booking);
    assert_eq!(new.booked(0), 500, "the old plan's booking does not touch the new plan");
    new.release(other);
    assert_eq!(new.booked(0), 0);
}

#[test]
fn alternative_routes_go_through_other_next_hops_best_first() {
    let p = plan(
        "a contact +0 +100 1 4 1000\na contact +10 +100 1 2 1000\na contact +20 +100 2 4 1000\n\
         a contact +30 +100 1 3 1000\na contact +40 +100 3 4 1000\na contact +50 +100 1 2 1000\n\
         a range +0 +1000 1 4 0\na range +0 +1000 1 2 0\na range +0 +1000 2 4 0\n\
         a range +0 +1000 1 3 0\na range +0 +1000 3 4 0\n",
    );
    let graph = ContactGraph::new(p);
    let q = query(graph.plan(), "1", "4", 1000, 3600);
    let routes = graph.routes(&q, 5);
    let shown: Vec<_> = routes.iter().map(|r| (r.contacts.clone(), r.arrival)).collect();
    assert_eq!(shown, vec![(vec![0], 1_000), (vec![1, 2], 21_000), (vec![3, 4], 41_000)]);
    assert_eq!(graph.routes(&q, 2).len(), 2, "no more than asked");
    assert_eq!(graph.routes(&q, 1)[0], graph.earliest_route(&q).expect("best"));
}

#[test]
fn the_cache_is_used_while_its_route_stays_the_best_and_not_after() {
    let p = plan("a contact +0 +100 1 2 1000\na contact +200 +400 1 2 1000\na range +0 +1000 1 2 0\n");
    let mut graph = ContactGraph::new(p);
    let mut q = query(graph.plan(), "1", "2", 1000, 3600);
    assert_eq!(graph.route(&q).map(|r| r.arrival), Some(1_000));
    q.now = 50_000;
    // The contact is open: leaving later arrives later, so the cached answer is not reused.
    assert_eq!(graph.route(&q).map(|r| r.arrival), Some(51_000));
    assert_eq!(graph.cache_hits(), 0);
    q.now = 150_000;
    assert_eq!(graph.route(&q).map(|r| (r.contacts, r.arrival)), Some((vec![1], 201_000)));
    q.now = 190_000;
    assert_eq!(graph.route(&q).map(|r| r.arrival), Some(201_000), "still waiting for the same contact");
    assert_eq!(graph.cache_hits(), 1);
}
