//! Why a store operation failed.

use std::path::PathBuf;

use crate::bundle::BundleError;

/// Errors of the bundle store. The agent maps [`StoreError::DepletedStorage`] to the RFC 9171
/// reason code "depleted storage" (XFER_REFUSE, custody refusal, or an API error).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "depleted storage: storing {needed_bytes} more bytes would exceed the quota ({}, {} in use)",
        usage(*bundles, *max_bundles, "bundles"), usage(*bytes, *max_bytes, "bytes")
    )]
    DepletedStorage { needed_bytes: u64, bundles: u64, max_bundles: u64, bytes: u64, max_bytes: u64 },
    #[error("the bundle cannot be stored because it is not a valid bundle: {0}")]
    InvalidBundle(#[from] BundleError),
    #[error("no bundle with store id {0}")]
    NotFound(i64),
    #[error("the store database {path} failed: {source}; run `dtn store check --data-dir DIR` to inspect it")]
    Database { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("the store database {path} could not commit: {message}; nothing of this batch was stored")]
    CommitFailed { path: PathBuf, message: String },
    #[error("{action} {path} failed: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "the bundle file {path} is {found} bytes but its row says {expected}; the file was damaged outside the store"
    )]
    BlobLength { path: PathBuf, expected: u64, found: u64 },
    #[error("the store database {path} has schema version {found}, this program knows {expected}")]
    SchemaVersion { path: PathBuf, found: i64, expected: i64 },
    #[error(
        "the stored bundle in {path} is damaged ({problem}); it is never served: \
         `dtn bundles list` shows it quarantined, `dtn store check` examines the store"
    )]
    Damaged { path: PathBuf, problem: String },
    #[error("the store's row {id} is corrupt: {problem}")]
    CorruptRow { id: i64, problem: String },
    #[error("the store's registration {endpoint:?} is not an endpoint ID: {problem}")]
    CorruptRegistration { endpoint: String, problem: String },
    #[error("the store is closed")]
    Closed,
    #[error(
        "the store in {dir} is in use by another process (a dtn daemon?): stop it first, or use another \
         data directory"
    )]
    Locked { dir: PathBuf },
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
