//! ION's contact plan commands (`ionadmin`'s `ionrc` files, as ION and many testbeds write
//! them):
//!
//! ```text
//! # comment
//! a contact +0 +3600 1 2 100000        # from, until, from node, to node, bytes/s [, confidence]
//! a range   +0 +3600 1 2 1             # from, until, from node, to node, one-way light seconds
//! a contact 2026/11/30-12:00:00 2026/11/30-13:00:00 2 3 125000 0.9
//! m production 1000000                 # other ionadmin commands change no contact: passed over
//! ```
//!
//! Times are `+SECONDS` after the plan's reference time or absolute UTC `yyyy/mm/dd-hh:mm:ss`.
//! A range given for one direction holds for both unless the other is given too (ION's rule).
//! Errors name the line and column and what was expected.

use crate::plan::{Contact, Plan, Range};

/// Why a plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A line that is not a contact plan command ION's `ionadmin` would take.
    #[error("line {line}, column {column}: {problem}")]
    Syntax {
        /// The line, from 1.
        line: usize,
        /// The column, from 1.
        column: usize,
        /// What is wrong there.
        problem: String,
    },
}

/// The ionadmin commands that change no contact or range: passed over.
const OTHER_COMMANDS: &[&str] = &["1", "s", "x", "m", "@", "e", "w", "h", "l", "i", "?", "t", "r", "v"];

/// Seconds from 1970-01-01 to 2000-01-01 (the DTN epoch, RFC 9171 §4.2.6).
const DTN_EPOCH_UNIX_S: i64 = 946_684_800;

/// Parses an `ionrc` text into a plan whose relative times count from `reference` (DTN ms).
pub fn parse(text: &str, reference: u64) -> Result<Plan, PlanError> {
    let mut plan = Plan::new(reference);
    for (number, raw) in text.lines().enumerate() {
        let line = number + 1;
        let content = raw.split('#').next().unwrap_or("");
        let words = words(content);
        let Some(&(_, command)) = words.first() else { continue };
        let error = |column: usize, problem: String| PlanError::Syntax { line, column, problem };
        match command {
            "a" => {
                let Some(&(column, object)) = words.get(1) else {
                    return Err(error(content.len() + 1, "`a` needs what to add: contact or range".into()));
                };
                match object {
                    "contact" => add_contact(&mut plan, &words, line, content.len())?,
                    "range" => add_range(&mut plan, &words, line, content.len())?,
                    other => {
                        return Err(error(
                            column,
                            format!("cannot add {other:?} to a contact plan: contact or range"),
                        ));
                    }
                }
            }
            other if OTHER_COMMANDS.contains(&other) => {}
            other => {
                let column = words[0].0;
                return Err(error(
                    column,
                    format!("unknown command {other:?}: a contact plan has `a contact` and `a range` lines"),
                ));
            }
        }
    }
    Ok(plan)
}

/// The words of a line with their 1-based columns.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s + 1, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s + 1, &line[s..]));
    }
    out
}

/// The fields after `a contact` / `a range`: from, until, from node, to node, and the rest.
struct Fields<'a> {
    words: &'a [(usize, &'a str)],
    line: usize,
    end: usize,
    reference: u64,
}

impl<'a> Fields<'a> {
    fn word(&self, at: usize, what: &str) -> Result<(usize, &'a str), PlanError> {
        self.words.get(at).copied().ok_or_else(|| PlanError::Syntax {
            line: self.line,
            column: self.end + 1,
            problem: format!("missing {what}"),
        })
    }

    fn error(&self, column: usize, problem: String) -> PlanError {
        PlanError::Syntax { line: self.line, column, problem }
    }

    fn time(&self, at: usize, what: &str) -> Result<u64, PlanError> {
        let (column, text) = self.word(at, what)?;
        time(text, self.reference).map_err(|problem| self.error(column, format!("{what}: {problem}")))
    }

    fn number(&self, at: usize, what: &str) -> Result<u64, PlanError> {
        let (column, text) = self.word(at, what)?;
        text.parse::<u64>().map_err(|_| self.error(column, format!("{what} {text:?} is not a whole number")))
    }

    /// From, until and the two nodes; checks that the interval is not empty.
    fn interval_and_nodes(&self) -> Result<(u64, u64, String, String), PlanError> {
        let start = self.time(2, "the start time")?;
        let end = self.time(3, "the end time")?;
        if end <= start {
            let column = self.word(3, "the end time")?.0;
            return Err(self.error(column, "the end time is not after the start time".into()));
        }
        let from = self.number(4, "the sending node number")?;
        let to = self.number(5, "the receiving node number")?;
        Ok((start, end, from.to_string(), to.to_string()))
    }

    fn no_more(&self, after: usize) -> Result<(), PlanError> {
        match self.words.get(after) {
            Some(&(column, extra)) => {
                Err(self.error(column, format!("unexpected {extra:?} at the end of the line")))
            }
            None => Ok(()),
        }
    }
}

fn add_contact(plan: &mut Plan, words: &[(usize, &str)], line: usize, end: usize) -> Result<(), PlanError> {
    let fields = Fields { words, line, end, reference: plan.reference };
    let (start, until, from, to) = fields.interval_and_nodes()?;
    let rate = fields.number(6, "the rate (bytes per second)")?;
    let confidence = match words.get(7) {
        Some(&(column, text)) => match text.parse::<f64>() {
            Ok(value) if (0.0..=1.0).contains(&value) => value,
            _ => {
                return Err(
                    fields.error(column, format!("the confidence {text:?} is not a number from 0 to 1"))
                );
            }
        },
        None => 1.0,
    };
    fields.no_more(8)?;
    let (from, to) = (plan.node(&from), plan.node(&to));
    plan.contacts.push(Contact { from, to, start, end: until, rate, confidence });
    Ok(())
}

fn add_range(plan: &mut Plan, words: &[(usize, &str)], line: usize, end: usize) -> Result<(), PlanError> {
    let fields = Fields { words, line, end, reference: plan.reference };
    let (start, until, from, to) = fields.interval_and_nodes()?;
    let seconds = fields.number(6, "the one-way light time (seconds)")?;
    fields.no_more(7)?;
    let (from, to) = (plan.node(&from), plan.node(&to));
    let owlt_ms = seconds.saturating_mul(1000);
    plan.ranges.push(Range { from, to, start, end: until, owlt_ms });
    Ok(())
}

/// `+SECONDS` after `reference`, or an absolute UTC `yyyy/mm/dd-hh:mm:ss`, as DTN ms.
pub fn time(text: &str, reference: u64) -> Result<u64, String> {
    if let Some(seconds) = text.strip_prefix('+') {
        let seconds: u64 = seconds.parse().map_err(|_| format!("{text:?} is not +SECONDS"))?;
        return Ok(reference.saturating_add(seconds.saturating_mul(1000)));
    }
    absolute(text).ok_or_else(|| format!("{text:?} is neither +SECONDS nor yyyy/mm/dd-hh:mm:ss"))
}

/// An absolute UTC time `yyyy/mm/dd-hh:mm:ss` as DTN ms (times before 2000 are refused).
fn absolute(text: &str) -> Option<u64> {
    let (date, clock) = text.split_once('-')?;
    let mut date = date.split('/');
    let (y, m, d) = (
        date.next()?.parse::<i64>().ok()?,
        date.next()?.parse::<u32>().ok()?,
        date.next()?.parse::<u32>().ok()?,
    );
    let mut clock = clock.split(':');
    let (hh, mm, ss) = (
        clock.next()?.parse::<u32>().ok()?,
        clock.next()?.parse::<u32>().ok()?,
        clock.next()?.parse::<u32>().ok()?,
    );
    if date.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let unix = days_from_civil(y, m, d) * 86_400 + i64::from(hh * 3600 + mm * 60 + ss);
    let dtn = unix.checked_sub(DTN_EPOCH_UNIX_S)?;
    u64::try_from(dtn).ok()?.checked_mul(1000)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: u64 = 1_000_000;

    #[test]
    fn contacts_and_ranges_with_relative_and_absolute_times() {
        let text = "\
# a chain of three
1 1 ''
a contact +0 +3600 1 2 100000
a contact 2000/01/01-00:00:10 2000/01/01-01:00:00 2 3 125000 0.5   # absolute
a range +0 +3600 1 2 1
m production 1000000
s
";
        let plan = parse(text, REFERENCE).expect("parses");
        assert_eq!(plan.node_count(), 3);
        let (one, two, three) = (plan.find("1").unwrap(), plan.find("2").unwrap(), plan.find("3").unwrap());
        assert_eq!(
            plan.contacts,
            vec![
                Contact {
                    from: one,
                    to: two,
                    start: REFERENCE,
                    end: REFERENCE + 3_600_000,
                    rate: 100_000,
                    confidence: 1.0
                },
                Contact {
                    from: two,
                    to: three,
                    start: 10_000,
                    end: 3_600_000,
                    rate: 125_000,
                    confidence: 0.5
                },
            ]
        );
        assert_eq!(plan.owlt(two, one, REFERENCE), Some(1_000), "a range given once holds both ways");
        assert_eq!(plan.owlt(two, three, REFERENCE), None);
        assert_eq!(plan.span(), Some((10_000, REFERENCE + 3_600_000)));
    }

    #[test]
    fn absolute_times_are_utc_from_the_dtn_epoch() {
        assert_eq!(absolute("2000/01/01-00:00:00"), Some(0));
        assert_eq!(absolute("2000/03/01-00:00:00"), Some((31 + 29) * 86_400_000), "2000 is a leap year");
        // 2026-11-30T12:00:00Z is Unix 1796040000.
        assert_eq!(absolute("2026/11/30-12:00:00"), Some((1_796_040_000 - 946_684_800) * 1000));
        for bad in [
            "1999/12/31-23:59:59",
            "2026/02/29-00:00:00",
            "2026/13/01-00:00:00",
            "2026/01/01",
            "2026/01/01-24:00:00",
        ] {
            assert_eq!(absolute(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_name_the_line_the_column_and_what_was_expected() {
        let cases = [
            ("a contact +0 +10 1 2\n", 1, 21, "missing the rate (bytes per second)"),
            ("# ok\na contact +10 +0 1 2 5\n", 2, 15, "the end time is not after the start time"),
            (
                "a contact +0 soon 1 2 5\n",
                1,
                14,
                "the end time: \"soon\" is neither +SECONDS nor yyyy/mm/dd-hh:mm:ss",
            ),
            ("a contact +0 +10 one 2 5\n", 1, 18, "the sending node number \"one\" is not a whole number"),
            ("a contact +0 +10 1 2 5 1.5\n", 1, 24, "the confidence \"1.5\" is not a number from 0 to 1"),
            ("a range +0 +10 1 2 1 9\n", 1, 22, "unexpected \"9\" at the end of the line"),
            ("a plan +0\n", 1, 3, "cannot add \"plan\" to a contact plan: contact or range"),
            (
                "  z contact\n",
                1,
                3,
                "unknown command \"z\": a contact plan has `a contact` and `a range` lines",
            ),
        ];
        for (text, line, column, problem) in cases {
            assert_eq!(
                parse(text, 0),
                Err(PlanError::Syntax { line, column, problem: problem.to_string() }),
                "{text:?}"
            );
        }
        assert_eq!(
            parse("a contact +0 +10 1 2 x\n", 0).unwrap_err().to_string(),
            "line 1, column 22: the rate (bytes per second) \"x\" is not a whole number"
        );
    }

    proptest::proptest! {
        /// Lines built from the grammar's own words, in any order: no panic, and a plan that
        /// parses holds only non-empty intervals.
        #[test]
        fn no_panic_on_lines_of_plan_words(lines in proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(vec![
                "a", "contact", "range", "+0", "+10", "+4294967296000", "1", "2", "0.5", "2000/01/01-00:00:00",
                "2026/02/29-00:00:00", "m", "#", "-1", "18446744073709551615", "x", "",
            ]), 0..9), 0..12)) {
            let text: String = lines.iter().map(|words| words.join(" ") + "\n").collect();
            if let Ok(plan) = parse(&text, u64::MAX / 2) {
                proptest::prop_assert!(plan.contacts.iter().all(|c| c.start < c.end));
                proptest::prop_assert!(plan.ranges.iter().all(|r| r.start < r.end));
            }
        }

        #[test]
        fn no_panic_on_any_text(text in "\\PC{0,200}") {
            let _ = parse(&text, 0);
        }
    }
}
