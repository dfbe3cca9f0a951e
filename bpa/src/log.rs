//! Logs bounded by nothing outside (design §3.8) and safe from what outsiders write (design
//! §3.10).
//!
//! - [`RateLimit`]: a warning a peer or an application can provoke is written at most once per
//!   window, with the count of those left out; [`RateLimits`] keeps one per key (a kind of
//!   event, a peer's address) in a bounded map whose overflow shares one limit, so a sender
//!   changing its port or its name cannot defeat it.
//! - [`Escaped`]: every string from outside (a path on a medium, a peer's text, an error that
//!   quotes either) is written with its control and direction-changing characters escaped, so it
//!   can never end a log line, start a forged one, or drive a terminal. The daemon's log
//!   formatter passes every field through it; code that logs a path can wrap it too.

use std::collections::HashMap;
use std::fmt::{self, Display, Write as _};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One log line per `window` for one kind of event (per peer, per neighbour).
#[derive(Debug, Clone)]
pub struct RateLimit {
    window: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// One line per `window`.
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

/// A [`RateLimit`] per key, for at most `capacity` keys; events of keys beyond that share one
/// limit ("others"). Unlike a map that is cleared when full, a flood of new keys (a sender
/// cycling through ports or addresses) cannot make it log again: it costs one line per window.
#[derive(Debug)]
pub struct RateLimits<K> {
    window: Duration,
    capacity: usize,
    limits: HashMap<K, RateLimit>,
    others: RateLimit,
    /// When the map was last swept of keys long quiet (at most once a window).
    swept: Option<Instant>,
    /// Lines left out, all keys together, since the start.
    suppressed_total: u64,
}

impl<K: Hash + Eq> RateLimits<K> {
    /// One line per `window` for each key, at most `capacity` keys remembered (the rest share
    /// one window).
    pub fn new(window: Duration, capacity: usize) -> RateLimits<K> {
        RateLimits {
            window,
            capacity,
            limits: HashMap::new(),
            others: RateLimit::new(window),
            swept: None,
            suppressed_total: 0,
        }
    }

    /// As [`RateLimit::allow`], for the events of `key`.
    pub fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        // Keys whose window has long passed are forgotten first (looked for at most once a
        // window), so the map holds the keys active lately rather than the first ones seen.
        if self.limits.len() >= self.capacity
            && !self.limits.contains_key(&key)
            && self.swept.is_none_or(|swept| now >= swept + self.window)
        {
            self.swept = Some(now);
            let window = self.window;
            self.limits.retain(|_, limit| limit.last.is_some_and(|last| now < last + window * 2));
        }
        let limit = if self.limits.len() < self.capacity || self.limits.contains_key(&key) {
            self.limits.entry(key).or_insert_with(|| RateLimit::new(self.window))
        } else {
            &mut self.others
        };
        let allowed = limit.allow(now);
        if allowed.is_none() {
            self.suppressed_total += 1;
        }
        allowed
    }

    /// Lines left out since the start, all keys together.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }
}

/// Whether `c` must not reach a log as itself: control characters (a newline ends the line and
/// forges the next; ESC drives a terminal), line and paragraph separators, and the characters
/// that change the direction of text (they make a line read other than it is).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Writes `text` with every character of `needs_escape` as `\n`, `\r`, `\t` or `\u{..}`.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(needs_escape) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `text` escaped as [`write_escaped`] does; borrowed when nothing needed escaping.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let _ = write_escaped(&mut out, text);
    std::borrow::Cow::Owned(out)
}

/// Displays `T` with outsiders' characters escaped (see the module's note): for a path, a
/// peer's text, an error quoting either. `tracing::warn!(path = %Escaped(path.display()), ..)`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatted first: a Display may write in pieces, and an escape must see whole chars.
        let mut text = String::new();
        write!(text, "{}", self.0)?;
        write_escaped(f, &text)
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

    #[test]
    fn a_flood_of_new_keys_shares_one_line_per_window() {
        let start = Instant::now();
        let mut limits = RateLimits::new(Duration::from_secs(60), 4);
        // Twenty thousand senders, each new (a sender changing its port for every datagram).
        let allowed = (0..20_000u32).filter(|&port| limits.allow(port, start).is_some()).count();
        assert_eq!(allowed, 4 + 1, "one line for each remembered key and one for all the others");
        assert_eq!(limits.suppressed_total(), 20_000 - 5);
        // A key remembered keeps its own window.
        assert_eq!(limits.allow(0, start + Duration::from_secs(1)), None);
        assert_eq!(limits.allow(0, start + Duration::from_secs(60)), Some(1));
        // Once the old keys' windows are long past, new keys get their own again.
        let later = start + Duration::from_secs(600);
        assert_eq!(limits.allow(100_000, later), Some(0));
    }

    #[test]
    fn control_and_direction_characters_are_escaped_and_nothing_else() {
        assert_eq!(escape("plain/path.bundle"), "plain/path.bundle");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(escape("a\nINFO forged line\r\tb\x1b[31m"), "a\\nINFO forged line\\r\\tb\\u{1b}[31m");
        assert_eq!(escape("x\u{202e}gpj.exe\u{2028}y"), "x\\u{202e}gpj.exe\\u{2028}y");
        assert_eq!(escape("héllo wörld ✓"), "héllo wörld ✓", "printable text stays as it is");
        assert_eq!(escape("\u{7f}\u{85}"), "\\u{7f}\\u{85}");
        assert_eq!(
            Escaped(std::path::Path::new("/media/stick/a\nb.bundle").display()).to_string(),
            "/media/stick/a\\nb.bundle"
        );
        // Escaping what is escaped changes nothing: safe to apply twice.
        let once = escape("a\nb").into_owned();
        assert_eq!(escape(&once), once);
    }
}
