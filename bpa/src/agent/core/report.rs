//! Bundle status reports a node sends about a bundle (RFC 9171 §5.1, §6.1.1): when the bundle
//! asks for one, to its report-to endpoint, from the node's administrative endpoint.

use crate::admin::{AdminRecord, AdminRecordTypes, ReasonCode, StatusAssertion, StatusReport};
use crate::bundle::{Bundle, BundleBuilder, BundleError, BundleFlags, CreationTimestamp, Eid, PrimaryBlock};

/// Which status a report asserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Received,
    Forwarded,
    Delivered,
    Deleted,
}

impl Status {
    /// The bundle processing flag that asks for this report (RFC 9171 §4.2.3).
    pub fn request_flag(self) -> u64 {
        match self {
            Status::Received => BundleFlags::REPORT_RECEPTION,
            Status::Forwarded => BundleFlags::REPORT_FORWARDING,
            Status::Delivered => BundleFlags::REPORT_DELIVERY,
            Status::Deleted => BundleFlags::REPORT_DELETION,
        }
    }
}

/// What a node does about status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPolicy {
    /// Send the reports bundles ask for. Off by default: "the generation of status reports MUST
    /// be disabled by default and enabled only when the risk of excessive network traffic is
    /// deemed acceptable" (RFC 9171 §5.1) — a report per hop per status can multiply a
    /// network's traffic.
    pub enabled: bool,
    /// Lifetime of report bundles.
    pub lifetime_ms: u64,
}

impl Default for ReportPolicy {
    fn default() -> Self {
        ReportPolicy { enabled: false, lifetime_ms: 24 * 3_600_000 }
    }
}

/// The status report bundle for `subject` (whose payload is `payload_length` bytes), if it asked
/// for this status, has somewhere to send it, is not itself an administrative record, and the
/// policy allows. `local_node` is this node's ID (the report's source); `now` and `sequence` its
/// creation timestamp.
pub fn status_report(
    subject: &PrimaryBlock,
    payload_length: u64,
    status: Status,
    reason: ReasonCode,
    local_node: &Eid,
    created: CreationTimestamp,
    policy: &ReportPolicy,
) -> Result<Option<Bundle>, BundleError> {
    let flags = subject.flags;
    if !policy.enabled
        || !flags.contains(status.request_flag())
        || flags.is_admin_record()
        || subject.report_to.is_null()
    {
        return Ok(None);
    }
    let time = flags.contains(BundleFlags::STATUS_TIME_REQUESTED).then_some(created.time);
    let asserted = |s: Status| if s == status { StatusAssertion::yes(time) } else { StatusAssertion::no() };
    let report = StatusReport {
        received: asserted(Status::Received),
        forwarded: asserted(Status::Forwarded),
        delivered: asserted(Status::Delivered),
        deleted: asserted(Status::Deleted),
        reason,
        source: subject.source.clone(),
        creation: subject.creation,
        fragment: subject.fragment.map(|f| (f.offset, payload_length)),
    };
    let payload = AdminRecord::StatusReport(report).encode(&AdminRecordTypes::default());
    let mut builder =
        BundleBuilder::new(local_node.node_id(), subject.report_to.clone(), created, policy.lifetime_ms)
            .flags(BundleFlags(BundleFlags::ADMIN_RECORD))
            .payload(payload);
    if created.time == 0 {
        builder = builder.bundle_age(0);
    }
    builder.build().map(Some)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::bundle::{FragmentInfo, ParseOptions};

    fn subject(flags: u64) -> PrimaryBlock {
        BundleBuilder::new(
            Eid::ipn(1, 1),
            Eid::ipn(3, 1),
            CreationTimestamp { time: 500, sequence: 4 },
            60_000,
        )
        .report_to(Eid::ipn(1, 0))
        .flags(BundleFlags(flags))
        .payload(&b"x"[..])
        .build()
        .unwrap()
        .primary()
        .clone()
    }

    const NOW: CreationTimestamp = CreationTimestamp { time: 9_000, sequence: 1 };

    fn report(subject: &PrimaryBlock, status: Status) -> Option<(Bundle, StatusReport)> {
        let bundle = status_report(
            subject,
            1,
            status,
            ReasonCode::NO_ADDITIONAL_INFORMATION,
            &Eid::ipn(2, 5),
            NOW,
            &ReportPolicy { enabled: true, ..ReportPolicy::default() },
        )
        .unwrap()?;
        let bundle = Bundle::parse(&Bytes::from(bundle.encode()), &ParseOptions::default()).unwrap();
        let AdminRecord::StatusReport(r) =
            AdminRecord::decode(bundle.payload(), &AdminRecordTypes::default()).unwrap()
        else {
            panic!("not a status report")
        };
        Some((bundle, r))
    }

    #[test]
    fn a_requested_report_is_made_and_addressed() {
        let s = subject(BundleFlags::REPORT_DELIVERY);
        let (bundle, r) = report(&s, Status::Delivered).unwrap();
        assert!(bundle.primary().flags.is_admin_record());
        assert_eq!(bundle.primary().source, Eid::ipn(2, 0));
        assert_eq!(bundle.primary().destination, Eid::ipn(1, 0));
        assert_eq!(bundle.primary().flags.report_requests(), 0);
        assert_eq!(r.delivered, StatusAssertion::yes(None));
        assert_eq!(
            (r.received, r.forwarded, r.deleted),
            (StatusAssertion::no(), StatusAssertion::no(), StatusAssertion::no())
        );
        assert_eq!((r.source.clone(), r.creation, r.fragment), (Eid::ipn(1, 1), s.creation, None));
    }

    #[test]
    fn times_go_in_when_asked_for() {
        let s = subject(BundleFlags::REPORT_RECEPTION | BundleFlags::STATUS_TIME_REQUESTED);
        let (_, r) = report(&s, Status::Received).unwrap();
        assert_eq!(r.received, StatusAssertion::yes(Some(NOW.time)));
    }

    #[test]
    fn no_report_unless_asked_possible_and_allowed() {
        assert!(report(&subject(BundleFlags::REPORT_DELIVERY), Status::Forwarded).is_none());
        let mut s = subject(BundleFlags::REPORT_DELETION);
        s.report_to = Eid::Null;
        assert!(report(&s, Status::Deleted).is_none());
        let mut admin = subject(0);
        admin.flags = BundleFlags(BundleFlags::ADMIN_RECORD | BundleFlags::REPORT_DELETION);
        assert!(report(&admin, Status::Deleted).is_none(), "never a report about a report");
        // Off unless enabled (RFC 9171 §5.1: "MUST be disabled by default").
        let off = ReportPolicy::default();
        assert!(!off.enabled);
        let s = subject(BundleFlags::REPORT_DELETION);
        assert!(
            status_report(&s, 1, Status::Deleted, ReasonCode::LIFETIME_EXPIRED, &Eid::ipn(2, 0), NOW, &off)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn fragments_are_named_with_offset_and_length() {
        let mut s = subject(BundleFlags::REPORT_DELETION);
        s.flags.0 |= BundleFlags::IS_FRAGMENT;
        s.fragment = Some(FragmentInfo { offset: 100, total_adu_length: 1000 });
        let bundle = status_report(
            &s,
            250,
            Status::Deleted,
            ReasonCode::HOP_LIMIT_EXCEEDED,
            &Eid::ipn(2, 0),
            NOW,
            &ReportPolicy { enabled: true, ..ReportPolicy::default() },
        )
        .unwrap()
        .unwrap();
        let AdminRecord::StatusReport(r) =
            AdminRecord::decode(bundle.payload(), &AdminRecordTypes::default()).unwrap()
        else {
            panic!("not a status report")
        };
        assert_eq!((r.fragment, r.reason), (Some((100, 250)), ReasonCode::HOP_LIMIT_EXCEEDED));
    }
}
