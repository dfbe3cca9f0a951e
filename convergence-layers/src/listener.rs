//! Accepting TCP connections for the stream layers (TCPCLv4, TCPCLv3, STCP, MTCP), bounded so
//! that no peer — nor a crowd of them — can lock the others out (design §3.10):
//!
//! - at most [`ConnectionLimits::max_connections`] accepted connections are open at once per
//!   listener, and at most [`ConnectionLimits::max_per_address`] from one IP address;
//! - when either bound is reached, a new connection does not wait or bounce: the connection
//!   that has gone longest without moving a bundle (among those from the same address, when
//!   that address's bound is the one reached) is *shed* — told to end, its slot given to the
//!   newcomer. Only when every candidate is in the middle of a bundle is the new connection
//!   closed instead (warned at most once a minute);
//! - each layer gives every connection a deadline for its first bytes (contact header,
//!   SESS_INIT, first frame) and an idle limit, whatever its keepalive (their configurations'
//!   `negotiation_timeout` / `header_timeout` / `first_frame_timeout` and `idle_timeout`).
//!
//! A connection's driver tells its [`Activity`] when a bundle starts and ends, and ends the
//! connection when [`Activity::shed`] fires. Accept errors (out of descriptors) wait rather than
//! spin. The listener stops when `shutdown` changes.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::lock;

/// How many connections a listener keeps and for how long (per listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Accepted connections open at once.
    pub max_connections: usize,
    /// Of those, from one IP address.
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits { max_connections: 256, max_per_address: 32 }
    }
}

/// The idle limit every stream layer applies by default: a connection on which nothing arrives
/// for this long is closed, whatever its keepalive (a keepalive of 0 means no keepalives, not
/// no limit).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a connection's driver reports to the listener, and how the listener asks it to end.
#[derive(Debug)]
pub struct Activity {
    /// When a bundle last started or ended on the connection (or it was accepted), in ms since
    /// the listener's start.
    last_bundle: AtomicU64,
    /// Bundles in progress on the connection (either way).
    in_progress: AtomicUsize,
    epoch: Instant,
    shed: watch::Sender<bool>,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let (shed, _) = watch::channel(false);
        let activity =
            Activity { last_bundle: AtomicU64::new(0), in_progress: AtomicUsize::new(0), epoch, shed };
        activity.touch();
        activity
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_bundle.store(ms, Ordering::Relaxed);
    }

    /// A bundle started on the connection (either way).
    pub fn bundle_started(&self) {
        self.in_progress.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// A bundle started earlier ended (moved, refused or abandoned).
    pub fn bundle_ended(&self) {
        let _ = self.in_progress.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.touch();
    }

    /// Sets how many bundles are in progress (for a driver that counts them itself); a change
    /// counts as activity.
    pub fn set_in_progress(&self, n: usize) {
        if self.in_progress.swap(n, Ordering::Relaxed) != n {
            self.touch();
        }
    }

    /// A bundle moved (for a driver that reports completions only).
    pub fn bundle_moved(&self) {
        self.touch();
    }

    /// Resolves once the listener sheds the connection: the driver ends it.
    pub async fn shed(&self) {
        let mut shed = self.shed.subscribe();
        let _ = shed.wait_for(|shed| *shed).await;
    }

    /// Whether the connection was shed.
    pub fn is_shed(&self) -> bool {
        *self.shed.borrow()
    }

    fn idle_since(&self) -> Option<u64> {
        (self.in_progress.load(Ordering::Relaxed) == 0).then(|| self.last_bundle.load(Ordering::Relaxed))
    }
}

/// Resolves when `activity` (if any) is shed; never without one (a dialled connection).
pub async fn shed(activity: Option<&Activity>) {
    match activity {
        Some(activity) => activity.shed().await,
        None => std::future::pending().await,
    }
}

/// The dial loops of a layer, so that hearing from a peer ends the wait before dialling it
/// again: a node restarted and dialling in (or connecting for another purpose) is dialled back
/// at once, not after the rest of a backoff that may have grown to a minute.
#[derive(Debug, Default, Clone)]
pub struct Redials {
    dialers: Arc<Mutex<Vec<std::sync::Weak<Dialer>>>>,
}

/// One dial loop's side of [`Redials`]: where its peer was last resolved to, and its wake-up.
#[derive(Debug, Default)]
pub struct Dialer {
    ips: Mutex<Vec<IpAddr>>,
    wake: tokio::sync::Notify,
}

/// Addresses a peer's name resolves to, kept per dial loop at most.
const DIALER_IPS: usize = 16;

impl Redials {
    /// A dial loop's handle; the loop ends, the handle goes.
    pub fn dialer(&self) -> Arc<Dialer> {
        let dialer = Arc::new(Dialer::default());
        let mut dialers = lock(&self.dialers);
        dialers.retain(|d| d.strong_count() > 0);
        dialers.push(Arc::downgrade(&dialer));
        dialer
    }

    /// Something came from `ip`: the dial loops whose peer is there try again now.
    pub fn heard_from(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let dialers: Vec<Arc<Dialer>> =
            lock(&self.dialers).iter().filter_map(std::sync::Weak::upgrade).collect();
        for dialer in dialers {
            if lock(&dialer.ips).contains(&ip) {
                dialer.wake.notify_one();
            }
        }
    }
}

impl Dialer {
    /// Notes where `address` (`host:port`) resolves to now.
    pub async fn resolve(&self, address: &str) {
        if let Ok(found) = tokio::net::lookup_host(address).await {
            let ips: Vec<IpAddr> = found.map(|a| a.ip().to_canonical()).take(DIALER_IPS).collect();
            *lock(&self.ips) = ips;
        }
    }

    /// Waits `duration`, or less if the peer is heard from meanwhile.
    pub async fn backoff(&self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.wake.notified() => {}
        }
    }
}

/// The connections a listener holds.
#[derive(Debug)]
struct Table {
    limits: ConnectionLimits,
    epoch: Instant,
    next: u64,
    open: HashMap<u64, (IpAddr, Arc<Activity>)>,
}

/// What to do with a new connection.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Take it (its slot number).
    Take(u64),
    /// Take it, and the connection in slot `.1` was shed for it.
    Shed(u64, u64),
    /// Every candidate is busy: close the new one.
    Full,
}

impl Table {
    fn new(limits: ConnectionLimits) -> Table {
        Table { limits, epoch: crate::clock::now(), next: 0, open: HashMap::new() }
    }

    /// Admits a connection from `ip`, shedding the idlest candidate when a bound is reached.
    fn admit(&mut self, ip: IpAddr) -> (Admission, Option<Arc<Activity>>) {
        let ip = ip.to_canonical();
        let from_ip = self.open.values().filter(|(a, _)| *a == ip).count();
        let victim = if from_ip >= self.limits.max_per_address.max(1) {
            Some(self.idlest(Some(ip)))
        } else if self.open.len() >= self.limits.max_connections.max(1) {
            Some(self.idlest(None))
        } else {
            None
        };
        let shed = match victim {
            None => None,
            Some(None) => return (Admission::Full, None),
            Some(Some(slot)) => {
                if let Some((_, activity)) = self.open.remove(&slot) {
                    activity.shed.send_replace(true);
                }
                Some(slot)
            }
        };
        let slot = self.next;
        self.next += 1;
        let activity = Arc::new(Activity::new(self.epoch));
        self.open.insert(slot, (ip, Arc::clone(&activity)));
        let admission = match shed {
            Some(victim) => Admission::Shed(slot, victim),
            None => Admission::Take(slot),
        };
        (admission, Some(activity))
    }

    /// The open connection (from `ip`, if given) that has gone longest without a bundle, among
    /// those with none in progress.
    fn idlest(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.open
            .iter()
            .filter(|(_, (a, _))| ip.is_none_or(|ip| *a == ip))
            .filter_map(|(slot, (_, activity))| Some((activity.idle_since()?, *slot)))
            .min()
            .map(|(_, slot)| slot)
    }

    fn close(&mut self, slot: u64) {
        self.open.remove(&slot);
    }
}

/// Runs `handle` for every connection `listener` accepts, within `limits`. A peer that dials
/// in is dialled back at once if a dial to it waits out a backoff (`redials`).
pub(crate) fn accept_bounded<F, Fut>(
    listener: TcpListener,
    layer: &'static str,
    limits: ConnectionLimits,
    redials: Redials,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<Activity>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let table = Arc::new(Mutex::new(Table::new(limits)));
    let mut refusals = bpa::log::RateLimit::new(Duration::from_secs(60));
    let mut sheddings = bpa::log::RateLimit::new(Duration::from_secs(60));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        redials.heard_from(peer.ip());
                        let (admission, activity) = lock(&table).admit(peer.ip());
                        let (slot, activity) = match (admission, activity) {
                            (Admission::Take(slot), Some(activity)) => (slot, activity),
                            (Admission::Shed(slot, _), Some(activity)) => {
                                if let Some(suppressed) = sheddings.allow(crate::clock::now()) {
                                    tracing::warn!(layer, %peer, earlier_not_logged = suppressed, max = limits.max_connections, max_per_address = limits.max_per_address, "too many connections: the one idle longest was shed for a new one");
                                }
                                (slot, activity)
                            }
                            _ => {
                                if let Some(suppressed) = refusals.allow(crate::clock::now()) {
                                    tracing::warn!(layer, %peer, earlier_not_logged = suppressed, max = limits.max_connections, max_per_address = limits.max_per_address, "too many connections, each moving a bundle: a new one was closed");
                                }
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        let connection = handle(stream, peer, activity);
                        let table = Arc::clone(&table);
                        tokio::spawn(async move {
                            connection.await;
                            lock(&table).close(slot);
                        });
                    }
                    Err(error) => {
                        tracing::warn!(layer, %error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits { max_connections: max, max_per_address: per_address }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_full_table_sheds_the_connection_idle_longest_for_a_new_one() {
        let mut table = Table::new(limits(3, 3));
        let mut activities = Vec::new();
        for i in 0..3 {
            let (admission, activity) = table.admit(ip(i));
            assert_eq!(admission, Admission::Take(u64::from(i)));
            activities.push(activity.expect("activity"));
            std::thread::sleep(Duration::from_millis(5));
        }
        // The first moves a bundle now; the second is the idlest.
        activities[0].bundle_started();
        activities[0].bundle_ended();
        let (admission, _) = table.admit(ip(9));
        assert_eq!(admission, Admission::Shed(3, 1));
        assert!(activities[1].is_shed() && !activities[0].is_shed() && !activities[2].is_shed());
        assert_eq!(table.open.len(), 3);
    }

    #[test]
    fn one_address_cannot_take_every_slot_and_sheds_only_its_own() {
        let mut table = Table::new(limits(8, 2));
        let (_, honest) = table.admit(ip(1));
        for _ in 0..100 {
            let (admission, _) = table.admit(ip(66));
            assert_ne!(admission, Admission::Full);
        }
        assert_eq!(table.open.values().filter(|(a, _)| *a == ip(66)).count(), 2);
        assert!(!honest.expect("activity").is_shed(), "another address's connection is never shed for it");
        // IPv4 and its IPv6-mapped form are one address.
        let mapped: IpAddr = "::ffff:10.0.0.66".parse().expect("ip");
        table.admit(mapped);
        assert_eq!(table.open.values().filter(|(a, _)| *a == ip(66)).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dialler_waits_out_its_backoff_unless_its_peer_is_heard_from() {
        let redials = Redials::default();
        let dialer = redials.dialer();
        dialer.resolve("127.0.0.7:4556").await;
        let start = tokio::time::Instant::now();
        dialer.backoff(Duration::from_secs(60)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(60), "nobody heard from: the whole wait");
        let waiting = {
            let dialer = Arc::clone(&dialer);
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                dialer.backoff(Duration::from_secs(60)).await;
                start.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        redials.heard_from("127.0.0.8".parse().expect("ip"));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "another address does not wake it");
        redials.heard_from("::ffff:127.0.0.7".parse().expect("ip"));
        assert_eq!(waiting.await.expect("task"), Duration::from_secs(10), "its peer's address does");
        drop(dialer);
        redials.heard_from("127.0.0.7".parse().expect("ip"));
        assert!(redials.dialers.lock().expect("lock").iter().all(|d| d.strong_count() == 0));
    }

    #[test]
    fn connections_moving_a_bundle_are_never_shed() {
        let mut table = Table::new(limits(2, 2));
        let (_, a) = table.admit(ip(1));
        let (_, b) = table.admit(ip(2));
        let (a, b) = (a.expect("a"), b.expect("b"));
        a.bundle_started();
        b.set_in_progress(1);
        assert_eq!(table.admit(ip(3)).0, Admission::Full);
        assert!(!a.is_shed() && !b.is_shed());
        b.set_in_progress(0);
        assert_eq!(table.admit(ip(3)).0, Admission::Shed(2, 1));
        assert!(b.is_shed());
    }
}
