//! `dtn spool export|import`: carry bundles on a medium by hand, on a node whose daemon is
//! stopped (a running daemon watches the directories in its `[[spool]]` sections instead).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bpa::agent::node::{Agent, AgentConfig};
use bpa::bundle::{Eid, ParseOptions};
use bpa::store::{SqliteStore, StoreConfig};
use bpa::time::SystemClock;
use clap::Subcommand;
use convergence_layers::spool::{Spool, SpoolConfig};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Write the bundles this node holds for NODE into DIR (a USB stick, say), each made
    /// durable on the medium before it leaves the store. The node's daemon must be stopped.
    ///
    /// Example: dtn spool export /media/stick/dtn --for ipn:2.0 --config node.toml
    Export {
        /// The spool directory (created if missing).
        dir: PathBuf,
        /// The node the bundles are for (ipn:N.0 or dtn://name/).
        #[arg(long = "for", value_name = "NODE")]
        node: Eid,
        /// The node's configuration (its data directory and node ID).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Take into this node's store the bundles DIR holds for it (and for --for nodes), removing
    /// each file once durable here; a medium carried twice does nothing twice. The node's daemon
    /// must be stopped.
    ///
    /// Example: dtn spool import /media/stick/dtn --config node.toml
    Import {
        dir: PathBuf,
        /// Also take bundles for these nodes (this node forwards for them).
        #[arg(long = "for", value_name = "NODE")]
        nodes: Vec<Eid>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(command: SpoolCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            SpoolCommand::Export { dir, node, config } => export(&dir, node, config).await,
            SpoolCommand::Import { dir, nodes, config } => import(&dir, nodes, config).await,
        }
    })
}

/// The node's agent over its store, with no daemon: refused while a daemon answers.
async fn open(
    config_path: Option<PathBuf>,
    create: bool,
) -> anyhow::Result<(Agent<SqliteStore>, SqliteStore)> {
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let socket = config.socket()?;
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        anyhow::bail!(
            "the node's daemon is running (it answers on {}): stop it first, or add a [[spool]] section \
             with this directory to its configuration — a running daemon watches its spool directories",
            socket.display()
        );
    }
    let data_dir = config.data_dir()?;
    if create {
        crate::daemon::private_dir(&data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    } else if !data_dir.join("store.sqlite").exists() {
        anyhow::bail!(
            "{} holds no store (no store.sqlite): give the node's configuration with --config",
            data_dir.display()
        );
    }
    let (store, _) = SqliteStore::open(&data_dir, StoreConfig::default(), Arc::new(SystemClock))
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let mut agent_config = AgentConfig::new(config.node_id());
    agent_config.parse = ParseOptions {
        accept_primary_without_crc: config.accept.primary_without_crc.unwrap_or(false),
        accept_missing_bundle_age: config.accept.missing_bundle_age.unwrap_or(false),
        ..ParseOptions::default()
    };
    agent_config.echo = false;
    let agent = Agent::new(agent_config, store.clone(), Arc::new(SystemClock));
    Ok((agent, store))
}

async fn export(dir: &Path, node: Eid, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let node = node.node_id();
    let (agent, store) = open(config, false).await?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the spool directory {}", dir.display()))?;
    agent.start().await.context("cannot pick up the bundles the store holds")?;
    let mut spool_config = SpoolConfig::new(dir);
    spool_config.peers = vec![node.clone()];
    let spool = Spool::new(agent.clone(), spool_config);
    spool.scan().await;
    // Done when nothing is on its way to the spool and nothing more was written for a while.
    let mut last = (spool.stats().exported, spool.stats().export_errors);
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (spool.stats().exported, spool.stats().export_errors);
        let busy = agent.neighbours().iter().any(|n| n.node_id == node && n.in_flight > 0);
        if now != last || busy {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_millis(500) {
            break;
        }
        if now.1 > 0 && !busy {
            break;
        }
    }
    let stats = spool.stats();
    spool.shutdown();
    agent.stop_housekeeping();
    drop(agent);
    store.close().await;
    println!(
        "exported {} bundles ({} bytes) for {node} to {}",
        stats.exported,
        stats.bytes_exported,
        dir.display()
    );
    if stats.export_errors > 0 {
        eprintln!(
            "dtn spool: {} bundles could not be written (see the warnings above); they stay in the store",
            stats.export_errors
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn import(dir: &Path, nodes: Vec<Eid>, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory (is the medium mounted?)", dir.display());
    let (agent, store) = open(config, true).await?;
    let mut spool_config = SpoolConfig::new(dir);
    spool_config.import_for = nodes.iter().map(Eid::node_id).collect();
    let spool = Spool::new(agent.clone(), spool_config);
    spool.scan().await;
    let stats = spool.stats();
    spool.shutdown();
    drop(agent);
    store.close().await;
    println!(
        "imported {} bundles ({} bytes) from {}; {} already here (removed); left alone: {} half-written, {} not bundles",
        stats.imported,
        stats.bytes_imported,
        dir.display(),
        stats.duplicates,
        stats.half_written,
        stats.not_bundles
    );
    Ok(ExitCode::SUCCESS)
}
