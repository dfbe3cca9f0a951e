//! What a node changes in a bundle it forwards (RFC 9171 §5.4, §4.4): its own node ID in the
//! Previous Node block, one more hop in the Hop Count block, and the time the bundle spent here
//! added to its Bundle Age block.

use crate::bundle::{Bundle, Eid, HopCount};

/// Why a bundle must not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error(
        "hop limit exceeded: this would be hop {count} of at most {limit} (RFC 9171 §4.4.3); delete with reason 9"
    )]
    HopLimitExceeded { limit: u64, count: u64 },
}

/// Applies the forwarding edits to `bundle` as node `local_node` after it spent `residence_ms`
/// here:
/// - the Previous Node block names `local_node` (added if absent, RFC 9171 §4.4.1);
/// - the Hop Count, if present, goes up by one; past the limit the bundle must be deleted
///   (RFC 9171 §4.4.3) and nothing is changed;
/// - the Bundle Age, if present (it always is when the creation time is 0), grows by the
///   residence time (RFC 9171 §4.4.2).
pub fn prepare_for_forwarding(
    bundle: &mut Bundle,
    local_node: &Eid,
    residence_ms: u64,
) -> Result<(), ForwardError> {
    if let Some(HopCount { limit, count }) = bundle.hop_count() {
        let count = count.saturating_add(1);
        if count > limit {
            return Err(ForwardError::HopLimitExceeded { limit, count });
        }
        bundle.set_hop_count(count);
    }
    if let Some(age) = bundle.bundle_age() {
        bundle.set_bundle_age(age.saturating_add(residence_ms));
    }
    bundle.set_previous_node(&local_node.node_id());
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::bundle::{BundleBuilder, CreationTimestamp, ParseOptions};

    fn bundle(time: u64, hop_limit: Option<u64>) -> Bundle {
        let mut b = BundleBuilder::new(
            Eid::ipn(1, 1),
            Eid::ipn(3, 1),
            CreationTimestamp { time, sequence: 0 },
            60_000,
        )
        .payload(&b"data"[..]);
        if let Some(limit) = hop_limit {
            b = b.hop_limit(limit);
        }
        if time == 0 {
            b = b.bundle_age(100);
        }
        b.build().unwrap()
    }

    #[test]
    fn forwarding_edits_the_three_blocks_and_nothing_else() {
        let mut b = bundle(0, Some(2));
        prepare_for_forwarding(&mut b, &Eid::ipn(2, 5), 250).unwrap();
        let reparsed = Bundle::parse(&Bytes::from(b.encode()), &ParseOptions::default()).unwrap();
        assert_eq!(reparsed.previous_node(), Some(Eid::ipn(2, 0)));
        assert_eq!(reparsed.hop_count(), Some(HopCount { limit: 2, count: 1 }));
        assert_eq!(reparsed.bundle_age(), Some(350));
        assert_eq!(reparsed.payload().as_ref(), b"data");
        assert_eq!(reparsed.primary(), bundle(0, Some(2)).primary());
        // The next node replaces the Previous Node block rather than adding another.
        let mut again = reparsed;
        prepare_for_forwarding(&mut again, &Eid::ipn(3, 0), 0).unwrap();
        assert_eq!(again.previous_node(), Some(Eid::ipn(3, 0)));
        assert_eq!(again.hop_count(), Some(HopCount { limit: 2, count: 2 }));
    }

    #[test]
    fn the_hop_limit_is_enforced() {
        let mut b = bundle(5, Some(1));
        prepare_for_forwarding(&mut b, &Eid::ipn(2, 0), 0).unwrap();
        let before = b.clone();
        assert_eq!(
            prepare_for_forwarding(&mut b, &Eid::ipn(3, 0), 0),
            Err(ForwardError::HopLimitExceeded { limit: 1, count: 2 })
        );
        assert_eq!(b, before, "a refused forward changes nothing");
    }

    #[test]
    fn bundles_without_the_optional_blocks_only_gain_previous_node() {
        let mut b = bundle(5, None);
        prepare_for_forwarding(&mut b, &"dtn://relay/inbox".parse().unwrap(), 1000).unwrap();
        assert_eq!(b.previous_node(), Some("dtn://relay/".parse().unwrap()));
        assert_eq!((b.hop_count(), b.bundle_age()), (None, None));
    }
}
