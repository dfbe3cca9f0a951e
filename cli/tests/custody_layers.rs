//! Custody over every stream layer and the spool, through the real `dtn` binary (issue 18): A
//! sends a small bundle and a 2 MiB one with `dtn send --custody` to B; B's application gets
//! each once, B answers with custody signals over the same layer, and A is released (its store
//! empty, its custody counters saying so). The 2 MiB bundle is streamed into B's store inside
//! its PDU and decapsulated from there (the stored-carrier path).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, free_port};

fn status(daemon: &Daemon) -> serde_json::Value {
    serde_json::from_slice(&daemon.dtn(&["status", "--json"]).stdout).expect("status json")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CUSTODY: &str = "[custody]\nround_trip = \"2s\"\nsignal_delay = \"50ms\"\n";

/// A's and B's configuration bodies for `layer`: A reaches B, and B reaches A (for the signals).
fn configs(layer: &str, stick: &Path) -> (String, String) {
    let (a_port, b_port) = (free_port(), free_port());
    let peer = |section: &str, port: u16, node: &str| {
        format!("[[{section}.peers]]\naddress = \"127.0.0.1:{port}\"\nnode_id = \"{node}\"\n")
    };
    match layer {
        // Sessions carry both ways: A dials, B answers on the same session.
        "tcpcl" => (
            format!("[tcpcl]\n[[tcpcl.peers]]\naddress = \"127.0.0.1:{b_port}\"\n"),
            format!("[tcpcl]\nlisten = [\"127.0.0.1:{b_port}\"]\n"),
        ),
        "tcpcl3" => (
            format!("[tcpcl3]\n{}", peer("tcpcl3", b_port, "ipn:2.0")),
            format!("[tcpcl3]\nlisten = [\"127.0.0.1:{b_port}\"]\n"),
        ),
        // One-way connections: each side dials the other.
        "stcp" | "mtcp" => (
            format!("[{layer}]\nlisten = [\"127.0.0.1:{a_port}\"]\n{}", peer(layer, b_port, "ipn:2.0")),
            format!("[{layer}]\nlisten = [\"127.0.0.1:{b_port}\"]\n{}", peer(layer, a_port, "ipn:1.0")),
        ),
        "spool" => {
            let spool = |peer: &str| {
                format!(
                    "[[spool]]\ndir = \"{}\"\npeers = [\"{peer}\"]\nscan_interval = \"100ms\"\n",
                    stick.display()
                )
            };
            (spool("ipn:2.0"), spool("ipn:1.0"))
        }
        other => panic!("no layer {other}"),
    }
}

#[test]
fn custody_works_over_tcpcl_tcpcl3_stcp_mtcp_and_the_spool() {
    let large: Vec<u8> = (0..2_097_152u32).map(|i| (i % 251) as u8).collect();
    for layer in ["tcpcl", "tcpcl3", "stcp", "mtcp", "spool"] {
        let (a_dir, b_dir, stick) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
            tempfile::tempdir().expect("stick"),
        );
        let (a_conf, b_conf) = configs(layer, stick.path());
        common::write_config(a_dir.path(), "ipn:1.0", &format!("{CUSTODY}{a_conf}"));
        common::write_config(b_dir.path(), "ipn:2.0", &format!("{CUSTODY}{b_conf}"));
        let b = Daemon::start(b_dir.path());
        let a = Daemon::start(a_dir.path());
        common::send_file(&a, a_dir.path(), "small", "ipn:2.5", b"small under custody", &["--custody"]);
        common::send_file(&a, a_dir.path(), "big", "ipn:2.5", &large, &["--custody"]);
        let mut got = [common::recv_one(&b, "ipn:2.5"), common::recv_one(&b, "ipn:2.5")];
        got.sort_by_key(|p| p.len());
        assert_eq!(got[0], b"small under custody", "{layer}");
        assert!(got[1] == large, "{layer}: the large bundle arrived changed");
        wait_for(&format!("{layer}: A released"), || {
            let s = status(&a);
            s["store"]["bundles"] == 0 && s["custody"]["released"] == 2
        });
        let (sa, sb) = (status(&a), status(&b));
        assert_eq!(sa["custody"]["held"], 0, "{layer}: {}", sa["custody"]);
        assert_eq!(sb["custody"]["accepted"], 2, "{layer}: {}", sb["custody"]);
        assert!(sb["custody"]["signals_sent"].as_u64().expect("n") >= 1, "{layer}: {}", sb["custody"]);
        assert_eq!(sb["counters"]["delivered"], 2, "{layer}: {}", sb["counters"]);
        let out = b.dtn(&["recv", "--endpoint", "ipn:2.5", "--wait", "1s"]);
        assert_eq!(out.status.code(), Some(2), "{layer}: a further copy was delivered");
    }
}
