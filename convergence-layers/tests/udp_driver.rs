//! UDP (RFC 7122) between two agents with stores on disk, over loopback: bundles of 1 B to
//! 1 MiB (fragmented by the sender's agent to fit datagrams, reassembled at the destination);
//! 10% of datagrams dropped on the way by a shim; junk, keepalives and strangers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bpa::Eid;
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::udp::{Udp, UdpConfig, UdpPeer};
use tokio::net::UdpSocket;

struct Node {
    agent: Agent<SqliteStore>,
    udp: Udp<Agent<SqliteStore>>,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn node(n: u32, config: UdpConfig) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (agent, dir) = agent_on_disk(AgentConfig::new(Eid::ipn(n, 0)), StoreConfig::default()).await;
    let udp = Udp::new(agent.clone(), config);
    let address = udp.bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    Node { agent, udp, address, _dir: dir }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_up_to_1_mib_cross_in_datagrams_fragmented_and_reassembled() {
    let a = node(1, UdpConfig::default()).await;
    let b = node(2, UdpConfig::default()).await;
    // Paced at 20 MB/s: a 1 MiB bundle's datagrams at once would overrun a receive buffer the
    // kernel may cap below 1 MiB (UDP loses what it cannot hold).
    let peer = UdpPeer {
        address: b.address,
        node_id: Eid::ipn(2, 0),
        rate: Some(20_000_000),
        sends_from: Vec::new(),
    };
    a.udp.add_peer(peer).await.expect("peer");
    let payloads = [pattern(1, 1), pattern(1024, 2), pattern(1 << 20, 3)];
    for p in &payloads {
        send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), p).await;
    }
    let mut got = take_payloads(&b.agent, &Eid::ipn(2, 1), 3, Duration::from_secs(60)).await;
    got.sort_by_key(Vec::len);
    assert!(got == payloads.to_vec(), "the payloads arrived whole, the 1 MiB one reassembled");
    let stats = a.udp.stats();
    assert!(stats.bundles_sent >= 2 + 16, "1 MiB went in fragments of at most 65,507 bytes: {stats:?}");
    assert!(a.agent.stats().fragments_sent >= 16);
    eventually("A's store empties", || a.agent.store().stats().bundles == 0).await;
}

/// A shim between two UDP sockets that drops every `nth` datagram going one way.
async fn lossy_shim(to: SocketAddr, nth: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = socket.local_addr().expect("address");
    let passed = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&passed);
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 70_000];
        let mut seen = 0u64;
        while let Ok((n, _)) = socket.recv_from(&mut buffer).await {
            seen += 1;
            if seen.is_multiple_of(nth) {
                continue;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = socket.send_to(&buffer[..n], to).await;
        }
    });
    (address, passed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_tenth_of_datagrams_lost_what_arrives_is_whole_and_counted() {
    let a = node(1, UdpConfig::default()).await;
    let b = node(2, UdpConfig::default()).await;
    let (shim, passed) = lossy_shim(b.address, 10).await;
    // Paced, so that the loopback's buffers never drop anything the shim did not.
    a.udp
        .add_peer(UdpPeer {
            address: shim,
            node_id: Eid::ipn(2, 0),
            rate: Some(2_000_000),
            sends_from: Vec::new(),
        })
        .await
        .expect("peer");
    for i in 0..200u32 {
        let payload = format!("bundle {i:04} {}", "x".repeat(1000));
        send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), payload.as_bytes()).await;
    }
    eventually("A sent all 200", || a.udp.stats().bundles_sent == 200).await;
    eventually("what passed arrived", || b.udp.stats().bundles_received == passed.load(Ordering::SeqCst))
        .await;
    assert_eq!(passed.load(Ordering::SeqCst), 180, "every tenth datagram dropped");
    let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 180, Duration::from_secs(30)).await;
    let mut names: Vec<String> = got
        .iter()
        .map(|p| {
            let text = String::from_utf8(p.clone()).expect("utf-8");
            assert!(text.ends_with(&"x".repeat(1000)), "a payload arrived whole");
            text[..11].to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 180, "no bundle twice");
    assert_eq!(b.udp.stats().datagrams_refused, 0, "nothing corrupt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_keepalives_and_strangers_are_counted_and_dropped() {
    let b =
        node(2, UdpConfig { allow: Some(vec!["127.0.0.1".parse().expect("ip")]), ..UdpConfig::default() })
            .await;
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sender.send_to(&[0, 0, 0, 0], b.address).await.expect("keepalive");
    sender.send_to(b"not a bundle at all", b.address).await.expect("junk");
    sender.send_to(&[0x9f, 0x89, 0x07], b.address).await.expect("a truncated bundle");
    eventually("junk counted", || b.udp.stats().datagrams_refused == 2).await;
    assert_eq!(b.udp.stats().keepalives_received, 1);
    // From 127.0.0.2, not allowed.
    if let Ok(stranger) = UdpSocket::bind("127.0.0.2:0").await {
        stranger.send_to(b"whatever", b.address).await.expect("send");
        eventually("the stranger is counted", || b.udp.stats().datagrams_not_allowed == 1).await;
    }
    // A real bundle still goes through.
    let a = node(1, UdpConfig::default()).await;
    a.udp
        .add_peer(UdpPeer { address: b.address, node_id: Eid::ipn(2, 0), rate: None, sends_from: Vec::new() })
        .await
        .expect("peer");
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), b"after the junk").await;
    let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await;
    assert_eq!(got, vec![b"after the junk".to_vec()]);
    assert_eq!(b.agent.store().stats().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_cross_over_ipv6_and_a_node_bound_to_both_families_answers_each() {
    let (a_agent, _a_dir) = agent_on_disk(AgentConfig::new(Eid::ipn(1, 0)), StoreConfig::default()).await;
    let (b_agent, _b_dir) = agent_on_disk(AgentConfig::new(Eid::ipn(2, 0)), StoreConfig::default()).await;
    let (c_agent, _c_dir) = agent_on_disk(AgentConfig::new(Eid::ipn(3, 0)), StoreConfig::default()).await;
    let a = Udp::new(a_agent.clone(), UdpConfig::default());
    let b = Udp::new(b_agent.clone(), UdpConfig::default());
    let c = Udp::new(c_agent.clone(), UdpConfig::default());
    // A has a socket of each family; B is on ::1 only, C on 127.0.0.1 only.
    a.bind("127.0.0.1:0".parse().expect("address")).await.expect("bind v4");
    a.bind("[::1]:0".parse().expect("address")).await.expect("bind v6");
    let b_address = b.bind("[::1]:0".parse().expect("address")).await.expect("bind v6");
    let c_address = c.bind("127.0.0.1:0".parse().expect("address")).await.expect("bind v4");
    assert!(b_address.is_ipv6());
    a.add_peer(UdpPeer { address: b_address, node_id: Eid::ipn(2, 0), rate: None, sends_from: Vec::new() })
        .await
        .expect("peer");
    a.add_peer(UdpPeer { address: c_address, node_id: Eid::ipn(3, 0), rate: None, sends_from: Vec::new() })
        .await
        .expect("peer");
    send_streamed(&a_agent, Eid::ipn(1, 1), Eid::ipn(2, 1), &pattern(1000, 5)).await;
    send_streamed(&a_agent, Eid::ipn(1, 1), Eid::ipn(3, 1), &pattern(1000, 6)).await;
    assert_eq!(
        take_payloads(&b_agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await,
        vec![pattern(1000, 5)]
    );
    assert_eq!(
        take_payloads(&c_agent, &Eid::ipn(3, 1), 1, Duration::from_secs(30)).await,
        vec![pattern(1000, 6)]
    );
    assert_eq!(a.stats().bundles_sent, 2);
}

/// A test on a paused runtime clock cannot bound its waits with a timeout on that clock (the
/// runtime jumps to it while a store thread works), so a real-time watchdog ends the test
/// process if it hangs: a failure to look at, not a CI run that never ends. Dropped, it stands
/// down.
struct Watchdog {
    /// Dropped with the watchdog: its thread then stands down.
    _stand_down: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn arm(what: &'static str) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(120))
            {
                eprintln!("{what}: still waiting after 120 s of real time; the test hangs");
                std::process::exit(101);
            }
        });
        Watchdog { _stand_down: tx }
    }
}

/// The layers read the runtime's clock (`convergence_layers::clock`): on a paused clock a
/// paced peer's datagrams go at exactly its rate in virtual time, with no real wait. (Were the
/// token bucket refilled from `std::time::Instant`, it would never fill while its sender
/// sleeps in paused time: the sends would spin until real time caught up.)
#[tokio::test(start_paused = true)]
async fn a_paced_peer_is_paced_on_the_runtimes_clock_which_a_test_can_pause() {
    let _watchdog = Watchdog::arm("the paced peer");
    let a = node(1, UdpConfig { max_datagram: 1_000, ..UdpConfig::default() }).await;
    let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let peer = UdpPeer {
        address: receiver.local_addr().expect("address"),
        node_id: Eid::ipn(2, 0),
        rate: Some(1_000),
        sends_from: Vec::new(),
    };
    a.udp.add_peer(peer).await.expect("peer");
    let link = a.udp.link();
    let start = tokio::time::Instant::now();
    for i in 0..5u8 {
        let bundle = bpa::OutgoingBundle::from_bytes(bytes::Bytes::from(vec![i; 1_000]));
        link.send(&Eid::ipn(2, 0), bundle).await.expect("sent");
    }
    // The bucket holds one datagram: the first goes at once, each next a second later.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    let mut buffer = [0u8; 2_000];
    for i in 0..5u8 {
        let (n, _) = receiver.recv_from(&mut buffer).await.expect("datagram");
        assert_eq!(&buffer[..n], &[i; 1_000][..]);
    }
}

/// Two nodes on one virtual clock: their agents read DTN time from the runtime's clock
/// ([`bpa::RuntimeClock`]), their real UDP layers pace on it, their stores are real, and the
/// runtime's time is paused. What the pacing takes is exact in the agents' DTN time: the
/// datagrams' bytes past the bucket's burst, at the peer's rate — with no real wait and no
/// sleep in the test (the runtime advances its clock only when every task waits).
#[tokio::test(start_paused = true)]
async fn two_nodes_on_one_paused_clock_pace_bundles_in_the_agents_own_time() {
    let _watchdog = Watchdog::arm("two nodes on one paused clock");
    use bpa::testing::TestNode;
    const CAPACITY: u64 = 2_000;
    const RATE: u64 = 1_000;
    let clock = Arc::new(bpa::RuntimeClock::starting_at(800_000_000_000));
    let config = UdpConfig { max_datagram: CAPACITY as usize, ..UdpConfig::default() };
    let a = TestNode::new(AgentConfig::new(Eid::ipn(1, 0)), clock.clone()).await;
    let b = TestNode::new(AgentConfig::new(Eid::ipn(2, 0)), clock.clone()).await;
    let a_udp = Udp::new(a.agent.clone(), config.clone());
    let b_udp = Udp::new(b.agent.clone(), config);
    a_udp.bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    let b_address = b_udp.bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    let peer =
        UdpPeer { address: b_address, node_id: Eid::ipn(2, 0), rate: Some(RATE), sends_from: Vec::new() };
    a_udp.add_peer(peer).await.expect("peer");
    let mut subscription = b.agent.register(Eid::ipn(2, 1)).await.expect("register");
    let start = bpa::Clock::now_dtn_ms(&*clock);
    for i in 0..5u8 {
        let payload = bytes::Bytes::from(vec![i; 800]);
        let flags = bpa::BundleFlags::default();
        a.agent.send(Eid::ipn(1, 1), Eid::ipn(2, 1), payload, 3_600_000, flags).await.expect("send");
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let delivery = subscription.recv().await.expect("a delivery");
        got.push(delivery.bundle.payload()[0]);
        b.agent.acknowledge(&delivery).await.expect("acknowledge");
    }
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    let took = bpa::Clock::now_dtn_ms(&*clock) - start;
    let sent = a_udp.stats().bytes_sent;
    assert_eq!(a_udp.stats().bundles_sent, 5);
    // The last datagram may go once the bucket has refilled what the five took past its burst
    // (each sleep rounded up to the runtime's millisecond).
    let expected = (sent - CAPACITY) * 1_000 / RATE;
    assert!(
        (expected..=expected + 5).contains(&took),
        "took {took} ms, expected {expected} ms for {sent} bytes"
    );
}
