//! The convergence layers the daemon runs, all plugged in alike: each module starts its layer
//! from its configuration section ([`LayerContext`]) and hands back what runs as a
//! [`RunningLayer`], which reports a typed status (for `dtn status` and `/metrics`), stops, and
//! says which peers it dials at planned contacts. Adding a layer is adding a module and a line
//! in [`REGISTRY`].

mod contacts;
mod framed;
mod serial;
mod spool;
mod tcpcl;
mod tcpcl3;
mod udp;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bpa::Agent;
use bpa::Eid;
use bpa::SqliteStore;
use bpa::cla::status::{LayerStatus, Measure};
use convergence_layers::listener::{ConnectionLimits, DEFAULT_IDLE_TIMEOUT};

pub(crate) use contacts::manage_contacts;

use crate::config::Config;

/// The agent as the daemon runs it.
pub(crate) type NodeAgent = Agent<SqliteStore>;

/// What a layer is started with.
pub(crate) struct LayerContext<'a> {
    pub config: &'a Config,
    pub agent: &'a NodeAgent,
    pub data_dir: &'a Path,
    /// `[connections]`, checked once for every stream layer.
    pub connections: ConnectionSettings,
}

/// A layer once started.
pub(crate) trait RunningLayer: Send + Sync {
    /// What it says of itself now.
    fn status(&self) -> LayerStatus;
    /// Stops it: sessions end as its protocol says (SESS_TERM, SHUTDOWN), waiting at most
    /// `grace` for them; bundles under way stay stored and go again at the next start.
    fn stop(&self, grace: Duration) -> Stopping<'_>;
    /// The peers the contact plan schedules that this layer dials at their contacts' starts,
    /// by node ID.
    fn planned_dialers(&self) -> Vec<(Eid, PlannedDialer)> {
        Vec::new()
    }
}

/// How a planned peer is reached at its contacts' starts.
pub(crate) struct PlannedDialer {
    /// The layer and address, for the log: "TCPCLv4 relay:4556".
    pub via: String,
    /// Opens a connection and keeps it (reconnecting) while the flag stays true.
    pub connect_while: Box<dyn Fn(tokio::sync::watch::Receiver<bool>) + Send + Sync>,
}

/// A layer stopping.
pub(crate) type Stopping<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

type Started<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Vec<Box<dyn RunningLayer>>>> + Send + 'a>>;
type Start = for<'a> fn(&'a LayerContext<'a>) -> Started<'a>;

/// Every layer the daemon knows, in the order they start and stop. A layer whose section has
/// nothing to do starts nothing.
const REGISTRY: [Start; 6] =
    [tcpcl::start, framed::start, udp::start, tcpcl3::start, serial::start, spool::start];

/// The layers running in a daemon.
pub(crate) struct Layers(Vec<Box<dyn RunningLayer>>);

impl Layers {
    /// Starts every configured layer; the first that cannot start stops the daemon's start.
    pub(crate) async fn start(context: &LayerContext<'_>) -> anyhow::Result<Layers> {
        let mut running = Vec::new();
        for start in REGISTRY {
            running.extend(start(context).await?);
        }
        Ok(Layers(running))
    }

    pub(crate) fn status(&self) -> Vec<LayerStatus> {
        self.0.iter().map(|layer| layer.status()).collect()
    }

    /// Stops every layer in turn, each given at most `grace` for its sessions to end.
    pub(crate) async fn stop(&self, grace: Duration) {
        for layer in &self.0 {
            layer.stop(grace).await;
        }
    }

    /// The scheduled peers of every layer, by node ID (a later layer's entry for the same node
    /// wins, as the order of the sections did before).
    pub(crate) fn planned_dialers(&self) -> HashMap<Eid, PlannedDialer> {
        self.0.iter().flat_map(|layer| layer.planned_dialers()).collect()
    }
}

/// The bundles and bytes a layer moved each way, as every layer counts them.
fn traffic(bundles_received: u64, bytes_received: u64, bundles_sent: u64, bytes_sent: u64) -> Vec<Measure> {
    vec![
        Measure::counter("bundles_received", bundles_received),
        Measure::counter("bytes_received", bytes_received),
        Measure::counter("bundles_sent", bundles_sent),
        Measure::counter("bytes_sent", bytes_sent),
    ]
}

/// Waits until `done` holds or `grace` passes, looking every 20 ms (a layer's sessions
/// ending after its shutdown).
async fn wait_until(grace: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + grace;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `[connections]`, checked: the listeners' bounds and every stream layer's deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionSettings {
    pub limits: ConnectionLimits,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionSettings {
    pub(crate) fn from_config(config: &Config) -> anyhow::Result<ConnectionSettings> {
        let section = &config.connections;
        let mut settings = ConnectionSettings {
            limits: ConnectionLimits::default(),
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        };
        if let Some(v) = section.max {
            anyhow::ensure!(
                v > 0,
                "connections.max = 0 would refuse every peer: give a number of connections"
            );
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
}

/// Whether a peer with this node ID is connected only at its planned contacts: a contact plan
/// is loaded and the peer's node ID is given.
fn scheduled(config: &Config, node_id: Option<&Eid>) -> bool {
    config.routing.plan.is_some() && node_id.is_some()
}
