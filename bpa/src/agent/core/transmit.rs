//! How one bundle goes to a neighbour, decided with no I/O (RFC 9171 §5.4, §5.8): whole when it
//! fits the link, else in fragments planned from its edited header alone (the payload is then
//! streamed fragment by fragment), else not at all. The forwarder carries the decision out.

use bytes::Bytes;

use super::fragment::{FragmentError, FragmentPlan};
use crate::bundle::{Bundle, BundleHeader, CanonicalBlock};

/// The largest bundle a neighbour takes, in encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkLimits {
    /// What its convergence layer says (`u64::MAX`: no limit).
    pub layer: u64,
    /// What the neighbour said by refusing a bundle as too large (`u64::MAX` until it does).
    pub learned: u64,
}

impl LinkLimits {
    pub fn max(self) -> u64 {
        self.layer.min(self.learned)
    }
}

/// How a bundle goes.
#[derive(Debug)]
pub(crate) enum Transmission {
    /// In one piece.
    Whole,
    /// In fragments of at most the link's limit each (RFC 9171 §5.8).
    Fragments(Box<FragmentPlan>),
}

/// Why a bundle cannot go to this neighbour.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unsendable {
    /// Over what the link's layer takes and not to be fragmented: it waits for another route
    /// or its expiry.
    #[error("the bundle is too big for this link ({max} bytes at most): {error}")]
    TooBigForLink { max: u64, error: FragmentError },
    /// Over what the neighbour said it takes (refusing a bundle as too large), and not to be
    /// fragmented: the neighbour's refusal, in effect.
    #[error(
        "the neighbour takes bundles of at most {learned} bytes and this one cannot be fragmented: {error}"
    )]
    OverLearnedLimit { learned: u64, error: FragmentError },
}

/// How a bundle of `size` encoded bytes, whose header (edited for forwarding) is `header`, goes
/// over a link with `limits`.
pub(crate) fn plan(header: &BundleHeader, size: u64, limits: LinkLimits) -> Result<Transmission, Unsendable> {
    let max = limits.max();
    if size <= max {
        return Ok(Transmission::Whole);
    }
    // The first fragment carries every extension block, the last the longest offset: if the
    // payload has room in both, it has in every fragment — found now, not halfway through.
    let length = usize::try_from(header.payload.data_length).unwrap_or(usize::MAX);
    let planned = fragment_plan(header, usize::try_from(max).unwrap_or(usize::MAX)).and_then(|plan| {
        plan.chunk_len(0, length)?;
        plan.chunk_len(length.saturating_sub(1), 1)?;
        Ok(plan)
    });
    match planned {
        Ok(plan) => Ok(Transmission::Fragments(Box::new(plan))),
        Err(error) if limits.learned < limits.layer => {
            Err(Unsendable::OverLearnedLimit { learned: limits.learned, error })
        }
        Err(error) => Err(Unsendable::TooBigForLink { max, error }),
    }
}

/// The fragmentation of a bundle whose header (edited for forwarding) is `header`, into pieces
/// of at most `max` bytes.
fn fragment_plan(header: &BundleHeader, max: usize) -> Result<FragmentPlan, FragmentError> {
    let payload = CanonicalBlock {
        block_type: crate::bundle::block_type::PAYLOAD,
        number: 1,
        flags: header.payload.block_flags,
        crc_type: header.payload.crc_type,
        data: Bytes::new(),
    };
    let mut blocks = header.extension_blocks.clone();
    blocks.push(payload);
    let skeleton = Bundle::from_parts(header.primary.clone(), blocks);
    FragmentPlan::for_skeleton(skeleton, header.payload.data_length, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleBuilder, BundleFlags, CreationTimestamp, Eid, ParseOptions};

    fn header(payload: usize, flags: u64) -> (BundleHeader, u64) {
        let creation = CreationTimestamp { time: 800_000_000_000, sequence: 0 };
        let bundle = BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), creation, 3_600_000)
            .flags(BundleFlags(flags))
            .payload(vec![7u8; payload])
            .build()
            .expect("bundle");
        let bytes = Bytes::from(bundle.encode());
        let header =
            BundleHeader::parse(&bytes, &ParseOptions::default()).expect("parse").expect("whole header");
        (header, bytes.len() as u64)
    }

    const ANY: LinkLimits = LinkLimits { layer: u64::MAX, learned: u64::MAX };

    #[test]
    fn a_bundle_that_fits_goes_whole_even_at_exactly_the_limit() {
        let (header, size) = header(1_000, 0);
        assert!(matches!(plan(&header, size, ANY), Ok(Transmission::Whole)));
        let exact = LinkLimits { layer: size, learned: u64::MAX };
        assert!(matches!(plan(&header, size, exact), Ok(Transmission::Whole)));
    }

    #[test]
    fn a_bundle_over_the_lower_of_the_two_limits_goes_in_fragments_that_fit() {
        let (header, size) = header(10_000, 0);
        for limits in [
            LinkLimits { layer: 2_000, learned: u64::MAX },
            LinkLimits { layer: u64::MAX, learned: 2_000 },
            LinkLimits { layer: 5_000, learned: 2_000 },
        ] {
            let Ok(Transmission::Fragments(fragments)) = plan(&header, size, limits) else {
                panic!("fragments for {limits:?}");
            };
            let mut at = 0;
            while at < 10_000 {
                let n = fragments.chunk_len(at, 10_000 - at).expect("a chunk");
                let piece = fragments.piece(at, Bytes::from(vec![7u8; n]));
                assert!(piece.encode().len() as u64 <= 2_000, "a fragment over the limit");
                at += n;
            }
        }
    }

    #[test]
    fn one_not_to_be_fragmented_is_refused_as_the_binding_limit_says() {
        let (header, size) = header(10_000, BundleFlags::MUST_NOT_FRAGMENT);
        let link = LinkLimits { layer: 2_000, learned: u64::MAX };
        assert!(matches!(
            plan(&header, size, link),
            Err(Unsendable::TooBigForLink { max: 2_000, error: FragmentError::MustNotFragment })
        ));
        let learned = LinkLimits { layer: 5_000, learned: 2_000 };
        assert!(matches!(
            plan(&header, size, learned),
            Err(Unsendable::OverLearnedLimit { learned: 2_000, error: FragmentError::MustNotFragment })
        ));
    }

    #[test]
    fn a_limit_smaller_than_a_fragments_blocks_is_no_plan() {
        let (header, size) = header(10_000, 0);
        let tiny = LinkLimits { layer: 20, learned: u64::MAX };
        assert!(matches!(
            plan(&header, size, tiny),
            Err(Unsendable::TooBigForLink { max: 20, error: FragmentError::TooSmall { .. } })
        ));
    }
}
