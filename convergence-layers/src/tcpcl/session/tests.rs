//! The session state machine driven byte for byte, two sessions wired to each other, no sockets.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::tcpcl::wire::{self, CAN_TLS, ExtensionItem};

fn config(node: &str) -> SessionConfig {
    SessionConfig { tls: TlsPolicy::Off, ..SessionConfig::new(node) }
}

/// An active session A and a passive session B, and what each has told its agent.
struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    /// Bytes B sent to A and A sent to B, decoded, for checking what went over the wire.
    to_a: Vec<u8>,
    to_b: Vec<u8>,
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            a: Session::new(a, Role::Active, now),
            b: Session::new(b, Role::Passive, now),
            now,
            a_events: Vec::new(),
            b_events: Vec::new(),
            to_a: Vec::new(),
            to_b: Vec::new(),
        }
    }

    fn established() -> Pair {
        let mut pair = Pair::new(config("ipn:1.0"), config("ipn:2.0"));
        pair.pump();
        assert!(pair.a.is_established() && pair.b.is_established());
        pair.a_events.clear();
        pair.b_events.clear();
        pair.to_a.clear();
        pair.to_b.clear();
        pair
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if let Some(bytes) = self.a.poll_transmit() {
                self.to_b.extend_from_slice(&bytes);
                self.b.handle_input(&bytes, self.now);
                moved = true;
            }
            if let Some(bytes) = self.b.poll_transmit() {
                self.to_a.extend_from_slice(&bytes);
                self.a.handle_input(&bytes, self.now);
                moved = true;
            }
            while let Some(event) = self.a.poll_event() {
                self.a_events.push(event);
            }
            while let Some(event) = self.b.poll_event() {
                self.b_events.push(event);
            }
            if !moved {
                return;
            }
        }
    }

    /// A sends `data` as one transfer, `chunk` bytes read at a time; returns the transfer ID.
    fn a_sends(&mut self, data: &[u8], chunk: usize) -> u64 {
        let id = self.a.start_transfer(data.len() as u64).expect("start");
        let mut at = 0;
        while at < data.len() {
            // Never more than the session's own segment size, which is what it would cut.
            let mtu = self.a.negotiated().map_or(u64::MAX, |n| n.segment_mtu) as usize;
            let end = at + chunk.min(mtu).min(data.len() - at);
            self.a_segment_to_b(id, &data[at..end]);
            at = end;
            self.pump();
        }
        id
    }

    /// What B's agent got of transfer `id`, and whether it ended.
    fn b_received(&self, id: u64) -> (Vec<u8>, bool) {
        let mut data = Vec::new();
        let mut ended = false;
        for event in &self.b_events {
            match event {
                Event::IncomingData { transfer_id, data: d } if *transfer_id == id => {
                    data.extend_from_slice(d)
                }
                Event::IncomingSegmentEnd { transfer_id, end: true } if *transfer_id == id => ended = true,
                _ => {}
            }
        }
        (data, ended)
    }

    /// B's agent processes every complete segment (acknowledging each).
    fn b_acknowledges_all(&mut self) {
        let ends: Vec<u64> = self
            .b_events
            .iter()
            .filter_map(|e| match e {
                Event::IncomingSegmentEnd { transfer_id, .. } => Some(*transfer_id),
                _ => None,
            })
            .collect();
        for id in ends {
            self.b.acknowledge_segment(id);
        }
        self.b_events.retain(|e| !matches!(e, Event::IncomingSegmentEnd { .. }));
        self.pump();
    }

    /// A sends B the next segment of transfer `id`, carrying exactly `data`.
    fn a_segment_to_b(&mut self, id: u64, data: &[u8]) {
        let segment = self.a.segment(id, data.len() as u64).expect("segment");
        assert_eq!(segment.data_length, data.len() as u64, "the segment carries all of the data");
        let mut bytes = BytesMut::from(&segment.head[..]);
        bytes.extend_from_slice(data);
        self.to_b.extend_from_slice(&bytes);
        self.b.handle_input(&bytes, self.now);
    }

    /// A peer (not session A) sends B raw segments `(flags, transfer ID, extensions, data)`.
    fn b_gets_segments(&mut self, segments: &[(u8, u64, &[ExtensionItem], &[u8])]) {
        let mut bytes = BytesMut::new();
        for (flags, id, extensions, data) in segments {
            wire::encode_segment_header(*flags, *id, extensions, data.len() as u64, &mut bytes);
            bytes.extend_from_slice(data);
        }
        self.b.handle_input(&bytes, self.now);
        self.pump();
    }

    /// Whether B refused transfer `id` with `reason`.
    fn b_refused(&self, id: u64, reason: RefuseReason) -> bool {
        messages(&self.to_a).contains(&wire::Frame::Message(Message::XferRefuse { reason, transfer_id: id }))
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.pump();
    }
}

fn messages(bytes: &[u8]) -> Vec<wire::Frame> {
    let mut decoder = wire::Decoder::new();
    let bytes = bytes.strip_prefix(&b"dtn!"[..]).map_or(bytes, |rest| &rest[2..]);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        if !matches!(frame, wire::Frame::SegmentData(_)) {
            out.push(frame);
        }
    }
    out
}

fn closed_error(events: &[Event]) -> Option<Option<SessionError>> {
    events.iter().find_map(|e| match e {
        Event::Closed { error } => Some(error.clone()),
        _ => None,
    })
}

#[test]
fn contact_and_session_parameters_are_negotiated() {
    let mut a = config("ipn:1.0");
    a.keepalive = 10;
    a.segment_mru = 1000;
    let mut b = config("dtn://b/");
    b.keepalive = 60;
    b.transfer_mru = 5000;
    let mut pair = Pair::new(a, b);
    // The active side speaks first: its contact header is all it sends until it hears back.
    assert_eq!(pair.a.poll_transmit().as_deref(), Some(&b"dtn!\x04\x00"[..]));
    assert!(pair.b.poll_transmit().is_none(), "the passive side waits for the contact header");
    pair.a.handle_input(&[], pair.now);
    pair.b.handle_input(b"dtn!\x04\x00", pair.now);
    pair.pump();
    let a_view = pair.a_events.iter().find_map(|e| match e {
        Event::Established(n) => Some(n.clone()),
        _ => None,
    });
    assert_eq!(
        a_view,
        Some(Negotiated {
            peer_node_id: "dtn://b/".into(),
            node_id_authenticated: false,
            tls: false,
            keepalive: Duration::from_secs(10),
            segment_mtu: 16 << 20,
            transfer_mtu: 5000,
        })
    );
    let b_view = pair.b.negotiated().expect("B established");
    assert_eq!((b_view.peer_node_id.as_str(), b_view.segment_mtu), ("ipn:1.0", 1000));
    assert_eq!(b_view.keepalive, Duration::from_secs(10), "the minimum of the two");
}

#[test]
fn transfers_are_segmented_to_the_peer_mru_pipelined_and_acknowledged_cumulatively() {
    let mut b = config("ipn:2.0");
    b.segment_mru = 100;
    let mut pair = Pair::new(config("ipn:1.0"), b);
    pair.pump();
    let first: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
    let second = b"second bundle".to_vec();
    let id1 = pair.a_sends(&first, 1000);
    // The next transfer starts before the first is acknowledged: no stop-and-wait.
    let id2 = pair.a_sends(&second, 1000);
    assert_eq!((id1, id2), (0, 1), "transfer IDs count from 0 (§5.2.1)");
    assert_eq!(pair.b_received(id1), (first.clone(), true));
    assert_eq!(pair.b_received(id2), (second.clone(), true));
    let segments: Vec<_> = messages(&pair.to_b)
        .into_iter()
        .filter_map(|f| match f {
            wire::Frame::SegmentHeader(h) => {
                Some((h.transfer_id, h.flags, h.data_length, h.extensions.len()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        segments,
        vec![
            (0, segment_flags::START, 100, 13), // with the Transfer Length extension
            (0, 0, 100, 0),
            (0, segment_flags::END, 50, 0),
            (1, segment_flags::START | segment_flags::END, 13, 0), // one segment: no extension
        ]
    );
    assert_eq!(pair.a.transfers_in_flight(), 2);
    assert!(!pair.a_events.iter().any(|e| matches!(e, Event::TransferAcked { .. })), "nothing acked yet");
    pair.b_acknowledges_all();
    let acks: Vec<_> = messages(&pair.to_a)
        .into_iter()
        .filter_map(|f| match f {
            wire::Frame::Message(Message::XferAck { flags, transfer_id, length }) => {
                Some((transfer_id, flags, length))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        vec![
            (0, segment_flags::START, 100),
            (0, 0, 200),
            (0, segment_flags::END, 250),
            (1, segment_flags::START | segment_flags::END, 13)
        ],
        "flags echoed, lengths cumulative (§5.2.3)"
    );
    let acked: Vec<_> = pair
        .a_events
        .iter()
        .filter_map(|e| match e {
            Event::TransferAcked { transfer_id } => Some(*transfer_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![0, 1]);
    assert_eq!(pair.a.transfers_in_flight(), 0);
}

#[test]
fn a_final_ack_without_the_end_flag_still_completes_the_transfer() {
    // dtn7-rs sends XFER_ACK with flags 0 (design §8).
    let mut pair = Pair::established();
    let id = pair.a.start_transfer(4).unwrap();
    let segment = pair.a.segment(id, 4).unwrap();
    assert!(segment.end);
    let mut ack = BytesMut::new();
    Message::XferAck { flags: 0, transfer_id: id, length: 4 }.encode(&mut ack);
    pair.a.handle_input(&ack, pair.now);
    assert_eq!(pair.a.poll_event(), Some(Event::TransferAcked { transfer_id: id }));
}

#[test]
fn segments_of_two_transfers_never_interleave() {
    let mut pair = Pair::established();
    let id = pair.a.start_transfer(10).unwrap();
    pair.a.segment(id, 4).unwrap();
    assert_eq!(pair.a.start_transfer(5), Err(SendError::Interleaving(id)));
    assert_eq!(pair.a.start_transfer(0), Err(SendError::Empty));
    assert_eq!(pair.a.segment(99, 4), Err(SendError::UnknownTransfer(99)));
}

#[test]
fn a_transfer_over_the_transfer_mru_is_refused_from_its_announced_length() {
    let mut b = config("ipn:2.0");
    b.transfer_mru = 100;
    b.segment_mru = 64; // the 60-byte segments below respect it: the transfer MRU is what is tested
    let mut pair = Pair::new(config("ipn:1.0"), b);
    pair.pump();
    // A bundle over the peer's MRU is not even started by a conforming sender...
    assert_eq!(pair.a.start_transfer(101), Err(SendError::OverTransferMtu { length: 101, mtu: 100 }));
    // ...but a peer that ignores the MRU (dtn7-rs does) is refused on its Transfer Length.
    pair.b_gets_segments(&[(segment_flags::START, 7, &[ExtensionItem::transfer_length(500)], b"abc")]);
    assert!(pair.b_refused(7, RefuseReason::NOT_ACCEPTABLE));
    assert!(!pair.b_events.iter().any(|e| matches!(e, Event::IncomingData { .. })), "no data delivered");
    // Without a Transfer Length, the MRU is enforced as the data comes.
    pair.to_a.clear();
    pair.b_gets_segments(&[(segment_flags::START, 8, &[], &[0; 60]), (0, 8, &[], &[0; 60])]);
    assert!(pair.b_refused(8, RefuseReason::NOT_ACCEPTABLE));
}

#[test]
fn data_that_differs_from_the_announced_length_is_refused_and_dropped() {
    let mut pair = Pair::established();
    pair.b_gets_segments(&[
        (segment_flags::START, 3, &[ExtensionItem::transfer_length(10)], b"abcd"),
        (segment_flags::END, 3, &[], b"efgh"),
    ]);
    assert!(pair.b_events.contains(&Event::IncomingAborted {
        transfer_id: 3,
        reason: "8 bytes came but the Transfer Length extension announced 10".into()
    }));
    assert!(pair.b_refused(3, RefuseReason::NOT_ACCEPTABLE));
}

#[test]
fn unusable_transfer_extensions_refuse_the_transfer_not_the_session() {
    let cases: Vec<(Vec<ExtensionItem>, &[u8])> = vec![
        (vec![ExtensionItem { flags: 1, item_type: 0x7777, value: Bytes::new() }], b"critical unknown"),
        (vec![ExtensionItem { flags: 0, item_type: 1, value: Bytes::from_static(b"short") }], b"bad length"),
        (vec![ExtensionItem::transfer_length(3), ExtensionItem::transfer_length(3)], b"two lengths"),
    ];
    for (items, what) in cases {
        let mut pair = Pair::established();
        pair.b_gets_segments(&[(segment_flags::START | segment_flags::END, 1, &items, b"abc")]);
        assert!(pair.b_refused(1, RefuseReason::EXTENSION_FAILURE), "{}", String::from_utf8_lossy(what));
        assert!(pair.b.is_established(), "the session goes on");
    }
    // An unknown extension that is not critical is skipped.
    let mut pair = Pair::established();
    let items = [ExtensionItem { flags: 0, item_type: 0x7777, value: Bytes::from_static(b"?") }];
    pair.b_gets_segments(&[(segment_flags::START | segment_flags::END, 1, &items, b"abc")]);
    assert_eq!(pair.b_received(1), (b"abc".to_vec(), true));
}

#[test]
fn the_agent_refuses_a_transfer_and_its_later_segments_are_refused_too() {
    let mut pair = Pair::established();
    let id = pair.a.start_transfer(30).unwrap();
    let first = pair.a.segment(id, 10).unwrap();
    let mut wire = BytesMut::from(&first.head[..]);
    wire.extend_from_slice(&[1; 10]);
    // A second segment is already on the wire when B refuses.
    let second = pair.a.segment(id, 10).unwrap();
    wire.extend_from_slice(&second.head);
    wire.extend_from_slice(&[2; 10]);
    pair.b.handle_input(&wire[..first.head.len() + 10], pair.now);
    pair.b.refuse(id, RefuseReason::NO_RESOURCES);
    pair.b.handle_input(&wire[first.head.len() + 10..], pair.now);
    pair.pump();
    let refusals = messages(&pair.to_a)
        .into_iter()
        .filter(|f| {
            matches!(f, wire::Frame::Message(Message::XferRefuse { reason: RefuseReason::NO_RESOURCES, .. }))
        })
        .count();
    assert_eq!(refusals, 2, "the crossing segment is refused again (§5.2.4)");
    assert!(
        pair.a_events
            .contains(&Event::TransferRefused { transfer_id: id, reason: RefuseReason::NO_RESOURCES })
    );
    assert_eq!(
        pair.a.segment(id, 10),
        Err(SendError::Refused { transfer_id: id, reason: RefuseReason::NO_RESOURCES })
    );
    assert_eq!(pair.a.transfers_in_flight(), 0, "a refused transfer is forgotten");
    assert!(
        !messages(&pair.to_b).iter().any(|f| matches!(f, wire::Frame::Message(Message::MsgReject { .. }))),
        "the repeated refusal is expected, not rejected"
    );
    // The next transfer goes through.
    let next = pair.a_sends(b"next", 100);
    assert_eq!(pair.b_received(next), (b"next".to_vec(), true));
}

#[test]
fn tls_is_negotiated_and_the_node_id_authenticated_against_the_certificate() {
    let tls = |node: &str| SessionConfig { tls: TlsPolicy::Optional, ..SessionConfig::new(node) };
    let mut pair = Pair::new(tls("ipn:1.0"), tls("ipn:2.0"));
    pair.pump();
    assert_eq!(pair.a_events, vec![Event::StartTls]);
    assert_eq!(pair.b_events, vec![Event::StartTls]);
    assert_eq!(pair.to_b, b"dtn!\x04\x01", "CAN_TLS set, then nothing until TLS is up");
    pair.a.tls_established(vec!["ipn:2.0".into()], pair.now);
    pair.b.tls_established(vec!["ipn:1.0".into()], pair.now);
    pair.pump();
    let established: Vec<_> = pair.a_events.iter().filter(|e| matches!(e, Event::Established(_))).collect();
    assert_eq!(established.len(), 1);
    let n = pair.a.negotiated().unwrap();
    assert!(n.tls && n.node_id_authenticated);

    // A certificate for another node: "contact failure".
    let mut pair = Pair::new(tls("ipn:1.0"), tls("ipn:2.0"));
    pair.pump();
    pair.a.tls_established(vec!["ipn:666.0".into()], pair.now);
    pair.b.tls_established(vec!["ipn:1.0".into()], pair.now);
    pair.pump();
    assert_eq!(
        closed_error(&pair.a_events),
        Some(Some(SessionError::NodeIdNotAuthenticated {
            claimed: "ipn:2.0".into(),
            certified: vec!["ipn:666.0".into()]
        }))
    );
    assert!(messages(&pair.to_b).contains(&wire::Frame::Message(Message::SessTerm {
        flags: 0,
        reason: SessTermReason::CONTACT_FAILURE
    })));
    assert!(pair.b.is_closed(), "B hears the SESS_TERM and closes");
}

#[test]
fn tls_required_refuses_a_peer_without_tls() {
    let required = SessionConfig { tls: TlsPolicy::Required, ..SessionConfig::new("ipn:2.0") };
    let mut pair = Pair::new(config("ipn:1.0"), required);
    pair.pump();
    assert_eq!(closed_error(&pair.b_events), Some(Some(SessionError::TlsRequired)));
    assert_eq!(pair.to_a[..6], *b"dtn!\x04\x01");
    assert_eq!(pair.to_a[6..], [0x05, 0x00, 0x04], "SESS_TERM contact failure");
    assert!(pair.a.is_closed());
    assert_eq!(
        SessionError::TlsRequired.to_string(),
        "TLS is required (tls = \"required\") but the peer does not offer it"
    );
}

#[test]
fn a_contact_header_of_another_version_or_protocol_ends_the_connection() {
    let now = Instant::now();
    let mut passive = Session::new(config("ipn:2.0"), Role::Passive, now);
    passive.handle_input(b"dtn!\x03\x00", now);
    // §4.3: the passive side sends its contact header, then SESS_TERM "version mismatch".
    assert_eq!(passive.poll_transmit().as_deref(), Some(&b"dtn!\x04\x00\x05\x00\x02"[..]));
    assert!(passive.is_closed());
    let mut active = Session::new(config("ipn:1.0"), Role::Active, now);
    active.poll_transmit();
    active.handle_input(b"dtn!\x03\x00", now);
    assert!(active.poll_transmit().is_none(), "the active side just closes");
    assert_eq!(
        active.poll_event(),
        Some(Event::Closed { error: Some(SessionError::VersionMismatch { theirs: 3 }) })
    );
    let mut http = Session::new(config("ipn:2.0"), Role::Passive, now);
    http.handle_input(b"GET / HTTP/1.1\r\n", now);
    assert!(http.poll_transmit().is_none(), "no SESS_TERM to a non-TCPCL peer");
    assert!(http.is_closed());
    let _ = CAN_TLS;
}

#[test]
fn a_critical_session_extension_or_a_bad_node_id_is_a_contact_failure() {
    let now = Instant::now();
    let init = |node: &str, extensions| {
        let mut wire = BytesMut::from(&b"dtn!\x04\x00"[..]);
        Message::SessInit(SessInit {
            keepalive: 0,
            segment_mru: 1,
            transfer_mru: 1,
            node_id: node.into(),
            extensions,
        })
        .encode(&mut wire);
        wire
    };
    let cases: Vec<(BytesMut, String)> = vec![
        (
            init("ipn:1.0", vec![ExtensionItem { flags: 1, item_type: 9, value: Bytes::new() }]),
            "the peer's SESS_INIT is unacceptable: it carries critical session extension type 0x0009, unknown here".into(),
        ),
        (
            init("not a uri", vec![]),
            "the peer's SESS_INIT is unacceptable: its node ID \"not a uri\" is not an endpoint ID".into(),
        ),
        (
            init("ipn:2.0", vec![]),
            "the peer's SESS_INIT is unacceptable: it claims this node's own node ID \"ipn:2.0\"".into(),
        ),
        // Another service of this node is this node too.
        (
            init("ipn:2.7", vec![]),
            "the peer's SESS_INIT is unacceptable: it claims this node's own node ID \"ipn:2.7\"".into(),
        ),
        // A node ID of 60,000 bytes is refused, and shown shortened with its length.
        (
            init(&format!("dtn://{}/", "x".repeat(60_000)), vec![]),
            format!(
                "the peer's SESS_INIT is unacceptable: its node ID {:?} is 60007 bytes; at most 1024 are accepted",
                format!("dtn://{}... (60007 bytes)", "x".repeat(74))
            ),
        ),
    ];
    for (wire, message) in cases {
        let mut b = Session::new(config("ipn:2.0"), Role::Passive, now);
        b.handle_input(&wire, now);
        let out = b.poll_transmit().unwrap();
        assert!(out.ends_with(&[0x05, 0x00, 0x04]), "SESS_TERM contact failure: {out:?}");
        let error = std::iter::from_fn(|| b.poll_event()).find_map(|e| match e {
            Event::Closed { error } => error,
            _ => None,
        });
        assert_eq!(error.map(|e| e.to_string()), Some(message));
    }
    // A zero-length node ID is allowed: the peer withholds it (§4.6).
    let mut b = Session::new(config("ipn:2.0"), Role::Passive, now);
    b.handle_input(&init("", vec![ExtensionItem { flags: 0, item_type: 9, value: Bytes::new() }]), now);
    assert!(b.is_established());
}

#[test]
fn unknown_and_unexpected_messages_are_rejected() {
    let mut pair = Pair::established();
    // An XFER_ACK for no transfer, and a second SESS_INIT: "message unexpected", session goes on.
    let mut wire = BytesMut::new();
    Message::XferAck { flags: 0, transfer_id: 42, length: 1 }.encode(&mut wire);
    pair.b.our_sess_init().encode(&mut wire);
    pair.a.handle_input(&wire, pair.now);
    let out = pair.a.poll_transmit().unwrap();
    assert_eq!(out.as_ref(), [0x06, 0x03, 0x02, 0x06, 0x03, 0x07]);
    assert!(pair.a.is_established());
    // A message type that does not exist: "message type unknown", then the connection closes.
    pair.a.handle_input(&[0x0b], pair.now);
    assert_eq!(pair.a.poll_transmit().as_deref(), Some(&[0x06, 0x01, 0x0b][..]));
    assert!(pair.a.is_closed());
    // The peer's MSG_REJECT is reported.
    let mut pair = Pair::established();
    pair.a.handle_input(&[0x06, 0x03, 0x02], pair.now);
    assert_eq!(
        pair.a.poll_event(),
        Some(Event::Rejected { reason: RejectReason::UNEXPECTED, rejected_type: 0x02 })
    );
    // A transfer message before SESS_INIT: rejected, and the session ends.
    let now = Instant::now();
    let mut b = Session::new(config("ipn:2.0"), Role::Passive, now);
    b.handle_input(&[b"dtn!\x04\x00".as_ref(), &[0x04]].concat(), now);
    let out = b.poll_transmit().unwrap();
    assert!(out.ends_with(&[0x06, 0x03, 0x04, 0x05, 0x00, 0x04]), "{out:?}");
    assert!(b.is_closed());
}

#[test]
fn keepalives_flow_and_a_silent_peer_times_out() {
    let mut a = config("ipn:1.0");
    a.keepalive = 10;
    let mut pair = Pair::new(a, config("ipn:2.0"));
    pair.pump();
    pair.to_a.clear();
    pair.to_b.clear();
    // Keepalives go out at half the interval; neither side goes idle.
    for _ in 0..10 {
        pair.advance(Duration::from_secs(5));
    }
    assert!(pair.a.is_established() && pair.b.is_established());
    assert!(pair.to_b.iter().filter(|b| **b == 0x04).count() >= 9, "keepalives from A");
    // B goes silent (its bytes are lost): A ends the session after twice the interval.
    let start = pair.now;
    loop {
        pair.now += Duration::from_secs(1);
        pair.a.handle_timeout(pair.now);
        let _ = pair.a.poll_transmit();
        if pair.a.is_closed() {
            break;
        }
        assert!(pair.now - start <= Duration::from_secs(21), "A never timed out");
    }
    assert_eq!(
        std::iter::from_fn(|| pair.a.poll_event()).find_map(|e| match e {
            Event::Closed { error } => error,
            _ => None,
        }),
        Some(SessionError::Idle(Duration::from_secs(20)))
    );
}

/// Issue 25, fault 8: keepalive 0 means no keepalives, not no limit — a silent session ends
/// at the idle limit (before the fix it was held for ever).
#[test]
fn keepalive_zero_means_no_keepalives_but_an_idle_limit() {
    let mut a = config("ipn:1.0");
    a.keepalive = 0;
    a.idle_timeout = Duration::from_secs(300);
    let mut b = config("ipn:2.0");
    b.idle_timeout = Duration::from_secs(7200);
    let mut pair = Pair::new(a, b);
    pair.pump();
    let start = pair.now;
    assert_eq!(pair.a.poll_timeout(), Some(start + Duration::from_secs(300)));
    pair.advance(Duration::from_secs(299));
    assert!(pair.a.is_established() && pair.b.is_established(), "no keepalive was needed");
    assert!(!messages(&pair.to_b).iter().any(|m| matches!(m, wire::Frame::Message(Message::Keepalive))));
    pair.advance(Duration::from_secs(2));
    assert!(pair.a.is_closed(), "a silent session is ended at the idle limit");
    assert_eq!(closed_error(&pair.a_events), Some(Some(SessionError::Idle(Duration::from_secs(300)))));
    // The peer was told why: SESS_TERM "idle timeout".
    assert!(
        messages(&pair.to_b).contains(&wire::Frame::Message(Message::SessTerm {
            flags: 0,
            reason: SessTermReason::IDLE_TIMEOUT
        })),
        "{:?}",
        messages(&pair.to_b)
    );
}

#[test]
fn sess_term_lets_transfers_in_progress_finish_and_refuses_new_ones() {
    let mut pair = Pair::established();
    let id = pair.a.start_transfer(8).unwrap();
    pair.a_segment_to_b(id, b"abcd");
    // B ends the session; A replies; the transfer in progress may still finish.
    pair.b.terminate(SessTermReason::UNKNOWN);
    pair.pump();
    assert!(pair.a.is_ending() && pair.b.is_ending());
    assert!(!pair.a.is_closed() && !pair.b.is_closed(), "a transfer is in progress");
    assert_eq!(pair.a.start_transfer(3), Err(SendError::Ending));
    assert!(messages(&pair.to_b).contains(&wire::Frame::Message(Message::SessTerm {
        flags: SESS_TERM_REPLY,
        reason: SessTermReason::UNKNOWN
    })));
    pair.a_segment_to_b(id, b"efgh");
    pair.pump();
    assert_eq!(pair.b_received(id), (b"abcdefgh".to_vec(), true));
    pair.b_acknowledges_all();
    assert!(pair.a_events.contains(&Event::TransferAcked { transfer_id: id }));
    assert!(pair.a.is_closed() && pair.b.is_closed(), "both close once the transfer is done");
    assert_eq!(closed_error(&pair.a_events), Some(None), "a clean end");

    // A transfer started by the peer after the SESS_TERM is refused "session terminating".
    let mut pair = Pair::established();
    pair.b.terminate(SessTermReason::BUSY);
    pair.b_gets_segments(&[(segment_flags::START | segment_flags::END, 5, &[], b"x")]);
    assert!(pair.b_refused(5, RefuseReason::SESSION_TERMINATING));
}

#[test]
fn a_peer_that_never_answers_times_out_at_each_stage() {
    let now = Instant::now();
    let mut b = Session::new(config("ipn:2.0"), Role::Passive, now);
    b.handle_timeout(now + Duration::from_secs(31));
    assert!(b.poll_transmit().is_none(), "no contact header: close without a SESS_TERM");
    assert_eq!(
        b.poll_event(),
        Some(Event::Closed {
            error: Some(SessionError::Timeout { what: "contact header", timeout: Duration::from_secs(30) })
        })
    );
    let mut a = Session::new(config("ipn:1.0"), Role::Active, now);
    a.handle_input(b"dtn!\x04\x00", now);
    let _ = a.poll_transmit();
    a.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(a.poll_transmit().as_deref(), Some(&[0x05, 0x00, 0x00][..]), "SESS_TERM after the contact");
    assert!(a.is_closed());
}

#[test]
fn a_session_lost_mid_transfer_aborts_the_incoming_transfer() {
    let mut pair = Pair::established();
    let id = pair.a.start_transfer(8).unwrap();
    pair.a_segment_to_b(id, b"abcd");
    // The connection drops: the driver tells the session by ending it uncleanly.
    pair.b.terminate_with(SessTermReason::UNKNOWN, Some(SessionError::Terminated(SessTermReason::UNKNOWN)));
    let events: Vec<_> = std::iter::from_fn(|| pair.b.poll_event()).collect();
    assert!(events.contains(&Event::IncomingAborted {
        transfer_id: id,
        reason: "the session closed before the transfer ended".into()
    }));
}

proptest! {
    /// Arbitrary bytes from a peer, at any stage, never panic the session, and what it queues
    /// for the peer stays small (no allocation driven by the peer's numbers).
    #[test]
    fn arbitrary_peer_bytes_never_panic(
        prefix in prop_oneof![Just(Vec::new()), Just(b"dtn!\x04\x00".to_vec()), Just(b"dtn!\x04\x01".to_vec())],
        established in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let now = Instant::now();
        let mut session = if established {
            let mut pair = Pair::established();
            pair.b.handle_input(&[], now);
            pair.b
        } else {
            let mut s = Session::new(config("ipn:2.0"), Role::Passive, now);
            s.handle_input(&prefix, now);
            s
        };
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        for pair in points.windows(2) {
            session.handle_input(&bytes[pair[0]..pair[1]], now);
            if let Some(out) = session.poll_transmit() {
                prop_assert!(out.len() <= 4096, "{} bytes queued for the peer", out.len());
            }
            while session.poll_event().is_some() {}
        }
        session.handle_timeout(now + Duration::from_secs(3600));
        let _ = session.poll_transmit();
    }
}

#[test]
fn a_sess_term_never_answered_closes_after_the_timeout() {
    let quiet =
        |node: &str| SessionConfig { keepalive: 0, idle_timeout: Duration::from_secs(7200), ..config(node) };
    let mut pair = Pair::new(quiet("ipn:1.0"), quiet("ipn:2.0"));
    pair.pump();
    let _ = std::iter::from_fn(|| pair.a.poll_event()).count();
    pair.now += Duration::from_secs(600);
    pair.a.handle_timeout(pair.now);
    // A long quiet session (no keepalives): the reply is awaited from now, not from the last
    // message.
    pair.a.terminate(SessTermReason::UNKNOWN);
    assert_eq!(pair.a.poll_transmit().as_deref(), Some(&[0x05, 0x00, 0x00][..]));
    pair.a.handle_timeout(pair.now + Duration::from_secs(29));
    assert!(!pair.a.is_closed(), "still waiting for the reply");
    pair.a.handle_timeout(pair.now + Duration::from_secs(31));
    assert!(pair.a.is_closed());
    assert_eq!(
        closed_error(&std::iter::from_fn(|| pair.a.poll_event()).collect::<Vec<_>>()),
        Some(Some(SessionError::Timeout { what: "SESS_TERM reply", timeout: Duration::from_secs(30) }))
    );
}

#[test]
fn a_segment_over_the_announced_segment_mru_ends_the_session() {
    let mut b_config = config("ipn:2.0");
    b_config.segment_mru = 100;
    let mut pair = Pair::new(config("ipn:1.0"), b_config);
    pair.pump();
    assert!(pair.b.is_established());
    pair.to_a.clear();
    pair.b_gets_segments(&[(segment_flags::START | segment_flags::END, 1, &[], &[9u8; 101])]);
    assert!(messages(&pair.to_a).contains(&wire::Frame::Message(Message::SessTerm {
        flags: 0,
        reason: SessTermReason::RESOURCE_EXHAUSTION
    })));
    assert!(pair.b.is_closed() || pair.b.is_ending());
    assert_eq!(
        closed_error(&pair.b_events),
        Some(Some(SessionError::SegmentOverMru { length: 101, mru: 100 }))
    );
    assert!(
        !pair.b_events.iter().any(|e| matches!(e, Event::IncomingData { .. })),
        "none of its data is taken"
    );
}
