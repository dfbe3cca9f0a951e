//! Store benchmarks (issue 3), one scenario per process so peak RSS is the scenario's own.
//! `scripts/bench-store` runs them all and prints the table for docs/benchmarks.md.
//!
//!   cargo bench -p bpa --bench store -- inserts WRITERS COUNT DIR   durable inserts/s of 100 B bundles
//!   cargo bench -p bpa --bench store -- stream MIB DIR              streaming insert + read of one bundle
//!   cargo bench -p bpa --bench store -- fill COUNT DIR              store COUNT small bundles
//!   cargo bench -p bpa --bench store -- open DIR                    open (with recovery), RSS, next to expire

use std::sync::Arc;
use std::time::Instant;

use bpa::bundle::cbor::{self};
use bpa::bundle::{BundleBuilder, CrcState, CrcType, CreationTimestamp, Eid, PrimaryBlock};
use bpa::store::{BundleData, BundleState, SqliteStore, StoreConfig};
use bpa::time::ManualClock;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

const NOW: u64 = 800_000_000_000;

/// A memory figure of this process from /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

fn small_bundle(sequence: u64) -> Bytes {
    BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 1),
        CreationTimestamp { time: NOW, sequence },
        3_600_000 + sequence % 1000,
    )
    .hop_limit(32)
    .payload(vec![(sequence % 251) as u8; 100])
    .build()
    .expect("valid")
    .encode()
    .into()
}

async fn open(dir: &str) -> SqliteStore {
    SqliteStore::open(dir, StoreConfig::default(), Arc::new(ManualClock::new(NOW))).await.expect("open").0
}

async fn inserts(writers: u64, count: u64, dir: &str) {
    let store = open(dir).await;
    let bundles: Vec<Bytes> = (0..count).map(small_bundle).collect();
    let bundles = Arc::new(bundles);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let bundles = Arc::clone(&bundles);
            tokio::spawn(async move {
                let mut i = w;
                while i < count {
                    store
                        .insert(bundles[i as usize].clone(), BundleState::WaitingForRoute)
                        .await
                        .expect("insert");
                    i += writers;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "inserts writers={writers} count={count} seconds={secs:.3} per_second={:.0}",
        count as f64 / secs
    );
    store.close().await;
}

async fn stream(mib: u64, dir: &str) {
    let store = open(dir).await;
    let payload_len = mib << 20;
    let primary = PrimaryBlock {
        flags: Default::default(),
        crc_type: CrcType::Crc32c,
        destination: Eid::ipn(2, 1),
        source: Eid::ipn(1, 1),
        report_to: Eid::Null,
        creation: CreationTimestamp { time: NOW, sequence: 1 },
        lifetime: 3_600_000,
        fragment: None,
    };
    // The encoded bundle, made on the fly: head, payload chunks, CRC and break.
    let mut head = vec![cbor::INDEFINITE_ARRAY];
    primary.encode(&mut head);
    let block_start = head.len();
    head.extend_from_slice(&[0x86, 0x01, 0x01, 0x00, 0x02]);
    cbor::write_head(&mut head, cbor::MAJOR_BYTES, payload_len);
    let mut crc = CrcState::new(CrcType::Crc32c);
    crc.update(&head[block_start..]);
    let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i * 13) as u8).collect();
    let start = Instant::now();
    let mut pending = store.begin_insert().await.expect("begin");
    pending.write(&head).await.expect("write");
    for _ in 0..mib {
        crc.update(&chunk);
        pending.write(&chunk).await.expect("write");
    }
    crc.update(&[0x44, 0, 0, 0, 0]);
    let value = crc.finalize().to_be_bytes();
    pending.write(&[0x44, value[0], value[1], value[2], value[3], 0xff]).await.expect("write");
    let id = pending.commit(BundleState::WaitingForRoute).await.expect("commit").id().expect("stored");
    let insert_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let BundleData::File { mut file, length, .. } = store.open_data(id).await.expect("open data") else {
        panic!("a large bundle is in a file")
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    assert_eq!(read, length);
    let read_secs = start.elapsed().as_secs_f64();
    println!(
        "stream mib={mib} insert_mib_per_s={:.0} read_mib_per_s={:.0} peak_rss_mib={:.1}",
        mib as f64 / insert_secs,
        mib as f64 / read_secs,
        peak_rss_mib()
    );
    store.close().await;
}

async fn fill(count: u64, dir: &str) {
    let store = open(dir).await;
    let start = Instant::now();
    let writers = 64;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut i = w;
                while i < count {
                    store.insert(small_bundle(i), BundleState::WaitingForRoute).await.expect("insert");
                    i += writers;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let secs = start.elapsed().as_secs_f64();
    println!("fill count={count} seconds={secs:.1} per_second={:.0}", count as f64 / secs);
    store.close().await;
}

async fn open_stored(dir: &str) {
    let start = Instant::now();
    let store = open(dir).await;
    let open_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let next = store.next_expiring(None, 100).await.expect("next expiring");
    let next_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(next.len(), 100.min(store.stats().bundles as usize));
    println!(
        "open bundles={} open_seconds={open_secs:.2} rss_mib={:.1} peak_rss_mib={:.1} next_expiring_100_ms={next_ms:.2}",
        store.stats().bundles,
        rss_mib(),
        peak_rss_mib()
    );
    store.close().await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| panic!("argument {i} must be a number"));
    match arg(0).as_str() {
        "inserts" => runtime.block_on(inserts(num(1), num(2), &arg(3))),
        "stream" => runtime.block_on(stream(num(1), &arg(2))),
        "fill" => runtime.block_on(fill(num(1), &arg(2))),
        "open" => runtime.block_on(open_stored(&arg(1))),
        _ => {
            eprintln!("usage: store (inserts WRITERS COUNT DIR | stream MIB DIR | fill COUNT DIR | open DIR)")
        }
    }
}
