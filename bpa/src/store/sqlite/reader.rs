//! The reader thread, and a row decoded into what the store knows of a bundle.

use rusqlite::Connection;

use crate::bundle::{BundleId, CreationTimestamp, Eid, FragmentId};
use crate::store::error::StoreError;
use crate::store::types::{BundleState, StateKind, StoredBundle};

/// A read for the reader thread; it sends its own answer.
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Most reads run in one read transaction.
pub(super) const MAX_READ_BATCH: usize = 256;

/// The reader thread: reads run one after another on the store's read connection, and those
/// queued together (a neighbour coming up starts hundreds of forwards, each opening its
/// bundle) run in one read transaction — one WAL snapshot and one thread wake-up for the lot,
/// where a blocking-pool task per read cost a wake-up and a lock hand-off each.
pub(super) fn run_reader(conn: Connection, jobs: std::sync::mpsc::Receiver<ReadJob>) {
    while let Some(batch) = crate::store::writer::next_batch(&jobs, MAX_READ_BATCH) {
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

pub(super) fn collect(
    rows: Vec<Result<(StoredBundle, Option<String>), StoreError>>,
) -> Result<Vec<StoredBundle>, StoreError> {
    rows.into_iter().map(|r| r.map(|(meta, _)| meta)).collect()
}
