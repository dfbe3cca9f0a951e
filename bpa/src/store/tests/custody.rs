//! Custody's ledger in the store, the schema's upgrades, and fragments' identities.

use super::*;

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
    MetadataStorage::delete(&store, whole, DeleteReason::Forwarded { neighbour: "ipn:9.0".into() })
        .await
        .unwrap();
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
