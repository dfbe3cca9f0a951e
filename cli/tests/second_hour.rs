//! A new user's second hour (issue 26), through the real binary: a clean stop that leaves
//! nothing half done, output cut off by `head`, a store made under another node ID, the
//! client's words when no daemon runs, why a bundle waits, a spool directory that is not there,
//! and a restarted peer dialled back as soon as it is heard from.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DTN, Daemon, free_port, text, wait_for};

/// Stops `daemon` with SIGTERM and waits for it; answers its exit status.
fn sigterm(mut daemon: Daemon) -> std::process::ExitStatus {
    let out = Command::new("kill").args(["-TERM", &daemon.child.id().to_string()]).output().expect("kill");
    assert!(out.status.success(), "{}", text(&out.stderr));
    daemon.child.wait().expect("wait")
}

fn error_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.contains(" ERROR ")).collect()
}

/// Item 3. A SIGTERM in the middle of an export to a stick finishes what is under way and
/// records it before the store closes: no ERROR line, and nothing exported twice (before, a
/// bundle whose export completed after the store closed stayed stored and was exported again
/// at the next start).
#[test]
fn a_clean_stop_mid_export_records_what_it_did_and_logs_no_error() {
    const N: u64 = 300;
    let (dir, stick) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("stick"));
    let spool = stick.path().join("dtn");
    common::write_config(
        dir.path(),
        "ipn:1.0",
        &format!(
            "[[spool]]\ndir = \"{}\"\npeers = [\"ipn:2.0\"]\nscan_interval = \"50ms\"\n",
            spool.display()
        ),
    );
    let daemon = Daemon::start_logged(dir.path());
    for i in 0..N {
        let (code, body) = daemon.http("POST", "/v1/send?to=ipn:2.5", &common::noise(20_000, i));
        assert_eq!(code, 201, "{body}");
    }
    // The stick is plugged in; the daemon is stopped while it writes.
    std::fs::create_dir(&spool).expect("plug in");
    let for_b = spool.join("ipn%3A2.0");
    let files = || {
        std::fs::read_dir(&for_b)
            .map(|d| {
                d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with(".tmp")).count() as u64
            })
            .unwrap_or(0)
    };
    wait_for("the export is under way", || files() >= 10);
    let log_path = dir.path().join("daemon.log");
    let status = sigterm(daemon);
    assert!(status.success(), "a clean stop: {status:?}");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(error_lines(&log).is_empty(), "no ERROR in a clean stop:\n{}", error_lines(&log).join("\n"));
    let exported_before = files();
    // Started again: exactly what was not exported yet goes; nothing is written twice.
    let daemon = Daemon::start_logged(dir.path());
    wait_for("the rest is exported", || daemon.status()["store"]["bundles"] == 0);
    let exported_after = daemon.layer("spool")["files_exported"].as_u64().expect("count");
    assert_eq!(
        exported_before + exported_after,
        N,
        "{exported_before} before the stop, {exported_after} after"
    );
    assert_eq!(files(), N);
    assert!(error_lines(&daemon.log()).is_empty(), "{}", daemon.log());
}

/// Item 4. Output cut off by the reader (`| head -2`) ends the command quietly, as SIGPIPE
/// would: no panic, no message, the status a shell reports for it (141).
#[test]
fn a_command_whose_reader_goes_away_ends_quietly() {
    let dir = tempfile::tempdir().expect("dir");
    common::write_config(dir.path(), "ipn:1.0", "");
    let daemon = Daemon::start(dir.path());
    // More than a pipe holds (64 KiB), so the writer meets the closed pipe: a list of 1,000
    // bundles, and payloads of 200 KB.
    for i in 0..1000 {
        let (code, body) = daemon.http("POST", "/v1/send?to=ipn:1.5", format!("bundle {i}").as_bytes());
        assert_eq!(code, 201, "{body}");
    }
    for i in 0..5 {
        let (code, body) = daemon.http("POST", "/v1/send?to=ipn:1.6", &common::noise(200_000, i));
        assert_eq!(code, 201, "{body}");
    }
    let cases = [
        &["bundles", "list", "--limit", "1000"][..],
        &["bundles", "list", "--limit", "1000", "--json"],
        &["recv", "--endpoint", "ipn:1.6", "--count", "5"],
    ];
    for args in cases {
        let mut child = Command::new(DTN)
            .env("DTN_SOCKET", daemon.socket())
            .env("RUST_BACKTRACE", "1")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut first = [0u8; 16];
        child.stdout.as_mut().expect("stdout").read_exact(&mut first).expect("some output");
        drop(child.stdout.take()); // the reader goes, as `head` does
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{args:?} said: {}", text(&out.stderr));
    }
    // What recv could not write whole stays on the node: it acknowledges only what it wrote.
    let waiting = daemon.dtn(&[
        "recv",
        "--endpoint",
        "ipn:1.6",
        "--count",
        "5",
        "--wait",
        "5s",
        "--out",
        &format!("{}/", dir.path().join("inbox").display()),
    ]);
    assert!(waiting.status.success(), "the five are still there: {}", text(&waiting.stderr));
}

/// Item 8. A daemon started on a data directory another node ID made is refused, naming that
/// node and what to do; `--adopt-store` takes it over.
#[test]
fn a_store_made_by_another_node_is_refused_unless_adopted() {
    let dir = tempfile::tempdir().expect("dir");
    common::write_config(dir.path(), "dtn://first/", "");
    let daemon = Daemon::start(dir.path());
    let (code, body) = daemon.http("POST", "/v1/send?to=dtn://first/inbox", b"for the first node");
    assert_eq!(code, 201, "{body}");
    drop(daemon);
    common::write_config(dir.path(), "ipn:1.0", "");
    let out = Command::new(DTN)
        .args(["daemon", "--config"])
        .arg(dir.path().join("node.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("belongs to node dtn://first/, and this node is ipn:1.0"), "{said}");
    assert!(said.contains("--adopt-store"), "{said}");
    // Adopted: its bundles are this node's now (the first node's bundle waits to be routed).
    let child = Command::new(DTN)
        .args(["daemon", "--adopt-store", "--config"])
        .arg(dir.path().join("node.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let daemon = Daemon::adopt(child, dir.path());
    assert_eq!(daemon.status()["store"]["bundles"], 1);
    drop(daemon);
    // And from then on the store is this node's without the flag.
    let daemon = Daemon::start(dir.path());
    assert_eq!(daemon.status()["node_id"], "ipn:1.0");
}

/// Item 9. The client's words: no daemon is "no daemon" (not a payload cut off), and a
/// `--follow` that received bundles ends saying how many.
#[test]
fn recv_says_what_happened() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(DTN)
        .env("DTN_SOCKET", dir.path().join("nobody.sock"))
        .args(["recv", "--endpoint", "ipn:1.5"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.starts_with("dtn: no daemon at "), "{said}");
    assert!(!said.contains("cut off"), "{said}");
    common::write_config(dir.path(), "ipn:1.0", "");
    let daemon = Daemon::start(dir.path());
    for i in 0..3 {
        daemon.http("POST", "/v1/send?to=ipn:1.5", format!("bundle {i}").as_bytes());
    }
    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--follow", "--wait", "1s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "dtn recv: 3 received; nothing more for ipn:1.5 within 1s\n");
}

/// Items 7 and 10. `dtn bundles list` says why each bundle waits — the static route whose
/// neighbour is down, the planned contact and when it starts — and whether this node is its
/// custodian; `show` is text a person reads, JSON with `--json`.
#[test]
fn bundles_list_and_show_say_why_a_bundle_waits() {
    let dir = tempfile::tempdir().expect("dir");
    common::write_config(dir.path(), "ipn:1.0", "[[routes]]\nto = \"ipn:3.*\"\nvia = \"ipn:2.0\"\n");
    let daemon = Daemon::start(dir.path());
    let plan = dir.path().join("plan.rc");
    std::fs::write(&plan, "a contact +600 +900 1 4 100000\na range +0 +1000 1 4 1\n").expect("plan");
    let out = daemon.dtn(&["plan", "load", &plan.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (to, custody) in [("ipn:3.5", "false"), ("ipn:4.5", "true"), ("ipn:9.5", "false")] {
        let (code, body) = daemon.http("POST", &format!("/v1/send?to={to}&custody={custody}"), b"waiting");
        assert_eq!(code, 201, "{body}");
    }
    let list = text(&daemon.dtn(&["bundles", "list"]).stdout);
    let line = |to: &str| {
        list.lines().find(|l| l.contains(to)).unwrap_or_else(|| panic!("{to} in:\n{list}")).to_string()
    };
    assert!(line("ipn:3.5").contains("its static route goes via ipn:2.0, which is down"), "{list}");
    let planned = line("ipn:4.5");
    assert!(
        planned.contains("custodian") && planned.contains("waiting for the contact to ipn:4.0 at 20"),
        "{list}"
    );
    assert!(line("ipn:9.5").contains("the contact plan does not name ipn:9.0"), "{list}");
    let show = text(&daemon.dtn(&["bundles", "show", "2"]).stdout);
    assert!(show.starts_with("bundle 2 ("), "{show}");
    for expected in [
        "  why        waiting for the contact to ipn:4.0",
        "  custody    custodian ipn:1.0",
        "  block 1    payload (type 1), 7 bytes",
    ] {
        assert!(show.contains(expected), "{expected:?} in:\n{show}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&daemon.dtn(&["bundles", "show", "2", "--json"]).stdout).expect("json");
    assert_eq!(json["id"], 2);
}

/// Item 6. A spool directory that is not there is said so at start and in `dtn status` (its
/// peers' bundles wait); `dtn spool export --help` says it goes through a running daemon.
#[test]
fn a_missing_spool_directory_is_said_and_the_help_matches_what_spool_does() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("stick/dtn");
    common::write_config(
        dir.path(),
        "ipn:1.0",
        &format!("[[spool]]\ndir = \"{}\"\npeers = [\"ipn:2.0\"]\n", missing.display()),
    );
    let daemon = Daemon::start_logged(dir.path());
    wait_for("said in the log", || daemon.log().contains("the spool directory is not there"));
    let status = text(&daemon.dtn(&["status"]).stdout);
    assert!(
        status.contains("not there (bundles for its peers wait; on a medium, make the directory once)"),
        "{status}"
    );
    let help = text(&Command::new(DTN).args(["spool", "export", "--help"]).output().expect("help").stdout);
    assert!(help.contains("Through the node's daemon when it runs"), "{help}");
    assert!(!help.contains("must be stopped"), "{help}");
}

fn stcp_node(dir: &Path, node: &str, listen: u16, peer: (u16, &str)) {
    common::write_config(
        dir,
        node,
        &format!(
            "[stcp]\nlisten = [\"127.0.0.1:{listen}\"]\n[[stcp.peers]]\naddress = \"127.0.0.1:{}\"\nnode_id = \"{}\"\n",
            peer.0, peer.1
        ),
    );
}

/// Item 13. A peer that comes back and dials in is dialled back at once, not at the end of a
/// backoff grown long while it was away (1 s doubling: after half a minute, a wait of 32 s).
#[test]
fn a_peer_heard_from_again_is_dialled_at_once() {
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    let (a_port, b_port) = (free_port(), free_port());
    stcp_node(a_dir.path(), "ipn:1.0", a_port, (b_port, "ipn:2.0"));
    stcp_node(b_dir.path(), "ipn:2.0", b_port, (a_port, "ipn:1.0"));
    let a = Daemon::start(a_dir.path());
    common::send_file(&a, a_dir.path(), "hello.txt", "ipn:2.5", b"while you were away", &[]);
    // B stays away for 31 s: A's dials fail after 1, 2, 4, 8 and 16 s, and the next waits 32.
    std::thread::sleep(Duration::from_secs(31));
    let b = Daemon::start(b_dir.path());
    let came_back = Instant::now();
    // B dials A at once; A, hearing from it, dials B at once and sends.
    assert_eq!(common::recv_one(&b, "ipn:2.5"), b"while you were away");
    let took = came_back.elapsed();
    assert!(took < Duration::from_secs(20), "A waited {took:?} after B came back (its backoff was 32 s)");
}
