//! TCPCLv4 on the wire (RFC 9174 §4.2, §4.5–§4.8, §5, §6.1): the contact header, every message,
//! their encodings, and an incremental decoder that never holds more than one message header —
//! segment data is handed on in the pieces it arrives in, so a segment of any length costs no
//! memory here (design §3.4).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The contact header's magic (§4.2).
pub const MAGIC: &[u8; 4] = b"dtn!";
/// The protocol version implemented here.
pub const VERSION: u8 = 4;
/// The registered TCPCL port (§8.1).
pub const DEFAULT_PORT: u16 = 4556;
/// Length of the contact header.
pub const CONTACT_HEADER_LEN: usize = 6;
/// Contact header flag: the sender can use TLS (§4.2, Table 1).
pub const CAN_TLS: u8 = 0x01;
/// Extension item flag: the receiver must understand the item (§4.8, §5.2.5).
pub const EXTENSION_CRITICAL: u8 = 0x01;
/// Transfer extension type of the Transfer Length extension (§5.2.5.1, §8.4).
pub const TRANSFER_LENGTH_EXTENSION: u16 = 0x0001;
/// Longest list of session or transfer extension items accepted: the lists are held whole
/// while a message is decoded, so their length is bounded before anything is allocated.
pub const MAX_EXTENSION_ITEMS_LEN: u32 = 64 * 1024;

/// Message type codes (§4.5, Table 2).
pub mod message_type {
    pub const XFER_SEGMENT: u8 = 0x01;
    pub const XFER_ACK: u8 = 0x02;
    pub const XFER_REFUSE: u8 = 0x03;
    pub const KEEPALIVE: u8 = 0x04;
    pub const SESS_TERM: u8 = 0x05;
    pub const MSG_REJECT: u8 = 0x06;
    pub const SESS_INIT: u8 = 0x07;
}

/// XFER_SEGMENT and XFER_ACK flags (§5.2.2, Table 5).
pub mod segment_flags {
    pub const END: u8 = 0x01;
    pub const START: u8 = 0x02;
}

/// SESS_TERM flag: this message acknowledges the peer's SESS_TERM (§6.1, Table 8).
pub const SESS_TERM_REPLY: u8 = 0x01;

macro_rules! reason_codes {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub u8);

        impl $name {
            $($(#[$vdoc])* pub const $variant: $name = $name($code);)*

            /// The registered name, or "unassigned (N)".
            pub fn name(self) -> String {
                match self.0 {
                    $($code => $text.to_string(),)*
                    other => format!("unassigned ({other})"),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.name())
            }
        }
    };
}

reason_codes! {
    /// Why a session ends (§6.1, Table 9).
    SessTermReason {
        UNKNOWN = 0x00, "unknown";
        IDLE_TIMEOUT = 0x01, "idle timeout";
        VERSION_MISMATCH = 0x02, "version mismatch";
        BUSY = 0x03, "busy";
        CONTACT_FAILURE = 0x04, "contact failure";
        RESOURCE_EXHAUSTION = 0x05, "resource exhaustion";
    }
}

reason_codes! {
    /// Why a transfer is refused (§5.2.4, Table 6).
    RefuseReason {
        UNKNOWN = 0x00, "unknown";
        COMPLETED = 0x01, "completed";
        NO_RESOURCES = 0x02, "no resources";
        RETRANSMIT = 0x03, "retransmit";
        NOT_ACCEPTABLE = 0x04, "not acceptable";
        EXTENSION_FAILURE = 0x05, "extension failure";
        SESSION_TERMINATING = 0x06, "session terminating";
    }
}

reason_codes! {
    /// Why a message is rejected (§5.1.2, Table 4).
    RejectReason {
        TYPE_UNKNOWN = 0x01, "message type unknown";
        UNSUPPORTED = 0x02, "message unsupported";
        UNEXPECTED = 0x03, "message unexpected";
    }
}

/// The first bytes each side sends (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactHeader {
    pub version: u8,
    pub flags: u8,
}

impl ContactHeader {
    pub fn can_tls(&self) -> bool {
        self.flags & CAN_TLS != 0
    }

    pub fn encode(&self) -> [u8; CONTACT_HEADER_LEN] {
        let mut out = [0u8; CONTACT_HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = self.version;
        out[5] = self.flags;
        out
    }

    /// `Ok(None)` until six bytes are there; an error for a wrong magic (§4.3: the connection
    /// is closed without a SESS_TERM).
    pub fn decode(buf: &[u8]) -> Result<Option<ContactHeader>, DecodeError> {
        if buf.len() < CONTACT_HEADER_LEN {
            // A wrong magic shows as soon as its bytes are there.
            let seen = buf.len().min(4);
            if buf[..seen] != MAGIC[..seen] {
                return Err(DecodeError::BadMagic { found: buf[..seen].to_vec() });
            }
            return Ok(None);
        }
        if &buf[..4] != MAGIC {
            return Err(DecodeError::BadMagic { found: buf[..4].to_vec() });
        }
        Ok(Some(ContactHeader { version: buf[4], flags: buf[5] }))
    }
}

/// A session or transfer extension item (§4.8, §5.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionItem {
    pub flags: u8,
    pub item_type: u16,
    pub value: Bytes,
}

impl ExtensionItem {
    pub fn is_critical(&self) -> bool {
        self.flags & EXTENSION_CRITICAL != 0
    }

    /// The Transfer Length extension (§5.2.5.1).
    pub fn transfer_length(total: u64) -> ExtensionItem {
        ExtensionItem {
            flags: 0,
            item_type: TRANSFER_LENGTH_EXTENSION,
            value: Bytes::copy_from_slice(&total.to_be_bytes()),
        }
    }

    /// Encodes a list of items (without the list's length).
    pub fn encode_list(items: &[ExtensionItem], out: &mut BytesMut) {
        for item in items {
            out.put_u8(item.flags);
            out.put_u16(item.item_type);
            out.put_u16(item.value.len() as u16);
            out.put_slice(&item.value);
        }
    }

    fn encoded_list_len(items: &[ExtensionItem]) -> usize {
        items.iter().map(|i| 5 + i.value.len()).sum()
    }

    /// Decodes a list of items that must fill `data` exactly (§4.6, §5.2.2: otherwise the
    /// message's reception has failed).
    pub fn decode_list(mut data: Bytes) -> Result<Vec<ExtensionItem>, ExtensionListError> {
        let total = data.len();
        let mut items = Vec::new();
        while data.has_remaining() {
            let at = total - data.len();
            if data.len() < 5 {
                return Err(ExtensionListError { offset: at, needed: 5, available: data.len() });
            }
            let flags = data.get_u8();
            let item_type = data.get_u16();
            let len = data.get_u16() as usize;
            if data.len() < len {
                return Err(ExtensionListError { offset: at, needed: 5 + len, available: 5 + data.len() });
            }
            items.push(ExtensionItem { flags, item_type, value: data.split_to(len) });
        }
        Ok(items)
    }
}

/// An extension item list whose last item runs past the list's stated length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the extension item at offset {offset} of the list needs {needed} bytes but only {available} remain in the stated length"
)]
pub struct ExtensionListError {
    pub offset: usize,
    pub needed: usize,
    pub available: usize,
}

/// SESS_INIT (§4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessInit {
    /// Seconds; 0 disables keepalives.
    pub keepalive: u16,
    pub segment_mru: u64,
    pub transfer_mru: u64,
    /// UTF-8 node ID; empty when the sender does not disclose it.
    pub node_id: String,
    pub extensions: Vec<ExtensionItem>,
}

/// The fixed part of an XFER_SEGMENT, before its data (§5.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub flags: u8,
    pub transfer_id: u64,
    /// The transfer extension items' bytes, present only with START; parsed by the session
    /// (a malformed list refuses the transfer, it does not end the session).
    pub extensions: Bytes,
    pub data_length: u64,
}

impl SegmentHeader {
    pub fn is_start(&self) -> bool {
        self.flags & segment_flags::START != 0
    }
    pub fn is_end(&self) -> bool {
        self.flags & segment_flags::END != 0
    }
}

/// Every TCPCL message but XFER_SEGMENT, whose data streams ([`Frame`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    SessInit(SessInit),
    /// `flags` carries REPLY ([`SESS_TERM_REPLY`]) when this answers the peer's SESS_TERM.
    SessTerm {
        flags: u8,
        reason: SessTermReason,
    },
    XferAck {
        flags: u8,
        transfer_id: u64,
        length: u64,
    },
    XferRefuse {
        reason: RefuseReason,
        transfer_id: u64,
    },
    Keepalive,
    MsgReject {
        reason: RejectReason,
        rejected_type: u8,
    },
}

impl Message {
    pub fn message_type(&self) -> u8 {
        match self {
            Message::SessInit(_) => message_type::SESS_INIT,
            Message::SessTerm { .. } => message_type::SESS_TERM,
            Message::XferAck { .. } => message_type::XFER_ACK,
            Message::XferRefuse { .. } => message_type::XFER_REFUSE,
            Message::Keepalive => message_type::KEEPALIVE,
            Message::MsgReject { .. } => message_type::MSG_REJECT,
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.message_type());
        match self {
            Message::SessInit(init) => {
                out.put_u16(init.keepalive);
                out.put_u64(init.segment_mru);
                out.put_u64(init.transfer_mru);
                out.put_u16(init.node_id.len() as u16);
                out.put_slice(init.node_id.as_bytes());
                out.put_u32(ExtensionItem::encoded_list_len(&init.extensions) as u32);
                ExtensionItem::encode_list(&init.extensions, out);
            }
            Message::SessTerm { flags, reason } => {
                out.put_u8(*flags);
                out.put_u8(reason.0);
            }
            Message::XferAck { flags, transfer_id, length } => {
                out.put_u8(*flags);
                out.put_u64(*transfer_id);
                out.put_u64(*length);
            }
            Message::XferRefuse { reason, transfer_id } => {
                out.put_u8(reason.0);
                out.put_u64(*transfer_id);
            }
            Message::Keepalive => {}
            Message::MsgReject { reason, rejected_type } => {
                out.put_u8(reason.0);
                out.put_u8(*rejected_type);
            }
        }
    }
}

/// Encodes an XFER_SEGMENT's header; its `data_length` bytes of data follow it on the wire.
pub fn encode_segment_header(
    flags: u8,
    transfer_id: u64,
    extensions: &[ExtensionItem],
    data_length: u64,
    out: &mut BytesMut,
) {
    out.put_u8(message_type::XFER_SEGMENT);
    out.put_u8(flags);
    out.put_u64(transfer_id);
    if flags & segment_flags::START != 0 {
        out.put_u32(ExtensionItem::encoded_list_len(extensions) as u32);
        ExtensionItem::encode_list(extensions, out);
    }
    out.put_u64(data_length);
}

/// What the decoder takes out of the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Message),
    /// An XFER_SEGMENT begins; `data_length` bytes follow as [`Frame::SegmentData`], then
    /// [`Frame::SegmentEnd`].
    SegmentHeader(SegmentHeader),
    SegmentData(Bytes),
    SegmentEnd,
}

/// Bytes that are not TCPCLv4. Each ends the session in the way §4.3, §4.6 and §5.1.2 say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the peer's contact header starts with {found:02x?}, not \"dtn!\": not a TCPCL peer")]
    BadMagic { found: Vec<u8> },
    #[error("message type {0:#04x} is not a TCPCLv4 message")]
    UnknownMessageType(u8),
    #[error("the SESS_INIT node ID is not UTF-8")]
    NodeIdNotUtf8,
    #[error("the SESS_INIT extension items are malformed: {0}")]
    SessionExtensions(ExtensionListError),
    #[error(
        "the {what} extension items are {length} bytes long, over the limit of {MAX_EXTENSION_ITEMS_LEN}"
    )]
    ExtensionsTooLong { what: &'static str, length: u32 },
}

/// Decodes frames from a growing buffer. Holds at most one message header: `decode` consumes
/// a message only once all of it is there, and segment data as it comes.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Data bytes of the current XFER_SEGMENT still to come, once its header was decoded.
    segment_left: Option<u64>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Whether the decoder is inside a segment's data.
    pub fn in_segment(&self) -> bool {
        self.segment_left.is_some()
    }

    /// The next frame, `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if let Some(left) = self.segment_left {
            if left == 0 {
                self.segment_left = None;
                return Ok(Some(Frame::SegmentEnd));
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let take = left.min(buf.len() as u64) as usize;
            self.segment_left = Some(left - take as u64);
            return Ok(Some(Frame::SegmentData(buf.split_to(take).freeze())));
        }
        let Some(&kind) = buf.first() else { return Ok(None) };
        let peek = &buf[1..];
        let needed = match kind {
            message_type::KEEPALIVE => 0,
            message_type::SESS_TERM | message_type::MSG_REJECT => 2,
            message_type::XFER_REFUSE => 9,
            message_type::XFER_ACK => 17,
            message_type::XFER_SEGMENT => {
                if peek.len() < 9 {
                    return Ok(None);
                }
                let start = peek[0] & segment_flags::START != 0;
                if start {
                    if peek.len() < 13 {
                        return Ok(None);
                    }
                    let ext = u32::from_be_bytes([peek[9], peek[10], peek[11], peek[12]]);
                    if ext > MAX_EXTENSION_ITEMS_LEN {
                        return Err(DecodeError::ExtensionsTooLong { what: "transfer", length: ext });
                    }
                    13 + ext as usize + 8
                } else {
                    17
                }
            }
            message_type::SESS_INIT => {
                if peek.len() < 20 {
                    return Ok(None);
                }
                let node_len = u16::from_be_bytes([peek[18], peek[19]]) as usize;
                if peek.len() < 20 + node_len + 4 {
                    return Ok(None);
                }
                let at = 20 + node_len;
                let ext = u32::from_be_bytes([peek[at], peek[at + 1], peek[at + 2], peek[at + 3]]);
                if ext > MAX_EXTENSION_ITEMS_LEN {
                    return Err(DecodeError::ExtensionsTooLong { what: "session", length: ext });
                }
                at + 4 + ext as usize
            }
            other => return Err(DecodeError::UnknownMessageType(other)),
        };
        if peek.len() < needed {
            return Ok(None);
        }
        let mut message = buf.split_to(1 + needed).freeze();
        message.advance(1);
        let frame = match kind {
            message_type::KEEPALIVE => Frame::Message(Message::Keepalive),
            message_type::SESS_TERM => Frame::Message(Message::SessTerm {
                flags: message.get_u8(),
                reason: SessTermReason(message.get_u8()),
            }),
            message_type::MSG_REJECT => Frame::Message(Message::MsgReject {
                reason: RejectReason(message.get_u8()),
                rejected_type: message.get_u8(),
            }),
            message_type::XFER_REFUSE => Frame::Message(Message::XferRefuse {
                reason: RefuseReason(message.get_u8()),
                transfer_id: message.get_u64(),
            }),
            message_type::XFER_ACK => Frame::Message(Message::XferAck {
                flags: message.get_u8(),
                transfer_id: message.get_u64(),
                length: message.get_u64(),
            }),
            message_type::XFER_SEGMENT => {
                let flags = message.get_u8();
                let transfer_id = message.get_u64();
                let extensions = if flags & segment_flags::START != 0 {
                    let len = message.get_u32() as usize;
                    message.split_to(len)
                } else {
                    Bytes::new()
                };
                let data_length = message.get_u64();
                self.segment_left = Some(data_length);
                Frame::SegmentHeader(SegmentHeader { flags, transfer_id, extensions, data_length })
            }
            _ => {
                let keepalive = message.get_u16();
                let segment_mru = message.get_u64();
                let transfer_mru = message.get_u64();
                let node_len = message.get_u16() as usize;
                let node_id = String::from_utf8(message.split_to(node_len).to_vec())
                    .map_err(|_| DecodeError::NodeIdNotUtf8)?;
                let ext_len = message.get_u32() as usize;
                let extensions = ExtensionItem::decode_list(message.split_to(ext_len))
                    .map_err(DecodeError::SessionExtensions)?;
                Frame::Message(Message::SessInit(SessInit {
                    keepalive,
                    segment_mru,
                    transfer_mru,
                    node_id,
                    extensions,
                }))
            }
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests;
