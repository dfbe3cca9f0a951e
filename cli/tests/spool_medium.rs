//! The spool through the real `dtn` binary: two daemons that never run at the same time move a
//! file each way through one directory (a USB stick's mount point), and `dtn status` and
//! `/metrics` show it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, text};

fn config(dir: &Path, node: &str, body: &str) {
    common::write_config(dir, node, body);
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stored(daemon: &Daemon) -> u64 {
    let json: serde_json::Value =
        serde_json::from_slice(&daemon.dtn(&["status", "--json"]).stdout).expect("json");
    json["store"]["bundles"].as_u64().expect("bundles")
}

#[test]
fn two_daemons_that_never_meet_exchange_files_through_a_stick() {
    let stick = tempfile::tempdir().expect("stick");
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    let spool = |peer: &str| {
        format!(
            "[[spool]]\ndir = \"{}\"\npeers = [\"{peer}\"]\nscan_interval = \"100ms\"\n",
            stick.path().display()
        )
    };
    config(a_dir.path(), "ipn:1.0", &spool("ipn:2.0"));
    config(b_dir.path(), "ipn:2.0", &spool("ipn:1.0"));
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    {
        let a = Daemon::start(a_dir.path());
        let file = a_dir.path().join("report.bin");
        std::fs::write(&file, &payload).expect("payload");
        let out = a.dtn(&["send", "--to", "ipn:2.5", &file.display().to_string()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        wait_for("A writes it to the stick", || stored(&a) == 0);
        let status = text(&a.dtn(&["status"]).stdout);
        assert!(status.contains(&format!("spool       {}", stick.path().display())), "{status}");
        assert!(status.contains("present: 1 files / "), "{status}");
        let (code, metrics) = a.http("GET", "/metrics", b"");
        assert_eq!(code, 200);
        assert!(metrics.contains("dtn_cla_files_exported{layer=\"spool\"} 1\n"), "{metrics}");
    }
    // A is gone; the stick is carried to B.
    let b = Daemon::start(b_dir.path());
    let out = b.dtn(&["recv", "--endpoint", "ipn:2.5", "--wait", "30s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout == payload, "the file arrived changed");
    let reply = b_dir.path().join("reply.txt");
    std::fs::write(&reply, b"received, thank you").expect("reply");
    let out = b.dtn(&["send", "--to", "ipn:1.9", &reply.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("B writes the reply to the stick", || stored(&b) == 0);
    let json: serde_json::Value = serde_json::from_slice(&b.dtn(&["status", "--json"]).stdout).expect("json");
    let spool = json["convergence_layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["name"] == "spool")
        .cloned()
        .expect("spool");
    assert_eq!(
        (spool["files_imported"].as_u64(), spool["files_exported"].as_u64()),
        (Some(1), Some(1)),
        "{spool}"
    );
    drop(b);
    // Back at A.
    let a = Daemon::start(a_dir.path());
    let out = a.dtn(&["recv", "--endpoint", "ipn:1.9", "--wait", "30s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"received, thank you");
}

#[test]
fn a_writer_killed_mid_file_leaves_a_temporary_that_is_reported_and_the_bundle_goes_again() {
    let stick = tempfile::tempdir().expect("stick");
    let spool_dir = stick.path().join("dtn");
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    let spool = |peer: &str| {
        format!(
            "[[spool]]\ndir = \"{}\"\npeers = [\"{peer}\"]\nscan_interval = \"20ms\"\n",
            spool_dir.display()
        )
    };
    config(a_dir.path(), "ipn:1.0", &format!("[api]\nmax_payload = 600000000\n{}", spool("ipn:2.0")));
    config(b_dir.path(), "ipn:2.0", &spool("ipn:1.0"));
    let big = a_dir.path().join("big.bin");
    common::write_noise_file(&big, 400);
    let a = Daemon::start(a_dir.path());
    let out = a.dtn(&["send", "--to", "ipn:2.5", &big.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The stick is plugged in; A starts writing 400 MiB and is killed part-way.
    std::fs::create_dir(&spool_dir).expect("plug in");
    let for_b = spool_dir.join("ipn%3A2.0");
    let temporary = || {
        std::fs::read_dir(&for_b)
            .map(|d| d.flatten().find(|e| e.file_name().to_string_lossy().starts_with(".tmp-")))
            .ok()
            .flatten()
            .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    };
    wait_for("A is writing the file", || temporary().is_some());
    a.sigkill();
    let left = temporary().expect("the half-written file is left").path();
    let half = std::fs::metadata(&left).expect("size").len();
    assert!(half < 400 << 20, "killed part-way: {half} bytes");
    // B, with the stick: leaves the half-written file alone and says so; nothing delivered.
    {
        let b = Daemon::start(b_dir.path());
        wait_for("B reports the half-written file", || {
            let json: serde_json::Value =
                serde_json::from_slice(&b.dtn(&["status", "--json"]).stdout).expect("json");
            json["convergence_layers"][0]["half_written_left"] == 1
        });
        assert_eq!(stored(&b), 0);
        assert!(left.exists(), "left alone");
    }
    // A restarts: the bundle never counted as written, so it goes again, whole.
    let a = Daemon::start(a_dir.path());
    wait_for("A writes it again", || stored(&a) == 0);
    drop(a);
    let b = Daemon::start(b_dir.path());
    let out = b.dtn(&[
        "recv",
        "--endpoint",
        "ipn:2.5",
        "--wait",
        "60s",
        "--out",
        &b_dir.path().join("got.bin").display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = std::fs::read(b_dir.path().join("got.bin")).expect("got");
    assert!(got == std::fs::read(&big).expect("sent"), "400 MiB arrived byte for byte");
}

#[test]
fn by_hand_export_and_import_with_the_daemon_running_or_stopped() {
    let stick = tempfile::tempdir().expect("stick");
    let medium = stick.path().join("dtn");
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    config(a_dir.path(), "ipn:1.0", "");
    config(b_dir.path(), "ipn:2.0", "");
    let dtn = |args: &[&str]| std::process::Command::new(common::DTN).args(args).output().expect("run dtn");
    let a_config = a_dir.path().join("node.toml").display().to_string();
    let b_config = b_dir.path().join("node.toml").display().to_string();
    let medium_arg = medium.display().to_string();
    let letter = |daemon: &Daemon, text_: &[u8]| {
        let file = a_dir.path().join("letter.txt");
        std::fs::write(&file, text_).expect("file");
        let out = daemon.dtn(&["send", "--to", "ipn:2.5", &file.display().to_string()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    // A's daemon runs: the export goes through it.
    {
        let a = Daemon::start(a_dir.path());
        letter(&a, b"carried by hand");
        let out = dtn(&["spool", "export", &medium_arg, "--for", "ipn:2.0", "--config", &a_config]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("exported 1 bundles ("), "{}", text(&out.stdout));
        assert_eq!(stored(&a), 0, "it left the running daemon's store");
        let out = dtn(&["spool", "export", &medium_arg, "--for", "ipn:2.0", "--config", &a_config]);
        assert!(text(&out.stdout).starts_with("exported 0 bundles"), "{}", text(&out.stdout));
        letter(&a, b"the second letter");
    }
    // A stopped: the export opens its data directory.
    let out = dtn(&["spool", "export", &medium_arg, "--for", "ipn:2.0", "--config", &a_config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("exported 1 bundles ("), "{}", text(&out.stdout));
    // B stopped (never started: its store is made): imports both.
    let out = dtn(&["spool", "import", &medium_arg, "--config", &b_config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("imported 2 bundles ("), "{}", text(&out.stdout));
    let b = Daemon::start(b_dir.path());
    std::fs::create_dir(b_dir.path().join("got")).expect("dir");
    let out = b.dtn(&[
        "recv",
        "--endpoint",
        "ipn:2.5",
        "--count",
        "2",
        "--wait",
        "20s",
        "--out",
        &b_dir.path().join("got").display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut got: Vec<Vec<u8>> = std::fs::read_dir(b_dir.path().join("got"))
        .expect("got")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    got.sort();
    assert_eq!(got, vec![b"carried by hand".to_vec(), b"the second letter".to_vec()]);
    // B's daemon runs: the import goes through it; a medium with nothing new imports nothing.
    let out = dtn(&["spool", "import", &medium_arg, "--config", &b_config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("imported 0 bundles"), "{}", text(&out.stdout));
    // A relative or missing directory is named.
    let out = dtn(&["spool", "import", "/nonexistent/stick", "--config", &b_config]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/stick is not a directory (is the medium mounted?)"),
        "{}",
        text(&out.stderr)
    );
}
