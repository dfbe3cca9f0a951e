//! Custody over a lossy datagram path, through the real `dtn` binary (issue 18): three daemons
//! A → B → C over UDP, every datagram in both directions passing a relay that drops one in ten;
//! 1,000 bundles sent with custody reach C's application exactly once, and afterwards no
//! custodian holds anything. And B, the middle custodian, killed (SIGKILL) while awaiting C's
//! signal and started again, resumes its transmission as stored (same ID, same deadline).

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, free_port, text};

/// Forwards datagrams from `listen` to `to`, dropping about one in `one_in` (seeded, so a run
/// is repeatable); counts what it dropped. Stops when `stop` is set.
fn lossy_relay(listen: u16, to: u16, one_in: u64, seed: u64, stop: Arc<AtomicBool>, dropped: Arc<AtomicU64>) {
    let socket = UdpSocket::bind(("127.0.0.1", listen)).expect("relay bind");
    socket.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    std::thread::spawn(move || {
        let mut state = seed;
        let mut buffer = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = socket.recv_from(&mut buffer) else { continue };
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            if (state >> 33).is_multiple_of(one_in) {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let _ = socket.send_to(&buffer[..n], ("127.0.0.1", to));
        }
    });
}

const CUSTODY: &str = "[custody]\nround_trip = \"400ms\"\nretransmit_min = \"400ms\"\nretransmit_max = \"4s\"\nsignal_delay = \"50ms\"\n";

/// A node listening on `listen`, with peers `(port sent to, node ID, port its datagrams come
/// from)`: each peer is reached through a relay and heard from through another, so its
/// datagrams come from the other relay's port (`sends_from`).
fn node_config(dir: &Path, node: &str, listen: u16, peers: &[(u16, &str, u16)], routes: &str) {
    let mut body = format!("{CUSTODY}{routes}[udp]\nlisten = [\"127.0.0.1:{listen}\"]\n");
    for (port, id, from) in peers {
        body.push_str(&format!(
            "[[udp.peers]]\naddress = \"127.0.0.1:{port}\"\nnode_id = \"{id}\"\nsends_from = [\"127.0.0.1:{from}\"]\n"
        ));
    }
    common::write_config(dir, node, &body);
}

fn status(daemon: &Daemon) -> serde_json::Value {
    serde_json::from_slice(&daemon.dtn(&["status", "--json"]).stdout).expect("status json")
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn custody_over_udp_losing_one_datagram_in_ten_delivers_a_thousand_bundles_exactly_once() {
    const N: usize = 1_000;
    let (a_port, b_port, c_port) = (free_port(), free_port(), free_port());
    // Relays: A→B, B→A, B→C, C→B.
    let (ab, ba, bc, cb) = (free_port(), free_port(), free_port(), free_port());
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    for (i, (listen, to)) in [(ab, b_port), (ba, a_port), (bc, c_port), (cb, b_port)].into_iter().enumerate()
    {
        lossy_relay(listen, to, 10, 17 + i as u64, Arc::clone(&stop), Arc::clone(&dropped));
    }
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    node_config(
        dirs[0].path(),
        "ipn:1.0",
        a_port,
        &[(ab, "ipn:2.0", ba)],
        "[[routes]]\nto = \"ipn:3.*\"\nvia = \"ipn:2.0\"\n",
    );
    node_config(dirs[1].path(), "ipn:2.0", b_port, &[(ba, "ipn:1.0", ab), (bc, "ipn:3.0", cb)], "");
    node_config(
        dirs[2].path(),
        "ipn:3.0",
        c_port,
        &[(cb, "ipn:2.0", bc)],
        "[[routes]]\nto = \"ipn:1.*\"\nvia = \"ipn:2.0\"\n",
    );
    let c = Daemon::start(dirs[2].path());
    let b = Daemon::start(dirs[1].path());
    let a = Daemon::start(dirs[0].path());

    for i in 0..N {
        let (code, body) =
            a.http("POST", "/v1/send?to=ipn:3.5&custody=true", format!("bundle {i}").as_bytes());
        assert_eq!(code, 201, "{body}");
    }
    let inbox = dirs[2].path().join("inbox");
    std::fs::create_dir(&inbox).expect("inbox");
    let out = c.dtn(&[
        "recv",
        "--endpoint",
        "ipn:3.5",
        "--count",
        &N.to_string(),
        "--out",
        &inbox.display().to_string(),
        "--wait",
        "60s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut payloads = BTreeSet::new();
    for entry in std::fs::read_dir(&inbox).expect("inbox") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(payloads.insert(text(&bytes)), "a payload arrived twice: {}", text(&bytes));
    }
    let expected: BTreeSet<String> = (0..N).map(|i| format!("bundle {i}")).collect();
    assert_eq!(payloads, expected);
    assert!(
        dropped.load(Ordering::Relaxed) >= 100,
        "the relays dropped {} datagrams",
        dropped.load(Ordering::Relaxed)
    );

    // Every custodian is released; nothing more arrives.
    wait_for("A and B released", Duration::from_secs(60), || {
        [&a, &b].iter().all(|d| {
            let s = status(d);
            s["store"]["bundles"] == 0 && s["custody"]["held"] == 0 && s["custody"]["outstanding"] == 0
        })
    });
    let out = c.dtn(&["recv", "--endpoint", "ipn:3.5", "--wait", "3s"]);
    assert_eq!(out.status.code(), Some(2), "a further copy was delivered: {}", text(&out.stdout));
    let (sa, sb, sc) = (status(&a), status(&b), status(&c));
    assert_eq!(sc["counters"]["delivered"], N as u64);
    assert_eq!(sc["custody"]["accepted"], N as u64, "{}", sc["custody"]);
    assert!(
        sa["custody"]["retransmitted"].as_u64().expect("n") > 0,
        "loss made A send again: {}",
        sa["custody"]
    );
    assert_eq!(sa["custody"]["released"], N as u64, "{}", sa["custody"]);
    assert_eq!(sb["custody"]["released"], N as u64, "{}", sb["custody"]);
    // Signals are aggregated: far fewer than one per bundle.
    let signals = sb["custody"]["signals_sent"].as_u64().expect("n")
        + sc["custody"]["signals_sent"].as_u64().expect("n");
    assert!(signals < N as u64 / 2, "{signals} signals for {N} bundles");
    let metrics = a.http("GET", "/metrics", b"").1;
    assert!(metrics.contains(&format!("dtn_custody_released_total {N}")), "{metrics}");
    assert!(metrics.contains("dtn_custody_outstanding 0"), "{metrics}");
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_custodian_killed_mid_custody_resumes_from_its_store() {
    // A → B → C over UDP; C is down at first, so B's custodial transmissions go unanswered.
    let (a_port, b_port, c_port) = (free_port(), free_port(), free_port());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let slow = "[custody]\nround_trip = \"5s\"\nretransmit_min = \"5s\"\nretransmit_max = \"5s\"\nsignal_delay = \"50ms\"\n";
    let udp = |listen: u16, peers: &[(u16, &str)], routes: &str| {
        let mut text = format!("{slow}{routes}[udp]\nlisten = [\"127.0.0.1:{listen}\"]\n");
        for (port, id) in peers {
            text.push_str(&format!("[[udp.peers]]\naddress = \"127.0.0.1:{port}\"\nnode_id = \"{id}\"\n"));
        }
        text
    };
    let to_c = "[[routes]]\nto = \"ipn:3.*\"\nvia = \"ipn:2.0\"\n";
    common::write_config(dirs[0].path(), "ipn:1.0", &udp(a_port, &[(b_port, "ipn:2.0")], to_c));
    common::write_config(
        dirs[1].path(),
        "ipn:2.0",
        &udp(b_port, &[(a_port, "ipn:1.0"), (c_port, "ipn:3.0")], ""),
    );
    common::write_config(dirs[2].path(), "ipn:3.0", &udp(c_port, &[(b_port, "ipn:2.0")], ""));
    let b = Daemon::start(dirs[1].path());
    let a = Daemon::start(dirs[0].path());
    let file = dirs[0].path().join("payload");
    std::fs::write(&file, b"kept across a kill").expect("payload");
    let out = a.dtn(&["send", "--to", "ipn:3.5", "--custody", "--json", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // B takes custody (A is released) and sends on to C, which does not answer.
    wait_for("A released by B", Duration::from_secs(20), || status(&a)["store"]["bundles"] == 0);
    let held = |b: &Daemon| -> Vec<serde_json::Value> {
        let out = b.dtn(&["bundles", "list", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .expect("list")
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_for("B awaiting C", Duration::from_secs(10), || {
        held(&b).first().is_some_and(|x| x["state"] == "awaiting_custody")
    });
    let id = held(&b)[0]["id"].as_u64().expect("id");
    let shown = |b: &Daemon| -> serde_json::Value {
        serde_json::from_slice(&b.dtn(&["bundles", "show", &id.to_string(), "--json"]).stdout).expect("show")
    };
    let before = shown(&b);
    assert_eq!(before["custody"]["custodian"], "ipn:2.0", "{before}");
    assert_eq!(before["custody"]["awaiting_signal_from"], "ipn:3.0");
    assert!(before["custody"]["retransmit_at"].is_string(), "{before}");
    let b_dir = b.sigkill();
    let b = Daemon::start(&b_dir);
    let after = shown(&b);
    assert_eq!(
        after["custody"]["transmission_id"], before["custody"]["transmission_id"],
        "resumed as stored"
    );
    assert_eq!(after["custody"]["retransmit_at"], before["custody"]["retransmit_at"]);
    // C comes up: B's retransmission at the stored deadline reaches it, and B is released.
    let c = Daemon::start(dirs[2].path());
    let out = c.dtn(&["recv", "--endpoint", "ipn:3.5", "--wait", "30s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"kept across a kill");
    wait_for("B released", Duration::from_secs(30), || status(&b)["store"]["bundles"] == 0);
    let sb = status(&b);
    assert!(sb["custody"]["retransmitted"].as_u64().expect("n") >= 1, "{}", sb["custody"]);
    let out = c.dtn(&["recv", "--endpoint", "ipn:3.5", "--wait", "1s"]);
    assert_eq!(out.status.code(), Some(2), "delivered once");
}
