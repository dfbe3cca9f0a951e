//! A contact plan (CCSDS 734.3-B-1 "SABR"; ION's contact and range tables): which node can send
//! to which, when, how fast, and how long the signal takes. Times are absolute DTN times in
//! milliseconds; a plan written with relative times (`+60`) is anchored at its reference time,
//! the moment it was loaded.

use std::collections::BTreeMap;

/// A node of the plan: an ipn node number (ION, HDTN) or a name (dtn-tvg-util), each given a
/// dense index for the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub u32);

/// An opportunity for `from` to transmit to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// The node that transmits.
    pub from: NodeIndex,
    /// The node that receives.
    pub to: NodeIndex,
    /// When it starts and ends (DTN ms); `start < end`.
    pub start: u64,
    /// When it ends (DTN ms).
    pub end: u64,
    /// Bytes per second.
    pub rate: u64,
    /// How likely the contact is to happen, 0..=1 (ION's confidence; 1 when not given).
    pub confidence: f64,
}

/// The one-way light time from `from` to `to` during an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The node the light leaves.
    pub from: NodeIndex,
    /// The node it reaches.
    pub to: NodeIndex,
    /// When the range starts to hold (DTN ms).
    pub start: u64,
    /// When it stops holding (DTN ms).
    pub end: u64,
    /// One-way light time in milliseconds.
    pub owlt_ms: u64,
}

/// A contact plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The moment relative times count from (DTN ms).
    pub reference: u64,
    /// Node names by index (`"3"` for ipn node 3).
    nodes: Vec<String>,
    by_name: BTreeMap<String, NodeIndex>,
    /// Every contact, in the order the plan gave them.
    pub contacts: Vec<Contact>,
    /// Every range, in the order the plan gave them.
    pub ranges: Vec<Range>,
}

impl Plan {
    /// An empty plan whose relative times count from `reference` (DTN ms).
    pub fn new(reference: u64) -> Plan {
        Plan { reference, ..Plan::default() }
    }

    /// The index of the node named `name`, added if new.
    pub fn node(&mut self, name: &str) -> NodeIndex {
        if let Some(index) = self.by_name.get(name) {
            return *index;
        }
        let index = NodeIndex(u32::try_from(self.nodes.len()).unwrap_or(u32::MAX));
        self.nodes.push(name.to_string());
        self.by_name.insert(name.to_string(), index);
        index
    }

    /// The index of the node named `name`, if the plan has it.
    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.by_name.get(name).copied()
    }

    /// The name of a node.
    pub fn name(&self, node: NodeIndex) -> &str {
        self.nodes.get(node.0 as usize).map_or("?", String::as_str)
    }

    /// How many nodes the plan names.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The one-way light time from `from` to `to` at `at` (DTN ms): the range given for that
    /// direction, else for the other (a range given once holds both ways, as in ION); `None`
    /// when no range covers `at` — the contact cannot be used then.
    pub fn owlt(&self, from: NodeIndex, to: NodeIndex, at: u64) -> Option<u64> {
        let covering = |a: NodeIndex, b: NodeIndex| {
            self.ranges
                .iter()
                .find(|r| r.from == a && r.to == b && r.start <= at && at < r.end)
                .map(|r| r.owlt_ms)
        };
        covering(from, to).or_else(|| covering(to, from))
    }

    /// The earliest start and the latest end of the contacts (DTN ms), if any.
    pub fn span(&self) -> Option<(u64, u64)> {
        let start = self.contacts.iter().map(|c| c.start).min()?;
        let end = self.contacts.iter().map(|c| c.end).max()?;
        Some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_given_once_holds_both_ways_and_only_while_it_lasts() {
        let mut plan = Plan::new(0);
        let (a, b, c) = (plan.node("1"), plan.node("2"), plan.node("3"));
        assert_eq!(plan.node("2"), b, "one index per name");
        plan.ranges.push(Range { from: a, to: b, start: 0, end: 10_000, owlt_ms: 1_000 });
        plan.ranges.push(Range { from: b, to: a, start: 5_000, end: 10_000, owlt_ms: 2_000 });
        assert_eq!(plan.owlt(a, b, 0), Some(1_000));
        assert_eq!(plan.owlt(b, a, 0), Some(1_000), "the other direction, given once");
        assert_eq!(plan.owlt(b, a, 5_000), Some(2_000), "its own range when there is one");
        assert_eq!(plan.owlt(a, b, 10_000), None, "ranges end");
        assert_eq!(plan.owlt(a, c, 0), None);
        assert_eq!((plan.name(c), plan.find("3"), plan.find("9")), ("3", Some(c), None));
    }
}
