//! A stick found in the street (issue 25, faults 1–5), through the real daemon: a node's
//! directory on the medium that is a symbolic link into the data directory or off the medium,
//! a FIFO named like a bundle, a file still being copied when first seen, a file name that
//! would forge a log line. The spool follows no link, opens only regular files, removes only
//! what it imported from the medium, looks again at a file that changed, and logs every name
//! escaped.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{DTN, Daemon, text, wait_for};

/// A node `node` with a spool on `stick` to `peer`, scanned every 50 ms.
fn spool_config(dir: &Path, node: &str, stick: &Path, peer: &str) {
    common::write_config(
        dir,
        node,
        &format!(
            "[[spool]]\ndir = \"{}\"\npeers = [\"{peer}\"]\nscan_interval = \"50ms\"\n",
            stick.display()
        ),
    );
}

/// A bundle for `to` made offline (`dtn bundle create`), as another village's node would have
/// written it on the stick.
fn bundle_file(dir: &Path, to: &str, payload: &[u8]) -> Vec<u8> {
    let input = dir.join("payload.in");
    std::fs::write(&input, payload).expect("payload");
    let output = dir.join("made.bundle");
    let out = Command::new(DTN)
        .args(["bundle", "create", "--from", "ipn:1.1", "--to", to, "--lifetime", "1h", "-o"])
        .arg(&output)
        .arg(&input)
        .output()
        .expect("dtn bundle create");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::read(&output).expect("bundle")
}

fn spool_counter(daemon: &Daemon, key: &str) -> u64 {
    daemon.layer("spool")[key].as_u64().unwrap_or_else(|| panic!("no {key}"))
}

fn blobs(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("data/blobs"))
        .expect("blobs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "bundle"))
        .collect();
    found.sort();
    found
}

/// Fault 1. Before the fix the importer followed the link, took the store's own file for a
/// duplicate of what it holds, and removed it: the acknowledged bundle was lost.
#[test]
fn a_node_directory_linked_into_the_data_directory_is_refused_and_nothing_of_the_store_is_removed() {
    let (dir, stick) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("stick"));
    spool_config(dir.path(), "ipn:2.0", stick.path(), "ipn:1.0");
    let daemon = Daemon::start_logged(dir.path());
    // A bundle large enough to live in its own file in the store, acknowledged.
    let payload = common::noise(300_000, 1);
    common::send_file(&daemon, dir.path(), "kept.bin", "ipn:2.5", &payload, &[]);
    let held = blobs(dir.path());
    assert_eq!(held.len(), 1, "the bundle is in a file of the store");
    // The stick's directory for this node leads into the store's files.
    symlink(dir.path().join("data/blobs"), stick.path().join("ipn%3A2.0")).expect("symlink");
    std::thread::sleep(Duration::from_millis(500)); // ten scans
    assert_eq!(blobs(dir.path()), held, "the store's file is still there");
    assert_eq!(spool_counter(&daemon, "duplicates_skipped"), 0);
    assert!(common::recv_one(&daemon, "ipn:2.5") == payload, "the bundle is delivered intact");
    assert_eq!(spool_counter(&daemon, "unsafe_entries_left"), 1);
    let log = daemon.log();
    assert!(log.contains("is a symbolic link: never followed"), "{log}");
    assert_eq!(log.matches("never followed").count(), 1, "reported once: {log}");
}

/// Faults 2 and 5 (mode). Before the fix an export followed a peer directory that was a link
/// and wrote the bundle wherever it pointed; exported files were 0644.
#[test]
fn an_export_never_writes_through_a_link_and_its_files_are_private() {
    let (dir, stick, elsewhere) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("stick"),
        tempfile::tempdir().expect("x"),
    );
    spool_config(dir.path(), "ipn:1.0", stick.path(), "ipn:2.0");
    let for_b = stick.path().join("ipn%3A2.0");
    symlink(elsewhere.path(), &for_b).expect("symlink");
    let daemon = Daemon::start_logged(dir.path());
    common::send_file(&daemon, dir.path(), "letter.txt", "ipn:2.5", b"for the next village", &[]);
    let written_elsewhere = || std::fs::read_dir(elsewhere.path()).expect("list").next().is_some();
    wait_for("the export is refused", || spool_counter(&daemon, "export_errors") > 0 || written_elsewhere());
    assert!(!written_elsewhere(), "nothing written off the medium");
    assert_eq!(daemon.status()["store"]["bundles"], 1, "the bundle stays in the store");
    assert_eq!(spool_counter(&daemon, "unsafe_entries_left"), 1);
    // The directory made real: the bundle goes, in a file only its owner reads.
    std::fs::remove_file(&for_b).expect("remove the link");
    std::fs::create_dir(&for_b).expect("a real directory");
    wait_for("exported", || daemon.status()["store"]["bundles"] == 0);
    let files: Vec<_> = std::fs::read_dir(&for_b).expect("list").flatten().collect();
    assert_eq!(files.len(), 1);
    let mode = files[0].metadata().expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "exported bundle files are private");
}

/// Fault 3. Before the fix opening the FIFO blocked the scan, and nothing on the medium was
/// imported again until something wrote to the FIFO.
#[test]
fn a_fifo_named_like_a_bundle_neither_blocks_the_scan_nor_is_opened() {
    let (dir, stick) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("stick"));
    spool_config(dir.path(), "ipn:2.0", stick.path(), "ipn:1.0");
    let for_me = stick.path().join("ipn%3A2.0");
    std::fs::create_dir(&for_me).expect("dir");
    nix::unistd::mkfifo(&for_me.join("0000.bundle"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    let daemon = Daemon::start_logged(dir.path());
    std::thread::sleep(Duration::from_millis(300)); // the first scans meet the FIFO
    // A genuine bundle dropped in later is still taken.
    let bundle = bundle_file(dir.path(), "ipn:2.5", b"after the FIFO");
    std::fs::write(for_me.join("genuine.bundle"), bundle).expect("genuine");
    assert_eq!(common::recv_one(&daemon, "ipn:2.5"), b"after the FIFO");
    assert!(for_me.join("0000.bundle").exists(), "the FIFO is left alone");
    assert_eq!(spool_counter(&daemon, "unsafe_entries_left"), 1);
    assert!(daemon.log().contains("a FIFO: never opened"), "{}", daemon.log());
}

/// Fault 4. Before the fix a file read while still being copied was marked "left alone" for
/// good: it was not imported until the daemon restarted.
#[test]
fn a_file_seen_half_copied_is_taken_once_its_copy_is_complete() {
    let (dir, stick) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("stick"));
    spool_config(dir.path(), "ipn:2.0", stick.path(), "ipn:1.0");
    let for_me = stick.path().join("ipn%3A2.0");
    std::fs::create_dir(&for_me).expect("dir");
    let bundle = bundle_file(dir.path(), "ipn:2.5", &common::noise(40_000, 7));
    let daemon = Daemon::start_logged(dir.path());
    let copying = for_me.join("copying.bundle");
    std::fs::write(&copying, &bundle[..bundle.len() / 2]).expect("first half");
    wait_for("the half is left alone", || spool_counter(&daemon, "not_bundles_left") == 1);
    std::thread::sleep(Duration::from_millis(200)); // more scans: still left
    assert!(copying.exists());
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&copying).expect("open");
        file.write_all(&bundle[bundle.len() / 2..]).expect("second half");
    }
    assert_eq!(common::recv_one(&daemon, "ipn:2.5"), common::noise(40_000, 7));
    wait_for("the file is removed once imported", || !copying.exists());
}

/// Fault 5. Before the fix a newline in a file name ended the log line and began one the
/// medium's author wrote.
#[test]
fn a_file_name_cannot_forge_a_log_line() {
    let (dir, stick) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("stick"));
    spool_config(dir.path(), "ipn:2.0", stick.path(), "ipn:1.0");
    let for_me = stick.path().join("ipn%3A2.0");
    std::fs::create_dir(&for_me).expect("dir");
    let forged = "2026-01-01T00:00:00.000000Z  INFO dtn: all bundles delivered, nothing to see";
    std::fs::write(for_me.join(format!("notes\n{forged}\n.txt")), b"x").expect("file");
    std::fs::write(for_me.join(format!("evil\r\x1b[2K{forged}.bundle")), b"not a bundle").expect("file");
    let daemon = Daemon::start_logged(dir.path());
    wait_for("both are left alone", || spool_counter(&daemon, "not_bundles_left") == 2);
    let log = daemon.log();
    assert!(!log.lines().any(|line| line.starts_with(forged)), "a line was forged:\n{log}");
    assert!(!log.contains('\x1b') && !log.contains('\r'), "no terminal control reaches the log:\n{log:?}");
    assert!(log.contains("notes\\n2026-01-01"), "the newline is shown escaped:\n{log}");
    assert!(log.contains("evil\\r\\u{1b}[2K"), "{log}");
}
