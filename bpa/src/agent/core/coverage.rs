//! Which ranges of each ADU being reassembled the stored fragments cover (RFC 9171 §5.9), kept
//! in memory and bounded in all and per source, so an arrival costs one fragment's metadata and
//! a sender of many small fragments can neither make reassembly quadratic nor displace another
//! source's ADUs. Pure: the agent's reassembly (`agent/reassembly.rs`) reads and writes the
//! store.

use crate::store::StoreId;

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
pub(crate) struct Coverage {
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
    /// Whether the coverage of `adu` is kept (else it is read from the store and tracked).
    pub fn is_tracked(&self, adu: &str) -> bool {
        self.adus.contains_key(adu)
    }

    /// A fragment of the tracked `adu` covers `start..end`.
    pub fn add(&mut self, adu: &str, start: u64, end: u64) {
        if let Some(covered) = self.adus.get_mut(adu) {
            covered.add(start, end);
        }
    }

    /// Whether the stored fragments of the tracked `adu` cover all of its `total` bytes.
    pub fn covers(&self, adu: &str, total: u64) -> bool {
        self.adus.get(adu).is_some_and(|covered| covered.covers(total))
    }

    /// Tracks `adu` with the ranges its stored fragments cover, forgetting another ADU if the
    /// bounds are reached.
    pub fn track(&mut self, adu: &str, ranges: impl IntoIterator<Item = (u64, u64)>) {
        let mut covered = Covered::default();
        for (start, end) in ranges {
            covered.add(start, end);
        }
        self.insert(adu, covered);
    }

    /// Forgets `adu` (its coverage is read from the store again when next needed).
    pub fn forget(&mut self, adu: &str) {
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

    fn insert(&mut self, adu: &str, covered: Covered) {
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
        self.adus.entry(adu.to_owned()).or_insert(covered);
    }
}

/// The source part of an ADU key ([`super::fragment::adu_key`]: `source time sequence total`;
/// an EID holds no space).
fn source_of(adu: &str) -> &str {
    adu.split(' ').next().unwrap_or(adu)
}

/// One stored fragment of an ADU: where its payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Extent {
    /// Where its payload starts in the ADU.
    pub start: u64,
    /// Where it ends.
    pub end: u64,
    /// The ADU length the fragment claims (its key names it too: they agree but for a row
    /// stored before schema 5 whose header could not be read).
    pub adu_length: u64,
    /// The fragment's row.
    pub id: StoreId,
}

/// How far `extents` (sorted) cover the ADU from offset 0 without a gap.
pub(crate) fn reach(extents: &[Extent]) -> u64 {
    let mut reach = 0;
    for extent in extents {
        if extent.start > reach {
            break;
        }
        reach = reach.max(extent.end);
    }
    reach
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
            coverage.insert(&key("ipn:1.1", i), Covered::default());
        }
        for i in 0..MAX_TRACKED_PER_SOURCE * 40 {
            coverage.insert(&key("ipn:66.1", i), Covered::default());
        }
        assert_eq!(coverage.adus.len(), 10 + MAX_TRACKED_PER_SOURCE);
        assert!((0..10).all(|i| coverage.adus.contains_key(&key("ipn:1.1", i))), "untouched");
        assert!(!coverage.adus.contains_key(&key("ipn:66.1", 0)), "the flood's oldest went first");
        // Many sources at once: the total stays bounded, the busiest giving way first.
        for source in 0..MAX_TRACKED_ADUS {
            coverage.insert(&key(&format!("ipn:{}.1", 1000 + source), 0), Covered::default());
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
