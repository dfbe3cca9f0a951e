//! The persistent bundle store (design §3 "durable before acknowledged", §5 "Store").
//!
//! Everything the agent keeps about a bundle lives here until the bundle leaves for a stated
//! reason: the encoded bundle itself, its identity, where it is going, when it expires and why it
//! is waiting. [`SqliteStore`] is the embedded default: SQLite (WAL, `synchronous=FULL`) for the
//! metadata and small bundles, one file per large bundle, and a single writer thread that
//! commits everything that arrived while the previous commit was on disk as one transaction
//! (group commit): one fsync for many callers, each answered only once its change is durable.

mod blob;
mod error;
mod recovery;
mod sqlite;
#[cfg(test)]
mod tests;
mod types;
mod writer;

pub use blob::PendingInsert;
pub use error::StoreError;
pub use recovery::RecoveryReport;
pub use sqlite::{SqliteStore, StoreConfig};
pub use types::{
    BundleData, BundleState, DeleteReason, InsertOutcome, StateKind, StoreId, StoreStats, StoredBundle,
};
