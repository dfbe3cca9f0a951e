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

use super::custody::{CustodyIntake, CustodyTiming, Forwarding, SignalEffect, SignalOutcome};
use super::custody_sql;
use super::error::StoreError;
use super::sqlite::{Quota, SharedStats, read_row};
use super::types::{BundleState, DeleteReason, InsertOutcome, StateKind, StoreId, StoreStats, StoredBundle};
use crate::bundle::FragmentId;

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
    pub fragment: Option<FragmentId>,
    pub destination: String,
    pub received_at: u64,
    pub expires_at: u64,
    pub length: u64,
    pub state: BundleState,
    pub data: RowData,
    /// CRC-32C of the bundle's bytes as they arrived ([`super::integrity`]).
    pub checksum: u32,
}

pub(crate) enum WriteOp {
    Insert {
        row: NewRow,
        /// Taken in under custody: made custodial, its signal queued, in the same transaction.
        custody: Option<CustodyIntake>,
        reply: oneshot::Sender<Result<InsertOutcome, StoreError>>,
    },
    /// Records a bundle as on its way to a neighbour (custodially if it is custodial and
    /// `custody` is given).
    BeginForward {
        id: StoreId,
        neighbour: String,
        custody: Option<CustodyTiming>,
        reply: oneshot::Sender<Result<Forwarding, StoreError>>,
    },
    /// A custody signal from `neighbour`: the bundles it names are released or refused.
    Signalled {
        neighbour: String,
        effect: SignalEffect,
        ranges: Vec<(u64, u64)>,
        reply: oneshot::Sender<Result<SignalOutcome, StoreError>>,
    },
    /// Custodial transmissions past their deadline wait for a route again (at most `limit`).
    ExpireCustody {
        now: u64,
        limit: usize,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// A transmission ID to answer with this disposition.
    QueueSignal {
        peer: String,
        transmission_id: u64,
        disposition: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Transmission IDs answered: forgotten.
    SignalsSent {
        sent: Vec<(String, u64)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
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
    /// Records the node ID the store belongs to ([`super::SqliteStore::claim`]).
    SetOwner {
        node_id: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A read found the bundle damaged: it is kept, never served again. Nobody waits for it.
    Quarantine {
        id: StoreId,
        problem: String,
    },
    /// Forgets up to `limit` records of handled bundles that expired by `now`.
    ForgetHandled {
        now: u64,
        limit: usize,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

pub(crate) struct Writer {
    pub conn: Connection,
    pub db_path: PathBuf,
    pub blobs_dir: PathBuf,
    pub quota: Quota,
    pub stats: Arc<SharedStats>,
    /// The last custodial transmission ID used ([`custody_sql::last_transmission_id`]).
    pub last_tid: u64,
}

/// Whether a bundle that leaves for this reason is remembered as handled (design §3.7): a copy
/// arriving later is answered as a duplicate and not delivered or forwarded again.
fn remembered(reason: &DeleteReason) -> Option<HandledAs> {
    match reason {
        DeleteReason::Delivered => Some(HandledAs::Delivered),
        DeleteReason::Forwarded { .. } => Some(HandledAs::Forwarded),
        DeleteReason::CustodyAccepted { .. } => Some(HandledAs::Forwarded),
        _ => None,
    }
}

/// How a remembered bundle left (the `handled.outcome` column).
#[derive(Debug, Clone, Copy)]
enum HandledAs {
    Delivered = 1,
    Forwarded = 2,
}

/// Whether a bundle with this identity was delivered or forwarded and is still remembered.
pub(crate) fn was_handled(
    conn: &rusqlite::Connection,
    source: &str,
    created: u64,
    sequence: u64,
    fragment: Option<FragmentId>,
) -> rusqlite::Result<bool> {
    let (frag_offset, frag_length, frag_total) = fragment_columns(fragment);
    // A fragment remembered before schema 5 has no ADU length (-1): it matches any.
    conn.prepare_cached(
        "SELECT 1 FROM handled WHERE source = ?1 AND created = ?2 AND sequence = ?3 \
         AND frag_offset = ?4 AND frag_length = ?5 AND frag_total IN (?6, -1)",
    )?
    .query_row(
        params![source, to_sql(created), to_sql(sequence), frag_offset, frag_length, frag_total],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

/// A reply to send once the batch is durable.
enum Reply {
    Insert(oneshot::Sender<Result<InsertOutcome, StoreError>>, Result<InsertOutcome, StoreError>),
    SetState(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Count(oneshot::Sender<Result<usize, StoreError>>, Result<usize, StoreError>),
    Delete(oneshot::Sender<Result<StoredBundle, StoreError>>, Result<StoredBundle, StoreError>),
    Forward(oneshot::Sender<Result<Forwarding, StoreError>>, Result<Forwarding, StoreError>),
    Signal(oneshot::Sender<Result<SignalOutcome, StoreError>>, Result<SignalOutcome, StoreError>),
}

impl Reply {
    fn fail(self, error: StoreError) {
        match self {
            Reply::Insert(tx, _) => drop(tx.send(Err(error))),
            Reply::SetState(tx, _) => drop(tx.send(Err(error))),
            Reply::Count(tx, _) => drop(tx.send(Err(error))),
            Reply::Delete(tx, _) => drop(tx.send(Err(error))),
            Reply::Forward(tx, _) => drop(tx.send(Err(error))),
            Reply::Signal(tx, _) => drop(tx.send(Err(error))),
        }
    }

    fn send(self) {
        match self {
            Reply::Insert(tx, r) => drop(tx.send(r)),
            Reply::SetState(tx, r) => drop(tx.send(r)),
            Reply::Count(tx, r) => drop(tx.send(r)),
            Reply::Delete(tx, r) => drop(tx.send(r)),
            Reply::Forward(tx, r) => drop(tx.send(r)),
            Reply::Signal(tx, r) => drop(tx.send(r)),
        }
    }
}

/// The store's totals as a batch changes them.
struct Totals {
    bundles: u64,
    bytes: u64,
    quarantined: u64,
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

/// A fragment's offset, length and ADU length columns; -1, -1, -1 for a whole bundle.
pub(crate) fn fragment_columns(fragment: Option<FragmentId>) -> (i64, i64, i64) {
    fragment.map_or((-1, -1, -1), |f| (to_sql(f.offset), to_sql(f.length), to_sql(f.adu_length)))
}

/// The store id of the bundle (or fragment) with this identity (RFC 9171 §5.9), if held.
pub(crate) fn find_identity(
    conn: &rusqlite::Connection,
    source: &str,
    created: u64,
    sequence: u64,
    fragment: Option<FragmentId>,
) -> rusqlite::Result<Option<i64>> {
    let (frag_offset, frag_length, frag_total) = fragment_columns(fragment);
    conn.prepare_cached(
        "SELECT id FROM bundles WHERE source = ?1 AND created = ?2 AND sequence = ?3 \
         AND frag_offset = ?4 AND frag_length = ?5 AND frag_total = ?6",
    )?
    .query_row(
        params![source, to_sql(created), to_sql(sequence), frag_offset, frag_length, frag_total],
        |r| r.get(0),
    )
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
        let mut totals = {
            let s = self.stats.get();
            Totals { bundles: s.bundles, bytes: s.bytes, quarantined: s.quarantined }
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
        let db_error =
            |source: rusqlite::Error| StoreError::Database { path: db_path.clone(), source: source.into() };
        for op in batch {
            match op {
                WriteOp::Insert { row, custody, reply } => {
                    let mut result = insert(&tx, row, &self.quota, &mut totals.bundles, &mut totals.bytes)
                        .map_err(|e| match e {
                            Failure::Store(e) => e,
                            Failure::Db(source) => db_error(source),
                        });
                    if let Some(intake) = &custody {
                        let outcome = match &result {
                            Ok(InsertOutcome::Stored(id) | InsertOutcome::Duplicate(id)) => {
                                Some(Ok(Some(*id)))
                            }
                            Ok(InsertOutcome::AlreadyHandled) => Some(Ok(None)),
                            Err(StoreError::DepletedStorage { .. }) => Some(Err(())),
                            Err(_) => None,
                        };
                        let stored_now = matches!(result, Ok(InsertOutcome::Stored(_)));
                        if let Some(outcome) = outcome
                            && let Err(source) = custody_sql::after_insert(&tx, intake, outcome, stored_now)
                        {
                            result = Err(db_error(source));
                        }
                    }
                    replies.push(Reply::Insert(reply, result));
                }
                WriteOp::BeginForward { id, neighbour, custody, reply } => {
                    let result = custody_sql::begin_forward(&tx, id, &neighbour, custody, &mut self.last_tid)
                        .map_err(db_error)
                        .and_then(|f| f.ok_or(StoreError::NotFound(id)));
                    match result {
                        // A plain forwarding is answered once applied, not once durable: nothing
                        // rests on the record surviving (a restart puts bundles in flight back to
                        // wait, and the claim in memory keeps a second send off), so the send
                        // need not wait for this batch's fsync. A custodial one waits: its
                        // transmission ID must be durable before the PDU goes.
                        Ok(Forwarding::Plain) => drop(reply.send(result)),
                        _ => replies.push(Reply::Forward(reply, result)),
                    }
                }
                WriteOp::Signalled { neighbour, effect, ranges, reply } => {
                    let result = (|| {
                        let (matched, complete) =
                            custody_sql::signalled(&tx, &neighbour, &ranges, custody_sql::SIGNAL_PASS_LIMIT)
                                .map_err(db_error)?;
                        for &id in &matched {
                            match effect {
                                SignalEffect::Release => {
                                    let reason =
                                        DeleteReason::CustodyAccepted { neighbour: neighbour.clone() };
                                    delete_row(
                                        &tx,
                                        id,
                                        reason,
                                        &self.blobs_dir,
                                        &mut totals,
                                        &mut removed_files,
                                    )
                                    .map_err(|e| match e {
                                        Failure::Store(e) => e,
                                        Failure::Db(source) => db_error(source),
                                    })?;
                                }
                                SignalEffect::Refuse => custody_sql::refused(&tx, id).map_err(db_error)?,
                            }
                        }
                        Ok(SignalOutcome { matched, complete })
                    })();
                    replies.push(Reply::Signal(reply, result));
                }
                WriteOp::ExpireCustody { now, limit, reply } => {
                    let result = custody_sql::expire_transmissions(&tx, now, limit).map_err(db_error);
                    replies.push(Reply::Count(reply, result));
                }
                WriteOp::QueueSignal { peer, transmission_id, disposition, reply } => {
                    let result =
                        custody_sql::queue_signal(&tx, &peer, transmission_id, disposition).map_err(db_error);
                    replies.push(Reply::SetState(reply, result));
                }
                WriteOp::SignalsSent { sent, reply } => {
                    let result = custody_sql::signals_sent(&tx, &sent).map_err(db_error);
                    replies.push(Reply::SetState(reply, result));
                }
                WriteOp::SetState { id, state, reply } => {
                    // A quarantined bundle stays quarantined: nothing but a delete moves it.
                    let result = tx
                        .prepare_cached(
                            "UPDATE bundles SET state = ?1, state_arg = ?2, custody_tid = NULL, custody_deadline = NULL \
                             WHERE id = ?3 AND state <> ?4",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                state.kind() as i64,
                                state.argument(),
                                id,
                                StateKind::Quarantined as i64
                            ])
                        })
                        .map_err(db_error)
                        .and_then(|n| if n == 1 { Ok(()) } else { Err(StoreError::NotFound(id)) });
                    replies.push(Reply::SetState(reply, result));
                }
                WriteOp::Quarantine { id, problem } => {
                    let result = tx
                        .prepare_cached(
                            "UPDATE bundles SET state = ?1, state_arg = ?2 WHERE id = ?3 AND state <> ?1",
                        )
                        .and_then(|mut s| s.execute(params![StateKind::Quarantined as i64, problem, id]));
                    match result {
                        Ok(1) => {
                            totals.quarantined += 1;
                            tracing::error!(store_id = id, %problem, "a stored bundle is damaged: quarantined, never served again");
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::error!(store_id = id, %problem, %error, "a damaged bundle could not be quarantined")
                        }
                    }
                }
                WriteOp::ForgetHandled { now, limit, reply } => {
                    let result = tx
                        .prepare_cached(
                            "DELETE FROM handled WHERE (source, created, sequence, frag_offset, frag_length, frag_total) IN \
                             (SELECT source, created, sequence, frag_offset, frag_length, frag_total FROM handled \
                              WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![to_sql(now), limit.min(i64::MAX as usize) as i64])
                        })
                        .map_err(db_error);
                    replies.push(Reply::Count(reply, result));
                }
                WriteOp::Delete { id, reason, reply } => {
                    let result =
                        delete_row(&tx, id, reason, &self.blobs_dir, &mut totals, &mut removed_files)
                            .map_err(|e| match e {
                                Failure::Store(e) => e,
                                Failure::Db(source) => db_error(source),
                            });
                    replies.push(Reply::Delete(reply, result));
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
                WriteOp::SetOwner { node_id, reply } => {
                    let result = tx.execute_batch("DELETE FROM owner").and_then(|()| {
                        tx.execute("INSERT INTO owner (node_id) VALUES (?1)", params![node_id])
                    });
                    replies.push(Reply::SetState(reply, result.map(|_| ()).map_err(db_error)));
                }
            }
        }
        if let Err(source) = tx.commit() {
            tracing::error!(%source, "store commit failed; the whole batch is refused");
            for reply in replies {
                reply.fail(StoreError::CommitFailed { path: db_path.clone(), message: source.to_string() });
            }
            return;
        }
        let Totals { bundles, bytes, quarantined } = totals;
        self.stats.set(StoreStats { bundles, bytes, quarantined, ..self.stats.get() });
        // Files of deleted bundles go once their rows are gone for good: a crash before this
        // leaves orphans, which the next open removes.
        for path in &removed_files {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %error, "could not remove a deleted bundle's file");
            }
        }
        // Only now durable: answer everyone.
        for reply in replies {
            reply.send();
        }
    }
}

/// Deletes a bundle (see [`delete`]), keeping the batch's totals and logging why it left.
fn delete_row(
    tx: &rusqlite::Transaction<'_>,
    id: StoreId,
    reason: DeleteReason,
    blobs_dir: &std::path::Path,
    totals: &mut Totals,
    removed_files: &mut Vec<PathBuf>,
) -> Result<StoredBundle, Failure> {
    let (meta, file) = delete(tx, id, remembered(&reason))?;
    totals.bundles -= 1;
    totals.bytes -= meta.length;
    if meta.state.kind() == StateKind::Quarantined {
        totals.quarantined = totals.quarantined.saturating_sub(1);
    }
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
        removed_files.push(blobs_dir.join(file));
    }
    Ok(meta)
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
    let (frag_offset, frag_length, frag_total) = fragment_columns(row.fragment);
    if let Some(id) = find_identity(tx, &row.source, row.created, row.sequence, row.fragment)? {
        return Ok(InsertOutcome::Duplicate(id));
    }
    if was_handled(tx, &row.source, row.created, row.sequence, row.fragment)? {
        return Ok(InsertOutcome::AlreadyHandled);
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
         expires_at, length, state, state_arg, data, file, checksum, frag_total) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
        file,
        i64::from(row.checksum),
        frag_total
    ])?;
    *bundles += 1;
    *bytes += row.length;
    Ok(InsertOutcome::Stored(tx.last_insert_rowid()))
}

/// Deletes a row; a bundle that was delivered or forwarded is remembered as handled, in the
/// same transaction, until it expires.
fn delete(
    tx: &rusqlite::Transaction<'_>,
    id: StoreId,
    remember: Option<HandledAs>,
) -> Result<(StoredBundle, Option<String>), Failure> {
    let found = tx
        .prepare_cached(&format!("SELECT {} FROM bundles WHERE id = ?1", super::sqlite::ROW_COLUMNS))?
        .query_row([id], read_row)
        .optional()?;
    let Some(found) = found else { return Err(Failure::Store(StoreError::NotFound(id))) };
    let (meta, file) = found.map_err(Failure::Store)?;
    if let Some(outcome) = remember {
        let id = &meta.bundle_id;
        let (frag_offset, frag_length, frag_total) = fragment_columns(id.fragment);
        tx.prepare_cached(
            "INSERT INTO handled (source, created, sequence, frag_offset, frag_length, frag_total, expires_at, outcome) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            id.source.to_string(),
            to_sql(id.creation.time),
            to_sql(id.creation.sequence),
            frag_offset,
            frag_length,
            frag_total,
            meta.expires_at.min(i64::MAX as u64) as i64,
            outcome as i64
        ])?;
    }
    tx.prepare_cached("DELETE FROM bundles WHERE id = ?1")?.execute([id])?;
    Ok((meta, file))
}

fn fail(op: WriteOp, error: impl Fn() -> StoreError) {
    match op {
        WriteOp::Insert { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::SetState { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::Delete { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::Registration { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::SetOwner { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::ForgetHandled { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::BeginForward { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::Signalled { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::ExpireCustody { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::QueueSignal { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::SignalsSent { reply, .. } => drop(reply.send(Err(error()))),
        WriteOp::Quarantine { id, problem } => {
            tracing::error!(store_id = id, %problem, error = %error(), "a damaged bundle could not be quarantined")
        }
    }
}
