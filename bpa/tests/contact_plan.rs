//! Contact plans in running agents (issue 15), on virtual time: four nodes share one
//! `ManualClock`; each routes by the same plan; a harness plays the daemon's part, bringing a
//! neighbour up when its agent announces a contact's start and down at its end; links take
//! `size / rate + light time` of virtual time to deliver. The clock jumps from event to event
//! (contact edges, deliveries), so what is measured is the plan's time, exactly.
//!
//! The clock moves only once the nodes have done all they will do at the present instant: every
//! contact event due handled, every neighbour's queue idle, and every send under way waiting on
//! the clock for its delivery time ([`Net::settled`]) — not after a guessed real-time pause.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::agent::ContactEvent;
use bpa::agent::{Agent, AgentConfig};
use bpa::bundle::{BundleFlags, Eid};
use bpa::cla::memory::MemoryLink;
use bpa::cla::{ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle};
use bpa::store::SqliteStore;
use bpa::testing::{TestNode, until_idle};
use bpa::time::{Clock, ManualClock};
use bytes::Bytes;

/// The plan's reference time (DTN ms).
const T0: u64 = 800_000_000_000;

type Node = Agent<SqliteStore>;

/// A link that delivers after the bundle's transmission and light time on the shared clock,
/// and fails every send while cut.
#[derive(Debug)]
struct TimedLink {
    inner: MemoryLink<SqliteStore>,
    clock: Arc<ManualClock>,
    rate: u64,
    owlt_ms: u64,
    cut: AtomicBool,
    /// When deliveries under way complete, for the harness to move the clock to.
    pending: Arc<Mutex<BTreeSet<u64>>>,
    /// Sends in this link now, and those of them waiting on the clock for their delivery time.
    sends: Arc<SendCounts>,
}

/// What a link's sends are doing: a send not waiting on the clock is still moving.
#[derive(Debug, Default)]
struct SendCounts {
    under_way: AtomicUsize,
    waiting: AtomicUsize,
}

impl SendCounts {
    fn moving(&self) -> bool {
        self.under_way.load(Ordering::SeqCst) != self.waiting.load(Ordering::SeqCst)
    }
}

impl ConvergenceLayer for TimedLink {
    fn name(&self) -> &str {
        "timed"
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let peer = peer.clone();
        Box::pin(async move {
            if self.cut.load(Ordering::SeqCst) {
                return Err(ClaError::LinkDown { peer: peer.to_string() });
            }
            self.sends.under_way.fetch_add(1, Ordering::SeqCst);
            let transmit = (bundle.len() * 1000).div_ceil(self.rate);
            let at = self.clock.now_dtn_ms() + transmit + self.owlt_ms;
            self.pending.lock().expect("lock").insert(at);
            self.sends.waiting.fetch_add(1, Ordering::SeqCst);
            self.clock.sleep_until(at).await;
            self.sends.waiting.fetch_sub(1, Ordering::SeqCst);
            self.pending.lock().expect("lock").remove(&at);
            let sent = self.inner.send(&peer, bundle).await;
            self.sends.under_way.fetch_sub(1, Ordering::SeqCst);
            sent
        })
    }
}

/// The sends of each link the harness made, by (from, to), the newest last.
type LinkSends = HashMap<(u32, u32), Vec<Arc<SendCounts>>>;

struct Net {
    clock: Arc<ManualClock>,
    nodes: HashMap<u32, Node>,
    /// Links as (from, to) → (rate, light time); a cut link refuses every send.
    links: HashMap<(u32, u32), (u64, u64)>,
    cut: Arc<Mutex<BTreeSet<(u32, u32)>>>,
    pending: Arc<Mutex<BTreeSet<u64>>>,
    /// When each contact event the nodes announce is due (DTN ms), from the plan.
    event_times: Vec<u64>,
    /// Contact events the link managers have acted on.
    handled: Arc<AtomicUsize>,
    sends: Arc<Mutex<LinkSends>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Net {
    /// Nodes `ipn:N.0` for each N, each routing by `plan` (ION form, relative to T0).
    async fn new(numbers: &[u32], plan: &str) -> Net {
        let clock = Arc::new(ManualClock::new(T0));
        let parsed = routing::ion::parse(plan, T0).expect("plan");
        let mut links = HashMap::new();
        let mut event_times = Vec::new();
        for contact in &parsed.contacts {
            if numbers.contains(&parsed.name(contact.from).parse().expect("n")) {
                event_times.push(contact.start);
                // No end between two contacts with the same neighbour that meet.
                let covered = parsed.contacts.iter().any(|c| {
                    !std::ptr::eq(c, contact)
                        && (c.from, c.to) == (contact.from, contact.to)
                        && c.start <= contact.end
                        && contact.end < c.end
                });
                if !covered {
                    event_times.push(contact.end);
                }
            }
            let (from, to) = (parsed.name(contact.from), parsed.name(contact.to));
            let owlt = parsed.owlt(contact.from, contact.to, contact.start).unwrap_or(0);
            links.insert((from.parse().expect("n"), to.parse().expect("n")), (contact.rate, owlt));
        }
        let mut nodes = HashMap::new();
        let mut dirs = Vec::new();
        for &n in numbers {
            let TestNode { agent, dir } =
                TestNode::new(AgentConfig::new(Eid::ipn(n, 0)), clock.clone()).await;
            agent.start().await.expect("start");
            nodes.insert(n, agent);
            dirs.push(dir);
        }
        let net = Net {
            clock,
            nodes,
            links,
            cut: Arc::new(Mutex::new(BTreeSet::new())),
            pending: Arc::new(Mutex::new(BTreeSet::new())),
            event_times,
            handled: Arc::new(AtomicUsize::new(0)),
            sends: Arc::new(Mutex::new(HashMap::new())),
            _dirs: dirs,
        };
        for (&n, agent) in &net.nodes {
            net.manage_links(n, agent.contact_events());
            agent.set_contact_plan(parsed.clone());
        }
        net
    }

    /// The daemon's part: a neighbour up at its contact's start, down at the end.
    fn manage_links(&self, n: u32, mut events: tokio::sync::mpsc::Receiver<ContactEvent>) {
        let agent = self.nodes[&n].clone();
        let peers: HashMap<u32, Node> = self.nodes.iter().map(|(k, v)| (*k, v.clone())).collect();
        let links = self.links.clone();
        let (clock, cut, pending) =
            (Arc::clone(&self.clock), Arc::clone(&self.cut), Arc::clone(&self.pending));
        let (handled, sends) = (Arc::clone(&self.handled), Arc::clone(&self.sends));
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    ContactEvent::Started { neighbour, .. } => {
                        let Eid::Ipn { node: m, .. } = neighbour else { continue };
                        let (rate, owlt_ms) = links[&(n, m)];
                        let (inner, _) = MemoryLink::new(peers[&m].clone());
                        let counts = Arc::new(SendCounts::default());
                        sends.lock().expect("lock").entry((n, m)).or_default().push(Arc::clone(&counts));
                        let link = TimedLink {
                            inner,
                            clock: Arc::clone(&clock),
                            rate,
                            owlt_ms,
                            cut: AtomicBool::new(cut.lock().expect("lock").contains(&(n, m))),
                            pending: Arc::clone(&pending),
                            sends: counts,
                        };
                        agent.neighbour_up(neighbour, Arc::new(link)).await.expect("up");
                    }
                    ContactEvent::Ended { neighbour } => agent.neighbour_down(&neighbour),
                }
                handled.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    /// Moves the clock to `at`, letting the nodes act at each contact edge and delivery on the
    /// way (each is an exact instant: the clock stops there).
    async fn run_until(&self, at: u64, edges: &[u64]) {
        loop {
            self.settle().await;
            let now = self.clock.now_dtn_ms();
            let next_edge = edges.iter().map(|s| T0 + s * 1000).filter(|&e| e > now).min();
            let next_delivery = self.pending.lock().expect("lock").iter().copied().find(|&d| d > now);
            let Some(next) =
                [next_edge, next_delivery, Some(at)].into_iter().flatten().filter(|&t| t > now).min()
            else {
                return;
            };
            self.clock.advance(next - now);
            if next >= at {
                self.settle().await;
                return;
            }
        }
    }

    /// Waits until the nodes have done all they will do at the present instant (the clock
    /// stands still meanwhile), and then a little longer, to see nothing stir again.
    async fn settle(&self) {
        let started = std::time::Instant::now();
        let mut quiet_looks = 0;
        while quiet_looks < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            quiet_looks = if self.settled() { quiet_looks + 1 } else { 0 };
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the nodes never settled at +{} s",
                (self.clock.now_dtn_ms() - T0) / 1000
            );
        }
    }

    /// Whether every contact event due was acted on, every neighbour's queue has taken all it
    /// will, and every send under way waits on the clock for its delivery time.
    fn settled(&self) -> bool {
        let now = self.clock.now_dtn_ms();
        let due = self.event_times.iter().filter(|&&t| t <= now).count();
        if self.handled.load(Ordering::SeqCst) < due {
            return false;
        }
        let sends = self.sends.lock().expect("lock");
        if sends.values().flatten().any(|counts| counts.moving()) {
            return false;
        }
        self.nodes.iter().all(|(&n, agent)| {
            agent.neighbours().iter().all(|neighbour| {
                // Sends hold a slot from their start until their outcome is recorded; those of
                // the neighbour's newest link must all be waiting on the clock.
                let waiting = match &neighbour.node_id {
                    Eid::Ipn { node: m, .. } => sends
                        .get(&(n, *m))
                        .and_then(|links| links.last())
                        .map_or(0, |counts| counts.waiting.load(Ordering::SeqCst)),
                    _ => 0,
                };
                neighbour.queue_idle && neighbour.in_flight == waiting
            })
        })
    }

    /// When each bundle for `endpoint` reached it (DTN ms), and the node it came from.
    async fn arrivals(&self, n: u32, endpoint: &Eid) -> Vec<(u64, Option<Eid>)> {
        let agent = &self.nodes[&n];
        let mut out = Vec::new();
        let listed = agent.store().by_destination(endpoint, 100).await.expect("by_destination");
        for meta in listed {
            let bundle = agent.load(meta.id).await.expect("bundle");
            out.push((meta.received_at, bundle.previous_node()));
        }
        out
    }
}

/// The events `agent` announces at the present instant: all of them once it is idle (its timer
/// announces while it fires).
async fn events_now(
    agent: &Node,
    events: &mut tokio::sync::mpsc::Receiver<ContactEvent>,
) -> Vec<ContactEvent> {
    until_idle(&[agent]).await;
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

async fn send(node: &Node, to: Eid, size: usize) {
    node.send(Eid::ipn(1, 1), to, Bytes::from(vec![7u8; size]), 3_600_000, BundleFlags::default())
        .await
        .expect("send");
}

const CHAIN: &str = "\
a contact +100 +200 1 2 100000
a contact +300 +400 2 3 50000
a contact +500 +600 3 4 20000
a range +0 +1000 1 2 1
a range +0 +1000 2 3 2
a range +0 +1000 3 4 3
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_crosses_three_contact_windows_and_arrives_when_dtn_route_said() {
    let net = Net::new(&[1, 2, 3, 4], CHAIN).await;
    let destination = Eid::ipn(4, 1);
    send(&net.nodes[&1], destination.clone(), 10_000).await;
    let stored = net.nodes[&1].store().by_destination(&destination, 10).await.expect("listed");
    let length = stored[0].length;
    // What `dtn route` says at the start, for this bundle.
    let report = net.nodes[&1].explain_route(&destination, length, 3_600_000, None).expect("a plan");
    let route = report.routes.first().expect("a route");
    assert_eq!(route.next_hop, "ipn:2.0");
    assert_eq!(route.hops, 3);
    // Nothing moves before the first contact.
    net.run_until(T0 + 99_000, &[100, 200, 300, 400, 500, 600]).await;
    assert!(net.nodes[&2].store().by_destination(&destination, 10).await.expect("b").is_empty());
    net.run_until(T0 + 700_000, &[100, 200, 300, 400, 500, 600]).await;
    let arrived = net.arrivals(4, &destination).await;
    assert_eq!(arrived.len(), 1, "delivered once");
    let (at, previous) = &arrived[0];
    assert_eq!(previous.as_ref(), Some(&Eid::ipn(3, 0)));
    assert_eq!(*at, route.arrival_time, "arrived at the predicted time (A -> B -> C -> D)");
    // The intermediate nodes hold nothing more, and A's contact events opened and closed B.
    for n in [1, 2, 3] {
        assert!(net.nodes[&n].store().by_destination(&destination, 10).await.expect("l").is_empty());
    }
    assert!(net.nodes[&1].neighbours().is_empty(), "the session to B closed at the contact's end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_left_unsent_when_its_contact_ends_is_routed_again() {
    // By B is best, but the link to B fails all through B's contact; at its end the bundle
    // is routed again, by C.
    let plan = "\
a contact +100 +200 1 2 100000
a contact +250 +300 2 4 100000
a contact +300 +400 1 3 100000
a contact +450 +500 3 4 100000
a range +0 +1000 1 2 0
a range +0 +1000 2 4 0
a range +0 +1000 1 3 0
a range +0 +1000 3 4 0
";
    let net = Net::new(&[1, 2, 3, 4], plan).await;
    net.cut.lock().expect("lock").insert((1, 2));
    let destination = Eid::ipn(4, 1);
    send(&net.nodes[&1], destination.clone(), 1_000).await;
    let report = net.nodes[&1].explain_route(&destination, 1_100, 3_600_000, None).expect("plan");
    assert_eq!(report.routes[0].next_hop, "ipn:2.0");
    net.run_until(T0 + 600_000, &[100, 200, 250, 300, 400, 450, 500]).await;
    let arrived = net.arrivals(4, &destination).await;
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].1, Some(Eid::ipn(3, 0)), "by C, after B's contact ended");
    assert!(arrived[0].0 >= T0 + 450_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_large_bundle_takes_the_later_route_when_the_first_has_booked_the_early_one() {
    // A->B holds 10 kB in its 10 s; two bundles of about 6 kB: the second goes by C.
    let plan = "\
a contact +100 +110 1 2 1000
a contact +150 +200 2 4 100000
a contact +200 +300 1 3 100000
a contact +300 +400 3 4 100000
a range +0 +1000 1 2 0
a range +0 +1000 2 4 0
a range +0 +1000 1 3 0
a range +0 +1000 3 4 0
";
    let net = Net::new(&[1, 2, 3, 4], plan).await;
    let destination = Eid::ipn(4, 1);
    send(&net.nodes[&1], destination.clone(), 6_000).await;
    send(&net.nodes[&1], destination.clone(), 6_000).await;
    net.run_until(T0 + 500_000, &[100, 110, 150, 200, 300, 400]).await;
    let mut via: Vec<Option<Eid>> = net.arrivals(4, &destination).await.into_iter().map(|(_, p)| p).collect();
    via.sort();
    assert_eq!(via, vec![Some(Eid::ipn(2, 0)), Some(Eid::ipn(3, 0))], "one by B, the other by C");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_neighbours_and_static_routes_still_go_first_beside_the_plan() {
    // The plan has 1 -> 2 only from +100 s; 3 is connected now, with a static route to 4 by it.
    let plan = "a contact +100 +200 1 2 100000\na contact +100 +200 2 4 100000\na range +0 +1000 1 2 0\na range +0 +1000 2 4 0\n";
    let net = Net::new(&[1, 2, 3, 4], plan).await;
    let a = &net.nodes[&1];
    let (to_3, _) = MemoryLink::new(net.nodes[&3].clone());
    a.neighbour_up(Eid::ipn(3, 0), Arc::new(to_3)).await.expect("up");
    a.add_route(bpa::agent::Route { to: Eid::ipn(4, 0), via: Eid::ipn(3, 0) }).await.expect("route");
    send(a, Eid::ipn(3, 1), 100).await;
    send(a, Eid::ipn(4, 1), 100).await;
    net.run_until(T0 + 1_000, &[]).await;
    assert_eq!(net.arrivals(3, &Eid::ipn(3, 1)).await.len(), 1, "a connected neighbour is its own next hop");
    let at_3 = net.nodes[&3].store().by_destination(&Eid::ipn(4, 1), 10).await.expect("listed");
    assert_eq!(at_3.len(), 1, "the static route went first, not the plan's later contact by 2");
}

/// The contact events of one agent as the clock moves to each of `times` (seconds after T0).
async fn events_at(plans: &[(u64, &str)], times: &[u64]) -> Vec<(u64, String)> {
    let clock = Arc::new(ManualClock::new(T0));
    let agent = TestNode::new(AgentConfig::new(Eid::ipn(1, 0)), clock.clone()).await;
    let mut events = agent.contact_events();
    let mut seen = Vec::new();
    let mut record = |events_now: Vec<ContactEvent>, at: u64| {
        for event in events_now {
            seen.push((
                at,
                match event {
                    ContactEvent::Started { neighbour, end, .. } => {
                        format!("start {neighbour} until +{}", (end - T0) / 1000)
                    }
                    ContactEvent::Ended { neighbour } => format!("end {neighbour}"),
                },
            ));
        }
    };
    let mut plans = plans.iter().peekable();
    for &at in times {
        while let Some((_, text)) = plans.next_if(|(when, _)| *when <= at) {
            clock.advance(T0 + at * 1000 - clock.now_dtn_ms());
            agent.set_contact_plan(routing::ion::parse(text, T0).expect("plan"));
        }
        clock.advance(T0 + at * 1000 - clock.now_dtn_ms());
        record(events_now(&agent, &mut events).await, at);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_contacts_are_one_opening_and_a_replaced_plan_ends_what_it_drops() {
    let plan = "a contact +10 +20 1 2 1000\na contact +20 +30 1 2 2000\na contact +10 +30 2 1 1000\n";
    let seen = events_at(&[(0, plan)], &[5, 10, 20, 30, 40]).await;
    let shown: Vec<(u64, &str)> = seen.iter().map(|(at, e)| (*at, e.as_str())).collect();
    assert_eq!(
        shown,
        vec![(10, "start ipn:2.0 until +20"), (20, "start ipn:2.0 until +30"), (30, "end ipn:2.0")],
        "only this node's contacts, and no end between two contacts that meet"
    );
    // Replaced in the middle of a contact with 2: 2 ends, 3 (in progress in the new plan) starts.
    let second = "a contact +0 +100 1 3 1000\n";
    let seen = events_at(&[(0, "a contact +0 +100 1 2 1000\n"), (50, second)], &[0, 50, 60]).await;
    let shown: Vec<(u64, &str)> = seen.iter().map(|(at, e)| (*at, e.as_str())).collect();
    assert_eq!(
        shown,
        vec![(0, "start ipn:2.0 until +100"), (50, "end ipn:2.0"), (50, "start ipn:3.0 until +100")]
    );
}
