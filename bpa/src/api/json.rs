//! The JSON shapes of the API's answers (documented in docs/api.md).

use serde_json::{Value, json};

use crate::admin::CustodyDisposition;
use crate::agent::AgentStats;
use crate::agent::CustodyStats;
use crate::bundle::Bundle;
use crate::store::{BundleState, CustodyCounts, CustodyInfo, StoreStats, StoredBundle};
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
    let map: serde_json::Map<String, Value> = stats
        .named()
        .iter()
        .chain(stats.named_peers().iter())
        .map(|(name, _, value)| (name.to_string(), json!(value)))
        .collect();
    Value::Object(map)
}

/// Custody totals for the status: what the agent did, what the store holds.
pub fn custody(stats: &CustodyStats, counts: &CustodyCounts) -> Value {
    let mut map: serde_json::Map<String, Value> =
        stats.named().iter().map(|(name, _, value)| (name.to_string(), json!(value))).collect();
    let refused: serde_json::Map<String, Value> = stats
        .refused
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| {
            let name = if code == 9 { "other" } else { CustodyDisposition(code as u64).name() };
            (name.to_string(), json!(n))
        })
        .collect();
    map.insert("refused_by_next".into(), Value::Object(refused));
    map.insert("held".into(), json!(counts.held));
    map.insert("outstanding".into(), json!(counts.outstanding));
    map.insert("signals_pending".into(), json!(counts.signals_pending));
    Value::Object(map)
}

/// Who holds custody of a stored bundle and, when it awaits a signal, when it goes again.
pub fn custody_info(info: &CustodyInfo, node: &crate::bundle::Eid, state: &BundleState) -> Value {
    let custodian = if info.custodial { Some(node.to_string()) } else { None };
    let (transmission_id, retransmit_at) = match info.transmission {
        Some((tid, deadline)) => (Some(tid), Some(format_dtn_time(deadline))),
        None => (None, None),
    };
    let awaiting = match state {
        BundleState::AwaitingCustody { neighbour } => Some(neighbour.clone()),
        _ => None,
    };
    json!({
        "custodian": custodian,
        "awaiting_signal_from": awaiting,
        "transmission_id": transmission_id,
        "retransmit_at": retransmit_at,
        "transmissions": info.attempts,
    })
}

/// A stored bundle's row; `why` says why it is still here ([`crate::agent::Agent::why_waiting`]).
pub fn stored_bundle(meta: &StoredBundle, why: String) -> Value {
    json!({
        "id": meta.id,
        "bundle_id": meta.bundle_id.to_string(),
        "destination": meta.destination.to_string(),
        "length": meta.length,
        "received_at": format_dtn_time(meta.received_at),
        "expires_at": format_dtn_time(meta.expires_at),
        "state": meta.state.kind_name(),
        "waiting_for": meta.state.argument(),
        "why": why,
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
