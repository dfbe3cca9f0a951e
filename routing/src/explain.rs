//! A routing decision as `dtn route` shows it: the routes best first with their contacts and
//! predicted arrival, and, when there is none, why — the JSON shape the CLI and the daemon's
//! API share.

use serde::{Deserialize, Serialize};

use crate::cgr::{ContactGraph, Query, Route};

/// How many routes an explanation lists at most (each through another next hop).
pub const EXPLAINED_ROUTES: usize = 4;

/// The answer to "where would this bundle go".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteReport {
    /// The destination asked about.
    pub destination: String,
    /// The bundle's size in bytes, as routed.
    pub size: u64,
    /// Best first; empty when there is none.
    pub routes: Vec<RouteShown>,
    /// Why there is no route (`None` when there is one).
    pub reason: Option<String>,
    /// The time the question was asked for (DTN ms), and as seconds after the plan's reference.
    pub at_time: u64,
    /// The same time as seconds after the plan's reference time.
    pub at_offset_s: f64,
    /// When the bundle expires (DTN ms).
    pub expiry_time: u64,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteShown {
    /// The neighbour the route starts with.
    pub next_hop: String,
    /// Seconds after the plan's reference time (fractions kept).
    pub arrival_offset_s: f64,
    /// DTN ms.
    pub arrival_time: u64,
    /// How many contacts the route takes.
    pub hops: usize,
    /// Its contacts, from the first hop to the last.
    pub contacts: Vec<ContactShown>,
}

/// One contact of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactShown {
    /// The plan name of the node that transmits.
    pub from: String,
    /// The plan name of the node that receives.
    pub to: String,
    /// When the contact starts, in seconds after the plan's reference time.
    pub start_offset_s: f64,
    /// When it ends, in seconds after the plan's reference time.
    pub end_offset_s: f64,
    /// Bytes per second.
    pub rate: u64,
    /// When the bundle would start and finish crossing it, and reach its far end (seconds
    /// after the plan's reference time).
    pub transmit_offset_s: f64,
    /// When the bundle reaches the far end, in seconds after the plan's reference time.
    pub arrival_offset_s: f64,
}

/// Explains the decision for `query` over `graph`: up to [`EXPLAINED_ROUTES`] routes, each
/// through another next hop, best first. `node` names a plan node as the caller shows nodes
/// (an endpoint ID for the daemon). `destination` is the destination as asked.
pub fn explain(
    graph: &ContactGraph,
    query: &Query,
    destination: &str,
    node: &dyn Fn(&str) -> String,
) -> RouteReport {
    let plan = graph.plan();
    let offset = |ms: u64| (ms as f64 - plan.reference as f64) / 1000.0;
    let routes: Vec<Route> =
        if query.from == query.to { Vec::new() } else { graph.routes(query, EXPLAINED_ROUTES) };
    let shown = routes
        .iter()
        .map(|route| {
            let mut at = query.now;
            let contacts = route
                .contacts
                .iter()
                .map(|&index| {
                    let c = &plan.contacts[index];
                    let backlog = crate::cgr::transmit_ms(graph.booked(index), c.rate).unwrap_or(0);
                    let transmit = c.start.saturating_add(backlog).max(at);
                    at = graph.arrival_over(index, at, query.size, query.expiry).unwrap_or(at);
                    ContactShown {
                        from: node(plan.name(c.from)),
                        to: node(plan.name(c.to)),
                        start_offset_s: offset(c.start),
                        end_offset_s: offset(c.end),
                        rate: c.rate,
                        transmit_offset_s: offset(transmit),
                        arrival_offset_s: offset(at),
                    }
                })
                .collect::<Vec<_>>();
            RouteShown {
                next_hop: contacts.first().map(|c| c.to.clone()).unwrap_or_default(),
                arrival_offset_s: offset(route.arrival),
                arrival_time: route.arrival,
                hops: route.hops(),
                contacts,
            }
        })
        .collect::<Vec<_>>();
    let reason = shown.is_empty().then(|| why_none(graph, query, node));
    RouteReport {
        destination: destination.to_string(),
        size: query.size,
        routes: shown,
        reason,
        at_time: query.now,
        at_offset_s: offset(query.now),
        expiry_time: query.expiry,
    }
}

/// Why no route: the question relaxed one condition at a time says which one stands in the way.
fn why_none(graph: &ContactGraph, query: &Query, node: &dyn Fn(&str) -> String) -> String {
    let plan = graph.plan();
    let offset = |ms: u64| (ms as f64 - plan.reference as f64) / 1000.0;
    let (from, to) = (node(plan.name(query.from)), node(plan.name(query.to)));
    if query.from == query.to {
        return format!("{to} is this node: the bundle is delivered here, not routed");
    }
    let unbounded = Query { expiry: u64::MAX, ..query.clone() };
    if let Some(late) = graph.earliest_route(&unbounded) {
        return format!(
            "the earliest route arrives at +{:.3} s, after the bundle expires at +{:.3} s",
            offset(late.arrival),
            offset(query.expiry)
        );
    }
    let empty = Query { expiry: u64::MAX, size: 0, ..query.clone() };
    if let Some(small) = graph.earliest_route(&empty) {
        return format!(
            "no route has room for {} bytes before its contacts end (a bundle small enough would arrive at +{:.3} s)",
            query.size,
            offset(small.arrival)
        );
    }
    let leaving = plan.contacts.iter().filter(|c| c.from == query.from && c.end > query.now).count();
    if leaving == 0 {
        return format!("no contact leaves {from} after +{:.3} s", offset(query.now));
    }
    format!(
        "no chain of contacts leads from {from} to {to} after +{:.3} s ({leaving} contacts leave {from}; a contact needs a range for its light time)",
        offset(query.now)
    )
}

/// A plan at a glance: what `dtn plan check` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Nodes the plan names.
    pub nodes: usize,
    /// Contacts in the plan.
    pub contacts: usize,
    /// Ranges (one-way light times) in the plan.
    pub ranges: usize,
    /// The first start and the last end, in seconds after the reference time.
    pub start_offset_s: Option<f64>,
    /// The last end, in seconds after the reference time.
    pub end_offset_s: Option<f64>,
    /// Contacts no range covers at their start: never used.
    pub without_range: usize,
}

/// The summary of a prepared plan.
pub fn summary(graph: &ContactGraph) -> PlanSummary {
    let plan = graph.plan();
    let offset = |ms: u64| (ms as f64 - plan.reference as f64) / 1000.0;
    let span = plan.span();
    PlanSummary {
        nodes: plan.node_count(),
        contacts: plan.contacts.len(),
        ranges: plan.ranges.len(),
        start_offset_s: span.map(|(start, _)| offset(start)),
        end_offset_s: span.map(|(_, end)| offset(end)),
        without_range: (0..plan.contacts.len()).filter(|&c| graph.owlt(c).is_none()).count(),
    }
}

/// The contacts of a plan, as `dtn contacts` shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactTable {
    /// The plan's reference time and the time now (DTN ms).
    pub reference: u64,
    /// The time the table was made for (DTN ms).
    pub now: u64,
    /// Every contact of the plan, in the plan's order.
    pub contacts: Vec<ContactRow>,
}

/// One contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactRow {
    /// The plan name of the node that transmits.
    pub from: String,
    /// The plan name of the node that receives.
    pub to: String,
    /// When the contact starts, in seconds after the plan's reference time.
    pub start_offset_s: f64,
    /// When it ends, in seconds after the plan's reference time.
    pub end_offset_s: f64,
    /// Bytes per second.
    pub rate: u64,
    /// One-way light time in seconds; `None`: no range, the contact is never used.
    pub owlt_s: Option<f64>,
    /// How likely it is to happen, 0..=1 (1 when the plan does not say).
    pub confidence: f64,
    /// Bytes booked on it now.
    pub booked: u64,
}

/// Every contact of a plan, by start (at most `limit`: a plan can hold millions).
pub fn contact_table(
    graph: &ContactGraph,
    now: u64,
    limit: usize,
    node: &dyn Fn(&str) -> String,
) -> ContactTable {
    let plan = graph.plan();
    let offset = |ms: u64| (ms as f64 - plan.reference as f64) / 1000.0;
    let mut order: Vec<usize> = (0..plan.contacts.len()).collect();
    order.sort_by_key(|&c| (plan.contacts[c].start, plan.contacts[c].from, plan.contacts[c].to));
    let contacts = order
        .into_iter()
        .take(limit)
        .map(|index| {
            let c = &plan.contacts[index];
            ContactRow {
                from: node(plan.name(c.from)),
                to: node(plan.name(c.to)),
                start_offset_s: offset(c.start),
                end_offset_s: offset(c.end),
                rate: c.rate,
                owlt_s: graph.owlt(index).map(|ms| ms as f64 / 1000.0),
                confidence: c.confidence,
                booked: graph.booked(index),
            }
        })
        .collect();
    ContactTable { reference: plan.reference, now, contacts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str) -> ContactGraph {
        ContactGraph::new(crate::ion::parse(text, 1_000_000).expect("plan"))
    }

    fn query(g: &ContactGraph, from: &str, to: &str, size: u64, expiry_s: u64) -> Query {
        let plan = g.plan();
        Query {
            from: plan.find(from).expect("from"),
            to: plan.find(to).expect("to"),
            now: plan.reference,
            size,
            expiry: plan.reference + expiry_s * 1000,
            previous_hop: None,
        }
    }

    fn ipn(name: &str) -> String {
        format!("ipn:{name}.0")
    }

    #[test]
    fn routes_best_first_with_their_contacts_in_the_json_shape() {
        let g = graph(
            "a contact +10 +100 1 2 1000\na contact +50 +200 2 3 1000\na contact +20 +100 1 3 500\n\
             a range +0 +1000 1 2 1\na range +0 +1000 2 3 2\na range +0 +1000 1 3 0\n",
        );
        let report = explain(&g, &query(&g, "1", "3", 1000, 3600), "ipn:3.5", &ipn);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["destination"], "ipn:3.5");
        assert_eq!(json["size"], 1000);
        assert_eq!(json["reason"], serde_json::Value::Null);
        let routes = json["routes"].as_array().expect("routes");
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0]["next_hop"], "ipn:3.0");
        assert_eq!(routes[0]["arrival_offset_s"], 22.0);
        assert_eq!(routes[0]["arrival_time"], 1_022_000);
        assert_eq!(routes[0]["hops"], 1);
        assert_eq!(routes[1]["next_hop"], "ipn:2.0");
        assert_eq!(routes[1]["arrival_offset_s"], 53.0);
        let c = &routes[1]["contacts"][1];
        assert_eq!((c["from"].as_str(), c["to"].as_str()), (Some("ipn:2.0"), Some("ipn:3.0")));
        assert_eq!(
            (c["start_offset_s"].as_f64(), c["end_offset_s"].as_f64(), c["rate"].as_u64()),
            (Some(50.0), Some(200.0), Some(1000))
        );
        assert_eq!(c["transmit_offset_s"], 50.0);
    }

    #[test]
    fn no_route_says_why() {
        let g = graph("a contact +100 +200 1 2 1000\na range +0 +1000 1 2 0\na contact +0 +10 2 3 1000\n");
        let why =
            |size, expiry_s, to: &str| explain(&g, &query(&g, "1", to, size, expiry_s), to, &ipn).reason;
        assert_eq!(
            why(1000, 50, "2").as_deref(),
            Some("the earliest route arrives at +101.000 s, after the bundle expires at +50.000 s")
        );
        assert_eq!(
            why(1_000_000, 3600, "2").as_deref(),
            Some(
                "no route has room for 1000000 bytes before its contacts end (a bundle small enough would arrive at +100.000 s)"
            )
        );
        assert!(
            why(1, 3600, "3")
                .expect("reason")
                .starts_with("no chain of contacts leads from ipn:1.0 to ipn:3.0")
        );
        let mut late = query(&g, "1", "2", 1, 3600);
        late.now += 300_000;
        assert_eq!(
            explain(&g, &late, "2", &ipn).reason.as_deref(),
            Some("no contact leaves ipn:1.0 after +300.000 s")
        );
        assert!(
            explain(&g, &query(&g, "1", "1", 1, 3600), "1", &ipn)
                .reason
                .expect("reason")
                .contains("this node")
        );
    }
}
