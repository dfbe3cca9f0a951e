//! One TCPCLv4 session as a state machine without I/O (RFC 9174 §3.3): bytes from the peer and
//! the current time go in ([`Session::handle_input`], [`Session::handle_timeout`]); bytes for
//! the peer ([`Session::poll_transmit`], [`Session::segment`]) and [`Event`]s for the agent come
//! out. The tokio driver moves bytes and runs TLS; every protocol decision is made here, so it
//! is tested and fuzzed without sockets.
//!
//! Transfers are pipelined (§5.2.3): a sender starts the next transfer while acknowledgements
//! of earlier ones are outstanding, never interleaving segments of two transfers (§5.2). A
//! received segment is acknowledged only when the agent says it is processed
//! ([`Session::acknowledge_segment`]), so the final XFER_ACK can wait until the bundle is
//! durable (design §3.3).
//!
//! This module holds the session's state, its entry points, timers and ending; `negotiation`
//! (contact headers, TLS decision, SESS_INIT), `incoming` and `outgoing` (transfers each way)
//! add their parts of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::wire::{
    CONTACT_HEADER_LEN, ContactHeader, DecodeError, Decoder, ExtensionItem, Frame, Message, RefuseReason,
    RejectReason, SESS_TERM_REPLY, SegmentHeader, SessInit, SessTermReason, TRANSFER_LENGTH_EXTENSION,
    VERSION, encode_segment_header, message_type, segment_flags,
};

/// Which side opened the TCP connection (§3.2): the active entity sends its contact header
/// first and is the TLS client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Active,
    Passive,
}

/// Whether sessions use TLS (§4.3 "Enable TLS").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// CAN_TLS is offered and a peer that does not offer it is refused ("contact failure").
    Required,
    /// CAN_TLS is offered; TLS is used when the peer offers it too.
    Optional,
    /// CAN_TLS is not offered.
    Off,
}

/// One side's settings for a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// This node's ID as sent in SESS_INIT; empty to withhold it (§4.6).
    pub node_id: String,
    /// Keepalive interval offered, in seconds (0 disables keepalives, §5.1.1).
    pub keepalive: u16,
    /// Largest segment accepted.
    pub segment_mru: u64,
    /// Largest transfer (bundle) accepted.
    pub transfer_mru: u64,
    pub tls: TlsPolicy,
    /// With TLS: refuse a peer whose SESS_INIT node ID its certificate does not carry (§4.4.4.3).
    pub require_node_id_authentication: bool,
    /// Largest segment sent, whatever the peer accepts: bounds the driver's buffers.
    pub max_segment_size: u64,
    /// How long to wait for the peer's contact header, its SESS_INIT, and its SESS_TERM reply.
    pub negotiation_timeout: Duration,
    /// With no keepalives negotiated (either side offered 0), a session on which nothing
    /// arrives for this long is ended with SESS_TERM "idle timeout": no keepalives means no
    /// keepalives, not no limit (design §3.10). With keepalives, RFC 9174 §5.1.1's twice the
    /// interval applies.
    pub idle_timeout: Duration,
    /// Send bundles larger than the peer's Transfer MRU anyway. Off by default (§4.7: the
    /// MRU is the largest transfer the peer accepts); for dtn7-rs, which announces 64,000
    /// bytes but takes (and sends) larger bundles (design §8).
    pub ignore_peer_transfer_mru: bool,
}

impl SessionConfig {
    pub fn new(node_id: impl Into<String>) -> SessionConfig {
        SessionConfig {
            node_id: node_id.into(),
            keepalive: 30,
            segment_mru: 16 << 20,
            transfer_mru: 16 << 30,
            tls: TlsPolicy::Optional,
            require_node_id_authentication: true,
            max_segment_size: 1 << 20,
            negotiation_timeout: Duration::from_secs(30),
            idle_timeout: crate::listener::DEFAULT_IDLE_TIMEOUT,
            ignore_peer_transfer_mru: false,
        }
    }
}

/// A string from the peer as logs and errors show it: at most [`SHOWN`] characters, the rest
/// counted, so a peer cannot make a log line as long as it likes (a node ID may be 64 KiB).
pub fn shown(peer_text: &str) -> String {
    if peer_text.len() <= SHOWN {
        return peer_text.to_string();
    }
    let mut end = SHOWN;
    while !peer_text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &peer_text[..end], peer_text.len())
}

/// Longest node ID accepted in a SESS_INIT (the codec's default EID limit).
pub const MAX_NODE_ID_LEN: usize = 1024;

/// Longest peer-supplied text shown whole.
pub const SHOWN: usize = 80;

/// What was agreed with the peer (§4.3, §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The node ID the peer sent (empty if it withheld it).
    pub peer_node_id: String,
    /// Whether its TLS certificate carries that node ID.
    pub node_id_authenticated: bool,
    pub tls: bool,
    /// Zero when keepalives are disabled.
    pub keepalive: Duration,
    /// Largest segment and transfer the peer accepts.
    pub segment_mtu: u64,
    pub transfer_mtu: u64,
}

/// What the session tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Both contact headers offer TLS: the driver runs the TLS handshake now (the active side
    /// as client), then calls [`Session::tls_established`].
    StartTls,
    Established(Negotiated),
    /// The peer started a transfer; `total_length` from its Transfer Length extension.
    IncomingStarted {
        transfer_id: u64,
        total_length: Option<u64>,
    },
    /// The next bytes of the incoming transfer.
    IncomingData {
        transfer_id: u64,
        data: Bytes,
    },
    /// A segment is complete: once its bytes are processed (for the last one, `end`, once the
    /// bundle is durable) the agent calls [`Session::acknowledge_segment`].
    IncomingSegmentEnd {
        transfer_id: u64,
        end: bool,
    },
    /// The incoming transfer is void: its bytes are to be dropped.
    IncomingAborted {
        transfer_id: u64,
        reason: String,
    },
    /// The peer acknowledged the whole outgoing transfer.
    TransferAcked {
        transfer_id: u64,
    },
    /// The peer refused the outgoing transfer (§5.2.4): send no more of it.
    TransferRefused {
        transfer_id: u64,
        reason: RefuseReason,
    },
    /// The peer rejected a message of ours (§5.1.2); logged, nothing else changes.
    Rejected {
        reason: RejectReason,
        rejected_type: u8,
    },
    /// A SESS_TERM was sent or received: no new transfers (§6.1).
    Ending {
        reason: SessTermReason,
        by_peer: bool,
    },
    /// The connection is to be closed (after the last [`Session::poll_transmit`]); outgoing
    /// transfers not acknowledged have failed and their bundles stay queued.
    Closed {
        error: Option<SessionError>,
    },
}

/// Why a session ended other than by a clean SESS_TERM exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the peer speaks TCPCL version {theirs}; this node speaks version {VERSION} only")]
    VersionMismatch { theirs: u8 },
    #[error("TLS is required (tls = \"required\") but the peer does not offer it")]
    TlsRequired,
    #[error("no {what} from the peer within {timeout:?}")]
    Timeout { what: &'static str, timeout: Duration },
    #[error(
        "the peer sent nothing for {0:?} (twice the keepalive interval, or the idle limit without keepalives)"
    )]
    Idle(Duration),
    #[error("the peer's SESS_INIT is unacceptable: {0}")]
    Unacceptable(String),
    #[error("the peer's node ID {claimed:?} is not in its TLS certificate (it names {certified:?})")]
    NodeIdNotAuthenticated { claimed: String, certified: Vec<String> },
    #[error("the peer sent a message of type {message_type:#04x} before the session was established")]
    UnexpectedBeforeEstablished { message_type: u8 },
    #[error("the peer ended the session: {0}")]
    TerminatedByPeer(SessTermReason),
    #[error("the session was ended here: {0}")]
    Terminated(SessTermReason),
    #[error("all 2^64 transfer IDs of this session are used")]
    TransferIdsExhausted,
    #[error(
        "the peer sent a segment of {length} bytes, over the segment MRU of {mru} this node announced \
         (RFC 9174 §4.6: no XFER_SEGMENT larger than the receiver's Segment MRU)"
    )]
    SegmentOverMru { length: u64, mru: u64 },
}

/// Why a transfer cannot be sent now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the session is not established")]
    NotEstablished,
    #[error("the session is ending: no new transfers (RFC 9174 §6.1)")]
    Ending,
    #[error("the bundle is {length} bytes, over the peer's transfer MRU of {mtu}")]
    OverTransferMtu { length: u64, mtu: u64 },
    #[error("transfer {0} is still being sent: transfers do not interleave (RFC 9174 §5.2)")]
    Interleaving(u64),
    #[error("a transfer carries a bundle: it cannot be empty")]
    Empty,
    #[error("no transfer {0} is being sent")]
    UnknownTransfer(u64),
    #[error("the peer refused transfer {transfer_id}: {reason}")]
    Refused { transfer_id: u64, reason: RefuseReason },
}

/// A segment to write: `head` (whatever the session had queued, then the XFER_SEGMENT header),
/// then exactly `data_length` bytes of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentToSend {
    pub head: Bytes,
    pub data_length: u64,
    pub end: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the peer's contact header (the active side has sent its own).
    AwaitContact,
    /// The driver is running the TLS handshake.
    AwaitTls,
    /// Waiting for the peer's SESS_INIT (the active side has sent its own).
    AwaitSessInit,
    Established,
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct Ending {
    sent: bool,
    received: bool,
}

/// How many finished outgoing transfer IDs are remembered, so a late XFER_ACK or XFER_REFUSE
/// for one is not taken for a protocol error.
const RECENT_IDS: usize = 64;

/// A TCPCLv4 session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    role: Role,
    state: State,
    input: BytesMut,
    output: BytesMut,
    events: VecDeque<Event>,
    decoder: Decoder,
    tls: bool,
    certified_node_ids: Option<Vec<String>>,
    negotiated: Option<Negotiated>,
    deadline: Option<Instant>,
    last_received: Instant,
    last_sent: Instant,
    /// The latest time any entry point was given.
    latest: Instant,
    ending: Option<Ending>,
    next_transfer_id: Option<u64>,
    outgoing: VecDeque<Outgoing>,
    recently_finished: VecDeque<u64>,
    recently_refused: VecDeque<(u64, RefuseReason)>,
    incoming: Option<Incoming>,
    segment: Option<CurrentSegment>,
    pending_acks: VecDeque<PendingAck>,
}

impl Session {
    /// A session on a new TCP connection. The active side's contact header is queued at once.
    pub fn new(config: SessionConfig, role: Role, now: Instant) -> Session {
        let deadline = Some(now + config.negotiation_timeout);
        let mut session = Session {
            config,
            role,
            state: State::AwaitContact,
            input: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            decoder: Decoder::new(),
            tls: false,
            certified_node_ids: None,
            negotiated: None,
            deadline,
            last_received: now,
            last_sent: now,
            latest: now,
            ending: None,
            next_transfer_id: Some(0),
            outgoing: VecDeque::new(),
            recently_finished: VecDeque::new(),
            recently_refused: VecDeque::new(),
            incoming: None,
            segment: None,
            pending_acks: VecDeque::new(),
        };
        if role == Role::Active {
            session.send_contact_header();
        }
        session
    }

    fn send(&mut self, message: Message) {
        message.encode(&mut self.output);
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// What was negotiated, once established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    pub fn is_ending(&self) -> bool {
        self.ending.is_some()
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Outgoing transfers sent or being sent and not yet acknowledged.
    pub fn transfers_in_flight(&self) -> usize {
        self.outgoing.len()
    }

    /// Bytes for the peer, in order; `None` when there are none.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.output.is_empty() {
            return None;
        }
        Some(self.output.split().freeze())
    }

    /// The next event for the agent.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut next = self.deadline;
        if let Some(negotiated) = &self.negotiated {
            let due = if negotiated.keepalive.is_zero() {
                self.last_received + self.config.idle_timeout
            } else {
                let keepalive = self.last_sent + keepalive_send_interval(negotiated.keepalive);
                keepalive.min(self.last_received + negotiated.keepalive * 2)
            };
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next
    }

    /// The driver wrote bytes it was given (it calls this with the time it did, so keepalives
    /// count from the last transmission).
    pub fn on_transmitted(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
        self.last_sent = now;
    }

    /// Bytes read before TLS began that belong to the TLS layer, not to TCPCL: the driver hands
    /// them to the TLS session after [`Event::StartTls`].
    pub fn take_unprocessed(&mut self) -> BytesMut {
        self.input.split()
    }

    /// Timers: negotiation and SESS_TERM-reply deadlines, keepalives, the idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
        if self.state == State::Closed {
            return;
        }
        if let Some(deadline) = self.deadline
            && now >= deadline
        {
            let what = match (self.state, self.ending.is_some()) {
                (State::AwaitContact, _) => "contact header",
                (State::AwaitTls, _) => "TLS handshake",
                (State::AwaitSessInit, _) => "SESS_INIT",
                (_, true) => "SESS_TERM reply",
                _ => "answer",
            };
            let error = SessionError::Timeout { what, timeout: self.config.negotiation_timeout };
            match self.state {
                // §4.1: no contact header → close without a SESS_TERM; a TLS handshake that
                // does not finish leaves no channel to send one on.
                State::AwaitContact | State::AwaitTls => self.close(Some(error)),
                _ if self.ending.is_some() => self.close(Some(error)),
                _ => self.terminate_with(SessTermReason::UNKNOWN, Some(error)),
            }
            return;
        }
        let Some(keepalive) = self.negotiated.as_ref().map(|n| n.keepalive) else { return };
        if keepalive.is_zero() {
            let idle = self.config.idle_timeout;
            if now >= self.last_received + idle && !self.is_ending() {
                self.terminate_with(SessTermReason::IDLE_TIMEOUT, Some(SessionError::Idle(idle)));
            }
            return;
        }
        if now >= self.last_received + keepalive * 2 {
            // §5.1.1: nothing received for the idle time → SESS_TERM "idle timeout".
            self.terminate_with(SessTermReason::IDLE_TIMEOUT, Some(SessionError::Idle(keepalive * 2)));
            self.close(Some(SessionError::Idle(keepalive * 2)));
            return;
        }
        if now >= self.last_sent + keepalive_send_interval(keepalive) && self.output.is_empty() {
            self.send(Message::Keepalive);
            self.last_sent = now;
        }
    }

    /// Bytes from the peer (after TLS decryption when TLS is in use).
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.latest = self.latest.max(now);
        if self.state == State::Closed {
            return;
        }
        if !data.is_empty() {
            self.last_received = now;
        }
        self.input.extend_from_slice(data);
        self.process(now);
    }

    fn process(&mut self, now: Instant) {
        loop {
            match self.state {
                State::Closed | State::AwaitTls => return,
                State::AwaitContact => {
                    match ContactHeader::decode(&self.input) {
                        Ok(None) => return,
                        Ok(Some(header)) => {
                            let _ = self.input.split_to(CONTACT_HEADER_LEN);
                            self.on_contact_header(header, now);
                        }
                        Err(error) => {
                            // §6.1: a contact header that cannot be decoded → close, no SESS_TERM.
                            self.close(Some(error.into()));
                            return;
                        }
                    }
                }
                State::AwaitSessInit | State::Established => {
                    let frame = match self.decoder.decode(&mut self.input) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return,
                        Err(error) => {
                            self.on_decode_error(error);
                            return;
                        }
                    };
                    self.on_frame(frame, now);
                }
            }
        }
    }

    fn on_decode_error(&mut self, error: DecodeError) {
        match &error {
            DecodeError::UnknownMessageType(kind) => {
                // §5.1.2: MSG_REJECT "message type unknown", then close.
                let kind = *kind;
                self.send(Message::MsgReject { reason: RejectReason::TYPE_UNKNOWN, rejected_type: kind });
                self.close(Some(error.into()));
            }
            DecodeError::NodeIdNotUtf8 | DecodeError::SessionExtensions(_) => {
                // §4.6: the SESS_INIT's reception failed.
                self.terminate_with(SessTermReason::CONTACT_FAILURE, Some(error.clone().into()));
                self.close(Some(error.into()));
            }
            DecodeError::ExtensionsTooLong { .. } | DecodeError::BadMagic { .. } => {
                // The stream cannot be followed past this message.
                self.terminate_with(SessTermReason::RESOURCE_EXHAUSTION, Some(error.clone().into()));
                self.close(Some(error.into()));
            }
        }
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) {
        if self.state == State::AwaitSessInit {
            match frame {
                Frame::Message(Message::SessInit(init)) => self.on_sess_init(init, now),
                Frame::Message(Message::SessTerm { flags, reason, .. }) => self.on_sess_term(flags, reason),
                other => {
                    let message_type = frame_type(&other);
                    self.send(Message::MsgReject {
                        reason: RejectReason::UNEXPECTED,
                        rejected_type: message_type,
                    });
                    let error = SessionError::UnexpectedBeforeEstablished { message_type };
                    self.terminate_with(SessTermReason::CONTACT_FAILURE, Some(error.clone()));
                    self.close(Some(error));
                }
            }
            return;
        }
        match frame {
            Frame::Message(message) => self.on_message(message),
            Frame::SegmentHeader(header) => self.on_segment_header(header),
            Frame::SegmentData(data) => {
                if let Some(segment) = self.segment
                    && segment.deliver
                {
                    if let Some(incoming) = self.incoming.as_mut() {
                        incoming.received += data.len() as u64;
                    }
                    self.events.push_back(Event::IncomingData { transfer_id: segment.id, data });
                }
            }
            Frame::SegmentEnd => self.on_segment_end(),
        }
        self.maybe_finish_ending();
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Keepalive => {}
            Message::SessInit(_) => {
                self.send(Message::MsgReject {
                    reason: RejectReason::UNEXPECTED,
                    rejected_type: message_type::SESS_INIT,
                });
            }
            Message::SessTerm { flags, reason, .. } => self.on_sess_term(flags, reason),
            Message::MsgReject { reason, rejected_type } => {
                self.events.push_back(Event::Rejected { reason, rejected_type });
            }
            Message::XferAck { transfer_id, length, .. } => self.on_ack(transfer_id, length),
            Message::XferRefuse { reason, transfer_id } => self.on_refuse(reason, transfer_id),
        }
    }

    /// A SESS_TERM from the peer: its reply to ours, or its own, which is answered. (Its REPLY
    /// flag is not needed to tell which.)
    fn on_sess_term(&mut self, flags: u8, reason: SessTermReason) {
        match &mut self.ending {
            Some(ending) if ending.sent => ending.received = true,
            _ => {
                // §6.1: acknowledge with the same content and the REPLY flag.
                self.send(Message::SessTerm { flags: flags | SESS_TERM_REPLY, reason });
                self.ending = Some(Ending { sent: true, received: true });
                self.events.push_back(Event::Ending { reason, by_peer: true });
            }
        }
        if self.state != State::Established {
            self.close(Some(SessionError::TerminatedByPeer(reason)));
            return;
        }
        self.maybe_finish_ending();
    }

    /// Ends the session cleanly (§6.1): SESS_TERM now; transfers in progress may finish; the
    /// connection closes when both sides have sent SESS_TERM and nothing is in progress.
    pub fn terminate(&mut self, reason: SessTermReason) {
        self.terminate_with(reason, None);
    }

    fn terminate_with(&mut self, reason: SessTermReason, error: Option<SessionError>) {
        match self.state {
            State::Closed => return,
            State::AwaitContact if self.role == Role::Passive => {
                // §6.1: our contact header always goes before a SESS_TERM.
                self.send_contact_header();
            }
            _ => {}
        }
        if self.ending.is_none() {
            self.send(Message::SessTerm { flags: 0, reason });
            self.ending = Some(Ending { sent: true, received: false });
            self.events.push_back(Event::Ending { reason, by_peer: false });
        }
        if self.state != State::Established {
            self.close(error.or(Some(SessionError::Terminated(reason))));
            return;
        }
        if error.is_some() {
            self.close(error);
            return;
        }
        // The peer's SESS_TERM reply is awaited this long.
        self.deadline = Some(self.latest + self.config.negotiation_timeout);
        self.maybe_finish_ending();
    }

    /// Closes once both SESS_TERMs are exchanged and no transfer is in progress.
    fn maybe_finish_ending(&mut self) {
        let Some(ending) = self.ending else { return };
        if self.state != State::Established || !(ending.sent && ending.received) {
            return;
        }
        let incoming_busy = self.segment.is_some_and(|s| s.deliver)
            || !self.pending_acks.is_empty()
            || self.incoming.as_ref().is_some_and(|i| !i.finished && i.refused.is_none() && i.received > 0);
        let outgoing_busy = !self.outgoing.is_empty();
        if !incoming_busy && !outgoing_busy {
            self.close(None);
        }
    }

    fn close(&mut self, error: Option<SessionError>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.deadline = None;
        if let Some(incoming) = self.incoming.take()
            && !incoming.finished
            && incoming.refused.is_none()
        {
            self.events.push_back(Event::IncomingAborted {
                transfer_id: incoming.id,
                reason: "the session closed before the transfer ended".into(),
            });
        }
        self.events.push_back(Event::Closed { error });
    }
}

fn frame_type(frame: &Frame) -> u8 {
    match frame {
        Frame::Message(message) => message.message_type(),
        _ => message_type::XFER_SEGMENT,
    }
}

mod incoming;
mod negotiation;
mod outgoing;

use incoming::{CurrentSegment, Incoming, PendingAck};
use negotiation::keepalive_send_interval;
use outgoing::Outgoing;

#[cfg(test)]
mod tests;
