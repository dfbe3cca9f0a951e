//! Why a stored bundle waits, in words a person acts on (`dtn bundles list`, `show`): for one
//! waiting for a route, what the routes say about it now — a neighbour that takes it next, the
//! static route whose neighbour is down, the planned contact it waits for and when that starts,
//! or that nothing leads to its destination.

use super::core::BundleFacts;
use super::core::routing::plan_name;
use super::node::Agent;
use crate::store::{BundleState, Store, StoredBundle};
use crate::time::format_dtn_time;

impl<S: Store> Agent<S> {
    /// Why `meta` is still stored, as a sentence.
    pub fn why_waiting(&self, meta: &StoredBundle) -> String {
        match &meta.state {
            BundleState::WaitingForRoute => self.why_no_route(meta),
            other => other.to_string(),
        }
    }

    fn why_no_route(&self, meta: &StoredBundle) -> String {
        use routing::Router as _;
        let destination = &meta.destination;
        let now = self.inner.clock.now_dtn_ms();
        let state = self.state();
        let reach = &state.core.reach;
        let size = meta.length.saturating_add(self.inner.forwarding_overhead);
        let facts = BundleFacts { destination, size, expiry: meta.expires_at, now };
        if let Some((via, _)) = state.next_hop_for(&facts) {
            return format!("waiting for a route: {via} is up and takes it next");
        }
        let statics = reach.static_routes.next_hops(destination);
        if !statics.is_empty() {
            let vias: Vec<String> = statics.iter().map(ToString::to_string).collect();
            return format!(
                "waiting for a route: its static route goes via {}, which is down",
                vias.join(" or ")
            );
        }
        if let Some(contacts) = &reach.contacts {
            let request = routing::RouteRequest {
                destination,
                size,
                expiry: meta.expires_at,
                previous_hop: None,
                critical: false,
                now,
            };
            if let Some(decision) = contacts.route(&request).into_iter().next() {
                let hop = &decision.next_hop;
                return match decision.planned {
                    Some(planned) if planned.contact_start > now => format!(
                        "waiting for the contact to {hop} at {} (contact plan)",
                        format_dtn_time(planned.contact_start)
                    ),
                    Some(planned) => format!(
                        "the planned contact to {hop} is on (until {}), but {hop} is not connected",
                        format_dtn_time(planned.contact_end)
                    ),
                    None => format!("waiting for a route: {hop} is not connected"),
                };
            }
            let planned =
                plan_name(destination).is_some_and(|name| contacts.graph().plan().find(&name).is_some());
            return if planned {
                "waiting for a route: the contact plan has no contact that reaches it before it expires"
                    .to_string()
            } else {
                format!("waiting for a route: the contact plan does not name {}", destination.node_id())
            };
        }
        if let Some(router) = &reach.router {
            let hops = router.next_hops(destination);
            if !hops.is_empty() {
                let hops: Vec<String> = hops.iter().map(ToString::to_string).collect();
                return format!(
                    "waiting for a route: the router sends it via {}, which is down",
                    hops.join(" or ")
                );
            }
        }
        format!(
            "waiting for a route: no neighbour, static route or contact plan leads to {}",
            destination.node_id()
        )
    }
}
