//! Exactly once and one policy (design §3.7): a bundle delivered or forwarded, arriving again
//! after a crash of the receiver (its acknowledgement to the sender lost), is acknowledged but
//! not delivered twice; the `[accept]` switches decide alike for bundles received whole and in
//! pieces.

use std::sync::Arc;

use bpa::agent::{Agent, AgentConfig, AgentError, Reception};
use bpa::bundle::{BundleBuilder, BundleError, CreationTimestamp, Eid, ParseOptions};
use bpa::store::{SqliteStore, StoreConfig};
use bpa::testing::{reopen_store, until_idle};
use bpa::time::ManualClock;
use bytes::Bytes;

const NOW: u64 = 800_000_000_000;

async fn open(dir: &std::path::Path, config: AgentConfig, clock: &Arc<ManualClock>) -> Agent<SqliteStore> {
    let clock: Arc<dyn bpa::time::Clock> = clock.clone();
    let (store, _) = reopen_store(dir, StoreConfig::default(), Arc::clone(&clock)).await;
    let agent = Agent::new(config, store, clock);
    agent.start().await.expect("start");
    agent
}

fn bundle_for(node: u32, sequence: u64, payload_len: usize) -> Bytes {
    BundleBuilder::new(
        Eid::ipn(9, 1),
        Eid::ipn(node, 5),
        CreationTimestamp { time: NOW - 10, sequence },
        3_600_000,
    )
    .payload(vec![(sequence % 251) as u8; payload_len])
    .build()
    .expect("valid")
    .encode()
    .into()
}

/// Receives `bytes` as a convergence layer does: whole when small, streamed when large.
async fn receive(agent: &Agent<SqliteStore>, bytes: &Bytes) -> Result<Reception, AgentError> {
    if bytes.len() <= 64 * 1024 {
        return agent.receive(bytes.clone()).await;
    }
    let mut pending = agent.begin_receive().await?;
    for chunk in bytes.chunks(50_000) {
        pending.write(chunk).await?;
    }
    pending.commit().await
}

#[tokio::test]
async fn a_delivered_bundle_arriving_again_after_a_restart_is_not_delivered_twice() {
    let clock = Arc::new(ManualClock::new(NOW));
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Eid::ipn(2, 5);
    let (small, large) = (bundle_for(2, 1, 100), bundle_for(2, 2, 300_000));
    {
        let agent = open(dir.path(), AgentConfig::new(Eid::ipn(2, 0)), &clock).await;
        drop(agent.watch(endpoint.clone()).await.expect("register"));
        for bytes in [&small, &large] {
            assert!(matches!(receive(&agent, bytes).await.expect("received"), Reception::Accepted(_)));
        }
        let payloads =
            bpa::testing::take_payloads(&agent, &endpoint, 2, std::time::Duration::from_secs(10)).await;
        assert_eq!(payloads.len(), 2);
        // The node "crashes" here: its acknowledgements to the sender never left.
    }
    let agent = open(dir.path(), AgentConfig::new(Eid::ipn(2, 0)), &clock).await;
    for bytes in [&small, &large] {
        assert_eq!(receive(&agent, bytes).await.expect("acknowledged"), Reception::AlreadyHandled);
    }
    assert!(agent.oldest_waiting(&endpoint).await.expect("look").is_none(), "nothing is delivered twice");
    assert_eq!(agent.store().stats().bundles, 0);
    assert_eq!(agent.stats().duplicates, 2);
    // Once expired, the record goes: housekeeping forgets it.
    clock.advance(3_600_000);
    agent.expire().await.expect("expire");
    let id = bpa::bundle::Bundle::parse(&small, &ParseOptions::default()).expect("parse").id();
    assert!(!bpa::store::MetadataStorage::known(agent.store(), &id).await.expect("known"));
}

#[tokio::test]
async fn a_forwarded_bundle_arriving_again_is_not_forwarded_again() {
    use bpa::cla::memory::MemoryLink;
    let clock = Arc::new(ManualClock::new(NOW));
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = open(dir_a.path(), AgentConfig::new(Eid::ipn(1, 0)), &clock).await;
    let b = open(dir_b.path(), AgentConfig::new(Eid::ipn(3, 0)), &clock).await;
    let (cla, _) = MemoryLink::new(b.clone());
    a.neighbour_up(Eid::ipn(3, 0), Arc::new(cla)).await.expect("up");
    let bytes = bundle_for(3, 7, 100);
    a.receive(bytes.clone()).await.expect("received");
    until_idle(&[&a, &b]).await;
    assert_eq!(a.store().stats().bundles, 0, "forwarded");
    assert_eq!(b.store().stats().bundles, 1, "B has it once");
    assert_eq!(a.receive(bytes).await.expect("acknowledged"), Reception::AlreadyHandled);
    until_idle(&[&a, &b]).await;
    assert_eq!(b.store().stats().bundles, 1);
    assert_eq!(a.stats().forwarded, 1, "not forwarded a second time");
}

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

/// `items` (already encoded) as a definite array, with a CRC-32C field when `crc`.
fn block(items: &[Vec<u8>], crc: bool) -> Vec<u8> {
    let mut out = Vec::new();
    cbor_head(&mut out, 4, items.len() as u64 + u64::from(crc));
    for item in items {
        out.extend(item);
    }
    if crc {
        out.extend([0x44, 0, 0, 0, 0]);
        let value = crc32c::crc32c(&out);
        let at = out.len() - 4;
        out[at..].copy_from_slice(&value.to_be_bytes());
    }
    out
}

fn uint(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    cbor_head(&mut out, 0, n);
    out
}

/// Bundles whose only fault is a leniency the node's `[accept]` switches may not grant,
/// encoded by hand (the builder makes only valid bundles).
fn lenient_only(kind: &str, payload_len: usize) -> Bytes {
    let (primary_crc, block_crc, time) = match kind {
        "no primary CRC" => (false, true, NOW - 10),
        "no CRC at all" => (false, false, NOW - 10),
        _ => (true, true, 0),
    };
    let ipn = |node: u64, service: u64| [vec![0x82, 0x02, 0x82], uint(node), uint(service)].concat();
    let crc_type = |crc: bool| uint(if crc { 2 } else { 0 });
    let primary = block(
        &[
            uint(7),
            uint(0),
            crc_type(primary_crc),
            ipn(4, 1),
            ipn(9, 1),
            ipn(9, 1),
            [vec![0x82], uint(time), uint(payload_len as u64 + u64::from(block_crc))].concat(),
            uint(60_000),
        ],
        primary_crc,
    );
    let mut data = Vec::new();
    cbor_head(&mut data, 2, payload_len as u64);
    data.extend(std::iter::repeat_n(1u8, payload_len));
    let payload = block(&[uint(1), uint(1), uint(0), crc_type(block_crc), data], block_crc);
    Bytes::from([vec![0x9f], primary, payload, vec![0xff]].concat())
}

#[tokio::test]
async fn the_accept_switches_decide_alike_at_1_kb_and_300_kb() {
    let clock = Arc::new(ManualClock::new(NOW));
    let dir = tempfile::tempdir().expect("tempdir");
    let strict = open(dir.path(), AgentConfig::new(Eid::ipn(4, 0)), &clock).await;
    for size in [1_000, 300_000] {
        for (kind, expected) in [
            ("no primary CRC", BundleError::MissingPrimaryCrc),
            ("no CRC at all", BundleError::MissingPrimaryCrc),
            ("creation time 0 without Bundle Age", BundleError::MissingBundleAge),
        ] {
            let bytes = lenient_only(kind, size);
            match receive(&strict, &bytes).await {
                Err(AgentError::Invalid(error)) => assert_eq!(error, expected, "{kind} at {size} bytes"),
                other => panic!("{kind} at {size} bytes: {other:?}"),
            }
        }
    }
    assert_eq!(strict.store().stats().bundles, 0);
    assert_eq!(strict.stats().refused, 6);
    drop(strict);
    let mut config = AgentConfig::new(Eid::ipn(4, 0));
    config.parse = ParseOptions::lenient();
    let lenient = open(dir.path(), config, &clock).await;
    for size in [1_000, 300_000] {
        for kind in ["no primary CRC", "no CRC at all", "creation time 0 without Bundle Age"] {
            let outcome = receive(&lenient, &lenient_only(kind, size)).await;
            assert!(matches!(outcome, Ok(Reception::Accepted(_))), "{kind} at {size} bytes: {outcome:?}");
        }
    }
}
