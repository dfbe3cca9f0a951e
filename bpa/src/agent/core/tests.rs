//! The core's decisions, on plain numbers for the clock: no runtime, no store, no sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::routing::{EidPattern, StaticRoute, contact_router};
use super::*;

const SECOND: u64 = 1_000;

fn core() -> Core {
    Core::new(CoreConfig { retry_min: Duration::from_secs(1), retry_max: Duration::from_secs(8) })
}

fn node(n: u32) -> Eid {
    Eid::ipn(n, 0)
}

#[test]
fn a_bundle_goes_to_its_destination_first_then_by_static_route_to_a_neighbour_that_is_up() {
    let mut core = core();
    let far = Eid::ipn(9, 1);
    assert_eq!(core.reach.next_hop(&far, None), None, "nothing is up");
    core.reach.static_routes.add(StaticRoute { pattern: EidPattern::Node(node(9)), via: node(2) });
    core.reach.static_routes.add(StaticRoute { pattern: EidPattern::Node(node(9)), via: node(3) });
    core.neighbour_up(node(3));
    assert_eq!(core.reach.next_hop(&far, None), Some(node(3)), "the first route's hop is down");
    core.neighbour_up(node(2));
    assert_eq!(core.reach.next_hop(&far, None), Some(node(2)));
    assert_eq!(core.reach.next_hop(&far, Some(&node(2))), Some(node(3)), "a refusing hop is passed over");
    core.neighbour_up(node(9));
    assert_eq!(core.reach.next_hop(&far, None), Some(node(9)), "the destination itself is up");
    assert!(core.neighbour_down(&node(9)));
    assert!(!core.neighbour_down(&node(9)), "down twice is down once");
    assert_eq!(core.reach.next_hop(&far, None), Some(node(2)));
}

#[test]
fn a_bundle_is_claimed_by_one_send_at_a_time() {
    let mut core = core();
    assert!(core.claim(7));
    assert!(!core.claim(7), "a second send of the same bundle waits");
    assert!(core.claim(8));
    assert_eq!(core.in_flight(), 2);
    core.release(7);
    assert!(core.claim(7));
    core.release(7);
    core.release(8);
    assert_eq!(core.in_flight(), 0);
}

#[test]
fn failed_sends_back_off_doubling_to_the_longest_and_one_timer_runs_per_neighbour() {
    let mut core = core();
    let (link, replaced) = core.neighbour_up(node(2));
    assert!(!replaced);
    let now = Instant::now();
    let first = core.send_failed(&node(2), link, 0, now);
    assert_eq!(first, SendFailed { retry_in: Some(Duration::from_secs(1)), log: Some(0) });
    let second = core.send_failed(&node(2), link, 0, now);
    assert_eq!(second, SendFailed { retry_in: None, log: None }, "the timer runs; the line was written");
    assert_eq!(core.poll_timeout(), Some(SECOND));
    let mut delays = Vec::new();
    let mut at = 0;
    for _ in 0..5 {
        at = core.poll_timeout().expect("a retry timer");
        assert_eq!(core.take_due(at), Some(Timer::Retry(node(2))));
        assert_eq!(core.take_due(at), None);
        delays.push(core.retry_later(&node(2), Some(link), at).expect("a timer starts"));
    }
    let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [2, 4, 8, 8, 8], "doubled up to the longest");
    core.sent(&node(2), link);
    assert_eq!(core.take_due(at + 8 * SECOND), Some(Timer::Retry(node(2))));
    assert_eq!(
        core.retry_later(&node(2), Some(link), at),
        Some(Duration::from_secs(1)),
        "a send went: afresh"
    );
}

#[test]
fn a_send_over_a_link_gone_neither_backs_off_nor_logs_for_the_link_up_now() {
    let mut core = core();
    let (old, _) = core.neighbour_up(node(2));
    let (new, replaced) = core.neighbour_up(node(2));
    assert!(replaced);
    assert_ne!(old, new);
    let failed = core.send_failed(&node(2), old, 0, Instant::now());
    assert_eq!(failed, SendFailed { retry_in: Some(Duration::from_secs(1)), log: None });
    assert_eq!(core.take_due(SECOND), Some(Timer::Retry(node(2))));
    assert_eq!(
        core.send_failed(&node(2), new, SECOND, Instant::now()).retry_in,
        Some(Duration::from_secs(1))
    );
}

#[test]
fn a_neighbour_gone_down_leaves_no_retry_timer() {
    let mut core = core();
    let (link, _) = core.neighbour_up(node(2));
    core.send_failed(&node(2), link, 0, Instant::now());
    assert!(core.poll_timeout().is_some());
    core.neighbour_down(&node(2));
    assert_eq!(core.poll_timeout(), None);
    assert!(core.timers_quiet(u64::MAX));
}

#[test]
fn the_core_is_quiet_only_with_no_timer_due_and_none_being_acted_on() {
    let mut core = core();
    assert!(core.timers_quiet(0));
    core.housekeep_every(Duration::from_secs(60), 0);
    assert!(core.timers_quiet(59 * SECOND));
    assert!(!core.timers_quiet(60 * SECOND), "due");
    assert_eq!(core.take_due(60 * SECOND), Some(Timer::Housekeeping));
    assert!(!core.timers_quiet(60 * SECOND), "being acted on");
    core.housekept(60 * SECOND);
    assert_eq!(core.take_due(60 * SECOND), None);
    assert!(core.timers_quiet(60 * SECOND));
    assert_eq!(core.poll_timeout(), Some(120 * SECOND), "the next round");
    core.stop_housekeeping();
    assert_eq!(core.poll_timeout(), None);
    core.housekept(120 * SECOND);
    assert_eq!(core.poll_timeout(), None, "a round under way when it stopped sets no other");
}

#[test]
fn a_custody_timer_only_ever_moves_earlier() {
    let mut core = core();
    assert!(core.arm_earliest(Timer::CustodyRetransmit, 5 * SECOND));
    assert!(!core.arm_earliest(Timer::CustodyRetransmit, 9 * SECOND));
    assert!(!core.arm_earliest(Timer::CustodyRetransmit, 5 * SECOND));
    assert!(core.arm_earliest(Timer::CustodyRetransmit, 2 * SECOND));
    assert_eq!(core.poll_timeout(), Some(2 * SECOND));
}

#[test]
fn contact_edges_come_due_in_order_each_once_ends_before_starts() {
    // Node 1 has back-to-back contacts with node 2 (0–10 s, 10–20 s) and one with node 3 later.
    let text = "\
        a contact +0 +10 1 2 1000\n\
        a contact +10 +20 1 2 1000\n\
        a contact +30 +40 1 3 1000\n\
        a contact +0 +40 2 1 1000\n";
    let plan = ::routing::ion::parse(text, 0).expect("a plan");
    let router = Arc::new(contact_router(plan, &node(1)));
    let mut core = core();
    assert!(core.set_contact_plan(Arc::clone(&router), 5 * SECOND).is_none());
    // One going on starts now.
    assert_eq!(core.poll_timeout(), Some(5 * SECOND));
    let kinds = |due: Vec<DueEdge>| {
        due.into_iter().map(|(at, edge, index)| (at / SECOND, edge, index)).collect::<Vec<_>>()
    };
    assert_eq!(kinds(core.contact_edges_due(5 * SECOND)), [(5, Edge::Start, 0)]);
    assert_eq!(core.take_due(10 * SECOND), Some(Timer::Contacts));
    assert_eq!(kinds(core.contact_edges_due(10 * SECOND)), [(10, Edge::End, 0), (10, Edge::Start, 1)]);
    assert_eq!(core.contact_edges_due(10 * SECOND), [], "each once");
    assert_eq!(core.poll_timeout(), Some(20 * SECOND));
    assert_eq!(
        kinds(core.contact_edges_due(45 * SECOND)),
        [(20, Edge::End, 1), (30, Edge::Start, 2), (40, Edge::End, 2)],
        "late, all that passed, in order"
    );
    assert_eq!(core.poll_timeout(), None, "no edge is left");
    assert!(core.set_contact_plan(router, 50 * SECOND).is_some(), "the plan replaced is answered");
    assert_eq!(core.poll_timeout(), None, "nothing from this node after 40 s");
}
