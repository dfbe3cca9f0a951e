//! Two agents in one process, each with a durable SQLite store in a temporary directory, over
//! one TCPCL session on loopback: A is given N bundles of 100 bytes for B while unconnected,
//! then connects; prints how fast B holds them all. Separates the session's speed from the
//! daemon's (see docs/benchmarks.md).
//!
//!     cargo run --release -p convergence-layers --example tcpcl_pair [N]
//!
//! `WINDOW=K` sets how many bundles the sending agent hands to the session at once (default 256).
//! `LARGE_MIB=M` sends one bundle of M MiB instead (connected first; the time runs from A
//! holding it to B holding it), for profiling the large-bundle path in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bpa::{Agent, AgentConfig};
use bpa::{BundleFlags, Eid};
use bpa::{Clock, SystemClock};
use bpa::{SqliteStore, StoreConfig};
use bytes::Bytes;
use convergence_layers::tcpcl::driver::{Tcpcl, TcpclConfig};
use convergence_layers::tcpcl::session::{SessionConfig, TlsPolicy};

async fn node(n: u32) -> (Agent<SqliteStore>, Tcpcl<Agent<SqliteStore>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, _) =
        SqliteStore::open(dir.path(), StoreConfig::default(), Arc::clone(&clock)).await.expect("store");
    let mut config = AgentConfig::new(Eid::ipn(n, 0));
    config.max_in_flight_per_neighbour =
        std::env::var("WINDOW").ok().and_then(|w| w.parse().ok()).unwrap_or(256);
    let agent = Agent::new(config, store, clock);
    let mut session = SessionConfig::new("");
    session.tls = TlsPolicy::Off;
    let tcpcl = Tcpcl::new(agent.clone(), TcpclConfig::new(session));
    (agent, tcpcl, dir)
}

#[tokio::main]
async fn main() {
    let count: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let (a, a_tcpcl, _a_dir) = node(1).await;
    let (b, b_tcpcl, _b_dir) = node(2).await;
    let address = b_tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");
    if let Some(mib) = std::env::var("LARGE_MIB").ok().and_then(|m| m.parse::<u64>().ok()) {
        a_tcpcl.connect_forever(address.to_string());
        while a.neighbours().is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let request = bpa::agent::SendRequest {
            source: Eid::ipn(1, 1),
            destination: Eid::ipn(2, 1),
            lifetime_ms: 3_600_000,
            flags: BundleFlags::default(),
            custody: false,
        };
        let mut pending = a.begin_send(request, mib << 20).await.expect("begin");
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..mib {
            pending.write(&chunk).await.expect("write");
        }
        pending.commit().await.expect("commit");
        let start = Instant::now();
        while b.store().stats().bundles < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = start.elapsed();
        println!(
            "B holds the {mib} MiB bundle after {elapsed:.2?}: {:.0} MiB/s",
            mib as f64 / elapsed.as_secs_f64()
        );
        return;
    }
    for i in 0..count {
        let payload = Bytes::from(vec![i as u8; 100]);
        a.send(Eid::ipn(1, 1), Eid::ipn(2, 1), payload, 3_600_000, BundleFlags::default())
            .await
            .expect("send");
    }
    let start = Instant::now();
    a_tcpcl.connect_forever(address.to_string());
    while b.store().stats().bundles < count {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    println!(
        "B holds all {count} bundles after {elapsed:.2?} (connection included): {:.0} bundles/s",
        count as f64 / elapsed.as_secs_f64()
    );
}
