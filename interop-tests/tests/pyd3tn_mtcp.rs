//! MTCP with pyD3TN 0.15.2 (`pyd3tn.mtcp`), both ways: bundles made by pyD3TN's own encoder
//! sent over an MTCP connection to our node and delivered to a local endpoint; bundles our node
//! sends over MTCP read by pyD3TN's MTCP reader and decoded by its decoder. The Python side is
//! `interop-tests/py/pyd3tn_mtcp.py`.

use std::process::Command;
use std::time::Duration;

use bpa::AgentConfig;
use bpa::Eid;
use bpa::StoreConfig;
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use convergence_layers::framed::{Framed, FramedConfig, Framing};
use interop_tests::dtnd::free_port;
use interop_tests::{pyd3tn_listening, pyd3tn_script};
use serde_json::Value;

fn python(args: &[&str]) -> Command {
    pyd3tn_script("pyd3tn_mtcp.py", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyd3tn_bundles_arrive_over_mtcp_and_ours_decode_in_pyd3tn() {
    let (agent, _dir) = agent_on_disk(AgentConfig::new(Eid::ipn(2, 0)), StoreConfig::default()).await;
    let layer = Framed::new(agent.clone(), FramedConfig::new(Framing::Mtcp));
    let address = layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");

    // pyD3TN → us.
    let out = tokio::task::block_in_place(|| python(&["send", &address.port().to_string(), "5"]).output())
        .expect("run pyD3TN");
    assert!(out.status.success(), "pyD3TN send failed: {}", String::from_utf8_lossy(&out.stderr));
    let got = take_payloads(&agent, &Eid::ipn(2, 5), 5, Duration::from_secs(30)).await;
    let mut got: Vec<String> = got.into_iter().map(|p| String::from_utf8(p).expect("utf-8")).collect();
    got.sort();
    assert_eq!(got, (0..5).map(|i| format!("pyd3tn mtcp {i}")).collect::<Vec<_>>());
    assert_eq!(layer.stats().bundles_received, 5);

    // us → pyD3TN: pyD3TN listens; our node dials it as ipn:3.0.
    let port = free_port();
    let (mut child, mut lines) = tokio::task::block_in_place(|| {
        pyd3tn_listening("pyd3tn_mtcp.py", &["receive", &port.to_string(), "3"])
    });
    layer.connect_forever(format!("127.0.0.1:{port}"), Eid::ipn(3, 0));
    eventually("connected to pyD3TN", || agent.neighbours().iter().any(|n| n.node_id == Eid::ipn(3, 0)))
        .await;
    let payloads: Vec<Vec<u8>> = vec![b"x".to_vec(), vec![7u8; 1024], vec![9u8; 300_000]];
    for p in &payloads {
        send_streamed(&agent, Eid::ipn(2, 1), Eid::ipn(3, 1), p).await;
    }
    let decoded: Vec<Value> = tokio::task::block_in_place(|| {
        (0..3)
            .map(|_| serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("JSON"))
            .collect()
    });
    let status = tokio::task::block_in_place(|| child.0.wait()).expect("pyD3TN ends");
    assert!(status.success());
    let mut seen: Vec<Vec<u8>> = decoded
        .iter()
        .map(|v| {
            assert_eq!(v["source"], "ipn:2.1");
            assert_eq!(v["destination"], "ipn:3.1");
            hex::decode(v["payload"].as_str().expect("payload")).expect("hex")
        })
        .collect();
    seen.sort();
    let mut expected = payloads.clone();
    expected.sort();
    assert!(seen == expected, "pyD3TN decoded other payloads");
    layer.shutdown();
}
