//! What ION 4.1.3 does on the wire that RFC 9171 and the BIBE draft do not say (issue 26,
//! items 1 and 2), through the real binary, with ION's bytes made here as ION makes them:
//! fragments whose extension blocks are all numbered 0, and a BIBE retransmission time read as
//! Unix seconds.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use bpa::admin::{AdminRecord, AdminRecordTypes};
use bpa::bundle::{
    BlockFlags, Bundle, BundleFlags, CanonicalBlock, CrcType, CreationTimestamp, Eid, FragmentInfo,
    ParseOptions, PrimaryBlock, block_type, bundle_age_data, previous_node_data,
};
use bytes::Bytes;
use common::{Daemon, free_port, wait_for};

/// Now in DTN time (ms since 2000-01-01).
fn dtn_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
        - 946_684_800_000
}

/// A fragment as ION's `bei.c` makes them: its Previous Node, Bundle Age and private block 193
/// copied with their numbers set to 0.
fn ion_fragment(creation: u64, offset: u64, total: u64, payload: &[u8]) -> Vec<u8> {
    let primary = PrimaryBlock {
        flags: BundleFlags(BundleFlags::IS_FRAGMENT),
        crc_type: CrcType::Crc16,
        destination: Eid::ipn(1, 5),
        source: Eid::ipn(7, 1),
        report_to: Eid::Null,
        creation: CreationTimestamp { time: creation, sequence: 1 },
        lifetime: 3_600_000,
        fragment: Some(FragmentInfo { offset, total_adu_length: total }),
    };
    let block = |block_type, number, flags, data: Bytes| CanonicalBlock {
        block_type,
        number,
        flags: BlockFlags(flags),
        crc_type: CrcType::Crc16,
        data,
    };
    let mut out = vec![0x9f];
    primary.encode(&mut out);
    for extension in [
        block(block_type::PREVIOUS_NODE, 0, 0, previous_node_data(&Eid::ipn(7, 0))),
        block(block_type::BUNDLE_AGE, 0, 0, bundle_age_data(20)),
        block(193, 0, 0x01, Bytes::from_static(b"\x00")),
    ] {
        extension.encode(&mut out);
    }
    block(block_type::PAYLOAD, 1, 0, Bytes::copy_from_slice(payload)).encode(&mut out);
    out.push(0xff);
    out
}

fn node(dir: &std::path::Path, accept: bool) -> (Daemon, u16) {
    let port = free_port();
    let accept = if accept { "[accept]\nduplicate_block_numbers = true\n" } else { "" };
    common::write_config(dir, "ipn:1.0", &format!("{accept}[udp]\nlisten = [\"127.0.0.1:{port}\"]\n"));
    (Daemon::start(dir), port)
}

/// Item 1. ION's fragments are refused by default (RFC 9171 §4.1: number 0 is the primary
/// block's); with `[accept] duplicate_block_numbers` they are renumbered, counted, reassembled
/// and delivered whole.
#[test]
fn ion_fragments_numbered_zero_are_renumbered_when_accepted() {
    let adu: Vec<u8> = common::noise(100_000, 26);
    let creation = dtn_now();
    let fragments = [
        ion_fragment(creation, 0, 100_000, &adu[..60_000]),
        ion_fragment(creation, 60_000, 100_000, &adu[60_000..]),
    ];
    let ion = UdpSocket::bind("127.0.0.1:0").expect("ion");

    let strict_dir = tempfile::tempdir().expect("dir");
    let (strict, port) = node(strict_dir.path(), false);
    for fragment in &fragments {
        ion.send_to(fragment, ("127.0.0.1", port)).expect("send");
    }
    wait_for("refused", || strict.status()["counters"]["refused"] == 2);
    assert_eq!(strict.status()["store"]["bundles"], 0);

    let dir = tempfile::tempdir().expect("dir");
    let (daemon, port) = node(dir.path(), true);
    for fragment in &fragments {
        ion.send_to(fragment, ("127.0.0.1", port)).expect("send");
    }
    assert!(common::recv_one(&daemon, "ipn:1.5") == adu, "the ADU, whole and intact");
    let counters = &daemon.status()["counters"];
    assert_eq!(
        (counters["renumbered"].as_u64(), counters["reassembled"].as_u64()),
        (Some(2), Some(1)),
        "{counters}"
    );
    let (_, metrics) = daemon.http("GET", "/metrics", b"");
    assert!(metrics.contains("dtn_bundles_renumbered_total 2"), "{metrics}");
}

/// The first BIBE PDU that arrives on `socket` within 30 s: its retransmission time.
fn first_pdu_time(socket: &UdpSocket, types: &AdminRecordTypes) -> u64 {
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buffer = vec![0u8; 65_536];
    loop {
        assert!(Instant::now() < deadline, "no BIBE PDU arrived");
        let Ok(n) = socket.recv(&mut buffer) else { continue };
        let Ok(bundle) = Bundle::parse(&Bytes::copy_from_slice(&buffer[..n]), &ParseOptions::lenient())
        else {
            continue;
        };
        if let Ok(AdminRecord::BibePdu(pdu)) = AdminRecord::decode(bundle.payload(), types) {
            return pdu.retransmission_time;
        }
    }
}

/// Item 2. To a peer with ION's record types the PDU's retransmission time is Unix seconds,
/// halfway to our own retransmission (ION sends its signal when that time comes); to others it
/// is the draft's DTN time in ms, at our own retransmission.
#[test]
fn the_retransmission_time_is_unix_seconds_for_ion_and_dtn_time_for_others() {
    let (ion, other) =
        (UdpSocket::bind("127.0.0.1:0").expect("ion"), UdpSocket::bind("127.0.0.1:0").expect("other"));
    let dir = tempfile::tempdir().expect("dir");
    common::write_config(
        dir.path(),
        "ipn:1.0",
        &format!(
            "[custody]\nround_trip = \"20s\"\nretransmit_min = \"20s\"\n\
             [[custody.peers]]\nnode = \"ipn:7.0\"\nrecord_types = \"ion\"\n\
             [udp]\nlisten = [\"127.0.0.1:{}\"]\n\
             [[udp.peers]]\naddress = \"{}\"\nnode_id = \"ipn:7.0\"\n\
             [[udp.peers]]\naddress = \"{}\"\nnode_id = \"ipn:8.0\"\n",
            free_port(),
            ion.local_addr().expect("address"),
            other.local_addr().expect("address"),
        ),
    );
    let daemon = Daemon::start(dir.path());
    for to in ["ipn:7.1", "ipn:8.1"] {
        let (code, body) = daemon.http("POST", &format!("/v1/send?to={to}&custody=true"), b"under custody");
        assert_eq!(code, 201, "{body}");
    }
    let sent_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let ion_time = first_pdu_time(&ion, &AdminRecordTypes::ION);
    // Halfway through a 20 s wait: about 10 s from now, in Unix seconds.
    assert!(
        (sent_unix + 5..=sent_unix + 12).contains(&ion_time),
        "ION's PDU says {ion_time}, sent at Unix {sent_unix}"
    );
    let other_time = first_pdu_time(&other, &AdminRecordTypes::default());
    let now = dtn_now();
    assert!((now + 15_000..=now + 21_000).contains(&other_time), "DTN ms: {other_time}, now {now}");
}
