//! The convergence layers' sections: `[connections]`, `[tcpcl]`, `[tcpcl3]`, `[stcp]` and
//! `[mtcp]`, `[udp]`, `[[serial]]`, `[[spool]]` (docs/configuration.md).

use std::path::PathBuf;
use std::time::Duration;

use bpa::Eid;
use serde::Deserialize;

use super::de::*;

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
