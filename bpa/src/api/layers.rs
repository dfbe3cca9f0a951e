//! The daemon's convergence layers in `/v1/status` (`convergence_layers`) and `/metrics`
//! (`dtn_cla_…`), both made from the layers' typed reports ([`LayerStatus`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::cla::status::{Fact, LayerStatus, Measure, MeasureKind, PeerStatus, SessionStatus};

/// The daemon's own part of `/v1/status` and `/metrics`, made at each request.
#[derive(Clone)]
pub struct DaemonStatus {
    /// Fields about the daemon itself (data directory, configuration file, API socket).
    pub about: Map<String, Value>,
    /// Its convergence layers as they are now.
    pub layers: Arc<dyn Fn() -> Vec<LayerStatus> + Send + Sync>,
}

impl DaemonStatus {
    /// No daemon fields and no layers (an agent served on its own, as in tests).
    pub fn none() -> DaemonStatus {
        DaemonStatus { about: Map::new(), layers: Arc::new(Vec::new) }
    }
}

impl std::fmt::Debug for DaemonStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonStatus").field("about", &self.about).finish_non_exhaustive()
    }
}

/// A layer as `/v1/status` shows it (docs/api.md).
pub(super) fn layer_json(layer: &LayerStatus) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), layer.name.clone().into());
    object.insert("listen".into(), layer.listen.clone().into());
    object.insert("peers".into(), layer.peers.iter().map(peer_json).collect::<Vec<_>>().into());
    if let Some(sessions) = &layer.sessions {
        object.insert("sessions".into(), sessions.iter().map(session_json).collect::<Vec<_>>().into());
    }
    insert_facts(&mut object, &layer.facts);
    insert_measures(&mut object, &layer.measures);
    Value::Object(object)
}

fn peer_json(peer: &PeerStatus) -> Value {
    match peer {
        PeerStatus::Address(address) => address.clone().into(),
        PeerStatus::Known { address, node_id, connected, facts } => {
            let mut object = Map::new();
            object.insert("address".into(), address.clone().into());
            object.insert("node_id".into(), node_id.clone().into());
            object.insert("connected".into(), (*connected).into());
            insert_facts(&mut object, facts);
            Value::Object(object)
        }
    }
}

fn session_json(session: &SessionStatus) -> Value {
    let mut object = json!({
        "address": session.address,
        "direction": session.direction.name(),
        "node_id": session.node_id,
        "node_id_authenticated": session.node_id_authenticated,
        "tls": session.tls,
    });
    if let Value::Object(object) = &mut object {
        insert_measures(object, &session.measures);
    }
    object
}

fn insert_facts(object: &mut Map<String, Value>, facts: &[(&'static str, Fact)]) {
    for (name, fact) in facts {
        let value = match fact {
            Fact::Text(text) => Value::from(text.clone()),
            Fact::Texts(texts) => Value::from(texts.clone()),
            Fact::Number(n) => Value::from(*n),
            Fact::Flag(flag) => Value::from(*flag),
            Fact::Absent => Value::Null,
        };
        object.insert((*name).into(), value);
    }
}

fn insert_measures(object: &mut Map<String, Value>, measures: &[Measure]) {
    for measure in measures {
        object.insert(measure.name.into(), measure.value.into());
    }
}

/// The layers' measures in the Prometheus text format: a layer's as `dtn_cla_NAME{layer}`, a
/// session's as `dtn_cla_session_NAME{layer,address,node_id}`, and each configured peer's
/// reachability as the gauge `dtn_cla_peer_connected{layer,address,node_id}`. Samples of one
/// name are kept together, as the format asks.
pub(super) fn layer_metrics(layers: &[LayerStatus]) -> String {
    let mut families: BTreeMap<String, (MeasureKind, Vec<String>)> = BTreeMap::new();
    let mut sample = |name: String, kind: MeasureKind, labels: String, value: u64| {
        families.entry(name).or_insert_with(|| (kind, Vec::new())).1.push(format!("{{{labels}}} {value}"));
    };
    for layer in layers {
        let name = label(&layer.name);
        for measure in &layer.measures {
            sample(
                format!("dtn_cla_{}", measure.name),
                measure.kind,
                format!("layer=\"{name}\""),
                measure.value,
            );
        }
        for peer in &layer.peers {
            if let PeerStatus::Known { address, node_id, connected: Some(connected), .. } = peer {
                let labels = format!(
                    "layer=\"{name}\",address=\"{}\",node_id=\"{}\"",
                    label(address),
                    label(node_id.as_deref().unwrap_or(""))
                );
                sample("dtn_cla_peer_connected".into(), MeasureKind::Gauge, labels, u64::from(*connected));
            }
        }
        for session in layer.sessions.iter().flatten() {
            let labels = format!(
                "layer=\"{name}\",address=\"{}\",node_id=\"{}\"",
                label(&session.address),
                label(session.node_id.as_deref().unwrap_or(""))
            );
            for measure in &session.measures {
                sample(
                    format!("dtn_cla_session_{}", measure.name),
                    measure.kind,
                    labels.clone(),
                    measure.value,
                );
            }
        }
    }
    let mut text = String::new();
    for (metric, (kind, lines)) in families {
        let kind = match kind {
            MeasureKind::Counter => "counter",
            MeasureKind::Gauge => "gauge",
        };
        text.push_str(&format!("# TYPE {metric} {kind}\n"));
        for line in lines {
            text.push_str(&format!("{metric}{line}\n"));
        }
    }
    text
}

/// A label value with the text format's escapes: backslash, double quote, newline.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cla::status::Direction;

    fn tcpcl() -> LayerStatus {
        LayerStatus {
            name: "tcpcl".into(),
            listen: vec!["127.0.0.1:4556".into()],
            peers: vec![PeerStatus::Address("relay:4556".into())],
            sessions: Some(vec![SessionStatus {
                address: "127.0.0.1:40000".into(),
                direction: Direction::Inbound,
                node_id: Some("ipn:2.0".into()),
                node_id_authenticated: false,
                tls: false,
                measures: vec![Measure::counter("bundles_sent", 3), Measure::gauge("transfers_in_flight", 1)],
            }]),
            facts: Vec::new(),
            measures: Vec::new(),
        }
    }

    fn serial() -> LayerStatus {
        LayerStatus {
            name: "serial".into(),
            listen: vec!["/dev/ttyUSB0".into()],
            peers: vec![PeerStatus::Known {
                address: "/dev/ttyUSB0".into(),
                node_id: None,
                connected: Some(false),
                facts: Vec::new(),
            }],
            sessions: None,
            facts: vec![
                ("device", Fact::Text("/dev/ttyUSB0".into())),
                ("framing", Fact::Text("slip".into())),
            ],
            measures: vec![Measure::gauge("baud", 9600), Measure::counter("crc_failures", 2)],
        }
    }

    #[test]
    fn the_status_shows_every_field_where_it_was() {
        assert_eq!(
            layer_json(&tcpcl()),
            json!({
                "name": "tcpcl", "listen": ["127.0.0.1:4556"], "peers": ["relay:4556"],
                "sessions": [{
                    "address": "127.0.0.1:40000", "direction": "inbound", "node_id": "ipn:2.0",
                    "node_id_authenticated": false, "tls": false, "bundles_sent": 3, "transfers_in_flight": 1,
                }],
            })
        );
        assert_eq!(
            layer_json(&serial()),
            json!({
                "name": "serial", "listen": ["/dev/ttyUSB0"],
                "peers": [{"address": "/dev/ttyUSB0", "node_id": null, "connected": false}],
                "device": "/dev/ttyUSB0", "framing": "slip", "baud": 9600, "crc_failures": 2,
            })
        );
    }

    #[test]
    fn metrics_take_their_kind_from_the_layer_and_keep_each_family_together() {
        let text = layer_metrics(&[tcpcl(), serial()]);
        assert_eq!(
            text,
            "# TYPE dtn_cla_baud gauge\n\
             dtn_cla_baud{layer=\"serial\"} 9600\n\
             # TYPE dtn_cla_crc_failures counter\n\
             dtn_cla_crc_failures{layer=\"serial\"} 2\n\
             # TYPE dtn_cla_peer_connected gauge\n\
             dtn_cla_peer_connected{layer=\"serial\",address=\"/dev/ttyUSB0\",node_id=\"\"} 0\n\
             # TYPE dtn_cla_session_bundles_sent counter\n\
             dtn_cla_session_bundles_sent{layer=\"tcpcl\",address=\"127.0.0.1:40000\",node_id=\"ipn:2.0\"} 3\n\
             # TYPE dtn_cla_session_transfers_in_flight gauge\n\
             dtn_cla_session_transfers_in_flight{layer=\"tcpcl\",address=\"127.0.0.1:40000\",node_id=\"ipn:2.0\"} 1\n"
        );
    }

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        let mut layer = serial();
        layer.peers = vec![PeerStatus::Known {
            address: "a\"b\\c\nd".into(),
            node_id: Some("ipn:2.0".into()),
            connected: Some(true),
            facts: Vec::new(),
        }];
        let text = layer_metrics(&[layer]);
        assert!(
            text.contains(
                "dtn_cla_peer_connected{layer=\"serial\",address=\"a\\\"b\\\\c\\nd\",node_id=\"ipn:2.0\"} 1\n"
            ),
            "{text}"
        );
    }
}
