//! This project's own plan form, in TOML, for writing by hand:
//!
//! ```toml
//! # Times: seconds after the plan is loaded ("+60" or 60), or UTC "2026/11/30-12:00:00".
//! [[contact]]
//! from = 1                  # ipn node numbers (or names)
//! to = 2
//! start = "+0"
//! end = "+3600"             # or: duration = 3600 (seconds)
//! rate = "1 Mbit/s"         # bytes/s as a number, or with a unit: B/s kB/s MB/s GB/s bit/s kbit/s Mbit/s Gbit/s
//! owlt = 1.5                # one-way light seconds; if left out: a [[range]] covering it, else 0
//! bidirectional = true      # 2 -> 1 as well (default false)
//! confidence = 0.9          # 0..1, default 1
//!
//! [[range]]                 # light time between two nodes over an interval, both ways
//! from = 1
//! to = 3
//! start = 0
//! end = 86400
//! owlt = 1.25
//! ```
//!
//! Errors name the line and column (of the value that is wrong, where TOML keeps it).

use serde::Deserialize;
use toml::Spanned;

use crate::ion::{PlanError, time};
use crate::plan::{Contact, NodeIndex, Plan, Range};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    contact: Vec<ContactEntry>,
    #[serde(default)]
    range: Vec<RangeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactEntry {
    from: Spanned<Node>,
    to: Spanned<Node>,
    start: Spanned<Time>,
    end: Option<Spanned<Time>>,
    duration: Option<Spanned<f64>>,
    rate: Spanned<Rate>,
    owlt: Option<Spanned<f64>>,
    #[serde(default)]
    bidirectional: bool,
    confidence: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeEntry {
    from: Spanned<Node>,
    to: Spanned<Node>,
    start: Spanned<Time>,
    end: Spanned<Time>,
    owlt: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Node {
    Number(u64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Seconds(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Rate {
    BytesPerSecond(u64),
    Text(String),
}

/// Parses a TOML plan whose relative times count from `reference` (DTN ms).
pub fn parse(text: &str, reference: u64) -> Result<Plan, PlanError> {
    let at = |offset: usize, problem: String| {
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        PlanError::Syntax { line, column, problem }
    };
    let file: File = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(offset, e.message().to_string())
    })?;
    let mut plan = Plan::new(reference);
    let node = |plan: &mut Plan, value: &Spanned<Node>| -> Result<NodeIndex, PlanError> {
        match value.get_ref() {
            Node::Number(n) => Ok(plan.node(&n.to_string())),
            Node::Name(name) if !name.trim().is_empty() => Ok(plan.node(name)),
            Node::Name(_) => Err(at(value.span().start, "a node is a number or a name, not empty".into())),
        }
    };
    let instant = |value: &Spanned<Time>| -> Result<u64, PlanError> {
        let problem = match value.get_ref() {
            Time::Seconds(s) if s.is_finite() && *s >= 0.0 => {
                return Ok(reference.saturating_add((s * 1000.0).round() as u64));
            }
            Time::Seconds(s) => format!("the time {s} is not a number of seconds from 0"),
            Time::Text(text) => match time(text, reference) {
                Ok(ms) => return Ok(ms),
                Err(problem) => problem,
            },
        };
        Err(at(value.span().start, problem))
    };
    let seconds = |value: &Spanned<f64>, what: &str| -> Result<u64, PlanError> {
        let s = *value.get_ref();
        if s.is_finite() && s >= 0.0 {
            Ok((s * 1000.0).round() as u64)
        } else {
            Err(at(value.span().start, format!("{what} {s} is not a number of seconds from 0")))
        }
    };
    for entry in &file.range {
        let (from, to) = (node(&mut plan, &entry.from)?, node(&mut plan, &entry.to)?);
        let (start, end) = (instant(&entry.start)?, instant(&entry.end)?);
        if end <= start {
            return Err(at(entry.end.span().start, "the end is not after the start".into()));
        }
        let owlt_ms = seconds(&entry.owlt, "the light time")?;
        plan.ranges.push(Range { from, to, start, end, owlt_ms });
    }
    // Contacts without a light time of their own take a range's, else 0: added after every
    // [[range]] is known.
    let mut without_owlt = Vec::new();
    for entry in &file.contact {
        let (from, to) = (node(&mut plan, &entry.from)?, node(&mut plan, &entry.to)?);
        if from == to {
            return Err(at(entry.to.span().start, "a contact is between two different nodes".into()));
        }
        let start = instant(&entry.start)?;
        let end = match (&entry.end, &entry.duration) {
            (Some(end), None) => instant(end)?,
            (None, Some(duration)) => start.saturating_add(seconds(duration, "the duration")?),
            (Some(end), Some(_)) => {
                return Err(at(end.span().start, "give the end or the duration, not both".into()));
            }
            (None, None) => {
                return Err(at(entry.start.span().start, "the contact needs an end or a duration".into()));
            }
        };
        if end <= start {
            let span = entry.end.as_ref().map_or(entry.start.span(), Spanned::span);
            return Err(at(span.start, "the end is not after the start".into()));
        }
        let rate = rate(entry.rate.get_ref()).map_err(|problem| at(entry.rate.span().start, problem))?;
        let confidence = match &entry.confidence {
            None => 1.0,
            Some(c) if (0.0..=1.0).contains(c.get_ref()) => *c.get_ref(),
            Some(c) => {
                return Err(at(c.span().start, format!("the confidence {} is not from 0 to 1", c.get_ref())));
            }
        };
        let owlt_ms = entry.owlt.as_ref().map(|o| seconds(o, "the light time")).transpose()?;
        let directions: &[(NodeIndex, NodeIndex)] =
            if entry.bidirectional { &[(from, to), (to, from)] } else { &[(from, to)] };
        for &(from, to) in directions {
            plan.contacts.push(Contact { from, to, start, end, rate, confidence });
            match owlt_ms {
                Some(owlt_ms) => plan.ranges.push(Range { from, to, start, end, owlt_ms }),
                None => without_owlt.push((from, to, start, end)),
            }
        }
    }
    for (from, to, start, end) in without_owlt {
        if plan.owlt(from, to, start).is_none() {
            plan.ranges.push(Range { from, to, start, end, owlt_ms: 0 });
        }
    }
    Ok(plan)
}

/// A rate in bytes per second: a number, or a number and a unit.
fn rate(value: &Rate) -> Result<u64, String> {
    match value {
        Rate::BytesPerSecond(n) => Ok(*n),
        Rate::Text(text) => parse_rate(text),
    }
}

/// A rate written with its unit (`"125 kB/s"`, `"1 Mbit/s"`; B/s kB/s MB/s GB/s bit/s kbit/s
/// Mbit/s Gbit/s), or a plain number of bytes per second, as bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let number: f64 =
        number.parse().map_err(|_| format!("the rate {text:?} does not start with a number"))?;
    let bytes_per_unit = match unit {
        "" | "B/s" => 1.0,
        "kB/s" => 1e3,
        "MB/s" => 1e6,
        "GB/s" => 1e9,
        "bit/s" => 1.0 / 8.0,
        "kbit/s" => 1e3 / 8.0,
        "Mbit/s" => 1e6 / 8.0,
        "Gbit/s" => 1e9 / 8.0,
        other => {
            return Err(format!(
                "the rate's unit {other:?} is not one of B/s kB/s MB/s GB/s bit/s kbit/s Mbit/s Gbit/s"
            ));
        }
    };
    let rate = (number * bytes_per_unit).floor();
    if !rate.is_finite() || rate > u64::MAX as f64 {
        return Err(format!("the rate {text:?} is too large"));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_both_ways_with_units_durations_and_light_times() {
        let text = r#"
[[contact]]
from = 1
to = 2
start = "+60"
duration = 600
rate = "1 Mbit/s"
owlt = 1.5
bidirectional = true

[[contact]]
from = "relay"
to = 3
start = 0
end = "2000/01/01-01:00:00"
rate = 5000
confidence = 0.5

[[range]]
from = 3
to = "relay"
start = 0
end = 7200
owlt = 2
"#;
        let plan = parse(text, 1_000).expect("plan");
        assert_eq!(plan.contacts.len(), 3);
        let c = &plan.contacts[0];
        assert_eq!(
            (plan.name(c.from), plan.name(c.to), c.start, c.end, c.rate),
            ("1", "2", 61_000, 661_000, 125_000)
        );
        let back = &plan.contacts[1];
        assert_eq!((plan.name(back.from), plan.name(back.to)), ("2", "1"));
        assert_eq!(plan.owlt(back.from, back.to, 61_000), Some(1_500));
        let relay = &plan.contacts[2];
        assert_eq!((relay.start, relay.end, relay.rate, relay.confidence), (1_000, 3_600_000, 5_000, 0.5));
        assert_eq!(plan.owlt(relay.from, relay.to, 1_000), Some(2_000), "the [[range]], given the other way");
    }

    #[test]
    fn a_contact_without_a_light_time_or_a_range_has_zero() {
        let plan = parse("[[contact]]\nfrom = 1\nto = 2\nstart = 0\nend = 10\nrate = 1\n", 0).expect("plan");
        assert_eq!(plan.owlt(plan.contacts[0].from, plan.contacts[0].to, 0), Some(0));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let error = |text: &str| parse(text, 0).expect_err("refused").to_string();
        let contact = |fields: &str| format!("[[contact]]\nfrom = 1\nto = 2\n{fields}\n");
        assert_eq!(
            error(&contact("start = 0\nend = 10\nrate = \"3 furlongs\"")),
            "line 6, column 8: the rate's unit \"furlongs\" is not one of B/s kB/s MB/s GB/s bit/s kbit/s Mbit/s Gbit/s"
        );
        assert_eq!(
            error(&contact("start = 10\nend = 10\nrate = 1")),
            "line 5, column 7: the end is not after the start"
        );
        assert_eq!(
            error(&contact("start = \"soon\"\nend = 10\nrate = 1")),
            "line 4, column 9: \"soon\" is neither +SECONDS nor yyyy/mm/dd-hh:mm:ss"
        );
        assert_eq!(
            error(&contact("start = 0\nrate = 1")),
            "line 4, column 9: the contact needs an end or a duration"
        );
        let unknown = error(&contact("start = 0\nend = 1\nrate = 1\ncolour = 3"));
        assert!(unknown.starts_with("line 7, column 1: unknown field `colour`"), "{unknown}");
        assert!(error("[[contact]\n").starts_with("line 1, column"), "{}", error("[[contact]\n"));
        assert_eq!(
            error("[[contact]]\nfrom = 1\nto = 1\nstart = 0\nend = 1\nrate = 1\n"),
            "line 3, column 6: a contact is between two different nodes"
        );
    }
}
