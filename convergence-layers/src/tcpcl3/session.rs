//! The sans-IO TCPCLv3 session (RFC 7242): bytes and the time in, control messages and events
//! out. The driver feeds what it reads with [`Session::handle_input`], writes what
//! [`Session::poll_transmit`] gives between data segments, carries out [`Session::poll_event`]'s
//! events, and calls [`Session::handle_timeout`] at [`Session::poll_timeout`].
//!
//! Acknowledgements (§5.3) are sent in the order segments arrived, and the one for a bundle's
//! last segment only once the driver says the bundle is durable ([`Session::finish_incoming`]):
//! an acknowledged bundle is never lost. Later acknowledgements wait behind it, because the
//! sender matches acknowledgements and refusals to bundles by their order (§5.4).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::wire::{ContactHeader, Message, RefuseCode, ShutdownReason, VERSION, WireError, flags};

/// What this side asks for in its contact header.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// This node's EID, sent in the contact header.
    pub eid: String,
    /// Seconds between KEEPALIVEs asked for; 0: none (§5.6).
    pub keepalive: u16,
    /// Ask for segment acknowledgements (§5.3); without them a bundle counts as sent once
    /// written, as on STCP.
    pub request_ack: bool,
    /// Offer bundle refusal (§5.4; only with acknowledgements).
    pub refusal: bool,
    /// Ask the peer for LENGTH messages (§5.5).
    pub request_length: bool,
    /// The largest bundle taken; a larger one is refused (or, without refusal, ends the session).
    pub max_bundle_size: u64,
    /// How long to wait for the peer's contact header.
    pub header_timeout: Duration,
    /// With no keepalives (either side asked for 0), a connection on which nothing arrives for
    /// this long is shut down ("idle timeout"): no keepalives means no keepalives, not no limit
    /// (design §3.10). With keepalives, twice the interval applies (RFC 7242 §5.6).
    pub idle_timeout: Duration,
}

impl SessionConfig {
    pub fn new(eid: impl Into<String>) -> SessionConfig {
        SessionConfig {
            eid: eid.into(),
            keepalive: 15,
            request_ack: true,
            refusal: true,
            request_length: false,
            max_bundle_size: 16 << 30,
            header_timeout: Duration::from_secs(30),
            idle_timeout: crate::listener::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The parameters both contact headers settle (§4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_eid: String,
    pub peer_version: u8,
    pub ack: bool,
    pub refusal: bool,
    /// The peer asked for LENGTH messages before each bundle.
    pub send_length: bool,
    /// `None`: keepalives disabled (either side asked for 0).
    pub keepalive: Option<Duration>,
}

/// What the driver has to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Established(Negotiated),
    /// A bundle begins arriving. `length` when known: from a LENGTH message, or because its
    /// first segment is also its last.
    IncomingStarted {
        bundle: u64,
        length: Option<u64>,
    },
    IncomingData {
        bundle: u64,
        data: Bytes,
    },
    /// Every segment is in: make it durable, then call [`Session::finish_incoming`].
    IncomingEnded {
        bundle: u64,
    },
    /// The bundle will not be completed (the sender began another, or it was refused): drop
    /// what was written of it.
    IncomingAbandoned {
        bundle: u64,
    },
    /// The session refused the bundle as larger than `max_bundle_size` (its remaining segments
    /// are skipped): drop what was written of it.
    IncomingTooLarge {
        bundle: u64,
    },
    /// The peer acknowledged the whole bundle (or refused it because it has it already).
    Delivered {
        token: u64,
    },
    /// The peer refused the bundle.
    Refused {
        token: u64,
        reason: RefuseCode,
    },
    /// The peer sent SHUTDOWN (§6.1); `delay` is its reconnection delay, 0 meaning never.
    PeerShutdown {
        reason: Option<ShutdownReason>,
        delay: Option<u64>,
    },
    /// The session is over; close the connection once what is queued is written.
    Closed(SessionError),
}

/// The refusal of a bundle larger than `max_bundle_size`: "reason unknown" (RFC 7242 §5.4),
/// not "resources exhausted", which tells the sender to come again (after fragmenting it
/// reactively, which a sender that does not may take as "later") — the bundle will never fit.
const TOO_LARGE: RefuseCode = RefuseCode::Unknown;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the peer sent bytes that are not TCPCLv3: {0}")]
    Wire(#[from] WireError),
    #[error("the peer speaks TCPCL version {0}; this node speaks version 3")]
    VersionMismatch(u8),
    #[error("no contact header from the peer within {0:?}")]
    HeaderTimeout(Duration),
    #[error(
        "nothing heard from the peer for {0:?} (twice the keepalive interval, or the idle limit without keepalives)"
    )]
    KeepaliveExpired(Duration),
    #[error("the peer broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("the peer acknowledged {acked} bytes of a {length}-byte bundle")]
    AckBeyondBundle { acked: u64, length: u64 },
    #[error(
        "a {length}-byte bundle is larger than the {limit} bytes taken, and the peer cannot be told to stop"
    )]
    TooLarge { length: u64, limit: u64 },
    #[error("a received bundle could not be kept ({0}) and the peer cannot be told")]
    CannotRefuse(RefuseCode),
    #[error("the peer shut the session down")]
    PeerShutdown,
    #[error("this node shut the session down")]
    LocalShutdown,
}

/// Why [`Session::begin_send`] could not start a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the session is not established")]
    NotEstablished,
    #[error("the session is ending")]
    Ending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHeader,
    Established,
    /// SHUTDOWN sent, or the session failed: nothing more is read.
    Closed,
}

/// An acknowledgement to send, in order.
#[derive(Debug)]
enum PendingAck {
    Ready(Message),
    /// The last segment's acknowledgement, waiting for the bundle to be durable.
    Final {
        bundle: u64,
        length: u64,
    },
}

/// The bundle arriving now.
#[derive(Debug)]
struct Incoming {
    bundle: u64,
    received: u64,
    /// Refused by this side: its remaining segments are skipped.
    refused: bool,
    /// Not wanted, and the peer cannot be told (no refusal negotiated): its data is dropped but
    /// its segments still acknowledged, so the sender's order of acknowledgements holds.
    discarding: bool,
}

/// A bundle this side sent and the peer has not yet acknowledged whole.
#[derive(Debug)]
struct Outgoing {
    token: u64,
    length: u64,
    acked: u64,
}

/// Acknowledgements queued past this stop the reading ([`Session::wants_input`]).
const MAX_PENDING_ACKS: usize = 4096;

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    input: BytesMut,
    /// Bytes of the current data segment still to come.
    segment_left: u64,
    /// The length of the segment being read, and whether it ends its bundle.
    segment_length: u64,
    segment_ends: bool,
    incoming: Option<Incoming>,
    next_incoming: u64,
    /// The length a LENGTH message announced for the next bundle.
    announced: Option<u64>,
    acks: VecDeque<PendingAck>,
    outgoing: VecDeque<Outgoing>,
    transmit: VecDeque<Bytes>,
    events: VecDeque<Event>,
    shutdown_sent: bool,
    started: Instant,
    last_received: Instant,
    last_sent: Instant,
}

impl Session {
    /// A session whose contact header is the first thing to transmit.
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        let mut header_flags = 0;
        if config.request_ack {
            header_flags |= flags::REQUEST_ACK;
            if config.refusal {
                header_flags |= flags::REFUSAL;
            }
        }
        if config.request_length {
            header_flags |= flags::REQUEST_LENGTH;
        }
        let header = ContactHeader {
            version: VERSION,
            flags: header_flags,
            keepalive: config.keepalive,
            eid: config.eid.clone(),
        };
        Session {
            config,
            state: State::AwaitingHeader,
            negotiated: None,
            input: BytesMut::new(),
            segment_left: 0,
            segment_length: 0,
            segment_ends: false,
            incoming: None,
            next_incoming: 0,
            announced: None,
            acks: VecDeque::new(),
            outgoing: VecDeque::new(),
            transmit: VecDeque::from([header.encode()]),
            events: VecDeque::new(),
            shutdown_sent: false,
            started: now,
            last_received: now,
            last_sent: now,
        }
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Bundles sent and not yet acknowledged (or, without acknowledgements, not yet written).
    pub fn unacknowledged(&self) -> usize {
        self.outgoing.len()
    }

    /// Whether a bundle from the peer is part-way in (its next bytes are awaited).
    pub fn receiving(&self) -> bool {
        self.incoming.is_some() || self.segment_left > 0
    }

    /// Whether to read more: false while many acknowledgements wait behind a bundle not yet
    /// durable, or once the session is closed.
    pub fn wants_input(&self) -> bool {
        self.state != State::Closed && self.acks.len() < MAX_PENDING_ACKS
    }

    /// The next control message to write (between data segments, never inside one).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        while let Some(front) = self.acks.front() {
            match front {
                PendingAck::Ready(message) => {
                    let bytes = message.encode();
                    self.acks.pop_front();
                    self.transmit.push_back(bytes);
                }
                PendingAck::Final { .. } => break,
            }
        }
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingHeader => Some(self.started + self.config.header_timeout),
            State::Established => match self.negotiated.as_ref()?.keepalive {
                Some(interval) => Some((self.last_sent + interval).min(self.last_received + 2 * interval)),
                None => Some(self.last_received + self.config.idle_timeout),
            },
            State::Closed => None,
        }
    }

    /// Something was written to the peer (a message or segment data).
    pub fn on_transmitted(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::AwaitingHeader => {
                if now >= self.started + self.config.header_timeout {
                    self.fail(SessionError::HeaderTimeout(self.config.header_timeout), None);
                }
            }
            State::Established => {
                let Some(negotiated) = self.negotiated.as_ref() else { return };
                let Some(interval) = negotiated.keepalive else {
                    let idle = self.config.idle_timeout;
                    if now >= self.last_received + idle {
                        self.fail(
                            SessionError::KeepaliveExpired(idle),
                            Some(Message::Shutdown {
                                reason: Some(ShutdownReason::IdleTimeout),
                                delay: None,
                            }),
                        );
                    }
                    return;
                };
                if now >= self.last_received + 2 * interval {
                    self.fail(
                        SessionError::KeepaliveExpired(2 * interval),
                        Some(Message::Shutdown { reason: Some(ShutdownReason::IdleTimeout), delay: None }),
                    );
                } else if now >= self.last_sent + interval {
                    self.transmit.push_back(Message::Keepalive.encode());
                    self.last_sent = now;
                }
            }
            State::Closed => {}
        }
    }

    /// Bytes read from the peer.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.handle_input_owned(BytesMut::from(data), now);
    }

    /// As [`Session::handle_input`], taking the buffer: when nothing is left over from the last
    /// read, segment data is handed on as slices of it, without a copy.
    pub fn handle_input_owned(&mut self, data: BytesMut, now: Instant) {
        if self.state == State::Closed || data.is_empty() {
            return;
        }
        self.last_received = now;
        if self.input.is_empty() {
            self.input = data;
        } else {
            self.input.extend_from_slice(&data);
        }
        if let Err(error) = self.process() {
            self.fail(error, None);
        }
    }

    fn process(&mut self) -> Result<(), SessionError> {
        if self.state == State::AwaitingHeader {
            let Some((header, used)) = ContactHeader::decode(&self.input)? else { return Ok(()) };
            self.input.advance(used);
            self.established(header)?;
        }
        while self.state == State::Established && !self.input.is_empty() {
            if self.segment_left > 0 {
                let take = self.segment_left.min(self.input.len() as u64) as usize;
                let data = self.input.split_to(take).freeze();
                self.segment_left -= take as u64;
                if let Some(incoming) = self.incoming.as_ref().filter(|i| !i.refused && !i.discarding) {
                    self.events.push_back(Event::IncomingData { bundle: incoming.bundle, data });
                }
                if self.segment_left == 0 {
                    self.segment_done();
                }
                continue;
            }
            let Some((message, used)) = Message::decode(&self.input)? else { break };
            self.input.advance(used);
            self.handle_message(message)?;
        }
        if self.input.is_empty() {
            // Do not keep a large buffer for an idle session.
            self.input = BytesMut::new();
        }
        Ok(())
    }

    fn established(&mut self, header: ContactHeader) -> Result<(), SessionError> {
        if header.version < VERSION {
            // §4.2: a lower version may be refused; this node speaks only version 3.
            return Err(SessionError::VersionMismatch(header.version));
        }
        let ours = &self.config;
        let ack = ours.request_ack && header.flags & flags::REQUEST_ACK != 0;
        let refusal = ack && ours.refusal && header.flags & flags::REFUSAL != 0;
        let keepalive = (ours.keepalive > 0 && header.keepalive > 0)
            .then(|| Duration::from_secs(u64::from(ours.keepalive.min(header.keepalive))));
        let negotiated = Negotiated {
            peer_eid: header.eid,
            peer_version: header.version,
            ack,
            refusal,
            send_length: header.flags & flags::REQUEST_LENGTH != 0,
            keepalive,
        };
        self.negotiated = Some(negotiated.clone());
        self.state = State::Established;
        self.events.push_back(Event::Established(negotiated));
        Ok(())
    }

    fn handle_message(&mut self, message: Message) -> Result<(), SessionError> {
        match message {
            Message::DataSegment { start, end, length } => self.segment_header(start, end, length),
            Message::AckSegment { length } => {
                let Some(front) = self.outgoing.front_mut() else {
                    return Err(SessionError::Protocol("an ACK_SEGMENT with no bundle sent"));
                };
                if length > front.length {
                    return Err(SessionError::AckBeyondBundle { acked: length, length: front.length });
                }
                if length < front.acked {
                    return Err(SessionError::Protocol(
                        "an ACK_SEGMENT acknowledged less than the one before",
                    ));
                }
                front.acked = length;
                if length == front.length {
                    let token = front.token;
                    self.outgoing.pop_front();
                    self.events.push_back(Event::Delivered { token });
                }
                Ok(())
            }
            Message::RefuseBundle { reason } => {
                let Some(front) = self.outgoing.pop_front() else {
                    return Err(SessionError::Protocol("a REFUSE_BUNDLE with no bundle sent"));
                };
                self.events.push_back(match reason {
                    RefuseCode::Completed => Event::Delivered { token: front.token },
                    reason => Event::Refused { token: front.token, reason },
                });
                Ok(())
            }
            Message::Keepalive => Ok(()),
            Message::Shutdown { reason, delay } => {
                self.events.push_back(Event::PeerShutdown { reason, delay });
                self.fail(SessionError::PeerShutdown, Some(Message::Shutdown { reason: None, delay: None }));
                Ok(())
            }
            Message::Length { length } => {
                // A bundle announced too large is refused at its first segment rather than at
                // once: a refusal sent now could cross a bundle already on its way, and the
                // sender matches refusals to bundles by their order (§5.4, §5.5).
                self.announced = Some(length);
                Ok(())
            }
        }
    }

    fn segment_header(&mut self, start: bool, end: bool, length: u64) -> Result<(), SessionError> {
        let limit = self.config.max_bundle_size;
        let refusal = self.negotiated.as_ref().is_some_and(|n| n.refusal);
        if start {
            if let Some(previous) = self.incoming.take() {
                // The sender began another bundle without ending this one (after a refusal
                // crossed it, or giving up on it).
                if !previous.refused {
                    self.events.push_back(Event::IncomingAbandoned { bundle: previous.bundle });
                }
            }
            let bundle = self.next_incoming;
            self.next_incoming += 1;
            let announced = self.announced.take();
            // Its LENGTH said it is too large: refused now, at its first segment.
            let too_large = announced.is_some_and(|a| a > limit);
            if too_large && !refusal {
                return Err(SessionError::TooLarge { length: announced.unwrap_or(0), limit });
            }
            self.incoming = Some(Incoming { bundle, received: 0, refused: too_large, discarding: false });
            if too_large {
                self.events.push_back(Event::IncomingTooLarge { bundle });
                self.acks.push_back(PendingAck::Ready(Message::RefuseBundle { reason: TOO_LARGE }));
            } else if length <= limit {
                let length = if end { Some(length) } else { announced };
                self.events.push_back(Event::IncomingStarted { bundle, length });
            }
        } else if self.incoming.is_none() {
            return Err(SessionError::Protocol("a DATA_SEGMENT continued a bundle that was never started"));
        }
        let incoming = self.incoming.as_mut().expect("set above");
        let total = incoming.received.saturating_add(length);
        if !incoming.refused && total > limit {
            if !refusal {
                // Its start was never announced, so there is nothing to abandon.
                incoming.refused |= start;
                return Err(SessionError::TooLarge { length: total, limit });
            }
            incoming.refused = true;
            let bundle = incoming.bundle;
            self.events.push_back(Event::IncomingTooLarge { bundle });
            self.acks.push_back(PendingAck::Ready(Message::RefuseBundle { reason: TOO_LARGE }));
        }
        self.segment_left = length;
        self.segment_length = length;
        self.segment_ends = end;
        if length == 0 {
            self.segment_done();
        }
        Ok(())
    }

    /// The current segment's last byte is in.
    fn segment_done(&mut self) {
        let ack = self.negotiated.as_ref().is_some_and(|n| n.ack);
        let end = self.segment_ends;
        let Some(incoming) = self.incoming.as_mut() else { return };
        let bundle = incoming.bundle;
        let refused = incoming.refused;
        if refused {
            if end {
                self.incoming = None;
            }
            return;
        }
        incoming.received = incoming.received.saturating_add(self.segment_length);
        let received = incoming.received;
        if incoming.discarding {
            if end {
                self.incoming = None;
            }
            if ack {
                self.acks.push_back(PendingAck::Ready(Message::AckSegment { length: received }));
            }
            return;
        }
        if end {
            self.incoming = None;
            self.events.push_back(Event::IncomingEnded { bundle });
            if ack {
                self.acks.push_back(PendingAck::Final { bundle, length: received });
            }
        } else if ack {
            self.acks.push_back(PendingAck::Ready(Message::AckSegment { length: received }));
        }
    }

    /// The driver has made bundle `bundle` durable (`Ok`) or could not (`Err`, the reason to
    /// give the peer). Releases its acknowledgement, or sends a refusal in its place; without
    /// refusal, a bundle that could not be kept for a passing reason ends the session, so the
    /// sender keeps it.
    pub fn finish_incoming(&mut self, bundle: u64, result: Result<(), RefuseCode>) {
        let Some(at) =
            self.acks.iter().position(|a| matches!(a, PendingAck::Final { bundle: b, .. } if *b == bundle))
        else {
            // Without acknowledgements there is nothing to release; nor for a bundle refused
            // earlier.
            return;
        };
        let PendingAck::Final { length, .. } = self.acks[at] else { return };
        let refusal = self.negotiated.as_ref().is_some_and(|n| n.refusal);
        self.acks[at] = PendingAck::Ready(match result {
            Ok(()) => Message::AckSegment { length },
            Err(reason) if refusal => Message::RefuseBundle { reason },
            Err(RefuseCode::Completed) => Message::AckSegment { length },
            Err(reason @ (RefuseCode::NoResources | RefuseCode::Retransmit)) => {
                // Not acknowledged: the sender keeps the bundle and sends it again later.
                self.acks.truncate(at);
                self.fail(
                    SessionError::CannotRefuse(reason),
                    Some(Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: None }),
                );
                return;
            }
            // An unacceptable bundle: acknowledged and dropped (it would be refused again).
            Err(_) => Message::AckSegment { length },
        });
    }

    /// This side gives up on the bundle arriving now (it cannot be stored): its remaining
    /// segments are skipped, and the peer told when refusal was negotiated.
    pub fn refuse_incoming(&mut self, bundle: u64, reason: RefuseCode) {
        let refusal = self.negotiated.as_ref().is_some_and(|n| n.refusal);
        match self.incoming.as_mut() {
            Some(incoming) if incoming.bundle == bundle && !incoming.refused => {
                if !refusal {
                    let passing = matches!(reason, RefuseCode::NoResources | RefuseCode::Retransmit);
                    if passing && self.negotiated.as_ref().is_some_and(|n| n.ack) {
                        // Not acknowledged: the sender keeps the bundle and sends it again.
                        self.fail(
                            SessionError::CannotRefuse(reason),
                            Some(Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: None }),
                        );
                    } else {
                        // An unacceptable bundle (it would be refused again), or no
                        // acknowledgements to withhold: dropped, its segments acknowledged.
                        incoming.discarding = true;
                    }
                    return;
                }
                incoming.refused = true;
                self.acks.push_back(PendingAck::Ready(Message::RefuseBundle { reason }));
            }
            // Already complete: decided by finish_incoming.
            _ => self.finish_incoming(bundle, Err(reason)),
        }
    }

    /// Starts sending a bundle of `length` bytes known to the driver as `token`: answers the
    /// LENGTH message to write before its first segment, if the peer asked for one.
    pub fn begin_send(&mut self, token: u64, length: u64) -> Result<Option<Bytes>, SendError> {
        match self.state {
            State::Established if !self.shutdown_sent => {}
            State::AwaitingHeader => return Err(SendError::NotEstablished),
            _ => return Err(SendError::Ending),
        }
        self.outgoing.push_back(Outgoing { token, length, acked: 0 });
        let send_length = self.negotiated.as_ref().is_some_and(|n| n.send_length);
        Ok(send_length.then(|| Message::Length { length }.encode()))
    }

    /// The head of a data segment.
    pub fn segment_head(start: bool, end: bool, length: u64) -> Bytes {
        Message::DataSegment { start, end, length }.encode()
    }

    /// The bundle `token` is written whole. Without acknowledgements that is its delivery;
    /// with them, its acknowledgement is (§5.3).
    pub fn written(&mut self, token: u64) {
        if self.negotiated.as_ref().is_some_and(|n| n.ack) {
            return;
        }
        if let Some(at) = self.outgoing.iter().position(|o| o.token == token) {
            self.outgoing.remove(at);
            self.events.push_back(Event::Delivered { token });
        }
    }

    /// Ends the session with SHUTDOWN (§6.1), after the acknowledgements that are ready.
    pub fn shutdown(&mut self, reason: Option<ShutdownReason>, delay: Option<u64>) {
        if self.state == State::Closed {
            return;
        }
        self.fail(SessionError::LocalShutdown, Some(Message::Shutdown { reason, delay }));
    }

    fn fail(&mut self, error: SessionError, message: Option<Message>) {
        if self.state == State::Closed {
            return;
        }
        // The ready acknowledgements go first (§6.1: acknowledge what was received, then shut
        // down); one waiting for durability is never sent.
        while let Some(PendingAck::Ready(_)) = self.acks.front() {
            if let Some(PendingAck::Ready(m)) = self.acks.pop_front() {
                self.transmit.push_back(m.encode());
            }
        }
        self.acks.clear();
        let message = match &error {
            SessionError::VersionMismatch(_) => {
                Some(Message::Shutdown { reason: Some(ShutdownReason::VersionMismatch), delay: None })
            }
            // §6.1: a reason unless the peer's header lacked the magic.
            SessionError::Wire(WireError::BadMagic) => None,
            SessionError::Wire(_) | SessionError::Protocol(_) | SessionError::AckBeyondBundle { .. } => {
                Some(Message::Shutdown { reason: Some(ShutdownReason::Other(0xff)), delay: None })
            }
            SessionError::TooLarge { .. } => {
                Some(Message::Shutdown { reason: Some(ShutdownReason::Busy), delay: None })
            }
            _ => message,
        };
        // Our contact header is always the first thing transmitted, so a SHUTDOWN follows it
        // (§6.1); the driver writes control messages only between whole segments.
        if let Some(message) = message
            && !self.shutdown_sent
        {
            self.shutdown_sent = true;
            self.transmit.push_back(message.encode());
        }
        if let Some(incoming) = self.incoming.take()
            && !incoming.refused
        {
            self.events.push_back(Event::IncomingAbandoned { bundle: incoming.bundle });
        }
        self.state = State::Closed;
        self.input = BytesMut::new();
        self.events.push_back(Event::Closed(error));
    }
}
