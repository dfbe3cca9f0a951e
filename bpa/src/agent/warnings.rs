//! Log lines that peers provoke (design §3.8): a refused bundle, a carrier or custody record
//! refused, a record in a neighbour's name from another address. Each goes through one
//! [`crate::log::RateLimits`] keyed by the kind of event — never by who sent it, so a sender changing its
//! port, address or claimed name cannot make the node write more — at most one line per kind
//! per [`super::provoked::WINDOW`], with the count of those left out; the lines left out are counted
//! (`logs_suppressed` in the metrics).

use std::sync::atomic::Ordering;

use super::node::{Agent, AgentError};
use super::provoked::{ErrorKind, Provoked};
use crate::bundle::BundleError;
use crate::store::{Store, StoreError};

impl<S: Store> Agent<S> {
    /// Whether a line about `what` may be written now: `Some(n)`, `n` being how many of its
    /// kind were left out since the last; `None` (counted) when this one is left out.
    pub(super) fn provoked(&self, what: Provoked) -> Option<u64> {
        let allowed = self.state().provoked.allow(what, crate::time::monotonic_now());
        if allowed.is_none() {
            self.inner.counters.logs_suppressed.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Counts a received bundle refused for `error` and logs it (rate-limited by kind).
    pub(super) fn log_refusal(&self, error: &AgentError) {
        self.log_refused(ErrorKind::of(error), error);
    }

    /// As [`Agent::log_refusal`], for the store's refusal.
    pub(super) fn log_store_refusal(&self, error: &StoreError) {
        self.log_refused(ErrorKind::of_store(error), error);
    }

    fn log_refused(&self, kind: ErrorKind, error: &dyn std::fmt::Display) {
        super::counters::Counters::bump(&self.inner.counters.refused);
        if let Some(suppressed) = self.provoked(Provoked::Refused(kind)) {
            tracing::info!(
                error = %crate::log::Escaped(error),
                earlier_of_this_kind_not_logged = suppressed,
                "a received bundle was refused"
            );
        }
    }

    /// Counts a BIBE carrier refused as it streamed in, logs it (rate-limited by kind), and
    /// answers the error the layer is given.
    pub(super) fn carrier_refused(&self, error: BundleError) -> AgentError {
        super::counters::Counters::bump(&self.inner.counters.refused);
        if let Some(suppressed) = self.provoked(Provoked::CarrierRefused(ErrorKind::of_bundle(&error))) {
            tracing::info!(
                error = %crate::log::Escaped(&error),
                earlier_of_this_kind_not_logged = suppressed,
                "a received BIBE carrier was refused"
            );
        }
        AgentError::Invalid(error)
    }
}
