//! Arbitrary peer bytes into a TCPCLv4 session at each stage (waiting for the contact header,
//! for SESS_INIT, established): never a panic, and what the session queues for the peer stays
//! small whatever lengths the peer claims.
#![no_main]

use std::time::{Duration, Instant};

use convergence_layers::tcpcl::session::{Role, Session, SessionConfig, TlsPolicy};
use libfuzzer_sys::fuzz_target;

fn config(node: &str) -> SessionConfig {
    SessionConfig {
        tls: TlsPolicy::Off,
        segment_mru: 1 << 10,
        transfer_mru: 1 << 14,
        ..SessionConfig::new(node)
    }
}

/// A passive session brought to `stage` by a well-behaved active peer.
fn session(stage: u8, now: Instant) -> Session {
    let mut b = Session::new(config("ipn:2.0"), Role::Passive, now);
    if stage == 0 {
        return b;
    }
    let mut a = Session::new(config("ipn:1.0"), Role::Active, now);
    let contact = a.poll_transmit().unwrap_or_default();
    if stage == 1 {
        b.handle_input(&contact, now);
        return b;
    }
    b.handle_input(&contact, now);
    for _ in 0..4 {
        if let Some(bytes) = b.poll_transmit() {
            a.handle_input(&bytes, now);
        }
        if let Some(bytes) = a.poll_transmit() {
            b.handle_input(&bytes, now);
        }
    }
    while b.poll_event().is_some() {}
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let now = Instant::now();
    let mut s = session(first % 3, now);
    // The rest arrives in pieces whose sizes come from the input too.
    let chunk = usize::from(first >> 2).max(1);
    for (i, piece) in rest.chunks(chunk).enumerate() {
        s.handle_input(piece, now + Duration::from_millis(i as u64));
        if let Some(out) = s.poll_transmit() {
            assert!(out.len() <= 4096, "{} bytes queued for the peer", out.len());
        }
        while let Some(event) = s.poll_event() {
            if let convergence_layers::tcpcl::session::Event::IncomingSegmentEnd { transfer_id, .. } = event {
                s.acknowledge_segment(transfer_id);
            }
        }
    }
    s.handle_timeout(now + Duration::from_secs(3600));
    let _ = s.poll_transmit();
});
