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
    #[error("the peer sent nothing for {0:?} (twice the keepalive interval)")]
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

#[derive(Debug)]
struct Outgoing {
    id: u64,
    total: u64,
    sent: u64,
}

#[derive(Debug)]
struct Incoming {
    id: u64,
    received: u64,
    total: Option<u64>,
    /// Refused by this side: later segments are refused again and dropped (§5.2.4).
    refused: Option<RefuseReason>,
    /// The END segment has been received.
    finished: bool,
}

/// The segment being decoded: whether its data goes to the agent.
#[derive(Debug, Clone, Copy)]
struct CurrentSegment {
    id: u64,
    flags: u8,
    deliver: bool,
}

#[derive(Debug, Clone, Copy)]
struct PendingAck {
    id: u64,
    flags: u8,
    cumulative: u64,
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

    fn our_contact_header(&self) -> ContactHeader {
        let flags = if self.config.tls == TlsPolicy::Off { 0 } else { super::wire::CAN_TLS };
        ContactHeader { version: VERSION, flags }
    }

    fn send_contact_header(&mut self) {
        let header = self.our_contact_header().encode();
        self.output.extend_from_slice(&header);
    }

    fn send(&mut self, message: Message) {
        message.encode(&mut self.output);
    }

    fn our_sess_init(&self) -> Message {
        Message::SessInit(SessInit {
            keepalive: self.config.keepalive,
            segment_mru: self.config.segment_mru,
            transfer_mru: self.config.transfer_mru,
            node_id: self.config.node_id.clone(),
            extensions: Vec::new(),
        })
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
        if let Some(negotiated) = &self.negotiated
            && !negotiated.keepalive.is_zero()
        {
            let keepalive = self.last_sent + keepalive_send_interval(negotiated.keepalive);
            let idle = self.last_received + negotiated.keepalive * 2;
            next = Some(next.map_or(keepalive.min(idle), |n| n.min(keepalive).min(idle)));
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

    /// The TLS handshake succeeded; `certified_node_ids` are the node IDs (URI subject
    /// alternative names) of the peer's certificate, empty if it presented none (§4.4.4.3).
    pub fn tls_established(&mut self, certified_node_ids: Vec<String>, now: Instant) {
        self.latest = self.latest.max(now);
        if self.state != State::AwaitTls {
            return;
        }
        self.certified_node_ids = Some(certified_node_ids);
        self.state = State::AwaitSessInit;
        self.deadline = Some(now + self.config.negotiation_timeout);
        if self.role == Role::Active {
            let init = self.our_sess_init();
            self.send(init);
        }
        // Anything the peer sent after its handshake is TCPCL again.
        self.process(now);
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

    fn on_contact_header(&mut self, header: ContactHeader, now: Instant) {
        if header.version != VERSION {
            let error = SessionError::VersionMismatch { theirs: header.version };
            if self.role == Role::Passive {
                // §4.3: send our contact header, then end with "version mismatch".
                self.send_contact_header();
                self.send(Message::SessTerm { flags: 0, reason: SessTermReason::VERSION_MISMATCH });
            }
            self.close(Some(error));
            return;
        }
        if self.role == Role::Passive {
            self.send_contact_header();
        }
        let ours = self.our_contact_header();
        let enable_tls = ours.can_tls() && header.can_tls();
        if self.config.tls == TlsPolicy::Required && !enable_tls {
            // §4.3: an unacceptable Enable TLS → SESS_TERM "contact failure".
            self.send(Message::SessTerm { flags: 0, reason: SessTermReason::CONTACT_FAILURE });
            self.close(Some(SessionError::TlsRequired));
            return;
        }
        self.tls = enable_tls;
        if enable_tls {
            self.state = State::AwaitTls;
            self.events.push_back(Event::StartTls);
            return;
        }
        self.state = State::AwaitSessInit;
        self.deadline = Some(now + self.config.negotiation_timeout);
        if self.role == Role::Active {
            let init = self.our_sess_init();
            self.send(init);
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

    /// Whether a peer's SESS_INIT node ID names this node: a peer pretending to be us (or our
    /// own node reached through a loop) is no neighbour.
    fn claims_our_node_id(&self, claimed: &str) -> bool {
        match (claimed.parse::<bpa::bundle::Eid>(), self.config.node_id.parse::<bpa::bundle::Eid>()) {
            (Ok(theirs), Ok(ours)) => !ours.is_null() && theirs.node_id() == ours.node_id(),
            _ => false,
        }
    }

    fn on_sess_init(&mut self, init: SessInit, now: Instant) {
        let unacceptable = |why: String| Some(SessionError::Unacceptable(why));
        let problem = if init.segment_mru == 0 {
            unacceptable("its segment MRU is 0: no segment could be sent".into())
        } else if init.transfer_mru == 0 {
            unacceptable("its transfer MRU is 0: no bundle could be sent".into())
        } else if let Some(item) = init.extensions.iter().find(|i| i.is_critical()) {
            // §4.8: no session extension is known here, so a critical one ends the session.
            unacceptable(format!(
                "it carries critical session extension type {:#06x}, unknown here",
                item.item_type
            ))
        } else if init.node_id.len() > MAX_NODE_ID_LEN {
            unacceptable(format!(
                "its node ID {:?} is {} bytes; at most {MAX_NODE_ID_LEN} are accepted",
                shown(&init.node_id),
                init.node_id.len()
            ))
        } else if !init.node_id.is_empty() && init.node_id.parse::<bpa::bundle::Eid>().is_err() {
            unacceptable(format!("its node ID {:?} is not an endpoint ID", shown(&init.node_id)))
        } else if self.claims_our_node_id(&init.node_id) {
            unacceptable(format!("it claims this node's own node ID {:?}", shown(&init.node_id)))
        } else {
            None
        };
        if let Some(error) = problem {
            self.terminate_with(SessTermReason::CONTACT_FAILURE, Some(error.clone()));
            self.close(Some(error));
            return;
        }
        let certified = self.certified_node_ids.clone().unwrap_or_default();
        let authenticated = self.tls && !init.node_id.is_empty() && certified.contains(&init.node_id);
        if self.tls && self.config.require_node_id_authentication && !authenticated {
            let error = SessionError::NodeIdNotAuthenticated {
                claimed: shown(&init.node_id),
                certified: certified.iter().map(|id| shown(id)).collect(),
            };
            self.terminate_with(SessTermReason::CONTACT_FAILURE, Some(error.clone()));
            self.close(Some(error));
            return;
        }
        // §4.6: the passive side answers the active side's SESS_INIT — only once it accepts it,
        // so a refused peer learns nothing more of this node than the SESS_TERM.
        if self.role == Role::Passive {
            let ours = self.our_sess_init();
            self.send(ours);
        }
        let keepalive = Duration::from_secs(u64::from(init.keepalive.min(self.config.keepalive)));
        let negotiated = Negotiated {
            peer_node_id: init.node_id,
            node_id_authenticated: authenticated,
            tls: self.tls,
            keepalive,
            segment_mtu: init.segment_mru,
            transfer_mtu: init.transfer_mru,
        };
        self.state = State::Established;
        self.deadline = None;
        self.last_received = now;
        self.negotiated = Some(negotiated.clone());
        self.events.push_back(Event::Established(negotiated));
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

    /// The outgoing transfer an XFER_ACK or XFER_REFUSE names. One this session never sent is
    /// rejected as unexpected; one it finished lately (a late ack, a refusal crossing our last
    /// segment) is ignored.
    fn outgoing_named(&mut self, transfer_id: u64, rejected_type: u8) -> Option<usize> {
        let index = self.outgoing.iter().position(|t| t.id == transfer_id);
        if index.is_none() && !self.recently_finished.contains(&transfer_id) {
            self.send(Message::MsgReject { reason: RejectReason::UNEXPECTED, rejected_type });
        }
        index
    }

    fn on_ack(&mut self, transfer_id: u64, length: u64) {
        let Some(index) = self.outgoing_named(transfer_id, message_type::XFER_ACK) else { return };
        let transfer = &self.outgoing[index];
        if length > transfer.sent {
            // Acknowledging bytes never sent: the peer cannot comply with this transfer.
            self.send(Message::MsgReject {
                reason: RejectReason::UNSUPPORTED,
                rejected_type: message_type::XFER_ACK,
            });
            return;
        }
        // The acknowledgement of the whole transfer completes it. Its END flag is not required:
        // some peers (dtn7-rs) send every XFER_ACK with flags 0 (design §8).
        if length == transfer.total && transfer.sent == transfer.total {
            self.outgoing.remove(index);
            self.remember_finished(transfer_id);
            self.events.push_back(Event::TransferAcked { transfer_id });
        }
    }

    fn on_refuse(&mut self, reason: RefuseReason, transfer_id: u64) {
        let Some(index) = self.outgoing_named(transfer_id, message_type::XFER_REFUSE) else { return };
        // Forgotten at once (a long session refuses many transfers); remembered among the
        // recent IDs so a refusal repeated for a crossing segment, or a late ack, is no error.
        self.outgoing.remove(index);
        self.remember_finished(transfer_id);
        if self.recently_refused.len() == RECENT_IDS {
            self.recently_refused.pop_front();
        }
        self.recently_refused.push_back((transfer_id, reason));
        self.events.push_back(Event::TransferRefused { transfer_id, reason });
    }

    fn remember_finished(&mut self, id: u64) {
        if self.recently_finished.len() == RECENT_IDS {
            self.recently_finished.pop_front();
        }
        self.recently_finished.push_back(id);
    }

    fn on_segment_header(&mut self, header: SegmentHeader) {
        let id = header.transfer_id;
        let discard = CurrentSegment { id, flags: header.flags, deliver: false };
        if header.data_length > self.config.segment_mru {
            // A peer that ignores the MRU it was given cannot be trusted with our buffers: the
            // session ends (resource exhaustion) and the segment's data is not taken.
            let error =
                SessionError::SegmentOverMru { length: header.data_length, mru: self.config.segment_mru };
            self.segment = Some(discard);
            self.terminate_with(SessTermReason::RESOURCE_EXHAUSTION, Some(error));
            return;
        }
        if header.is_start() {
            if self.ending.is_some() {
                // §6.1: no new incoming transfer while ending.
                self.send(Message::XferRefuse { reason: RefuseReason::SESSION_TERMINATING, transfer_id: id });
                self.segment = Some(discard);
                return;
            }
            if let Some(previous) = self.incoming.take()
                && !previous.finished
                && previous.refused.is_none()
            {
                self.pending_acks.retain(|a| a.id != previous.id);
                self.events.push_back(Event::IncomingAborted {
                    transfer_id: previous.id,
                    reason: format!("the peer started transfer {id} before finishing it"),
                });
            }
            let total = match self.transfer_extensions(header.extensions.clone()) {
                Ok(total) => total,
                Err(reason) => {
                    self.refuse_new(id, reason);
                    return;
                }
            };
            if total.is_some_and(|t| t > self.config.transfer_mru) {
                self.refuse_new(id, RefuseReason::NOT_ACCEPTABLE);
                return;
            }
            self.incoming = Some(Incoming { id, received: 0, total, refused: None, finished: false });
            self.events.push_back(Event::IncomingStarted { transfer_id: id, total_length: total });
        }
        let transfer_mru = self.config.transfer_mru;
        let Some(incoming) = self.incoming.as_mut().filter(|i| i.id == id && !i.finished) else {
            // A continuation of no transfer in progress.
            self.send(Message::MsgReject {
                reason: RejectReason::UNEXPECTED,
                rejected_type: message_type::XFER_SEGMENT,
            });
            self.segment = Some(discard);
            return;
        };
        if let Some(reason) = incoming.refused {
            // §5.2.4: segments that crossed the refusal are refused too.
            self.send(Message::XferRefuse { reason, transfer_id: id });
            self.segment = Some(discard);
            return;
        }
        let after = incoming.received.saturating_add(header.data_length);
        let limit = incoming.total.unwrap_or(transfer_mru).min(transfer_mru);
        if after > limit {
            // More than announced (§5.2.5.1) or than this side accepts.
            self.refuse(id, RefuseReason::NOT_ACCEPTABLE);
            self.segment = Some(discard);
            return;
        }
        self.segment = Some(CurrentSegment { id, flags: header.flags, deliver: true });
    }

    /// Refuses a transfer that had not started.
    fn refuse_new(&mut self, id: u64, reason: RefuseReason) {
        self.send(Message::XferRefuse { reason, transfer_id: id });
        self.incoming =
            Some(Incoming { id, received: 0, total: None, refused: Some(reason), finished: false });
        self.segment = Some(CurrentSegment { id, flags: 0, deliver: false });
    }

    /// The Transfer Length, if announced; a refusal reason for an unusable extension list.
    fn transfer_extensions(&self, list: Bytes) -> Result<Option<u64>, RefuseReason> {
        let items = ExtensionItem::decode_list(list).map_err(|_| RefuseReason::EXTENSION_FAILURE)?;
        let mut total = None;
        for item in items {
            match item.item_type {
                TRANSFER_LENGTH_EXTENSION => {
                    let value: [u8; 8] =
                        item.value.as_ref().try_into().map_err(|_| RefuseReason::EXTENSION_FAILURE)?;
                    if total.replace(u64::from_be_bytes(value)).is_some() {
                        // §5.2.5.1: at most one Transfer Length item.
                        return Err(RefuseReason::EXTENSION_FAILURE);
                    }
                }
                _ if item.is_critical() => return Err(RefuseReason::EXTENSION_FAILURE),
                _ => {}
            }
        }
        Ok(total)
    }

    fn on_segment_end(&mut self) {
        let Some(segment) = self.segment.take() else { return };
        if !segment.deliver {
            return;
        }
        let Some(incoming) = self.incoming.as_mut() else { return };
        let end = segment.flags & segment_flags::END != 0;
        if end && incoming.total.is_some_and(|t| t != incoming.received) {
            // §5.2.5.1: the data differs from the announced Total Length.
            let (announced, received) = (incoming.total.unwrap_or(0), incoming.received);
            self.refuse(segment.id, RefuseReason::NOT_ACCEPTABLE);
            self.events.push_back(Event::IncomingAborted {
                transfer_id: segment.id,
                reason: format!(
                    "{received} bytes came but the Transfer Length extension announced {announced}"
                ),
            });
            return;
        }
        if end {
            incoming.finished = true;
        }
        self.pending_acks.push_back(PendingAck {
            id: segment.id,
            flags: segment.flags,
            cumulative: incoming.received,
        });
        self.events.push_back(Event::IncomingSegmentEnd { transfer_id: segment.id, end });
    }

    /// The agent has processed the oldest complete segment of `transfer_id` (for the END
    /// segment: the bundle is durable): its XFER_ACK goes out (§5.2.3).
    pub fn acknowledge_segment(&mut self, transfer_id: u64) {
        if let Some(index) = self.pending_acks.iter().position(|a| a.id == transfer_id) {
            let Some(ack) = self.pending_acks.remove(index) else { return };
            self.send(Message::XferAck { flags: ack.flags, transfer_id: ack.id, length: ack.cumulative });
            self.maybe_finish_ending();
        }
    }

    /// The agent does not want the incoming transfer (store full → "no resources", a bundle it
    /// has → "completed", an invalid one → "not acceptable"). Its later segments are refused.
    pub fn refuse(&mut self, transfer_id: u64, reason: RefuseReason) {
        self.send(Message::XferRefuse { reason, transfer_id });
        self.pending_acks.retain(|a| a.id != transfer_id);
        if let Some(incoming) = self.incoming.as_mut().filter(|i| i.id == transfer_id) {
            incoming.refused = Some(reason);
            incoming.finished = false;
        }
        if let Some(segment) = self.segment.as_mut().filter(|s| s.id == transfer_id) {
            segment.deliver = false;
        }
        self.maybe_finish_ending();
    }

    /// Starts an outgoing transfer of `length` bytes; its segments then come from
    /// [`Session::segment`].
    pub fn start_transfer(&mut self, length: u64) -> Result<u64, SendError> {
        let negotiated = self.negotiated.as_ref().filter(|_| self.state == State::Established);
        let Some(negotiated) = negotiated else { return Err(SendError::NotEstablished) };
        if self.ending.is_some() {
            return Err(SendError::Ending);
        }
        if length == 0 {
            return Err(SendError::Empty);
        }
        if length > negotiated.transfer_mtu && !self.config.ignore_peer_transfer_mru {
            return Err(SendError::OverTransferMtu { length, mtu: negotiated.transfer_mtu });
        }
        if let Some(current) = self.outgoing.back().filter(|t| t.sent < t.total) {
            return Err(SendError::Interleaving(current.id));
        }
        let Some(id) = self.next_transfer_id else {
            // §5.2.1: the ID space is exhausted → end the session.
            self.terminate_with(
                SessTermReason::RESOURCE_EXHAUSTION,
                Some(SessionError::TransferIdsExhausted),
            );
            return Err(SendError::Ending);
        };
        self.next_transfer_id = id.checked_add(1);
        self.outgoing.push_back(Outgoing { id, total: length, sent: 0 });
        Ok(id)
    }

    /// The next segment of transfer `transfer_id`, carrying at most `available` bytes (what the
    /// driver has read of the bundle): `head` is to be written, then `data_length` bytes of the
    /// bundle, with nothing from the session in between.
    pub fn segment(&mut self, transfer_id: u64, available: u64) -> Result<SegmentToSend, SendError> {
        let negotiated = self.negotiated.as_ref().ok_or(SendError::NotEstablished)?;
        let max = negotiated.segment_mtu.min(self.config.max_segment_size).max(1);
        if let Some(&(_, reason)) = self.recently_refused.iter().find(|(id, _)| *id == transfer_id) {
            return Err(SendError::Refused { transfer_id, reason });
        }
        let transfer = self
            .outgoing
            .iter_mut()
            .find(|t| t.id == transfer_id && t.sent < t.total)
            .ok_or(SendError::UnknownTransfer(transfer_id))?;
        let left = transfer.total - transfer.sent;
        let data_length = left.min(available).min(max);
        let start = transfer.sent == 0;
        let end = data_length == left;
        let mut flags = 0;
        if start {
            flags |= segment_flags::START;
        }
        if end {
            flags |= segment_flags::END;
        }
        // §5.2.5.1: announce the length unless the transfer is one segment.
        let extensions =
            if start && !end { vec![ExtensionItem::transfer_length(transfer.total)] } else { Vec::new() };
        transfer.sent += data_length;
        encode_segment_header(flags, transfer_id, &extensions, data_length, &mut self.output);
        Ok(SegmentToSend { head: self.output.split().freeze(), data_length, end })
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

/// Keepalives go out at half the negotiated interval: some peers (dtn7-rs) end a session after
/// one interval without a message rather than two (design §8).
fn keepalive_send_interval(keepalive: Duration) -> Duration {
    keepalive / 2
}

fn frame_type(frame: &Frame) -> u8 {
    match frame {
        Frame::Message(message) => message.message_type(),
        _ => message_type::XFER_SEGMENT,
    }
}

#[cfg(test)]
mod tests;
