//! What the store keeps about a bundle.

use crate::bundle::{BundleId, Eid};

/// A bundle's key in the store (its row id).
pub type StoreId = i64;

/// Why a bundle is in the store: what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BundleState {
    /// No route yet: waits for a contact, a route or a neighbour.
    WaitingForRoute,
    /// Queued for transmission to this neighbour (node ID).
    QueuedFor {
        /// The neighbour's node ID.
        neighbour: String,
    },
    /// Being sent to this neighbour.
    InFlight {
        /// The neighbour's node ID.
        neighbour: String,
    },
    /// Sent to this neighbour under custody; waits for its custody signal.
    AwaitingCustody {
        /// The next custodian's node ID.
        neighbour: String,
    },
    /// For a local application endpoint that has not taken it yet.
    WaitingForApplication {
        /// The endpoint it is for.
        endpoint: String,
    },
    /// A fragment for this node waiting for the rest of its ADU, named by
    /// `adu_key` (source, creation time and sequence).
    AwaitingReassembly {
        /// The ADU's key.
        adu: String,
    },
    /// Its bytes were found damaged (design §3.7): kept as evidence, never delivered or
    /// forwarded, until an operator deletes it or it expires. Set by the store alone, and
    /// never changed by [`super::MetadataStorage::set_state`] once set.
    Quarantined {
        /// What was found damaged.
        problem: String,
    },
}

/// The kind of a [`BundleState`], without its argument, for queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// [`BundleState::WaitingForRoute`].
    WaitingForRoute = 0,
    /// [`BundleState::QueuedFor`].
    QueuedFor = 1,
    /// [`BundleState::InFlight`].
    InFlight = 2,
    /// [`BundleState::AwaitingCustody`].
    AwaitingCustody = 3,
    /// [`BundleState::WaitingForApplication`].
    WaitingForApplication = 4,
    /// [`BundleState::AwaitingReassembly`].
    AwaitingReassembly = 5,
    /// [`BundleState::Quarantined`].
    Quarantined = 6,
}

impl StateKind {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn from_code(code: i64) -> Option<StateKind> {
        Some(match code {
            0 => StateKind::WaitingForRoute,
            1 => StateKind::QueuedFor,
            2 => StateKind::InFlight,
            3 => StateKind::AwaitingCustody,
            4 => StateKind::WaitingForApplication,
            5 => StateKind::AwaitingReassembly,
            6 => StateKind::Quarantined,
            _ => return None,
        })
    }
}

impl BundleState {
    /// The state without its argument.
    pub fn kind(&self) -> StateKind {
        match self {
            BundleState::WaitingForRoute => StateKind::WaitingForRoute,
            BundleState::QueuedFor { .. } => StateKind::QueuedFor,
            BundleState::InFlight { .. } => StateKind::InFlight,
            BundleState::AwaitingCustody { .. } => StateKind::AwaitingCustody,
            BundleState::WaitingForApplication { .. } => StateKind::WaitingForApplication,
            BundleState::AwaitingReassembly { .. } => StateKind::AwaitingReassembly,
            BundleState::Quarantined { .. } => StateKind::Quarantined,
        }
    }

    /// The state's name for machines (`waiting_for_route`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self.kind() {
            StateKind::WaitingForRoute => "waiting_for_route",
            StateKind::QueuedFor => "queued",
            StateKind::InFlight => "in_flight",
            StateKind::AwaitingCustody => "awaiting_custody",
            StateKind::WaitingForApplication => "waiting_for_application",
            StateKind::AwaitingReassembly => "awaiting_reassembly",
            StateKind::Quarantined => "quarantined",
        }
    }

    /// The neighbour or endpoint the state names.
    pub fn argument(&self) -> Option<&str> {
        match self {
            BundleState::QueuedFor { neighbour }
            | BundleState::InFlight { neighbour }
            | BundleState::AwaitingCustody { neighbour } => Some(neighbour),
            BundleState::WaitingForApplication { endpoint } => Some(endpoint),
            BundleState::AwaitingReassembly { adu } => Some(adu),
            BundleState::Quarantined { problem } => Some(problem),
            BundleState::WaitingForRoute => None,
        }
    }

    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn from_parts(kind: StateKind, argument: Option<String>) -> Option<BundleState> {
        Some(match (kind, argument) {
            (StateKind::WaitingForRoute, None) => BundleState::WaitingForRoute,
            (StateKind::QueuedFor, Some(neighbour)) => BundleState::QueuedFor { neighbour },
            (StateKind::InFlight, Some(neighbour)) => BundleState::InFlight { neighbour },
            (StateKind::AwaitingCustody, Some(neighbour)) => BundleState::AwaitingCustody { neighbour },
            (StateKind::WaitingForApplication, Some(endpoint)) => {
                BundleState::WaitingForApplication { endpoint }
            }
            (StateKind::AwaitingReassembly, Some(adu)) => BundleState::AwaitingReassembly { adu },
            (StateKind::Quarantined, Some(problem)) => BundleState::Quarantined { problem },
            _ => return None,
        })
    }
}

impl std::fmt::Display for BundleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleState::WaitingForRoute => f.write_str("waiting for a route"),
            BundleState::QueuedFor { neighbour } => write!(f, "queued for {neighbour}"),
            BundleState::InFlight { neighbour } => write!(f, "being sent to {neighbour}"),
            BundleState::AwaitingCustody { neighbour } => {
                write!(f, "awaiting a custody signal from {neighbour}")
            }
            BundleState::WaitingForApplication { endpoint } => {
                write!(f, "waiting for the application at {endpoint}")
            }
            BundleState::AwaitingReassembly { adu } => write!(f, "a fragment awaiting the rest of {adu}"),
            BundleState::Quarantined { problem } => write!(f, "quarantined: {problem}"),
        }
    }
}

/// Why a bundle left the store (design §3.7: never silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    /// Delivered to a local application, which acknowledged it.
    Delivered,
    /// Forwarded to a neighbour without custody.
    Forwarded {
        /// The neighbour's node ID.
        neighbour: String,
    },
    /// Custody accepted by the next custodian.
    CustodyAccepted {
        /// The next custodian's node ID.
        neighbour: String,
    },
    /// Lifetime expired (RFC 9171 reason code 1).
    Expired,
    /// Deleted by the agent for an RFC 9171 §6.1.1 reason code.
    Discarded {
        /// The reason code (RFC 9171 §6.1.1).
        reason_code: u64,
    },
    /// Deleted on an operator's or application's request.
    Requested,
    /// A fragment whose ADU was reassembled and stored whole (RFC 9171 §5.9).
    Reassembled,
}

impl std::fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeleteReason::Delivered => f.write_str("delivered"),
            DeleteReason::Forwarded { neighbour } => write!(f, "forwarded to {neighbour}"),
            DeleteReason::CustodyAccepted { neighbour } => write!(f, "custody accepted by {neighbour}"),
            DeleteReason::Expired => f.write_str("lifetime expired"),
            DeleteReason::Discarded { reason_code } => {
                write!(f, "discarded: {}", crate::admin::ReasonCode(*reason_code).name())
            }
            DeleteReason::Requested => f.write_str("deleted on request"),
            DeleteReason::Reassembled => f.write_str("reassembled into its whole bundle"),
        }
    }
}

/// The answer to an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored, durably, under this id.
    Stored(StoreId),
    /// A bundle with the same bundle ID is already stored under this id; nothing was written.
    Duplicate(StoreId),
    /// This node already delivered or forwarded a bundle with this bundle ID, and remembers it
    /// until the bundle expires (design §3.7): nothing was written. The sender is answered as
    /// for a duplicate; the bundle is not delivered or forwarded again.
    AlreadyHandled,
}

impl InsertOutcome {
    /// The store id the bundle is held under, if it is held.
    pub fn id(self) -> Option<StoreId> {
        match self {
            InsertOutcome::Stored(id) | InsertOutcome::Duplicate(id) => Some(id),
            InsertOutcome::AlreadyHandled => None,
        }
    }
}

/// What the store knows about one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBundle {
    /// Its id in this store.
    pub id: StoreId,
    /// Its bundle ID (source, creation timestamp, fragment offset).
    pub bundle_id: BundleId,
    /// Where it is going.
    pub destination: Eid,
    /// DTN time (ms) the bundle was stored.
    pub received_at: u64,
    /// DTN time (ms) the bundle's lifetime ends.
    pub expires_at: u64,
    /// Encoded length in bytes.
    pub length: u64,
    /// What it waits for.
    pub state: BundleState,
    /// Whether the bytes are in their own file rather than in the database.
    pub in_file: bool,
}

/// How much the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Bundles held.
    pub bundles: u64,
    /// Their bytes, encoded.
    pub bytes: u64,
    /// Bundles found damaged and quarantined (among `bundles`).
    pub quarantined: u64,
    /// Committed transactions the write-ahead log held but could not replay when the store
    /// opened: acknowledged changes lost to damage ([`super::WalReport`]).
    pub lost_transactions: u64,
}
