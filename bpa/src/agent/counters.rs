//! What the agent counts, for `dtn status` and the Prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
    pub originated: AtomicU64,
    pub forwarded: AtomicU64,
    pub fragments_sent: AtomicU64,
    pub too_big: AtomicU64,
    pub delivered: AtomicU64,
    pub reassembled: AtomicU64,
    pub echoed: AtomicU64,
    pub expired: AtomicU64,
    pub discarded: AtomicU64,
    pub reports_sent: AtomicU64,
    pub store_errors: AtomicU64,
    pub logs_suppressed: AtomicU64,
    pub impostors: AtomicU64,
    pub renumbered: AtomicU64,
    pub custody_sent: AtomicU64,
    pub custody_released: AtomicU64,
    pub custody_retransmitted: AtomicU64,
    pub custody_accepted: AtomicU64,
    pub custody_redundant: AtomicU64,
    pub custody_refused_here: AtomicU64,
    pub custody_signals_sent: AtomicU64,
    pub custody_signals_received: AtomicU64,
    pub custody_signal_ids_ignored: AtomicU64,
    pub custody_fragmented: AtomicU64,
    /// Refusals received, by disposition code (0–8; 9 for any other code).
    pub custody_refused: [AtomicU64; 10],
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` transmissions refused by the next custodian with disposition `code`.
    pub fn custody_refusal(&self, code: u64, n: u64) {
        let slot = usize::try_from(code).unwrap_or(9).min(9);
        self.custody_refused[slot].fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> AgentStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AgentStats {
            received: get(&self.received),
            duplicates: get(&self.duplicates),
            refused: get(&self.refused),
            originated: get(&self.originated),
            forwarded: get(&self.forwarded),
            fragments_sent: get(&self.fragments_sent),
            too_big: get(&self.too_big),
            delivered: get(&self.delivered),
            reassembled: get(&self.reassembled),
            echoed: get(&self.echoed),
            expired: get(&self.expired),
            discarded: get(&self.discarded),
            reports_sent: get(&self.reports_sent),
            store_errors: get(&self.store_errors),
            logs_suppressed: get(&self.logs_suppressed),
            renumbered: get(&self.renumbered),
            impostors: get(&self.impostors),
            custody: CustodyStats {
                sent: get(&self.custody_sent),
                released: get(&self.custody_released),
                retransmitted: get(&self.custody_retransmitted),
                accepted: get(&self.custody_accepted),
                redundant: get(&self.custody_redundant),
                refused_here: get(&self.custody_refused_here),
                signals_sent: get(&self.custody_signals_sent),
                signals_received: get(&self.custody_signals_received),
                signal_ids_ignored: get(&self.custody_signal_ids_ignored),
                fragmented: get(&self.custody_fragmented),
                refused: std::array::from_fn(|i| get(&self.custody_refused[i])),
            },
        }
    }
}

/// Totals since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Bundles received from convergence layers and stored.
    pub received: u64,
    /// Received bundles already held (RFC 9171 §5.6), not stored again.
    pub duplicates: u64,
    /// Received bundles refused as invalid.
    pub refused: u64,
    /// Bundles created here (applications, status reports, echo replies).
    pub originated: u64,
    /// Bundles handed to a neighbour and removed from the store.
    pub forwarded: u64,
    /// Fragments sent by proactive fragmentation (RFC 9171 §5.8).
    pub fragments_sent: u64,
    /// Forwarding attempts refused because the bundle was too big for the link and could not
    /// be fragmented.
    pub too_big: u64,
    /// Bundles delivered to local applications (acknowledged) or consumed by the agent.
    pub delivered: u64,
    /// ADUs reassembled from fragments (RFC 9171 §5.9).
    pub reassembled: u64,
    /// Echo requests answered.
    pub echoed: u64,
    /// Bundles deleted because their lifetime ended.
    pub expired: u64,
    /// Bundles deleted for another reason (hop limit, operator request, ...).
    pub discarded: u64,
    /// Status reports sent.
    pub reports_sent: u64,
    /// Store operations on a bundle that failed (each logged with the bundle's store id).
    pub store_errors: u64,
    /// Received bundles whose extension blocks were numbered 0 or twice (ION's fragments),
    /// taken under `[accept] duplicate_block_numbers` and renumbered.
    pub renumbered: u64,
    /// Log lines peers provoked that were left out (one line per kind per window is written).
    pub logs_suppressed: u64,
    /// Administrative records in a neighbour's name that came from an address that is not the
    /// neighbour's (design §3.10): refused.
    pub impostors: u64,
    /// What custody transfer did.
    pub custody: CustodyStats,
}

/// What custody transfer did since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustodyStats {
    /// Custodial transmissions made (first ones and retransmissions).
    pub sent: u64,
    /// Bundles released by the next custodian's signal (accepted or redundant).
    pub released: u64,
    /// Transmissions made again because no signal came by their deadline.
    pub retransmitted: u64,
    /// Transmissions from other custodians accepted here.
    pub accepted: u64,
    /// Transmissions from other custodians answered "redundant" (held or handled already).
    pub redundant: u64,
    /// Transmissions from other custodians refused here (depleted storage, unintelligible).
    pub refused_here: u64,
    /// Custody signal bundles sent.
    pub signals_sent: u64,
    /// Custody signal bundles received.
    pub signals_received: u64,
    /// Transmission IDs named by signals that matched nothing awaiting custody.
    pub signal_ids_ignored: u64,
    /// Custodial transmissions whose carrier went in fragments (too big for the link whole).
    pub fragmented: u64,
    /// Our transmissions refused by the next custodian, by disposition code (index 9: others).
    pub refused: [u64; 10],
}

impl CustodyStats {
    /// Each counter with its Prometheus name (after `dtn_custody_`) and help text.
    pub fn named(&self) -> [(&'static str, &'static str, u64); 10] {
        [
            ("sent", "custodial transmissions made", self.sent),
            ("released", "bundles released by the next custodian's signal", self.released),
            ("retransmitted", "custodial transmissions made again after their deadline", self.retransmitted),
            ("accepted", "transmissions from other custodians accepted here", self.accepted),
            ("redundant", "transmissions from other custodians answered redundant", self.redundant),
            ("refused_here", "transmissions from other custodians refused here", self.refused_here),
            ("signals_sent", "custody signal bundles sent", self.signals_sent),
            ("signals_received", "custody signal bundles received", self.signals_received),
            (
                "signal_ids_ignored",
                "transmission IDs in signals that matched nothing",
                self.signal_ids_ignored,
            ),
            ("fragmented", "custodial transmissions whose carrier went in fragments", self.fragmented),
        ]
    }
}

impl AgentStats {
    /// Each counter with its Prometheus name and help text.
    pub fn named(&self) -> [(&'static str, &'static str, u64); 15] {
        [
            ("received", "bundles received and stored", self.received),
            ("duplicates", "received bundles already held", self.duplicates),
            ("refused", "received bundles refused as invalid", self.refused),
            ("originated", "bundles created on this node", self.originated),
            ("forwarded", "bundles forwarded to a neighbour", self.forwarded),
            ("fragments_sent", "fragments sent by proactive fragmentation", self.fragments_sent),
            ("too_big", "forwarding attempts refused: bundle too big for the link", self.too_big),
            ("delivered", "bundles delivered locally", self.delivered),
            ("reassembled", "ADUs reassembled from fragments", self.reassembled),
            ("echoed", "echo requests answered", self.echoed),
            ("expired", "bundles deleted at the end of their lifetime", self.expired),
            ("discarded", "bundles deleted for another reason", self.discarded),
            ("reports_sent", "status reports sent", self.reports_sent),
            ("store_errors", "store operations on a bundle that failed (each logged)", self.store_errors),
            (
                "renumbered",
                "received bundles whose extension blocks were numbered 0 or twice, renumbered ([accept] duplicate_block_numbers)",
                self.renumbered,
            ),
        ]
    }

    /// The counters about peers rather than bundles, with their Prometheus names (after
    /// `dtn_`) and help texts.
    pub fn named_peers(&self) -> [(&'static str, &'static str, u64); 2] {
        [
            (
                "logs_suppressed",
                "log lines peers provoked that were left out (one per kind per 10 s is written)",
                self.logs_suppressed,
            ),
            (
                "impostors",
                "administrative records in a neighbour's name from an address not its own, refused",
                self.impostors,
            ),
        ]
    }
}
