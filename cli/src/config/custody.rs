//! `[custody]` and `[[custody.peers]]` (docs/custody.md).

use std::time::Duration;

use bpa::agent::EidPattern;
use serde::Deserialize;

use super::de::*;

/// `[custody]`: custody transfer hop by hop (BIBE; docs/custody.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodySection {
    /// Bundles to these destinations are taken into custody here (sent or received plainly).
    #[serde(default, deserialize_with = "patterns")]
    pub destinations: Vec<EidPattern>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub round_trip: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub retransmit_min: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub retransmit_max: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub signal_delay: Option<Duration>,
    pub signal_batch: Option<usize>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub signal_lifetime: Option<Duration>,
    /// Refuse custody ("no known route", "no timely contact") of bundles with no way on.
    pub refuse_unroutable: Option<bool>,
    #[serde(default)]
    pub peers: Vec<CustodyPeerEntry>,
}

/// `[[custody.peers]]`: how custody goes to neighbours matching `node`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyPeerEntry {
    #[serde(deserialize_with = "pattern")]
    pub node: EidPattern,
    /// `never`, `custodial` (the default) or `always`.
    #[serde(default)]
    pub mode: CustodyMode,
    /// Record type codes written to it: `default` (3/4), `ion` (7/8), `pyd3tn` (64443/4), or
    /// the numbers with `bibe_pdu_type` and `custody_signal_type`.
    pub record_types: Option<RecordTypesName>,
    pub bibe_pdu_type: Option<u64>,
    pub custody_signal_type: Option<u64>,
    /// How the BIBE PDU's retransmission time is written: `dtn_ms` (the draft's DTN time) or
    /// `unix_seconds` (ION's, halfway to our own deadline); `ion` record types imply the latter.
    pub retransmission_time: Option<RetransmissionTimeName>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub round_trip: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetransmissionTimeName {
    DtnMs,
    UnixSeconds,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustodyMode {
    Never,
    #[default]
    Custodial,
    Always,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordTypesName {
    Default,
    Ion,
    Pyd3tn,
}

impl CustodySection {
    /// The agent's custody policy: the defaults, with what this section sets. Refuses record
    /// type codes that would be read as another record (a status report, or the other BIBE
    /// record under a code every node knows).
    pub fn policy(&self) -> anyhow::Result<bpa::agent::CustodyPolicy> {
        use bpa::admin::AdminRecordTypes;
        use bpa::agent::{CustodyPeer, CustodyPolicy, PeerCustody, RetransmissionTime};
        let defaults = CustodyPolicy::default();
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let named = match p.record_types {
                    None | Some(RecordTypesName::Default) => AdminRecordTypes::default(),
                    Some(RecordTypesName::Ion) => AdminRecordTypes::ION,
                    Some(RecordTypesName::Pyd3tn) => AdminRecordTypes { bibe_pdu: 64443, custody_signal: 4 },
                };
                let record_types = AdminRecordTypes {
                    bibe_pdu: p.bibe_pdu_type.unwrap_or(named.bibe_pdu),
                    custody_signal: p.custody_signal_type.unwrap_or(named.custody_signal),
                };
                let clash = record_types.bibe_pdu == record_types.custody_signal
                    || [record_types.bibe_pdu, record_types.custody_signal].contains(&bpa::admin::RECORD_STATUS_REPORT)
                    || bpa::admin::KNOWN_CUSTODY_SIGNAL_CODES.contains(&record_types.bibe_pdu)
                    || bpa::admin::KNOWN_BIBE_PDU_CODES.contains(&record_types.custody_signal);
                if clash {
                    anyhow::bail!(
                        "[[custody.peers]] {}: record types {} (BIBE PDU) and {} (custody signal) would be read as other \
                         records: use two different codes, not 1 (status report), not a known signal code (4, 8) for \
                         the PDU nor a known PDU code (3, 7, 64443) for the signal",
                        p.node,
                        record_types.bibe_pdu,
                        record_types.custody_signal
                    );
                }
                Ok(CustodyPeer {
                    node: p.node.clone(),
                    mode: match p.mode {
                        CustodyMode::Never => PeerCustody::Never,
                        CustodyMode::Custodial => PeerCustody::WhenCustodial,
                        CustodyMode::Always => PeerCustody::Always,
                    },
                    record_types,
                    retransmission_time: match (p.retransmission_time, p.record_types) {
                        (Some(RetransmissionTimeName::DtnMs), _) => RetransmissionTime::DtnMillis,
                        (Some(RetransmissionTimeName::UnixSeconds), _) | (None, Some(RecordTypesName::Ion)) => {
                            RetransmissionTime::UnixSecondsHalfway
                        }
                        (None, _) => RetransmissionTime::DtnMillis,
                    },
                    round_trip: p.round_trip,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(CustodyPolicy {
            peers,
            destinations: self.destinations.clone(),
            round_trip: self.round_trip.unwrap_or(defaults.round_trip),
            retransmit_min: self.retransmit_min.unwrap_or(defaults.retransmit_min),
            retransmit_max: self.retransmit_max.unwrap_or(defaults.retransmit_max),
            signal_delay: self.signal_delay.unwrap_or(defaults.signal_delay),
            signal_batch: self.signal_batch.unwrap_or(defaults.signal_batch).max(1),
            signal_lifetime: self.signal_lifetime.unwrap_or(defaults.signal_lifetime),
            refuse_unroutable: self.refuse_unroutable.unwrap_or(defaults.refuse_unroutable),
        })
    }
}
