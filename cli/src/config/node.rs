//! The node's own sections: `[api]`, `[store]`, `[reports]`, `[accept]`, `[agent]`,
//! `[[routes]]` and `[routing]`.

use std::path::PathBuf;
use std::time::Duration;

use bpa::Eid;
use bpa::agent::EidPattern;
use serde::Deserialize;

use super::de::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Unix socket path; default `DATA_DIR/api.sock`.
    pub socket: Option<PathBuf>,
    /// Also listen on this loopback TCP address (`127.0.0.1:4242`).
    pub tcp: Option<std::net::SocketAddr>,
    /// Largest payload an application may send, in bytes.
    pub max_payload: Option<u64>,
    /// Lifetime of bundles sent without one (`1d`, `3600s`).
    #[serde(default, deserialize_with = "duration_opt")]
    pub default_lifetime: Option<Duration>,
    /// Longest wait for a request's header, idle keep-alive connections included (`30s`).
    #[serde(default, deserialize_with = "duration_opt")]
    pub header_timeout: Option<Duration>,
    /// A request body that sends nothing for this long is cut off (`60s`).
    #[serde(default, deserialize_with = "duration_opt")]
    pub body_idle_timeout: Option<Duration>,
    /// Most API connections served at once (256); more wait.
    pub max_connections: Option<usize>,
    /// Largest contact plan `dtn plan load` (`POST /v1/plan`) may give, in bytes (64 MiB).
    pub max_plan: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub max_bytes: Option<u64>,
    pub max_bundles: Option<u64>,
    pub inline_threshold: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsSection {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub lifetime: Option<Duration>,
}

/// Leniency towards peers that bend RFC 9171 (design §3.6).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptSection {
    pub primary_without_crc: Option<bool>,
    pub missing_bundle_age: Option<bool>,
    /// Take bundles whose extension blocks are numbered 0 or twice (ION 4.1.3's fragments),
    /// renumbering them, when no security block names blocks by number.
    pub duplicate_block_numbers: Option<bool>,
}

impl AcceptSection {
    /// The parse policy these switches make.
    pub fn parse_options(&self) -> bpa::bundle::ParseOptions {
        bpa::bundle::ParseOptions {
            accept_primary_without_crc: self.primary_without_crc.unwrap_or(false),
            accept_missing_bundle_age: self.missing_bundle_age.unwrap_or(false),
            accept_duplicate_block_numbers: self.duplicate_block_numbers.unwrap_or(false),
            ..bpa::bundle::ParseOptions::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    pub echo: Option<bool>,
    pub max_in_flight_per_neighbour: Option<usize>,
    /// How often expiry runs.
    #[serde(default, deserialize_with = "duration_opt")]
    pub expiry_interval: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    #[serde(deserialize_with = "pattern")]
    pub to: EidPattern,
    #[serde(deserialize_with = "eid")]
    pub via: Eid,
}

/// `[routing]`: the contact plan.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// The plan file, loaded at start (its relative times count from then).
    pub plan: Option<PathBuf>,
    /// Its form, when its name and content do not say.
    #[serde(default, deserialize_with = "plan_format")]
    pub format: Option<routing::PlanFormat>,
}
