//! STCP and MTCP between two agents with stores on disk, over loopback; and what a receiving
//! node does with a connection that is cut mid-bundle, sends a frame too large, sends what is
//! not a frame, or sends a frame that is not a bundle.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::framed::{Framed, FramedConfig, Framing};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

struct Node {
    agent: Agent<SqliteStore>,
    layer: Framed<Agent<SqliteStore>>,
    _dir: tempfile::TempDir,
}

async fn node(n: u32, framing: Framing, max_bundle_size: u64) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (agent, dir) = agent_on_disk(AgentConfig::new(Eid::ipn(n, 0)), StoreConfig::default()).await;
    let mut config = FramedConfig::new(framing);
    config.max_bundle_size = max_bundle_size;
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(200);
    config.keepalive = Some(Duration::from_millis(100));
    let layer = Framed::new(agent.clone(), config);
    Node { agent, layer, _dir: dir }
}

async fn pair(framing: Framing) -> (Node, Node, SocketAddr) {
    let a = node(1, framing, 1 << 30).await;
    let b = node(2, framing, 1 << 30).await;
    let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    a.layer.connect_forever(address.to_string(), Eid::ipn(2, 0));
    eventually("A connects to B", || a.agent.neighbours().iter().any(|n| n.node_id == Eid::ipn(2, 0))).await;
    (a, b, address)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn bundle_bytes(payload: &[u8]) -> Vec<u8> {
    BundleBuilder::new(
        Eid::ipn(9, 1),
        Eid::ipn(2, 1),
        CreationTimestamp { time: 1, sequence: 7 },
        3_600_000_000,
    )
    .payload(payload.to_vec())
    .build()
    .expect("bundle")
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_of_1_byte_to_20_mib_cross_each_framing_and_arrive_whole() {
    for framing in [Framing::Stcp, Framing::Mtcp] {
        let (a, b, _) = pair(framing).await;
        let payloads = [pattern(1, 1), pattern(1024, 2), pattern(20 << 20, 3), pattern(100, 4)];
        for p in &payloads {
            send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), p).await;
        }
        let got = take_payloads(&b.agent, &Eid::ipn(2, 1), payloads.len(), Duration::from_secs(60)).await;
        assert_eq!(got.len(), payloads.len(), "{framing}");
        for p in &payloads {
            assert!(got.contains(p), "{framing}: a payload of {} bytes arrived intact", p.len());
        }
        eventually("A's store empties", || a.agent.store().stats().bundles == 0).await;
        let sent = a.layer.stats();
        assert_eq!(sent.bundles_sent, 4, "{framing}");
        assert_eq!(b.layer.stats().bundles_received, 4, "{framing}");
        assert_eq!(sent.connected, vec![Eid::ipn(2, 0)]);
        // Keepalives (STCP) came and went without a bundle or a complaint.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = b.layer.stats();
        assert_eq!((stats.bundles_received, stats.bad_frames, stats.bundles_refused), (4, 0, 0), "{framing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_cut_off_mid_stream_is_not_delivered_and_is_sent_again() {
    for framing in [Framing::Stcp, Framing::Mtcp] {
        let b = node(2, framing, 1 << 30).await;
        let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
        // Half a bundle, then the connection ends.
        let whole = bundle_bytes(&pattern(100_000, 9));
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(&framing.header(whole.len() as u64).expect("header")).await.expect("write");
        stream.write_all(&whole[..whole.len() / 2]).await.expect("write");
        drop(stream);
        eventually("the cut-off is counted", || b.layer.stats().bundles_cut_off == 1).await;
        assert_eq!(b.agent.store().stats().bundles, 0, "{framing}: nothing of it is stored");
        // Sent again, whole: delivered once.
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(&framing.header(whole.len() as u64).expect("header")).await.expect("write");
        stream.write_all(&whole).await.expect("write");
        stream.shutdown().await.expect("shutdown");
        let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await;
        assert_eq!(got, vec![pattern(100_000, 9)], "{framing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_end_the_connection_and_a_refused_bundle_does_not() {
    for framing in [Framing::Stcp, Framing::Mtcp] {
        let b = node(2, framing, 10_000).await;
        let address = b.layer.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
        // Not a bundle, then a bundle: the first is refused and dropped, the second taken.
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let junk = b"definitely not CBOR".to_vec();
        stream.write_all(&framing.header(junk.len() as u64).expect("header")).await.expect("write");
        stream.write_all(&junk).await.expect("write");
        let good = bundle_bytes(b"after the junk");
        stream.write_all(&framing.header(good.len() as u64).expect("header")).await.expect("write");
        stream.write_all(&good).await.expect("write");
        stream.flush().await.expect("flush");
        let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await;
        assert_eq!(got, vec![b"after the junk".to_vec()], "{framing}");
        eventually("the junk is counted as refused", || b.layer.stats().bundles_refused == 1).await;
        // A frame over the limit ends the connection without reading it.
        stream.write_all(&framing.header(10_001).expect("header")).await.expect("write");
        stream.flush().await.expect("flush");
        eventually("the oversized frame is counted", || b.layer.stats().bad_frames == 1).await;
        drop(stream);
        if framing == Framing::Mtcp {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            stream.write_all(&[0x83, 1, 2, 3]).await.expect("write");
            eventually("a CBOR array is not an MTCP frame", || b.layer.stats().bad_frames == 2).await;
        }
        assert_eq!(b.agent.store().stats().bundles, 0);
        assert_eq!(b.layer.stats().bundles_received, 1);
        let counted = b.layer.stats();
        assert_eq!(counted.bundles_cut_off, 0, "{framing}");
        let _ = Ordering::Relaxed;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_going_away_is_a_neighbour_down_and_back_when_it_returns() {
    let (a, b, address) = pair(Framing::Mtcp).await;
    b.layer.shutdown();
    drop(b);
    eventually("A sees B gone", || a.agent.neighbours().is_empty()).await;
    // A bundle for B waits; B comes back on the same address; the bundle goes.
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), b"waited").await;
    let b = node(2, Framing::Mtcp, 1 << 30).await;
    // The old listener's port may take a moment to be free.
    let mut listened = None;
    for _ in 0..50 {
        if let Ok(bound) = b.layer.listen(address).await {
            listened = Some(bound);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listened.is_some(), "B listens again on {address}");
    let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await;
    assert_eq!(got, vec![b"waited".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_bundle_crosses_each_framing_over_ipv6_with_memory_bounded() {
    for framing in [Framing::Stcp, Framing::Mtcp] {
        let a = node(1, framing, 1 << 30).await;
        let b = node(2, framing, 1 << 30).await;
        let address = b.layer.listen("[::1]:0".parse().expect("address")).await.expect("listen");
        a.layer.connect_forever(address.to_string(), Eid::ipn(2, 0));
        eventually("A connects to B over ::1", || {
            a.agent.neighbours().iter().any(|n| n.node_id == Eid::ipn(2, 0))
        })
        .await;
        let payload = pattern(100 << 20, 12);
        let before = bpa::testing::peak_rss_mib();
        send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), &payload).await;
        eventually("B holds it and A has let it go", || {
            b.agent.store().stats().bundles == 1 && a.agent.store().stats().bundles == 0
        })
        .await;
        let grown = bpa::testing::peak_rss_mib() - before;
        assert!(grown < 64.0, "{framing}: peak RSS grew {grown:.1} MiB moving 100 MiB");
        let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(120)).await;
        assert!(got == vec![payload], "{framing}: 100 MiB arrived byte for byte");
        a.layer.shutdown();
        b.layer.shutdown();
    }
}
