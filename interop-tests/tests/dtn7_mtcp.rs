//! MTCP with dtn7-rs 0.21.0 (`dtnd -C mtcp:port=P`), on loopback, both ways: 1 B, 1 KiB and
//! 1.9 MB (the most `dtnsend` takes), each bundle a CBOR byte string on a TCP connection. Our
//! node dials dtnd's MTCP port (dtnd is `dtn://nodeA/` to it) and listens on its own, which
//! dtnd knows as the static peer `mtcp://127.0.0.1:PORT/ours`.

use std::net::SocketAddr;
use std::time::Duration;

use bpa::bundle::{Eid, ParseOptions};
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::framed::{Framed, FramedConfig, Framing};
use interop_tests::dtnd::{Dtnd, DtndCla};

struct Node {
    agent: Agent<SqliteStore>,
    layer: Framed<Agent<SqliteStore>>,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn our_node() -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = AgentConfig::new(Eid::dtn("ours", "").expect("node ID"));
    // dtn7-rs sends primary blocks without a CRC (design §8).
    config.parse = ParseOptions { accept_primary_without_crc: true, ..ParseOptions::default() };
    let (agent, dir) = agent_on_disk(config, StoreConfig::default()).await;
    let layer = Framed::new(agent.clone(), FramedConfig::new(Framing::Mtcp));
    let address = layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    Node { agent, layer, address, _dir: dir }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn sorted(mut payloads: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    payloads.sort();
    payloads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_of_1_b_1_kib_and_1_9_mb_cross_mtcp_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = our_node().await;
    let dtnd = Dtnd::start(dir.path(), "nodeA", DtndCla::Mtcp, &[format!("mtcp://{}/ours", ours.address)]);
    ours.layer.connect_forever(dtnd.address(), "dtn://nodeA/".parse().expect("EID"));
    let nodea: Eid = "dtn://nodeA/".parse().expect("EID");
    eventually("connected to dtnd", || ours.agent.neighbours().iter().any(|n| n.node_id == nodea)).await;
    let sizes = [(1usize, 1u8), (1024, 2), (1_900_000, 3)];
    let expected: Vec<Vec<u8>> = sizes.iter().map(|&(len, seed)| payload(len, seed)).collect();

    // dtnd → us.
    for p in &expected {
        dtnd.send("dtn://ours/in", p);
    }
    let received =
        take_payloads(&ours.agent, &"dtn://ours/in".parse().expect("EID"), 3, Duration::from_secs(60)).await;
    assert!(sorted(received) == sorted(expected.clone()), "dtnd → us: payloads differ; log:\n{}", dtnd.log());

    // us → dtnd.
    for p in &expected {
        send_streamed(
            &ours.agent,
            Eid::dtn("ours", "app").expect("source"),
            "dtn://nodeA/incoming".parse().expect("EID"),
            p,
        )
        .await;
    }
    let at_dtnd = tokio::task::block_in_place(|| dtnd.receive_all(3, Duration::from_secs(60)));
    assert!(sorted(at_dtnd) == sorted(expected), "us → dtnd: payloads differ");
    eventually("our store empties", || ours.agent.store().stats().bundles == 0).await;
    let stats = ours.layer.stats();
    assert_eq!((stats.bundles_sent, stats.bundles_received, stats.bad_frames), (3, 3, 0));
    ours.layer.shutdown();
}
