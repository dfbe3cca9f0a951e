//! UDP (RFC 7122) with dtn7-rs 0.21.0 (`dtnd -C udp:port=P`), on loopback: 1 B and 1 KiB both
//! ways; and a 1 MiB bundle our node fragments into datagrams, which dtnd forwards, fragment by
//! fragment, to our other node, which reassembles it.

use std::net::SocketAddr;
use std::time::Duration;

use bpa::agent::{EidPattern, StaticRoute};
use bpa::bundle::{Eid, ParseOptions};
use bpa::testing::{agent_on_disk, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::udp::{Udp, UdpConfig, UdpPeer};
use interop_tests::dtnd::{Dtnd, DtndCla};

struct Node {
    agent: Agent<SqliteStore>,
    udp: Udp<Agent<SqliteStore>>,
    address: SocketAddr,
    name: String,
    _dir: tempfile::TempDir,
}

/// Our datagrams leave room for what a relay adds: dtnd forwards a fragment with its own
/// Previous Node block, and fails to send one that then exceeds 65,507 bytes.
const MAX_DATAGRAM: usize = 60_000;

async fn our_node(name: &str) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = AgentConfig::new(Eid::dtn(name, "").expect("node ID"));
    config.parse = ParseOptions { accept_primary_without_crc: true, ..ParseOptions::default() };
    let (agent, dir) = agent_on_disk(config, StoreConfig::default()).await;
    let udp = Udp::new(agent.clone(), UdpConfig { max_datagram: MAX_DATAGRAM, ..UdpConfig::default() });
    let address = udp.bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    Node { agent, udp, address, name: name.to_string(), _dir: dir }
}

impl Node {
    fn as_peer(&self) -> String {
        format!("udp://{}/{}", self.address, self.name)
    }

    async fn add_dtnd(&self, dtnd: &Dtnd) {
        let peer = UdpPeer {
            address: dtnd.address().parse().expect("address"),
            node_id: "dtn://nodeA/".parse().expect("EID"),
            rate: Some(20_000_000),
            sends_from: Vec::new(),
        };
        self.udp.add_peer(peer).await.expect("peer");
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_cross_udp_both_ways_and_1_mib_goes_in_fragments_through_dtnd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let x = our_node("x").await;
    let y = our_node("y").await;
    let dtnd = Dtnd::start(dir.path(), "nodeA", DtndCla::Udp, &[x.as_peer(), y.as_peer()]);
    x.add_dtnd(&dtnd).await;
    y.add_dtnd(&dtnd).await;

    // dtnd → us.
    let small = [payload(1, 1), payload(1024, 2)];
    for p in &small {
        dtnd.send("dtn://x/in", p);
    }
    let mut got =
        take_payloads(&x.agent, &"dtn://x/in".parse().expect("EID"), 2, Duration::from_secs(60)).await;
    got.sort_by_key(Vec::len);
    assert!(got == small.to_vec(), "dtnd → us; log:\n{}", dtnd.log());

    // us → dtnd.
    for p in &small {
        send_streamed(
            &x.agent,
            Eid::dtn("x", "app").expect("source"),
            "dtn://nodeA/incoming".parse().expect("EID"),
            p,
        )
        .await;
    }
    let mut at_dtnd = tokio::task::block_in_place(|| dtnd.receive_all(2, Duration::from_secs(60)));
    at_dtnd.sort_by_key(Vec::len);
    assert!(at_dtnd == small.to_vec(), "us → dtnd");

    // 1 MiB from x to y through dtnd, in fragments.
    let route = StaticRoute {
        pattern: EidPattern::Node("dtn://y/".parse().expect("EID")),
        via: "dtn://nodeA/".parse().expect("EID"),
    };
    x.agent.add_static_route(route).await.expect("route");
    let big = payload(1 << 20, 7);
    send_streamed(&x.agent, Eid::dtn("x", "app").expect("source"), "dtn://y/in".parse().expect("EID"), &big)
        .await;
    let got = take_payloads(&y.agent, &"dtn://y/in".parse().expect("EID"), 1, Duration::from_secs(90)).await;
    assert!(got[0] == big, "the 1 MiB payload arrived changed; log:\n{}", dtnd.log());
    assert!(x.agent.stats().fragments_sent >= 16, "it went in fragments");
    x.udp.shutdown();
    y.udp.shutdown();
}
