//! EID text parsing on arbitrary strings; whatever parses prints to text that parses back.
#![no_main]

use bpa::bundle::Eid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(eid) = text.parse::<Eid>()
    {
        assert_eq!(eid.to_string().parse::<Eid>().expect("printed EID parses"), eid);
    }
});
