//! Unit tests of the embedded store: every operation and every error, on a real SQLite
//! database in a temporary directory. Damage and quarantine are in `integrity.rs`; custody,
//! schema upgrades and fragments' identities in `custody.rs`.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::bundle::{BundleBuilder, BundleError, CreationTimestamp, Eid};
use crate::time::ManualClock;

mod custody;
mod integrity;

const NOW: u64 = 800_000_000_000;

fn bundle(sequence: u64, payload_len: usize) -> Bytes {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i as u64 * 7 + sequence) as u8).collect();
    BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 1),
        CreationTimestamp { time: NOW - 1000, sequence },
        60_000,
    )
    .payload(payload)
    .build()
    .unwrap()
    .encode()
    .into()
}

async fn open(dir: &std::path::Path, config: StoreConfig) -> (SqliteStore, RecoveryReport) {
    SqliteStore::open(dir, config, Arc::new(ManualClock::new(NOW))).await.unwrap()
}

fn small_inline() -> StoreConfig {
    StoreConfig { inline_threshold: 1024, ..StoreConfig::default() }
}

#[tokio::test]
async fn insert_get_read_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = open(dir.path(), small_inline()).await;
    assert_eq!(report, RecoveryReport::default());
    let bytes = bundle(1, 100);
    let id = match store.insert(bytes.clone(), BundleState::WaitingForRoute).await.unwrap() {
        InsertOutcome::Stored(id) => id,
        other => panic!("{other:?}"),
    };
    let meta = store.get(id).await.unwrap().unwrap();
    assert_eq!(meta.bundle_id.source, Eid::ipn(1, 1));
    assert_eq!(meta.bundle_id.creation, CreationTimestamp { time: NOW - 1000, sequence: 1 });
    assert_eq!(meta.destination, Eid::ipn(2, 1));
    assert_eq!(meta.received_at, NOW);
    assert_eq!(meta.expires_at, NOW - 1000 + 60_000);
    assert_eq!(meta.length, bytes.len() as u64);
    assert_eq!(meta.state, BundleState::WaitingForRoute);
    assert!(!meta.in_file);
    assert_eq!(store.read(id).await.unwrap(), bytes);
    assert_eq!(
        store.stats(),
        StoreStats { bundles: 1, bytes: bytes.len() as u64, quarantined: 0, lost_transactions: 0 }
    );
    assert_eq!(store.get(id + 100).await.unwrap(), None);
}

#[tokio::test]
async fn duplicates_are_detected_by_bundle_id() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let first = store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap();
    // Same source, timestamp and (no) fragment: a duplicate, whatever the payload.
    let again = store.insert(bundle(1, 20), BundleState::WaitingForRoute).await.unwrap();
    assert_eq!(again, InsertOutcome::Duplicate(first.id().unwrap()));
    assert_eq!(store.stats().bundles, 1);
    // Large duplicates leave no file behind either.
    let big = store.insert(bundle(1, 5000), BundleState::WaitingForRoute).await.unwrap();
    assert_eq!(big, InsertOutcome::Duplicate(first.id().unwrap()));
    assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);
    // Looked up by identity: the same source and timestamp, unfragmented, is found.
    let mut id =
        crate::bundle::Bundle::parse(&bundle(1, 10), &crate::bundle::ParseOptions::default()).unwrap().id();
    assert_eq!(store.find(&id).await.unwrap(), Some(first.id().unwrap()));
    id.fragment = Some(crate::bundle::FragmentId { offset: 0, length: 10, adu_length: 10 });
    assert_eq!(store.find(&id).await.unwrap(), None, "a fragment is another bundle");
    id.fragment = None;
    id.creation.sequence = 2;
    assert_eq!(store.find(&id).await.unwrap(), None);
}

#[tokio::test]
async fn large_bundles_live_in_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let bytes = bundle(2, 10_000);
    let id = store.insert(bytes.clone(), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let meta = store.get(id).await.unwrap().unwrap();
    assert!(meta.in_file);
    assert_eq!(store.read(id).await.unwrap(), bytes);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("blobs")).unwrap().collect();
    assert_eq!(files.len(), 1);
    store.delete(id, DeleteReason::Delivered).await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);
}

#[tokio::test]
async fn streaming_inserts_commit_or_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let bytes = bundle(3, 200_000);
    let mut pending = store.begin_insert().await.unwrap();
    for chunk in bytes.chunks(7_777) {
        pending.write(chunk).await.unwrap();
    }
    let id = pending.commit(BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    assert_eq!(store.read(id).await.unwrap(), bytes);
    // Abandoned half way: nothing stored, no file left.
    let other = bundle(4, 200_000);
    let mut pending = store.begin_insert().await.unwrap();
    pending.write(&other[..100_000]).await.unwrap();
    drop(pending);
    assert_eq!(store.stats().bundles, 1);
    assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1);
    // Committed before the end of the bundle: refused, nothing left.
    let mut pending = store.begin_insert().await.unwrap();
    pending.write(&other[..100_000]).await.unwrap();
    let err = pending.commit(BundleState::WaitingForRoute).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidBundle(BundleError::Cbor { .. })), "{err}");
    assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1);
    // Handed over buffer by buffer (`write_owned`, mixed with `write`): the same bytes, and each
    // buffer comes back empty for the next chunk.
    let mut pending = store.begin_insert().await.unwrap();
    let mut buffer = Vec::new();
    for (i, chunk) in other.chunks(9_999).enumerate() {
        if i % 3 == 0 {
            pending.write(chunk).await.unwrap();
        } else {
            buffer.extend_from_slice(chunk);
            pending.write_owned(&mut buffer).await.unwrap();
            assert!(buffer.is_empty());
        }
    }
    let id = pending.commit(BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    assert_eq!(store.read(id).await.unwrap(), other);
}

#[tokio::test]
async fn a_corrupt_streamed_bundle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let mut bytes = bundle(5, 50_000).to_vec();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    let mut pending = store.begin_insert().await.unwrap();
    pending.write(&bytes).await.unwrap();
    let err = pending.commit(BundleState::WaitingForRoute).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidBundle(BundleError::CrcMismatch { .. })), "{err}");
    assert_eq!(store.stats().bundles, 0);
    assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);
    // And given whole.
    let err = store.insert(bytes.into(), BundleState::WaitingForRoute).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidBundle(BundleError::CrcMismatch { .. })), "{err}");
    // Bytes past the end the header gives are refused as they come, not written.
    let good = bundle(6, 70_000);
    let mut pending = store.begin_insert().await.unwrap();
    pending.write(&good).await.unwrap();
    let err = pending.write(&vec![0u8; 1 << 20]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidBundle(BundleError::TrailingBytes { offset, count })
            if offset == good.len() && count == 1 << 20),
        "{err}"
    );
    let part: u64 = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(part <= good.len() as u64, "{part} bytes on disk");
}

#[tokio::test]
async fn states_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let a = store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let b = store
        .insert(bundle(2, 10), BundleState::QueuedFor { neighbour: "ipn:7.0".into() })
        .await
        .unwrap()
        .id()
        .unwrap();
    let c = store
        .insert(bundle(3, 10), BundleState::AwaitingCustody { neighbour: "ipn:7.0".into() })
        .await
        .unwrap()
        .id()
        .unwrap();
    let d = store
        .insert(bundle(4, 10), BundleState::WaitingForApplication { endpoint: "ipn:2.1".into() })
        .await
        .unwrap()
        .id()
        .unwrap();
    let ids = |v: Vec<StoredBundle>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(store.by_state(StateKind::WaitingForRoute, None, 0, 10).await.unwrap()), [a]);
    // A page after a cursor: nothing past the last.
    assert_eq!(
        ids(store.by_state(StateKind::WaitingForRoute, None, a, 10).await.unwrap()),
        Vec::<i64>::new()
    );
    assert_eq!(ids(store.by_state(StateKind::WaitingForRoute, None, a - 1, 10).await.unwrap()), [a]);
    assert_eq!(ids(store.by_state(StateKind::QueuedFor, Some("ipn:7.0"), 0, 10).await.unwrap()), [b]);
    assert_eq!(
        ids(store.by_state(StateKind::QueuedFor, Some("ipn:8.0"), 0, 10).await.unwrap()),
        Vec::<i64>::new()
    );
    assert_eq!(ids(store.by_neighbour("ipn:7.0", 10).await.unwrap()), [b, c]);
    assert_eq!(ids(store.by_destination(&Eid::ipn(2, 1), 10).await.unwrap()), [a, b, c, d]);
    assert_eq!(ids(store.by_destination(&Eid::ipn(9, 1), 10).await.unwrap()), Vec::<i64>::new());
    store.set_state(a, BundleState::InFlight { neighbour: "ipn:7.0".into() }).await.unwrap();
    assert_eq!(
        store.get(a).await.unwrap().unwrap().state,
        BundleState::InFlight { neighbour: "ipn:7.0".into() }
    );
    assert_eq!(ids(store.by_neighbour("ipn:7.0", 2).await.unwrap()), [a, b]);
    assert!(matches!(
        store.set_state(999, BundleState::AwaitingReassembly { adu: "ipn:1.1 5 0".into() }).await,
        Err(StoreError::NotFound(999))
    ));
    assert_eq!(ids(store.list(b, 10).await.unwrap()), [c, d]);
}

#[tokio::test]
async fn delete_says_what_left() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let bytes = bundle(1, 10);
    let id = store.insert(bytes.clone(), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let gone = store.delete(id, DeleteReason::Expired).await.unwrap();
    assert_eq!(gone.id, id);
    assert_eq!(gone.length, bytes.len() as u64);
    assert_eq!(store.get(id).await.unwrap(), None);
    assert_eq!(store.stats(), StoreStats::default());
    assert!(matches!(store.delete(id, DeleteReason::Requested).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.read(id).await, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn next_expiring_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let make = |sequence: u64, lifetime: u64| -> Bytes {
        BundleBuilder::new(
            Eid::ipn(1, 1),
            Eid::ipn(2, 1),
            CreationTimestamp { time: NOW, sequence },
            lifetime,
        )
        .payload(&b"x"[..])
        .build()
        .unwrap()
        .encode()
        .into()
    };
    let late = store.insert(make(1, 90_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let early = store.insert(make(2, 10_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    // No clock at the source: expiry from the Bundle Age block and the reception time.
    let no_clock: Bytes = BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 1),
        CreationTimestamp { time: 0, sequence: 3 },
        50_000,
    )
    .bundle_age(45_000)
    .payload(&b"y"[..])
    .build()
    .unwrap()
    .encode()
    .into();
    let aged = store.insert(no_clock, BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let order: Vec<(i64, u64)> =
        store.next_expiring(None, 10).await.unwrap().into_iter().map(|m| (m.id, m.expires_at)).collect();
    assert_eq!(order, [(aged, NOW + 5_000), (early, NOW + 10_000), (late, NOW + 90_000)]);
    // Paged with a cursor: after the first, the rest; after the last, nothing.
    let page: Vec<i64> =
        store.next_expiring(Some((NOW + 5_000, aged)), 10).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(page, [early, late]);
    assert!(store.next_expiring(Some((NOW + 90_000, late)), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn quotas_refuse_with_depleted_storage() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { max_bundles: 2, ..small_inline() };
    let (store, _) = open(dir.path(), config).await;
    store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap();
    store.insert(bundle(2, 10), BundleState::WaitingForRoute).await.unwrap();
    let err = store.insert(bundle(3, 10), BundleState::WaitingForRoute).await.unwrap_err();
    assert!(matches!(err, StoreError::DepletedStorage { bundles: 2, max_bundles: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("depleted storage"));
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    let one = bundle(1, 100);
    let config = StoreConfig { max_bytes: one.len() as u64 + 10, ..small_inline() };
    let (store, _) = open(dir.path(), config).await;
    store.insert(one, BundleState::WaitingForRoute).await.unwrap();
    let err = store.insert(bundle(2, 100), BundleState::WaitingForRoute).await.unwrap_err();
    assert!(matches!(err, StoreError::DepletedStorage { .. }), "{err}");
    // A streamed insert is refused as soon as its header shows it cannot fit.
    let big = bundle(3, 100_000);
    let mut pending = store.begin_insert().await.unwrap();
    let err = pending.write(&big[..4096]).await.unwrap_err();
    assert!(matches!(err, StoreError::DepletedStorage { .. }), "{err}");
    drop(pending);
    assert_eq!(store.stats().bundles, 1);
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let small = bundle(1, 10);
    let large = bundle(2, 10_000);
    let a = store
        .insert(small.clone(), BundleState::QueuedFor { neighbour: "n".into() })
        .await
        .unwrap()
        .id()
        .unwrap();
    let b = store.insert(large.clone(), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let stats = store.stats();
    store.close().await;
    let (store, report) = open(dir.path(), small_inline()).await;
    assert_eq!(report.orphan_files_removed + report.incomplete_inserts_removed, 0);
    assert_eq!(store.stats(), stats);
    assert_eq!(store.read(a).await.unwrap(), small);
    assert_eq!(store.read(b).await.unwrap(), large);
    assert_eq!(store.get(a).await.unwrap().unwrap().state, BundleState::QueuedFor { neighbour: "n".into() });
    // New files do not reuse the names of existing ones.
    let c = store.insert(bundle(3, 10_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    assert_eq!(store.read(b).await.unwrap(), large);
    assert_eq!(store.read(c).await.unwrap().len(), bundle(3, 10_000).len());
}

#[tokio::test]
async fn recovery_reconciles_rows_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let (store, _) = open(dir.path(), small_inline()).await;
    let kept = store.insert(bundle(1, 10_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let lost = store.insert(bundle(2, 10_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let damaged = store.insert(bundle(3, 10_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let file_of = |id: i64| -> std::path::PathBuf {
        let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
        blobs.join(
            conn.query_row("SELECT file FROM bundles WHERE id = ?1", [id], |r| r.get::<_, String>(0))
                .unwrap(),
        )
    };
    let (lost_file, damaged_file) = (file_of(lost), file_of(damaged));
    store.close().await;
    std::fs::remove_file(&lost_file).unwrap();
    std::fs::write(&damaged_file, b"short").unwrap();
    std::fs::write(blobs.join("00000000000000ff.bundle"), b"orphan").unwrap();
    std::fs::write(blobs.join("0000000000000100.part"), b"half").unwrap();
    std::fs::write(blobs.join("README"), b"not ours").unwrap();
    let (store, report) = open(dir.path(), small_inline()).await;
    assert_eq!(report.orphan_files_removed, 1);
    assert_eq!(report.incomplete_inserts_removed, 1);
    let rows: Vec<(i64, &str)> =
        report.rows_without_file.iter().map(|(id, _, p)| (*id, p.as_str())).collect();
    let damaged_problem = format!("the file is 5 bytes, the row says {}", bundle(3, 10_000).len());
    assert_eq!(rows, [(lost, "the file is missing"), (damaged, damaged_problem.as_str())]);
    assert!(
        report.to_string().starts_with("1 orphan bundle files removed, 1 incomplete inserts removed, 2 rows")
    );
    assert_eq!(store.stats().bundles, 1);
    assert!(store.get(kept).await.unwrap().is_some());
    assert!(store.get(lost).await.unwrap().is_none());
    let mut left: Vec<String> =
        std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"README".to_string()));
}

#[tokio::test]
async fn a_corrupt_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("store.sqlite"), vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(dir.path(), StoreConfig::default(), Arc::new(ManualClock::new(NOW)))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Database { .. }), "{text}");
    assert!(text.contains("store.sqlite") && text.contains("dtn store check"), "{text}");
}

#[tokio::test]
async fn one_process_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = open(dir.path(), StoreConfig::default()).await;
    let err = SqliteStore::open(dir.path(), StoreConfig::default(), Arc::new(ManualClock::new(NOW)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use by another process (a dtn daemon?)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let tasks: Vec<_> = (0..300u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.insert(bundle(i, 50), BundleState::WaitingForRoute).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap().unwrap(), InsertOutcome::Stored(_)));
    }
    assert_eq!(store.stats().bundles, 300);
    store.close().await;
    let (store, _) = open(dir.path(), small_inline()).await;
    assert_eq!(store.stats().bundles, 300);
}

/// What the agent will do, through the trait alone.
async fn through_the_trait<S: Store>(store: &S) {
    let bytes = bundle(42, 70_000);
    let mut pending = store.begin_insert().await.unwrap();
    for chunk in bytes.chunks(10_000) {
        StreamingInsert::write(&mut pending, chunk).await.unwrap();
    }
    let id = StreamingInsert::commit(pending, BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    store.set_state(id, BundleState::QueuedFor { neighbour: "ipn:9.0".into() }).await.unwrap();
    assert_eq!(store.by_neighbour("ipn:9.0", 5).await.unwrap().len(), 1);
    let BundleData::File { length, .. } = store.open_data(id).await.unwrap() else { panic!("inline") };
    assert_eq!(length, bytes.len() as u64);
    store.delete(id, DeleteReason::Forwarded { neighbour: "ipn:9.0".into() }).await.unwrap();
    assert_eq!(store.stats().bundles, 0);
}

#[tokio::test]
async fn the_trait_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    through_the_trait(&store).await;
}

#[tokio::test]
async fn store_ids_are_never_reused_even_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let first = store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    store.delete(first, DeleteReason::Requested).await.unwrap();
    let second = store.insert(bundle(2, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    assert!(second > first, "an acknowledgement by id must never reach a later bundle");
    store.delete(second, DeleteReason::Requested).await.unwrap();
    store.close().await;
    let (store, _) = open(dir.path(), small_inline()).await;
    let third = store.insert(bundle(3, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    assert!(third > second);
}

#[tokio::test]
async fn registrations_are_kept_and_forgotten_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let a: Eid = "ipn:1.5".parse().unwrap();
    let b: Eid = "dtn://n/mail".parse().unwrap();
    store.set_registration(&a, true).await.unwrap();
    store.set_registration(&b, true).await.unwrap();
    store.set_registration(&a, true).await.unwrap();
    assert_eq!(store.registrations().await.unwrap(), vec![a.clone(), b.clone()]);
    store.set_registration(&a, false).await.unwrap();
    store.close().await;
    let (store, _) = open(dir.path(), small_inline()).await;
    assert_eq!(store.registrations().await.unwrap(), vec![b]);
}

#[tokio::test]
async fn a_payload_is_opened_only_from_exactly_one_whole_bundle() {
    use crate::bundle::{CborProblem, ParseOptions};
    let options = ParseOptions::default();
    let good = bundle(1, 300);
    let (header, content) = BundleData::Inline(good.clone()).into_payload(&options).await.expect("whole");
    let PayloadContent::Memory(payload) = content else { panic!("inline stays in memory") };
    let expected: Vec<u8> = (0..300u64).map(|i| (i * 7 + 1) as u8).collect();
    assert_eq!(payload.as_ref(), expected.as_slice());
    assert_eq!(header.payload.bundle_length, good.len() as u64);
    // A damaged row (cut short after its header, or with bytes after the bundle) is an error,
    // never a slice past the end.
    let cut = good.slice(..good.len() - 10);
    let error = BundleData::Inline(cut).into_payload(&options).await.expect_err("cut");
    assert!(
        matches!(error, StoreError::InvalidBundle(BundleError::Cbor { problem: CborProblem::Truncated, .. })),
        "{error}"
    );
    let longer = Bytes::from([good.as_ref(), b"xyz"].concat());
    let error = BundleData::Inline(longer).into_payload(&options).await.expect_err("trailing");
    assert!(
        matches!(
            error,
            StoreError::InvalidBundle(BundleError::TrailingBytes { count: 3, offset })
                if offset == good.len()
        ),
        "{error}"
    );
    // The same from a file: header read, payload left to stream.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.bundle");
    std::fs::write(&path, &good).expect("write");
    let file = tokio::fs::File::open(&path).await.expect("open");
    let data = BundleData::File {
        file,
        length: good.len() as u64 + 1,
        path: path.clone(),
        integrity: crate::store::Integrity::unchecked(),
    };
    // A stored file that no longer matches its row is damage, not an invalid bundle.
    let error = data.into_payload(&options).await.expect_err("length disagrees");
    assert!(
        matches!(&error, StoreError::Damaged { problem, .. }
            if problem.contains("1 bytes follow the bundle's break stop code")),
        "{error}"
    );
    let file = tokio::fs::File::open(&path).await.expect("open");
    let data = BundleData::File {
        file,
        length: good.len() as u64,
        path,
        integrity: crate::store::Integrity::unchecked(),
    };
    let (_, content) = data.into_payload(&options).await.expect("whole file");
    let PayloadContent::File(mut reader) = content else { panic!("a file streams") };
    let mut payload = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut payload).await.expect("read");
    assert_eq!(payload, expected, "exactly the payload, nothing of the CRC or break");
}

/// A plain forwarding's record is answered once applied, before its batch's fsync, and made
/// durable with that batch: a change answered after it finds it committed, and so does the
/// store reopened. (A custodial one is answered once durable: `tests/custody.rs`.)
#[tokio::test]
async fn a_plain_forwarding_is_recorded_with_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    let id = store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    assert_eq!(store.begin_forward(id, "ipn:3.0", None).await.unwrap(), Forwarding::Plain);
    store.set_registration(&Eid::ipn(1, 1), true).await.unwrap();
    let in_flight = BundleState::InFlight { neighbour: "ipn:3.0".into() };
    assert_eq!(store.get(id).await.unwrap().unwrap().state, in_flight);
    assert!(matches!(store.begin_forward(999, "ipn:3.0", None).await, Err(StoreError::NotFound(999))));
    store.close().await;
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    assert_eq!(store.get(id).await.unwrap().unwrap().state, in_flight);
}
