//! Canonical blocks (RFC 9171 §4.3.2) and the extension blocks of RFC 9171 §4.4.

use bytes::Bytes;

use super::cbor::{self, Reader};
use super::crc::CrcType;
use super::eid::Eid;
use super::error::BundleError;
use super::flags::BlockFlags;
use super::primary::finish_crc;

/// Block type codes (RFC 9171 §9.1, RFC 9172 §11.1).
pub mod block_type {
    /// The payload block (RFC 9171 §4.3.3).
    pub const PAYLOAD: u64 = 1;
    /// The Previous Node block (RFC 9171 §4.4.1).
    pub const PREVIOUS_NODE: u64 = 6;
    /// The Bundle Age block (RFC 9171 §4.4.2).
    pub const BUNDLE_AGE: u64 = 7;
    /// The Hop Count block (RFC 9171 §4.4.3).
    pub const HOP_COUNT: u64 = 10;
    /// The Block Integrity Block (RFC 9172 §3.7).
    pub const BLOCK_INTEGRITY: u64 = 11;
    /// The Block Confidentiality Block (RFC 9172 §3.8).
    pub const BLOCK_CONFIDENTIALITY: u64 = 12;
}

/// A readable name for a block type code.
pub fn block_type_name(code: u64) -> &'static str {
    match code {
        block_type::PAYLOAD => "payload",
        block_type::PREVIOUS_NODE => "previous node",
        block_type::BUNDLE_AGE => "bundle age",
        block_type::HOP_COUNT => "hop count",
        block_type::BLOCK_INTEGRITY => "block integrity (BIB)",
        block_type::BLOCK_CONFIDENTIALITY => "block confidentiality (BCB)",
        192..=255 => "private/experimental",
        _ => "unknown",
    }
}

/// A canonical block. `data` is the block-type-specific data, a view into the bundle's bytes
/// when parsed: unknown blocks are kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalBlock {
    /// Its type code ([`block_type`]).
    pub block_type: u64,
    /// Its number, unique in the bundle (1 for the payload).
    pub number: u64,
    /// Its block processing control flags.
    pub flags: BlockFlags,
    /// The CRC it carries.
    pub crc_type: CrcType,
    /// Its block-type-specific data.
    pub data: Bytes,
}

/// The Hop Count block's contents (RFC 9171 §4.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HopCount {
    /// 1..=255.
    pub limit: u64,
    /// Hops taken so far.
    pub count: u64,
}

impl HopCount {
    /// Whether the count is past the limit.
    pub fn exceeded(&self) -> bool {
        self.count > self.limit
    }
}

impl CanonicalBlock {
    /// Appends everything up to and including the head of the data byte string.
    pub(crate) fn encode_head(&self, out: &mut Vec<u8>) {
        cbor::write_array(out, if self.crc_type == CrcType::None { 5 } else { 6 });
        cbor::write_uint(out, self.block_type);
        cbor::write_uint(out, self.number);
        cbor::write_uint(out, self.flags.0);
        cbor::write_uint(out, self.crc_type.code());
        cbor::write_head(out, cbor::MAJOR_BYTES, self.data.len() as u64);
    }

    /// Appends the whole block, computing its CRC.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.encode_head(out);
        out.extend_from_slice(&self.data);
        finish_crc(out, start, self.crc_type);
    }

    /// Decodes a Previous Node block's data (RFC 9171 §4.4.1).
    pub fn previous_node(&self, max_eid_length: usize) -> Result<Eid, BundleError> {
        decode_previous_node(&self.data, self.number, max_eid_length)
    }

    /// Decodes a Bundle Age block's data: milliseconds (RFC 9171 §4.4.2).
    pub fn bundle_age(&self) -> Result<u64, BundleError> {
        decode_bundle_age(&self.data, self.number)
    }

    /// Decodes a Hop Count block's data (RFC 9171 §4.4.3).
    pub fn hop_count(&self) -> Result<HopCount, BundleError> {
        decode_hop_count(&self.data, self.number)
    }

    /// True if this is a BIB whose security targets include block `target`.
    pub fn bib_targets(&self, target: u64) -> bool {
        self.block_type == block_type::BLOCK_INTEGRITY && bib_targets(&self.data, target)
    }
}

fn bad(block_type: u64, number: u64, problem: String, section: &'static str) -> BundleError {
    BundleError::BadExtensionBlock { name: block_type_name(block_type), number, problem, section }
}

fn all_consumed(
    r: &Reader<'_>,
    block_type: u64,
    number: u64,
    section: &'static str,
) -> Result<(), BundleError> {
    if r.remaining() != 0 {
        return Err(bad(block_type, number, format!("{} bytes after the value", r.remaining()), section));
    }
    Ok(())
}

/// Decodes Previous Node block data (RFC 9171 §4.4.1) of block `number`.
pub(crate) fn decode_previous_node(
    data: &[u8],
    number: u64,
    max_eid_length: usize,
) -> Result<Eid, BundleError> {
    const SECTION: &str = "RFC 9171 §4.4.1";
    let mut r = Reader::new(data);
    let eid = Eid::decode(&mut r, max_eid_length)
        .map_err(|e| bad(block_type::PREVIOUS_NODE, number, e.to_string(), SECTION))?;
    all_consumed(&r, block_type::PREVIOUS_NODE, number, SECTION)?;
    Ok(eid)
}

/// Decodes Bundle Age block data (RFC 9171 §4.4.2) of block `number`.
pub(crate) fn decode_bundle_age(data: &[u8], number: u64) -> Result<u64, BundleError> {
    const SECTION: &str = "RFC 9171 §4.4.2";
    let mut r = Reader::new(data);
    let age = r.uint().map_err(|e| bad(block_type::BUNDLE_AGE, number, e.to_string(), SECTION))?;
    all_consumed(&r, block_type::BUNDLE_AGE, number, SECTION)?;
    Ok(age)
}

/// Decodes Hop Count block data (RFC 9171 §4.4.3) of block `number`.
pub(crate) fn decode_hop_count(data: &[u8], number: u64) -> Result<HopCount, BundleError> {
    const SECTION: &str = "RFC 9171 §4.4.3";
    let fail = |problem: String| bad(block_type::HOP_COUNT, number, problem, SECTION);
    let mut r = Reader::new(data);
    let items = r.array().map_err(|e| fail(e.to_string()))?;
    if items.is_some_and(|n| n != 2) {
        return Err(fail("expected a 2-item array [limit, count]".into()));
    }
    let limit = r.uint().map_err(|e| fail(e.to_string()))?;
    let count = r.uint().map_err(|e| fail(e.to_string()))?;
    if items.is_none() && !r.take_break() {
        return Err(fail("expected a break after [limit, count]".into()));
    }
    all_consumed(&r, block_type::HOP_COUNT, number, SECTION)?;
    if !(1..=255).contains(&limit) {
        return Err(BundleError::HopLimitOutOfRange { limit });
    }
    Ok(HopCount { limit, count })
}

/// True if BIB data names block `target` among its security targets (RFC 9172 §3.6: the first
/// item of the abstract security block is the array of target block numbers).
pub(crate) fn bib_targets(data: &[u8], target: u64) -> bool {
    let mut r = Reader::new(data);
    let Ok(Some(n)) = r.array() else { return false };
    // The count comes from the wire: stop at the first item that is not there (found by the
    // fuzzer: an array announcing 2^64-1 targets otherwise loops for ever). Each item read
    // consumes a byte, so this is bounded by the data's length.
    for _ in 0..n {
        match r.uint() {
            Ok(t) if t == target => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Encodes an EID as Previous Node block data.
pub fn previous_node_data(eid: &Eid) -> Bytes {
    let mut out = Vec::with_capacity(16);
    eid.encode(&mut out);
    out.into()
}

/// Encodes a Bundle Age block's data.
pub fn bundle_age_data(age_ms: u64) -> Bytes {
    let mut out = Vec::with_capacity(9);
    cbor::write_uint(&mut out, age_ms);
    out.into()
}

/// Encodes a Hop Count block's data.
pub fn hop_count_data(hop_count: HopCount) -> Bytes {
    let mut out = Vec::with_capacity(5);
    cbor::write_array(&mut out, 2);
    cbor::write_uint(&mut out, hop_count.limit);
    cbor::write_uint(&mut out, hop_count.count);
    out.into()
}
