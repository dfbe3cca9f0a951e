//! HDTN's contact plan JSON (its router's and scheduler's `contactPlan.json`, the form
//! `hdtn-cli --contact-plan-file` uploads):
//!
//! ```text
//! {"contacts": [{"contact": 0, "source": 10, "dest": 20, "startTime": 0, "endTime": 2000,
//!                "rateBitsPerSec": 1000000, "owlt": 1}, ...]}
//! ```
//!
//! Nodes are ipn node numbers; times are seconds after the plan's reference time (HDTN's
//! default; plans written with `--use-unix-timestamp` are not read as such); the rate is bits
//! per second (taken as bytes per second rounded down, as this crate counts), or the
//! deprecated `rate` in Mbit/s; `owlt` (seconds) becomes a range over the contact's interval.
//! The `contact` number is HDTN's own index and is not used.

use serde_json::Value;

use crate::json::{JsonPlanError, parse_json};
use crate::plan::{Contact, Plan, Range};

/// Parses an HDTN plan whose times count from `reference` (DTN ms).
pub fn parse(text: &str, reference: u64) -> Result<Plan, JsonPlanError> {
    let json = parse_json(text)?;
    let shape = |path: String, problem: &str| JsonPlanError::Shape { path, problem: problem.to_string() };
    let contacts = json
        .get("contacts")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("contacts".into(), "missing, or not an array of contacts"))?;
    let mut plan = Plan::new(reference);
    for (index, entry) in contacts.iter().enumerate() {
        let path = |field: &str| format!("contacts[{index}].{field}");
        if !entry.is_object() {
            return Err(shape(format!("contacts[{index}]"), "not an object"));
        }
        let whole = |field: &str| -> Result<u64, JsonPlanError> {
            entry
                .get(field)
                .ok_or_else(|| shape(path(field), "missing"))?
                .as_u64()
                .ok_or_else(|| shape(path(field), "not a whole number"))
        };
        let (source, dest) = (whole("source")?, whole("dest")?);
        if source == dest {
            return Err(shape(path("dest"), "the same node as the source"));
        }
        let seconds = |field: &str| whole(field).map(|s| reference.saturating_add(s.saturating_mul(1000)));
        let (start, end) = (seconds("startTime")?, seconds("endTime")?);
        if end <= start {
            return Err(shape(path("endTime"), "not after startTime"));
        }
        let rate = if entry.get("rateBitsPerSec").is_some() {
            whole("rateBitsPerSec")? / 8
        } else if entry.get("rate").is_some() {
            whole("rate")?.saturating_mul(1_000_000) / 8
        } else {
            return Err(shape(path("rateBitsPerSec"), "missing (bits per second)"));
        };
        let owlt_s = whole("owlt")?;
        let (from, to) = (plan.node(&source.to_string()), plan.node(&dest.to_string()));
        plan.contacts.push(Contact { from, to, start, end, rate, confidence: 1.0 });
        plan.ranges.push(Range { from, to, start, end, owlt_ms: owlt_s.saturating_mul(1000) });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"contacts":[
        {"contact":0,"source":102,"dest":10,"startTime":0,"endTime":2000,"rateBitsPerSec":1000000000,"owlt":1},
        {"contact":1,"source":10,"dest":2,"startTime":100,"endTime":2000,"rate":8,"owlt":0}]}"#;

    #[test]
    fn contacts_with_rates_in_bits_and_their_light_time_as_ranges() {
        let plan = parse(EXAMPLE, 5_000).expect("plan");
        assert_eq!(plan.contacts.len(), 2);
        let first = &plan.contacts[0];
        assert_eq!((plan.name(first.from), plan.name(first.to)), ("102", "10"));
        assert_eq!((first.start, first.end, first.rate), (5_000, 2_005_000, 125_000_000));
        assert_eq!(plan.contacts[1].rate, 1_000_000, "the deprecated rate in Mbit/s");
        assert_eq!(plan.owlt(first.from, first.to, 5_000), Some(1_000));
    }

    #[test]
    fn errors_say_where() {
        let error = |text: &str| parse(text, 0).expect_err("refused").to_string();
        assert_eq!(
            error("{\"contacts\": [\n  {\"source\": }"),
            "line 2, column 14: not JSON: expected value"
        );
        assert_eq!(error("{}"), "contacts: missing, or not an array of contacts");
        assert_eq!(error("{\"contacts\": [1]}"), "contacts[0]: not an object");
        let contact = |fields: &str| format!("{{\"contacts\": [{{{fields}}}]}}");
        assert_eq!(
            error(&contact(
                "\"source\":1,\"dest\":2,\"startTime\":5,\"endTime\":5,\"rateBitsPerSec\":8,\"owlt\":0"
            )),
            "contacts[0].endTime: not after startTime"
        );
        assert_eq!(
            error(&contact("\"source\":1,\"dest\":2,\"startTime\":0,\"endTime\":5,\"owlt\":0")),
            "contacts[0].rateBitsPerSec: missing (bits per second)"
        );
        assert_eq!(
            error(&contact("\"source\":1,\"dest\":-2,\"startTime\":0,\"endTime\":5,\"owlt\":0")),
            "contacts[0].dest: not a whole number"
        );
        assert_eq!(
            error(&contact("\"source\":1,\"dest\":2,\"startTime\":0,\"endTime\":5,\"rateBitsPerSec\":8")),
            "contacts[0].owlt: missing"
        );
    }
}
