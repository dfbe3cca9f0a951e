//! Administrative record decoding on arbitrary bytes; whatever decodes re-encodes to the same
//! record.
#![no_main]

use bpa::admin::{AdminRecord, AdminRecordTypes};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let types = AdminRecordTypes::default();
    if let Ok(record) = AdminRecord::decode(&Bytes::copy_from_slice(data), &types) {
        let again = AdminRecord::decode(&Bytes::from(record.encode(&types)), &types).expect("re-encoded record decodes");
        assert_eq!(again, record);
    }
});
