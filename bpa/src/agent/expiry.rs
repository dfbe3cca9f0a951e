//! Expiry (RFC 9171 §5.10) and the node's housekeeping, and removing bundles from the store
//! with every failure logged and counted.

use super::core::report::Status;
use super::counters::Counters;
use super::node::{Agent, AgentError};
use crate::admin::ReasonCode;
use crate::store::{DeleteReason, Store, StoreError, StoreId};

/// Bundles looked at per store query while expiring.
const EXPIRY_PAGE: usize = 256;

impl<S: Store> Agent<S> {
    /// Deletes every bundle whose lifetime has ended (RFC 9171 §5.10), reporting as asked.
    /// Returns how many. It pages through the store by expiry time once: a bundle whose delete
    /// fails is logged, counted and left for the next round, never looked at again in this one.
    pub async fn expire(&self) -> Result<usize, AgentError> {
        let now = self.inner.clock.now_dtn_ms();
        let mut expired = 0;
        let mut after = None;
        loop {
            let page = self.inner.store.next_expiring(after, EXPIRY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.expires_at, last.id));
            let due: Vec<_> = page.into_iter().take_while(|m| m.expires_at <= now).collect();
            let page_done = due.len() < EXPIRY_PAGE;
            for meta in due {
                // Only the header is read: the report needs the primary block and the length.
                let header = self.open_payload(meta.id).await.map(|(header, _)| header);
                if self.remove(meta.id, DeleteReason::Expired).await.is_none() {
                    continue;
                }
                Counters::bump(&self.inner.counters.expired);
                expired += 1;
                if let Some(header) = header {
                    let len = header.payload.data_length;
                    self.report(&header.primary, len, Status::Deleted, ReasonCode::LIFETIME_EXPIRED).await;
                }
            }
            if page_done {
                break;
            }
        }
        // Bundles remembered as delivered or forwarded are forgotten once they expire (a page
        // per round: the housekeeping comes back every second).
        if let Err(error) = self.inner.store.forget_handled(now, 10_000).await {
            Counters::bump(&self.inner.counters.store_errors);
            tracing::error!(%error, "forgetting expired records of handled bundles failed");
        }
        Ok(expired)
    }

    /// A store operation on bundle `id` failed: logged with what was being done, and counted.
    pub(super) fn store_failed(&self, id: StoreId, doing: &str, error: &StoreError) {
        if matches!(error, StoreError::Closed) && self.stopping() {
            // A clean stop closed the store under this work: done again at the next start.
            tracing::info!(store_id = id, "the node stopped before {doing}; it is done at the next start");
            return;
        }
        Counters::bump(&self.inner.counters.store_errors);
        tracing::error!(%error, store_id = id, "the store failed {doing}");
    }

    /// Removes a bundle from the store for `reason`; `None` (logged once with the bundle's
    /// store id, and counted) when the store failed, `None` quietly when it was gone already.
    pub(super) async fn remove(
        &self,
        id: StoreId,
        reason: DeleteReason,
    ) -> Option<crate::store::StoredBundle> {
        match self.inner.store.delete(id, reason.clone()).await {
            Ok(meta) => Some(meta),
            Err(StoreError::NotFound(_)) => None,
            Err(StoreError::Closed) if self.stopping() => {
                tracing::info!(store_id = id, %reason, "the node stopped before a bundle's removal was recorded; it is done at the next start");
                None
            }
            Err(error) => {
                Counters::bump(&self.inner.counters.store_errors);
                tracing::error!(%error, store_id = id, %reason, "a bundle could not be removed from the store; it stays");
                None
            }
        }
    }
}
