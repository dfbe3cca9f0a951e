//! Cross-decoding with `bp7` 0.12, the codec of dtn7-rs: bundles we make decode in bp7 with the
//! same fields, and bundles bp7 makes decode in ours with the same fields (1,000 each way).

use bp7::flags::BlockControlFlags;
use bpa::bundle::{Bundle, ParseOptions, bundle_age_data, hop_count_data, previous_node_data};
use bpa::testing::{BundleShape, arb_bundle_with};
use bytes::Bytes;
use interop_tests::{BlockFields, BundleFields};
use proptest::prelude::*;

/// bp7 knows only 2-element ipn EIDs (so no allocators) and hop counts that fit in a byte.
fn bp7_shape() -> BundleShape {
    BundleShape { allocators: false, ..BundleShape::default() }
}

/// The fields as bp7 decoded them; known extension blocks are re-encoded by our encoders, which
/// must give back the bytes on the wire.
fn bp7_fields(b: &bp7::Bundle) -> BundleFields {
    let p = &b.primary;
    let mut blocks: Vec<BlockFields> = b
        .canonicals
        .iter()
        .map(|c| {
            let data = match c.data() {
                bp7::canonical::CanonicalData::Data(d) | bp7::canonical::CanonicalData::Unknown(d) => {
                    d.clone()
                }
                bp7::canonical::CanonicalData::HopCount(limit, count) => {
                    hop_count_data(bpa::bundle::HopCount {
                        limit: u64::from(*limit),
                        count: u64::from(*count),
                    })
                    .to_vec()
                }
                bp7::canonical::CanonicalData::BundleAge(age) => bundle_age_data(*age).to_vec(),
                bp7::canonical::CanonicalData::PreviousNode(eid) => {
                    previous_node_data(&eid.to_string().parse().expect("bp7 EID parses in ours")).to_vec()
                }
                bp7::canonical::CanonicalData::DecodingError => {
                    panic!("bp7 could not decode block {}", c.block_number)
                }
            };
            BlockFields {
                number: c.block_number,
                block_type: c.block_type,
                flags: u64::from(c.block_control_flags),
                crc_type: u64::from(c.crc.to_code()),
                data,
            }
        })
        .collect();
    blocks.sort();
    BundleFields {
        destination: p.destination.to_string(),
        source: p.source.to_string(),
        report_to: p.report_to.to_string(),
        creation_time: p.creation_timestamp.dtntime(),
        sequence: p.creation_timestamp.seqno(),
        lifetime_ms: p.lifetime.as_millis() as u64,
        flags: p.bundle_control_flags,
        primary_crc_type: u64::from(p.crc.to_code()),
        fragment: p.has_fragmentation().then_some((p.fragmentation_offset, p.total_data_length)),
        blocks,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn bundles_we_make_decode_in_bp7(bundle in arb_bundle_with(bp7_shape())) {
        let encoded = bundle.encode();
        let mut theirs = bp7::Bundle::try_from(encoded.as_slice()).expect("bp7 decodes our bundle");
        prop_assert!(theirs.crc_valid(), "bp7 finds a CRC mismatch");
        prop_assert_eq!(bp7_fields(&theirs), BundleFields::of(&bundle));
        prop_assert_eq!(theirs.payload().map(|p| p.as_slice()), Some(bundle.payload().as_ref()));
    }

    #[test]
    fn bundles_bp7_makes_decode_in_ours(
        source in (1u64..u32::MAX as u64, 0u64..1000),
        destination in prop_oneof![
            (1u64..u32::MAX as u64, 0u64..1000).prop_map(|(n, s)| format!("ipn:{n}.{s}")),
            "[a-z0-9]{1,12}/[a-z0-9]{0,12}".prop_map(|s| format!("dtn://{s}")),
        ],
        time in 1u64..(1 << 45),
        sequence in any::<u64>(),
        lifetime in 1u64..(1 << 40),
        flag_bits in proptest::sample::select(vec![0u64, 0x4, 0x20, 0x40, 0x4000, 0x1_0000, 0x2_0000, 0x4_0000, 0x6_4064]),
        crc in proptest::sample::select(vec![bp7::crc::CRC_16, bp7::crc::CRC_32]),
        hop_limit in proptest::option::of(1u8..=255),
        age in proptest::option::of(0u64..(1 << 40)),
        previous in proptest::option::of(1u64..1000),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let src = bp7::EndpointID::with_ipn(source.0, source.1).expect("ipn EID");
        let dst: bp7::EndpointID = destination.as_str().try_into().expect("bp7 EID");
        let primary = bp7::primary::PrimaryBlockBuilder::default()
            .destination(dst)
            .source(src.clone())
            .report_to(src)
            .bundle_control_flags(flag_bits)
            .creation_timestamp(bp7::CreationTimestamp::with_time_and_seq(time, sequence))
            .lifetime(std::time::Duration::from_millis(lifetime))
            .build()
            .expect("bp7 primary block");
        let mut canonicals = vec![bp7::canonical::new_payload_block(BlockControlFlags::empty(), payload.clone())];
        let mut number = 2;
        if let Some(limit) = hop_limit {
            canonicals.push(bp7::canonical::new_hop_count_block(number, BlockControlFlags::empty(), limit));
            number += 1;
        }
        if let Some(age) = age {
            canonicals.push(bp7::canonical::new_bundle_age_block(number, BlockControlFlags::empty(), age));
            number += 1;
        }
        if let Some(node) = previous {
            let eid = bp7::EndpointID::with_ipn(node, 0).expect("ipn EID");
            canonicals.push(bp7::canonical::new_previous_node_block(number, BlockControlFlags::empty(), eid));
        }
        let mut theirs = bp7::Bundle::new(primary, canonicals);
        // As dtn7-rs does before sending: blocks by descending number, so the payload (1) is last.
        theirs.sort_canonicals();
        theirs.set_crc(crc);
        theirs.calculate_crc();
        let encoded = Bytes::from(theirs.to_cbor());
        let ours = Bundle::parse(&encoded, &ParseOptions::default()).expect("we decode bp7's bundle");
        prop_assert_eq!(BundleFields::of(&ours), bp7_fields(&theirs));
        prop_assert_eq!(ours.payload().as_ref(), payload.as_slice());
        // Byte-identical re-encoding: bp7 writes canonical CBOR, as we do.
        prop_assert_eq!(ours.encode(), encoded.to_vec());
    }
}

#[test]
fn a_bp7_bundle_without_primary_crc_needs_the_lenient_switch() {
    let src = bp7::EndpointID::with_ipn(1, 1).expect("ipn EID");
    let dst = bp7::EndpointID::with_ipn(2, 1).expect("ipn EID");
    let mut theirs = bp7::bundle::new_std_payload_bundle(src, dst, b"abc".to_vec());
    theirs.set_crc(bp7::crc::CRC_NO);
    let encoded = Bytes::from(theirs.to_cbor());
    assert_eq!(
        Bundle::parse(&encoded, &ParseOptions::default()),
        Err(bpa::bundle::BundleError::MissingPrimaryCrc)
    );
    let ours = Bundle::parse(&encoded, &ParseOptions::lenient()).expect("lenient parse");
    assert!(ours.primary_crc_missing());
    assert_eq!(BundleFields::of(&ours), bp7_fields(&theirs));
}
