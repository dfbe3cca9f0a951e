//! The agent's one timer task: it sleeps on the agent's clock until the earliest deadline of
//! the timer table (`timers.rs`) or until a timer is set, fires what is due, and sleeps again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::core::Timer;
use super::node::*;
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
                let due = agent.state().core.take_due(now);
                let Some(timer) = due else { break };
                agent.on_timer(timer).await;
            }
            let next = agent.state().core.poll_timeout();
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
                if let Some(neighbour) = self.state().link(&node) {
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
                let now = self.inner.clock.now_dtn_ms();
                self.state().core.housekept(now);
            }
        }
    }

    /// Runs expiry every `period` on the agent's clock, from now on.
    pub fn housekeep_every(&self, period: Duration) {
        let now = self.inner.clock.now_dtn_ms();
        self.state().core.housekeep_every(period, now);
        self.timers_changed();
    }

    /// Stops the housekeeping [`Agent::housekeep_every`] started.
    pub fn stop_housekeeping(&self) {
        self.state().core.stop_housekeeping();
    }
}
