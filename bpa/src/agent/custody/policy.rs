//! Custody policy: which neighbours bundles go to under custody, which record type codes each
//! reads, how each reads a PDU's retransmission time, and which destinations this node takes
//! custody for (design §4; docs/custody.md). Configuration and pure decisions, no I/O.

use std::time::Duration;

use super::super::core::routing::EidPattern;
use crate::admin::AdminRecordTypes;
use crate::bundle::Eid;

/// Whether bundles to a neighbour go under custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerCustody {
    /// Never: custody ends here (the neighbour does not speak BIBE).
    Never,
    /// Bundles this node holds as custodian go under custody; others plainly.
    #[default]
    WhenCustodial,
    /// Every bundle to this neighbour goes under custody, this node becoming its custodian.
    Always,
}

/// Custody settings for neighbours matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyPeer {
    /// The neighbours these settings are for.
    pub node: EidPattern,
    /// Whether bundles sent to them go under custody.
    pub mode: PeerCustody,
    /// The record type codes to write to it (3/4 by default, 7/8 for ION).
    pub record_types: AdminRecordTypes,
    /// How the PDU's retransmission time is written for it.
    pub retransmission_time: RetransmissionTime,
    /// The round trip to it and back (the PDU's way there, the signal's way back); when not
    /// given, the contact plan's light time both ways, else [`CustodyPolicy::round_trip`].
    pub round_trip: Option<Duration>,
}

/// How a BIBE PDU's retransmission time — "by when a custody signal is expected" — is written
/// for a peer. draft-ietf-dtn-bibect (§4, as of -05) gives it as a DTN time, which in BPv7 is
/// milliseconds since 2000-01-01 (RFC 9171 §4.2.6). ION 4.1.3 reads and writes it as Unix
/// seconds (`bibeP.h`: `time_t deadline`, "Epoch 1970, not 2000"), and its `bibeclo` holds its
/// custody signals back until that time comes: a DTN time in ms, read as Unix seconds, is
/// thousands of years away, and ION never answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetransmissionTime {
    /// The draft's: our own retransmission deadline, DTN time in milliseconds.
    #[default]
    DtnMillis,
    /// ION's: Unix seconds — and halfway to our own deadline rather than at it, so that a peer
    /// that waits until this time to signal (as ION does) has the other half for its signal
    /// to arrive before we send again.
    UnixSecondsHalfway,
}

/// DTN time 0 (2000-01-01T00:00:00Z) in Unix milliseconds.
const DTN_EPOCH_UNIX_MS: u64 = 946_684_800_000;

impl RetransmissionTime {
    /// The field's value for a transmission made at `now` whose own retransmission is due at
    /// `deadline` (both DTN ms).
    pub fn encode(self, now: u64, deadline: u64) -> u64 {
        match self {
            RetransmissionTime::DtnMillis => deadline,
            RetransmissionTime::UnixSecondsHalfway => {
                let halfway = now.saturating_add(deadline.saturating_sub(now) / 2);
                halfway.saturating_add(DTN_EPOCH_UNIX_MS) / 1000
            }
        }
    }
}

/// How this node takes and hands over custody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyPolicy {
    /// Per-neighbour settings; the first matching entry applies.
    pub peers: Vec<CustodyPeer>,
    /// Bundles for these destinations are taken into custody on this node: those its
    /// applications send and those received plainly.
    pub destinations: Vec<EidPattern>,
    /// The round trip assumed when nothing better is known.
    pub round_trip: Duration,
    /// The shortest wait for a custody signal before sending again.
    pub retransmit_min: Duration,
    /// The longest wait for a custody signal before sending again.
    pub retransmit_max: Duration,
    /// Answers wait this long to be batched into one signal...
    pub signal_delay: Duration,
    /// ...unless this many are waiting: then they go at once.
    pub signal_batch: usize,
    /// The lifetime of the signals this node sends.
    pub signal_lifetime: Duration,
    /// Refuse custody of a bundle this node has no way to forward: "no known route" when no
    /// neighbour, static route or router leads to its destination and the contact plan (if any)
    /// does not know the node; "no timely contact" when the plan knows the node but no route
    /// reaches it before the bundle expires. Off by default: a node that learns its routes
    /// later (a neighbour that turns up, a plan loaded later) takes the bundle and waits.
    pub refuse_unroutable: bool,
}

impl Default for CustodyPolicy {
    fn default() -> Self {
        CustodyPolicy {
            peers: Vec::new(),
            destinations: Vec::new(),
            round_trip: Duration::from_secs(2),
            retransmit_min: Duration::from_secs(1),
            retransmit_max: Duration::from_secs(600),
            signal_delay: Duration::from_millis(100),
            signal_batch: 4096,
            signal_lifetime: Duration::from_secs(3600),
            refuse_unroutable: false,
        }
    }
}

impl CustodyPolicy {
    pub(super) fn peer(&self, node: &Eid) -> Option<&CustodyPeer> {
        self.peers.iter().find(|p| p.node.matches(node))
    }

    /// Whether bundles to `node` go under custody.
    pub fn mode_for(&self, node: &Eid) -> PeerCustody {
        self.peer(node).map_or(PeerCustody::WhenCustodial, |p| p.mode)
    }

    /// The record type codes written to `node`.
    pub fn record_types_for(&self, node: &Eid) -> AdminRecordTypes {
        self.peer(node).map_or_else(AdminRecordTypes::default, |p| p.record_types)
    }

    /// How the PDU's retransmission time is written for `node`.
    pub fn retransmission_time_for(&self, node: &Eid) -> RetransmissionTime {
        self.peer(node).map_or_else(RetransmissionTime::default, |p| p.retransmission_time)
    }

    /// Whether bundles for `destination` are taken into custody here.
    pub fn covers(&self, destination: &Eid) -> bool {
        self.destinations.iter().any(|p| p.matches(destination))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retransmission_time_is_written_as_each_peer_reads_it() {
        // 2026-12-07T00:00:00Z in DTN ms, a deadline 10 s on.
        let now = 849_916_800_000;
        assert_eq!(RetransmissionTime::DtnMillis.encode(now, now + 10_000), now + 10_000);
        // Unix seconds, halfway (ION signals at that time; the signal then has 5 s to arrive).
        let unix_now = 1_796_601_600;
        assert_eq!(RetransmissionTime::UnixSecondsHalfway.encode(now, now + 10_000), unix_now + 5);
        // A deadline under two seconds away: a time that is here already (ION signals at once).
        assert_eq!(RetransmissionTime::UnixSecondsHalfway.encode(now + 400, now + 1_400), unix_now);
        assert_eq!(RetransmissionTime::UnixSecondsHalfway.encode(now, now), unix_now, "no panic, no wrap");
    }

    #[test]
    fn the_policy_takes_the_first_matching_peer_and_defaults_to_custody_when_custodial() {
        let policy = CustodyPolicy {
            peers: vec![
                CustodyPeer {
                    node: EidPattern::Node(Eid::ipn(5, 0)),
                    mode: PeerCustody::Never,
                    record_types: AdminRecordTypes::default(),
                    retransmission_time: RetransmissionTime::DtnMillis,
                    round_trip: None,
                },
                CustodyPeer {
                    node: EidPattern::AnyIpn,
                    mode: PeerCustody::Always,
                    record_types: AdminRecordTypes::ION,
                    retransmission_time: RetransmissionTime::UnixSecondsHalfway,
                    round_trip: Some(Duration::from_secs(9)),
                },
            ],
            destinations: vec![EidPattern::Node(Eid::ipn(9, 0))],
            ..CustodyPolicy::default()
        };
        assert_eq!(policy.mode_for(&Eid::ipn(5, 0)), PeerCustody::Never);
        assert_eq!(policy.mode_for(&Eid::ipn(6, 0)), PeerCustody::Always);
        assert_eq!(policy.record_types_for(&Eid::ipn(6, 0)), AdminRecordTypes::ION);
        let dtn: Eid = "dtn://relay/".parse().expect("eid");
        assert_eq!(policy.mode_for(&dtn), PeerCustody::WhenCustodial);
        assert_eq!(policy.record_types_for(&dtn), AdminRecordTypes::default());
        assert!(policy.covers(&Eid::ipn(9, 3)));
        assert!(!policy.covers(&Eid::ipn(8, 3)));
    }
}
