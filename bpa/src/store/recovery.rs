//! What opening the store does before it serves: rows and files reconciled (design §5).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::blob::{blob_number, sync_dir};
use super::error::StoreError;

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
        Ok(())
    }
}

pub(crate) fn recover(
    conn: &mut Connection,
    db_path: &Path,
    blobs_dir: &Path,
) -> Result<RecoveryReport, StoreError> {
    let db_error = |source| StoreError::Database { path: db_path.to_path_buf(), source };
    let mut report = RecoveryReport::default();
    let mut on_disk: HashSet<String> = HashSet::new();
    let mut highest = 0u64;
    let entries = std::fs::read_dir(blobs_dir).map_err(StoreError::io("listing", blobs_dir))?;
    let mut removed_any = false;
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
            std::fs::remove_file(&path).map_err(StoreError::io("removing", &path))?;
            report.incomplete_inserts_removed += 1;
            removed_any = true;
        }
    }
    let tx = conn.transaction().map_err(db_error)?;
    let mut referenced: HashSet<String> = HashSet::new();
    {
        let mut rows =
            tx.prepare("SELECT id, file, length FROM bundles WHERE file IS NOT NULL").map_err(db_error)?;
        let rows = rows
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(db_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error)?;
        for (id, file, length) in rows {
            let problem = if !on_disk.contains(&file) {
                Some("the file is missing".to_string())
            } else {
                let path: PathBuf = blobs_dir.join(&file);
                match std::fs::metadata(&path) {
                    Ok(m) if m.len() == length as u64 => None,
                    Ok(m) => Some(format!("the file is {} bytes, the row says {length}", m.len())),
                    Err(e) => Some(format!("the file cannot be read: {e}")),
                }
            };
            match problem {
                None => {
                    referenced.insert(file);
                }
                Some(problem) => {
                    // Its file (if any) is removed below as damaged, not counted as an orphan.
                    referenced.insert(file.clone());
                    tracing::error!(store_id = id, %file, %problem, "a stored bundle's file is gone or damaged; its row is removed");
                    tx.execute("DELETE FROM bundles WHERE id = ?1", [id]).map_err(db_error)?;
                    report.rows_without_file.push((id, file, problem));
                }
            }
        }
    }
    tx.commit().map_err(db_error)?;
    for name in on_disk.difference(&referenced) {
        let path = blobs_dir.join(name);
        std::fs::remove_file(&path).map_err(StoreError::io("removing", &path))?;
        report.orphan_files_removed += 1;
        removed_any = true;
    }
    // Damaged files whose rows were dropped are orphans now too.
    for (_, file, _) in &report.rows_without_file {
        let path = blobs_dir.join(file);
        if path.exists() {
            std::fs::remove_file(&path).map_err(StoreError::io("removing", &path))?;
            removed_any = true;
        }
    }
    if removed_any {
        sync_dir(blobs_dir)?;
    }
    report.next_blob_number = highest;
    Ok(report)
}
