//! What the TCPCLv3 layer and its connections share: the configuration, the counters, the
//! routes to connected peers, and the agent's way into them (the layer's `ConvergenceLayer`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::Eid;
use bpa::cla::{BundleSink, ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle};
use tokio::sync::{mpsc, oneshot, watch};

use super::session::SessionConfig;
use crate::lock;

/// How the layer behaves.
#[derive(Debug, Clone)]
pub struct Tcpcl3Config {
    pub session: SessionConfig,
    /// Bundles are sent in data segments of at most this many bytes.
    pub segment_size: u64,
    /// Bundles sent on one connection and not yet acknowledged; past it, sending waits.
    pub max_unacknowledged: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A connection is closed when a bundle part-way in receives nothing, or the peer takes
    /// nothing of what is being written, for this long — whatever the keepalive (which may be
    /// off).
    pub stall_timeout: Duration,
    /// How many connections peers may open at once, in all and from one address
    /// ([`crate::listener`]).
    pub limits: crate::listener::ConnectionLimits,
}

impl Tcpcl3Config {
    pub fn new(session: SessionConfig) -> Tcpcl3Config {
        Tcpcl3Config {
            session,
            // What ION sends (design §3, "what ION 4.1.3 puts on the wire"), so its receiver
            // takes ours.
            segment_size: 64 * 1024,
            max_unacknowledged: 256,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(120),
            limits: crate::listener::ConnectionLimits::default(),
        }
    }
}

/// What the layer counts.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) bundles_received: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) bundles_sent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    /// Received bundles this node refused or dropped (invalid, no room, too large).
    pub(super) bundles_refused: AtomicU64,
    /// Bundles the peer refused.
    pub(super) refused_by_peer: AtomicU64,
    /// Bundles cut off with their connection or abandoned by the sender (dropped whole).
    pub(super) bundles_cut_off: AtomicU64,
    /// Connections ended because the peer broke the protocol (bad header, bad message).
    pub(super) protocol_errors: AtomicU64,
}

/// One bundle for a connection, and where to say how it went.
pub(super) struct Outbound {
    pub(super) bundle: OutgoingBundle,
    pub(super) done: oneshot::Sender<Result<(), ClaError>>,
}

#[derive(Clone)]
pub(super) struct Route {
    pub(super) connection: u64,
    pub(super) outbound: mpsc::Sender<Outbound>,
}

pub(super) struct Shared<A: BundleSink> {
    pub(super) agent: A,
    pub(super) config: Tcpcl3Config,
    /// The connections up to each peer, newest last (sent over): ION, for one, keeps the one
    /// it dialled beside the one it accepted.
    pub(super) routes: Mutex<HashMap<Eid, Vec<Route>>>,
    pub(super) counters: Counters,
    pub(super) next_connection: AtomicU64,
    pub(super) shutdown: watch::Sender<bool>,
    /// The dial loops, woken when their peer connects ([`crate::listener::Redials`]).
    pub(super) redials: crate::listener::Redials,
}

impl<A: BundleSink> std::fmt::Debug for Shared<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcpcl3").field("config", &self.config).finish_non_exhaustive()
    }
}

pub(super) use crate::clock::now;

/// How a connection ended, for the dialler.
pub(super) enum Ended {
    /// Reconnect after the usual backoff.
    Normally { established: bool },
    /// The peer asked for this delay before reconnecting (§6.1); `None`: never.
    Delay(Option<Duration>),
    /// The peer is not the node configured for this address.
    WrongPeer,
}

/// Resolves when a connection that was wanted no longer is (its flag turned false, or whoever
/// held it is gone); never without one.
pub(super) async fn no_longer_wanted(wanted: &mut Option<watch::Receiver<bool>>) {
    match wanted {
        Some(flag) => {
            let _ = flag.wait_for(|wanted| !*wanted).await;
        }
        None => std::future::pending().await,
    }
}

/// The agent's way into the connections.
#[derive(Debug)]
pub(super) struct Tcpcl3Link<A: BundleSink> {
    pub(super) shared: Arc<Shared<A>>,
}

impl<A: BundleSink> ConvergenceLayer for Tcpcl3Link<A> {
    fn name(&self) -> &str {
        "tcpcl3"
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let node = peer.node_id();
        let route = lock(&self.shared.routes).get(&node).and_then(|up| up.last().cloned());
        Box::pin(async move {
            let peer = node.to_string();
            let Some(route) = route else { return Err(ClaError::LinkDown { peer }) };
            let (done, answer) = oneshot::channel();
            if route.outbound.send(Outbound { bundle, done }).await.is_err() {
                return Err(ClaError::LinkDown { peer });
            }
            answer.await.unwrap_or(Err(ClaError::LinkDown { peer }))
        })
    }
}

/// The layer's `ConvergenceLayer`: sends go over the newest connection to the peer.
pub(super) fn link<A: BundleSink>(shared: &Arc<Shared<A>>) -> Arc<dyn ConvergenceLayer> {
    Arc::new(Tcpcl3Link { shared: Arc::clone(shared) })
}
