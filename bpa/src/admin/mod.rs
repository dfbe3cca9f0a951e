//! Administrative records (RFC 9171 §6.1): bundle status reports, and the BIBE protocol data unit
//! and custody signal used for custody transfer (draft-ietf-dtn-bibect, design §4).
//!
//! An administrative record is the payload of a bundle whose "ADU is an administrative record"
//! flag is set: a CBOR array `[record type code, record content]`.
//!
//! Record type codes for BIBE differ between deployments: 3 (PDU) and 4 (signal) in HDTN and
//! DTNME, 7 and 8 in ION, 64443 for the PDU in µD3TN/pyD3TN. [`AdminRecordTypes`] says which
//! codes we emit to a peer; decoding accepts every known code.

mod status;

use bytes::Bytes;

use crate::bundle::cbor::{self, Reader};
use crate::bundle::{CborProblem, EidError};

pub use status::{ReasonCode, StatusAssertion, StatusReport};

/// Record type code of a bundle status report (RFC 9171 §6.1).
pub const RECORD_STATUS_REPORT: u64 = 1;
/// BIBE PDU record type codes seen in deployments.
pub const KNOWN_BIBE_PDU_CODES: [u64; 3] = [3, 7, 64443];
/// Custody signal record type codes seen in deployments.
pub const KNOWN_CUSTODY_SIGNAL_CODES: [u64; 2] = [4, 8];

/// Which record type codes to emit for BIBE records (configurable per peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminRecordTypes {
    /// The record type of a BIBE PDU.
    pub bibe_pdu: u64,
    /// The record type of a custody signal.
    pub custody_signal: u64,
}

impl Default for AdminRecordTypes {
    /// 3 and 4, as HDTN and DTNME use.
    fn default() -> Self {
        AdminRecordTypes { bibe_pdu: 3, custody_signal: 4 }
    }
}

impl AdminRecordTypes {
    /// The codes ION uses: 7 and 8.
    pub const ION: AdminRecordTypes = AdminRecordTypes { bibe_pdu: 7, custody_signal: 8 };
}

/// Why an administrative record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The CBOR does not decode.
    #[error("malformed CBOR in {field} at byte {offset}: {problem}")]
    Cbor {
        /// The record's field being read.
        field: &'static str,
        /// Where, in bytes from the record's start.
        offset: usize,
        /// What was wrong.
        problem: CborProblem,
    },
    /// The record is not a two-item array.
    #[error(
        "an administrative record is a 2-item array [type, content] (RFC 9171 §6.1); this one has {found} items"
    )]
    RecordLength {
        /// The items it has.
        found: u64,
    },
    /// The record's content has the wrong number of items.
    #[error("{record} content has {found} items; it needs {expected} ({section})")]
    ContentLength {
        /// The kind of record.
        record: &'static str,
        /// The items it has.
        found: u64,
        /// The items it needs.
        expected: &'static str,
        /// The specification's section that says so.
        section: &'static str,
    },
    /// A status indicator has the wrong number of items.
    #[error(
        "a status indicator is [asserted] or [asserted, time] (RFC 9171 §6.1.1); this one has {found} items"
    )]
    StatusIndicatorLength {
        /// The items it has.
        found: u64,
    },
    /// An endpoint ID in the record does not decode.
    #[error("{field} is not a valid EID: {source}")]
    Eid {
        /// The record's field.
        field: &'static str,
        /// Why it does not decode.
        source: EidError,
    },
    /// A status assertion is not a boolean.
    #[error("a boolean was expected in {field} at byte {offset} (RFC 9171 §6.1.1)")]
    NotBoolean {
        /// The record's field.
        field: &'static str,
        /// Where, in bytes from the record's start.
        offset: usize,
    },
    /// Bytes follow the record.
    #[error("{count} bytes follow the administrative record")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A custody signal names a range of no transmission.
    #[error("custody signal range starting at {first} has count 0 (draft-ietf-dtn-bibect)")]
    EmptyRange {
        /// The range's first transmission ID.
        first: u64,
    },
}

pub(crate) fn cbor_err(field: &'static str, offset: usize) -> impl FnOnce(CborProblem) -> AdminError {
    move |problem| AdminError::Cbor { field, offset, problem }
}

pub(crate) fn read_uint(r: &mut Reader<'_>, field: &'static str) -> Result<u64, AdminError> {
    let at = r.position();
    r.uint().map_err(cbor_err(field, at))
}

/// Reads an administrative record's head, `[type, ...` (RFC 9171 §6.1): its record type code.
fn read_record_type(r: &mut Reader<'_>) -> Result<u64, AdminError> {
    let at = r.position();
    match r.array().map_err(cbor_err("the administrative record", at))? {
        Some(2) => {}
        Some(found) => return Err(AdminError::RecordLength { found }),
        None => {
            return Err(AdminError::Cbor {
                field: "the administrative record",
                offset: at,
                problem: CborProblem::Unexpected {
                    expected: "a definite-length array",
                    found: "an indefinite-length array",
                },
            });
        }
    }
    read_uint(r, "the record type code")
}

/// Reads a definite-length array head with one of the allowed lengths.
pub(crate) fn read_array(
    r: &mut Reader<'_>,
    record: &'static str,
    allowed: &[u64],
    expected: &'static str,
    section: &'static str,
) -> Result<u64, AdminError> {
    let at = r.position();
    match r.array().map_err(cbor_err(record, at))? {
        Some(n) if allowed.contains(&n) => Ok(n),
        Some(found) => Err(AdminError::ContentLength { record, found, expected, section }),
        None => Err(AdminError::Cbor {
            field: record,
            offset: at,
            problem: CborProblem::Unexpected {
                expected: "a definite-length array",
                found: "an indefinite-length array",
            },
        }),
    }
}

/// A BIBE protocol data unit: a bundle encapsulated for custody transfer (draft-ietf-dtn-bibect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BibePdu {
    /// 0 when custody is not requested, else the sender's custodial transmission count + 1.
    pub transmission_id: u64,
    /// DTN time (ms) by which the sender expects a custody signal; 0 without custody.
    pub retransmission_time: u64,
    /// The encapsulated bundle, encoded.
    pub bundle: Bytes,
}

/// The head of a BIBE PDU record read from the first bytes of a payload, without the bundle
/// inside: what a node needs to stream that bundle on from where it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BibePduHead {
    /// The transmission ID a custody signal answering it names.
    pub transmission_id: u64,
    /// When the sender sends again without a signal, in the unit it writes (docs/custody.md).
    pub retransmission_time: u64,
    /// The encapsulated bundle's length.
    pub bundle_length: u64,
    /// Where in the payload the encapsulated bundle starts.
    pub bundle_offset: usize,
}

impl BibePduHead {
    /// At most this many bytes hold the head: `[type, [id, time, bstr(len)]]` heads.
    pub const MAX_LEN: usize = 1 + 9 + 1 + 9 + 9 + 9;

    /// Reads the head from `prefix` (the payload's first bytes, [`BibePduHead::MAX_LEN`] or
    /// all of it if shorter). `Ok(None)`: the record is not a BIBE PDU under any code known or
    /// in `types`.
    pub fn decode(prefix: &[u8], types: &AdminRecordTypes) -> Result<Option<BibePduHead>, AdminError> {
        let mut r = Reader::new(prefix);
        let record_type = read_record_type(&mut r)?;
        if record_type != types.bibe_pdu && !KNOWN_BIBE_PDU_CODES.contains(&record_type) {
            return Ok(None);
        }
        read_array(&mut r, "the BIBE PDU", &[3], "3", "draft-ietf-dtn-bibect")?;
        let transmission_id = read_uint(&mut r, "the transmission ID")?;
        let retransmission_time = read_uint(&mut r, "the retransmission time")?;
        let at = r.position();
        let bundle_length = r.bytes_head().map_err(cbor_err("the encapsulated bundle", at))?;
        Ok(Some(BibePduHead {
            transmission_id,
            retransmission_time,
            bundle_length,
            bundle_offset: r.position(),
        }))
    }
}

/// Custody disposition codes of a custody signal (draft-ietf-dtn-bibect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustodyDisposition(pub u64);

impl CustodyDisposition {
    /// Custody accepted (0).
    pub const ACCEPTED: Self = Self(0);
    /// No further information (1).
    pub const NO_FURTHER_INFO: Self = Self(1);
    /// Redundant reception (3).
    pub const REDUNDANT: Self = Self(3);
    /// Depleted storage (4).
    pub const DEPLETED_STORAGE: Self = Self(4);
    /// Destination endpoint ID unintelligible (5).
    pub const DESTINATION_UNINTELLIGIBLE: Self = Self(5);
    /// No known route to destination (6).
    pub const NO_ROUTE: Self = Self(6);
    /// No timely contact with next node (7).
    pub const NO_TIMELY_CONTACT: Self = Self(7);
    /// Block unintelligible (8).
    pub const BLOCK_UNINTELLIGIBLE: Self = Self(8);

    /// Accepted and redundant both release the sender from custody; anything else refuses.
    pub fn releases_custody(self) -> bool {
        self == Self::ACCEPTED || self == Self::REDUNDANT
    }

    /// The disposition's name, as the draft gives it.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "custody accepted",
            1 => "no further information",
            3 => "redundant reception",
            4 => "depleted storage",
            5 => "destination endpoint ID unintelligible",
            6 => "no known route to destination",
            7 => "no timely contact with next node",
            8 => "block unintelligible",
            _ => "unassigned disposition",
        }
    }
}

/// A custody signal: one disposition for ranges of transmission IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodySignal {
    /// What happened to the transmissions named.
    pub disposition: CustodyDisposition,
    /// `(first transmission ID, count)` ranges.
    pub ranges: Vec<(u64, u64)>,
}

impl CustodySignal {
    /// A signal for `ids`, aggregated into as few ranges as possible.
    pub fn for_ids(disposition: CustodyDisposition, ids: impl IntoIterator<Item = u64>) -> Self {
        let mut ids: Vec<u64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for id in ids {
            match ranges.last_mut() {
                Some((first, count)) if first.checked_add(*count) == Some(id) => *count += 1,
                _ => ranges.push((id, 1)),
            }
        }
        CustodySignal { disposition, ranges }
    }

    /// True if the signal covers transmission ID `id`.
    pub fn covers(&self, id: u64) -> bool {
        self.ranges.iter().any(|&(first, count)| id >= first && id - first < count)
    }
}

/// An administrative record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRecord {
    /// A bundle status report (RFC 9171 §6.1.1).
    StatusReport(StatusReport),
    /// A bundle encapsulated for custody transfer (BIBE, draft-ietf-dtn-bibect).
    BibePdu(BibePdu),
    /// A custody signal (draft-ietf-dtn-bibect).
    CustodySignal(CustodySignal),
    /// A record type we do not know, kept as its encoded content.
    Unknown {
        /// Its record type code.
        record_type: u64,
        /// Its content, encoded.
        content: Bytes,
    },
}

impl AdminRecord {
    /// Decodes the payload of an administrative-record bundle. `types` adds the codes configured
    /// for a peer to the known ones.
    pub fn decode(payload: &Bytes, types: &AdminRecordTypes) -> Result<AdminRecord, AdminError> {
        let mut r = Reader::new(payload);
        let record_type = read_record_type(&mut r)?;
        let record = if record_type == RECORD_STATUS_REPORT {
            AdminRecord::StatusReport(StatusReport::decode(&mut r)?)
        } else if record_type == types.bibe_pdu || KNOWN_BIBE_PDU_CODES.contains(&record_type) {
            read_array(&mut r, "the BIBE PDU", &[3], "3", "draft-ietf-dtn-bibect")?;
            let transmission_id = read_uint(&mut r, "the transmission ID")?;
            let retransmission_time = read_uint(&mut r, "the retransmission time")?;
            let at = r.position();
            let range = r.bytes().map_err(cbor_err("the encapsulated bundle", at))?;
            AdminRecord::BibePdu(BibePdu {
                transmission_id,
                retransmission_time,
                bundle: payload.slice(range),
            })
        } else if record_type == types.custody_signal || KNOWN_CUSTODY_SIGNAL_CODES.contains(&record_type) {
            read_array(&mut r, "the custody signal", &[2], "2", "draft-ietf-dtn-bibect")?;
            let disposition = CustodyDisposition(read_uint(&mut r, "the custody disposition")?);
            let at = r.position();
            let count = match r.array().map_err(cbor_err("the custody signal ranges", at))? {
                Some(n) => n,
                None => {
                    return Err(AdminError::Cbor {
                        field: "the custody signal ranges",
                        offset: at,
                        problem: CborProblem::Unexpected {
                            expected: "a definite-length array",
                            found: "an indefinite-length array",
                        },
                    });
                }
            };
            // Each range takes at least 3 bytes: an announced count beyond that is truncation,
            // caught before reserving anything.
            if count > (r.remaining() / 3) as u64 {
                return Err(AdminError::Cbor {
                    field: "the custody signal ranges",
                    offset: at,
                    problem: CborProblem::Truncated,
                });
            }
            let mut ranges = Vec::with_capacity(count as usize);
            for _ in 0..count {
                read_array(&mut r, "a custody signal range", &[2], "2", "draft-ietf-dtn-bibect")?;
                let first = read_uint(&mut r, "the first transmission ID")?;
                let n = read_uint(&mut r, "the range count")?;
                if n == 0 {
                    return Err(AdminError::EmptyRange { first });
                }
                ranges.push((first, n));
            }
            AdminRecord::CustodySignal(CustodySignal { disposition, ranges })
        } else {
            let start = r.position();
            skip_item(&mut r, 0)?;
            AdminRecord::Unknown { record_type, content: payload.slice(start..r.position()) }
        };
        if r.remaining() != 0 {
            return Err(AdminError::TrailingBytes { count: r.remaining() });
        }
        Ok(record)
    }

    /// Encodes the record as a bundle payload, with `types` choosing the BIBE record codes.
    pub fn encode(&self, types: &AdminRecordTypes) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        cbor::write_array(&mut out, 2);
        match self {
            AdminRecord::StatusReport(report) => {
                cbor::write_uint(&mut out, RECORD_STATUS_REPORT);
                report.encode(&mut out);
            }
            AdminRecord::BibePdu(pdu) => {
                out.reserve(pdu.bundle.len() + 16);
                cbor::write_uint(&mut out, types.bibe_pdu);
                cbor::write_array(&mut out, 3);
                cbor::write_uint(&mut out, pdu.transmission_id);
                cbor::write_uint(&mut out, pdu.retransmission_time);
                cbor::write_bytes(&mut out, &pdu.bundle);
            }
            AdminRecord::CustodySignal(signal) => {
                cbor::write_uint(&mut out, types.custody_signal);
                cbor::write_array(&mut out, 2);
                cbor::write_uint(&mut out, signal.disposition.0);
                cbor::write_array(&mut out, signal.ranges.len() as u64);
                for &(first, count) in &signal.ranges {
                    cbor::write_array(&mut out, 2);
                    cbor::write_uint(&mut out, first);
                    cbor::write_uint(&mut out, count);
                }
            }
            AdminRecord::Unknown { record_type, content } => {
                cbor::write_uint(&mut out, *record_type);
                out.extend_from_slice(content);
            }
        }
        out
    }
}

/// Skips one well-formed CBOR item of any kind, with a nesting limit so hostile input cannot
/// recurse without bound.
fn skip_item(r: &mut Reader<'_>, depth: usize) -> Result<(), AdminError> {
    const MAX_DEPTH: usize = 16;
    let at = r.position();
    let err = |problem| AdminError::Cbor { field: "the record content", offset: at, problem };
    if depth > MAX_DEPTH {
        return Err(err(CborProblem::Unexpected {
            expected: "at most 16 levels of nesting",
            found: "deeper nesting",
        }));
    }
    let head = r.head().map_err(err)?;
    use cbor::Major;
    match (head.major, head.argument) {
        (Major::Bytes | Major::Text, Some(len)) => {
            if len > r.remaining() as u64 {
                return Err(err(CborProblem::Truncated));
            }
            *r = Reader::at(r.buffer(), r.position() + len as usize);
        }
        (Major::Array | Major::Map, Some(n)) => {
            let items = if head.major == Major::Map { n.saturating_mul(2) } else { n };
            if items > r.remaining() as u64 {
                return Err(err(CborProblem::Truncated));
            }
            for _ in 0..items {
                skip_item(r, depth + 1)?;
            }
        }
        (Major::Tag, _) => skip_item(r, depth + 1)?,
        (_, None) if head.is_break() => {
            return Err(err(CborProblem::Unexpected { expected: "an item", found: "a break stop code" }));
        }
        (Major::Bytes | Major::Text | Major::Array | Major::Map, None) => {
            while !r.take_break() {
                if r.remaining() == 0 {
                    return Err(err(CborProblem::Truncated));
                }
                skip_item(r, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
