//! What the agent holds under its one lock: the sans-IO [`Core`] that decides, and beside it
//! the handles through which the agent carries the decisions out — each neighbour's layer and
//! queue, the applications' channels, the link manager's event channel — and the rate limits
//! of the log lines peers provoke. The lock is taken for a decision and let go before any
//! `.await` (a `std::sync::MutexGuard` cannot live across one in a task: it is not `Send`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::applications::Connection;
use super::config::AgentConfig;
use super::core::{BundleFacts, ContactEvent, Core, CoreConfig};
use super::provoked::ProvokedLimits;
use super::queue::NeighbourQueue;
use crate::bundle::Eid;
use crate::cla::ConvergenceLayer;
use crate::log::RateLimits;

/// A directly connected neighbour.
#[derive(Debug, Clone)]
pub(crate) struct Neighbour {
    pub cla: Arc<dyn ConvergenceLayer>,
    /// What waits for the neighbour: fed from the store, one task ([`super::queue`]).
    pub queue: Arc<NeighbourQueue>,
    /// Send slots: at most `max_in_flight_per_neighbour` bundles are being handed over at once.
    pub slots: Arc<Semaphore>,
    /// Which coming-up of the neighbour this is (the core's number for the link).
    pub link: u64,
    /// The largest bundle the neighbour said it takes (a refusal as too large); `u64::MAX`
    /// until it says.
    pub learned_max: Arc<AtomicU64>,
}

/// Senders of custody signals whose unknown transmissions are logged each in a window of their
/// own; the rest share one.
pub(super) const WARNED_PEERS: usize = 256;

/// The core and the driver's handles.
#[derive(Debug)]
pub(super) struct State {
    /// The decisions' state.
    pub core: Core,
    /// How each neighbour up in the core is reached: exactly the core's neighbours.
    pub links: HashMap<Eid, Neighbour>,
    /// Connected applications by endpoint: each gets every new bundle for it.
    pub applications: HashMap<Eid, Vec<Connection>>,
    /// Where contact starts and ends go ([`super::Agent::contact_events`]).
    pub contact_events: Option<mpsc::Sender<ContactEvent>>,
    /// Signals naming unknown transmissions are logged once per window per sender (at most
    /// [`WARNED_PEERS`] senders remembered, the rest sharing one window).
    pub custody_warnings: RateLimits<Eid>,
    /// Log lines peers provoke, one per kind per window ([`super::warnings`]).
    pub provoked: ProvokedLimits,
}

impl State {
    pub fn new(config: &AgentConfig) -> State {
        let core = Core::new(CoreConfig {
            retry_min: config.forward_retry_min,
            retry_max: config.forward_retry_max,
        });
        State {
            core,
            links: HashMap::new(),
            applications: HashMap::new(),
            contact_events: None,
            custody_warnings: RateLimits::new(Duration::from_secs(10), WARNED_PEERS),
            provoked: super::provoked::limits(),
        }
    }

    /// `node` is up through `neighbour`; answers the link it replaced.
    pub fn neighbour_up(
        &mut self,
        node: Eid,
        make: impl FnOnce(u64) -> Neighbour,
    ) -> (Neighbour, Option<Neighbour>) {
        let (link, _) = self.core.neighbour_up(node.clone());
        let neighbour = make(link);
        let replaced = self.links.insert(node, neighbour.clone());
        (neighbour, replaced)
    }

    /// `node` is down; answers how it was reached.
    pub fn neighbour_down(&mut self, node: &Eid) -> Option<Neighbour> {
        self.core.neighbour_down(node);
        self.links.remove(node)
    }

    /// How `node` is reached, if it is up.
    pub fn link(&self, node: &Eid) -> Option<&Neighbour> {
        self.links.get(node)
    }

    /// The neighbour a bundle for `destination` goes to now, passing over `except`.
    pub fn next_hop(&self, destination: &Eid, except: Option<&Eid>) -> Option<(Eid, Neighbour)> {
        let via = self.core.reach.next_hop(destination, except)?;
        let neighbour = self.links.get(&via)?.clone();
        Some((via, neighbour))
    }

    /// As [`State::next_hop`], knowing the bundle's size and times (the contact plan's
    /// decision comes with it).
    pub fn next_hop_for(&self, facts: &BundleFacts<'_>) -> Option<(Eid, Option<routing::Decision<Eid>>)> {
        self.core.reach.next_hop_for(facts).filter(|(via, _)| self.links.contains_key(via))
    }

    /// Every neighbour's queue reads the store again from its first waiting bundle.
    pub fn rescan_all(&self) {
        for neighbour in self.links.values() {
            neighbour.queue.rescan();
        }
    }
}

/// The agent's one lock over its [`State`].
#[derive(Debug)]
pub(super) struct Guarded(Mutex<State>);

impl Guarded {
    pub fn new(state: State) -> Guarded {
        Guarded(Mutex::new(state))
    }

    /// The state, for one decision. A panic in another task while it held the lock does not
    /// stop the agent: the state is taken on as that task left it.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.0)
    }
}
