use bytes::Bytes;

use super::*;
use crate::bundle::{CreationTimestamp, Eid};

fn round_trip(record: &AdminRecord, types: &AdminRecordTypes) -> AdminRecord {
    let encoded = Bytes::from(record.encode(types));
    AdminRecord::decode(&encoded, types).unwrap()
}

fn report(fragment: Option<(u64, u64)>, with_times: bool) -> StatusReport {
    let time = with_times.then_some(12_345);
    StatusReport {
        received: StatusAssertion::yes(time),
        forwarded: StatusAssertion::no(),
        delivered: StatusAssertion::yes(time.map(|t| t + 1)),
        deleted: StatusAssertion::no(),
        reason: ReasonCode::NO_ADDITIONAL_INFORMATION,
        source: Eid::ipn(5, 1),
        creation: CreationTimestamp { time: 99, sequence: 3 },
        fragment,
    }
}

#[test]
fn status_reports_round_trip_in_every_form() {
    for fragment in [None, Some((10, 20))] {
        for with_times in [false, true] {
            for reason in 0..=16 {
                let mut r = report(fragment, with_times);
                r.reason = ReasonCode(reason);
                let record = AdminRecord::StatusReport(r);
                assert_eq!(round_trip(&record, &AdminRecordTypes::default()), record);
            }
        }
    }
    assert_eq!(ReasonCode::HOP_LIMIT_EXCEEDED.name(), "hop limit exceeded");
    assert_eq!(ReasonCode(99).name(), "unassigned reason code");
}

#[test]
fn status_report_known_encoding() {
    let record = AdminRecord::StatusReport(report(None, true));
    let bytes = record.encode(&AdminRecordTypes::default());
    let expected: &[u8] = &[
        0x82, 0x01, 0x84, 0x84, 0x82, 0xf5, 0x19, 0x30, 0x39, 0x81, 0xf4, 0x82, 0xf5, 0x19, 0x30, 0x3a, 0x81,
        0xf4, 0x00, 0x82, 0x02, 0x82, 0x05, 0x01, 0x82, 0x18, 0x63, 0x03,
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn bibe_pdus_decode_under_every_known_code() {
    let pdu =
        BibePdu { transmission_id: 7, retransmission_time: 1000, bundle: Bytes::from_static(b"\x9f\xff") };
    let record = AdminRecord::BibePdu(pdu.clone());
    for code in [3, 7, 64443] {
        let types = AdminRecordTypes { bibe_pdu: code, custody_signal: 4 };
        let encoded = Bytes::from(record.encode(&types));
        // Decoding accepts every known code whatever the configured one is.
        assert_eq!(AdminRecord::decode(&encoded, &AdminRecordTypes::default()).unwrap(), record);
    }
    // A configured private code is honoured too.
    let private = AdminRecordTypes { bibe_pdu: 40_000, custody_signal: 40_001 };
    assert_eq!(round_trip(&record, &private), record);
}

#[test]
fn custody_signals_aggregate_ranges_and_decode_under_every_code() {
    let signal = CustodySignal::for_ids(CustodyDisposition::ACCEPTED, [5, 1, 2, 3, 9, 10, 3]);
    assert_eq!(signal.ranges, vec![(1, 3), (5, 1), (9, 2)]);
    assert!(signal.covers(2) && signal.covers(10) && !signal.covers(4) && !signal.covers(11));
    let record = AdminRecord::CustodySignal(signal);
    for types in [AdminRecordTypes::default(), AdminRecordTypes::ION] {
        let encoded = Bytes::from(record.encode(&types));
        assert_eq!(AdminRecord::decode(&encoded, &AdminRecordTypes::default()).unwrap(), record);
    }
    assert!(CustodyDisposition::REDUNDANT.releases_custody());
    assert!(!CustodyDisposition::DEPLETED_STORAGE.releases_custody());
}

#[test]
fn unknown_records_are_kept() {
    let payload = Bytes::from_static(&[0x82, 0x18, 0x63, 0xa1, 0x01, 0x82, 0x01, 0x02]);
    let record = AdminRecord::decode(&payload, &AdminRecordTypes::default()).unwrap();
    assert_eq!(record, AdminRecord::Unknown { record_type: 99, content: payload.slice(3..) });
    assert_eq!(record.encode(&AdminRecordTypes::default()), payload.as_ref());
}

#[test]
fn bad_records_get_exact_errors() {
    let t = AdminRecordTypes::default();
    let decode = |b: &'static [u8]| AdminRecord::decode(&Bytes::from_static(b), &t);
    assert_eq!(decode(&[0x83, 0x01, 0x00, 0x00]), Err(AdminError::RecordLength { found: 3 }));
    assert_eq!(
        decode(&[0x82, 0x01, 0x83]),
        Err(AdminError::ContentLength {
            record: "the status report",
            found: 3,
            expected: "4 or 6",
            section: "RFC 9171 §6.1.1"
        })
    );
    assert_eq!(decode(&[0x82, 0x01, 0x84, 0x84, 0x83]), Err(AdminError::StatusIndicatorLength { found: 3 }));
    assert_eq!(
        decode(&[0x82, 0x01, 0x84, 0x84, 0x81, 0x01]),
        Err(AdminError::NotBoolean { field: "a status indicator", offset: 5 })
    );
    assert_eq!(
        decode(&[0x82, 0x04, 0x82, 0x00, 0x81, 0x82, 0x05, 0x00]),
        Err(AdminError::EmptyRange { first: 5 })
    );
    // A range count far beyond the input is rejected before anything is reserved.
    assert_eq!(
        decode(&[0x82, 0x04, 0x82, 0x00, 0x1b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Err(AdminError::Cbor {
            field: "the custody signal ranges",
            offset: 4,
            problem: CborProblem::Unexpected { expected: "an array", found: "an unsigned integer" }
        })
    );
    assert_eq!(
        decode(&[0x82, 0x04, 0x82, 0x00, 0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Err(AdminError::Cbor {
            field: "the custody signal ranges",
            offset: 4,
            problem: CborProblem::Truncated
        })
    );
    assert_eq!(
        decode(&[0x82, 0x03, 0x83, 0x00, 0x00, 0x5a, 0xff, 0xff, 0xff, 0xff]),
        Err(AdminError::Cbor {
            field: "the encapsulated bundle",
            offset: 5,
            problem: CborProblem::Truncated
        })
    );
    assert_eq!(decode(&[0x82, 0x18, 0x63, 0x00, 0x00]), Err(AdminError::TrailingBytes { count: 1 }));
}

#[test]
fn deeply_nested_unknown_content_is_refused_not_recursed() {
    let mut bytes = vec![0x82, 0x18, 0x63];
    bytes.extend(std::iter::repeat_n(0x81, 10_000));
    bytes.push(0x00);
    let err = AdminRecord::decode(&Bytes::from(bytes), &AdminRecordTypes::default()).unwrap_err();
    assert!(matches!(
        err,
        AdminError::Cbor { problem: CborProblem::Unexpected { found: "deeper nesting", .. }, .. }
    ));
}

#[test]
fn a_time_with_a_negative_assertion_survives_a_round_trip() {
    // Found by fuzzing: [false, time] decoded, then lost its time when encoded.
    let payload = Bytes::from_static(&[
        0x82, 0x01, 0x84, 0x84, 0x82, 0xf4, 0x19, 0x30, 0x39, 0x81, 0xf4, 0x82, 0xf5, 0x19, 0x30, 0x3a, 0x81,
        0xf4, 0x00, 0x82, 0x02, 0x82, 0x01, 0x00, 0x82, 0x18, 0x63, 0x03,
    ]);
    let record = AdminRecord::decode(&payload, &AdminRecordTypes::default()).unwrap();
    let AdminRecord::StatusReport(report) = &record else { panic!("not a status report: {record:?}") };
    assert_eq!(report.received, StatusAssertion { asserted: false, time: Some(12345) });
    assert_eq!(record.encode(&AdminRecordTypes::default()), payload.as_ref());
}
