//! `[stcp]` and `[mtcp]`: bundles in length-framed TCP streams (STCP for ION, MTCP for
//! µD3TN and dtn7-rs).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bpa::Eid;
use bpa::cla::status::{LayerStatus, Measure, PeerStatus};
use convergence_layers::framed::{Framed, FramedConfig, Framing};

use super::{LayerContext, NodeAgent, RunningLayer, Started, Stopping, traffic};
use crate::config::FramedSection;

struct Running {
    layer: Framed<NodeAgent>,
    bound: Vec<SocketAddr>,
    peers: Vec<(String, Eid)>,
}

/// Starts STCP, then MTCP, each if its section has anything to do: listeners and peers.
pub(super) fn start<'a>(context: &'a LayerContext<'a>) -> Started<'a> {
    Box::pin(async move {
        let mut running: Vec<Box<dyn RunningLayer>> = Vec::new();
        for (framing, section) in
            [(Framing::Stcp, &context.config.stcp), (Framing::Mtcp, &context.config.mtcp)]
        {
            if let Some(layer) = start_one(context, framing, section).await? {
                running.push(Box::new(layer));
            }
        }
        Ok(running)
    })
}

async fn start_one(
    context: &LayerContext<'_>,
    framing: Framing,
    section: &FramedSection,
) -> anyhow::Result<Option<Running>> {
    let mut layer_config = FramedConfig::new(framing);
    let connections = context.connections;
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
    let layer = Framed::new(context.agent.clone(), layer_config);
    let mut bound = Vec::new();
    for address in &section.listen {
        bound.push(layer.listen(*address).await.with_context(|| format!("{framing}.listen = {address}"))?);
    }
    let mut peers = Vec::new();
    for peer in &section.peers {
        layer.connect_forever(peer.address.clone(), peer.node_id.clone());
        peers.push((peer.address.clone(), peer.node_id.clone()));
    }
    Ok(Some(Running { layer, bound, peers }))
}

impl RunningLayer for Running {
    fn status(&self) -> LayerStatus {
        let stats = self.layer.stats();
        LayerStatus {
            name: self.layer.framing().name().into(),
            listen: self.bound.iter().map(ToString::to_string).collect(),
            peers: self
                .peers
                .iter()
                .map(|(address, node)| PeerStatus::Known {
                    address: address.clone(),
                    node_id: Some(node.to_string()),
                    connected: Some(stats.connected.contains(node)),
                    facts: Vec::new(),
                })
                .collect(),
            sessions: None,
            facts: Vec::new(),
            measures: [
                traffic(stats.bundles_received, stats.bytes_received, stats.bundles_sent, stats.bytes_sent),
                vec![
                    Measure::counter("bundles_refused", stats.bundles_refused),
                    Measure::counter("bad_frames", stats.bad_frames),
                    Measure::counter("bundles_cut_off", stats.bundles_cut_off),
                    Measure::counter("timed_out", stats.timed_out),
                ],
            ]
            .concat(),
        }
    }

    fn stop(&self, _grace: Duration) -> Stopping<'_> {
        // Nothing to say goodbye with: connections close; a bundle half sent goes again.
        self.layer.shutdown();
        Box::pin(std::future::ready(()))
    }
}
