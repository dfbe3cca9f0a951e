//! Unit tests of the embedded store: every operation and every error, on a real SQLite
//! database in a temporary directory.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::bundle::{BundleBuilder, BundleError, CreationTimestamp, Eid};
use crate::time::ManualClock;

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
    Store::set_state(store, id, BundleState::QueuedFor { neighbour: "ipn:9.0".into() }).await.unwrap();
    assert_eq!(Store::by_neighbour(store, "ipn:9.0", 5).await.unwrap().len(), 1);
    let BundleData::File { length, .. } = Store::open_data(store, id).await.unwrap() else {
        panic!("inline")
    };
    assert_eq!(length, bytes.len() as u64);
    Store::delete(store, id, DeleteReason::Forwarded { neighbour: "ipn:9.0".into() }).await.unwrap();
    assert_eq!(Store::stats(store).bundles, 0);
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

/// The file a row's bundle lives in.
fn file_of(dir: &std::path::Path, id: i64) -> std::path::PathBuf {
    let conn = rusqlite::Connection::open(dir.join("store.sqlite")).unwrap();
    dir.join("blobs").join(
        conn.query_row("SELECT file FROM bundles WHERE id = ?1", [id], |r| r.get::<_, String>(0)).unwrap(),
    )
}

/// Waits for the writer to carry out a quarantine (nobody waits for it otherwise).
async fn settle(store: &SqliteStore) {
    store.set_registration(&Eid::ipn(9, 9), false).await.unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_a_file_fails_the_read_before_its_end_and_quarantines_the_bundle() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    // No payload CRC of its own: only the store's checksum can tell.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let bytes: Bytes = BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 1),
        CreationTimestamp { time: NOW, sequence: 9 },
        60_000,
    )
    .block_crc(crate::bundle::CrcType::None)
    .payload(payload.clone())
    .build()
    .unwrap()
    .encode()
    .into();
    let id = store.insert(bytes.clone(), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    // Sound: the payload streams whole.
    {
        let (_, content) =
            store.open_data(id).await.unwrap().into_payload(&Default::default()).await.unwrap();
        let PayloadContent::File(mut reader) = content else { panic!("a file") };
        let mut read = Vec::new();
        reader.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, payload);
    }
    // One byte flipped in the middle of the payload, the length unchanged.
    let path = file_of(dir.path(), id);
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[100_000] ^= 0x01;
    std::fs::write(&path, &on_disk).unwrap();
    let (_, content) = store.open_data(id).await.unwrap().into_payload(&Default::default()).await.unwrap();
    let PayloadContent::File(mut reader) = content else { panic!("a file") };
    let mut read = Vec::new();
    let error = reader.read_to_end(&mut read).await.expect_err("damage is found");
    assert!(is_damage(&error), "{error}");
    assert!(error.to_string().contains(&format!("store id {id}")), "{error}");
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
    assert!(read.len() < payload.len(), "the last bytes are never handed out");
    settle(&store).await;
    let meta = store.get(id).await.unwrap().unwrap();
    assert!(
        matches!(meta.state, BundleState::Quarantined { ref problem } if problem.contains("checksum mismatch"))
    );
    assert_eq!(store.stats().quarantined, 1);
    assert!(store.by_state(StateKind::WaitingForRoute, None, 0, 10).await.unwrap().is_empty());
    // Nothing moves it out of quarantine but a delete; the count survives a reopen.
    assert!(matches!(store.set_state(id, BundleState::WaitingForRoute).await, Err(StoreError::NotFound(_))));
    // Whole reads and forwarding reads fail the same way.
    let error = store.read(id).await.expect_err("damaged");
    assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
    let opened = store.open_data(id).await.unwrap().into_opened(&Default::default()).await.unwrap();
    let PayloadContent::File(mut rest) = opened.rest else { panic!("a file") };
    assert!(is_damage(&rest.read_to_end(&mut Vec::new()).await.expect_err("damaged")));
    drop((reader, rest));
    store.close().await;
    let (store, _) = open(dir.path(), small_inline()).await;
    assert_eq!(store.stats().quarantined, 1);
    store.delete(id, DeleteReason::Requested).await.unwrap();
    assert_eq!(store.stats(), StoreStats::default());
}

#[tokio::test]
async fn damaged_inline_bytes_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let id = store.insert(bundle(1, 300), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    // Damage inside the database's page, as a bad disk block would do it.
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
    let mut data: Vec<u8> =
        conn.query_row("SELECT data FROM bundles WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    data[200] ^= 0x10;
    conn.execute("UPDATE bundles SET data = ?1 WHERE id = ?2", rusqlite::params![data, id]).unwrap();
    drop(conn);
    let error = store.open_data(id).await.expect_err("damaged");
    assert!(
        matches!(&error, StoreError::Damaged { problem, .. } if problem.contains("checksum mismatch")),
        "{error}"
    );
    settle(&store).await;
    assert_eq!(store.stats().quarantined, 1);
    // `verify` (dtn store check) reports without acting.
    let problem = store.verify(id).await.unwrap().expect("a problem");
    assert!(problem.contains("checksum mismatch"), "{problem}");
}

#[tokio::test]
async fn delivered_and_forwarded_bundles_are_remembered_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let delivered = bundle(1, 100);
    let forwarded = bundle(2, 5_000);
    let requested = bundle(3, 100);
    let a = store.insert(delivered.clone(), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let b = store.insert(forwarded.clone(), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let c = store.insert(requested.clone(), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    store.delete(a, DeleteReason::Delivered).await.unwrap();
    store.delete(b, DeleteReason::Forwarded { neighbour: "ipn:5.0".into() }).await.unwrap();
    store.delete(c, DeleteReason::Requested).await.unwrap();
    store.close().await;
    // Across a restart: the same bundles again are handled already (whole and streamed) ...
    let (store, _) = open(dir.path(), small_inline()).await;
    assert_eq!(
        store.insert(delivered.clone(), BundleState::WaitingForRoute).await.unwrap(),
        InsertOutcome::AlreadyHandled
    );
    let mut pending = store.begin_insert().await.unwrap();
    pending.write(&forwarded).await.unwrap();
    let id = crate::bundle::Bundle::parse(&forwarded, &Default::default()).unwrap().id();
    assert!(store.known(&id).await.unwrap());
    assert_eq!(pending.commit(BundleState::WaitingForRoute).await.unwrap(), InsertOutcome::AlreadyHandled);
    // ... a bundle deleted on request is not (it was neither delivered nor forwarded).
    assert!(matches!(
        store.insert(requested, BundleState::WaitingForRoute).await.unwrap(),
        InsertOutcome::Stored(_)
    ));
    assert_eq!(store.stats().bundles, 1);
    // Forgotten once expired (lifetime 60 s from NOW - 1 s), a page at a time.
    assert_eq!(store.forget_handled(NOW, 100).await.unwrap(), 0);
    assert_eq!(store.forget_handled(NOW + 60_000, 1).await.unwrap(), 1);
    assert_eq!(store.forget_handled(NOW + 60_000, 100).await.unwrap(), 1);
    assert!(!store.known(&id).await.unwrap());
    assert!(matches!(
        store.insert(delivered, BundleState::WaitingForRoute).await.unwrap(),
        InsertOutcome::Stored(_)
    ));
}

#[tokio::test]
async fn the_quota_counts_inserts_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { max_bytes: 50_000, ..small_inline() };
    let (store, _) = open(dir.path(), config).await;
    let big = bundle(1, 30_000);
    let other = bundle(2, 30_000);
    let mut first = store.begin_insert().await.unwrap();
    first.write(&big[..1000]).await.unwrap();
    // The second one's header shows 30 kB more: refused before it writes anything more.
    let mut second = store.begin_insert().await.unwrap();
    let error = second.write(&other[..1000]).await.expect_err("over the quota");
    assert!(
        matches!(error, StoreError::DepletedStorage { needed_bytes, bytes, .. } if needed_bytes == other.len() as u64 && bytes == big.len() as u64),
        "{error}"
    );
    drop(second);
    // A reservation that grows (an upload of unknown length) is refused when it would not fit.
    let mut room = store.reserve(10_000).unwrap();
    assert!(matches!(room.grow(20_000), Err(StoreError::DepletedStorage { .. })));
    room.grow(5_000).unwrap();
    assert_eq!(room.bytes(), 15_000);
    drop(room);
    first.write(&big[1000..]).await.unwrap();
    first.commit(BundleState::WaitingForRoute).await.unwrap();
    assert!(matches!(
        store.insert(other, BundleState::WaitingForRoute).await,
        Err(StoreError::DepletedStorage { .. })
    ));
    // Released: what fits fits.
    assert!(store.reserve(10_000).is_ok());
}

#[tokio::test]
async fn the_store_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (store, _) = open(&data, small_inline()).await;
    let id = store.insert(bundle(1, 10_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("blobs")), 0o700);
    assert_eq!(mode(&data.join("store.sqlite")), 0o600);
    assert_eq!(mode(&data.join("store.sqlite-wal")), 0o600);
    assert_eq!(mode(&file_of(&data, id)), 0o600);
}

#[tokio::test]
async fn a_file_whose_header_no_longer_parses_is_quarantined_not_retried_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let id = store.insert(bundle(4, 10_000), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    let path = file_of(dir.path(), id);
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[5] ^= 0xff; // inside the primary block: its CRC fails
    std::fs::write(&path, &on_disk).unwrap();
    let error =
        store.open_data(id).await.unwrap().into_opened(&Default::default()).await.expect_err("damaged");
    assert!(
        matches!(&error, StoreError::Damaged { problem, .. } if problem.contains("no longer reads as stored")),
        "{error}"
    );
    settle(&store).await;
    assert!(matches!(store.get(id).await.unwrap().unwrap().state, BundleState::Quarantined { .. }));
    assert_eq!(store.stats().quarantined, 1);
}

fn intake(peer: &str, tid: u64) -> Option<CustodyIntake> {
    Some(CustodyIntake { from: Some((peer.to_string(), tid)) })
}

fn timing(now: u64) -> Option<CustodyTiming> {
    Some(CustodyTiming { now, round_trip_ms: 2_000, max_ms: 60_000, always: false })
}

#[tokio::test]
async fn custody_state_survives_a_reopen_and_the_transmission_counter_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    let id = store
        .insert_with(bundle(1, 10), BundleState::WaitingForRoute, intake("ipn:1.0", 7))
        .await
        .unwrap()
        .id()
        .unwrap();
    let plain = store.insert(bundle(2, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    assert_eq!(
        store.pending_signals(10).await.unwrap(),
        vec![PendingSignal { peer: "ipn:1.0".into(), transmission_id: 7, disposition: 0 }]
    );
    // A plain bundle goes plainly even when the neighbour takes custody.
    assert_eq!(store.begin_forward(plain, "ipn:3.0", timing(NOW)).await.unwrap(), Forwarding::Plain);
    let first = store.begin_forward(id, "ipn:3.0", timing(NOW)).await.unwrap();
    assert_eq!(first, Forwarding::Custodial { transmission_id: 1, deadline: NOW + 2_000, attempt: 1 });
    store.close().await;

    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    let meta = store.get(id).await.unwrap().unwrap();
    assert_eq!(meta.state, BundleState::AwaitingCustody { neighbour: "ipn:3.0".into() });
    let info = store.custody_info(id).await.unwrap().unwrap();
    assert_eq!(info, CustodyInfo { custodial: true, transmission: Some((1, NOW + 2_000)), attempts: 1 });
    assert_eq!(store.next_custody_deadline().await.unwrap(), Some(NOW + 2_000));
    assert_eq!(store.pending_signals(10).await.unwrap().len(), 1);
    assert_eq!(
        store.custody_counts().await.unwrap(),
        CustodyCounts { held: 1, outstanding: 1, signals_pending: 1 }
    );
    // Not yet due; then due: it waits for a route again, without a transmission.
    assert_eq!(store.expire_custody(NOW + 1_999, 10).await.unwrap(), 0);
    assert_eq!(store.expire_custody(NOW + 2_000, 10).await.unwrap(), 1);
    assert_eq!(store.get(id).await.unwrap().unwrap().state, BundleState::WaitingForRoute);
    assert_eq!(store.next_custody_deadline().await.unwrap(), None);
    // The next transmission has a new ID and waits twice as long.
    let second = store.begin_forward(id, "ipn:3.0", timing(NOW + 5_000)).await.unwrap();
    assert_eq!(second, Forwarding::Custodial { transmission_id: 2, deadline: NOW + 9_000, attempt: 2 });
    store.signals_sent(vec![("ipn:1.0".into(), 7)]).await.unwrap();
    assert!(store.pending_signals(10).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn signals_act_only_on_transmissions_to_their_sender_and_a_release_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    let custody = Some(CustodyIntake { from: None });
    let a = store
        .insert_with(bundle(1, 10), BundleState::WaitingForRoute, custody.clone())
        .await
        .unwrap()
        .id()
        .unwrap();
    let b =
        store.insert_with(bundle(2, 10), BundleState::WaitingForRoute, custody).await.unwrap().id().unwrap();
    store.begin_forward(a, "ipn:3.0", timing(NOW)).await.unwrap();
    store.begin_forward(b, "ipn:3.0", timing(NOW)).await.unwrap();
    // From another node: nothing.
    let other = store.custody_signalled("ipn:4.0", SignalEffect::Release, vec![(1, 2)]).await.unwrap();
    assert_eq!(other, SignalOutcome { matched: vec![], complete: true });
    // A refusal of the first: it waits again, still custodial.
    let refused = store.custody_signalled("ipn:3.0", SignalEffect::Refuse, vec![(1, 1)]).await.unwrap();
    assert_eq!(refused, SignalOutcome { matched: vec![a], complete: true });
    assert_eq!(store.get(a).await.unwrap().unwrap().state, BundleState::WaitingForRoute);
    assert!(store.custody_info(a).await.unwrap().unwrap().custodial);
    // A release naming both (and more): the second goes, remembered as handled.
    let released = store
        .custody_signalled("ipn:3.0", SignalEffect::Release, vec![(1, 1), (2, u64::MAX), (1, 3)])
        .await
        .unwrap();
    assert_eq!(released, SignalOutcome { matched: vec![b], complete: true }, "overlapping ranges act once");
    assert!(store.get(b).await.unwrap().is_none());
    let id = crate::bundle::Bundle::parse(&bundle(2, 10), &Default::default()).unwrap().id();
    assert!(store.known(&id).await.unwrap(), "a released bundle arriving again is a duplicate");
    store.close().await;
}

#[tokio::test]
async fn an_intake_answers_accepted_redundant_or_depleted_storage() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { max_bundles: 1, ..StoreConfig::default() };
    let (store, _) = open(dir.path(), config).await;
    let first =
        store.insert_with(bundle(1, 10), BundleState::WaitingForRoute, intake("ipn:1.0", 1)).await.unwrap();
    assert!(matches!(first, InsertOutcome::Stored(_)));
    let again =
        store.insert_with(bundle(1, 10), BundleState::WaitingForRoute, intake("ipn:1.0", 2)).await.unwrap();
    assert!(matches!(again, InsertOutcome::Duplicate(_)));
    let full = store.insert_with(bundle(2, 10), BundleState::WaitingForRoute, intake("ipn:1.0", 3)).await;
    assert!(matches!(full, Err(StoreError::DepletedStorage { .. })), "{full:?}");
    let answers: Vec<(u64, u64)> = store
        .pending_signals(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.transmission_id, p.disposition))
        .collect();
    assert_eq!(answers, vec![(1, 0), (2, 3), (3, 4)]);
    store.close().await;
}

#[tokio::test]
async fn a_version_3_store_is_upgraded_to_4_with_its_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    let id = store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    store.close().await;
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
    conn.execute_batch(DOWNGRADE_TO_4).unwrap();
    conn.execute_batch(
        "DROP INDEX bundles_custody_tid; DROP INDEX bundles_custody_deadline; DROP INDEX bundles_custodial;
         ALTER TABLE bundles DROP COLUMN custodial; ALTER TABLE bundles DROP COLUMN custody_tid;
         ALTER TABLE bundles DROP COLUMN custody_deadline; ALTER TABLE bundles DROP COLUMN custody_attempts;
         DROP TABLE custody_signals; DROP TABLE meta; PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(conn);
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    assert_eq!(store.get(id).await.unwrap().unwrap().state, BundleState::WaitingForRoute);
    assert!(!store.custody_info(id).await.unwrap().unwrap().custodial);
    assert_eq!(store.begin_forward(id, "ipn:3.0", timing(NOW)).await.unwrap(), Forwarding::Plain);
    store.close().await;
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 5);
}

/// Makes a version 5 database into the version 4 it would have been: no ADU length in the
/// identity, the ADU keys of fragments awaiting reassembly without it.
const DOWNGRADE_TO_4: &str = "
UPDATE bundles SET state_arg = substr(state_arg, 1, length(state_arg) - length(frag_total) - 1)
    WHERE state = 5;
DROP INDEX bundles_identity_5;
ALTER TABLE bundles DROP COLUMN frag_total;
CREATE UNIQUE INDEX bundles_identity ON bundles (source, created, sequence, frag_offset, frag_length);
CREATE TABLE handled_4 (source TEXT NOT NULL, created INTEGER NOT NULL, sequence INTEGER NOT NULL,
    frag_offset INTEGER NOT NULL, frag_length INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    outcome INTEGER NOT NULL, PRIMARY KEY (source, created, sequence, frag_offset, frag_length)) WITHOUT ROWID;
INSERT INTO handled_4 SELECT source, created, sequence, frag_offset, frag_length, expires_at, outcome FROM handled;
DROP TABLE handled;
ALTER TABLE handled_4 RENAME TO handled;
PRAGMA user_version = 4;
";

/// A fragment of an ADU of `total` bytes at `offset`, `len` bytes of payload.
fn fragment(offset: u64, len: usize, total: u64) -> Bytes {
    BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 1),
        CreationTimestamp { time: NOW - 1000, sequence: 9 },
        60_000,
    )
    .fragment(offset, total)
    .payload(vec![7u8; len])
    .build()
    .unwrap()
    .encode()
    .into()
}

#[tokio::test]
async fn a_version_4_store_is_upgraded_to_5_its_fragments_keyed_by_their_adu_length() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), small_inline()).await;
    let awaiting =
        |total: u64| BundleState::AwaitingReassembly { adu: format!("ipn:1.1 {} 9 {total}", NOW - 1000) };
    // One fragment inline, one in a file, both awaiting reassembly; a whole bundle handled.
    let small = store.insert(fragment(0, 100, 3000), awaiting(3000)).await.unwrap().id().unwrap();
    let large = store.insert(fragment(100, 2000, 3000), awaiting(3000)).await.unwrap().id().unwrap();
    assert!(store.get(large).await.unwrap().unwrap().in_file);
    let whole = store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap().id().unwrap();
    Store::delete(&store, whole, DeleteReason::Forwarded { neighbour: "ipn:9.0".into() }).await.unwrap();
    store.close().await;
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
    conn.execute_batch(DOWNGRADE_TO_4).unwrap();
    let old_key: String =
        conn.query_row("SELECT state_arg FROM bundles WHERE id = ?1", [small], |r| r.get(0)).unwrap();
    assert_eq!(old_key, format!("ipn:1.1 {} 9", NOW - 1000), "the version 4 key");
    drop(conn);

    let (store, _) = open(dir.path(), small_inline()).await;
    for id in [small, large] {
        let meta = store.get(id).await.unwrap().unwrap();
        assert_eq!(meta.state, awaiting(3000), "named by the new key");
        assert_eq!(meta.bundle_id.fragment.map(|f| f.adu_length), Some(3000));
    }
    // The same fragments again are duplicates; one claiming another ADU length is not.
    assert_eq!(
        store.insert(fragment(0, 100, 3000), awaiting(3000)).await.unwrap(),
        InsertOutcome::Duplicate(small)
    );
    let other = store.insert(fragment(0, 100, 999), awaiting(999)).await.unwrap();
    assert!(matches!(other, InsertOutcome::Stored(id) if id != small), "{other:?}");
    // The bundle remembered before the upgrade is still remembered.
    assert_eq!(
        store.insert(bundle(1, 10), BundleState::WaitingForRoute).await.unwrap(),
        InsertOutcome::AlreadyHandled
    );
    store.close().await;
}

#[tokio::test]
async fn fragments_that_contradict_each_other_on_the_adu_length_are_two_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    let forged = store.insert(fragment(0, 100, 1_000_000), BundleState::WaitingForRoute).await.unwrap();
    let genuine = store.insert(fragment(0, 100, 200), BundleState::WaitingForRoute).await.unwrap();
    let (InsertOutcome::Stored(forged), InsertOutcome::Stored(genuine)) = (forged, genuine) else {
        panic!("both stored: {forged:?} {genuine:?}");
    };
    assert_ne!(forged, genuine);
    let id = |total| {
        crate::bundle::Bundle::parse(&fragment(0, 100, total), &crate::bundle::ParseOptions::default())
            .unwrap()
            .id()
    };
    assert_eq!(store.find(&id(200)).await.unwrap(), Some(genuine));
    assert_eq!(store.find(&id(1_000_000)).await.unwrap(), Some(forged));
    assert_eq!(store.find(&id(300)).await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn a_signal_naming_more_transmissions_than_a_pass_takes_is_applied_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), StoreConfig::default()).await;
    let n = custody_sql::SIGNAL_PASS_LIMIT as u64 + 10;
    for i in 0..n {
        let id = store
            .insert_with(bundle(i, 1), BundleState::WaitingForRoute, Some(CustodyIntake { from: None }))
            .await
            .unwrap()
            .id()
            .unwrap();
        store.begin_forward(id, "ipn:3.0", timing(NOW)).await.unwrap();
    }
    let first = store.custody_signalled("ipn:3.0", SignalEffect::Release, vec![(1, n)]).await.unwrap();
    assert_eq!((first.matched.len(), first.complete), (custody_sql::SIGNAL_PASS_LIMIT, false));
    let second = store.custody_signalled("ipn:3.0", SignalEffect::Release, vec![(1, n)]).await.unwrap();
    assert_eq!((second.matched.len(), second.complete), (10, true));
    assert_eq!(store.stats().bundles, 0);
    store.close().await;
}
