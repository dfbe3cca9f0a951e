//! The primary bundle block (RFC 9171 §4.3.1).

use super::cbor::{self, CborProblem, Reader};
use super::crc::CrcType;
use super::eid::Eid;
use super::error::{BlockRef, BundleError};
use super::flags::BundleFlags;
use super::options::ParseOptions;

/// The bundle protocol version this codec speaks (RFC 9171 §4.3.1).
pub const BP_VERSION: u64 = 7;

/// Creation timestamp (RFC 9171 §4.2.7): DTN time in milliseconds since 2000-01-01T00:00:00Z
/// (0 when the source has no accurate clock) and a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CreationTimestamp {
    /// DTN time in milliseconds (0: the source has no accurate clock).
    pub time: u64,
    /// Tells apart bundles the source made in the same millisecond.
    pub sequence: u64,
}

/// Fragment fields of a primary block (RFC 9171 §4.3.1), present if and only if the bundle is
/// a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentInfo {
    /// Offset of this fragment's payload within the original ADU.
    pub offset: u64,
    /// Length of the whole original ADU.
    pub total_adu_length: u64,
}

/// The primary block. The version is always 7 and is not stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrimaryBlock {
    /// Bundle processing control flags (RFC 9171 §4.2.3).
    pub flags: BundleFlags,
    /// The CRC the primary block carries.
    pub crc_type: CrcType,
    /// Where the bundle goes.
    pub destination: Eid,
    /// The endpoint that made it (`dtn:none`: anonymous).
    pub source: Eid,
    /// Where status reports about it go.
    pub report_to: Eid,
    /// When and in which order the source made it.
    pub creation: CreationTimestamp,
    /// Milliseconds past the creation time after which the bundle is no longer useful.
    pub lifetime: u64,
    /// Where the fragment lies in its ADU, for a fragment.
    pub fragment: Option<FragmentInfo>,
}

impl PrimaryBlock {
    /// When the bundle's lifetime ends (DTN ms, RFC 9171 §4.2.2): its creation time plus its
    /// lifetime, or, for a bundle from a source without a clock (creation time 0), `now` plus
    /// its lifetime — the most it can have left.
    pub fn expiry(&self, now: u64) -> u64 {
        match self.creation.time {
            0 => now.saturating_add(self.lifetime),
            created => created.saturating_add(self.lifetime),
        }
    }

    /// Number of array items the block must have for its flags and CRC type.
    fn expected_items(flags: BundleFlags, crc_type: CrcType) -> u64 {
        8 + if flags.is_fragment() { 2 } else { 0 } + u64::from(crc_type != CrcType::None)
    }

    /// Decodes the primary block at the reader's position and checks its CRC.
    pub(crate) fn decode(r: &mut Reader<'_>, options: &ParseOptions) -> Result<PrimaryBlock, BundleError> {
        let start = r.position();
        let items = r.array().map_err(BundleError::cbor("the primary block", start))?;
        let version = uint(r, "the bundle protocol version")?;
        if version != BP_VERSION {
            return Err(BundleError::UnsupportedVersion { version });
        }
        let flags = BundleFlags(uint(r, "the bundle processing control flags")?);
        let crc_type = CrcType::from_code(uint(r, "the primary block's CRC type")?)?;
        let expected = Self::expected_items(flags, crc_type);
        if let Some(found) = items
            && found != expected
        {
            return Err(BundleError::PrimaryBlockLength { found, expected });
        }
        let destination = eid(r, "the destination EID", options)?;
        let source = eid(r, "the source node ID", options)?;
        let report_to = eid(r, "the report-to EID", options)?;
        let ts_at = r.position();
        let ts_items = r.array().map_err(BundleError::cbor("the creation timestamp", ts_at))?;
        if ts_items.is_some_and(|n| n != 2) {
            return Err(BundleError::Cbor {
                field: "the creation timestamp",
                offset: ts_at,
                problem: CborProblem::Unexpected {
                    expected: "a 2-item array",
                    found: "an array of another length",
                },
            });
        }
        let creation = CreationTimestamp {
            time: uint(r, "the creation time")?,
            sequence: uint(r, "the sequence number")?,
        };
        if ts_items.is_none() && !r.take_break() {
            return Err(BundleError::cbor("the creation timestamp", r.position())(CborProblem::Unexpected {
                expected: "a break after the 2 items",
                found: "another item",
            }));
        }
        let lifetime = uint(r, "the lifetime")?;
        let fragment = if flags.is_fragment() {
            Some(FragmentInfo {
                offset: uint(r, "the fragment offset")?,
                total_adu_length: uint(r, "the total ADU length")?,
            })
        } else {
            None
        };
        let crc = read_crc(r, crc_type, BlockRef::Primary)?;
        if items.is_none() && !r.take_break() {
            return Err(BundleError::PrimaryBlockLength { found: expected + 1, expected });
        }
        if let Some(crc) = crc {
            crc.verify(r.buffer(), start, r.position())?;
        }
        Ok(PrimaryBlock { flags, crc_type, destination, source, report_to, creation, lifetime, fragment })
    }

    /// Appends the canonical encoding, computing the CRC.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut flags = self.flags;
        // The fragment flag and the fragment fields always agree in what we emit.
        if self.fragment.is_some() {
            flags.0 |= BundleFlags::IS_FRAGMENT;
        } else {
            flags.0 &= !BundleFlags::IS_FRAGMENT;
        }
        cbor::write_array(out, Self::expected_items(flags, self.crc_type));
        cbor::write_uint(out, BP_VERSION);
        cbor::write_uint(out, flags.0);
        cbor::write_uint(out, self.crc_type.code());
        self.destination.encode(out);
        self.source.encode(out);
        self.report_to.encode(out);
        out.push(0x82);
        cbor::write_uint(out, self.creation.time);
        cbor::write_uint(out, self.creation.sequence);
        cbor::write_uint(out, self.lifetime);
        if let Some(fragment) = &self.fragment {
            cbor::write_uint(out, fragment.offset);
            cbor::write_uint(out, fragment.total_adu_length);
        }
        finish_crc(out, start, self.crc_type);
    }
}

fn uint(r: &mut Reader<'_>, field: &'static str) -> Result<u64, BundleError> {
    let at = r.position();
    r.uint().map_err(BundleError::cbor(field, at))
}

fn eid(r: &mut Reader<'_>, field: &'static str, options: &ParseOptions) -> Result<Eid, BundleError> {
    Eid::decode(r, options.max_eid_length).map_err(|source| BundleError::Eid { field, source })
}

/// Where a CRC value sits inside the input, for checking once the block's end is known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CrcField {
    crc_type: CrcType,
    block: BlockRef,
    value_start: usize,
    carried: u32,
}

impl CrcField {
    /// Checks the CRC over `buf[start..end]` with the CRC value taken as zeros (RFC 9171 §4.2.1).
    pub(crate) fn verify(&self, buf: &[u8], start: usize, end: usize) -> Result<(), BundleError> {
        const ZEROS: [u8; 4] = [0; 4];
        let value_end = self.value_start + self.crc_type.value_len();
        let computed = self.crc_type.compute(&[
            &buf[start..self.value_start],
            &ZEROS[..self.crc_type.value_len()],
            &buf[value_end..end],
        ]);
        if computed != self.carried {
            return Err(BundleError::CrcMismatch { block: self.block, carried: self.carried, computed });
        }
        Ok(())
    }
}

/// Reads the CRC field of a block, if its CRC type says there is one.
pub(crate) fn read_crc(
    r: &mut Reader<'_>,
    crc_type: CrcType,
    block: BlockRef,
) -> Result<Option<CrcField>, BundleError> {
    if crc_type == CrcType::None {
        return Ok(None);
    }
    let at = r.position();
    let range = r.bytes().map_err(BundleError::cbor("the CRC", at))?;
    if range.start != at + 1 {
        return Err(non_deterministic_crc_head(at));
    }
    let expected_len = crc_type.value_len();
    if range.len() != expected_len {
        return Err(BundleError::CrcLength { block, found_len: range.len(), expected_len });
    }
    let carried = r.buffer()[range.clone()].iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    Ok(Some(CrcField { crc_type, block, value_start: range.start, carried }))
}

/// A CRC field whose byte-string head is longer than one byte. RFC 9171 §4.1 requires
/// deterministic CBOR, and a fixed-size CRC field lets streamed payloads be checked with a small
/// window ([`super::PayloadCheck`]).
pub(crate) fn non_deterministic_crc_head(offset: usize) -> BundleError {
    BundleError::Cbor {
        field: "the CRC",
        offset,
        problem: CborProblem::Unexpected {
            expected: "a byte string with a one-byte head",
            found: "a longer, non-deterministic head (RFC 9171 §4.1)",
        },
    }
}

/// Appends the CRC field to a block that starts at `out[start]` and computes it in place.
pub(crate) fn finish_crc(out: &mut Vec<u8>, start: usize, crc_type: CrcType) {
    let len = crc_type.value_len();
    if len == 0 {
        return;
    }
    out.push(0x40 | len as u8);
    let value_at = out.len();
    out.extend_from_slice(&[0u8; 4][..len]);
    let crc = crc_type.compute(&[&out[start..]]);
    let (bytes, n) = crc_type.value_bytes(crc);
    out[value_at..value_at + n].copy_from_slice(&bytes[..n]);
}
