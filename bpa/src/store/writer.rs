//! The one writer: group commit.
//!
//! Every change goes through one thread that owns the write connection. It takes everything
//! that is waiting, applies it in one transaction, commits (with `synchronous=FULL` in WAL mode
//! that is one fsync of the WAL), and only then answers each caller. While it commits, new
//! requests queue up and form the next batch, so the fsync rate, not the request rate, bounds
//! the number of commits.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::error::StoreError;
use super::sqlite::{Quota, SharedStats, read_row};
use super::types::{BundleState, DeleteReason, InsertOutcome, StoreId, StoredBundle};

/// Most requests applied in one transaction.
const MAX_BATCH: usize = 4096;

/// Where a new row's bytes are.
#[derive(Debug)]
pub(crate) enum RowData {
    Inline(Bytes),
    /// A blob file, already durable, by name.
    File(String),
}

/// A row to insert.
#[derive(Debug)]
pub(crate) struct NewRow {
    pub source: String,
    pub created: u64,
    pub sequence: u64,
    /// `(offset, payload length)` for fragments.
    pub fragment: Option<(u64, u64)>,
    pub destination: String,
    pub received_at: u64,
    pub expires_at: u64,
    pub length: u64,
    pub state: BundleState,
    pub data: RowData,
}

pub(crate) enum WriteOp {
    Insert {
        row: NewRow,
        reply: oneshot::Sender<Result<InsertOutcome, StoreError>>,
    },
    SetState {
        id: StoreId,
        state: BundleState,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Delete {
        id: StoreId,
        reason: DeleteReason,
        reply: oneshot::Sender<Result<StoredBundle, StoreError>>,
    },
    Registration {
        endpoint: String,
        registered: bool,
        at: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

pub(crate) struct Writer {
    pub conn: Connection,
    pub db_path: PathBuf,
    pub blobs_dir: PathBuf,
    pub quota: Quota,
    pub stats: Arc<SharedStats>,
}

/// A reply to send once the batch is durable.
enum Reply {
    Insert(oneshot::Sender<Result<InsertOutcome, StoreError>>, Result<InsertOutcome, StoreError>),
    SetState(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Delete(oneshot::Sender<Result<StoredBundle, StoreError>>, Result<StoredBundle, StoreError>),
}

/// Waits for the next item, then takes whatever else is queued, up to `max` in all: the
/// store's threads work in batches (one transaction for the lot). `None` once every sender
/// is gone.
pub(crate) fn next_batch<T>(queue: &Receiver<T>, max: usize) -> Option<Vec<T>> {
    let mut batch = vec![queue.recv().ok()?];
    while batch.len() < max {
        match queue.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// A fragment's offset and length columns; -1, -1 for a whole bundle.
fn fragment_columns(fragment: Option<(u64, u64)>) -> (i64, i64) {
    fragment.map_or((-1, -1), |(offset, length)| (to_sql(offset), to_sql(length)))
}

/// The store id of the bundle (or fragment) with this identity (RFC 9171 §5.9), if held.
pub(crate) fn find_identity(
    conn: &rusqlite::Connection,
    source: &str,
    created: u64,
    sequence: u64,
    fragment: Option<(u64, u64)>,
) -> rusqlite::Result<Option<i64>> {
    let (frag_offset, frag_length) = fragment_columns(fragment);
    conn.prepare_cached(
        "SELECT id FROM bundles WHERE source = ?1 AND created = ?2 AND sequence = ?3 \
         AND frag_offset = ?4 AND frag_length = ?5",
    )?
    .query_row(params![source, to_sql(created), to_sql(sequence), frag_offset, frag_length], |r| r.get(0))
    .optional()
}

/// u64 values from the wire go into SQLite's signed integers bit for bit.
pub(crate) fn to_sql(v: u64) -> i64 {
    v as i64
}

impl Writer {
    pub fn run(mut self, requests: Receiver<WriteOp>) {
        while let Some(batch) = next_batch(&requests, MAX_BATCH) {
            self.apply(batch);
        }
    }

    fn apply(&mut self, batch: Vec<WriteOp>) {
        let mut replies = Vec::with_capacity(batch.len());
        let mut removed_files = Vec::new();
        let (mut bundles, mut bytes) = {
            let s = self.stats.get();
            (s.bundles, s.bytes)
        };
        let db_path = self.db_path.clone();
        let tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(source) => {
                for op in batch {
                    fail(op, || StoreError::CommitFailed {
                        path: db_path.clone(),
                        message: source.to_string(),
                    });
                }
                return;
            }
        };
        let db_error = |source| StoreError::Database { path: db_path.clone(), source };
        for op in batch {
            match op {
                WriteOp::Insert { row, reply } => {
                    let result =
                        insert(&tx, row, &self.quota, &mut bundles, &mut bytes).map_err(|e| match e {
                            Failure::Store(e) => e,
                            Failure::Db(source) => db_error(source),
                        });
                    replies.push(Reply::Insert(reply, result));
                }
                WriteOp::SetState { id, state, reply } => {
                    let result = tx
                        .prepare_cached("UPDATE bundles SET state = ?1, state_arg = ?2 WHERE id = ?3")
                        .and_then(|mut s| s.execute(params![state.kind() as i64, state.argument(), id]))
                        .map_err(db_error)
                        .and_then(|n| if n == 1 { Ok(()) } else { Err(StoreError::NotFound(id)) });
                    replies.push(Reply::SetState(reply, result));
                }
                WriteOp::Delete { id, reason, reply } => {
                    let result = delete(&tx, id).map_err(|e| match e {
                        Failure::Store(e) => e,
                        Failure::Db(source) => db_error(source),
                    });
                    if let Ok((meta, file)) = &result {
                        bundles -= 1;
                        bytes -= meta.length;
                        // Delivery and forwarding are the normal way out; the others are news.
                        match reason {
                            DeleteReason::Delivered
                            | DeleteReason::Forwarded { .. }
                            | DeleteReason::CustodyAccepted { .. }
                            | DeleteReason::Reassembled => {
                                tracing::debug!(bundle = %meta.bundle_id, store_id = meta.id, %reason, "bundle left the store")
                            }
                            _ => {
                                tracing::info!(bundle = %meta.bundle_id, store_id = meta.id, %reason, "bundle left the store")
                            }
                        }
                        if let Some(file) = file {
                            removed_files.push(self.blobs_dir.join(file));
                        }
                    }
                    replies.push(Reply::Delete(reply, result.map(|(meta, _)| meta)));
                }
                WriteOp::Registration { endpoint, registered, at, reply } => {
                    let result = if registered {
                        tx.prepare_cached(
                            "INSERT INTO registrations (endpoint, registered_at) VALUES (?1, ?2) \
                             ON CONFLICT (endpoint) DO NOTHING",
                        )
                        .and_then(|mut s| s.execute(params![endpoint, to_sql(at)]))
                    } else {
                        tx.prepare_cached("DELETE FROM registrations WHERE endpoint = ?1")
                            .and_then(|mut s| s.execute(params![endpoint]))
                    };
                    replies.push(Reply::SetState(reply, result.map(|_| ()).map_err(db_error)));
                }
            }
        }
        if let Err(source) = tx.commit() {
            tracing::error!(%source, "store commit failed; the whole batch is refused");
            for reply in replies {
                let error =
                    || StoreError::CommitFailed { path: db_path.clone(), message: source.to_string() };
                match reply {
                    Reply::Insert(tx, _) => drop(tx.send(Err(error()))),
                    Reply::SetState(tx, _) => drop(tx.send(Err(error()))),
                    Reply::Delete(tx, _) => drop(tx.send(Err(error()))),
                }
            }
            return;
        }
        self.stats.set(bundles, bytes);
        // Files of deleted bundles go once their rows are gone for good: a crash before this
        // leaves orphans, which the next open removes.
        for path in &removed_files {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %error, "could not remove a deleted bundle's file");
            }
        }
        // Only now durable: answer everyone.
        for reply in replies {
            match reply {
                Reply::Insert(tx, r) => drop(tx.send(r)),
                Reply::SetState(tx, r) => drop(tx.send(r)),
                Reply::Delete(tx, r) => drop(tx.send(r)),
            }
        }
    }
}

enum Failure {
    Store(StoreError),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Db(e)
    }
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    row: NewRow,
    quota: &Quota,
    bundles: &mut u64,
    bytes: &mut u64,
) -> Result<InsertOutcome, Failure> {
    let (frag_offset, frag_length) = fragment_columns(row.fragment);
    if let Some(id) = find_identity(tx, &row.source, row.created, row.sequence, row.fragment)? {
        return Ok(InsertOutcome::Duplicate(id));
    }
    if *bundles + 1 > quota.max_bundles || bytes.saturating_add(row.length) > quota.max_bytes {
        return Err(Failure::Store(StoreError::DepletedStorage {
            needed_bytes: row.length,
            bundles: *bundles,
            max_bundles: quota.max_bundles,
            bytes: *bytes,
            max_bytes: quota.max_bytes,
        }));
    }
    let (data, file): (Option<&[u8]>, Option<&str>) = match &row.data {
        RowData::Inline(d) => (Some(d), None),
        RowData::File(f) => (None, Some(f)),
    };
    tx.prepare_cached(
        "INSERT INTO bundles (source, created, sequence, frag_offset, frag_length, destination, received_at, \
         expires_at, length, state, state_arg, data, file) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        row.source,
        to_sql(row.created),
        to_sql(row.sequence),
        frag_offset,
        frag_length,
        row.destination,
        to_sql(row.received_at),
        row.expires_at.min(i64::MAX as u64) as i64,
        to_sql(row.length),
        row.state.kind() as i64,
        row.state.argument(),
        data,
        file
    ])?;
    *bundles += 1;
    *bytes += row.length;
    Ok(InsertOutcome::Stored(tx.last_insert_rowid()))
}

fn delete(tx: &rusqlite::Transaction<'_>, id: StoreId) -> Result<(StoredBundle, Option<String>), Failure> {
    let found = tx
        .prepare_cached(&format!("SELECT {} FROM bundles WHERE id = ?1", super::sqlite::ROW_COLUMNS))?
        .query_row([id], read_row)
        .optional()?;
    let Some(found) = found else { return Err(Failure::Store(StoreError::NotFound(id))) };
    let (meta, file) = found.map_err(Failure::Store)?;
    tx.prepare_cached("DELETE FROM bundles WHERE id = ?1")?.execute([id])?;
    Ok((meta, file))
}

fn fail(op: WriteOp, error: impl Fn() -> StoreError) {
    match op {
        WriteOp::Insert { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::SetState { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::Delete { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::Registration { reply, .. } => drop(reply.send(Err(error()))),
    }
}
