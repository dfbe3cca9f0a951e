//! Several agents in one process, each with its own store on disk, linked by in-memory
//! convergence layers that the tests cut and restore, on one manual clock.

use std::sync::Arc;
use std::time::Duration;

use bpa::admin::{AdminRecord, AdminRecordTypes, ReasonCode};
use bpa::agent::Subscription;
use bpa::agent::{Agent, AgentConfig, Delivery, Route};
use bpa::bundle::{BundleFlags, Eid};
use bpa::cla::memory::{LinkSwitch, MemoryLink};
use bpa::store::{SqliteStore, StoreConfig};
use bpa::testing::{TestNode, eventually, reopen_store, until_idle};
use bpa::time::ManualClock;
use bytes::Bytes;

const START: u64 = 800_000_000_000;

type Node = TestNode;

/// A node with status reports enabled, as on a testbed (they are off by default, RFC 9171 §5.1).
async fn node(n: u32, clock: &Arc<ManualClock>) -> Node {
    let mut config = AgentConfig::new(Eid::ipn(n, 0));
    config.reports.enabled = true;
    node_with(config, clock).await
}

async fn node_with(config: AgentConfig, clock: &Arc<ManualClock>) -> Node {
    TestNode::new(config, clock.clone()).await
}

/// Links `a` to `b` (one direction) and returns the switch.
async fn link(a: &Node, b: &Node) -> LinkSwitch {
    let (cla, switch) = MemoryLink::new(b.agent.clone());
    a.agent.neighbour_up(b.agent.node_id().clone(), Arc::new(cla)).await.expect("neighbour up");
    switch
}

async fn next(rx: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a delivery in time")
        .expect("channel open")
}

/// A → B → C, with a route on A to C via B.
async fn chain(clock: &Arc<ManualClock>) -> (Node, Node, Node, LinkSwitch) {
    let (a, b, c) = (node(1, clock).await, node(2, clock).await, node(3, clock).await);
    link(&a, &b).await;
    let b_to_c = link(&b, &c).await;
    a.agent.add_route(Route { to: Eid::ipn(3, 0), via: Eid::ipn(2, 0) }).await.expect("route");
    (a, b, c, b_to_c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_crosses_a_three_node_chain() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, c, _) = chain(&clock).await;
    let mut app = c.agent.register(Eid::ipn(3, 1)).await.expect("register");
    a.agent
        .send(Eid::ipn(1, 1), Eid::ipn(3, 1), Bytes::from_static(b"across"), 60_000, BundleFlags::default())
        .await
        .expect("send");
    let delivery = next(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), b"across");
    assert_eq!(delivery.bundle.previous_node(), Some(Eid::ipn(2, 0)));
    c.agent.acknowledge(&delivery).await.expect("ack");
    // Forwarded bundles leave the stores behind them; the delivered one leaves C.
    eventually("every store empty", || {
        a.agent.store().stats().bundles == 0
            && b.agent.store().stats().bundles == 0
            && c.agent.store().stats().bundles == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_holds_the_bundle_until_it_is_restored_then_delivers_once() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, c, b_to_c) = chain(&clock).await;
    b_to_c.cut();
    let mut app = c.agent.register(Eid::ipn(3, 1)).await.expect("register");
    a.agent
        .send(Eid::ipn(1, 1), Eid::ipn(3, 1), Bytes::from_static(b"later"), 60_000, BundleFlags::default())
        .await
        .expect("send");
    eventually("the bundle waits at B", || {
        b.agent.store().stats().bundles == 1 && a.agent.store().stats().bundles == 0
    })
    .await;
    assert!(app.try_recv().is_err());
    b_to_c.restore();
    // The link comes back: B is told, and what waited moves on.
    let (cla, _) = MemoryLink::new(c.agent.clone());
    b.agent.neighbour_up(Eid::ipn(3, 0), Arc::new(cla)).await.expect("neighbour up");
    let delivery = next(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), b"later");
    c.agent.acknowledge(&delivery).await.expect("ack");
    eventually("B's store empty", || b.agent.store().stats().bundles == 0).await;
    until_idle(&[&a.agent, &b.agent, &c.agent]).await;
    assert!(app.try_recv().is_err(), "delivered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_that_fail_while_the_neighbour_stays_up_are_retried_with_backoff() {
    let clock = Arc::new(ManualClock::new(START));
    let mut config = AgentConfig::new(Eid::ipn(1, 0));
    config.forward_retry_min = Duration::from_millis(50);
    config.forward_retry_max = Duration::from_millis(400);
    let a = node_with(config, &clock).await;
    let b = node(2, &clock).await;
    let a_to_b = link(&a, &b).await;
    a_to_b.cut();
    let mut app = b.agent.register(Eid::ipn(2, 1)).await.expect("register");
    for i in 0..20u8 {
        a.agent
            .send(Eid::ipn(1, 1), Eid::ipn(2, 1), Bytes::from(vec![i]), 60_000, BundleFlags::default())
            .await
            .expect("send");
    }
    // The link fails every send, the neighbour stays up: one timer retries them all, ever
    // later. Time passes on the agents' clock only (the timers sleep on it).
    for _ in 0..8 {
        clock.advance(400);
        until_idle(&[&a.agent, &b.agent]).await;
    }
    assert_eq!(a.agent.store().stats().bundles, 20, "every bundle still held at A");
    assert!(app.try_recv().is_err());
    // The link works again; no neighbour_up, no redispatch: the retry timer moves them on
    // once the clock reaches it (at most the longest delay away).
    a_to_b.restore();
    clock.advance(400);
    let mut payloads = Vec::new();
    for _ in 0..20 {
        let delivery = next(&mut app).await;
        payloads.push(delivery.bundle.payload()[0]);
        b.agent.acknowledge(&delivery).await.expect("ack");
    }
    payloads.sort();
    assert_eq!(payloads, (0..20).collect::<Vec<u8>>());
    eventually("A's store empty", || a.agent.store().stats().bundles == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_bundle_is_deleted_and_reported() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, _c, b_to_c) = chain(&clock).await;
    b_to_c.cut();
    // A's administrative endpoint receives the status reports it asked for.
    let mut reports = a.agent.register(Eid::ipn(1, 0)).await.expect("register");
    // B needs a way back to A for the report.
    link(&b, &a).await;
    a.agent
        .send(
            Eid::ipn(1, 1),
            Eid::ipn(3, 1),
            Bytes::from_static(b"too slow"),
            1_000,
            BundleFlags(BundleFlags::REPORT_DELETION),
        )
        .await
        .expect("send");
    eventually("the bundle waits at B", || b.agent.store().stats().bundles == 1).await;
    clock.advance(2_000);
    assert_eq!(b.agent.expire().await.expect("expire"), 1);
    let report = next(&mut reports).await;
    assert!(report.bundle.primary().flags.is_admin_record());
    let AdminRecord::StatusReport(r) =
        AdminRecord::decode(report.bundle.payload(), &AdminRecordTypes::default()).expect("a record")
    else {
        panic!("not a status report")
    };
    assert!(r.deleted.asserted);
    assert_eq!((r.reason, r.source), (ReasonCode::LIFETIME_EXPIRED, Eid::ipn(1, 1)));
    // The report itself was forwarded from B's store to A.
    eventually("B's store empty", || b.agent.store().stats().bundles == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_offline_for_hours_gets_everything_when_it_returns() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, _b, c, _) = chain(&clock).await;
    for i in 0..5u8 {
        a.agent
            .send(
                Eid::ipn(1, 1),
                Eid::ipn(3, 9),
                Bytes::from(vec![i; 10]),
                86_400_000,
                BundleFlags::default(),
            )
            .await
            .expect("send");
    }
    eventually("all five wait at C", || c.agent.store().stats().bundles == 5).await;
    clock.advance(6 * 3_600_000);
    assert_eq!(c.agent.expire().await.expect("expire"), 0);
    let mut app = c.agent.register(Eid::ipn(3, 9)).await.expect("register");
    let mut got: Vec<u8> = Vec::new();
    for _ in 0..5 {
        let d = next(&mut app).await;
        got.push(d.bundle.payload()[0]);
        c.agent.acknowledge(&d).await.expect("ack");
    }
    got.sort();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(c.agent.store().stats().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_over_its_hop_limit_is_deleted_not_forwarded() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, c, _) = chain(&clock).await;
    let mut app = c.agent.register(Eid::ipn(3, 1)).await.expect("register");
    // Hop limit 1: A → B is the one hop; B may not forward it again.
    let bundle = bpa::bundle::BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(3, 1),
        bpa::bundle::CreationTimestamp { time: START, sequence: 99 },
        60_000,
    )
    .hop_limit(1)
    .payload(&b"short-lived"[..])
    .build()
    .expect("bundle");
    a.agent.receive(Bytes::from(bundle.encode())).await.expect("receive");
    eventually("B dropped it", || {
        a.agent.store().stats().bundles == 0 && b.agent.store().stats().bundles == 0
    })
    .await;
    until_idle(&[&a.agent, &b.agent, &c.agent]).await;
    assert!(app.try_recv().is_err());
    assert_eq!(c.agent.store().stats().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_invalid_bundles_are_answered() {
    let clock = Arc::new(ManualClock::new(START));
    let a = node(1, &clock).await;
    let bundle = bpa::bundle::BundleBuilder::new(
        Eid::ipn(5, 1),
        Eid::ipn(9, 1),
        bpa::bundle::CreationTimestamp { time: START, sequence: 1 },
        60_000,
    )
    .payload(&b"x"[..])
    .build()
    .expect("bundle");
    let bytes = Bytes::from(bundle.encode());
    let first = a.agent.receive(bytes.clone()).await.expect("receive");
    let again = a.agent.receive(bytes.clone()).await.expect("receive again");
    assert!(
        matches!((first, again), (bpa::agent::Reception::Accepted(x), bpa::agent::Reception::Duplicate(y)) if x == y)
    );
    let mut bad = bytes.to_vec();
    let n = bad.len();
    bad[n - 3] ^= 1;
    let err = a.agent.receive(Bytes::from(bad)).await.unwrap_err();
    assert!(err.to_string().starts_with("the bundle is refused: CRC mismatch"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middle_node_restarts_and_the_bundle_continues() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, c, b_to_c) = chain(&clock).await;
    b_to_c.cut();
    let mut app = c.agent.register(Eid::ipn(3, 1)).await.expect("register");
    a.agent
        .send(Eid::ipn(1, 1), Eid::ipn(3, 1), Bytes::from_static(b"survivor"), 60_000, BundleFlags::default())
        .await
        .expect("send");
    eventually("the bundle waits at B", || b.agent.store().stats().bundles == 1).await;
    // B stops: its agent and store go away (A's link to it too); the directory stays.
    a.agent.neighbour_down(&Eid::ipn(2, 0));
    let TestNode { agent, dir } = b;
    let store = agent.store().clone();
    drop(agent);
    store.close().await;
    // B starts again on the same directory.
    let dyn_clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let (store, report) = reopen_store(dir.path(), StoreConfig::default(), dyn_clock.clone()).await;
    assert_eq!(store.stats().bundles, 1, "{report}");
    let b = TestNode { agent: Agent::new(AgentConfig::new(Eid::ipn(2, 0)), store, dyn_clock), dir };
    b.agent.start().await.expect("start");
    link(&a, &b).await;
    link(&b, &c).await;
    let delivery = next(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), b"survivor");
    c.agent.acknowledge(&delivery).await.expect("ack");
    eventually("B's store empty", || b.agent.store().stats().bundles == 0).await;
}

fn big_bundle(sequence: u64, payload: &[u8], flags: u64) -> bpa::bundle::Bundle {
    bpa::bundle::BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(3, 1),
        bpa::bundle::CreationTimestamp { time: START, sequence },
        3_600_000,
    )
    .flags(BundleFlags(flags))
    .payload(payload.to_vec())
    .build()
    .expect("bundle")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_out_of_order_duplicated_and_overlapping_are_delivered_once_whole() {
    let clock = Arc::new(ManualClock::new(START));
    let c = node(3, &clock).await;
    let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let whole = big_bundle(1, &payload, 0);
    let mut small = bpa::agent::fragment(&whole, 700).expect("fragments");
    let large = bpa::agent::fragment(&whole, 2000).expect("fragments");
    assert!(small.len() > 6 && large.len() > 2);
    // Out of order, the last first; a duplicate; and overlapping fragments of another cut.
    small.reverse();
    let mut sent = vec![small[0].clone(), small[0].clone(), large[1].clone()];
    sent.extend(small[1..].iter().cloned());
    let mut app = c.agent.register(Eid::ipn(3, 1)).await.expect("register");
    for (i, f) in sent.iter().enumerate() {
        c.agent.receive(Bytes::from(f.encode())).await.expect("receive");
        if i + 1 < sent.len() {
            assert!(app.try_recv().is_err(), "nothing before the last fragment");
        }
    }
    let delivery = next(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), payload.as_slice());
    assert_eq!(delivery.bundle.primary().fragment, None);
    assert!(!delivery.bundle.primary().flags.is_fragment());
    assert_eq!(delivery.bundle.id().creation, whole.id().creation);
    c.agent.acknowledge(&delivery).await.expect("ack");
    // The late fragment of the other cut is a bundle of its own: it waits, alone, to expire.
    until_idle(&[&c.agent]).await;
    assert!(app.try_recv().is_err(), "delivered exactly once");
    assert_eq!(c.agent.stats().reassembled, 1);
    assert_eq!(c.agent.stats().duplicates, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_with_a_small_maximum_gets_fragments_and_the_destination_reassembles() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b) = (node(1, &clock).await, node(3, &clock).await);
    let (cla, _switch) = MemoryLink::new(b.agent.clone());
    a.agent.neighbour_up(Eid::ipn(3, 0), Arc::new(cla.with_max_bundle_size(1000))).await.expect("up");
    let mut app = b.agent.register(Eid::ipn(3, 1)).await.expect("register");
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
    a.agent
        .send(Eid::ipn(1, 1), Eid::ipn(3, 1), Bytes::from(payload.clone()), 60_000, BundleFlags::default())
        .await
        .expect("send");
    let delivery = next(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), payload.as_slice());
    assert!(a.agent.stats().fragments_sent >= 20, "{:?}", a.agent.stats());
    b.agent.acknowledge(&delivery).await.expect("ack");
    eventually("both stores empty", || {
        a.agent.store().stats().bundles == 0 && b.agent.store().stats().bundles == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_must_not_be_fragmented_waits_instead_of_crossing_a_small_link() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b) = (node(1, &clock).await, node(3, &clock).await);
    let (cla, _switch) = MemoryLink::new(b.agent.clone());
    a.agent.neighbour_up(Eid::ipn(3, 0), Arc::new(cla.with_max_bundle_size(1000))).await.expect("up");
    let whole = big_bundle(2, &[7u8; 5000], BundleFlags::MUST_NOT_FRAGMENT);
    a.agent.receive(Bytes::from(whole.encode())).await.expect("receive");
    eventually("the link refused it", || a.agent.stats().too_big == 1).await;
    assert_eq!((a.agent.store().stats().bundles, b.agent.store().stats().bundles), (1, 0));
    // A link that takes it whole comes up: it goes.
    let (cla, _switch) = MemoryLink::new(b.agent.clone());
    a.agent.neighbour_up(Eid::ipn(3, 0), Arc::new(cla)).await.expect("up");
    eventually("it crossed whole", || b.agent.store().stats().bundles == 1).await;
    assert_eq!(b.agent.stats().reassembled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_service_answers_on_ipn_service_7() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, c, _) = chain(&clock).await;
    link(&c, &b).await;
    link(&b, &a).await;
    c.agent.add_route(Route { to: Eid::ipn(1, 0), via: Eid::ipn(2, 0) }).await.expect("route");
    let mut replies = a.agent.register(Eid::ipn(1, 5)).await.expect("register");
    a.agent
        .send(Eid::ipn(1, 5), Eid::ipn(3, 7), Bytes::from_static(b"ping 1"), 60_000, BundleFlags::default())
        .await
        .expect("send");
    let reply = next(&mut replies).await;
    assert_eq!(reply.bundle.payload().as_ref(), b"ping 1");
    assert_eq!(reply.bundle.primary().source, Eid::ipn(3, 7));
    assert_eq!(c.agent.stats().echoed, 1);
    a.agent.acknowledge(&reply).await.expect("ack");
    eventually("every store empty", || [&a, &b, &c].iter().all(|n| n.agent.store().stats().bundles == 0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_restart_and_foreign_endpoints_are_refused() {
    let clock = Arc::new(ManualClock::new(START));
    let dyn_clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (store, _) = SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&dyn_clock))
            .await
            .expect("store");
        let agent = Agent::new(AgentConfig::new(Eid::ipn(3, 0)), store.clone(), Arc::clone(&dyn_clock));
        let error = agent.register(Eid::ipn(4, 1)).await.expect_err("foreign");
        assert_eq!(
            error.to_string(),
            "ipn:4.1 is not an endpoint of this node (ipn:3.0): applications register endpoints of their own node"
        );
        drop(agent.register(Eid::ipn(3, 1)).await.expect("register"));
        let _kept = agent.register(Eid::ipn(3, 2)).await.expect("register");
        agent.register(Eid::ipn(3, 3)).await.expect("register");
        agent.unregister(&Eid::ipn(3, 3)).await.expect("unregister");
        assert_eq!(
            agent.registrations().await.expect("list"),
            vec![(Eid::ipn(3, 1), false), (Eid::ipn(3, 2), true)]
        );
        drop(agent);
        store.close().await;
    }
    let (store, _) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&dyn_clock)).await.expect("reopen");
    let agent = Agent::new(AgentConfig::new(Eid::ipn(3, 0)), store, dyn_clock);
    assert_eq!(
        agent.registrations().await.expect("list"),
        vec![(Eid::ipn(3, 1), false), (Eid::ipn(3, 2), false)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_route_patterns_pick_the_most_specific_next_hop() {
    use bpa::agent::StaticRoute;
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, c) = (node(1, &clock).await, node(2, &clock).await, node(4, &clock).await);
    link(&a, &b).await;
    link(&a, &c).await;
    // Everything via 2, but node 9's service 5 via 4.
    a.agent
        .add_static_route(StaticRoute { pattern: "*".parse().expect("p"), via: Eid::ipn(2, 0) })
        .await
        .expect("route");
    a.agent
        .add_static_route(StaticRoute { pattern: "ipn:9.5".parse().expect("p"), via: Eid::ipn(4, 0) })
        .await
        .expect("route");
    for service in [5, 6] {
        a.agent
            .send(
                Eid::ipn(1, 1),
                Eid::ipn(9, service),
                Bytes::from_static(b"x"),
                60_000,
                BundleFlags::default(),
            )
            .await
            .expect("send");
    }
    eventually("one at each neighbour", || {
        b.agent.store().stats().bundles == 1 && c.agent.store().stats().bundles == 1
    })
    .await;
    let at_c = c.agent.store().by_destination(&Eid::ipn(9, 5), 10).await.expect("query");
    assert_eq!(at_c.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_to_this_node_are_consumed_when_nobody_watches() {
    let clock = Arc::new(ManualClock::new(START));
    let (a, b, _c, _) = chain(&clock).await;
    link(&b, &a).await;
    // B's reception report and A's own forwarding report go to A's administrative endpoint,
    // which no application watches.
    a.agent
        .send(
            Eid::ipn(1, 1),
            Eid::ipn(2, 1),
            Bytes::from_static(b"x"),
            60_000,
            BundleFlags(BundleFlags::REPORT_FORWARDING | BundleFlags::REPORT_RECEPTION),
        )
        .await
        .expect("send");
    eventually("both reports consumed at A", || a.agent.stats().delivered == 2).await;
    eventually("A's store empty", || a.agent.store().stats().bundles == 0).await;
}

/// A payload of `len` bytes that is not all one value, so a misplaced chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_send_crosses_the_chain_and_reads_back_streamed() {
    use bpa::agent::SendRequest;
    use bpa::store::PayloadContent;
    use tokio::io::AsyncReadExt;

    let clock = Arc::new(ManualClock::new(START));
    let (a, _b, c, _) = chain(&clock).await;
    // C's application reads from the store (as the local API does): it watches, then reads.
    let mut watcher = c.agent.watch(Eid::ipn(3, 1)).await.expect("watch");
    let payload = pattern(3 << 20);
    let request = SendRequest {
        source: Eid::ipn(1, 1),
        destination: Eid::ipn(3, 1),
        lifetime_ms: 60_000,
        flags: BundleFlags::default(),
        custody: false,
    };
    let mut pending = a.agent.begin_send(request, payload.len() as u64).await.expect("begin");
    for chunk in payload.chunks(100_000) {
        pending.write(chunk).await.expect("write");
    }
    assert_eq!(pending.remaining(), 0);
    let (_, bundle_id) = pending.commit().await.expect("commit");
    let arrived = tokio::time::timeout(Duration::from_secs(20), watcher.arrived())
        .await
        .expect("in time")
        .expect("agent alive");
    let (id, header, content) =
        c.agent.oldest_waiting(&Eid::ipn(3, 1)).await.expect("read").expect("one waits");
    assert_eq!(id, arrived);
    assert_eq!(header.id(), bundle_id);
    assert_eq!(header.payload.data_length, payload.len() as u64);
    let PayloadContent::File(mut reader) = content else { panic!("a 3 MiB payload is read from its file") };
    let mut received = Vec::new();
    reader.read_to_end(&mut received).await.expect("read payload");
    assert!(received == payload, "the payload arrives intact");
    assert!(c.agent.acknowledge_stored(&Eid::ipn(3, 1), id).await.expect("ack"));
    assert!(c.agent.oldest_waiting(&Eid::ipn(3, 1)).await.expect("read").is_none());
    assert!(!c.agent.acknowledge_stored(&Eid::ipn(3, 1), id).await.expect("ack again"), "acknowledged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_send_of_the_wrong_length_is_refused_and_leaves_nothing() {
    use bpa::agent::AgentError;
    use bpa::agent::SendRequest;
    use bpa::bundle::PayloadLengthMismatch;

    let clock = Arc::new(ManualClock::new(START));
    let a = node(1, &clock).await;
    let request = SendRequest {
        source: Eid::ipn(1, 1),
        destination: Eid::ipn(1, 2),
        lifetime_ms: 60_000,
        flags: BundleFlags::default(),
        custody: false,
    };
    let mut long = a.agent.begin_send(request.clone(), 10).await.expect("begin");
    long.write(b"0123456789").await.expect("exactly the length");
    let error = long.write(b"x").await.expect_err("one byte too many");
    assert!(
        matches!(error, AgentError::PayloadLength(PayloadLengthMismatch { declared: 10, received: 11 })),
        "{error}"
    );
    drop(long);
    let mut short = a.agent.begin_send(request.clone(), 10).await.expect("begin");
    short.write(b"01234").await.expect("write");
    let error = short.commit().await.expect_err("five bytes short");
    assert_eq!(
        error.to_string(),
        "the bundle is incomplete: the payload was declared as 10 bytes but 5 came"
    );
    let foreign = SendRequest { source: Eid::ipn(9, 1), ..request };
    let error = a.agent.begin_send(foreign, 10).await.expect_err("foreign source");
    assert!(matches!(error, AgentError::ForeignSource { .. }), "{error}");
    assert_eq!(a.agent.store().stats().bundles, 0, "nothing stored");
    let leftovers: Vec<_> = std::fs::read_dir(a.dir.path().join("blobs"))
        .expect("the store's blob directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "no file left behind: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_request_over_the_limit_is_deleted_unanswered() {
    use bpa::agent::MAX_ECHO_PAYLOAD;
    use bpa::agent::SendRequest;
    let clock = Arc::new(ManualClock::new(START));
    let a = node(1, &clock).await;
    let mut app = a.agent.register(Eid::ipn(1, 1)).await.expect("register");
    let big = Bytes::from(pattern(MAX_ECHO_PAYLOAD as usize + 1));
    a.agent.send(Eid::ipn(1, 1), Eid::ipn(1, 7), big, 60_000, BundleFlags::default()).await.expect("send");
    a.agent
        .send(Eid::ipn(1, 1), Eid::ipn(1, 7), Bytes::from_static(b"ping"), 60_000, BundleFlags::default())
        .await
        .expect("send");
    // Under the limit but stored in its own file (streamed in, over the inline threshold): answered.
    let medium = pattern(200 * 1024);
    let request = SendRequest {
        source: Eid::ipn(1, 1),
        destination: Eid::ipn(1, 7),
        lifetime_ms: 60_000,
        flags: BundleFlags::default(),
        custody: false,
    };
    let mut pending = a.agent.begin_send(request, medium.len() as u64).await.expect("begin");
    pending.write(&medium).await.expect("write");
    pending.commit().await.expect("commit");
    let mut replies = Vec::new();
    for _ in 0..2 {
        let reply = next(&mut app).await;
        replies.push(reply.bundle.payload().to_vec());
        a.agent.acknowledge(&reply).await.expect("ack");
    }
    replies.sort_by_key(Vec::len);
    assert_eq!(replies, vec![b"ping".to_vec(), medium], "the two requests under the limit are answered");
    eventually("the store empty", || a.agent.store().stats().bundles == 0).await;
    assert_eq!(a.agent.stats().echoed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_bundles_than_a_page_wait_through_a_restart_and_all_go_when_the_neighbour_comes() {
    let clock = Arc::new(ManualClock::new(START));
    let dir = tempfile::tempdir().expect("tempdir");
    let dyn_clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let open = || async {
        let (store, _) = SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&dyn_clock))
            .await
            .expect("store");
        Agent::new(AgentConfig::new(Eid::ipn(1, 0)), store, Arc::clone(&dyn_clock))
    };
    {
        let a = open().await;
        for i in 0..2_500u32 {
            a.send(
                Eid::ipn(1, 1),
                Eid::ipn(2, 1),
                Bytes::from(i.to_be_bytes().to_vec()),
                600_000,
                BundleFlags::default(),
            )
            .await
            .expect("send");
        }
        a.store().clone().close().await;
    }
    let a = open().await;
    a.start().await.expect("start");
    let b = node(2, &clock).await;
    let (cla, _) = MemoryLink::new(b.agent.clone());
    a.neighbour_up(Eid::ipn(2, 0), Arc::new(cla)).await.expect("up");
    eventually("every bundle crossed", || b.agent.store().stats().bundles == 2_500).await;
    eventually("A's store empty", || a.store().stats().bundles == 0).await;
}
