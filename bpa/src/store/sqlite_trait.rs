//! The [`Store`] trait over the embedded [`SqliteStore`].

use std::future::Future;

use bytes::Bytes;

use super::*;
use crate::bundle::Eid;

impl StreamingInsert for PendingInsert {
    fn header(&self) -> Option<&crate::bundle::BundleHeader> {
        PendingInsert::header(self)
    }
    fn write(&mut self, chunk: &[u8]) -> impl Future<Output = Result<(), StoreError>> + Send {
        PendingInsert::write(self, chunk)
    }
    fn write_owned(&mut self, chunk: &mut Vec<u8>) -> impl Future<Output = Result<(), StoreError>> + Send {
        PendingInsert::write_owned(self, chunk)
    }
    fn commit(self, state: BundleState) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send {
        PendingInsert::commit(self, state)
    }
    fn commit_with(
        self,
        state: BundleState,
        custody: Option<CustodyIntake>,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send {
        PendingInsert::commit_with(self, state, custody)
    }
}

impl BundleStorage for SqliteStore {
    type Pending = PendingInsert;
    type Reservation = Reservation;
    fn insert(
        &self,
        encoded: Bytes,
        state: BundleState,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send {
        SqliteStore::insert(self, encoded, state)
    }
    fn insert_with(
        &self,
        encoded: Bytes,
        state: BundleState,
        custody: Option<CustodyIntake>,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send {
        SqliteStore::insert_with(self, encoded, state, custody)
    }
    fn begin_insert(&self) -> impl Future<Output = Result<PendingInsert, StoreError>> + Send {
        SqliteStore::begin_insert(self)
    }
    fn reserve(&self, bytes: u64) -> Result<Reservation, StoreError> {
        SqliteStore::reserve(self, bytes)
    }
    fn open_data(&self, id: StoreId) -> impl Future<Output = Result<BundleData, StoreError>> + Send {
        SqliteStore::open_data(self, id)
    }
}

impl MetadataStorage for SqliteStore {
    fn begin_forward(
        &self,
        id: StoreId,
        neighbour: &str,
        custody: Option<CustodyTiming>,
    ) -> impl Future<Output = Result<Forwarding, StoreError>> + Send {
        SqliteStore::begin_forward(self, id, neighbour, custody)
    }
    fn set_state(
        &self,
        id: StoreId,
        state: BundleState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        SqliteStore::set_state(self, id, state)
    }
    fn delete(
        &self,
        id: StoreId,
        reason: DeleteReason,
    ) -> impl Future<Output = Result<StoredBundle, StoreError>> + Send {
        SqliteStore::delete(self, id, reason)
    }
    fn get(&self, id: StoreId) -> impl Future<Output = Result<Option<StoredBundle>, StoreError>> + Send {
        SqliteStore::get(self, id)
    }
    fn find(
        &self,
        id: &crate::bundle::BundleId,
    ) -> impl Future<Output = Result<Option<StoreId>, StoreError>> + Send {
        SqliteStore::find(self, id)
    }
    fn known(&self, id: &crate::bundle::BundleId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        SqliteStore::known(self, id)
    }
    fn forget_handled(
        &self,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        SqliteStore::forget_handled(self, now, limit)
    }
    fn by_state(
        &self,
        kind: StateKind,
        argument: Option<&str>,
        after: StoreId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        SqliteStore::by_state(self, kind, argument, after, limit)
    }
    fn by_neighbour(
        &self,
        neighbour: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        SqliteStore::by_neighbour(self, neighbour, limit)
    }
    fn by_destination(
        &self,
        destination: &Eid,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        SqliteStore::by_destination(self, destination, limit)
    }
    fn next_expiring(
        &self,
        after: Option<(u64, StoreId)>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        SqliteStore::next_expiring(self, after, limit)
    }
    fn set_registration(
        &self,
        endpoint: &Eid,
        registered: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        SqliteStore::set_registration(self, endpoint, registered)
    }
    fn registrations(&self) -> impl Future<Output = Result<Vec<Eid>, StoreError>> + Send {
        SqliteStore::registrations(self)
    }
    fn list(
        &self,
        after: StoreId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send {
        SqliteStore::list(self, after, limit)
    }
    fn stats(&self) -> StoreStats {
        SqliteStore::stats(self)
    }
}

impl CustodyLedger for SqliteStore {
    fn custody_signalled(
        &self,
        neighbour: &str,
        effect: SignalEffect,
        ranges: Vec<(u64, u64)>,
    ) -> impl Future<Output = Result<SignalOutcome, StoreError>> + Send {
        SqliteStore::custody_signalled(self, neighbour, effect, ranges)
    }
    fn expire_custody(
        &self,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        SqliteStore::expire_custody(self, now, limit)
    }
    fn queue_signal(
        &self,
        peer: String,
        transmission_id: u64,
        disposition: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        SqliteStore::queue_signal(self, peer, transmission_id, disposition)
    }
    fn signals_sent(&self, sent: Vec<(String, u64)>) -> impl Future<Output = Result<(), StoreError>> + Send {
        SqliteStore::signals_sent(self, sent)
    }
    fn pending_signals(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingSignal>, StoreError>> + Send {
        SqliteStore::pending_signals(self, limit)
    }
    fn next_custody_deadline(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        SqliteStore::next_custody_deadline(self)
    }
    fn custody_info(
        &self,
        id: StoreId,
    ) -> impl Future<Output = Result<Option<CustodyInfo>, StoreError>> + Send {
        SqliteStore::custody_info(self, id)
    }
    fn custody_counts(&self) -> impl Future<Output = Result<CustodyCounts, StoreError>> + Send {
        SqliteStore::custody_counts(self)
    }
}

impl Reserved for Reservation {
    fn grow(&mut self, more: u64) -> Result<(), StoreError> {
        Reservation::grow(self, more)
    }
    fn bytes(&self) -> u64 {
        Reservation::bytes(self)
    }
}
