//! `dtn store check` on real stores: a sound one, and one damaged behind the store's back. The
//! check only reads; `--repair` changes, after saying what.

use std::process::Command;
use std::sync::Arc;

use bpa::ManualClock;
use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::store::{BundleState, SqliteStore, StoreConfig};

fn bundle(sequence: u64, len: usize) -> bytes::Bytes {
    BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), CreationTimestamp { time: 10, sequence }, 1_000_000)
        .payload(vec![7u8; len])
        .build()
        .expect("valid")
        .encode()
        .into()
}

fn fill(dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (store, _) = SqliteStore::open(dir, StoreConfig::default(), Arc::new(ManualClock::new(100)))
            .await
            .expect("open");
        for (sequence, len) in [(1, 10), (2, 100), (3, 200_000), (4, 100_000)] {
            store.insert(bundle(sequence, len), BundleState::WaitingForRoute).await.expect("insert");
        }
        store.close().await;
    });
}

fn check(dir: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dtn"))
        .args(["store", "check", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run dtn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir`, with its contents: what "changes nothing" is checked against.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("blobs")] {
        for entry in std::fs::read_dir(&sub).expect("list") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            // SQLite's index of the log may be made by a read-only reader; it holds no data.
            if path.is_file() && !name.ends_with("-shm") && !name.ends_with("-wal") {
                all.push((path.clone(), std::fs::read(&path).expect("read")));
            }
        }
    }
    all.sort();
    all
}

fn blob_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bundle"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_sound_store_checks_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path());
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("write-ahead log: ok"), "{stdout}");
    assert!(
        stdout.contains(
            "files: 0 incomplete inserts, 0 orphan bundle files, 0 rows with a missing or damaged file"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("database: integrity check ok"), "{stdout}");
    assert!(stdout.contains("bundles: 4 checked"), "{stdout}");
    assert!(stdout.contains("0 invalid, 0 quarantined"), "{stdout}");
    let (code, stdout, _) = check(dir.path(), &["--repair"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("repair: nothing to do"), "{stdout}");
}

#[test]
fn damage_is_found_and_named_and_nothing_is_changed_until_repair() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path());
    let blobs = blob_files(dir.path());
    assert_eq!(blobs.len(), 2);
    // Flip a byte inside the large bundle's file, keeping its length; cut the other short.
    let mut bytes = std::fs::read(&blobs[0]).expect("read");
    bytes[100_000] ^= 0xff;
    std::fs::write(&blobs[0], &bytes).expect("write");
    let short = std::fs::read(&blobs[1]).expect("read");
    std::fs::write(&blobs[1], &short[..1000]).expect("write");
    std::fs::write(dir.path().join("blobs/00000000000000aa.part"), b"left over").expect("write");
    let before = snapshot(dir.path());

    let (code, stdout, _) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "files: 1 incomplete inserts, 0 orphan bundle files, 1 rows with a missing or damaged file\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("00000000000000aa.part"), "{stdout}");
    assert!(
        stdout.contains("row 4: 0000000000000001.bundle: the file is 1000 bytes, the row says"),
        "{stdout}"
    );
    assert!(stdout.contains("ipn:1.1/10/3 (store id 3): the stored bundle in"), "{stdout}");
    assert!(stdout.contains("is damaged: checksum mismatch"), "{stdout}");
    assert!(stdout.contains("the bundle's own check: CRC mismatch in block number 1"), "{stdout}");
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(snapshot(dir.path()), before, "a check changes nothing");

    let (code, stdout, _) = check(dir.path(), &["--repair"]);
    assert_eq!(code, Some(1), "wrong was found: {stdout}");
    assert!(stdout.contains("(to be removed)"), "{stdout}");
    assert!(
        stdout.contains("repair: removing 1 files and 1 rows; quarantining 1 damaged bundles"),
        "{stdout}"
    );
    assert!(!dir.path().join("blobs/00000000000000aa.part").exists());
    assert_eq!(blob_files(dir.path()), vec![blobs[0].clone()], "the damaged bundle is kept as evidence");

    let (code, stdout, _) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("files: 0 incomplete inserts, 0 orphan bundle files, 0 rows"), "{stdout}");
    assert!(stdout.contains("(store id 3): quarantined earlier: the stored bundle"), "{stdout}");
    assert!(stdout.contains("bundles: 3 checked"), "{stdout}");
    assert!(stdout.contains("1 invalid, 1 quarantined"), "{stdout}");
}

#[test]
fn no_store_no_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("holds no store (no store.sqlite)"), "{stderr}");
}

/// A store as a SIGKILL leaves it (its write-ahead log not checkpointed), with 64 bytes of its
/// log flipped in the middle: what SQLite would replay silently without 20-odd acknowledged
/// bundles.
#[test]
fn acknowledged_bundles_lost_in_a_damaged_log_are_reported() {
    let live = tempfile::tempdir().expect("tempdir");
    let crashed = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (store, _) =
            SqliteStore::open(live.path(), StoreConfig::default(), Arc::new(ManualClock::new(100)))
                .await
                .expect("open");
        for sequence in 0..40 {
            // One acknowledged (committed) insert after the other.
            store.insert(bundle(sequence, 300), BundleState::WaitingForRoute).await.expect("insert");
        }
        std::fs::create_dir(crashed.path().join("blobs")).expect("blobs");
        for name in ["store.sqlite", "store.sqlite-wal", "store.lock"] {
            std::fs::copy(live.path().join(name), crashed.path().join(name)).expect("copy");
        }
        store.close().await;
    });
    let wal = crashed.path().join("store.sqlite-wal");
    let mut log = std::fs::read(&wal).expect("log");
    let middle = log.len() / 2;
    for byte in &mut log[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    std::fs::write(&wal, &log).expect("write");

    let (code, stdout, _) = check(crashed.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("write-ahead log: the write-ahead log is damaged at frame"), "{stdout}");
    assert!(
        stdout.contains("committed (acknowledged) transactions after it cannot be replayed and are lost"),
        "{stdout}"
    );

    // The daemon's store says so too, and keeps the log as evidence.
    runtime.block_on(async {
        let (store, report) =
            SqliteStore::open(crashed.path(), StoreConfig::default(), Arc::new(ManualClock::new(100)))
                .await
                .expect("open");
        assert!(report.wal.lost_transactions >= 2, "{report:?}");
        assert_eq!(store.stats().lost_transactions, report.wal.lost_transactions);
        assert!(store.stats().bundles < 40, "SQLite replayed only part: {:?}", store.stats());
        store.close().await;
    });
    let evidence = std::fs::read_dir(crashed.path())
        .expect("list")
        .filter(|e| {
            e.as_ref().expect("entry").file_name().to_string_lossy().starts_with("store.sqlite-wal.damaged-")
        })
        .count();
    assert_eq!(evidence, 1, "the damaged log is kept");
}

/// A store written by the previous version (schema 2: no checksums, no record of handled
/// bundles) is checked as it is, without being upgraded.
#[test]
fn a_version_2_store_is_checked_without_being_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path());
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).expect("open");
    conn.execute_batch(
        "ALTER TABLE bundles DROP COLUMN checksum; DROP TABLE handled; PRAGMA user_version = 2;",
    )
    .expect("downgrade");
    drop(conn);
    let before = snapshot(dir.path());
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("bundles: 4 checked"), "{stdout}");
    assert_eq!(snapshot(dir.path()), before, "a check changes nothing, not even the schema");
}
