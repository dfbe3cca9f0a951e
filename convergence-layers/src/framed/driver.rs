//! The tokio driver of STCP and MTCP: listeners, configured peers, and the
//! [`ConvergenceLayer`] the agent sends through.
//!
//! Neither protocol names the nodes at either end, so a peer's node ID comes from the
//! configuration: the node dials each configured peer, keeps the connection (reconnecting with
//! backoff), and while it is up the peer is a neighbour sent to over it. Bundles are read from
//! every connection, dialled or accepted, and handed to the agent as they stream in; a bundle
//! cut off with its connection is dropped whole, never delivered half. Neither protocol
//! acknowledges: a bundle counts as forwarded once written to the socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::Eid;
use bpa::cla::{BundleSink, ClaError, ClaFuture, ConvergenceLayer, IncomingBundle, OutgoingBundle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::codec::{FrameDecoder, FrameEvent, Framing};
use crate::lock;

/// How the layer behaves.
#[derive(Debug, Clone)]
pub struct FramedConfig {
    pub framing: Framing,
    /// The largest bundle taken from a peer; a larger frame ends the connection.
    pub max_bundle_size: u64,
    /// An STCP keepalive (a zero length) after this long without sending; `None`: never.
    pub keepalive: Option<Duration>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A bundle part-way in that receives nothing for this long is dropped and its connection
    /// closed (as TCPCLv3's stall timeout; neither protocol has a keepalive to wait for).
    pub stall_timeout: Duration,
    /// A connection a peer opened that sends no first byte within this is closed.
    pub first_frame_timeout: Duration,
    /// A connection a peer opened on which nothing arrives for this long, between bundles, is
    /// closed (ION's STCP keepalives keep its own open; a peer that reconnects when it has
    /// something to send loses nothing). Connections this node dialled are kept.
    pub idle_timeout: Duration,
    /// How many connections peers may open at once, in all and from one address
    /// ([`crate::listener`]).
    pub limits: crate::listener::ConnectionLimits,
}

impl FramedConfig {
    pub fn new(framing: Framing) -> FramedConfig {
        FramedConfig {
            framing,
            max_bundle_size: 16 << 30,
            // ION's STCP_KEEPALIVE_PERIOD; MTCP has none.
            keepalive: (framing == Framing::Stcp).then_some(Duration::from_secs(15)),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(120),
            first_frame_timeout: Duration::from_secs(30),
            idle_timeout: crate::listener::DEFAULT_IDLE_TIMEOUT,
            limits: crate::listener::ConnectionLimits::default(),
        }
    }
}

/// Why the layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum FramedError {
    #[error("cannot listen for {framing} on {address}: {error}")]
    Listen { framing: Framing, address: SocketAddr, error: std::io::Error },
}

/// What a layer counts.
#[derive(Debug, Default)]
pub struct FramedCounters {
    pub bundles_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bundles_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Bundles the agent refused (invalid, no room): dropped, the connection kept.
    pub bundles_refused: AtomicU64,
    /// Connections ended for a frame that could not be taken (too large, not a frame).
    pub bad_frames: AtomicU64,
    /// Bundles cut off with their connection (dropped whole).
    pub bundles_cut_off: AtomicU64,
    /// Connections closed for sending nothing in time (no first frame, idle, a stalled bundle).
    pub timed_out: AtomicU64,
}

/// A snapshot of [`FramedCounters`] and the connections, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedStats {
    pub bundles_received: u64,
    pub bytes_received: u64,
    pub bundles_sent: u64,
    pub bytes_sent: u64,
    pub bundles_refused: u64,
    pub bad_frames: u64,
    pub bundles_cut_off: u64,
    /// Connections closed for sending nothing in time (no first frame, idle, a stalled bundle).
    pub timed_out: u64,
    /// The peers connected now, by node ID.
    pub connected: Vec<Eid>,
}

/// One bundle for a connection's writer, and where to say how it went.
struct Outbound {
    bundle: OutgoingBundle,
    done: oneshot::Sender<Result<(), ClaError>>,
}

#[derive(Debug)]
struct Shared<A: BundleSink> {
    agent: A,
    config: FramedConfig,
    /// The writer of each connected peer.
    routes: Mutex<HashMap<Eid, mpsc::Sender<Outbound>>>,
    counters: FramedCounters,
    shutdown: watch::Sender<bool>,
    /// The dial loops, woken when their peer connects ([`crate::listener::Redials`]).
    redials: crate::listener::Redials,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("length", &self.bundle.len()).finish()
    }
}

/// An STCP or MTCP layer for one node. Cheap to clone.
#[derive(Debug)]
pub struct Framed<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> Clone for Framed<A> {
    fn clone(&self) -> Self {
        Framed { shared: Arc::clone(&self.shared) }
    }
}

impl<A: BundleSink> Framed<A> {
    pub fn new(agent: A, config: FramedConfig) -> Framed<A> {
        let (shutdown, _) = watch::channel(false);
        Framed {
            shared: Arc::new(Shared {
                agent,
                config,
                routes: Mutex::new(HashMap::new()),
                counters: FramedCounters::default(),
                shutdown,
                redials: crate::listener::Redials::default(),
            }),
        }
    }

    pub fn framing(&self) -> Framing {
        self.shared.config.framing
    }

    /// Accepts connections on `address` and takes the bundles they bring; answers the address
    /// bound.
    pub async fn listen(&self, address: SocketAddr) -> Result<SocketAddr, FramedError> {
        let framing = self.framing();
        let listener = TcpListener::bind(address).await.map_err(|error| FramedError::Listen {
            framing,
            address,
            error,
        })?;
        let bound = listener.local_addr().map_err(|error| FramedError::Listen { framing, address, error })?;
        tracing::info!(%framing, address = %bound, "listening");
        let layer = self.clone();
        let shutdown = self.shared.shutdown.subscribe();
        let limits = self.shared.config.limits;
        crate::listener::accept_bounded(
            listener,
            framing.name(),
            limits,
            self.shared.redials.clone(),
            shutdown,
            move |stream, peer, activity| {
                let layer = layer.clone();
                let mut shutdown = layer.shared.shutdown.subscribe();
                async move {
                    let (reader, _writer) = stream.into_split();
                    // A shutdown closes the connection, and so does shedding it for a newcomer (a
                    // bundle being read is dropped whole; nothing else of it is registered).
                    tokio::select! {
                        () = layer.read_bundles(reader, peer.to_string(), Some(&activity)) => {}
                        _ = shutdown.changed() => {}
                        () = activity.shed() => {
                            tracing::info!(%framing, %peer, "connection shed: the listener's connections were all taken and this one was the idlest");
                        }
                    }
                }
            },
        );
        Ok(bound)
    }

    /// Keeps a connection to the peer `node` at `address` (`host:port`) for ever: while it is
    /// up, `node` is a neighbour sent to over it.
    pub fn connect_forever(&self, address: String, node: Eid) {
        let layer = self.clone();
        let mut shutdown = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            let framing = layer.framing();
            let (min, max) = (layer.shared.config.reconnect_min, layer.shared.config.reconnect_max);
            let mut wait = min;
            let mut unreachable: Option<String> = None;
            let dialer = layer.shared.redials.dialer();
            loop {
                dialer.resolve(&address).await;
                let connected = tokio::select! {
                    connected = TcpStream::connect(&address) => connected,
                    _ = shutdown.changed() => return,
                };
                match connected {
                    Ok(stream) => {
                        if unreachable.take().is_some() {
                            tracing::info!(%framing, %address, "peer reachable again");
                        }
                        wait = min;
                        layer.run_connection(stream, address.clone(), node.clone()).await;
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        if unreachable.as_deref() != Some(reason.as_str()) {
                            tracing::warn!(%framing, %address, %error, "peer not reachable; trying again with backoff (logged again when the reason changes)");
                            unreachable = Some(reason);
                        }
                        wait = (wait * 2).min(max);
                    }
                }
                tokio::select! {
                    () = dialer.backoff(wait) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    /// Stops listening and reconnecting; connections close.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The [`ConvergenceLayer`] the agent sends through.
    pub fn link(&self) -> Arc<dyn ConvergenceLayer> {
        Arc::new(FramedLink { shared: Arc::clone(&self.shared) })
    }

    /// The counters and who is connected.
    pub fn stats(&self) -> FramedStats {
        let c = &self.shared.counters;
        let mut connected: Vec<Eid> = lock(&self.shared.routes).keys().cloned().collect();
        connected.sort();
        FramedStats {
            bundles_received: c.bundles_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            bundles_sent: c.bundles_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bundles_refused: c.bundles_refused.load(Ordering::Relaxed),
            bad_frames: c.bad_frames.load(Ordering::Relaxed),
            bundles_cut_off: c.bundles_cut_off.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            connected,
        }
    }

    /// A dialled connection: the peer is a neighbour while it lasts; bundles go out through
    /// its writer, and whatever the peer sends is read too.
    async fn run_connection(&self, stream: TcpStream, address: String, node: Eid) {
        let framing = self.framing();
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let (outbound, queue) = mpsc::channel(64);
        lock(&self.shared.routes).insert(node.clone(), outbound);
        if let Err(error) = self.shared.agent.neighbour_up(node.clone(), self.link()).await {
            tracing::error!(%framing, %error, neighbour = %node, "the agent did not take the neighbour");
        }
        tracing::info!(%framing, %address, neighbour = %node, "connected");
        let shutdown = self.shared.shutdown.subscribe();
        tokio::select! {
            () = self.write_bundles(writer, queue, shutdown) => {}
            () = self.read_bundles(reader, address.clone(), None) => {}
        }
        lock(&self.shared.routes).remove(&node);
        self.shared.agent.neighbour_down(&node);
        tracing::info!(%framing, %address, neighbour = %node, "connection closed");
    }

    /// Writes each bundle queued for the connection, header then bytes, streamed; an idle STCP
    /// connection gets a keepalive. Ends when writing fails or the layer shuts down.
    async fn write_bundles<W: AsyncWrite + Unpin>(
        &self,
        writer: W,
        mut queue: mpsc::Receiver<Outbound>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let framing = self.framing();
        let keepalive = self.shared.config.keepalive;
        // Small bundles are gathered and go out together, flushed when nothing more is queued
        // (one system call for many, not two for each); large ones pass straight through.
        let mut writer = tokio::io::BufWriter::with_capacity(64 * 1024, writer);
        // Bundles written into the buffer, reported sent once it is flushed to the socket.
        let mut unflushed: Vec<(oneshot::Sender<Result<(), ClaError>>, u64)> = Vec::new();
        let mut buffer = Vec::new();
        loop {
            let next = match queue.try_recv() {
                Ok(next) if unflushed.len() < MAX_UNFLUSHED => Some(next),
                Ok(next) => {
                    if !self.flush_sent(&mut writer, &mut unflushed).await {
                        return;
                    }
                    Some(next)
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    let _ = self.flush_sent(&mut writer, &mut unflushed).await;
                    None
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    if !self.flush_sent(&mut writer, &mut unflushed).await {
                        return;
                    }
                    let idle = async {
                        match keepalive {
                            Some(period) => tokio::time::sleep(period).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        next = queue.recv() => next,
                        () = idle => {
                            let Some(header) = framing.header(0) else { return };
                            if writer.write_all(&header).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        _ = shutdown.changed() => return,
                    }
                }
            };
            let Some(Outbound { bundle, done }) = next else { return };
            let length = bundle.len();
            let Some(header) = framing.header(length) else {
                let _ = done.send(Err(ClaError::Refused {
                    peer: String::new(),
                    reason: bpa::cla::Refusal::TooLarge { limit: framing.max_length() },
                }));
                continue;
            };
            // One buffer for every bundle, grown to at most WRITE_BUFFER: a bundle streamed from
            // its file goes in few system calls, and a small one costs no large allocation.
            let wanted = usize::try_from(length).unwrap_or(usize::MAX).min(WRITE_BUFFER);
            if buffer.len() < wanted {
                buffer.resize(wanted, 0);
            }
            let mut reader = bundle.into_reader();
            let written = async {
                writer.write_all(&header).await?;
                let mut left = length;
                while left > 0 {
                    let n = reader.read(&mut buffer[..wanted]).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("the bundle ended {left} bytes early"),
                        ));
                    }
                    writer.write_all(&buffer[..n]).await?;
                    left = left.saturating_sub(n as u64);
                }
                Ok(())
            }
            .await;
            match written {
                Ok(()) => unflushed.push((done, length)),
                Err(error) => {
                    let reason = error.to_string();
                    for (done, _) in unflushed.drain(..).chain([(done, length)]) {
                        let _ =
                            done.send(Err(ClaError::Failed { peer: String::new(), reason: reason.clone() }));
                    }
                    return;
                }
            }
        }
    }

    /// Flushes the buffer to the socket and reports the bundles in it sent (neither protocol
    /// says more than that); answers whether the connection still works.
    async fn flush_sent<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        unflushed: &mut Vec<(oneshot::Sender<Result<(), ClaError>>, u64)>,
    ) -> bool {
        let flushed = writer.flush().await;
        let c = &self.shared.counters;
        for (done, length) in unflushed.drain(..) {
            let _ = done.send(match &flushed {
                Ok(()) => {
                    c.bundles_sent.fetch_add(1, Ordering::Relaxed);
                    c.bytes_sent.fetch_add(length, Ordering::Relaxed);
                    Ok(())
                }
                Err(error) => Err(ClaError::Failed { peer: String::new(), reason: error.to_string() }),
            });
        }
        flushed.is_ok()
    }

    /// Reads bundles from a connection into the agent until it ends. A bundle the agent refuses
    /// is dropped (the framing goes on); a frame that cannot be taken ends the connection, and
    /// so does silence: inside a bundle for the stall timeout, and on a connection the peer
    /// opened (`accepted`) before its first frame or between bundles for the first-frame and
    /// idle timeouts.
    async fn read_bundles<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        from: String,
        accepted: Option<&crate::listener::Activity>,
    ) {
        let framing = self.framing();
        let counters = &self.shared.counters;
        let mut decoder = FrameDecoder::new(framing, self.shared.config.max_bundle_size);
        let mut buffer = vec![0u8; 256 * 1024];
        // The bundle being received; `None` inside a frame the agent refused (its bytes skipped).
        let mut incoming: Option<Incoming<A::Incoming>> = None;
        let mut inside = false;
        let mut refused_reason: Option<String> = None;
        let warnings = Arc::new(Mutex::new(bpa::log::RateLimit::new(Duration::from_secs(60))));
        let commits = Arc::new(tokio::sync::Semaphore::new(MAX_COMMITS));
        let config = &self.shared.config;
        let mut heard = false;
        loop {
            let (limit, silence) = if inside {
                (Some(config.stall_timeout), "nothing more of the bundle it was sending")
            } else if accepted.is_none() {
                (None, "")
            } else if heard {
                (Some(config.idle_timeout), "nothing (idle)")
            } else {
                (Some(config.first_frame_timeout), "no first frame")
            };
            let read = reader.read(&mut buffer);
            let read = match limit {
                Some(limit) => match tokio::time::timeout(limit, read).await {
                    Ok(read) => read,
                    Err(_) => {
                        counters.timed_out.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%framing, %from, "connection closed: the peer sent {silence} for {limit:?}");
                        break;
                    }
                },
                None => read.await,
            };
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            heard = true;
            counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
            let mut at = 0;
            loop {
                let (used, event) = match decoder.decode(&buffer[at..n]) {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%framing, %from, %error, "connection closed");
                        return;
                    }
                };
                at += used;
                match event {
                    None => break,
                    Some(FrameEvent::Start { length }) => {
                        inside = true;
                        if let Some(activity) = accepted {
                            activity.bundle_started();
                        }
                        refused_reason = None;
                        // Small bundles are collected and handed over whole (cheaper), larger
                        // ones streamed into the store.
                        incoming = match usize::try_from(length) {
                            Ok(small) if small <= STREAM_THRESHOLD => {
                                Some(Incoming::Collecting(Vec::with_capacity(small)))
                            }
                            _ => match self.shared.agent.begin_receive().await {
                                Ok(pending) => {
                                    Some(Incoming::Streaming(pending, Vec::with_capacity(STORE_WRITE_CHUNK)))
                                }
                                Err(error) => {
                                    refused_reason = Some(error.to_string());
                                    None
                                }
                            },
                        };
                    }
                    Some(FrameEvent::Data(bytes)) => match incoming.as_mut() {
                        Some(Incoming::Collecting(collected)) => collected.extend_from_slice(bytes),
                        Some(Incoming::Streaming(pending, gathered)) => {
                            gathered.extend_from_slice(bytes);
                            if gathered.len() >= STORE_WRITE_CHUNK
                                && let Err(error) = pending.write_owned(gathered).await
                            {
                                refused_reason = Some(error.to_string());
                                incoming = None;
                            }
                        }
                        None => {}
                    },
                    Some(FrameEvent::End) => {
                        inside = false;
                        if let Some(activity) = accepted {
                            activity.bundle_ended();
                        }
                        match incoming.take() {
                            Some(pending) => {
                                // Committed beside the next bundles' reading (each commit waits
                                // for the store to make it durable), at most MAX_COMMITS at once.
                                let Ok(permit) = Arc::clone(&commits).acquire_owned().await else { return };
                                let shared = Arc::clone(&self.shared);
                                let warnings = Arc::clone(&warnings);
                                let from = from.clone();
                                tokio::spawn(async move {
                                    let result = match pending {
                                        Incoming::Collecting(bytes) => {
                                            shared.agent.receive(bytes.into()).await
                                        }
                                        Incoming::Streaming(mut pending, mut gathered) => {
                                            match pending.write_owned(&mut gathered).await {
                                                Ok(()) => pending.commit().await,
                                                Err(error) => Err(error),
                                            }
                                        }
                                    };
                                    drop(permit);
                                    match result {
                                        Ok(_) => {
                                            shared.counters.bundles_received.fetch_add(1, Ordering::Relaxed);
                                        }
                                        Err(error) => refused(
                                            &shared.counters,
                                            &warnings,
                                            framing,
                                            &from,
                                            &error.to_string(),
                                        ),
                                    }
                                });
                            }
                            None => {
                                let reason = refused_reason.take().unwrap_or_default();
                                refused(counters, &warnings, framing, &from, &reason);
                            }
                        }
                    }
                }
            }
        }
        if inside {
            // Dropping the pending bundle removes what was written of it.
            counters.bundles_cut_off.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%framing, %from, "the connection ended inside a bundle: dropped, not delivered");
        }
    }
}

/// Bundles written into a connection's buffer before it is flushed and they are reported sent.
const MAX_UNFLUSHED: usize = 64;

/// A bundle being read: collected in memory (small), or streamed into the store.
enum Incoming<P> {
    Collecting(Vec<u8>),
    /// The store's insert, and bytes gathered for its next write.
    Streaming(P, Vec<u8>),
}

/// Bytes gathered before each write into the store, and read from a stored bundle at a time.
const STORE_WRITE_CHUNK: usize = 1 << 20;
const WRITE_BUFFER: usize = 1 << 20;

/// Bundles up to this size are collected and handed over whole; larger ones are streamed.
const STREAM_THRESHOLD: usize = 64 * 1024;

/// Bundles of one connection being made durable at once; past it, reading waits.
const MAX_COMMITS: usize = 256;

/// Counts and logs (at most once a minute per connection) a bundle the agent refused.
fn refused(
    counters: &FramedCounters,
    warnings: &Mutex<bpa::log::RateLimit>,
    framing: Framing,
    from: &str,
    reason: &str,
) {
    counters.bundles_refused.fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = lock(warnings).allow(crate::clock::now()) {
        tracing::warn!(%framing, %from, %reason, earlier_not_logged = suppressed, "a received bundle was refused and dropped");
    }
}

/// The agent's way into the connections.
#[derive(Debug)]
struct FramedLink<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> ConvergenceLayer for FramedLink<A> {
    fn name(&self) -> &str {
        self.shared.config.framing.name()
    }

    fn max_bundle_size(&self) -> Option<usize> {
        usize::try_from(self.shared.config.framing.max_length()).ok()
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let node = peer.node_id();
        let route = lock(&self.shared.routes).get(&node).cloned();
        Box::pin(async move {
            let peer = node.to_string();
            let Some(route) = route else { return Err(ClaError::LinkDown { peer }) };
            let (done, answer) = oneshot::channel();
            if route.send(Outbound { bundle, done }).await.is_err() {
                return Err(ClaError::LinkDown { peer });
            }
            match answer.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(ClaError::Failed { reason, .. })) => Err(ClaError::Failed { peer, reason }),
                Ok(Err(ClaError::Refused { reason, .. })) => Err(ClaError::Refused { peer, reason }),
                Ok(Err(other)) => Err(other),
                Err(_) => Err(ClaError::LinkDown { peer }),
            }
        })
    }
}
