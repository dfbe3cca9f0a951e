//! Two agents, each with its own store on disk, talking TCPCLv4 over loopback through the
//! tokio driver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bpa::Eid;
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::tcpcl::driver::{Tcpcl, TcpclConfig};
use convergence_layers::tcpcl::session::{SessionConfig, TlsPolicy};
use convergence_layers::tcpcl::tls::TlsSetup;
use convergence_layers::testing::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Node {
    agent: Agent<SqliteStore>,
    tcpcl: Tcpcl<Agent<SqliteStore>>,
    _dir: tempfile::TempDir,
}

fn config() -> TcpclConfig {
    let mut session = SessionConfig::new("");
    session.tls = TlsPolicy::Off;
    session.max_segment_size = 256 * 1024;
    let mut config = TcpclConfig::new(session);
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(200);
    config
}

async fn node(n: u32, store: StoreConfig) -> Node {
    node_with(n, store, config()).await
}

async fn node_with(n: u32, store: StoreConfig, config: TcpclConfig) -> Node {
    // RUST_LOG=debug shows what the sessions did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (agent, dir) = agent_on_disk(AgentConfig::new(Eid::ipn(n, 0)), store).await;
    let tcpcl = Tcpcl::new(agent.clone(), config);
    Node { agent, tcpcl, _dir: dir }
}

async fn listening(n: u32) -> (Node, SocketAddr) {
    let node = node(n, StoreConfig::default()).await;
    let address = node.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    (node, address)
}

fn neighbours(node: &Node) -> Vec<Eid> {
    node.agent.neighbours().into_iter().map(|n| n.node_id).collect()
}

/// Sends `payload` from `from`'s endpoint 1 to node `to` endpoint 1, streamed into the store.
async fn send(from: &Node, to: u32, payload: &[u8]) {
    let node = match from.agent.node_id() {
        Eid::Ipn { node, .. } => *node,
        other => panic!("not an ipn node: {other}"),
    };
    send_streamed(&from.agent, Eid::ipn(node, 1), Eid::ipn(to, 1), payload).await;
}

/// The next `count` payloads for `endpoint` (waiting up to a minute), acknowledged.
async fn receive(node: &Node, endpoint: Eid, count: usize) -> Vec<Vec<u8>> {
    take_payloads(&node.agent, &endpoint, count, Duration::from_secs(60)).await
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_cross_both_ways_and_the_stores_empty() {
    let (a, address) = listening(1).await;
    let b = node(2, StoreConfig::default()).await;
    b.tcpcl.connect_forever(address.to_string());
    eventually("both sides see each other", || {
        neighbours(&a) == [Eid::ipn(2, 0)] && neighbours(&b) == [Eid::ipn(1, 0)]
    })
    .await;

    for i in 0..100u32 {
        send(&b, 1, format!("b→a {i}").as_bytes()).await;
        send(&a, 2, format!("a→b {i}").as_bytes()).await;
    }
    let big_to_a = pattern(3 << 20, 7);
    let big_to_b = pattern((5 << 20) + 3, 9);
    send(&b, 1, &big_to_a).await;
    send(&a, 2, &big_to_b).await;

    let (at_a, at_b) = tokio::join!(receive(&a, Eid::ipn(1, 1), 101), receive(&b, Eid::ipn(2, 1), 101));
    for (received, from, big) in [(at_a, "b→a", &big_to_a), (at_b, "a→b", &big_to_b)] {
        let small: Vec<_> = received.iter().filter(|p| p.len() < 100).cloned().collect();
        let mut expected: Vec<Vec<u8>> = (0..100).map(|i| format!("{from} {i}").into_bytes()).collect();
        let mut small = small;
        small.sort();
        expected.sort();
        assert_eq!(small, expected);
        let large: Vec<_> = received.iter().filter(|p| p.len() >= 100).collect();
        assert_eq!(large.len(), 1);
        assert!(large[0] == big, "the large payload arrived intact");
    }
    eventually("both stores empty", || {
        a.agent.store().stats().bundles == 0 && b.agent.store().stats().bundles == 0
    })
    .await;

    let sessions = a.tcpcl.sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!((s.active, s.node_id.as_deref(), s.tls), (false, Some("ipn:2.0"), false));
    assert_eq!((s.bundles_received, s.bundles_sent, s.transfers_in_flight), (101, 101, 0));
    assert!(s.bytes_received > (3 << 20) && s.bytes_sent > (5 << 20), "{s:?}");
    b.tcpcl.shutdown();
    eventually("the session ended on both sides", || {
        a.tcpcl.sessions().is_empty() && b.tcpcl.sessions().is_empty() && neighbours(&a).is_empty()
    })
    .await;
}

/// A TCP relay between two nodes that cuts its first connection after `cut_after` bytes
/// towards the listener, and relays every later connection whole.
async fn relay(to: SocketAddr, cut_after: u64) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let address = listener.local_addr().expect("relay address");
    let cut = Arc::new(AtomicBool::new(false));
    let was_cut = Arc::clone(&cut);
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let Ok(mut outbound) = TcpStream::connect(to).await else { return };
            let limit = if first { cut_after } else { u64::MAX };
            first = false;
            let was_cut = Arc::clone(&was_cut);
            tokio::spawn(async move {
                let (mut in_read, mut in_write) = inbound.split();
                let (mut out_read, mut out_write) = outbound.split();
                let forwarded = AtomicU64::new(0);
                let upstream = async {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let n = match in_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if forwarded.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > limit {
                            was_cut.store(true, Ordering::SeqCst);
                            return; // the connection dies mid-transfer
                        }
                        if out_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let downstream = async {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                };
                tokio::select! { _ = upstream => {}, _ = downstream => {} }
                // Both connections close here, with no SESS_TERM.
            });
        }
    });
    (address, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_mid_transfer_loses_nothing_and_the_bundle_is_sent_again() {
    let (a, address) = listening(1).await;
    let (relay, was_cut) = relay(address, 2 << 20).await;
    let b = node(2, StoreConfig::default()).await;
    let payload = pattern(8 << 20, 3);
    send(&b, 1, &payload).await;
    b.tcpcl.connect_forever(relay.to_string());
    let received = receive(&a, Eid::ipn(1, 1), 1).await;
    assert!(was_cut.load(Ordering::SeqCst), "the first session was cut mid-transfer");
    assert!(received[0] == payload, "the bundle arrived whole after the reconnection");
    eventually("B's copy is gone once A has it", || b.agent.store().stats().bundles == 0).await;
    // Exactly once: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.agent.store().stats().bundles, 0);
    assert!(a.agent.oldest_waiting(&Eid::ipn(1, 1)).await.expect("oldest").is_none());
    // The part-written file of the cut transfer was not left behind.
    let leftovers: Vec<_> = std::fs::read_dir(a._dir.path().join("blobs"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    b.tcpcl.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_with_no_resources_and_the_sender_keeps_the_bundle() {
    let store = StoreConfig { max_bytes: 64 * 1024, ..StoreConfig::default() };
    let a = node(1, store).await;
    let address = a.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let b = node(2, StoreConfig::default()).await;
    send(&b, 1, &pattern(200 * 1024, 1)).await;
    send(&b, 1, b"small").await;
    b.tcpcl.connect_forever(address.to_string());
    let received = receive(&a, Eid::ipn(1, 1), 1).await;
    assert_eq!(received, [b"small".to_vec()]);
    // The large one was refused ("no resources") and stays at B, waiting for another chance.
    // (B sends both at once: the refusal may come after the small one's delivery.)
    eventually("A refused the large bundle", || a.agent.stats().refused >= 1).await;
    eventually("B holds only the refused bundle", || b.agent.store().stats().bundles == 1).await;
    assert_eq!(a.agent.store().stats().bundles, 0);
    b.tcpcl.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_a_peer_ends_its_session_and_nothing_else() {
    let (a, address) = listening(1).await;
    for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"dtn!\x04\x00\x0f", b"dtn!\x03\x00"] {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(garbage).await.expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the session was closed for {garbage:?}");
        // A wrong version is answered with our contact header and SESS_TERM "version mismatch".
        if garbage.starts_with(b"dtn!\x03") {
            assert_eq!(&answer[..6], b"dtn!\x04\x00");
            assert_eq!(&answer[6..], [0x05, 0x00, 0x02]);
        }
    }
    eventually("no session left", || a.tcpcl.sessions().is_empty()).await;
    // The node still takes a well-behaved peer.
    let b = node(2, StoreConfig::default()).await;
    b.tcpcl.connect_forever(address.to_string());
    send(&b, 1, b"still here").await;
    assert_eq!(receive(&a, Eid::ipn(1, 1), 1).await, [b"still here".to_vec()]);
    b.tcpcl.shutdown();
}

fn tls_config(
    pki: &Pki,
    trusted: &std::path::Path,
    node_ids: &[&str],
    dir: &std::path::Path,
    name: &str,
) -> TcpclConfig {
    let (certificate, key) = pki.issue(node_ids, dir, name);
    let mut config = config();
    config.session.tls = TlsPolicy::Required;
    config.tls = Some(TlsSetup::from_pem_files(&certificate, &key, trusted, true).expect("TLS setup"));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_required_node_ids_are_authenticated_and_bundles_cross() {
    let pki = Pki::new("test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.write_ca(dir.path());
    let a = node_with(1, StoreConfig::default(), tls_config(&pki, &ca, &["ipn:1.0"], dir.path(), "a")).await;
    let address = a.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let b = node_with(2, StoreConfig::default(), tls_config(&pki, &ca, &["ipn:2.0"], dir.path(), "b")).await;
    b.tcpcl.connect_forever(address.to_string());
    send(&b, 1, &pattern(300_000, 4)).await;
    send(&a, 2, b"over TLS").await;
    assert_eq!(receive(&a, Eid::ipn(1, 1), 1).await, [pattern(300_000, 4)]);
    assert_eq!(receive(&b, Eid::ipn(2, 1), 1).await, [b"over TLS".to_vec()]);
    for node in [&a, &b] {
        let sessions = node.tcpcl.sessions();
        assert_eq!(sessions.len(), 1);
        assert!(sessions[0].tls && sessions[0].node_id_authenticated, "{sessions:?}");
    }
    b.tcpcl.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_node_id_or_from_an_unknown_ca_is_refused() {
    let pki = Pki::new("test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.write_ca(dir.path());
    let a = node_with(1, StoreConfig::default(), tls_config(&pki, &ca, &["ipn:1.0"], dir.path(), "a")).await;
    let address = a.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");

    // B claims ipn:2.0 in SESS_INIT; its certificate names ipn:9.0.
    let impostor =
        node_with(2, StoreConfig::default(), tls_config(&pki, &ca, &["ipn:9.0"], dir.path(), "b")).await;
    assert!(!impostor.tcpcl.connect_once(address).await.expect("connect"), "the session was established");
    // A certificate from a CA that A does not trust.
    let other = Pki::new("another CA");
    let other_ca = other.write_ca(&dir.path().join("..").join(dir.path().file_name().expect("name")));
    let stranger =
        node_with(3, StoreConfig::default(), tls_config(&other, &other_ca, &["ipn:3.0"], dir.path(), "c"))
            .await;
    assert!(!stranger.tcpcl.connect_once(address).await.expect("connect"), "the session was established");
    // Neither became a neighbour on either side.
    assert!(
        neighbours(&a).is_empty() && neighbours(&impostor).is_empty() && neighbours(&stranger).is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_optional_on_one_side_and_off_on_the_other_runs_without_tls() {
    let pki = Pki::new("test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.write_ca(dir.path());
    let mut optional = tls_config(&pki, &ca, &["ipn:1.0"], dir.path(), "a");
    optional.session.tls = TlsPolicy::Optional;
    let a = node_with(1, StoreConfig::default(), optional).await;
    let address = a.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let b = node(2, StoreConfig::default()).await;
    b.tcpcl.connect_forever(address.to_string());
    send(&b, 1, b"in the clear").await;
    assert_eq!(receive(&a, Eid::ipn(1, 1), 1).await, [b"in the clear".to_vec()]);
    assert!(!a.tcpcl.sessions()[0].tls);
    b.tcpcl.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bundle_the_receiver_holds_already_is_refused_as_completed_after_its_header() {
    let (a, address) = listening(1).await;
    let b = node(2, StoreConfig::default()).await;
    // B holds a 32 MiB bundle for its endpoint ipn:2.1; A holds the very same bundle, as if its
    // session had ended before B's final XFER_ACK reached it.
    let big = pattern(32 << 20, 5);
    send(&b, 2, &big).await;
    let held = b.agent.store().list(0, 10).await.expect("list");
    assert_eq!(held.len(), 1);
    let bytes = b.agent.store().read(held[0].id).await.expect("read");
    a.agent.receive(bytes).await.expect("A takes the copy");
    assert_eq!(a.agent.store().stats().bundles, 1);

    b.tcpcl.connect_forever(address.to_string());
    // A sends it; B refuses it as "completed" once the header is in; A counts it delivered.
    eventually("A's copy is gone", || a.agent.store().stats().bundles == 0).await;
    assert_eq!(b.agent.store().stats().bundles, 1, "B still holds its one copy");
    let received = b.tcpcl.sessions().iter().map(|s| s.bytes_received).sum::<u64>();
    assert!(received < 16 << 20, "B took {received} bytes of a 32 MiB bundle it already held");
    let delivered = receive(&b, Eid::ipn(2, 1), 1).await;
    assert!(delivered[0] == big, "B's copy is intact");
}

/// A hand-driven TCPCL peer on a raw socket: contact header and SESS_INIT sent, ours read.
async fn raw_peer(address: SocketAddr, node_id: &str, keepalive: u16) -> TcpStream {
    use convergence_layers::tcpcl::wire::{Message, SessInit};
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"dtn!\x04\x00").await.expect("contact header");
    let mut out = bytes::BytesMut::new();
    Message::SessInit(SessInit {
        keepalive,
        segment_mru: 1 << 30,
        transfer_mru: 1 << 40,
        node_id: node_id.to_string(),
        extensions: Vec::new(),
    })
    .encode(&mut out);
    stream.write_all(&out).await.expect("SESS_INIT");
    stream
}

/// Files in a node's blob directory (complete or partial).
fn blob_files(node: &Node) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(node._dir.path().join("blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_stalls_is_abandoned_and_its_partial_data_removed_whatever_the_keepalive() {
    use convergence_layers::tcpcl::wire::{ExtensionItem, encode_segment_header};
    let mut config = config();
    config.transfer_idle_timeout = Duration::from_millis(500);
    let a = node_with(1, StoreConfig::default(), config).await;
    let address = a.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let mut peers = Vec::new();
    for n in 0..3u32 {
        // Keepalive 0: without the watchdog nothing would ever end these sessions.
        let mut stream = raw_peer(address, &format!("ipn:{}.0", 20 + n), 0).await;
        let mut out = bytes::BytesMut::new();
        let start = [ExtensionItem::transfer_length(1 << 30)];
        // The start of a real 1 GiB bundle, so the node streams it into its store.
        let (mut data, _) = bpa::bundle::BundleBuilder::new(
            Eid::ipn(20 + n, 1),
            Eid::ipn(1, 1),
            bpa::bundle::CreationTimestamp { time: 1, sequence: 0 },
            3_600_000,
        )
        .build_streamed((1 << 30) - 100)
        .expect("a head");
        data.resize(3 << 20, 0x5a);
        encode_segment_header(0x02, 1, &start, 8 << 20, &mut out);
        stream.write_all(&out).await.expect("segment head");
        stream.write_all(&data).await.expect("some data");
        peers.push(stream);
    }
    eventually("partial bundles are being written", || !blob_files(&a).is_empty()).await;
    for mut stream in peers {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the stalled session was ended");
        // Our contact header, our SESS_INIT ... then XFER_REFUSE and SESS_TERM "idle timeout".
        assert!(
            answer.ends_with(&[0x05, 0x00, 0x01]),
            "SESS_TERM idle timeout: {:x?}",
            &answer[answer.len().saturating_sub(8)..]
        );
    }
    eventually("no session left", || a.tcpcl.sessions().is_empty()).await;
    eventually("no partial data left", || blob_files(&a).is_empty()).await;
    assert_eq!(a.agent.store().stats().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_cannot_make_this_node_queue_without_bound() {
    use convergence_layers::tcpcl::wire::Message;
    let mut config = config();
    config.send_stall_timeout = Duration::from_millis(500);
    let a = node_with(1, StoreConfig::default(), config).await;
    let address = a.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let stream = raw_peer(address, "ipn:7.0", 0).await;
    // XFER_ACKs for transfers that never were: each draws a MSG_REJECT, which this peer never
    // reads. It writes until this node stops reading it and ends the session.
    let mut ack = bytes::BytesMut::new();
    for id in 0..4096u64 {
        Message::XferAck { flags: 0x03, transfer_id: 1_000_000 + id, length: 1 }.encode(&mut ack);
    }
    let ack = ack.freeze();
    let (mut read_half, mut write_half) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        loop {
            match tokio::time::timeout(Duration::from_secs(60), write_half.write_all(&ack)).await {
                Ok(Ok(())) => sent += ack.len() as u64,
                // Refused (the session ended) or blocked for a minute (nobody reads).
                Ok(Err(_)) | Err(_) => return sent,
            }
        }
    });
    eventually("the session is ended", || a.tcpcl.sessions().is_empty()).await;
    let sent = writer.await.expect("writer");
    // This node stopped reading after a bounded amount; it never took the peer's gigabytes.
    assert!(sent < 256 << 20, "the peer pushed {sent} bytes");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), read_half.read_to_end(&mut rest)).await;
    assert!(neighbours(&a).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_claiming_this_nodes_own_id_is_refused() {
    let (a, address) = listening(1).await;
    let mut stream = raw_peer(address, "ipn:1.0", 30).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the session was ended");
    // Our contact header, then SESS_TERM "contact failure" (no SESS_INIT of ours: refused).
    assert_eq!(&answer[..6], b"dtn!\x04\x00");
    assert_eq!(&answer[6..], [0x05, 0x00, 0x04]);
    assert!(neighbours(&a).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_damaged_in_the_senders_store_is_never_forwarded_and_is_quarantined() {
    let (a, address) = listening(1).await;
    let b = node(2, StoreConfig::default()).await;
    // B holds two bundles for A before any session: one gets damaged on B's disk.
    let (damaged, sound) = (pattern(300_000, 1), pattern(200_000, 2));
    send(&b, 1, &damaged).await;
    let files = blob_files(&b);
    assert_eq!(files.len(), 1);
    let mut bytes = std::fs::read(&files[0]).expect("read");
    bytes[150_000] ^= 0x20;
    std::fs::write(&files[0], &bytes).expect("write");
    send(&b, 1, &sound).await;
    b.tcpcl.connect_forever(address.to_string());
    // The sound one arrives; the damaged one never does, however often B reconnects.
    assert_eq!(receive(&a, Eid::ipn(1, 1), 1).await, [sound]);
    eventually("B quarantines the damaged bundle", || b.agent.store().stats().quarantined == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.agent.oldest_waiting(&Eid::ipn(1, 1)).await.expect("look").is_none());
    assert_eq!(a.agent.store().stats().bundles, 0);
    assert_eq!(b.agent.store().stats().bundles, 1, "kept as evidence");
    b.tcpcl.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_over_the_peers_transfer_mru_goes_in_fragments_that_fit() {
    let mut small = config();
    small.session.transfer_mru = 20_000;
    let a = node_with(1, StoreConfig::default(), small).await;
    let address = a.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    let b = node(2, StoreConfig::default()).await;
    b.tcpcl.connect_forever(address.to_string());
    let payload = pattern(100_000, 9);
    send(&b, 1, &payload).await;
    // A reassembles the fragments B made to fit A's transfer MRU and delivers the whole.
    assert_eq!(receive(&a, Eid::ipn(1, 1), 1).await, [payload]);
    eventually("B let it go", || b.agent.store().stats().bundles == 0).await;
    assert!(b.agent.stats().fragments_sent >= 5, "{:?}", b.agent.stats());
    b.tcpcl.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_over_the_announced_segment_mru_ends_the_session() {
    use convergence_layers::tcpcl::wire::encode_segment_header;
    let (a, address) = listening(1).await;
    let mut stream = raw_peer(address, "ipn:20.0", 30).await;
    let mut out = bytes::BytesMut::new();
    // Our segment MRU is 16 MiB: a peer announcing a 17 MiB segment is cut off at its head.
    encode_segment_header(0x03, 1, &[], 17 << 20, &mut out);
    stream.write_all(&out).await.expect("segment head");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the session was ended");
    assert!(answer.ends_with(&[0x05, 0x00, 0x05]), "SESS_TERM resource exhaustion: {answer:x?}");
    eventually("no session left", || a.tcpcl.sessions().is_empty()).await;
    assert!(blob_files(&a).is_empty());
}

/// A connection from the loopback address `local`.
async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{local}:0").parse().expect("local")).expect("bind");
    socket.connect(to).await.expect("connect")
}

/// Whether the daemon closed `stream` within a second (a read ends or fails), rather than kept
/// it open (the read waits).
async fn closed_soon(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

/// Issue 25, fault 8: past the listener's bound a new connection is not refused: the one that
/// has gone longest without a bundle is shed for it — among those of the same address when
/// that address's own bound is the one reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_sheds_the_idlest_connection_and_one_address_cannot_take_them_all() {
    let mut config = config();
    config.limits = convergence_layers::listener::ConnectionLimits { max_connections: 8, max_per_address: 4 };
    let node = node_with(2, StoreConfig::default(), config).await;
    let address = node.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    // Four from each of two addresses, silent: the listener is full.
    let mut first = Vec::new();
    let mut second = Vec::new();
    for _ in 0..4 {
        first.push(connect_from("127.0.0.2", address).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..4 {
        second.push(connect_from("127.0.0.3", address).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fifth from the first address sheds that address's oldest, not the other's.
    let mut fifth = connect_from("127.0.0.2", address).await;
    assert!(closed_soon(&mut first[0]).await, "the address's idlest was shed");
    assert!(!closed_soon(&mut second[0]).await, "another address's connection is kept");
    assert!(!closed_soon(&mut fifth).await, "the newcomer is kept");
    // A newcomer from a third address sheds the idlest of all: the first address's second.
    let mut third = connect_from("127.0.0.4", address).await;
    assert!(closed_soon(&mut first[1]).await, "the idlest of all was shed");
    assert!(!closed_soon(&mut third).await, "the newcomer is kept");
    assert!(!closed_soon(&mut second[0]).await);
}
