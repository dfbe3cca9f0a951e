//! Where bundles go in a spool directory (design §3, after NNCP's `nncp-xfer`): one
//! sub-directory per destination node, named by a filesystem-safe encoding of its node ID, and
//! in it one file per bundle, named by a hash of the bundle's ID. A file being written has a
//! temporary name until it is whole and on the medium.

use bpa::bundle::{BundleId, Eid};

/// The suffix of a whole bundle file.
pub const BUNDLE_SUFFIX: &str = ".bundle";
/// The prefix of a file still being written (or left by a writer that died).
pub const TEMPORARY_PREFIX: &str = ".tmp-";

/// The sub-directory for `node`: its node ID with every byte outside `[A-Za-z0-9._-]`
/// percent-encoded (`ipn:2.0` → `ipn%3A2.0`, `dtn://village/` → `dtn%3A%2F%2Fvillage%2F`), so
/// it is a valid name on FAT and every other filesystem a stick may carry, and reversible.
pub fn node_dir(node: &Eid) -> String {
    let mut out = String::new();
    for byte in node.node_id().to_string().bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The file name of a bundle: the first 128 bits of the SHA-256 of its ID's text, in hex.
pub fn bundle_file(id: &BundleId) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, id.to_string().as_bytes());
    let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}{BUNDLE_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpa::bundle::CreationTimestamp;

    #[test]
    fn node_directories_are_safe_and_distinct() {
        assert_eq!(node_dir(&Eid::ipn(2, 0)), "ipn%3A2.0");
        assert_eq!(node_dir(&Eid::ipn(2, 7)), "ipn%3A2.0", "the node, not the endpoint");
        let village: Eid = "dtn://village/inbox".parse().expect("eid");
        assert_eq!(node_dir(&village), "dtn%3A%2F%2Fvillage%2F");
        assert_ne!(node_dir(&Eid::ipn(2, 0)), node_dir(&Eid::ipn(20, 0)));
    }

    #[test]
    fn bundle_files_are_named_by_the_bundle_id() {
        let id = |seq| BundleId {
            source: Eid::ipn(1, 1),
            creation: CreationTimestamp { time: 5, sequence: seq },
            fragment: None,
        };
        let name = bundle_file(&id(1));
        assert_eq!(name.len(), 32 + BUNDLE_SUFFIX.len());
        assert_eq!(name, bundle_file(&id(1)));
        assert_ne!(name, bundle_file(&id(2)));
    }
}
