//! The interface every convergence layer implements (design §2): the agent hands it a bundle
//! for a neighbour and learns when the neighbour has it; the layer hands the agent what it
//! receives, and learns of neighbours, through a [`BundleSink`].

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::bundle::Eid;
use crate::store::PayloadContent;

/// Why a convergence layer could not hand a bundle over. The agent acts on the variant (and on
/// the [`Refusal`]): a link down waits for the neighbour, a refusal for want of room is tried
/// again later, a bundle the neighbour will not take is fragmented, sent elsewhere or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaError {
    /// No session or link to the neighbour now: tried again when it is back.
    #[error("the link to {peer} is down")]
    LinkDown {
        /// The neighbour.
        peer: String,
    },
    /// The neighbour said no.
    #[error("{peer} refused the bundle: {reason}")]
    Refused {
        /// The neighbour.
        peer: String,
        /// Why, in the terms the agent acts on.
        reason: Refusal,
    },
    /// The layer could not hand the bundle over (an I/O error, a session that ended).
    #[error("sending to {peer} failed: {reason}")]
    Failed {
        /// The neighbour.
        peer: String,
        /// What failed.
        reason: String,
    },
}

/// Why a neighbour refused a bundle, in the terms the agent acts on (RFC 9174 §5.2.4's
/// XFER_REFUSE reasons, and what other layers can say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No room there now: tried again later, with backoff.
    #[error("no resources")]
    NoResources,
    /// The neighbour asks for the bundle again later: tried again, with backoff.
    #[error("retransmit")]
    Retransmit,
    /// The neighbour will not take this bundle (it is invalid or unwanted there): sent by
    /// another route if there is one, else deleted ("transmission canceled").
    #[error("not acceptable")]
    NotAcceptable,
    /// The bundle is larger than the link takes: fragmented to `limit` bytes if it may be,
    /// else sent by another route if there is one, else deleted.
    #[error("larger than the {limit} bytes the link takes")]
    TooLarge {
        /// The largest bundle the link takes, in bytes.
        limit: u64,
    },
    /// Any other reason (an extension failure, a session ending): tried again later.
    #[error("{0}")]
    Other(String),
}

/// A bundle on its way to a neighbour: its head (primary and extension blocks as this node
/// forwards them, and the payload block's head) in memory, the rest (payload content, payload
/// CRC, final break) in memory or streamed from the bundle's file in the store, so a layer
/// sends a bundle of any size with a few buffers of memory (design §3.4).
#[derive(Debug)]
pub struct OutgoingBundle {
    head: Bytes,
    rest: PayloadContent,
    /// Bytes after `rest`: the end of a bundle that encapsulates this one (a BIBE PDU's
    /// carrier), empty otherwise.
    tail: Bytes,
}

impl OutgoingBundle {
    /// A bundle of `head` (in memory) and `rest` (in memory or streamed from its file).
    pub fn new(head: Bytes, rest: PayloadContent) -> OutgoingBundle {
        OutgoingBundle { head, rest, tail: Bytes::new() }
    }

    /// `head ‖ rest ‖ tail`: a bundle whose stored part is wrapped in another (encapsulation,
    /// as BIBE does), still streamed from the store.
    pub fn wrapped(head: Bytes, rest: PayloadContent, tail: Bytes) -> OutgoingBundle {
        OutgoingBundle { head, rest, tail }
    }

    /// A whole encoded bundle in memory.
    pub fn from_bytes(bundle: Bytes) -> OutgoingBundle {
        OutgoingBundle { head: bundle, rest: PayloadContent::Memory(Bytes::new()), tail: Bytes::new() }
    }

    /// The encoded bundle's length in bytes.
    pub fn len(&self) -> u64 {
        let rest = match &self.rest {
            PayloadContent::Memory(bytes) => bytes.len() as u64,
            PayloadContent::File(file) => file.len(),
        };
        self.head.len() as u64 + rest + self.tail.len() as u64
    }

    /// Never true: a bundle has at least a primary and a payload block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole bundle in memory (for layers that need it whole, and fragmentation).
    pub async fn into_bytes(self) -> std::io::Result<Bytes> {
        match self.rest {
            PayloadContent::Memory(rest) if rest.is_empty() && self.tail.is_empty() => Ok(self.head),
            rest => {
                let bundle = OutgoingBundle { head: self.head, rest, tail: self.tail };
                let mut out = Vec::with_capacity(usize::try_from(bundle.len()).unwrap_or(0));
                let mut reader = bundle.into_reader();
                reader.read_to_end(&mut out).await?;
                Ok(out.into())
            }
        }
    }

    /// The bundle's bytes as a stream.
    pub fn into_reader(self) -> Pin<Box<dyn AsyncRead + Send>> {
        let head = std::io::Cursor::new(self.head);
        let tail = std::io::Cursor::new(self.tail);
        match self.rest {
            PayloadContent::Memory(rest) => Box::pin(head.chain(std::io::Cursor::new(rest)).chain(tail)),
            PayloadContent::File(file) => Box::pin(head.chain(file).chain(tail)),
        }
    }
}

/// What a convergence layer can prove of who handed it a bundle (design §3.10): a layer that
/// knows its neighbours by address (UDP) checks that a bundle in a neighbour's name came from
/// that neighbour's address. The agent asks only of what it acts on in the sender's name —
/// administrative records for this node (custody signals, BIBE PDUs, status reports) — and
/// refuses those that fail (counted as `impostors`). Until BPSec, this is all the proof there
/// is: it stops a stranger elsewhere on the network, not one who can send from the neighbour's
/// own address (another program on its host, or a forger on its path).
pub trait Sender: Send + Sync + std::fmt::Debug {
    /// Whether a bundle whose source is `node` (a node ID) can have come from this sender:
    /// `false` when the layer reaches `node` at an address this sender does not send from.
    /// A node the layer does not know answers `true` (a bundle may come from anywhere through a
    /// relay; the layer has nothing to check it against).
    fn may_speak_for(&self, node: &Eid) -> bool;

    /// The sender as a log names it (its address).
    fn describe(&self) -> String;
}

/// A future a convergence layer returns.
pub type ClaFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClaError>> + Send + 'a>>;

/// A convergence layer's side of one or more links.
pub trait ConvergenceLayer: Send + Sync + std::fmt::Debug {
    /// A short name for logs and status (`tcpcl`, `udp`, `memory`, ...).
    fn name(&self) -> &str;

    /// The largest bundle the link takes whole; larger ones are fragmented proactively (RFC 9171
    /// §5.8) unless they must not be.
    fn max_bundle_size(&self) -> Option<usize> {
        None
    }

    /// Sends a bundle to the neighbour `peer` (a node ID). Resolves `Ok` once the layer has the
    /// neighbour's acknowledgement (for TCPCL, the final XFER_ACK).
    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()>;
}

pub mod memory;
mod sink;
pub mod status;

pub use sink::{BundleSink, IncomingBundle, SinkError};
