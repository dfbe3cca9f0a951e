//! The JSON of dtn-tvg-util (as the A-SABR routing library reads it):
//!
//! ```text
//! {"vertices": {"112": ["181", ...], ...},
//!  "edges": [{"vertices": ["112", "181"],
//!             "contacts": [["112", "181", 60.0, 62.4, [[0.0, 1.0, [[60.0, 8000000, 0.0]]]]], ...]}, ...]}
//! ```
//!
//! A contact is `[tx_node, rx_node, start_s, end_s, [[_, confidence, [[start_s, rate_bit_s,
//! delay_s]]]]]`; the first rate and delay of each are used, and the rate is taken as bytes per
//! second — as A-SABR does (its volumes and bundle sizes share one unit), so its benchmark
//! queries get the same answers here (with the rate read as bits, A-SABR's own query over
//! `sample1` has no route: no contact would hold its 47 MB bundle in time). Each contact's delay
//! becomes a range over the contact's interval. Times are seconds after the plan's reference
//! time.

use serde_json::Value;

use crate::plan::{Contact, Plan, Range};

pub use crate::json::JsonPlanError;
use crate::json::parse_json;

/// Parses a dtn-tvg-util plan whose times count from `reference` (DTN ms).
pub fn parse(text: &str, reference: u64) -> Result<Plan, JsonPlanError> {
    let json = parse_json(text)?;
    let mut plan = Plan::new(reference);
    let shape = |path: String, problem: &str| JsonPlanError::Shape { path, problem: problem.to_string() };
    // Every node, in name order, so indices do not depend on the file's key order.
    let vertices = json.get("vertices").and_then(Value::as_object).ok_or_else(|| {
        shape("vertices".into(), "missing, or not an object of node name to neighbour names")
    })?;
    let mut names: Vec<&String> = vertices.keys().collect();
    names.sort();
    for name in names {
        plan.node(name);
    }
    let edges = json
        .get("edges")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("edges".into(), "missing, or not an array"))?;
    for (e, edge) in edges.iter().enumerate() {
        let contacts = edge
            .get("contacts")
            .and_then(Value::as_array)
            .ok_or_else(|| shape(format!("edges[{e}].contacts"), "missing, or not an array"))?;
        for (c, contact) in contacts.iter().enumerate() {
            let path = format!("edges[{e}].contacts[{c}]");
            let (added, range) = contact_of(&mut plan, contact, &path, reference)?;
            plan.contacts.push(added);
            plan.ranges.push(range);
        }
    }
    Ok(plan)
}

fn contact_of(
    plan: &mut Plan,
    value: &Value,
    path: &str,
    reference: u64,
) -> Result<(Contact, Range), JsonPlanError> {
    let shape = |at: &str, problem: &str| JsonPlanError::Shape {
        path: format!("{path}{at}"),
        problem: problem.to_string(),
    };
    let fields = value.as_array().filter(|a| a.len() == 5).ok_or_else(|| {
        shape("", "not [tx_node, rx_node, start_s, end_s, [[_, confidence, [[start_s, rate, delay_s]]]]]")
    })?;
    let node = |at: usize| -> Result<String, JsonPlanError> {
        match &fields[at] {
            Value::String(name) => Ok(name.clone()),
            Value::Number(number) => Ok(number.to_string()),
            _ => Err(shape(&format!("[{at}]"), "not a node name")),
        }
    };
    let seconds = |value: &Value, at: &str| -> Result<u64, JsonPlanError> {
        let s = value
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| shape(at, "not a time in seconds"))?;
        Ok(reference.saturating_add((s * 1000.0).round() as u64))
    };
    let (tx, rx) = (node(0)?, node(1)?);
    let (start, end) = (seconds(&fields[2], "[2]")?, seconds(&fields[3], "[3]")?);
    if end <= start {
        return Err(shape("[3]", "the end is not after the start"));
    }
    let first =
        fields[4].get(0).ok_or_else(|| shape("[4]", "no [_, confidence, [[start_s, rate, delay_s]]]"))?;
    let confidence = first
        .get(1)
        .and_then(Value::as_f64)
        .filter(|c| (0.0..=1.0).contains(c))
        .ok_or_else(|| shape("[4][0][1]", "the confidence is not a number from 0 to 1"))?;
    let segment = first
        .get(2)
        .and_then(|s| s.get(0))
        .ok_or_else(|| shape("[4][0][2]", "no [[start_s, rate, delay_s]]"))?;
    let rate = segment
        .get(1)
        .and_then(Value::as_f64)
        .filter(|r| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| shape("[4][0][2][0][1]", "the rate is not a number"))?;
    let delay = segment
        .get(2)
        .and_then(Value::as_f64)
        .filter(|d| d.is_finite() && *d >= 0.0)
        .ok_or_else(|| shape("[4][0][2][0][2]", "the delay (seconds) is not a number"))?;
    let (from, to) = (plan.node(&tx), plan.node(&rx));
    let rate = rate as u64;
    let contact = Contact { from, to, start, end, rate, confidence };
    let range = Range { from, to, start, end, owlt_ms: (delay * 1000.0).round() as u64 };
    Ok((contact, range))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"{"vertices": {"b": ["a"], "a": ["b"]},
        "edges": [{"vertices": ["a", "b"], "contacts": [
            ["a", "b", 60.0, 62.4, [[0.0, 1.0, [[60.0, 8000000, 0.0]]]]],
            ["b", "a", 100, 200.5, [[0.0, 0.5, [[100, 800, 1.25]]]]]]}],
        "contact_type": "whatever"}"#;

    #[test]
    fn contacts_with_their_rates_and_delays_as_ranges() {
        let plan = parse(PLAN, 1_000).expect("parses");
        let (a, b) = (plan.find("a").expect("a"), plan.find("b").expect("b"));
        assert_eq!((a.0, b.0), (0, 1), "nodes in name order");
        assert_eq!(
            plan.contacts,
            vec![
                Contact { from: a, to: b, start: 61_000, end: 63_400, rate: 8_000_000, confidence: 1.0 },
                Contact { from: b, to: a, start: 101_000, end: 201_500, rate: 800, confidence: 0.5 },
            ]
        );
        assert_eq!(plan.owlt(b, a, 150_000), Some(1_250));
        assert_eq!(plan.owlt(a, b, 61_000), Some(0));
    }

    #[test]
    fn errors_say_where() {
        let broken = parse("{\"vertices\": {\n  \"a\": [}", 0).unwrap_err();
        assert!(matches!(broken, JsonPlanError::Json { line: 2, column: 9, .. }), "{broken}");
        let shape = PLAN.replace("62.4", "50");
        assert_eq!(
            parse(&shape, 0).unwrap_err().to_string(),
            "edges[0].contacts[0][3]: the end is not after the start"
        );
        let rate = PLAN.replace("8000000", "\"fast\"");
        assert_eq!(
            parse(&rate, 0).unwrap_err().to_string(),
            "edges[0].contacts[0][4][0][2][0][1]: the rate is not a number"
        );
        assert_eq!(
            parse("{\"edges\": []}", 0).unwrap_err().to_string(),
            "vertices: missing, or not an object of node name to neighbour names"
        );
    }

    /// The benchmark plan, when this machine has it (`../shared/plans/`).
    #[test]
    fn the_sample_plan_parses_whole() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/plans/sample1.tvgutil.json");
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let plan = parse(&text, 0).expect("sample1 parses");
        assert_eq!((plan.node_count(), plan.contacts.len()), (206, 16_138));
        assert!(plan.contacts.iter().all(|c| c.rate == 8_000_000));
    }
}
