//! Bundle status reports (RFC 9171 §6.1.1).

use crate::bundle::cbor::{self, Reader};
use crate::bundle::{CborProblem, CreationTimestamp, Eid};

use super::{AdminError, cbor_err, read_array, read_uint};

/// Status report reason codes (RFC 9171 §6.1.1 and §9.5; 12–16 from RFC 9172 §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReasonCode(pub u64);

impl ReasonCode {
    /// No additional information (0).
    pub const NO_ADDITIONAL_INFORMATION: Self = Self(0);
    /// Lifetime expired (1).
    pub const LIFETIME_EXPIRED: Self = Self(1);
    /// Forwarded over unidirectional link (2).
    pub const FORWARDED_OVER_UNIDIRECTIONAL_LINK: Self = Self(2);
    /// Transmission canceled (3).
    pub const TRANSMISSION_CANCELED: Self = Self(3);
    /// Depleted storage (4).
    pub const DEPLETED_STORAGE: Self = Self(4);
    /// Destination endpoint ID unintelligible (5).
    pub const DESTINATION_EID_UNINTELLIGIBLE: Self = Self(5);
    /// No known route to destination from here (6).
    pub const NO_KNOWN_ROUTE: Self = Self(6);
    /// No timely contact with next node on route (7).
    pub const NO_TIMELY_CONTACT: Self = Self(7);
    /// Block unintelligible (8).
    pub const BLOCK_UNINTELLIGIBLE: Self = Self(8);
    /// Hop limit exceeded (9).
    pub const HOP_LIMIT_EXCEEDED: Self = Self(9);
    /// Traffic pared (10).
    pub const TRAFFIC_PARED: Self = Self(10);
    /// Block unsupported (11).
    pub const BLOCK_UNSUPPORTED: Self = Self(11);
    /// Missing security operation (12).
    pub const MISSING_SECURITY_OPERATION: Self = Self(12);
    /// Unknown security operation (13).
    pub const UNKNOWN_SECURITY_OPERATION: Self = Self(13);
    /// Unexpected security operation (14).
    pub const UNEXPECTED_SECURITY_OPERATION: Self = Self(14);
    /// Failed security operation (15).
    pub const FAILED_SECURITY_OPERATION: Self = Self(15);
    /// Conflicting security operation (16).
    pub const CONFLICTING_SECURITY_OPERATION: Self = Self(16);

    /// The reason's name, as RFC 9171 §9.5 registers it.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "no additional information",
            1 => "lifetime expired",
            2 => "forwarded over unidirectional link",
            3 => "transmission canceled",
            4 => "depleted storage",
            5 => "destination endpoint ID unintelligible",
            6 => "no known route to destination from here",
            7 => "no timely contact with next node on route",
            8 => "block unintelligible",
            9 => "hop limit exceeded",
            10 => "traffic pared",
            11 => "block unsupported",
            12 => "missing security operation",
            13 => "unknown security operation",
            14 => "unexpected security operation",
            15 => "failed security operation",
            16 => "conflicting security operation",
            _ => "unassigned reason code",
        }
    }
}

/// One status indicator: whether the status is asserted and, if the bundle asked for status
/// times, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusAssertion {
    /// Whether the status is asserted.
    pub asserted: bool,
    /// DTN time (ms); RFC 9171 §6.1.1 puts one only with an assertion, but one received with a
    /// negative assertion is kept.
    pub time: Option<u64>,
}

impl StatusAssertion {
    /// Not asserted.
    pub fn no() -> Self {
        StatusAssertion { asserted: false, time: None }
    }
    /// Asserted, at `time` (DTN ms) if status times were asked for.
    pub fn yes(time: Option<u64>) -> Self {
        StatusAssertion { asserted: true, time }
    }
}

/// A bundle status report (RFC 9171 §6.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// Whether (and when) the bundle was received.
    pub received: StatusAssertion,
    /// Whether (and when) it was forwarded.
    pub forwarded: StatusAssertion,
    /// Whether (and when) it was delivered.
    pub delivered: StatusAssertion,
    /// Whether (and when) it was deleted.
    pub deleted: StatusAssertion,
    /// Why.
    pub reason: ReasonCode,
    /// Source node ID of the bundle the report is about.
    pub source: Eid,
    /// Creation timestamp of the bundle the report is about.
    pub creation: CreationTimestamp,
    /// `(fragment offset, fragment length)` when the subject bundle is a fragment.
    pub fragment: Option<(u64, u64)>,
}

const SECTION: &str = "RFC 9171 §6.1.1";

impl StatusReport {
    pub(super) fn decode(r: &mut Reader<'_>) -> Result<StatusReport, AdminError> {
        let items = read_array(r, "the status report", &[4, 6], "4 or 6", SECTION)?;
        read_array(r, "the status information", &[4], "4", SECTION)?;
        let received = decode_assertion(r)?;
        let forwarded = decode_assertion(r)?;
        let delivered = decode_assertion(r)?;
        let deleted = decode_assertion(r)?;
        let reason = ReasonCode(read_uint(r, "the reason code")?);
        let source = Eid::decode(r, 1024)
            .map_err(|source| AdminError::Eid { field: "the subject source node ID", source })?;
        read_array(r, "the subject creation timestamp", &[2], "2", SECTION)?;
        let creation = CreationTimestamp {
            time: read_uint(r, "the subject creation time")?,
            sequence: read_uint(r, "the subject sequence number")?,
        };
        let fragment = if items == 6 {
            Some((read_uint(r, "the subject fragment offset")?, read_uint(r, "the subject fragment length")?))
        } else {
            None
        };
        Ok(StatusReport { received, forwarded, delivered, deleted, reason, source, creation, fragment })
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        cbor::write_array(out, if self.fragment.is_some() { 6 } else { 4 });
        cbor::write_array(out, 4);
        for assertion in [&self.received, &self.forwarded, &self.delivered, &self.deleted] {
            // A time goes with an assertion (RFC 9171 §6.1.1); one received with a negative
            // assertion is kept, so that what was decoded encodes back unchanged.
            let flag = if assertion.asserted { 0xf5 } else { 0xf4 };
            match assertion.time {
                Some(time) => {
                    out.extend_from_slice(&[0x82, flag]);
                    cbor::write_uint(out, time);
                }
                None => out.extend_from_slice(&[0x81, flag]),
            }
        }
        cbor::write_uint(out, self.reason.0);
        self.source.encode(out);
        out.push(0x82);
        cbor::write_uint(out, self.creation.time);
        cbor::write_uint(out, self.creation.sequence);
        if let Some((offset, length)) = self.fragment {
            cbor::write_uint(out, offset);
            cbor::write_uint(out, length);
        }
    }
}

fn decode_assertion(r: &mut Reader<'_>) -> Result<StatusAssertion, AdminError> {
    let at = r.position();
    let n = match r.array().map_err(cbor_err("a status indicator", at))? {
        Some(n @ (1 | 2)) => n,
        Some(found) => return Err(AdminError::StatusIndicatorLength { found }),
        None => {
            return Err(AdminError::Cbor {
                field: "a status indicator",
                offset: at,
                problem: CborProblem::Unexpected {
                    expected: "a definite-length array",
                    found: "an indefinite-length array",
                },
            });
        }
    };
    let at = r.position();
    let asserted = match r.peek_byte() {
        Some(0xf5) => true,
        Some(0xf4) => false,
        Some(_) => {
            return Err(AdminError::NotBoolean { field: "a status indicator", offset: at });
        }
        None => {
            return Err(AdminError::Cbor {
                field: "a status indicator",
                offset: at,
                problem: CborProblem::Truncated,
            });
        }
    };
    *r = Reader::at(r.buffer(), at + 1);
    let time = if n == 2 { Some(read_uint(r, "a status time")?) } else { None };
    Ok(StatusAssertion { asserted, time })
}
