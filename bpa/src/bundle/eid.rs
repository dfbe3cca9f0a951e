//! Endpoint identifiers (RFC 9171 §4.2.5.1, with the `ipn` updates of RFC 9758).
//!
//! Text forms: `dtn:none`, `dtn://node/demux` (a demux starting with `~` names a group),
//! `ipn:N.S` and `ipn:A.N.S`. CBOR forms: `[1, 0]`, `[1, "//node/demux"]`, `[2, [FQNN, S]]` and
//! `[2, [A, N, S]]`, where the fully-qualified node number FQNN is `(A << 32) | N` (RFC 9758 §6.1).
//! Both ipn forms are decoded. The two-element form is emitted for the default allocator 0 and
//! the three-element form otherwise, as RFC 9758 §6.1.2 recommends (and Hardy does); dtn7-rs
//! only understands the two-element form, which is what every allocator-0 EID gets.

use std::fmt;
use std::str::FromStr;

use super::cbor::{self, CborProblem, Reader};

/// URI scheme code of the `dtn` scheme (RFC 9171 §9.7).
pub const SCHEME_DTN: u64 = 1;
/// URI scheme code of the `ipn` scheme (RFC 9171 §9.7).
pub const SCHEME_IPN: u64 = 2;

/// An endpoint ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Eid {
    /// The null endpoint `dtn:none`, which has no members.
    Null,
    /// `dtn://node/demux`.
    Dtn {
        /// The node name (non-empty, visible ASCII, no `/`).
        node: Box<str>,
        /// The demultiplexing token (visible ASCII, may be empty or contain `/`).
        demux: Box<str>,
    },
    /// `ipn:[A.]N.S`.
    Ipn {
        /// Allocator identifier (0 for the default allocator).
        allocator: u32,
        /// Node number within the allocator's range.
        node: u32,
        /// Service number.
        service: u64,
    },
}

/// Why an EID was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EidError {
    /// A scheme name other than dtn and ipn.
    #[error("unknown URI scheme {0:?}; only dtn and ipn are supported (RFC 9171 §4.2.5.1)")]
    UnknownSchemeName(String),
    /// A scheme code other than 1 (dtn) and 2 (ipn).
    #[error("unknown URI scheme code {0}; only 1 (dtn) and 2 (ipn) are supported (RFC 9171 §9.7)")]
    UnknownSchemeCode(u64),
    /// No scheme.
    #[error("missing ':' after the scheme name; write dtn://node/service or ipn:node.service")]
    MissingScheme,
    /// A dtn EID of the wrong shape.
    #[error("a dtn EID is dtn:none or dtn://node/demux (RFC 9171 §4.2.5.1.1); got {0:?}")]
    BadDtnSyntax(String),
    /// A dtn EID with no node name.
    #[error("the node name of a dtn EID is empty (RFC 9171 §4.2.5.1.1)")]
    EmptyDtnNode,
    /// A dtn EID with a character that is not visible ASCII.
    #[error("character {0:?} is not visible ASCII (RFC 9171 §4.2.5.1.1 allows VCHAR only)")]
    BadDtnCharacter(char),
    /// A dtn SSP encoded as an integer other than 0.
    #[error("a dtn SSP encoded as an integer must be 0 (dtn:none); got {0} (RFC 9171 §4.2.5.1.1)")]
    BadDtnNoneCode(u64),
    /// An ipn EID of the wrong shape.
    #[error("an ipn EID is ipn:node.service or ipn:allocator.node.service (RFC 9758 §5); got {0:?}")]
    BadIpnSyntax(String),
    /// An ipn number that is not plain decimal.
    #[error("ipn number {0:?} is not a decimal number without sign or leading zeros (RFC 9758 §5)")]
    BadIpnNumber(String),
    /// An ipn number over 32 bits.
    #[error("ipn {what} {value} does not fit in 32 bits (RFC 9758 §3)")]
    IpnNumberTooLarge {
        /// Which number (allocator, node, service).
        what: &'static str,
        /// The number.
        value: u64,
    },
    /// An ipn SSP array of the wrong length.
    #[error("an ipn SSP array has 2 or 3 elements (RFC 9758 §6.1); this one has {0}")]
    BadIpnArrayLength(u64),
    /// An EID array of the wrong length.
    #[error("an EID is a 2-element array [scheme, SSP] (RFC 9171 §4.2.5.1); this one has {0}")]
    BadArrayLength(u64),
    /// An EID over the node's limit.
    #[error("EID of {length} bytes exceeds the configured limit of {limit} bytes")]
    TooLong {
        /// Its length in bytes.
        length: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The CBOR does not decode.
    #[error("malformed EID encoding: {0}")]
    Cbor(CborProblem),
}

impl From<CborProblem> for EidError {
    fn from(p: CborProblem) -> Self {
        EidError::Cbor(p)
    }
}

fn check_vchar(s: &str) -> Result<(), EidError> {
    match s.chars().find(|c| !matches!(*c, '\x21'..='\x7e')) {
        Some(c) => Err(EidError::BadDtnCharacter(c)),
        None => Ok(()),
    }
}

impl Eid {
    /// `ipn:N.S` with the default allocator.
    pub fn ipn(node: u32, service: u64) -> Eid {
        Eid::Ipn { allocator: 0, node, service }
    }

    /// `dtn://node/demux`, validated.
    pub fn dtn(node: &str, demux: &str) -> Result<Eid, EidError> {
        Self::dtn_from_ssp(&format!("//{node}/{demux}"))
    }

    /// True for `dtn:none` and for `ipn:0.0`, which RFC 9758 §3 also makes the null endpoint.
    pub fn is_null(&self) -> bool {
        matches!(self, Eid::Null | Eid::Ipn { allocator: 0, node: 0, service: 0 })
    }

    /// True for a dtn EID whose demux begins with `~`: a group (non-singleton) endpoint.
    pub fn is_group(&self) -> bool {
        matches!(self, Eid::Dtn { demux, .. } if demux.starts_with('~'))
    }

    /// The node ID of the node this EID belongs to: `dtn://node/` or `ipn:N.0`.
    pub fn node_id(&self) -> Eid {
        match self {
            Eid::Null => Eid::Null,
            Eid::Dtn { node, .. } => Eid::Dtn { node: node.clone(), demux: "".into() },
            Eid::Ipn { allocator, node, .. } => Eid::Ipn { allocator: *allocator, node: *node, service: 0 },
        }
    }

    fn dtn_from_ssp(ssp: &str) -> Result<Eid, EidError> {
        if ssp == "none" {
            return Ok(Eid::Null);
        }
        let rest = ssp.strip_prefix("//").ok_or_else(|| EidError::BadDtnSyntax(format!("dtn:{ssp}")))?;
        let (node, demux) =
            rest.split_once('/').ok_or_else(|| EidError::BadDtnSyntax(format!("dtn:{ssp}")))?;
        if node.is_empty() {
            return Err(EidError::EmptyDtnNode);
        }
        check_vchar(node)?;
        check_vchar(demux)?;
        Ok(Eid::Dtn { node: node.into(), demux: demux.into() })
    }

    /// `ipn:A.N.S` from its three numbers; allocator and node number are 32-bit (RFC 9758 §3).
    fn ipn_three(allocator: u64, node: u64, service: u64) -> Result<Eid, EidError> {
        let too_large = |what, value| EidError::IpnNumberTooLarge { what, value };
        Ok(Eid::Ipn {
            allocator: u32::try_from(allocator).map_err(|_| too_large("allocator", allocator))?,
            node: u32::try_from(node).map_err(|_| too_large("node number", node))?,
            service,
        })
    }

    fn ipn_from_fqnn(fqnn: u64, service: u64) -> Eid {
        Eid::Ipn { allocator: (fqnn >> 32) as u32, node: fqnn as u32, service }
    }

    /// Decodes an EID from CBOR (RFC 9171 §4.2.5.1), reading exactly one item.
    pub fn decode(reader: &mut Reader<'_>, max_length: usize) -> Result<Eid, EidError> {
        let start = reader.position();
        let eid = Self::decode_inner(reader, max_length)?;
        let length = reader.position() - start;
        if length > max_length {
            return Err(EidError::TooLong { length, limit: max_length });
        }
        Ok(eid)
    }

    fn decode_inner(reader: &mut Reader<'_>, max_length: usize) -> Result<Eid, EidError> {
        let items = reader.array()?;
        if let Some(n) = items
            && n != 2
        {
            return Err(EidError::BadArrayLength(n));
        }
        let scheme = reader.uint()?;
        let eid = match scheme {
            SCHEME_DTN => {
                let mut probe = reader.clone();
                let head = probe.head()?;
                if head.major == cbor::Major::Unsigned {
                    let code = reader.uint()?;
                    if code != 0 {
                        return Err(EidError::BadDtnNoneCode(code));
                    }
                    Eid::Null
                } else {
                    let ssp = reader.text()?;
                    // Checked before the node name and demux are copied out of the input.
                    if ssp.len() > max_length {
                        return Err(EidError::TooLong { length: ssp.len(), limit: max_length });
                    }
                    if ssp == "none" {
                        // "dtn:none" must be encoded as the integer 0 (RFC 9171 §4.2.5.1.1).
                        return Err(EidError::BadDtnSyntax("dtn:none as a text SSP".into()));
                    }
                    Self::dtn_from_ssp(ssp)?
                }
            }
            SCHEME_IPN => {
                let n = reader.array()?;

                match n {
                    Some(2) => {
                        let fqnn = reader.uint()?;
                        let service = reader.uint()?;
                        Self::ipn_from_fqnn(fqnn, service)
                    }
                    Some(3) => {
                        let allocator = reader.uint()?;
                        let node = reader.uint()?;
                        Self::ipn_three(allocator, node, reader.uint()?)?
                    }
                    Some(other) => return Err(EidError::BadIpnArrayLength(other)),
                    None => {
                        return Err(EidError::Cbor(CborProblem::Unexpected {
                            expected: "a definite-length ipn SSP array",
                            found: "an indefinite-length array",
                        }));
                    }
                }
            }
            other => return Err(EidError::UnknownSchemeCode(other)),
        };
        if items.is_none() && !reader.take_break() {
            return Err(EidError::Cbor(CborProblem::Unexpected {
                expected: "the break ending the EID array",
                found: "another item",
            }));
        }
        Ok(eid)
    }

    /// Appends the CBOR encoding (RFC 9171 §4.2.5.1; two-element ipn form).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Eid::Null => out.extend_from_slice(&[0x82, 0x01, 0x00]),
            Eid::Dtn { node, demux } => {
                out.extend_from_slice(&[0x82, 0x01]);
                let len = 2 + node.len() + 1 + demux.len();
                cbor::write_head(out, cbor::MAJOR_TEXT, len as u64);
                out.extend_from_slice(b"//");
                out.extend_from_slice(node.as_bytes());
                out.push(b'/');
                out.extend_from_slice(demux.as_bytes());
            }
            Eid::Ipn { allocator: 0, node, service } => {
                out.extend_from_slice(&[0x82, 0x02, 0x82]);
                cbor::write_uint(out, u64::from(*node));
                cbor::write_uint(out, *service);
            }
            Eid::Ipn { allocator, node, service } => {
                out.extend_from_slice(&[0x82, 0x02, 0x83]);
                cbor::write_uint(out, u64::from(*allocator));
                cbor::write_uint(out, u64::from(*node));
                cbor::write_uint(out, *service);
            }
        }
    }
}

fn parse_ipn_number(s: &str) -> Result<u64, EidError> {
    let valid = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !valid {
        return Err(EidError::BadIpnNumber(s.to_string()));
    }
    s.parse::<u64>().map_err(|_| EidError::BadIpnNumber(s.to_string()))
}

impl FromStr for Eid {
    type Err = EidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, ssp) = s.split_once(':').ok_or(EidError::MissingScheme)?;
        match scheme {
            "dtn" => Self::dtn_from_ssp(ssp),
            "ipn" => {
                let parts: Vec<&str> = ssp.split('.').collect();
                match parts.as_slice() {
                    [node, service] => {
                        Ok(Self::ipn_from_fqnn(parse_ipn_number(node)?, parse_ipn_number(service)?))
                    }
                    [allocator, node, service] => Self::ipn_three(
                        parse_ipn_number(allocator)?,
                        parse_ipn_number(node)?,
                        parse_ipn_number(service)?,
                    ),
                    _ => Err(EidError::BadIpnSyntax(s.to_string())),
                }
            }
            other => Err(EidError::UnknownSchemeName(other.to_string())),
        }
    }
}

impl fmt::Display for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eid::Null => f.write_str("dtn:none"),
            Eid::Dtn { node, demux } => write!(f, "dtn://{node}/{demux}"),
            Eid::Ipn { allocator: 0, node, service } => write!(f, "ipn:{node}.{service}"),
            Eid::Ipn { allocator, node, service } => write!(f, "ipn:{allocator}.{node}.{service}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Eid, EidError> {
        let mut r = Reader::new(bytes);
        let eid = Eid::decode(&mut r, 1024)?;
        assert_eq!(r.remaining(), 0);
        Ok(eid)
    }

    fn encode(eid: &Eid) -> Vec<u8> {
        let mut out = Vec::new();
        eid.encode(&mut out);
        out
    }

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "dtn:none",
            "dtn://node/svc",
            "dtn://node/",
            "dtn://n/~group",
            "dtn://a/b/c",
            "ipn:1.2",
            "ipn:977.1.0",
        ] {
            let eid: Eid = text.parse().unwrap();
            assert_eq!(eid.to_string(), text);
            assert_eq!(decode(&encode(&eid)).unwrap(), eid);
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encode(&Eid::Null), [0x82, 0x01, 0x00]);
        assert_eq!(encode(&Eid::ipn(1, 2)), [0x82, 0x02, 0x82, 0x01, 0x02]);
        assert_eq!(encode(&"dtn://a/b".parse().unwrap()), b"\x82\x01\x65//a/b");
    }

    #[test]
    fn both_ipn_forms_decode_and_the_recommended_one_is_emitted() {
        let three = [0x82, 0x02, 0x83, 0x05, 0x07, 0x09];
        let eid = decode(&three).unwrap();
        assert_eq!(eid, Eid::Ipn { allocator: 5, node: 7, service: 9 });
        assert_eq!(eid.to_string(), "ipn:5.7.9");
        // A non-zero allocator is emitted in the three-element form (RFC 9758 §6.1.2).
        assert_eq!(encode(&eid), three);
        // The legacy two-element form carries the allocator in the FQNN's upper 32 bits.
        let legacy = [0x82, 0x02, 0x82, 0x1b, 0, 0, 0, 5, 0, 0, 0, 7, 0x09];
        assert_eq!(decode(&legacy).unwrap(), eid);
        // The default allocator 0 is emitted in the two-element form, also when it came in three.
        let zero = decode(&[0x82, 0x02, 0x83, 0x00, 0x07, 0x09]).unwrap();
        assert_eq!(encode(&zero), [0x82, 0x02, 0x82, 0x07, 0x09]);
    }

    #[test]
    fn group_and_null_and_node_id() {
        let g: Eid = "dtn://n/~all".parse().unwrap();
        assert!(g.is_group());
        assert!(Eid::Null.is_null() && Eid::ipn(0, 0).is_null() && !Eid::ipn(0, 1).is_null());
        assert_eq!(g.node_id().to_string(), "dtn://n/");
        assert_eq!(Eid::ipn(4, 7).node_id(), Eid::ipn(4, 0));
    }

    #[test]
    fn bad_text_is_rejected_with_the_reason() {
        assert_eq!("nope".parse::<Eid>(), Err(EidError::MissingScheme));
        assert_eq!("http://x".parse::<Eid>(), Err(EidError::UnknownSchemeName("http".into())));
        assert_eq!("dtn:foo".parse::<Eid>(), Err(EidError::BadDtnSyntax("dtn:foo".into())));
        assert_eq!("dtn:///svc".parse::<Eid>(), Err(EidError::EmptyDtnNode));
        assert_eq!("dtn://node".parse::<Eid>(), Err(EidError::BadDtnSyntax("dtn://node".into())));
        assert_eq!("dtn://no de/x".parse::<Eid>(), Err(EidError::BadDtnCharacter(' ')));
        assert_eq!("ipn:1".parse::<Eid>(), Err(EidError::BadIpnSyntax("ipn:1".into())));
        assert_eq!("ipn:1.x".parse::<Eid>(), Err(EidError::BadIpnNumber("x".into())));
        assert_eq!("ipn:01.1".parse::<Eid>(), Err(EidError::BadIpnNumber("01".into())));
        assert_eq!("ipn:-1.1".parse::<Eid>(), Err(EidError::BadIpnNumber("-1".into())));
        assert_eq!(
            "ipn:1.4294967296.1".parse::<Eid>(),
            Err(EidError::IpnNumberTooLarge { what: "node number", value: 1 << 32 })
        );
    }

    #[test]
    fn bad_cbor_is_rejected_with_the_reason() {
        assert_eq!(decode(&[0x83, 0x01, 0x00, 0x00]), Err(EidError::BadArrayLength(3)));
        assert_eq!(decode(&[0x82, 0x03, 0x00]), Err(EidError::UnknownSchemeCode(3)));
        assert_eq!(decode(&[0x82, 0x01, 0x01]), Err(EidError::BadDtnNoneCode(1)));
        assert_eq!(decode(&[0x82, 0x02, 0x81, 0x01]), Err(EidError::BadIpnArrayLength(1)));
        assert_eq!(decode(&[0x82, 0x02]), Err(EidError::Cbor(CborProblem::Truncated)));
        let mut long = vec![0x82, 0x01, 0x78, 200, b'/', b'/', b'n', b'/'];
        long.extend(std::iter::repeat_n(b'x', 196));
        let mut r = Reader::new(&long);
        assert_eq!(Eid::decode(&mut r, 64), Err(EidError::TooLong { length: 200, limit: 64 }));
        let mut r = Reader::new(&long);
        assert_eq!(Eid::decode(&mut r, 201), Err(EidError::TooLong { length: 204, limit: 201 }));
    }

    #[test]
    fn indefinite_eid_array_is_accepted() {
        // RFC 9171 §4.1 does not prohibit indefinite-length items.
        assert_eq!(decode(&[0x9f, 0x02, 0x82, 0x01, 0x02, 0xff]).unwrap(), Eid::ipn(1, 2));
    }
}
