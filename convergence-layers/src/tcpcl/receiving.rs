//! Receiving into the store: small transfers are collected and handed over whole, large ones
//! stream into the agent as their segments arrive; commits run in their own tasks, several at
//! once, and the final XFER_ACK goes out when one is durable (design §3.3).

use std::sync::atomic::Ordering;

use bpa::{BundleSink, IncomingBundle, Refusal};
use bpa::{Reception, SinkError};
use bytes::BytesMut;

use super::driver::{STORE_WRITE_CHUNK, STREAM_THRESHOLD, now};
use super::session_task::SessionTask;
use super::wire::RefuseReason;

/// An incoming transfer as it is received.
pub(super) enum Receiving<A: BundleSink> {
    /// Small so far: collected in memory.
    Collecting(BytesMut),
    /// Large: streaming into the store, `pending` bytes not yet written; `checked` once the
    /// header was looked up among the bundles held.
    Streaming { insert: A::Incoming, pending: Vec<u8>, checked: bool },
    /// Refused: the rest is dropped.
    Dropped,
}

pub(super) struct IncomingTransfer<A: BundleSink> {
    pub(super) transfer_id: u64,
    pub(super) receiving: Receiving<A>,
}

/// A finished commit of a received bundle.
pub(super) struct Committed {
    pub(super) transfer_id: u64,
    pub(super) result: Result<Reception, SinkError>,
}

impl<A: BundleSink> SessionTask<A> {
    pub(super) async fn take_data(
        &mut self,
        transfer_id: u64,
        receiving: Receiving<A>,
        data: &[u8],
    ) -> Receiving<A> {
        match receiving {
            Receiving::Collecting(mut bytes) => {
                bytes.extend_from_slice(data);
                if bytes.len() <= STREAM_THRESHOLD {
                    return Receiving::Collecting(bytes);
                }
                // Larger than announced (or not announced): stream from here on.
                match self.agent().begin_receive().await {
                    Ok(insert) => self.write_to_store(transfer_id, insert, bytes.into(), false).await,
                    Err(error) => {
                        self.refuse(transfer_id, &error);
                        Receiving::Dropped
                    }
                }
            }
            Receiving::Streaming { insert, mut pending, checked } => {
                pending.extend_from_slice(data);
                if pending.len() < STORE_WRITE_CHUNK {
                    return Receiving::Streaming { insert, pending, checked };
                }
                self.write_to_store(transfer_id, insert, pending, checked).await
            }
            Receiving::Dropped => Receiving::Dropped,
        }
    }

    pub(super) async fn flush_to_store(&mut self, transfer_id: u64, receiving: Receiving<A>) -> Receiving<A> {
        match receiving {
            Receiving::Streaming { insert, pending, checked } if !pending.is_empty() => {
                self.write_to_store(transfer_id, insert, pending, checked).await
            }
            other => other,
        }
    }

    /// Writes `pending` into the store. Once the header is in, a bundle this node holds
    /// already is refused with "completed" (§5.2.4): the sender counts it delivered and the
    /// rest is not sent (a sender that lost our final XFER_ACK with its session sends again).
    pub(super) async fn write_to_store(
        &mut self,
        transfer_id: u64,
        mut insert: A::Incoming,
        mut pending: Vec<u8>,
        mut checked: bool,
    ) -> Receiving<A> {
        // The store takes the buffer and gives back an empty one: no copy of the data.
        if let Err(error) = insert.write_owned(&mut pending).await {
            self.refuse(transfer_id, &error);
            return Receiving::Dropped;
        }
        if !checked {
            match insert.already_held().await {
                Ok(None) => {}
                Ok(Some(true)) => {
                    tracing::debug!(
                        peer = self.peer_label(),
                        transfer_id,
                        "incoming bundle already held: refused as completed"
                    );
                    self.session.refuse(transfer_id, RefuseReason::COMPLETED);
                    return Receiving::Dropped;
                }
                // Not held, or the look-up failed (the commit finds a duplicate anyway).
                Ok(Some(false)) | Err(_) => checked = true,
            }
        }
        Receiving::Streaming { insert, pending, checked }
    }

    /// The last segment is in: the bundle is committed in its own task (several at once, so
    /// the store commits them together) and acknowledged when durable.
    pub(super) fn commit(&mut self, transfer_id: u64, receiving: Receiving<A>) {
        let agent = self.agent().clone();
        let commits = self.commits_tx.clone();
        match receiving {
            Receiving::Collecting(bytes) => {
                let bytes = bytes.freeze();
                tokio::spawn(async move {
                    let result = agent.receive(bytes).await;
                    let _ = commits.send(Committed { transfer_id, result });
                });
            }
            Receiving::Streaming { insert, .. } => {
                tokio::spawn(async move {
                    let result = insert.commit().await;
                    let _ = commits.send(Committed { transfer_id, result });
                });
            }
            Receiving::Dropped => return,
        }
        self.commits_in_progress += 1;
    }

    pub(super) fn committed(&mut self, committed: Committed) {
        self.commits_in_progress -= 1;
        match committed.result {
            Ok(_) => {
                self.status.bundles_received.fetch_add(1, Ordering::Relaxed);
                self.session.acknowledge_segment(committed.transfer_id);
            }
            Err(error) => self.refuse(committed.transfer_id, &error),
        }
    }

    pub(super) fn refuse(&mut self, transfer_id: u64, error: &SinkError) {
        let reason = refuse_reason(error);
        if let Some(suppressed) = self.warnings.allow(now()) {
            tracing::info!(
                peer = self.peer_label(), transfer_id, %error, %reason, suppressed, "incoming bundle refused"
            );
        }
        self.session.refuse(transfer_id, reason);
    }
}

/// The XFER_REFUSE reason for a bundle the agent did not take (§5.2.4).
pub(super) fn refuse_reason(error: &SinkError) -> RefuseReason {
    match error.refusal() {
        Refusal::NoResources => RefuseReason::NO_RESOURCES,
        Refusal::Retransmit => RefuseReason::RETRANSMIT,
        Refusal::NotAcceptable | Refusal::TooLarge { .. } | Refusal::Other(_) => RefuseReason::NOT_ACCEPTABLE,
    }
}

#[cfg(test)]
mod tests {
    use bpa::StoreError;
    use bpa::bundle::BundleError;

    use super::*;

    #[test]
    pub(super) fn refusals_name_the_reason_the_sender_acts_on() {
        // §5.2.4: "no resources" tells the sender to try later; "not acceptable" that the
        // bundle itself is the problem.
        let full = StoreError::DepletedStorage {
            needed_bytes: 9,
            bundles: 1,
            max_bundles: 1,
            bytes: 0,
            max_bytes: 8,
        };
        assert_eq!(refuse_reason(&SinkError::store(full)), RefuseReason::NO_RESOURCES);
        assert_eq!(refuse_reason(&SinkError::store(StoreError::Closed)), RefuseReason::NO_RESOURCES);
        let invalid = BundleError::TooLarge { size: 9, limit: 8 };
        assert_eq!(refuse_reason(&SinkError::invalid(invalid.clone())), RefuseReason::NOT_ACCEPTABLE);
        assert_eq!(
            refuse_reason(&SinkError::store(StoreError::InvalidBundle(invalid))),
            RefuseReason::NOT_ACCEPTABLE
        );
    }
}
