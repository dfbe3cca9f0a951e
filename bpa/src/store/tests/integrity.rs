//! Damaged bytes never served, quarantine, what the store remembers of handled bundles, its
//! quotas under way, and its privacy.

use super::*;

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
