//! Custody in the SQLite store: the schema and the statements that keep the custody ledger
//! (the types are in `custody.rs`). All of it runs in the writer's transactions, with the
//! bundles it concerns, so it survives a crash exactly as the bundles do.

use rusqlite::{OptionalExtension, Transaction, params};

use super::custody::*;
use super::types::{BundleState, StateKind, StoreId};
use super::writer::to_sql;

/// The disposition codes the store writes for an intake (draft-ietf-dtn-bibect §5.3.2).
pub(crate) const ACCEPTED: u64 = 0;
pub(crate) const REDUNDANT: u64 = 3;
pub(crate) const DEPLETED_STORAGE: u64 = 4;

/// Most bundles one pass of a signal acts on, so one transaction stays short however many
/// transmissions a signal names.
pub(crate) const SIGNAL_PASS_LIMIT: usize = 4096;

/// Schema for custody (part of schema 4).
pub(crate) const SCHEMA: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS bundles_custody_tid ON bundles (custody_tid) WHERE custody_tid IS NOT NULL;
CREATE INDEX IF NOT EXISTS bundles_custody_deadline ON bundles (custody_deadline) WHERE custody_deadline IS NOT NULL;
CREATE INDEX IF NOT EXISTS bundles_custodial ON bundles (custodial) WHERE custodial = 1;
CREATE TABLE IF NOT EXISTS custody_signals (
    peer TEXT NOT NULL,
    transmission_id INTEGER NOT NULL,
    disposition INTEGER NOT NULL,
    PRIMARY KEY (peer, transmission_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Upgrades a version 3 database to 4.
pub(crate) const UPGRADE_FROM_3: &str = "
ALTER TABLE bundles ADD COLUMN custodial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bundles ADD COLUMN custody_tid INTEGER;
ALTER TABLE bundles ADD COLUMN custody_deadline INTEGER;
ALTER TABLE bundles ADD COLUMN custody_attempts INTEGER NOT NULL DEFAULT 0;
";

const LAST_TID: &str = "custody_last_transmission_id";

/// The last custodial transmission ID this node used (0: none yet).
pub(crate) fn last_transmission_id(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let value: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([LAST_TID], |r| r.get(0))
        .optional()?;
    Ok(value.unwrap_or(0) as u64)
}

/// After an insert: makes the bundle custodial and queues the signal that answers `intake`.
/// `outcome` is the insert's: stored or duplicate (`Some(id)`), already handled (`None`), or
/// refused for want of room (`Err`).
pub(crate) fn after_insert(
    tx: &Transaction<'_>,
    intake: &CustodyIntake,
    outcome: Result<Option<StoreId>, ()>,
    stored_now: bool,
) -> rusqlite::Result<()> {
    if let Ok(Some(id)) = outcome {
        tx.prepare_cached("UPDATE bundles SET custodial = 1 WHERE id = ?1")?.execute([id])?;
    }
    let disposition = match outcome {
        Ok(Some(_)) if stored_now => ACCEPTED,
        Ok(_) => REDUNDANT,
        Err(()) => DEPLETED_STORAGE,
    };
    if let Some((peer, tid)) = &intake.from {
        queue_signal(tx, peer, *tid, disposition)?;
    }
    Ok(())
}

/// Queues a transmission ID to answer; a second answer for the same ID replaces the first.
pub(crate) fn queue_signal(
    tx: &Transaction<'_>,
    peer: &str,
    tid: u64,
    disposition: u64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO custody_signals (peer, transmission_id, disposition) VALUES (?1, ?2, ?3) \
         ON CONFLICT (peer, transmission_id) DO UPDATE SET disposition = excluded.disposition",
    )?
    .execute(params![peer, to_sql(tid), to_sql(disposition)])?;
    Ok(())
}

/// Records a bundle as on its way to `neighbour`: in flight, or, when it is custodial and
/// `custody` is given, awaiting custody under the next transmission ID (`last_tid` counts them).
/// `None` when it is gone or not waiting to be sent (already on its way, awaiting custody,
/// quarantined).
pub(crate) fn begin_forward(
    tx: &Transaction<'_>,
    id: StoreId,
    neighbour: &str,
    custody: Option<CustodyTiming>,
    last_tid: &mut u64,
) -> rusqlite::Result<Option<Forwarding>> {
    let row: Option<(i64, i64, i64)> = tx
        .prepare_cached("SELECT state, custodial, custody_attempts FROM bundles WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((state, custodial, attempts)) = row else { return Ok(None) };
    // Only a bundle waiting for a route, or queued for a detour, is sent: one already on its
    // way or awaiting custody (a page read before it was sent, taken up after) is not sent
    // twice, nor one quarantined meanwhile.
    if state != StateKind::WaitingForRoute as i64 && state != StateKind::QueuedFor as i64 {
        return Ok(None);
    }
    match custody {
        Some(timing) if custodial == 1 || timing.always => {
            let tid = *last_tid + 1;
            let attempts = attempts.max(0) as u64;
            let backoff = 1u64 << attempts.min(20);
            let wait = timing.round_trip_ms.max(1).saturating_mul(backoff).min(timing.max_ms.max(1));
            let deadline = timing.now.saturating_add(wait);
            tx.prepare_cached(
                "UPDATE bundles SET state = ?1, state_arg = ?2, custody_tid = ?3, custody_deadline = ?4, \
                 custody_attempts = custody_attempts + 1, custodial = 1 WHERE id = ?5",
            )?
            .execute(params![
                StateKind::AwaitingCustody as i64,
                neighbour,
                to_sql(tid),
                to_sql(deadline),
                id
            ])?;
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![LAST_TID, to_sql(tid)])?;
            *last_tid = tid;
            Ok(Some(Forwarding::Custodial { transmission_id: tid, deadline, attempt: attempts + 1 }))
        }
        _ => {
            let state = BundleState::InFlight { neighbour: neighbour.to_string() };
            tx.prepare_cached(
                "UPDATE bundles SET state = ?1, state_arg = ?2, custody_tid = NULL, custody_deadline = NULL \
                 WHERE id = ?3",
            )?
            .execute(params![state.kind() as i64, state.argument(), id])?;
            Ok(Some(Forwarding::Plain))
        }
    }
}

/// The bundles a signal from `neighbour` names: awaiting custody from it under a transmission
/// ID in one of `ranges`, at most `limit` of them; `true` when there are no more. Bounded by
/// the limit, however wide the ranges.
pub(crate) fn signalled(
    tx: &Transaction<'_>,
    neighbour: &str,
    ranges: &[(u64, u64)],
    limit: usize,
) -> rusqlite::Result<(Vec<StoreId>, bool)> {
    let mut matched = Vec::new();
    let mut select = tx.prepare_cached(
        "SELECT id FROM bundles WHERE custody_tid BETWEEN ?1 AND ?2 AND state = ?3 AND state_arg = ?4 LIMIT ?5",
    )?;
    for &(first, count) in ranges {
        // Transmission IDs are positive and below 2^63 as this node writes them.
        let last = first.saturating_add(count.saturating_sub(1)).min(i64::MAX as u64);
        if first > last || count == 0 {
            continue;
        }
        // One more than the room left tells whether the range holds more.
        let room = limit - matched.len();
        let rows = select.query_map(
            params![
                to_sql(first),
                to_sql(last),
                StateKind::AwaitingCustody as i64,
                neighbour,
                (room + 1) as i64
            ],
            |r| r.get::<_, i64>(0),
        )?;
        for id in rows {
            if matched.len() == limit {
                return Ok((deduplicated(matched), false));
            }
            matched.push(id?);
        }
    }
    Ok((deduplicated(matched), true))
}

/// Overlapping ranges name a bundle more than once: it is acted on once.
fn deduplicated(mut ids: Vec<StoreId>) -> Vec<StoreId> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A refused transmission: the bundle waits for a route again (still custodial).
pub(crate) fn refused(tx: &Transaction<'_>, id: StoreId) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE bundles SET state = ?1, state_arg = NULL, custody_tid = NULL, custody_deadline = NULL WHERE id = ?2",
    )?
    .execute(params![StateKind::WaitingForRoute as i64, id])?;
    Ok(())
}

/// Transmissions whose deadline passed by `now` (at most `limit`): their bundles wait for a
/// route again, to be sent anew. Returns how many.
pub(crate) fn expire_transmissions(tx: &Transaction<'_>, now: u64, limit: usize) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM bundles WHERE custody_deadline IS NOT NULL AND custody_deadline <= ?1 \
             ORDER BY custody_deadline LIMIT ?2",
        )?
        .query_map(params![to_sql(now), limit.min(i64::MAX as usize) as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for &id in &ids {
        refused(tx, id)?;
    }
    Ok(ids.len())
}

/// Forgets answered transmission IDs.
pub(crate) fn signals_sent(tx: &Transaction<'_>, sent: &[(String, u64)]) -> rusqlite::Result<()> {
    let mut delete =
        tx.prepare_cached("DELETE FROM custody_signals WHERE peer = ?1 AND transmission_id = ?2")?;
    for (peer, tid) in sent {
        delete.execute(params![peer, to_sql(*tid)])?;
    }
    Ok(())
}

/// The earliest retransmission deadline.
pub(crate) fn next_deadline(conn: &rusqlite::Connection) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT min(custody_deadline) FROM bundles WHERE custody_deadline IS NOT NULL")?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.map(|v| v as u64))
}

/// Up to `limit` transmission IDs to answer, by peer and disposition.
pub(crate) fn pending_signals(
    conn: &rusqlite::Connection,
    limit: usize,
) -> rusqlite::Result<Vec<PendingSignal>> {
    conn.prepare_cached(
        "SELECT peer, transmission_id, disposition FROM custody_signals \
         ORDER BY peer, disposition, transmission_id LIMIT ?1",
    )?
    .query_map([limit.min(i64::MAX as usize) as i64], |r| {
        Ok(PendingSignal {
            peer: r.get(0)?,
            transmission_id: r.get::<_, i64>(1)? as u64,
            disposition: r.get::<_, i64>(2)? as u64,
        })
    })?
    .collect()
}

/// A bundle's custody.
pub(crate) fn info(conn: &rusqlite::Connection, id: StoreId) -> rusqlite::Result<Option<CustodyInfo>> {
    conn.prepare_cached(
        "SELECT custodial, custody_tid, custody_deadline, custody_attempts FROM bundles WHERE id = ?1",
    )?
    .query_row([id], |r| {
        let tid: Option<i64> = r.get(1)?;
        let deadline: Option<i64> = r.get(2)?;
        Ok(CustodyInfo {
            custodial: r.get::<_, i64>(0)? == 1,
            transmission: tid.zip(deadline).map(|(t, d)| (t as u64, d as u64)),
            attempts: r.get::<_, i64>(3)?.max(0) as u64,
        })
    })
    .optional()
}

/// Totals (partial indexes: proportional to custody held, not to the store).
pub(crate) fn counts(conn: &rusqlite::Connection) -> rusqlite::Result<CustodyCounts> {
    let held: i64 = conn
        .prepare_cached("SELECT count(*) FROM bundles WHERE custodial = 1")?
        .query_row([], |r| r.get(0))?;
    let outstanding: i64 = conn
        .prepare_cached("SELECT count(*) FROM bundles WHERE custody_tid IS NOT NULL")?
        .query_row([], |r| r.get(0))?;
    let pending: i64 =
        conn.prepare_cached("SELECT count(*) FROM custody_signals")?.query_row([], |r| r.get(0))?;
    Ok(CustodyCounts { held: held as u64, outstanding: outstanding as u64, signals_pending: pending as u64 })
}
