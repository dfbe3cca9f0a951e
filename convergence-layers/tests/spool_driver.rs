//! The spool between two agents that never run at the same time, through one directory: both
//! directions, a 100 MiB bundle, the same medium imported twice, half-written and foreign files,
//! the directory removed and made again; a full and a read-only medium (tmpfs mounts the test
//! makes).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bpa::Eid;
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::spool::layout::node_dir;
use convergence_layers::spool::{Spool, SpoolConfig};

struct Node {
    agent: Agent<SqliteStore>,
    spool: Spool<Agent<SqliteStore>>,
    _dir: tempfile::TempDir,
}

async fn node(n: u32, peer: u32, dir: &Path) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (agent, store_dir) = agent_on_disk(AgentConfig::new(Eid::ipn(n, 0)), StoreConfig::default()).await;
    let mut config = SpoolConfig::new(dir);
    config.peers = vec![Eid::ipn(peer, 0)];
    config.scan_interval = Duration::from_millis(50);
    let spool = Spool::new(agent.clone(), config);
    spool.start();
    Node { agent, spool, _dir: store_dir }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_never_meet_exchange_bundles_through_one_directory() {
    let medium = tempfile::tempdir().expect("medium");
    let for_b = medium.path().join(node_dir(&Eid::ipn(2, 0)));
    // Village A writes three bundles for B, 100 MiB among them, and goes away.
    let a = node(1, 2, medium.path()).await;
    let payloads = [pattern(10, 1), pattern(100 << 20, 2), pattern(5000, 3)];
    for p in &payloads {
        send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), p).await;
    }
    eventually("A's store empties into the spool", || a.agent.store().stats().bundles == 0).await;
    assert_eq!(a.spool.stats().exported, 3);
    assert_eq!(files(&for_b).len(), 3, "one file each, no temporary left");
    a.spool.shutdown();
    // A copy of the medium as it was, to carry it a second time.
    let copy = tempfile::tempdir().expect("copy");
    std::fs::create_dir(copy.path().join(node_dir(&Eid::ipn(2, 0)))).expect("dir");
    for f in files(&for_b) {
        std::fs::copy(&f, copy.path().join(node_dir(&Eid::ipn(2, 0))).join(f.file_name().expect("name")))
            .expect("copy");
    }
    // Something half-written and something foreign on the medium too.
    std::fs::write(for_b.join(".tmp-999-0"), b"\x9f\x89\x07").expect("half");
    std::fs::write(for_b.join("notes.txt"), b"from the driver").expect("foreign");
    std::fs::write(for_b.join("0000.bundle"), b"not CBOR at all").expect("junk");

    // Village B, later: imports what is for it, leaves the rest, answers.
    let b = node(2, 1, medium.path()).await;
    let mut got = take_payloads(&b.agent, &Eid::ipn(2, 1), 3, Duration::from_secs(120)).await;
    got.sort_by_key(Vec::len);
    let mut expected = payloads.to_vec();
    expected.sort_by_key(Vec::len);
    assert!(got == expected, "every bundle arrived byte for byte");
    eventually("the imported files are removed", || files(&for_b).len() == 3).await;
    let stats = b.spool.stats();
    assert_eq!((stats.imported, stats.half_written, stats.not_bundles), (3, 1, 2), "{stats:?}");
    // Left alone means left alone: still there after more scans, reported once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(files(&for_b).len(), 3);
    assert_eq!(b.spool.stats().not_bundles, 2);

    // The same medium carried again: recognised, removed, nothing delivered twice.
    std::fs::remove_dir_all(&for_b).expect("clear");
    std::fs::rename(copy.path().join(node_dir(&Eid::ipn(2, 0))), &for_b).expect("carry again");
    eventually("the copies are seen", || b.spool.stats().duplicates == 3).await;
    assert!(files(&for_b).is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.agent.store().stats().bundles == 0, "nothing new to deliver");

    // B answers through the medium; the medium is pulled out meanwhile and plugged back.
    std::fs::remove_dir_all(medium.path()).expect("pull the medium");
    send_streamed(&b.agent, Eid::ipn(2, 1), Eid::ipn(1, 1), b"thanks").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.spool.stats().present);
    assert_eq!(b.agent.store().stats().bundles, 1, "kept while there is no medium");
    std::fs::create_dir(medium.path()).expect("plug it back");
    eventually("exported once the medium is back", || b.agent.store().stats().bundles == 0).await;
    b.spool.shutdown();
    let a = node(1, 2, medium.path()).await;
    assert_eq!(
        take_payloads(&a.agent, &Eid::ipn(1, 1), 1, Duration::from_secs(30)).await,
        vec![b"thanks".to_vec()]
    );
}

/// Runs `mount` (root only; the test says so if it cannot).
fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} failed: {} (this test makes a small tmpfs and needs to run as root)",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_medium_is_a_clear_error_and_loses_nothing() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let medium = tempfile::tempdir().expect("medium");
    let path = medium.path().to_path_buf();
    mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs", path.to_str().expect("utf-8")]);
    let _mounted = Mounted(path.clone());
    let a = node(1, 2, &path).await;
    // 2 MiB does not fit on a 1 MiB medium.
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), &pattern(2 << 20, 5)).await;
    eventually("the export fails", || a.spool.stats().export_errors >= 1).await;
    assert_eq!(a.agent.store().stats().bundles, 1, "the bundle stays in the store");
    let for_b = path.join(node_dir(&Eid::ipn(2, 0)));
    assert!(files(&for_b).is_empty(), "no partial file left on the medium: {:?}", files(&for_b));
    // Read-only: a small bundle cannot be written either.
    mount(&["-o", "remount,ro", path.to_str().expect("utf-8")]);
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), b"small").await;
    let before = a.spool.stats().export_errors;
    eventually("the read-only export fails", || a.spool.stats().export_errors > before).await;
    assert_eq!(a.agent.store().stats().bundles, 2);
    // A bigger, writable medium: both go.
    mount(&["-o", "remount,rw,size=8m", path.to_str().expect("utf-8")]);
    eventually("both are exported once there is room", || a.agent.store().stats().bundles == 0).await;
    assert_eq!(files(&for_b).len(), 2);
    a.spool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_in_is_taken_at_once_without_waiting_for_the_next_scan() {
    let medium = tempfile::tempdir().expect("medium");
    // A writes a bundle for B onto a medium of its own.
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    let a = node(1, 2, elsewhere.path()).await;
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), b"dropped in").await;
    eventually("A exports it", || a.agent.store().stats().bundles == 0).await;
    a.spool.shutdown();
    // B scans only once a minute: only a change notification can make it look sooner.
    let (agent, _store) = agent_on_disk(AgentConfig::new(Eid::ipn(2, 0)), StoreConfig::default()).await;
    let mut config = SpoolConfig::new(medium.path());
    config.scan_interval = Duration::from_secs(60);
    let spool = Spool::new(agent.clone(), config);
    spool.start();
    eventually("B has looked once", || spool.stats().present).await;
    // The directory for B is made and the file dropped in (renamed into place, as a writer does).
    let for_b = medium.path().join(node_dir(&Eid::ipn(2, 0)));
    std::fs::create_dir(&for_b).expect("dir");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let file = files(&elsewhere.path().join(node_dir(&Eid::ipn(2, 0)))).pop().expect("A's file");
    let staged = medium.path().join("staged");
    std::fs::copy(&file, &staged).expect("copy");
    std::fs::rename(&staged, for_b.join(file.file_name().expect("name"))).expect("drop in");
    let got = take_payloads(&agent, &Eid::ipn(2, 1), 1, Duration::from_secs(10)).await;
    assert_eq!(got, vec![b"dropped in".to_vec()]);
    spool.shutdown();
}
