//! `dtn status`: the daemon's status, as JSON or for people.

use std::process::ExitCode;

use hyper::Method;
use serde_json::Value;

use crate::app_cmd::runtime;
use crate::client::Client;

/// Prints the daemon's status: its JSON with `json_out`, else a summary for people.
pub fn status(client: Client, json_out: bool) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let status = client.json(Method::GET, "/v1/status").await?;
        if json_out {
            println!("{status}");
            return Ok(ExitCode::SUCCESS);
        }
        let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        println!(
            "node        {} (dtn {}, up {} s)",
            s(&status["node_id"]),
            s(&status["version"]),
            status["uptime_seconds"]
        );
        println!("data        {}", s(&status["data_dir"]));
        println!("api         {}", s(&status["api_socket"]));
        println!("store       {} bundles, {} bytes", status["store"]["bundles"], status["store"]["bytes"]);
        if status["store"]["quarantined"].as_u64().unwrap_or(0) > 0 {
            println!(
                "  DAMAGED: {} bundles quarantined (never served; `dtn bundles list` names them)",
                status["store"]["quarantined"]
            );
        }
        if status["store"]["lost_transactions_at_start"].as_u64().unwrap_or(0) > 0 {
            println!(
                "  LOST: {} acknowledged store transactions could not be replayed at start (see the daemon's log)",
                status["store"]["lost_transactions_at_start"]
            );
        }
        let empty = Vec::new();
        let neighbours = status["neighbours"].as_array().unwrap_or(&empty);
        println!("neighbours  {}", if neighbours.is_empty() { "none" } else { "" });
        for n in neighbours {
            println!("  {} via {} ({} in flight)", s(&n["node_id"]), s(&n["cla"]), n["in_flight"]);
        }
        let layers = status["convergence_layers"].as_array().unwrap_or(&empty);
        for layer in layers {
            let listen: Vec<String> =
                layer["listen"].as_array().unwrap_or(&empty).iter().map(&s).collect();
            let listen = if listen.is_empty() { "not listening".to_string() } else { listen.join(", ") };
            println!("{:<11} {listen}", s(&layer["name"]));
            for peer in layer["peers"].as_array().unwrap_or(&empty) {
                match peer.as_str() {
                    Some(address) => println!("  peer {address}"),
                    None if peer["node_id"].is_null() => {
                        println!("  peer {} (named by its contact header)", s(&peer["address"]))
                    }
                    None => println!(
                        "  peer {} = {} ({})",
                        s(&peer["address"]),
                        s(&peer["node_id"]),
                        if peer["connected"].as_bool() == Some(true) { "connected" } else { "not connected" }
                    ),
                }
            }
            if let Some(connected) = layer["connected"].as_array() {
                let names: Vec<String> = connected.iter().map(&s).collect();
                println!("  connected: {}", if names.is_empty() { "none".to_string() } else { names.join(", ") });
            }
            if layer.get("files_exported").is_some() {
                println!(
                    "  {}: {} files / {} bytes exported, {} files / {} bytes imported; {} duplicates skipped; left alone: {} half-written, {} not bundles, {} unsafe; {} export errors",
                    if layer["present"].as_bool() == Some(true) {
                        "present"
                    } else {
                        "not there (bundles for its peers wait; on a medium, make the directory once)"
                    },
                    layer["files_exported"],
                    layer["bytes_exported"],
                    layer["files_imported"],
                    layer["bytes_imported"],
                    layer["duplicates_skipped"],
                    layer["half_written_left"],
                    layer["not_bundles_left"],
                    layer["unsafe_entries_left"],
                    layer["export_errors"],
                );
            } else if layer.get("crc_failures").is_some() {
                println!(
                    "  {} baud, {}: {} frames / {} bytes in, {} frames / {} bytes out; dropped: {} CRC failures, {} malformed, {} too long, {} refused",
                    layer["baud"],
                    s(&layer["framing"]),
                    layer["frames_received"],
                    layer["bytes_received"],
                    layer["frames_sent"],
                    layer["bytes_sent"],
                    layer["crc_failures"],
                    layer["malformed_frames"],
                    layer["frames_too_long"],
                    layer["frames_refused"],
                );
            } else if layer.get("protocol_errors").is_some() {
                println!(
                    "  {} bundles / {} bytes in, {} bundles / {} bytes out; {} refused here, {} refused by peers, {} cut off, {} protocol errors",
                    layer["bundles_received"],
                    layer["bytes_received"],
                    layer["bundles_sent"],
                    layer["bytes_sent"],
                    layer["bundles_refused"],
                    layer["refused_by_peer"],
                    layer["bundles_cut_off"],
                    layer["protocol_errors"],
                );
            } else if layer.get("datagrams_refused").is_some() {
                println!(
                    "  {} bundles / {} bytes in, {} bundles / {} bytes out; dropped: {} datagrams refused, {} not allowed",
                    layer["bundles_received"],
                    layer["bytes_received"],
                    layer["bundles_sent"],
                    layer["bytes_sent"],
                    layer["datagrams_refused"],
                    layer["datagrams_not_allowed"],
                );
            } else if layer.get("bundles_received").is_some() {
                println!(
                    "  {} bundles / {} bytes in, {} bundles / {} bytes out; dropped: {} refused, {} bad frames, {} cut off",
                    layer["bundles_received"],
                    layer["bytes_received"],
                    layer["bundles_sent"],
                    layer["bytes_sent"],
                    layer["bundles_refused"],
                    layer["bad_frames"],
                    layer["bundles_cut_off"],
                );
            }
            for session in layer["sessions"].as_array().unwrap_or(&empty) {
                let node = session["node_id"].as_str().unwrap_or("(negotiating)");
                let tls = match (session["tls"].as_bool(), session["node_id_authenticated"].as_bool()) {
                    (Some(true), Some(true)) => "TLS, node ID authenticated",
                    (Some(true), _) => "TLS",
                    _ => "no TLS",
                };
                println!(
                    "  session {} {} {node} ({tls}): {} bundles / {} bytes in, {} bundles / {} bytes out, {} in flight",
                    s(&session["direction"]),
                    s(&session["address"]),
                    session["bundles_received"],
                    session["bytes_received"],
                    session["bundles_sent"],
                    session["bytes_sent"],
                    session["transfers_in_flight"],
                );
            }
        }
        let routes = status["routes"].as_array().unwrap_or(&empty);
        println!("routes      {}", if routes.is_empty() { "none" } else { "" });
        for r in routes {
            println!("  {} -> {}", s(&r["pattern"]), s(&r["via"]));
        }
        let registrations = status["registrations"].as_array().unwrap_or(&empty);
        println!("endpoints   {}", if registrations.is_empty() { "none" } else { "" });
        for r in registrations {
            let connected =
                if r["connected"].as_bool() == Some(true) { "connected" } else { "not connected" };
            println!("  {} ({connected})", s(&r["endpoint"]));
        }
        if let Some(counters) = status["counters"].as_object() {
            let line: Vec<String> = counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("counters    {}", line.join(", "));
        }
        let custody = &status["custody"];
        if custody.is_object() {
            println!(
                "custody     held {}, awaiting a signal {}, signals owed {}; sent {}, released {}, retransmitted {}, accepted {}, redundant {}, refused here {}",
                custody["held"], custody["outstanding"], custody["signals_pending"], custody["sent"],
                custody["released"], custody["retransmitted"], custody["accepted"], custody["redundant"],
                custody["refused_here"],
            );
            if let Some(refused) = custody["refused_by_next"].as_object().filter(|r| !r.is_empty()) {
                let line: Vec<String> = refused.iter().map(|(k, v)| format!("{k} {v}")).collect();
                println!("  refused by the next custodian: {}", line.join(", "));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
