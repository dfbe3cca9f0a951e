//! One TCPCLv3 connection's task: it owns the connection's sans-IO [`Session`], feeds it what
//! the socket reads, the agent's bundles and its own timeouts, carries out what the session
//! asks (segments and acknowledgements to the writer, bundles into the store), and reports how
//! the connection ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bpa::Eid;
use bpa::SinkError;
use bpa::cla::{BundleSink, ClaError, IncomingBundle, Refusal};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::session::{Event, Session, SessionError};
use super::shared::{Ended, Outbound, Route, Shared, link, no_longer_wanted, now};
use super::wire::RefuseCode;
use super::wire::ShutdownReason;
use super::writer::{BundleJob, Written, write_loop};
use crate::lock;

/// Received bundles of one connection being made durable at once; past it, reading waits.
const MAX_COMMITS: usize = 256;
/// Bundles up to this size are collected and handed over whole; larger ones are streamed.
const STREAM_THRESHOLD: u64 = 64 * 1024;
/// Bytes gathered before each write into the store.
const STORE_WRITE_CHUNK: usize = 1 << 20;
const READ_BUFFER: usize = 256 * 1024;
/// Control bytes (acknowledgements, refusals, keepalives) waiting for the writer; past it
/// reading waits.
const MAX_QUEUED_CONTROL_BYTES: u64 = 256 * 1024;

/// A received bundle on its way into the store.
enum Receiving<P> {
    Collecting(Vec<u8>),
    Streaming(P, Vec<u8>),
}

/// A bundle sent on this connection, until the peer acknowledged (or refused) it.
struct Sending {
    done: oneshot::Sender<Result<(), ClaError>>,
    length: u64,
    abandoned: Arc<AtomicBool>,
}

/// One connection: its session, its writer, what it sends and receives.
pub(super) struct Connection<A: BundleSink> {
    shared: Arc<Shared<A>>,
    number: u64,
    address: String,
    expected: Option<Eid>,
    session: Session,
    peer: Option<Eid>,
    routed: bool,
    receiving: Option<(u64, Receiving<A::Incoming>)>,
    sending: HashMap<u64, Sending>,
    next_token: u64,
    commits: Arc<tokio::sync::Semaphore>,
    commits_tx: mpsc::UnboundedSender<(u64, Result<(), SinkError>)>,
    commits_rx: mpsc::UnboundedReceiver<(u64, Result<(), SinkError>)>,
    control: Option<mpsc::UnboundedSender<bytes::Bytes>>,
    ended: Option<Ended>,
    close_reason: Option<String>,
    warnings: bpa::log::RateLimit,
    /// The connection is wanted while this says true (a planned contact); `None`: always.
    pub(super) wanted: Option<watch::Receiver<bool>>,
    /// Control bytes handed to the writer and not yet written.
    control_queued: Arc<AtomicU64>,
    /// For a connection a peer opened: what the listener knows of it, and how it sheds it.
    pub(super) activity: Option<Arc<crate::listener::Activity>>,
}

impl<A: BundleSink> Connection<A> {
    pub(super) fn new(
        shared: Arc<Shared<A>>,
        number: u64,
        address: String,
        expected: Option<Eid>,
    ) -> Connection<A> {
        let session = Session::new(shared.config.session.clone(), now());
        let (commits_tx, commits_rx) = mpsc::unbounded_channel();
        Connection {
            shared,
            number,
            address,
            expected,
            session,
            peer: None,
            routed: false,
            receiving: None,
            sending: HashMap::new(),
            next_token: 0,
            commits: Arc::new(tokio::sync::Semaphore::new(MAX_COMMITS)),
            commits_tx,
            commits_rx,
            control: None,
            ended: None,
            close_reason: None,
            warnings: bpa::log::RateLimit::new(Duration::from_secs(60)),
            wanted: None,
            control_queued: Arc::new(AtomicU64::new(0)),
            activity: None,
        }
    }

    fn shared(&self) -> &Shared<A> {
        &self.shared
    }

    pub(super) async fn run(&mut self, stream: TcpStream) -> Ended {
        let (mut reader, writer) = stream.into_split();
        let (control, control_rx) = mpsc::unbounded_channel();
        let (bundles, bundles_rx) = mpsc::channel::<BundleJob>(1);
        let (written_tx, mut written) = mpsc::unbounded_channel();
        let segment_size = self.shared().config.segment_size;
        let queued = Arc::clone(&self.control_queued);
        let mut writer_task =
            tokio::spawn(write_loop(writer, control_rx, bundles_rx, written_tx, segment_size, queued));
        self.control = Some(control);
        let (outbound_tx, mut outbound) = mpsc::channel::<Outbound>(1);
        let mut outbound_tx = Some(outbound_tx);
        let mut shutdown = self.shared().shutdown.subscribe();
        let mut buffer = BytesMut::with_capacity(READ_BUFFER);
        let max_unacked = self.shared().config.max_unacknowledged;
        let mut writer_busy = false;
        let stall = self.shared().config.stall_timeout;
        let (mut read_progress, mut write_progress) =
            (tokio::time::Instant::now(), tokio::time::Instant::now());
        // Control messages handed to the writer and not yet reported written.
        let mut control_pending = self.flush_control();
        let activity = self.activity.clone();
        loop {
            if let Some(activity) = &activity {
                // Bundles on their way either way: a connection moving one is not shed.
                activity.set_in_progress(self.sending.len() + usize::from(self.receiving.is_some()));
            }
            let writing = (writer_busy || control_pending).then_some(write_progress + stall);
            let reading = self.session.receiving().then_some(read_progress + stall);
            let stalled_at = match (writing, reading) {
                (Some(w), Some(r)) => Some(w.min(r)),
                (w, r) => w.or(r),
            };
            let deadline = self.session.poll_timeout().map(tokio::time::Instant::from_std);
            // Reading waits while the peer does not take what is written to it (acknowledgements
            // a peer provokes cannot pile up without bound).
            let can_read = self.session.wants_input()
                && self.commits.available_permits() > 0
                && self.control_queued.load(Ordering::Relaxed) < MAX_QUEUED_CONTROL_BYTES;
            let can_send = self.session.is_established()
                && self.routed
                && !writer_busy
                && self.session.unacknowledged() < max_unacked;
            tokio::select! {
                read = reader.read_buf(&mut buffer), if can_read => match read {
                    Ok(0) | Err(_) => {
                        self.closing(match read { Err(e) => format!("reading failed: {e}"), _ => "the peer closed the connection".into() });
                        break;
                    }
                    Ok(n) => {
                        read_progress = tokio::time::Instant::now();
                        self.shared().counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                        // Handed over whole: segment data goes on as slices of it.
                        self.session.handle_input_owned(buffer.split(), now());
                        buffer.reserve(READ_BUFFER);
                    }
                },
                Some(out) = outbound.recv(), if can_send => {
                    writer_busy = self.start_sending(out, &bundles);
                }
                report = written.recv() => match report {
                    Some(Written::Progress) => {
                        write_progress = tokio::time::Instant::now();
                        control_pending = false;
                        self.session.on_transmitted(now());
                    }
                    Some(Written::Bundle { token, complete }) => {
                        write_progress = tokio::time::Instant::now();
                        writer_busy = false;
                        self.session.on_transmitted(now());
                        if complete {
                            self.session.written(token);
                        }
                    }
                    Some(Written::Failed(error)) => {
                        self.closing(format!("writing failed: {error}"));
                        break;
                    }
                    None => break,
                },
                Some((bundle, result)) = self.commits_rx.recv() => self.committed(bundle, result),
                () = sleep_until(deadline) => self.session.handle_timeout(now()),
                () = sleep_until(stalled_at) => {
                    let what = if reading.is_some_and(|r| Some(r) == stalled_at) {
                        "the peer sent nothing of the bundle it was sending"
                    } else {
                        "the peer took nothing of what this node was writing"
                    };
                    self.closing(format!("stalled: {what} for {stall:?}"));
                    break;
                }
                _ = shutdown.changed() => self.session.shutdown(None, None),
                () = crate::listener::shed(activity.as_deref()) => {
                    self.closing("shed: the listener's connections were all taken and this one was the idlest");
                    self.session.shutdown(Some(ShutdownReason::Busy), None);
                }
                () = no_longer_wanted(&mut self.wanted) => {
                    self.closing("the planned contact ended");
                    self.wanted = None;
                    self.session.shutdown(None, None);
                }
            }
            control_pending |= self.flush_control();
            while let Some(event) = self.session.poll_event() {
                self.handle_event(event, &mut outbound_tx).await;
            }
            control_pending |= self.flush_control();
            if self.session.is_closed() {
                break;
            }
        }
        // What is queued (a last acknowledgement, SHUTDOWN) is written before the socket closes.
        self.control = None;
        drop(bundles);
        if tokio::time::timeout(Duration::from_secs(5), &mut writer_task).await.is_err() {
            // A peer that reads nothing: the writer is stuck; the socket closes with it.
            writer_task.abort();
        }
        outbound.close();
        while let Ok(out) = outbound.try_recv() {
            let _ = out.done.send(Err(ClaError::LinkDown { peer: self.peer_text() }));
        }
        self.ended.take().unwrap_or(Ended::Normally { established: self.peer.is_some() })
    }

    /// Hands a bundle to the writer; answers whether the writer is now busy with it.
    fn start_sending(&mut self, out: Outbound, bundles: &mpsc::Sender<BundleJob>) -> bool {
        let token = self.next_token;
        self.next_token += 1;
        let length = out.bundle.len();
        let length_message = match self.session.begin_send(token, length) {
            Ok(message) => message,
            Err(error) => {
                let _ = out
                    .done
                    .send(Err(ClaError::LinkDown { peer: format!("{} ({error})", self.peer_text()) }));
                return false;
            }
        };
        let abandoned = Arc::new(AtomicBool::new(false));
        let job = BundleJob {
            token,
            length_message,
            length,
            reader: out.bundle.into_reader(),
            abandoned: Arc::clone(&abandoned),
        };
        self.sending.insert(token, Sending { done: out.done, length, abandoned });
        // The channel holds one job and the writer takes it before reporting: never full here.
        bundles.try_send(job).is_ok()
    }

    /// Hands the session's control messages to the writer; answers whether there were any.
    fn flush_control(&mut self) -> bool {
        let mut any = false;
        while let Some(bytes) = self.session.poll_transmit() {
            if let Some(control) = &self.control {
                any = true;
                self.control_queued.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if control.send(bytes).is_err() {
                    self.control_queued.store(0, Ordering::Relaxed);
                }
            }
        }
        any
    }

    fn closing(&mut self, reason: impl std::fmt::Display) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason.to_string());
        }
    }

    fn peer_text(&self) -> String {
        self.peer.as_ref().map(ToString::to_string).unwrap_or_else(|| self.address.clone())
    }

    async fn handle_event(&mut self, event: Event, outbound_tx: &mut Option<mpsc::Sender<Outbound>>) {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        match event {
            Event::Established(negotiated) => {
                let node = match negotiated.peer_eid.parse::<Eid>() {
                    Ok(eid) => eid.node_id(),
                    Err(error) => {
                        self.closing(format!(
                            "the peer's contact header names no EID this node reads ({:?}: {error})",
                            shown(&negotiated.peer_eid)
                        ));
                        counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                        self.session.shutdown(None, None);
                        return;
                    }
                };
                if let Some(expected) = self.expected.clone()
                    && expected.node_id() != node
                {
                    self.closing(format!(
                        "the peer at {} is {node}, not {expected} as configured",
                        self.address
                    ));
                    tracing::warn!(address = %self.address, peer = %node, expected = %expected, "TCPCLv3 peer is not the configured node: disconnecting");
                    self.ended = Some(Ended::WrongPeer);
                    self.session.shutdown(None, None);
                    return;
                }
                tracing::info!(address = %self.address, peer = %node, ack = negotiated.ack, refusal = negotiated.refusal, keepalive = %negotiated.keepalive.map_or_else(|| "none".to_string(), bpa::time::format_duration), "TCPCLv3 connection established");
                self.peer = Some(node.clone());
                if let Some(tx) = outbound_tx.take() {
                    lock(&self.shared().routes)
                        .entry(node.clone())
                        .or_default()
                        .push(Route { connection: self.number, outbound: tx });
                }
                self.routed = true;
                if let Err(error) = self.shared().agent.neighbour_up(node.clone(), link(&self.shared)).await {
                    tracing::error!(%error, neighbour = %node, "the agent did not take the TCPCLv3 neighbour");
                }
            }
            Event::IncomingStarted { bundle, length } => {
                let receiving = match length {
                    Some(small) if small <= STREAM_THRESHOLD => {
                        Receiving::Collecting(Vec::with_capacity(small as usize))
                    }
                    _ => match self.shared().agent.begin_receive().await {
                        Ok(pending) => Receiving::Streaming(pending, Vec::with_capacity(STORE_WRITE_CHUNK)),
                        Err(error) => {
                            self.refuse(bundle, &error);
                            return;
                        }
                    },
                };
                self.receiving = Some((bundle, receiving));
            }
            Event::IncomingData { bundle, data } => {
                let Some((current, receiving)) = self.receiving.as_mut() else { return };
                if *current != bundle {
                    return;
                }
                match receiving {
                    Receiving::Collecting(collected) => {
                        if collected.len() + data.len() > STREAM_THRESHOLD as usize {
                            // A LENGTH said small, the segments say otherwise: stream from here.
                            match self.shared.agent.begin_receive().await {
                                Ok(mut pending) => {
                                    let mut gathered = std::mem::take(collected);
                                    gathered.extend_from_slice(&data);
                                    let result = pending.write_owned(&mut gathered).await;
                                    *receiving = Receiving::Streaming(pending, gathered);
                                    if let Err(error) = result {
                                        self.receiving = None;
                                        self.refuse(bundle, &error);
                                    }
                                }
                                Err(error) => {
                                    self.receiving = None;
                                    self.refuse(bundle, &error);
                                }
                            }
                        } else {
                            collected.extend_from_slice(&data);
                        }
                    }
                    Receiving::Streaming(pending, gathered) => {
                        gathered.extend_from_slice(&data);
                        if gathered.len() >= STORE_WRITE_CHUNK
                            && let Err(error) = pending.write_owned(gathered).await
                        {
                            self.receiving = None;
                            self.refuse(bundle, &error);
                        }
                    }
                }
            }
            Event::IncomingEnded { bundle } => {
                let Some((current, receiving)) = self.receiving.take() else { return };
                if current != bundle {
                    return;
                }
                // Made durable beside the reading; the acknowledgement waits for it.
                let Ok(permit) = Arc::clone(&self.commits).acquire_owned().await else { return };
                let shared = Arc::clone(&self.shared);
                let results = self.commits_tx.clone();
                tokio::spawn(async move {
                    let agent = &shared.agent;
                    let result = match receiving {
                        Receiving::Collecting(bytes) => agent.receive(bytes.into()).await.map(|_| ()),
                        Receiving::Streaming(mut pending, mut gathered) => {
                            match pending.write_owned(&mut gathered).await {
                                Ok(()) => pending.commit().await.map(|_| ()),
                                Err(error) => Err(error),
                            }
                        }
                    };
                    drop(permit);
                    // Counted here: the connection may be gone by now (the bundle is kept).
                    let counter = match result {
                        Ok(()) => &shared.counters.bundles_received,
                        Err(_) => &shared.counters.bundles_refused,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = results.send((bundle, result));
                });
            }
            Event::IncomingAbandoned { bundle } => {
                if self.receiving.as_ref().is_some_and(|(current, _)| *current == bundle) {
                    // Dropping the pending bundle removes what was written of it.
                    self.receiving = None;
                    counters.bundles_cut_off.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::IncomingTooLarge { bundle } => {
                if self.receiving.as_ref().is_some_and(|(current, _)| *current == bundle) {
                    self.receiving = None;
                }
                counters.bundles_refused.fetch_add(1, Ordering::Relaxed);
                let limit = shared.config.session.max_bundle_size;
                if let Some(suppressed) = self.warnings.allow(crate::clock::now()) {
                    tracing::warn!(peer = %self.peer_text(), limit, earlier_not_logged = suppressed, "TCPCLv3: a bundle larger than max_bundle_size was refused");
                }
            }
            Event::Delivered { token } => {
                if let Some(sending) = self.sending.remove(&token) {
                    counters.bundles_sent.fetch_add(1, Ordering::Relaxed);
                    counters.bytes_sent.fetch_add(sending.length, Ordering::Relaxed);
                    let _ = sending.done.send(Ok(()));
                }
            }
            Event::Refused { token, reason } => {
                if let Some(sending) = self.sending.remove(&token) {
                    sending.abandoned.store(true, Ordering::Release);
                    counters.refused_by_peer.fetch_add(1, Ordering::Relaxed);
                    let refusal = match reason {
                        RefuseCode::NoResources => Refusal::NoResources,
                        RefuseCode::Retransmit => Refusal::Retransmit,
                        other => Refusal::Other(format!("refused by the TCPCLv3 peer: {other}")),
                    };
                    let _ =
                        sending.done.send(Err(ClaError::Refused { peer: self.peer_text(), reason: refusal }));
                }
            }
            Event::PeerShutdown { reason, delay } => {
                let reason_text = reason.map_or_else(|| "no reason given".to_owned(), |r| r.to_string());
                self.closing(format!("the peer shut the connection down ({reason_text})"));
                if let Some(delay) = delay {
                    self.ended = Some(Ended::Delay((delay > 0).then(|| Duration::from_secs(delay))));
                }
            }
            Event::Closed(error) => {
                match &error {
                    SessionError::Wire(_)
                    | SessionError::Protocol(_)
                    | SessionError::AckBeyondBundle { .. }
                    | SessionError::VersionMismatch(_)
                    | SessionError::TooLarge { .. } => {
                        counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                self.closing(&error);
            }
        }
    }

    /// The agent could not take the bundle arriving now.
    fn refuse(&mut self, bundle: u64, error: &SinkError) {
        self.shared().counters.bundles_refused.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.warnings.allow(crate::clock::now()) {
            tracing::warn!(peer = %self.peer_text(), %error, earlier_not_logged = suppressed, "TCPCLv3: a received bundle was refused");
        }
        self.session.refuse_incoming(bundle, refuse_code(error));
    }

    /// A received bundle's commit ended.
    fn committed(&mut self, bundle: u64, result: Result<(), SinkError>) {
        match result {
            Ok(()) => self.session.finish_incoming(bundle, Ok(())),
            Err(error) => {
                if let Some(suppressed) = self.warnings.allow(crate::clock::now()) {
                    tracing::warn!(peer = %self.peer_text(), %error, earlier_not_logged = suppressed, "TCPCLv3: a received bundle was refused");
                }
                self.session.finish_incoming(bundle, Err(refuse_code(&error)));
            }
        }
    }

    /// After the connection: the peer is no neighbour, bundles not acknowledged go back to the
    /// agent (tried again), one line says how it ended.
    pub(super) fn finish(&mut self) {
        if let Some(peer) = &self.peer
            && self.routed
        {
            let mut routes = lock(&self.shared().routes);
            let last = match routes.get_mut(peer) {
                Some(up) => {
                    up.retain(|r| r.connection != self.number);
                    up.is_empty()
                }
                None => true,
            };
            if last {
                routes.remove(peer);
            }
            drop(routes);
            // The peer is no neighbour only when its last connection ends.
            if last {
                self.shared().agent.neighbour_down(peer);
            }
        }
        if self.receiving.take().is_some() {
            self.shared().counters.bundles_cut_off.fetch_add(1, Ordering::Relaxed);
        }
        let peer = self.peer_text();
        for (_, sending) in self.sending.drain() {
            let _ = sending.done.send(Err(ClaError::Failed {
                peer: peer.clone(),
                reason: "the TCPCLv3 connection ended before the peer acknowledged the bundle".into(),
            }));
        }
        tracing::info!(
            peer = %peer,
            address = %self.address,
            reason = self.close_reason.as_deref().unwrap_or("ended"),
            "TCPCLv3 connection closed"
        );
    }
}

/// The REFUSE_BUNDLE reason for an agent's refusal (§5.4).
fn refuse_code(error: &SinkError) -> RefuseCode {
    match error.refusal() {
        Refusal::NoResources => RefuseCode::NoResources,
        Refusal::Retransmit => RefuseCode::Retransmit,
        _ => RefuseCode::Unknown,
    }
}

/// A peer's text as logs show it: at most 80 characters.
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
