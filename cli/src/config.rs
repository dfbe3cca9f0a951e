//! The daemon's configuration file (TOML), documented key by key in docs/configuration.md.
//! Every key is optional: a node runs on the defaults with no file at all. Unknown keys are
//! refused, so a typo is an error naming the key, not a silently ignored setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bpa::Eid;
use bpa::agent::routing::EidPattern;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's ID: `ipn:N.0` or `dtn://name/`.
    #[serde(default, deserialize_with = "eid_opt")]
    pub node_id: Option<Eid>,
    /// Where the store (and, by default, the API socket) live.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub reports: ReportsSection,
    #[serde(default)]
    pub accept: AcceptSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    #[serde(default)]
    pub tcpcl: TcpclSection,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default)]
    pub stcp: FramedSection,
    #[serde(default)]
    pub mtcp: FramedSection,
    #[serde(default)]
    pub udp: UdpSection,
    #[serde(default)]
    pub tcpcl3: Tcpcl3Section,
    #[serde(default)]
    pub serial: Vec<SerialEntry>,
    #[serde(default)]
    pub spool: Vec<SpoolEntry>,
    #[serde(default)]
    pub custody: CustodySection,
    #[serde(default)]
    pub connections: ConnectionsSection,
}

/// `[connections]`: what every stream layer's listener (TCPCLv4, TCPCLv3, STCP, MTCP) allows
/// the peers that connect to it (docs/convergence-layers.md, "Connections from peers").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsSection {
    /// Connections peers may have open at once, per listener; past it the one idle longest
    /// is shed for a newcomer.
    pub max: Option<usize>,
    /// Of those, from one IP address.
    pub max_per_address: Option<usize>,
    /// A contact header (TCPCL) or first frame (STCP, MTCP) within this, or the connection is
    /// closed.
    #[serde(default, deserialize_with = "duration_opt")]
    pub handshake_timeout: Option<Duration>,
    /// A connection on which nothing arrives for this long is closed, whatever its keepalive.
    #[serde(default, deserialize_with = "duration_opt")]
    pub idle_timeout: Option<Duration>,
}
/// `[custody]`: custody transfer hop by hop (BIBE; docs/custody.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodySection {
    /// Bundles to these destinations are taken into custody here (sent or received plainly).
    #[serde(default, deserialize_with = "patterns")]
    pub destinations: Vec<EidPattern>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub round_trip: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub retransmit_min: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub retransmit_max: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub signal_delay: Option<Duration>,
    pub signal_batch: Option<usize>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub signal_lifetime: Option<Duration>,
    /// Refuse custody ("no known route", "no timely contact") of bundles with no way on.
    pub refuse_unroutable: Option<bool>,
    #[serde(default)]
    pub peers: Vec<CustodyPeerEntry>,
}

/// `[[custody.peers]]`: how custody goes to neighbours matching `node`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyPeerEntry {
    #[serde(deserialize_with = "pattern")]
    pub node: EidPattern,
    /// `never`, `custodial` (the default) or `always`.
    #[serde(default)]
    pub mode: CustodyMode,
    /// Record type codes written to it: `default` (3/4), `ion` (7/8), `pyd3tn` (64443/4), or
    /// the numbers with `bibe_pdu_type` and `custody_signal_type`.
    pub record_types: Option<RecordTypesName>,
    pub bibe_pdu_type: Option<u64>,
    pub custody_signal_type: Option<u64>,
    /// How the BIBE PDU's retransmission time is written: `dtn_ms` (the draft's DTN time) or
    /// `unix_seconds` (ION's, halfway to our own deadline); `ion` record types imply the latter.
    pub retransmission_time: Option<RetransmissionTimeName>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub round_trip: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetransmissionTimeName {
    DtnMs,
    UnixSeconds,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustodyMode {
    Never,
    #[default]
    Custodial,
    Always,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordTypesName {
    Default,
    Ion,
    Pyd3tn,
}

impl CustodySection {
    /// The agent's custody policy: the defaults, with what this section sets. Refuses record
    /// type codes that would be read as another record (a status report, or the other BIBE
    /// record under a code every node knows).
    pub fn policy(&self) -> anyhow::Result<bpa::agent::CustodyPolicy> {
        use bpa::admin::AdminRecordTypes;
        use bpa::agent::{CustodyPeer, CustodyPolicy, PeerCustody, RetransmissionTime};
        let defaults = CustodyPolicy::default();
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let named = match p.record_types {
                    None | Some(RecordTypesName::Default) => AdminRecordTypes::default(),
                    Some(RecordTypesName::Ion) => AdminRecordTypes::ION,
                    Some(RecordTypesName::Pyd3tn) => AdminRecordTypes { bibe_pdu: 64443, custody_signal: 4 },
                };
                let record_types = AdminRecordTypes {
                    bibe_pdu: p.bibe_pdu_type.unwrap_or(named.bibe_pdu),
                    custody_signal: p.custody_signal_type.unwrap_or(named.custody_signal),
                };
                let clash = record_types.bibe_pdu == record_types.custody_signal
                    || [record_types.bibe_pdu, record_types.custody_signal].contains(&bpa::admin::RECORD_STATUS_REPORT)
                    || bpa::admin::KNOWN_CUSTODY_SIGNAL_CODES.contains(&record_types.bibe_pdu)
                    || bpa::admin::KNOWN_BIBE_PDU_CODES.contains(&record_types.custody_signal);
                if clash {
                    anyhow::bail!(
                        "[[custody.peers]] {}: record types {} (BIBE PDU) and {} (custody signal) would be read as other \
                         records: use two different codes, not 1 (status report), not a known signal code (4, 8) for \
                         the PDU nor a known PDU code (3, 7, 64443) for the signal",
                        p.node,
                        record_types.bibe_pdu,
                        record_types.custody_signal
                    );
                }
                Ok(CustodyPeer {
                    node: p.node.clone(),
                    mode: match p.mode {
                        CustodyMode::Never => PeerCustody::Never,
                        CustodyMode::Custodial => PeerCustody::WhenCustodial,
                        CustodyMode::Always => PeerCustody::Always,
                    },
                    record_types,
                    retransmission_time: match (p.retransmission_time, p.record_types) {
                        (Some(RetransmissionTimeName::DtnMs), _) => RetransmissionTime::DtnMillis,
                        (Some(RetransmissionTimeName::UnixSeconds), _) | (None, Some(RecordTypesName::Ion)) => {
                            RetransmissionTime::UnixSecondsHalfway
                        }
                        (None, _) => RetransmissionTime::DtnMillis,
                    },
                    round_trip: p.round_trip,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(CustodyPolicy {
            peers,
            destinations: self.destinations.clone(),
            round_trip: self.round_trip.unwrap_or(defaults.round_trip),
            retransmit_min: self.retransmit_min.unwrap_or(defaults.retransmit_min),
            retransmit_max: self.retransmit_max.unwrap_or(defaults.retransmit_max),
            signal_delay: self.signal_delay.unwrap_or(defaults.signal_delay),
            signal_batch: self.signal_batch.unwrap_or(defaults.signal_batch).max(1),
            signal_lifetime: self.signal_lifetime.unwrap_or(defaults.signal_lifetime),
            refuse_unroutable: self.refuse_unroutable.unwrap_or(defaults.refuse_unroutable),
        })
    }
}

/// `[[spool]]`: a directory (a removable medium's mount point) carried between nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolEntry {
    pub dir: PathBuf,
    /// Nodes reached through it: their bundles are written there.
    #[serde(default, deserialize_with = "node_eids")]
    pub peers: Vec<Eid>,
    /// Nodes besides this one whose bundles are taken from it.
    #[serde(default, deserialize_with = "node_eids")]
    pub import_for: Vec<Eid>,
    /// How often the directory is looked at.
    #[serde(default, deserialize_with = "duration_opt")]
    pub scan_interval: Option<Duration>,
}

fn node_eids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Eid>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|text| {
            let eid: Eid = text.parse().map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))?;
            if eid != eid.node_id() {
                return Err(serde::de::Error::custom(format!(
                    "{text} is not a node ID: use ipn:N.0 or dtn://name/ (here: {})",
                    eid.node_id()
                )));
            }
            Ok(eid)
        })
        .collect()
}

/// `[[serial]]`: a serial line to one peer (a cable, a radio modem).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialEntry {
    /// The device (`/dev/ttyUSB0`).
    pub device: String,
    pub baud: u32,
    /// The node at the other end; without it, learnt from the Previous Node block of the
    /// first bundle that arrives.
    #[serde(default, deserialize_with = "node_eid_opt")]
    pub node_id: Option<Eid>,
    /// `cobs` (default) or `slip` (HDTN's slip_over_uart).
    #[serde(default, deserialize_with = "serial_framing")]
    pub framing: Option<convergence_layers::serial::Framing>,
    /// `none` (default), `software` or `hardware`.
    pub flow_control: Option<String>,
    /// The largest bundle in one frame; larger ones are fragmented.
    pub max_frame: Option<usize>,
    /// A pause after each frame.
    #[serde(default, deserialize_with = "duration_opt")]
    pub min_gap: Option<Duration>,
}

fn serial_framing<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<convergence_layers::serial::Framing>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// `[tcpcl3]`: the TCP convergence layer version 3 (RFC 7242), which ION, µD3TN and HDTN
/// speak. A peer listed here is dialled with version 3; one under `[[tcpcl.peers]]` with
/// version 4.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tcpcl3Section {
    #[serde(default)]
    pub listen: Vec<std::net::SocketAddr>,
    /// Seconds between keepalives asked for (0: none).
    pub keepalive: Option<u16>,
    /// Ask for segment acknowledgements (a bundle counts as sent only when acknowledged).
    pub acknowledgements: Option<bool>,
    /// Offer bundle refusal (with acknowledgements only).
    pub refusal: Option<bool>,
    /// Ask peers for LENGTH messages.
    pub request_length: Option<bool>,
    /// Bundles are sent in segments of at most this many bytes.
    pub segment_size: Option<u64>,
    /// The largest bundle taken from a peer.
    pub max_bundle_size: Option<u64>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub reconnect_max: Option<Duration>,
    /// A connection whose bundle in progress gets no byte either way for this long is closed.
    #[serde(default, deserialize_with = "duration_opt")]
    pub stall_timeout: Option<Duration>,
    #[serde(default)]
    pub peers: Vec<Tcpcl3Peer>,
}

/// A TCPCLv3 peer: its contact header names it; a node ID given here must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tcpcl3Peer {
    /// `host:port` of the peer's listener.
    pub address: String,
    #[serde(default, deserialize_with = "node_eid_opt")]
    pub node_id: Option<Eid>,
}

/// `[udp]`: bundles in datagrams (RFC 7122).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpSection {
    /// Addresses to bind (and to send from: a peer uses the first of its address family).
    #[serde(default)]
    pub listen: Vec<std::net::SocketAddr>,
    /// The largest datagram (bundle bytes); larger bundles are fragmented by the agent.
    pub max_datagram: Option<usize>,
    /// Only these IPs (and the peers') may send to this node.
    pub allow: Option<Vec<std::net::IpAddr>>,
    /// Socket buffers asked of the kernel, bytes.
    pub socket_buffer: Option<usize>,
    #[serde(default)]
    pub peers: Vec<UdpPeerEntry>,
}

/// A UDP peer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpPeerEntry {
    pub address: std::net::SocketAddr,
    #[serde(deserialize_with = "node_eid")]
    pub node_id: Eid,
    /// Bytes per second sent to it at most: a number, or with a unit ("1 Mbit/s").
    #[serde(default, deserialize_with = "rate_opt")]
    pub rate: Option<u64>,
    /// Where its datagrams come from, when not from `address` (a port of 0: any port of that
    /// IP; ION's udpclo sends from a new port each time). Custody signals, BIBE PDUs and status
    /// reports for this node in its name are refused from anywhere else.
    #[serde(default)]
    pub sends_from: Vec<std::net::SocketAddr>,
}

fn rate_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Number(u64),
        Text(String),
    }
    match Rate::deserialize(d)? {
        Rate::Number(n) => Ok(Some(n)),
        Rate::Text(text) => routing::native::parse_rate(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

/// `[stcp]` and `[mtcp]`: the length-framed TCP layers (ION's STCP; µD3TN's and dtn7-rs's MTCP).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramedSection {
    #[serde(default)]
    pub listen: Vec<std::net::SocketAddr>,
    /// The largest bundle taken from a peer (a larger frame ends the connection).
    pub max_bundle_size: Option<u64>,
    /// STCP only: a keepalive after this long without sending ("0s": none).
    #[serde(default, deserialize_with = "duration_opt")]
    pub keepalive: Option<Duration>,
    /// A bundle part-way in that receives nothing for this long is dropped and its connection
    /// closed.
    #[serde(default, deserialize_with = "duration_opt")]
    pub stall_timeout: Option<Duration>,
    #[serde(default)]
    pub peers: Vec<FramedPeer>,
}

/// A peer of a length-framed layer: these layers do not name nodes, so the node ID is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramedPeer {
    /// `host:port` of the peer's listener.
    pub address: String,
    #[serde(deserialize_with = "node_eid")]
    pub node_id: Eid,
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

fn plan_format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<routing::PlanFormat>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// The TCP convergence layer (RFC 9174).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpclSection {
    /// Addresses to accept sessions on (`0.0.0.0:4556`, `[::]:4556`); none by default.
    #[serde(default)]
    pub listen: Vec<std::net::SocketAddr>,
    /// Keepalive interval offered, in seconds (0 disables keepalives).
    pub keepalive: Option<u16>,
    /// Largest segment accepted, in bytes.
    pub segment_mru: Option<u64>,
    /// Largest bundle accepted, in bytes.
    pub transfer_mru: Option<u64>,
    /// Largest segment sent, in bytes.
    pub max_segment_size: Option<u64>,
    /// `off`, `optional` or `required`.
    pub tls: Option<TlsSetting>,
    /// This node's certificate (chain), PEM; its URI subject alternative name is the node ID.
    pub certificate: Option<PathBuf>,
    /// The certificate's private key, PEM.
    pub private_key: Option<PathBuf>,
    /// The certificates (CAs) peers' certificates must chain to, PEM.
    pub trust: Option<PathBuf>,
    /// With TLS: end a session whose peer's certificate does not name its node ID (default
    /// true; RFC 9174 §4.4.4.3).
    pub require_node_id_authentication: Option<bool>,
    /// Longest wait between attempts to reach a peer.
    #[serde(default, deserialize_with = "duration_opt")]
    pub reconnect_max: Option<Duration>,
    /// An incoming transfer that receives nothing for this long is abandoned and its session
    /// ended, whatever the keepalive.
    #[serde(default, deserialize_with = "duration_opt")]
    pub transfer_idle_timeout: Option<Duration>,
    /// A session whose peer reads nothing of what this node sends for this long is ended.
    #[serde(default, deserialize_with = "duration_opt")]
    pub send_stall_timeout: Option<Duration>,
    /// Send bundles over a peer's announced Transfer MRU anyway (dtn7-rs announces 64,000
    /// bytes and takes more).
    pub ignore_peer_transfer_mru: Option<bool>,
    /// Peers this node keeps a session to.
    #[serde(default)]
    pub peers: Vec<TcpclPeer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsSetting {
    Off,
    Optional,
    Required,
}

impl std::fmt::Display for TlsSetting {
    /// As the configuration file writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsSetting::Off => "\"off\"",
            TlsSetting::Optional => "\"optional\"",
            TlsSetting::Required => "\"required\"",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpclPeer {
    /// `host:port` of the peer's TCPCL listener.
    pub address: String,
    /// The peer's node ID: with a contact plan, the session is open only during its contacts.
    #[serde(default, deserialize_with = "node_eid_opt")]
    pub node_id: Option<Eid>,
}

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

fn eid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Eid, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e| serde::de::Error::custom(format!("{text:?} is not an endpoint ID: {e}")))
}

fn eid_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Eid>, D::Error> {
    eid(d).map(Some)
}

/// A peer's node ID: `ipn:N.0` or `dtn://name/`, not an application endpoint.
fn node_eid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Eid, D::Error> {
    let eid = eid(d)?;
    if eid.is_null() || eid.node_id() != eid {
        return Err(serde::de::Error::custom(format!(
            "{eid} is not a node ID: use ipn:N.0 or dtn://name/ (here: {})",
            if eid.is_null() { "none".to_string() } else { eid.node_id().to_string() }
        )));
    }
    Ok(eid)
}

fn node_eid_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Eid>, D::Error> {
    node_eid(d).map(Some)
}

fn pattern<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EidPattern, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn patterns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<EidPattern>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts.iter().map(|text| text.parse().map_err(serde::de::Error::custom)).collect()
}

fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    bpa::time::parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

impl Config {
    /// Reads and checks a configuration file. The error names the file, the line and the key.
    /// Relative paths in it (data directory, socket, certificates) are taken from the file's
    /// own directory, not from wherever the daemon is started.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config = Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let file = std::path::absolute(path)
            .with_context(|| format!("cannot resolve the configuration file's path {}", path.display()))?;
        config.resolve_from(file.parent().unwrap_or(Path::new("/")));
        Ok(config)
    }

    /// Makes the relative paths in the configuration relative to `base`.
    fn resolve_from(&mut self, base: &Path) {
        let tls = &mut self.tcpcl;
        for path in [
            &mut self.data_dir,
            &mut self.api.socket,
            &mut tls.certificate,
            &mut tls.private_key,
            &mut tls.trust,
            &mut self.routing.plan,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        for spool in &mut self.spool {
            if spool.dir.is_relative() {
                spool.dir = base.join(&spool.dir);
            }
        }
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        if let Some(node) = &config.node_id
            && node.node_id() != *node
        {
            return Err(format!(
                "node_id {node} is an application endpoint, not a node ID: use {} (ipn service 0, or a dtn \
                 name with an empty demux)",
                node.node_id()
            ));
        }
        if let Some(Eid::Null) = config.node_id {
            return Err("node_id dtn:none cannot name a node: use ipn:N.0 or dtn://name/".into());
        }
        Ok(config)
    }

    /// The data directory: the configured one, else `$XDG_DATA_HOME/dtn`, else
    /// `~/.local/share/dtn`.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        default_data_dir()
    }

    /// The node ID: the configured one, else `dtn://HOSTNAME/`.
    pub fn node_id(&self) -> Eid {
        self.node_id.clone().unwrap_or_else(default_node_id)
    }

    pub fn socket(&self) -> anyhow::Result<PathBuf> {
        match &self.api.socket {
            Some(path) => Ok(path.clone()),
            None => Ok(self.data_dir()?.join(SOCKET_NAME)),
        }
    }
}

/// The API socket's name inside the data directory.
pub const SOCKET_NAME: &str = "api.sock";

pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("dtn"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context(
        "neither XDG_DATA_HOME nor HOME is set: give a data directory (data_dir in the config, or --data-dir)",
    )?;
    Ok(PathBuf::from(home).join(".local/share/dtn"))
}

fn default_node_id() -> Eid {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String =
        host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').collect();
    let name = if name.is_empty() { "localhost".to_string() } else { name };
    Eid::dtn(&name, "").unwrap_or_else(|_| Eid::ipn(1, 0))
}

/// The starter configuration `dtn init` writes: every key, commented, with its default.
pub fn starter(node_id: &Eid, data_dir: &Path) -> String {
    format!(
        r#"# dtn daemon configuration. Every key is optional; docs/configuration.md explains each.

# This node's ID: ipn:N.0 or dtn://name/.
node_id = "{node_id}"

# Where the store and the API socket live.
data_dir = "{data_dir}"

[api]
# Unix socket of the local API (default: DATA_DIR/api.sock).
# socket = "{data_dir}/api.sock"
# Also serve the API on a loopback TCP address.
# tcp = "127.0.0.1:4242"
# Largest payload an application may send, in bytes. Payloads stream to the store, so this
# is about disk space, not memory.
# max_payload = 4294967296
# Lifetime of bundles sent without one.
# default_lifetime = "1d"
# A client must send a request's header within this time (idle connections are closed),
# a body that stalls this long is cut off, and at most this many connections are served.
# header_timeout = "30s"
# body_idle_timeout = "60s"
# max_connections = 256
# The largest contact plan `dtn plan load` may give, in bytes.
# max_plan = 67108864

[store]
# Refuse new bundles beyond these totals (reason: depleted storage). No limit unless set;
# for example 10 GiB and ten million bundles:
# max_bytes = 10737418240
# max_bundles = 10000000
# Bundles up to this size live in the database, larger ones in their own files.
# inline_threshold = 65536

[reports]
# Send the status reports bundles ask for. Off unless enabled here: RFC 9171 §5.1 says their
# generation MUST be disabled by default, since a report per hop per status can multiply the
# traffic of a network; enable it where that is acceptable (a testbed, a small network).
# enabled = false
# lifetime = "1d"

[accept]
# Leniency for peers that bend RFC 9171 (dtn7-rs sends primary blocks without CRC; ION's
# fragments number every extension block 0: they are renumbered, counted as "renumbered").
# primary_without_crc = false
# missing_bundle_age = false
# duplicate_block_numbers = false

[agent]
# Answer pings on ipn:N.7 / dtn://name/echo.
# echo = true
# max_in_flight_per_neighbour = 256
# expiry_interval = "1s"

# Static routes: bundles for `to` (a pattern: *, ipn:N.*, dtn://name/**, or an EID) go via
# the neighbour `via`. The most specific pattern wins.
# [[routes]]
# to = "ipn:3.*"
# via = "ipn:2.0"

[tcpcl]
# Accept TCPCLv4 sessions (RFC 9174) on these addresses (none by default).
# listen = ["0.0.0.0:4556"]
# Keepalive interval offered, in seconds (0 disables keepalives; dtn7-rs needs them).
# keepalive = 30
# Largest segment and largest bundle accepted, in bytes.
# segment_mru = 16777216
# transfer_mru = 17179869184
# Largest segment sent, in bytes.
# max_segment_size = 1048576
# TLS: off, optional or required. With TLS, the node's certificate must name its node ID as
# a URI subject alternative name, and peers' certificates must chain to `trust`.
# tls = "off"
# certificate = "/etc/dtn/node.crt"
# private_key = "/etc/dtn/node.key"
# trust = "/etc/dtn/ca.crt"
# require_node_id_authentication = true
# Longest wait between attempts to reach a peer (the first wait is 1 s, doubled each time).
# reconnect_max = "60s"
# A transfer that receives nothing for this long is abandoned (its partial data removed) and
# the session ended, whatever the keepalive; a peer that reads nothing for this long too.
# transfer_idle_timeout = "2m"
# send_stall_timeout = "2m"
# Send bundles larger than a peer's announced Transfer MRU anyway: dtn7-rs announces 64000
# bytes but takes larger bundles.
# ignore_peer_transfer_mru = false

# Peers this node keeps a TCPCL session to, reconnecting whenever the session is lost. With
# a contact plan ([routing] plan), a peer whose node_id is given is connected only while the
# plan has a contact from this node to it, and the session is closed at the contact's end.
# [[tcpcl.peers]]
# address = "192.0.2.7:4556"
# node_id = "ipn:2.0"

[stcp]
# ION's simple TCP: each bundle after its length (32 bits); no acknowledgement. ION listens on
# 4456. Peers are dialled and kept; their node IDs are given, as STCP does not say them.
# listen = ["0.0.0.0:4456"]
# max_bundle_size = 17179869184
# keepalive = "15s"
# A bundle part-way in that receives nothing for this long is dropped, its connection closed.
# stall_timeout = "2m"
# [[stcp.peers]]
# address = "192.0.2.8:4456"
# node_id = "ipn:8.0"

[mtcp]
# µD3TN's and dtn7-rs's minimal TCP: each bundle as a CBOR byte string; no acknowledgement.
# dtn7-rs listens on 16162.
# listen = ["0.0.0.0:16162"]
# max_bundle_size = 17179869184
# stall_timeout = "2m"
# [[mtcp.peers]]
# address = "192.0.2.9:16162"
# node_id = "ipn:9.0"

[tcpcl3]
# TCPCL version 3 (RFC 7242), for ION, µD3TN and HDTN. A peer listed here is dialled with
# version 3 (one under [[tcpcl.peers]] with version 4); the contact header names each peer.
# With acknowledgements a bundle counts as sent only when the peer acknowledged its last
# segment, and a received one is acknowledged only once it is on disk.
# listen = ["0.0.0.0:4557"]
# keepalive = 15
# acknowledgements = true
# refusal = true
# request_length = false
# segment_size = 65536
# max_bundle_size = 17179869184
# reconnect_max = "60s"
# A bundle in progress that moves no byte for this long closes the connection, keepalive or not.
# stall_timeout = "2m"
# [[tcpcl3.peers]]
# address = "192.0.2.11:4556"
# node_id = "ipn:11.0"

[connections]
# What the stream layers' listeners (tcpcl, tcpcl3, stcp, mtcp) allow peers that connect. Past
# `max` (or `max_per_address` from one IP), the connection idle longest is shed for a newcomer.
# Every connection must send its contact header or first frame within handshake_timeout, and
# is closed after idle_timeout with nothing received, whatever its keepalive (even none).
# max = 256
# max_per_address = 32
# handshake_timeout = "30s"
# idle_timeout = "5m"

# Serial lines, one [[serial]] table each: a cable or a radio modem to one peer. Frames are
# COBS with a CRC-32C (or SLIP, for HDTN's slip_over_uart); bundles larger than max_frame are
# fragmented so a frame lost to noise costs one fragment.
# [[serial]]
# device = "/dev/ttyUSB0"
# baud = 9600
# node_id = "ipn:12.0"
# framing = "cobs"
# flow_control = "none"
# max_frame = 4096
# min_gap = "0s"

# Spools, one [[spool]] table each: a directory (a USB stick's mount point) carried between
# nodes that never meet. Bundles for `peers` are written there while it is mounted; files for
# this node (and `import_for`) are taken in and removed once stored here.
# [[spool]]
# dir = "/media/stick/dtn"
# peers = ["ipn:20.0"]
# import_for = []
# scan_interval = "2s"

[udp]
# Bundles in datagrams (RFC 7122), one per datagram; no acknowledgement, loss is expected.
# Bundles larger than max_datagram are fragmented first (unless they must not be).
# listen = ["0.0.0.0:4556"]
# max_datagram = 65507
# allow = ["192.0.2.10"]
# socket_buffer = 4194304
# [[udp.peers]]
# address = "192.0.2.10:4556"
# node_id = "ipn:10.0"
# rate = "10 Mbit/s"
# Where its datagrams come from, if not from `address`; port 0 stands for any port (ION: "IP:0").
# Custody signals, BIBE PDUs and reports in its name from anywhere else are refused.
# sends_from = ["192.0.2.10:4556"]

[routing]
# A contact plan, loaded at start (relative times count from then); `dtn plan load` replaces it
# live. Forms: ION ionrc, HDTN JSON, dtn-tvg-util JSON, TOML (docs/routing.md). Bundles that no
# connected neighbour or static route takes go by Contact Graph Routing over it.
# plan = "contacts.rc"
# The plan's form when its name and content do not tell: ion, hdtn, tvgutil or toml.
# format = "ion"

[custody]
# Custody transfer hop by hop (BIBE, docs/custody.md): a custodial bundle stays in the store
# until the next custodian's signal takes it over, and is sent again until one does.
# Applications ask with `dtn send --custody`; bundles to these destinations are custodial here.
# destinations = ["ipn:9.*"]
# round_trip = "2s"
# retransmit_min = "1s"
# retransmit_max = "10m"
# signal_delay = "100ms"
# signal_batch = 4096
# signal_lifetime = "1h"
# Refuse custody ("no known route" / "no timely contact") of bundles with no way on from here.
# refuse_unroutable = false
# One table per neighbour pattern (first match): mode never | custodial | always; record_types
# default (3/4) | ion (7/8) | pyd3tn (64443/4); the PDU's retransmission time dtn_ms (the
# draft's) | unix_seconds (ION's; implied by record_types "ion"); the round trip to it.
# [[custody.peers]]
# node = "ipn:5.0"
# mode = "custodial"
# record_types = "ion"
# retransmission_time = "unix_seconds"
# round_trip = "30s"
"#,
        data_dir = data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_spool_directories_are_taken_from_the_config_files_directory() {
        let mut config = Config::parse(
            "[[spool]]\ndir = \"stick/dtn\"\npeers = [\"ipn:2.0\"]\n[[spool]]\ndir = \"/media/usb\"\n",
        )
        .expect("parses");
        config.resolve_from(Path::new("/etc/dtn"));
        assert_eq!(config.spool[0].dir, Path::new("/etc/dtn/stick/dtn"));
        assert_eq!(config.spool[1].dir, Path::new("/media/usb"));
        assert!(
            Config::parse("[[spool]]\ndir = \"x\"\npeers = [\"ipn:2.1\"]\n")
                .expect_err("an endpoint is not a node")
                .contains("ipn:2.1 is not a node ID")
        );
    }

    #[test]
    fn the_custody_section_becomes_the_agents_policy_and_mistakes_are_named() {
        let config = Config::parse(
            "[custody]\ndestinations = [\"ipn:9.*\"]\nretransmit_max = \"1h\"\nsignal_batch = 0\n\
             [[custody.peers]]\nnode = \"ipn:5.0\"\nmode = \"never\"\n\
             [[custody.peers]]\nnode = \"ipn:*.*\"\nrecord_types = \"ion\"\ncustody_signal_type = 40\nround_trip = \"30s\"\n",
        )
        .expect("parses");
        let policy = config.custody.policy().expect("a valid policy");
        assert!(policy.covers(&Eid::ipn(9, 1)));
        assert_eq!(policy.retransmit_max, Duration::from_secs(3600));
        assert_eq!(policy.signal_batch, 1, "at least one answer per batch");
        assert_eq!(policy.mode_for(&Eid::ipn(5, 0)), bpa::agent::PeerCustody::Never);
        assert_eq!(policy.mode_for(&Eid::ipn(6, 0)), bpa::agent::PeerCustody::WhenCustodial);
        assert_eq!(
            policy.record_types_for(&Eid::ipn(6, 0)),
            bpa::admin::AdminRecordTypes { bibe_pdu: 7, custody_signal: 40 }
        );
        assert_eq!(policy.peers[1].round_trip, Some(Duration::from_secs(30)));
        // ION's retransmission time comes with its record types, and either can be overridden.
        use bpa::agent::RetransmissionTime;
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(6, 0)), RetransmissionTime::UnixSecondsHalfway);
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(5, 0)), RetransmissionTime::DtnMillis);
        let policy = Config::parse(
            "[[custody.peers]]\nnode = \"ipn:5.0\"\nrecord_types = \"ion\"\nretransmission_time = \"dtn_ms\"\n\
             [[custody.peers]]\nnode = \"ipn:6.0\"\nretransmission_time = \"unix_seconds\"\n",
        )
        .expect("parses")
        .custody
        .policy()
        .expect("policy");
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(5, 0)), RetransmissionTime::DtnMillis);
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(6, 0)), RetransmissionTime::UnixSecondsHalfway);
        let bad = Config::parse("[[custody.peers]]\nnode = \"ipn:5.0\"\nretransmission_time = \"ms\"\n")
            .expect_err("no such unit");
        assert!(bad.contains("expected `dtn_ms` or `unix_seconds`"), "{bad}");
        let bad = Config::parse("[[custody.peers]]\nnode = \"ipn:5.0\"\nmode = \"sometimes\"\n")
            .expect_err("no such mode");
        assert!(
            bad.contains("unknown variant `sometimes`, expected one of `never`, `custodial`, `always`"),
            "{bad}"
        );
        let bad = Config::parse("[custody]\ndestinations = [\"ipn:x\"]\n").expect_err("no pattern");
        assert!(bad.contains("is not an EID pattern"), "{bad}");
        for (pdu, signal) in [(1, 4), (3, 1), (5, 5), (8, 9), (10, 7)] {
            let text = format!(
                "[[custody.peers]]\nnode = \"ipn:5.0\"\nbibe_pdu_type = {pdu}\ncustody_signal_type = {signal}\n"
            );
            let error = Config::parse(&text).expect("parses").custody.policy().expect_err("clashing codes");
            assert!(error.to_string().contains("would be read as other records"), "{error}");
        }
        let text =
            "[[custody.peers]]\nnode = \"ipn:5.0\"\nbibe_pdu_type = 40000\ncustody_signal_type = 40001\n";
        assert!(Config::parse(text).expect("parses").custody.policy().is_ok(), "private codes are fine");
    }

    #[test]
    fn the_starter_config_parses_and_says_what_it_says() {
        let text = starter(&Eid::ipn(7, 0), Path::new("/var/lib/dtn"));
        let config = Config::parse(&text).expect("starter parses");
        assert_eq!(config.node_id, Some(Eid::ipn(7, 0)));
        assert_eq!(config.data_dir.as_deref(), Some(Path::new("/var/lib/dtn")));
        // Uncommented, every key parses too.
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") || rest.starts_with("[[") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&all).expect("every key parses");
        assert_eq!(config.api.tcp, Some("127.0.0.1:4242".parse().expect("addr")));
        assert_eq!(config.reports.lifetime, Some(Duration::from_secs(86_400)));
        assert_eq!(config.routes.len(), 1);
        // The commented values agree with the defaults where they claim to be them: reports
        // off (RFC 9171 §5.1), and the quotas shown as examples of a limit there is not by default.
        assert_eq!(config.reports.enabled, Some(bpa::agent::ReportPolicy::default().enabled));
        assert_eq!(config.reports.enabled, Some(false));
        assert!(text.contains("No limit unless set;"), "{text}");
        assert_eq!(Config::parse("").expect("empty").store.max_bytes, None);
        assert_eq!(config.tcpcl.listen, ["0.0.0.0:4556".parse().expect("addr")]);
        assert_eq!(config.tcpcl.peers.len(), 1);
        assert_eq!(config.tcpcl.tls, Some(TlsSetting::Off));
        assert_eq!(config.tcpcl.trust.as_deref(), Some(Path::new("/etc/dtn/ca.crt")));
        assert_eq!(config.tcpcl.reconnect_max, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_bad_key_is_named() {
        let error = Config::parse("nod_id = \"ipn:1.0\"\n").expect_err("refused");
        assert!(error.contains("unknown field `nod_id`"), "{error}");
        let error = Config::parse("[store]\nmax_byte = 5\n").expect_err("refused");
        assert!(error.contains("unknown field `max_byte`"), "{error}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_key() {
        let error = Config::parse("node_id = \"ipn:x.0\"\n").expect_err("refused");
        assert!(error.contains("node_id") && error.contains("is not an endpoint ID"), "{error}");
        let error = Config::parse("node_id = \"ipn:1.5\"\n").expect_err("refused");
        assert_eq!(
            error,
            "node_id ipn:1.5 is an application endpoint, not a node ID: use ipn:1.0 (ipn service 0, or a dtn name \
             with an empty demux)"
        );
        let error = Config::parse("[reports]\nlifetime = \"soon\"\n").expect_err("refused");
        assert!(error.contains("lifetime") && error.contains("invalid duration \"soon\""), "{error}");
        let error = Config::parse("[[routes]]\nto = \"ipn:x.*\"\nvia = \"ipn:2.0\"\n").expect_err("refused");
        assert!(error.contains("to") && error.contains("is not an EID pattern"), "{error}");
        let error = Config::parse("[api]\ntcp = \"localhost\"\n").expect_err("refused");
        assert!(error.contains("tcp"), "{error}");
        let error = Config::parse("[tcpcl]\ntls = \"maybe\"\n").expect_err("refused");
        assert!(error.contains("tls") && error.contains("unknown variant `maybe`"), "{error}");
        let error = Config::parse("[tcpcl]\nkeepalive = 70000\n").expect_err("refused");
        assert!(error.contains("keepalive"), "{error}");
        let error = Config::parse("[[tcpcl.peers]]\nadress = \"x:1\"\n").expect_err("refused");
        assert!(error.contains("unknown field `adress`"), "{error}");
    }
}
