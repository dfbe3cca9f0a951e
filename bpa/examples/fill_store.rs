//! Fills a node's store with bundles, for benchmarks (`scripts/bench-scale`): run it while the
//! node's daemon is stopped.
//!
//!     cargo run --release -p bpa --example fill_store -- DATA_DIR NODE_ID DESTINATION COUNT [SIZE]
//!
//! Each bundle is sent through the agent as an application would (durable when stored), from
//! endpoint 1 of NODE_ID to DESTINATION, SIZE bytes of payload (100 by default), with a lifetime
//! of a day; 512 sends are under way at once.

use std::sync::Arc;

use bpa::agent::{Agent, AgentConfig};
use bpa::bundle::{BundleFlags, Eid};
use bpa::store::{SqliteStore, StoreConfig};
use bpa::time::{Clock, SystemClock};
use bytes::Bytes;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, node, destination, count, rest @ ..] = args.as_slice() else {
        return Err("usage: fill_store DATA_DIR NODE_ID DESTINATION COUNT [SIZE]".into());
    };
    let node: Eid = node.parse()?;
    let destination: Eid = destination.parse()?;
    let count: usize = count.parse()?;
    let size: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, _) =
        SqliteStore::open(std::path::Path::new(dir), StoreConfig::default(), Arc::clone(&clock)).await?;
    let mut config = AgentConfig::new(node.clone());
    config.echo = false;
    let agent = Agent::new(config, store.clone(), clock);
    let source = match &node {
        Eid::Ipn { node, .. } => Eid::ipn(*node, 1),
        other => other.clone(),
    };
    let payload = Bytes::from(vec![b'x'; size]);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        if tasks.len() >= 512
            && let Some(done) = tasks.join_next().await
        {
            done??;
        }
        let (agent, source, destination, payload) =
            (agent.clone(), source.clone(), destination.clone(), payload.clone());
        tasks.spawn(async move {
            agent.send(source, destination, payload, 86_400_000, BundleFlags::default()).await.map(drop)
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("stored {count} bundles in {seconds:.1} s ({:.0}/s)", count as f64 / seconds);
    drop(agent);
    store.close().await;
    Ok(())
}
