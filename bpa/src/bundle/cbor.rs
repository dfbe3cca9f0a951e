//! The small part of CBOR (RFC 8949) that BPv7 uses, read and written with byte-exact control.
//!
//! Bundles are CBOR (RFC 9171 §4.1), but only a handful of item kinds ever occur: unsigned
//! integers, byte and text strings, arrays, and the "break" that ends the indefinite-length bundle
//! array. This module decodes and encodes those item *heads* (RFC 8949 §3) directly over a byte
//! slice, so the parser can hand out zero-copy ranges of the input and check every length against
//! what is actually present before anything is allocated. `ciborium-ll` was measured against this
//! in the `codec` benchmark (`cbor-head` group): it reads through `std::io::Read`, creating an
//! `io::Error` for every end of input, and is several times slower per head on the hot path.

use std::ops::Range;

/// The major types of RFC 8949 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Major {
    /// 0: an unsigned integer.
    Unsigned,
    /// 1: a negative integer.
    Negative,
    /// 2: a byte string.
    Bytes,
    /// 3: a text string.
    Text,
    /// 4: an array.
    Array,
    /// 5: a map.
    Map,
    /// 6: a tag.
    Tag,
    /// 7: a simple value, a float, or the break stop code.
    SimpleOrFloat,
}

impl Major {
    /// A phrase for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Major::Unsigned => "an unsigned integer",
            Major::Negative => "a negative integer",
            Major::Bytes => "a byte string",
            Major::Text => "a text string",
            Major::Array => "an array",
            Major::Map => "a map",
            Major::Tag => "a tag",
            Major::SimpleOrFloat => "a simple value or float",
        }
    }
}

/// One decoded item head. `argument` is `None` for indefinite-length items (additional info 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The item's major type.
    pub major: Major,
    /// Its argument (a value, a length or a count); `None` when indefinite.
    pub argument: Option<u64>,
    /// True when the argument used more bytes than needed (not deterministic, RFC 8949 §4.2.1).
    pub non_shortest: bool,
}

impl Head {
    /// True for the "break" stop code (0xFF).
    pub fn is_break(&self) -> bool {
        self.major == Major::SimpleOrFloat && self.argument.is_none()
    }

    /// A phrase for error messages.
    pub fn describe(&self) -> &'static str {
        if self.is_break() { "a break stop code" } else { self.major.describe() }
    }
}

/// What went wrong while reading one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CborProblem {
    /// The input ends inside the item.
    Truncated,
    /// Additional information 28–30 is reserved (RFC 8949 §3).
    ReservedAdditionalInfo(u8),
    /// Indefinite length on a major type that does not allow it (RFC 8949 §3.2.4).
    IllegalIndefinite,
    /// A different kind of item was found.
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// A byte string required to have definite length (RFC 9171 §4.3.2) was indefinite.
    IndefiniteBytes,
    /// A text string that is not valid UTF-8.
    InvalidUtf8,
}

impl std::fmt::Display for CborProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CborProblem::Truncated => f.write_str("the input ends inside this item"),
            CborProblem::ReservedAdditionalInfo(ai) => {
                write!(f, "reserved additional information value {ai} (RFC 8949 §3)")
            }
            CborProblem::IllegalIndefinite => {
                f.write_str("indefinite length is not allowed for this major type (RFC 8949 §3.2.4)")
            }
            CborProblem::Unexpected { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            CborProblem::IndefiniteBytes => {
                f.write_str("an indefinite-length byte string where a definite length is required")
            }
            CborProblem::InvalidUtf8 => f.write_str("a text string that is not valid UTF-8"),
        }
    }
}

/// A position-tracking reader over a byte slice. It never allocates and never reads past the end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A reader at byte `pos` of `buf`.
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    /// Where it is, in bytes from the buffer's start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The whole buffer read from.
    pub fn buffer(&self) -> &'a [u8] {
        self.buf
    }

    /// Looks at the next byte without consuming it.
    pub fn peek_byte(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn major_of(initial: u8) -> Major {
        match initial >> 5 {
            0 => Major::Unsigned,
            1 => Major::Negative,
            2 => Major::Bytes,
            3 => Major::Text,
            4 => Major::Array,
            5 => Major::Map,
            6 => Major::Tag,
            _ => Major::SimpleOrFloat,
        }
    }

    /// Reads one item head (RFC 8949 §3).
    pub fn head(&mut self) -> Result<Head, CborProblem> {
        let initial = *self.buf.get(self.pos).ok_or(CborProblem::Truncated)?;
        let major = Self::major_of(initial);
        let info = initial & 0x1f;
        let (argument, width) = match info {
            0..=23 => (Some(u64::from(info)), 0),
            24..=27 => {
                let width = 1usize << (info - 24);
                let bytes = self.buf.get(self.pos + 1..self.pos + 1 + width).ok_or(CborProblem::Truncated)?;
                let value = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                (Some(value), width)
            }
            28..=30 => return Err(CborProblem::ReservedAdditionalInfo(info)),
            _ => {
                if matches!(major, Major::Unsigned | Major::Negative | Major::Tag) {
                    return Err(CborProblem::IllegalIndefinite);
                }
                (None, 0)
            }
        };
        let non_shortest = match (argument, width) {
            (Some(v), 1) => v < 24,
            (Some(v), 2) => v <= 0xff,
            (Some(v), 4) => v <= 0xffff,
            (Some(v), 8) => v <= 0xffff_ffff,
            _ => false,
        } && major != Major::SimpleOrFloat;
        self.pos += 1 + width;
        Ok(Head { major, argument, non_shortest })
    }

    /// Reads an unsigned integer.
    pub fn uint(&mut self) -> Result<u64, CborProblem> {
        let start = self.pos;
        let head = self.head()?;
        match (head.major, head.argument) {
            (Major::Unsigned, Some(v)) => Ok(v),
            _ => {
                self.pos = start;
                Err(CborProblem::Unexpected { expected: "an unsigned integer", found: head.describe() })
            }
        }
    }

    /// Reads an array head: `Some(n)` for definite length, `None` for indefinite length.
    pub fn array(&mut self) -> Result<Option<u64>, CborProblem> {
        let start = self.pos;
        let head = self.head()?;
        if head.major == Major::Array {
            Ok(head.argument)
        } else {
            self.pos = start;
            Err(CborProblem::Unexpected { expected: "an array", found: head.describe() })
        }
    }

    /// Reads a definite-length byte string and returns where its content lies in the buffer.
    /// The content must be present in full.
    pub fn bytes(&mut self) -> Result<Range<usize>, CborProblem> {
        let len = self.bytes_head()?;
        self.take(len)
    }

    /// Reads only the head of a definite-length byte string and returns its announced length.
    /// The content itself may lie beyond the end of the buffer (header-only parsing).
    pub fn bytes_head(&mut self) -> Result<u64, CborProblem> {
        let start = self.pos;
        let head = self.head()?;
        match (head.major, head.argument) {
            (Major::Bytes, Some(len)) => Ok(len),
            (Major::Bytes, None) => {
                self.pos = start;
                Err(CborProblem::IndefiniteBytes)
            }
            _ => {
                self.pos = start;
                Err(CborProblem::Unexpected { expected: "a byte string", found: head.describe() })
            }
        }
    }

    /// Reads a definite-length text string.
    pub fn text(&mut self) -> Result<&'a str, CborProblem> {
        let start = self.pos;
        let head = self.head()?;
        let len = match (head.major, head.argument) {
            (Major::Text, Some(len)) => len,
            (Major::Text, None) => {
                self.pos = start;
                return Err(CborProblem::Unexpected {
                    expected: "a definite-length text string",
                    found: "an indefinite-length text string",
                });
            }
            _ => {
                self.pos = start;
                return Err(CborProblem::Unexpected { expected: "a text string", found: head.describe() });
            }
        };
        let range = self.take(len)?;
        std::str::from_utf8(&self.buf[range]).map_err(|_| CborProblem::InvalidUtf8)
    }

    /// Consumes a break stop code if one is next; returns whether it did.
    pub fn take_break(&mut self) -> bool {
        if self.peek_byte() == Some(0xff) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips `len` content bytes, checking they are present. Checked before any use, so a length
    /// of 2^62 from the wire is a `Truncated` problem, not an allocation.
    fn take(&mut self, len: u64) -> Result<Range<usize>, CborProblem> {
        if len > self.remaining() as u64 {
            return Err(CborProblem::Truncated);
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(start..self.pos)
    }
}

/// Appends the head of an item with major type `major` (0–7) and a definite argument, in the
/// shortest form (RFC 8949 §4.2.1 core deterministic encoding).
#[inline]
pub fn write_head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let m = major << 5;
    if argument < 24 {
        out.push(m | argument as u8);
    } else if argument <= 0xff {
        out.extend_from_slice(&[m | 24, argument as u8]);
    } else if argument <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(argument as u16).to_be_bytes());
    } else if argument <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(argument as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&argument.to_be_bytes());
    }
}

/// The major type of an unsigned integer.
pub const MAJOR_UNSIGNED: u8 = 0;
/// The major type of a byte string.
pub const MAJOR_BYTES: u8 = 2;
/// The major type of a text string.
pub const MAJOR_TEXT: u8 = 3;
/// The major type of an array.
pub const MAJOR_ARRAY: u8 = 4;
/// Start of an indefinite-length array.
pub const INDEFINITE_ARRAY: u8 = 0x9f;
/// The break stop code.
pub const BREAK: u8 = 0xff;

/// Writes an unsigned integer, in its shortest form.
#[inline]
pub fn write_uint(out: &mut Vec<u8>, value: u64) {
    write_head(out, MAJOR_UNSIGNED, value);
}

/// Number of bytes [`write_head`] uses for `argument`.
pub fn head_len(argument: u64) -> usize {
    match argument {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Writes a definite-length byte string.
#[inline]
pub fn write_bytes(out: &mut Vec<u8>, data: &[u8]) {
    write_head(out, MAJOR_BYTES, data.len() as u64);
    out.extend_from_slice(data);
}

/// Writes the head of an array of `len` items.
#[inline]
pub fn write_array(out: &mut Vec<u8>, len: u64) {
    write_head(out, MAJOR_ARRAY, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_in_shortest_form() {
        for value in [0u64, 23, 24, 255, 256, 65535, 65536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX] {
            let mut out = Vec::new();
            write_uint(&mut out, value);
            assert_eq!(out.len(), head_len(value));
            let mut r = Reader::new(&out);
            let head = r.head().unwrap();
            assert_eq!(head, Head { major: Major::Unsigned, argument: Some(value), non_shortest: false });
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn non_shortest_integers_are_flagged() {
        let mut r = Reader::new(&[0x18, 0x05]);
        assert!(r.head().unwrap().non_shortest);
        let mut r = Reader::new(&[0x19, 0x00, 0xff]);
        assert!(r.head().unwrap().non_shortest);
    }

    #[test]
    fn reserved_and_illegal_heads_are_rejected() {
        assert_eq!(Reader::new(&[0x1c]).head(), Err(CborProblem::ReservedAdditionalInfo(28)));
        assert_eq!(Reader::new(&[0x1f]).head(), Err(CborProblem::IllegalIndefinite));
        assert_eq!(Reader::new(&[0x19, 0x01]).head(), Err(CborProblem::Truncated));
        assert_eq!(Reader::new(&[]).head(), Err(CborProblem::Truncated));
    }

    #[test]
    fn huge_byte_string_length_is_truncated_not_allocated() {
        // A byte string announcing 2^62 bytes.
        let mut input = vec![0x5b];
        input.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert_eq!(Reader::new(&input).bytes(), Err(CborProblem::Truncated));
        assert_eq!(Reader::new(&input).bytes_head(), Ok(1u64 << 62));
    }

    #[test]
    fn wrong_kinds_name_what_was_found() {
        assert_eq!(
            Reader::new(&[0x40]).uint(),
            Err(CborProblem::Unexpected { expected: "an unsigned integer", found: "a byte string" })
        );
        assert_eq!(Reader::new(&[0x5f]).bytes(), Err(CborProblem::IndefiniteBytes));
        assert_eq!(Reader::new(&[0x62, 0xff, 0xfe]).text(), Err(CborProblem::InvalidUtf8));
    }
}
