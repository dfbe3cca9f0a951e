//! What a parse accepts: its limits and its leniencies.

/// Limits and switches for parsing. Every limit is checked before anything is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// Largest bundle accepted, in bytes (whole encoded bundle).
    pub max_bundle_size: u64,
    /// Most blocks accepted, the primary block not counted.
    pub max_blocks: usize,
    /// Longest encoded EID accepted, in bytes.
    pub max_eid_length: usize,
    /// Header-only parsing gives up when no payload block has started within this many bytes.
    pub max_header_size: usize,
    /// Accept a primary block without CRC even when no BIB targets it (dtn7-rs sends these;
    /// RFC 9171 §4.3.1 requires a CRC). Parsed bundles report it through
    /// [`super::Bundle::primary_crc_missing`].
    pub accept_primary_without_crc: bool,
    /// Accept creation time 0 without a Bundle Age block (RFC 9171 §4.4.2 requires one; the
    /// examples of RFC 9173 Appendix A omit it). Parsed bundles report it through
    /// [`super::Bundle::bundle_age_missing`].
    pub accept_missing_bundle_age: bool,
    /// Accept extension blocks numbered 0 or numbered twice (RFC 9171 §4.1 forbids both), when
    /// no security block is there to name blocks by number: ION 4.1.3 numbers every extension
    /// block of its fragments 0. The caller gives them numbers of their own
    /// ([`super::Bundle::renumber_blocks`]) before the bundle goes anywhere.
    pub accept_duplicate_block_numbers: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_bundle_size: 16 << 30,
            max_blocks: 64,
            max_eid_length: 1024,
            max_header_size: 1 << 20,
            accept_primary_without_crc: false,
            accept_missing_bundle_age: false,
            accept_duplicate_block_numbers: false,
        }
    }
}

impl ParseOptions {
    /// The defaults with the two leniencies common peers need on:
    /// [`ParseOptions::accept_primary_without_crc`] (dtn7-rs) and
    /// [`ParseOptions::accept_missing_bundle_age`] (RFC 9173's examples).
    pub fn lenient() -> Self {
        ParseOptions { accept_primary_without_crc: true, accept_missing_bundle_age: true, ..Self::default() }
    }
}
