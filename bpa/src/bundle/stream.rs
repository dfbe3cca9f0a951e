//! Checking the rest of a bundle as it streams past, after [`BundleHeader::parse`]: the payload
//! block's CRC, the final break and the absence of trailing bytes. Sans-IO: bytes in, verdict out.

use super::crc::{CrcState, CrcType};
use super::error::{BlockRef, BundleError};
use super::{BundleHeader, cbor};

/// Verifies the bytes that follow the payload block's header (payload content, CRC field,
/// break) without holding the payload in memory.
#[derive(Debug, Clone)]
pub struct PayloadCheck {
    crc_type: CrcType,
    crc: CrcState,
    payload_left: u64,
    trailer: [u8; 6],
    trailer_len: usize,
    trailer_got: usize,
    extra: u64,
    offset: u64,
}

impl PayloadCheck {
    /// Starts a check. `prefix` is the prefix the header was parsed from: the payload block's
    /// head (from [`super::PayloadLocation::block_offset`] to `data_offset`) is taken from it.
    pub fn new(header: &BundleHeader, prefix: &[u8]) -> PayloadCheck {
        let location = &header.payload;
        let mut crc = CrcState::new(location.crc_type);
        crc.update(&prefix[location.block_offset..location.data_offset]);
        PayloadCheck {
            crc_type: location.crc_type,
            crc,
            payload_left: location.data_length,
            trailer: [0; 6],
            trailer_len: location.crc_type.field_len() + 1,
            trailer_got: 0,
            extra: 0,
            offset: location.data_offset as u64,
        }
    }

    /// Feeds the next bytes of the bundle, starting at the payload's first content byte.
    pub fn update(&mut self, mut data: &[u8]) {
        let take = (self.payload_left.min(data.len() as u64)) as usize;
        self.crc.update(&data[..take]);
        self.payload_left -= take as u64;
        self.offset += take as u64;
        data = &data[take..];
        let room = self.trailer_len - self.trailer_got;
        let take = room.min(data.len());
        self.trailer[self.trailer_got..self.trailer_got + take].copy_from_slice(&data[..take]);
        self.trailer_got += take;
        self.extra += (data.len() - take) as u64;
    }

    /// The verdict once every byte has been fed.
    pub fn finish(mut self) -> Result<(), BundleError> {
        let consumed_trailer = self.offset + self.trailer_got as u64;
        if self.payload_left > 0 {
            return Err(BundleError::Cbor {
                field: "the payload",
                offset: self.offset as usize,
                problem: cbor::CborProblem::Truncated,
            });
        }
        let field = self.crc_type.field_len();
        if self.crc_type != CrcType::None {
            let crc_error =
                |problem| BundleError::Cbor { field: "the CRC", offset: self.offset as usize, problem };
            // Judge the CRC item's head from its first byte as the whole-bundle parser would,
            // since its argument bytes may lie beyond the small window kept here.
            let available_from_head = self.trailer_got as u64 + self.extra;
            if self.trailer_got == 0 {
                return Err(crc_error(cbor::CborProblem::Truncated));
            }
            cbor::check_bytes_initial(self.trailer[0], available_from_head).map_err(crc_error)?;
            let mut reader = cbor::Reader::new(&self.trailer[..self.trailer_got]);
            let len = reader.bytes_head().map_err(crc_error)?;
            let expected_len = self.crc_type.value_len();
            let available = (self.trailer_got - reader.position()) as u64 + self.extra;
            if len > available {
                return Err(crc_error(cbor::CborProblem::Truncated));
            }
            if reader.position() != 1 {
                // RFC 9171 §4.1 requires deterministic (shortest-form) CBOR; a longer head would
                // move the CRC value out of the fixed-size window this check keeps.
                return Err(crc_error(cbor::CborProblem::Unexpected {
                    expected: "a byte string with a one-byte head",
                    found: "a longer, non-deterministic head",
                }));
            }
            if len != expected_len as u64 {
                return Err(BundleError::CrcLength {
                    block: BlockRef::Number(1),
                    found_len: len as usize,
                    expected_len,
                });
            }
            self.crc.update(&self.trailer[..1]);
            self.crc.update(&[0u8; 4][..expected_len]);
            let carried = self.trailer[1..field].iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            let computed = self.crc.finalize();
            if carried != computed {
                return Err(BundleError::CrcMismatch { block: BlockRef::Number(1), carried, computed });
            }
        }
        if self.trailer_got < self.trailer_len {
            return Err(BundleError::MissingBreak { offset: consumed_trailer as usize });
        }
        if self.trailer[field] != cbor::BREAK {
            return Err(BundleError::PayloadNotLast);
        }
        if self.extra > 0 {
            return Err(BundleError::TrailingBytes {
                offset: consumed_trailer as usize,
                count: self.extra as usize,
            });
        }
        Ok(())
    }
}
