//! Reassembly at scale (issue 13, item 3): 1,000 fragments of a 64 MiB ADU arrive shuffled,
//! duplicated and overlapping another fragmentation of the same ADU; the node delivers one
//! bundle, byte-identical, and its memory does not grow with the ADU (each arrival reads
//! fragment metadata, and the whole bundle is streamed into the store once).

use std::sync::Arc;

use bpa::agent::AgentConfig;
use bpa::agent::fragment;
use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::store::PayloadContent;
use bpa::testing::{TestNode, peak_rss_mib};
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

    let node = TestNode::new(AgentConfig::new(Eid::ipn(2, 0)), Arc::new(ManualClock::new(NOW))).await;
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

/// A fragment of the ADU `(ipn:1.1, NOW, 1)` for `ipn:2.5`: `payload` at `offset` of an ADU of
/// `total` bytes.
fn piece(offset: u64, total: u64, payload: &[u8]) -> Bytes {
    BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 5),
        CreationTimestamp { time: NOW, sequence: 1 },
        3_600_000,
    )
    .fragment(offset, total)
    .payload(payload.to_vec())
    .build()
    .expect("fragment")
    .encode()
    .into()
}

/// Issue 25, fault 7: fragments forged in the ADU's name — claiming another total length for
/// the very first fragment, or an offset far past the end — arrive before the genuine ones; the
/// genuine set still makes one delivery, byte for byte. (Before the fix: the genuine first
/// fragment was taken for a duplicate of the forged one, and the ADU never completed.) A forger
/// who sends a *complete* ADU, or a whole bundle, in the source's name first still takes the
/// bundle's ID: only BPSec (RFC 9172) tells the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_fragments_neither_hide_nor_block_a_genuine_adu() {
    let adu: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let total = adu.len() as u64;
    let node = TestNode::new(AgentConfig::new(Eid::ipn(2, 0)), Arc::new(ManualClock::new(NOW))).await;
    // The forgeries: the genuine first fragment's ID with another ADU length, and a fragment
    // a terabyte in.
    let forged = [piece(0, total * 2, &[0xee; 2_500]), piece(1 << 40, (1 << 40) + 100, &[0xee; 100])];
    for bundle in &forged {
        node.receive(bundle.clone()).await.expect("a forged fragment is stored like any other");
    }
    // The genuine fragments, in an order of their own.
    for offset in [7_500u64, 0, 5_000, 2_500] {
        let at = offset as usize;
        let reception = node.receive(piece(offset, total, &adu[at..at + 2_500])).await.expect("receive");
        assert!(
            matches!(reception, bpa::agent::Reception::Accepted(_)),
            "the genuine fragment at {offset} is not taken for a duplicate of a forged one: {reception:?}"
        );
    }
    assert_eq!(node.stats().reassembled, 1);
    let endpoint = Eid::ipn(2, 5);
    let mut delivered = Vec::new();
    while let Some((id, header, content)) = node.oldest_waiting(&endpoint).await.expect("read") {
        assert_eq!(header.primary.fragment, None);
        let bytes = match content {
            PayloadContent::Memory(bytes) => bytes.to_vec(),
            PayloadContent::File(mut reader) => {
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes).await.expect("read");
                bytes
            }
        };
        delivered.push(bytes);
        assert!(node.acknowledge_stored(&endpoint, id).await.expect("ack"));
    }
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0] == adu, "the genuine ADU, byte for byte");
    // What the forgeries left (two incomplete ADUs) waits to expire; nothing of the genuine.
    assert_eq!(node.store().stats().bundles, 2);
}
