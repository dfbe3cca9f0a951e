//! The agent's one timer task: it sleeps on the agent's clock until the earliest deadline of
//! the timer table (`timers.rs`) or until a timer is set, fires what is due, and sleeps again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::node::*;
use super::timers::Timer;
use crate::store::Store;

impl<S: Store> Agent<S> {
    /// Tells the timer task the table changed (starting the task on first use).
    pub(super) fn timers_changed(&self) {
        self.inner.timers_changed.notify_one();
        if !self.inner.timer_task.swap(true, Ordering::SeqCst) {
            tokio::spawn(Self::run_timers(Arc::downgrade(&self.inner)));
        }
    }

    /// The timer task: fires what is due, then sleeps on the clock until the earliest deadline
    /// or until a timer is set. It holds the agent only while firing, so an agent dropped
    /// meanwhile is not kept alive (the task then parks for good).
    async fn run_timers(agent: std::sync::Weak<Inner<S>>) {
        loop {
            let Some(inner) = agent.upgrade() else { return };
            let agent = Agent { inner };
            if agent.inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            let now = agent.inner.clock.now_dtn_ms();
            loop {
                let due = {
                    let mut schedule = lock(&agent.inner.schedule);
                    let due = schedule.timers.pop_due(now);
                    schedule.firing = due.is_some();
                    due
                };
                let Some(timer) = due else { break };
                agent.on_timer(timer).await;
            }
            let next = lock(&agent.inner.schedule).timers.poll_timeout();
            let changed = Arc::clone(&agent.inner.timers_changed);
            let sleep = next.map(|at| agent.inner.clock.sleep_until(at));
            drop(agent);
            match sleep {
                Some(sleep) => {
                    tokio::select! {
                        () = sleep => {}
                        () = changed.notified() => {}
                    }
                }
                None => changed.notified().await,
            }
        }
    }

    async fn on_timer(&self, timer: Timer) {
        match timer {
            Timer::Retry(node) => {
                if let Some(neighbour) = read(&self.inner.reach).neighbours.get(&node) {
                    neighbour.queue.rescan();
                }
            }
            Timer::Contacts => self.on_contact_edges().await,
            Timer::CustodyRetransmit => self.custody_deadlines_passed().await,
            Timer::CustodySignals => self.send_signals().await,
            Timer::Housekeeping => {
                if let Err(error) = self.expire().await {
                    tracing::error!(%error, "expiry failed; tried again at the next round");
                }
                let mut schedule = lock(&self.inner.schedule);
                if let Some(period) = schedule.housekeeping {
                    let at = self.inner.clock.now_dtn_ms().saturating_add(millis(period));
                    schedule.timers.set(Timer::Housekeeping, at);
                }
            }
        }
    }

    /// Runs expiry every `period` on the agent's clock, from now on.
    pub fn housekeep_every(&self, period: Duration) {
        let at = self.inner.clock.now_dtn_ms().saturating_add(millis(period));
        let mut schedule = lock(&self.inner.schedule);
        schedule.housekeeping = Some(period);
        schedule.timers.set(Timer::Housekeeping, at);
        drop(schedule);
        self.timers_changed();
    }

    /// Stops the housekeeping [`Agent::housekeep_every`] started.
    pub fn stop_housekeeping(&self) {
        let mut schedule = lock(&self.inner.schedule);
        schedule.housekeeping = None;
        schedule.timers.cancel(&Timer::Housekeeping);
    }
}
