//! Property tests of the bundle codec: round trips of valid bundles, and no panic on any input.

use bpa::admin::{AdminRecord, AdminRecordTypes};
use bpa::bundle::{Bundle, BundleHeader, ParseOptions};
use bpa::testing::arb_bundle;
use bytes::Bytes;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// valid bundle → bytes → bundle is the identity, and re-encoding is byte-identical.
    #[test]
    fn valid_bundles_round_trip(bundle in arb_bundle()) {
        let encoded = Bytes::from(bundle.encode());
        let parsed = Bundle::parse(&encoded, &ParseOptions::default()).unwrap();
        prop_assert_eq!(&parsed, &bundle);
        prop_assert_eq!(parsed.encode(), encoded.to_vec());
        let header = BundleHeader::parse(&encoded, &ParseOptions::default()).unwrap().unwrap();
        prop_assert_eq!(&header.primary, bundle.primary());
        prop_assert_eq!(header.payload.bundle_length, encoded.len() as u64);
        let (head, body, tail) = bundle.encode_parts();
        prop_assert_eq!([head, body.to_vec(), tail].concat(), encoded.to_vec());
    }

    /// Any single corruption of a valid bundle is either still a valid bundle or an error.
    #[test]
    fn corrupted_bundles_never_panic(bundle in arb_bundle(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = bundle.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let corrupted = Bytes::from(bytes);
        let _ = Bundle::parse(&corrupted, &ParseOptions::default());
        let _ = Bundle::parse(&corrupted, &ParseOptions::lenient());
        let prefix = corrupted.slice(..cut.index(corrupted.len() + 1));
        let _ = BundleHeader::parse(&prefix, &ParseOptions::default());
        let _ = Bundle::parse(&prefix, &ParseOptions::default());
    }

    /// Arbitrary bytes never panic any decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let input = Bytes::from(bytes);
        let _ = Bundle::parse(&input, &ParseOptions::default());
        let _ = BundleHeader::parse(&input, &ParseOptions::default());
        let _ = AdminRecord::decode(&input, &AdminRecordTypes::default());
        let mut prefixed = vec![0x9f];
        prefixed.extend_from_slice(&input);
        let _ = Bundle::parse(&Bytes::from(prefixed), &ParseOptions::lenient());
    }

    /// A bundle that parses re-encodes to something that parses to the same bundle.
    #[test]
    fn whatever_parses_re_encodes_stably(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut input = vec![0x9f];
        input.extend_from_slice(&bytes);
        if let Ok(bundle) = Bundle::parse(&Bytes::from(input), &ParseOptions::lenient()) {
            let again = Bundle::parse(&Bytes::from(bundle.encode()), &ParseOptions::lenient()).unwrap();
            prop_assert_eq!(again, bundle);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Header parse + streamed payload check reaches the same verdict as parsing the whole bundle,
    /// whatever byte of the payload block or trailer is corrupted, and however the bytes are split.
    #[test]
    fn streamed_check_agrees_with_whole_parse(
        bundle in arb_bundle(),
        corrupt in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        split in any::<prop::sample::Index>(),
        extra in 0usize..3,
    ) {
        use bpa::bundle::PayloadCheck;
        let clean = bundle.encode();
        let header = BundleHeader::parse(&Bytes::from(clean.clone()), &ParseOptions::default()).unwrap().unwrap();
        let mut bytes = clean.clone();
        let region = header.payload.data_offset..bytes.len();
        let at = region.start + corrupt.index(region.len());
        bytes[at] = byte;
        bytes.extend(std::iter::repeat_n(0u8, extra));
        let whole = Bundle::parse(&Bytes::from(bytes.clone()), &ParseOptions::default()).map(drop);
        let mut check = PayloadCheck::new(&header, &clean);
        let rest = &bytes[header.payload.data_offset..];
        let (a, b) = rest.split_at(split.index(rest.len() + 1));
        check.update(a);
        check.update(b);
        prop_assert_eq!(check.finish(), whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// A bundle built for a streamed payload is byte for byte the bundle built in memory,
    /// however the payload is cut into chunks.
    #[test]
    fn streamed_build_equals_whole_build(
        source in bpa::testing::arb_node_eid(),
        destination in bpa::testing::arb_eid().prop_filter("not null", |e| !e.is_null()),
        time in 1u64..(1 << 45),
        sequence in any::<u64>(),
        crc16 in any::<bool>(),
        hop_limit in proptest::option::of(1u64..=255),
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        use bpa::bundle::{BundleBuilder, CrcType, CreationTimestamp};
        let crc = if crc16 { CrcType::Crc16 } else { CrcType::Crc32c };
        let mut builder = BundleBuilder::new(source, destination, CreationTimestamp { time, sequence }, 3_600_000)
            .block_crc(crc);
        if let Some(limit) = hop_limit {
            builder = builder.hop_limit(limit);
        }
        let whole = builder.clone().payload(payload.clone()).build().unwrap().encode();
        let (head, mut encoder) = builder.build_streamed(payload.len() as u64).unwrap();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(payload.len() + 1)).collect();
        points.push(0);
        points.push(payload.len());
        points.sort_unstable();
        let mut streamed = head;
        for pair in points.windows(2) {
            let chunk = &payload[pair[0]..pair[1]];
            encoder.update(chunk).unwrap();
            streamed.extend_from_slice(chunk);
        }
        prop_assert_eq!(encoder.remaining(), 0);
        streamed.extend_from_slice(&encoder.finish().unwrap());
        prop_assert_eq!(streamed, whole);
    }
}
