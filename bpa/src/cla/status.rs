//! What a running convergence layer says of itself: one typed report from which both the
//! status (`dtn status`, `GET /v1/status`) and the metrics (`GET /metrics`) are made, so a
//! counter is a counter and a gauge a gauge because the layer says so — nothing is guessed
//! from a field's name.

/// One running layer (or one instance of it: a serial line, a spool directory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerStatus {
    /// The layer's name as configured: "tcpcl", "tcpcl3", "stcp", "mtcp", "udp", "serial",
    /// "spool".
    pub name: String,
    /// What it listens on or watches: bound addresses, a device, a directory.
    pub listen: Vec<String>,
    /// The peers it was configured with.
    pub peers: Vec<PeerStatus>,
    /// Its sessions, for a layer that has them (TCPCLv4).
    pub sessions: Option<Vec<SessionStatus>>,
    /// Settings and states a person reads (not measured): a device, a framing, whether a
    /// medium is present.
    pub facts: Vec<(&'static str, Fact)>,
    /// Its counters and gauges.
    pub measures: Vec<Measure>,
}

/// A configured peer.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerStatus {
    /// Only its address is known to the layer's configuration (TCPCLv4: the node ID comes with
    /// the session; see its sessions).
    Address(String),
    /// A peer with what the layer knows of it.
    Known {
        /// Its address as configured.
        address: String,
        /// Its node ID, if configured or learned.
        node_id: Option<String>,
        /// Whether the layer can reach it now (`None`: not known).
        connected: Option<bool>,
        /// What else is configured for it (a UDP peer's rate).
        facts: Vec<(&'static str, Fact)>,
    },
}

/// Which side opened a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer connected to this node.
    Inbound,
    /// This node connected to the peer.
    Outbound,
}

impl Direction {
    /// As the status writes it.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A session of a layer that has them.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStatus {
    /// The peer's address.
    pub address: String,
    /// Which side opened it.
    pub direction: Direction,
    /// The peer's node ID once it said it (`None` before).
    pub node_id: Option<String>,
    /// Whether its certificate proved the node ID (TCPCLv4 with TLS).
    pub node_id_authenticated: bool,
    /// Whether the session runs over TLS.
    pub tls: bool,
    /// Its counters and gauges.
    pub measures: Vec<Measure>,
}

/// A value a person reads in the status, not measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A word or a line.
    Text(String),
    /// A list of them.
    Texts(Vec<String>),
    /// A number.
    Number(u64),
    /// Yes or no.
    Flag(bool),
    /// Not set.
    Absent,
}

/// Whether a measure only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureKind {
    /// Only grows (a Prometheus counter).
    Counter,
    /// Goes up and down (a Prometheus gauge).
    Gauge,
}

/// A counter or a gauge of a layer or a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Its name in the status, and in the metrics after `dtn_cla_` (`dtn_cla_session_` for a
    /// session's).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MeasureKind,
    /// Its value now.
    pub value: u64,
}

impl Measure {
    /// A counter named `name` at `value`.
    pub fn counter(name: &'static str, value: u64) -> Measure {
        Measure { name, kind: MeasureKind::Counter, value }
    }

    /// A gauge named `name` at `value`.
    pub fn gauge(name: &'static str, value: u64) -> Measure {
        Measure { name, kind: MeasureKind::Gauge, value }
    }
}
