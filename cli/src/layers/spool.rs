//! `[[spool]]`: bundles as files in a directory carried between nodes (a USB stick).

use std::time::Duration;

use bpa::cla::status::{Fact, LayerStatus, Measure, PeerStatus};
use convergence_layers::spool::{Spool, SpoolConfig};

use super::{LayerContext, NodeAgent, RunningLayer, Started, Stopping};

struct Running(Spool<NodeAgent>);

/// Watches every `[[spool]]` directory.
pub(super) fn start<'a>(context: &'a LayerContext<'a>) -> Started<'a> {
    Box::pin(async move {
        let data_dir = context.data_dir;
        let mut spools: Vec<Box<dyn RunningLayer>> = Vec::new();
        for (i, entry) in context.config.spool.iter().enumerate() {
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
            let spool = Spool::new(context.agent.clone(), spool_config);
            spool.start();
            spools.push(Box::new(Running(spool)));
        }
        Ok(spools)
    })
}

impl RunningLayer for Running {
    fn status(&self) -> LayerStatus {
        let config = self.0.config();
        let stats = self.0.stats();
        let dir = config.dir.display().to_string();
        LayerStatus {
            name: "spool".into(),
            listen: vec![dir.clone()],
            peers: config
                .peers
                .iter()
                .map(|peer| PeerStatus::Known {
                    address: dir.clone(),
                    node_id: Some(peer.to_string()),
                    connected: Some(stats.present),
                    facts: Vec::new(),
                })
                .collect(),
            sessions: None,
            facts: vec![("present", Fact::Flag(stats.present))],
            measures: vec![
                Measure::counter("files_exported", stats.exported),
                Measure::counter("bytes_exported", stats.bytes_exported),
                Measure::counter("files_imported", stats.imported),
                Measure::counter("bytes_imported", stats.bytes_imported),
                Measure::counter("duplicates_skipped", stats.duplicates),
                Measure::counter("half_written_left", stats.half_written),
                Measure::counter("not_bundles_left", stats.not_bundles),
                Measure::counter("unsafe_entries_left", stats.unsafe_entries),
                Measure::counter("export_errors", stats.export_errors),
            ],
        }
    }

    fn stop(&self, _grace: Duration) -> Stopping<'_> {
        self.0.shutdown();
        Box::pin(std::future::ready(()))
    }
}
