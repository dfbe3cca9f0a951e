//! Test helpers (feature `testing`): proptest strategies for valid bundles and EIDs, shared by
//! the property tests of this crate and the cross-codec tests of `interop-tests`, and the test
//! node (an agent over a real store in a temporary directory) the integration tests share.

use bytes::Bytes;
use proptest::prelude::*;

use crate::bundle::{BlockFlags, Bundle, BundleBuilder, BundleFlags, CrcType, CreationTimestamp, Eid};

/// Any valid EID except the null endpoint. Node numbers avoid 2^32-1, which Hardy reserves for
/// "the local node", and service numbers stay within 32 bits as RFC 9758 implementations expect.
pub fn arb_node_eid() -> impl Strategy<Value = Eid> {
    let service = 0u64..=u64::from(u32::MAX);
    prop_oneof![
        (1u32..u32::MAX, service.clone()).prop_map(|(node, service)| Eid::ipn(node, service)),
        (1u32..u32::MAX, 1u32..u32::MAX, service).prop_map(|(allocator, node, service)| Eid::Ipn {
            allocator,
            node,
            service
        }),
        ("[a-zA-Z0-9._-]{1,24}", "~?[a-zA-Z0-9/._-]{0,24}")
            .prop_map(|(node, demux)| Eid::Dtn { node: node.into(), demux: demux.into() }),
    ]
}

/// Any valid EID, the null endpoint included.
pub fn arb_eid() -> impl Strategy<Value = Eid> {
    prop_oneof![1 => Just(Eid::Null), 6 => arb_node_eid()]
}

/// Options for [`arb_bundle_with`]: what the generated bundles may contain.
#[derive(Debug, Clone, Copy)]
pub struct BundleShape {
    /// Allow `ipn:A.N.S` with a non-zero allocator.
    pub allocators: bool,
    /// Allow dtn-scheme EIDs.
    pub dtn_scheme: bool,
    /// Allow unrecognised bundle flag bits.
    pub unknown_flags: bool,
    /// Allow the CRC-16 type.
    pub crc16: bool,
    /// Allow extension blocks of unrecognised (private) types.
    pub unknown_blocks: bool,
    /// Block flags unrecognised blocks may carry (a processing node deletes a bundle whose
    /// unrecognised block says "delete bundle if block can't be processed", RFC 9171 §4.2.4).
    pub unknown_block_flags: u64,
    /// Largest payload.
    pub max_payload: usize,
}

impl Default for BundleShape {
    fn default() -> Self {
        BundleShape {
            allocators: true,
            dtn_scheme: true,
            unknown_flags: true,
            crc16: true,
            unknown_blocks: true,
            unknown_block_flags: 0x7f,
            max_payload: 300,
        }
    }
}

fn eid_for(shape: BundleShape) -> BoxedStrategy<Eid> {
    arb_eid()
        .prop_filter("shape", move |e| match e {
            Eid::Ipn { allocator, .. } => shape.allocators || *allocator == 0,
            Eid::Dtn { .. } => shape.dtn_scheme,
            Eid::Null => true,
        })
        .boxed()
}

fn crc_for(shape: BundleShape, allow_none: bool) -> BoxedStrategy<CrcType> {
    let mut choices = vec![CrcType::Crc32c];
    if shape.crc16 {
        choices.push(CrcType::Crc16);
    }
    if allow_none {
        choices.push(CrcType::None);
    }
    proptest::sample::select(choices).boxed()
}

/// Valid bundles of every kind the builder makes.
pub fn arb_bundle() -> impl Strategy<Value = Bundle> {
    arb_bundle_with(BundleShape::default())
}

/// Valid bundles restricted to `shape`.
pub fn arb_bundle_with(shape: BundleShape) -> impl Strategy<Value = Bundle> {
    let primary = (
        eid_for(shape),
        eid_for(shape),
        eid_for(shape),
        prop_oneof![1 => Just(0u64), 4 => 1u64..(1 << 45)],
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        crc_for(shape, false),
        crc_for(shape, true),
    );
    let extensions = (
        proptest::option::of(1u64..=255),
        proptest::option::of(any::<u64>()),
        proptest::option::of(eid_for(shape)),
        proptest::collection::vec(
            (192u64..=255, 0u64..0x80, proptest::collection::vec(any::<u8>(), 0..24)),
            0..3,
        ),
        proptest::option::of((0u64..(1 << 40), 0u64..1000)),
        proptest::collection::vec(any::<u8>(), 0..=shape.max_payload),
    );
    (primary, extensions).prop_map(
        move |(
            (source, destination, report_to, time, sequence, lifetime, flag_bits, primary_crc, block_crc),
            (hop_limit, age, previous, unknown, fragment, payload),
        )| {
            let mut flags = if shape.unknown_flags { flag_bits } else { flag_bits & 0x07_4067 };
            flags &= !BundleFlags::IS_FRAGMENT;
            let anonymous = source.is_null();
            if flags & BundleFlags::ADMIN_RECORD != 0 || anonymous {
                flags &= !BundleFlags::REPORT_REQUESTS;
            }
            if anonymous {
                flags |= BundleFlags::MUST_NOT_FRAGMENT;
            }
            let mut b =
                BundleBuilder::new(source, destination, CreationTimestamp { time, sequence }, lifetime)
                    .report_to(report_to)
                    .flags(BundleFlags(flags))
                    .primary_crc(primary_crc)
                    .block_crc(block_crc);
            if let Some(limit) = hop_limit {
                b = b.hop_limit(limit);
            }
            if let Some(age) = age.or(if time == 0 { Some(0) } else { None }) {
                b = b.bundle_age(age);
            }
            if let Some(previous) = previous {
                b = b.previous_node(&previous.node_id());
            }
            let restrict = flags & BundleFlags::ADMIN_RECORD != 0 || anonymous;
            for (block_type, block_flags, data) in unknown.into_iter().filter(|_| shape.unknown_blocks) {
                let block_flags = block_flags & shape.unknown_block_flags;
                let block_flags =
                    if restrict { block_flags & !BlockFlags::REPORT_IF_UNPROCESSABLE } else { block_flags };
                b = b.extension(block_type, BlockFlags(block_flags), Bytes::from(data));
            }
            if let Some((offset, extra)) = fragment
                && !anonymous
                && flags & BundleFlags::MUST_NOT_FRAGMENT == 0
            {
                b = b.fragment(offset, offset + payload.len() as u64 + extra);
            }
            b.payload(payload).build().expect("the strategy only makes valid bundles")
        },
    )
}

/// A node of a test: an agent over a real SQLite store in a temporary directory of its own,
/// removed when the node drops. Derefs to its agent.
#[derive(Debug)]
pub struct TestNode {
    /// The node's agent.
    pub agent: crate::agent::node::Agent<crate::store::SqliteStore>,
    /// Its data directory, removed when dropped.
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// A node with `config` on `clock` (a `ManualClock` for tests on virtual time), its store on
    /// the store's defaults.
    pub async fn new(
        config: crate::agent::node::AgentConfig,
        clock: std::sync::Arc<dyn crate::time::Clock>,
    ) -> TestNode {
        TestNode::with_store(config, crate::store::StoreConfig::default(), clock).await
    }

    /// A node with `config` and a store configured by `store`, on `clock`.
    pub async fn with_store(
        config: crate::agent::node::AgentConfig,
        store: crate::store::StoreConfig,
        clock: std::sync::Arc<dyn crate::time::Clock>,
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (store, _) = reopen_store(dir.path(), store, std::sync::Arc::clone(&clock)).await;
        TestNode { agent: crate::agent::node::Agent::new(config, store, clock), dir }
    }
}

impl std::ops::Deref for TestNode {
    type Target = crate::agent::node::Agent<crate::store::SqliteStore>;

    fn deref(&self) -> &Self::Target {
        &self.agent
    }
}

/// Opens the store in `dir` (made if new). An agent just dropped may leave tasks (a send
/// finishing) holding its store, and with it the directory's lock, a moment longer: a new
/// process would not see them, so this waits up to 5 s for the lock. Panics on any other error.
pub async fn reopen_store(
    dir: &std::path::Path,
    config: crate::store::StoreConfig,
    clock: std::sync::Arc<dyn crate::time::Clock>,
) -> (crate::store::SqliteStore, crate::store::RecoveryReport) {
    let mut attempts = 0;
    loop {
        match crate::store::SqliteStore::open(dir, config.clone(), std::sync::Arc::clone(&clock)).await {
            Ok(opened) => return opened,
            Err(crate::store::StoreError::Locked { .. }) if attempts < 500 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(error) => panic!("the store in {} does not open: {error}", dir.display()),
        }
    }
}

/// An agent with a real SQLite store in a new temporary directory (removed when the returned
/// guard drops), on the system clock, for tests that run nodes in one process.
pub async fn agent_on_disk(
    config: crate::agent::node::AgentConfig,
    store: crate::store::StoreConfig,
) -> (crate::agent::node::Agent<crate::store::SqliteStore>, tempfile::TempDir) {
    let node = TestNode::with_store(config, store, std::sync::Arc::new(crate::time::SystemClock)).await;
    (node.agent, node.dir)
}

/// Sends `payload` from `source` to `destination` through `agent`, streamed into the store in
/// 1 MiB chunks as an application's large payload is; lifetime one hour. Panics on failure.
pub async fn send_streamed<S: crate::store::Store>(
    agent: &crate::agent::node::Agent<S>,
    source: Eid,
    destination: Eid,
    payload: &[u8],
) {
    let request = crate::agent::outgoing::SendRequest {
        source,
        destination,
        lifetime_ms: 3_600_000,
        flags: BundleFlags::default(),
        custody: false,
    };
    let mut pending = agent.begin_send(request, payload.len() as u64).await.expect("begin send");
    for chunk in payload.chunks(1 << 20) {
        pending.write(chunk).await.expect("write a payload chunk");
    }
    pending.commit().await.expect("commit the bundle");
}

/// The payloads of the next `count` bundles waiting for `endpoint`, each read (streamed from
/// its file if large) and acknowledged. Panics if they have not all arrived `within`.
pub async fn take_payloads<S: crate::store::Store>(
    agent: &crate::agent::node::Agent<S>,
    endpoint: &Eid,
    count: usize,
    within: std::time::Duration,
) -> Vec<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut watcher = agent.watch(endpoint.clone()).await.expect("watch the endpoint");
    let deadline = tokio::time::Instant::now() + within;
    let mut payloads = Vec::new();
    while payloads.len() < count {
        match agent.oldest_waiting(endpoint).await.expect("the oldest waiting bundle") {
            Some((id, _, content)) => {
                payloads.push(match content {
                    crate::store::PayloadContent::Memory(bytes) => bytes.to_vec(),
                    crate::store::PayloadContent::File(mut file) => {
                        let mut out = Vec::new();
                        file.read_to_end(&mut out).await.expect("read the payload");
                        out
                    }
                });
                assert!(agent.acknowledge_stored(endpoint, id).await.expect("acknowledge"));
            }
            None => {
                if tokio::time::timeout_at(deadline, watcher.arrived()).await.is_err() {
                    panic!("{} of {count} bundles arrived at {endpoint} within {within:?}", payloads.len());
                }
            }
        }
    }
    payloads
}

/// Waits until `check` holds, for at most 30 s (the pipeline works in spawned tasks and the
/// store's threads); panics naming `what` if it never does.
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..6000 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("never happened: {what}");
}

/// Waits until every one of `agents` is idle ([`Agent::is_idle`]), seen so on two looks in a
/// row with nothing counted or stored in between (a bundle one agent hands another shows in the
/// other's counters, so an agent seen idle before it arrived is looked at again). This is
/// "nothing more happens" as a fact, for a test to assert on afterwards, not a pause. Panics
/// after 30 s, naming the agents still busy.
///
/// [`Agent::is_idle`]: crate::agent::node::Agent::is_idle
pub async fn until_idle<S: crate::store::Store>(agents: &[&crate::agent::node::Agent<S>]) {
    let look = || -> (bool, Vec<(crate::agent::AgentStats, u64)>) {
        let idle = agents.iter().all(|agent| agent.is_idle());
        let seen = agents.iter().map(|agent| (agent.stats(), agent.store().stats().bundles)).collect();
        (idle, seen)
    };
    let mut last = look();
    for _ in 0..30_000 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let now = look();
        if last.0 && now.0 && last.1 == now.1 {
            return;
        }
        last = now;
    }
    let busy: Vec<String> =
        agents.iter().filter(|agent| !agent.is_idle()).map(|agent| agent.node_id().to_string()).collect();
    panic!("the agents never came to rest; busy: {busy:?}");
}

/// This process's peak resident memory (`VmHWM`) in MiB, for tests that bound memory: compare
/// it before and after the work (each test binary of nextest is its own process).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
