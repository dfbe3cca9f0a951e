//! Why a store operation failed.

use std::path::PathBuf;

use crate::bundle::BundleError;

/// Errors of the bundle store. The agent maps [`StoreError::DepletedStorage`] to the RFC 9171
/// reason code "depleted storage" (XFER_REFUSE, custody refusal, or an API error).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A quota (bundles or bytes) would be exceeded: RFC 9171's "depleted storage".
    #[error(
        "depleted storage: storing {needed_bytes} more bytes would exceed the quota ({}, {} in use)",
        usage(*bundles, *max_bundles, "bundles"), usage(*bytes, *max_bytes, "bytes")
    )]
    DepletedStorage {
        /// The bytes that were to be stored.
        needed_bytes: u64,
        /// Bundles held now.
        bundles: u64,
        /// The bundle quota (0: none).
        max_bundles: u64,
        /// Bytes held now.
        bytes: u64,
        /// The byte quota (0: none).
        max_bytes: u64,
    },
    /// Not a valid bundle.
    #[error("the bundle cannot be stored because it is not a valid bundle: {0}")]
    InvalidBundle(#[from] BundleError),
    /// No bundle has this store id (deleted meanwhile, or never there).
    #[error("no bundle with store id {0}")]
    NotFound(i64),
    /// The database engine failed.
    #[error("the store database {path} failed: {source}; run `dtn store check --data-dir DIR` to inspect it")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A batch of writes did not commit; none of it was stored.
    #[error("the store database {path} could not commit: {message}; nothing of this batch was stored")]
    CommitFailed {
        /// The database file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A file operation failed.
    #[error("{action} {path} failed: {source}")]
    Io {
        /// What was being done ("writing", "opening", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A bundle file's length is not the one recorded.
    #[error(
        "the bundle file {path} is {found} bytes but its row says {expected}; the file was damaged outside the store"
    )]
    BlobLength {
        /// The bundle file.
        path: PathBuf,
        /// The length recorded.
        expected: u64,
        /// The length found.
        found: u64,
    },
    /// The database was written by another version of this program.
    #[error("the store database {path} has schema version {found}, this program knows {expected}")]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The one this program knows.
        expected: i64,
    },
    /// A stored bundle's bytes fail their check (design §3.7): never served.
    #[error(
        "the stored bundle in {path} is damaged ({problem}); it is never served: \
         `dtn bundles list` shows it quarantined, `dtn store check` examines the store"
    )]
    Damaged {
        /// Where the bundle is kept.
        path: PathBuf,
        /// What the check found.
        problem: String,
    },
    /// A metadata row cannot be read.
    #[error("the store's row {id} is corrupt: {problem}")]
    CorruptRow {
        /// The row's store id.
        id: i64,
        /// What is wrong with it.
        problem: String,
    },
    /// A stored registration is not an endpoint ID.
    #[error("the store's registration {endpoint:?} is not an endpoint ID: {problem}")]
    CorruptRegistration {
        /// The text stored.
        endpoint: String,
        /// Why it does not parse.
        problem: String,
    },
    /// The store was closed (the node is stopping).
    #[error("the store is closed")]
    Closed,
    /// Another process holds the data directory.
    #[error(
        "the store in {dir} is in use by another process (a dtn daemon?): stop it first, or use another \
         data directory"
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
}

/// Use against a quota as people read it: "3 of 10 bundles", or "3 bundles (no limit)" for an
/// unset one (not "of 18446744073709551615").
fn usage(used: u64, max: u64, unit: &str) -> String {
    if max == u64::MAX { format!("{used} {unit} (no limit)") } else { format!("{used} of {max} {unit}") }
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { action, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_quota_reads_as_no_limit() {
        let full = StoreError::DepletedStorage {
            needed_bytes: 100,
            bundles: 3,
            max_bundles: u64::MAX,
            bytes: 65_500,
            max_bytes: 65_536,
        };
        assert_eq!(
            full.to_string(),
            "depleted storage: storing 100 more bytes would exceed the quota (3 bundles (no limit), \
             65500 of 65536 bytes in use)"
        );
    }
}
