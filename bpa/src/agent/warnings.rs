//! Log lines that peers provoke (design §3.8): a refused bundle, a carrier or custody record
//! refused, a record in a neighbour's name from another address. Each goes through one
//! [`RateLimits`] keyed by the kind of event — never by who sent it, so a sender changing its
//! port, address or claimed name cannot make the node write more — at most one line per kind
//! per [`WINDOW`], with the count of those left out; the lines left out are counted
//! (`logs_suppressed` in the metrics).

use std::mem::Discriminant;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::node::{Agent, AgentError};
use crate::bundle::BundleError;
use crate::log::RateLimits;
use crate::store::{Store, StoreError};

/// One line per kind of event per window.
pub(super) const WINDOW: Duration = Duration::from_secs(10);

/// Kinds remembered; there are far fewer (one per error variant), so none ever shares.
const KINDS: usize = 256;

/// What a provoked log line is about: the kind of event and, for a refusal, the kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Provoked {
    /// A received bundle refused, by the kind of reason.
    Refused(ErrorKind),
    /// A BIBE carrier refused as it streamed in.
    CarrierRefused(ErrorKind),
    /// A BIBE PDU holding no valid bundle.
    InvalidPdu,
    /// Custody refused to another custodian (depleted storage, no route ...).
    CustodyRefused,
    /// An administrative record in a neighbour's name from an address that is not its own.
    Impostor,
}

/// An error's variant, and its inner error's variant, without its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ErrorKind {
    agent: AgentKind,
    store: Option<Discriminant<StoreError>>,
    bundle: Option<Discriminant<BundleError>>,
}

impl ErrorKind {
    pub fn of(error: &AgentError) -> ErrorKind {
        match error {
            AgentError::Invalid(bundle) => ErrorKind::of_bundle(bundle),
            AgentError::Store(store) => ErrorKind::of_store(store),
            other => ErrorKind {
                agent: AgentKind::Other(std::mem::discriminant(other)),
                store: None,
                bundle: None,
            },
        }
    }

    pub fn of_bundle(error: &BundleError) -> ErrorKind {
        ErrorKind { agent: AgentKind::Invalid, store: None, bundle: Some(std::mem::discriminant(error)) }
    }

    pub fn of_store(error: &StoreError) -> ErrorKind {
        let bundle = match error {
            StoreError::InvalidBundle(bundle) => Some(std::mem::discriminant(bundle)),
            _ => None,
        };
        ErrorKind { agent: AgentKind::Store, store: Some(std::mem::discriminant(error)), bundle }
    }
}

/// The agent's error variant (the two that wrap others named, so no value is needed to name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AgentKind {
    Invalid,
    Store,
    Other(Discriminant<AgentError>),
}

/// The limiter the agent keeps.
pub(super) type ProvokedLimits = RateLimits<Provoked>;

pub(super) fn limits() -> ProvokedLimits {
    RateLimits::new(WINDOW, KINDS)
}

impl<S: Store> Agent<S> {
    /// Whether a line about `what` may be written now: `Some(n)`, `n` being how many of its
    /// kind were left out since the last; `None` (counted) when this one is left out.
    pub(super) fn provoked(&self, what: Provoked) -> Option<u64> {
        let allowed = self.state().provoked.allow(what, std::time::Instant::now());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_ignore_contents_and_tell_variants_apart() {
        let a = ErrorKind::of_bundle(&BundleError::NotIndefiniteArray { found: 1 });
        let b = ErrorKind::of_bundle(&BundleError::NotIndefiniteArray { found: 2 });
        let c = ErrorKind::of_bundle(&BundleError::MissingBreak { offset: 3 });
        assert_eq!(a, b);
        assert_ne!(a, c);
        let stored =
            ErrorKind::of(&AgentError::Store(StoreError::InvalidBundle(BundleError::MissingBreak {
                offset: 9,
            })));
        assert_ne!(stored, c, "the same rule refused by the store is its own kind");
    }
}
