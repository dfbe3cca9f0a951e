//! TCPCLv4 with dtn7-rs 0.21.0 (`dtnd`, design §8), on loopback: our agent and TCPCL driver
//! in this process, each with a real store on disk, and `dtnd` processes started here with
//! `--disable_nd`.
//!
//! - dtnd → us and us → dtnd: 1 B, 1 KiB and 1.9 MB (the most `dtnsend` takes);
//! - 100 MB from one of our nodes through dtnd to another of ours (dtnd receives and sends it);
//! - an idle session survives several keepalive intervals (dtnd drops a session that stays
//!   silent for one interval, so ours must send KEEPALIVEs in time).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bpa::agent::{EidPattern, StaticRoute};
use bpa::bundle::{Eid, ParseOptions};
use bpa::testing::{agent_on_disk, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::tcpcl::driver::{SessionSummary, Tcpcl, TcpclConfig};
use convergence_layers::tcpcl::session::{SessionConfig, TlsPolicy};
use interop_tests::dtnd::{Dtnd, DtndCla};

/// One of our nodes: agent, store on disk, TCPCL listening on loopback.
struct Node {
    agent: Agent<SqliteStore>,
    tcpcl: Tcpcl<Agent<SqliteStore>>,
    address: SocketAddr,
    name: String,
    _dir: tempfile::TempDir,
}

async fn our_node(name: &str, keepalive: u16) -> Node {
    // RUST_LOG=debug shows what our side did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = AgentConfig::new(Eid::dtn(name, "").expect("node ID"));
    // dtn7-rs sends primary blocks without a CRC (design §8).
    config.parse = ParseOptions { accept_primary_without_crc: true, ..ParseOptions::default() };
    let (agent, dir) = agent_on_disk(config, StoreConfig::default()).await;
    let mut session = SessionConfig::new("");
    session.tls = TlsPolicy::Off;
    session.keepalive = keepalive;
    // dtnd announces a Transfer MRU of 64,000 bytes and takes larger bundles (design §8).
    session.ignore_peer_transfer_mru = true;
    let tcpcl = Tcpcl::new(agent.clone(), TcpclConfig::new(session));
    let address = tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    Node { agent, tcpcl, address, name: name.to_string(), _dir: dir }
}

impl Node {
    /// How dtnd names this node as a static peer.
    fn as_peer(&self) -> String {
        format!("tcp://{}/{}", self.address, self.name)
    }

    async fn wait_for_neighbour(&self, node: &str) {
        let want: Eid = node.parse().expect("EID");
        for _ in 0..600 {
            if self.agent.neighbours().iter().any(|n| n.node_id == want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{node} never connected");
    }

    async fn send(&self, to: &str, payload: &[u8]) {
        let source = Eid::dtn(&self.name, "app").expect("source");
        send_streamed(&self.agent, source, to.parse().expect("destination"), payload).await;
    }

    /// The next `count` payloads for `endpoint`, acknowledged.
    async fn receive(&self, endpoint: &str, count: usize, within: Duration) -> Vec<Vec<u8>> {
        take_payloads(&self.agent, &endpoint.parse().expect("endpoint"), count, within).await
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn sizes() -> [(usize, u8); 3] {
    [(1, 1), (1024, 2), (1_900_000, 3)]
}

fn sorted(mut payloads: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    payloads.sort();
    payloads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_of_1_b_1_kib_and_1_9_mb_cross_both_ways_and_an_idle_session_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Keepalive 2 s: dtnd drops a session silent for one interval; ours sends one every second.
    let ours = our_node("ours", 2).await;
    let dtnd = Dtnd::start(dir.path(), "nodeA", DtndCla::Tcp, &[ours.as_peer()]);
    // dtnd opens sessions only when it has something to send; ours keeps one open.
    ours.tcpcl.connect_forever(dtnd.address());
    ours.wait_for_neighbour("dtn://nodeA/").await;

    // dtnd → us.
    for (len, seed) in sizes() {
        dtnd.send("dtn://ours/in", &payload(len, seed));
    }
    let received = ours.receive("dtn://ours/in", 3, Duration::from_secs(60)).await;
    let expected: Vec<_> = sizes().iter().map(|&(len, seed)| payload(len, seed)).collect();
    assert!(sorted(received) == sorted(expected.clone()), "dtnd → us: payloads differ");

    // us → dtnd.
    for (len, seed) in sizes() {
        ours.send("dtn://nodeA/incoming", &payload(len, seed)).await;
    }
    let mut at_dtnd = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_dtnd.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} bundles reached dtnd; log:\n{}",
            at_dtnd.len(),
            dtnd.log()
        );
        match dtnd.receive() {
            Some(p) => at_dtnd.push(p),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(sorted(at_dtnd) == sorted(expected), "us → dtnd: payloads differ");
    eventually_empty(&ours).await;

    // Idle for three keepalive intervals: the same sessions carry on (no reconnection). There
    // are two: ours to dtnd, and the one dtnd opened to send to us.
    let addresses = |sessions: &[SessionSummary]| sessions.iter().map(|s| s.address).collect::<Vec<_>>();
    let before = ours.tcpcl.sessions();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = ours.tcpcl.sessions();
    assert_eq!(addresses(&after), addresses(&before), "a session was dropped: {before:?} → {after:?}");
    for (b, a) in before.iter().zip(&after) {
        assert!(a.bytes_sent > b.bytes_sent, "keepalives were sent on {}", a.address);
    }
    dtnd.send("dtn://ours/in", b"after the pause");
    let received = ours.receive("dtn://ours/in", 1, Duration::from_secs(30)).await;
    assert_eq!(received, [b"after the pause".to_vec()]);
    ours.tcpcl.shutdown();
}

async fn eventually_empty(node: &Node) {
    for _ in 0..600 {
        if node.agent.store().stats().bundles == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} still holds {} bundles", node.agent.node_id(), node.agent.store().stats().bundles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_bundle_goes_from_our_node_through_dtnd_to_our_other_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let x = our_node("x", 30).await;
    let y = our_node("y", 30).await;
    let dtnd = Dtnd::start(dir.path(), "nodeA", DtndCla::Tcp, &[x.as_peer(), y.as_peer()]);
    x.tcpcl.connect_forever(dtnd.address());
    y.tcpcl.connect_forever(dtnd.address());
    x.wait_for_neighbour("dtn://nodeA/").await;
    y.wait_for_neighbour("dtn://nodeA/").await;
    let route = StaticRoute {
        pattern: EidPattern::Node("dtn://y/".parse().expect("EID")),
        via: "dtn://nodeA/".parse().expect("EID"),
    };
    x.agent.add_static_route(route).await.expect("route");

    let big = payload(100_000_000, 7);
    x.send("dtn://y/in", &big).await;
    let received = y.receive("dtn://y/in", 1, Duration::from_secs(180)).await;
    assert_eq!(received[0].len(), big.len(), "log:\n{}", dtnd.log());
    assert!(received[0] == big, "the 100 MB payload arrived changed");
    eventually_empty(&x).await;
    x.tcpcl.shutdown();
    y.tcpcl.shutdown();
}
