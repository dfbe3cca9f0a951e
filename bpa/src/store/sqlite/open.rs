//! Opening a store: the data directory's lock, the connections, the write-ahead log inspected
//! before SQLite replays it, the schema made or upgraded, and recovery (design §5).

use super::reader::run_reader;
use super::schema::{SCHEMA, SCHEMA_VERSION, UPGRADE_FROM_2, UPGRADE_TO_5, upgrade_to_5};
use super::*;

/// Takes the data directory's lock (one daemon per store), or says who holds it.
pub(super) fn take_lock(lock: &std::fs::File, dir: &Path, lock_path: &Path) -> Result<(), StoreError> {
    match lock.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => {
            Err(StoreError::Io { action: "locking", path: lock_path.to_path_buf(), source })
        }
    }
}

pub(super) fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(db_error(path))?;
    // WAL: readers never block the writer; FULL: every commit is fsync'd (design §3.3).
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_error(path))?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(db_error(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_error(path))?;
    Ok(conn)
}

/// Creates `dir` if needed, readable by its owner alone (0700): bundles are private data.
pub(super) fn private_dir(dir: &Path) -> Result<(), StoreError> {
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
pub(super) fn private_file(path: &Path) -> Result<std::fs::File, StoreError> {
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
pub(super) fn inspect_wal(
    db_path: &Path,
    clock: &dyn Clock,
) -> Result<crate::store::wal::WalReport, StoreError> {
    let wal_path = PathBuf::from(format!("{}-wal", db_path.display()));
    let report = crate::store::wal::inspect(&wal_path)
        .map_err(StoreError::io("reading the write-ahead log", &wal_path))?;
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
pub(super) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
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
                    conn.execute_batch(crate::store::custody_sql::UPGRADE_FROM_3)
                        .map_err(db_error(&db_path))?;
                }
                conn.execute_batch(UPGRADE_TO_5).map_err(db_error(&db_path))?;
                upgrade_to_5(&mut conn, &db_path, &blobs_dir)?;
            }
            found => {
                return Err(StoreError::SchemaVersion { path: db_path, found, expected: SCHEMA_VERSION });
            }
        }
        conn.execute_batch(SCHEMA).map_err(db_error(&db_path))?;
        conn.execute_batch(crate::store::custody_sql::SCHEMA).map_err(db_error(&db_path))?;
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
            let wal = crate::store::wal::inspect(&wal_path)
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
            let survey = crate::store::recovery::survey(&conn, &db_path, &blobs_dir)?;
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
        wal: crate::store::wal::WalReport,
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
                let last_tid =
                    crate::store::custody_sql::last_transmission_id(&conn).map_err(db_error(&db_path))?;
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
}
