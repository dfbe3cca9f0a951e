//! Applications as the agent holds them: what an in-process application receives
//! ([`Subscription`] of [`Delivery`]s), what one that reads the store itself is woken by
//! ([`Watcher`]), and the agent's side of each connection ([`Connection`]) that a new arrival
//! wakes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::bundle::{Bundle, Eid};
use crate::store::StoreId;

/// A bundle handed to a local application; it stays stored until [`Agent::acknowledge`](super::Agent::acknowledge).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where the store keeps it: acknowledging names this.
    pub id: StoreId,
    /// The bundle.
    pub bundle: Bundle,
}

/// An application's connection to one endpoint: the bundles waiting for it, then every new one,
/// read from the store by a task of its own a few at a time ([`SUBSCRIPTION_WINDOW`]), so an
/// application that reads slowly holds a window of bundles in memory, not everything waiting.
#[derive(Debug)]
pub struct Subscription {
    pub(super) endpoint: Eid,
    pub(super) receiver: mpsc::Receiver<Delivery>,
}

/// Bundles read ahead for an in-process application.
pub const SUBSCRIPTION_WINDOW: usize = 16;

impl Subscription {
    /// The endpoint the application registered.
    pub fn endpoint(&self) -> &Eid {
        &self.endpoint
    }

    /// The next bundle for the endpoint, waiting for one; `None` once the agent is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.receiver.recv().await
    }

    /// The next bundle if one is there now.
    pub fn try_recv(&mut self) -> Result<Delivery, mpsc::error::TryRecvError> {
        self.receiver.try_recv()
    }

    /// Bundles read ahead for the application and not yet taken (at most
    /// [`SUBSCRIPTION_WINDOW`]).
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether nothing read ahead waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

/// A connected application as the agent sees it: it learns that a bundle arrived, and reads
/// it from the store.
#[derive(Debug, Clone)]
pub(crate) enum Connection {
    /// An in-process application ([`Agent::register`](super::Agent::register)): its reading task is woken.
    Feed { wake: Arc<FeedWake>, deliveries: mpsc::Sender<Delivery> },
    /// An application that reads bundles from the store itself ([`Agent::watch`](super::Agent::watch), the local
    /// API). A wake-up only: one is kept if several arrive before it is taken.
    Wake(mpsc::Sender<StoreId>),
}

/// Wakes an application's reading task, which says when it has nothing to read.
#[derive(Debug, Default)]
pub(crate) struct FeedWake {
    pub notify: Notify,
    /// Wake-ups so far: a read that began before the last of them may have missed its bundle.
    pub wakes: AtomicU64,
    /// The task found nothing waiting, and no wake-up came since its read began: it parks.
    pub idle: AtomicBool,
}

impl FeedWake {
    /// A bundle was recorded as waiting for the application: read again. Counted and cleared
    /// after the record, while the task marks `idle` and then checks the count it saw before
    /// its read: `idle` is never left set with a bundle unread, and no read is made twice.
    pub fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.idle.store(false, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// The read that began after `seen` wake-ups found nothing: idle, unless one came since
    /// (then read again). Answers whether to park.
    pub fn park(&self, seen: u64) -> bool {
        self.idle.store(true, Ordering::SeqCst);
        if self.wakes.load(Ordering::SeqCst) != seen {
            self.idle.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub(super) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst)
    }
}

impl Connection {
    /// Whether nothing waits to be handed to this application by the agent: a reader parked
    /// with nothing unread, a closed one, or one that reads the store itself.
    pub(super) fn is_idle(&self) -> bool {
        match self {
            Connection::Feed { wake, deliveries } => wake.is_idle() || deliveries.is_closed(),
            Connection::Wake(_) => true,
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        match self {
            Connection::Feed { deliveries, .. } => deliveries.is_closed(),
            Connection::Wake(tx) => tx.is_closed(),
        }
    }
}

/// A wake-up for an application that reads its bundles from the store ([`Agent::watch`](super::Agent::watch)).
#[derive(Debug)]
pub struct Watcher {
    pub(super) endpoint: Eid,
    pub(super) receiver: mpsc::Receiver<StoreId>,
}

impl Watcher {
    /// The endpoint watched.
    pub fn endpoint(&self) -> &Eid {
        &self.endpoint
    }

    /// Waits until a bundle for the endpoint arrives; the store id of one that arrived since
    /// the last call, or `None` once the agent is gone.
    pub async fn arrived(&mut self) -> Option<StoreId> {
        self.receiver.recv().await
    }
}
