//! The embedded store: SQLite for rows and small bundles, files for large ones.

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
use crate::bundle::{BundleHeader, BundleId, CreationTimestamp, Eid, FragmentId, ParseOptions};
use crate::time::Clock;

/// The schema this code writes; a database with another version is refused.
///
/// 2: store ids are never reused (AUTOINCREMENT), so an acknowledgement by id can never reach
/// a later bundle; registrations.
/// 3: a CRC-32C of every bundle's bytes (`checksum`, checked on every read); the bundles this
/// node delivered or forwarded, remembered until they expire (`handled`). A version 2 database
/// is upgraded in place (its bundles have no checksum).
/// 4: custody ([`super::custody`]): custody columns on `bundles`, the `custody_signals` owed
/// to other custodians, and `meta` (the custodial transmission counter).
/// 5: a fragment's identity includes the total ADU length it claims (`frag_total`, -1 for a
/// whole bundle), so contradictory fragments are kept apart ([`crate::bundle::BundleId`]).
/// Versions 2 to 4 are upgraded in place ([`upgrade_to_5`] fills `frag_total` in from the
/// fragments' own headers).
const SCHEMA_VERSION: i64 = 5;

/// Upgrades a version 2 database to 3 (the new table comes from [`SCHEMA`]).
const UPGRADE_FROM_2: &str = "ALTER TABLE bundles ADD COLUMN checksum INTEGER;";

/// Upgrades a version 4 (or 2, 3 once upgraded to 4) database's tables to 5: the identity
/// with the ADU length; `handled` is made again with it in its key (its fragments' lengths are
/// not known: -1, which matches any). [`upgrade_to_5`] fills in the held fragments'.
const UPGRADE_TO_5: &str = "
ALTER TABLE bundles ADD COLUMN frag_total INTEGER NOT NULL DEFAULT -1;
DROP INDEX IF EXISTS bundles_identity;
CREATE TABLE handled_5 (
    source TEXT NOT NULL,
    created INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    frag_offset INTEGER NOT NULL,
    frag_length INTEGER NOT NULL,
    frag_total INTEGER NOT NULL DEFAULT -1,
    expires_at INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    PRIMARY KEY (source, created, sequence, frag_offset, frag_length, frag_total)
) WITHOUT ROWID;
INSERT INTO handled_5 (source, created, sequence, frag_offset, frag_length, frag_total, expires_at, outcome)
    SELECT source, created, sequence, frag_offset, frag_length, -1, expires_at, outcome FROM handled;
DROP TABLE handled;
ALTER TABLE handled_5 RENAME TO handled;
";

/// The most of a stored fragment read to find its ADU length while upgrading.
const UPGRADE_HEADER_BYTES: usize = 1 << 20;

/// Fills in `frag_total` for the fragments held (read from each one's primary block) and names
/// those awaiting reassembly by the ADU key that includes it
/// ([`crate::agent::fragment::adu_key`]: the old key and the length). A fragment whose header
/// cannot be read keeps -1 (it waits to expire, as a damaged one would).
fn upgrade_to_5(conn: &mut Connection, db_path: &Path, blobs_dir: &Path) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(db_error(db_path))?;
    let rows: Vec<(i64, Option<Vec<u8>>, Option<String>)> = {
        let mut select = tx
            .prepare("SELECT id, substr(data, 1, ?1), file FROM bundles WHERE frag_offset <> -1")
            .map_err(db_error(db_path))?;
        select
            .query_map([UPGRADE_HEADER_BYTES as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(db_error(db_path))?
    };
    for (id, data, file) in rows {
        let head = match (data, file) {
            (Some(data), _) => data,
            (None, Some(file)) => {
                use std::io::Read as _;
                let mut head = Vec::new();
                let read = std::fs::File::open(blobs_dir.join(&file))
                    .and_then(|f| f.take(UPGRADE_HEADER_BYTES as u64).read_to_end(&mut head));
                if read.is_err() {
                    continue;
                }
                head
            }
            (None, None) => continue,
        };
        let total = BundleHeader::parse(&Bytes::from(head), &ParseOptions::lenient())
            .ok()
            .flatten()
            .and_then(|header| header.primary.fragment.map(|f| f.total_adu_length));
        let Some(total) = total else { continue };
        tx.execute(
            "UPDATE bundles SET frag_total = ?1, \
             state_arg = CASE WHEN state = ?2 THEN state_arg || ' ' || ?1 ELSE state_arg END WHERE id = ?3",
            rusqlite::params![super::writer::to_sql(total), StateKind::AwaitingReassembly as i64, id],
        )
        .map_err(db_error(db_path))?;
    }
    tx.commit().map_err(db_error(db_path))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bundles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    created INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    frag_offset INTEGER NOT NULL,
    frag_length INTEGER NOT NULL,
    destination TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    length INTEGER NOT NULL,
    state INTEGER NOT NULL,
    state_arg TEXT,
    data BLOB,
    file TEXT,
    checksum INTEGER,
    frag_total INTEGER NOT NULL DEFAULT -1,
    custodial INTEGER NOT NULL DEFAULT 0,
    custody_tid INTEGER,
    custody_deadline INTEGER,
    custody_attempts INTEGER NOT NULL DEFAULT 0,
    CHECK ((data IS NULL) <> (file IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS bundles_identity_5 ON bundles (source, created, sequence, frag_offset, frag_length, frag_total);
CREATE INDEX IF NOT EXISTS bundles_expiry ON bundles (expires_at);
CREATE INDEX IF NOT EXISTS bundles_state ON bundles (state, state_arg);
CREATE INDEX IF NOT EXISTS bundles_destination ON bundles (destination);
-- Recovery at open reads the rows with files (large bundles) only: a small index, not a scan.
CREATE INDEX IF NOT EXISTS bundles_files ON bundles (file) WHERE file IS NOT NULL;
CREATE TABLE IF NOT EXISTS registrations (
    endpoint TEXT PRIMARY KEY,
    registered_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS handled (
    source TEXT NOT NULL,
    created INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    frag_offset INTEGER NOT NULL,
    frag_length INTEGER NOT NULL,
    frag_total INTEGER NOT NULL DEFAULT -1,
    expires_at INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    PRIMARY KEY (source, created, sequence, frag_offset, frag_length, frag_total)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS handled_expiry ON handled (expires_at);
-- The node ID the store belongs to (one row): a daemon started with another is told.
CREATE TABLE IF NOT EXISTS owner (node_id TEXT NOT NULL);
";

/// Takes the data directory's lock (one daemon per store), or says who holds it.
fn take_lock(lock: &std::fs::File, dir: &Path, lock_path: &Path) -> Result<(), StoreError> {
    match lock.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => {
            Err(StoreError::Io { action: "locking", path: lock_path.to_path_buf(), source })
        }
    }
}

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
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn set(&self, stats: StoreStats) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = stats;
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
        let mut held = self.inner.reserved.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut held = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
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
        let guard = self.requests.lock().unwrap_or_else(|p| p.into_inner());
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
            let guard = self.requests.lock().unwrap_or_else(|p| p.into_inner());
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
        let sent = match self.reads.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(reads) => reads.send(job).map_err(drop),
            None => Err(()),
        };
        async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }
}

/// A read for the reader thread; it sends its own answer.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Most reads run in one read transaction.
const MAX_READ_BATCH: usize = 256;

/// The reader thread: reads run one after another on the store's read connection, and those
/// queued together (a neighbour coming up starts hundreds of forwards, each opening its
/// bundle) run in one read transaction — one WAL snapshot and one thread wake-up for the lot,
/// where a blocking-pool task per read cost a wake-up and a lock hand-off each.
fn run_reader(conn: Connection, jobs: std::sync::mpsc::Receiver<ReadJob>) {
    while let Some(batch) = super::writer::next_batch(&jobs, MAX_READ_BATCH) {
        // Without the transaction each read still runs, each with its own snapshot.
        let in_transaction = batch.len() > 1 && conn.execute_batch("BEGIN").is_ok();
        for job in batch {
            // A read that panicked answers nothing (its caller sees the store closed); the
            // thread carries on for the others.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn)));
        }
        if in_transaction {
            let _ = conn.execute_batch("COMMIT");
        }
    }
}

/// Decodes a row selected with [`ROW_COLUMNS`]; the outer error is SQLite's, the inner one a
/// row whose contents make no sense.
pub(crate) fn read_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<(StoredBundle, Option<String>), StoreError>> {
    let id: i64 = r.get(0)?;
    let source: String = r.get(1)?;
    let destination: String = r.get(6)?;
    let frag_offset: i64 = r.get(4)?;
    let frag_length: i64 = r.get(5)?;
    let frag_total: i64 = r.get(13)?;
    let state_code: i64 = r.get(10)?;
    let state_arg: Option<String> = r.get(11)?;
    let file: Option<String> = r.get(12)?;
    let (created, sequence): (i64, i64) = (r.get(2)?, r.get(3)?);
    let (received_at, expires_at, length): (i64, i64, i64) = (r.get(7)?, r.get(8)?, r.get(9)?);
    let corrupt = |problem: String| StoreError::CorruptRow { id, problem };
    let parsed = (|| {
        let source: Eid = source.parse().map_err(|e| corrupt(format!("source {source:?}: {e}")))?;
        let destination: Eid =
            destination.parse().map_err(|e| corrupt(format!("destination {destination:?}: {e}")))?;
        let kind =
            StateKind::from_code(state_code).ok_or_else(|| corrupt(format!("unknown state {state_code}")))?;
        let state = BundleState::from_parts(kind, state_arg.clone())
            .ok_or_else(|| corrupt(format!("state {state_code} with argument {state_arg:?}")))?;
        Ok(StoredBundle {
            id,
            bundle_id: BundleId {
                source,
                creation: CreationTimestamp { time: created as u64, sequence: sequence as u64 },
                fragment: (frag_offset != -1 || frag_length != -1).then_some(FragmentId {
                    offset: frag_offset as u64,
                    length: frag_length as u64,
                    adu_length: frag_total as u64,
                }),
            },
            destination,
            received_at: received_at as u64,
            expires_at: expires_at as u64,
            length: length as u64,
            state,
            in_file: file.is_some(),
        })
    })();
    Ok(parsed.map(|meta| (meta, file)))
}

fn collect(
    rows: Vec<Result<(StoredBundle, Option<String>), StoreError>>,
) -> Result<Vec<StoredBundle>, StoreError> {
    rows.into_iter().map(|r| r.map(|(meta, _)| meta)).collect()
}

/// The embedded store. Cheap to clone; every clone talks to the same writer.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Database { path: path.to_path_buf(), source: source.into() }
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(db_error(path))?;
    // WAL: readers never block the writer; FULL: every commit is fsync'd (design §3.3).
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_error(path))?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(db_error(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_error(path))?;
    Ok(conn)
}

/// Creates `dir` if needed, readable by its owner alone (0700): bundles are private data.
pub(crate) fn private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(StoreError::io("creating", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(StoreError::io("making private (0700)", dir))
}

/// Opens (creating if needed) a file readable by its owner alone (0600), whatever the umask.
pub(crate) fn private_file(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::io("opening", path))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(StoreError::io("making private (0600)", path))?;
    Ok(file)
}

/// Reads the write-ahead log before SQLite replays it; a loss is logged loudly and the log is
/// copied aside (`store.sqlite-wal.damaged-<DTN ms>`) as evidence before SQLite rewrites it.
fn inspect_wal(db_path: &Path, clock: &dyn Clock) -> Result<super::wal::WalReport, StoreError> {
    let wal_path = PathBuf::from(format!("{}-wal", db_path.display()));
    let report =
        super::wal::inspect(&wal_path).map_err(StoreError::io("reading the write-ahead log", &wal_path))?;
    if let Some(loss) = report.loss() {
        let evidence = PathBuf::from(format!("{}.damaged-{}", wal_path.display(), clock.now_dtn_ms()));
        let copied = std::fs::copy(&wal_path, &evidence);
        tracing::error!(
            %loss,
            evidence = %evidence.display(),
            copied = copied.is_ok(),
            "ACKNOWLEDGED BUNDLES MAY BE LOST: the store's write-ahead log is damaged"
        );
    }
    Ok(report)
}

/// A connection that cannot change the database (nor checkpoint its log).
fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_error(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_error(path))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store under `dir`, recovers it (design §5: rows and files
    /// reconciled, incomplete inserts discarded) and logs a one-line summary.
    pub async fn open(
        dir: impl AsRef<Path>,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(SqliteStore, RecoveryReport), StoreError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir, config, clock))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    fn open_blocking(
        dir: &Path,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(SqliteStore, RecoveryReport), StoreError> {
        let blobs_dir = dir.join("blobs");
        private_dir(dir)?;
        private_dir(&blobs_dir)?;
        let lock_path = dir.join("store.lock");
        let lock = private_file(&lock_path)?;
        take_lock(&lock, dir, &lock_path)?;
        let db_path = dir.join("store.sqlite");
        // SQLite gives its log and index the database file's mode: 0600 for all three.
        drop(private_file(&db_path)?);
        for suffix in ["-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", db_path.display()));
            if path.exists() {
                drop(private_file(&path)?);
            }
        }
        let wal = inspect_wal(&db_path, clock.as_ref())?;
        let mut conn =
            open_connection(&db_path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        let version: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_error(&db_path))?;
        match version {
            0 | SCHEMA_VERSION => {}
            2..=4 => {
                if version == 2 {
                    conn.execute_batch(UPGRADE_FROM_2).map_err(db_error(&db_path))?;
                }
                if version <= 3 {
                    conn.execute_batch(super::custody_sql::UPGRADE_FROM_3).map_err(db_error(&db_path))?;
                }
                conn.execute_batch(UPGRADE_TO_5).map_err(db_error(&db_path))?;
                upgrade_to_5(&mut conn, &db_path, &blobs_dir)?;
            }
            found => {
                return Err(StoreError::SchemaVersion { path: db_path, found, expected: SCHEMA_VERSION });
            }
        }
        conn.execute_batch(SCHEMA).map_err(db_error(&db_path))?;
        conn.execute_batch(super::custody_sql::SCHEMA).map_err(db_error(&db_path))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db_error(&db_path))?;
        let report = recover(&mut conn, &db_path, &blobs_dir, wal.clone())?;
        let store = Self::serve(dir, config, clock, Some(conn), wal, lock, report.next_blob_number, true)?;
        let stats = store.stats();
        tracing::info!(
            dir = %dir.display(),
            bundles = stats.bundles, bytes = stats.bytes, quarantined = stats.quarantined,
            orphan_files = report.orphan_files_removed,
            incomplete_inserts = report.incomplete_inserts_removed,
            missing_files = report.rows_without_file.len(),
            lost_transactions = stats.lost_transactions,
            "store opened"
        );
        Ok((store, report))
    }

    /// Opens a store to look at it without changing anything (`dtn store check`): no recovery
    /// (its survey says what recovery would do), no writer (every change fails as
    /// [`StoreError::Closed`]), damage found is reported but not quarantined, SQLite opened
    /// read-only. Its daemon must be stopped (the store's lock is taken).
    pub async fn open_read_only(
        dir: impl AsRef<Path>,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(SqliteStore, Survey), StoreError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let blobs_dir = dir.join("blobs");
            let lock_path = dir.join("store.lock");
            let lock = std::fs::File::open(&lock_path).map_err(StoreError::io("opening", &lock_path))?;
            take_lock(&lock, &dir, &lock_path)?;
            let db_path = dir.join("store.sqlite");
            let wal_path = PathBuf::from(format!("{}-wal", db_path.display()));
            let wal = super::wal::inspect(&wal_path)
                .map_err(StoreError::io("reading the write-ahead log", &wal_path))?;
            let conn = open_read_only(&db_path)?;
            let version: i64 =
                conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_error(&db_path))?;
            // A version 2 or 3 store is checked as it is (the daemon upgrades it when it starts).
            if !(2..=SCHEMA_VERSION).contains(&version) {
                return Err(StoreError::SchemaVersion {
                    path: db_path,
                    found: version,
                    expected: SCHEMA_VERSION,
                });
            }
            let survey = super::recovery::survey(&conn, &db_path, &blobs_dir)?;
            let checksums = version >= 3;
            let store =
                Self::serve(&dir, config, clock, None, wal, lock, survey.next_blob_number, checksums)?;
            Ok((store, survey))
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// The store's threads over a database already opened and recovered: a reader, and a writer
    /// on `writer` unless it is `None` (read-only).
    #[allow(clippy::too_many_arguments)]
    fn serve(
        dir: &Path,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        writer: Option<Connection>,
        wal: super::wal::WalReport,
        lock: std::fs::File,
        next_blob_number: u64,
        has_checksums: bool,
    ) -> Result<SqliteStore, StoreError> {
        let db_path = dir.join("store.sqlite");
        let blobs_dir = dir.join("blobs");
        let reader = match writer {
            Some(_) => open_connection(&db_path, OpenFlags::SQLITE_OPEN_READ_WRITE)?,
            None => open_read_only(&db_path)?,
        };
        let (bundles, bytes, quarantined): (i64, i64, i64) = reader
            .query_row(
                "SELECT count(*), coalesce(sum(length), 0), coalesce(sum(state = ?1), 0) FROM bundles",
                [StateKind::Quarantined as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_error(&db_path))?;
        let stats = Arc::new(SharedStats::default());
        stats.set(StoreStats {
            bundles: bundles as u64,
            bytes: bytes as u64,
            quarantined: quarantined as u64,
            lost_transactions: wal.lost_transactions,
        });
        let (reads, read_jobs) = std::sync::mpsc::channel();
        let reader_thread = std::thread::Builder::new()
            .name("store-reader".into())
            .spawn(move || run_reader(reader, read_jobs))
            .map_err(StoreError::io("starting the store reader for", &db_path))?;
        let (requests, writer_thread) = match writer {
            Some(conn) => {
                let last_tid = super::custody_sql::last_transmission_id(&conn).map_err(db_error(&db_path))?;
                let (tx, rx) = std::sync::mpsc::channel();
                let writer = Writer {
                    conn,
                    db_path: db_path.clone(),
                    blobs_dir: blobs_dir.clone(),
                    quota: Quota { max_bytes: config.max_bytes, max_bundles: config.max_bundles },
                    stats: Arc::clone(&stats),
                    last_tid,
                };
                let thread = std::thread::Builder::new()
                    .name("store-writer".into())
                    .spawn(move || writer.run(rx))
                    .map_err(StoreError::io("starting the store writer for", &db_path))?;
                (Some(tx), Some(thread))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            config,
            db_path,
            blobs_dir,
            clock,
            stats,
            next_blob: AtomicU64::new(next_blob_number),
            requests: Mutex::new(requests),
            reads: Mutex::new(Some(reads)),
            reader_thread: Mutex::new(Some(reader_thread)),
            writer_thread: Mutex::new(writer_thread),
            reserved: Mutex::new((0, 0)),
            wal,
            has_checksums,
            _lock: lock,
        });
        Ok(SqliteStore { inner })
    }

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
    /// ID when it is custodial and `custody` is given, in flight otherwise. Answers once durable,
    /// so a custody signal arriving the moment the PDU is out finds the transmission.
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

    /// The bundle's encoded bytes, whole in memory (for small bundles and tests).
    pub async fn read(&self, id: StoreId) -> Result<Bytes, StoreError> {
        self.open_data(id).await?.into_bytes().await
    }

    async fn query(
        &self,
        sql: String,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        let rows = self
            .inner
            .read(move |c| {
                let mut statement = c.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(params.iter()), read_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        collect(rows)
    }

    /// Bundles in a state of this kind (and, if given, naming this neighbour or endpoint),
    /// oldest first, with store ids after `after` (0: from the first): a page at a time.
    pub async fn by_state(
        &self,
        kind: StateKind,
        argument: Option<&str>,
        after: StoreId,
        limit: usize,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        let mut params = vec![Value::Integer(kind as i64), Value::Integer(after)];
        // Both index columns constrained, so a page is a range of the index (state, state_arg,
        // id) from the cursor on; with `state` alone SQLite would sort every row in the state
        // for each page. (A state that takes an argument, listed without one, is sorted so;
        // those are the small ones: in flight, queued, awaiting reassembly.)
        let filter = match argument {
            Some(arg) => {
                params.push(Value::Text(arg.to_string()));
                " AND state_arg = ?3"
            }
            None if kind == StateKind::WaitingForRoute => " AND state_arg IS NULL",
            None => "",
        };
        params.push(Value::Integer(limit.min(i64::MAX as usize) as i64));
        let limit_at = params.len();
        self.query(
            format!(
                "SELECT {ROW_COLUMNS} FROM bundles WHERE state = ?1 AND id > ?2{filter} ORDER BY id LIMIT ?{limit_at}"
            ),
            params,
        )
        .await
    }

    /// Bundles queued for, being sent to, or in custody with this neighbour.
    pub async fn by_neighbour(&self, neighbour: &str, limit: usize) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        self.query(
            format!("SELECT {ROW_COLUMNS} FROM bundles WHERE state IN (1, 2, 3) AND state_arg = ?1 ORDER BY id LIMIT ?2"),
            vec![Value::Text(neighbour.to_string()), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// Bundles for this destination EID.
    pub async fn by_destination(
        &self,
        destination: &Eid,
        limit: usize,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        self.query(
            format!("SELECT {ROW_COLUMNS} FROM bundles WHERE destination = ?1 ORDER BY id LIMIT ?2"),
            vec![Value::Text(destination.to_string()), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// The bundles that expire first, after the cursor `(expires_at, store id)` if given (a
    /// caller pages through them, whatever it could or could not do with the earlier ones).
    pub async fn next_expiring(
        &self,
        after: Option<(u64, StoreId)>,
        limit: usize,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        // Without a cursor, from the start: (-1, -1) sorts before every row.
        let (expires, id) = after.map_or((-1, -1), |(expires, id)| (expires.min(i64::MAX as u64) as i64, id));
        self.query(
            format!(
                "SELECT {ROW_COLUMNS} FROM bundles WHERE (expires_at, id) > (?1, ?2) ORDER BY expires_at, id LIMIT ?3"
            ),
            vec![Value::Integer(expires), Value::Integer(id), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// Every bundle, in insertion order, a page at a time.
    pub async fn list(&self, after: StoreId, limit: usize) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        self.query(
            format!("SELECT {ROW_COLUMNS} FROM bundles WHERE id > ?1 ORDER BY id LIMIT ?2"),
            vec![Value::Integer(after), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// SQLite's own consistency check of the database file (`PRAGMA integrity_check`): an
    /// empty list when it is sound, else what SQLite found.
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let lines = self
            .inner
            .read(|c| {
                let mut statement = c.prepare("PRAGMA integrity_check")?;
                let lines =
                    statement.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
                Ok(lines)
            })
            .await?;
        Ok(if lines == ["ok"] { Vec::new() } else { lines })
    }

    /// Reads a stored bundle through and checks it against the checksum recorded at insert and
    /// RFC 9171 §4 (lenient, as stored): `Ok(None)` when it is sound, `Ok(Some(problem))`
    /// naming what is wrong. Large bundles are streamed, not loaded. Changes nothing.
    pub async fn verify(&self, id: StoreId) -> Result<Option<String>, StoreError> {
        use tokio::io::AsyncReadExt;
        let options = &self.inner.config.parse;
        let (mut file, path, integrity) = match self.open_checked(id, false).await {
            Ok(BundleData::Inline(bytes)) => {
                return Ok(crate::bundle::Bundle::parse(&bytes, options).err().map(|e| e.to_string()));
            }
            Ok(BundleData::File { file, path, integrity, .. }) => (file, path, integrity),
            Err(StoreError::Damaged { problem, .. }) => return Ok(Some(problem)),
            Err(error) => return Err(error),
        };
        let read_error = |source| StoreError::Io { action: "reading", path: path.clone(), source };
        let (header, prefix) = match super::data::read_header(&mut file, options).await.map_err(read_error)? {
            Ok(found) => found,
            Err(error) => return Ok(Some(error.to_string())),
        };
        // The bundle's own checks over the payload, and the recorded checksum over it all.
        let mut check = crate::bundle::PayloadCheck::new(&header, &prefix);
        check.update(&prefix[header.payload.data_offset..]);
        let mut whole = super::integrity::extend(0, &prefix);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut chunk).await.map_err(read_error)?;
            if n == 0 {
                break;
            }
            check.update(&chunk[..n]);
            whole = super::integrity::extend(whole, &chunk[..n]);
        }
        let name = path.display().to_string();
        let own = check.finish().err();
        Ok(match (integrity.verdict(whole, &name), own) {
            (Ok(()), own) => own.map(|e| e.to_string()),
            (Err(damage), None) => Some(damage.to_string()),
            (Err(damage), Some(own)) => Some(format!("{damage}; the bundle's own check: {own}")),
        })
    }

    /// Whom the store belongs to, checked against `node_id` (a node ID's text): a new store is
    /// claimed for it; one that belongs to another node is left as it is and that node named
    /// ([`Ownership::Other`]) unless `adopt`, which makes it `node_id`'s from now on.
    pub async fn claim(&self, node_id: &str, adopt: bool) -> Result<Ownership, StoreError> {
        let owner: Option<String> = self
            .inner
            .read(|c| {
                // A read-only store of an older version has no such table: nobody owns it yet.
                match c.prepare_cached("SELECT node_id FROM owner LIMIT 1") {
                    Ok(mut statement) => statement.query_row([], |r| r.get(0)).optional(),
                    Err(_) => Ok(None),
                }
            })
            .await?;
        let outcome = match owner {
            Some(owner) if owner == node_id => return Ok(Ownership::Same),
            Some(owner) if !adopt => return Ok(Ownership::Other { owner }),
            Some(previous) => Ownership::Adopted { previous },
            None => Ownership::First,
        };
        let node_id = node_id.to_string();
        self.inner.submit(|reply| WriteOp::SetOwner { node_id, reply }).await?;
        Ok(outcome)
    }

    /// Records (`registered`) or forgets a local application endpoint; durable on return.
    pub async fn set_registration(&self, endpoint: &Eid, registered: bool) -> Result<(), StoreError> {
        let endpoint = endpoint.to_string();
        let at = self.inner.clock.now_dtn_ms();
        self.inner.submit(|reply| WriteOp::Registration { endpoint, registered, at, reply }).await
    }

    /// The registered local application endpoints, in registration order.
    pub async fn registrations(&self) -> Result<Vec<Eid>, StoreError> {
        let texts = self
            .inner
            .read(|c| {
                let mut statement = c.prepare_cached("SELECT endpoint FROM registrations ORDER BY rowid")?;
                let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        texts
            .into_iter()
            .map(|text| {
                text.parse::<Eid>()
                    .map_err(|e| StoreError::CorruptRegistration { problem: e.to_string(), endpoint: text })
            })
            .collect()
    }

    /// How many bundles and bytes the store holds.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.get()
    }

    /// Stops accepting changes, lets the writer finish what it has, and waits for it.
    pub async fn close(self) {
        let sender = self.inner.requests.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(sender);
        let thread = self.inner.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Then the reader: its connection is the last, and closing it checkpoints the log. A
        // caller that reopens, copies or checks the store next finds it settled.
        let reads = self.inner.reads.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(reads);
        let thread = self.inner.reader_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
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
