//! Reassembly of ADUs addressed to this node (RFC 9171 §5.9), from the store and streamed.
//!
//! Each fragment is stored as it arrives, durable and indexed by its ADU (`AwaitingReassembly`)
//! with its offset and length — the ADU's coverage map is those rows. A map of the ranges
//! covered so far is kept in memory for the ADUs being reassembled ([`Coverage`]), so an
//! arrival costs one fragment's metadata (the rows are read once, when an ADU is first seen or
//! was forgotten), not a read of every fragment — that would be quadratic in the number of
//! fragments, and a sender of many small fragments could make it so. Once the fragments cover the
//! whole ADU, the bundle is written once into the store: the head of the offset-0 fragment
//! (RFC 9171 §5.9: its blocks become the bundle's) without the fragment fields, then each
//! fragment's payload bytes in offset order, overlaps and duplicates skipped, streamed from
//! the store through a buffer, the payload CRC computed on the way. The fragments are deleted
//! only once the bundle is durable. Work is linear in the ADU's bytes; memory is one buffer.

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::core::coverage::{Extent, reach};
use super::counters::Counters;
use super::node::Agent;
use crate::bundle::{BundleFlags, BundleHeader, streamed_head};
use crate::store::{
    BundleState, DeleteReason, InsertOutcome, PayloadContent, StateKind, Store, StoreError, StoreId,
    StreamingInsert,
};

/// Fragment rows read per store query.
const PAGE: usize = 1024;

/// Bytes copied at a time from a fragment into the reassembled bundle.
const CHUNK: usize = 64 * 1024;

/// Why an ADU could not be reassembled now.
#[derive(Debug, thiserror::Error)]
enum ReassemblyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bytes {from}..{to} of the ADU are not in any readable fragment")]
    Gap { from: u64, to: u64 },
    #[error("the reassembled bundle is invalid: {0}")]
    Invalid(String),
}

impl<S: Store> Agent<S> {
    /// Reassembles the ADU `adu` if its stored fragments cover it; otherwise nothing happens
    /// (the next fragment's arrival looks again). Then the whole bundle is dispatched.
    ///
    /// Boxed: delivering the whole bundle is where reassembly is called from.
    pub(super) fn reassemble<'a>(&'a self, adu: &'a str) -> super::node::BoxedFuture<'a> {
        Box::pin(self.reassemble_now(adu))
    }

    /// A fragment of `adu` (of `total` bytes) was stored as `id`: its range is added to the
    /// ADU's coverage, and the ADU reassembled once covered.
    pub(super) async fn fragment_arrived(&self, adu: &str, id: StoreId, total: u64) {
        let covered = {
            let mut coverage = self.inner.reassembly.lock().await;
            if coverage.is_tracked(adu) {
                match self.inner.store.get(id).await {
                    Ok(Some(stored)) => {
                        if let Some(fragment) = stored.bundle_id.fragment {
                            coverage.add(adu, fragment.offset, fragment.end());
                        }
                        coverage.covers(adu, total)
                    }
                    Ok(None) => false,
                    Err(error) => {
                        tracing::error!(%error, adu, "cannot read a fragment's metadata");
                        coverage.forget(adu);
                        false
                    }
                }
            } else {
                match self.extents(adu).await {
                    Ok(extents) => {
                        coverage.track(adu, extents.iter().map(|e| (e.start, e.end)));
                        coverage.covers(adu, total)
                    }
                    Err(error) => {
                        tracing::error!(%error, adu, "cannot list the fragments of an ADU");
                        false
                    }
                }
            }
        };
        if covered {
            self.reassemble(adu).await;
        }
    }

    async fn reassemble_now(&self, adu: &str) {
        let mut coverage = self.inner.reassembly.lock().await;
        // Read afresh from the store here; what is kept in memory is rebuilt from it when the
        // next fragment arrives (fragments may have expired since it was made).
        coverage.forget(adu);
        let extents = match self.extents(adu).await {
            Ok(extents) => extents,
            Err(error) => {
                tracing::error!(%error, adu, "cannot list the fragments of an ADU");
                return;
            }
        };
        // The offset-0 fragment gives the ADU's length and the bundle's blocks; only fragments
        // that agree with it on the length count (the key says so too).
        let Some(first) = extents.iter().find(|e| e.start == 0 && e.end > 0).copied() else { return };
        let Some((header, _)) = self.open_payload(first.id).await else { return };
        let Some(total) = header.primary.fragment.map(|f| f.total_adu_length) else { return };
        let extents: Vec<Extent> = extents.into_iter().filter(|e| e.adu_length == total).collect();
        if reach(&extents) < total {
            return;
        }
        let (id, header) = match self.write_reassembled(&header, total, &extents).await {
            Ok(Some(done)) => done,
            Ok(None) => (None, header),
            Err(error) => {
                Counters::bump(&self.inner.counters.store_errors);
                tracing::warn!(%error, adu, "reassembly failed; the fragments stay until they expire");
                return;
            }
        };
        for extent in &extents {
            self.remove(extent.id, DeleteReason::Reassembled).await;
        }
        drop(coverage);
        Counters::bump(&self.inner.counters.reassembled);
        tracing::info!(adu, fragments = extents.len(), length = total, "ADU reassembled");
        if let Some(id) = id {
            self.dispatch_stored(id, &header.primary).await;
        }
    }

    /// The ADU's stored fragments by offset, read a page at a time (metadata only).
    async fn extents(&self, adu: &str) -> Result<Vec<Extent>, StoreError> {
        let mut extents = Vec::new();
        let mut after = 0;
        loop {
            let page =
                self.inner.store.by_state(StateKind::AwaitingReassembly, Some(adu), after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            extents.extend(page.iter().filter_map(|meta| {
                let fragment = meta.bundle_id.fragment?;
                Some(Extent {
                    start: fragment.offset,
                    end: fragment.end(),
                    adu_length: fragment.adu_length,
                    id: meta.id,
                })
            }));
        }
        extents.sort_unstable();
        Ok(extents)
    }

    /// Writes the whole bundle into the store; its store id (`None`: it was there already) and
    /// header. `Ok(None)` if the store already delivered or forwarded it.
    async fn write_reassembled(
        &self,
        first: &BundleHeader,
        total: u64,
        extents: &[Extent],
    ) -> Result<Option<(Option<StoreId>, BundleHeader)>, ReassemblyError> {
        let mut primary = first.primary.clone();
        primary.flags.0 &= !BundleFlags::IS_FRAGMENT;
        primary.fragment = None;
        let (head, mut encoder) = streamed_head(
            &primary,
            &first.extension_blocks,
            first.payload.block_flags,
            first.payload.crc_type,
            total,
        );
        let parse = &self.inner.config.parse;
        let header = BundleHeader::parse(&Bytes::from(head.clone()), parse)
            .map_err(|e| ReassemblyError::Invalid(e.to_string()))?
            .ok_or_else(|| ReassemblyError::Invalid("its header does not parse".into()))?;
        let mut insert = self.inner.store.begin_insert().await?;
        insert.write(&head).await?;
        let mut written = 0u64;
        let mut buffer = vec![0u8; CHUNK];
        for extent in extents {
            if extent.end <= written {
                continue; // a duplicate, or inside what is written
            }
            if extent.start > written {
                return Err(ReassemblyError::Gap { from: written, to: extent.start });
            }
            let Some((fragment, content)) = self.open_payload(extent.id).await else {
                continue; // gone or damaged (logged): another fragment may cover its bytes
            };
            // A fragment that does not fit (its row said otherwise than its bytes do) is passed
            // over, not allowed to abandon the ADU: another may cover its bytes, else the gap
            // is reported below.
            let misfit = match fragment.primary.fragment {
                Some(info) if info.total_adu_length != total => {
                    Some(format!("its ADU is {} bytes, the first fragment's {total}", info.total_adu_length))
                }
                None => Some("it is not a fragment".into()),
                Some(_)
                    if fragment.primary.source != first.primary.source
                        || fragment.primary.creation != first.primary.creation =>
                {
                    Some("another source or creation timestamp".into())
                }
                Some(_) => None,
            };
            if let Some(why) = misfit {
                tracing::warn!(store_id = extent.id, %why, "a fragment does not fit its ADU: passed over; it waits to expire");
                continue;
            }
            // Bytes before `written` are held already; the rest is copied.
            let skip = written - extent.start;
            let mut append = |bytes: &[u8]| -> Result<(), ReassemblyError> {
                encoder.update(bytes).map_err(|e| ReassemblyError::Invalid(e.to_string()))
            };
            match content {
                PayloadContent::Memory(bytes) => {
                    let new = bytes.get(skip as usize..).unwrap_or_default();
                    append(new)?;
                    insert.write(new).await?;
                }
                PayloadContent::File(mut reader) => {
                    // Read to the end, so the store's check of the file's bytes runs.
                    let mut at = extent.start;
                    loop {
                        let n = reader.read(&mut buffer).await.map_err(|source| {
                            ReassemblyError::Store(StoreError::Io {
                                action: "reading a stored fragment",
                                path: format!("store id {}", extent.id).into(),
                                source,
                            })
                        })?;
                        if n == 0 {
                            break;
                        }
                        let from = written.saturating_sub(at).min(n as u64) as usize;
                        let new = &buffer[from..n];
                        append(new)?;
                        insert.write(new).await?;
                        at += n as u64;
                    }
                }
            }
            written = extent.end;
        }
        if written < total {
            return Err(ReassemblyError::Gap { from: written, to: total });
        }
        let tail = encoder.finish().map_err(|e| ReassemblyError::Invalid(e.to_string()))?;
        insert.write(&tail).await?;
        Ok(match insert.commit(BundleState::WaitingForRoute).await? {
            InsertOutcome::Stored(id) => Some((Some(id), header)),
            InsertOutcome::Duplicate(_) => Some((None, header)),
            InsertOutcome::AlreadyHandled => None,
        })
    }
}
