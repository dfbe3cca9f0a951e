//! Reassembly of ADUs addressed to this node (RFC 9171 §5.9), from the store and streamed.
//!
//! Each fragment is stored as it arrives, durable and indexed by its ADU (`AwaitingReassembly`)
//! with its offset and length — the ADU's coverage map is those rows. A map of the ranges
//! covered so far is kept in memory for the ADUs being reassembled ([`Coverage`]), so an
//! arrival costs one fragment's metadata (the rows are read once, when an ADU is first seen or
//! was forgotten), not a read of every fragment — that would be quadratic in the number of
//! fragments, and a sender of many small fragments could make it so. Once the fragments cover the
//! whole ADU, the bundle is written once into the store: the head of the offset-0 fragment
//! (RFC 9171 §5.9: its blocks become the bundle's) without the fragment fields, then each
//! fragment's payload bytes in offset order, overlaps and duplicates skipped, streamed from
//! the store through a buffer, the payload CRC computed on the way. The fragments are deleted
//! only once the bundle is durable. Work is linear in the ADU's bytes; memory is one buffer.

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::counters::Counters;
use super::node::Agent;
use crate::bundle::{BundleFlags, BundleHeader, streamed_head};
use crate::store::{
    BundleState, DeleteReason, InsertOutcome, PayloadContent, StateKind, Store, StoreError, StoreId,
    StreamingInsert,
};

/// Fragment rows read per store query.
const PAGE: usize = 1024;

/// Bytes copied at a time from a fragment into the reassembled bundle.
const CHUNK: usize = 64 * 1024;

/// ADUs whose coverage is kept in memory; past it the oldest of the source tracking the most is
/// forgotten (and read from the store again if another of its fragments arrives).
const MAX_TRACKED_ADUS: usize = 4096;

/// ADUs of one source whose coverage is kept in memory; past it that source's oldest is
/// forgotten. A source (or a sender using its name) flooding fragments of new ADUs displaces
/// only its own, never another source's reassembly.
const MAX_TRACKED_PER_SOURCE: usize = 256;

/// The ranges of each ADU the stored fragments cover, for the ADUs being reassembled (bounded
/// in all and per source).
#[derive(Debug, Default)]
pub struct Coverage {
    adus: std::collections::HashMap<String, Covered>,
    /// Each source's ADUs tracked, oldest first, for forgetting.
    by_source: std::collections::HashMap<String, std::collections::VecDeque<String>>,
}

/// Disjoint covered ranges of one ADU, start → end, merged as fragments arrive.
#[derive(Debug, Default)]
struct Covered {
    ranges: std::collections::BTreeMap<u64, u64>,
}

impl Covered {
    fn add(&mut self, mut start: u64, mut end: u64) {
        if end <= start {
            return;
        }
        // Merge with the range that begins at or before `start` if it reaches it, then with
        // every range that begins within the new one.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
        }
        let overlapped: Vec<u64> = self.ranges.range(start..=end).map(|(&s, _)| s).collect();
        for s in overlapped {
            if let Some(e) = self.ranges.remove(&s) {
                end = end.max(e);
            }
        }
        self.ranges.insert(start, end);
    }

    fn covers(&self, total: u64) -> bool {
        self.ranges.first_key_value().is_some_and(|(&s, &e)| s == 0 && e >= total)
    }
}

impl Coverage {
    fn forget(&mut self, adu: &str) {
        if self.adus.remove(adu).is_some() {
            let source = source_of(adu);
            if let Some(adus) = self.by_source.get_mut(source) {
                adus.retain(|a| a != adu);
                if adus.is_empty() {
                    self.by_source.remove(source);
                }
            }
        }
    }

    /// Forgets the oldest ADU of `source`.
    fn forget_oldest_of(&mut self, source: &str) {
        if let Some(oldest) = self.by_source.get(source).and_then(|adus| adus.front()).cloned() {
            self.forget(&oldest);
        }
    }

    fn track(&mut self, adu: &str, covered: Covered) -> &mut Covered {
        let source = source_of(adu).to_owned();
        if !self.adus.contains_key(adu) {
            if self.by_source.get(&source).is_some_and(|adus| adus.len() >= MAX_TRACKED_PER_SOURCE) {
                self.forget_oldest_of(&source);
            } else if self.adus.len() >= MAX_TRACKED_ADUS {
                // Bounded: at most MAX_TRACKED_ADUS / MAX_TRACKED_PER_SOURCE * 2 sources are
                // looked through, and none can hold more than its share.
                let busiest =
                    self.by_source.iter().max_by_key(|(_, adus)| adus.len()).map(|(s, _)| s.clone());
                if let Some(busiest) = busiest {
                    self.forget_oldest_of(&busiest);
                }
            }
            self.by_source.entry(source).or_default().push_back(adu.to_owned());
        }
        self.adus.entry(adu.to_owned()).or_insert(covered)
    }
}

/// The source part of an ADU key ([`super::core::fragment::adu_key`]: `source time sequence total`;
/// an EID holds no space).
fn source_of(adu: &str) -> &str {
    adu.split(' ').next().unwrap_or(adu)
}

/// One stored fragment of an ADU: where its payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Extent {
    start: u64,
    end: u64,
    /// The ADU length the fragment claims (its key names it too: they agree but for a row
    /// stored before schema 5 whose header could not be read).
    adu_length: u64,
    id: StoreId,
}

/// Why an ADU could not be reassembled now.
#[derive(Debug, thiserror::Error)]
enum ReassemblyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bytes {from}..{to} of the ADU are not in any readable fragment")]
    Gap { from: u64, to: u64 },
    #[error("the reassembled bundle is invalid: {0}")]
    Invalid(String),
}

/// How far `extents` (sorted) cover the ADU from offset 0 without a gap.
fn reach(extents: &[Extent]) -> u64 {
    let mut reach = 0;
    for extent in extents {
        if extent.start > reach {
            break;
        }
        reach = reach.max(extent.end);
    }
    reach
}

impl<S: Store> Agent<S> {
    /// Reassembles the ADU `adu` if its stored fragments cover it; otherwise nothing happens
    /// (the next fragment's arrival looks again). Then the whole bundle is dispatched.
    ///
    /// Boxed: delivering the whole bundle is where reassembly is called from.
    pub(super) fn reassemble<'a>(&'a self, adu: &'a str) -> super::node::BoxedFuture<'a> {
        Box::pin(self.reassemble_now(adu))
    }

    /// A fragment of `adu` (of `total` bytes) was stored as `id`: its range is added to the
    /// ADU's coverage, and the ADU reassembled once covered.
    pub(super) async fn fragment_arrived(&self, adu: &str, id: StoreId, total: u64) {
        let covered = {
            let mut coverage = self.inner.reassembly.lock().await;
            match coverage.adus.get_mut(adu) {
                Some(covered) => match self.inner.store.get(id).await {
                    Ok(Some(stored)) => {
                        if let Some(fragment) = stored.bundle_id.fragment {
                            covered.add(fragment.offset, fragment.end());
                        }
                        covered.covers(total)
                    }
                    Ok(None) => false,
                    Err(error) => {
                        tracing::error!(%error, adu, "cannot read a fragment's metadata");
                        coverage.forget(adu);
                        false
                    }
                },
                None => match self.extents(adu).await {
                    Ok(extents) => {
                        let mut covered = Covered::default();
                        for extent in &extents {
                            covered.add(extent.start, extent.end);
                        }
                        coverage.track(adu, covered).covers(total)
                    }
                    Err(error) => {
                        tracing::error!(%error, adu, "cannot list the fragments of an ADU");
                        false
                    }
                },
            }
        };
        if covered {
            self.reassemble(adu).await;
        }
    }

    async fn reassemble_now(&self, adu: &str) {
        let mut coverage = self.inner.reassembly.lock().await;
        // Read afresh from the store here; what is kept in memory is rebuilt from it when the
        // next fragment arrives (fragments may have expired since it was made).
        coverage.forget(adu);
        let extents = match self.extents(adu).await {
            Ok(extents) => extents,
            Err(error) => {
                tracing::error!(%error, adu, "cannot list the fragments of an ADU");
                return;
            }
        };
        // The offset-0 fragment gives the ADU's length and the bundle's blocks; only fragments
        // that agree with it on the length count (the key says so too).
        let Some(first) = extents.iter().find(|e| e.start == 0 && e.end > 0).copied() else { return };
        let Some((header, _)) = self.open_payload(first.id).await else { return };
        let Some(total) = header.primary.fragment.map(|f| f.total_adu_length) else { return };
        let extents: Vec<Extent> = extents.into_iter().filter(|e| e.adu_length == total).collect();
        if reach(&extents) < total {
            return;
        }
        let (id, header) = match self.write_reassembled(&header, total, &extents).await {
            Ok(Some(done)) => done,
            Ok(None) => (None, header),
            Err(error) => {
                Counters::bump(&self.inner.counters.store_errors);
                tracing::warn!(%error, adu, "reassembly failed; the fragments stay until they expire");
                return;
            }
        };
        for extent in &extents {
            self.remove(extent.id, DeleteReason::Reassembled).await;
        }
        drop(coverage);
        Counters::bump(&self.inner.counters.reassembled);
        tracing::info!(adu, fragments = extents.len(), length = total, "ADU reassembled");
        if let Some(id) = id {
            self.dispatch_stored(id, &header.primary).await;
        }
    }

    /// The ADU's stored fragments by offset, read a page at a time (metadata only).
    async fn extents(&self, adu: &str) -> Result<Vec<Extent>, StoreError> {
        let mut extents = Vec::new();
        let mut after = 0;
        loop {
            let page =
                self.inner.store.by_state(StateKind::AwaitingReassembly, Some(adu), after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            extents.extend(page.iter().filter_map(|meta| {
                let fragment = meta.bundle_id.fragment?;
                Some(Extent {
                    start: fragment.offset,
                    end: fragment.end(),
                    adu_length: fragment.adu_length,
                    id: meta.id,
                })
            }));
        }
        extents.sort_unstable();
        Ok(extents)
    }

    /// Writes the whole bundle into the store; its store id (`None`: it was there already) and
    /// header. `Ok(None)` if the store already delivered or forwarded it.
    async fn write_reassembled(
        &self,
        first: &BundleHeader,
        total: u64,
        extents: &[Extent],
    ) -> Result<Option<(Option<StoreId>, BundleHeader)>, ReassemblyError> {
        let mut primary = first.primary.clone();
        primary.flags.0 &= !BundleFlags::IS_FRAGMENT;
        primary.fragment = None;
        let (head, mut encoder) = streamed_head(
            &primary,
            &first.extension_blocks,
            first.payload.block_flags,
            first.payload.crc_type,
            total,
        );
        let parse = &self.inner.config.parse;
        let header = BundleHeader::parse(&Bytes::from(head.clone()), parse)
            .map_err(|e| ReassemblyError::Invalid(e.to_string()))?
            .ok_or_else(|| ReassemblyError::Invalid("its header does not parse".into()))?;
        let mut insert = self.inner.store.begin_insert().await?;
        insert.write(&head).await?;
        let mut written = 0u64;
        let mut buffer = vec![0u8; CHUNK];
        for extent in extents {
            if extent.end <= written {
                continue; // a duplicate, or inside what is written
            }
            if extent.start > written {
                return Err(ReassemblyError::Gap { from: written, to: extent.start });
            }
            let Some((fragment, content)) = self.open_payload(extent.id).await else {
                continue; // gone or damaged (logged): another fragment may cover its bytes
            };
            // A fragment that does not fit (its row said otherwise than its bytes do) is passed
            // over, not allowed to abandon the ADU: another may cover its bytes, else the gap
            // is reported below.
            let misfit = match fragment.primary.fragment {
                Some(info) if info.total_adu_length != total => {
                    Some(format!("its ADU is {} bytes, the first fragment's {total}", info.total_adu_length))
                }
                None => Some("it is not a fragment".into()),
                Some(_)
                    if fragment.primary.source != first.primary.source
                        || fragment.primary.creation != first.primary.creation =>
                {
                    Some("another source or creation timestamp".into())
                }
                Some(_) => None,
            };
            if let Some(why) = misfit {
                tracing::warn!(store_id = extent.id, %why, "a fragment does not fit its ADU: passed over; it waits to expire");
                continue;
            }
            // Bytes before `written` are held already; the rest is copied.
            let skip = written - extent.start;
            let mut append = |bytes: &[u8]| -> Result<(), ReassemblyError> {
                encoder.update(bytes).map_err(|e| ReassemblyError::Invalid(e.to_string()))
            };
            match content {
                PayloadContent::Memory(bytes) => {
                    let new = bytes.get(skip as usize..).unwrap_or_default();
                    append(new)?;
                    insert.write(new).await?;
                }
                PayloadContent::File(mut reader) => {
                    // Read to the end, so the store's check of the file's bytes runs.
                    let mut at = extent.start;
                    loop {
                        let n = reader.read(&mut buffer).await.map_err(|source| {
                            ReassemblyError::Store(StoreError::Io {
                                action: "reading a stored fragment",
                                path: format!("store id {}", extent.id).into(),
                                source,
                            })
                        })?;
                        if n == 0 {
                            break;
                        }
                        let from = written.saturating_sub(at).min(n as u64) as usize;
                        let new = &buffer[from..n];
                        append(new)?;
                        insert.write(new).await?;
                        at += n as u64;
                    }
                }
            }
            written = extent.end;
        }
        if written < total {
            return Err(ReassemblyError::Gap { from: written, to: total });
        }
        let tail = encoder.finish().map_err(|e| ReassemblyError::Invalid(e.to_string()))?;
        insert.write(&tail).await?;
        Ok(match insert.commit(BundleState::WaitingForRoute).await? {
            InsertOutcome::Stored(id) => Some((Some(id), header)),
            InsertOutcome::Duplicate(_) => Some((None, header)),
            InsertOutcome::AlreadyHandled => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_merges_ranges_in_any_order_and_with_overlaps() {
        let mut covered = Covered::default();
        covered.add(10, 20);
        covered.add(30, 40);
        assert!(!covered.covers(40));
        covered.add(0, 5);
        covered.add(15, 35);
        assert!(!covered.covers(40), "5..10 is missing");
        covered.add(5, 10);
        assert!(covered.covers(40));
        assert_eq!(covered.ranges.len(), 1);
        let mut covered = Covered::default();
        covered.add(0, 10);
        covered.add(10, 20);
        covered.add(3, 3);
        assert!(covered.covers(20));
        assert_eq!(covered.ranges.into_iter().collect::<Vec<_>>(), vec![(0, 20)]);
    }

    #[test]
    fn coverage_is_bounded_per_source_and_a_flood_displaces_only_its_own() {
        let key = |source: &str, i: usize| format!("{source} 5 {i} 100");
        let mut coverage = Coverage::default();
        // A genuine source's ADUs in progress, then a flood of new ADUs in another's name.
        for i in 0..10 {
            coverage.track(&key("ipn:1.1", i), Covered::default());
        }
        for i in 0..MAX_TRACKED_PER_SOURCE * 40 {
            coverage.track(&key("ipn:66.1", i), Covered::default());
        }
        assert_eq!(coverage.adus.len(), 10 + MAX_TRACKED_PER_SOURCE);
        assert!((0..10).all(|i| coverage.adus.contains_key(&key("ipn:1.1", i))), "untouched");
        assert!(!coverage.adus.contains_key(&key("ipn:66.1", 0)), "the flood's oldest went first");
        // Many sources at once: the total stays bounded, the busiest giving way first.
        for source in 0..MAX_TRACKED_ADUS {
            coverage.track(&key(&format!("ipn:{}.1", 1000 + source), 0), Covered::default());
        }
        assert_eq!(coverage.adus.len(), MAX_TRACKED_ADUS);
        let tracked: usize = coverage.by_source.values().map(|a| a.len()).sum();
        assert_eq!(tracked, MAX_TRACKED_ADUS, "the two maps agree");
        coverage.forget(&key("ipn:1000.1", 0));
        assert!(!coverage.by_source.contains_key("ipn:1000.1"), "an emptied source is dropped");
    }

    #[test]
    fn reach_stops_at_the_first_hole_and_counts_overlaps_once() {
        let e = |start, end| Extent { start, end, adu_length: 30, id: 0 };
        assert_eq!(reach(&[]), 0);
        assert_eq!(reach(&[e(0, 10), e(5, 20), e(20, 30)]), 30);
        assert_eq!(reach(&[e(0, 10), e(0, 10), e(11, 30)]), 10);
        assert_eq!(reach(&[e(1, 10)]), 0);
        assert_eq!(reach(&[e(0, 30), e(5, 10)]), 30);
    }
}
