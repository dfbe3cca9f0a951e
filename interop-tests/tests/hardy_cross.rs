//! Cross-decoding with `hardy-bpv7` 0.6, Hardy's codec: bundles we make decode in Hardy with the
//! same fields (and Hardy finds them canonical), and bundles Hardy makes decode in ours with the
//! same fields (1,000 each way).

use std::borrow::Cow;

use bpa::bundle::BlockFlags;
use bpa::bundle::{Bundle, ParseOptions};
use bpa::testing::{BundleShape, arb_bundle_with};
use bytes::Bytes;
use hardy_bpv7::bpsec::key::KeySet;
use interop_tests::{BlockFields, BundleFields};
use proptest::prelude::*;

fn hardy_fields(b: &hardy_bpv7::bundle::Bundle, data: &[u8]) -> BundleFields {
    let mut blocks: Vec<BlockFields> = b
        .blocks
        .iter()
        .filter(|(number, _)| **number != 0)
        .map(|(number, block)| BlockFields {
            number: *number,
            block_type: u64::from(block.block_type),
            flags: u64::from(&block.flags),
            crc_type: u64::from(block.crc_type),
            // Hardy's data range is relative to the block's extent.
            data: data[block.extent.clone()][block.data.clone()].to_vec(),
        })
        .collect();
    blocks.sort();
    let (time, sequence) = b.id.timestamp.clone().into_parts();
    BundleFields {
        destination: b.destination.to_string(),
        source: b.id.source.to_string(),
        report_to: b.report_to.to_string(),
        creation_time: time.map_or(0, |t| t.millisecs()),
        sequence,
        lifetime_ms: b.lifetime.as_millis() as u64,
        flags: u64::from(&b.flags),
        primary_crc_type: u64::from(b.crc_type),
        fragment: b.id.fragment_info.as_ref().map(|f| (f.offset, f.total_adu_length)),
        blocks,
    }
}

fn hardy_parse(data: &[u8]) -> hardy_bpv7::bundle::ParsedBundle {
    hardy_bpv7::bundle::ParsedBundle::parse(data, |_, _| Box::new(KeySet::EMPTY))
        .expect("Hardy decodes our bundle")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Hardy, as a bundle processor, refuses bundles with an unrecognised block flagged "delete
    /// bundle if block can't be processed" (RFC 9171 §4.2.4); leave that flag out here.
    #[test]
    fn bundles_we_make_decode_in_hardy(bundle in arb_bundle_with(BundleShape {
        unknown_block_flags: 0x7f & !BlockFlags::DELETE_BUNDLE_IF_UNPROCESSABLE,
        ..BundleShape::default()
    })) {
        let encoded = bundle.encode();
        let parsed = hardy_parse(&encoded);
        prop_assert!(!parsed.non_canonical, "Hardy finds our encoding non-canonical");
        prop_assert_eq!(hardy_fields(&parsed.bundle, &encoded), BundleFields::of(&bundle));
        prop_assert_eq!(parsed.bundle.hop_count.map(|h| (h.limit, h.count)), bundle.hop_count().map(|h| (h.limit, h.count)));
        prop_assert_eq!(parsed.bundle.age.map(|a| a.as_millis() as u64), bundle.bundle_age());
        prop_assert_eq!(parsed.bundle.previous_node.map(|e| e.to_string()), bundle.previous_node().map(|e| e.to_string()));
    }

    #[test]
    fn bundles_hardy_makes_decode_in_ours(
        source in (1u32.., 0u32..1000),
        destination in prop_oneof![
            (1u32.., 0u32..1000).prop_map(|(n, s)| format!("ipn:{n}.{s}")),
            (1u32..1000, 1u32.., 0u32..1000).prop_map(|(a, n, s)| format!("ipn:{a}.{n}.{s}")),
            "[a-z0-9]{1,12}/[a-z0-9]{0,12}".prop_map(|s| format!("dtn://{s}")),
        ],
        time in 1u64..(1 << 45),
        sequence in any::<u64>(),
        lifetime in 1u64..(1 << 40),
        flag_bits in proptest::sample::select(vec![0u64, 0x4, 0x20, 0x40, 0x4000, 0x1_0000, 0x2_0000, 0x4_0000, 0x6_4064]),
        crc in proptest::sample::select(vec![hardy_bpv7::crc::CrcType::CRC16_X25, hardy_bpv7::crc::CrcType::CRC32_CASTAGNOLI]),
        hop_limit in proptest::option::of(1u64..=255),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let src: hardy_bpv7::eid::Eid = format!("ipn:{}.{}", source.0, source.1).parse().expect("Hardy EID");
        let dst: hardy_bpv7::eid::Eid = destination.parse().expect("Hardy EID");
        let mut builder = hardy_bpv7::builder::Builder::new(src, dst)
            .with_flags(hardy_bpv7::bundle::Flags::from(flag_bits))
            .with_crc_type(crc)
            .with_lifetime(std::time::Duration::from_millis(lifetime));
        if let Some(limit) = hop_limit {
            builder = builder.with_hop_count(&hardy_bpv7::hop_info::HopInfo { limit, count: 0 });
        }
        let timestamp = hardy_bpv7::creation_timestamp::CreationTimestamp::from_parts(
            Some(hardy_bpv7::dtn_time::DtnTime::new(time)),
            sequence,
        );
        let (theirs, data) = builder.with_payload(Cow::Borrowed(&payload)).build(timestamp).expect("Hardy builds");
        let encoded = Bytes::from(data.to_vec());
        let ours = Bundle::parse(&encoded, &ParseOptions::default()).expect("we decode Hardy's bundle");
        prop_assert_eq!(BundleFields::of(&ours), hardy_fields(&theirs, &encoded));
        prop_assert_eq!(ours.payload().as_ref(), payload.as_slice());
        prop_assert_eq!(ours.encode(), encoded.to_vec());
    }
}
