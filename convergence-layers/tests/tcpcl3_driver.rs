//! TCPCLv3 between two agents with stores on disk, over loopback; and what a node does with a
//! peer that cuts a bundle off, speaks another version, sends what it will not take, shuts the
//! connection down with a reconnection delay, or falls silent.

use std::net::SocketAddr;
use std::time::Duration;

use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::tcpcl3::driver::{Tcpcl3, Tcpcl3Config};
use convergence_layers::tcpcl3::session::SessionConfig;
use convergence_layers::tcpcl3::wire::{ContactHeader, Message, RefuseCode, ShutdownReason, flags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Node {
    agent: Agent<SqliteStore>,
    layer: Tcpcl3<Agent<SqliteStore>>,
    _dir: tempfile::TempDir,
}

fn config(n: u32, max_bundle_size: u64, ack: bool) -> Tcpcl3Config {
    let mut session = SessionConfig::new(format!("ipn:{n}.0"));
    session.max_bundle_size = max_bundle_size;
    session.request_ack = ack;
    session.keepalive = 1;
    let mut config = Tcpcl3Config::new(session);
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(200);
    config
}

async fn node_with(n: u32, config: Tcpcl3Config) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (agent, dir) = agent_on_disk(AgentConfig::new(Eid::ipn(n, 0)), StoreConfig::default()).await;
    let layer = Tcpcl3::new(agent.clone(), config);
    Node { agent, layer, _dir: dir }
}

async fn node(n: u32, max_bundle_size: u64) -> Node {
    node_with(n, config(n, max_bundle_size, true)).await
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn bundle_bytes(payload: &[u8], sequence: u64) -> Vec<u8> {
    BundleBuilder::new(Eid::ipn(9, 1), Eid::ipn(2, 1), CreationTimestamp { time: 1, sequence }, 3_600_000_000)
        .payload(payload.to_vec())
        .build()
        .expect("bundle")
        .encode()
}

fn has_neighbour(agent: &Agent<SqliteStore>, node: u32) -> bool {
    agent.neighbours().iter().any(|n| n.node_id == Eid::ipn(node, 0))
}

/// A raw TCPCLv3 peer: the test writes and reads its bytes.
struct RawPeer {
    stream: TcpStream,
    input: Vec<u8>,
}

impl RawPeer {
    /// Connects, sends a contact header, reads ours.
    async fn connect(address: SocketAddr, header: ContactHeader) -> (RawPeer, ContactHeader) {
        let stream = TcpStream::connect(address).await.expect("connect");
        RawPeer::start(stream, header).await
    }

    async fn start(mut stream: TcpStream, header: ContactHeader) -> (RawPeer, ContactHeader) {
        stream.write_all(&header.encode()).await.expect("write header");
        let mut peer = RawPeer { stream, input: Vec::new() };
        let theirs = loop {
            if let Some((header, used)) = ContactHeader::decode(&peer.input).expect("a TCPCLv3 header") {
                peer.input.drain(..used);
                break header;
            }
            peer.fill().await;
        };
        (peer, theirs)
    }

    async fn fill(&mut self) {
        let mut buffer = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut buffer))
            .await
            .expect("the node answers in time")
            .expect("read");
        assert!(n > 0, "the node closed the connection; had {:?}", self.input);
        self.input.extend_from_slice(&buffer[..n]);
    }

    async fn message(&mut self) -> Message {
        loop {
            if let Some((message, used)) = Message::decode(&self.input).expect("a TCPCLv3 message") {
                self.input.drain(..used);
                return message;
            }
            self.fill().await;
        }
    }

    /// The next message that is not a KEEPALIVE.
    async fn next(&mut self) -> Message {
        loop {
            let message = self.message().await;
            if message != Message::Keepalive {
                return message;
            }
        }
    }

    async fn send_segment(&mut self, start: bool, end: bool, data: &[u8]) {
        let head = Message::DataSegment { start, end, length: data.len() as u64 }.encode();
        self.stream.write_all(&head).await.expect("write");
        self.stream.write_all(data).await.expect("write");
    }

    /// Reads until the node closes; answers what came.
    async fn until_closed(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.stream.read_to_end(&mut rest)).await;
        self.input.extend(rest);
        self.input
    }
}

fn raw_header(flags: u8, keepalive: u16) -> ContactHeader {
    ContactHeader { version: 3, flags, keepalive, eid: "ipn:9.0".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_of_1_byte_to_20_mib_cross_both_ways_with_and_without_acknowledgements() {
    for ack in [true, false] {
        let a = node_with(1, config(1, 1 << 30, ack)).await;
        let b = node(2, 1 << 30).await;
        let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
        a.layer.connect_forever(address.to_string(), Some(Eid::ipn(2, 0)));
        eventually("A and B are neighbours", || has_neighbour(&a.agent, 2) && has_neighbour(&b.agent, 1))
            .await;
        // 20 MiB goes in 1 MiB segments, acknowledged one by one when acks are on.
        let payloads = [pattern(1, 1), pattern(1024, 2), pattern(20 << 20, 3), pattern(100, 4)];
        for p in &payloads {
            send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), p).await;
        }
        // And the other way over the same connection (B accepted it; the header named A).
        send_streamed(&b.agent, Eid::ipn(2, 1), Eid::ipn(1, 1), &pattern(3 << 20, 5)).await;
        let got = take_payloads(&b.agent, &Eid::ipn(2, 1), payloads.len(), Duration::from_secs(60)).await;
        for p in &payloads {
            assert!(got.contains(p), "ack {ack}: a payload of {} bytes arrived intact", p.len());
        }
        let back = take_payloads(&a.agent, &Eid::ipn(1, 1), 1, Duration::from_secs(60)).await;
        assert_eq!(back, vec![pattern(3 << 20, 5)]);
        eventually("A's store empties", || a.agent.store().stats().bundles == 0).await;
        eventually("B's store empties", || b.agent.store().stats().bundles == 0).await;
        let (sa, sb) = (a.layer.stats(), b.layer.stats());
        assert_eq!((sa.bundles_sent, sa.bundles_received), (4, 1), "ack {ack}");
        assert_eq!((sb.bundles_sent, sb.bundles_received), (1, 4), "ack {ack}");
        assert_eq!(sa.connected, vec![Eid::ipn(2, 0)]);
        // Keepalives (1 s) came and went without a complaint.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for stats in [a.layer.stats(), b.layer.stats()] {
            assert_eq!((stats.protocol_errors, stats.bundles_refused, stats.bundles_cut_off), (0, 0, 0));
            assert_eq!(stats.connected.len(), 1, "the connection stayed up");
        }
        a.layer.shutdown();
        b.layer.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_cut_off_mid_stream_is_not_delivered_and_acknowledged_only_when_whole() {
    let b = node(2, 1 << 30).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let whole = bundle_bytes(&pattern(300_000, 9), 1);
    let (mut peer, theirs) =
        RawPeer::connect(address, raw_header(flags::REQUEST_ACK | flags::REFUSAL, 0)).await;
    assert_eq!(theirs.eid, "ipn:2.0");
    assert_eq!(theirs.flags, flags::REQUEST_ACK | flags::REFUSAL);
    // Two of three segments, then the connection ends.
    let (one, two) = (100_000, 200_000);
    peer.send_segment(true, false, &whole[..one]).await;
    peer.send_segment(false, false, &whole[one..two]).await;
    assert_eq!(peer.next().await, Message::AckSegment { length: one as u64 });
    assert_eq!(peer.next().await, Message::AckSegment { length: two as u64 });
    drop(peer);
    eventually("the cut-off is counted", || b.layer.stats().bundles_cut_off == 1).await;
    assert_eq!(b.agent.store().stats().bundles, 0, "nothing of it is stored");
    // Sent again whole: acknowledged once it is durable, delivered once.
    let (mut peer, _) = RawPeer::connect(address, raw_header(flags::REQUEST_ACK | flags::REFUSAL, 0)).await;
    peer.send_segment(true, false, &whole[..one]).await;
    peer.send_segment(false, true, &whole[one..]).await;
    assert_eq!(peer.next().await, Message::AckSegment { length: one as u64 });
    assert_eq!(peer.next().await, Message::AckSegment { length: whole.len() as u64 });
    assert_eq!(b.agent.store().stats().bundles, 1, "durable before the last acknowledgement");
    let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await;
    assert_eq!(got, vec![pattern(300_000, 9)]);
    // The same bundle once more: acknowledged (this node remembers handling it), not delivered
    // again.
    peer.send_segment(true, true, &whole).await;
    assert_eq!(peer.next().await, Message::AckSegment { length: whole.len() as u64 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.agent.store().stats().bundles, 0, "not stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_node_will_not_take_is_refused_and_the_connection_kept() {
    let b = node(2, 50_000).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let (mut peer, _) = RawPeer::connect(address, raw_header(flags::REQUEST_ACK | flags::REFUSAL, 0)).await;
    // Not a bundle.
    peer.send_segment(true, true, b"definitely not CBOR").await;
    assert_eq!(peer.next().await, Message::RefuseBundle { reason: RefuseCode::Unknown });
    // Larger than taken: refused at the segment that crosses the limit, the rest skipped.
    let big = bundle_bytes(&pattern(80_000, 1), 2);
    peer.send_segment(true, false, &big[..40_000]).await;
    peer.send_segment(false, true, &big[40_000..]).await;
    assert_eq!(peer.next().await, Message::AckSegment { length: 40_000 });
    // "Reason unknown", not "resources exhausted" (issue 25): it will never fit, so the sender
    // is not invited to send it again.
    assert_eq!(peer.next().await, Message::RefuseBundle { reason: RefuseCode::Unknown });
    // Announced too large by LENGTH: refused at its first segment.
    peer.stream.write_all(&Message::Length { length: 60_000 }.encode()).await.expect("write");
    peer.send_segment(true, false, &big[..1000]).await;
    assert_eq!(peer.next().await, Message::RefuseBundle { reason: RefuseCode::Unknown });
    // Still open: a good bundle is acknowledged and delivered.
    let good = bundle_bytes(b"fine", 3);
    peer.send_segment(true, true, &good).await;
    assert_eq!(peer.next().await, Message::AckSegment { length: good.len() as u64 });
    assert_eq!(
        take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await,
        vec![b"fine".to_vec()]
    );
    let stats = b.layer.stats();
    // The junk, the bundle too large, the one announced too large; nothing counted cut off.
    assert_eq!(
        (stats.bundles_refused, stats.bundles_received, stats.protocol_errors, stats.bundles_cut_off),
        (3, 1, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_version_or_protocol_is_shut_down_with_its_reason() {
    let b = node(2, 1 << 30).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    // Version 2: SHUTDOWN, reason "version mismatch".
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"dtn!\x02\x00\x00\x00\x07ipn:9.0").await.expect("write");
    let peer = RawPeer { stream, input: Vec::new() };
    let got = peer.until_closed().await;
    let (_, used) = ContactHeader::decode(&got).expect("header").expect("whole");
    assert_eq!(
        &got[used..],
        Message::Shutdown { reason: Some(ShutdownReason::VersionMismatch), delay: None }.encode()
    );
    // An unknown message type after the header: shut down, counted.
    let (mut peer, _) = RawPeer::connect(address, raw_header(0, 0)).await;
    peer.stream.write_all(&[0x70]).await.expect("write");
    let rest = peer.until_closed().await;
    assert_eq!(rest, Message::Shutdown { reason: Some(ShutdownReason::Other(0xff)), delay: None }.encode());
    // HTTP: closed without a SHUTDOWN (§6.1: no reason when the magic is missing).
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    let got = RawPeer { stream, input: Vec::new() }.until_closed().await;
    let (_, used) = ContactHeader::decode(&got).expect("header").expect("whole");
    assert_eq!(got.len(), used, "nothing after our contact header");
    eventually("three protocol errors", || b.layer.stats().protocol_errors == 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_with_delay_zero_stops_the_dialling_and_a_silent_peer_is_shut_down() {
    let a = node(1, 1 << 30).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    a.layer.connect_forever(address.to_string(), None);
    // Say SHUTDOWN, delay 0 ("never reconnect"), to the first connection.
    let (stream, _) = listener.accept().await.expect("accept");
    let (mut peer, _) = RawPeer::start(stream, raw_header(0, 0)).await;
    peer.stream
        .write_all(&Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: Some(0) }.encode())
        .await
        .expect("write");
    assert_eq!(peer.next().await, Message::Shutdown { reason: None, delay: None }, "answered");
    // With a 50 ms backoff it would have come back several times by now.
    let again = tokio::time::timeout(Duration::from_millis(800), listener.accept()).await;
    assert!(again.is_err(), "no new connection after a SHUTDOWN with delay 0");

    // A peer that asks for 1 s keepalives and then says nothing: KEEPALIVEs, then SHUTDOWN
    // with "idle timeout" after twice the interval.
    let b = node(2, 1 << 30).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let (mut peer, _) = RawPeer::connect(address, raw_header(0, 1)).await;
    assert_eq!(peer.message().await, Message::Keepalive);
    let rest = peer.until_closed().await;
    let mut messages = Vec::new();
    let mut at = 0;
    while let Some((message, used)) = Message::decode(&rest[at..]).expect("valid") {
        messages.push(message);
        at += used;
    }
    assert_eq!(
        messages.last(),
        Some(&Message::Shutdown { reason: Some(ShutdownReason::IdleTimeout), delay: None })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_the_configured_node_is_not_a_neighbour() {
    let a = node(1, 1 << 30).await;
    let b = node(2, 1 << 30).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    a.layer.connect_forever(address.to_string(), Some(Eid::ipn(5, 0)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!has_neighbour(&a.agent, 2) && !has_neighbour(&a.agent, 5));
    assert!(a.layer.stats().connected.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keepalives_off_a_peer_that_stalls_mid_bundle_or_never_reads_is_cut_off() {
    let mut stalling = config(2, 1 << 30, true);
    stalling.session.keepalive = 0;
    stalling.stall_timeout = Duration::from_millis(700);
    let b = node_with(2, stalling).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    // Half a segment, then silence with the connection open.
    let (mut peer, _) = RawPeer::connect(address, raw_header(flags::REQUEST_ACK, 0)).await;
    let whole = bundle_bytes(&pattern(200_000, 3), 4);
    let head = Message::DataSegment { start: true, end: true, length: whole.len() as u64 }.encode();
    peer.stream.write_all(&head).await.expect("write");
    peer.stream.write_all(&whole[..50_000]).await.expect("write");
    let started = std::time::Instant::now();
    let rest = peer.until_closed().await;
    assert!(rest.is_empty(), "no acknowledgement for a bundle never finished: {rest:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "closed by the stall timeout, not the test's");
    eventually("the cut-off is counted", || b.layer.stats().bundles_cut_off == 1).await;
    assert_eq!(b.agent.store().stats().bundles, 0);

    // A peer that never reads: B's 16 MiB bundle fills the socket's buffers, the writer stalls,
    // the connection is closed and the bundle stays in B's store for later.
    let (peer, _) = RawPeer::connect(address, raw_header(flags::REQUEST_ACK, 0)).await;
    eventually("B has the raw peer as neighbour", || has_neighbour(&b.agent, 9)).await;
    send_streamed(&b.agent, Eid::ipn(2, 1), Eid::ipn(9, 1), &pattern(16 << 20, 7)).await;
    eventually("B gives up on the peer that reads nothing", || !has_neighbour(&b.agent, 9)).await;
    assert_eq!(b.agent.store().stats().bundles, 1, "the bundle is kept, not counted sent");
    assert_eq!(b.layer.stats().bundles_sent, 0);
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_bundle_crosses_over_ipv6_with_memory_bounded() {
    let a = node(1, 1 << 30).await;
    let b = node(2, 1 << 30).await;
    let address = b.layer.listen("[::1]:0".parse().expect("address")).await.expect("listen");
    a.layer.connect_forever(address.to_string(), Some(Eid::ipn(2, 0)));
    eventually("A and B are neighbours over ::1", || has_neighbour(&a.agent, 2)).await;
    let payload = pattern(100 << 20, 11);
    let before = bpa::testing::peak_rss_mib();
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), &payload).await;
    eventually("B holds it and A has let it go", || {
        b.agent.store().stats().bundles == 1 && a.agent.store().stats().bundles == 0
    })
    .await;
    // Both nodes are in this process: the bundle went through in buffers, not whole.
    let grown = bpa::testing::peak_rss_mib() - before;
    assert!(grown < 64.0, "peak RSS grew {grown:.1} MiB moving 100 MiB");
    let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(120)).await;
    assert!(got == vec![payload], "100 MiB arrived byte for byte");
    assert_eq!(a.layer.stats().bundles_sent, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_provokes_acknowledgements_and_never_reads_them_cannot_grow_memory() {
    let mut patient = config(2, 1 << 30, true);
    patient.session.keepalive = 0;
    patient.stall_timeout = Duration::from_secs(60);
    let b = node_with(2, patient).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let (peer, _) = RawPeer::connect(address, raw_header(flags::REQUEST_ACK, 0)).await;
    let (_reader, mut writer) = peer.stream.into_split();
    // One bundle in 1-byte segments: every one asks for an acknowledgement, none is read.
    let mut chunk = Vec::new();
    for i in 0..20_000u32 {
        chunk.extend_from_slice(&Message::DataSegment { start: i == 0, end: false, length: 1 }.encode());
        chunk.push(0x9f);
    }
    let rest: Vec<u8> =
        [Message::DataSegment { start: false, end: false, length: 1 }.encode().to_vec(), vec![0]]
            .concat()
            .repeat(20_000);
    let before = bpa::testing::peak_rss_mib();
    let flood = tokio::spawn(async move {
        writer.write_all(&chunk).await?;
        for _ in 0..200 {
            writer.write_all(&rest).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    // 4 million segments: unbounded, their acknowledgements alone would be hundreds of MiB.
    let finished = tokio::time::timeout(Duration::from_secs(8), flood).await;
    let grown = bpa::testing::peak_rss_mib() - before;
    assert!(grown < 48.0, "memory grew {grown:.1} MiB for acknowledgements nobody reads");
    assert!(finished.is_err(), "the node stopped reading: the flood could not be written whole");
}
