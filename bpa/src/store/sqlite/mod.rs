//! The embedded store: SQLite for rows and small bundles, files for large ones.
//!
//! `mod.rs` holds the store's shared state (quotas, reservations, the writer's and the
//! reader's handles) and its changes; `schema.rs` the schema and its upgrades; `open.rs` how a
//! store is opened, locked and recovered; `reader.rs` the reader thread and row decoding;
//! `queries.rs` the listings and checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use super::blob::{PendingInsert, store_whole};
use super::custody::{
    CustodyCounts, CustodyInfo, CustodyIntake, CustodyTiming, Forwarding, PendingSignal, SignalEffect,
    SignalOutcome,
};
use super::data::BundleData;
use super::error::StoreError;
use super::integrity::{Integrity, Quarantine};
use super::recovery::{RecoveryReport, Survey, recover};
use super::types::{BundleState, DeleteReason, InsertOutcome, StateKind, StoreId, StoreStats, StoredBundle};
use super::writer::{NewRow, RowData, WriteOp, Writer};
use crate::bundle::{BundleHeader, BundleId, Eid, FragmentId, ParseOptions};
use crate::time::Clock;

mod open;
mod queries;
mod reader;
mod schema;

pub(crate) use reader::read_row;
use reader::{ReadJob, collect};

/// The columns [`read_row`] reads, in order.
pub(crate) const ROW_COLUMNS: &str = "id, source, created, sequence, frag_offset, frag_length, destination, received_at, expires_at, length, \
     state, state_arg, file, frag_total";

/// What [`SqliteStore::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The store belonged to nobody (new, or made before stores recorded it): now to this node.
    First,
    /// It belongs to this node.
    Same,
    /// It belonged to `previous` and was adopted: this node's from now on.
    Adopted {
        /// The node it belonged to.
        previous: String,
    },
    /// It belongs to `owner`, another node: nothing was changed.
    Other {
        /// The node it belongs to.
        owner: String,
    },
}

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Bundles up to this many bytes are kept in the database; larger ones in their own files.
    pub inline_threshold: u64,
    /// Most bytes of bundles held; an insert beyond is refused as depleted storage.
    pub max_bytes: u64,
    /// Most bundles held; an insert beyond is refused as depleted storage.
    pub max_bundles: u64,
    /// How inserted bundles are parsed (the store reads their header for its index).
    pub parse: ParseOptions,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            inline_threshold: 64 * 1024,
            max_bytes: u64::MAX,
            max_bundles: u64::MAX,
            parse: ParseOptions::lenient(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    pub max_bytes: u64,
    pub max_bundles: u64,
}

/// Totals, written by the writer after each commit, read by anyone.
#[derive(Debug, Default)]
pub(crate) struct SharedStats(Mutex<StoreStats>);

impl SharedStats {
    pub fn get(&self) -> StoreStats {
        *crate::sync::lock(&self.0)
    }
    pub fn set(&self, stats: StoreStats) {
        *crate::sync::lock(&self.0) = stats;
    }
}

/// Room in the quota held for inserts under way (a streamed bundle from the moment its header
/// shows its length, an upload of unknown length as it grows), so concurrent inserts cannot
/// together overrun the quota on disk before any of them commits. Released when dropped.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    bytes: u64,
    bundles: u64,
}

impl Reservation {
    /// Holds `more` bytes as well; refused as depleted storage when they do not fit.
    pub fn grow(&mut self, more: u64) -> Result<(), StoreError> {
        self.inner.reserve_more(more, 0)?;
        self.bytes += more;
        Ok(())
    }

    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = crate::sync::lock(&self.inner.reserved);
        held.0 = held.0.saturating_sub(self.bundles);
        held.1 = held.1.saturating_sub(self.bytes);
    }
}

/// State shared by the store handle, pending inserts and the writer.
#[derive(Debug)]
pub(crate) struct Inner {
    pub config: StoreConfig,
    pub db_path: PathBuf,
    pub blobs_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub stats: Arc<SharedStats>,
    next_blob: AtomicU64,
    requests: Mutex<Option<Sender<WriteOp>>>,
    /// Work for the reader thread ([`run_reader`]).
    reads: Mutex<Option<Sender<ReadJob>>>,
    /// Joined by [`SqliteStore::close`]: its connection, the last to close, checkpoints the
    /// log into the database, which must be done before the store counts as closed.
    reader_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Bundles and bytes reserved by inserts under way ([`Reservation`]).
    reserved: Mutex<(u64, u64)>,
    /// What the write-ahead log showed at open.
    pub wal: super::wal::WalReport,
    /// The database has the `checksum` column (schema 3); a version 2 store opened read-only
    /// by `dtn store check` has not, and its bundles are checked by their own CRCs only.
    has_checksums: bool,
    /// Held for the store's life: one process per data directory.
    _lock: std::fs::File,
}

impl Inner {
    pub fn next_blob_number(&self) -> u64 {
        self.next_blob.fetch_add(1, Ordering::Relaxed)
    }

    /// Holds room for one bundle of `needed` bytes, counting what is stored and what other
    /// inserts under way hold; refused as depleted storage when it does not fit.
    pub fn reserve(self: &Arc<Self>, needed: u64) -> Result<Reservation, StoreError> {
        self.reserve_more(needed, 1)?;
        Ok(Reservation { inner: Arc::clone(self), bytes: needed, bundles: 1 })
    }

    fn reserve_more(&self, bytes: u64, bundles: u64) -> Result<(), StoreError> {
        let s = self.stats.get();
        let mut held = crate::sync::lock(&self.reserved);
        let in_use_bundles = s.bundles.saturating_add(held.0);
        let in_use_bytes = s.bytes.saturating_add(held.1);
        if in_use_bundles.saturating_add(bundles) > self.config.max_bundles
            || in_use_bytes.saturating_add(bytes) > self.config.max_bytes
        {
            return Err(StoreError::DepletedStorage {
                needed_bytes: bytes,
                bundles: in_use_bundles,
                max_bundles: self.config.max_bundles,
                bytes: in_use_bytes,
                max_bytes: self.config.max_bytes,
            });
        }
        held.0 += bundles;
        held.1 += bytes;
        Ok(())
    }

    /// Marks a bundle damaged (see [`super::integrity`]); the writer does it with its next
    /// batch. Nobody waits: the reader that found the damage fails at once.
    pub fn quarantine(&self, id: StoreId, problem: String) {
        let guard = crate::sync::lock(&self.requests);
        match guard.as_ref() {
            Some(sender) if sender.send(WriteOp::Quarantine { id, problem: problem.clone() }).is_ok() => {}
            _ => {
                tracing::error!(store_id = id, %problem, "a damaged bundle could not be quarantined: the store is closed")
            }
        }
    }

    async fn submit<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let guard = crate::sync::lock(&self.requests);
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(op(tx)).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn insert_row(
        &self,
        header: &BundleHeader,
        length: u64,
        data: RowData,
        state: BundleState,
        checksum: u32,
        custody: Option<CustodyIntake>,
    ) -> Result<InsertOutcome, StoreError> {
        let p = &header.primary;
        let received_at = self.clock.now_dtn_ms();
        let age = header.extension_blocks.iter().find_map(|b| {
            (b.block_type == crate::bundle::block_type::BUNDLE_AGE).then(|| b.bundle_age().ok()).flatten()
        });
        // RFC 9171 §4.3.1: the lifetime counts from creation; without a clock, from the
        // creation instant the Bundle Age block implies.
        let created_at =
            if p.creation.time != 0 { p.creation.time } else { received_at.saturating_sub(age.unwrap_or(0)) };
        let row = NewRow {
            source: p.source.to_string(),
            created: p.creation.time,
            sequence: p.creation.sequence,
            fragment: p.fragment.map(|f| FragmentId {
                offset: f.offset,
                length: header.payload.data_length,
                adu_length: f.total_adu_length,
            }),
            destination: p.destination.to_string(),
            received_at,
            expires_at: created_at.saturating_add(p.lifetime),
            length,
            state,
            data,
            checksum,
        };
        self.submit(|reply| WriteOp::Insert { row, custody, reply }).await
    }

    /// Runs `f` on the reader thread.
    fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> {
        let (tx, rx) = oneshot::channel();
        let db_path = self.db_path.clone();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(
                f(conn).map_err(|source| StoreError::Database { path: db_path, source: source.into() }),
            );
        });
        let sent = match crate::sync::lock(&self.reads).as_ref() {
            Some(reads) => reads.send(job).map_err(drop),
            None => Err(()),
        };
        async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }
}

/// Maps SQLite's error to the store's, naming the database file.
fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Database { path: path.to_path_buf(), source: source.into() }
}

/// The embedded store. Cheap to clone; every clone talks to the same writer.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Stores a whole encoded bundle; answers once it is durable. A bundle with the same ID
    /// already stored gives [`InsertOutcome::Duplicate`] and nothing is written.
    pub async fn insert(&self, encoded: Bytes, state: BundleState) -> Result<InsertOutcome, StoreError> {
        self.insert_with(encoded, state, None).await
    }

    /// [`SqliteStore::insert`], taking the bundle in under custody when `custody` is given: it
    /// is made custodial, and the custody signal answering its previous custodian queued (a
    /// duplicate or a bundle already handled answers "redundant", a full store "depleted
    /// storage"), in the transaction that stores it.
    pub async fn insert_with(
        &self,
        encoded: Bytes,
        state: BundleState,
        custody: Option<CustodyIntake>,
    ) -> Result<InsertOutcome, StoreError> {
        let header = BundleHeader::parse(&encoded, &self.inner.config.parse)?.ok_or_else(|| {
            StoreError::InvalidBundle(
                crate::bundle::Bundle::parse(&encoded, &self.inner.config.parse)
                    .err()
                    .unwrap_or(crate::bundle::BundleError::MissingBreak { offset: encoded.len() }),
            )
        })?;
        // The header rules are checked; now the payload CRC and the end of the bundle.
        let mut check = crate::bundle::PayloadCheck::new(&header, &encoded);
        check.update(&encoded[header.payload.data_offset..]);
        check.finish()?;
        let length = encoded.len() as u64;
        let _room = match self.inner.reserve(length) {
            Ok(room) => room,
            Err(error) => {
                // A full store still knows what it holds or handled: a copy is a duplicate,
                // not a refusal (and, under custody, answered "redundant").
                let bundle_id = header.id();
                let outcome = match self.find(&bundle_id).await? {
                    Some(id) => Some(InsertOutcome::Duplicate(id)),
                    None if self.known(&bundle_id).await? => Some(InsertOutcome::AlreadyHandled),
                    None => None,
                };
                if let Some(CustodyIntake { from: Some((peer, tid)) }) = custody {
                    let disposition = match outcome {
                        Some(_) => super::custody_sql::REDUNDANT,
                        None => super::custody_sql::DEPLETED_STORAGE,
                    };
                    self.queue_signal(peer, tid, disposition).await?;
                }
                return outcome.ok_or(error);
            }
        };
        let checksum = super::integrity::extend(0, &encoded);
        let data = store_whole(&self.inner, encoded).await?;
        let file = match &data {
            RowData::File(name) => Some(self.inner.blobs_dir.join(name)),
            RowData::Inline(_) => None,
        };
        let outcome = self.inner.insert_row(&header, length, data, state, checksum, custody).await;
        if let Some(path) = file
            && !matches!(outcome, Ok(InsertOutcome::Stored(_)))
        {
            let _ = tokio::fs::remove_file(path).await;
        }
        outcome
    }

    /// Starts an insert whose bytes arrive in chunks.
    pub async fn begin_insert(&self) -> Result<PendingInsert, StoreError> {
        PendingInsert::begin(Arc::clone(&self.inner)).await
    }

    /// Changes why a bundle is waiting; answers once durable.
    pub async fn set_state(&self, id: StoreId, state: BundleState) -> Result<(), StoreError> {
        self.inner.submit(|reply| WriteOp::SetState { id, state, reply }).await
    }

    /// Removes a bundle for a stated reason (logged); answers once durable, with what it was.
    pub async fn delete(&self, id: StoreId, reason: DeleteReason) -> Result<StoredBundle, StoreError> {
        self.inner.submit(|reply| WriteOp::Delete { id, reason, reply }).await
    }

    /// Records a bundle as on its way to `neighbour`: awaiting custody under a new transmission
    /// ID when it is custodial and `custody` is given, in flight otherwise. A custodial
    /// forwarding is answered once durable, so a custody signal arriving the moment the PDU is
    /// out finds the transmission; a plain one once applied, durable with its batch (nothing
    /// rests on it surviving a crash: a restart puts bundles in flight back to wait).
    pub async fn begin_forward(
        &self,
        id: StoreId,
        neighbour: &str,
        custody: Option<CustodyTiming>,
    ) -> Result<Forwarding, StoreError> {
        let neighbour = neighbour.to_string();
        self.inner.submit(|reply| WriteOp::BeginForward { id, neighbour, custody, reply }).await
    }

    /// A custody signal from `neighbour` for `ranges` of transmission IDs: the bundles awaiting
    /// custody from it under those IDs are deleted (released) or wait for a route again
    /// (refused). IDs naming nothing under way are counted, not acted on.
    pub async fn custody_signalled(
        &self,
        neighbour: &str,
        effect: SignalEffect,
        ranges: Vec<(u64, u64)>,
    ) -> Result<SignalOutcome, StoreError> {
        let neighbour = neighbour.to_string();
        self.inner.submit(|reply| WriteOp::Signalled { neighbour, effect, ranges, reply }).await
    }

    /// Custodial transmissions whose deadline passed by `now` (at most `limit`) wait for a route
    /// again; returns how many.
    pub async fn expire_custody(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        self.inner.submit(|reply| WriteOp::ExpireCustody { now, limit, reply }).await
    }

    /// Queues the answer `disposition` to `peer`'s transmission `transmission_id`.
    pub async fn queue_signal(
        &self,
        peer: String,
        transmission_id: u64,
        disposition: u64,
    ) -> Result<(), StoreError> {
        self.inner.submit(|reply| WriteOp::QueueSignal { peer, transmission_id, disposition, reply }).await
    }

    /// Forgets answered transmission IDs.
    pub async fn signals_sent(&self, sent: Vec<(String, u64)>) -> Result<(), StoreError> {
        self.inner.submit(|reply| WriteOp::SignalsSent { sent, reply }).await
    }

    /// Up to `limit` transmission IDs owed an answer, by peer and disposition.
    pub async fn pending_signals(&self, limit: usize) -> Result<Vec<PendingSignal>, StoreError> {
        self.inner.read(move |c| super::custody_sql::pending_signals(c, limit)).await
    }

    /// The earliest custodial retransmission deadline.
    pub async fn next_custody_deadline(&self) -> Result<Option<u64>, StoreError> {
        self.inner.read(super::custody_sql::next_deadline).await
    }

    /// A bundle's custody (`None` if it is not held).
    pub async fn custody_info(&self, id: StoreId) -> Result<Option<CustodyInfo>, StoreError> {
        self.inner.read(move |c| super::custody_sql::info(c, id)).await
    }

    /// Custody totals.
    pub async fn custody_counts(&self) -> Result<CustodyCounts, StoreError> {
        self.inner.read(super::custody_sql::counts).await
    }

    /// What the store knows about one bundle.
    pub async fn get(&self, id: StoreId) -> Result<Option<StoredBundle>, StoreError> {
        let row = self
            .inner
            .read(move |c| {
                c.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM bundles WHERE id = ?1"))?
                    .query_row([id], read_row)
                    .optional()
            })
            .await?;
        row.map(|r| r.map(|(meta, _)| meta)).transpose()
    }

    /// The store id of the bundle (or fragment) with this identity, if held.
    pub async fn find(&self, id: &BundleId) -> Result<Option<StoreId>, StoreError> {
        let (source, creation, fragment) = (id.source.to_string(), id.creation, id.fragment);
        self.inner
            .read(move |c| {
                super::writer::find_identity(c, &source, creation.time, creation.sequence, fragment)
            })
            .await
    }

    /// The bundle's encoded bytes: inline ones whole, large ones as a file to stream. Either is
    /// checked against the checksum recorded at insert (inline ones now, files as they stream);
    /// a damaged bundle is quarantined and [`StoreError::Damaged`] returned.
    pub async fn open_data(&self, id: StoreId) -> Result<BundleData, StoreError> {
        self.open_checked(id, true).await
    }

    /// [`SqliteStore::open_data`]; `quarantine`: whether damage found is acted on (a check
    /// that only reports does not).
    async fn open_checked(&self, id: StoreId, quarantine: bool) -> Result<BundleData, StoreError> {
        let sql = if self.inner.has_checksums {
            "SELECT data, file, length, checksum FROM bundles WHERE id = ?1"
        } else {
            "SELECT data, file, length, NULL FROM bundles WHERE id = ?1"
        };
        let found = self
            .inner
            .read(move |c| {
                c.prepare_cached(sql)?
                    .query_row([id], |r| {
                        Ok((
                            r.get::<_, Option<Vec<u8>>>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                        ))
                    })
                    .optional()
            })
            .await?;
        let Some((data, file, length, checksum)) = found else { return Err(StoreError::NotFound(id)) };
        // Stored as the u32's bits.
        let checksum = checksum.map(|c| c as u32);
        let integrity = if quarantine {
            Integrity::recorded(checksum, Arc::clone(&self.inner) as Arc<dyn Quarantine>, id)
        } else {
            checksum.map_or_else(Integrity::unchecked, Integrity::expecting)
        };
        match (data, file) {
            (Some(data), _) => {
                let path = format!("{} (row {id})", self.inner.db_path.display());
                integrity.check(&data, &path).map_err(|error| StoreError::Damaged {
                    path: self.inner.db_path.clone(),
                    problem: error.to_string(),
                })?;
                Ok(BundleData::Inline(Bytes::from(data)))
            }
            (None, Some(name)) => {
                let path = self.inner.blobs_dir.join(name);
                let file = tokio::fs::File::open(&path).await.map_err(StoreError::io("opening", &path))?;
                let found =
                    file.metadata().await.map_err(StoreError::io("reading the size of", &path))?.len();
                if found != length as u64 {
                    return Err(StoreError::BlobLength { path, expected: length as u64, found });
                }
                Ok(BundleData::File { file, length: length as u64, path, integrity })
            }
            (None, None) => Err(StoreError::CorruptRow { id, problem: "neither data nor file".into() }),
        }
    }

    /// Whether this node holds a bundle with this identity, or delivered or forwarded one and
    /// still remembers it (design §3.7).
    pub async fn known(&self, id: &BundleId) -> Result<bool, StoreError> {
        let (source, creation, fragment) = (id.source.to_string(), id.creation, id.fragment);
        self.inner
            .read(move |c| {
                let (time, sequence) = (creation.time, creation.sequence);
                Ok(super::writer::find_identity(c, &source, time, sequence, fragment)?.is_some()
                    || super::writer::was_handled(c, &source, time, sequence, fragment)?)
            })
            .await
    }

    /// Forgets up to `limit` handled bundles that expired by `now` (DTN ms); returns how many.
    pub async fn forget_handled(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        self.inner.submit(|reply| WriteOp::ForgetHandled { now, limit, reply }).await
    }

    /// Holds room in the quota for an insert under way (see [`Reservation`]).
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, StoreError> {
        self.inner.reserve(bytes)
    }

    /// Quarantines a bundle (`dtn store check --repair`); done once the store is closed.
    pub fn quarantine(&self, id: StoreId, problem: String) {
        self.inner.quarantine(id, problem);
    }

    /// What the write-ahead log showed when the store opened.
    pub fn wal_report(&self) -> &super::wal::WalReport {
        &self.inner.wal
    }

    /// How many bundles and bytes the store holds.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.get()
    }

    /// Stops accepting changes, lets the writer finish what it has, and waits for it.
    pub async fn close(self) {
        let sender = crate::sync::lock(&self.inner.requests).take();
        drop(sender);
        let thread = crate::sync::lock(&self.inner.writer_thread).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Then the reader: its connection is the last, and closing it checkpoints the log. A
        // caller that reopens, copies or checks the store next finds it settled.
        let reads = crate::sync::lock(&self.inner.reads).take();
        drop(reads);
        let thread = crate::sync::lock(&self.inner.reader_thread).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Quarantine for Inner {
    fn quarantine(&self, id: StoreId, problem: String) {
        Inner::quarantine(self, id, problem);
    }
}
