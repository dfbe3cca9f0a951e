//! Proactive fragmentation (RFC 9171 §5.8) and reassembly of an ADU (RFC 9171 §5.9).
//!
//! Sans-IO and zero-copy: fragments' payloads are views of the original payload; reassembly
//! keeps only the material extents — the bytes not already received — of each fragment.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::bundle::{BlockFlags, Bundle, BundleFlags, CanonicalBlock, CreationTimestamp, Eid, FragmentInfo};

/// Why a bundle cannot be fragmented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// Its flags forbid fragmentation.
    #[error("the bundle must not be fragmented (its flags say so, RFC 9171 §4.2.3)")]
    MustNotFragment,
    /// The blocks every fragment carries leave no room for payload.
    #[error(
        "no fragment of this bundle fits in {max_size} bytes: the blocks a fragment must carry take {overhead} \
         (RFC 9171 §5.8)"
    )]
    TooSmall {
        /// The largest fragment allowed, in bytes.
        max_size: usize,
        /// What a fragment takes without payload, in bytes.
        overhead: usize,
    },
}

/// Splits `bundle` into fragments of at most `max_size` encoded bytes each (RFC 9171 §5.8). A
/// bundle that already fits is returned whole. The first fragment carries every extension block;
/// the others those flagged "replicate in every fragment", and the Previous Node, Bundle Age and
/// Hop Count blocks, which describe each bundle's journey: every fragment is a bundle of its own,
/// and one with creation time 0 is invalid without its Bundle Age block (RFC 9171 §4.4.2, found by
/// the property test). A fragment may be fragmented again: offsets stay relative to the original
/// ADU.
pub fn fragment(bundle: &Bundle, max_size: usize) -> Result<Vec<Bundle>, FragmentError> {
    if bundle.encoded_len() <= max_size {
        return Ok(vec![bundle.clone()]);
    }
    let payload = bundle.payload();
    let plan = FragmentPlan::new(bundle, max_size)?;
    let mut fragments = Vec::new();
    let mut at = 0usize;
    while at < payload.len() {
        let n = plan.chunk_len(at, payload.len() - at)?;
        fragments.push(plan.piece(at, payload.slice(at..at + n)));
        at += n;
    }
    Ok(fragments)
}

/// Fragmentation planned from a bundle's blocks alone, so that a large stored payload can be cut
/// while it streams: each fragment's payload length, then the fragment around its bytes.
#[derive(Debug, Clone)]
pub struct FragmentPlan {
    /// The bundle with an empty payload: its blocks are what every fragment is built from.
    skeleton: Bundle,
    base: u64,
    total: u64,
    max_size: usize,
}

impl FragmentPlan {
    /// A plan for `bundle` (its payload's content is not looked at: a skeleton with an empty
    /// payload will do) into fragments of at most `max_size` encoded bytes, for a payload of
    /// `payload_len` bytes.
    pub fn for_skeleton(
        skeleton: Bundle,
        payload_len: u64,
        max_size: usize,
    ) -> Result<FragmentPlan, FragmentError> {
        let primary = skeleton.primary();
        if primary.flags.must_not_fragment() {
            return Err(FragmentError::MustNotFragment);
        }
        let (base, total) = match primary.fragment {
            Some(f) => (f.offset, f.total_adu_length),
            None => (0, payload_len),
        };
        Ok(FragmentPlan { skeleton, base, total, max_size })
    }

    fn new(bundle: &Bundle, max_size: usize) -> Result<FragmentPlan, FragmentError> {
        let mut blocks: Vec<CanonicalBlock> = bundle.extension_blocks().to_vec();
        let mut payload = bundle.payload_block().clone();
        let len = payload.data.len() as u64;
        payload.data = Bytes::new();
        blocks.push(payload);
        FragmentPlan::for_skeleton(Bundle::from_parts(bundle.primary().clone(), blocks), len, max_size)
    }

    /// How many payload bytes the fragment starting at `at` carries (`left` bytes remain).
    pub fn chunk_len(&self, at: usize, left: usize) -> Result<usize, FragmentError> {
        // The encoded size with an empty payload; the payload then adds its bytes and the
        // growth of its length head beyond one byte.
        let empty = self.piece(at, Bytes::new()).encoded_len();
        let size_with = |n: usize| empty - 1 + crate::bundle::cbor::head_len(n as u64) + n;
        let mut n = self.max_size.saturating_sub(empty);
        while n > 0 && size_with(n) > self.max_size {
            n -= (size_with(n) - self.max_size).min(n);
        }
        if n == 0 {
            return Err(FragmentError::TooSmall { max_size: self.max_size, overhead: empty });
        }
        Ok(n.min(left))
    }

    /// The fragment carrying `chunk`, the payload bytes found at `at`.
    pub fn piece(&self, at: usize, chunk: Bytes) -> Bundle {
        piece(&self.skeleton, self.base, self.total, at, chunk, at == 0)
    }
}

/// One fragment: the payload bytes `chunk` found at `at` in `bundle`'s payload.
fn piece(bundle: &Bundle, base: u64, total: u64, at: usize, chunk: Bytes, first: bool) -> Bundle {
    let mut primary = bundle.primary().clone();
    primary.flags.0 |= BundleFlags::IS_FRAGMENT;
    primary.fragment = Some(FragmentInfo { offset: base + at as u64, total_adu_length: total });
    let mut blocks: Vec<CanonicalBlock> = bundle
        .extension_blocks()
        .iter()
        .filter(|b| {
            first
                || b.flags.contains(BlockFlags::REPLICATE_IN_EVERY_FRAGMENT)
                || travels_with_every_fragment(b)
        })
        .cloned()
        .collect();
    let mut payload = bundle.payload_block().clone();
    payload.data = chunk;
    blocks.push(payload);
    Bundle::from_parts(primary, blocks)
}

/// Blocks that describe a bundle's own journey, so every fragment needs its copy.
fn travels_with_every_fragment(block: &CanonicalBlock) -> bool {
    use crate::bundle::block_type::{BUNDLE_AGE, HOP_COUNT, PREVIOUS_NODE};
    matches!(block.block_type, PREVIOUS_NODE | BUNDLE_AGE | HOP_COUNT)
}

/// The name of the ADU a fragment belongs to, as the store records it for fragments awaiting
/// reassembly: source, creation time and sequence number (RFC 9171 §5.9) — and the total ADU
/// length the fragment claims, so a fragment contradicting the others on it (forged, or from a
/// broken sender) starts an ADU of its own and cannot keep a consistent set from completing.
/// (The store's upgrade to schema 5 makes older keys into these by appending the length.)
pub fn adu_key(primary: &crate::bundle::PrimaryBlock) -> String {
    let total = primary.fragment.map_or(0, |f| f.total_adu_length);
    format!("{} {} {} {total}", primary.source, primary.creation.time, primary.creation.sequence)
}

/// Why a fragment does not belong to, or cannot complete, a reassembly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// A whole bundle was given.
    #[error("the bundle is not a fragment")]
    NotAFragment,
    /// The fragment's source, creation time or sequence differs.
    #[error("the fragment belongs to another ADU ({found}, not {expected})")]
    OtherAdu {
        /// The ADU being reassembled.
        expected: String,
        /// The fragment's.
        found: String,
    },
    /// The fragment gives another total ADU length.
    #[error("the fragment says the ADU is {found} bytes, earlier fragments said {expected} (RFC 9171 §5.9)")]
    TotalLengthMismatch {
        /// What the earlier fragments said.
        expected: u64,
        /// What this one says.
        found: u64,
    },
    /// Bytes are missing.
    #[error("the ADU is not complete: {covered} of {total} bytes received")]
    Incomplete {
        /// Bytes of the ADU the fragments cover.
        covered: u64,
        /// The ADU's length.
        total: u64,
    },
}

/// The fragments of one ADU received so far (RFC 9171 §5.9).
#[derive(Debug, Clone)]
pub struct Reassembly {
    source: Eid,
    creation: CreationTimestamp,
    total: u64,
    /// Material extents by offset: disjoint, each the bytes first received for its range.
    extents: BTreeMap<u64, Bytes>,
    covered: u64,
    /// The fragment whose extents include offset 0: its blocks become the ADU's.
    first: Option<Bundle>,
}

impl Reassembly {
    /// Starts a reassembly with its first fragment.
    pub fn new(fragment: &Bundle) -> Result<Reassembly, ReassemblyError> {
        let info = fragment.primary().fragment.ok_or(ReassemblyError::NotAFragment)?;
        let mut r = Reassembly {
            source: fragment.primary().source.clone(),
            creation: fragment.primary().creation,
            total: info.total_adu_length,
            extents: BTreeMap::new(),
            covered: 0,
            first: None,
        };
        r.add(fragment)?;
        Ok(r)
    }

    /// Adds a fragment; duplicates and overlaps are fine. Returns how many new bytes it brought.
    pub fn add(&mut self, fragment: &Bundle) -> Result<u64, ReassemblyError> {
        let primary = fragment.primary();
        let info = primary.fragment.ok_or(ReassemblyError::NotAFragment)?;
        if primary.source != self.source || primary.creation != self.creation {
            return Err(ReassemblyError::OtherAdu {
                expected: format!("{}/{}/{}", self.source, self.creation.time, self.creation.sequence),
                found: format!("{}/{}/{}", primary.source, primary.creation.time, primary.creation.sequence),
            });
        }
        if info.total_adu_length != self.total {
            return Err(ReassemblyError::TotalLengthMismatch {
                expected: self.total,
                found: info.total_adu_length,
            });
        }
        let data = fragment.payload();
        // The parser guarantees offset + length <= total.
        let (start, end) = (info.offset, info.offset + data.len() as u64);
        if start == 0 && self.first.is_none() && !data.is_empty() {
            self.first = Some(fragment.clone());
        }
        // Walk the gaps between the extents already held within [start, end).
        let overlapping: Vec<(u64, u64)> = self
            .extents
            .range(..end)
            .rev()
            .take_while(|(s, e)| **s + e.len() as u64 > start)
            .map(|(s, e)| (*s, *s + e.len() as u64))
            .collect();
        let mut gaps = Vec::new();
        let mut cursor = start;
        for (s, e) in overlapping.into_iter().rev() {
            if s > cursor {
                gaps.push((cursor, s));
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            gaps.push((cursor, end));
        }
        let mut added = 0;
        for (s, e) in gaps {
            self.extents.insert(s, data.slice((s - start) as usize..(e - start) as usize));
            added += e - s;
        }
        self.covered += added;
        Ok(added)
    }

    /// True once every byte of the ADU has arrived.
    pub fn is_complete(&self) -> bool {
        self.covered == self.total && self.first.is_some()
    }

    /// Bytes of the ADU received so far.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// The reassembled bundle: the offset-0 fragment's blocks, the whole ADU as payload, and a
    /// primary block that is no longer a fragment's.
    pub fn finish(self) -> Result<Bundle, ReassemblyError> {
        let (Some(first), true) = (self.first, self.covered == self.total) else {
            return Err(ReassemblyError::Incomplete { covered: self.covered, total: self.total });
        };
        let mut adu = Vec::with_capacity(self.total as usize);
        for extent in self.extents.values() {
            adu.extend_from_slice(extent);
        }
        let mut primary = first.primary().clone();
        primary.flags.0 &= !BundleFlags::IS_FRAGMENT;
        primary.fragment = None;
        let mut blocks: Vec<CanonicalBlock> = first.extension_blocks().to_vec();
        let mut payload = first.payload_block().clone();
        payload.data = adu.into();
        blocks.push(payload);
        Ok(Bundle::from_parts(primary, blocks))
    }
}

#[cfg(test)]
mod tests;
