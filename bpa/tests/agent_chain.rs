//! Several agents in one process, each with its own store on disk, linked by in-memory
//! convergence layers that the tests cut and restore, on one manual clock.

use std::sync::Arc;
use std::time::Duration;

use bpa::admin::{AdminRecord, AdminRecordTypes, ReasonCode};
use bpa::agent::node::{Agent, AgentConfig, Delivery, Route};
use bpa::agent::report::ReportPolicy;
use bpa::bundle::{BundleFlags, Eid, ParseOptions};
use bpa::cla::memory::{LinkSwitch, MemoryLink};
use bpa::store::{SqliteStore, StoreConfig};
use bpa::time::ManualClock;
use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;

const START: u64 = 800_000_000_000;

struct Node {
    agent: Agent<SqliteStore>,
    _dir: tempfile::TempDir,
}

async fn node(n: u32, clock: &Arc<ManualClock>) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let (store, _) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&clock)).await.expect("store");
    let config = AgentConfig {
        node_id: Eid::ipn(n, 0),
        parse: ParseOptions::default(),
        reports: ReportPolicy::default(),
    };
    Node { agent: Agent::new(config, store, clock), _dir: dir }
}

/// Links `a` to `b` (one direction) and returns the switch.
async fn link(a: &Node, b: &Node) -> LinkSwitch {
    let (cla, switch) = MemoryLink::new(b.agent.clone());
    a.agent.neighbour_up(b.agent.node_id().clone(), Arc::new(cla)).await.expect("neighbour up");
    switch
}

async fn next(rx: &mut UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a delivery in time")
        .expect("channel open")
}

/// Waits until `check` holds (the pipeline works in spawned tasks).
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never happened: {what}");
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
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(app.try_recv().is_err(), "delivered exactly once");
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
                Eid::ipn(3, 7),
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
    let mut app = c.agent.register(Eid::ipn(3, 7)).await.expect("register");
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
    tokio::time::sleep(Duration::from_millis(50)).await;
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
        matches!((first, again), (bpa::agent::node::Reception::Accepted(x), bpa::agent::node::Reception::Duplicate(y)) if x == y)
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
    let Node { agent, _dir: dir } = b;
    let store = agent.store().clone();
    drop(agent);
    store.close().await;
    // B starts again on the same directory.
    let dyn_clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let (store, report) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&dyn_clock)).await.expect("reopen");
    assert_eq!(store.stats().bundles, 1, "{report}");
    let config = AgentConfig {
        node_id: Eid::ipn(2, 0),
        parse: ParseOptions::default(),
        reports: ReportPolicy::default(),
    };
    let b = Node { agent: Agent::new(config, store, dyn_clock), _dir: dir };
    link(&a, &b).await;
    link(&b, &c).await;
    let delivery = next(&mut app).await;
    assert_eq!(delivery.bundle.payload().as_ref(), b"survivor");
    c.agent.acknowledge(&delivery).await.expect("ack");
    eventually("B's store empty", || b.agent.store().stats().bundles == 0).await;
}
