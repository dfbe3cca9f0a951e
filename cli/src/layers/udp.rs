//! `[udp]`: one bundle (or fragment) per datagram, as ION's `udpcl` and dtn7-rs send them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bpa::cla::status::{Fact, LayerStatus, Measure, PeerStatus};
use convergence_layers::udp::{Udp, UdpConfig, UdpPeer};

use super::{LayerContext, NodeAgent, RunningLayer, Started, Stopping, traffic};

struct Running {
    layer: Udp<NodeAgent>,
    bound: Vec<SocketAddr>,
    peers: Vec<UdpPeer>,
}

/// Starts UDP if its section has anything to do.
pub(super) fn start<'a>(context: &'a LayerContext<'a>) -> Started<'a> {
    Box::pin(async move {
        let section = &context.config.udp;
        let mut layer_config = UdpConfig::default();
        if let Some(v) = section.max_datagram {
            anyhow::ensure!(
                (64..=65_507).contains(&v),
                "udp.max_datagram = {v}: give 64 to 65507 bytes (the path MTU less 48 keeps IP from fragmenting)"
            );
            layer_config.max_datagram = v;
        }
        if let Some(v) = &section.allow {
            layer_config.allow = Some(v.clone());
        }
        if let Some(v) = section.socket_buffer {
            layer_config.socket_buffer = v;
        }
        if section.listen.is_empty() && section.peers.is_empty() {
            return Ok(Vec::new());
        }
        anyhow::ensure!(
            !section.listen.is_empty(),
            "udp.peers need a socket to send from: give udp.listen (\"0.0.0.0:4556\", or port 0 for any)"
        );
        let layer = Udp::new(context.agent.clone(), layer_config);
        let mut bound = Vec::new();
        for address in &section.listen {
            bound.push(layer.bind(*address).await.with_context(|| format!("udp.listen = {address}"))?);
        }
        let mut peers = Vec::new();
        for entry in &section.peers {
            anyhow::ensure!(
                entry.rate != Some(0),
                "udp.peers: rate 0 would send nothing to {}",
                entry.address
            );
            let peer = UdpPeer {
                address: entry.address,
                node_id: entry.node_id.clone(),
                rate: entry.rate,
                sends_from: entry.sends_from.clone(),
            };
            layer.add_peer(peer.clone()).await.with_context(|| format!("udp.peers = {}", entry.address))?;
            peers.push(peer);
        }
        Ok(vec![Box::new(Running { layer, bound, peers }) as Box<dyn RunningLayer>])
    })
}

impl RunningLayer for Running {
    fn status(&self) -> LayerStatus {
        let stats = self.layer.stats();
        LayerStatus {
            name: "udp".into(),
            listen: self.bound.iter().map(ToString::to_string).collect(),
            peers: self
                .peers
                .iter()
                .map(|p| PeerStatus::Known {
                    address: p.address.to_string(),
                    node_id: Some(p.node_id.to_string()),
                    // Nothing to connect: a datagram can always be sent.
                    connected: Some(true),
                    facts: vec![("rate", p.rate.map_or(Fact::Absent, Fact::Number))],
                })
                .collect(),
            sessions: None,
            facts: Vec::new(),
            measures: [
                traffic(stats.bundles_received, stats.bytes_received, stats.bundles_sent, stats.bytes_sent),
                vec![
                    Measure::counter("datagrams_refused", stats.datagrams_refused),
                    Measure::counter("datagrams_not_allowed", stats.datagrams_not_allowed),
                    Measure::counter("keepalives_received", stats.keepalives_received),
                ],
            ]
            .concat(),
        }
    }

    fn stop(&self, _grace: Duration) -> Stopping<'_> {
        self.layer.shutdown();
        Box::pin(std::future::ready(()))
    }
}
