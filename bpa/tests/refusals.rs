//! Typed refusals end to end (issue 13, item 4): the agent acts on why a neighbour did not take
//! a bundle — no room or "retransmit": again later with backoff; too large: fragmented to the
//! limit the neighbour gave, or, when it must not be, another route or deletion; not
//! acceptable: another route, else deletion with a report; link down: it waits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::agent::{Agent, AgentConfig, Route};
use bpa::bundle::{BundleFlags, Eid};
use bpa::cla::{ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle, Refusal};
use bpa::store::SqliteStore;
use bpa::testing::{TestNode, eventually, until_idle};
use bpa::time::ManualClock;
use bytes::Bytes;

const NOW: u64 = 800_000_000_000;

/// A link into another agent that refuses as scripted: the next reasons in `script`, and every
/// bundle over `limit` bytes as too large. It records the size of every bundle offered.
#[derive(Debug)]
struct Scripted {
    to: Agent<SqliteStore>,
    script: Mutex<VecDeque<Refusal>>,
    limit: Option<u64>,
    down: AtomicBool,
    offered: Mutex<Vec<u64>>,
}

impl Scripted {
    fn new(to: &Agent<SqliteStore>, script: &[Refusal], limit: Option<u64>) -> Arc<Scripted> {
        Arc::new(Scripted {
            to: to.clone(),
            script: Mutex::new(script.iter().cloned().collect()),
            limit,
            down: AtomicBool::new(false),
            offered: Mutex::new(Vec::new()),
        })
    }
    fn offered(&self) -> Vec<u64> {
        self.offered.lock().expect("lock").clone()
    }
}

impl ConvergenceLayer for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let peer = peer.to_string();
        Box::pin(async move {
            self.offered.lock().expect("lock").push(bundle.len());
            if self.down.load(Ordering::SeqCst) {
                return Err(ClaError::LinkDown { peer });
            }
            if let Some(limit) = self.limit.filter(|limit| bundle.len() > *limit) {
                return Err(ClaError::Refused { peer, reason: Refusal::TooLarge { limit } });
            }
            if let Some(reason) = self.script.lock().expect("lock").pop_front() {
                return Err(ClaError::Refused { peer, reason });
            }
            let bytes = bundle
                .into_bytes()
                .await
                .map_err(|e| ClaError::Failed { peer: peer.clone(), reason: e.to_string() })?;
            self.to
                .receive(bytes)
                .await
                .map(drop)
                .map_err(|e| ClaError::Failed { peer, reason: e.to_string() })
        })
    }
}

type Node = TestNode;

async fn node(n: u32, clock: &Arc<ManualClock>) -> Node {
    let mut config = AgentConfig::new(Eid::ipn(n, 0));
    config.reports.enabled = true; // off by default (RFC 9171 §5.1); the deletion reports are tested
    config.forward_retry_min = Duration::from_millis(20);
    config.forward_retry_max = Duration::from_millis(80);
    TestNode::new(config, clock.clone()).await
}

/// A node with the agent's default configuration.
async fn on_the_defaults(n: u32, clock: &Arc<ManualClock>) -> Node {
    TestNode::new(AgentConfig::new(Eid::ipn(n, 0)), clock.clone()).await
}

async fn send(from: &Node, to: Eid, payload: usize, flags: u64) {
    from.agent
        .send(Eid::ipn(1, 1), to, Bytes::from(vec![7u8; payload]), 60_000, BundleFlags(flags))
        .await
        .expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resources_and_retransmit_are_tried_again_later() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b) = (node(1, &clock).await, node(2, &clock).await);
    let link = Scripted::new(&b.agent, &[Refusal::NoResources, Refusal::Retransmit], None);
    a.agent.neighbour_up(Eid::ipn(2, 0), link.clone()).await.expect("up");
    send(&a, Eid::ipn(2, 5), 100, 0).await;
    // The retries wait on the agent's clock: it is moved until B has the bundle.
    for _ in 0..400 {
        until_idle(&[&a.agent, &b.agent]).await;
        if b.agent.store().stats().bundles == 1 {
            break;
        }
        clock.advance(20);
    }
    eventually("B has it", || b.agent.store().stats().bundles == 1).await;
    assert_eq!(link.offered().len(), 3, "refused twice, then taken");
    eventually("A let it go", || a.agent.store().stats().bundles == 0).await;
    assert_eq!(a.agent.stats().forwarded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_acceptable_goes_by_another_route_when_there_is_one() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b, c) = (node(1, &clock).await, node(2, &clock).await, node(3, &clock).await);
    let refusing = Scripted::new(&c.agent, &[Refusal::NotAcceptable], None);
    let other = Scripted::new(&b.agent, &[], None);
    a.agent.neighbour_up(Eid::ipn(3, 0), refusing.clone()).await.expect("up");
    a.agent.neighbour_up(Eid::ipn(2, 0), other.clone()).await.expect("up");
    a.agent.add_route(Route { to: Eid::ipn(3, 0), via: Eid::ipn(2, 0) }).await.expect("route");
    send(&a, Eid::ipn(3, 5), 100, 0).await;
    eventually("B carries it on", || b.agent.store().stats().bundles == 1).await;
    assert_eq!(refusing.offered().len(), 1);
    assert_eq!(c.agent.store().stats().bundles, 0);
    eventually("A let it go", || a.agent.store().stats().bundles == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_acceptable_with_no_other_route_is_deleted_and_reported() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, c) = (node(1, &clock).await, node(3, &clock).await);
    let refusing = Scripted::new(&c.agent, &[Refusal::NotAcceptable], None);
    a.agent.neighbour_up(Eid::ipn(3, 0), refusing.clone()).await.expect("up");
    send(&a, Eid::ipn(3, 5), 100, BundleFlags::REPORT_DELETION).await;
    eventually("deleted", || a.agent.stats().discarded == 1).await;
    assert_eq!(refusing.offered().len(), 1, "not tried again");
    // The report follows the deletion.
    eventually("the deletion report asked for", || a.agent.stats().reports_sent == 1).await;
    eventually("A's store empties (its own report is consumed)", || a.agent.store().stats().bundles == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_is_fragmented_to_the_limit_the_neighbour_gave() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b) = (node(1, &clock).await, node(2, &clock).await);
    let link = Scripted::new(&b.agent, &[], Some(1_000));
    a.agent.neighbour_up(Eid::ipn(2, 0), link.clone()).await.expect("up");
    let mut app = b.agent.register(Eid::ipn(2, 5)).await.expect("register");
    send(&a, Eid::ipn(2, 5), 5_000, 0).await;
    let delivery =
        tokio::time::timeout(Duration::from_secs(20), app.recv()).await.expect("in time").expect("open");
    assert_eq!(delivery.bundle.payload().as_ref(), vec![7u8; 5_000].as_slice());
    let offered = link.offered();
    assert!(offered[0] > 5_000, "first whole: {offered:?}");
    assert!(offered.len() > 5 && offered[1..].iter().all(|len| *len <= 1_000), "then fragments: {offered:?}");
    eventually("A let it go", || a.agent.store().stats().bundles == 0).await;
    // What the neighbour said is kept: the next large bundle is fragmented at once.
    let before = link.offered().len();
    send(&a, Eid::ipn(2, 5), 3_000, 0).await;
    tokio::time::timeout(Duration::from_secs(20), app.recv()).await.expect("in time").expect("open");
    assert!(link.offered()[before..].iter().all(|len| *len <= 1_000), "{:?}", link.offered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_and_not_to_be_fragmented_is_deleted_when_no_other_route_takes_it() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b) = (node(1, &clock).await, node(2, &clock).await);
    let link = Scripted::new(&b.agent, &[], Some(1_000));
    a.agent.neighbour_up(Eid::ipn(2, 0), link.clone()).await.expect("up");
    send(&a, Eid::ipn(2, 5), 5_000, BundleFlags::MUST_NOT_FRAGMENT).await;
    eventually("deleted", || a.agent.stats().discarded == 1).await;
    assert_eq!(link.offered().len(), 1);
    assert_eq!(a.agent.store().stats().bundles, 0);
    assert_eq!(b.agent.store().stats().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_down_keeps_the_bundle_until_the_neighbour_is_back() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b) = (node(1, &clock).await, node(2, &clock).await);
    let link = Scripted::new(&b.agent, &[], None);
    link.down.store(true, Ordering::SeqCst);
    a.agent.neighbour_up(Eid::ipn(2, 0), link.clone()).await.expect("up");
    send(&a, Eid::ipn(2, 5), 100, 0).await;
    eventually("tried", || !link.offered().is_empty()).await;
    assert_eq!(a.agent.store().stats().bundles, 1, "kept");
    assert_eq!(a.agent.stats().discarded, 0);
    link.down.store(false, Ordering::SeqCst);
    a.agent.neighbour_up(Eid::ipn(2, 0), link.clone()).await.expect("up again");
    eventually("B has it", || b.agent.store().stats().bundles == 1).await;
    eventually("A let it go", || a.agent.store().stats().bundles == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backoff_doubles_from_1_s_to_60_s_on_the_agents_clock_and_a_success_resets_it() {
    let clock = Arc::new(ManualClock::new(NOW));
    // The defaults: 1 s, doubling, at most 60 s.
    let a = on_the_defaults(1, &clock).await;
    let a = &a.agent;
    let b = node(2, &clock).await;
    let script = vec![Refusal::NoResources; 8];
    let link = Scripted::new(&b.agent, &script, None);
    a.neighbour_up(Eid::ipn(2, 0), link.clone()).await.expect("up");
    a.send(Eid::ipn(1, 1), Eid::ipn(2, 5), Bytes::from_static(b"x"), 3_600_000, BundleFlags::default())
        .await
        .expect("send");
    let mut offers = 1;
    for delay_s in [1u64, 2, 4, 8, 16, 32, 60, 60] {
        eventually("the offer was made", || link.offered().len() == offers).await;
        until_idle(&[a, &b.agent]).await;
        assert_eq!(link.offered().len(), offers, "nothing before the clock moves");
        clock.advance(delay_s * 1000 - 1);
        until_idle(&[a, &b.agent]).await;
        assert_eq!(link.offered().len(), offers, "not before {delay_s} s");
        clock.advance(1);
        offers += 1;
        eventually(&format!("retried after {delay_s} s"), || link.offered().len() == offers).await;
    }
    eventually("taken at the ninth offer", || b.agent.store().stats().bundles == 1).await;
    // A success resets the backoff: the next refusal is retried after 1 s again.
    link.script.lock().expect("lock").push_back(Refusal::NoResources);
    a.send(Eid::ipn(1, 1), Eid::ipn(2, 5), Bytes::from_static(b"y"), 3_600_000, BundleFlags::default())
        .await
        .expect("send");
    offers += 1;
    eventually("refused once", || link.offered().len() == offers).await;
    until_idle(&[a, &b.agent]).await;
    clock.advance(999);
    until_idle(&[a, &b.agent]).await;
    assert_eq!(link.offered().len(), offers);
    clock.advance(1);
    eventually("retried after 1 s", || b.agent.store().stats().bundles == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_neighbours_that_both_refuse_cannot_pass_a_bundle_back_and_forth() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b, c) = (node(1, &clock).await, node(2, &clock).await, node(3, &clock).await);
    let not_acceptable = vec![Refusal::NotAcceptable; 100];
    let via_c = Scripted::new(&c.agent, &not_acceptable, None);
    let via_b = Scripted::new(&b.agent, &not_acceptable, None);
    a.agent.neighbour_up(Eid::ipn(3, 0), via_c.clone()).await.expect("up");
    a.agent.neighbour_up(Eid::ipn(2, 0), via_b.clone()).await.expect("up");
    a.agent.add_route(Route { to: Eid::ipn(3, 0), via: Eid::ipn(2, 0) }).await.expect("route");
    send(&a, Eid::ipn(3, 5), 100, 0).await;
    eventually("deleted after its detour was refused too", || a.agent.stats().discarded == 1).await;
    until_idle(&[&a.agent, &b.agent, &c.agent]).await;
    assert_eq!((via_c.offered().len(), via_b.offered().len()), (1, 1), "one offer each, no ping-pong");
    assert_eq!(a.agent.store().stats().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_the_defaults_sends_no_status_report_even_when_asked() {
    // RFC 9171 §5.1: the generation of status reports MUST be disabled by default.
    let clock = Arc::new(ManualClock::new(NOW));
    let a = on_the_defaults(1, &clock).await;
    let a = &a.agent;
    let c = node(3, &clock).await;
    let refusing = Scripted::new(&c.agent, &[Refusal::NotAcceptable], None);
    a.neighbour_up(Eid::ipn(3, 0), refusing.clone()).await.expect("up");
    a.send(
        Eid::ipn(1, 1),
        Eid::ipn(3, 5),
        Bytes::from(vec![7u8; 100]),
        60_000,
        BundleFlags(BundleFlags::REPORT_DELETION),
    )
    .await
    .expect("send");
    eventually("deleted", || a.stats().discarded == 1).await;
    until_idle(&[a, &c.agent]).await;
    assert_eq!(a.stats().reports_sent, 0);
    assert_eq!(a.store().stats().bundles, 0, "no report stored to be sent either");
}
