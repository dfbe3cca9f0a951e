//! The UDP convergence layer (RFC 7122): one bundle per datagram, or four zero bytes as a
//! keepalive (§3.2); port 4556 (§3.2.2). Bundles larger than a datagram are fragmented by the
//! agent before they get here (RFC 9171 §5.8; §3.1 of RFC 7122: avoid IP fragmentation). No
//! acknowledgement: a datagram sent counts as forwarded. [`bucket`] is the sans-IO sender rate
//! limit; [`driver`] the tokio side.

pub mod bucket;
pub mod driver;

pub use driver::{Udp, UdpConfig, UdpError, UdpPeer, UdpStats};

/// The IANA port of the bundle protocol over UDP.
pub const PORT: u16 = 4556;

/// The largest UDP payload over IPv4 (65,535 − 8 − 20).
pub const MAX_DATAGRAM_V4: usize = 65_507;

/// A keepalive datagram (RFC 7122 §3.2).
pub const KEEPALIVE: &[u8] = &[0, 0, 0, 0];
