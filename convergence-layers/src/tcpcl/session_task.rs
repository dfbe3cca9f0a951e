//! The task that owns one sans-IO [`Session`]: it reads the connection, feeds the session,
//! carries out its events (bundles to the agent, acknowledgements, refusals), starts outgoing
//! transfers and hands the writer what to write; it watches for stalls.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bpa::Eid;
use bpa::{BundleSink, ClaError, Refusal};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::driver::{
    MAX_COMMITS_IN_PROGRESS, MAX_QUEUED_CONTROL_BYTES, MAX_QUEUED_SEGMENT_BYTES, Outbound, READ_BUFFER,
    Route, STREAM_THRESHOLD, SessionStatus, Tcpcl, lock, now,
};
use super::receiving::{Committed, IncomingTransfer, Receiving};
use super::session::{Event, SendError, Session};
use super::wire::{RefuseReason, SessTermReason};
use super::writer::{WriteJob, Written, write_loop};

pub(super) struct SessionTask<A: BundleSink> {
    pub(super) layer: Tcpcl<A>,
    pub(super) number: u64,
    pub(super) session: Session,
    pub(super) status: Arc<SessionStatus>,
    pub(super) peer: Option<Eid>,
    pub(super) established: bool,
    /// Events from the contact header exchange, handled once the session runs.
    pub(super) early_events: VecDeque<Event>,
    pub(super) jobs: Option<mpsc::UnboundedSender<WriteJob>>,
    pub(super) outbound_tx: mpsc::UnboundedSender<Outbound>,
    pub(super) outbound_rx: mpsc::UnboundedReceiver<Outbound>,
    /// Handed over by the agent, not started.
    pub(super) queued: VecDeque<Outbound>,
    /// The transfer whose segments are being queued.
    pub(super) sending: Option<u64>,
    /// Started and not yet acknowledged.
    pub(super) unacknowledged: HashMap<u64, oneshot::Sender<Result<(), ClaError>>>,
    pub(super) queued_segment_bytes: u64,
    /// Control bytes handed to the writer and not yet written.
    pub(super) queued_control_bytes: u64,
    /// When the writer last made progress (or was last idle), and the byte count then.
    pub(super) write_progress: (Instant, u64),
    /// When the incoming transfer last received data.
    pub(super) incoming_progress: Instant,
    /// The peer's node ID as logs show it (kept when the session stops routing).
    pub(super) peer_label: Option<String>,
    /// Why the session closed, for its one closing log line.
    pub(super) close_reason: Option<String>,
    pub(super) incoming: Option<IncomingTransfer<A>>,
    /// The session is wanted while this says true (a planned contact); at false it ends with
    /// SESS_TERM. `None`: for as long as both sides keep it.
    pub(super) wanted: Option<watch::Receiver<bool>>,
    pub(super) commits_tx: mpsc::UnboundedSender<Committed>,
    pub(super) commits_rx: mpsc::UnboundedReceiver<Committed>,
    pub(super) commits_in_progress: usize,
    /// Warnings the peer can provoke, rate-limited.
    pub(super) warnings: bpa::log::RateLimit,
    /// For a session a peer opened: what the listener knows of it, and how it sheds it.
    pub(super) activity: Option<Arc<crate::listener::Activity>>,
}

impl<A: BundleSink> SessionTask<A> {
    pub(super) fn new(
        layer: Tcpcl<A>,
        number: u64,
        session: Session,
        status: Arc<SessionStatus>,
    ) -> SessionTask<A> {
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
            wanted: None,
            commits_tx,
            commits_rx,
            commits_in_progress: 0,
            warnings: bpa::log::RateLimit::new(Duration::from_secs(10)),
            activity: None,
        }
    }

    pub(super) fn agent(&self) -> &A {
        &self.layer.shared.agent
    }

    /// Runs the session; answers whether it was established. Its end is logged once.
    pub(super) async fn run(&mut self, stream: TcpStream) -> bool {
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
    pub(super) fn closing(&mut self, reason: impl std::fmt::Display) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason.to_string());
        }
    }

    pub(super) async fn run_established<R, W>(&mut self, mut reader: R, writer: W)
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
        let mut wanted = self.wanted.take();
        let activity = self.activity.clone();
        let mut shed = false;
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
                // A session shed for a newcomer says so: the node is too busy (§6.1).
                self.session.terminate(if shed { SessTermReason::BUSY } else { SessTermReason::UNKNOWN });
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
                () = crate::listener::shed(activity.as_deref()), if !shed => {
                    self.closing("shed: the listener's connections were all taken and this one was the idlest");
                    shed = true;
                    shutting_down = true;
                }
                () = no_longer_wanted(&mut wanted) => {
                    self.closing("the planned contact ended");
                    shutting_down = true;
                    wanted = None;
                }
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
    pub(super) fn watchdog(&mut self, transfer_idle: Duration, send_stall: Duration) -> Option<String> {
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
    pub(super) async fn step(&mut self) {
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
        if let Some(activity) = &self.activity {
            // Bundles on their way either way: a session moving one is not shed.
            activity.set_in_progress(self.unacknowledged.len() + usize::from(self.incoming.is_some()));
        }
    }

    /// At the end: only the session's last bytes, no more agent work.
    pub(super) fn step_without_agent(&mut self) {
        self.flush_control();
        while let Some(event) = self.session.poll_event() {
            if let Event::Closed { error: Some(error) } = event {
                self.closing(error);
            }
        }
        self.flush_control();
    }

    pub(super) fn flush_control(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            self.write(WriteJob::Control(bytes));
        }
    }

    pub(super) fn write(&mut self, job: WriteJob) {
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
    pub(super) fn start_transfers(&mut self) {
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

    pub(super) fn queue_segments(&mut self) {
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

    pub(super) async fn handle_event(&mut self, event: Event) {
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

    /// The peer as the agent knows it: its node ID (once known), else its address.
    pub(super) fn peer_name(&self) -> String {
        match (&self.peer, &self.peer_label) {
            (Some(peer), _) => peer.to_string(),
            (None, Some(label)) => label.clone(),
            (None, None) => self.status.address.to_string(),
        }
    }

    /// The peer for logs: its node ID (shortened), else its address.
    pub(super) fn peer_label(&self) -> String {
        self.peer_label.clone().unwrap_or_else(|| self.status.address.to_string())
    }

    /// The agent no longer sends through this session; the peer is no longer a neighbour once
    /// its last session is gone.
    pub(super) fn unroute(&mut self) {
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
    pub(super) fn fail_all(&mut self, why: &str) {
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
pub(super) fn refusal(reason: RefuseReason) -> Refusal {
    match reason {
        RefuseReason::NO_RESOURCES => Refusal::NoResources,
        RefuseReason::RETRANSMIT => Refusal::Retransmit,
        RefuseReason::NOT_ACCEPTABLE => Refusal::NotAcceptable,
        other => Refusal::Other(other.to_string()),
    }
}

/// Resolves when a session that was wanted no longer is (its flag turned false, or whoever
/// held it is gone); never for a session without one.
async fn no_longer_wanted(wanted: &mut Option<watch::Receiver<bool>>) {
    match wanted {
        Some(flag) => {
            let _ = flag.wait_for(|wanted| !*wanted).await;
        }
        None => std::future::pending().await,
    }
}
