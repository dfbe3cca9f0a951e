//! `dtn store check` on real stores: a sound one, and one damaged behind the store's back.

use std::process::Command;
use std::sync::Arc;

use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::store::{BundleState, SqliteStore, StoreConfig};
use bpa::time::ManualClock;

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
        for (sequence, len) in [(1, 10), (2, 100), (3, 200_000)] {
            store.insert(bundle(sequence, len), BundleState::WaitingForRoute).await.expect("insert");
        }
        store.close().await;
    });
}

fn check(dir: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dtn"))
        .args(["store", "check", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run dtn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_sound_store_checks_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path());
    let (code, stdout, stderr) = check(dir.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("recovery: 0 orphan bundle files removed, 0 incomplete inserts removed, 0 rows"),
        "{stdout}"
    );
    assert!(stdout.contains("database: integrity check ok"), "{stdout}");
    assert!(stdout.contains("bundles: 3 checked"), "{stdout}");
}

#[test]
fn damage_is_found_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path());
    // Flip a byte inside the large bundle's file, keeping its length.
    let blob = std::fs::read_dir(dir.path().join("blobs"))
        .expect("blobs")
        .next()
        .expect("one file")
        .expect("entry")
        .path();
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[100_000] ^= 0xff;
    std::fs::write(&blob, &bytes).expect("write");
    std::fs::write(dir.path().join("blobs/00000000000000aa.part"), b"left over").expect("write");
    let (code, stdout, _) = check(dir.path());
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("1 incomplete inserts removed"), "{stdout}");
    assert!(stdout.contains("ipn:1.1/10/3 (store id 3): CRC mismatch in block number 1"), "{stdout}");
    assert!(stdout.contains("bundles: 3 checked"), "{stdout}");
    assert!(stdout.contains("1 invalid"), "{stdout}");
}

#[test]
fn no_store_no_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("holds no store (no store.sqlite)"), "{stderr}");
}
