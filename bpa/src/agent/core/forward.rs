//! What a node changes in a bundle it forwards (RFC 9171 §5.4, §4.4): its own node ID in the
//! Previous Node block, one more hop in the Hop Count block, and the time the bundle spent here
//! added to its Bundle Age block.

use crate::bundle::{BundleHeader, Eid, HopCount};

/// Why a bundle must not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The Hop Count block's limit is reached (RFC 9171 §4.4.3).
    #[error(
        "hop limit exceeded: this would be hop {count} of at most {limit} (RFC 9171 §4.4.3); delete with reason 9"
    )]
    HopLimitExceeded {
        /// The block's hop limit.
        limit: u64,
        /// The hop count this forwarding would make.
        count: u64,
    },
}

/// Applies the forwarding edits to a bundle's header (the payload is not needed) as node `local_node` after it spent `residence_ms`
/// here:
/// - the Previous Node block names `local_node` (added if absent, RFC 9171 §4.4.1);
/// - the Hop Count, if present, goes up by one; past the limit the bundle must be deleted
///   (RFC 9171 §4.4.3) and nothing is changed;
/// - the Bundle Age, if present (it always is when the creation time is 0), grows by the
///   residence time (RFC 9171 §4.4.2).
pub fn prepare_for_forwarding(
    bundle: &mut BundleHeader,
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

/// How many bytes a bundle grows by when `local_node` forwards it: the Previous Node block it
/// adds (RFC 9171 §4.4.1). Routing by contact volume counts them.
pub fn forwarding_overhead(local_node: &Eid) -> u64 {
    use crate::bundle::{BundleBuilder, CreationTimestamp, ParseOptions};
    let built =
        BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), CreationTimestamp { time: 1, sequence: 0 }, 1)
            .payload(&b"x"[..])
            .build();
    let Ok(bundle) = built else { return 0 };
    let encoded = bytes::Bytes::from(bundle.encode());
    let Ok(Some(mut header)) = BundleHeader::parse(&encoded, &ParseOptions::default()) else { return 0 };
    let before = header.encode_head(&encoded).len();
    header.set_previous_node(&local_node.node_id());
    (header.encode_head(&encoded).len() as u64).saturating_sub(before as u64)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::bundle::{Bundle, BundleBuilder, CreationTimestamp, ParseOptions};

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

    /// A bundle's header and its encoding.
    fn header(bundle: &Bundle) -> (BundleHeader, Bytes) {
        let encoded = Bytes::from(bundle.encode());
        (BundleHeader::parse(&encoded, &ParseOptions::default()).unwrap().unwrap(), encoded)
    }

    /// The bundle a forwarding node sends: the edited head, then the original bytes from the
    /// payload content on.
    fn forwarded(header: &BundleHeader, original: &Bytes) -> Bundle {
        let mut out = header.encode_head(original);
        out.extend_from_slice(&original[header.payload.data_offset..]);
        Bundle::parse(&Bytes::from(out), &ParseOptions::default()).unwrap()
    }

    #[test]
    fn forwarding_edits_the_three_blocks_and_nothing_else() {
        let (mut h, original) = header(&bundle(0, Some(2)));
        prepare_for_forwarding(&mut h, &Eid::ipn(2, 5), 250).unwrap();
        let reparsed = forwarded(&h, &original);
        assert_eq!(reparsed.previous_node(), Some(Eid::ipn(2, 0)));
        assert_eq!(reparsed.hop_count(), Some(HopCount { limit: 2, count: 1 }));
        assert_eq!(reparsed.bundle_age(), Some(350));
        assert_eq!(reparsed.payload().as_ref(), b"data");
        assert_eq!(reparsed.primary(), bundle(0, Some(2)).primary());
        // The next node replaces the Previous Node block rather than adding another.
        let (mut again, original) = header(&reparsed);
        prepare_for_forwarding(&mut again, &Eid::ipn(3, 0), 0).unwrap();
        let again = forwarded(&again, &original);
        assert_eq!(again.previous_node(), Some(Eid::ipn(3, 0)));
        assert_eq!(again.hop_count(), Some(HopCount { limit: 2, count: 2 }));
        assert_eq!(again.blocks().len(), reparsed.blocks().len());
    }

    #[test]
    fn the_overhead_is_the_previous_node_block() {
        let (mut h, original) = header(&bundle(5, None));
        let before = original.len();
        prepare_for_forwarding(&mut h, &Eid::ipn(2, 0), 0).unwrap();
        let after = forwarded(&h, &original).encode().len();
        assert_eq!(forwarding_overhead(&Eid::ipn(2, 0)), (after - before) as u64);
        assert!(
            forwarding_overhead(&"dtn://a-longer-name/".parse().unwrap())
                > forwarding_overhead(&Eid::ipn(2, 0))
        );
    }

    #[test]
    fn the_hop_limit_is_enforced() {
        let (mut b, _) = header(&bundle(5, Some(1)));
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
        let (mut h, original) = header(&bundle(5, None));
        prepare_for_forwarding(&mut h, &"dtn://relay/inbox".parse().unwrap(), 1000).unwrap();
        let b = forwarded(&h, &original);
        assert_eq!(b.previous_node(), Some("dtn://relay/".parse().unwrap()));
        assert_eq!((b.hop_count(), b.bundle_age()), (None, None));
    }

    #[test]
    fn the_primary_block_and_the_payload_block_head_are_copied_as_received() {
        // The primary block and the payload block are copied as they were received: their CRCs
        // cover their bytes, and a node must not change them (RFC 9171 §4.3.1, §5.4).
        let (mut h, original) = header(&bundle(5, Some(4)));
        prepare_for_forwarding(&mut h, &Eid::ipn(2, 0), 0).unwrap();
        let out = h.encode_head(&original);
        assert_eq!(&out[h.primary_range.clone()], &original[h.primary_range.clone()]);
        let payload_head = &original[h.payload.block_offset..h.payload.data_offset];
        assert!(out.ends_with(payload_head));
    }
}
