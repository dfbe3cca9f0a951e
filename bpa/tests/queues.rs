//! The per-neighbour queues (issue 13, item 2): what waits for a neighbour stays in the store
//! and is read from there a page at a time; the agent holds a bounded window of sends, not a
//! task per waiting bundle; the store says where each bundle is (waiting, queued for a
//! neighbour, in flight to it); housekeeping runs on the agent's clock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::agent::{Agent, AgentConfig};
use bpa::bundle::{BundleFlags, Eid};
use bpa::cla::{ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle};
use bpa::store::{BundleState, SqliteStore, StateKind, StoreConfig};
use bpa::testing::{TestNode, eventually, peak_rss_mib, until_idle};
use bpa::time::ManualClock;
use bytes::Bytes;
use tokio::sync::Semaphore;

const NOW: u64 = 800_000_000_000;

/// A link that takes a bundle only when the test lets it (one permit per bundle), or fails
/// every send while `down`.
#[derive(Debug)]
struct Gate {
    open: Arc<Semaphore>,
    down: AtomicBool,
    taken: AtomicUsize,
    started: AtomicUsize,
    sizes: Mutex<Vec<u64>>,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate {
            open: Arc::new(Semaphore::new(0)),
            down: AtomicBool::new(false),
            taken: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            sizes: Mutex::new(Vec::new()),
        })
    }
}

impl ConvergenceLayer for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let peer = peer.to_string();
        Box::pin(async move {
            self.started.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(ClaError::LinkDown { peer });
            }
            let permit = self.open.acquire().await.map_err(|_| ClaError::LinkDown { peer: peer.clone() })?;
            permit.forget();
            if self.down.load(Ordering::SeqCst) {
                return Err(ClaError::LinkDown { peer });
            }
            self.sizes.lock().expect("lock").push(bundle.len());
            self.taken.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

type Node = TestNode;

async fn node(clock: &Arc<ManualClock>, max_in_flight: usize) -> Node {
    let mut config = AgentConfig::new(Eid::ipn(1, 0));
    config.max_in_flight_per_neighbour = max_in_flight;
    TestNode::new(config, clock.clone()).await
}

async fn count(store: &SqliteStore, kind: StateKind, arg: Option<&str>) -> usize {
    let mut total = 0;
    let mut after = 0;
    loop {
        let page = store.by_state(kind, arg, after, 1000).await.expect("by_state");
        let Some(last) = page.last() else { return total };
        after = last.id;
        total += page.len();
    }
}

async fn send_many(node: &Node, n: usize, to: Eid) {
    for i in 0..n {
        node.agent
            .send(
                Eid::ipn(1, 1),
                to.clone(),
                Bytes::from(format!("bundle {i}")),
                3_600_000,
                BundleFlags::default(),
            )
            .await
            .expect("send");
    }
}

/// A pause of real time, for the two checks no fact can end, the agent being busy by design:
/// that sends held up inside a layer let no more start, and what a reader held up by its
/// application holds. Everywhere else the tests wait for [`until_idle`].
async fn pause() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_waiting_for_a_neighbour_make_a_bounded_window_not_a_task_each() {
    const WAITING: usize = 3000;
    const WINDOW: usize = 16;
    let clock = Arc::new(ManualClock::new(NOW));
    let a = node(&clock, WINDOW).await;
    send_many(&a, WAITING, Eid::ipn(2, 1)).await;
    let tasks_before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let gate = Gate::new();
    a.agent.neighbour_up(Eid::ipn(2, 0), gate.clone()).await.expect("up");
    eventually("the window fills", || gate.started.load(Ordering::SeqCst) == WINDOW).await;
    pause().await;
    assert_eq!(gate.started.load(Ordering::SeqCst), WINDOW, "no more sends than the window");
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    assert!(
        tasks <= tasks_before + WINDOW + 4,
        "{tasks} tasks alive for {WAITING} waiting bundles (before: {tasks_before}): a task per bundle?"
    );
    // The store says which are on their way.
    let store = a.agent.store();
    assert_eq!(count(store, StateKind::InFlight, Some("ipn:2.0")).await, WINDOW);
    assert_eq!(count(store, StateKind::WaitingForRoute, None).await, WAITING - WINDOW);
    assert_eq!(a.agent.neighbours()[0].in_flight, WINDOW);
    assert!(!a.agent.neighbours()[0].queue_idle, "the next bundle waits for a send slot");
    assert!(!a.agent.neighbours_settled());
    // Opened: every bundle goes, once.
    gate.open.add_permits(WAITING);
    eventually("all sent", || a.agent.store().stats().bundles == 0).await;
    assert_eq!(gate.taken.load(Ordering::SeqCst), WAITING);
    // Counted once each (a send's task counts it just after the store let it go).
    eventually("all counted", || a.agent.stats().forwarded == WAITING as u64).await;
    eventually("the queue has taken everything", || a.agent.neighbours_settled()).await;
    until_idle(&[&a.agent]).await;
    assert_eq!(a.agent.stats().forwarded, WAITING as u64);
    assert!(a.agent.neighbours_settled(), "settled stays settled while nothing changes");
    let tasks_after = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    assert!(tasks_after <= tasks_before + 2, "tasks left behind: {tasks_after} (before: {tasks_before})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_waits_for_a_route_again_and_goes_after_the_backoff_on_the_agents_clock() {
    let clock = Arc::new(ManualClock::new(NOW));
    let a = node(&clock, 4).await;
    let gate = Gate::new();
    gate.down.store(true, Ordering::SeqCst);
    a.agent.neighbour_up(Eid::ipn(2, 0), gate.clone()).await.expect("up");
    send_many(&a, 10, Eid::ipn(2, 1)).await;
    eventually("every bundle tried", || gate.started.load(Ordering::SeqCst) >= 10).await;
    until_idle(&[&a.agent]).await;
    let tried = gate.started.load(Ordering::SeqCst);
    let store = a.agent.store();
    eventually("no bundle left in flight", || {
        futures_lite_block(count(store, StateKind::InFlight, None)) == 0
    })
    .await;
    assert_eq!(count(store, StateKind::WaitingForRoute, None).await, 10);
    // Nothing again before the retry (1 s by default, on the agent's clock).
    until_idle(&[&a.agent]).await;
    assert_eq!(gate.started.load(Ordering::SeqCst), tried);
    gate.down.store(false, Ordering::SeqCst);
    gate.open.add_permits(10);
    clock.advance(999);
    until_idle(&[&a.agent]).await;
    assert_eq!(gate.started.load(Ordering::SeqCst), tried, "not before 1 s");
    clock.advance(1);
    eventually("all sent after the retry", || gate.taken.load(Ordering::SeqCst) == 10).await;
    eventually("and gone from the store", || a.agent.store().stats().bundles == 0).await;
}

/// Counts synchronously for `eventually` (the store's reader runs on its own thread).
fn futures_lite_block<F: std::future::Future<Output = usize>>(f: F) -> usize {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_queued_for_a_neighbour_that_goes_down_wait_for_a_route_again() {
    let clock = Arc::new(ManualClock::new(NOW));
    let a = node(&clock, 4).await;
    send_many(&a, 3, Eid::ipn(3, 1)).await;
    let store = a.agent.store();
    let ids: Vec<_> = store.by_state(StateKind::WaitingForRoute, None, 0, 10).await.expect("list");
    for meta in &ids {
        store.set_state(meta.id, BundleState::QueuedFor { neighbour: "ipn:3.0".into() }).await.expect("set");
    }
    let gate = Gate::new();
    a.agent.neighbour_up(Eid::ipn(3, 0), gate.clone()).await.expect("up");
    a.agent.neighbour_down(&Eid::ipn(3, 0));
    eventually("queued again as waiting", || {
        futures_lite_block(count(store, StateKind::WaitingForRoute, None)) == 3
    })
    .await;
    // And they go when it is back.
    gate.open.add_permits(3);
    a.agent.neighbour_up(Eid::ipn(3, 0), gate.clone()).await.expect("up");
    eventually("sent", || a.agent.store().stats().bundles == 0).await;
    assert_eq!(gate.taken.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_in_flight_or_queued_when_the_node_stopped_go_again_after_a_restart() {
    let clock = Arc::new(ManualClock::new(NOW));
    let dyn_clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // What a node stopped mid-send leaves (the sends themselves are the first test's).
        let (store, _) = SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&dyn_clock))
            .await
            .expect("store");
        let a = Agent::new(AgentConfig::new(Eid::ipn(1, 0)), store.clone(), Arc::clone(&dyn_clock));
        for i in 0..6u8 {
            a.send(Eid::ipn(1, 1), Eid::ipn(2, 1), Bytes::from(vec![i]), 3_600_000, BundleFlags::default())
                .await
                .expect("send");
        }
        let waiting = store.by_state(StateKind::WaitingForRoute, None, 0, 10).await.expect("list");
        for (n, meta) in waiting.iter().enumerate() {
            let neighbour = "ipn:2.0".to_string();
            let state = if n % 2 == 0 {
                BundleState::InFlight { neighbour }
            } else {
                BundleState::QueuedFor { neighbour }
            };
            store.set_state(meta.id, state).await.expect("set");
        }
        drop(a);
        store.close().await;
    }
    let (store, _) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&dyn_clock)).await.expect("reopen");
    let a = Agent::new(AgentConfig::new(Eid::ipn(1, 0)), store.clone(), dyn_clock);
    a.start().await.expect("start");
    assert_eq!(count(&store, StateKind::WaitingForRoute, None).await, 6);
    let gate = Gate::new();
    gate.open.add_permits(6);
    a.neighbour_up(Eid::ipn(2, 0), gate.clone()).await.expect("up");
    eventually("all sent after the restart", || a.store().stats().bundles == 0).await;
    assert_eq!(gate.taken.load(Ordering::SeqCst), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_runs_on_the_agents_clock() {
    let clock = Arc::new(ManualClock::new(NOW));
    let a = node(&clock, 4).await;
    a.agent
        .send(Eid::ipn(1, 1), Eid::ipn(9, 1), Bytes::from_static(b"x"), 10_000, BundleFlags::default())
        .await
        .expect("send");
    a.agent.housekeep_every(Duration::from_secs(1));
    clock.advance(9_000);
    until_idle(&[&a.agent]).await;
    assert_eq!(a.agent.store().stats().bundles, 1, "not expired before its lifetime");
    clock.advance(2_000);
    eventually("expired at the next round", || a.agent.stats().expired == 1).await;
    assert_eq!(a.agent.store().stats().bundles, 0);
    // Stopped: nothing more runs (a bundle that expires stays until the next start).
    a.agent.stop_housekeeping();
    a.agent
        .send(Eid::ipn(1, 1), Eid::ipn(9, 1), Bytes::from_static(b"y"), 1_000, BundleFlags::default())
        .await
        .expect("send");
    clock.advance(5_000);
    until_idle(&[&a.agent]).await;
    assert_eq!(a.agent.store().stats().bundles, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_registers_to_a_full_store_holds_a_window_not_everything() {
    const WAITING: usize = 200;
    const SIZE: usize = 256 << 10; // 50 MiB in all, in files
    let clock = Arc::new(ManualClock::new(NOW));
    let a = node(&clock, 4).await;
    let endpoint = Eid::ipn(1, 5);
    for i in 0..WAITING {
        let payload = Bytes::from(vec![i as u8; SIZE]);
        a.agent
            .send(Eid::ipn(1, 1), endpoint.clone(), payload, 3_600_000, BundleFlags::default())
            .await
            .expect("send");
    }
    let before = peak_rss_mib();
    let mut app = a.agent.register(endpoint.clone()).await.expect("register");
    pause().await;
    let grown = peak_rss_mib() - before;
    assert!(grown < 16.0, "registering to 50 MiB of waiting bundles grew memory by {grown:.1} MiB");
    // Every bundle, once, oldest first; and one sent now comes after them.
    a.agent
        .send(
            Eid::ipn(1, 1),
            endpoint.clone(),
            Bytes::from_static(b"late"),
            3_600_000,
            BundleFlags::default(),
        )
        .await
        .expect("send");
    for i in 0..WAITING {
        let delivery =
            tokio::time::timeout(Duration::from_secs(30), app.recv()).await.expect("in time").expect("open");
        assert_eq!(delivery.bundle.payload()[0], i as u8);
        assert_eq!(delivery.bundle.payload().len(), SIZE);
        a.agent.acknowledge(&delivery).await.expect("ack");
    }
    let late =
        tokio::time::timeout(Duration::from_secs(30), app.recv()).await.expect("in time").expect("open");
    assert_eq!(late.bundle.payload().as_ref(), b"late");
    a.agent.acknowledge(&late).await.expect("ack");
    until_idle(&[&a.agent]).await;
    assert!(app.try_recv().is_err(), "each bundle once");
    assert_eq!(a.agent.store().stats().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_idle_only_with_nothing_under_way() {
    let clock = Arc::new(ManualClock::new(NOW));
    let a = node(&clock, 4).await;
    until_idle(&[&a.agent]).await;
    // A send held up in its layer is under way.
    let gate = Gate::new();
    a.agent.neighbour_up(Eid::ipn(2, 0), gate.clone()).await.expect("up");
    send_many(&a, 1, Eid::ipn(2, 1)).await;
    eventually("the send started", || gate.started.load(Ordering::SeqCst) == 1).await;
    assert!(!a.agent.is_idle(), "a send in its layer");
    gate.open.add_permits(1);
    until_idle(&[&a.agent]).await;
    assert_eq!(a.agent.store().stats().bundles, 0);
    // An application that does not read what it was given keeps its reader busy; once it
    // has read everything, the agent rests again.
    let endpoint = Eid::ipn(1, 5);
    let waiting = bpa::agent::SUBSCRIPTION_WINDOW + 4;
    for i in 0..waiting {
        let payload = Bytes::from(vec![i as u8]);
        a.agent
            .send(Eid::ipn(1, 1), endpoint.clone(), payload, 3_600_000, BundleFlags::default())
            .await
            .expect("send");
    }
    let mut app = a.agent.register(endpoint).await.expect("register");
    eventually("the window handed over", || app.len() == bpa::agent::SUBSCRIPTION_WINDOW).await;
    assert!(!a.agent.is_idle(), "a reader waiting for its application");
    for _ in 0..waiting {
        let delivery = app.recv().await.expect("open");
        a.agent.acknowledge(&delivery).await.expect("ack");
    }
    until_idle(&[&a.agent]).await;
    assert_eq!(a.agent.store().stats().bundles, 0);
    // A timer due is under way until it has fired: housekeeping set, the clock moved past it.
    a.agent.housekeep_every(Duration::from_secs(1));
    until_idle(&[&a.agent]).await;
    clock.advance(1_000);
    until_idle(&[&a.agent]).await;
    assert_eq!(a.agent.stats().expired, 0);
}
