//! The tokio driver of TCPCLv4 sessions (RFC 9174): it owns the sockets and the timers, feeds the
//! sans-IO [`Session`] and carries out what it asks, and connects sessions to the agent, which
//! it reaches through the [`BundleSink`] trait only.
//!
//! This module is the layer's face (listeners, reconnecting peers, the [`ConvergenceLayer`] the
//! agent sends through, session summaries); a session's parts are beside it: `handshake` (contact
//! headers, TLS), `session_task` (the task that owns the [`Session`]), `receiving` (into the
//! store) and `writer` (the writer task).
//!
//! One task per session reads, keeps the session and talks to the agent; a writer task per
//! session writes what the session queues and the segments' data, read from the store as it
//! goes. So a session reads while it writes (two nodes sending large bundles to each other never
//! both block writing), and neither direction holds a whole bundle in memory:
//! - incoming transfers up to [`STREAM_THRESHOLD`] are collected and handed to
//!   [`BundleSink::receive`]; larger ones stream into the store through
//!   [`BundleSink::begin_receive`] as
//!   their segments arrive. The final XFER_ACK goes out only once the bundle is durable
//!   (design §3.3); several bundles are committed at once, so the store's group commit works
//!   for a session's pipeline of small bundles.
//! - outgoing bundles come from the agent as an [`OutgoingBundle`] (head in memory, payload a
//!   region of the bundle's file) and are read segment by segment as the socket takes them.
//!   Transfers are pipelined: the next starts as soon as the previous one's last segment is
//!   queued, acknowledgements come back in any order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::Eid;
use bpa::cla::{BundleSink, ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::session::{Role, Session, SessionConfig, TlsPolicy};
use super::session_task::SessionTask;
use super::tls::TlsSetup;
pub(super) use crate::lock;

/// Incoming bundles up to this size are collected in memory and stored whole; larger ones
/// stream into the store (the same threshold as the store's own inline/file split).
pub const STREAM_THRESHOLD: usize = 64 * 1024;
/// Incoming bytes are written to the store in pieces of about this size.
pub(super) const STORE_WRITE_CHUNK: usize = 1 << 20;
/// Received bundles being committed at once per session; reading pauses beyond it. (Each holds
/// at most [`STREAM_THRESHOLD`] bytes in memory.)
pub(super) const MAX_COMMITS_IN_PROGRESS: usize = 256;
/// Outgoing segment bytes handed to the writer and not yet written.
pub(super) const MAX_QUEUED_SEGMENT_BYTES: u64 = 2 << 20;
/// Control messages (acknowledgements, refusals, MSG_REJECTs the peer provokes) handed to the
/// writer and not yet written; reading pauses beyond it, so a peer that never reads cannot
/// make this node queue answers without bound.
pub(super) const MAX_QUEUED_CONTROL_BYTES: u64 = 256 << 10;
pub(super) const READ_BUFFER: usize = 64 * 1024;
pub(super) const WRITE_BUFFER: usize = 256 * 1024;

/// How the TCPCL driver behaves.
#[derive(Debug, Clone)]
pub struct TcpclConfig {
    /// The session parameters (the node ID is this node's).
    pub session: SessionConfig,
    /// The first wait before reconnecting to a configured peer; doubled after each failure.
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// The node's certificate and trust anchors; without them no TLS is offered, whatever
    /// [`SessionConfig::tls`] says.
    pub tls: Option<TlsSetup>,
    /// An incoming transfer that receives nothing for this long is abandoned (its partial
    /// data removed) and the session ended, whatever the keepalive (0 disables keepalives).
    pub transfer_idle_timeout: Duration,
    /// A session whose peer reads nothing of what waits to be sent for this long is ended.
    pub send_stall_timeout: Duration,
    /// How many sessions peers may open at once, in all and from one address
    /// ([`crate::listener`]).
    pub limits: crate::listener::ConnectionLimits,
}

impl TcpclConfig {
    pub fn new(session: SessionConfig) -> TcpclConfig {
        TcpclConfig {
            session,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            tls: None,
            transfer_idle_timeout: Duration::from_secs(120),
            send_stall_timeout: Duration::from_secs(120),
            limits: crate::listener::ConnectionLimits::default(),
        }
    }
}

/// Why the driver could not start something.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The OS error is part of the message and deliberately not a `source`: error chains
    /// (anyhow's `{:#}`) would print it twice.
    #[error("cannot listen for TCPCL on {address}: {error}")]
    Listen { address: SocketAddr, error: std::io::Error },
}

/// A session as `dtn status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The peer's socket address.
    pub address: SocketAddr,
    /// Whether this node opened the connection.
    pub active: bool,
    /// The node ID from the peer's SESS_INIT, once the session is established.
    pub node_id: Option<String>,
    /// Whether the peer's node ID was authenticated by its TLS certificate.
    pub node_id_authenticated: bool,
    pub tls: bool,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Outgoing bundles started or queued and not yet acknowledged.
    pub transfers_in_flight: u64,
    pub bundles_received: u64,
    pub bundles_sent: u64,
}

#[derive(Debug)]
pub(super) struct SessionStatus {
    pub(super) address: SocketAddr,
    pub(super) active: bool,
    pub(super) node_id: Mutex<Option<String>>,
    pub(super) node_id_authenticated: AtomicBool,
    pub(super) tls: AtomicBool,
    pub(super) bytes_received: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) transfers_in_flight: AtomicU64,
    pub(super) bundles_received: AtomicU64,
    pub(super) bundles_sent: AtomicU64,
}

impl SessionStatus {
    pub(super) fn summary(&self) -> SessionSummary {
        SessionSummary {
            address: self.address,
            active: self.active,
            node_id: lock(&self.node_id).clone(),
            node_id_authenticated: self.node_id_authenticated.load(Ordering::Relaxed),
            tls: self.tls.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            transfers_in_flight: self.transfers_in_flight.load(Ordering::Relaxed),
            bundles_received: self.bundles_received.load(Ordering::Relaxed),
            bundles_sent: self.bundles_sent.load(Ordering::Relaxed),
        }
    }
}

pub(super) use crate::clock::now;

/// A bundle the agent handed over, and who waits for the peer's answer.
pub(super) struct Outbound {
    pub(super) bundle: OutgoingBundle,
    pub(super) done: oneshot::Sender<Result<(), ClaError>>,
}

/// An established session the agent can send through.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) session: u64,
    pub(super) outbound: mpsc::UnboundedSender<Outbound>,
}

#[derive(Debug)]
pub(super) struct Shared<A: BundleSink> {
    pub(super) agent: A,
    pub(super) config: TcpclConfig,
    /// Established sessions by the peer's node ID, oldest first; the newest is used. (A peer
    /// may open its own session while ours is up: dtn7-rs does, to send.)
    pub(super) routes: Mutex<HashMap<Eid, Vec<Route>>>,
    pub(super) sessions: Mutex<HashMap<u64, Arc<SessionStatus>>>,
    pub(super) next_session: AtomicU64,
    pub(super) shutdown: watch::Sender<bool>,
    /// The dial loops, woken when their peer connects ([`crate::listener::Redials`]).
    pub(super) redials: crate::listener::Redials,
}

/// The TCP convergence layer of one node: its listeners, its configured peers and every
/// session, and the [`ConvergenceLayer`] through which the agent sends. Cheap to clone.
#[derive(Debug)]
pub struct Tcpcl<A: BundleSink> {
    pub(super) shared: Arc<Shared<A>>,
}

impl<A: BundleSink> Clone for Tcpcl<A> {
    fn clone(&self) -> Self {
        Tcpcl { shared: Arc::clone(&self.shared) }
    }
}

impl<A: BundleSink> Tcpcl<A> {
    /// A layer for `agent`. The session's node ID is set to the agent's.
    pub fn new(agent: A, mut config: TcpclConfig) -> Tcpcl<A> {
        config.session.node_id = agent.node_id().node_id().to_string();
        if config.tls.is_none() {
            config.session.tls = TlsPolicy::Off;
        }
        let (shutdown, _) = watch::channel(false);
        Tcpcl {
            shared: Arc::new(Shared {
                agent,
                config,
                routes: Mutex::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(1),
                shutdown,
                redials: crate::listener::Redials::default(),
            }),
        }
    }

    /// Accepts sessions on `address` from now on; answers the address bound (port 0 picks one).
    pub async fn listen(&self, address: SocketAddr) -> Result<SocketAddr, DriverError> {
        let listener =
            TcpListener::bind(address).await.map_err(|error| DriverError::Listen { address, error })?;
        let bound = listener.local_addr().map_err(|error| DriverError::Listen { address, error })?;
        tracing::info!(address = %bound, "TCPCL listening");
        let layer = self.clone();
        let shutdown = self.shared.shutdown.subscribe();
        // Sessions the peers opened, bounded in all and per address (each holds buffers and
        // transfers in progress); the idlest is shed for a newcomer.
        let limits = self.shared.config.limits;
        crate::listener::accept_bounded(
            listener,
            "tcpcl",
            limits,
            self.shared.redials.clone(),
            shutdown,
            move |stream, peer, activity| {
                let layer = layer.clone();
                async move {
                    layer.run_session(stream, peer, Role::Passive, None, Some(activity)).await;
                }
            },
        );
        Ok(bound)
    }

    /// Keeps a session to the peer at `address` (`host:port`) for ever: connects, and after
    /// each failure or lost session connects again, waiting [`TcpclConfig::reconnect_min`]
    /// doubled after each failed attempt up to [`TcpclConfig::reconnect_max`].
    pub fn connect_forever(&self, address: String) {
        self.connect_loop(address, None);
    }

    /// Keeps a session to the peer at `address` while `wanted` says true (a planned contact):
    /// connects, reconnects as [`Tcpcl::connect_forever`] does, and when `wanted` turns false
    /// (or its sender is dropped) stops trying and ends the session with SESS_TERM.
    pub fn connect_while(&self, address: String, wanted: watch::Receiver<bool>) {
        self.connect_loop(address, Some(wanted));
    }

    fn connect_loop(&self, address: String, wanted: Option<watch::Receiver<bool>>) {
        let layer = self.clone();
        let mut shutdown = self.shared.shutdown.subscribe();
        // Resolves once the session is no longer wanted; never without a flag.
        let gone = |wanted: Option<watch::Receiver<bool>>| async move {
            match wanted {
                Some(mut flag) => {
                    let _ = flag.wait_for(|wanted| !*wanted).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::spawn(async move {
            let still_wanted =
                |w: &Option<watch::Receiver<bool>>| w.as_ref().is_none_or(|flag| *flag.borrow());
            let (min, max) = (layer.shared.config.reconnect_min, layer.shared.config.reconnect_max);
            let mut wait = min;
            // A peer that cannot be reached is a warning once, and again only when the reason
            // changes (every retry would fill the log of a node whose uplink is down for a week).
            let mut unreachable: Option<String> = None;
            let dialer = layer.shared.redials.dialer();
            loop {
                if *shutdown.borrow() || !still_wanted(&wanted) {
                    return;
                }
                dialer.resolve(&address).await;
                // Only the connection attempt is cut short by a shutdown or the contact's end: a
                // session ends itself, with SESS_TERM.
                let connected = tokio::select! {
                    connected = TcpStream::connect(&address) => connected,
                    _ = shutdown.changed() => return,
                    () = gone(wanted.clone()) => return,
                };
                let established = match connected {
                    Ok(stream) => {
                        if unreachable.take().is_some() {
                            tracing::info!(%address, "TCPCL peer reachable again");
                        }
                        let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                        layer.run_session(stream, peer, Role::Active, wanted.clone(), None).await
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        if unreachable.as_deref() == Some(reason.as_str()) {
                            tracing::debug!(%address, %error, "TCPCL peer still not reachable");
                        } else {
                            tracing::warn!(
                                %address, %error,
                                "TCPCL peer not reachable; trying again with backoff (logged again when the reason changes)"
                            );
                            unreachable = Some(reason);
                        }
                        false
                    }
                };
                wait = if established { min } else { (wait * 2).min(max) };
                tokio::select! {
                    () = dialer.backoff(wait) => {}
                    _ = shutdown.changed() => return,
                    () = gone(wanted.clone()) => return,
                }
            }
        });
    }

    /// Opens one session to `address` and runs it until it ends; answers whether it was
    /// established.
    pub async fn connect_once(&self, address: SocketAddr) -> std::io::Result<bool> {
        let stream = TcpStream::connect(address).await?;
        Ok(self.run_session(stream, address, Role::Active, None, None).await)
    }

    /// Every session now.
    pub fn sessions(&self) -> Vec<SessionSummary> {
        let mut list: Vec<_> = lock(&self.shared.sessions).values().map(|s| s.summary()).collect();
        list.sort_by_key(|s| (s.address, s.active));
        list
    }

    /// Stops listening and reconnecting and ends every session with SESS_TERM.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The [`ConvergenceLayer`] the agent sends through.
    pub fn link(&self) -> Arc<dyn ConvergenceLayer> {
        Arc::new(TcpclLink { shared: Arc::clone(&self.shared) })
    }

    /// Runs one session on a connected socket until it ends; answers whether it was
    /// established.
    pub(super) async fn run_session(
        &self,
        stream: TcpStream,
        address: SocketAddr,
        role: Role,
        wanted: Option<watch::Receiver<bool>>,
        activity: Option<Arc<crate::listener::Activity>>,
    ) -> bool {
        let _ = stream.set_nodelay(true);
        let number = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        let status = Arc::new(SessionStatus {
            address,
            active: role == Role::Active,
            node_id: Mutex::new(None),
            node_id_authenticated: AtomicBool::new(false),
            tls: AtomicBool::new(false),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            transfers_in_flight: AtomicU64::new(0),
            bundles_received: AtomicU64::new(0),
            bundles_sent: AtomicU64::new(0),
        });
        lock(&self.shared.sessions).insert(number, Arc::clone(&status));
        let session = Session::new(self.shared.config.session.clone(), role, now());
        let mut task = SessionTask::new(self.clone(), number, session, status);
        task.wanted = wanted;
        task.activity = activity;
        let established = task.run(stream).await;
        lock(&self.shared.sessions).remove(&number);
        established
    }
}

/// The agent's way into the sessions.
#[derive(Debug)]
pub(super) struct TcpclLink<A: BundleSink> {
    pub(super) shared: Arc<Shared<A>>,
}

impl<A: BundleSink> ConvergenceLayer for TcpclLink<A> {
    fn name(&self) -> &str {
        "tcpcl"
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let node = peer.node_id();
        let route = lock(&self.shared.routes).get(&node).and_then(|routes| routes.last().cloned());
        Box::pin(async move {
            let peer = node.to_string();
            let Some(route) = route else { return Err(ClaError::LinkDown { peer }) };
            let (done, answer) = oneshot::channel();
            if route.outbound.send(Outbound { bundle, done }).is_err() {
                return Err(ClaError::LinkDown { peer });
            }
            answer.await.unwrap_or(Err(ClaError::LinkDown { peer }))
        })
    }
}
