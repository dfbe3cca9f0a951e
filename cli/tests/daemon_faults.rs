//! The faults probing found (issue 12), each through the real binary: receivers sharing a
//! folder, a damaged bundle file, a careless umask, clients that hold connections, bad
//! requests, `--follow --wait`.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DTN, Daemon, noise, text};

fn config(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("node.toml"),
        format!("node_id = \"ipn:1.0\"\ndata_dir = \"{}\"\n{extra}", dir.join("data").display()),
    )
    .expect("config");
}

/// Sends `payload` to `endpoint`; returns the bundle ID the daemon gave it.
fn send(daemon: &Daemon, endpoint: &str, payload: &[u8], file: &Path) -> String {
    std::fs::write(file, payload).expect("write");
    let out = daemon.dtn(&["send", "--json", "--to", endpoint, file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    answer["bundle_id"].as_str().expect("bundle_id").to_string()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The name `dtn recv --out DIR` gives a bundle's file.
fn file_name(bundle_id: &str) -> String {
    bundle_id.chars().map(|c| if c.is_ascii_alphanumeric() || "-.+".contains(c) { c } else { '_' }).collect()
}

#[test]
fn two_receivers_writing_into_one_folder_keep_every_payload_with_its_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path(), "");
    let daemon = Daemon::start(dir.path());
    let mut expected = Vec::new();
    for (n, endpoint) in ["ipn:1.6", "ipn:1.8"].iter().enumerate() {
        for i in 0..8u64 {
            let payload = noise(2 << 20, n as u64 * 100 + i);
            let id = send(&daemon, endpoint, &payload, &dir.path().join("payload"));
            expected.push((id, payload));
        }
    }
    let out_dir = dir.path().join("inbox");
    std::fs::create_dir(&out_dir).expect("inbox");
    let receivers: Vec<_> = ["ipn:1.6", "ipn:1.8"]
        .iter()
        .map(|endpoint| {
            Command::new(DTN)
                .env("DTN_SOCKET", daemon.socket())
                .args(["recv", "--endpoint", endpoint, "--count", "8", "--out"])
                .arg(&out_dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("dtn recv")
        })
        .collect();
    for receiver in receivers {
        let out = receiver.wait_with_output().expect("recv");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 16, "one file per bundle and no temporary file left: {names:?}");
    for (id, payload) in &expected {
        let got = std::fs::read(out_dir.join(file_name(id))).expect("the bundle's file");
        assert!(got == *payload, "{id}: the file holds another bundle's payload");
    }
}

#[test]
fn a_damaged_bundle_file_is_never_served_and_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path(), "");
    let daemon = Daemon::start(dir.path());
    let payload = noise(300_000, 5);
    send(&daemon, "ipn:1.5", &payload, &dir.path().join("payload"));
    let blob = std::fs::read_dir(dir.path().join("data/blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "bundle"))
        .expect("a bundle file");
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[150_000] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("write");

    let target = dir.path().join("got.bin");
    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--out", target.to_str().expect("utf8")]);
    assert!(!out.status.success(), "a damaged payload must not be received");
    assert!(text(&out.stderr).contains("the payload was cut off"), "{}", text(&out.stderr));
    assert!(!target.exists(), "nothing written");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The quarantine is written by the store's writer with its next batch (the reader that
    // found the damage does not wait for it): it shows within moments.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let out = daemon.dtn(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        if status["store"]["quarantined"] == 1 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["store"]["quarantined"], 1, "{status}");
    let out = daemon.dtn(&["status"]);
    assert!(text(&out.stdout).contains("DAMAGED: 1 bundles quarantined"), "{}", text(&out.stdout));
    let (code, metrics) = daemon.http("GET", "/metrics", b"");
    assert_eq!(code, 200);
    assert!(metrics.contains("dtn_store_quarantined 1\n"), "{metrics}");
    let out = daemon.dtn(&["bundles", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list[0]["state"], "quarantined", "{list}");
    assert!(list[0]["why"].as_str().expect("why").contains("checksum mismatch"), "{list}");
    // Never offered again.
    let out = daemon.dtn(&[
        "recv",
        "--endpoint",
        "ipn:1.5",
        "--wait",
        "1s",
        "--out",
        target.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn the_data_directory_and_socket_are_private_under_a_careless_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path(), "");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 002; exec {DTN} daemon --config {}", dir.path().join("node.toml").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let daemon = Daemon::adopt(child, dir.path());
    send(&daemon, "ipn:1.5", &noise(200_000, 1), &dir.path().join("payload"));
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("blobs")), 0o700);
    assert_eq!(mode(&data.join("spool")), 0o700);
    assert_eq!(mode(&data.join("api.sock")), 0o600);
    for name in ["store.sqlite", "store.sqlite-wal", "store.lock"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    for entry in std::fs::read_dir(data.join("blobs")).expect("blobs") {
        assert_eq!(mode(&entry.expect("entry").path()), 0o600);
    }
}

/// Reads until the daemon closes the connection (or `limit` passes); returns what came.
fn read_until_closed(stream: &mut UnixStream, limit: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => Some(got),
        Err(_) => None,
    }
}

#[test]
fn clients_cannot_hold_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path(), "[api]\nheader_timeout = \"1s\"\nmax_connections = 4\nbody_idle_timeout = \"1s\"\n");
    let daemon = Daemon::start(dir.path());
    // Half a request line: closed by the daemon, never answered.
    let mut half = UnixStream::connect(daemon.socket()).expect("connect");
    half.write_all(b"GET /v1/sta").expect("write");
    let got = read_until_closed(&mut half, Duration::from_secs(20)).expect("the daemon closes it");
    assert!(got.is_empty() || text(&got).starts_with("HTTP/1.1 408"), "{}", text(&got));
    // Idle connections fill the four places; a fifth client is served once they time out.
    let idle: Vec<UnixStream> =
        (0..4).map(|_| UnixStream::connect(daemon.socket()).expect("connect")).collect();
    let started = Instant::now();
    let (code, _) = daemon.http("GET", "/v1/status", b"");
    assert_eq!(code, 200);
    assert!(started.elapsed() < Duration::from_secs(20));
    for mut stream in idle {
        assert!(
            read_until_closed(&mut stream, Duration::from_secs(20)).is_some(),
            "idle connections are closed"
        );
    }
    // A body that stalls: 408 with a reason, nothing stored.
    let mut stalled = UnixStream::connect(daemon.socket()).expect("connect");
    stalled
        .write_all(b"POST /v1/send?to=ipn:1.5 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsome")
        .expect("write");
    let got = text(&read_until_closed(&mut stalled, Duration::from_secs(20)).expect("answered"));
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("the payload stalled: nothing arrived for 1 s"), "{got}");
    let out = daemon.dtn(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["store"]["bundles"], 0);
}

#[test]
fn every_api_error_is_json_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path(), "");
    let daemon = Daemon::start(dir.path());
    let (code, body) = daemon.http("PUT", "/v1/status", b"");
    assert_eq!(code, 405);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["error"], "/v1/status does not take PUT: see docs/api.md for its methods");
    let (code, body) = daemon.http("GET", "/v2/nothing", b"");
    assert_eq!(code, 404);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["error"], "no such API path /v2/nothing: see docs/api.md");
}

#[test]
fn follow_with_wait_ends_after_the_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path(), "");
    let daemon = Daemon::start(dir.path());
    send(&daemon, "ipn:1.5", b"one", &dir.path().join("payload"));
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).expect("inbox");
    let inbox = inbox.to_str().expect("utf8");
    let follow =
        || daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--follow", "--wait", "1s", "--out", inbox]);
    let out = follow();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("1 received; nothing more for ipn:1.5 within 1s"),
        "{}",
        text(&out.stderr)
    );
    let out = follow();
    assert_eq!(out.status.code(), Some(2), "nothing at all: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nothing for ipn:1.5 within 1s"), "{}", text(&out.stderr));
}
