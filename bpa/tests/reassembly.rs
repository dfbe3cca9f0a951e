//! Reassembly at scale (issue 13, item 3): 1,000 fragments of a 64 MiB ADU arrive shuffled,
//! duplicated and overlapping another fragmentation of the same ADU; the node delivers one
//! bundle, byte-identical, and its memory does not grow with the ADU (each arrival reads
//! fragment metadata, and the whole bundle is streamed into the store once).

use std::sync::Arc;

use bpa::agent::fragment::fragment;
use bpa::agent::node::{Agent, AgentConfig};
use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::store::{PayloadContent, SqliteStore, StoreConfig};
use bpa::testing::peak_rss_mib;
use bpa::time::ManualClock;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

const NOW: u64 = 800_000_000_000;
const ADU: usize = 64 << 20;

/// A deterministic generator (xorshift), for the payload and the shuffle.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_fragments_of_64_mib_shuffled_duplicated_and_overlapping_make_one_delivery() {
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut adu = vec![0u8; ADU];
    for chunk in adu.chunks_mut(8) {
        let value = rng.next().to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
    let adu = Bytes::from(adu);
    let whole = BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 5),
        CreationTimestamp { time: NOW, sequence: 1 },
        3_600_000,
    )
    .payload(adu.clone())
    .build()
    .expect("bundle");
    // 1,000 fragments, plus every 9th of a second fragmentation at another size (overlaps).
    let fine = fragment(&whole, ADU / 1000).expect("fragments");
    assert!(fine.len() >= 1000, "{} fragments", fine.len());
    let coarse = fragment(&whole, ADU / 700).expect("fragments");
    let mut arrivals: Vec<&bpa::bundle::Bundle> = fine.iter().collect();
    arrivals.extend(coarse.iter().step_by(9));
    // Every 10th fine fragment twice.
    arrivals.extend(fine.iter().step_by(10));
    for i in (1..arrivals.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        arrivals.swap(i, j);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn bpa::time::Clock> = Arc::new(ManualClock::new(NOW));
    let (store, _) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&clock)).await.expect("store");
    let node = Agent::new(AgentConfig::new(Eid::ipn(2, 0)), store, clock);
    let before = peak_rss_mib();
    for fragment in arrivals {
        // One fragment in memory at a time, as a convergence layer hands them over.
        node.receive(Bytes::from(fragment.encode())).await.expect("receive");
    }
    let grown = peak_rss_mib() - before;
    eprintln!("peak memory grew by {grown:.1} MiB during the reassembly");
    assert_eq!(node.stats().reassembled, 1, "reassembled once");
    assert!(grown < 32.0, "peak memory grew by {grown:.1} MiB while a 64 MiB ADU was reassembled");

    // One bundle waits for the application, the whole ADU; no fragment is left.
    assert_eq!(node.store().stats().bundles, 1);
    let endpoint = Eid::ipn(2, 5);
    let (id, header, content) = node.oldest_waiting(&endpoint).await.expect("read").expect("a bundle");
    assert_eq!(header.primary.fragment, None);
    assert_eq!(header.payload.data_length, ADU as u64);
    let PayloadContent::File(mut reader) = content else { panic!("a 64 MiB payload is in a file") };
    let mut at = 0usize;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer).await.expect("read payload");
        if n == 0 {
            break;
        }
        assert!(buffer[..n] == adu[at..at + n], "payload differs within bytes {at}..{}", at + n);
        at += n;
    }
    assert_eq!(at, ADU);
    assert!(node.acknowledge_stored(&endpoint, id).await.expect("ack"));
    assert_eq!(node.store().stats().bundles, 0);
}
