//! `dtn daemon`: one node in the foreground — the store, the agent, its housekeeping and the
//! local API — until SIGINT or SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bpa::agent::ContactEvent;
use bpa::agent::node::{Agent, AgentConfig};
use bpa::agent::report::ReportPolicy;
use bpa::agent::routing::StaticRoute;
use bpa::api::{ApiConfig, ApiState, ExtraStatus};
use bpa::bundle::Eid;
use bpa::store::{SqliteStore, StoreConfig};
use bpa::time::{Clock, SystemClock};
use convergence_layers::framed::{Framed, FramedConfig, Framing};
use convergence_layers::serial::{FlowControl, Serial, SerialConfig};
use convergence_layers::spool::{Spool, SpoolConfig};
use convergence_layers::tcpcl::driver::{SessionSummary, Tcpcl, TcpclConfig};
use convergence_layers::tcpcl::session::{SessionConfig, TlsPolicy};
use convergence_layers::tcpcl::tls::TlsSetup;
use convergence_layers::tcpcl3::driver::{Tcpcl3, Tcpcl3Config};
use convergence_layers::tcpcl3::session::SessionConfig as Tcpcl3SessionConfig;
use convergence_layers::udp::{Udp, UdpConfig, UdpPeer};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use bpa::api::ServeLimits;
use tokio::net::UnixListener;

use crate::config::{Config, TlsSetting};

/// How long open API requests (a receive waiting for a bundle) get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The rates serial devices commonly take (POSIX termios and Linux's extensions).
const STANDARD_BAUD_RATES: &[u32] = &[
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200,
    230_400, 460_800, 500_000, 576_000, 921_600, 1_000_000, 1_152_000, 1_500_000, 2_000_000, 2_500_000,
    3_000_000, 3_500_000, 4_000_000,
];

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

/// Checks that the store in `data_dir` is `node_id`'s (or makes it so, with `adopt`): a store
/// made under another node ID holds bundles addressed to that node, which would wait there for
/// ever.
pub(crate) async fn claim_store(
    store: &SqliteStore,
    node_id: &Eid,
    data_dir: &Path,
    adopt: bool,
) -> anyhow::Result<()> {
    match store.claim(&node_id.to_string(), adopt).await? {
        bpa::store::Ownership::First | bpa::store::Ownership::Same => Ok(()),
        bpa::store::Ownership::Adopted { previous } => {
            tracing::warn!(%previous, now = %node_id, data_dir = %data_dir.display(), "the store made by another node is this node's from now on (--adopt-store)");
            Ok(())
        }
        bpa::store::Ownership::Other { owner } => anyhow::bail!(
            "the store in {} belongs to node {owner}, and this node is {node_id}: give this node a data \
             directory of its own (data_dir, or `dtn init --data-dir DIR`), or set node_id = \"{owner}\"; \
             `dtn daemon --adopt-store` makes that store and its bundles this node's",
            data_dir.display()
        ),
    }
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
    let tcpcl = start_tcpcl(&config, &agent).await?;
    let mut framed = Vec::new();
    for (framing, section) in [(Framing::Stcp, &config.stcp), (Framing::Mtcp, &config.mtcp)] {
        if let Some(started) = start_framed(framing, section, &config, &agent).await? {
            framed.push(started);
        }
    }
    let udp = start_udp(&config.udp, &agent).await?;
    let tcpcl3 = start_tcpcl3(&config, &agent).await?;
    let serial = start_serial(&config, &agent)?;
    let spools = start_spools(&config, &agent, &data_dir)?;
    manage_contacts(
        planned_dialers(&config, tcpcl.as_ref().map(|(t, _)| t), tcpcl3.as_ref().map(|(t, _, _)| t)),
        contact_events,
    );

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
    let fixed_status = serde_json::json!({
        "data_dir": data_dir.display().to_string(),
        "config_file": config_path.as_ref().map(|p| p.display().to_string()),
        "api_socket": socket.display().to_string(),
    });
    let extra_status = {
        let tcpcl = tcpcl.clone();
        let listen = tcpcl.as_ref().map(|(_, bound)| bound.clone()).unwrap_or_default();
        let peers: Vec<String> = config.tcpcl.peers.iter().map(|p| p.address.clone()).collect();
        let framed_status = framed.clone();
        let udp_status = udp.clone();
        let tcpcl3_status = tcpcl3.clone();
        let serial_status = serial.clone();
        let spool_status = spools.clone();
        ExtraStatus(Arc::new(move || {
            let mut status = fixed_status.clone();
            let mut layers = match &tcpcl {
                Some((tcpcl, _)) => vec![serde_json::json!({
                    "name": "tcpcl",
                    "listen": listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "peers": peers,
                    "sessions": tcpcl.sessions().iter().map(session_json).collect::<Vec<_>>(),
                })],
                None => Vec::new(),
            };
            for (layer, bound, peers) in &framed_status {
                layers.push(framed_json(layer, bound, peers));
            }
            if let Some((udp, bound, peers)) = &udp_status {
                layers.push(udp_json(udp, bound, peers));
            }
            if let Some((layer, bound, peers)) = &tcpcl3_status {
                layers.push(tcpcl3_json(layer, bound, peers));
            }
            for link in &serial_status {
                layers.push(serial_json(link));
            }
            for spool in &spool_status {
                layers.push(spool_json(spool));
            }
            status["convergence_layers"] = serde_json::Value::Array(layers);
            status
        }))
    };
    let started = Instant::now();
    let state = |agent: Agent<SqliteStore>| ApiState {
        agent,
        config: api_config.clone(),
        started,
        extra_status: extra_status.clone(),
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
    if let Some((tcpcl, _)) = &tcpcl {
        // Sessions end with SESS_TERM; bundles in transfer stay stored and go again next time.
        tcpcl.shutdown();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !tcpcl.sessions().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (layer, _, _) in &framed {
        layer.shutdown();
    }
    if let Some((udp, _, _)) = &udp {
        udp.shutdown();
    }
    if let Some((layer, _, _)) = &tcpcl3 {
        // Connections end with SHUTDOWN; unacknowledged bundles stay stored and go again.
        layer.shutdown();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !layer.stats().connected.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tcpcl3);
    for link in &serial {
        link.shutdown();
    }
    drop(serial);
    for spool in &spools {
        spool.shutdown();
    }
    // What is under way (an export finishing, a send failing as its link closes, bundles put
    // back to wait) is recorded before the store closes: nothing half done, no ERROR line.
    let unfinished = agent.quiesce(QUIESCE_GRACE).await;
    if unfinished > 0 {
        tracing::info!(
            unfinished,
            "sends still under way at shutdown: their bundles stay stored and are sent again at the next start"
        );
    }
    drop(spools);
    drop(framed);
    drop(tcpcl);
    drop(agent);
    store.close().await;
    let _ = std::fs::remove_file(&socket);
    eprintln!("dtn daemon: stopped ({signal}); every stored bundle is on disk");
    Ok(ExitCode::SUCCESS)
}

/// Starts the TCP convergence layer if it has anything to do: listeners and peers.
async fn start_tcpcl(
    config: &Config,
    agent: &Agent<SqliteStore>,
) -> anyhow::Result<Option<(Tcpcl<Agent<SqliteStore>>, Vec<SocketAddr>)>> {
    let section = &config.tcpcl;
    let mut session = SessionConfig::new("");
    let setting = section.tls.unwrap_or(TlsSetting::Off);
    session.tls = match setting {
        TlsSetting::Off => TlsPolicy::Off,
        TlsSetting::Optional => TlsPolicy::Optional,
        TlsSetting::Required => TlsPolicy::Required,
    };
    if let Some(v) = section.require_node_id_authentication {
        session.require_node_id_authentication = v;
    }
    let tls = match (setting, &section.certificate, &section.private_key, &section.trust) {
        (TlsSetting::Off, ..) => None,
        (_, Some(certificate), Some(key), Some(trust)) => Some(
            TlsSetup::from_pem_files(certificate, key, trust, session.require_node_id_authentication)
                .context("tcpcl TLS")?,
        ),
        _ => anyhow::bail!(
            "tcpcl.tls = {setting} needs tcpcl.certificate, tcpcl.private_key and tcpcl.trust (PEM files): the \
             node's certificate naming its node ID, its key, and the CA certificates peers chain to"
        ),
    };
    if let Some(v) = section.keepalive {
        session.keepalive = v;
    }
    if let Some(v) = section.segment_mru {
        session.segment_mru = v;
    }
    if let Some(v) = section.transfer_mru {
        session.transfer_mru = v;
    }
    if let Some(v) = section.max_segment_size {
        anyhow::ensure!(v > 0, "tcpcl.max_segment_size = 0: segments carry at least one byte");
        session.max_segment_size = v;
    }
    if let Some(v) = section.ignore_peer_transfer_mru {
        session.ignore_peer_transfer_mru = v;
    }
    let connections = connection_settings(config)?;
    session.negotiation_timeout = connections.handshake_timeout;
    session.idle_timeout = connections.idle_timeout;
    let mut tcpcl_config = TcpclConfig::new(session);
    tcpcl_config.tls = tls;
    tcpcl_config.limits = connections.limits;
    if let Some(v) = section.reconnect_max {
        tcpcl_config.reconnect_max = v.max(tcpcl_config.reconnect_min);
    }
    if let Some(v) = section.transfer_idle_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "tcpcl.transfer_idle_timeout = 0 would abandon every transfer: give a duration"
        );
        tcpcl_config.transfer_idle_timeout = v;
    }
    if let Some(v) = section.send_stall_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "tcpcl.send_stall_timeout = 0 would end every session: give a duration"
        );
        tcpcl_config.send_stall_timeout = v;
    }
    // Checked above even when unused, so a mistake shows before it matters.
    if section.listen.is_empty() && section.peers.is_empty() {
        return Ok(None);
    }
    let tcpcl = Tcpcl::new(agent.clone(), tcpcl_config);
    let mut bound = Vec::new();
    for address in &section.listen {
        bound.push(tcpcl.listen(*address).await.with_context(|| format!("tcpcl.listen = {address}"))?);
    }
    let scheduled = scheduled_peers(config);
    for peer in &section.peers {
        // A peer the contact plan schedules is connected at its contacts' starts.
        if !peer.node_id.as_ref().is_some_and(|node| scheduled.contains_key(&node.node_id())) {
            tcpcl.connect_forever(peer.address.clone());
        }
    }
    Ok(Some((tcpcl, bound)))
}

/// The peers connected only during their planned contacts: those with a node ID, when a contact
/// plan is configured.
fn scheduled_peers(config: &Config) -> HashMap<Eid, String> {
    if config.routing.plan.is_none() {
        return HashMap::new();
    }
    config
        .tcpcl
        .peers
        .iter()
        .filter_map(|peer| Some((peer.node_id.as_ref()?.node_id(), peer.address.clone())))
        .collect()
}

/// Whether a peer with this node ID is connected only at its planned contacts: a contact plan
/// is loaded and the peer's node ID is given.
fn scheduled(config: &Config, node_id: Option<&Eid>) -> bool {
    config.routing.plan.is_some() && node_id.is_some()
}

/// How a planned peer is reached at its contacts' starts.
enum Dialer {
    Tcpcl(Tcpcl<Agent<SqliteStore>>, String),
    Tcpcl3(Tcpcl3<Agent<SqliteStore>>, String, Eid),
}

impl Dialer {
    fn connect_while(&self, wanted: tokio::sync::watch::Receiver<bool>) {
        match self {
            Dialer::Tcpcl(layer, address) => layer.connect_while(address.clone(), wanted),
            Dialer::Tcpcl3(layer, address, node) => {
                layer.connect_while(address.clone(), Some(node.clone()), wanted)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Dialer::Tcpcl(_, address) => format!("TCPCLv4 {address}"),
            Dialer::Tcpcl3(_, address, _) => format!("TCPCLv3 {address}"),
        }
    }
}

/// The peers the contact plan schedules, by node ID, and how to reach each.
fn planned_dialers(
    config: &Config,
    tcpcl: Option<&Tcpcl<Agent<SqliteStore>>>,
    tcpcl3: Option<&Tcpcl3<Agent<SqliteStore>>>,
) -> HashMap<Eid, Dialer> {
    let mut dialers = HashMap::new();
    if let Some(layer) = tcpcl {
        for (node, address) in scheduled_peers(config) {
            dialers.insert(node, Dialer::Tcpcl(layer.clone(), address));
        }
    }
    if let Some(layer) = tcpcl3 {
        for peer in &config.tcpcl3.peers {
            if let Some(node) = peer.node_id.as_ref().filter(|_| scheduled(config, peer.node_id.as_ref())) {
                let node = node.node_id();
                dialers.insert(node.clone(), Dialer::Tcpcl3(layer.clone(), peer.address.clone(), node));
            }
        }
    }
    dialers
}

/// The link manager: at the start of a planned contact with a peer whose address is known, a
/// TCPCL (v4 or v3) connection is opened (and kept, reconnecting, while the contact lasts); at
/// its end it is closed (SESS_TERM, SHUTDOWN) and the agent routes again what was queued for the
/// peer.
fn manage_contacts(dialers: HashMap<Eid, Dialer>, mut events: tokio::sync::mpsc::Receiver<ContactEvent>) {
    tokio::spawn(async move {
        let mut open: HashMap<Eid, tokio::sync::watch::Sender<bool>> = HashMap::new();
        while let Some(event) = events.recv().await {
            match event {
                ContactEvent::Started { neighbour, end, rate } => {
                    if open.contains_key(&neighbour) {
                        continue;
                    }
                    let Some(dialer) = dialers.get(&neighbour) else {
                        tracing::info!(%neighbour, "a planned contact starts; no [[tcpcl.peers]] or [[tcpcl3.peers]] address with this node_id, so the peer is waited for");
                        continue;
                    };
                    tracing::info!(%neighbour, via = dialer.describe(), until = %bpa::time::format_dtn_time(end), rate, "planned contact: connecting");
                    let (wanted, flag) = tokio::sync::watch::channel(true);
                    dialer.connect_while(flag);
                    open.insert(neighbour, wanted);
                }
                ContactEvent::Ended { neighbour } => {
                    if let Some(wanted) = open.remove(&neighbour) {
                        tracing::info!(%neighbour, "planned contact ended: closing the connection");
                        let _ = wanted.send(false);
                    }
                }
            }
        }
    });
}

/// A length-framed layer (STCP, MTCP) as started: the layer, the addresses it listens on, the
/// peers it dials.
type StartedFramed = (Framed<Agent<SqliteStore>>, Vec<SocketAddr>, Vec<(String, Eid)>);

/// Starts STCP or MTCP if its section has anything to do: listeners and peers.
/// `[connections]`, checked: the listeners' bounds and every stream layer's deadlines.
#[derive(Debug, Clone, Copy)]
struct ConnectionSettings {
    limits: convergence_layers::listener::ConnectionLimits,
    handshake_timeout: Duration,
    idle_timeout: Duration,
}

fn connection_settings(config: &Config) -> anyhow::Result<ConnectionSettings> {
    let section = &config.connections;
    let mut settings = ConnectionSettings {
        limits: convergence_layers::listener::ConnectionLimits::default(),
        handshake_timeout: Duration::from_secs(30),
        idle_timeout: convergence_layers::listener::DEFAULT_IDLE_TIMEOUT,
    };
    if let Some(v) = section.max {
        anyhow::ensure!(v > 0, "connections.max = 0 would refuse every peer: give a number of connections");
        settings.limits.max_connections = v;
    }
    if let Some(v) = section.max_per_address {
        anyhow::ensure!(
            v > 0,
            "connections.max_per_address = 0 would refuse every peer: give a number of connections"
        );
        settings.limits.max_per_address = v;
    }
    if let Some(v) = section.handshake_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "connections.handshake_timeout = 0 would close every connection: give a duration (\"30s\")"
        );
        settings.handshake_timeout = v;
    }
    if let Some(v) = section.idle_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "connections.idle_timeout = 0 would close every connection: give a duration (\"5m\")"
        );
        settings.idle_timeout = v;
    }
    Ok(settings)
}

async fn start_framed(
    framing: Framing,
    section: &crate::config::FramedSection,
    config: &Config,
    agent: &Agent<SqliteStore>,
) -> anyhow::Result<Option<StartedFramed>> {
    let mut layer_config = FramedConfig::new(framing);
    let connections = connection_settings(config)?;
    layer_config.limits = connections.limits;
    layer_config.first_frame_timeout = connections.handshake_timeout;
    layer_config.idle_timeout = connections.idle_timeout;
    if let Some(v) = section.stall_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "{framing}.stall_timeout = 0 would cut off every bundle: give a duration (\"2m\")"
        );
        layer_config.stall_timeout = v;
    }
    if let Some(v) = section.max_bundle_size {
        anyhow::ensure!(
            v > 0,
            "{framing}.max_bundle_size = 0 would refuse every bundle: give a size in bytes"
        );
        layer_config.max_bundle_size = v;
    }
    if let Some(v) = section.keepalive {
        anyhow::ensure!(
            framing == Framing::Stcp,
            "{framing}.keepalive: only STCP has keepalives (MTCP sends nothing but bundles)"
        );
        layer_config.keepalive = (!v.is_zero()).then_some(v);
    }
    if section.listen.is_empty() && section.peers.is_empty() {
        return Ok(None);
    }
    let layer = Framed::new(agent.clone(), layer_config);
    let mut bound = Vec::new();
    for address in &section.listen {
        bound.push(layer.listen(*address).await.with_context(|| format!("{framing}.listen = {address}"))?);
    }
    let mut peers = Vec::new();
    for peer in &section.peers {
        layer.connect_forever(peer.address.clone(), peer.node_id.clone());
        peers.push((peer.address.clone(), peer.node_id.clone()));
    }
    Ok(Some((layer, bound, peers)))
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

/// Opens every `[[serial]]` line (each reopened while its device is missing or failing).
fn start_serial(
    config: &Config,
    agent: &Agent<SqliteStore>,
) -> anyhow::Result<Vec<Serial<Agent<SqliteStore>>>> {
    let mut links = Vec::new();
    for (i, entry) in config.serial.iter().enumerate() {
        let key = format!("serial[{i}] ({})", entry.device);
        anyhow::ensure!(entry.baud > 0, "{key}: baud = 0: give the line's rate (9600, 115200, ...)");
        if !STANDARD_BAUD_RATES.contains(&entry.baud) {
            tracing::warn!(
                device = %entry.device,
                baud = entry.baud,
                "{key}: baud = {} is not a standard rate: many serial devices refuse it or run at another, and both ends must agree (standard: 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600 ...)",
                entry.baud
            );
        }
        let mut link_config = SerialConfig::new(entry.device.clone(), entry.baud, entry.node_id.clone());
        if let Some(framing) = entry.framing {
            link_config.framing = framing;
        }
        link_config.flow_control = match entry.flow_control.as_deref() {
            None | Some("none") => FlowControl::None,
            Some("software") => FlowControl::Software,
            Some("hardware") => FlowControl::Hardware,
            Some(other) => {
                anyhow::bail!("{key}: flow_control = {other:?}: use \"none\", \"software\" or \"hardware\"")
            }
        };
        if let Some(v) = entry.max_frame {
            anyhow::ensure!(
                (256..=1 << 20).contains(&v),
                "{key}: max_frame = {v}: give 256 to 1048576 bytes (small on slow or noisy lines: a lost frame costs its bundle or fragment)"
            );
            link_config.max_frame = v;
        }
        link_config.min_gap = entry.min_gap.filter(|gap| !gap.is_zero());
        let link = Serial::new(agent.clone(), link_config);
        link.start();
        links.push(link);
    }
    Ok(links)
}

/// Watches every `[[spool]]` directory.
fn start_spools(
    config: &Config,
    agent: &Agent<SqliteStore>,
    data_dir: &Path,
) -> anyhow::Result<Vec<Spool<Agent<SqliteStore>>>> {
    let mut spools = Vec::new();
    for (i, entry) in config.spool.iter().enumerate() {
        let key = format!("spool[{i}] ({})", entry.dir.display());
        anyhow::ensure!(
            !entry.dir.starts_with(data_dir),
            "{key}: the spool must not be inside the data directory {}",
            data_dir.display()
        );
        let mut spool_config = SpoolConfig::new(&entry.dir);
        spool_config.peers = entry.peers.clone();
        spool_config.import_for = entry.import_for.clone();
        spool_config.keep_out = vec![data_dir.to_path_buf()];
        if let Some(v) = entry.scan_interval {
            anyhow::ensure!(!v.is_zero(), "{key}: scan_interval = 0: give a duration (\"2s\")");
            spool_config.scan_interval = v;
        }
        let spool = Spool::new(agent.clone(), spool_config);
        spool.start();
        spools.push(spool);
    }
    Ok(spools)
}

fn spool_json(spool: &Spool<Agent<SqliteStore>>) -> serde_json::Value {
    let config = spool.config();
    let stats = spool.stats();
    let dir = config.dir.display().to_string();
    serde_json::json!({
        "name": "spool",
        "listen": [dir],
        "present": stats.present,
        "peers": config.peers.iter().map(|peer| serde_json::json!({
            "address": dir,
            "node_id": peer.to_string(),
            "connected": stats.present,
        })).collect::<Vec<_>>(),
        "files_exported": stats.exported,
        "bytes_exported": stats.bytes_exported,
        "files_imported": stats.imported,
        "bytes_imported": stats.bytes_imported,
        "duplicates_skipped": stats.duplicates,
        "half_written_left": stats.half_written,
        "not_bundles_left": stats.not_bundles,
        "unsafe_entries_left": stats.unsafe_entries,
        "export_errors": stats.export_errors,
    })
}

fn serial_json(link: &Serial<Agent<SqliteStore>>) -> serde_json::Value {
    let config = link.config();
    let stats = link.stats();
    serde_json::json!({
        "name": "serial",
        "listen": [config.device],
        "device": config.device,
        "baud": config.baud,
        "framing": config.framing.name(),
        "peers": [{
            "address": config.device,
            "node_id": link.peer().map(|p| p.to_string()),
            "connected": stats.open && link.peer().is_some(),
        }],
        "frames_received": stats.frames_received,
        "bytes_received": stats.bytes_received,
        "frames_sent": stats.frames_sent,
        "bytes_sent": stats.bytes_sent,
        "crc_failures": stats.crc_failures,
        "malformed_frames": stats.malformed,
        "frames_too_long": stats.too_long,
        "frames_refused": stats.refused,
    })
}

/// TCPCLv3 as started: the layer, the addresses it listens on, the peers it dials.
type StartedTcpcl3 = (Tcpcl3<Agent<SqliteStore>>, Vec<SocketAddr>, Vec<(String, Option<Eid>)>);

/// Starts TCPCLv3 if its section has anything to do: listeners and peers.
async fn start_tcpcl3(config: &Config, agent: &Agent<SqliteStore>) -> anyhow::Result<Option<StartedTcpcl3>> {
    let section = &config.tcpcl3;
    if section.listen.is_empty() && section.peers.is_empty() {
        return Ok(None);
    }
    let mut session = Tcpcl3SessionConfig::new(agent.node_id().to_string());
    if let Some(v) = section.keepalive {
        session.keepalive = v;
    }
    if let Some(v) = section.acknowledgements {
        session.request_ack = v;
    }
    if let Some(v) = section.refusal {
        anyhow::ensure!(
            !v || session.request_ack,
            "tcpcl3.refusal = true needs tcpcl3.acknowledgements = true (RFC 7242 §4.1: refusal only with acknowledgements)"
        );
        session.refusal = v;
    }
    if let Some(v) = section.request_length {
        session.request_length = v;
    }
    if let Some(v) = section.max_bundle_size {
        anyhow::ensure!(v > 0, "tcpcl3.max_bundle_size = 0 would refuse every bundle: give a size in bytes");
        session.max_bundle_size = v;
    }
    let connections = connection_settings(config)?;
    session.header_timeout = connections.handshake_timeout;
    session.idle_timeout = connections.idle_timeout;
    let mut layer_config = Tcpcl3Config::new(session);
    layer_config.limits = connections.limits;
    if let Some(v) = section.segment_size {
        anyhow::ensure!(v > 0, "tcpcl3.segment_size = 0: give the largest data segment in bytes");
        layer_config.segment_size = v;
    }
    if let Some(v) = section.reconnect_max {
        anyhow::ensure!(!v.is_zero(), "tcpcl3.reconnect_max = 0: give a duration (\"60s\")");
        layer_config.reconnect_max = v.max(layer_config.reconnect_min);
    }
    if let Some(v) = section.stall_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "tcpcl3.stall_timeout = 0 would cut off every bundle: give a duration (\"2m\")"
        );
        layer_config.stall_timeout = v;
    }
    let layer = Tcpcl3::new(agent.clone(), layer_config);
    let mut bound = Vec::new();
    for address in &section.listen {
        bound.push(layer.listen(*address).await.with_context(|| format!("tcpcl3.listen = {address}"))?);
    }
    let mut peers = Vec::new();
    for peer in &section.peers {
        // A peer the contact plan schedules is connected at its contacts' starts.
        if !scheduled(config, peer.node_id.as_ref()) {
            layer.connect_forever(peer.address.clone(), peer.node_id.clone());
        }
        peers.push((peer.address.clone(), peer.node_id.clone()));
    }
    Ok(Some((layer, bound, peers)))
}

fn tcpcl3_json(
    layer: &Tcpcl3<Agent<SqliteStore>>,
    bound: &[SocketAddr],
    peers: &[(String, Option<Eid>)],
) -> serde_json::Value {
    let stats = layer.stats();
    serde_json::json!({
        "name": "tcpcl3",
        "listen": bound.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": peers.iter().map(|(address, node)| serde_json::json!({
            "address": address,
            "node_id": node.as_ref().map(ToString::to_string),
            "connected": node.as_ref().map(|n| stats.connected.contains(n)),
        })).collect::<Vec<_>>(),
        "connected": stats.connected.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "bundles_received": stats.bundles_received,
        "bytes_received": stats.bytes_received,
        "bundles_sent": stats.bundles_sent,
        "bytes_sent": stats.bytes_sent,
        "bundles_refused": stats.bundles_refused,
        "refused_by_peer": stats.refused_by_peer,
        "bundles_cut_off": stats.bundles_cut_off,
        "protocol_errors": stats.protocol_errors,
    })
}

/// The UDP layer as started: the layer, the addresses bound, the peers.
type StartedUdp = (Udp<Agent<SqliteStore>>, Vec<SocketAddr>, Vec<UdpPeer>);

/// Starts UDP if its section has anything to do.
async fn start_udp(
    section: &crate::config::UdpSection,
    agent: &Agent<SqliteStore>,
) -> anyhow::Result<Option<StartedUdp>> {
    let mut udp_config = UdpConfig::default();
    if let Some(v) = section.max_datagram {
        anyhow::ensure!(
            (64..=65_507).contains(&v),
            "udp.max_datagram = {v}: give 64 to 65507 bytes (the path MTU less 48 keeps IP from fragmenting)"
        );
        udp_config.max_datagram = v;
    }
    if let Some(v) = &section.allow {
        udp_config.allow = Some(v.clone());
    }
    if let Some(v) = section.socket_buffer {
        udp_config.socket_buffer = v;
    }
    if section.listen.is_empty() && section.peers.is_empty() {
        return Ok(None);
    }
    anyhow::ensure!(
        !section.listen.is_empty(),
        "udp.peers need a socket to send from: give udp.listen (\"0.0.0.0:4556\", or port 0 for any)"
    );
    let udp = Udp::new(agent.clone(), udp_config);
    let mut bound = Vec::new();
    for address in &section.listen {
        bound.push(udp.bind(*address).await.with_context(|| format!("udp.listen = {address}"))?);
    }
    let mut peers = Vec::new();
    for entry in &section.peers {
        anyhow::ensure!(entry.rate != Some(0), "udp.peers: rate 0 would send nothing to {}", entry.address);
        let peer = UdpPeer {
            address: entry.address,
            node_id: entry.node_id.clone(),
            rate: entry.rate,
            sends_from: entry.sends_from.clone(),
        };
        udp.add_peer(peer.clone()).await.with_context(|| format!("udp.peers = {}", entry.address))?;
        peers.push(peer);
    }
    Ok(Some((udp, bound, peers)))
}

fn udp_json(udp: &Udp<Agent<SqliteStore>>, bound: &[SocketAddr], peers: &[UdpPeer]) -> serde_json::Value {
    let stats = udp.stats();
    serde_json::json!({
        "name": "udp",
        "listen": bound.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": peers.iter().map(|p| serde_json::json!({
            "address": p.address.to_string(),
            "node_id": p.node_id.to_string(),
            "connected": true,
            "rate": p.rate,
        })).collect::<Vec<_>>(),
        "bundles_received": stats.bundles_received,
        "bytes_received": stats.bytes_received,
        "bundles_sent": stats.bundles_sent,
        "bytes_sent": stats.bytes_sent,
        "datagrams_refused": stats.datagrams_refused,
        "datagrams_not_allowed": stats.datagrams_not_allowed,
        "keepalives_received": stats.keepalives_received,
    })
}

fn framed_json(
    layer: &Framed<Agent<SqliteStore>>,
    bound: &[SocketAddr],
    peers: &[(String, Eid)],
) -> serde_json::Value {
    let stats = layer.stats();
    serde_json::json!({
        "name": layer.framing().name(),
        "listen": bound.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": peers.iter().map(|(address, node)| serde_json::json!({
            "address": address,
            "node_id": node.to_string(),
            "connected": stats.connected.contains(node),
        })).collect::<Vec<_>>(),
        "bundles_received": stats.bundles_received,
        "bytes_received": stats.bytes_received,
        "bundles_sent": stats.bundles_sent,
        "bytes_sent": stats.bytes_sent,
        "bundles_refused": stats.bundles_refused,
        "bad_frames": stats.bad_frames,
        "bundles_cut_off": stats.bundles_cut_off,
        "timed_out": stats.timed_out,
    })
}

fn session_json(session: &SessionSummary) -> serde_json::Value {
    serde_json::json!({
        "address": session.address.to_string(),
        "direction": if session.active { "outbound" } else { "inbound" },
        "node_id": session.node_id,
        "node_id_authenticated": session.node_id_authenticated,
        "tls": session.tls,
        "bytes_received": session.bytes_received,
        "bytes_sent": session.bytes_sent,
        "bundles_received": session.bundles_received,
        "bundles_sent": session.bundles_sent,
        "transfers_in_flight": session.transfers_in_flight,
    })
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

/// Creates a directory (and its parents) and makes it its owner's alone (0700).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
