//! `[tcpcl3]`: TCPCLv3 (RFC 7242), for ION and DTN2.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bpa::Eid;
use bpa::cla::status::{Fact, LayerStatus, Measure, PeerStatus};
use convergence_layers::tcpcl3::driver::{Tcpcl3, Tcpcl3Config};
use convergence_layers::tcpcl3::session::SessionConfig;

use super::{LayerContext, NodeAgent, PlannedDialer, RunningLayer, Started, Stopping, traffic, wait_until};

struct Running {
    layer: Tcpcl3<NodeAgent>,
    bound: Vec<SocketAddr>,
    /// Each configured peer: its address and node ID if given.
    peers: Vec<(String, Option<Eid>)>,
    /// The peers the contact plan schedules: node ID and address.
    scheduled: Vec<(Eid, String)>,
}

/// Starts TCPCLv3 if its section has anything to do: listeners and peers.
pub(super) fn start<'a>(context: &'a LayerContext<'a>) -> Started<'a> {
    Box::pin(async move {
        let config = context.config;
        let section = &config.tcpcl3;
        if section.listen.is_empty() && section.peers.is_empty() {
            return Ok(Vec::new());
        }
        let layer = Tcpcl3::new(context.agent.clone(), layer_config(context)?);
        let mut bound = Vec::new();
        for address in &section.listen {
            bound.push(layer.listen(*address).await.with_context(|| format!("tcpcl3.listen = {address}"))?);
        }
        let mut peers = Vec::new();
        let mut scheduled = Vec::new();
        for peer in &section.peers {
            if super::scheduled(config, peer.node_id.as_ref()) {
                // Connected at its contacts' starts.
                if let Some(node) = &peer.node_id {
                    scheduled.push((node.node_id(), peer.address.clone()));
                }
            } else {
                layer.connect_forever(peer.address.clone(), peer.node_id.clone());
            }
            peers.push((peer.address.clone(), peer.node_id.clone()));
        }
        Ok(vec![Box::new(Running { layer, bound, peers, scheduled }) as Box<dyn RunningLayer>])
    })
}

fn layer_config(context: &LayerContext<'_>) -> anyhow::Result<Tcpcl3Config> {
    let section = &context.config.tcpcl3;
    let mut session = SessionConfig::new(context.agent.node_id().to_string());
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
    let connections = context.connections;
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
    Ok(layer_config)
}

impl RunningLayer for Running {
    fn status(&self) -> LayerStatus {
        let stats = self.layer.stats();
        LayerStatus {
            name: "tcpcl3".into(),
            listen: self.bound.iter().map(ToString::to_string).collect(),
            peers: self
                .peers
                .iter()
                .map(|(address, node)| PeerStatus::Known {
                    address: address.clone(),
                    node_id: node.as_ref().map(ToString::to_string),
                    connected: node.as_ref().map(|n| stats.connected.contains(n)),
                    facts: Vec::new(),
                })
                .collect(),
            sessions: None,
            facts: vec![(
                "connected",
                Fact::Texts(stats.connected.iter().map(ToString::to_string).collect()),
            )],
            measures: [
                traffic(stats.bundles_received, stats.bytes_received, stats.bundles_sent, stats.bytes_sent),
                vec![
                    Measure::counter("bundles_refused", stats.bundles_refused),
                    Measure::counter("refused_by_peer", stats.refused_by_peer),
                    Measure::counter("bundles_cut_off", stats.bundles_cut_off),
                    Measure::counter("protocol_errors", stats.protocol_errors),
                ],
            ]
            .concat(),
        }
    }

    fn stop(&self, grace: Duration) -> Stopping<'_> {
        Box::pin(async move {
            // Connections end with SHUTDOWN; unacknowledged bundles stay stored and go again.
            self.layer.shutdown();
            wait_until(grace, || self.layer.stats().connected.is_empty()).await;
        })
    }

    fn planned_dialers(&self) -> Vec<(Eid, PlannedDialer)> {
        self.scheduled
            .iter()
            .map(|(node, address)| {
                let (layer, address, peer) = (self.layer.clone(), address.clone(), node.clone());
                let via = format!("TCPCLv3 {address}");
                let connect_while: Box<dyn Fn(_) + Send + Sync> =
                    Box::new(move |wanted| layer.connect_while(address.clone(), Some(peer.clone()), wanted));
                (node.clone(), PlannedDialer { via, connect_while })
            })
            .collect()
    }
}
