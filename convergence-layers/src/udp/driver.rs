//! The UDP convergence layer's tokio side: sockets, configured peers, the
//! [`ConvergenceLayer`] the agent sends through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::Eid;
use bpa::cla::{BundleSink, ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle, Refusal};
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::bucket::TokenBucket;
use super::{KEEPALIVE, MAX_DATAGRAM_V4};
use crate::lock;

/// How the layer behaves.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// The largest datagram sent (bundle bytes; any size up to UDP's most is taken). Larger
    /// bundles are fragmented by the
    /// agent (RFC 9171 §5.8, RFC 7122 §3.2) unless they must not be. Default 65,507, IPv4's
    /// most; set it to the path MTU less 48 to keep IP from fragmenting.
    pub max_datagram: usize,
    /// Datagrams are taken only from these addresses' IPs when set (the configured peers' IPs
    /// are always allowed).
    pub allow: Option<Vec<std::net::IpAddr>>,
    /// The socket buffers asked of the kernel, bytes (it may give less: `net.core.rmem_max`).
    /// Datagrams that arrive faster than they are stored wait here; past it they are lost.
    pub socket_buffer: usize,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig { max_datagram: MAX_DATAGRAM_V4, allow: None, socket_buffer: 4 << 20 }
    }
}

/// A non-blocking UDP socket on `address` with buffers of `buffer` bytes asked for.
fn udp_socket(address: SocketAddr, buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps them, and a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&address.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// A peer: where it listens, its node ID, and how fast it may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPeer {
    pub address: SocketAddr,
    pub node_id: Eid,
    /// Bytes per second, `None`: as fast as the socket takes them.
    pub rate: Option<u64>,
    /// The addresses its datagrams come from; a port of 0 stands for any port of that IP.
    /// Empty: `address` (a node that sends from the socket it listens on, as this one does).
    /// Administrative records for this node in the peer's name (custody signals, BIBE PDUs,
    /// status reports) are refused from anywhere else ([`bpa::cla::Sender`]).
    pub sends_from: Vec<SocketAddr>,
}

impl UdpPeer {
    /// A peer at `address` that sends from it too.
    pub fn new(address: SocketAddr, node_id: Eid) -> UdpPeer {
        UdpPeer { address, node_id, rate: None, sends_from: Vec::new() }
    }

    /// Whether a datagram from `from` can be this peer's.
    pub fn sends_from(&self, from: SocketAddr) -> bool {
        let matches = |allowed: &SocketAddr| {
            same_ip(allowed.ip(), from.ip()) && (allowed.port() == 0 || allowed.port() == from.port())
        };
        if self.sends_from.is_empty() { matches(&self.address) } else { self.sends_from.iter().any(matches) }
    }
}

/// Whether two IPs are one, an IPv4 address and its IPv6-mapped form alike.
fn same_ip(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Why the layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("cannot bind UDP to {address}: {error}")]
    Bind { address: SocketAddr, error: std::io::Error },
    #[error(
        "the UDP peer {address} ({node}) has no socket of its address family: bind one (udp.listen) first"
    )]
    NoSocketFor { address: SocketAddr, node: Eid },
}

/// A snapshot of what the layer counted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpStats {
    pub bundles_received: u64,
    pub bytes_received: u64,
    pub bundles_sent: u64,
    pub bytes_sent: u64,
    /// Datagrams that were not bundles the agent took (not a bundle, refused, no room).
    pub datagrams_refused: u64,
    /// Datagrams from addresses not allowed.
    pub datagrams_not_allowed: u64,
    pub keepalives_received: u64,
}

#[derive(Debug, Default)]
struct Counters {
    bundles_received: AtomicU64,
    bytes_received: AtomicU64,
    bundles_sent: AtomicU64,
    bytes_sent: AtomicU64,
    datagrams_refused: AtomicU64,
    datagrams_not_allowed: AtomicU64,
    keepalives_received: AtomicU64,
}

#[derive(Debug)]
struct PeerState {
    peer: UdpPeer,
    socket: Arc<UdpSocket>,
    bucket: Option<tokio::sync::Mutex<TokenBucket>>,
}

/// The configured peers by node ID.
type Peers = Arc<Mutex<HashMap<Eid, Arc<PeerState>>>>;

#[derive(Debug)]
struct Shared<A: BundleSink> {
    agent: A,
    config: UdpConfig,
    sockets: Mutex<Vec<Arc<UdpSocket>>>,
    peers: Peers,
    counters: Counters,
    /// One warning per source IP per minute — by IP, not port, so a sender cycling through its
    /// ports gets no more; at most [`WARNED_SOURCES`] IPs, the rest sharing one.
    warnings: Mutex<bpa::log::RateLimits<std::net::IpAddr>>,
    shutdown: watch::Sender<bool>,
}

/// Who sent a datagram, as the agent may ask ([`bpa::cla::Sender`]): a bundle in the name of a
/// configured peer must come from where that peer sends from.
#[derive(Debug)]
struct DatagramSender {
    from: SocketAddr,
    peers: Peers,
}

impl bpa::cla::Sender for DatagramSender {
    fn may_speak_for(&self, node: &Eid) -> bool {
        lock(&self.peers).get(node).is_none_or(|peer| peer.peer.sends_from(self.from))
    }

    fn describe(&self) -> String {
        format!("UDP {}", self.from)
    }
}

/// Datagrams being made durable at once; past it, reading waits (the socket buffer holds
/// what arrives meanwhile).
const MAX_RECEIVING: usize = 256;

/// Larger than any UDP payload (65,507 over IPv4, 65,527 over IPv6).
const RECEIVE_BUFFER: usize = 65_536;

/// Source IPs remembered for rate-limited warnings; past it the others share one limit.
const WARNED_SOURCES: usize = 1024;

/// The UDP layer of one node. Cheap to clone.
#[derive(Debug)]
pub struct Udp<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> Clone for Udp<A> {
    fn clone(&self) -> Self {
        Udp { shared: Arc::clone(&self.shared) }
    }
}

impl<A: BundleSink> Udp<A> {
    pub fn new(agent: A, config: UdpConfig) -> Udp<A> {
        let (shutdown, _) = watch::channel(false);
        Udp {
            shared: Arc::new(Shared {
                agent,
                config,
                sockets: Mutex::new(Vec::new()),
                peers: Arc::new(Mutex::new(HashMap::new())),
                counters: Counters::default(),
                warnings: Mutex::new(bpa::log::RateLimits::new(Duration::from_secs(60), WARNED_SOURCES)),
                shutdown,
            }),
        }
    }

    /// Binds a socket on `address` and takes the bundles that arrive on it; answers the
    /// address bound. Peers are sent to from the first socket of their address family.
    pub async fn bind(&self, address: SocketAddr) -> Result<SocketAddr, UdpError> {
        let socket = udp_socket(address, self.shared.config.socket_buffer)
            .map_err(|error| UdpError::Bind { address, error })?;
        let bound = socket.local_addr().map_err(|error| UdpError::Bind { address, error })?;
        let socket = Arc::new(socket);
        lock(&self.shared.sockets).push(Arc::clone(&socket));
        tracing::info!(address = %bound, "UDP bound");
        let layer = self.clone();
        let mut shutdown = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            // Whatever the peer sends up to UDP's most is taken (`max_datagram` is what this node
            // sends: a relay may add a block to a fragment of ours and send it on).
            let mut buffer = vec![0u8; RECEIVE_BUFFER];
            let receiving = Arc::new(tokio::sync::Semaphore::new(MAX_RECEIVING));
            loop {
                tokio::select! {
                    received = socket.recv_from(&mut buffer) => match received {
                        Ok((n, from)) => {
                            // Each bundle is made durable beside the next datagrams' reading, at
                            // most MAX_RECEIVING at once (the socket buffer holds the rest).
                            let Some(bytes) = layer.admit(&buffer[..n], from) else { continue };
                            let Ok(permit) = Arc::clone(&receiving).acquire_owned().await else { return };
                            let layer = layer.clone();
                            tokio::spawn(async move {
                                layer.datagram(bytes, from).await;
                                drop(permit);
                            });
                        }
                        Err(error) => {
                            // ICMP errors from earlier sends surface here: not fatal.
                            tracing::debug!(%error, "UDP receive");
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            }
        });
        Ok(bound)
    }

    /// Adds a peer: it is a neighbour from now on (UDP has no connection to wait for), sent to
    /// at its rate.
    pub async fn add_peer(&self, peer: UdpPeer) -> Result<(), UdpError> {
        let socket = lock(&self.shared.sockets)
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == peer.address.is_ipv4()))
            .cloned()
            .ok_or_else(|| UdpError::NoSocketFor { address: peer.address, node: peer.node_id.clone() })?;
        let capacity = self.shared.config.max_datagram as u64;
        let bucket = peer
            .rate
            .map(|rate| tokio::sync::Mutex::new(TokenBucket::new(rate, capacity, crate::clock::now())));
        let node = peer.node_id.node_id();
        let state = Arc::new(PeerState { peer, socket, bucket });
        lock(&self.shared.peers).insert(node.clone(), state);
        if let Err(error) = self.shared.agent.neighbour_up(node.clone(), self.link()).await {
            tracing::error!(%error, neighbour = %node, "the agent did not take the UDP neighbour");
        }
        Ok(())
    }

    /// Stops receiving.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The [`ConvergenceLayer`] the agent sends through.
    pub fn link(&self) -> Arc<dyn ConvergenceLayer> {
        Arc::new(UdpLink { shared: Arc::clone(&self.shared) })
    }

    pub fn stats(&self) -> UdpStats {
        let c = &self.shared.counters;
        UdpStats {
            bundles_received: c.bundles_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            bundles_sent: c.bundles_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            datagrams_refused: c.datagrams_refused.load(Ordering::Relaxed),
            datagrams_not_allowed: c.datagrams_not_allowed.load(Ordering::Relaxed),
            keepalives_received: c.keepalives_received.load(Ordering::Relaxed),
        }
    }

    /// A datagram that is to go to the agent, copied; `None` for a keepalive (four zero bytes,
    /// RFC 7122 §3.2) or a sender not allowed (counted).
    fn admit(&self, bytes: &[u8], from: SocketAddr) -> Option<Bytes> {
        let counters = &self.shared.counters;
        if let Some(allow) = &self.shared.config.allow {
            let is_peer = lock(&self.shared.peers).values().any(|p| {
                same_ip(p.peer.address.ip(), from.ip())
                    || p.peer.sends_from.iter().any(|a| same_ip(a.ip(), from.ip()))
            });
            if !is_peer && !allow.contains(&from.ip()) {
                counters.datagrams_not_allowed.fetch_add(1, Ordering::Relaxed);
                self.warn(from, "a datagram from an address not allowed (udp.allow) was dropped");
                return None;
            }
        }
        if bytes == KEEPALIVE {
            counters.keepalives_received.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        counters.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Some(Bytes::copy_from_slice(bytes))
    }

    /// One bundle in.
    async fn datagram(&self, bytes: Bytes, from: SocketAddr) {
        let counters = &self.shared.counters;
        let sender = DatagramSender { from, peers: Arc::clone(&self.shared.peers) };
        match self.shared.agent.receive_from(bytes, &sender).await {
            Ok(_) => {
                counters.bundles_received.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                counters.datagrams_refused.fetch_add(1, Ordering::Relaxed);
                self.warn(from, &format!("a datagram was dropped: {}", bpa::log::Escaped(&error)));
            }
        }
    }

    /// Logs a warning about `from`, at most once a minute per source IP.
    fn warn(&self, from: SocketAddr, what: &str) {
        let allowed = lock(&self.shared.warnings).allow(from.ip().to_canonical(), crate::clock::now());
        if let Some(suppressed) = allowed {
            tracing::warn!(%from, earlier_from_this_ip_not_logged = suppressed, "{what}");
        }
    }
}

/// The agent's way to the peers.
#[derive(Debug)]
struct UdpLink<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> ConvergenceLayer for UdpLink<A> {
    fn name(&self) -> &str {
        "udp"
    }

    fn max_bundle_size(&self) -> Option<usize> {
        Some(self.shared.config.max_datagram)
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let node = peer.node_id();
        let state = lock(&self.shared.peers).get(&node).cloned();
        Box::pin(async move {
            let peer = node.to_string();
            let Some(state) = state else { return Err(ClaError::LinkDown { peer }) };
            let max = self.shared.config.max_datagram as u64;
            if bundle.len() > max {
                return Err(ClaError::Refused { peer, reason: Refusal::TooLarge { limit: max } });
            }
            let bytes = bundle
                .into_bytes()
                .await
                .map_err(|e| ClaError::Failed { peer: peer.clone(), reason: e.to_string() })?;
            let length = bytes.len() as u64;
            if let Some(bucket) = &state.bucket {
                let mut bucket = bucket.lock().await;
                loop {
                    let wait = bucket.wait(length, crate::clock::now());
                    if wait.is_zero() {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                }
                bucket.take(length, crate::clock::now());
            }
            state
                .socket
                .send_to(&bytes, state.peer.address)
                .await
                .map_err(|e| ClaError::Failed { peer: peer.clone(), reason: e.to_string() })?;
            // Sent is forwarded: loss is expected (RFC 7122 §3.2; custody makes it reliable).
            let counters = &self.shared.counters;
            counters.bundles_sent.fetch_add(1, Ordering::Relaxed);
            counters.bytes_sent.fetch_add(length, Ordering::Relaxed);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_sends_from_its_address_or_where_it_is_said_to() {
        let address: SocketAddr = "192.0.2.10:4556".parse().expect("address");
        let mut peer = UdpPeer::new(address, Eid::ipn(10, 0));
        assert!(peer.sends_from(address));
        assert!(
            peer.sends_from("[::ffff:192.0.2.10]:4556".parse().expect("mapped")),
            "IPv4-mapped is the same"
        );
        assert!(!peer.sends_from("192.0.2.10:4557".parse().expect("other port")));
        assert!(!peer.sends_from("192.0.2.11:4556".parse().expect("other host")));
        // ION's udpclo: any port of its IP.
        peer.sends_from = vec!["192.0.2.10:0".parse().expect("any port")];
        assert!(peer.sends_from("192.0.2.10:40123".parse().expect("ephemeral")));
        assert!(!peer.sends_from("192.0.2.11:40123".parse().expect("other host")));
        // Behind NAT: only the address given.
        peer.sends_from = vec!["198.51.100.7:61000".parse().expect("nat")];
        assert!(peer.sends_from("198.51.100.7:61000".parse().expect("nat")));
        assert!(!peer.sends_from(address), "once given, sends_from replaces the address");
    }
}
