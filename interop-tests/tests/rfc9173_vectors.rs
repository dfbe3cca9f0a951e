//! The four final bundles of RFC 9173 Appendix A decode, with their BIB and BCB blocks listed
//! (the security blocks stay opaque until BPSec lands).
//!
//! The examples carry no primary-block CRC and, except A.3, have creation time 0 without a Bundle
//! Age block, which RFC 9171 §4.4.2 requires: strict parsing says exactly that, the lenient
//! switch accepts them and says so.

use bpa::bundle::{Bundle, BundleError, CanonicalBlock, Eid, ParseOptions, block_type};
use bytes::Bytes;
use interop_tests::read_hex_vector;

fn load(name: &str) -> Bytes {
    Bytes::from(read_hex_vector(name))
}

/// `(number, type)` of every canonical block, in wire order.
fn layout(bundle: &Bundle) -> Vec<(u64, u64)> {
    bundle.blocks().iter().map(|b: &CanonicalBlock| (b.number, b.block_type)).collect()
}

const PAYLOAD: &[u8] = b"Ready to generate a 32-byte payload";

fn check_common(bundle: &Bundle, input: &Bytes) {
    let p = bundle.primary();
    assert_eq!(p.destination, Eid::ipn(1, 2));
    assert_eq!(p.source, Eid::ipn(2, 1));
    assert_eq!(p.report_to, Eid::ipn(2, 1));
    assert_eq!((p.creation.time, p.creation.sequence), (0, 40));
    assert_eq!(p.lifetime, 1_000_000);
    assert!(bundle.primary_crc_missing() || bundle.blocks().iter().any(|b| b.bib_targets(0)));
    // Whatever we do not change, we forward byte for byte.
    assert_eq!(bundle.encode(), input.as_ref());
}

#[test]
fn a1_simple_integrity() {
    let input = load("rfc9173-a1.hex");
    assert_eq!(Bundle::parse(&input, &ParseOptions::default()), Err(BundleError::MissingBundleAge));
    let bundle = Bundle::parse(&input, &ParseOptions::lenient()).expect("A.1 decodes leniently");
    check_common(&bundle, &input);
    assert!(bundle.primary_crc_missing() && bundle.bundle_age_missing());
    assert_eq!(layout(&bundle), [(2, block_type::BLOCK_INTEGRITY), (1, block_type::PAYLOAD)]);
    assert!(bundle.block(2).expect("BIB").bib_targets(1));
    assert_eq!(bundle.payload().as_ref(), PAYLOAD);
}

#[test]
fn a2_simple_confidentiality() {
    let input = load("rfc9173-a2.hex");
    let bundle = Bundle::parse(&input, &ParseOptions::lenient()).expect("A.2 decodes leniently");
    check_common(&bundle, &input);
    assert_eq!(layout(&bundle), [(2, block_type::BLOCK_CONFIDENTIALITY), (1, block_type::PAYLOAD)]);
    // The payload is ciphertext: same length as the plaintext.
    assert_eq!(bundle.payload().len(), PAYLOAD.len());
    assert_ne!(bundle.payload().as_ref(), PAYLOAD);
}

#[test]
fn a3_security_blocks_from_multiple_sources() {
    let input = load("rfc9173-a3.hex");
    // A BIB targets the primary block, so its missing CRC is allowed, and a Bundle Age block
    // is present: this one is valid without leniency.
    let bundle = Bundle::parse(&input, &ParseOptions::default()).expect("A.3 decodes strictly");
    check_common(&bundle, &input);
    assert!(!bundle.primary_crc_missing() && !bundle.bundle_age_missing());
    assert_eq!(
        layout(&bundle),
        [
            (3, block_type::BLOCK_INTEGRITY),
            (4, block_type::BLOCK_CONFIDENTIALITY),
            (2, block_type::BUNDLE_AGE),
            (1, block_type::PAYLOAD)
        ]
    );
    let bib = bundle.block(3).expect("BIB");
    assert!(bib.bib_targets(0) && bib.bib_targets(2) && !bib.bib_targets(1));
    assert_eq!(bundle.bundle_age(), Some(300));
}

#[test]
fn a4_security_blocks_with_full_scope() {
    let input = load("rfc9173-a4.hex");
    let bundle = Bundle::parse(&input, &ParseOptions::lenient()).expect("A.4 decodes leniently");
    check_common(&bundle, &input);
    assert_eq!(
        layout(&bundle),
        [(3, block_type::BLOCK_INTEGRITY), (2, block_type::BLOCK_CONFIDENTIALITY), (1, block_type::PAYLOAD)]
    );
    // The BIB is encrypted by the BCB, so its targets cannot be read.
    assert!(!bundle.block(3).expect("BIB").bib_targets(1));
}
