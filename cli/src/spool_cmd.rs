//! `dtn spool export|import`: carry bundles on a medium by hand — through the node's daemon
//! when it runs (`POST /v1/spool/export`, `/v1/spool/import`), else on its data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bpa::Eid;
use bpa::SystemClock;
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use clap::Subcommand;
use convergence_layers::spool::{Spool, SpoolConfig};

use crate::client::{Client, encode, read_json};
use crate::config::Config;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Write the bundles this node holds for NODE into DIR (a USB stick, say), each made
    /// durable on the medium before it leaves the store. Through the node's daemon when it
    /// runs (found by --config), else on its data directory.
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
    /// each file once durable here; a medium carried twice does nothing twice. Through the
    /// node's daemon when it runs (found by --config), else on its data directory.
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
) -> anyhow::Result<(Agent<SqliteStore>, SqliteStore, PathBuf)> {
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let data_dir = config.data_dir()?;
    if create {
        crate::data_dir::private_dir(&data_dir)
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
    if let Err(error) = crate::data_dir::claim_store(&store, &config.node_id(), &data_dir, false).await {
        store.close().await;
        return Err(error);
    }
    let mut agent_config = AgentConfig::new(config.node_id());
    agent_config.parse = config.accept.parse_options();
    agent_config.echo = false;
    let agent = Agent::new(agent_config, store.clone(), Arc::new(SystemClock));
    Ok((agent, store, data_dir))
}

/// Writes the bundles `agent` holds for `node` into `dir`, once; answers the spool's counters.
/// The node must not be a neighbour over another link (its bundles go there).
pub(crate) async fn export_once(
    agent: &Agent<SqliteStore>,
    dir: &Path,
    node: &Eid,
    data_dir: &Path,
) -> anyhow::Result<convergence_layers::spool::SpoolStats> {
    if agent.neighbours().iter().any(|n| n.node_id == *node) {
        anyhow::bail!("{node} is connected now: its bundles go over that link, not to the spool");
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the spool directory {}", dir.display()))?;
    let mut spool_config = SpoolConfig::new(dir);
    spool_config.peers = vec![node.clone()];
    spool_config.keep_out = vec![data_dir.to_path_buf()];
    let spool = Spool::new(agent.clone(), spool_config);
    spool.scan().await;
    // Done when the neighbour's queue has taken everything the store holds for it and no
    // export is under way, or when exports fail (they would only be tried again after a backoff).
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let settled = agent
            .neighbours()
            .iter()
            .find(|n| n.node_id == *node)
            .is_none_or(|n| n.queue_idle && n.in_flight == 0);
        let failing = spool.stats().export_errors > 0
            && agent.neighbours().iter().all(|n| n.node_id != *node || n.in_flight == 0);
        if settled || failing {
            break;
        }
    }
    let stats = spool.stats();
    // The node is no neighbour once the export is done.
    agent.neighbour_down(node);
    Ok(stats)
}

/// Takes what `dir` holds for `agent`'s node (and `nodes`) into its store, once.
pub(crate) async fn import_once(
    agent: &Agent<SqliteStore>,
    dir: &Path,
    nodes: &[Eid],
    data_dir: &Path,
) -> anyhow::Result<convergence_layers::spool::SpoolStats> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory (is the medium mounted?)", dir.display());
    let mut spool_config = SpoolConfig::new(dir);
    spool_config.import_for = nodes.iter().map(Eid::node_id).collect();
    spool_config.keep_out = vec![data_dir.to_path_buf()];
    let spool = Spool::new(agent.clone(), spool_config);
    spool.scan().await;
    Ok(spool.stats())
}

fn report_export(node: &Eid, dir: &Path, exported: u64, bytes: u64, errors: u64) -> ExitCode {
    println!("exported {exported} bundles ({bytes} bytes) for {node} to {}", dir.display());
    if errors > 0 {
        eprintln!(
            "dtn spool: {errors} bundles could not be written (see the warnings); they stay in the store"
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn report_import(
    dir: &Path,
    imported: u64,
    bytes: u64,
    duplicates: u64,
    half_written: u64,
    not_bundles: u64,
    unsafe_entries: u64,
) {
    println!(
        "imported {imported} bundles ({bytes} bytes) from {}; {duplicates} already here (removed); left alone: \
         {half_written} half-written, {not_bundles} not bundles, {unsafe_entries} links, FIFOs or other unsafe entries",
        bpa::log::Escaped(dir.display())
    );
}

async fn export(dir: &Path, node: Eid, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let node = node.node_id();
    let dir = std::path::absolute(dir).context("resolving the spool directory")?;
    if let Some(client) = running_daemon(&config)? {
        let path = format!(
            "/v1/spool/export?dir={}&for={}",
            encode(&dir.display().to_string()),
            encode(&node.to_string())
        );
        let answer = read_json(client.request(Method::POST, &path, Full::new(Bytes::new())).await?).await?;
        let n = |k: &str| answer[k].as_u64().unwrap_or(0);
        return Ok(report_export(&node, &dir, n("exported"), n("bytes_exported"), n("export_errors")));
    }
    let (agent, store, data_dir) = open(config, false).await?;
    agent.start().await.context("cannot pick up the bundles the store holds")?;
    let stats = export_once(&agent, &dir, &node, &data_dir).await;
    drop(agent);
    store.close().await;
    let stats = stats?;
    Ok(report_export(&node, &dir, stats.exported, stats.bytes_exported, stats.export_errors))
}

async fn import(dir: &Path, nodes: Vec<Eid>, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(dir).context("resolving the spool directory")?;
    if let Some(client) = running_daemon(&config)? {
        let mut path = format!("/v1/spool/import?dir={}", encode(&dir.display().to_string()));
        for node in &nodes {
            path.push_str(&format!("&for={}", encode(&node.node_id().to_string())));
        }
        let answer = read_json(client.request(Method::POST, &path, Full::new(Bytes::new())).await?).await?;
        let n = |k: &str| answer[k].as_u64().unwrap_or(0);
        report_import(
            &dir,
            n("imported"),
            n("bytes_imported"),
            n("duplicates"),
            n("half_written"),
            n("not_bundles"),
            n("unsafe_entries"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(dir.is_dir(), "{} is not a directory (is the medium mounted?)", dir.display());
    let (agent, store, data_dir) = open(config, true).await?;
    let stats = import_once(&agent, &dir, &nodes, &data_dir).await;
    drop(agent);
    store.close().await;
    let stats = stats?;
    report_import(
        &dir,
        stats.imported,
        stats.bytes_imported,
        stats.duplicates,
        stats.half_written,
        stats.not_bundles,
        stats.unsafe_entries,
    );
    Ok(ExitCode::SUCCESS)
}

/// A client of the node's daemon if one answers on its socket.
fn running_daemon(config_path: &Option<PathBuf>) -> anyhow::Result<Option<Client>> {
    let config = match config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let socket = config.socket()?;
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Ok(Some(Client::new(Some(socket))?));
    }
    Ok(None)
}
