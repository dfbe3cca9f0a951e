//! Administrative record decoding on arbitrary bytes; whatever decodes re-encodes to the same
//! record, and a BIBE PDU's head read from its first bytes alone (as custody reads a stored
//! PDU) agrees with the whole decode.
#![no_main]

use bpa::admin::{AdminRecord, AdminRecordTypes, BibePduHead};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let types = AdminRecordTypes::default();
    if let Ok(record) = AdminRecord::decode(&Bytes::copy_from_slice(data), &types) {
        let again = AdminRecord::decode(&Bytes::from(record.encode(&types)), &types).expect("re-encoded record decodes");
        assert_eq!(again, record);
        if let AdminRecord::BibePdu(pdu) = &record {
            let prefix = &data[..data.len().min(BibePduHead::MAX_LEN)];
            let head = BibePduHead::decode(prefix, &types).expect("the head of a PDU decodes").expect("a PDU");
            assert_eq!(head.transmission_id, pdu.transmission_id);
            assert_eq!(head.retransmission_time, pdu.retransmission_time);
            assert_eq!(head.bundle_length, pdu.bundle.len() as u64);
            assert_eq!(&data[head.bundle_offset..head.bundle_offset + pdu.bundle.len()], &pdu.bundle[..]);
        }
    }
    // The head reader alone never panics on anything.
    let _ = BibePduHead::decode(&data[..data.len().min(BibePduHead::MAX_LEN)], &types);
});
