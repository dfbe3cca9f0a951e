//! The tokio driver of TCPCLv4 sessions (RFC 9174): it owns the sockets and the timers, feeds the
//! sans-IO [`Session`] and carries out what it asks, and connects sessions to the agent.
//!
//! One task per session reads, keeps the session and talks to the agent; a writer task per
//! session writes what the session queues and the segments' data, read from the store as it
//! goes. So a session reads while it writes (two nodes sending large bundles to each other never
//! both block writing), and neither direction holds a whole bundle in memory:
//! - incoming transfers up to [`STREAM_THRESHOLD`] are collected and handed to
//!   [`Agent::receive`]; larger ones stream into the store through [`Agent::begin_receive`] as
//!   their segments arrive. The final XFER_ACK goes out only once the bundle is durable
//!   (design §3.3); several bundles are committed at once, so the store's group commit works
//!   for a session's pipeline of small bundles.
//! - outgoing bundles come from the agent as an [`OutgoingBundle`] (head in memory, payload a
//!   region of the bundle's file) and are read segment by segment as the socket takes them.
//!   Transfers are pipelined: the next starts as soon as the previous one's last segment is
//!   queued, acknowledgements come back in any order.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpa::agent::node::{Agent, AgentError, PendingReceive, Reception};
use bpa::bundle::Eid;
use bpa::cla::{ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle, Refusal};
use bpa::store::{Store, StoreError};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::session::{Event, Role, SendError, Session, SessionConfig, TlsPolicy};
use super::tls::{TlsSetup, certified_node_ids};
use super::wire::{CONTACT_HEADER_LEN, RefuseReason, SessTermReason};

/// Incoming bundles up to this size are collected in memory and stored whole; larger ones
/// stream into the store (the same threshold as the store's own inline/file split).
pub const STREAM_THRESHOLD: usize = 64 * 1024;
/// Incoming bytes are written to the store in pieces of about this size.
const STORE_WRITE_CHUNK: usize = 1 << 20;
/// Received bundles being committed at once per session; reading pauses beyond it. (Each holds
/// at most [`STREAM_THRESHOLD`] bytes in memory.)
const MAX_COMMITS_IN_PROGRESS: usize = 256;
/// Outgoing segment bytes handed to the writer and not yet written.
const MAX_QUEUED_SEGMENT_BYTES: u64 = 2 << 20;
/// Control messages (acknowledgements, refusals, MSG_REJECTs the peer provokes) handed to the
/// writer and not yet written; reading pauses beyond it, so a peer that never reads cannot
/// make this node queue answers without bound.
const MAX_QUEUED_CONTROL_BYTES: u64 = 256 << 10;
const READ_BUFFER: usize = 64 * 1024;
const WRITE_BUFFER: usize = 256 * 1024;

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
struct SessionStatus {
    address: SocketAddr,
    active: bool,
    node_id: Mutex<Option<String>>,
    node_id_authenticated: AtomicBool,
    tls: AtomicBool,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    transfers_in_flight: AtomicU64,
    bundles_received: AtomicU64,
    bundles_sent: AtomicU64,
}

impl SessionStatus {
    fn summary(&self) -> SessionSummary {
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

/// The runtime's time, which the session's timers and the driver's sleeps share: a paused
/// tokio clock (tests) drives both.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A bundle the agent handed over, and who waits for the peer's answer.
struct Outbound {
    bundle: OutgoingBundle,
    done: oneshot::Sender<Result<(), ClaError>>,
}

/// An established session the agent can send through.
#[derive(Debug, Clone)]
struct Route {
    session: u64,
    outbound: mpsc::UnboundedSender<Outbound>,
}

#[derive(Debug)]
struct Shared<S: Store> {
    agent: Agent<S>,
    config: TcpclConfig,
    /// Established sessions by the peer's node ID, oldest first; the newest is used. (A peer
    /// may open its own session while ours is up: dtn7-rs does, to send.)
    routes: Mutex<HashMap<Eid, Vec<Route>>>,
    sessions: Mutex<HashMap<u64, Arc<SessionStatus>>>,
    next_session: AtomicU64,
    shutdown: watch::Sender<bool>,
}

/// The TCP convergence layer of one node: its listeners, its configured peers and every
/// session, and the [`ConvergenceLayer`] through which the agent sends. Cheap to clone.
#[derive(Debug)]
pub struct Tcpcl<S: Store> {
    shared: Arc<Shared<S>>,
}

impl<S: Store> Clone for Tcpcl<S> {
    fn clone(&self) -> Self {
        Tcpcl { shared: Arc::clone(&self.shared) }
    }
}

impl<S: Store> Tcpcl<S> {
    /// A layer for `agent`. The session's node ID is set to the agent's.
    pub fn new(agent: Agent<S>, mut config: TcpclConfig) -> Tcpcl<S> {
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
        let mut shutdown = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let layer = layer.clone();
                            tokio::spawn(async move { layer.run_session(stream, peer, Role::Passive).await });
                        }
                        Err(error) => {
                            // Out of file descriptors and the like: wait rather than spin.
                            tracing::warn!(%error, "accepting a TCPCL connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            }
        });
        Ok(bound)
    }

    /// Keeps a session to the peer at `address` (`host:port`) for ever: connects, and after
    /// each failure or lost session connects again, waiting [`TcpclConfig::reconnect_min`]
    /// doubled after each failed attempt up to [`TcpclConfig::reconnect_max`].
    pub fn connect_forever(&self, address: String) {
        let layer = self.clone();
        let mut shutdown = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            let (min, max) = (layer.shared.config.reconnect_min, layer.shared.config.reconnect_max);
            let mut wait = min;
            loop {
                if *shutdown.borrow() {
                    return;
                }
                // Only the connection attempt is cut short by a shutdown: a session ends itself,
                // with SESS_TERM.
                let connected = tokio::select! {
                    connected = TcpStream::connect(&address) => connected,
                    _ = shutdown.changed() => return,
                };
                let established = match connected {
                    Ok(stream) => {
                        let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                        layer.run_session(stream, peer, Role::Active).await
                    }
                    Err(error) => {
                        tracing::info!(%address, %error, "TCPCL peer not reachable");
                        false
                    }
                };
                wait = if established { min } else { (wait * 2).min(max) };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    /// Opens one session to `address` and runs it until it ends; answers whether it was
    /// established.
    pub async fn connect_once(&self, address: SocketAddr) -> std::io::Result<bool> {
        let stream = TcpStream::connect(address).await?;
        Ok(self.run_session(stream, address, Role::Active).await)
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
    async fn run_session(&self, stream: TcpStream, address: SocketAddr, role: Role) -> bool {
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
        let established = task.run(stream).await;
        lock(&self.shared.sessions).remove(&number);
        established
    }
}

/// The agent's way into the sessions.
#[derive(Debug)]
struct TcpclLink<S: Store> {
    shared: Arc<Shared<S>>,
}

impl<S: Store> ConvergenceLayer for TcpclLink<S> {
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

/// What the writer task is asked to write.
enum WriteJob {
    /// Session bytes (messages, segment heads are part of [`WriteJob::Segment`]).
    Control(Bytes),
    /// A new outgoing transfer's bytes, to be read as its segments go out.
    Start { transfer_id: u64, reader: Pin<Box<dyn AsyncRead + Send>> },
    /// One segment: its head, then `data_length` bytes of the transfer.
    Segment { transfer_id: u64, head: Bytes, data_length: u64, end: bool },
    /// The peer refused the transfer: its bytes are no longer needed.
    Abandon { transfer_id: u64 },
}

/// What the writer reports back.
enum Written {
    Segment { data_length: u64 },
    Control { length: u64 },
    Failed(String),
}

/// An incoming transfer as it is received.
enum Receiving<S: Store> {
    /// Small so far: collected in memory.
    Collecting(BytesMut),
    /// Large: streaming into the store, `pending` bytes not yet written; `checked` once the
    /// header was looked up among the bundles held.
    Streaming { insert: PendingReceive<S>, pending: Vec<u8>, checked: bool },
    /// Refused: the rest is dropped.
    Dropped,
}

struct IncomingTransfer<S: Store> {
    transfer_id: u64,
    receiving: Receiving<S>,
}

/// A session's connection after a TLS handshake.
enum Connection {
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A finished commit of a received bundle.
struct Committed {
    transfer_id: u64,
    result: Result<Reception, AgentError>,
}

struct SessionTask<S: Store> {
    layer: Tcpcl<S>,
    number: u64,
    session: Session,
    status: Arc<SessionStatus>,
    peer: Option<Eid>,
    established: bool,
    /// Events from the contact header exchange, handled once the session runs.
    early_events: VecDeque<Event>,
    jobs: Option<mpsc::UnboundedSender<WriteJob>>,
    outbound_tx: mpsc::UnboundedSender<Outbound>,
    outbound_rx: mpsc::UnboundedReceiver<Outbound>,
    /// Handed over by the agent, not started.
    queued: VecDeque<Outbound>,
    /// The transfer whose segments are being queued.
    sending: Option<u64>,
    /// Started and not yet acknowledged.
    unacknowledged: HashMap<u64, oneshot::Sender<Result<(), ClaError>>>,
    queued_segment_bytes: u64,
    /// Control bytes handed to the writer and not yet written.
    queued_control_bytes: u64,
    /// When the writer last made progress (or was last idle), and the byte count then.
    write_progress: (Instant, u64),
    /// When the incoming transfer last received data.
    incoming_progress: Instant,
    /// The peer's node ID as logs show it (kept when the session stops routing).
    peer_label: Option<String>,
    /// Why the session closed, for its one closing log line.
    close_reason: Option<String>,
    incoming: Option<IncomingTransfer<S>>,
    commits_tx: mpsc::UnboundedSender<Committed>,
    commits_rx: mpsc::UnboundedReceiver<Committed>,
    commits_in_progress: usize,
    /// Warnings the peer can provoke, rate-limited.
    warnings: bpa::log::RateLimit,
}

impl<S: Store> SessionTask<S> {
    fn new(layer: Tcpcl<S>, number: u64, session: Session, status: Arc<SessionStatus>) -> SessionTask<S> {
        let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
        let (commits_tx, commits_rx) = mpsc::unbounded_channel();
        SessionTask {
            layer,
            number,
            session,
            status,
            peer: None,
            established: false,
            early_events: VecDeque::new(),
            jobs: None,
            outbound_tx,
            outbound_rx,
            queued: VecDeque::new(),
            sending: None,
            unacknowledged: HashMap::new(),
            queued_segment_bytes: 0,
            queued_control_bytes: 0,
            write_progress: (now(), 0),
            incoming_progress: now(),
            peer_label: None,
            close_reason: None,
            incoming: None,
            commits_tx,
            commits_rx,
            commits_in_progress: 0,
            warnings: bpa::log::RateLimit::new(Duration::from_secs(10)),
        }
    }

    fn agent(&self) -> &Agent<S> {
        &self.layer.shared.agent
    }

    /// Runs the session; answers whether it was established. Its end is logged once.
    async fn run(&mut self, stream: TcpStream) -> bool {
        self.run_connection(stream).await;
        let status = &self.status;
        tracing::info!(
            peer = self.peer_label.as_deref().unwrap_or("(none)"),
            address = %status.address,
            reason = self.close_reason.as_deref().unwrap_or("ended"),
            established = self.established,
            bytes_received = status.bytes_received.load(Ordering::Relaxed),
            bytes_sent = status.bytes_sent.load(Ordering::Relaxed),
            bundles_received = status.bundles_received.load(Ordering::Relaxed),
            bundles_sent = status.bundles_sent.load(Ordering::Relaxed),
            "TCPCL session closed"
        );
        self.established
    }

    /// Records why the session closes (the first reason given wins).
    fn closing(&mut self, reason: impl std::fmt::Display) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason.to_string());
        }
    }

    async fn run_connection(&mut self, mut stream: TcpStream) {
        // The contact headers (§4.2) are exchanged on the bare socket, reading exactly the
        // peer's header so that a TLS handshake that follows is not read as TCPCL.
        if let Err(error) = self.exchange_contact_headers(&mut stream).await {
            self.closing(format_args!("contact failed: {error}"));
            self.fail_all("the connection closed");
            return;
        }
        // §4.4: TLS begins right after the contact headers when both offered it.
        while let Some(event) = self.session.poll_event() {
            if event == Event::StartTls {
                self.start_tls(stream).await;
                return;
            }
            self.early_events.push_back(event);
        }
        let (reader, writer) = tokio::io::split(stream);
        self.run_established(reader, writer).await;
    }

    /// Runs the TLS handshake (the active side as client) and the session over it.
    async fn start_tls(&mut self, stream: TcpStream) {
        let address = self.status.address;
        let Some(tls) = self.layer.shared.config.tls.clone() else {
            // Not reached: without a TLS setup the session never offers TLS.
            self.fail_all("TLS is not configured");
            return;
        };
        let timeout = self.layer.shared.config.session.negotiation_timeout;
        let role = self.session.role();
        let handshake = async {
            match role {
                Role::Active => {
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.client));
                    let stream = connector.connect(TlsSetup::server_name(address), stream).await?;
                    let ids = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(certified_node_ids);
                    Ok::<_, std::io::Error>((Connection::Client(Box::new(stream)), ids.unwrap_or_default()))
                }
                Role::Passive => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server));
                    let stream = acceptor.accept(stream).await?;
                    let ids = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(certified_node_ids);
                    Ok((Connection::Server(Box::new(stream)), ids.unwrap_or_default()))
                }
            }
        };
        let (connection, node_ids) = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => {
                self.closing(format_args!("the TLS handshake failed: {error}"));
                self.fail_all("the TLS handshake failed");
                return;
            }
            Err(_) => {
                self.closing(format_args!("the TLS handshake timed out after {timeout:?}"));
                self.fail_all("the TLS handshake timed out");
                return;
            }
        };
        tracing::debug!(%address, ?node_ids, "TLS established");
        self.session.tls_established(node_ids, now());
        match connection {
            Connection::Client(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                self.run_established(reader, writer).await;
            }
            Connection::Server(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                self.run_established(reader, writer).await;
            }
        }
    }

    async fn exchange_contact_headers(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        self.write_plain(stream).await?;
        let deadline = self.session.poll_timeout();
        let mut header = [0u8; CONTACT_HEADER_LEN];
        let read = stream.read_exact(&mut header);
        match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), read).await {
                Ok(result) => result.map(drop)?,
                Err(_) => {
                    self.session.handle_timeout(now());
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no contact header from the peer in time",
                    ));
                }
            },
            None => read.await.map(drop)?,
        }
        self.status.bytes_received.fetch_add(header.len() as u64, Ordering::Relaxed);
        self.session.handle_input(&header, now());
        // The passive side answers with its own header now, in the clear, before any TLS.
        self.write_plain(stream).await
    }

    /// Writes what the session queued straight to the bare socket (before the writer task).
    async fn write_plain(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        while let Some(bytes) = self.session.poll_transmit() {
            stream.write_all(&bytes).await?;
            self.status.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.session.on_transmitted(now());
        }
        Ok(())
    }

    async fn run_established<R, W>(&mut self, mut reader: R, writer: W)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (jobs, job_queue) = mpsc::unbounded_channel();
        let (written_tx, mut written) = mpsc::unbounded_channel();
        let status = Arc::clone(&self.status);
        let writer_task = tokio::spawn(write_loop(writer, job_queue, written_tx, status));
        self.jobs = Some(jobs);
        let mut shutdown = self.layer.shared.shutdown.subscribe();
        let mut shutting_down = *shutdown.borrow();
        let mut buffer = vec![0u8; READ_BUFFER];
        let (transfer_idle, send_stall) =
            (self.layer.shared.config.transfer_idle_timeout, self.layer.shared.config.send_stall_timeout);
        // The watchdogs (an incoming transfer that stalls, a peer that reads nothing) look on
        // one timer that ticks a few times per timeout: no timer is set up per message.
        let tick =
            (transfer_idle.min(send_stall) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut watchdog = tokio::time::interval(tick);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if shutting_down && !self.session.is_ending() && !self.session.is_closed() {
                self.session.terminate(SessTermReason::UNKNOWN);
            }
            self.step().await;
            if self.session.is_closed() {
                break;
            }
            let timeout = self.session.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let may_read = self.commits_in_progress < MAX_COMMITS_IN_PROGRESS
                && self.queued_control_bytes < MAX_QUEUED_CONTROL_BYTES;
            tokio::select! {
                read = reader.read(&mut buffer), if may_read => match read {
                    Ok(0) => {
                        self.closing("the peer closed the connection");
                        break;
                    }
                    Err(error) => {
                        self.closing(format_args!("reading failed: {error}"));
                        break;
                    }
                    Ok(n) => {
                        self.status.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                        self.session.handle_input(&buffer[..n], now());
                    }
                },
                _ = sleep => self.session.handle_timeout(now()),
                _ = watchdog.tick() => {
                    if let Some(reason) = self.watchdog(transfer_idle, send_stall) {
                        self.closing(reason);
                        break;
                    }
                }
                Some(outbound) = self.outbound_rx.recv() => self.queued.push_back(outbound),
                Some(report) = written.recv() => {
                    self.write_progress = (now(), self.status.bytes_sent.load(Ordering::Relaxed));
                    match report {
                        Written::Segment { data_length } => {
                            self.queued_segment_bytes = self.queued_segment_bytes.saturating_sub(data_length.max(1));
                            self.session.on_transmitted(now());
                        }
                        Written::Control { length } => {
                            self.queued_control_bytes = self.queued_control_bytes.saturating_sub(length);
                            self.session.on_transmitted(now());
                        }
                        Written::Failed(error) => {
                            self.closing(format_args!("sending failed: {error}"));
                            break;
                        }
                    }
                }
                Some(committed) = self.commits_rx.recv() => self.committed(committed),
                _ = shutdown.changed() => shutting_down = true,
            }
        }
        // Whatever the session still has to say (a SESS_TERM, a last XFER_ACK) goes out first.
        self.step_without_agent();
        self.unroute();
        self.fail_all("the session ended");
        self.jobs = None;
        // A writer blocked on a peer that reads nothing is not waited for long.
        let abort = writer_task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), writer_task).await.is_err() {
            abort.abort();
        }
    }

    /// A watchdog deadline passed: answers why the session must end, if it must. An incoming
    /// transfer without data for `transfer_idle` is abandoned (its partial bundle removed); a
    /// writer whose bytes the peer has not taken for `send_stall` means a peer that does not
    /// read.
    fn watchdog(&mut self, transfer_idle: Duration, send_stall: Duration) -> Option<String> {
        let now = now();
        if self.incoming.is_some() && now >= self.incoming_progress + transfer_idle {
            let transfer_id = self.incoming.as_ref().map_or(0, |i| i.transfer_id);
            // Dropping the transfer removes what was written of it.
            self.incoming = None;
            self.session.refuse(transfer_id, RefuseReason::UNKNOWN);
            self.session.terminate(SessTermReason::IDLE_TIMEOUT);
            return Some(format!(
                "incoming transfer {transfer_id} received nothing for {transfer_idle:?}: abandoned, its partial data removed"
            ));
        }
        let sent = self.status.bytes_sent.load(Ordering::Relaxed);
        if sent != self.write_progress.1 {
            self.write_progress = (now, sent);
            return None;
        }
        let busy = self.queued_control_bytes > 0 || self.queued_segment_bytes > 0;
        if busy && now >= self.write_progress.0 + send_stall {
            return Some(format!(
                "the peer read nothing for {send_stall:?} ({} bytes waiting to be sent)",
                self.queued_control_bytes + self.queued_segment_bytes
            ));
        }
        None
    }

    /// Carries out what the session asks until it asks nothing more.
    async fn step(&mut self) {
        loop {
            self.flush_control();
            let Some(event) = self.early_events.pop_front().or_else(|| self.session.poll_event()) else {
                break;
            };
            self.handle_event(event).await;
        }
        self.start_transfers();
        self.queue_segments();
        self.flush_control();
        self.status
            .transfers_in_flight
            .store((self.unacknowledged.len() + self.queued.len()) as u64, Ordering::Relaxed);
    }

    /// At the end: only the session's last bytes, no more agent work.
    fn step_without_agent(&mut self) {
        self.flush_control();
        while let Some(event) = self.session.poll_event() {
            if let Event::Closed { error: Some(error) } = event {
                self.closing(error);
            }
        }
        self.flush_control();
    }

    fn flush_control(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            self.write(WriteJob::Control(bytes));
        }
    }

    fn write(&mut self, job: WriteJob) {
        if self.queued_control_bytes == 0 && self.queued_segment_bytes == 0 {
            // The writer was idle: its stall watch starts now.
            self.write_progress = (now(), self.status.bytes_sent.load(Ordering::Relaxed));
        }
        if let WriteJob::Control(bytes) = &job {
            self.queued_control_bytes += bytes.len() as u64;
        }
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Starts the next queued bundle once the previous one's segments are all queued.
    fn start_transfers(&mut self) {
        while self.sending.is_none() && self.session.is_established() && !self.session.is_ending() {
            let Some(outbound) = self.queued.pop_front() else { return };
            match self.session.start_transfer(outbound.bundle.len()) {
                Ok(transfer_id) => {
                    let reader = outbound.bundle.into_reader();
                    self.write(WriteJob::Start { transfer_id, reader });
                    self.unacknowledged.insert(transfer_id, outbound.done);
                    self.sending = Some(transfer_id);
                }
                Err(error) => {
                    let peer = self.peer_name();
                    let reason = match error {
                        SendError::OverTransferMtu { mtu, .. } => Refusal::TooLarge { limit: mtu },
                        other => Refusal::Other(other.to_string()),
                    };
                    let _ = outbound.done.send(Err(ClaError::Refused { peer, reason }));
                }
            }
        }
    }

    fn queue_segments(&mut self) {
        while let Some(transfer_id) = self.sending {
            if self.queued_segment_bytes >= MAX_QUEUED_SEGMENT_BYTES {
                return;
            }
            match self.session.segment(transfer_id, u64::MAX) {
                Ok(segment) => {
                    self.queued_segment_bytes += segment.data_length.max(1);
                    if segment.end {
                        self.sending = None;
                    }
                    self.write(WriteJob::Segment {
                        transfer_id,
                        head: segment.head,
                        data_length: segment.data_length,
                        end: segment.end,
                    });
                }
                Err(error) => {
                    tracing::debug!(%error, transfer_id, "no more segments of this transfer");
                    self.sending = None;
                    self.write(WriteJob::Abandon { transfer_id });
                }
            }
        }
    }

    async fn handle_event(&mut self, event: Event) {
        let address = self.status.address;
        match event {
            Event::StartTls => {
                // Only right after the contact headers, where `run` handles it.
                tracing::warn!(%address, "TLS requested mid-session; closing");
                self.session.terminate(SessTermReason::CONTACT_FAILURE);
            }
            Event::Established(negotiated) => {
                self.established = true;
                self.status.tls.store(negotiated.tls, Ordering::Relaxed);
                self.status.node_id_authenticated.store(negotiated.node_id_authenticated, Ordering::Relaxed);
                *lock(&self.status.node_id) = Some(negotiated.peer_node_id.clone());
                let label = super::session::shown(&negotiated.peer_node_id);
                tracing::info!(
                    %address, peer = %label, tls = negotiated.tls,
                    keepalive = ?negotiated.keepalive, "TCPCL session established"
                );
                self.peer_label = Some(label);
                match negotiated.peer_node_id.parse::<Eid>() {
                    Ok(eid) if !eid.is_null() => {
                        let node = eid.node_id();
                        self.peer = Some(node.clone());
                        let route = Route { session: self.number, outbound: self.outbound_tx.clone() };
                        lock(&self.layer.shared.routes).entry(node.clone()).or_default().push(route);
                        let link = self.layer.link();
                        if let Err(error) = self.agent().neighbour_up(node, link).await {
                            tracing::error!(%error, "dispatching bundles for a new neighbour failed");
                        }
                    }
                    _ => tracing::info!(
                        %address, "the peer gave no node ID: bundles are received from it but none are sent"
                    ),
                }
            }
            Event::IncomingStarted { transfer_id, total_length } => {
                self.incoming_progress = now();
                let large = total_length.is_some_and(|l| l > STREAM_THRESHOLD as u64);
                let receiving = if large {
                    match self.agent().begin_receive().await {
                        Ok(insert) => Receiving::Streaming { insert, pending: Vec::new(), checked: false },
                        Err(error) => {
                            self.refuse(transfer_id, &error);
                            Receiving::Dropped
                        }
                    }
                } else {
                    Receiving::Collecting(BytesMut::new())
                };
                self.incoming = Some(IncomingTransfer { transfer_id, receiving });
            }
            Event::IncomingData { transfer_id, data } => {
                self.incoming_progress = now();
                let Some(mut incoming) = self.incoming.take().filter(|i| i.transfer_id == transfer_id) else {
                    return;
                };
                incoming.receiving = self.take_data(transfer_id, incoming.receiving, &data).await;
                self.incoming = Some(incoming);
            }
            Event::IncomingSegmentEnd { transfer_id, end } => {
                let Some(incoming) = self.incoming.take().filter(|i| i.transfer_id == transfer_id) else {
                    return;
                };
                let receiving = self.flush_to_store(transfer_id, incoming.receiving).await;
                if !end {
                    if !matches!(receiving, Receiving::Dropped) {
                        self.session.acknowledge_segment(transfer_id);
                    }
                    self.incoming = Some(IncomingTransfer { transfer_id, receiving });
                    return;
                }
                self.commit(transfer_id, receiving);
            }
            Event::IncomingAborted { transfer_id, reason } => {
                if self.incoming.as_ref().is_some_and(|i| i.transfer_id == transfer_id) {
                    tracing::debug!(peer = self.peer_label(), transfer_id, %reason, "incoming transfer abandoned");
                    self.incoming = None;
                }
            }
            Event::TransferAcked { transfer_id } => {
                if let Some(done) = self.unacknowledged.remove(&transfer_id) {
                    self.status.bundles_sent.fetch_add(1, Ordering::Relaxed);
                    let _ = done.send(Ok(()));
                }
            }
            Event::TransferRefused { transfer_id, reason } => {
                if self.sending == Some(transfer_id) {
                    self.sending = None;
                    self.write(WriteJob::Abandon { transfer_id });
                }
                if let Some(done) = self.unacknowledged.remove(&transfer_id) {
                    // §5.2.4: "completed" means the peer already has the bundle.
                    let answer = if reason == RefuseReason::COMPLETED {
                        Ok(())
                    } else {
                        Err(ClaError::Refused { peer: self.peer_name(), reason: refusal(reason) })
                    };
                    let _ = done.send(answer);
                }
            }
            Event::Rejected { reason, rejected_type } => {
                if let Some(suppressed) = self.warnings.allow(now()) {
                    tracing::warn!(
                        peer = self.peer_label(), %reason, rejected_type, suppressed,
                        "the peer rejected a message"
                    );
                }
            }
            Event::Ending { reason, by_peer } => {
                tracing::debug!(peer = self.peer_label(), %reason, by_peer, "TCPCL session ending");
                self.closing(format_args!(
                    "SESS_TERM {} ({reason})",
                    if by_peer { "from the peer" } else { "sent" }
                ));
                // No new transfers: the agent routes elsewhere or waits for the next session.
                self.unroute();
                let peer = self.peer_name();
                for outbound in self.queued.drain(..) {
                    let _ = outbound.done.send(Err(ClaError::LinkDown { peer: peer.clone() }));
                }
            }
            Event::Closed { error } => {
                if let Some(error) = error {
                    self.closing(error);
                }
            }
        }
    }

    async fn take_data(&mut self, transfer_id: u64, receiving: Receiving<S>, data: &[u8]) -> Receiving<S> {
        match receiving {
            Receiving::Collecting(mut bytes) => {
                bytes.extend_from_slice(data);
                if bytes.len() <= STREAM_THRESHOLD {
                    return Receiving::Collecting(bytes);
                }
                // Larger than announced (or not announced): stream from here on.
                match self.agent().begin_receive().await {
                    Ok(insert) => self.write_to_store(transfer_id, insert, bytes.into(), false).await,
                    Err(error) => {
                        self.refuse(transfer_id, &error);
                        Receiving::Dropped
                    }
                }
            }
            Receiving::Streaming { insert, mut pending, checked } => {
                pending.extend_from_slice(data);
                if pending.len() < STORE_WRITE_CHUNK {
                    return Receiving::Streaming { insert, pending, checked };
                }
                self.write_to_store(transfer_id, insert, pending, checked).await
            }
            Receiving::Dropped => Receiving::Dropped,
        }
    }

    async fn flush_to_store(&mut self, transfer_id: u64, receiving: Receiving<S>) -> Receiving<S> {
        match receiving {
            Receiving::Streaming { insert, pending, checked } if !pending.is_empty() => {
                self.write_to_store(transfer_id, insert, pending, checked).await
            }
            other => other,
        }
    }

    /// Writes `pending` into the store. Once the header is in, a bundle this node holds
    /// already is refused with "completed" (§5.2.4): the sender counts it delivered and the
    /// rest is not sent (a sender that lost our final XFER_ACK with its session sends again).
    async fn write_to_store(
        &mut self,
        transfer_id: u64,
        mut insert: PendingReceive<S>,
        mut pending: Vec<u8>,
        mut checked: bool,
    ) -> Receiving<S> {
        // The store takes the buffer and gives back an empty one: no copy of the data.
        if let Err(error) = insert.write_owned(&mut pending).await {
            self.refuse(transfer_id, &error);
            return Receiving::Dropped;
        }
        if !checked {
            match insert.already_held().await {
                Ok(None) => {}
                Ok(Some(true)) => {
                    tracing::debug!(
                        peer = self.peer_label(),
                        transfer_id,
                        "incoming bundle already held: refused as completed"
                    );
                    self.session.refuse(transfer_id, RefuseReason::COMPLETED);
                    return Receiving::Dropped;
                }
                // Not held, or the look-up failed (the commit finds a duplicate anyway).
                Ok(Some(false)) | Err(_) => checked = true,
            }
        }
        Receiving::Streaming { insert, pending, checked }
    }

    /// The last segment is in: the bundle is committed in its own task (several at once, so
    /// the store commits them together) and acknowledged when durable.
    fn commit(&mut self, transfer_id: u64, receiving: Receiving<S>) {
        let agent = self.agent().clone();
        let commits = self.commits_tx.clone();
        match receiving {
            Receiving::Collecting(bytes) => {
                let bytes = bytes.freeze();
                tokio::spawn(async move {
                    let result = agent.receive(bytes).await;
                    let _ = commits.send(Committed { transfer_id, result });
                });
            }
            Receiving::Streaming { insert, .. } => {
                tokio::spawn(async move {
                    let result = insert.commit().await;
                    let _ = commits.send(Committed { transfer_id, result });
                });
            }
            Receiving::Dropped => return,
        }
        self.commits_in_progress += 1;
    }

    fn committed(&mut self, committed: Committed) {
        self.commits_in_progress -= 1;
        match committed.result {
            Ok(_) => {
                self.status.bundles_received.fetch_add(1, Ordering::Relaxed);
                self.session.acknowledge_segment(committed.transfer_id);
            }
            Err(error) => self.refuse(committed.transfer_id, &error),
        }
    }

    fn refuse(&mut self, transfer_id: u64, error: &AgentError) {
        let reason = refuse_reason(error);
        if let Some(suppressed) = self.warnings.allow(now()) {
            tracing::info!(
                peer = self.peer_label(), transfer_id, %error, %reason, suppressed, "incoming bundle refused"
            );
        }
        self.session.refuse(transfer_id, reason);
    }

    /// The peer as the agent knows it: its node ID (once known), else its address.
    fn peer_name(&self) -> String {
        match (&self.peer, &self.peer_label) {
            (Some(peer), _) => peer.to_string(),
            (None, Some(label)) => label.clone(),
            (None, None) => self.status.address.to_string(),
        }
    }

    /// The peer for logs: its node ID (shortened), else its address.
    fn peer_label(&self) -> String {
        self.peer_label.clone().unwrap_or_else(|| self.status.address.to_string())
    }

    /// The agent no longer sends through this session; the peer is no longer a neighbour once
    /// its last session is gone.
    fn unroute(&mut self) {
        let Some(peer) = self.peer.take() else { return };
        let mut routes = lock(&self.layer.shared.routes);
        let Some(sessions) = routes.get_mut(&peer) else { return };
        sessions.retain(|r| r.session != self.number);
        if sessions.is_empty() {
            routes.remove(&peer);
            drop(routes);
            self.agent().neighbour_down(&peer);
        }
    }

    /// Every bundle handed over and not acknowledged has failed: the agent keeps it and sends
    /// it again later (design §3.3: nothing is lost with a session).
    fn fail_all(&mut self, why: &str) {
        let peer = self.peer_name();
        let pending = self.unacknowledged.drain().map(|(_, done)| done);
        let queued = self.queued.drain(..).map(|o| o.done);
        for done in pending.chain(queued).collect::<Vec<_>>() {
            let _ = done.send(Err(ClaError::Failed { peer: peer.clone(), reason: why.to_string() }));
        }
        self.outbound_rx.close();
        while let Ok(outbound) = self.outbound_rx.try_recv() {
            let _ = outbound.done.send(Err(ClaError::LinkDown { peer: peer.clone() }));
        }
    }
}

/// What a peer's XFER_REFUSE means to the agent (§5.2.4; "completed" is a success and never
/// comes here).
fn refusal(reason: RefuseReason) -> Refusal {
    match reason {
        RefuseReason::NO_RESOURCES => Refusal::NoResources,
        RefuseReason::RETRANSMIT => Refusal::Retransmit,
        RefuseReason::NOT_ACCEPTABLE => Refusal::NotAcceptable,
        other => Refusal::Other(other.to_string()),
    }
}

/// The XFER_REFUSE reason for a bundle the agent did not take (§5.2.4).
fn refuse_reason(error: &AgentError) -> RefuseReason {
    match error {
        AgentError::Store(StoreError::DepletedStorage { .. }) => RefuseReason::NO_RESOURCES,
        AgentError::Invalid(_) | AgentError::Store(StoreError::InvalidBundle(_)) => {
            RefuseReason::NOT_ACCEPTABLE
        }
        AgentError::Store(_) => RefuseReason::NO_RESOURCES,
        _ => RefuseReason::NOT_ACCEPTABLE,
    }
}

/// Writes what the session task queues, in order, reading each segment's data from its
/// transfer's bytes; flushes whenever nothing more is queued.
async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut jobs: mpsc::UnboundedReceiver<WriteJob>,
    written: mpsc::UnboundedSender<Written>,
    status: Arc<SessionStatus>,
) {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, writer);
    let mut sources: HashMap<u64, Pin<Box<dyn AsyncRead + Send>>> = HashMap::new();
    let mut buffer = vec![0u8; WRITE_BUFFER];
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Empty) => {
                if let Err(error) = writer.flush().await {
                    let _ = written.send(Written::Failed(error.to_string()));
                    return;
                }
                match jobs.recv().await {
                    Some(job) => job,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let result = match job {
            WriteJob::Control(bytes) => {
                let result = writer.write_all(&bytes).await;
                status.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                result.map(|()| Written::Control { length: bytes.len() as u64 }).map_err(|e| e.to_string())
            }
            WriteJob::Start { transfer_id, reader } => {
                sources.insert(transfer_id, reader);
                continue;
            }
            WriteJob::Abandon { transfer_id } => {
                sources.remove(&transfer_id);
                continue;
            }
            WriteJob::Segment { transfer_id, head, data_length, end } => {
                let result = match sources.get_mut(&transfer_id) {
                    Some(source) => {
                        write_segment(&mut writer, &head, source, data_length, &mut buffer, &status).await
                    }
                    None => Err(format!("transfer {transfer_id} has no data to send")),
                };
                if end {
                    sources.remove(&transfer_id);
                }
                result.map(|()| Written::Segment { data_length })
            }
        };
        match result {
            Ok(report) => {
                let _ = written.send(report);
            }
            Err(error) => {
                let _ = written.send(Written::Failed(error));
                return;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

async fn write_segment<W: AsyncWrite + Unpin>(
    writer: &mut W,
    head: &[u8],
    source: &mut Pin<Box<dyn AsyncRead + Send>>,
    data_length: u64,
    buffer: &mut [u8],
    status: &SessionStatus,
) -> Result<(), String> {
    writer.write_all(head).await.map_err(|e| e.to_string())?;
    status.bytes_sent.fetch_add(head.len() as u64, Ordering::Relaxed);
    let mut left = data_length;
    while left > 0 {
        let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = source.read(&mut buffer[..want]).await.map_err(|e| format!("reading the bundle: {e}"))?;
        if n == 0 {
            return Err(format!("the bundle ended {left} bytes early"));
        }
        writer.write_all(&buffer[..n]).await.map_err(|e| e.to_string())?;
        status.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bpa::bundle::BundleError;

    use super::*;

    #[test]
    fn refusals_name_the_reason_the_sender_acts_on() {
        // §5.2.4: "no resources" tells the sender to try later; "not acceptable" that the
        // bundle itself is the problem.
        let full = StoreError::DepletedStorage {
            needed_bytes: 9,
            bundles: 1,
            max_bundles: 1,
            bytes: 0,
            max_bytes: 8,
        };
        assert_eq!(refuse_reason(&AgentError::Store(full)), RefuseReason::NO_RESOURCES);
        assert_eq!(refuse_reason(&AgentError::Store(StoreError::Closed)), RefuseReason::NO_RESOURCES);
        let invalid = BundleError::TooLarge { size: 9, limit: 8 };
        assert_eq!(refuse_reason(&AgentError::Invalid(invalid.clone())), RefuseReason::NOT_ACCEPTABLE);
        assert_eq!(
            refuse_reason(&AgentError::Store(StoreError::InvalidBundle(invalid))),
            RefuseReason::NOT_ACCEPTABLE
        );
    }
}
