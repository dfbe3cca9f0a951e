//! The native TOML contact plan (`routing::native::parse`) on arbitrary input: no panic, and
//! what parses holds only non-empty intervals between named nodes, each contact with a range.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(plan) = routing::native::parse(text, 1_000_000)
    {
        for contact in &plan.contacts {
            assert!(contact.start < contact.end);
            assert!((contact.from.0 as usize) < plan.node_count() && (contact.to.0 as usize) < plan.node_count());
            assert!(plan.owlt(contact.from, contact.to, contact.start).is_some());
        }
    }
});
