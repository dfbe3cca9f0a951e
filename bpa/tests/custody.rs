//! Custody transfer hop by hop (issue 18), on virtual time: agents with their own stores on
//! disk, linked both ways by in-memory layers (some of which lose custody signals), one manual
//! clock that the tests move past retransmission deadlines and signal delays.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bpa::admin::{AdminRecord, AdminRecordTypes, CustodyDisposition, CustodySignal};
use bpa::agent::SendRequest;
use bpa::agent::Subscription;
use bpa::agent::{Agent, AgentConfig, Delivery, Route};
use bpa::bundle::{Bundle, BundleBuilder, BundleFlags, CreationTimestamp, Eid, ParseOptions};
use bpa::cla::memory::MemoryLink;
use bpa::cla::{ClaFuture, ConvergenceLayer, OutgoingBundle};
use bpa::store::{BundleState, SqliteStore, StoreConfig};
use bpa::testing::{TestNode, reopen_store, until_idle};
use bpa::time::{Clock, ManualClock};
use bytes::Bytes;

const START: u64 = 800_000_000_000;

type Node = Agent<SqliteStore>;

struct Net {
    clock: Arc<ManualClock>,
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn node(
    n: u32,
    clock: &Arc<ManualClock>,
    store: StoreConfig,
    tune: impl FnOnce(&mut AgentConfig),
) -> (Node, tempfile::TempDir) {
    let mut config = AgentConfig::new(Eid::ipn(n, 0));
    // The harness moves the clock on while the nodes work on real threads: a loaded machine
    // must not see a deadline pass that a test does not mean to pass (those that do move the
    // clock to it).
    config.custody.round_trip = Duration::from_secs(30);
    tune(&mut config);
    let TestNode { agent, dir } = TestNode::with_store(config, store, clock.clone()).await;
    agent.start().await.expect("start");
    (agent, dir)
}

/// A link that drops the next `drop_signals` custody signals it is given (reporting them sent,
/// as a datagram layer would), and counts those it carries.
#[derive(Debug)]
struct SignalLosingLink {
    inner: MemoryLink<SqliteStore>,
    drop_signals: Arc<AtomicU64>,
    signals_carried: Arc<AtomicU64>,
    /// Fragments seen; the one numbered `drop_fragment` (from 1) is lost.
    fragments_seen: Arc<AtomicU64>,
    drop_fragment: Arc<AtomicU64>,
}

fn is_custody_signal(bytes: &Bytes) -> bool {
    let Ok(bundle) = Bundle::parse(bytes, &ParseOptions::default()) else { return false };
    bundle.primary().flags.is_admin_record()
        && matches!(
            AdminRecord::decode(&Bytes::copy_from_slice(bundle.payload()), &AdminRecordTypes::default()),
            Ok(AdminRecord::CustodySignal(_))
        )
}

impl ConvergenceLayer for SignalLosingLink {
    fn name(&self) -> &str {
        "lossy"
    }

    fn max_bundle_size(&self) -> Option<usize> {
        self.inner.max_bundle_size()
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let peer = peer.clone();
        Box::pin(async move {
            let bytes = bundle.into_bytes().await.expect("bytes");
            if is_custody_signal(&bytes) {
                let dropped = self
                    .drop_signals
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if dropped {
                    return Ok(());
                }
                self.signals_carried.fetch_add(1, Ordering::SeqCst);
            }
            let is_fragment =
                Bundle::parse(&bytes, &ParseOptions::default()).is_ok_and(|b| b.primary().fragment.is_some());
            if is_fragment {
                let seen = self.fragments_seen.fetch_add(1, Ordering::SeqCst) + 1;
                if seen == self.drop_fragment.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
            self.inner.send(&peer, OutgoingBundle::from_bytes(bytes)).await
        })
    }
}

/// Counters of one directed link.
#[derive(Clone, Default)]
struct LinkCounters {
    drop_signals: Arc<AtomicU64>,
    signals_carried: Arc<AtomicU64>,
    fragments_seen: Arc<AtomicU64>,
    drop_fragment: Arc<AtomicU64>,
}

async fn link(from: &Node, to: &Node) -> LinkCounters {
    link_of_size(from, to, None).await
}

/// A link taking bundles of at most `max` bytes (larger ones are fragmented first).
async fn link_of_size(from: &Node, to: &Node, max: Option<usize>) -> LinkCounters {
    let counters = LinkCounters::default();
    let (inner, _) = MemoryLink::new(to.clone());
    let inner = match max {
        Some(max) => inner.with_max_bundle_size(max),
        None => inner,
    };
    let cla = SignalLosingLink {
        inner,
        drop_signals: Arc::clone(&counters.drop_signals),
        signals_carried: Arc::clone(&counters.signals_carried),
        fragments_seen: Arc::clone(&counters.fragments_seen),
        drop_fragment: Arc::clone(&counters.drop_fragment),
    };
    from.neighbour_up(to.node_id().clone(), Arc::new(cla)).await.expect("up");
    counters
}

impl Net {
    /// Nodes 1..=n in a chain, linked both ways, each routing to the far end through its
    /// neighbour; `configs` tunes node i (its store, its agent).
    async fn chain(
        n: u32,
        tune: impl Fn(u32, &mut AgentConfig),
        store: impl Fn(u32) -> StoreConfig,
    ) -> (Net, Vec<(LinkCounters, LinkCounters)>) {
        let clock = Arc::new(ManualClock::new(START));
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for i in 1..=n {
            let (agent, dir) = node(i, &clock, store(i), |c| tune(i, c)).await;
            nodes.push(agent);
            dirs.push(dir);
        }
        let mut links = Vec::new();
        for i in 0..(n as usize - 1) {
            let forward = link(&nodes[i], &nodes[i + 1]).await;
            let back = link(&nodes[i + 1], &nodes[i]).await;
            links.push((forward, back));
        }
        for (i, from) in nodes.iter().enumerate() {
            for j in 0..n as usize {
                let via = if j > i + 1 {
                    Some(i + 1)
                } else if j + 1 < i {
                    Some(i - 1)
                } else {
                    None
                };
                if let Some(via) = via {
                    let route = Route { to: Eid::ipn(j as u32 + 1, 0), via: Eid::ipn(via as u32 + 1, 0) };
                    from.add_route(route).await.expect("route");
                }
            }
        }
        (Net { clock, nodes, _dirs: dirs }, links)
    }

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize - 1]
    }

    /// Moves the clock on in steps of `step_ms`, each once every node has done all it will at
    /// the present instant, until `done` holds; panics after `max_ms` of virtual time.
    async fn run_until(&self, what: &str, step_ms: u64, max_ms: u64, done: impl Fn(&Net) -> bool) {
        let mut moved = 0;
        loop {
            self.idle().await;
            if done(self) {
                return;
            }
            assert!(moved < max_ms, "{what}: not after {moved} ms of virtual time");
            self.clock.advance(step_ms);
            moved += step_ms;
        }
    }

    /// Until every node has done all it will at the present instant.
    async fn idle(&self) {
        until_idle(&self.nodes.iter().collect::<Vec<_>>()).await;
    }

    fn held(&self, n: u32) -> u64 {
        self.node(n).store().stats().bundles
    }
}

fn request(from: Eid, to: Eid) -> SendRequest {
    SendRequest {
        source: from,
        destination: to,
        lifetime_ms: 3_600_000,
        flags: BundleFlags::default(),
        custody: true,
    }
}

async fn expect_delivery(app: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), app.recv())
        .await
        .expect("a delivery in time")
        .expect("open")
}

/// Checks that `node`, once at rest, owes no answer: a signal sent straight to its custodian
/// is forgotten once the send returns, which can be after the custodian acted on it.
async fn settled(node: &Node) {
    until_idle(&[node]).await;
    assert!(node.store().pending_signals(1).await.expect("pending").is_empty(), "answers still owed");
}

async fn counts(node: &Node) -> bpa::store::CustodyCounts {
    node.store().custody_counts().await.expect("counts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custody_crosses_a_chain_and_each_custodian_is_released_by_the_next() {
    let (net, links) = Net::chain(3, |_, _| {}, |_| StoreConfig::default()).await;
    let mut app = net.node(3).register(Eid::ipn(3, 1)).await.expect("register");
    net.node(1)
        .send_whole(request(Eid::ipn(1, 1), Eid::ipn(3, 1)), Bytes::from_static(b"in custody"))
        .await
        .expect("send");
    let delivery = expect_delivery(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), b"in custody");
    // Delivered as the bundle sent, not as its PDU: the previous node is B.
    assert_eq!(delivery.bundle.previous_node(), Some(Eid::ipn(2, 0)));
    net.node(3).acknowledge(&delivery).await.expect("ack");
    net.run_until("every custodian released", 50, 5_000, |net| {
        net.held(1) == 0
            && net.held(2) == 0
            && net.held(3) == 0
            && net.node(1).stats().custody.released == 1
            && net.node(2).stats().custody.released == 1
    })
    .await;
    let (a, b, c) = (net.node(1).stats().custody, net.node(2).stats().custody, net.node(3).stats().custody);
    assert_eq!((a.sent, a.released, a.retransmitted), (1, 1, 0));
    assert_eq!((b.accepted, b.sent, b.released, b.signals_sent), (1, 1, 1, 1));
    assert_eq!((c.accepted, c.signals_sent, c.sent), (1, 1, 0));
    assert_eq!(links[0].1.signals_carried.load(Ordering::SeqCst), 1);
    for n in 1..=3 {
        settled(net.node(n)).await;
        assert_eq!(counts(net.node(n)).await, bpa::store::CustodyCounts::default(), "node {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_signal_is_made_up_for_by_retransmission_answered_redundant_and_delivered_once() {
    let (net, links) = Net::chain(3, |_, _| {}, |_| StoreConfig::default()).await;
    // C's first signal to B is lost.
    links[1].1.drop_signals.store(1, Ordering::SeqCst);
    let mut app = net.node(3).register(Eid::ipn(3, 1)).await.expect("register");
    net.node(1)
        .send_whole(request(Eid::ipn(1, 1), Eid::ipn(3, 1)), Bytes::from_static(b"once"))
        .await
        .expect("send");
    let delivery = expect_delivery(&mut app).await;
    net.node(3).acknowledge(&delivery).await.expect("ack");
    // B holds the bundle, awaiting custody, with its deadline stored.
    net.run_until("A released, B awaiting C", 50, 1_000, |net| net.held(1) == 0).await;
    let held = net.node(2).store().list(0, 10).await.expect("list");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].state, BundleState::AwaitingCustody { neighbour: "ipn:3.0".into() });
    let info = net.node(2).store().custody_info(held[0].id).await.expect("info").expect("held");
    let (first_tid, deadline) = info.transmission.expect("a transmission under way");
    assert!(info.custodial);
    assert_eq!(info.attempts, 1);
    // Nothing happens before the deadline; after it, B sends again and C answers "redundant".
    net.clock.advance(deadline - net.clock.now_dtn_ms() - 1);
    net.idle().await;
    assert_eq!(net.node(2).stats().custody.retransmitted, 0);
    net.run_until("B released after retransmitting", 50, 10_000, |net| {
        net.held(2) == 0 && net.node(2).stats().custody.released == 1
    })
    .await;
    let (b, c) = (net.node(2).stats().custody, net.node(3).stats().custody);
    assert_eq!((b.sent, b.retransmitted, b.released), (2, 1, 1));
    assert_eq!((c.accepted, c.redundant), (1, 1));
    assert!(first_tid > 0);
    // Exactly one copy reached the application.
    net.clock.advance(60_000);
    net.idle().await;
    assert!(app.try_recv().is_err(), "a second copy was delivered");
    assert_eq!(net.held(3), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_custody_and_the_custodian_keeps_the_bundle_until_there_is_room() {
    let store = |n| StoreConfig { max_bundles: if n == 3 { 1 } else { u64::MAX }, ..StoreConfig::default() };
    let (net, _links) = Net::chain(3, |_, _| {}, store).await;
    // C's one place is taken by a bundle for an application that has not read it.
    let filler = net
        .node(3)
        .send(
            Eid::ipn(3, 1),
            Eid::ipn(3, 9),
            Bytes::from_static(b"filler"),
            3_600_000,
            BundleFlags::default(),
        )
        .await
        .expect("filler");
    let mut app = net.node(3).register(Eid::ipn(3, 1)).await.expect("register");
    net.node(1)
        .send_whole(request(Eid::ipn(1, 1), Eid::ipn(3, 1)), Bytes::from_static(b"wait"))
        .await
        .expect("send");
    net.run_until("C refused custody", 50, 5_000, |net| net.node(2).stats().custody.refused[4] >= 1).await;
    assert_eq!(net.node(3).stats().custody.refused_here, 1);
    assert_eq!(net.held(2), 1, "B keeps the bundle");
    assert!(app.try_recv().is_err());
    // Room at C: B's next attempt is accepted.
    assert!(net.node(3).delete_on_request(filler).await.expect("delete"));
    let delivery = expect_delivery_while(&net, &mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), b"wait");
    net.node(3).acknowledge(&delivery).await.expect("ack");
    net.run_until("B released", 100, 10_000, |net| net.held(2) == 0).await;
}

/// Waits for a delivery while moving the clock (a retry timer stands between).
async fn expect_delivery_while(net: &Net, app: &mut Subscription) -> Delivery {
    for _ in 0..400 {
        net.idle().await;
        if let Ok(delivery) = app.try_recv() {
            return delivery;
        }
        net.clock.advance(250);
    }
    panic!("no delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_naming_transmissions_never_sent_is_ignored() {
    let (net, _links) = Net::chain(2, |_, _| {}, |_| StoreConfig::default()).await;
    // Nothing awaits custody at A; a signal from B names IDs anyway.
    let signal = AdminRecord::CustodySignal(CustodySignal {
        disposition: CustodyDisposition::ACCEPTED,
        ranges: vec![(1, 5), (1 << 40, u64::MAX >> 1)],
    });
    let bundle = BundleBuilder::new(
        Eid::ipn(2, 0),
        Eid::ipn(1, 0),
        CreationTimestamp { time: START, sequence: 1 },
        60_000,
    )
    .flags(BundleFlags(BundleFlags::ADMIN_RECORD))
    .payload(signal.encode(&AdminRecordTypes::default()))
    .build()
    .expect("signal bundle");
    let reception = net.node(1).receive(Bytes::from(bundle.encode())).await.expect("taken");
    assert_eq!(reception, bpa::agent::Reception::Consumed);
    let stats = net.node(1).stats().custody;
    assert_eq!(stats.signals_received, 1);
    assert_eq!(stats.released, 0);
    assert_eq!(stats.signal_ids_ignored, 5 + (u64::MAX >> 1));
    // A transmission to B under way is not released by a signal from another node.
    net.node(1)
        .send_whole(request(Eid::ipn(1, 1), Eid::ipn(2, 1)), Bytes::from_static(b"x"))
        .await
        .expect("send");
    let foreign = BundleBuilder::new(
        Eid::ipn(7, 0),
        Eid::ipn(1, 0),
        CreationTimestamp { time: START, sequence: 2 },
        60_000,
    )
    .flags(BundleFlags(BundleFlags::ADMIN_RECORD))
    .payload(
        AdminRecord::CustodySignal(CustodySignal {
            disposition: CustodyDisposition::ACCEPTED,
            ranges: vec![(1, 1)],
        })
        .encode(&AdminRecordTypes::default()),
    )
    .build()
    .expect("foreign signal");
    net.node(1).receive(Bytes::from(foreign.encode())).await.expect("taken");
    assert_eq!(net.node(1).stats().custody.released, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bundles_are_accepted_by_one_signal_of_a_few_ranges() {
    const N: u64 = 10_000;
    let (net, links) = Net::chain(
        2,
        |_, c| {
            c.custody.signal_batch = 1_000_000;
            c.custody.signal_delay = Duration::from_secs(1);
            c.custody.round_trip = Duration::from_secs(60);
        },
        |_| StoreConfig::default(),
    )
    .await;
    // B is the destination: its application endpoint holds them (custody ends at delivery).
    let sends = (0..N).map(|i| {
        let node = net.node(1).clone();
        async move {
            let payload = Bytes::from(format!("bundle {i}"));
            node.send_whole(request(Eid::ipn(1, 1), Eid::ipn(2, 1)), payload).await.expect("send");
        }
    });
    futures_join_all(sends).await;
    net.run_until("all stored at B", 10, 500, |net| net.held(2) == N).await;
    assert_eq!(net.node(2).stats().custody.signals_sent, 0, "the batch waits for its delay");
    net.run_until("A released", 200, 5_000, |net| {
        net.held(1) == 0
            && net.node(1).stats().custody.released == N
            && net.node(2).stats().custody.signals_sent == 1
    })
    .await;
    let (a, b) = (net.node(1).stats().custody, net.node(2).stats().custody);
    assert_eq!((a.sent, a.released, a.retransmitted), (N, N, 0));
    assert_eq!((b.accepted, b.signals_sent), (N, 1));
    assert_eq!(links[0].1.signals_carried.load(Ordering::SeqCst), 1);
}

/// Runs the futures a few hundred at a time.
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        if set.len() >= 256 {
            set.join_next().await.expect("task").expect("join");
        }
        set.spawn(future);
    }
    while let Some(done) = set.join_next().await {
        done.expect("join");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_for_a_signal_is_the_contact_plans_round_trip() {
    let (net, links) = Net::chain(2, |_, _| {}, |_| StoreConfig::default()).await;
    // A light time of 10 s each way to B: the first wait is 2 × 10 s + the signal delay.
    let plan = "a contact +0 +86400 1 2 100000\na contact +0 +86400 2 1 100000\na range +0 +86400 1 2 10\n";
    net.node(1).set_contact_plan(routing::ion::parse(plan, START).expect("plan"));
    links[0].1.drop_signals.store(1, Ordering::SeqCst);
    let sent_at = net.clock.now_dtn_ms();
    let id = net
        .node(1)
        .send_whole(request(Eid::ipn(1, 1), Eid::ipn(2, 1)), Bytes::from_static(b"far"))
        .await
        .expect("send")
        .0;
    net.run_until("B took custody", 10, 1_000, |net| net.node(2).stats().custody.accepted == 1).await;
    let info = net.node(1).store().custody_info(id).await.expect("info").expect("held");
    let (_, deadline) = info.transmission.expect("under way");
    assert_eq!(deadline - sent_at, 20_100, "the plan's round trip, not the default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdu_holding_no_valid_bundle_is_refused_as_block_unintelligible() {
    let (net, _links) = Net::chain(2, |_, _| {}, |_| StoreConfig::default()).await;
    let record = AdminRecord::BibePdu(bpa::admin::BibePdu {
        transmission_id: 41,
        retransmission_time: START + 5_000,
        bundle: Bytes::from_static(b"\x9f\x00\xff"),
    });
    let carrier = BundleBuilder::new(
        Eid::ipn(1, 0),
        Eid::ipn(2, 0),
        CreationTimestamp { time: START, sequence: 9 },
        60_000,
    )
    .flags(BundleFlags(BundleFlags::ADMIN_RECORD))
    .payload(record.encode(&AdminRecordTypes::default()))
    .build()
    .expect("carrier");
    let reception = net.node(2).receive(Bytes::from(carrier.encode())).await.expect("taken");
    assert_eq!(reception, bpa::agent::Reception::Consumed);
    let pending = net.node(2).store().pending_signals(10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].transmission_id, pending[0].disposition),
        (41, CustodyDisposition::BLOCK_UNINTELLIGIBLE.0)
    );
    assert_eq!(net.node(2).stats().custody.refused_here, 1);
    // The refusal goes to A, which had sent nothing under that ID: ignored there.
    net.run_until("A got the refusal", 20, 2_000, |net| net.node(1).stats().custody.signals_received == 1)
        .await;
    assert_eq!(net.node(1).stats().custody.signal_ids_ignored, 1);
    settled(net.node(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_the_pdus_destination_relays_it_like_any_bundle() {
    let (net, _links) = Net::chain(3, |_, _| {}, |_| StoreConfig::default()).await;
    let mut app = net.node(3).register(Eid::ipn(3, 1)).await.expect("register");
    let inner = BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(3, 1),
        CreationTimestamp { time: START, sequence: 1 },
        60_000,
    )
    .payload(Bytes::from_static(b"relayed inside"))
    .build()
    .expect("inner");
    let record = AdminRecord::BibePdu(bpa::admin::BibePdu {
        transmission_id: 5,
        retransmission_time: START + 60_000,
        bundle: Bytes::from(inner.encode()),
    });
    // A carrier from A straight to C, handed to B.
    let carrier = BundleBuilder::new(
        Eid::ipn(1, 0),
        Eid::ipn(3, 0),
        CreationTimestamp { time: START, sequence: 2 },
        60_000,
    )
    .flags(BundleFlags(BundleFlags::ADMIN_RECORD))
    .payload(record.encode(&AdminRecordTypes::default()))
    .build()
    .expect("carrier");
    let reception = net.node(2).receive(Bytes::from(carrier.encode())).await.expect("stored");
    assert!(matches!(reception, bpa::agent::Reception::Accepted(_)), "{reception:?}");
    let delivery = expect_delivery(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), b"relayed inside");
    assert_eq!(net.node(2).stats().custody.accepted, 0, "B only relayed it");
    assert_eq!(net.node(3).stats().custody.accepted, 1);
    // C's signal goes to A (through B), which sent nothing under ID 5 itself.
    net.run_until("A got C's signal", 20, 2_000, |net| net.node(1).stats().custody.signals_received == 1)
        .await;
    assert_eq!(net.node(1).stats().custody.signal_ids_ignored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_policy_takes_bundles_for_its_destinations_into_custody() {
    let (net, _links) = Net::chain(
        3,
        |n, c| {
            if n == 2 {
                c.custody.destinations = vec!["ipn:3.*".parse().expect("pattern")];
            }
        },
        |_| StoreConfig::default(),
    )
    .await;
    let mut app = net.node(3).register(Eid::ipn(3, 1)).await.expect("register");
    let plain = SendRequest { custody: false, ..request(Eid::ipn(1, 1), Eid::ipn(3, 1)) };
    net.node(1).send_whole(plain, Bytes::from_static(b"plain to B, custodial from B")).await.expect("send");
    let delivery = expect_delivery(&mut app).await;
    net.node(3).acknowledge(&delivery).await.expect("ack");
    net.run_until("B released by C", 20, 2_000, |net| net.node(2).stats().custody.released == 1).await;
    let (a, b, c) = (net.node(1).stats().custody, net.node(2).stats().custody, net.node(3).stats().custody);
    assert_eq!(a.sent, 0, "A forwards it plainly");
    assert_eq!((b.accepted, b.sent), (0, 1), "B took it into custody by policy, not from a PDU");
    assert_eq!(c.accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_too_big_for_the_link_goes_in_fragments_and_a_lost_one_costs_a_retransmission() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, _a_dir) = node(1, &clock, StoreConfig::default(), |_| {}).await;
    let (b, _b_dir) = node(2, &clock, StoreConfig::default(), |_| {}).await;
    let net = Net { clock: Arc::clone(&clock), nodes: vec![a.clone(), b.clone()], _dirs: vec![] };
    // 16 KiB frames; a bundle of 200 KiB, stored in its own file at A.
    let forward = link_of_size(&a, &b, Some(16 * 1024)).await;
    link(&b, &a).await;
    forward.drop_fragment.store(3, Ordering::SeqCst);
    let mut app = b.register(Eid::ipn(2, 1)).await.expect("register");
    let payload: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 251) as u8).collect();
    a.send_whole(request(Eid::ipn(1, 1), Eid::ipn(2, 1)), Bytes::from(payload.clone())).await.expect("send");
    // The first carrier lost a fragment: nothing is delivered until A sends again.
    net.run_until("A sent every fragment once", 10, 1_000, |_| {
        forward.fragments_seen.load(Ordering::SeqCst) >= 13
    })
    .await;
    net.idle().await;
    assert!(app.try_recv().is_err(), "delivered from an incomplete carrier");
    let delivery = expect_delivery_while(&net, &mut app).await;
    assert!(delivery.bundle.payload().as_ref() == payload.as_slice(), "the payload arrived changed");
    b.acknowledge(&delivery).await.expect("ack");
    net.run_until("A released", 50, 10_000, |net| {
        net.held(1) == 0 && net.node(1).stats().custody.released == 1
    })
    .await;
    let custody = a.stats().custody;
    assert_eq!((custody.sent, custody.retransmitted, custody.fragmented), (2, 1, 2));
    assert_eq!(b.stats().custody.accepted, 1);
    assert_eq!(b.stats().reassembled, 1);
    net.clock.advance(60_000);
    net.idle().await;
    assert!(app.try_recv().is_err(), "a second copy was delivered");
}

/// The custodian "crashes" (its agent and store dropped without closing, as a kill leaves them)
/// and starts again from its data directory: its transmission resumes at the stored deadline,
/// not before, on virtual time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custodian_started_again_retransmits_at_the_stored_deadline() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, a_dir) = node(1, &clock, StoreConfig::default(), |_| {}).await;
    let (b, _b_dir) = node(2, &clock, StoreConfig::default(), |_| {}).await;
    link(&a, &b).await;
    let back = link(&b, &a).await;
    back.drop_signals.store(1, Ordering::SeqCst);
    let id = a
        .send_whole(request(Eid::ipn(1, 1), Eid::ipn(2, 1)), Bytes::from_static(b"x"))
        .await
        .expect("send")
        .0;
    let mut info = None;
    for _ in 0..500 {
        until_idle(&[&a, &b]).await;
        info = a.store().custody_info(id).await.expect("info").and_then(|i| i.transmission);
        if info.is_some() && b.stats().custody.signals_sent == 1 {
            break;
        }
        clock.advance(20);
    }
    let (tid, deadline) = info.expect("awaiting custody");
    assert_eq!(b.stats().custody.accepted, 1, "B has it; its signal was lost");
    // The crash: B forgets its link to A, A is dropped with everything it held in memory.
    b.neighbour_down(&Eid::ipn(1, 0));
    drop(a);
    let shared: Arc<dyn Clock> = clock.clone();
    let (store, _) = reopen_store(a_dir.path(), StoreConfig::default(), Arc::clone(&shared)).await;
    let a = Agent::new(AgentConfig::new(Eid::ipn(1, 0)), store, shared);
    link(&a, &b).await;
    link(&b, &a).await;
    a.start().await.expect("start");
    let info = a.store().custody_info(id).await.expect("info").expect("still held");
    assert_eq!(info.transmission, Some((tid, deadline)), "as stored");
    // Not before the deadline...
    clock.advance(deadline - clock.now_dtn_ms() - 1);
    until_idle(&[&a, &b]).await;
    assert_eq!(a.stats().custody.retransmitted, 0);
    // ...at it: sent again, answered redundant, released.
    clock.advance(1);
    for _ in 0..500 {
        if a.store().stats().bundles == 0 && a.stats().custody.released == 1 {
            break;
        }
        until_idle(&[&a, &b]).await;
        clock.advance(20); // B's signal batch waits 100 ms
    }
    assert_eq!(a.store().stats().bundles, 0, "released after the retransmission");
    assert_eq!(a.stats().custody.retransmitted, 1);
    assert_eq!(b.stats().custody.redundant, 1);
    let info = a.store().custody_info(id).await.expect("info");
    assert!(info.is_none(), "gone from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_no_way_on_refuses_custody_as_no_route_then_as_no_timely_contact() {
    let (net, _links) = Net::chain(
        2,
        |n, c| {
            if n == 2 {
                c.custody.refuse_unroutable = true;
            }
        },
        |_| StoreConfig::default(),
    )
    .await;
    // A routes ipn:7.* through B; B knows no way to node 7.
    let to_seven =
        bpa::agent::StaticRoute { pattern: "ipn:7.*".parse().expect("pattern"), via: Eid::ipn(2, 0) };
    net.node(1).add_static_route(to_seven).await.expect("route");
    net.node(1)
        .send_whole(request(Eid::ipn(1, 1), Eid::ipn(7, 1)), Bytes::from_static(b"nowhere"))
        .await
        .expect("send");
    net.run_until("B refused: no route", 20, 2_000, |net| net.node(1).stats().custody.refused[6] == 1).await;
    assert_eq!(net.held(1), 1, "A keeps it");
    assert_eq!(net.held(2), 0, "B stored nothing");
    // B gets a plan that knows node 7, but its only contact comes after the bundle expires.
    let plan = "a contact +7200 +7300 2 7 100000\na range +7200 +7300 2 7 1\n";
    net.node(2).set_contact_plan(routing::ion::parse(plan, START).expect("plan"));
    net.run_until("B refused: no timely contact", 100, 10_000, |net| {
        net.node(1).stats().custody.refused[7] >= 1
    })
    .await;
    assert_eq!(net.held(1), 1, "A still keeps it");
    assert_eq!(net.node(2).stats().custody.accepted, 0);
}

/// A carrier arriving in pieces (as TCPCL, STCP, MTCP and the spool hand them over) is taken
/// apart as it streams: the bundle inside is what the store holds, whatever the cut; a carrier
/// whose own CRC fails is refused with nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_carrier_is_decapsulated_on_the_way_in_and_checked() {
    let clock = Arc::new(ManualClock::new(START));
    let (b, _dir) =
        node(2, &clock, StoreConfig { inline_threshold: 1024, ..StoreConfig::default() }, |_| {}).await;
    let payload: Vec<u8> = (0..30_000u32).map(|i| (i % 249) as u8).collect();
    let carrier = |sequence: u64, tid: u64, crc: bpa::bundle::CrcType| {
        let inner = BundleBuilder::new(
            Eid::ipn(1, 1),
            Eid::ipn(2, 1),
            CreationTimestamp { time: START, sequence },
            600_000,
        )
        .payload(Bytes::from(payload.clone()))
        .build()
        .expect("inner");
        let record = AdminRecord::BibePdu(bpa::admin::BibePdu {
            transmission_id: tid,
            retransmission_time: START + 5_000,
            bundle: Bytes::from(inner.encode()),
        });
        BundleBuilder::new(
            Eid::ipn(1, 0),
            Eid::ipn(2, 0),
            CreationTimestamp { time: START, sequence: 1000 + sequence },
            600_000,
        )
        .flags(BundleFlags(BundleFlags::ADMIN_RECORD))
        .block_crc(crc)
        .payload(record.encode(&AdminRecordTypes::default()))
        .build()
        .expect("carrier")
        .encode()
    };
    let mut app = b.register(Eid::ipn(2, 1)).await.expect("register");
    for (sequence, cut, crc) in [
        (1, 1usize, bpa::bundle::CrcType::None),
        (2, 7, bpa::bundle::CrcType::Crc16),
        (3, 4096, bpa::bundle::CrcType::Crc32c),
        (4, 1 << 20, bpa::bundle::CrcType::Crc32c),
    ] {
        let bytes = carrier(sequence, 40 + sequence, crc);
        let mut pending = b.begin_receive().await.expect("begin");
        for chunk in bytes.chunks(cut) {
            pending.write(chunk).await.expect("write");
        }
        let reception = pending.commit().await.expect("commit");
        assert!(matches!(reception, bpa::agent::Reception::Accepted(_)), "cut {cut}: {reception:?}");
        let delivery = expect_delivery(&mut app).await;
        assert!(
            delivery.bundle.payload().as_ref() == payload.as_slice(),
            "cut {cut}: the payload arrived changed"
        );
        assert_eq!(
            delivery.bundle.primary().creation.sequence,
            sequence,
            "the bundle inside, not the carrier"
        );
        b.acknowledge(&delivery).await.expect("ack");
        assert_eq!(b.store().stats().bundles, 0, "cut {cut}: the carrier was never stored");
    }
    // Only the bundles inside were received: a carrier stored first would count too.
    assert_eq!(b.stats().received, 4);
    let answers: Vec<u64> =
        b.store().pending_signals(10).await.expect("pending").iter().map(|p| p.transmission_id).collect();
    assert!(answers.iter().all(|tid| (41..=44).contains(tid)));
    // A flipped byte in the carrier's payload CRC: refused, nothing stored, no answer queued.
    let mut bytes = carrier(5, 45, bpa::bundle::CrcType::Crc32c);
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    let mut pending = b.begin_receive().await.expect("begin");
    for chunk in bytes.chunks(4096) {
        pending.write(chunk).await.expect("write");
    }
    let refused = pending.commit().await.expect_err("a damaged carrier");
    assert!(matches!(refused, bpa::agent::AgentError::Invalid(_)), "{refused}");
    assert_eq!(b.store().stats().bundles, 0);
    let pending_tids: Vec<u64> =
        b.store().pending_signals(10).await.expect("pending").iter().map(|p| p.transmission_id).collect();
    assert!(!pending_tids.contains(&45), "a damaged carrier's ID is not answered");
    // Bytes going on past the carrier's end: refused as soon as they pass what an end can hold.
    let mut bytes = carrier(7, 47, bpa::bundle::CrcType::None);
    bytes.extend_from_slice(&[0u8; 4096]);
    let mut pending = b.begin_receive().await.expect("begin");
    let mut refused = None;
    for chunk in bytes.chunks(1000) {
        if let Err(error) = pending.write(chunk).await {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("refused while it streams");
    assert!(refused.to_string().contains("follow"), "{refused}");
    drop(pending);
    assert_eq!(b.store().stats().bundles, 0);
    // Cut short: refused too.
    let bytes = carrier(6, 46, bpa::bundle::CrcType::None);
    let mut pending = b.begin_receive().await.expect("begin");
    pending.write(&bytes[..bytes.len() - 500]).await.expect("write");
    assert!(pending.commit().await.is_err());
    assert_eq!(b.store().stats().bundles, 0);
}
