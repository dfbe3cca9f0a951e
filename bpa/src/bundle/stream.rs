//! Checking the rest of a bundle as it streams past, after [`BundleHeader::parse`]: the payload
//! block's CRC, the final break and the absence of trailing bytes. Sans-IO: bytes in, verdict out.
//! Its verdicts are exactly those of [`super::Bundle::parse`] on the whole bundle.

use super::BundleHeader;
use super::cbor::{self, CborProblem};
use super::crc::{CrcState, CrcType};
use super::error::{BlockRef, BundleError};
use super::primary::non_deterministic_crc_head;

/// Bytes kept after the payload: enough for the longest CBOR head (9 bytes), a CRC-32C value
/// and the break.
const WINDOW: usize = 16;

/// Verifies the bytes that follow the payload block's header (payload content, CRC field,
/// break) without holding the payload in memory.
#[derive(Debug, Clone)]
pub struct PayloadCheck {
    crc_type: CrcType,
    crc: CrcState,
    payload_left: u64,
    /// The first bytes after the payload content.
    window: [u8; WINDOW],
    /// How many bytes after the payload content have been seen (possibly more than WINDOW).
    after: u64,
    /// Offset in the bundle of the first byte after the payload content.
    trailer_offset: u64,
    /// Offset of the payload byte string's head, where a cut payload is reported.
    data_head_offset: usize,
    /// The payload block is an indefinite-length array: its own break follows the CRC field.
    block_indefinite: bool,
}

impl PayloadCheck {
    /// Starts a check. `prefix` is the prefix the header was parsed from: the payload block's
    /// head (from [`super::PayloadLocation::block_offset`] to `data_offset`) is taken from it.
    ///
    /// # Panics
    /// If `prefix` is shorter than the header says, i.e. not the prefix it was parsed from.
    pub fn new(header: &BundleHeader, prefix: &[u8]) -> PayloadCheck {
        let location = &header.payload;
        let mut crc = CrcState::new(location.crc_type);
        crc.update(&prefix[location.block_offset..location.data_offset]);
        PayloadCheck {
            crc_type: location.crc_type,
            crc,
            payload_left: location.data_length,
            window: [0; WINDOW],
            after: 0,
            trailer_offset: location.data_offset as u64 + location.data_length,
            data_head_offset: location.data_head_offset,
            block_indefinite: location.block_indefinite,
        }
    }

    /// Feeds the next bytes of the bundle, starting at the payload's first content byte.
    pub fn update(&mut self, data: &[u8]) {
        let take = self.payload_left.min(data.len() as u64) as usize;
        self.crc.update(&data[..take]);
        self.payload_left -= take as u64;
        let rest = &data[take..];
        let kept = (self.after.min(WINDOW as u64)) as usize;
        let copy = (WINDOW - kept).min(rest.len());
        self.window[kept..kept + copy].copy_from_slice(&rest[..copy]);
        self.after += rest.len() as u64;
    }

    /// The verdict once every byte has been fed.
    pub fn finish(mut self) -> Result<(), BundleError> {
        let offset = self.trailer_offset as usize;
        if self.payload_left > 0 {
            return Err(BundleError::Cbor {
                field: "the block-type-specific data",
                offset: self.data_head_offset,
                problem: CborProblem::Truncated,
            });
        }
        let kept = &self.window[..self.after.min(WINDOW as u64) as usize];
        let field = self.crc_type.field_len();
        let mut reader = cbor::Reader::new(kept);
        let mut carried = None;
        if self.crc_type != CrcType::None {
            let crc_error = |problem| BundleError::Cbor { field: "the CRC", offset, problem };
            let len = reader.bytes_head().map_err(crc_error)?;
            let head_len = reader.position();
            if len > self.after - head_len as u64 {
                return Err(crc_error(CborProblem::Truncated));
            }
            if head_len != 1 {
                return Err(non_deterministic_crc_head(offset));
            }
            let expected_len = self.crc_type.value_len();
            if len != expected_len as u64 {
                return Err(BundleError::CrcLength {
                    block: BlockRef::Number(1),
                    found_len: len as usize,
                    expected_len,
                });
            }
            carried = Some(kept[1..field].iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)));
        }
        // An indefinite-length payload block ends with its own break, which its CRC covers.
        let block_break = usize::from(self.block_indefinite);
        if self.block_indefinite && kept.get(field) != Some(&cbor::BREAK) {
            let expected = if self.crc_type == CrcType::None { 5 } else { 6 };
            return Err(BundleError::CanonicalBlockLength {
                block: BlockRef::Number(1),
                found: expected + 1,
                expected,
            });
        }
        if let Some(carried) = carried {
            self.crc.update(&kept[..1]);
            self.crc.update(&[0u8; 4][..self.crc_type.value_len()]);
            self.crc.update(&kept[field..field + block_break]);
            let computed = self.crc.finalize();
            if carried != computed {
                return Err(BundleError::CrcMismatch { block: BlockRef::Number(1), carried, computed });
            }
        }
        let end = field + block_break;
        match kept.get(end) {
            None => return Err(BundleError::MissingBreak { offset: offset + end }),
            Some(&cbor::BREAK) => {}
            Some(_) => return Err(BundleError::PayloadNotLast),
        }
        let extra = self.after - end as u64 - 1;
        if extra > 0 {
            return Err(BundleError::TrailingBytes { offset: offset + end + 1, count: extra as usize });
        }
        Ok(())
    }
}
