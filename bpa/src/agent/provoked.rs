//! The kinds of log lines peers provoke, and their limits: one [`RateLimits`] keyed by the
//! kind of event — never by who sent it — at most one line per kind per [`WINDOW`]
//! (`warnings.rs` writes them).

use std::mem::Discriminant;
use std::time::Duration;

use super::error::AgentError;
use crate::bundle::BundleError;
use crate::log::RateLimits;
use crate::store::StoreError;

/// One line per kind of event per window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// Kinds remembered; there are far fewer (one per error variant), so none ever shares.
const KINDS: usize = 256;

/// What a provoked log line is about: the kind of event and, for a refusal, the kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Provoked {
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
pub(crate) struct ErrorKind {
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
pub(crate) type ProvokedLimits = RateLimits<Provoked>;

pub(crate) fn limits() -> ProvokedLimits {
    RateLimits::new(WINDOW, KINDS)
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
