//! A contact plan in the agent: Contact Graph Routing for what waits, and the plan's contacts
//! from this node as edges on the agent's clock.
//!
//! At a contact's start the agent tells whoever manages links ([`Agent::contact_events`]: the
//! daemon, which opens the convergence-layer session to that neighbour if it knows its
//! address); at its end it says so again (the session is closed, the neighbour goes down, and
//! what was queued for it is routed again). Back-to-back contacts with one neighbour are one
//! opening: an end covered by another contact with the same neighbour is not announced.
//!
//! A bundle a neighbour's queue takes on a planned route has its volume booked on the route's
//! contacts ([`HeldBooking`]); the booking is kept once the bundle is sent and given back
//! otherwise, so later bundles see the volume that is really left.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::core::routing::{ContactRouter, contact_router, plan_endpoint, plan_name};
use super::core::{ContactEvent, Edge};
use super::node::Agent;
use crate::bundle::Eid;
use crate::store::Store;

/// Events waiting for the link manager at most; past that they are dropped (and logged): a
/// manager that does not read must not hold the agent.
const EVENT_QUEUE: usize = 1024;

impl<S: Store> Agent<S> {
    /// Routes by this contact plan from now on (replacing any earlier one): bundles waiting
    /// for a route are routed again, and the plan's contacts from this node are announced on
    /// [`Agent::contact_events`] as they start and end (one in progress now, at once).
    pub fn set_contact_plan(&self, plan: routing::Plan) -> Arc<ContactRouter> {
        let router = Arc::new(contact_router(plan, &self.inner.config.node_id));
        let now = self.inner.clock.now_dtn_ms();
        if router.local().is_none() {
            tracing::warn!(
                node = %self.inner.config.node_id,
                "the contact plan does not name this node: it routes nothing from here"
            );
        }
        let old = self.state().core.set_contact_plan(Arc::clone(&router), now);
        if let Some(old) = old {
            // Sessions opened for the old plan's contacts are the new plan's to keep or end.
            let kept = self.active_neighbours(&router, now);
            for neighbour in self.active_neighbours(&old, now) {
                if !kept.contains(&neighbour) {
                    self.announce(ContactEvent::Ended { neighbour });
                }
            }
        }
        self.timers_changed();
        self.state().rescan_all();
        router
    }

    /// The contact plan routed by, if one was set.
    pub fn contact_plan(&self) -> Option<Arc<ContactRouter>> {
        self.state().core.reach.contacts.clone()
    }

    /// The neighbours this node has a contact with at `at`.
    fn active_neighbours(&self, router: &ContactRouter, at: u64) -> Vec<Eid> {
        let Some(local) = router.local() else { return Vec::new() };
        let graph = router.graph();
        let plan = graph.plan();
        let mut list: Vec<Eid> = plan
            .contacts
            .iter()
            .filter(|c| c.from == local && c.start <= at && at < c.end)
            .filter_map(|c| plan_endpoint(plan.name(c.to)))
            .collect();
        list.sort();
        list.dedup();
        list
    }

    /// Contact starts and ends, for the link manager (the daemon opens and closes sessions on
    /// them). One receiver at a time: a new call replaces the last.
    pub fn contact_events(&self) -> mpsc::Receiver<ContactEvent> {
        let (sender, receiver) = mpsc::channel(EVENT_QUEUE);
        self.state().contact_events = Some(sender);
        receiver
    }

    fn announce(&self, event: ContactEvent) {
        tracing::info!("{event}");
        let sender = self.state().contact_events.clone();
        if let Some(sender) = sender
            && let Err(error) = sender.try_send(event)
        {
            tracing::warn!(%error, "a contact event was not taken by the link manager");
        }
    }

    /// The contact timer fired: every edge due is announced, then the next is set.
    pub(super) async fn on_contact_edges(&self) {
        let now = self.inner.clock.now_dtn_ms();
        let Some(router) = self.contact_plan() else { return };
        let due = self.state().core.contact_edges_due(now);
        let mut changed = false;
        for (_, edge, index) in due {
            let (neighbour, end, rate, covered) = {
                let graph = router.graph();
                let plan = graph.plan();
                let Some(contact) = plan.contacts.get(index) else { continue };
                // Another contact with the same neighbour going on: the link stays.
                let covered = plan.contacts.iter().enumerate().any(|(other, c)| {
                    other != index
                        && c.from == contact.from
                        && c.to == contact.to
                        && c.start <= now
                        && now < c.end
                });
                (plan_endpoint(plan.name(contact.to)), contact.end, contact.rate, covered)
            };
            let Some(neighbour) = neighbour else { continue };
            match edge {
                Edge::Start => self.announce(ContactEvent::Started { neighbour, end, rate }),
                Edge::End if !covered => self.announce(ContactEvent::Ended { neighbour }),
                Edge::End => {}
            }
            changed = true;
        }
        if changed {
            // What waits may go over the contact that started, or need another route now.
            self.state().rescan_all();
        }
        self.timers_changed();
    }

    /// What `dtn route` shows: where a bundle of `size` bytes (as stored) for `destination`,
    /// expiring `lifetime_ms` after `at` (DTN ms; default now), would go by the contact plan —
    /// routed, as the queues route it, by its size on the wire: with the Previous Node block
    /// this node adds.
    pub fn explain_route(
        &self,
        destination: &Eid,
        size: u64,
        lifetime_ms: u64,
        at: Option<u64>,
    ) -> Option<routing::explain::RouteReport> {
        let router = self.contact_plan()?;
        let now = at.unwrap_or_else(|| self.inner.clock.now_dtn_ms());
        let graph = router.graph();
        let plan = graph.plan();
        let expiry = now.saturating_add(lifetime_ms);
        let shown = |name: &str| plan_endpoint(name).map_or_else(|| name.to_string(), |e| e.to_string());
        let offset = (now as f64 - plan.reference as f64) / 1000.0;
        let none = |reason: String| routing::explain::RouteReport {
            destination: destination.to_string(),
            size,
            routes: Vec::new(),
            reason: Some(reason),
            at_time: now,
            at_offset_s: offset,
            expiry_time: expiry,
        };
        let Some(from) = router.local() else {
            return Some(none(format!("the contact plan does not name this node ({})", self.node_id())));
        };
        let name = plan_name(destination).unwrap_or_default();
        let Some(to) = plan.find(&name) else {
            return Some(none(format!("the contact plan has no node {name:?}: no contact leads there")));
        };
        let wire = size.saturating_add(self.inner.forwarding_overhead);
        let query = routing::Query { from, to, now, size: wire, expiry, previous_hop: None };
        let mut report = routing::explain::explain(&graph, &query, &destination.to_string(), &shown);
        report.size = size;
        Some(report)
    }

    /// The agent's clock now (DTN ms).
    pub fn now(&self) -> u64 {
        self.inner.clock.now_dtn_ms()
    }
}
