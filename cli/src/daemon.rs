//! `dtn daemon`: one node in the foreground — the store, the agent, its housekeeping and the
//! local API — until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bpa::agent::node::{Agent, AgentConfig};
use bpa::agent::report::ReportPolicy;
use bpa::agent::routing::StaticRoute;
use bpa::api::{ApiConfig, ApiState};
use bpa::bundle::ParseOptions;
use bpa::store::{SqliteStore, StoreConfig};
use bpa::time::{Clock, SystemClock};
use tokio::net::UnixListener;

use crate::config::Config;

/// How long open API requests (a receive waiting for a bundle) get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub fn run(config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, config_path))
}

async fn serve(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir()?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let mut store_config = StoreConfig::default();
    if let Some(v) = config.store.max_bytes {
        store_config.max_bytes = v;
    }
    if let Some(v) = config.store.max_bundles {
        store_config.max_bundles = v;
    }
    if let Some(v) = config.store.inline_threshold {
        store_config.inline_threshold = v;
    }
    let parse = ParseOptions {
        accept_primary_without_crc: config.accept.primary_without_crc.unwrap_or(false),
        accept_missing_bundle_age: config.accept.missing_bundle_age.unwrap_or(false),
        ..ParseOptions::default()
    };
    let (store, recovery) = SqliteStore::open(&data_dir, store_config, Arc::clone(&clock))
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;

    let mut agent_config = AgentConfig::new(config.node_id());
    agent_config.parse = parse;
    let default_reports = ReportPolicy::default();
    agent_config.reports = ReportPolicy {
        enabled: config.reports.enabled.unwrap_or(default_reports.enabled),
        lifetime_ms: config.reports.lifetime.map_or(default_reports.lifetime_ms, |d| d.as_millis() as u64),
    };
    if let Some(echo) = config.agent.echo {
        agent_config.echo = echo;
    }
    if let Some(n) = config.agent.max_in_flight_per_neighbour {
        agent_config.max_in_flight_per_neighbour = n;
    }
    let agent = Agent::new(agent_config, store.clone(), clock);
    for route in &config.routes {
        agent.add_static_route(StaticRoute { pattern: route.to.clone(), via: route.via.clone() }).await?;
    }
    agent.start().await.context("cannot pick up the bundles the store holds")?;

    let socket = config.socket()?;
    let listener = bind_socket(&socket)?;
    let tcp = match config.api.tcp {
        Some(address) if !address.ip().is_loopback() => anyhow::bail!(
            "api.tcp = {address} is not a loopback address: the local API has no authentication, so it only \
             listens on 127.0.0.0/8 or ::1"
        ),
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on api.tcp = {address}"))?,
        ),
        None => None,
    };

    let mut api_config = ApiConfig { spool_dir: data_dir.join("spool"), ..ApiConfig::default() };
    std::fs::create_dir_all(&api_config.spool_dir)
        .with_context(|| format!("cannot create the spool directory {}", api_config.spool_dir.display()))?;
    if let Some(v) = config.api.max_payload {
        api_config.max_payload = v;
    }
    if let Some(v) = config.api.default_lifetime {
        api_config.default_lifetime = v;
    }
    let extra_status = serde_json::json!({
        "data_dir": data_dir.display().to_string(),
        "config_file": config_path.as_ref().map(|p| p.display().to_string()),
        "api_socket": socket.display().to_string(),
        "convergence_layers": [],
    });
    let started = Instant::now();
    let state = |agent: Agent<SqliteStore>| ApiState {
        agent,
        config: api_config.clone(),
        started,
        extra_status: extra_status.clone(),
    };

    let expiry_interval = config.agent.expiry_interval.unwrap_or(Duration::from_secs(1));
    let housekeeping = tokio::spawn(agent.clone().maintain(expiry_interval, 30));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let unix_server = axum::serve(listener, bpa::api::router(state(agent.clone())))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let tcp_server = tcp.map(|listener| {
        axum::serve(listener, bpa::api::router(state(agent.clone())))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
    });
    tracing::info!(
        node_id = %agent.node_id(),
        data_dir = %data_dir.display(),
        api = %socket.display(),
        bundles = store.stats().bundles,
        recovered_orphans = recovery.orphan_files_removed,
        "dtn daemon running"
    );
    eprintln!(
        "dtn daemon: node {} with {} stored bundles; API on {}{}",
        agent.node_id(),
        store.stats().bundles,
        socket.display(),
        config.api.tcp.map(|a| format!(" and http://{a}")).unwrap_or_default()
    );

    let servers = async {
        let unix = tokio::spawn(async move { unix_server.await });
        let tcp = tcp_server.map(|s| tokio::spawn(async move { s.await }));
        let _ = unix.await;
        if let Some(tcp) = tcp {
            let _ = tcp.await;
        }
    };
    let mut servers = std::pin::pin!(servers);
    let signal = tokio::select! {
        name = shutdown_signal() => name?,
        _ = &mut servers => anyhow::bail!("the API server stopped unexpectedly"),
    };
    tracing::info!(signal, "shutting down");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut servers).await.is_err() {
        tracing::info!("open API requests cut off at shutdown");
    }
    housekeeping.abort();
    drop(agent);
    store.close().await;
    let _ = std::fs::remove_file(&socket);
    eprintln!("dtn daemon: stopped ({signal}); every stored bundle is on disk");
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    })
}

/// Listens on the API socket. A socket file left by a daemon that died is replaced; one that a
/// live daemon answers on is not.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another daemon answers on {}: stop it, or give this one another api.socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    UnixListener::bind(path).with_context(|| {
        format!("cannot listen on {} (socket paths are limited to 107 bytes)", path.display())
    })
}
