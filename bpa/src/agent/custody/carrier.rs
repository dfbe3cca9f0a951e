//! The BIBE carrier (draft-ietf-dtn-bibect): the bundle this node sends around a bundle under
//! custody, built as heads around the encapsulated bundle's bytes so that they stream through
//! uncopied; and, the other way, a carrier for this node told apart from its first bytes and
//! taken apart as it streams in. Pure: bytes in, bytes and decisions out.

use bytes::Bytes;

use crate::admin::{AdminRecordTypes, BibePduHead};
use crate::bundle::cbor;
use crate::bundle::{BlockFlags, CrcType, Eid, ParseOptions, PrimaryBlock};

/// Longest carrier payload prefix before the encapsulated bundle.
pub(crate) const PDU_PREFIX_MAX: usize = BibePduHead::MAX_LEN;

/// A carrier bundle around an encapsulated bundle of `inner_len` bytes: `bundle_head` (the
/// carrier's primary block and its payload block's head), `record_head` (the BIBE record's head,
/// the first bytes of the payload), the encapsulated bundle, then `tail` (the carrier's final
/// break). The payload block has no CRC, so the encapsulated bundle streams through unchanged
/// and uncopied — whole, or cut into the carrier's fragments when the link needs them.
#[derive(Debug, Clone)]
pub(crate) struct Carrier {
    pub bundle_head: Bytes,
    pub record_head: Bytes,
    pub tail: Bytes,
    /// The carrier's payload length: the record's head and the encapsulated bundle.
    pub payload_len: u64,
}

impl Carrier {
    pub fn new(primary: &PrimaryBlock, record_type: u64, pdu_head: (u64, u64), inner_len: u64) -> Carrier {
        let (transmission_id, retransmission_time) = pdu_head;
        let mut record = Vec::with_capacity(PDU_PREFIX_MAX);
        cbor::write_array(&mut record, 2);
        cbor::write_uint(&mut record, record_type);
        cbor::write_array(&mut record, 3);
        cbor::write_uint(&mut record, transmission_id);
        cbor::write_uint(&mut record, retransmission_time);
        cbor::write_head(&mut record, cbor::MAJOR_BYTES, inner_len);
        let payload_len = record.len() as u64 + inner_len;
        let (head, _) = crate::bundle::streamed_head(primary, &[], BlockFlags(0), CrcType::None, payload_len);
        Carrier {
            bundle_head: head.into(),
            record_head: record.into(),
            tail: Bytes::from_static(&[cbor::BREAK]),
            payload_len,
        }
    }

    /// The carrier's whole length.
    pub fn len(&self) -> u64 {
        self.bundle_head.len() as u64 + self.payload_len + self.tail.len() as u64
    }
}

/// Most bytes of a bundle arriving in pieces looked at to tell a carrier from other bundles.
pub(crate) const SNIFF_MAX: usize = 64 * 1024;

/// What the first bytes of a bundle arriving in pieces say ([`Agent::sniff_carrier`]).
pub(crate) enum Sniffed {
    /// Its header (and its record's head) are not all here yet.
    NeedMore,
    /// Not a BIBE carrier for this node: stored as it comes.
    Plain,
    /// A carrier for this node: the bundle inside goes to the store.
    Carrier(Box<Decapsulation>),
}

/// A BIBE carrier for this node arriving in pieces: the bundle inside streams into the store,
/// the carrier is checked as it passes (its payload CRC and end, [`crate::bundle::PayloadCheck`])
/// and never stored.
#[derive(Debug)]
pub(crate) struct Decapsulation {
    /// The custodian (the carrier's source node) and its transmission ID (0: no custody).
    pub from: Eid,
    pub tid: u64,
    /// Where the carrier's payload starts, and the bundle inside it, and its length.
    data_offset: usize,
    inner_start: usize,
    pub inner_len: u64,
    /// Bytes of the bundle inside still to come, and bytes seen after it.
    remaining: u64,
    after: u64,
    /// The carrier's payload check, fed every byte after the payload's start.
    pub(super) check: crate::bundle::PayloadCheck,
}

impl Decapsulation {
    /// The carrier's first bytes (those its header was read from): the part of the bundle
    /// inside among them.
    pub fn start<'a>(&mut self, kept: &'a [u8]) -> Result<&'a [u8], crate::bundle::BundleError> {
        let payload = &kept[self.data_offset.min(kept.len())..];
        let from_inner = self.inner_start.min(kept.len()) - self.data_offset.min(kept.len());
        // The record's head goes to the check only; the rest is taken as any later bytes.
        self.check.update(&payload[..from_inner]);
        self.take(&payload[from_inner..])
    }

    /// The next bytes of the carrier: the part of the bundle inside among them (the rest is
    /// the carrier's end, checked at the commit). Refused once more bytes follow the bundle
    /// inside than a carrier's end can hold (its payload CRC and breaks), so a sender cannot
    /// keep one open with bytes that go nowhere.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> Result<&'a [u8], crate::bundle::BundleError> {
        self.check.update(chunk);
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(chunk.len());
        self.remaining -= n as u64;
        self.after += (chunk.len() - n) as u64;
        if self.after > CARRIER_END_MAX {
            return Err(crate::bundle::BundleError::TrailingBytes {
                offset: self
                    .inner_start
                    .saturating_add(usize::try_from(self.inner_len).unwrap_or(usize::MAX)),
                count: usize::try_from(self.after).unwrap_or(usize::MAX),
            });
        }
        Ok(&chunk[..n])
    }
}

/// Most bytes after the bundle inside a carrier: a payload CRC field (5 bytes at most), the
/// payload block's break if indefinite, the bundle's final break.
const CARRIER_END_MAX: u64 = 16;

/// Tells from the first bytes of a bundle arriving in pieces whether it is a BIBE carrier for
/// `local` (this node) that can be taken apart as it streams: a whole one, whose header meets
/// the parse policy `options`, with a well-formed PDU (in the record types `types_for` its
/// source writes) filling its payload.
pub(crate) fn sniff(
    kept: &[u8],
    local: &Eid,
    options: &ParseOptions,
    types_for: impl Fn(&Eid) -> AdminRecordTypes,
) -> Sniffed {
    // A header (and a record's head) longer than this is no carrier taken apart on the way.
    let prefix = Bytes::copy_from_slice(&kept[..kept.len().min(SNIFF_MAX)]);
    let header = match crate::bundle::BundleHeader::parse(&prefix, options) {
        Ok(Some(header)) => header,
        Ok(None) if kept.len() < SNIFF_MAX => return Sniffed::NeedMore,
        Ok(None) | Err(_) => return Sniffed::Plain,
    };
    let primary = &header.primary;
    let policy_refuses = (header.primary_crc_missing() && !options.accept_primary_without_crc)
        || (header.bundle_age_missing() && !options.accept_missing_bundle_age);
    if !primary.flags.is_admin_record()
        || primary.destination != *local
        || primary.fragment.is_some()
        || policy_refuses
    {
        return Sniffed::Plain;
    }
    let start = header.payload.data_offset;
    let length = header.payload.data_length;
    let need = start.saturating_add(usize::try_from(length.min(PDU_PREFIX_MAX as u64)).unwrap_or(0));
    if prefix.len() < need {
        return if kept.len() < SNIFF_MAX { Sniffed::NeedMore } else { Sniffed::Plain };
    }
    let from = primary.source.node_id();
    let types = types_for(&from);
    match BibePduHead::decode(&kept[start..need], &types) {
        Ok(Some(head)) if (head.bundle_offset as u64).checked_add(head.bundle_length) == Some(length) => {
            Sniffed::Carrier(Box::new(Decapsulation {
                from,
                tid: head.transmission_id,
                data_offset: start,
                inner_start: start + head.bundle_offset,
                inner_len: head.bundle_length,
                remaining: head.bundle_length,
                after: 0,
                check: crate::bundle::PayloadCheck::new(&header, kept),
            }))
        }
        _ => Sniffed::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{AdminRecord, BibePdu, CustodyDisposition, CustodySignal};
    use crate::bundle::{Bundle, BundleBuilder, BundleFlags, CreationTimestamp};

    #[test]
    fn a_carrier_built_around_a_bundle_parses_and_its_record_decodes_to_the_bundle() {
        let inner = BundleBuilder::new(
            Eid::ipn(1, 1),
            Eid::ipn(3, 1),
            CreationTimestamp { time: 1_000, sequence: 4 },
            60_000,
        )
        .payload(Bytes::from_static(b"under custody"))
        .build()
        .expect("bundle")
        .encode();
        let primary = PrimaryBlock {
            flags: BundleFlags(BundleFlags::ADMIN_RECORD),
            crc_type: CrcType::Crc32c,
            destination: Eid::ipn(2, 0),
            source: Eid::ipn(1, 0),
            report_to: Eid::ipn(1, 0),
            creation: CreationTimestamp { time: 2_000, sequence: 0 },
            lifetime: 60_000,
            fragment: None,
        };
        for code in [3, 7, 64443] {
            let carrier = Carrier::new(&primary, code, (42, 9_999), inner.len() as u64);
            let whole = Bytes::from(
                [carrier.bundle_head.as_ref(), carrier.record_head.as_ref(), &inner, carrier.tail.as_ref()]
                    .concat(),
            );
            assert_eq!(carrier.len(), whole.len() as u64);
            let parsed =
                Bundle::parse(&whole, &crate::bundle::ParseOptions::default()).expect("carrier parses");
            assert!(parsed.primary().flags.is_admin_record());
            let payload = Bytes::copy_from_slice(parsed.payload());
            let record = AdminRecord::decode(&payload, &AdminRecordTypes::default()).expect("record");
            assert_eq!(
                record,
                AdminRecord::BibePdu(BibePdu {
                    transmission_id: 42,
                    retransmission_time: 9_999,
                    bundle: Bytes::from(inner.clone())
                })
            );
            let head = BibePduHead::decode(&payload[..PDU_PREFIX_MAX], &AdminRecordTypes::default())
                .expect("head")
                .expect("a PDU");
            assert_eq!(
                (head.transmission_id, head.retransmission_time, head.bundle_length),
                (42, 9_999, inner.len() as u64)
            );
            assert_eq!(&payload[head.bundle_offset..], &inner[..]);
        }
    }

    #[test]
    fn a_pdu_head_tells_other_records_and_malformed_ones_apart() {
        let types = AdminRecordTypes::default();
        let signal = AdminRecord::CustodySignal(CustodySignal::for_ids(CustodyDisposition::ACCEPTED, [1]))
            .encode(&types);
        assert_eq!(BibePduHead::decode(&signal, &types), Ok(None));
        assert_eq!(
            BibePduHead::decode(&[0x83, 0x03], &types),
            Err(crate::admin::AdminError::RecordLength { found: 3 })
        );
        assert!(matches!(
            BibePduHead::decode(&[0x82, 0x03, 0x82], &types),
            Err(crate::admin::AdminError::ContentLength { record: "the BIBE PDU", found: 2, .. })
        ));
        assert!(matches!(
            BibePduHead::decode(&[0x82, 0x03, 0x83, 0x01], &types),
            Err(crate::admin::AdminError::Cbor { field: "the retransmission time", .. })
        ));
    }
}
