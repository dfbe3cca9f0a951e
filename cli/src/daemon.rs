//! `dtn daemon`: one node in the foreground — the store, the agent, its housekeeping and the
//! local API — until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bpa::Eid;
use bpa::agent::ReportPolicy;
use bpa::agent::StaticRoute;
use bpa::api::{ApiConfig, ApiState, DaemonStatus, ServeLimits};
use bpa::{Agent, AgentConfig};
use bpa::{Clock, SystemClock};
use bpa::{SqliteStore, StoreConfig};
use std::os::unix::fs::PermissionsExt;
use tokio::net::UnixListener;

use crate::config::Config;
use crate::data_dir::{claim_store, private_dir};
use crate::layers::{ConnectionSettings, LayerContext, Layers, manage_contacts};

/// How long open API requests (a receive waiting for a bundle) get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a clean stop waits for sends under way to be recorded before the store closes.
const QUIESCE_GRACE: Duration = Duration::from_secs(10);

/// `socket`: the API socket from the command line, over the configuration's.
pub fn run(
    config_path: Option<PathBuf>,
    socket: Option<PathBuf>,
    adopt_store: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(socket) = socket {
        config.api.socket = Some(socket);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, config_path, adopt_store))
}

async fn serve(config: Config, config_path: Option<PathBuf>, adopt_store: bool) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir()?;
    // Bundles are private data: the directory is its owner's alone, whatever the umask.
    private_dir(&data_dir)
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
    let parse = config.accept.parse_options();
    let (store, recovery) = SqliteStore::open(&data_dir, store_config, Arc::clone(&clock))
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    if let Err(error) = claim_store(&store, &config.node_id(), &data_dir, adopt_store).await {
        store.close().await;
        return Err(error);
    }

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
    agent_config.custody = config.custody.policy()?;
    let agent = Agent::new(agent_config, store.clone(), Arc::clone(&clock));
    for route in &config.routes {
        agent.add_static_route(StaticRoute { pattern: route.to.clone(), via: route.via.clone() }).await?;
    }
    // Taken before the plan is set, so a contact in progress now is heard of too.
    let contact_events = agent.contact_events();
    if let Some(path) = &config.routing.plan {
        let (plan, format) = crate::plan_cmd::read_plan(path, config.routing.format, clock.now_dtn_ms())
            .context("[routing] plan")?;
        let router = agent.set_contact_plan(plan);
        let summary = routing::explain::summary(&router.graph());
        tracing::info!(
            plan = %path.display(), %format, nodes = summary.nodes, contacts = summary.contacts,
            ranges = summary.ranges, without_range = summary.without_range, "contact plan loaded"
        );
    }
    agent.start().await.context("cannot pick up the bundles the store holds")?;
    let context = LayerContext {
        config: &config,
        agent: &agent,
        data_dir: &data_dir,
        connections: ConnectionSettings::from_config(&config)?,
    };
    let layers = Arc::new(Layers::start(&context).await?);
    manage_contacts(layers.planned_dialers(), contact_events);

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
    private_dir(&api_config.spool_dir)
        .with_context(|| format!("cannot create the spool directory {}", api_config.spool_dir.display()))?;
    if let Some(v) = config.api.max_plan {
        anyhow::ensure!(v > 0, "api.max_plan = 0 would refuse every plan: give a size in bytes");
        api_config.max_plan = v;
    }
    if let Some(v) = config.api.max_payload {
        api_config.max_payload = v;
    }
    if let Some(v) = config.api.default_lifetime {
        api_config.default_lifetime = v;
    }
    if let Some(v) = config.api.body_idle_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "api.body_idle_timeout = 0 would cut off every upload: give a duration"
        );
        api_config.body_idle_timeout = v;
    }
    let mut limits = ServeLimits { shutdown_grace: SHUTDOWN_GRACE, ..ServeLimits::default() };
    if let Some(v) = config.api.header_timeout {
        anyhow::ensure!(!v.is_zero(), "api.header_timeout = 0 would refuse every request: give a duration");
        limits.header_timeout = v;
    }
    if let Some(v) = config.api.max_connections {
        anyhow::ensure!(v > 0, "api.max_connections = 0 would serve nobody: give at least 1");
        limits.max_connections = v;
    }
    let mut about = serde_json::Map::new();
    about.insert("data_dir".into(), data_dir.display().to_string().into());
    about.insert("config_file".into(), config_path.as_ref().map(|p| p.display().to_string()).into());
    about.insert("api_socket".into(), socket.display().to_string().into());
    let daemon_status = {
        let layers = Arc::clone(&layers);
        DaemonStatus { about, layers: Arc::new(move || layers.status()) }
    };
    let started = Instant::now();
    let state = |agent: Agent<SqliteStore>| ApiState {
        agent,
        config: api_config.clone(),
        started,
        daemon: daemon_status.clone(),
    };

    let expiry_interval = config.agent.expiry_interval.unwrap_or(Duration::from_secs(1));
    agent.housekeep_every(expiry_interval);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Spool requests name directories to write and read: on the private Unix socket only, never
    // on api.tcp (which any local user can reach).
    let unix_router =
        bpa::api::router(state(agent.clone())).merge(spool_routes(agent.clone(), data_dir.clone()));
    let unix_server = bpa::api::serve(listener, unix_router, limits, stopped(stop_rx.clone()));
    let tcp_server = tcp.map(|listener| {
        bpa::api::serve(listener, bpa::api::router(state(agent.clone())), limits, stopped(stop_rx.clone()))
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
        let unix = tokio::spawn(unix_server);
        let tcp = tcp_server.map(tokio::spawn);
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
    agent.stop_housekeeping();
    layers.stop(SHUTDOWN_GRACE).await;
    // What is under way (an export finishing, a send failing as its link closes, bundles put
    // back to wait) is recorded before the store closes: nothing half done, no ERROR line.
    let unfinished = agent.quiesce(QUIESCE_GRACE).await;
    if unfinished > 0 {
        tracing::info!(
            unfinished,
            "sends still under way at shutdown: their bundles stay stored and are sent again at the next start"
        );
    }
    drop(agent);
    store.close().await;
    let _ = std::fs::remove_file(&socket);
    eprintln!("dtn daemon: stopped ({signal}); every stored bundle is on disk");
    Ok(ExitCode::SUCCESS)
}

/// `POST /v1/spool/export?dir=DIR&for=NODE` and `POST /v1/spool/import?dir=DIR[&for=NODE...]`:
/// `dtn spool` through the running daemon (docs/api.md).
fn spool_routes(agent: Agent<SqliteStore>, data_dir: PathBuf) -> axum::Router {
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    fn refused(status: StatusCode, error: impl std::fmt::Display) -> axum::response::Response {
        (status, axum::Json(serde_json::json!({ "error": error.to_string() }))).into_response()
    }
    fn parse(query: &[(String, String)]) -> Result<(PathBuf, Vec<Eid>), String> {
        let mut dir = None;
        let mut nodes = Vec::new();
        for (key, value) in query {
            match key.as_str() {
                "dir" => dir = Some(PathBuf::from(value)),
                "for" => nodes.push(value.parse::<Eid>().map_err(|e| format!("for={value}: {e}"))?.node_id()),
                other => return Err(format!("unknown parameter {other:?}: give dir and for")),
            }
        }
        let dir = dir.ok_or("give the spool directory: dir=PATH")?;
        if !dir.is_absolute() {
            return Err(format!("dir={}: give an absolute path", dir.display()));
        }
        Ok((dir, nodes))
    }
    fn counters(stats: &convergence_layers::spool::SpoolStats) -> serde_json::Value {
        serde_json::json!({
            "exported": stats.exported,
            "bytes_exported": stats.bytes_exported,
            "export_errors": stats.export_errors,
            "imported": stats.imported,
            "bytes_imported": stats.bytes_imported,
            "duplicates": stats.duplicates,
            "half_written": stats.half_written,
            "not_bundles": stats.not_bundles,
            "unsafe_entries": stats.unsafe_entries,
        })
    }
    let export_agent = agent.clone();
    let export_data_dir = data_dir.clone();
    axum::Router::new()
        .route(
            "/v1/spool/export",
            axum::routing::post(move |Query(query): Query<Vec<(String, String)>>| {
                let agent = export_agent.clone();
                let data_dir = export_data_dir.clone();
                async move {
                    let (dir, nodes) = match parse(&query) {
                        Ok(parsed) => parsed,
                        Err(error) => return refused(StatusCode::BAD_REQUEST, error),
                    };
                    let [node] = nodes.as_slice() else {
                        return refused(StatusCode::BAD_REQUEST, "give exactly one node: for=NODE");
                    };
                    match crate::spool_cmd::export_once(&agent, &dir, node, &data_dir).await {
                        Ok(stats) => axum::Json(counters(&stats)).into_response(),
                        Err(error) => refused(StatusCode::CONFLICT, format!("{error:#}")),
                    }
                }
            }),
        )
        .route(
            "/v1/spool/import",
            axum::routing::post(move |Query(query): Query<Vec<(String, String)>>| {
                let agent = agent.clone();
                let data_dir = data_dir.clone();
                async move {
                    let (dir, nodes) = match parse(&query) {
                        Ok(parsed) => parsed,
                        Err(error) => return refused(StatusCode::BAD_REQUEST, error),
                    };
                    match crate::spool_cmd::import_once(&agent, &dir, &nodes, &data_dir).await {
                        Ok(stats) => axum::Json(counters(&stats)).into_response(),
                        Err(error) => refused(StatusCode::CONFLICT, format!("{error:#}")),
                    }
                }
            }),
        )
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
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    // The socket is made in a directory of its own (0700), given mode 0600, and only then moved
    // into place: at no moment can another user connect, whatever the umask.
    let staging = parent.join(format!(".s{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    private_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let staged = staging.join("s");
    let bound = UnixListener::bind(&staged)
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&staged, path)?;
            Ok(listener)
        })
        .with_context(|| {
            format!("cannot listen on {} (socket paths are limited to 107 bytes)", path.display())
        });
    let _ = std::fs::remove_dir_all(&staging);
    bound
}
