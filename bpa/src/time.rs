//! DTN time (RFC 9171 §4.2.6) and the one clock everything reads it from.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the Unix epoch to the DTN epoch, 2000-01-01T00:00:00Z.
pub const DTN_EPOCH_UNIX_SECONDS: u64 = 946_684_800;

/// A source of the current DTN time in milliseconds. The agent and the tools take one of these
/// instead of reading the system clock, so tests can run on a virtual clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since 2000-01-01T00:00:00Z.
    fn now_dtn_ms(&self) -> u64;

    /// Resolves once the clock reads `at` (DTN ms) or later. Every timer of the agent sleeps
    /// here, so a virtual clock moves them all (design §3.2).
    fn sleep_until(&self, at: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// Now on the runtime's monotonic clock — virtual when a test paused the runtime's time
/// (`tokio::time::pause`). Log windows and the convergence layers' deadlines are measured on
/// it ([`Clock`] gives DTN time, which bundles carry), so one paused clock moves them all.
pub fn monotonic_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_dtn_ms(&self) -> u64 {
        let since_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        (since_unix.as_millis() as u64).saturating_sub(DTN_EPOCH_UNIX_SECONDS * 1000)
    }

    fn sleep_until(&self, at: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let clock = *self;
        Box::pin(async move {
            // Slept in the runtime's time (paused time in tokio tests works), checked against
            // the wall clock: a clock set back sleeps again for what is left.
            loop {
                let now = clock.now_dtn_ms();
                if now >= at {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(at - now)).await;
            }
        })
    }
}

/// The farthest a [`RuntimeClock`] sleeps ahead.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// DTN time read from the runtime's monotonic clock, from a starting DTN time: with the
/// runtime's time paused (`#[tokio::test(start_paused = true)]`) the agent, its timers and the
/// convergence layers ([`monotonic_now`]) all run on one virtual clock, which the runtime
/// advances whenever every task waits — "nothing more happened" is then the runtime's own
/// fact. For tests and simulations: a node's DTN time must follow UTC ([`SystemClock`]).
#[derive(Debug, Clone, Copy)]
pub struct RuntimeClock {
    origin_dtn_ms: u64,
    origin: tokio::time::Instant,
}

impl RuntimeClock {
    /// A clock reading `dtn_ms` now, on the current runtime's time.
    pub fn starting_at(dtn_ms: u64) -> RuntimeClock {
        RuntimeClock { origin_dtn_ms: dtn_ms, origin: tokio::time::Instant::now() }
    }
}

impl Clock for RuntimeClock {
    fn now_dtn_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.origin_dtn_ms.saturating_add(elapsed)
    }

    fn sleep_until(&self, at: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        // A deadline past a century is a century: an `Instant` must not overflow.
        let after = Duration::from_millis(at.saturating_sub(self.origin_dtn_ms)).min(CENTURY);
        let deadline = self.origin + after;
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// A clock that stands still until told to move: for tests and simulations. Timers sleeping on
/// it ([`Clock::sleep_until`]) wake when [`ManualClock::advance`] reaches them, at once, however
/// much time that is.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<u64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(0)
    }
}

impl ManualClock {
    /// A clock standing at `dtn_ms` (DTN time, milliseconds) until it is moved.
    pub fn new(dtn_ms: u64) -> Self {
        ManualClock { now: tokio::sync::watch::Sender::new(dtn_ms) }
    }

    /// Moves the clock `ms` milliseconds on, waking what sleeps until then.
    pub fn advance(&self, ms: u64) {
        self.now.send_modify(|now| *now = now.saturating_add(ms));
    }
}

impl Clock for ManualClock {
    fn now_dtn_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The clock dropped (the test ended): nothing will ever wake this.
            if now.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Formats a DTN time (ms) as an RFC 3339 UTC timestamp, for people.
pub fn format_dtn_time(dtn_ms: u64) -> String {
    let total_secs = dtn_ms / 1000 + DTN_EPOCH_UNIX_SECONDS;
    let (days, rem) = (total_secs / 86_400, total_secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        dtn_ms % 1000
    )
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: use a number of seconds or units like 500ms, 90s, 15m, 1h30m, 7d")]
pub struct DurationError {
    /// The text refused.
    pub text: String,
}

/// A duration as the configuration writes one (`500ms`, `15s`, `2m`, `1h`, `3d`), for logs.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    let secs = duration.as_secs();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    match secs {
        0 => "0s".to_string(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Parses a duration written by people: seconds (`90`), or numbers with units `ms`, `s`, `m`,
/// `h`, `d`, one after another (`1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError { text: text.to_string() };
    let trimmed = text.trim();
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ms = value.checked_mul(unit_ms).and_then(|v| total_ms.checked_add(v)).ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::{Clock, RuntimeClock, monotonic_now};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_runtime_clock_and_the_layers_clock_move_together_when_paused() {
        let clock = RuntimeClock::starting_at(1_000_000);
        let layers = monotonic_now();
        clock.sleep_until(1_000_000 + 3_600_000).await;
        assert_eq!(clock.now_dtn_ms(), 1_000_000 + 3_600_000, "an hour later, to the millisecond");
        assert_eq!(monotonic_now() - layers, Duration::from_secs(3600));
        clock.sleep_until(0).await; // the past: at once
        assert_eq!(clock.now_dtn_ms(), 4_600_000);
        let far = tokio::spawn(clock.sleep_until(u64::MAX));
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(!far.is_finished(), "the end of time is far, and no overflow on the way");
        far.abort();
    }

    #[test]
    fn durations_are_written_as_the_configuration_writes_them_and_read_back() {
        for (ms, text) in [
            (500, "500ms"),
            (15_000, "15s"),
            (120_000, "2m"),
            (3_600_000, "1h"),
            (172_800_000, "2d"),
            (0, "0s"),
            (90_000, "90s"),
        ] {
            let duration = Duration::from_millis(ms);
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_dtn_time(0), "2000-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56.789Z is 762438896789 ms after the DTN epoch.
        assert_eq!(format_dtn_time(762_525_296_789), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(5);
        clock.advance(10);
        assert_eq!(clock.now_dtn_ms(), 15);
    }

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(super::parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(super::parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1x", "1h30", "-5", "99999999999999999999d"] {
            let error = super::parse_duration(bad).expect_err(bad);
            assert_eq!(
                error.to_string(),
                format!(
                    "invalid duration {bad:?}: use a number of seconds or units like 500ms, 90s, 15m, 1h30m, 7d"
                )
            );
        }
    }
}
