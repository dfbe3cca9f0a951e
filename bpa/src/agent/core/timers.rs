//! The agent's timers, sans-IO (design §3.1, after quinn-proto's timer table): deadlines in DTN
//! milliseconds go in, "what is due now" comes out, and the earliest deadline tells the one
//! scheduler task how long to sleep on the agent's clock. One table for every timer the agent
//! has — a retry per neighbour, housekeeping, the contact plan's next edge, custody
//! retransmission and the custody signal batch — so a virtual clock moves them all.

use std::collections::{BTreeSet, HashMap};

use crate::bundle::Eid;

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Dispatch again what waits, after failed sends to this neighbour (its retry backoff).
    Retry(Eid),
    /// Expiry and the store's housekeeping ([`Core::housekeep_every`](super::Core::housekeep_every)).
    Housekeeping,
    /// The next start or end of one of this node's planned contacts ([`super::edges`]).
    Contacts,
    /// The earliest custodial retransmission deadline (custody).
    CustodyRetransmit,
    /// The batch of custody signals owed to other custodians is due.
    CustodySignals,
}

/// Timers by deadline; each timer is set at most once.
#[derive(Debug, Default)]
pub struct TimerTable {
    by_deadline: BTreeSet<(u64, Timer)>,
    deadlines: HashMap<Timer, u64>,
}

impl TimerTable {
    /// Sets `timer` to fire at `at` (DTN ms), replacing an earlier setting.
    pub fn set(&mut self, timer: Timer, at: u64) {
        if let Some(old) = self.deadlines.insert(timer.clone(), at) {
            self.by_deadline.remove(&(old, timer.clone()));
        }
        self.by_deadline.insert((at, timer));
    }

    /// Forgets `timer` if it is set.
    pub fn cancel(&mut self, timer: &Timer) {
        if let Some(at) = self.deadlines.remove(timer) {
            self.by_deadline.remove(&(at, timer.clone()));
        }
    }

    /// When `timer` fires, if it is set.
    pub fn deadline(&self, timer: &Timer) -> Option<u64> {
        self.deadlines.get(timer).copied()
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// A timer due at `now` (earliest first), removed from the table.
    pub fn pop_due(&mut self, now: u64) -> Option<Timer> {
        let (at, _) = self.by_deadline.first()?;
        if *at > now {
            return None;
        }
        let (_, timer) = self.by_deadline.pop_first()?;
        self.deadlines.remove(&timer);
        Some(timer)
    }

    /// How many timers are set.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_timers_come_out_earliest_first_and_only_when_due() {
        let mut table = TimerTable::default();
        assert_eq!(table.poll_timeout(), None);
        table.set(Timer::Retry(Eid::ipn(2, 0)), 2_000);
        table.set(Timer::Retry(Eid::ipn(3, 0)), 1_000);
        table.set(Timer::Retry(Eid::ipn(4, 0)), 1_000);
        assert_eq!(table.poll_timeout(), Some(1_000));
        assert_eq!(table.pop_due(999), None);
        let mut due = vec![table.pop_due(1_000), table.pop_due(1_000)];
        due.sort();
        assert_eq!(due, [Some(Timer::Retry(Eid::ipn(3, 0))), Some(Timer::Retry(Eid::ipn(4, 0)))]);
        assert_eq!(table.pop_due(1_999), None);
        assert_eq!(table.poll_timeout(), Some(2_000));
        assert_eq!(table.pop_due(5_000), Some(Timer::Retry(Eid::ipn(2, 0))));
        assert!(table.is_empty());
    }

    #[test]
    fn a_timer_set_again_moves_and_a_cancelled_one_never_fires() {
        let mut table = TimerTable::default();
        let timer = Timer::Retry(Eid::ipn(2, 0));
        table.set(timer.clone(), 1_000);
        table.set(timer.clone(), 5_000);
        assert_eq!(table.len(), 1);
        assert_eq!(table.deadline(&timer), Some(5_000));
        assert_eq!(table.pop_due(1_000), None);
        table.cancel(&timer);
        assert_eq!(table.pop_due(u64::MAX), None);
        assert_eq!(table.poll_timeout(), None);
        table.cancel(&timer);
    }
}
