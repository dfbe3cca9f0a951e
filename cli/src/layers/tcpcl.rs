//! `[tcpcl]`: TCPCLv4 (RFC 9174), with TLS.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bpa::Eid;
use bpa::cla::status::{Direction, LayerStatus, Measure, PeerStatus, SessionStatus};
use convergence_layers::tcpcl::driver::{SessionSummary, Tcpcl, TcpclConfig};
use convergence_layers::tcpcl::session::{SessionConfig, TlsPolicy};
use convergence_layers::tcpcl::tls::TlsSetup;

use super::{LayerContext, NodeAgent, PlannedDialer, RunningLayer, Started, Stopping, wait_until};
use crate::config::{Config, TlsSetting};

struct Running {
    layer: Tcpcl<NodeAgent>,
    bound: Vec<SocketAddr>,
    /// The configured peers' addresses.
    peers: Vec<String>,
    /// The peers the contact plan schedules: node ID and address.
    scheduled: Vec<(Eid, String)>,
}

/// Starts TCPCLv4 if its section has anything to do: listeners and peers. The section is
/// checked whole even when it has not, so a mistake shows before it matters.
pub(super) fn start<'a>(context: &'a LayerContext<'a>) -> Started<'a> {
    Box::pin(async move {
        let config = context.config;
        let section = &config.tcpcl;
        let layer_config = layer_config(context)?;
        if section.listen.is_empty() && section.peers.is_empty() {
            return Ok(Vec::new());
        }
        let layer = Tcpcl::new(context.agent.clone(), layer_config);
        let mut bound = Vec::new();
        for address in &section.listen {
            bound.push(layer.listen(*address).await.with_context(|| format!("tcpcl.listen = {address}"))?);
        }
        let scheduled = scheduled_peers(config);
        for peer in &section.peers {
            // A peer the contact plan schedules is connected at its contacts' starts.
            if !super::scheduled(config, peer.node_id.as_ref()) {
                layer.connect_forever(peer.address.clone());
            }
        }
        let peers = section.peers.iter().map(|p| p.address.clone()).collect();
        Ok(vec![Box::new(Running { layer, bound, peers, scheduled }) as Box<dyn RunningLayer>])
    })
}

fn layer_config(context: &LayerContext<'_>) -> anyhow::Result<TcpclConfig> {
    let section = &context.config.tcpcl;
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
    let connections = context.connections;
    session.negotiation_timeout = connections.handshake_timeout;
    session.idle_timeout = connections.idle_timeout;
    let mut layer_config = TcpclConfig::new(session);
    layer_config.tls = tls;
    layer_config.limits = connections.limits;
    if let Some(v) = section.reconnect_max {
        layer_config.reconnect_max = v.max(layer_config.reconnect_min);
    }
    if let Some(v) = section.transfer_idle_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "tcpcl.transfer_idle_timeout = 0 would abandon every transfer: give a duration"
        );
        layer_config.transfer_idle_timeout = v;
    }
    if let Some(v) = section.send_stall_timeout {
        anyhow::ensure!(
            !v.is_zero(),
            "tcpcl.send_stall_timeout = 0 would end every session: give a duration"
        );
        layer_config.send_stall_timeout = v;
    }
    Ok(layer_config)
}

/// The peers connected only during their planned contacts: those with a node ID, when a contact
/// plan is configured.
fn scheduled_peers(config: &Config) -> Vec<(Eid, String)> {
    if config.routing.plan.is_none() {
        return Vec::new();
    }
    config
        .tcpcl
        .peers
        .iter()
        .filter_map(|peer| Some((peer.node_id.as_ref()?.node_id(), peer.address.clone())))
        .collect()
}

impl RunningLayer for Running {
    fn status(&self) -> LayerStatus {
        LayerStatus {
            name: "tcpcl".into(),
            listen: self.bound.iter().map(ToString::to_string).collect(),
            peers: self.peers.iter().cloned().map(PeerStatus::Address).collect(),
            sessions: Some(self.layer.sessions().iter().map(session_status).collect()),
            facts: Vec::new(),
            measures: Vec::new(),
        }
    }

    fn stop(&self, grace: Duration) -> Stopping<'_> {
        Box::pin(async move {
            // Sessions end with SESS_TERM; bundles in transfer stay stored and go again next time.
            self.layer.shutdown();
            wait_until(grace, || self.layer.sessions().is_empty()).await;
        })
    }

    fn planned_dialers(&self) -> Vec<(Eid, PlannedDialer)> {
        self.scheduled
            .iter()
            .map(|(node, address)| {
                let (layer, address) = (self.layer.clone(), address.clone());
                let via = format!("TCPCLv4 {address}");
                let connect_while: Box<dyn Fn(_) + Send + Sync> =
                    Box::new(move |wanted| layer.connect_while(address.clone(), wanted));
                (node.clone(), PlannedDialer { via, connect_while })
            })
            .collect()
    }
}

fn session_status(session: &SessionSummary) -> SessionStatus {
    SessionStatus {
        address: session.address.to_string(),
        direction: if session.active { Direction::Outbound } else { Direction::Inbound },
        node_id: session.node_id.clone(),
        node_id_authenticated: session.node_id_authenticated,
        tls: session.tls,
        measures: vec![
            Measure::counter("bytes_received", session.bytes_received),
            Measure::counter("bytes_sent", session.bytes_sent),
            Measure::counter("bundles_received", session.bundles_received),
            Measure::counter("bundles_sent", session.bundles_sent),
            Measure::gauge("transfers_in_flight", session.transfers_in_flight),
        ],
    }
}
