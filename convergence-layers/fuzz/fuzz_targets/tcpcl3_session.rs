//! The TCPCLv3 session (`convergence_layers::tcpcl3::session::Session`) on arbitrary bytes from
//! its peer, cut where the input says, with the driver's answers (bundles kept or refused) also
//! chosen by the input: no panic, no bundle's data beyond the limit, and everything the session
//! transmits is well-formed TCPCLv3.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use convergence_layers::tcpcl3::session::{Event, Session, SessionConfig};
use convergence_layers::tcpcl3::wire::{ContactHeader, Message, RefuseCode};
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else { return };
    let mut config = SessionConfig::new("ipn:1.0");
    config.request_ack = control & 1 != 0;
    config.refusal = control & 2 != 0;
    config.request_length = control & 4 != 0;
    config.max_bundle_size = LIMIT;
    let chunk = usize::from(control >> 3).max(1);
    let start = Instant::now();
    let mut session = Session::new(config, start);
    let mut out = session.poll_transmit().expect("the contact header first").to_vec();
    let mut received: HashMap<u64, u64> = HashMap::new();
    for (i, piece) in stream.chunks(chunk).enumerate() {
        let now = start + Duration::from_millis(i as u64 * 100);
        session.handle_input(piece, now);
        while let Some(event) = session.poll_event() {
            match event {
                Event::IncomingData { bundle, data } => {
                    let total = received.entry(bundle).or_default();
                    *total += data.len() as u64;
                    assert!(*total <= LIMIT, "bundle {bundle}: {total} bytes");
                }
                Event::IncomingEnded { bundle } => {
                    let result = match piece.first().copied().unwrap_or(0) % 4 {
                        0 => Err(RefuseCode::NoResources),
                        1 => Err(RefuseCode::Unknown),
                        _ => Ok(()),
                    };
                    session.finish_incoming(bundle, result);
                }
                Event::Established(_) if control & 0x80 != 0 => {
                    let _ = session.begin_send(1, 10);
                    session.written(1);
                }
                _ => {}
            }
        }
        session.handle_timeout(now);
        while let Some(bytes) = session.poll_transmit() {
            out.extend_from_slice(&bytes);
        }
    }
    // What the session wrote: its contact header, then whole messages.
    let (_, mut at) = ContactHeader::decode(&out).expect("our header").expect("whole");
    while at < out.len() {
        let (_, used) = Message::decode(&out[at..]).expect("well-formed").expect("whole");
        at += used;
    }
});
