//! Serial links between two agents with stores on disk, over pseudo-terminals joined by a relay
//! the test runs: it throttles the line to a baud rate (a pty enforces none) and damages bytes
//! when asked. 1 MiB crosses at 115,200 baud in fragments; corrupted, inserted and dropped bytes
//! cost the frames they hit and nothing else; SLIP between two of our nodes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bpa::Eid;
use bpa::testing::{agent_on_disk, eventually, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::serial::{Framing, Serial, SerialConfig};

/// A pseudo-terminal: the master (the relay's end) and the slave's device path (the node's).
struct Pty {
    master: File,
    _slave: OwnedFd,
    path: String,
}

fn pty() -> Pty {
    let opened = nix::pty::openpty(None, None).expect("openpty");
    let path =
        std::fs::read_link(format!("/proc/self/fd/{}", opened.slave.as_raw_fd())).expect("the slave's path");
    Pty { master: File::from(opened.master), _slave: opened.slave, path: path.display().to_string() }
}

/// What the relay does to the bytes it passes.
#[derive(Clone, Default)]
struct Damage {
    /// Every `n`th byte flipped / doubled / dropped (0: never).
    flip_every: u64,
    insert_every: u64,
    drop_every: u64,
}

/// Copies `from` to `to` at `baud` (10 bits a byte), damaging as asked, until either end closes
/// or `stop` is set.
fn relay(
    mut from: File,
    mut to: File,
    baud: u64,
    damage: Damage,
    stop: Arc<AtomicBool>,
    passed: Arc<AtomicU64>,
) {
    std::thread::spawn(move || {
        let bytes_per_second = baud / 10;
        // When the line has sent what it was given: no credit builds up while it is idle.
        let mut free_at = Instant::now();
        let mut seen = 0u64;
        let mut buffer = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            let n = match from.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n + 4);
            for &byte in &buffer[..n] {
                seen += 1;
                let hit = |every: u64| every > 0 && seen.is_multiple_of(every);
                if hit(damage.drop_every) {
                    continue;
                }
                out.push(if hit(damage.flip_every) { byte ^ 0x24 } else { byte });
                if hit(damage.insert_every) {
                    out.push(0x5a);
                }
            }
            // The line's pace: these bytes are through no sooner than the baud rate allows.
            free_at = free_at.max(Instant::now())
                + Duration::from_secs_f64(out.len() as f64 / bytes_per_second as f64);
            if let Some(wait) = free_at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&out).is_err() {
                return;
            }
            passed.fetch_add(out.len() as u64, Ordering::Relaxed);
        }
    });
}

struct Node {
    agent: Agent<SqliteStore>,
    link: Serial<Agent<SqliteStore>>,
    _dir: tempfile::TempDir,
}

async fn node(n: u32, peer: Option<u32>, path: &str, framing: Framing, max_frame: usize) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (agent, dir) = agent_on_disk(AgentConfig::new(Eid::ipn(n, 0)), StoreConfig::default()).await;
    let mut config = SerialConfig::new(path, 115_200, peer.map(|p| Eid::ipn(p, 0)));
    config.framing = framing;
    config.max_frame = max_frame;
    config.reopen = Duration::from_millis(200);
    let link = Serial::new(agent.clone(), config);
    link.start();
    Node { agent, link, _dir: dir }
}

/// Two nodes joined through a relay at `baud` with `damage` on the way A → B.
async fn line(
    framing: Framing,
    baud: u64,
    damage: Damage,
    max_frame: usize,
) -> (Node, Node, Arc<AtomicBool>) {
    line_with(framing, baud, damage, max_frame, Some(1)).await
}

/// As [`line`], B knowing its peer's node ID from the configuration or not (`b_peer`).
async fn line_with(
    framing: Framing,
    baud: u64,
    damage: Damage,
    max_frame: usize,
    b_peer: Option<u32>,
) -> (Node, Node, Arc<AtomicBool>) {
    let (a_pty, b_pty) = (pty(), pty());
    let stop = Arc::new(AtomicBool::new(false));
    let passed = Arc::new(AtomicU64::new(0));
    let a_master = a_pty.master.try_clone().expect("clone");
    let b_master = b_pty.master.try_clone().expect("clone");
    relay(
        a_master,
        b_pty.master.try_clone().expect("clone"),
        baud,
        damage,
        Arc::clone(&stop),
        Arc::clone(&passed),
    );
    relay(
        b_master,
        a_pty.master.try_clone().expect("clone"),
        baud,
        Damage::default(),
        Arc::clone(&stop),
        passed,
    );
    let a = node(1, Some(2), &a_pty.path, framing, max_frame).await;
    let b = node(2, b_peer, &b_pty.path, framing, max_frame).await;
    // The ptys live as long as the test's nodes: leaked on purpose (closed at exit).
    std::mem::forget((a_pty, b_pty));
    eventually("both ends are open", || a.link.stats().open && b.link.stats().open).await;
    (a, b, stop)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_1_mib_crosses_at_115200_baud_in_fragments_and_arrives_intact() {
    let (a, b, stop) = line(Framing::Cobs, 115_200, Damage::default(), 4096).await;
    let payload = pattern(1 << 20, 3);
    let started = Instant::now();
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), &payload).await;
    let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(300)).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(got == vec![payload], "1 MiB reassembled byte for byte");
    let stats = a.link.stats();
    assert!(stats.frames_sent >= 256, "sent in frames of at most 4,096 bytes: {stats:?}");
    let received = b.link.stats();
    assert_eq!((received.crc_failures, received.malformed, received.too_long), (0, 0, 0));
    // The line is throttled to 11,520 bytes/s: this cannot have been faster than that.
    assert!(seconds >= (1 << 20) as f64 / 11_520.0 * 0.95, "{seconds} s");
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_inserted_and_dropped_bytes_cost_only_the_frames_they_hit() {
    for (what, damage) in [
        ("flipped", Damage { flip_every: 7_001, ..Damage::default() }),
        ("inserted", Damage { insert_every: 7_001, ..Damage::default() }),
        ("dropped", Damage { drop_every: 7_001, ..Damage::default() }),
    ] {
        let (a, b, stop) = line(Framing::Cobs, 2_000_000, damage, 1024).await;
        // 40 bundles of 900 bytes: about 37 KB on the line, so about 5 frames are hit.
        for i in 0..40u8 {
            send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), &pattern(900, i)).await;
        }
        eventually("A has sent everything", || a.agent.store().stats().bundles == 0).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = b.link.stats();
        let dropped = stats.crc_failures + stats.malformed + stats.too_long;
        let mut got =
            take_payloads(&b.agent, &Eid::ipn(2, 1), (40 - dropped) as usize, Duration::from_secs(30)).await;
        got.sort();
        let mut expected: Vec<Vec<u8>> = (0..40u8).map(|i| pattern(900, i)).collect();
        expected.sort();
        assert!(dropped >= 1, "{what}: some frames were hit: {stats:?}");
        assert!(dropped <= 10, "{what}: only the frames hit were lost: {stats:?}");
        assert_eq!(stats.frames_received, 40 - dropped, "{what}: every other frame arrived: {stats:?}");
        assert!(got.iter().all(|p| expected.contains(p)), "{what}: nothing damaged was delivered");
        assert_eq!(stats.refused, 0, "{what}: no damaged frame reached the agent");
        stop.store(true, Ordering::Relaxed);
        a.link.shutdown();
        b.link.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slip_framing_between_two_of_our_nodes() {
    let (a, b, stop) = line(Framing::Slip, 1_000_000, Damage::default(), 2048).await;
    let payloads = [pattern(1, 1), pattern(2000, 2), pattern(50_000, 3)];
    for p in &payloads {
        send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), p).await;
    }
    // And back.
    send_streamed(&b.agent, Eid::ipn(2, 1), Eid::ipn(1, 1), &pattern(3000, 4)).await;
    let mut got = take_payloads(&b.agent, &Eid::ipn(2, 1), 3, Duration::from_secs(60)).await;
    got.sort_by_key(Vec::len);
    assert!(got == payloads.to_vec());
    assert_eq!(
        take_payloads(&a.agent, &Eid::ipn(1, 1), 1, Duration::from_secs(60)).await,
        vec![pattern(3000, 4)]
    );
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_is_missing_is_opened_once_it_appears() {
    let dir = tempfile::tempdir().expect("dir");
    let link_path = dir.path().join("ttyRADIO");
    let (agent, _store) = agent_on_disk(AgentConfig::new(Eid::ipn(1, 0)), StoreConfig::default()).await;
    let mut config = SerialConfig::new(link_path.display().to_string(), 9600, Some(Eid::ipn(2, 0)));
    config.reopen = Duration::from_millis(100);
    let link = Serial::new(agent.clone(), config);
    link.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!link.stats().open);
    assert!(agent.neighbours().is_empty());
    // The radio is plugged in: a symlink to a pty stands for its device node.
    let radio = pty();
    std::os::unix::fs::symlink(&radio.path, &link_path).expect("symlink");
    eventually("the device is opened", || link.stats().open).await;
    assert!(agent.neighbours().iter().any(|n| n.node_id == Eid::ipn(2, 0)));
    link.shutdown();
    eventually("closed at shutdown", || !link.stats().open).await;
    assert!(agent.neighbours().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_not_configured_is_learnt_from_its_first_bundle() {
    let (a, b, stop) = line_with(Framing::Cobs, 1_000_000, Damage::default(), 4096, None).await;
    assert_eq!(b.link.peer(), None);
    assert!(b.agent.neighbours().is_empty(), "no neighbour before the peer has said who it is");
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), b"hello").await;
    assert_eq!(
        take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(30)).await,
        vec![b"hello".to_vec()]
    );
    assert_eq!(b.link.peer(), Some(Eid::ipn(1, 0)), "named by the Previous Node block");
    // And B can answer over the line.
    send_streamed(&b.agent, Eid::ipn(2, 1), Eid::ipn(1, 1), b"hello back").await;
    assert_eq!(
        take_payloads(&a.agent, &Eid::ipn(1, 1), 1, Duration::from_secs(30)).await,
        vec![b"hello back".to_vec()]
    );
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_crosses_a_9600_baud_line_in_small_frames() {
    let (a, b, stop) = line(Framing::Cobs, 9_600, Damage::default(), 1024).await;
    let payload = pattern(3000, 9);
    let started = Instant::now();
    send_streamed(&a.agent, Eid::ipn(1, 1), Eid::ipn(2, 1), &payload).await;
    let got = take_payloads(&b.agent, &Eid::ipn(2, 1), 1, Duration::from_secs(60)).await;
    assert!(got == vec![payload], "3,000 bytes reassembled from 1 KiB frames");
    assert!(a.link.stats().frames_sent >= 3, "{:?}", a.link.stats());
    // At 960 bytes/s the line cannot have carried it faster than that.
    let seconds = started.elapsed().as_secs_f64();
    assert!(seconds >= 3000.0 / 960.0 * 0.95, "{seconds} s");
    stop.store(true, Ordering::Relaxed);
}
