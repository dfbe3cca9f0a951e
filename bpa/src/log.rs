//! Logs bounded by nothing outside (design §3.8): a warning a peer or an application can
//! provoke is written at most once per window, with the count of those left out.

use std::time::{Duration, Instant};

/// One log line per `window` for one kind of event (per peer, per neighbour).
#[derive(Debug, Clone)]
pub struct RateLimit {
    window: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(window: Duration) -> RateLimit {
        RateLimit { window, last: None, suppressed: 0 }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were left out since the
    /// last one; `None` when this one is left out (and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now < last + self.window => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_with_the_count_left_out() {
        let start = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(10));
        assert_eq!(limit.allow(start), Some(0));
        for i in 1..=129 {
            assert_eq!(limit.allow(start + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.allow(start + Duration::from_secs(10)), Some(129));
        assert_eq!(limit.allow(start + Duration::from_secs(11)), None);
        assert_eq!(limit.allow(start + Duration::from_secs(30)), Some(1));
    }
}
