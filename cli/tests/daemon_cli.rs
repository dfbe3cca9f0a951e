//! The real `dtn` binary: a daemon process, its local API over the Unix socket, and the client
//! commands — including a 50 MiB file that survives a SIGKILL of the daemon.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::{DTN, Daemon, free_port, noise, peak_rss, text, write_noise_file};

#[test]
fn malformed_api_requests_get_4xx_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        ("POST", "/v1/send", b"x", 400, "missing field `to`"),
        ("POST", "/v1/send?to=ipn:x", b"x", 400, "destination \\\"ipn:x\\\" is not an endpoint ID"),
        ("POST", "/v1/send?to=dtn:none", b"x", 400, "dtn:none has no members"),
        ("POST", "/v1/send?to=ipn:2.1&lifetime=soon", b"x", 400, "invalid duration \\\"soon\\\""),
        ("POST", "/v1/send?to=ipn:2.1&lifetime=0", b"x", 400, "lifetime 0 expires at once"),
        ("POST", "/v1/send?to=ipn:2.1&flags=bogus", b"x", 400, "unknown flag \\\"bogus\\\""),
        (
            "POST",
            "/v1/send?to=ipn:2.1&flags=admin-record",
            b"x",
            400,
            "set by the agent, not by applications",
        ),
        (
            "POST",
            "/v1/send?to=ipn:2.1&from=ipn:9.1",
            b"x",
            400,
            "the source ipn:9.1 is not an endpoint of this node",
        ),
        ("POST", "/v1/send?to=ipn:2.1&colour=red", b"x", 400, "unknown field `colour`"),
        ("GET", "/v1/receive?endpoint=ipn:2.1", b"", 400, "ipn:2.1 is not an endpoint of this node"),
        ("GET", "/v1/receive?endpoint=ipn:1.1&wait=2d", b"", 400, "longer than the limit"),
        ("GET", "/v1/receive", b"", 400, "missing field `endpoint`"),
        ("POST", "/v1/ack?endpoint=ipn:1.1&id=77", b"", 404, "no bundle 77 waits for ipn:1.1"),
        ("POST", "/v1/ack?endpoint=ipn:1.1&id=abc", b"", 400, "bad query string"),
        ("GET", "/v1/bundles/abc", b"", 400, "\\\"abc\\\" is not a store id"),
        ("GET", "/v1/bundles/12345", b"", 404, "no bundle with store id 12345"),
        ("DELETE", "/v1/bundles/12345", b"", 404, "no bundle with store id 12345"),
        ("GET", "/v1/bundles?limit=0", b"", 400, "limit 0 is out of range"),
        ("POST", "/v1/registrations?endpoint=ipn:5.5", b"", 400, "not an endpoint of this node"),
        ("GET", "/v1/nothing-here", b"", 404, "no such API path"),
    ];
    for (method, path, body, status, reason) in cases {
        let (got_status, got_body) = daemon.http(method, path, body);
        assert_eq!(got_status, *status, "{method} {path}: {got_body}");
        assert!(got_body.contains(reason), "{method} {path}: {got_body:?} should contain {reason:?}");
        assert!(got_body.starts_with("{\"error\":"), "{method} {path}: JSON error body, got {got_body:?}");
    }
    // A payload over the limit is refused, with the limit named.
    let big = vec![0u8; 60_000_001];
    let (status, body) = daemon.http("POST", "/v1/send?to=ipn:2.1", &big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        body,
        "{\"error\":\"the payload is larger than the limit of 60000000 bytes ([api] max_payload)\"}"
    );
    // Sent chunked (no Content-Length, as from a pipe), and over the limit: refused once the
    // limit is passed.
    let chunk = vec![7u8; 1 << 20];
    let mut chunked = Vec::new();
    for _ in 0..58 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = daemon.raw(
        "POST /v1/send?to=ipn:2.1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked,
        false,
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than the limit of 60000000 bytes"), "{body}");
    // A body that ends before its Content-Length (the client went away): nothing is stored.
    let (status, body) = daemon.raw(
        "POST /v1/send?to=ipn:2.1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n",
        &[1u8; 70_000],
        true,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("the payload could not be read"), "{body}");
    let (status, body) = daemon.http("GET", "/v1/status", b"");
    assert_eq!(status, 200);
    assert!(body.contains("\"bundles\":0"), "nothing was stored: {body}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("data/blobs"))
        .expect("the store's blob directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "no bundle file left behind: {leftovers:?}");
}

#[test]
fn send_receive_ping_status_and_bundles_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    let payload = dir.path().join("note.txt");
    std::fs::write(&payload, b"meet at the well").expect("payload");
    let out = daemon.dtn(&[
        "send",
        "--to",
        "ipn:1.5",
        "--lifetime",
        "1h",
        "--json",
        payload.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["payload_length"], 16);
    let store_id = answer["id"].as_u64().expect("id");

    let out = daemon.dtn(&["bundles", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list[0]["id"].as_u64(), Some(store_id));
    assert_eq!(list[0]["state"], "waiting_for_application");
    assert_eq!(list[0]["waiting_for"], "ipn:1.5");
    let out = daemon.dtn(&["bundles", "show", &store_id.to_string(), "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["bundle"]["payload_length"], 16);
    assert_eq!(shown["bundle"]["lifetime_ms"], 3_600_000);

    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"meet at the well");
    // Received once: nothing more waits.
    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--wait", "300ms"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = daemon.dtn(&["ping", "ipn:1.0", "--count", "2", "--interval", "10ms", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 2);

    let out = daemon.dtn(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["node_id"], "ipn:1.0");
    assert_eq!(status["counters"]["echoed"], 2);
    assert_eq!(status["store"]["bundles"], 0);
    assert_eq!(status["registrations"][0]["endpoint"], "ipn:1.5");

    let out = Command::new(DTN)
        .args(["send", "--to", "ipn:1.5"])
        .env("DTN_SOCKET", dir.path().join("none.sock"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no daemon at"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("start one with `dtn daemon`"), "{}", text(&out.stderr));

    // Client-side refusals name the fix.
    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--json prints metadata only: give --out DIR"),
        "{}",
        text(&out.stderr)
    );
    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--count", "2", "--out", "x.bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("give a directory"), "{}", text(&out.stderr));
    let out = daemon.dtn(&["send", "--to", "ipn:1.5", "--report", "sometimes", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown report \"sometimes\""), "{}", text(&out.stderr));

    // A deleted bundle is gone, by its id.
    let out = daemon.dtn(&["send", "--to", "ipn:1.6", "--json", payload.to_str().expect("utf8")]);
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["id"].to_string();
    assert!(daemon.dtn(&["bundles", "delete", &id]).status.success());
    let out = daemon.dtn(&["bundles", "delete", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("no bundle with store id {id}")), "{}", text(&out.stderr));
}

#[test]
fn a_50_mib_file_survives_a_sigkill_and_is_received_once_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.bin");
    let data = noise(50 << 20, 1);
    std::fs::write(&file, &data).expect("file");
    let daemon = Daemon::start(dir.path());
    let out = daemon.dtn(&["send", "--to", "ipn:1.9", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Acknowledged: now the daemon dies without warning.
    let dir_path = daemon.sigkill();
    let daemon = Daemon::start(&dir_path);
    let received = dir.path().join("received.bin");
    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.9", "--out", received.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = std::fs::read(&received).expect("received file");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the received file differs from the sent one");
    let out = daemon.dtn(&[
        "recv",
        "--endpoint",
        "ipn:1.9",
        "--wait",
        "300ms",
        "--out",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "exactly once: {}", text(&out.stderr));
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_bundles_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(dir.path());
    let out = daemon.dtn(&["send", "--to", "ipn:1.5", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = daemon.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(!daemon.socket().exists(), "the socket is removed at shutdown");
    drop(daemon);
    let daemon = Daemon::start(dir.path());
    let out = daemon.dtn(&["bundles", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "node_id = \"ipn:1.0\"\n[store]\nmax_bytez = 5\n").expect("config");
    let out = Command::new(DTN).args(["daemon", "--config"]).arg(&config).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("unknown field `max_bytez`"), "{stderr}");
    let out = Command::new(DTN)
        .args(["daemon", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the configuration file"), "{}", text(&out.stderr));

    let data = dir.path().join("data");
    for (tcpcl, expected) in [
        (
            "tls = \"required\"\n",
            "tcpcl.tls = \"required\" needs tcpcl.certificate, tcpcl.private_key and tcpcl.trust",
        ),
        (
            "tls = \"optional\"\ncertificate = \"/nonexistent.crt\"\nprivate_key = \"/k\"\ntrust = \"/t\"\n",
            "cannot read certificate /nonexistent.crt",
        ),
    ] {
        let text_config =
            format!("node_id = \"ipn:1.0\"\ndata_dir = \"{}\"\n[tcpcl]\n{tcpcl}", data.display());
        std::fs::write(&config, text_config).expect("config");
        let out = Command::new(DTN).args(["daemon", "--config"]).arg(&config).output().expect("run");
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(expected), "{}", text(&out.stderr));
    }

    // A TCPCL port taken by someone else: named once, with the OS's reason once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let text_config = format!(
        "node_id = \"ipn:1.0\"\ndata_dir = \"{}\"\n[tcpcl]\nlisten = [\"{address}\"]\n",
        data.display()
    );
    std::fs::write(&config, text_config).expect("config");
    let out = Command::new(DTN).args(["daemon", "--config"]).arg(&config).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("tcpcl.listen = {address}: cannot listen for TCPCL on {address}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("os error").count(), 1, "the OS error once: {stderr}");
}

#[test]
fn init_writes_a_config_the_daemon_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    let data = dir.path().join("data");
    let out = Command::new(DTN)
        .args(["init", "--node-id", "ipn:1.0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(DTN).args(["init", "--config"]).arg(&config).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("exists: pass --force"), "{}", text(&out.stderr));
    let daemon = Daemon::start(dir.path());
    let out = daemon.dtn(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["node_id"], "ipn:1.0");
    assert_eq!(status["config_file"], config.display().to_string());
}

/// Design §3.4: memory does not grow with the bundle's size. A 256 MiB file (Content-Length
/// known: streamed straight into the store) and 48 MiB from standard input (chunked: spooled
/// to the data directory, then streamed) go through the daemon and come back intact, and the
/// daemon's peak memory stays far below either payload.
#[test]
fn large_payloads_stream_through_the_daemon_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("node.toml"),
        format!("node_id = \"ipn:1.0\"\ndata_dir = \"{}\"\n", dir.path().join("data").display()),
    )
    .expect("config");
    let daemon = Daemon::start(dir.path());
    let big = noise(256 << 20, 2);
    let big_file = dir.path().join("big.bin");
    std::fs::write(&big_file, &big).expect("file");
    let out = daemon.dtn(&["send", "--to", "ipn:1.3", big_file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(big);
    std::fs::remove_file(&big_file).expect("remove");

    let piped = noise(48 << 20, 3);
    let mut child = Command::new(DTN)
        .env("DTN_SOCKET", daemon.socket())
        .args(["send", "--to", "ipn:1.4", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dtn send");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = {
        let piped = piped.clone();
        std::thread::spawn(move || stdin.write_all(&piped))
    };
    let out = child.wait_with_output().expect("dtn send");
    writer.join().expect("writer").expect("write stdin");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("{} bytes", 48 << 20)), "{}", text(&out.stdout));

    for (endpoint, seed, len) in [("ipn:1.3", 2, 256 << 20), ("ipn:1.4", 3, 48 << 20)] {
        let received = dir.path().join("received.bin");
        let out = daemon.dtn(&["recv", "--endpoint", endpoint, "--out", received.to_str().expect("utf8")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got = std::fs::read(&received).expect("received file");
        assert_eq!(got.len(), len);
        assert!(got == noise(len, seed), "{endpoint}: the received payload differs from the sent one");
        std::fs::remove_file(&received).expect("remove");
    }
    let spool: Vec<_> = std::fs::read_dir(dir.path().join("data/spool")).expect("spool").collect();
    assert!(spool.is_empty(), "nothing left in the spool directory");
    let peak = peak_rss(daemon.child.id());
    eprintln!("daemon peak RSS: {:.1} MiB", peak as f64 / (1 << 20) as f64);
    assert!(peak < 64 << 20, "the daemon's peak RSS is {peak} bytes: payloads are held in memory");
}

/// Issue 5: two daemons on loopback, B keeping a TCPCL session to A. A 1 GiB file sent on B
/// with `dtn send` arrives at A through the session and comes out of `dtn recv` intact, and
/// neither daemon's memory grows with it: B reads it from its store segment by segment, A
/// writes the segments into its store as they arrive.
#[test]
fn two_daemons_move_a_1_gib_file_over_tcpcl_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    for (node_dir, config) in [
        (&a_dir, format!("node_id = \"ipn:1.0\"\n[tcpcl]\nlisten = [\"127.0.0.1:{port}\"]\n")),
        (&b_dir, format!("node_id = \"ipn:2.0\"\n[[tcpcl.peers]]\naddress = \"127.0.0.1:{port}\"\n")),
    ] {
        std::fs::create_dir_all(node_dir).expect("dir");
        let data_dir = format!("data_dir = \"{}\"\n", node_dir.join("data").display());
        std::fs::write(node_dir.join("node.toml"), data_dir + &config).expect("config");
    }
    let a = Daemon::start(&a_dir);
    let b = Daemon::start(&b_dir);

    const MIB: u64 = 1024;
    let file = dir.path().join("one-gib.bin");
    write_noise_file(&file, MIB);
    let out = b.dtn(&["send", "--to", "ipn:1.5", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(&file).expect("remove");

    let received = dir.path().join("received.bin");
    let out = a.dtn(&["recv", "--endpoint", "ipn:1.5", "--out", received.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut got = std::io::BufReader::new(std::fs::File::open(&received).expect("received"));
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..MIB {
        got.read_exact(&mut chunk).expect("a whole 1 GiB");
        assert!(chunk == noise(1 << 20, i), "MiB {i} of the received file differs");
    }
    assert_eq!(got.read(&mut chunk).expect("read"), 0, "nothing after 1 GiB");

    let out = a.dtn(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let session = &status["convergence_layers"][0]["sessions"][0];
    assert_eq!(session["node_id"], "ipn:2.0", "{status}");
    assert_eq!(session["direction"], "inbound");
    assert_eq!(session["bundles_received"], 1);
    assert!(session["bytes_received"].as_u64().expect("bytes") > 1 << 30);
    let out = b.dtn(&["status"]);
    assert!(text(&out.stdout).contains("session outbound"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("ipn:1.0 (no TLS): 0 bundles"), "{}", text(&out.stdout));

    for (name, daemon) in [("A", &a), ("B", &b)] {
        let peak = peak_rss(daemon.child.id());
        eprintln!("daemon {name} peak RSS: {:.1} MiB", peak as f64 / (1 << 20) as f64);
        assert!(peak < 64 << 20, "daemon {name}'s peak RSS is {peak} bytes: the bundle is held in memory");
    }
}
