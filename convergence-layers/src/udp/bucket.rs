//! A token bucket, sans-IO: how long a sender must wait before a datagram of some size may go,
//! at a rate in bytes per second with a burst of `capacity` bytes. A UDP sender that blasts a
//! slow link loses everything past its queue; this keeps it to the link's rate.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: u64,
    /// The most bytes that may go at once.
    capacity: u64,
    /// Bytes that may go now (may be below zero: a datagram larger than what was there went,
    /// and the debt is paid before the next).
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. `capacity` is raised to at least one byte.
    pub fn new(rate: u64, capacity: u64, now: Instant) -> TokenBucket {
        let capacity = capacity.max(1);
        TokenBucket { rate, capacity, tokens: capacity as f64, updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.capacity as f64);
        self.updated = now;
    }

    /// How long to wait from `now` before `bytes` may go (zero: at once). Nothing is taken.
    pub fn wait(&mut self, bytes: u64, now: Instant) -> Duration {
        self.refill(now);
        // A datagram larger than the bucket goes once the bucket is full.
        let needed = bytes.min(self.capacity) as f64;
        if self.tokens >= needed || self.rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((needed - self.tokens) / self.rate as f64)
    }

    /// `bytes` went at `now`.
    pub fn take(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000, 2000, t0);
        assert_eq!(bucket.wait(1500, t0), Duration::ZERO);
        bucket.take(1500, t0);
        // 500 left: 1500 more needs one second at 1000 B/s.
        assert_eq!(bucket.wait(1500, t0), Duration::from_secs(1));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(bucket.wait(1500, t1), Duration::ZERO);
        bucket.take(1500, t1);
        // Over ten seconds at most capacity + 10 × rate bytes go.
        let mut sent = 1500 + 1500;
        let mut now = t1;
        let end = t0 + Duration::from_secs(11);
        while now < end {
            now += bucket.wait(700, now).max(Duration::from_millis(1));
            if now >= end {
                break;
            }
            if bucket.wait(700, now).is_zero() {
                bucket.take(700, now);
                sent += 700;
            }
        }
        assert!(sent <= 2000 + 11 * 1000 + 700, "{sent}");
        assert!(sent >= 11 * 1000 - 1400, "{sent}");
    }

    #[test]
    fn a_datagram_larger_than_the_bucket_waits_for_a_full_bucket_and_leaves_a_debt() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, 50, t0);
        assert_eq!(bucket.wait(500, t0), Duration::ZERO, "a full bucket lets it go");
        bucket.take(500, t0);
        // 450 bytes of debt, then 50 for the next: five seconds.
        assert_eq!(bucket.wait(50, t0), Duration::from_secs(5));
    }
}
