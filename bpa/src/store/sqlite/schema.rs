//! The schema, and the upgrades from earlier versions.

use super::*;

/// The schema this code writes; a database with another version is refused.
///
/// 2: store ids are never reused (AUTOINCREMENT), so an acknowledgement by id can never reach
/// a later bundle; registrations.
/// 3: a CRC-32C of every bundle's bytes (`checksum`, checked on every read); the bundles this
/// node delivered or forwarded, remembered until they expire (`handled`). A version 2 database
/// is upgraded in place (its bundles have no checksum).
/// 4: custody (`crate::store::custody`): custody columns on `bundles`, the `custody_signals` owed
/// to other custodians, and `meta` (the custodial transmission counter).
/// 5: a fragment's identity includes the total ADU length it claims (`frag_total`, -1 for a
/// whole bundle), so contradictory fragments are kept apart ([`crate::bundle::BundleId`]).
/// Versions 2 to 4 are upgraded in place ([`upgrade_to_5`] fills `frag_total` in from the
/// fragments' own headers).
pub(super) const SCHEMA_VERSION: i64 = 5;

/// Upgrades a version 2 database to 3 (the new table comes from [`SCHEMA`]).
pub(super) const UPGRADE_FROM_2: &str = "ALTER TABLE bundles ADD COLUMN checksum INTEGER;";

/// Upgrades a version 4 (or 2, 3 once upgraded to 4) database's tables to 5: the identity
/// with the ADU length; `handled` is made again with it in its key (its fragments' lengths are
/// not known: -1, which matches any). [`upgrade_to_5`] fills in the held fragments'.
pub(super) const UPGRADE_TO_5: &str = "
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
pub(super) const UPGRADE_HEADER_BYTES: usize = 1 << 20;

/// Fills in `frag_total` for the fragments held (read from each one's primary block) and names
/// those awaiting reassembly by the ADU key that includes it
/// ([`crate::agent::core::fragment::adu_key`]: the old key and the length). A fragment whose header
/// cannot be read keeps -1 (it waits to expire, as a damaged one would).
pub(super) fn upgrade_to_5(
    conn: &mut Connection,
    db_path: &Path,
    blobs_dir: &Path,
) -> Result<(), StoreError> {
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
            rusqlite::params![crate::store::writer::to_sql(total), StateKind::AwaitingReassembly as i64, id],
        )
        .map_err(db_error(db_path))?;
    }
    tx.commit().map_err(db_error(db_path))
}

pub(super) const SCHEMA: &str = "
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
