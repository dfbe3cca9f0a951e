//! Incoming transfers (RFC 9174 §5.2): segments in order, their data handed out as it is
//! decoded, acknowledgements once the driver says the bundle is durable, refusals.

use super::*;

#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) id: u64,
    pub(super) received: u64,
    pub(super) total: Option<u64>,
    /// Refused by this side: later segments are refused again and dropped (§5.2.4).
    pub(super) refused: Option<RefuseReason>,
    /// The END segment has been received.
    pub(super) finished: bool,
}

/// The segment being decoded: whether its data goes to the agent.
#[derive(Debug, Clone, Copy)]
pub(super) struct CurrentSegment {
    pub(super) id: u64,
    pub(super) flags: u8,
    pub(super) deliver: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingAck {
    pub(super) id: u64,
    pub(super) flags: u8,
    pub(super) cumulative: u64,
}

impl Session {
    pub(super) fn remember_finished(&mut self, id: u64) {
        if self.recently_finished.len() == RECENT_IDS {
            self.recently_finished.pop_front();
        }
        self.recently_finished.push_back(id);
    }

    pub(super) fn on_segment_header(&mut self, header: SegmentHeader) {
        let id = header.transfer_id;
        let discard = CurrentSegment { id, flags: header.flags, deliver: false };
        if header.data_length > self.config.segment_mru {
            // A peer that ignores the MRU it was given cannot be trusted with our buffers: the
            // session ends (resource exhaustion) and the segment's data is not taken.
            let error =
                SessionError::SegmentOverMru { length: header.data_length, mru: self.config.segment_mru };
            self.segment = Some(discard);
            self.terminate_with(SessTermReason::RESOURCE_EXHAUSTION, Some(error));
            return;
        }
        if header.is_start() {
            if self.ending.is_some() {
                // §6.1: no new incoming transfer while ending.
                self.send(Message::XferRefuse { reason: RefuseReason::SESSION_TERMINATING, transfer_id: id });
                self.segment = Some(discard);
                return;
            }
            if let Some(previous) = self.incoming.take()
                && !previous.finished
                && previous.refused.is_none()
            {
                self.pending_acks.retain(|a| a.id != previous.id);
                self.events.push_back(Event::IncomingAborted {
                    transfer_id: previous.id,
                    reason: format!("the peer started transfer {id} before finishing it"),
                });
            }
            let total = match self.transfer_extensions(header.extensions.clone()) {
                Ok(total) => total,
                Err(reason) => {
                    self.refuse_new(id, reason);
                    return;
                }
            };
            if total.is_some_and(|t| t > self.config.transfer_mru) {
                self.refuse_new(id, RefuseReason::NOT_ACCEPTABLE);
                return;
            }
            self.incoming = Some(Incoming { id, received: 0, total, refused: None, finished: false });
            self.events.push_back(Event::IncomingStarted { transfer_id: id, total_length: total });
        }
        let transfer_mru = self.config.transfer_mru;
        let Some(incoming) = self.incoming.as_mut().filter(|i| i.id == id && !i.finished) else {
            // A continuation of no transfer in progress.
            self.send(Message::MsgReject {
                reason: RejectReason::UNEXPECTED,
                rejected_type: message_type::XFER_SEGMENT,
            });
            self.segment = Some(discard);
            return;
        };
        if let Some(reason) = incoming.refused {
            // §5.2.4: segments that crossed the refusal are refused too.
            self.send(Message::XferRefuse { reason, transfer_id: id });
            self.segment = Some(discard);
            return;
        }
        let after = incoming.received.saturating_add(header.data_length);
        let limit = incoming.total.unwrap_or(transfer_mru).min(transfer_mru);
        if after > limit {
            // More than announced (§5.2.5.1) or than this side accepts.
            self.refuse(id, RefuseReason::NOT_ACCEPTABLE);
            self.segment = Some(discard);
            return;
        }
        self.segment = Some(CurrentSegment { id, flags: header.flags, deliver: true });
    }

    /// Refuses a transfer that had not started.
    pub(super) fn refuse_new(&mut self, id: u64, reason: RefuseReason) {
        self.send(Message::XferRefuse { reason, transfer_id: id });
        self.incoming =
            Some(Incoming { id, received: 0, total: None, refused: Some(reason), finished: false });
        self.segment = Some(CurrentSegment { id, flags: 0, deliver: false });
    }

    /// The Transfer Length, if announced; a refusal reason for an unusable extension list.
    pub(super) fn transfer_extensions(&self, list: Bytes) -> Result<Option<u64>, RefuseReason> {
        let items = ExtensionItem::decode_list(list).map_err(|_| RefuseReason::EXTENSION_FAILURE)?;
        let mut total = None;
        for item in items {
            match item.item_type {
                TRANSFER_LENGTH_EXTENSION => {
                    let value: [u8; 8] =
                        item.value.as_ref().try_into().map_err(|_| RefuseReason::EXTENSION_FAILURE)?;
                    if total.replace(u64::from_be_bytes(value)).is_some() {
                        // §5.2.5.1: at most one Transfer Length item.
                        return Err(RefuseReason::EXTENSION_FAILURE);
                    }
                }
                _ if item.is_critical() => return Err(RefuseReason::EXTENSION_FAILURE),
                _ => {}
            }
        }
        Ok(total)
    }

    pub(super) fn on_segment_end(&mut self) {
        let Some(segment) = self.segment.take() else { return };
        if !segment.deliver {
            return;
        }
        let Some(incoming) = self.incoming.as_mut() else { return };
        let end = segment.flags & segment_flags::END != 0;
        if end && incoming.total.is_some_and(|t| t != incoming.received) {
            // §5.2.5.1: the data differs from the announced Total Length.
            let (announced, received) = (incoming.total.unwrap_or(0), incoming.received);
            self.refuse(segment.id, RefuseReason::NOT_ACCEPTABLE);
            self.events.push_back(Event::IncomingAborted {
                transfer_id: segment.id,
                reason: format!(
                    "{received} bytes came but the Transfer Length extension announced {announced}"
                ),
            });
            return;
        }
        if end {
            incoming.finished = true;
        }
        self.pending_acks.push_back(PendingAck {
            id: segment.id,
            flags: segment.flags,
            cumulative: incoming.received,
        });
        self.events.push_back(Event::IncomingSegmentEnd { transfer_id: segment.id, end });
    }

    /// The agent has processed the oldest complete segment of `transfer_id` (for the END
    /// segment: the bundle is durable): its XFER_ACK goes out (§5.2.3).
    pub fn acknowledge_segment(&mut self, transfer_id: u64) {
        if let Some(index) = self.pending_acks.iter().position(|a| a.id == transfer_id) {
            let Some(ack) = self.pending_acks.remove(index) else { return };
            self.send(Message::XferAck { flags: ack.flags, transfer_id: ack.id, length: ack.cumulative });
            self.maybe_finish_ending();
        }
    }

    /// The agent does not want the incoming transfer (store full → "no resources", a bundle it
    /// has → "completed", an invalid one → "not acceptable"). Its later segments are refused.
    pub fn refuse(&mut self, transfer_id: u64, reason: RefuseReason) {
        self.send(Message::XferRefuse { reason, transfer_id });
        self.pending_acks.retain(|a| a.id != transfer_id);
        if let Some(incoming) = self.incoming.as_mut().filter(|i| i.id == transfer_id) {
            incoming.refused = Some(reason);
            incoming.finished = false;
        }
        if let Some(segment) = self.segment.as_mut().filter(|s| s.id == transfer_id) {
            segment.deliver = false;
        }
        self.maybe_finish_ending();
    }
}
