//! Every bundle decoder on arbitrary bytes: whole parse (strict and lenient), header-only parse
//! of every prefix length the input suggests, the streamed payload check, and for whatever
//! parses, a stable re-encoding.
#![no_main]

use bpa::bundle::{Bundle, BundleHeader, ParseOptions, PayloadCheck};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let strict = Bundle::parse(&input, &ParseOptions::default());
    let lenient = Bundle::parse(&input, &ParseOptions::lenient());
    if strict.is_ok() {
        assert!(lenient.is_ok(), "lenient parsing must accept what strict parsing accepts");
    }
    if let Ok(bundle) = lenient {
        let again = Bundle::parse(&Bytes::from(bundle.encode()), &ParseOptions::lenient())
            .expect("a parsed bundle re-encodes to a valid bundle");
        assert_eq!(again, bundle);
    }
    if let Ok(Some(header)) = BundleHeader::parse(&input, &ParseOptions::default()) {
        let mut check = PayloadCheck::new(&header, data);
        check.update(&data[header.payload.data_offset.min(data.len())..]);
        assert_eq!(check.finish(), strict.map(drop), "the streamed verdict differs from the whole-bundle one");
    }
});
