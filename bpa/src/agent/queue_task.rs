//! One neighbour's queue task (design §3.3): it takes what dispatch pushed, else reads the
//! store a page at a time through a cursor over the bundles waiting for a route, keeping those
//! whose next hop is its neighbour, claims each and starts its send when a send slot is free,
//! and parks when nothing is left ([`super::queue::NeighbourQueue`] is its shared side).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use super::core::BundleFacts;
use super::core::routing::HeldBooking;
use super::forwarder::InFlight;
use super::node::{Agent, Inner, Neighbour};
use super::queue::{NeighbourQueue, QUEUE_PAGE, Queued};
use crate::bundle::Eid;
use crate::store::{StateKind, Store, StoreId};

/// Where the queue's task is in the store.
struct Cursor {
    /// The last store id read.
    after: StoreId,
    /// The end was reached: nothing more until woken.
    at_end: bool,
    /// Read, routed here, not yet sent: at most a page (with the volume booked for each on a
    /// planned route).
    page: VecDeque<(StoreId, u64, Option<HeldBooking>)>,
}

impl<S: Store> Agent<S> {
    /// The task that feeds a neighbour's sends until the neighbour goes down (or the agent is
    /// dropped: it holds the agent only while it works, not while it waits).
    pub(super) async fn run_queue(agent: Weak<Inner<S>>, hop: Eid, neighbour: Neighbour) {
        let queue = Arc::clone(&neighbour.queue);
        let mut cursor = Cursor { after: 0, at_end: false, page: VecDeque::new() };
        // The next bundle, claimed (no other send takes it), waiting for a send slot.
        let mut held: Option<(Queued, InFlight<S>)> = None;
        loop {
            if queue.is_closed() {
                return;
            }
            let told = queue.take_orders();
            if told.rescan {
                cursor = Cursor { after: 0, at_end: false, page: VecDeque::new() };
            }
            if told.read_on {
                cursor.at_end = false;
            }
            let Some(inner) = agent.upgrade() else { return };
            let this = Agent { inner };
            if held.is_none() {
                held = this.next_claimed(&queue, &mut cursor);
            }
            match held.take() {
                Some((queued, claim)) => {
                    // At most `max_in_flight_per_neighbour` sends at once.
                    tokio::select! {
                        slot = Arc::clone(&neighbour.slots).acquire_owned() => {
                            let Ok(slot) = slot else { return };
                            this.start_send(queued, claim, hop.clone(), neighbour.clone(), slot);
                        }
                        // Closed, or told to read again: the bundle stays held meanwhile.
                        () = queue.woken() => held = Some((queued, claim)),
                    }
                }
                None if !cursor.at_end => {
                    if let Err(error) = this.read_page(&hop, &mut cursor).await {
                        tracing::error!(
                            %error, neighbour = %hop,
                            "cannot read what waits for a neighbour; read again on the next change or retry"
                        );
                        cursor.at_end = true;
                    }
                }
                None => {
                    drop(this);
                    if queue.park() {
                        queue.woken().await;
                    }
                }
            }
        }
    }

    /// The next bundle to send that no other send has: pushed ones first, then the page read.
    fn next_claimed(&self, queue: &NeighbourQueue, cursor: &mut Cursor) -> Option<(Queued, InFlight<S>)> {
        loop {
            let pushed = queue.take_pushed();
            let queued = match pushed {
                Some(queued) => queued,
                None => {
                    let (id, received_at, booking) = cursor.page.pop_front()?;
                    Queued { id, bundle: None, received_at, refused_by: None, booking }
                }
            };
            if let Some(claim) = self.claim(queued.id, queued.refused_by.clone()) {
                return Some((queued, claim));
            }
        }
    }

    /// Reads the next page of bundles waiting for a route and keeps those that go to `hop`.
    async fn read_page(&self, hop: &Eid, cursor: &mut Cursor) -> Result<(), crate::store::StoreError> {
        let page =
            self.inner.store.by_state(StateKind::WaitingForRoute, None, cursor.after, QUEUE_PAGE).await?;
        cursor.at_end = page.len() < QUEUE_PAGE;
        if let Some(last) = page.last() {
            cursor.after = last.id;
        }
        use routing::Router as _;
        let now = self.inner.clock.now_dtn_ms();
        for meta in page {
            if self.is_local(&meta.destination) {
                continue;
            }
            // Routed by the size it will have on the wire, with this node's Previous Node block.
            // The agent's lock is held for one decision, not for the page: a page of CGR
            // queries would hold every other decision of the node up.
            let size = meta.length.saturating_add(self.inner.forwarding_overhead);
            let facts = BundleFacts { destination: &meta.destination, size, expiry: meta.expires_at, now };
            let (routed, contacts) = {
                let state = self.state();
                (state.next_hop_for(&facts), state.core.reach.contacts.clone())
            };
            let Some((via, decision)) = routed else { continue };
            if via != *hop {
                continue;
            }
            // Booked now, so the next bundle of the page sees the volume left.
            let booking = match (decision, &contacts) {
                (Some(decision), Some(contacts)) => {
                    contacts.book(&decision).map(|booking| HeldBooking::new(contacts, booking))
                }
                _ => None,
            };
            cursor.page.push_back((meta.id, meta.received_at, booking));
        }
        Ok(())
    }
}
