//! The byte format of TCPCLv3 (RFC 7242): the contact header (§4.1), the one-byte message
//! header with its type in the high nibble (§5.1), and the messages, with lengths as SDNVs
//! (RFC 6256). Decoding is incremental — a message split anywhere decodes once its last byte is
//! in — and bounded: no length read from the wire is allocated before its bytes arrive, and an
//! SDNV longer than a `u64` is an error.

use bytes::{BufMut, Bytes, BytesMut};

/// "dtn!" (§4.1).
pub const MAGIC: [u8; 4] = *b"dtn!";
/// The protocol version this layer speaks (§4.1).
pub const VERSION: u8 = 3;
/// The longest EID taken in a contact header; a longer one ends the connection.
pub const MAX_EID_LEN: u64 = 1024;
/// The most bytes of an SDNV holding a `u64` (7 bits each).
const MAX_SDNV_LEN: usize = 10;

/// Contact header flags (§4.1, Table 1).
pub mod flags {
    pub const REQUEST_ACK: u8 = 0x01;
    pub const REACTIVE_FRAGMENTATION: u8 = 0x02;
    pub const REFUSAL: u8 = 0x04;
    pub const REQUEST_LENGTH: u8 = 0x08;
}

/// Message type codes (§5.1, Table 2), in the high nibble of the message header.
pub mod types {
    pub const DATA_SEGMENT: u8 = 0x1;
    pub const ACK_SEGMENT: u8 = 0x2;
    pub const REFUSE_BUNDLE: u8 = 0x3;
    pub const KEEPALIVE: u8 = 0x4;
    pub const SHUTDOWN: u8 = 0x5;
    pub const LENGTH: u8 = 0x6;
}

/// DATA_SEGMENT flags (§5.2).
const SEGMENT_START: u8 = 0x2;
const SEGMENT_END: u8 = 0x1;
/// SHUTDOWN flags (§6.1).
const SHUTDOWN_REASON: u8 = 0x2;
const SHUTDOWN_DELAY: u8 = 0x1;

/// What a contact header says (§4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactHeader {
    pub version: u8,
    /// The low four bits (the high four are ignored on reception, §4.1).
    pub flags: u8,
    /// Seconds between KEEPALIVEs; 0: none.
    pub keepalive: u16,
    /// The sending node's EID, as sent (`ipn:1.0`, `dtn://node/`).
    pub eid: String,
}

impl ContactHeader {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + MAX_SDNV_LEN + self.eid.len());
        out.put_slice(&MAGIC);
        out.put_u8(self.version);
        out.put_u8(self.flags & 0x0f);
        out.put_u16(self.keepalive);
        put_sdnv(&mut out, self.eid.len() as u64);
        out.put_slice(self.eid.as_bytes());
        out.freeze()
    }

    /// Decodes a contact header from the start of `input`: `Ok(None)` while incomplete, else the
    /// header and the bytes it took.
    pub fn decode(input: &[u8]) -> Result<Option<(ContactHeader, usize)>, WireError> {
        let known = input.len().min(4);
        if input[..known] != MAGIC[..known] {
            return Err(WireError::BadMagic);
        }
        if input.len() < 8 {
            return Ok(None);
        }
        let (version, raw_flags) = (input[4], input[5]);
        let keepalive = u16::from_be_bytes([input[6], input[7]]);
        let Some((length, used)) = sdnv(&input[8..])? else { return Ok(None) };
        if length > MAX_EID_LEN {
            return Err(WireError::EidTooLong { length });
        }
        let start = 8 + used;
        let end = start + length as usize;
        if input.len() < end {
            return Ok(None);
        }
        let eid = std::str::from_utf8(&input[start..end]).map_err(|_| WireError::EidNotText)?.to_owned();
        Ok(Some((ContactHeader { version, flags: raw_flags & 0x0f, keepalive, eid }, end)))
    }
}

/// A message after the contact header (§5, §6). A DATA_SEGMENT is its header only: its
/// `length` bytes of bundle data follow it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    DataSegment {
        start: bool,
        end: bool,
        length: u64,
    },
    /// The cumulative length received of the current bundle.
    AckSegment {
        length: u64,
    },
    RefuseBundle {
        reason: RefuseCode,
    },
    Keepalive,
    Shutdown {
        reason: Option<ShutdownReason>,
        delay: Option<u64>,
    },
    /// The total length of the next bundle.
    Length {
        length: u64,
    },
}

/// REFUSE_BUNDLE reason codes (§5.4, Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseCode {
    Unknown,
    /// The receiver has the complete bundle already.
    Completed,
    /// The receiver's resources are exhausted.
    NoResources,
    /// Send the bundle again, whole.
    Retransmit,
    /// An unassigned or reserved code.
    Other(u8),
}

impl RefuseCode {
    pub fn code(self) -> u8 {
        match self {
            RefuseCode::Unknown => 0,
            RefuseCode::Completed => 1,
            RefuseCode::NoResources => 2,
            RefuseCode::Retransmit => 3,
            RefuseCode::Other(code) => code & 0x0f,
        }
    }

    fn from_code(code: u8) -> RefuseCode {
        match code {
            0 => RefuseCode::Unknown,
            1 => RefuseCode::Completed,
            2 => RefuseCode::NoResources,
            3 => RefuseCode::Retransmit,
            other => RefuseCode::Other(other),
        }
    }
}

/// SHUTDOWN reason codes (§6.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    IdleTimeout,
    VersionMismatch,
    Busy,
    Other(u8),
}

impl ShutdownReason {
    pub fn code(self) -> u8 {
        match self {
            ShutdownReason::IdleTimeout => 0,
            ShutdownReason::VersionMismatch => 1,
            ShutdownReason::Busy => 2,
            ShutdownReason::Other(code) => code,
        }
    }

    fn from_code(code: u8) -> ShutdownReason {
        match code {
            0 => ShutdownReason::IdleTimeout,
            1 => ShutdownReason::VersionMismatch,
            2 => ShutdownReason::Busy,
            other => ShutdownReason::Other(other),
        }
    }
}

impl std::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShutdownReason::IdleTimeout => f.write_str("idle timeout"),
            ShutdownReason::VersionMismatch => f.write_str("version mismatch"),
            ShutdownReason::Busy => f.write_str("busy"),
            ShutdownReason::Other(code) => write!(f, "reason code {code}"),
        }
    }
}

impl std::fmt::Display for RefuseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefuseCode::Unknown => f.write_str("reason unknown"),
            RefuseCode::Completed => f.write_str("the receiver has the complete bundle"),
            RefuseCode::NoResources => f.write_str("the receiver's resources are exhausted"),
            RefuseCode::Retransmit => f.write_str("send it again whole"),
            RefuseCode::Other(code) => write!(f, "reason code {code}"),
        }
    }
}

impl Message {
    /// Decodes one message from the start of `input`: `Ok(None)` while incomplete, else the
    /// message and the bytes it took (for a DATA_SEGMENT, its header only).
    pub fn decode(input: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
        let Some(&first) = input.first() else { return Ok(None) };
        let (kind, low) = (first >> 4, first & 0x0f);
        let rest = &input[1..];
        let with_sdnv = |make: fn(u64) -> Message| -> Result<Option<(Message, usize)>, WireError> {
            Ok(sdnv(rest)?.map(|(value, used)| (make(value), 1 + used)))
        };
        match kind {
            types::DATA_SEGMENT => Ok(sdnv(rest)?.map(|(length, used)| {
                let start = low & SEGMENT_START != 0;
                let end = low & SEGMENT_END != 0;
                (Message::DataSegment { start, end, length }, 1 + used)
            })),
            types::ACK_SEGMENT => with_sdnv(|length| Message::AckSegment { length }),
            types::REFUSE_BUNDLE => {
                Ok(Some((Message::RefuseBundle { reason: RefuseCode::from_code(low) }, 1)))
            }
            types::KEEPALIVE => Ok(Some((Message::Keepalive, 1))),
            types::SHUTDOWN => {
                let mut at = 0;
                let reason = if low & SHUTDOWN_REASON != 0 {
                    let Some(&code) = rest.first() else { return Ok(None) };
                    at = 1;
                    Some(ShutdownReason::from_code(code))
                } else {
                    None
                };
                let delay = if low & SHUTDOWN_DELAY != 0 {
                    let Some((delay, used)) = sdnv(&rest[at..])? else { return Ok(None) };
                    at += used;
                    Some(delay)
                } else {
                    None
                };
                Ok(Some((Message::Shutdown { reason, delay }, 1 + at)))
            }
            types::LENGTH => with_sdnv(|length| Message::Length { length }),
            other => Err(WireError::UnknownType(other)),
        }
    }

    /// The message's bytes (a DATA_SEGMENT's header only).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + MAX_SDNV_LEN);
        match *self {
            Message::DataSegment { start, end, length } => {
                let mut low = 0;
                if start {
                    low |= SEGMENT_START;
                }
                if end {
                    low |= SEGMENT_END;
                }
                out.put_u8(types::DATA_SEGMENT << 4 | low);
                put_sdnv(&mut out, length);
            }
            Message::AckSegment { length } => {
                out.put_u8(types::ACK_SEGMENT << 4);
                put_sdnv(&mut out, length);
            }
            Message::RefuseBundle { reason } => out.put_u8(types::REFUSE_BUNDLE << 4 | reason.code()),
            Message::Keepalive => out.put_u8(types::KEEPALIVE << 4),
            Message::Shutdown { reason, delay } => {
                let mut low = 0;
                if reason.is_some() {
                    low |= SHUTDOWN_REASON;
                }
                if delay.is_some() {
                    low |= SHUTDOWN_DELAY;
                }
                out.put_u8(types::SHUTDOWN << 4 | low);
                if let Some(reason) = reason {
                    out.put_u8(reason.code());
                }
                if let Some(delay) = delay {
                    put_sdnv(&mut out, delay);
                }
            }
            Message::Length { length } => {
                out.put_u8(types::LENGTH << 4);
                put_sdnv(&mut out, length);
            }
        }
        out.freeze()
    }
}

/// Why bytes from a peer are not TCPCLv3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the contact header does not begin with \"dtn!\" (not a TCPCLv3 peer)")]
    BadMagic,
    #[error("the contact header's EID is {length} bytes; at most {MAX_EID_LEN} are taken")]
    EidTooLong { length: u64 },
    #[error("the contact header's EID is not UTF-8 text")]
    EidNotText,
    #[error("an SDNV is longer than a 64-bit number")]
    SdnvTooLong,
    #[error("message type {0:#x} is not a TCPCLv3 message")]
    UnknownType(u8),
}

/// Appends `value` as an SDNV (RFC 6256 §2.1): 7 bits a byte, most significant first, the high
/// bit set on every byte but the last.
pub fn put_sdnv(out: &mut BytesMut, value: u64) {
    let mut bytes = [0u8; MAX_SDNV_LEN];
    let mut at = MAX_SDNV_LEN;
    let mut rest = value;
    loop {
        at -= 1;
        bytes[at] = (rest & 0x7f) as u8 | if at == MAX_SDNV_LEN - 1 { 0 } else { 0x80 };
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    out.put_slice(&bytes[at..]);
}

/// Reads an SDNV from the start of `input`: `Ok(None)` while incomplete, else the value and the
/// bytes it took. Leading zero groups are allowed (RFC 6256 does not forbid them) but the value
/// must fit 64 bits.
pub fn sdnv(input: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate() {
        if value >> 57 != 0 {
            return Err(WireError::SdnvTooLong);
        }
        value = value << 7 | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
        if i + 1 >= 2 * MAX_SDNV_LEN {
            return Err(WireError::SdnvTooLong);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sdnv_bytes(value: u64) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_sdnv(&mut out, value);
        out.to_vec()
    }

    #[test]
    fn sdnvs_match_rfc_6256_examples() {
        assert_eq!(sdnv_bytes(0), [0x00]);
        assert_eq!(sdnv_bytes(0x7f), [0x7f]);
        assert_eq!(sdnv_bytes(0x80), [0x81, 0x00]);
        assert_eq!(sdnv_bytes(0xabc), [0x95, 0x3c]);
        assert_eq!(sdnv_bytes(0x1234), [0xa4, 0x34]);
        assert_eq!(sdnv_bytes(0x4234), [0x81, 0x84, 0x34]);
        assert_eq!(sdnv_bytes(u64::MAX).len(), 10);
        assert_eq!(sdnv(&[0x95, 0x3c, 0xff]), Ok(Some((0xabc, 2))));
        assert_eq!(sdnv(&[0x95]), Ok(None));
        assert_eq!(sdnv(&[]), Ok(None));
    }

    #[test]
    fn an_sdnv_beyond_64_bits_is_an_error() {
        // 2^64 needs 65 bits.
        let mut too_big = vec![0x82];
        too_big.extend([0x80; 8]);
        too_big.push(0x00);
        assert_eq!(sdnv(&too_big), Err(WireError::SdnvTooLong));
        // Endless continuation bytes end once they cannot be a u64, however many zeros lead.
        assert_eq!(sdnv(&[0x80; 64]), Err(WireError::SdnvTooLong));
    }

    #[test]
    fn the_contact_header_matches_the_rfc_layout() {
        let header = ContactHeader {
            version: 3,
            flags: flags::REQUEST_ACK | flags::REFUSAL,
            keepalive: 0x0102,
            eid: "ipn:1.0".into(),
        };
        let bytes = header.encode();
        assert_eq!(&bytes[..], b"dtn!\x03\x05\x01\x02\x07ipn:1.0");
        assert_eq!(ContactHeader::decode(&bytes), Ok(Some((header, bytes.len()))));
        for cut in 0..bytes.len() {
            assert_eq!(ContactHeader::decode(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        // High flag bits are ignored on reception.
        let mut high = bytes.to_vec();
        high[5] |= 0xf0;
        assert_eq!(ContactHeader::decode(&high).expect("decodes").expect("whole").0.flags, 0x05);
    }

    #[test]
    fn contact_header_errors_name_the_problem() {
        assert_eq!(ContactHeader::decode(b"GET / HTTP/1.1"), Err(WireError::BadMagic));
        assert_eq!(ContactHeader::decode(b"dtX"), Err(WireError::BadMagic));
        let mut long = b"dtn!\x03\x00\x00\x00".to_vec();
        long.extend([0x88, 0x81, 0x00]); // 2^17 + 128
        assert_eq!(ContactHeader::decode(&long), Err(WireError::EidTooLong { length: 131_200 }));
        assert_eq!(ContactHeader::decode(b"dtn!\x03\x00\x00\x00\x02\xff\xfe"), Err(WireError::EidNotText));
    }

    #[test]
    fn every_message_round_trips_and_matches_the_rfc_bits() {
        let cases: Vec<(Message, &[u8])> = vec![
            (Message::DataSegment { start: true, end: true, length: 5 }, &[0x13, 0x05]),
            (Message::DataSegment { start: true, end: false, length: 128 }, &[0x12, 0x81, 0x00]),
            (Message::DataSegment { start: false, end: true, length: 1 }, &[0x11, 0x01]),
            (Message::DataSegment { start: false, end: false, length: 0 }, &[0x10, 0x00]),
            (Message::AckSegment { length: 300 }, &[0x20, 0x82, 0x2c]),
            (Message::RefuseBundle { reason: RefuseCode::NoResources }, &[0x32]),
            (Message::RefuseBundle { reason: RefuseCode::Completed }, &[0x31]),
            (Message::Keepalive, &[0x40]),
            (Message::Shutdown { reason: None, delay: None }, &[0x50]),
            (Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: None }, &[0x52, 0x02]),
            (Message::Shutdown { reason: None, delay: Some(200) }, &[0x51, 0x81, 0x48]),
            (
                Message::Shutdown { reason: Some(ShutdownReason::IdleTimeout), delay: Some(0) },
                &[0x53, 0x00, 0x00],
            ),
            (Message::Length { length: 70_000 }, &[0x60, 0x84, 0xa2, 0x70]),
        ];
        for (message, bytes) in cases {
            assert_eq!(&message.encode()[..], bytes, "{message:?}");
            assert_eq!(Message::decode(bytes), Ok(Some((message, bytes.len()))), "{message:?}");
            for cut in 0..bytes.len() {
                assert_eq!(Message::decode(&bytes[..cut]), Ok(None), "{message:?} cut at {cut}");
            }
        }
        assert_eq!(Message::decode(&[0x00]), Err(WireError::UnknownType(0)));
        assert_eq!(Message::decode(&[0x70]), Err(WireError::UnknownType(7)));
        assert_eq!(
            Message::decode(&[0x3a]),
            Ok(Some((Message::RefuseBundle { reason: RefuseCode::Other(10) }, 1)))
        );
    }

    proptest! {
        #[test]
        fn sdnvs_round_trip(value: u64) {
            let bytes = sdnv_bytes(value);
            prop_assert_eq!(sdnv(&bytes), Ok(Some((value, bytes.len()))));
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((_, used))) = Message::decode(&bytes) {
                prop_assert!(used <= bytes.len());
            }
            if let Ok(Some((header, used))) = ContactHeader::decode(&bytes) {
                prop_assert!(used <= bytes.len());
                prop_assert!(header.eid.len() as u64 <= MAX_EID_LEN);
            }
        }
    }
}
