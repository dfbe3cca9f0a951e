use bytes::{Bytes, BytesMut};

use super::*;

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, DecodeError> {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "everything consumed");
    Ok(frames)
}

fn encoded(message: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    message.encode(&mut out);
    out.to_vec()
}

#[test]
fn the_contact_header_is_magic_version_flags() {
    let header = ContactHeader { version: 4, flags: CAN_TLS };
    assert_eq!(header.encode(), [0x64, 0x74, 0x6e, 0x21, 4, 1]);
    assert_eq!(ContactHeader::decode(&header.encode()), Ok(Some(header)));
    assert_eq!(ContactHeader::decode(b"dtn"), Ok(None));
    assert_eq!(
        ContactHeader::decode(b"GET / HTTP/1.1"),
        Err(DecodeError::BadMagic { found: b"GET ".to_vec() })
    );
    assert_eq!(ContactHeader::decode(b"dx"), Err(DecodeError::BadMagic { found: b"dx".to_vec() }));
    assert_eq!(
        DecodeError::BadMagic { found: b"GET ".to_vec() }.to_string(),
        "the peer's contact header starts with [47, 45, 54, 20], not \"dtn!\": not a TCPCL peer"
    );
}

#[test]
fn every_message_has_its_rfc_layout_and_round_trips() {
    let init = Message::SessInit(SessInit {
        keepalive: 30,
        segment_mru: 0x0102,
        transfer_mru: 0x0304,
        node_id: "ipn:1.0".into(),
        extensions: vec![ExtensionItem { flags: 1, item_type: 0x8001, value: Bytes::from_static(b"xy") }],
    });
    let mut expected = vec![0x07, 0, 30];
    expected.extend_from_slice(&0x0102u64.to_be_bytes());
    expected.extend_from_slice(&0x0304u64.to_be_bytes());
    expected.extend_from_slice(&[0, 7]);
    expected.extend_from_slice(b"ipn:1.0");
    expected.extend_from_slice(&[0, 0, 0, 7, 1, 0x80, 0x01, 0, 2, b'x', b'y']);
    assert_eq!(encoded(&init), expected);

    let cases = [
        (init, None),
        (
            Message::SessTerm { flags: SESS_TERM_REPLY, reason: SessTermReason::IDLE_TIMEOUT },
            Some(vec![0x05, 0x01, 0x01]),
        ),
        (
            Message::XferAck { flags: 3, transfer_id: 9, length: 1800 },
            Some([vec![0x02, 3], 9u64.to_be_bytes().to_vec(), 1800u64.to_be_bytes().to_vec()].concat()),
        ),
        (
            Message::XferRefuse { reason: RefuseReason::COMPLETED, transfer_id: 2 },
            Some([vec![0x03, 1], 2u64.to_be_bytes().to_vec()].concat()),
        ),
        (Message::Keepalive, Some(vec![0x04])),
        (
            Message::MsgReject { reason: RejectReason::UNEXPECTED, rejected_type: 0x07 },
            Some(vec![0x06, 3, 7]),
        ),
    ];
    for (message, bytes) in cases {
        let wire = encoded(&message);
        if let Some(bytes) = bytes {
            assert_eq!(wire, bytes, "{message:?}");
        }
        assert_eq!(decode_all(&wire), Ok(vec![Frame::Message(message.clone())]));
        // Byte by byte: nothing comes out before the whole message is there.
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let got = decoder.decode(&mut buf).expect("valid");
            if i + 1 < wire.len() {
                assert_eq!(got, None, "{message:?} decoded early at byte {i}");
            } else {
                assert_eq!(got, Some(Frame::Message(message.clone())));
            }
        }
    }
}

#[test]
fn segment_data_streams_out_in_the_pieces_it_arrives_in() {
    let mut wire = BytesMut::new();
    let extensions = [ExtensionItem::transfer_length(5)];
    encode_segment_header(segment_flags::START, 7, &extensions, 3, &mut wire);
    wire.extend_from_slice(b"abc");
    encode_segment_header(segment_flags::END, 7, &[], 2, &mut wire);
    wire.extend_from_slice(b"de");
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    assert!(decoder.in_segment() && buf.is_empty(), "one data byte still to come");
    buf.extend_from_slice(&wire[wire.len() - 1..]);
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    let mut list = BytesMut::new();
    ExtensionItem::encode_list(&extensions, &mut list);
    assert_eq!(
        frames,
        vec![
            Frame::SegmentHeader(SegmentHeader {
                flags: segment_flags::START,
                transfer_id: 7,
                extensions: list.freeze(),
                data_length: 3
            }),
            Frame::SegmentData(Bytes::from_static(b"abc")),
            Frame::SegmentEnd,
            Frame::SegmentHeader(SegmentHeader {
                flags: segment_flags::END,
                transfer_id: 7,
                extensions: Bytes::new(),
                data_length: 2
            }),
            Frame::SegmentData(Bytes::from_static(b"d")),
            Frame::SegmentData(Bytes::from_static(b"e")),
            Frame::SegmentEnd,
        ]
    );
}

#[test]
fn an_empty_segment_still_ends() {
    let mut wire = BytesMut::new();
    encode_segment_header(segment_flags::START | segment_flags::END, 0, &[], 0, &mut wire);
    let frames = decode_all(&wire).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1], Frame::SegmentEnd);
}

#[test]
fn malformed_input_is_named() {
    assert_eq!(decode_all(&[0x08]), Err(DecodeError::UnknownMessageType(0x08)));
    assert_eq!(decode_all(&[0x00]), Err(DecodeError::UnknownMessageType(0x00)));
    assert_eq!(
        DecodeError::UnknownMessageType(0x08).to_string(),
        "message type 0x08 is not a TCPCLv4 message"
    );
    // Extension lists are bounded before anything is allocated.
    let mut huge = vec![0x01, segment_flags::START];
    huge.extend_from_slice(&0u64.to_be_bytes());
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(decode_all(&huge), Err(DecodeError::ExtensionsTooLong { what: "transfer", length: u32::MAX }));
    let mut init = vec![0x07, 0, 0];
    init.extend_from_slice(&[0; 16]);
    init.extend_from_slice(&[0, 0]);
    init.extend_from_slice(&(MAX_EXTENSION_ITEMS_LEN + 1).to_be_bytes());
    assert_eq!(
        decode_all(&init),
        Err(DecodeError::ExtensionsTooLong { what: "session", length: MAX_EXTENSION_ITEMS_LEN + 1 })
    );
    // An item that runs past the list's stated length.
    let mut bad = vec![0x07, 0, 0];
    bad.extend_from_slice(&[0; 16]);
    bad.extend_from_slice(&[0, 0]);
    bad.extend_from_slice(&6u32.to_be_bytes());
    bad.extend_from_slice(&[0, 0, 1, 0, 2, b'x']);
    let error = decode_all(&bad).unwrap_err();
    assert_eq!(
        error,
        DecodeError::SessionExtensions(ExtensionListError { offset: 0, needed: 7, available: 6 })
    );
    assert_eq!(
        error.to_string(),
        "the SESS_INIT extension items are malformed: the extension item at offset 0 of the list needs 7 bytes but only 6 remain in the stated length"
    );
    let mut not_utf8 = vec![0x07, 0, 0];
    not_utf8.extend_from_slice(&[0; 16]);
    not_utf8.extend_from_slice(&[0, 1, 0xff, 0, 0, 0, 0]);
    assert_eq!(decode_all(&not_utf8), Err(DecodeError::NodeIdNotUtf8));
}

#[test]
fn reason_codes_have_their_registered_names() {
    assert_eq!(SessTermReason::CONTACT_FAILURE.to_string(), "contact failure");
    assert_eq!(RefuseReason(0x06).to_string(), "session terminating");
    assert_eq!(RefuseReason(0xf3).to_string(), "unassigned (243)");
    assert_eq!(RejectReason::TYPE_UNKNOWN.to_string(), "message type unknown");
}
