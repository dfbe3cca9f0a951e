//! Bundles per second through one node (issue 4): ingest from a convergence layer → durable
//! store → dispatch → forward to a sink convergence layer → deleted from the store, 100-byte
//! payloads, on the real SQLite store (WAL, synchronous=FULL, group commit) on disk.
//!
//!   cargo bench -p bpa --bench agent -- COUNT SENDERS DIR
//!
//! `SENDERS` tasks hand bundles to the agent at once, like that many convergence-layer sessions
//! whose transfers are each acknowledged only once durable. Prints one line for
//! docs/benchmarks.md; `scripts/bench-agent` runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bpa::agent::{Agent, AgentConfig};
use bpa::bundle::{BundleBuilder, CreationTimestamp, Eid};
use bpa::cla::{ClaFuture, ConvergenceLayer, OutgoingBundle};
use bpa::store::{SqliteStore, StoreConfig};
use bpa::time::{Clock, SystemClock};
use bytes::Bytes;

/// A neighbour that takes every bundle at once and counts them.
#[derive(Debug, Default)]
struct Sink {
    bundles: AtomicU64,
    bytes: AtomicU64,
}

impl ConvergenceLayer for Sink {
    fn name(&self) -> &str {
        "sink"
    }
    fn send(&self, _peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        self.bundles.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bundle.len(), Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

fn bundle(now: u64, sequence: u64) -> Bytes {
    BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(3, 1), CreationTimestamp { time: now, sequence }, 3_600_000)
        .hop_limit(32)
        .payload(vec![(sequence % 251) as u8; 100])
        .build()
        .expect("valid")
        .encode()
        .into()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [count, senders, dir] = args.as_slice() else {
        eprintln!("usage: cargo bench -p bpa --bench agent -- COUNT SENDERS DIR");
        std::process::exit(2);
    };
    let count: u64 = count.parse().expect("COUNT");
    let senders: u64 = senders.parse().expect("SENDERS");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (store, _) =
            SqliteStore::open(dir, StoreConfig::default(), Arc::clone(&clock)).await.expect("store");
        let mut config = AgentConfig::new(Eid::ipn(2, 0));
        config.reports.enabled = false;
        let agent = Agent::new(config, store.clone(), Arc::clone(&clock));
        let sink = Arc::new(Sink::default());
        agent.neighbour_up(Eid::ipn(3, 0), sink.clone()).await.expect("neighbour");
        let now = clock.now_dtn_ms();
        let encoded: Arc<Vec<Bytes>> = Arc::new((0..count).map(|i| bundle(now, i)).collect());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for s in 0..senders {
            let agent = agent.clone();
            let encoded = Arc::clone(&encoded);
            tasks.push(tokio::spawn(async move {
                let mut i = s;
                while i < count {
                    agent.receive(encoded[i as usize].clone()).await.expect("receive");
                    i += senders;
                }
            }));
        }
        for t in tasks {
            t.await.expect("sender");
        }
        let ingested = started.elapsed();
        while sink.bundles.load(Ordering::Relaxed) < count || store.stats().bundles > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let total = started.elapsed();
        println!(
            "agent: {count} bundles of 100 B, {senders} senders: ingested durably in {:.2} s, forwarded and \
             deleted in {:.2} s = {:.0} bundles/s end to end; peak RSS {:.1} MiB",
            ingested.as_secs_f64(),
            total.as_secs_f64(),
            count as f64 / total.as_secs_f64(),
            peak_rss_mib()
        );
        store.close().await;
    });
}
