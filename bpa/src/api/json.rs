//! The JSON shapes of the API's answers (documented in docs/api.md).

use serde_json::{Value, json};

use crate::agent::AgentStats;
use crate::bundle::Bundle;
use crate::store::{StoreStats, StoredBundle};
use crate::time::format_dtn_time;

pub fn store_stats(stats: StoreStats) -> Value {
    json!({
        "bundles": stats.bundles,
        "bytes": stats.bytes,
        "quarantined": stats.quarantined,
        "lost_transactions_at_start": stats.lost_transactions,
    })
}

pub fn agent_stats(stats: &AgentStats) -> Value {
    let map: serde_json::Map<String, Value> =
        stats.named().iter().map(|(name, _, value)| (name.to_string(), json!(value))).collect();
    Value::Object(map)
}

pub fn stored_bundle(meta: &StoredBundle) -> Value {
    json!({
        "id": meta.id,
        "bundle_id": meta.bundle_id.to_string(),
        "destination": meta.destination.to_string(),
        "length": meta.length,
        "received_at": format_dtn_time(meta.received_at),
        "expires_at": format_dtn_time(meta.expires_at),
        "state": meta.state.kind_name(),
        "waiting_for": meta.state.argument(),
        "why": meta.state.to_string(),
    })
}

pub fn bundle(bundle: &Bundle) -> Value {
    let p = bundle.primary();
    json!({
        "source": p.source.to_string(),
        "destination": p.destination.to_string(),
        "report_to": p.report_to.to_string(),
        "creation_time": p.creation.time,
        "sequence": p.creation.sequence,
        "lifetime_ms": p.lifetime,
        "flags": p.flags.0,
        "flag_names": p.flags.names(),
        "fragment": p.fragment.map(|f| json!({ "offset": f.offset, "total_adu_length": f.total_adu_length })),
        "payload_length": bundle.payload().len(),
        "blocks": bundle.blocks().iter().map(|b| json!({
            "type": b.block_type, "number": b.number, "flags": b.flags.0, "length": b.data.len(),
        })).collect::<Vec<_>>(),
    })
}
