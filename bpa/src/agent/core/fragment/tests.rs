use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::bundle::{BundleBuilder, ParseOptions};
use crate::testing::arb_bundle;

fn sample(payload_len: usize) -> Bundle {
    BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), CreationTimestamp { time: 5_000, sequence: 9 }, 60_000)
        .hop_limit(8)
        .extension(
            200,
            BlockFlags(BlockFlags::REPLICATE_IN_EVERY_FRAGMENT),
            Bytes::from_static(b"everywhere"),
        )
        .extension(201, BlockFlags(0), Bytes::from_static(b"first only"))
        .payload((0..payload_len).map(|i| i as u8).collect::<Vec<u8>>())
        .build()
        .unwrap()
}

#[test]
fn fragments_fit_carry_the_right_blocks_and_reassemble() {
    let original = sample(1000);
    let fragments = fragment(&original, 300).unwrap();
    assert!(fragments.len() >= 4, "{} fragments", fragments.len());
    let mut offset = 0;
    for (i, f) in fragments.iter().enumerate() {
        let encoded = f.encode();
        assert!(encoded.len() <= 300, "fragment {i} is {} bytes", encoded.len());
        let parsed = Bundle::parse(&Bytes::from(encoded), &ParseOptions::default()).unwrap();
        let info = parsed.primary().fragment.unwrap();
        assert_eq!((info.offset, info.total_adu_length), (offset, 1000));
        assert!(parsed.primary().flags.is_fragment());
        let types: Vec<u64> = parsed.extension_blocks().iter().map(|b| b.block_type).collect();
        assert_eq!(types, if i == 0 { vec![10, 200, 201] } else { vec![10, 200] });
        offset += parsed.payload().len() as u64;
    }
    assert_eq!(offset, 1000);
    let mut r = Reassembly::new(&fragments[2]).unwrap();
    for f in fragments.iter().rev() {
        r.add(f).unwrap();
    }
    assert!(r.is_complete());
    assert_eq!(r.finish().unwrap(), original);
}

#[test]
fn bundles_that_fit_or_must_not_be_fragmented() {
    let small = sample(10);
    assert_eq!(fragment(&small, 10_000).unwrap(), vec![small.clone()]);
    let fixed =
        BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), CreationTimestamp { time: 1, sequence: 0 }, 1)
            .flags(BundleFlags(BundleFlags::MUST_NOT_FRAGMENT))
            .payload(vec![0u8; 500])
            .build()
            .unwrap();
    assert_eq!(fragment(&fixed, 100), Err(FragmentError::MustNotFragment));
    let err = fragment(&sample(1000), 60).unwrap_err();
    assert!(matches!(err, FragmentError::TooSmall { max_size: 60, overhead } if overhead > 60), "{err:?}");
}

#[test]
fn reassembly_refuses_what_does_not_belong() {
    let fragments = fragment(&sample(1000), 300).unwrap();
    let mut r = Reassembly::new(&fragments[0]).unwrap();
    assert_eq!(Reassembly::new(&sample(10)).unwrap_err(), ReassemblyError::NotAFragment);
    let other = fragment(
        &BundleBuilder::new(
            Eid::ipn(1, 1),
            Eid::ipn(2, 1),
            CreationTimestamp { time: 5_000, sequence: 10 },
            1,
        )
        .payload(vec![1u8; 1000])
        .build()
        .unwrap(),
        300,
    )
    .unwrap();
    assert!(matches!(r.add(&other[1]), Err(ReassemblyError::OtherAdu { .. })));
    assert_eq!(r.add(&fragments[0]).unwrap(), 0, "a duplicate brings nothing");
    let missing = r.clone().finish().unwrap_err();
    assert_eq!(
        missing,
        ReassemblyError::Incomplete { covered: fragments[0].payload().len() as u64, total: 1000 }
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Fragment at one size, re-fragment some fragments at another, shuffle and duplicate:
    /// reassembly gives back the original bundle.
    #[test]
    fn any_fragmentation_reassembles(
        original in arb_bundle().prop_filter("fragmentable", |b| {
            !b.primary().flags.must_not_fragment() && b.primary().fragment.is_none() && b.payload().len() >= 2
        }),
        shrink in 1usize..200,
        second in 0usize..150,
        order in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let size = original.encoded_len();
        let max = size.saturating_sub(shrink.min(original.payload().len() - 1));
        let fragments = match fragment(&original, max) {
            Ok(f) => f,
            Err(FragmentError::TooSmall { overhead, .. }) => {
                prop_assert!(overhead >= max);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        for f in &fragments {
            prop_assert!(f.encoded_len() <= max);
            Bundle::parse(&Bytes::from(f.encode()), &ParseOptions::default()).unwrap();
        }
        // Re-fragment the first one again, smaller, if it can be.
        let mut pieces = fragments.clone();
        if let Ok(sub) = fragment(&fragments[0], fragments[0].encoded_len().saturating_sub(second)) {
            pieces.extend(sub);
        }
        pieces.push(fragments[order.index(fragments.len())].clone());
        // A deterministic shuffle.
        let mut state = seed | 1;
        for i in (1..pieces.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            pieces.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut r = Reassembly::new(&pieces[0]).unwrap();
        for p in &pieces[1..] {
            r.add(p).unwrap();
        }
        prop_assert!(r.is_complete());
        prop_assert_eq!(r.finish().unwrap(), original);
    }
}
