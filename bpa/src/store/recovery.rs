//! What opening the store does before it serves: rows and files reconciled (design §5). The
//! survey only reads, so `dtn store check` can say what recovery would do without doing it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::blob::{blob_number, sync_dir};
use super::error::StoreError;
use super::wal::WalReport;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bundle files no row refers to (a crash between the file and its row): removed. Such a
    /// bundle had not been acknowledged.
    pub orphan_files_removed: u64,
    /// `.part` files of inserts that never committed: removed.
    pub incomplete_inserts_removed: u64,
    /// Rows whose bundle file is missing or has the wrong length (damaged outside the store):
    /// removed, each named here as `(store id, file, problem)`.
    pub rows_without_file: Vec<(i64, String, String)>,
    /// What the write-ahead log showed before SQLite replayed it: committed transactions it
    /// could not replay (acknowledged changes lost) are named there.
    pub wal: WalReport,
    /// First free blob file number.
    pub next_blob_number: u64,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} orphan bundle files removed, {} incomplete inserts removed, {} rows with a missing or damaged file removed",
            self.orphan_files_removed,
            self.incomplete_inserts_removed,
            self.rows_without_file.len()
        )?;
        for (id, file, problem) in &self.rows_without_file {
            write!(f, "\n  row {id}: {file}: {problem}")?;
        }
        if let Some(loss) = self.wal.loss() {
            write!(f, "\n  {loss}")?;
        }
        Ok(())
    }
}

/// What is out of place between the rows and the blob directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// `.part` files: inserts that never committed.
    pub incomplete_inserts: Vec<PathBuf>,
    /// Bundle files no row refers to.
    pub orphan_files: Vec<PathBuf>,
    /// Rows whose file is missing or has the wrong length: `(store id, file, problem)`.
    pub rows_without_file: Vec<(i64, String, String)>,
    /// First free blob file number.
    pub next_blob_number: u64,
}

impl Survey {
    /// Whether nothing needs repair: no insert left half done, no file without its row.
    pub fn is_clean(&self) -> bool {
        self.incomplete_inserts.is_empty()
            && self.orphan_files.is_empty()
            && self.rows_without_file.is_empty()
    }
}

/// Looks at the blob directory and the rows that name files; changes nothing.
pub(crate) fn survey(conn: &Connection, db_path: &Path, blobs_dir: &Path) -> Result<Survey, StoreError> {
    let db_error =
        |source: rusqlite::Error| StoreError::Database { path: db_path.to_path_buf(), source: source.into() };
    let mut found = Survey::default();
    let mut on_disk: HashSet<String> = HashSet::new();
    let mut highest = 0u64;
    let entries = std::fs::read_dir(blobs_dir).map_err(StoreError::io("listing", blobs_dir))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io("listing", blobs_dir))?;
        let path = entry.path();
        let Some((number, complete)) = blob_number(&path) else {
            tracing::warn!(path = %path.display(), "a file the store did not write is in its blob directory; left alone");
            continue;
        };
        highest = highest.max(number + 1);
        if complete {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                on_disk.insert(name.to_string());
            }
        } else {
            found.incomplete_inserts.push(path);
        }
    }
    let mut referenced: HashSet<String> = HashSet::new();
    let mut rows =
        conn.prepare("SELECT id, file, length FROM bundles WHERE file IS NOT NULL").map_err(db_error)?;
    let rows = rows
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
        .map_err(db_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error)?;
    for (id, file, length) in rows {
        let problem = if !on_disk.contains(&file) {
            Some("the file is missing".to_string())
        } else {
            match std::fs::metadata(blobs_dir.join(&file)) {
                Ok(m) if m.len() == length as u64 => None,
                Ok(m) => Some(format!("the file is {} bytes, the row says {length}", m.len())),
                Err(e) => Some(format!("the file cannot be read: {e}")),
            }
        };
        referenced.insert(file.clone());
        if let Some(problem) = problem {
            found.rows_without_file.push((id, file, problem));
        }
    }
    let mut orphans: Vec<&String> = on_disk.difference(&referenced).collect();
    orphans.sort();
    found.orphan_files = orphans.into_iter().map(|name| blobs_dir.join(name)).collect();
    found.next_blob_number = highest;
    Ok(found)
}

/// The survey, then what it found put right: leftover files removed, rows whose file is gone
/// or damaged removed (each logged as an error: those bundles were damaged outside the store).
pub(crate) fn recover(
    conn: &mut Connection,
    db_path: &Path,
    blobs_dir: &Path,
    wal: WalReport,
) -> Result<RecoveryReport, StoreError> {
    let db_error =
        |source: rusqlite::Error| StoreError::Database { path: db_path.to_path_buf(), source: source.into() };
    let found = survey(conn, db_path, blobs_dir)?;
    let mut removed_any = false;
    for path in &found.incomplete_inserts {
        std::fs::remove_file(path).map_err(StoreError::io("removing", path))?;
        removed_any = true;
    }
    let tx = conn.transaction().map_err(db_error)?;
    for (id, file, problem) in &found.rows_without_file {
        tracing::error!(store_id = id, %file, %problem, "a stored bundle's file is gone or damaged; its row is removed");
        tx.execute("DELETE FROM bundles WHERE id = ?1", [id]).map_err(db_error)?;
    }
    tx.commit().map_err(db_error)?;
    for path in &found.orphan_files {
        std::fs::remove_file(path).map_err(StoreError::io("removing", path))?;
        removed_any = true;
    }
    // Damaged files whose rows were dropped are orphans now too.
    for (_, file, _) in &found.rows_without_file {
        let path = blobs_dir.join(file);
        if path.exists() {
            std::fs::remove_file(&path).map_err(StoreError::io("removing", &path))?;
            removed_any = true;
        }
    }
    if removed_any {
        sync_dir(blobs_dir)?;
    }
    Ok(RecoveryReport {
        orphan_files_removed: found.orphan_files.len() as u64,
        incomplete_inserts_removed: found.incomplete_inserts.len() as u64,
        rows_without_file: found.rows_without_file,
        wal,
        next_blob_number: found.next_blob_number,
    })
}
