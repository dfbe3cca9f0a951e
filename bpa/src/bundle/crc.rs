//! Block CRCs (RFC 9171 §4.2.1): CRC-16 X.25 and CRC-32C (Castagnoli).
//!
//! The CRC of a block is computed over the whole encoded block with the CRC field present as a
//! byte string of zeros, and is carried big-endian in a 2- or 4-byte CBOR byte string.

use crate::bundle::BundleError;

/// CRC type code of a block (RFC 9171 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CrcType {
    /// 0: no CRC is present.
    None,
    /// 1: a standard X-25 CRC-16 is present.
    Crc16,
    /// 2: a standard CRC32C (Castagnoli) CRC-32 is present.
    #[default]
    Crc32c,
}

const X25: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);

/// Below this many bytes, CRC-32C is computed with tables: the `crc32c` crate's hardware path
/// has a fixed cost per call that dominates for the 10-60 byte blocks of a small bundle (the
/// `codec` benchmark measured it at about 40% of encoding a 100-byte bundle).
const CRC32C_TABLE_THRESHOLD: usize = 64;

/// Slice-by-8 tables for the reflected Castagnoli polynomial 0x82F63B78.
const CRC32C_TABLES: [[u32; 256]; 8] = {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut t = 1;
    while t < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            i += 1;
        }
        t += 1;
    }
    tables
};

/// Extends a finished CRC-32C value over `data`, like `crc32c::crc32c_append`.
fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.len() >= CRC32C_TABLE_THRESHOLD {
        return crc32c::crc32c_append(crc, data);
    }
    let t = &CRC32C_TABLES;
    let mut c = !crc;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let lo = c ^ u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let hi = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

impl CrcType {
    /// The CRC type code on the wire.
    pub fn code(self) -> u64 {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 1,
            CrcType::Crc32c => 2,
        }
    }

    /// Decodes a CRC type code; any value but 0, 1 and 2 is invalid (RFC 9171 §4.2.1).
    pub fn from_code(code: u64) -> Result<Self, BundleError> {
        match code {
            0 => Ok(CrcType::None),
            1 => Ok(CrcType::Crc16),
            2 => Ok(CrcType::Crc32c),
            other => Err(BundleError::InvalidCrcType { code: other }),
        }
    }

    /// Length in bytes of the CRC value (0, 2 or 4).
    pub fn value_len(self) -> usize {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 2,
            CrcType::Crc32c => 4,
        }
    }

    /// Bytes the CRC field occupies in a block: its byte-string head plus the value.
    pub fn field_len(self) -> usize {
        match self {
            CrcType::None => 0,
            _ => 1 + self.value_len(),
        }
    }

    /// Computes the CRC over `parts`, concatenated; the caller has zeroed (or omitted and
    /// re-supplied as zeros) the CRC value. The result is right-aligned in a u32.
    pub fn compute(self, parts: &[&[u8]]) -> u32 {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => {
                let mut digest = X25.digest();
                for part in parts {
                    digest.update(part);
                }
                u32::from(digest.finalize())
            }
            CrcType::Crc32c => parts.iter().fold(0u32, |crc, part| crc32c_append(crc, part)),
        }
    }

    /// The CRC value as it is written on the wire, big-endian.
    pub fn value_bytes(self, crc: u32) -> ([u8; 4], usize) {
        match self {
            CrcType::None => ([0; 4], 0),
            CrcType::Crc16 => {
                let b = (crc as u16).to_be_bytes();
                ([b[0], b[1], 0, 0], 2)
            }
            CrcType::Crc32c => (crc.to_be_bytes(), 4),
        }
    }
}

/// An incremental CRC computation, for blocks that arrive in pieces (streamed payloads).
#[derive(Clone)]
pub struct CrcState {
    crc_type: CrcType,
    crc16: Option<crc::Digest<'static, u16>>,
    crc32: u32,
}

impl std::fmt::Debug for CrcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrcState").field("crc_type", &self.crc_type).finish_non_exhaustive()
    }
}

impl CrcState {
    /// A CRC of `crc_type` over nothing yet.
    pub fn new(crc_type: CrcType) -> Self {
        CrcState { crc_type, crc16: (crc_type == CrcType::Crc16).then(|| X25.digest()), crc32: 0 }
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self.crc_type {
            CrcType::None => {}
            CrcType::Crc16 => {
                if let Some(d) = self.crc16.as_mut() {
                    d.update(data);
                }
            }
            CrcType::Crc32c => self.crc32 = crc32c_append(self.crc32, data),
        }
    }

    /// The CRC of everything added (a CRC-16 in the low bits).
    pub fn finalize(self) -> u32 {
        match self.crc16 {
            Some(d) => u32::from(d.finalize()),
            None => self.crc32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_match_the_catalogue() {
        // Check values from the CRC catalogue for "123456789".
        assert_eq!(CrcType::Crc16.compute(&[b"123456789"]), 0x906e);
        assert_eq!(CrcType::Crc32c.compute(&[b"123456789"]), 0xe306_9283);
    }

    #[test]
    fn table_and_hardware_paths_agree() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            for start in [0usize, 1, 5] {
                let slice = &data[start.min(len)..len];
                let seed = (len as u32).wrapping_mul(0x9e37_79b9);
                assert_eq!(crc32c_append(seed, slice), crc32c::crc32c_append(seed, slice), "len {len}");
            }
        }
    }

    #[test]
    fn split_input_gives_the_same_crc() {
        for t in [CrcType::Crc16, CrcType::Crc32c] {
            assert_eq!(t.compute(&[b"1234", b"56789"]), t.compute(&[b"123456789"]));
            let mut s = CrcState::new(t);
            s.update(b"12");
            s.update(b"3456789");
            assert_eq!(s.finalize(), t.compute(&[b"123456789"]));
        }
    }

    #[test]
    fn unknown_crc_type_is_rejected() {
        assert_eq!(CrcType::from_code(3), Err(BundleError::InvalidCrcType { code: 3 }));
    }
}
