//! `[[serial]]`: bundles in frames over serial lines (radios, modems, cables).

use std::time::Duration;

use bpa::cla::status::{Fact, LayerStatus, Measure, PeerStatus};
use convergence_layers::serial::{FlowControl, Serial, SerialConfig};

use super::{LayerContext, NodeAgent, RunningLayer, Started, Stopping};

/// The rates serial devices commonly take (POSIX termios and Linux's extensions).
const STANDARD_BAUD_RATES: &[u32] = &[
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200,
    230_400, 460_800, 500_000, 576_000, 921_600, 1_000_000, 1_152_000, 1_500_000, 2_000_000, 2_500_000,
    3_000_000, 3_500_000, 4_000_000,
];

struct Running(Serial<NodeAgent>);

/// Opens every `[[serial]]` line (each reopened while its device is missing or failing).
pub(super) fn start<'a>(context: &'a LayerContext<'a>) -> Started<'a> {
    Box::pin(async move {
        let mut links: Vec<Box<dyn RunningLayer>> = Vec::new();
        for (i, entry) in context.config.serial.iter().enumerate() {
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
                    anyhow::bail!(
                        "{key}: flow_control = {other:?}: use \"none\", \"software\" or \"hardware\""
                    )
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
            let link = Serial::new(context.agent.clone(), link_config);
            link.start();
            links.push(Box::new(Running(link)));
        }
        Ok(links)
    })
}

impl RunningLayer for Running {
    fn status(&self) -> LayerStatus {
        let link = &self.0;
        let config = link.config();
        let stats = link.stats();
        LayerStatus {
            name: "serial".into(),
            listen: vec![config.device.clone()],
            peers: vec![PeerStatus::Known {
                address: config.device.clone(),
                node_id: link.peer().map(|p| p.to_string()),
                connected: Some(stats.open && link.peer().is_some()),
                facts: Vec::new(),
            }],
            sessions: None,
            facts: vec![
                ("device", Fact::Text(config.device.clone())),
                ("framing", Fact::Text(config.framing.name().into())),
            ],
            measures: vec![
                // A setting, shown as a gauge so a dashboard can put it beside the rates.
                Measure::gauge("baud", u64::from(config.baud)),
                Measure::counter("frames_received", stats.frames_received),
                Measure::counter("bytes_received", stats.bytes_received),
                Measure::counter("frames_sent", stats.frames_sent),
                Measure::counter("bytes_sent", stats.bytes_sent),
                Measure::counter("crc_failures", stats.crc_failures),
                Measure::counter("malformed_frames", stats.malformed),
                Measure::counter("frames_too_long", stats.too_long),
                Measure::counter("frames_refused", stats.refused),
            ],
        }
    }

    fn stop(&self, _grace: Duration) -> Stopping<'_> {
        self.0.shutdown();
        Box::pin(std::future::ready(()))
    }
}
