//! The data directory a node keeps its store in: its owner's alone, and one node's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bpa::{Eid, SqliteStore};

/// Checks that the store in `data_dir` is `node_id`'s (or makes it so, with `adopt`): a store
/// made under another node ID holds bundles addressed to that node, which would wait there for
/// ever.
pub(crate) async fn claim_store(
    store: &SqliteStore,
    node_id: &Eid,
    data_dir: &Path,
    adopt: bool,
) -> anyhow::Result<()> {
    match store.claim(&node_id.to_string(), adopt).await? {
        bpa::store::Ownership::First | bpa::store::Ownership::Same => Ok(()),
        bpa::store::Ownership::Adopted { previous } => {
            tracing::warn!(%previous, now = %node_id, data_dir = %data_dir.display(), "the store made by another node is this node's from now on (--adopt-store)");
            Ok(())
        }
        bpa::store::Ownership::Other { owner } => anyhow::bail!(
            "the store in {} belongs to node {owner}, and this node is {node_id}: give this node a data \
             directory of its own (data_dir, or `dtn init --data-dir DIR`), or set node_id = \"{owner}\"; \
             `dtn daemon --adopt-store` makes that store and its bundles this node's",
            data_dir.display()
        ),
    }
}

/// Creates a directory (and its parents) and makes it its owner's alone (0700).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
