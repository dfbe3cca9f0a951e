//! BIBE with pyD3TN 0.15.2 over MTCP (issue 18): carrier bundles made by pyD3TN's own encoder,
//! with and without custody requested and under both of its record type codes, are
//! decapsulated by our node, their bundles delivered, and custody answered by a custody signal
//! that covers both custodial transmission IDs; a bundle our node forwards under custody reaches
//! pyD3TN as a BIBE PDU its own decoder reads. The Python side is
//! `interop-tests/py/pyd3tn_bibe.py`.

use std::time::Duration;

use bpa::AgentConfig;
use bpa::StoreConfig;
use bpa::admin::AdminRecordTypes;
use bpa::agent::EidPattern;
use bpa::agent::SendRequest;
use bpa::agent::{CustodyPeer, PeerCustody};
use bpa::testing::{agent_on_disk, take_payloads};
use bpa::{BundleFlags, Eid};
use bytes::Bytes;
use convergence_layers::framed::{Framed, FramedConfig, Framing};
use interop_tests::dtnd::free_port;
use interop_tests::pyd3tn_listening;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyd3tn_bibe_pdus_are_decapsulated_and_answered_and_ours_decode_in_pyd3tn() {
    let mut config = AgentConfig::new(Eid::ipn(2, 0));
    config.custody.peers.push(CustodyPeer {
        node: EidPattern::Node(Eid::ipn(9, 0)),
        mode: PeerCustody::WhenCustodial,
        record_types: AdminRecordTypes { bibe_pdu: 64443, custody_signal: 4 },
        retransmission_time: bpa::agent::RetransmissionTime::DtnMillis,
        round_trip: Some(Duration::from_secs(600)),
    });
    let (agent, _dir) = agent_on_disk(config, StoreConfig::default()).await;
    let layer = Framed::new(agent.clone(), FramedConfig::new(Framing::Mtcp));
    let address = layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let listen = free_port();
    let (mut child, mut lines) = tokio::task::block_in_place(|| {
        pyd3tn_listening(
            "pyd3tn_bibe.py",
            &["exchange", &address.port().to_string(), &listen.to_string(), "1"],
        )
    });
    layer.connect_forever(format!("127.0.0.1:{listen}"), Eid::ipn(9, 0));

    // pyD3TN → us: three PDUs, their bundles delivered as sent.
    let got = take_payloads(&agent, &Eid::ipn(2, 5), 3, Duration::from_secs(30)).await;
    let mut got: Vec<String> = got.into_iter().map(|p| String::from_utf8(p).expect("utf-8")).collect();
    got.sort();
    assert_eq!(got, ["bibe custody 77", "bibe custody 78", "bibe plain"]);
    let custody = agent.stats().custody;
    assert_eq!(custody.accepted, 2, "only the two PDUs asking for custody are custodial");

    // us → pyD3TN: a bundle under custody, to a node behind ipn:9.0.
    let request = SendRequest {
        source: Eid::ipn(2, 1),
        destination: Eid::ipn(9, 1),
        lifetime_ms: 3_600_000,
        flags: BundleFlags::default(),
        custody: true,
    };
    agent.send_whole(request, Bytes::from_static(b"from us under custody")).await.expect("send");

    let mut signals = Vec::new();
    let mut pdus = Vec::new();
    tokio::task::block_in_place(|| {
        for line in lines.by_ref() {
            let value: Value = serde_json::from_str(&line.expect("read")).expect("JSON");
            if let Some(signal) = value.get("signal") {
                signals.push(signal.clone());
            } else if let Some(pdu) = value.get("pdu") {
                pdus.push(pdu.clone());
            }
        }
    });
    let status = tokio::task::block_in_place(|| child.0.wait()).expect("pyD3TN ends");
    assert!(status.success(), "pyD3TN failed");
    // One signal, "accepted", both IDs in one range, from our node to pyD3TN's.
    assert_eq!(signals.len(), 1, "{signals:?}");
    let signal = &signals[0];
    assert_eq!(signal["record_type"], 4);
    assert_eq!(signal["disposition"], 0);
    assert_eq!(signal["ranges"], serde_json::json!([[77, 2]]));
    assert_eq!(signal["source"], "ipn:2.0");
    assert_eq!(signal["destination"], "ipn:9.0");
    // Our PDU, read by pyD3TN's decoder.
    assert_eq!(pdus.len(), 1, "{pdus:?}");
    let pdu = &pdus[0];
    assert_eq!(pdu["record_type"], 64443);
    assert_eq!(pdu["transmission_id"], 1);
    assert!(pdu["retransmission_time"].as_u64().expect("time") > 0);
    assert_eq!(pdu["carrier_source"], "ipn:2.0");
    assert_eq!(pdu["carrier_destination"], "ipn:9.0");
    assert_eq!(pdu["source"], "ipn:2.1");
    assert_eq!(pdu["destination"], "ipn:9.1");
    assert_eq!(pdu["payload"], hex::encode(b"from us under custody"));
    // pyD3TN answers nothing: ours waits for a signal, still held.
    let counts = agent.store().custody_counts().await.expect("counts");
    assert_eq!((counts.held, counts.outstanding), (1, 1));
    layer.shutdown();
}
