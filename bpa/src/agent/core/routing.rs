//! Routing hooks (RFC 9171 §5.4 step 1, "forwarding decision"): which neighbour a bundle goes
//! to next. The agent asks, in order: is the destination's node a connected neighbour; does a
//! static route match; does the plugged-in [`Router`] (the contact-plan router) name a next hop.
//! A bundle nobody can route waits in the store and is reconsidered when a neighbour comes up or
//! a route changes.
//!
//! The algorithms live in the `routing` crate, generic over the endpoint type; this module
//! gives them bpa's [`Eid`] and the EID patterns static routes are written in.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Weak};

use crate::bundle::{Eid, EidError};

/// A routing algorithm the agent consults (the contact-plan router implements it).
pub trait Router: routing::Router<Eid> {}

impl<R: routing::Router<Eid> + ?Sized> Router for R {}

/// A static route: bundles whose destination matches `pattern` go to the neighbour `via`.
pub type StaticRoute = routing::StaticRoute<EidPattern, Eid>;

/// Static routes, most specific pattern first; among equals, the first added wins.
pub type StaticRoutes = routing::StaticRoutes<EidPattern, Eid>;

/// Contact Graph Routing over a contact plan, for this node (`contact_router`).
pub type ContactRouter = routing::ContactRouter<Eid>;

/// The plan node an endpoint belongs to: an ipn node's number (`ipn:7.3` → `"7"`), a dtn
/// node's name (`dtn://relay/x` → `"relay"`). ION, HDTN and most plans number ipn nodes.
pub fn plan_name(endpoint: &Eid) -> Option<String> {
    match endpoint {
        Eid::Ipn { allocator: 0, node, .. } => Some(node.to_string()),
        Eid::Ipn { allocator, node, .. } => Some(format!("{allocator}.{node}")),
        Eid::Dtn { node, .. } => Some(node.to_string()),
        Eid::Null => None,
    }
}

/// The node ID of a plan node: a number is an ipn node (`"7"` → `ipn:7.0`), a name a dtn node
/// (`"relay"` → `dtn://relay/`).
pub fn plan_endpoint(name: &str) -> Option<Eid> {
    if let Ok(node) = name.parse::<u32>() {
        return Some(Eid::ipn(node, 0));
    }
    if let Some((allocator, node)) = name.split_once('.')
        && let (Ok(allocator), Ok(node)) = (allocator.parse::<u32>(), node.parse::<u32>())
    {
        return Some(Eid::Ipn { allocator, node, service: 0 });
    }
    let eid = format!("dtn://{name}/").parse::<Eid>().ok()?;
    matches!(&eid, Eid::Dtn { node, demux } if &**node == name && demux.is_empty()).then_some(eid)
}

/// The contact-plan router of the node `node_id`.
pub fn contact_router(plan: routing::Plan, node_id: &Eid) -> ContactRouter {
    let local = plan_name(node_id).unwrap_or_default();
    routing::ContactRouter::new(plan, &local, Box::new(plan_name), Box::new(plan_endpoint))
}

/// Which destinations a static route covers.
///
/// Text forms: `*` (everything), `ipn:*.*` / `dtn://**` (every ipn / dtn endpoint), `ipn:N.*`
/// or `ipn:A.N.*` (every service of node N), `dtn://node/**` (every endpoint of a dtn node), a
/// node ID (`ipn:N.0`, `dtn://node/`: the same as its wildcard), or any other EID (that endpoint
/// only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EidPattern {
    /// Every endpoint (`*`).
    Any,
    /// Every `ipn` endpoint (`ipn:*.*`).
    AnyIpn,
    /// Every `dtn` endpoint (`dtn://**`).
    AnyDtn,
    /// Every endpoint of this node (a node ID).
    Node(Eid),
    /// That endpoint only.
    Exact(Eid),
}

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "{text:?} is not an EID pattern: {source} (patterns: *, ipn:*.*, ipn:N.*, dtn://**, dtn://node/**, or an EID)"
    )]
    Invalid { text: String, source: EidError },
}

impl routing::Pattern<Eid> for EidPattern {
    fn matches(&self, destination: &Eid) -> bool {
        EidPattern::matches(self, destination)
    }

    /// An exact EID beats a node, a node beats a scheme, a scheme beats everything.
    fn specificity(&self) -> u8 {
        match self {
            EidPattern::Exact(_) => 3,
            EidPattern::Node(_) => 2,
            EidPattern::AnyIpn | EidPattern::AnyDtn => 1,
            EidPattern::Any => 0,
        }
    }
}

impl EidPattern {
    /// Whether `destination` is covered.
    pub fn matches(&self, destination: &Eid) -> bool {
        match self {
            EidPattern::Any => true,
            EidPattern::AnyIpn => matches!(destination, Eid::Ipn { .. }),
            EidPattern::AnyDtn => matches!(destination, Eid::Dtn { .. }),
            EidPattern::Node(node) => !destination.is_null() && &destination.node_id() == node,
            EidPattern::Exact(eid) => eid == destination,
        }
    }
}

impl FromStr for EidPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<EidPattern, PatternError> {
        let invalid = |source| PatternError::Invalid { text: text.to_string(), source };
        match text {
            "*" => return Ok(EidPattern::Any),
            "ipn:*.*" | "ipn:*.*.*" => return Ok(EidPattern::AnyIpn),
            "dtn://**" | "dtn://*" => return Ok(EidPattern::AnyDtn),
            _ => {}
        }
        if let Some(node) = text.strip_prefix("ipn:").and_then(|rest| rest.strip_suffix(".*")) {
            let eid: Eid = format!("ipn:{node}.0").parse().map_err(invalid)?;
            return Ok(EidPattern::Node(eid));
        }
        if let Some(node) = text.strip_suffix("/**").or_else(|| text.strip_suffix("/*"))
            && node.starts_with("dtn://")
        {
            let eid: Eid = format!("{node}/").parse().map_err(invalid)?;
            return Ok(EidPattern::Node(eid));
        }
        let eid: Eid = text.parse().map_err(invalid)?;
        Ok(if !eid.is_null() && eid.node_id() == eid {
            EidPattern::Node(eid)
        } else {
            EidPattern::Exact(eid)
        })
    }
}

impl fmt::Display for EidPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EidPattern::Any => f.write_str("*"),
            EidPattern::AnyIpn => f.write_str("ipn:*.*"),
            EidPattern::AnyDtn => f.write_str("dtn://**"),
            EidPattern::Node(Eid::Dtn { node, .. }) => write!(f, "dtn://{node}/**"),
            EidPattern::Node(Eid::Ipn { allocator: 0, node, .. }) => write!(f, "ipn:{node}.*"),
            EidPattern::Node(Eid::Ipn { allocator, node, .. }) => write!(f, "ipn:{allocator}.{node}.*"),
            EidPattern::Node(eid) | EidPattern::Exact(eid) => write!(f, "{eid}"),
        }
    }
}

/// Volume booked for a bundle a queue took: given back when dropped unless [`Self::keep`]
/// was called (the bundle was sent).
#[derive(Debug)]
pub(crate) struct HeldBooking {
    router: Weak<ContactRouter>,
    booking: Option<routing::Booking>,
}

impl HeldBooking {
    pub fn new(router: &Arc<ContactRouter>, booking: routing::Booking) -> HeldBooking {
        HeldBooking { router: Arc::downgrade(router), booking: Some(booking) }
    }

    /// The bundle went: the volume stays booked.
    pub fn keep(mut self) {
        self.booking = None;
    }
}

impl Drop for HeldBooking {
    fn drop(&mut self) {
        use routing::Router as _;
        if let (Some(booking), Some(router)) = (self.booking.take(), self.router.upgrade()) {
            router.release(booking);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> EidPattern {
        text.parse().expect("pattern")
    }

    #[test]
    fn patterns_parse_and_print_back() {
        for text in
            ["*", "ipn:*.*", "dtn://**", "ipn:3.*", "ipn:977.3.*", "dtn://relay/**", "ipn:3.7", "dtn://a/b"]
        {
            assert_eq!(pattern(text).to_string(), text);
        }
        assert_eq!(pattern("ipn:3.0"), pattern("ipn:3.*"));
        assert_eq!(pattern("dtn://relay/"), pattern("dtn://relay/**"));
        assert_eq!(pattern("dtn://relay/*"), pattern("dtn://relay/**"));
    }

    #[test]
    fn patterns_match_what_they_say() {
        let d = |t: &str| t.parse::<Eid>().expect("eid");
        assert!(pattern("*").matches(&d("dtn://x/y")));
        assert!(pattern("ipn:*.*").matches(&d("ipn:9.9")) && !pattern("ipn:*.*").matches(&d("dtn://x/")));
        assert!(pattern("dtn://**").matches(&d("dtn://x/y")) && !pattern("dtn://**").matches(&d("ipn:1.1")));
        assert!(pattern("ipn:3.*").matches(&d("ipn:3.77")) && !pattern("ipn:3.*").matches(&d("ipn:4.77")));
        assert!(pattern("dtn://relay/**").matches(&d("dtn://relay/mail/in")));
        assert!(!pattern("dtn://relay/**").matches(&d("dtn://relays/x")));
        assert!(pattern("ipn:3.7").matches(&d("ipn:3.7")) && !pattern("ipn:3.7").matches(&d("ipn:3.8")));
        assert!(!pattern("ipn:3.*").matches(&Eid::Null));
    }

    #[test]
    fn plan_nodes_are_ipn_numbers_or_dtn_names() {
        let eid = |t: &str| t.parse::<Eid>().expect("eid");
        assert_eq!(plan_name(&eid("ipn:7.3")).as_deref(), Some("7"));
        assert_eq!(plan_name(&eid("ipn:2.7.3")).as_deref(), Some("2.7"));
        assert_eq!(plan_name(&eid("dtn://relay/mail")).as_deref(), Some("relay"));
        assert_eq!(plan_name(&Eid::Null), None);
        assert_eq!(plan_endpoint("7"), Some(eid("ipn:7.0")));
        assert_eq!(plan_endpoint("2.7"), Some(eid("ipn:2.7.0")));
        assert_eq!(plan_endpoint("relay"), Some(eid("dtn://relay/")));
        assert_eq!(plan_endpoint("no/slash"), None);
    }

    #[test]
    fn bad_patterns_say_what_is_accepted() {
        let error = "ipn:x.*".parse::<EidPattern>().expect_err("refused");
        let message = error.to_string();
        assert!(message.starts_with("\"ipn:x.*\" is not an EID pattern:"), "{message}");
        assert!(message.contains("ipn:N.*"), "{message}");
        assert!(matches!(error, PatternError::Invalid { .. }));
    }

    #[test]
    fn the_most_specific_route_wins() {
        use routing::Router as _;
        let mut routes = StaticRoutes::default();
        routes.add(StaticRoute { pattern: pattern("*"), via: Eid::ipn(9, 0) });
        routes.add(StaticRoute { pattern: pattern("ipn:3.*"), via: Eid::ipn(2, 0) });
        routes.add(StaticRoute { pattern: pattern("ipn:3.5"), via: Eid::ipn(4, 0) });
        routes.add(StaticRoute { pattern: pattern("ipn:3.*"), via: Eid::ipn(5, 0) });
        assert_eq!(
            routes.next_hops(&Eid::ipn(3, 5)),
            vec![Eid::ipn(4, 0), Eid::ipn(2, 0), Eid::ipn(5, 0), Eid::ipn(9, 0)]
        );
        assert_eq!(routes.next_hops(&Eid::ipn(8, 1)), vec![Eid::ipn(9, 0)]);
        assert_eq!(routes.remove(&pattern("ipn:3.*")), 2);
        assert_eq!(routes.next_hops(&Eid::ipn(3, 1)), vec![Eid::ipn(9, 0)]);
    }
}
