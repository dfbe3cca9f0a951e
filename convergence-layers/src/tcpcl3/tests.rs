//! Sans-IO tests of the TCPCLv3 session: every message and state, on explicit instants.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::session::{Event, Negotiated, SendError, Session, SessionConfig, SessionError};
use super::wire::{ContactHeader, Message, RefuseCode, ShutdownReason, WireError, flags};

fn header(flags: u8, keepalive: u16, eid: &str) -> Bytes {
    ContactHeader { version: 3, flags, keepalive, eid: eid.into() }.encode()
}

fn all_flags() -> u8 {
    flags::REQUEST_ACK | flags::REFUSAL
}

/// Everything the session wants to transmit, decoded (the contact header skipped).
fn transmitted(session: &mut Session) -> Vec<Message> {
    let mut out = BytesMut::new();
    while let Some(bytes) = session.poll_transmit() {
        out.extend_from_slice(&bytes);
    }
    let mut at = 0;
    if out.starts_with(b"dtn!") {
        let (_, used) = ContactHeader::decode(&out).expect("our header").expect("whole");
        at = used;
    }
    let mut messages = Vec::new();
    while at < out.len() {
        let (message, used) = Message::decode(&out[at..]).expect("valid").expect("whole");
        messages.push(message);
        at += used;
    }
    messages
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// A session established with a peer that sent `peer_flags`, its transmit and events drained.
fn established(config: SessionConfig, peer_flags: u8, now: Instant) -> Session {
    let mut session = Session::new(config, now);
    let ours = session.poll_transmit().expect("our contact header first");
    assert!(ours.starts_with(b"dtn!\x03"));
    session.handle_input(&header(peer_flags, 10, "ipn:7.0"), now);
    assert!(session.is_established());
    assert!(matches!(events(&mut session)[..], [Event::Established(_)]));
    assert!(transmitted(&mut session).is_empty());
    session
}

fn segment(start: bool, end: bool, data: &[u8]) -> Vec<u8> {
    let mut bytes = Message::DataSegment { start, end, length: data.len() as u64 }.encode().to_vec();
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn our_contact_header_says_what_we_ask_for() {
    let now = Instant::now();
    let mut config = SessionConfig::new("ipn:1.0");
    config.keepalive = 30;
    config.request_length = true;
    let mut session = Session::new(config.clone(), now);
    let bytes = session.poll_transmit().expect("header");
    let (header, _) = ContactHeader::decode(&bytes).expect("valid").expect("whole");
    assert_eq!(
        header,
        ContactHeader {
            version: 3,
            flags: flags::REQUEST_ACK | flags::REFUSAL | flags::REQUEST_LENGTH,
            keepalive: 30,
            eid: "ipn:1.0".into(),
        }
    );
    // §4.1: refusal only with acknowledgements.
    config.request_ack = false;
    config.request_length = false;
    let bytes = Session::new(config, now).poll_transmit().expect("header");
    assert_eq!(ContactHeader::decode(&bytes).expect("valid").expect("whole").0.flags, 0);
}

#[test]
fn negotiation_follows_section_4_2() {
    let now = Instant::now();
    let cases = [
        // (our ack, our refusal, our keepalive, peer flags, peer keepalive) -> (ack, refusal, keepalive)
        (true, true, 15, all_flags(), 10, (true, true, Some(10))),
        (true, true, 15, flags::REQUEST_ACK, 20, (true, false, Some(15))),
        (true, true, 15, flags::REFUSAL, 20, (false, false, Some(15))),
        (false, true, 15, all_flags(), 0, (false, false, None)),
        (true, false, 0, all_flags(), 10, (true, false, None)),
    ];
    for (ack, refusal, keepalive, peer_flags, peer_keepalive, expected) in cases {
        let mut config = SessionConfig::new("ipn:1.0");
        (config.request_ack, config.refusal, config.keepalive) = (ack, refusal, keepalive);
        let mut session = Session::new(config, now);
        session.handle_input(&header(peer_flags | flags::REQUEST_LENGTH, peer_keepalive, "dtn://peer/"), now);
        let negotiated = session.negotiated().expect("established").clone();
        assert_eq!(
            (negotiated.ack, negotiated.refusal, negotiated.keepalive),
            (expected.0, expected.1, expected.2.map(Duration::from_secs)),
            "ours {ack}/{refusal}/{keepalive}, peer {peer_flags:#x}/{peer_keepalive}"
        );
        assert!(negotiated.send_length);
        assert_eq!(negotiated.peer_eid, "dtn://peer/");
    }
}

#[test]
fn a_header_split_anywhere_establishes_once() {
    let now = Instant::now();
    let bytes = header(all_flags(), 10, "ipn:7.0");
    for cut in 1..bytes.len() {
        let mut session = Session::new(SessionConfig::new("ipn:1.0"), now);
        session.handle_input(&bytes[..cut], now);
        assert!(!session.is_established());
        session.handle_input(&bytes[cut..], now);
        assert_eq!(
            events(&mut session),
            vec![Event::Established(Negotiated {
                peer_eid: "ipn:7.0".into(),
                peer_version: 3,
                ack: true,
                refusal: true,
                send_length: false,
                keepalive: Some(Duration::from_secs(10)),
            })]
        );
    }
}

#[test]
fn a_lower_version_is_refused_with_shutdown_version_mismatch() {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new("ipn:1.0"), now);
    let _ = session.poll_transmit();
    session.handle_input(b"dtn!\x02\x00\x00\x00\x07ipn:7.0", now);
    assert_eq!(events(&mut session), vec![Event::Closed(SessionError::VersionMismatch(2))]);
    assert_eq!(
        transmitted(&mut session),
        vec![Message::Shutdown { reason: Some(ShutdownReason::VersionMismatch), delay: None }]
    );
    assert!(session.is_closed());
    // A higher version is read as version 3 (§4.2).
    let mut session = Session::new(SessionConfig::new("ipn:1.0"), now);
    session.handle_input(b"dtn!\x04\x01\x00\x00\x07ipn:7.0", now);
    assert_eq!(session.negotiated().expect("established").peer_version, 4);
}

#[test]
fn a_peer_without_the_magic_is_closed_without_shutdown() {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new("ipn:1.0"), now);
    let _ = session.poll_transmit();
    session.handle_input(b"GET / HTTP/1.1\r\n", now);
    assert_eq!(events(&mut session), vec![Event::Closed(SessionError::Wire(WireError::BadMagic))]);
    assert!(transmitted(&mut session).is_empty());
}

#[test]
fn no_contact_header_in_time_closes_the_session() {
    let now = Instant::now();
    let mut config = SessionConfig::new("ipn:1.0");
    config.header_timeout = Duration::from_secs(5);
    let mut session = Session::new(config, now);
    assert_eq!(session.poll_timeout(), Some(now + Duration::from_secs(5)));
    session.handle_timeout(now + Duration::from_secs(4));
    assert!(events(&mut session).is_empty());
    session.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(
        events(&mut session),
        vec![Event::Closed(SessionError::HeaderTimeout(Duration::from_secs(5)))]
    );
}

#[test]
fn segments_are_acknowledged_cumulatively_and_the_last_only_once_durable() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    let mut input = segment(true, false, &[1; 100]);
    input.extend(segment(false, false, &[2; 200]));
    input.extend(segment(false, true, &[3; 500]));
    // Delivered a byte at a time: every split point.
    for byte in &input {
        session.handle_input(std::slice::from_ref(byte), now);
    }
    let got = events(&mut session);
    assert_eq!(got[0], Event::IncomingStarted { bundle: 0, length: None });
    let data: Vec<u8> = got
        .iter()
        .filter_map(|e| match e {
            Event::IncomingData { bundle: 0, data } => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data, [vec![1; 100], vec![2; 200], vec![3; 500]].concat());
    assert_eq!(got.last(), Some(&Event::IncomingEnded { bundle: 0 }));
    assert_eq!(
        transmitted(&mut session),
        vec![Message::AckSegment { length: 100 }, Message::AckSegment { length: 300 }]
    );
    // The next bundle's acknowledgement waits behind the first's.
    session.handle_input(&segment(true, true, b"next"), now);
    assert_eq!(
        events(&mut session),
        vec![
            Event::IncomingStarted { bundle: 1, length: Some(4) },
            Event::IncomingData { bundle: 1, data: Bytes::from_static(b"next") },
            Event::IncomingEnded { bundle: 1 },
        ]
    );
    assert!(transmitted(&mut session).is_empty());
    session.finish_incoming(1, Ok(()));
    assert!(transmitted(&mut session).is_empty(), "still behind bundle 0");
    session.finish_incoming(0, Ok(()));
    assert_eq!(
        transmitted(&mut session),
        vec![Message::AckSegment { length: 800 }, Message::AckSegment { length: 4 }]
    );
}

#[test]
fn a_bundle_not_kept_is_refused_in_its_acknowledgements_place() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.handle_input(&segment(true, true, b"one"), now);
    session.handle_input(&segment(true, true, b"two"), now);
    session.handle_input(&segment(true, true, b"three"), now);
    let _ = events(&mut session);
    session.finish_incoming(0, Err(RefuseCode::NoResources));
    session.finish_incoming(1, Err(RefuseCode::Completed));
    session.finish_incoming(2, Ok(()));
    assert_eq!(
        transmitted(&mut session),
        vec![
            Message::RefuseBundle { reason: RefuseCode::NoResources },
            Message::RefuseBundle { reason: RefuseCode::Completed },
            Message::AckSegment { length: 5 },
        ]
    );
}

#[test]
fn without_refusal_a_bundle_not_kept_for_lack_of_room_ends_the_session_unacknowledged() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), flags::REQUEST_ACK, now);
    session.handle_input(&segment(true, true, b"one"), now);
    session.handle_input(&segment(true, true, b"two"), now);
    let _ = events(&mut session);
    // An invalid bundle would be refused again: acknowledged and dropped.
    session.finish_incoming(0, Err(RefuseCode::Unknown));
    assert_eq!(transmitted(&mut session), vec![Message::AckSegment { length: 3 }]);
    // No room: not acknowledged, so the sender keeps it.
    session.finish_incoming(1, Err(RefuseCode::NoResources));
    assert_eq!(
        transmitted(&mut session),
        vec![Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: None }]
    );
    assert_eq!(
        events(&mut session),
        vec![Event::Closed(SessionError::CannotRefuse(RefuseCode::NoResources))]
    );
}

#[test]
fn a_refusal_mid_bundle_skips_its_remaining_segments() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.handle_input(&segment(true, false, &[1; 10]), now);
    let _ = events(&mut session);
    session.refuse_incoming(0, RefuseCode::NoResources);
    session.handle_input(&segment(false, false, &[2; 10]), now);
    session.handle_input(&segment(false, true, &[3; 10]), now);
    assert!(events(&mut session).is_empty(), "nothing more of the refused bundle");
    assert_eq!(
        transmitted(&mut session),
        vec![Message::AckSegment { length: 10 }, Message::RefuseBundle { reason: RefuseCode::NoResources }]
    );
    session.handle_input(&segment(true, true, b"ok"), now);
    assert_eq!(events(&mut session)[0], Event::IncomingStarted { bundle: 1, length: Some(2) });
}

#[test]
fn a_bundle_larger_than_taken_is_refused_or_ends_the_session() {
    let now = Instant::now();
    let mut config = SessionConfig::new("ipn:1.0");
    config.max_bundle_size = 100;
    let mut session = established(config.clone(), all_flags(), now);
    session.handle_input(&segment(true, false, &[0; 60]), now);
    session.handle_input(&segment(false, true, &[0; 60]), now);
    let got = events(&mut session);
    assert_eq!(got.last(), Some(&Event::IncomingTooLarge { bundle: 0 }));
    // "Reason unknown", not "resources exhausted": the sender is not invited to try again.
    assert_eq!(
        transmitted(&mut session),
        vec![Message::AckSegment { length: 60 }, Message::RefuseBundle { reason: RefuseCode::Unknown }]
    );
    // A LENGTH announcing it: refused at its first segment (not at once, where the refusal
    // could cross a bundle already on its way), its segments skipped.
    session.handle_input(&Message::Length { length: 101 }.encode(), now);
    assert!(transmitted(&mut session).is_empty());
    session.handle_input(&segment(true, false, &[0; 10]), now);
    assert_eq!(events(&mut session), vec![Event::IncomingTooLarge { bundle: 1 }]);
    assert_eq!(transmitted(&mut session), vec![Message::RefuseBundle { reason: RefuseCode::Unknown }]);
    session.handle_input(&segment(false, true, &[0; 91]), now);
    assert!(events(&mut session).is_empty());
    session.handle_input(&segment(true, true, b"next"), now);
    assert_eq!(events(&mut session)[0], Event::IncomingStarted { bundle: 2, length: Some(4) });
    // Without refusal there is no way to stop it.
    let mut session = established(config, flags::REQUEST_ACK, now);
    session.handle_input(&segment(true, true, &[0; 101]), now);
    assert_eq!(events(&mut session), vec![Event::Closed(SessionError::TooLarge { length: 101, limit: 100 })]);
}

#[test]
fn a_new_start_abandons_an_unfinished_bundle_and_a_stray_continuation_is_an_error() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.handle_input(&segment(true, false, b"half"), now);
    session.handle_input(&segment(true, true, b"whole"), now);
    let got = events(&mut session);
    assert!(got.contains(&Event::IncomingAbandoned { bundle: 0 }));
    assert_eq!(got.last(), Some(&Event::IncomingEnded { bundle: 1 }));

    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.handle_input(&segment(false, true, b"orphan"), now);
    assert_eq!(
        events(&mut session),
        vec![Event::Closed(SessionError::Protocol(
            "a DATA_SEGMENT continued a bundle that was never started"
        ))]
    );
}

#[test]
fn sent_bundles_are_delivered_by_acknowledgement_and_refused_in_order() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    assert_eq!(session.begin_send(10, 300), Ok(None));
    assert_eq!(session.begin_send(11, 50), Ok(None));
    assert_eq!(session.begin_send(12, 7), Ok(None));
    session.written(10);
    session.handle_input(&Message::AckSegment { length: 100 }.encode(), now);
    assert!(events(&mut session).is_empty());
    session.handle_input(&Message::AckSegment { length: 300 }.encode(), now);
    assert_eq!(events(&mut session), vec![Event::Delivered { token: 10 }]);
    session.handle_input(&Message::RefuseBundle { reason: RefuseCode::NoResources }.encode(), now);
    assert_eq!(events(&mut session), vec![Event::Refused { token: 11, reason: RefuseCode::NoResources }]);
    // "The receiver now has the complete bundle" is a delivery.
    session.handle_input(&Message::RefuseBundle { reason: RefuseCode::Completed }.encode(), now);
    assert_eq!(events(&mut session), vec![Event::Delivered { token: 12 }]);
    assert_eq!(session.unacknowledged(), 0);
}

#[test]
fn acknowledgements_that_cannot_be_right_end_the_session() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.handle_input(&Message::AckSegment { length: 1 }.encode(), now);
    assert_eq!(
        events(&mut session),
        vec![Event::Closed(SessionError::Protocol("an ACK_SEGMENT with no bundle sent"))]
    );
    assert_eq!(
        transmitted(&mut session),
        vec![Message::Shutdown { reason: Some(ShutdownReason::Other(0xff)), delay: None }]
    );

    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.begin_send(1, 10).expect("established");
    session.handle_input(&Message::AckSegment { length: 11 }.encode(), now);
    assert_eq!(
        events(&mut session),
        vec![Event::Closed(SessionError::AckBeyondBundle { acked: 11, length: 10 })]
    );
}

#[test]
fn without_acknowledgements_a_written_bundle_is_delivered() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), 0, now);
    session.begin_send(5, 10).expect("established");
    assert!(events(&mut session).is_empty());
    session.written(5);
    assert_eq!(events(&mut session), vec![Event::Delivered { token: 5 }]);
    // And received segments are not acknowledged.
    session.handle_input(&segment(true, true, b"x"), now);
    session.finish_incoming(0, Ok(()));
    assert!(transmitted(&mut session).is_empty());
}

#[test]
fn a_length_message_goes_before_a_bundle_when_the_peer_asked() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags() | flags::REQUEST_LENGTH, now);
    assert_eq!(session.begin_send(1, 70_000), Ok(Some(Message::Length { length: 70_000 }.encode())));
    // A received LENGTH tells the size of the bundle that follows.
    session.handle_input(&Message::Length { length: 2 }.encode(), now);
    session.handle_input(&segment(true, false, b"a"), now);
    assert_eq!(events(&mut session)[0], Event::IncomingStarted { bundle: 0, length: Some(2) });
}

#[test]
fn keepalives_go_when_idle_and_a_silent_peer_is_shut_down() {
    let start = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), start);
    // Negotiated 10 s (the peer's, below our 15).
    let at = |s: u64| start + Duration::from_secs(s);
    assert_eq!(session.poll_timeout(), Some(at(10)));
    session.handle_timeout(at(10));
    assert_eq!(transmitted(&mut session), vec![Message::Keepalive]);
    session.on_transmitted(at(10));
    session.handle_input(&Message::Keepalive.encode(), at(12));
    assert_eq!(session.poll_timeout(), Some(at(20)));
    session.handle_timeout(at(20));
    assert_eq!(transmitted(&mut session), vec![Message::Keepalive]);
    // Nothing heard for 20 s after 12 s.
    assert_eq!(session.poll_timeout(), Some(at(30)));
    session.handle_timeout(at(30));
    assert_eq!(transmitted(&mut session), vec![Message::Keepalive]);
    session.handle_timeout(at(32));
    assert_eq!(
        events(&mut session),
        vec![Event::Closed(SessionError::KeepaliveExpired(Duration::from_secs(20)))]
    );
    assert_eq!(
        transmitted(&mut session),
        vec![Message::Shutdown { reason: Some(ShutdownReason::IdleTimeout), delay: None }]
    );
    assert_eq!(session.poll_timeout(), None);
}

/// Issue 25, fault 8: with keepalives off (our side asked for 0), a silent connection still
/// ends at the idle limit (before the fix it was held for ever).
#[test]
fn without_keepalives_a_silent_peer_is_shut_down_at_the_idle_limit() {
    let start = Instant::now();
    let mut config = SessionConfig::new("ipn:1.0");
    config.keepalive = 0;
    config.idle_timeout = Duration::from_secs(300);
    let mut session = established(config, all_flags(), start);
    let at = |s: u64| start + Duration::from_secs(s);
    assert_eq!(session.poll_timeout(), Some(at(300)));
    session.handle_input(&Message::Keepalive.encode(), at(100));
    session.handle_timeout(at(299));
    assert!(transmitted(&mut session).is_empty(), "no keepalives");
    assert!(session.is_established());
    assert_eq!(session.poll_timeout(), Some(at(400)), "counted from the last byte heard");
    session.handle_timeout(at(400));
    assert_eq!(
        events(&mut session),
        vec![Event::Closed(SessionError::KeepaliveExpired(Duration::from_secs(300)))]
    );
    assert_eq!(
        transmitted(&mut session),
        vec![Message::Shutdown { reason: Some(ShutdownReason::IdleTimeout), delay: None }]
    );
}

#[test]
fn a_peer_shutdown_carries_its_reconnection_delay_and_is_answered() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.handle_input(&segment(true, true, b"a"), now);
    session.handle_input(
        &Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: Some(120) }.encode(),
        now,
    );
    let got = events(&mut session);
    assert_eq!(
        got[got.len() - 2..],
        [
            Event::PeerShutdown { reason: Some(ShutdownReason::Busy), delay: Some(120) },
            Event::Closed(SessionError::PeerShutdown),
        ]
    );
    // The acknowledgement still waiting for durability is not sent; our SHUTDOWN is.
    assert_eq!(transmitted(&mut session), vec![Message::Shutdown { reason: None, delay: None }]);
    assert_eq!(session.begin_send(1, 1), Err(SendError::Ending));
}

#[test]
fn our_shutdown_goes_after_the_ready_acknowledgements() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), all_flags(), now);
    session.handle_input(&segment(true, false, b"ab"), now);
    session.shutdown(Some(ShutdownReason::IdleTimeout), Some(30));
    assert_eq!(
        transmitted(&mut session),
        vec![
            Message::AckSegment { length: 2 },
            Message::Shutdown { reason: Some(ShutdownReason::IdleTimeout), delay: Some(30) }
        ]
    );
    let got = events(&mut session);
    assert!(got.contains(&Event::IncomingAbandoned { bundle: 0 }));
    assert_eq!(got.last(), Some(&Event::Closed(SessionError::LocalShutdown)));
    assert_eq!(session.begin_send(1, 1), Err(SendError::Ending));
}

proptest! {
    /// Any bytes after a valid contact header: no panic, data only for started bundles, no more
    /// data than the segments announced, acknowledgements bounded.
    #[test]
    fn any_input_after_the_header_is_handled(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
    ) {
        let now = Instant::now();
        let mut config = SessionConfig::new("ipn:1.0");
        config.max_bundle_size = 1000;
        let mut session = Session::new(config, now);
        session.handle_input(&header(all_flags(), 1, "ipn:7.0"), now);
        let mut data = 0usize;
        for chunk in &chunks {
            session.handle_input(chunk, now);
            while let Some(event) = session.poll_event() {
                if let Event::IncomingData { data: d, .. } = event {
                    data += d.len();
                }
            }
            while session.poll_transmit().is_some() {}
        }
        prop_assert!(data <= chunks.iter().map(Vec::len).sum::<usize>());
        session.handle_timeout(now + Duration::from_secs(60));
        prop_assert!(session.is_closed());
    }
}

#[test]
fn without_refusal_an_unacceptable_bundle_mid_stream_is_dropped_and_still_acknowledged() {
    let now = Instant::now();
    let mut session = established(SessionConfig::new("ipn:1.0"), flags::REQUEST_ACK, now);
    session.handle_input(&segment(true, false, b"not a bundle"), now);
    let _ = events(&mut session);
    session.refuse_incoming(0, RefuseCode::Unknown);
    session.handle_input(&segment(false, false, b"more"), now);
    session.handle_input(&segment(false, true, b"end"), now);
    assert!(events(&mut session).is_empty(), "no data and no end for a dropped bundle");
    assert_eq!(
        transmitted(&mut session),
        vec![
            Message::AckSegment { length: 12 },
            Message::AckSegment { length: 16 },
            Message::AckSegment { length: 19 },
        ]
    );
    // No room, mid-stream: the sender must keep it, so the session ends unacknowledged.
    session.handle_input(&segment(true, false, b"next"), now);
    let _ = events(&mut session);
    let _ = transmitted(&mut session);
    session.refuse_incoming(1, RefuseCode::NoResources);
    assert_eq!(
        transmitted(&mut session),
        vec![Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: None }]
    );
}
