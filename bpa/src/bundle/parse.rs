//! Parsing and validation of whole bundles and of bundle headers (RFC 9171 §4).

use std::ops::Range;

use bytes::Bytes;

use super::block::{
    CanonicalBlock, bib_targets, block_type, block_type_name, decode_bundle_age, decode_hop_count,
    decode_previous_node,
};
use super::cbor::{self, Reader};
use super::crc::CrcType;
use super::error::{BlockRef, BundleError};
use super::flags::BlockFlags;
use super::options::ParseOptions;
use super::primary::{PrimaryBlock, read_crc};

/// A canonical block as located in the input.
#[derive(Debug, Clone)]
pub(crate) struct RawBlock {
    pub block_type: u64,
    pub number: u64,
    pub flags: BlockFlags,
    pub crc_type: CrcType,
    /// Where the block starts in the input.
    pub start: usize,
    /// Where the head of the block-type-specific data byte string is.
    pub data_head: usize,
    /// The block is an indefinite-length array: a break follows its last item.
    pub indefinite: bool,
    /// Where the block-type-specific data lies. For a payload in header-only mode it may
    /// extend past the end of the input.
    pub data: Range<usize>,
}

impl RawBlock {
    /// For the payload block: the length of the bundle it ends (its CRC field, its own break if
    /// it is an indefinite-length array, and the bundle's break).
    pub fn bundle_length(&self) -> u64 {
        self.data.end as u64 + self.crc_type.field_len() as u64 + u64::from(self.indefinite) + 1
    }

    pub fn to_block(&self, input: &Bytes) -> CanonicalBlock {
        CanonicalBlock {
            block_type: self.block_type,
            number: self.number,
            flags: self.flags,
            crc_type: self.crc_type,
            data: input.slice(self.data.clone()),
        }
    }
}

/// The header fields of a canonical block that the cross-block rules look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockHead {
    pub block_type: u64,
    pub number: u64,
    pub flags: BlockFlags,
}

/// What the cross-block rules need to know of a canonical block, whether it was parsed
/// ([`RawBlock`], data in the input) or built ([`CanonicalBlock`], data in the block).
pub(crate) trait BlockView {
    fn head(&self) -> BlockHead;
    fn data<'a>(&'a self, input: &'a [u8]) -> &'a [u8];
}

impl BlockView for RawBlock {
    fn head(&self) -> BlockHead {
        BlockHead { block_type: self.block_type, number: self.number, flags: self.flags }
    }
    fn data<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        &input[self.data.clone()]
    }
}

impl BlockView for CanonicalBlock {
    fn head(&self) -> BlockHead {
        BlockHead { block_type: self.block_type, number: self.number, flags: self.flags }
    }
    fn data<'a>(&'a self, _input: &'a [u8]) -> &'a [u8] {
        &self.data
    }
}

/// The result of scanning a bundle up to its payload block.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub primary: PrimaryBlock,
    /// Where the primary block lies in the input.
    pub primary_range: Range<usize>,
    pub extensions: Vec<RawBlock>,
    pub payload: RawBlock,
}

/// Whether the payload's content must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Whole,
    HeaderOnly,
}

/// Scans the primary block and the canonical blocks up to and including the payload block's
/// header (and, in `Whole` mode, its data and CRC), then validates every cross-block rule.
/// In `Whole` mode the bundle's end (break stop code, no trailing bytes) is also checked.
pub(crate) fn scan(input: &Bytes, options: &ParseOptions, mode: Mode) -> Result<Scanned, BundleError> {
    let buf: &[u8] = input;
    match buf.first() {
        None => {
            return Err(BundleError::Cbor {
                field: "the bundle",
                offset: 0,
                problem: cbor::CborProblem::Truncated,
            });
        }
        Some(&cbor::INDEFINITE_ARRAY) => {}
        Some(&found) => return Err(BundleError::NotIndefiniteArray { found }),
    }
    if mode == Mode::Whole && buf.len() as u64 > options.max_bundle_size {
        return Err(BundleError::TooLarge { size: buf.len() as u64, limit: options.max_bundle_size });
    }
    let mut r = Reader::at(buf, 1);
    let primary = PrimaryBlock::decode(&mut r, options)?;
    let primary_range = 1..r.position();
    let mut extensions: Vec<RawBlock> = Vec::new();
    let payload = loop {
        if r.take_break() {
            return Err(match extensions.last() {
                None => BundleError::NoCanonicalBlocks,
                Some(last) => BundleError::MissingPayloadBlock { last_type: last.block_type },
            });
        }
        if extensions.len() >= options.max_blocks {
            return Err(BundleError::TooManyBlocks { limit: options.max_blocks });
        }
        let block = decode_canonical(&mut r, mode)?;
        if block.block_type == block_type::PAYLOAD {
            break block;
        }
        extensions.push(block);
    };
    let payload_len = payload.data.end - payload.data.start;
    let bundle_len = payload.bundle_length();
    if bundle_len > options.max_bundle_size {
        return Err(BundleError::TooLarge { size: bundle_len, limit: options.max_bundle_size });
    }
    validate(&primary, &extensions, &payload, payload_len as u64, input, options)?;
    if mode == Mode::Whole {
        if !r.take_break() {
            return Err(if r.remaining() == 0 {
                BundleError::MissingBreak { offset: r.position() }
            } else {
                BundleError::PayloadNotLast
            });
        }
        if r.remaining() != 0 {
            return Err(BundleError::TrailingBytes { offset: r.position(), count: r.remaining() });
        }
    }
    Ok(Scanned { primary, primary_range, extensions, payload })
}

fn uint(r: &mut Reader<'_>, field: &'static str) -> Result<u64, BundleError> {
    let at = r.position();
    r.uint().map_err(BundleError::cbor(field, at))
}

/// Decodes one canonical block (RFC 9171 §4.3.2) and checks its CRC.
fn decode_canonical(r: &mut Reader<'_>, mode: Mode) -> Result<RawBlock, BundleError> {
    let start = r.position();
    let items = r.array().map_err(BundleError::cbor("a canonical block", start))?;
    let block_type = uint(r, "the block type code")?;
    let number = uint(r, "the block number")?;
    let flags = BlockFlags(uint(r, "the block processing control flags")?);
    let crc_type = CrcType::from_code(uint(r, "the block's CRC type")?)?;
    let block = BlockRef::Number(number);
    let expected = if crc_type == CrcType::None { 5 } else { 6 };
    if let Some(found) = items
        && found != expected
    {
        return Err(BundleError::CanonicalBlockLength { block, found, expected });
    }
    let data_at = r.position();
    let header_only_payload = mode == Mode::HeaderOnly && block_type == block_type::PAYLOAD;
    let raw = |data| RawBlock {
        block_type,
        number,
        flags,
        crc_type,
        start,
        data_head: data_at,
        indefinite: items.is_none(),
        data,
    };
    if header_only_payload {
        // The payload's content need not be here: its head says where it is.
        let len = r.bytes_head().map_err(BundleError::cbor("the block-type-specific data", data_at))?;
        let data_start = r.position();
        let data_end = usize::try_from(len)
            .ok()
            .and_then(|len| data_start.checked_add(len))
            .ok_or(BundleError::TooLarge { size: len, limit: usize::MAX as u64 })?;
        return Ok(raw(data_start..data_end));
    }
    let data = r.bytes().map_err(BundleError::cbor("the block-type-specific data", data_at))?;
    let crc = read_crc(r, crc_type, block)?;
    if items.is_none() && !r.take_break() {
        return Err(BundleError::CanonicalBlockLength { block, found: expected + 1, expected });
    }
    if let Some(crc) = crc {
        crc.verify(r.buffer(), start, r.position())?;
    }
    Ok(raw(data))
}

/// The cross-block rules of RFC 9171 §4.
///
/// `extensions` are the blocks before the payload; `input` is where parsed blocks' data lies.
pub(crate) fn validate<B: BlockView>(
    primary: &PrimaryBlock,
    extensions: &[B],
    payload: &B,
    payload_len: u64,
    input: &[u8],
    options: &ParseOptions,
) -> Result<(), BundleError> {
    let flags = primary.flags;
    // §4.2.3: administrative records and anonymous bundles.
    if flags.is_admin_record() && flags.report_requests() != 0 {
        return Err(BundleError::AdminRecordRequestsReports { flags: flags.0 });
    }
    let anonymous = primary.source.is_null();
    if anonymous {
        if !flags.must_not_fragment() {
            return Err(BundleError::AnonymousSourceFragmentable);
        }
        if flags.report_requests() != 0 {
            return Err(BundleError::AnonymousSourceRequestsReports { flags: flags.0 });
        }
    }
    // §4.1: the payload block is number 1; numbers are unique and 0 belongs to the primary block.
    if payload.head().number != 1 {
        return Err(BundleError::PayloadBlockNumber { number: payload.head().number });
    }
    let mut seen = [false; 3];
    // Numbers that repeat are let through (to be renumbered) only when nothing refers to blocks
    // by number: a BIB's or BCB's targets would then be ambiguous.
    let renumbering = options.accept_duplicate_block_numbers
        && !extensions.iter().any(|b| {
            matches!(b.head().block_type, block_type::BLOCK_INTEGRITY | block_type::BLOCK_CONFIDENTIALITY)
        });
    for (position, block) in extensions.iter().enumerate() {
        match block.head().number {
            0 if renumbering => {}
            0 => {
                return Err(BundleError::BlockNumberZero {
                    block_type_name: block_type_name(block.head().block_type).to_string(),
                    position,
                });
            }
            1 => {
                return Err(BundleError::BlockNumberOneNotPayload { block_type: block.head().block_type });
            }
            n => {
                if !renumbering && extensions[..position].iter().any(|b| b.head().number == n) {
                    return Err(BundleError::DuplicateBlockNumber { number: n });
                }
            }
        }
        // §4.4: at most one Previous Node, Bundle Age and Hop Count block.
        let slot = match block.head().block_type {
            block_type::PREVIOUS_NODE => Some(0),
            block_type::BUNDLE_AGE => Some(1),
            block_type::HOP_COUNT => Some(2),
            _ => None,
        };
        if let Some(slot) = slot {
            if seen[slot] {
                return Err(BundleError::DuplicateExtensionBlock {
                    name: block_type_name(block.head().block_type),
                });
            }
            seen[slot] = true;
            let (data, number) = (block.data(input), block.head().number);
            match block.head().block_type {
                block_type::PREVIOUS_NODE => {
                    decode_previous_node(data, number, options.max_eid_length).map(drop)?
                }
                block_type::BUNDLE_AGE => decode_bundle_age(data, number).map(drop)?,
                _ => decode_hop_count(data, number).map(drop)?,
            }
        }
    }
    // §4.2.4: no "report if unprocessable" for admin records and anonymous bundles.
    if (flags.is_admin_record() || anonymous)
        && let Some(b) = extensions
            .iter()
            .chain(std::iter::once(payload))
            .find(|b| b.head().flags.contains(BlockFlags::REPORT_IF_UNPROCESSABLE))
    {
        return Err(BundleError::BlockRequestsReport { block: BlockRef::Number(b.head().number) });
    }
    // §4.4.2: no clock, so the age must travel with the bundle.
    if primary.creation.time == 0 && !seen[1] && !options.accept_missing_bundle_age {
        return Err(BundleError::MissingBundleAge);
    }
    // §4.3.1: the primary block's CRC may only be absent when a BIB protects it.
    if primary.crc_type == CrcType::None
        && !options.accept_primary_without_crc
        && !extensions
            .iter()
            .any(|b| b.head().block_type == block_type::BLOCK_INTEGRITY && bib_targets(b.data(input), 0))
    {
        return Err(BundleError::MissingPrimaryCrc);
    }
    // §4.3.1, §5.8: a fragment's payload lies within the original ADU.
    if let Some(fragment) = &primary.fragment
        && fragment.offset.checked_add(payload_len).is_none_or(|end| end > fragment.total_adu_length)
    {
        return Err(BundleError::FragmentOutOfRange {
            offset: fragment.offset,
            payload: payload_len,
            total: fragment.total_adu_length,
        });
    }
    Ok(())
}
