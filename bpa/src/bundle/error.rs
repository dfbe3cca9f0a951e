//! Why a bundle was rejected. Each variant names the rule it enforces and where it is written.

use super::cbor::CborProblem;
use super::eid::EidError;

/// Which block an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRef {
    /// The primary block (implicitly block number 0).
    Primary,
    /// A canonical block, by its block number.
    Number(u64),
    /// The canonical block at this position (0-based after the primary) whose number is unknown.
    Position(usize),
}

impl std::fmt::Display for BlockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockRef::Primary => f.write_str("the primary block"),
            BlockRef::Number(n) => write!(f, "block number {n}"),
            BlockRef::Position(i) => write!(f, "canonical block #{} in order", i + 1),
        }
    }
}

/// Errors from parsing, validating or building a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("malformed CBOR in {field} at byte {offset}: {problem}")]
    Cbor { field: &'static str, offset: usize, problem: CborProblem },
    #[error(
        "a bundle is a CBOR indefinite-length array (first byte 0x9f); found 0x{found:02x} (RFC 9171 §4.1)"
    )]
    NotIndefiniteArray { found: u8 },
    #[error("the bundle ends before its break stop code at byte {offset} (RFC 9171 §4.1)")]
    MissingBreak { offset: usize },
    #[error("{count} bytes follow the bundle's break stop code at byte {offset} (RFC 9171 §4.1)")]
    TrailingBytes { offset: usize, count: usize },
    #[error(
        "a bundle has a primary block and at least one canonical block (RFC 9171 §4.1); this one has none"
    )]
    NoCanonicalBlocks,
    #[error("bundle protocol version {version} is not 7 (RFC 9171 §4.3.1)")]
    UnsupportedVersion { version: u64 },
    #[error(
        "the primary block has {found} items but its flags and CRC type require {expected} (RFC 9171 §4.3.1)"
    )]
    PrimaryBlockLength { found: u64, expected: u64 },
    #[error("{block} has {found} items but its CRC type requires {expected} (RFC 9171 §4.3.2)")]
    CanonicalBlockLength { block: BlockRef, found: u64, expected: u64 },
    #[error("CRC type {code} is not 0, 1 or 2 (RFC 9171 §4.2.1)")]
    InvalidCrcType { code: u64 },
    #[error(
        "the CRC of {block} is {found_len} bytes, but its CRC type requires {expected_len} (RFC 9171 §4.2.1)"
    )]
    CrcLength { block: BlockRef, found_len: usize, expected_len: usize },
    #[error(
        "CRC mismatch in {block}: the block carries {carried:#x}, its contents give {computed:#x} (RFC 9171 §4.2.1)"
    )]
    CrcMismatch { block: BlockRef, carried: u32, computed: u32 },
    #[error(
        "the primary block has no CRC and no BIB targets it (RFC 9171 §4.3.1); \
         a node accepts such bundles with `primary_without_crc = true` under `[accept]` in its \
         configuration (`dtn bundle validate --lenient` for a file)"
    )]
    MissingPrimaryCrc,
    #[error("an administrative record must not request status reports (flags {flags:#x}) (RFC 9171 §4.2.3)")]
    AdminRecordRequestsReports { flags: u64 },
    #[error(
        "a bundle with an anonymous (dtn:none) source must set \"must not be fragmented\" (RFC 9171 §4.2.3)"
    )]
    AnonymousSourceFragmentable,
    #[error(
        "a bundle with an anonymous (dtn:none) source must not request status reports (flags {flags:#x}) (RFC 9171 §4.2.3)"
    )]
    AnonymousSourceRequestsReports { flags: u64 },
    #[error(
        "{block} asks for a status report if it can't be processed, which administrative records and \
         anonymous bundles must not do (RFC 9171 §4.2.4)"
    )]
    BlockRequestsReport { block: BlockRef },
    #[error("{field} is not a valid EID: {source} (RFC 9171 §4.2.5.1)")]
    Eid { field: &'static str, source: EidError },
    #[error(
        "the fragment offset {offset} plus the payload length {payload} exceed the total ADU length {total} (RFC 9171 §5.8)"
    )]
    FragmentOutOfRange { offset: u64, payload: u64, total: u64 },
    #[error(
        "block number 0 is the primary block's; {block_type_name} block at position {position} uses it (RFC 9171 §4.1)"
    )]
    BlockNumberZero { block_type_name: String, position: usize },
    #[error("block number {number} is used twice (RFC 9171 §4.1)")]
    DuplicateBlockNumber { number: u64 },
    #[error("the payload block must have block number 1, not {number} (RFC 9171 §4.1)")]
    PayloadBlockNumber { number: u64 },
    #[error(
        "block number 1 is reserved for the payload block, but a block of type {block_type} uses it (RFC 9171 §4.1)"
    )]
    BlockNumberOneNotPayload { block_type: u64 },
    #[error("the last block is of type {last_type}, not the payload block (RFC 9171 §4.1)")]
    MissingPayloadBlock { last_type: u64 },
    #[error("the payload block is followed by another block; it must be last (RFC 9171 §4.1)")]
    PayloadNotLast,
    #[error("the bundle has more than one {name} block (RFC 9171 §4.4)")]
    DuplicateExtensionBlock { name: &'static str },
    #[error(
        "the creation time is 0 (no clock) but there is no Bundle Age block (RFC 9171 §4.4.2); \
         a node accepts such bundles with `missing_bundle_age = true` under `[accept]` in its \
         configuration (`dtn bundle validate --lenient` for a file)"
    )]
    MissingBundleAge,
    #[error("the {name} block (number {number}) is malformed: {problem} ({section})")]
    BadExtensionBlock { name: &'static str, number: u64, problem: String, section: &'static str },
    #[error("the hop limit {limit} is outside 1..=255 (RFC 9171 §4.4.3)")]
    HopLimitOutOfRange { limit: u64 },
    #[error("the bundle has more than {limit} blocks, the configured limit")]
    TooManyBlocks { limit: usize },
    #[error("the bundle is {size} bytes, over the configured limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("no payload block starts within the first {limit} bytes (the configured header limit)")]
    HeaderTooLarge { limit: usize },
}

impl BundleError {
    /// Wraps a CBOR problem with the field and byte offset it happened at.
    pub(crate) fn cbor(field: &'static str, offset: usize) -> impl FnOnce(CborProblem) -> BundleError {
        move |problem| BundleError::Cbor { field, offset, problem }
    }

    /// True when the input simply ended too early: more bytes could make it valid.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            BundleError::Cbor { problem: CborProblem::Truncated, .. }
                | BundleError::Eid { source: EidError::Cbor(CborProblem::Truncated), .. }
                | BundleError::MissingBreak { .. }
        )
    }
}
