//! Custody state in the store (BIBE custody, draft-ietf-dtn-bibect; design §4): which bundles
//! this node holds as custodian, the custodial transmission under way for each (its
//! transmission ID, its retransmission deadline, how many were made), the transmission counter,
//! and the transmission IDs received from other custodians and not yet answered by a custody
//! signal. All of it changes in the writer's transactions, with the bundles it concerns, so it
//! survives a crash exactly as the bundles do.
//!
//! Invariant: a bundle has a transmission ID (and a deadline) exactly while its state is
//! [`AwaitingCustody`](super::BundleState::AwaitingCustody); any other state clears them.

use super::types::StoreId;

/// The next custodian's answers that release the sender (accepted, redundant) and those that
/// refuse; the store needs no more of a disposition than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEffect {
    /// Accepted or redundant: the sender lets the bundle go.
    Release,
    /// Refused: the bundle waits for a route again.
    Refuse,
}

/// A bundle taken in under custody: the store makes it custodial and queues the custody signal
/// that answers the custodian it came from, in the transaction that stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyIntake {
    /// The previous custodian (node ID) and its transmission ID; `None` when custody starts
    /// here (an application asked for it).
    pub from: Option<(String, u64)>,
}

/// How a custodial transmission's deadline is set: `now` plus `round_trip_ms` doubled for each
/// earlier transmission of the bundle, capped at `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustodyTiming {
    /// The current time (DTN ms).
    pub now: u64,
    /// The round trip to the next custodian, in milliseconds.
    pub round_trip_ms: u64,
    /// The longest wait for a signal, in milliseconds.
    pub max_ms: u64,
    /// The bundle goes under custody even if this node was not its custodian: it becomes so.
    pub always: bool,
}

/// How a bundle is forwarded, as the store decided when it recorded it on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Plainly: it leaves the store once the neighbour has it.
    Plain,
    /// Under custody: sent in a BIBE PDU with this transmission ID, kept until the next
    /// custodian's signal releases it, sent again after `deadline` (DTN ms).
    Custodial {
        /// The ID the PDU carries, which the signal names.
        transmission_id: u64,
        /// When it is sent again if no signal came (DTN ms).
        deadline: u64,
        /// Which transmission of the bundle this is, from 1.
        attempt: u64,
    },
}

/// What a custody signal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalOutcome {
    /// Bundles released (deleted) or refused (waiting for a route again) by this pass.
    pub matched: Vec<StoreId>,
    /// Every transmission the signal names was acted on. `false` when the pass stopped at its
    /// limit (`SIGNAL_PASS_LIMIT`): the same signal is applied again for the rest (what was
    /// acted on no longer matches).
    pub complete: bool,
}

/// A transmission ID received under custody and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignal {
    /// The custodian to answer (node ID).
    pub peer: String,
    /// The transmission ID its PDU carried.
    pub transmission_id: u64,
    /// The answer: a custody signal disposition code (draft-ietf-dtn-bibect).
    pub disposition: u64,
}

/// What the store holds of a bundle's custody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyInfo {
    /// This node is the bundle's custodian.
    pub custodial: bool,
    /// The custodial transmission under way, if any: `(transmission ID, deadline)`.
    pub transmission: Option<(u64, u64)>,
    /// Custodial transmissions made so far.
    pub attempts: u64,
}

/// Custody totals, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustodyCounts {
    /// Bundles this node holds as custodian.
    pub held: u64,
    /// Of those, sent to the next custodian and awaiting its signal.
    pub outstanding: u64,
    /// Custody signals owed to other custodians (transmission IDs).
    pub signals_pending: u64,
}
