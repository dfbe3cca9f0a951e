//! Model-based property test of the store: random sequences of inserts (with duplicates),
//! state changes, deletes and close/reopen points, checked after every step against a plain
//! in-memory model.

use std::collections::BTreeMap;
use std::sync::Arc;

use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::store::{BundleState, DeleteReason, InsertOutcome, SqliteStore, StoreConfig, StoreError, StoreId};
use bpa::time::ManualClock;
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert { sequence: u64, large: bool, streamed: bool },
    SetState { pick: prop::sample::Index, state: u8 },
    Delete { pick: prop::sample::Index },
    DeleteMissing,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..12, any::<bool>(), any::<bool>()).prop_map(|(sequence, large, streamed)| Op::Insert { sequence, large, streamed }),
        3 => (any::<prop::sample::Index>(), 0u8..6).prop_map(|(pick, state)| Op::SetState { pick, state }),
        2 => any::<prop::sample::Index>().prop_map(|pick| Op::Delete { pick }),
        1 => Just(Op::DeleteMissing),
        1 => Just(Op::Reopen),
    ]
}

fn state(code: u8) -> BundleState {
    match code {
        0 => BundleState::WaitingForRoute,
        1 => BundleState::QueuedFor { neighbour: "ipn:5.0".into() },
        2 => BundleState::InFlight { neighbour: "ipn:6.0".into() },
        3 => BundleState::AwaitingCustody { neighbour: "ipn:5.0".into() },
        4 => BundleState::WaitingForApplication { endpoint: "ipn:2.1".into() },
        _ => BundleState::AwaitingReassembly { adu: "ipn:1.1 5 0".into() },
    }
}

fn bytes_of(sequence: u64, large: bool) -> Bytes {
    let len = if large { 3000 + sequence as usize } else { 10 + sequence as usize };
    BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), CreationTimestamp { time: 1_000, sequence }, 1_000_000)
        .payload(vec![sequence as u8; len])
        .build()
        .expect("valid")
        .encode()
        .into()
}

/// What the store should hold: sequence → (id, bytes, state).
type Model = BTreeMap<u64, (StoreId, Bytes, BundleState)>;

async fn check_all(store: &SqliteStore, model: &Model) {
    let listed = store.list(0, 1000).await.expect("list");
    assert_eq!(listed.len(), model.len());
    for meta in listed {
        let (id, bytes, state) = &model[&meta.bundle_id.creation.sequence];
        assert_eq!((meta.id, &meta.state), (*id, state));
        assert_eq!(&store.read(meta.id).await.expect("read"), bytes);
    }
    let bytes: u64 = model.values().map(|(_, b, _)| b.len() as u64).sum();
    assert_eq!((store.stats().bundles, store.stats().bytes), (model.len() as u64, bytes));
}

async fn open(dir: &std::path::Path) -> SqliteStore {
    let config = StoreConfig { inline_threshold: 2048, ..StoreConfig::default() };
    SqliteStore::open(dir, config, Arc::new(ManualClock::new(2_000))).await.expect("open").0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map(ops in proptest::collection::vec(op(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut store = open(dir.path()).await;
            let mut model = Model::new();
            for op in ops {
                match op {
                    Op::Insert { sequence, large, streamed } => {
                        let bytes = bytes_of(sequence, large);
                        let outcome = if streamed {
                            let mut pending = store.begin_insert().await.expect("begin");
                            for chunk in bytes.chunks(1000) {
                                pending.write(chunk).await.expect("write");
                            }
                            pending.commit(BundleState::WaitingForRoute).await.expect("commit")
                        } else {
                            store.insert(bytes.clone(), BundleState::WaitingForRoute).await.expect("insert")
                        };
                        match model.get(&sequence) {
                            Some((id, _, _)) => assert_eq!(outcome, InsertOutcome::Duplicate(*id)),
                            None => {
                                let InsertOutcome::Stored(id) = outcome else { panic!("{outcome:?} for a new bundle") };
                                model.insert(sequence, (id, bytes, BundleState::WaitingForRoute));
                            }
                        }
                    }
                    Op::SetState { pick, state: code } => {
                        if model.is_empty() { continue; }
                        let sequence = *model.keys().nth(pick.index(model.len())).expect("key");
                        let entry = model.get_mut(&sequence).expect("entry");
                        store.set_state(entry.0, state(code)).await.expect("set state");
                        entry.2 = state(code);
                    }
                    Op::Delete { pick } => {
                        if model.is_empty() { continue; }
                        let sequence = *model.keys().nth(pick.index(model.len())).expect("key");
                        let (id, bytes, _) = model.remove(&sequence).expect("entry");
                        let gone = store.delete(id, DeleteReason::Requested).await.expect("delete");
                        assert_eq!((gone.id, gone.length), (id, bytes.len() as u64));
                    }
                    Op::DeleteMissing => {
                        let missing = model.values().map(|(id, _, _)| *id).max().unwrap_or(0) + 1000;
                        assert!(matches!(store.delete(missing, DeleteReason::Requested).await, Err(StoreError::NotFound(_))));
                    }
                    Op::Reopen => {
                        store.close().await;
                        store = open(dir.path()).await;
                        check_all(&store, &model).await;
                    }
                }
            }
            check_all(&store, &model).await;
            store.close().await;
        });
    }
}
