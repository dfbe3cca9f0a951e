//! STCP, MTCP, UDP and TCPCLv3 through the real `dtn` binary: two daemons configured with
//! `[stcp]` / `[mtcp]` / `[udp]` / `[tcpcl3]` move a file, and `dtn status` and `/metrics` show
//! the layer, its peer and its counters.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, free_port, text};

fn config(dir: &Path, node: &str, layer: &str, body: &str) {
    common::write_config(dir, node, &format!("[{layer}]\n{body}"));
}

#[test]
fn two_daemons_move_a_file_over_stcp_and_over_mtcp() {
    for layer in ["stcp", "mtcp"] {
        let port = free_port();
        let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
        config(b_dir.path(), "ipn:2.0", layer, &format!("listen = [\"127.0.0.1:{port}\"]\n"));
        config(
            a_dir.path(),
            "ipn:1.0",
            layer,
            &format!("[[{layer}.peers]]\naddress = \"127.0.0.1:{port}\"\nnode_id = \"ipn:2.0\"\n"),
        );
        let b = Daemon::start(b_dir.path());
        let a = Daemon::start(a_dir.path());
        let file = a_dir.path().join("payload.bin");
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&file, &payload).expect("payload");
        let out = a.dtn(&["send", "--to", "ipn:2.5", &file.display().to_string()]);
        assert!(out.status.success(), "{layer}: {}", text(&out.stderr));
        let out = b.dtn(&["recv", "--endpoint", "ipn:2.5", "--wait", "30s"]);
        assert!(out.status.success(), "{layer}: {}", text(&out.stderr));
        assert!(out.stdout == payload, "{layer}: the payload arrived changed");
        // A's status: the layer, its peer connected, one bundle out.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = text(&a.dtn(&["status"]).stdout);
            let shows = status.contains(&format!("{layer:<11} not listening"))
                && status.contains(&format!("peer 127.0.0.1:{port} = ipn:2.0 (connected)"))
                && status.contains("0 bundles / 0 bytes in, 1 bundles /");
            if shows {
                break;
            }
            assert!(Instant::now() < deadline, "{layer}: status never showed it:\n{status}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&b.dtn(&["status", "--json"]).stdout).expect("json");
        let layers = json["convergence_layers"].as_array().expect("layers");
        let it = layers.iter().find(|l| l["name"] == layer).expect("the layer");
        assert_eq!(it["bundles_received"], 1, "{layer}: {it}");
        assert_eq!(it["listen"][0], format!("127.0.0.1:{port}"));
    }
}

#[test]
fn two_daemons_move_files_both_ways_over_tcpcl3() {
    let port = free_port();
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    config(
        b_dir.path(),
        "ipn:2.0",
        "tcpcl3",
        &format!("listen = [\"127.0.0.1:{port}\"]\nsegment_size = 65536\n"),
    );
    config(
        a_dir.path(),
        "ipn:1.0",
        "tcpcl3",
        &format!("[[tcpcl3.peers]]\naddress = \"127.0.0.1:{port}\"\nnode_id = \"ipn:2.0\"\n"),
    );
    let b = Daemon::start(b_dir.path());
    let a = Daemon::start(a_dir.path());
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    common::send_file(&a, a_dir.path(), "payload.bin", "ipn:2.5", &payload, &[]);
    assert!(common::recv_one(&b, "ipn:2.5") == payload, "the payload arrived changed");
    // Back over the connection A dialled: B learnt A's node ID from its contact header.
    common::send_file(&b, b_dir.path(), "back.txt", "ipn:1.9", b"answer", &[]);
    assert_eq!(common::recv_one(&a, "ipn:1.9"), b"answer");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = text(&a.dtn(&["status"]).stdout);
        let shows = status.contains("tcpcl3      not listening")
            && status.contains(&format!("peer 127.0.0.1:{port} = ipn:2.0 (connected)"))
            && status.contains("1 bundles / ")
            && status.contains("0 refused here, 0 refused by peers, 0 cut off, 0 protocol errors");
        if shows {
            break;
        }
        assert!(Instant::now() < deadline, "status never showed it:\n{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = text(&b.dtn(&["status"]).stdout);
    assert!(status.contains("connected: ipn:1.0"), "{status}");
    // The same counters for Prometheus, by layer and by peer.
    let (code, metrics) = a.http("GET", "/metrics", b"");
    assert_eq!(code, 200);
    assert!(metrics.contains("dtn_cla_bundles_sent{layer=\"tcpcl3\"} 1\n"), "{metrics}");
    assert!(metrics.contains("dtn_cla_bundles_received{layer=\"tcpcl3\"} 1\n"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "dtn_cla_peer_connected{{layer=\"tcpcl3\",address=\"127.0.0.1:{port}\",node_id=\"ipn:2.0\"}} 1\n"
        )),
        "{metrics}"
    );
}

#[test]
fn a_framed_layer_misconfigured_stops_the_daemon_with_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    config(dir.path(), "ipn:1.0", "mtcp", "keepalive = \"10s\"\nlisten = [\"127.0.0.1:0\"]\n");
    let out = std::process::Command::new(common::DTN)
        .args(["daemon", "--config"])
        .arg(dir.path().join("node.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("mtcp.keepalive: only STCP has keepalives"), "{}", text(&out.stderr));
    config(
        dir.path(),
        "ipn:1.0",
        "stcp",
        "[[stcp.peers]]\naddress = \"127.0.0.1:1\"\nnode_id = \"ipn:3.4\"\n",
    );
    let out = std::process::Command::new(common::DTN)
        .args(["daemon", "--config"])
        .arg(dir.path().join("node.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let error = text(&out.stderr);
    assert!(
        error.contains("ipn:3.4 is not a node ID: use ipn:N.0 or dtn://name/ (here: ipn:3.0)"),
        "{error}"
    );
    assert!(error.contains("at line 6"), "the line of the key: {error}");
    config(
        dir.path(),
        "ipn:1.0",
        "tcpcl3",
        "listen = [\"127.0.0.1:0\"]\nacknowledgements = false\nrefusal = true\n",
    );
    let out = std::process::Command::new(common::DTN)
        .args(["daemon", "--config"])
        .arg(dir.path().join("node.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("tcpcl3.refusal = true needs tcpcl3.acknowledgements = true"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn two_daemons_move_a_2_mib_file_over_udp_in_fragments() {
    let (a_port, b_port) = (free_port(), free_port());
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    config(b_dir.path(), "ipn:2.0", "udp", &format!("listen = [\"127.0.0.1:{b_port}\"]\n"));
    config(
        a_dir.path(),
        "ipn:1.0",
        "udp",
        &format!(
            "listen = [\"127.0.0.1:{a_port}\"]\nmax_datagram = 9000\n[[udp.peers]]\naddress = \"127.0.0.1:{b_port}\"\nnode_id = \"ipn:2.0\"\nrate = \"80 Mbit/s\"\n"
        ),
    );
    let b = Daemon::start(b_dir.path());
    let a = Daemon::start(a_dir.path());
    let file = a_dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &payload).expect("payload");
    let out = a.dtn(&["send", "--to", "ipn:2.5", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = b.dtn(&["recv", "--endpoint", "ipn:2.5", "--wait", "30s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout == payload, "the payload arrived changed");
    let status = text(&a.dtn(&["status"]).stdout);
    assert!(status.contains(&format!("peer 127.0.0.1:{b_port} = ipn:2.0 (connected)")), "{status}");
    let json: serde_json::Value = serde_json::from_slice(&a.dtn(&["status", "--json"]).stdout).expect("json");
    let udp = json["convergence_layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["name"] == "udp")
        .cloned()
        .expect("udp");
    assert!(
        udp["bundles_sent"].as_u64().expect("sent") >= 2_000_000 / 9000,
        "sent in fragments of 9000 bytes: {udp}"
    );
    assert_eq!(json["counters"]["fragments_sent"], udp["bundles_sent"]);
}

#[test]
fn a_damaged_stored_bundle_is_not_sent_in_fragments() {
    let (a_port, b_port) = (free_port(), free_port());
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    config(b_dir.path(), "ipn:2.0", "udp", &format!("listen = [\"127.0.0.1:{b_port}\"]\n"));
    // A first without the peer: the bundle waits in its store, where a byte of it is flipped.
    config(a_dir.path(), "ipn:1.0", "udp", "");
    let a = Daemon::start(a_dir.path());
    let file = a_dir.path().join("payload.bin");
    std::fs::write(&file, (0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).expect("payload");
    let out = a.dtn(&["send", "--to", "ipn:2.5", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(a);
    let blob = std::fs::read_dir(a_dir.path().join("data/blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "bundle"))
        .expect("a bundle file");
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[250_000] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("write");
    // Now with the peer, over 9000-byte datagrams: the bundle would go in fragments.
    config(
        a_dir.path(),
        "ipn:1.0",
        "udp",
        &format!(
            "listen = [\"127.0.0.1:{a_port}\"]\nmax_datagram = 9000\n[[udp.peers]]\naddress = \"127.0.0.1:{b_port}\"\nnode_id = \"ipn:2.0\"\n"
        ),
    );
    let b = Daemon::start(b_dir.path());
    let a = Daemon::start(a_dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: serde_json::Value =
            serde_json::from_slice(&a.dtn(&["status", "--json"]).stdout).expect("json");
        if status["store"]["quarantined"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the damage was never found: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let json: serde_json::Value = serde_json::from_slice(&b.dtn(&["status", "--json"]).stdout).expect("json");
    let udp = json["convergence_layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["name"] == "udp")
        .cloned()
        .expect("udp");
    assert_eq!(udp["bytes_received"], 0, "no fragment of the damaged bundle was sent: {udp}");
}
