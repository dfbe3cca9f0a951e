//! No error swallowed (issue 13, item 6): a store whose deletes fail cannot make expiry spin,
//! and every failure is logged once with the bundle's store id and counted.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bpa::agent::{Agent, AgentConfig};
use bpa::bundle::{BundleFlags, BundleId, Eid};
use bpa::store::{
    BundleData, BundleState, BundleStorage, CustodyCounts, CustodyInfo, CustodyIntake, CustodyLedger,
    CustodyTiming, DeleteReason, Forwarding, InsertOutcome, MetadataStorage, PendingSignal, Reservation,
    SignalEffect, SignalOutcome, SqliteStore, StateKind, StoreConfig, StoreError, StoreId, StoreStats,
    StoredBundle,
};
use bpa::time::ManualClock;
use bytes::Bytes;

/// The embedded store, with deletes that fail while `failing` is set (a disk gone read-only).
#[derive(Debug, Clone)]
struct FailingDeletes {
    store: SqliteStore,
    failing: Arc<AtomicBool>,
    /// Bundles put back to wait for a route wait until this says `true`.
    waits: tokio::sync::watch::Receiver<bool>,
}

impl BundleStorage for FailingDeletes {
    type Pending = <SqliteStore as BundleStorage>::Pending;
    type Reservation = <SqliteStore as BundleStorage>::Reservation;
    fn insert(
        &self,
        encoded: Bytes,
        state: BundleState,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send {
        BundleStorage::insert(&self.store, encoded, state)
    }
    fn insert_with(
        &self,
        encoded: Bytes,
        state: BundleState,
        custody: Option<CustodyIntake>,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send {
        BundleStorage::insert_with(&self.store, encoded, state, custody)
    }
    fn begin_insert(&self) -> impl Future<Output = Result<Self::Pending, StoreError>> + Send {
        BundleStorage::begin_insert(&self.store)
    }
    fn reserve(&self, bytes: u64) -> Result<Reservation, StoreError> {
        BundleStorage::reserve(&self.store, bytes)
    }
    fn open_data(&self, id: StoreId) -> impl Future<Output = Result<BundleData, StoreError>> + Send {
        BundleStorage::open_data(&self.store, id)
    }
}

impl MetadataStorage for FailingDeletes {
    fn begin_forward(
        &self,
        id: StoreId,
        neighbour: &str,
        custody: Option<CustodyTiming>,
    ) -> impl Future<Output = Result<Forwarding, StoreError>> + Send {
        MetadataStorage::begin_forward(&self.store, id, neighbour, custody)
    }
    fn set_state(
        &self,
        id: StoreId,
        state: BundleState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let store = self.store.clone();
        let mut waits = self.waits.clone();
        async move {
            if state == BundleState::WaitingForRoute {
                let _ = waits.wait_for(|open| *open).await;
            }
            MetadataStorage::set_state(&store, id, state).await
        }
    }
    fn delete(
        &self,
        id: StoreId,
        reason: DeleteReason,
    ) -> impl Future<Output = Result<StoredBundle, StoreError>> + Send {
        let failing = self.failing.load(Ordering::Relaxed);
        let store = self.store.clone();
        async move {
            if failing {
                return Err(StoreError::CommitFailed {
                    path: "store.sqlite".into(),
                    message: "disk I/O error".into(),
                });
            }
            MetadataStorage::delete(&store, id, reason).await
        }
    }
    fn get(&self, id: StoreId) -> impl Future<Output = Result<Option<StoredBundle>, StoreError>> + Send {
        MetadataStorage::get(&self.store, id)
    }
    fn find(&self, id: &BundleId) -> impl Future<Output = Result<Option<StoreId>, StoreError>> + Send {
        MetadataStorage::find(&self.store, id)
    }
    fn known(&self, id: &BundleId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        MetadataStorage::known(&self.store, id)
    }
    fn forget_handled(
        &self,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        MetadataStorage::forget_handled(&self.store, now, limit)
    }
    fn by_state(
        &self,
        kind: StateKind,
        argument: Option<&str>,
        after: StoreId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        MetadataStorage::by_state(&self.store, kind, argument, after, limit)
    }
    fn by_neighbour(
        &self,
        neighbour: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        MetadataStorage::by_neighbour(&self.store, neighbour, limit)
    }
    fn by_destination(
        &self,
        destination: &Eid,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        MetadataStorage::by_destination(&self.store, destination, limit)
    }
    fn next_expiring(
        &self,
        after: Option<(u64, StoreId)>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        MetadataStorage::next_expiring(&self.store, after, limit)
    }
    fn set_registration(
        &self,
        endpoint: &Eid,
        registered: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        MetadataStorage::set_registration(&self.store, endpoint, registered)
    }
    fn registrations(&self) -> impl Future<Output = Result<Vec<Eid>, StoreError>> + Send {
        MetadataStorage::registrations(&self.store)
    }
    fn list(
        &self,
        after: StoreId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        MetadataStorage::list(&self.store, after, limit)
    }
    fn stats(&self) -> StoreStats {
        MetadataStorage::stats(&self.store)
    }
}

impl CustodyLedger for FailingDeletes {
    fn custody_signalled(
        &self,
        neighbour: &str,
        effect: SignalEffect,
        ranges: Vec<(u64, u64)>,
    ) -> impl Future<Output = Result<SignalOutcome, StoreError>> + Send {
        CustodyLedger::custody_signalled(&self.store, neighbour, effect, ranges)
    }
    fn expire_custody(
        &self,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        CustodyLedger::expire_custody(&self.store, now, limit)
    }
    fn queue_signal(
        &self,
        peer: String,
        transmission_id: u64,
        disposition: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        CustodyLedger::queue_signal(&self.store, peer, transmission_id, disposition)
    }
    fn signals_sent(&self, sent: Vec<(String, u64)>) -> impl Future<Output = Result<(), StoreError>> + Send {
        CustodyLedger::signals_sent(&self.store, sent)
    }
    fn pending_signals(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingSignal>, StoreError>> + Send {
        CustodyLedger::pending_signals(&self.store, limit)
    }
    fn next_custody_deadline(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        CustodyLedger::next_custody_deadline(&self.store)
    }
    fn custody_info(
        &self,
        id: StoreId,
    ) -> impl Future<Output = Result<Option<CustodyInfo>, StoreError>> + Send {
        CustodyLedger::custody_info(&self.store, id)
    }
    fn custody_counts(&self) -> impl Future<Output = Result<CustodyCounts, StoreError>> + Send {
        CustodyLedger::custody_counts(&self.store)
    }
}

#[tokio::test]
async fn expiry_with_failing_deletes_ends_logs_and_counts_and_later_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(800_000_000_000));
    let dyn_clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let (store, _) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&dyn_clock)).await.expect("store");
    let failing = Arc::new(AtomicBool::new(true));
    let (_waits, waits) = tokio::sync::watch::channel(true);
    let store = FailingDeletes { store, failing: Arc::clone(&failing), waits };
    let agent = Agent::new(AgentConfig::new(Eid::ipn(1, 0)), store, dyn_clock);
    // 600 bundles (more than a page) for a node nobody reaches, with a 1 s lifetime.
    for i in 0..600u64 {
        agent
            .send(Eid::ipn(1, 1), Eid::ipn(9, 1), Bytes::from(format!("b{i}")), 1_000, BundleFlags::default())
            .await
            .expect("send");
    }
    clock.advance(2_000);
    // Returns (the old loop asked for the same expired bundles for ever).
    let expired = tokio::time::timeout(std::time::Duration::from_secs(60), agent.expire())
        .await
        .expect("expiry ends")
        .expect("expiry runs");
    assert_eq!(expired, 0);
    assert_eq!(agent.stats().store_errors, 600, "each failure counted once");
    assert_eq!(agent.store().stats().bundles, 600, "nothing lost: they stay");
    failing.store(false, Ordering::Relaxed);
    assert_eq!(agent.expire().await.expect("expiry runs"), 600);
    assert_eq!(agent.store().stats().bundles, 0);
    assert_eq!(agent.stats().expired, 600);
}

/// A bundle a link could not take (too big, and not to be fragmented) waits for a route again
/// while a neighbour's new link comes up. The new link's queue reads the store while the old
/// send still holds the bundle and passes it over; once the old send has put it back, the new
/// queue reads again — the bundle does not wait for something else to change.
#[tokio::test]
async fn a_bundle_put_back_while_its_neighbour_came_up_again_is_sent_on_the_new_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn bpa::time::Clock> = Arc::new(ManualClock::new(800_000_000_000));
    let (store, _) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&clock)).await.expect("store");
    let (release, waits) = tokio::sync::watch::channel(false);
    let store = FailingDeletes { store, failing: Arc::new(AtomicBool::new(false)), waits };
    let a = Agent::new(AgentConfig::new(Eid::ipn(1, 0)), store, Arc::clone(&clock));
    let b = bpa::testing::TestNode::new(AgentConfig::new(Eid::ipn(3, 0)), clock).await;
    let (small, _switch) = bpa::cla::memory::MemoryLink::new(b.agent.clone());
    a.neighbour_up(Eid::ipn(3, 0), Arc::new(small.with_max_bundle_size(1_000))).await.expect("up");
    let flags = BundleFlags(BundleFlags::MUST_NOT_FRAGMENT);
    let payload = Bytes::from(vec![7u8; 5_000]);
    a.send(Eid::ipn(1, 1), Eid::ipn(3, 1), payload, 3_600_000, flags).await.expect("send");
    bpa::testing::eventually("the small link could not take it", || a.stats().too_big == 1).await;
    // Its send is still putting it back (held); a link that takes it whole comes up, and its
    // queue reads the store and finds it held.
    let (whole, _switch) = bpa::cla::memory::MemoryLink::new(b.agent.clone());
    a.neighbour_up(Eid::ipn(3, 0), Arc::new(whole)).await.expect("up");
    bpa::testing::eventually("the new queue read and passed it over", || a.neighbours_settled()).await;
    assert_eq!(b.agent.store().stats().bundles, 0);
    release.send(true).expect("release");
    bpa::testing::eventually("it crossed on the new link", || b.agent.store().stats().bundles == 1).await;
    assert_eq!(a.stats().too_big, 1);
}
