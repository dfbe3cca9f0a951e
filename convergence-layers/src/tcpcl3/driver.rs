//! The tokio driver of TCPCLv3: listeners, dialled peers, one task per connection owning its
//! sans-IO [`Session`], a writer task per connection, and the [`ConvergenceLayer`] the agent
//! sends through.
//!
//! The contact header names the peer (§4.1), so every connection, dialled or accepted, makes
//! its peer a neighbour while it is up. A bundle counts as sent when the peer acknowledged its
//! last segment, or, when either side did not ask for acknowledgements, once it is written. A
//! received bundle is acknowledged only after the agent made it durable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bpa::Eid;
use bpa::cla::{BundleSink, ConvergenceLayer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::connection::Connection;
pub use super::shared::Tcpcl3Config;
use super::shared::{Counters, Ended, Shared, link, no_longer_wanted};
use crate::lock;

/// Why the layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum Tcpcl3Error {
    #[error("cannot listen for TCPCLv3 on {address}: {error}")]
    Listen { address: SocketAddr, error: std::io::Error },
}

/// A snapshot of the counters and the connections, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcpcl3Stats {
    pub bundles_received: u64,
    pub bytes_received: u64,
    pub bundles_sent: u64,
    pub bytes_sent: u64,
    pub bundles_refused: u64,
    pub refused_by_peer: u64,
    pub bundles_cut_off: u64,
    pub protocol_errors: u64,
    /// The peers connected now, by node ID.
    pub connected: Vec<Eid>,
}

/// A TCPCLv3 layer for one node. Cheap to clone.
#[derive(Debug)]
pub struct Tcpcl3<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> Clone for Tcpcl3<A> {
    fn clone(&self) -> Self {
        Tcpcl3 { shared: Arc::clone(&self.shared) }
    }
}

impl<A: BundleSink> Tcpcl3<A> {
    pub fn new(agent: A, mut config: Tcpcl3Config) -> Tcpcl3<A> {
        let (shutdown, _) = watch::channel(false);
        config.segment_size = config.segment_size.max(1);
        config.max_unacknowledged = config.max_unacknowledged.max(1);
        Tcpcl3 {
            shared: Arc::new(Shared {
                agent,
                config,
                routes: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                next_connection: AtomicU64::new(0),
                shutdown,
                redials: crate::listener::Redials::default(),
            }),
        }
    }

    /// Accepts connections on `address`; answers the address bound.
    pub async fn listen(&self, address: SocketAddr) -> Result<SocketAddr, Tcpcl3Error> {
        let listener =
            TcpListener::bind(address).await.map_err(|error| Tcpcl3Error::Listen { address, error })?;
        let bound = listener.local_addr().map_err(|error| Tcpcl3Error::Listen { address, error })?;
        tracing::info!(address = %bound, "TCPCLv3 listening");
        let layer = self.clone();
        let shutdown = self.shared.shutdown.subscribe();
        let limits = self.shared.config.limits;
        crate::listener::accept_bounded(
            listener,
            "tcpcl3",
            limits,
            self.shared.redials.clone(),
            shutdown,
            move |stream, peer, activity| {
                let layer = layer.clone();
                async move {
                    layer.run_connection(stream, peer.to_string(), None, None, Some(activity)).await;
                }
            },
        );
        Ok(bound)
    }

    /// Keeps a connection to `address` (`host:port`) for ever, reconnecting with backoff (or
    /// after the delay the peer's SHUTDOWN asked for). With `node`, a peer naming another node
    /// in its contact header is disconnected.
    pub fn connect_forever(&self, address: String, node: Option<Eid>) {
        self.dial(address, node, None);
    }

    /// As [`Tcpcl3::connect_forever`], while `wanted` says true (a planned contact): when it
    /// turns false the connection ends with SHUTDOWN and the dialling stops.
    pub fn connect_while(&self, address: String, node: Option<Eid>, wanted: watch::Receiver<bool>) {
        self.dial(address, node, Some(wanted));
    }

    fn dial(&self, address: String, node: Option<Eid>, wanted: Option<watch::Receiver<bool>>) {
        let layer = self.clone();
        let mut shutdown = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            let (min, max) = (layer.shared.config.reconnect_min, layer.shared.config.reconnect_max);
            let mut wait = min;
            let mut unreachable: Option<String> = None;
            let mut unwanted = wanted.clone();
            let dialer = layer.shared.redials.dialer();
            loop {
                if wanted.as_ref().is_some_and(|w| !*w.borrow()) {
                    return;
                }
                dialer.resolve(&address).await;
                // Whether the wait below is the peer's own (its SHUTDOWN's delay): kept whatever.
                let mut asked = false;
                let connected = tokio::select! {
                    connected = TcpStream::connect(&address) => connected,
                    _ = shutdown.changed() => return,
                    () = no_longer_wanted(&mut unwanted) => return,
                };
                match connected {
                    Ok(stream) => {
                        if unreachable.take().is_some() {
                            tracing::info!(%address, "TCPCLv3 peer reachable again");
                        }
                        match layer
                            .run_connection(stream, address.clone(), node.clone(), wanted.clone(), None)
                            .await
                        {
                            Ended::Normally { established: true } => wait = min,
                            Ended::Normally { established: false } | Ended::WrongPeer => {
                                wait = (wait * 2).min(max)
                            }
                            Ended::Delay(Some(delay)) => {
                                wait = delay.max(min);
                                asked = true;
                            }
                            Ended::Delay(None) => {
                                tracing::warn!(%address, "the TCPCLv3 peer asked never to be reconnected to (SHUTDOWN with delay 0): not dialling it again until restart");
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        if unreachable.as_deref() != Some(reason.as_str()) {
                            tracing::warn!(%address, %error, "TCPCLv3 peer not reachable; trying again with backoff (logged again when the reason changes)");
                            unreachable = Some(reason);
                        }
                        wait = (wait * 2).min(max);
                    }
                }
                let backoff = async {
                    if asked {
                        tokio::time::sleep(wait).await;
                    } else {
                        dialer.backoff(wait).await;
                    }
                };
                tokio::select! {
                    () = backoff => {}
                    _ = shutdown.changed() => return,
                    () = no_longer_wanted(&mut unwanted) => return,
                }
            }
        });
    }

    /// Stops listening and dialling; connections end with SHUTDOWN.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The [`ConvergenceLayer`] the agent sends through.
    pub fn link(&self) -> Arc<dyn ConvergenceLayer> {
        link(&self.shared)
    }

    pub fn stats(&self) -> Tcpcl3Stats {
        let c = &self.shared.counters;
        let mut connected: Vec<Eid> = lock(&self.shared.routes).keys().cloned().collect();
        connected.sort();
        Tcpcl3Stats {
            bundles_received: c.bundles_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            bundles_sent: c.bundles_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bundles_refused: c.bundles_refused.load(Ordering::Relaxed),
            refused_by_peer: c.refused_by_peer.load(Ordering::Relaxed),
            bundles_cut_off: c.bundles_cut_off.load(Ordering::Relaxed),
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
            connected,
        }
    }

    async fn run_connection(
        &self,
        stream: TcpStream,
        address: String,
        expected: Option<Eid>,
        wanted: Option<watch::Receiver<bool>>,
        activity: Option<Arc<crate::listener::Activity>>,
    ) -> Ended {
        let _ = stream.set_nodelay(true);
        let connection = self.shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let mut task = Connection::new(Arc::clone(&self.shared), connection, address, expected);
        task.wanted = wanted;
        task.activity = activity;
        let ended = task.run(stream).await;
        task.finish();
        ended
    }
}
