//! The persistent bundle store (design §3 "durable before acknowledged", §5 "Store").
//!
//! Everything the agent keeps about a bundle lives here until the bundle leaves for a stated
//! reason: the encoded bundle itself, its identity, where it is going, when it expires and why it
//! is waiting. [`SqliteStore`] is the embedded default: SQLite (WAL, `synchronous=FULL`) for the
//! metadata and small bundles, one file per large bundle, and a single writer thread that
//! commits everything that arrived while the previous commit was on disk as one transaction
//! (group commit): one fsync for many callers, each answered only once its change is durable.

#[cfg(feature = "sqlite")]
mod blob;
mod custody;
#[cfg(feature = "sqlite")]
mod custody_sql;
mod data;
mod error;
mod integrity;
#[cfg(feature = "sqlite")]
mod recovery;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_trait;
#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests;
mod types;
#[cfg(feature = "sqlite")]
mod wal;
#[cfg(feature = "sqlite")]
mod writer;

#[cfg(feature = "sqlite")]
pub use blob::PendingInsert;
pub use custody::{
    CustodyCounts, CustodyInfo, CustodyIntake, CustodyTiming, Forwarding, PendingSignal, SignalEffect,
    SignalOutcome,
};
pub use data::{BundleData, OpenedBundle, PayloadContent};
pub use error::StoreError;
pub use integrity::{CheckedFile, DamagedBundle, Integrity, is_damage};
#[cfg(feature = "sqlite")]
pub use recovery::{RecoveryReport, Survey};
#[cfg(feature = "sqlite")]
pub use sqlite::{Ownership, Reservation, SqliteStore, StoreConfig};
pub use types::{BundleState, DeleteReason, InsertOutcome, StateKind, StoreId, StoreStats, StoredBundle};
#[cfg(feature = "sqlite")]
pub use wal::WalReport;

use std::future::Future;

use bytes::Bytes;

use crate::bundle::Eid;

/// What the agent needs of a bundle store: the bundles' bytes ([`BundleStorage`]), what is
/// known of each and why it waits ([`MetadataStorage`]), and the custody ledger
/// ([`CustodyLedger`]), split by what each keeps, as Hardy splits its storage. [`SqliteStore`]
/// is the embedded implementation of all three; a server-grade backend (PostgreSQL) can
/// implement the same. Every change is durable when its future resolves (design §3.3).
pub trait Store: BundleStorage + MetadataStorage + CustodyLedger {}

impl<T: BundleStorage + MetadataStorage + CustodyLedger> Store for T {}

/// The bundles' bytes: stored whole or streamed in (with the metadata that names them, in one
/// durable step), room held in the quota meanwhile, read back checked.
pub trait BundleStorage: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// An insert whose bytes arrive in chunks.
    type Pending: StreamingInsert;
    /// Stores a whole encoded bundle, or reports the duplicate already stored.
    fn insert(
        &self,
        encoded: Bytes,
        state: BundleState,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;
    /// Stores a whole encoded bundle, taking it in under custody when `custody` is given (see
    /// [`SqliteStore::insert_with`]).
    fn insert_with(
        &self,
        encoded: Bytes,
        state: BundleState,
        custody: Option<CustodyIntake>,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;
    /// Starts a streamed insert.
    fn begin_insert(&self) -> impl Future<Output = Result<Self::Pending, StoreError>> + Send;
    /// Room held in the quota for an insert under way.
    type Reservation: Reserved;
    /// Holds room in the quota for an insert under way, released when dropped.
    fn reserve(&self, bytes: u64) -> Result<Self::Reservation, StoreError>;
    /// The encoded bytes, whole or as a stream, checked against what was recorded at insert.
    fn open_data(&self, id: StoreId) -> impl Future<Output = Result<BundleData, StoreError>> + Send;
}

/// What is known of each stored bundle — its identity, its state (why it waits), where it is
/// going, when it expires — and of the bundles handled and the registrations; read a page at
/// a time, never a whole table.
pub trait MetadataStorage: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Records a bundle as on its way to a neighbour, custodially if it is custodial and
    /// `custody` is given. A custodial forwarding is durable when this resolves (its
    /// transmission ID must be before the PDU goes); a plain one may be answered once recorded
    /// and made durable with the next commit, as nothing depends on it surviving a crash.
    fn begin_forward(
        &self,
        id: StoreId,
        neighbour: &str,
        custody: Option<CustodyTiming>,
    ) -> impl Future<Output = Result<Forwarding, StoreError>> + Send;
    /// Changes why a bundle waits.
    fn set_state(
        &self,
        id: StoreId,
        state: BundleState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes a bundle for a stated reason.
    fn delete(
        &self,
        id: StoreId,
        reason: DeleteReason,
    ) -> impl Future<Output = Result<StoredBundle, StoreError>> + Send;
    /// What the store knows of one bundle.
    fn get(&self, id: StoreId) -> impl Future<Output = Result<Option<StoredBundle>, StoreError>> + Send;
    /// The store id of the bundle (or fragment) with this identity (RFC 9171 §5.9), if held.
    fn find(
        &self,
        id: &crate::bundle::BundleId,
    ) -> impl Future<Output = Result<Option<StoreId>, StoreError>> + Send;
    /// Whether a bundle with this identity is held, or was delivered or forwarded and is still
    /// remembered (design §3.7: exactly once).
    fn known(&self, id: &crate::bundle::BundleId) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Forgets up to `limit` records of handled bundles that expired by `now` (DTN ms).
    fn forget_handled(
        &self,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Bundles in a state (optionally naming one neighbour or endpoint), oldest first, with
    /// store ids after `after` (0: from the first): a page of at most `limit`.
    fn by_state(
        &self,
        kind: StateKind,
        argument: Option<&str>,
        after: StoreId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send;
    /// Bundles queued for, in flight to, or in custody with a neighbour.
    fn by_neighbour(
        &self,
        neighbour: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send;
    /// Bundles for a destination.
    fn by_destination(
        &self,
        destination: &Eid,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send;
    /// The bundles that expire first, after the cursor `(expires_at, store id)` if given.
    fn next_expiring(
        &self,
        after: Option<(u64, StoreId)>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send;
    /// Records or forgets a local application endpoint (persistent registrations).
    fn set_registration(
        &self,
        endpoint: &Eid,
        registered: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The registered local application endpoints.
    fn registrations(&self) -> impl Future<Output = Result<Vec<Eid>, StoreError>> + Send;
    /// Bundles in insertion order after store id `after`, a page at a time.
    fn list(
        &self,
        after: StoreId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBundle>, StoreError>> + Send;
    /// Totals.
    fn stats(&self) -> StoreStats;
}

/// The custody ledger (docs/custody.md): transmissions in custody with their deadlines, the
/// answers owed to other custodians, and the totals.
pub trait CustodyLedger: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Acts on a custody signal from `neighbour`.
    fn custody_signalled(
        &self,
        neighbour: &str,
        effect: SignalEffect,
        ranges: Vec<(u64, u64)>,
    ) -> impl Future<Output = Result<SignalOutcome, StoreError>> + Send;
    /// Custodial transmissions past their deadline wait for a route again.
    fn expire_custody(
        &self,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Queues an answer to another custodian's transmission.
    fn queue_signal(
        &self,
        peer: String,
        transmission_id: u64,
        disposition: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Forgets answered transmission IDs.
    fn signals_sent(&self, sent: Vec<(String, u64)>) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Transmission IDs owed an answer.
    fn pending_signals(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingSignal>, StoreError>> + Send;
    /// The earliest custodial retransmission deadline.
    fn next_custody_deadline(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// A bundle's custody.
    fn custody_info(
        &self,
        id: StoreId,
    ) -> impl Future<Output = Result<Option<CustodyInfo>, StoreError>> + Send;
    /// Custody totals.
    fn custody_counts(&self) -> impl Future<Output = Result<CustodyCounts, StoreError>> + Send;
}

/// A streamed insert: bytes in, then commit; dropping it leaves nothing behind.
pub trait StreamingInsert: Send {
    /// The bundle's header, once enough bytes arrived to parse it.
    fn header(&self) -> Option<&crate::bundle::BundleHeader>;
    /// Appends `chunk` to the bundle's bytes.
    fn write(&mut self, chunk: &[u8]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// As `write`, taking the bytes of `chunk` (left empty, with a spare buffer's capacity).
    fn write_owned(&mut self, chunk: &mut Vec<u8>) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores the bundle in `state`, durably, once its bytes are complete and checked.
    fn commit(self, state: BundleState) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;
    /// As `commit`, taking the bundle in under custody when `custody` is given.
    fn commit_with(
        self,
        state: BundleState,
        custody: Option<CustodyIntake>,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;
}

/// Room held in a store's quota for an insert under way (so concurrent inserts cannot together
/// overrun the quota before any commits); released when dropped.
pub trait Reserved: Send + std::fmt::Debug + 'static {
    /// Holds `more` bytes as well; refused as depleted storage when they do not fit.
    fn grow(&mut self, more: u64) -> Result<(), StoreError>;
    /// The bytes held.
    fn bytes(&self) -> u64;
}
