//! One test per rule of RFC 9171 §4 that the parser enforces, plus round trips, header-only
//! parsing and limits. Property tests live in `bpa/tests/codec_properties.rs`.

use bytes::Bytes;

use super::*;

const T0: u64 = 700_000_000_000;

fn src() -> Eid {
    Eid::ipn(1, 1)
}
fn dst() -> Eid {
    Eid::ipn(2, 1)
}

fn builder() -> BundleBuilder {
    BundleBuilder::new(src(), dst(), CreationTimestamp { time: T0, sequence: 1 }, 3_600_000)
        .payload(&b"hello"[..])
}

fn primary() -> PrimaryBlock {
    PrimaryBlock {
        flags: BundleFlags(0),
        crc_type: CrcType::Crc32c,
        destination: dst(),
        source: src(),
        report_to: Eid::Null,
        creation: CreationTimestamp { time: T0, sequence: 1 },
        lifetime: 1000,
        fragment: None,
    }
}

fn block(block_type: u64, number: u64, data: &[u8]) -> CanonicalBlock {
    CanonicalBlock {
        block_type,
        number,
        flags: BlockFlags(0),
        crc_type: CrcType::Crc16,
        data: Bytes::copy_from_slice(data),
    }
}

fn payload() -> CanonicalBlock {
    block(block_type::PAYLOAD, 1, b"data")
}

/// Encodes blocks without any validation, so tests can make every kind of invalid bundle.
fn raw(primary: &PrimaryBlock, blocks: &[CanonicalBlock]) -> Bytes {
    let mut out = vec![0x9f];
    primary.encode(&mut out);
    for b in blocks {
        b.encode(&mut out);
    }
    out.push(0xff);
    out.into()
}

fn parse(input: &Bytes) -> Result<Bundle, BundleError> {
    Bundle::parse(input, &ParseOptions::default())
}

fn primary_bytes(p: &PrimaryBlock) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode(&mut out);
    out
}

/// Re-encodes the primary block at `out[1..]` after `edit`, fixing its CRC-32C.
fn patched(edit: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut p = primary_bytes(&primary());
    edit(&mut p);
    let n = p.len();
    p[n - 4..].fill(0);
    let crc = CrcType::Crc32c.compute(&[&p]);
    p[n - 4..].copy_from_slice(&crc.to_be_bytes());
    let mut out = vec![0x9f];
    out.extend_from_slice(&p);
    payload().encode(&mut out);
    out.push(0xff);
    out.into()
}

#[test]
fn built_bundle_round_trips_byte_for_byte() {
    let bundle = builder()
        .report_to(Eid::ipn(1, 0))
        .hop_limit(30)
        .bundle_age(5)
        .previous_node(&Eid::ipn(9, 0))
        .extension(200, BlockFlags(BlockFlags::DISCARD_IF_UNPROCESSABLE), Bytes::from_static(b"\x01\x02"))
        .build()
        .unwrap();
    let encoded = Bytes::from(bundle.encode());
    let parsed = parse(&encoded).unwrap();
    assert_eq!(parsed, bundle);
    assert_eq!(parsed.encode(), encoded.as_ref());
    assert_eq!(parsed.hop_count(), Some(HopCount { limit: 30, count: 0 }));
    assert_eq!(parsed.bundle_age(), Some(5));
    assert_eq!(parsed.previous_node(), Some(Eid::ipn(9, 0)));
    assert_eq!(parsed.payload().as_ref(), b"hello");
    assert_eq!(parsed.blocks().iter().map(|b| b.number).collect::<Vec<_>>(), [2, 3, 4, 5, 1]);
    let (head, body, tail) = parsed.encode_parts();
    assert_eq!([head, body.to_vec(), tail].concat(), encoded.as_ref());
}

#[test]
fn payload_is_a_view_not_a_copy() {
    let encoded = Bytes::from(builder().payload(vec![7u8; 4096]).build().unwrap().encode());
    let parsed = parse(&encoded).unwrap();
    let range = encoded.as_ptr() as usize..encoded.as_ptr() as usize + encoded.len();
    assert!(range.contains(&(parsed.payload().as_ptr() as usize)));
}

#[test]
fn known_encoding_of_a_minimal_bundle() {
    // Hand-assembled from RFC 9171 §4.3: CRC-16 blocks, ipn EIDs.
    let bundle = BundleBuilder::new(
        Eid::ipn(1, 2),
        Eid::ipn(3, 4),
        CreationTimestamp { time: 0, sequence: 5 },
        60_000,
    )
    .primary_crc(CrcType::Crc16)
    .block_crc(CrcType::None)
    .bundle_age(0)
    .payload(&b"A"[..])
    .build()
    .unwrap();
    let bytes = bundle.encode();
    let expected_prefix: &[u8] = &[
        0x9f, 0x89, 0x07, 0x00, 0x01, 0x82, 0x02, 0x82, 0x03, 0x04, 0x82, 0x02, 0x82, 0x01, 0x02, 0x82, 0x01,
        0x00, 0x82, 0x00, 0x05, 0x19, 0xea, 0x60, 0x42,
    ];
    assert_eq!(&bytes[..expected_prefix.len()], expected_prefix);
    let crc = CrcType::Crc16.compute(&[&bytes[1..expected_prefix.len()], &[0, 0]]) as u16;
    assert_eq!(&bytes[expected_prefix.len()..expected_prefix.len() + 2], crc.to_be_bytes());
    let rest = &bytes[expected_prefix.len() + 2..];
    assert_eq!(
        rest,
        [0x85, 0x07, 0x02, 0x00, 0x00, 0x41, 0x00, 0x85, 0x01, 0x01, 0x00, 0x00, 0x41, b'A', 0xff]
    );
}

#[test]
fn rejects_a_bundle_that_is_not_an_indefinite_array() {
    assert_eq!(
        parse(&Bytes::from_static(&[0x82, 0x00])),
        Err(BundleError::NotIndefiniteArray { found: 0x82 })
    );
    assert!(matches!(parse(&Bytes::new()), Err(BundleError::Cbor { problem: CborProblem::Truncated, .. })));
}

#[test]
fn rejects_other_versions() {
    let input = patched(|p| p[1] = 0x06);
    assert_eq!(parse(&input), Err(BundleError::UnsupportedVersion { version: 6 }));
}

#[test]
fn rejects_a_primary_block_of_the_wrong_length() {
    let input = patched(|p| p[0] = 0x8a);
    assert_eq!(parse(&input), Err(BundleError::PrimaryBlockLength { found: 10, expected: 9 }));
    // Fragment flag set, but no fragment fields.
    let input = patched(|p| p[2] = 0x01);
    assert_eq!(parse(&input), Err(BundleError::PrimaryBlockLength { found: 9, expected: 11 }));
}

#[test]
fn rejects_an_unknown_crc_type() {
    let input = patched(|p| p[3] = 0x03);
    assert_eq!(parse(&input), Err(BundleError::InvalidCrcType { code: 3 }));
}

#[test]
fn rejects_a_corrupt_primary_block() {
    let mut bytes = raw(&primary(), &[payload()]).to_vec();
    let lifetime_at = 1 + primary_bytes(&primary()).len() - 5 - 3; // the 0x19 0x03 0xe8 of lifetime 1000
    assert_eq!(bytes[lifetime_at], 0x19);
    bytes[lifetime_at + 2] ^= 0x01;
    assert!(matches!(parse(&bytes.into()), Err(BundleError::CrcMismatch { block: BlockRef::Primary, .. })));
}

#[test]
fn rejects_a_corrupt_canonical_block() {
    let mut bytes = raw(&primary(), &[payload()]).to_vec();
    let n = bytes.len();
    bytes[n - 5] ^= 0x20; // inside "data"
    assert!(matches!(parse(&bytes.into()), Err(BundleError::CrcMismatch { block: BlockRef::Number(1), .. })));
}

#[test]
fn rejects_a_crc_of_the_wrong_length() {
    let mut p = primary();
    p.crc_type = CrcType::Crc16;
    let mut bytes = raw(&p, &[payload()]).to_vec();
    let at = 1 + primary_bytes(&p).len() - 3;
    assert_eq!(bytes[at], 0x42);
    bytes[at] = 0x41;
    bytes.remove(at + 1);
    assert_eq!(
        parse(&bytes.into()),
        Err(BundleError::CrcLength { block: BlockRef::Primary, found_len: 1, expected_len: 2 })
    );
}

#[test]
fn primary_block_without_crc_needs_a_bib_or_the_lenient_switch() {
    let mut p = primary();
    p.crc_type = CrcType::None;
    let input = raw(&p, &[payload()]);
    assert_eq!(parse(&input), Err(BundleError::MissingPrimaryCrc));
    let lenient = Bundle::parse(&input, &ParseOptions::lenient()).unwrap();
    assert!(lenient.primary_crc_missing());
    // A BIB whose security targets include block 0 makes it legal (RFC 9171 §4.3.1).
    let bib = block(block_type::BLOCK_INTEGRITY, 2, &[0x81, 0x00, 0x01, 0x00]);
    let with_bib = parse(&raw(&p, &[bib, payload()])).unwrap();
    assert!(!with_bib.primary_crc_missing());
    // One that targets only the payload does not.
    let bib = block(block_type::BLOCK_INTEGRITY, 2, &[0x81, 0x01, 0x01, 0x00]);
    assert_eq!(parse(&raw(&p, &[bib, payload()])), Err(BundleError::MissingPrimaryCrc));
}

#[test]
fn admin_records_must_not_request_reports() {
    let mut p = primary();
    p.flags = BundleFlags(BundleFlags::ADMIN_RECORD | BundleFlags::REPORT_DELIVERY);
    assert_eq!(
        parse(&raw(&p, &[payload()])),
        Err(BundleError::AdminRecordRequestsReports { flags: 0x02_0002 })
    );
}

#[test]
fn anonymous_bundles_must_not_be_fragmentable_or_request_reports() {
    let mut p = primary();
    p.source = Eid::Null;
    assert_eq!(parse(&raw(&p, &[payload()])), Err(BundleError::AnonymousSourceFragmentable));
    p.flags = BundleFlags(BundleFlags::MUST_NOT_FRAGMENT | BundleFlags::REPORT_RECEPTION);
    assert_eq!(
        parse(&raw(&p, &[payload()])),
        Err(BundleError::AnonymousSourceRequestsReports { flags: 0x4004 })
    );
    p.flags = BundleFlags(BundleFlags::MUST_NOT_FRAGMENT);
    assert!(parse(&raw(&p, &[payload()])).is_ok());
}

#[test]
fn blocks_of_admin_records_must_not_ask_for_reports() {
    let mut p = primary();
    p.flags = BundleFlags(BundleFlags::ADMIN_RECORD);
    let mut b = payload();
    b.flags = BlockFlags(BlockFlags::REPORT_IF_UNPROCESSABLE);
    assert_eq!(parse(&raw(&p, &[b])), Err(BundleError::BlockRequestsReport { block: BlockRef::Number(1) }));
}

#[test]
fn rejects_bad_eids_naming_the_field() {
    let input = patched(|p| {
        // destination [2, [2, 1]] -> scheme 3
        assert_eq!(&p[4..6], &[0x82, 0x02]);
        p[5] = 0x03;
    });
    assert_eq!(
        parse(&input),
        Err(BundleError::Eid { field: "the destination EID", source: EidError::UnknownSchemeCode(3) })
    );
}

#[test]
fn eid_length_limit_applies() {
    let mut p = primary();
    p.destination = Eid::dtn("a-rather-long-node-name", "service").unwrap();
    let input = raw(&p, &[payload()]);
    let options = ParseOptions { max_eid_length: 16, ..ParseOptions::default() };
    assert!(matches!(
        Bundle::parse(&input, &options),
        Err(BundleError::Eid { field: "the destination EID", source: EidError::TooLong { limit: 16, .. } })
    ));
}

#[test]
fn fragments_must_lie_within_the_adu() {
    let mut p = primary();
    p.flags = BundleFlags(BundleFlags::IS_FRAGMENT);
    p.fragment = Some(FragmentInfo { offset: 10, total_adu_length: 12 });
    assert_eq!(
        parse(&raw(&p, &[payload()])),
        Err(BundleError::FragmentOutOfRange { offset: 10, payload: 4, total: 12 })
    );
    p.fragment = Some(FragmentInfo { offset: 8, total_adu_length: 12 });
    let ok = parse(&raw(&p, &[payload()])).unwrap();
    assert_eq!(ok.id().fragment, Some(FragmentId { offset: 8, length: 4, adu_length: 12 }));
}

#[test]
fn block_numbers_follow_section_4_1() {
    let p = primary();
    assert_eq!(
        parse(&raw(&p, &[block(200, 0, b""), payload()])),
        Err(BundleError::BlockNumberZero { block_type_name: "private/experimental".into(), position: 0 })
    );
    assert_eq!(
        parse(&raw(&p, &[block(200, 2, b""), block(201, 2, b""), payload()])),
        Err(BundleError::DuplicateBlockNumber { number: 2 })
    );
    assert_eq!(
        parse(&raw(&p, &[block(200, 1, b""), payload()])),
        Err(BundleError::BlockNumberOneNotPayload { block_type: 200 })
    );
    assert_eq!(
        parse(&raw(&p, &[block(block_type::PAYLOAD, 2, b"")])),
        Err(BundleError::PayloadBlockNumber { number: 2 })
    );
}

/// ION 4.1.3 numbers every extension block of its fragments 0 (`bei.c` `copyExtensionBlocks`).
/// Under `accept_duplicate_block_numbers` such a bundle is taken, and renumbered it is a bundle
/// RFC 9171 §4.1 allows, with its blocks' CRCs computed afresh.
#[test]
fn duplicate_and_zero_block_numbers_are_renumbered_when_accepted() {
    let p = primary();
    let lenient = ParseOptions { accept_duplicate_block_numbers: true, ..ParseOptions::default() };
    let ion = raw(
        &p,
        &[
            block(block_type::PREVIOUS_NODE, 0, &previous_node_data(&Eid::ipn(9, 0))),
            block(block_type::BUNDLE_AGE, 0, &[0x18, 0x64]),
            block(193, 0, b"\x01"),
            block(200, 5, b""),
            block(201, 5, b""),
            payload(),
        ],
    );
    assert!(matches!(parse(&ion), Err(BundleError::BlockNumberZero { .. })), "strict by default");
    let mut bundle = Bundle::parse(&ion, &lenient).expect("taken when accepted");
    assert!(bundle.block_numbers_clash());
    assert_eq!(bundle.renumber_blocks(), 4, "three zeros and the second 5");
    let numbers: Vec<u64> = bundle.blocks().iter().map(|b| b.number).collect();
    assert_eq!(numbers, [2, 3, 4, 5, 6, 1], "the lowest free numbers; the first 5 keeps its own");
    assert!(!bundle.block_numbers_clash());
    let renumbered = Bytes::from(bundle.encode());
    let strict = parse(&renumbered).expect("a valid bundle now, CRCs and all");
    assert_eq!(strict.payload(), bundle.payload());
    assert_eq!(strict.bundle_age(), Some(100));
    assert_eq!(strict.primary(), bundle.primary());
    // A security block names blocks by number: then nothing is renumbered, the bundle refused.
    let bib = raw(&p, &[block(block_type::BLOCK_INTEGRITY, 2, b"\x80"), block(200, 0, b""), payload()]);
    assert!(matches!(Bundle::parse(&bib, &lenient), Err(BundleError::BlockNumberZero { .. })));
    // Number 1 is still the payload's alone.
    assert_eq!(
        Bundle::parse(&raw(&p, &[block(200, 1, b""), payload()]), &lenient).err(),
        Some(BundleError::BlockNumberOneNotPayload { block_type: 200 })
    );
}

#[test]
fn exactly_one_payload_block_and_it_is_last() {
    let p = primary();
    assert_eq!(parse(&raw(&p, &[])), Err(BundleError::NoCanonicalBlocks));
    assert_eq!(
        parse(&raw(&p, &[block(200, 2, b"")])),
        Err(BundleError::MissingPayloadBlock { last_type: 200 })
    );
    assert_eq!(parse(&raw(&p, &[payload(), block(200, 2, b"")])), Err(BundleError::PayloadNotLast));
    assert_eq!(parse(&raw(&p, &[payload(), payload()])), Err(BundleError::PayloadNotLast));
}

#[test]
fn at_most_one_of_each_standard_extension_block() {
    let p = primary();
    let hop = hop_count_data(HopCount { limit: 5, count: 0 });
    assert_eq!(
        parse(&raw(&p, &[block(10, 2, &hop), block(10, 3, &hop), payload()])),
        Err(BundleError::DuplicateExtensionBlock { name: "hop count" })
    );
    let age = bundle_age_data(1);
    assert_eq!(
        parse(&raw(&p, &[block(7, 2, &age), block(7, 3, &age), payload()])),
        Err(BundleError::DuplicateExtensionBlock { name: "bundle age" })
    );
    let prev = previous_node_data(&Eid::ipn(3, 0));
    assert_eq!(
        parse(&raw(&p, &[block(6, 2, &prev), block(6, 3, &prev), payload()])),
        Err(BundleError::DuplicateExtensionBlock { name: "previous node" })
    );
}

#[test]
fn creation_time_zero_needs_a_bundle_age_block() {
    let mut p = primary();
    p.creation.time = 0;
    assert_eq!(parse(&raw(&p, &[payload()])), Err(BundleError::MissingBundleAge));
    assert!(parse(&raw(&p, &[block(7, 2, &bundle_age_data(0)), payload()])).is_ok());
    let lenient = Bundle::parse(&raw(&p, &[payload()]), &ParseOptions::lenient()).unwrap();
    assert!(lenient.bundle_age_missing());
}

#[test]
fn malformed_extension_blocks_are_named() {
    let p = primary();
    assert_eq!(
        parse(&raw(&p, &[block(7, 2, b"\x61x"), payload()])),
        Err(BundleError::BadExtensionBlock {
            name: "bundle age",
            number: 2,
            problem: "expected an unsigned integer, found a text string".into(),
            section: "RFC 9171 §4.4.2",
        })
    );
    assert_eq!(
        parse(&raw(&p, &[block(7, 2, b"\x01\x02"), payload()])),
        Err(BundleError::BadExtensionBlock {
            name: "bundle age",
            number: 2,
            problem: "1 bytes after the value".into(),
            section: "RFC 9171 §4.4.2",
        })
    );
    assert!(matches!(
        parse(&raw(&p, &[block(6, 2, b"\x82\x09\x00"), payload()])),
        Err(BundleError::BadExtensionBlock { name: "previous node", number: 2, .. })
    ));
    assert_eq!(
        parse(&raw(&p, &[block(10, 2, &hop_count_data(HopCount { limit: 0, count: 0 })), payload()])),
        Err(BundleError::HopLimitOutOfRange { limit: 0 })
    );
    assert_eq!(
        parse(&raw(&p, &[block(10, 2, &hop_count_data(HopCount { limit: 256, count: 0 })), payload()])),
        Err(BundleError::HopLimitOutOfRange { limit: 256 })
    );
}

#[test]
fn canonical_block_length_must_match_crc_type() {
    let mut bytes = raw(&primary(), &[payload()]).to_vec();
    let at = 1 + primary_bytes(&primary()).len();
    assert_eq!(bytes[at], 0x86);
    bytes[at] = 0x85;
    assert_eq!(
        parse(&bytes.into()),
        Err(BundleError::CanonicalBlockLength { block: BlockRef::Number(1), found: 5, expected: 6 })
    );
}

#[test]
fn the_end_of_the_bundle_is_checked() {
    let good = raw(&primary(), &[payload()]);
    let cut = good.slice(..good.len() - 1);
    assert_eq!(parse(&cut), Err(BundleError::MissingBreak { offset: good.len() - 1 }));
    let mut extra = good.to_vec();
    extra.extend_from_slice(b"zz");
    assert_eq!(parse(&extra.into()), Err(BundleError::TrailingBytes { offset: good.len(), count: 2 }));
}

#[test]
fn limits_on_blocks_and_size() {
    let blocks: Vec<CanonicalBlock> =
        (2..10).map(|n| block(200, n, b"")).chain(std::iter::once(payload())).collect();
    let input = raw(&primary(), &blocks);
    let options = ParseOptions { max_blocks: 4, ..ParseOptions::default() };
    assert_eq!(Bundle::parse(&input, &options), Err(BundleError::TooManyBlocks { limit: 4 }));
    let options = ParseOptions { max_bundle_size: 20, ..ParseOptions::default() };
    assert_eq!(
        Bundle::parse(&input, &options),
        Err(BundleError::TooLarge { size: input.len() as u64, limit: 20 })
    );
}

#[test]
fn a_huge_announced_length_is_rejected_without_allocating() {
    // The payload announces 2^62 bytes; the input holds 4.
    let mut bytes = vec![0x9f];
    primary().encode(&mut bytes);
    bytes.extend_from_slice(&[0x86, 0x01, 0x01, 0x00, 0x01, 0x5b]);
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    bytes.extend_from_slice(b"data");
    let input = Bytes::from(bytes);
    assert!(matches!(
        parse(&input),
        Err(BundleError::Cbor { field: "the block-type-specific data", problem: CborProblem::Truncated, .. })
    ));
    assert_eq!(
        BundleHeader::parse(&input, &ParseOptions::default()),
        Err(BundleError::TooLarge { size: (1u64 << 62) + input.len() as u64 - 4 + 4, limit: 16 << 30 })
    );
}

#[test]
fn indefinite_length_blocks_are_accepted() {
    // RFC 9171 §4.1 does not prohibit indefinite-length items; the CRC covers the break.
    let mut p = primary_bytes(&primary());
    p[0] = 0x9f;
    let n = p.len();
    p.push(0xff);
    p[n - 4..n].fill(0);
    let crc = CrcType::Crc32c.compute(&[&p]);
    p[n - 4..n].copy_from_slice(&crc.to_be_bytes());
    let mut bytes = vec![0x9f];
    bytes.extend_from_slice(&p);
    payload().encode(&mut bytes);
    bytes.push(0xff);
    let parsed = parse(&bytes.into()).unwrap();
    assert_eq!(parsed.primary(), &primary());
}

#[test]
fn unknown_blocks_are_kept_byte_for_byte() {
    let data = b"\xa1\x01\x02 arbitrary";
    let mut b = block(150, 7, data);
    b.flags = BlockFlags(0x55);
    let input = raw(&primary(), &[b.clone(), payload()]);
    let parsed = parse(&input).unwrap();
    assert_eq!(parsed.block(7), Some(&b));
    assert_eq!(parsed.encode(), input.as_ref());
}

#[test]
fn header_parse_from_prefixes() {
    let bundle = builder().hop_limit(9).payload(vec![1u8; 1000]).build().unwrap();
    let encoded = Bytes::from(bundle.encode());
    let header_len = encoded.len() - 1000 - 6;
    for cut in 0..header_len {
        assert_eq!(
            BundleHeader::parse(&encoded.slice(..cut), &ParseOptions::default()),
            Ok(None),
            "cut {cut}"
        );
    }
    for cut in [header_len, header_len + 1, encoded.len()] {
        let header = BundleHeader::parse(&encoded.slice(..cut), &ParseOptions::default()).unwrap().unwrap();
        assert_eq!(&header.primary, bundle.primary());
        assert_eq!(header.extension_blocks, bundle.extension_blocks());
        assert_eq!(header.payload.data_offset, header_len);
        assert_eq!(header.payload.data_length, 1000);
        assert_eq!(header.payload.bundle_length, encoded.len() as u64);
        assert_eq!(&encoded[header.payload.data_offset..][..1000], bundle.payload().as_ref());
    }
    let small = ParseOptions { max_header_size: 10, ..ParseOptions::default() };
    assert_eq!(
        BundleHeader::parse(&encoded.slice(..20), &small),
        Err(BundleError::HeaderTooLarge { limit: 10 })
    );
    // A rule violation is reported from the prefix alone.
    let mut p = primary();
    p.creation.time = 0;
    let bad = raw(&p, &[payload()]);
    assert_eq!(BundleHeader::parse(&bad, &ParseOptions::default()), Err(BundleError::MissingBundleAge));
}

#[test]
fn builder_enforces_the_rules() {
    assert_eq!(builder().primary_crc(CrcType::None).build(), Err(BundleError::MissingPrimaryCrc));
    let anonymous = BundleBuilder::new(Eid::Null, dst(), CreationTimestamp { time: T0, sequence: 0 }, 1);
    assert_eq!(anonymous.clone().build(), Err(BundleError::AnonymousSourceFragmentable));
    assert!(anonymous.flags(BundleFlags(BundleFlags::MUST_NOT_FRAGMENT)).build().is_ok());
    let no_clock = BundleBuilder::new(src(), dst(), CreationTimestamp { time: 0, sequence: 0 }, 1);
    assert_eq!(no_clock.clone().build(), Err(BundleError::MissingBundleAge));
    assert!(no_clock.bundle_age(0).build().is_ok());
    assert_eq!(builder().hop_limit(0).build(), Err(BundleError::HopLimitOutOfRange { limit: 0 }));
    let fragment = builder().fragment(0, 3).build();
    assert_eq!(fragment, Err(BundleError::FragmentOutOfRange { offset: 0, payload: 5, total: 3 }));
}

#[test]
fn forwarding_edits_keep_the_bundle_valid() {
    let mut bundle = builder().hop_limit(3).build().unwrap();
    bundle.set_previous_node(&Eid::ipn(7, 0));
    bundle.set_bundle_age(1234);
    bundle.set_hop_count(1);
    let parsed = parse(&Bytes::from(bundle.encode())).unwrap();
    assert_eq!(parsed.previous_node(), Some(Eid::ipn(7, 0)));
    assert_eq!(parsed.bundle_age(), Some(1234));
    assert_eq!(parsed.hop_count(), Some(HopCount { limit: 3, count: 1 }));
    assert_eq!(parsed.payload_block().number, 1);
    bundle.set_previous_node(&Eid::ipn(8, 0));
    assert_eq!(bundle.extension_blocks().len(), 3);
}

#[test]
fn bundle_id_identifies_source_time_and_fragment() {
    let bundle = builder().build().unwrap();
    assert_eq!(bundle.id().to_string(), format!("ipn:1.1/{T0}/1"));
}

#[test]
fn errors_say_what_and_where() {
    let input = patched(|p| p[1] = 0x06);
    assert_eq!(
        parse(&input).unwrap_err().to_string(),
        "bundle protocol version 6 is not 7 (RFC 9171 §4.3.1)"
    );
    let e = parse(&Bytes::from_static(&[0x9f, 0x89, 0x07, 0x40])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed CBOR in the bundle processing control flags at byte 3: expected an unsigned integer, found a byte string"
    );
}

#[test]
fn a_crc_field_with_a_long_head_is_refused() {
    // The payload CRC-16 field 0x42 XX XX rewritten as 0x58 0x02 XX XX (non-deterministic CBOR).
    let good = raw(&primary(), &[payload()]).to_vec();
    let n = good.len();
    let mut bad = good[..n - 4].to_vec();
    bad.extend_from_slice(&[0x58, 0x02]);
    bad.extend_from_slice(&good[n - 3..]);
    let err = parse(&bad.clone().into()).unwrap_err();
    assert_eq!(
        err,
        BundleError::Cbor {
            field: "the CRC",
            offset: n - 4,
            problem: CborProblem::Unexpected {
                expected: "a byte string with a one-byte head",
                found: "a longer, non-deterministic head (RFC 9171 §4.1)",
            },
        }
    );
    // The streamed check says the same.
    let bytes = Bytes::from(bad);
    let header = BundleHeader::parse(&bytes, &ParseOptions::default()).unwrap().unwrap();
    let mut check = PayloadCheck::new(&header, &bytes);
    check.update(&bytes[header.payload.data_offset..]);
    assert_eq!(check.finish(), Err(err));
}

#[test]
fn streamed_check_reports_a_cut_payload() {
    let bytes = Bytes::from(builder().payload(vec![3u8; 100]).build().unwrap().encode());
    let header = BundleHeader::parse(&bytes, &ParseOptions::default()).unwrap().unwrap();
    let mut check = PayloadCheck::new(&header, &bytes);
    check.update(&bytes[header.payload.data_offset..header.payload.data_offset + 60]);
    let whole = parse(&bytes.slice(..header.payload.data_offset + 60)).unwrap_err();
    assert_eq!(check.finish(), Err(whole));
}

#[test]
fn a_bib_announcing_endless_targets_is_answered_at_once() {
    // Found by fuzzing: a BIB whose target array announces 2^64-1 items but holds none.
    let mut p = primary();
    p.crc_type = CrcType::None;
    let bib = block(block_type::BLOCK_INTEGRITY, 2, &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(parse(&raw(&p, &[bib, payload()])), Err(BundleError::MissingPrimaryCrc));
}

/// Whole-bundle parsing and header parsing plus the streamed check, side by side.
fn both_verdicts(bytes: &[u8]) -> (Result<(), BundleError>, Result<(), BundleError>) {
    let input = Bytes::copy_from_slice(bytes);
    let whole = parse(&input).map(drop);
    let header = BundleHeader::parse(&input, &ParseOptions::default()).unwrap().unwrap();
    let mut check = PayloadCheck::new(&header, bytes);
    check.update(&bytes[header.payload.data_offset..]);
    (whole, check.finish())
}

#[test]
fn indefinite_payload_blocks_stream_with_their_break_under_the_crc() {
    // Found by fuzzing: an indefinite-length payload block's CRC covers its break.
    let mut block = vec![0x9f, 0x01, 0x01, 0x00, 0x01, 0x43, b'a', b'b', b'c', 0x42, 0, 0, 0xff];
    let crc = CrcType::Crc16.compute(&[&block]) as u16;
    block[10..12].copy_from_slice(&crc.to_be_bytes());
    let mut bytes = vec![0x9f];
    primary().encode(&mut bytes);
    bytes.extend_from_slice(&block);
    bytes.push(0xff);
    assert_eq!(both_verdicts(&bytes), (Ok(()), Ok(())));
    // Another item where the block's break belongs: both say the block has an item too many.
    let mut cut = bytes.clone();
    let at = cut.len() - 2;
    cut[at] = 0x00;
    let expected =
        Err(BundleError::CanonicalBlockLength { block: BlockRef::Number(1), found: 7, expected: 6 });
    assert_eq!(both_verdicts(&cut), (expected.clone(), expected));
    // A wrong CRC gives the same computed value both ways.
    let mut bad = bytes.clone();
    let at = bad.len() - 4;
    bad[at] ^= 0xff;
    let (whole, streamed) = both_verdicts(&bad);
    assert!(matches!(whole, Err(BundleError::CrcMismatch { .. })));
    assert_eq!(whole, streamed);
}

#[test]
fn a_streamed_payload_must_have_its_declared_length() {
    let builder =
        BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), CreationTimestamp { time: 1, sequence: 0 }, 1000);
    let (_, mut encoder) = builder.clone().build_streamed(4).unwrap();
    encoder.update(b"abc").unwrap();
    assert_eq!(encoder.update(b"de"), Err(PayloadLengthMismatch { declared: 4, received: 5 }));
    assert_eq!(encoder.remaining(), 1, "refused bytes are not counted");
    assert_eq!(encoder.finish(), Err(PayloadLengthMismatch { declared: 4, received: 3 }));
    // The builder's rules hold for streamed bundles too.
    assert_eq!(
        builder.fragment(10, 12).build_streamed(4).err(),
        Some(BundleError::FragmentOutOfRange { offset: 10, payload: 4, total: 12 })
    );
    assert_eq!(
        PayloadLengthMismatch { declared: 4, received: 3 }.to_string(),
        "the payload was declared as 4 bytes but 3 came"
    );
}
