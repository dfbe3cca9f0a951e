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
    /// The CBOR does not decode.
    #[error("malformed CBOR in {field} at byte {offset}: {problem}")]
    Cbor {
        /// The bundle's field being read.
        field: &'static str,
        /// Where, in bytes from the bundle's start.
        offset: usize,
        /// What was wrong.
        problem: CborProblem,
    },
    /// The bundle is not an indefinite-length array.
    #[error(
        "a bundle is a CBOR indefinite-length array (first byte 0x9f); found 0x{found:02x} (RFC 9171 §4.1)"
    )]
    NotIndefiniteArray {
        /// The first byte found.
        found: u8,
    },
    /// The bundle ends before its break stop code.
    #[error("the bundle ends before its break stop code at byte {offset} (RFC 9171 §4.1)")]
    MissingBreak {
        /// Where the input ended.
        offset: usize,
    },
    /// Bytes follow the bundle.
    #[error("{count} bytes follow the bundle's break stop code at byte {offset} (RFC 9171 §4.1)")]
    TrailingBytes {
        /// Where the break stop code is.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// The bundle has no canonical block.
    #[error(
        "a bundle has a primary block and at least one canonical block (RFC 9171 §4.1); this one has none"
    )]
    NoCanonicalBlocks,
    /// The primary block's version is not 7.
    #[error("bundle protocol version {version} is not 7 (RFC 9171 §4.3.1)")]
    UnsupportedVersion {
        /// The version found.
        version: u64,
    },
    /// The primary block has the wrong number of items.
    #[error(
        "the primary block has {found} items but its flags and CRC type require {expected} (RFC 9171 §4.3.1)"
    )]
    PrimaryBlockLength {
        /// The items it has.
        found: u64,
        /// The items its flags and CRC type require.
        expected: u64,
    },
    /// A canonical block has the wrong number of items.
    #[error("{block} has {found} items but its CRC type requires {expected} (RFC 9171 §4.3.2)")]
    CanonicalBlockLength {
        /// The block.
        block: BlockRef,
        /// The items it has.
        found: u64,
        /// The items its CRC type requires.
        expected: u64,
    },
    /// An unknown CRC type.
    #[error("CRC type {code} is not 0, 1 or 2 (RFC 9171 §4.2.1)")]
    InvalidCrcType {
        /// The code found.
        code: u64,
    },
    /// A CRC of the wrong length for its type.
    #[error(
        "the CRC of {block} is {found_len} bytes, but its CRC type requires {expected_len} (RFC 9171 §4.2.1)"
    )]
    CrcLength {
        /// The block.
        block: BlockRef,
        /// Its CRC's length in bytes.
        found_len: usize,
        /// The length its type requires.
        expected_len: usize,
    },
    /// A block's CRC does not match its contents.
    #[error(
        "CRC mismatch in {block}: the block carries {carried:#x}, its contents give {computed:#x} (RFC 9171 §4.2.1)"
    )]
    CrcMismatch {
        /// The block.
        block: BlockRef,
        /// The CRC the block carries.
        carried: u32,
        /// The CRC of its contents.
        computed: u32,
    },
    /// The primary block has no CRC (and no BIB covers it).
    #[error(
        "the primary block has no CRC and no BIB targets it (RFC 9171 §4.3.1); \
         a node accepts such bundles with `primary_without_crc = true` under `[accept]` in its \
         configuration (`dtn bundle validate --lenient` for a file)"
    )]
    MissingPrimaryCrc,
    /// An administrative record asks for status reports.
    #[error("an administrative record must not request status reports (flags {flags:#x}) (RFC 9171 §4.2.3)")]
    AdminRecordRequestsReports {
        /// Its bundle processing control flags.
        flags: u64,
    },
    /// An anonymous bundle may be fragmented.
    #[error(
        "a bundle with an anonymous (dtn:none) source must set \"must not be fragmented\" (RFC 9171 §4.2.3)"
    )]
    AnonymousSourceFragmentable,
    /// An anonymous bundle asks for status reports.
    #[error(
        "a bundle with an anonymous (dtn:none) source must not request status reports (flags {flags:#x}) (RFC 9171 §4.2.3)"
    )]
    AnonymousSourceRequestsReports {
        /// Its bundle processing control flags.
        flags: u64,
    },
    /// A block of a bundle that must not ask for reports asks for one.
    #[error(
        "{block} asks for a status report if it can't be processed, which administrative records and \
         anonymous bundles must not do (RFC 9171 §4.2.4)"
    )]
    BlockRequestsReport {
        /// The block.
        block: BlockRef,
    },
    /// An endpoint ID does not decode.
    #[error("{field} is not a valid EID: {source} (RFC 9171 §4.2.5.1)")]
    Eid {
        /// The bundle's field.
        field: &'static str,
        /// Why it does not decode.
        source: EidError,
    },
    /// A fragment reaches past the end of its ADU.
    #[error(
        "the fragment offset {offset} plus the payload length {payload} exceed the total ADU length {total} (RFC 9171 §5.8)"
    )]
    FragmentOutOfRange {
        /// The fragment's offset.
        offset: u64,
        /// Its payload's length.
        payload: u64,
        /// The ADU's total length.
        total: u64,
    },
    /// A canonical block uses block number 0.
    #[error(
        "block number 0 is the primary block's; {block_type_name} block at position {position} uses it (RFC 9171 §4.1)"
    )]
    BlockNumberZero {
        /// The block's type, named.
        block_type_name: String,
        /// Its position among the canonical blocks, from 1.
        position: usize,
    },
    /// Two blocks share a block number.
    #[error("block number {number} is used twice (RFC 9171 §4.1)")]
    DuplicateBlockNumber {
        /// The number.
        number: u64,
    },
    /// The payload block's number is not 1.
    #[error("the payload block must have block number 1, not {number} (RFC 9171 §4.1)")]
    PayloadBlockNumber {
        /// Its number.
        number: u64,
    },
    /// Block number 1 is used by a block that is not the payload.
    #[error(
        "block number 1 is reserved for the payload block, but a block of type {block_type} uses it (RFC 9171 §4.1)"
    )]
    BlockNumberOneNotPayload {
        /// That block's type code.
        block_type: u64,
    },
    /// The last block is not the payload block.
    #[error("the last block is of type {last_type}, not the payload block (RFC 9171 §4.1)")]
    MissingPayloadBlock {
        /// The last block's type code.
        last_type: u64,
    },
    /// A block follows the payload block.
    #[error("the payload block is followed by another block; it must be last (RFC 9171 §4.1)")]
    PayloadNotLast,
    /// An extension block that may appear once appears twice.
    #[error("the bundle has more than one {name} block (RFC 9171 §4.4)")]
    DuplicateExtensionBlock {
        /// The block's name.
        name: &'static str,
    },
    /// No clock at the source, and no Bundle Age block.
    #[error(
        "the creation time is 0 (no clock) but there is no Bundle Age block (RFC 9171 §4.4.2); \
         a node accepts such bundles with `missing_bundle_age = true` under `[accept]` in its \
         configuration (`dtn bundle validate --lenient` for a file)"
    )]
    MissingBundleAge,
    /// An extension block's data is malformed.
    #[error("the {name} block (number {number}) is malformed: {problem} ({section})")]
    BadExtensionBlock {
        /// The block's name.
        name: &'static str,
        /// Its block number.
        number: u64,
        /// What is wrong.
        problem: String,
        /// The rule's section.
        section: &'static str,
    },
    /// The Hop Count block's limit is outside 1..=255.
    #[error("the hop limit {limit} is outside 1..=255 (RFC 9171 §4.4.3)")]
    HopLimitOutOfRange {
        /// The limit found.
        limit: u64,
    },
    /// More blocks than the node's limit.
    #[error("the bundle has more than {limit} blocks, the configured limit")]
    TooManyBlocks {
        /// The limit.
        limit: usize,
    },
    /// Larger than the node's limit.
    #[error("the bundle is {size} bytes, over the configured limit of {limit} bytes")]
    TooLarge {
        /// The bundle's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// No payload block within the node's header limit.
    #[error("no payload block starts within the first {limit} bytes (the configured header limit)")]
    HeaderTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
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
